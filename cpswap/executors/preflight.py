"""Gathers the preflight's facts, read-only and bounded; cpswap.core.preflight decides. Not pure.

- The new host (and, for ocboot and kubeadm, the VIP holder, where the join or its preparation
  runs) is probed with one SSH session each, as pulumi-command's remote commands reach them: the
  stack's user, port and key (``$CPSWAP_SSH_KEY_DATA``, written to a 0600 file removed at once),
  batch mode, a short connect timeout. The probe is a read-only shell script on stdin: hostname,
  addresses, ``/proc/net/tcp{,6}``, free space under /var/lib, the clock, ``k3s --version`` and,
  on the VIP holder, the ocboot checkout's VERSION. It writes nothing.
- Kubernetes through the VIP (``$CPSWAP_KUBECONFIG_DATA``): the Nodes (is the new host one
  already; the Ready control-plane Nodes' kubeletVersion).
- The etcd client certificate (``$CPSWAP_ETCD_CERT_DATA``): its notAfter.
- The snapshot directory: its nearest existing directory writable, and its free space (nothing
  is created).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from shlex import quote

from cpswap import distributions as registry
from cpswap.core import preflight as pf

SSH_CONNECT_TIMEOUT_S = 5
PROBE_TIMEOUT_S = 20.0
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@dataclass(frozen=True)
class SshAccess:
    user: str
    port: int
    key_text: str | None  # None: no key given (the probe fails with that reason)


def probe_script(*, ocboot_workdir: str | None = None) -> str:
    """The read-only probe (POSIX sh). Each fact on its own ``key=value`` line; the TCP tables last."""
    lines = [
        "echo \"hostname=$(hostname)\"",
        "echo \"addresses=$(ip -o addr show 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | tr '\\n' ' ')\"",
        "echo \"clock=$(date +%s.%N)\"",
        "echo \"disk=$(df -Pk /var/lib 2>/dev/null | awk 'NR==2{print $4}')\"",
        "echo \"k3s=$(command -v k3s >/dev/null 2>&1 && k3s --version 2>/dev/null | head -n1)\"",
    ]
    if ocboot_workdir is not None:
        w = quote(ocboot_workdir)
        lines.append(f"echo \"ocboot=$(test -f {w}/ocboot.sh && head -n1 {w}/VERSION 2>/dev/null)\"")
    lines.append("echo '--- tcp'; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; exit 0")
    return "\n".join(lines) + "\n"


def parse_probe(*, address: str, text: str, started: float, ended: float) -> pf.HostProbe:
    head, _, tcp = text.partition("--- tcp\n")
    values = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    midpoint = (started + ended) / 2
    try:
        offset: float | None = float(values.get("clock", "")) - midpoint
    except ValueError:
        offset = None
    disk = values.get("disk", "").strip()
    return pf.HostProbe(
        address=address, hostname=values.get("hostname", "").strip() or None,
        addresses=tuple(values.get("addresses", "").split()), listening=pf.parse_listening(tcp),
        disk_free_bytes=int(disk) * 1024 if disk.isdigit() else None, clock_offset_s=offset,
        clock_uncertainty_s=(ended - started) / 2, k3s_version=pf.parse_k3s_version(values.get("k3s", "")),
        ocboot_version=values.get("ocboot", "").strip() if "ocboot" in values else None)


def probe_host(*, address: str, ssh: SshAccess, ocboot_workdir: str | None = None,
               timeout_s: float = PROBE_TIMEOUT_S) -> pf.HostProbe:
    if not ssh.key_text:
        return pf.HostProbe(address=address, error="no SSH key (secret cpswap:sshPrivateKey, $CPSWAP_SSH_KEY_DATA)")
    fd, key_path = tempfile.mkstemp(prefix="cpswap-preflight-key-")
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp: 0600
            handle.write(ssh.key_text if ssh.key_text.endswith("\n") else ssh.key_text + "\n")
        argv = ["ssh", "-i", key_path, "-p", str(ssh.port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}", f"{ssh.user}@{address}", "sh -s"]
        started = time.time()
        try:
            result = subprocess.run(argv, input=probe_script(ocboot_workdir=ocboot_workdir), capture_output=True,
                                    text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return pf.HostProbe(address=address, error=f"no answer within {timeout_s:g} s")
        ended = time.time()
    finally:
        os.unlink(key_path)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"ssh exited {result.returncode}"])[-1][:200]
        return pf.HostProbe(address=address, error=f"ssh {ssh.user}@{address}:{ssh.port}: {reason}")
    return parse_probe(address=address, text=result.stdout, started=started, ended=ended)


@dataclass(frozen=True)
class KubeFacts:
    error: str | None
    already_member: bool = False
    survivor_versions: tuple[tuple[str, str], ...] = ()


def observe_nodes(*, target: pf.Target, timeout_s: float) -> KubeFacts:
    from cpswap.core.errors import CpswapError
    from cpswap.executors import kube

    try:
        with kube.connect(timeout=timeout_s) as api:
            nodes = kube.list_nodes(api)
    except CpswapError as exc:
        return KubeFacts(error=str(exc)[:300])
    except Exception as exc:  # noqa: BLE001 - any client failure means "not reachable", reported as such
        return KubeFacts(error=f"{type(exc).__name__}: {str(exc)[:200]}")
    versions = []
    for node in nodes:
        labels = node.metadata.labels or {}
        if node.metadata.name == target.name or not any(k in labels for k in CONTROL_PLANE_LABELS):
            continue
        info = node.status.node_info if node.status else None
        if kube.node_ready(node) and info is not None and info.kubelet_version:
            versions.append((node.metadata.name, info.kubelet_version))
    return KubeFacts(error=None, already_member=any(n.metadata.name == target.name for n in nodes),
                     survivor_versions=tuple(sorted(versions)))


def certificate_remaining(now: float) -> tuple[float | None, str | None]:
    text = os.environ.get("CPSWAP_ETCD_CERT_DATA")
    if not text:
        return None, "no etcd client certificate ($CPSWAP_ETCD_CERT_DATA, secret cpswap:etcdClientCert)"
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(text.encode())
    except ValueError as exc:
        return None, f"etcd client certificate unreadable: {str(exc)[:120]}"
    return cert.not_valid_after_utc.timestamp() - now, None


def snapshot_room(directory: str) -> tuple[int | None, str | None]:
    path = Path(directory)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return None, f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return None, f"{existing} is not writable by uid {os.getuid()}"
    return shutil.disk_usage(existing).free, None


def gather(*, target: pf.Target, ssh: SshAccess, snapshot_dir: str, timeout_s: float = 10.0) -> pf.PreflightFacts:
    """The probes of the new host, the VIP holder and the API run concurrently (each bounded), so
    the preflight costs one round of waiting, not three."""
    from concurrent.futures import ThreadPoolExecutor

    workdir = target.ocboot_workdir if registry.get(target.distribution).preflight.ocboot_checkout else None
    with ThreadPoolExecutor(max_workers=3) as pool:
        new_future = pool.submit(probe_host, address=target.ip, ssh=ssh) if pf.needs_ssh(target.distribution) else None
        vip_future = (pool.submit(probe_host, address=target.vip, ssh=ssh, ocboot_workdir=workdir)
                      if pf.needs_vip_ssh(target.distribution) else None)
        kube_future = pool.submit(observe_nodes, target=target, timeout_s=timeout_s)
        remaining, cert_error = certificate_remaining(time.time())
        free, snapshot_error = snapshot_room(snapshot_dir)
        new_host = new_future.result() if new_future else None
        vip_host = vip_future.result() if vip_future else None
        kube_facts = kube_future.result()
    return pf.PreflightFacts(target=target, new_host=new_host, vip_host=vip_host, api_error=kube_facts.error,
                             already_member=kube_facts.already_member, survivor_versions=kube_facts.survivor_versions,
                             cert_remaining_s=remaining, cert_error=cert_error, snapshot_dir=snapshot_dir,
                             snapshot_error=snapshot_error, snapshot_free_bytes=free)
