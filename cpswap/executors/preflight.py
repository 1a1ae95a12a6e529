"""Gathers the preflight's facts, read-only and bounded; cpswap.core.preflight decides. Not pure.

- The new host (and, for ocboot and kubeadm, the VIP holder, where the join or its preparation
  runs) is probed with one SSH session each, as pulumi-command's remote commands reach them: the
  stack's user, port and key (``$CPSWAP_SSH_KEY_DATA``, written to a 0600 file removed at once),
  batch mode, a short connect timeout. The probe is a read-only shell script on stdin: hostname,
  addresses, ``/proc/net/tcp{,6}``, free space under /var/lib, the clock, ``k3s --version``,
  ``kubeadm version -o short``, ``kubelet --version``, free space at the local-path directory and, on the VIP holder, the ocboot
  checkout's VERSION and (ocboot) one nested SSH to the new host the way ocboot's ansible goes
  there: the holder's own keys, ``<ssh user>@<new ip>`` port 22, batch mode, host keys neither
  checked nor recorded (``UserKnownHostsFile=/dev/null``). It writes nothing.
- Kubernetes through the VIP (``$CPSWAP_KUBECONFIG_DATA``): the Nodes (is the new host one
  already; the Ready control-plane Nodes' kubeletVersion and InternalIP), then each of those
  survivors is probed over SSH too (its clock); on a swap (``old_node``) the claims pinned to the
  departing node that PVC recovery would recreate, and the new Node's allocatable and running pods; (kubeadm) kube-system/kubeadm-config's
  kubernetesVersion; (openshift) the control-plane Machines and controlplanemachinesets/cluster;
  (kubean, ``$CPSWAP_GLOBAL_KUBECONFIG_DATA``) the Cluster, its ConfigMaps, the operator
  Deployment and the cluster's newest ClusterOperation.
- The etcd client certificate (``$CPSWAP_ETCD_CERT_DATA``): its notAfter.
- The snapshot directory: its nearest existing directory writable, and its free space (nothing
  is created).
- (k3s) The cluster-critical server flags, from ``GET https://<VIP>:<port>/v1-k3s/config`` with the
  cluster token (``$CPSWAP_K3S_TOKEN_DATA``), as a joining k3s server reads them
  (cpswap.executors.k3s_supervisor).
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


ADDRESSES = "ip -o addr show 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | tr '\\n' ' '"
ONWARD_SSH_OPTS = ("-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
                   f"-o ConnectTimeout={SSH_CONNECT_TIMEOUT_S}")


def probe_script(*, ocboot_workdir: str | None = None, onward: tuple[str, str] | None = None) -> str:
    """The read-only probe (POSIX sh). Each fact on its own ``key=value`` line; the TCP tables last.
    ``onward`` (user, address): also reach that host over SSH from here, with this host's own keys."""
    lines = [
        "echo \"hostname=$(hostname)\"",
        f"echo \"addresses=$({ADDRESSES})\"",
        "echo \"clock=$(date +%s.%N)\"",
        "echo \"disk=$(df -Pk /var/lib 2>/dev/null | awk 'NR==2{print $4}')\"",
        "echo \"k3s=$(command -v k3s >/dev/null 2>&1 && k3s --version 2>/dev/null | head -n1)\"",
        "echo \"kubeadm=$(command -v kubeadm >/dev/null 2>&1 && kubeadm version -o short 2>/dev/null | head -n1)\"",
        # the nearest existing parent of the local-path directory (a fresh host has none yet); dirname ends at /
        f"d={quote(pf.LOCAL_PATH_DIR)}; n=0; while [ ! -d \"$d\" ] && [ $n -lt 64 ]; do d=$(dirname \"$d\"); "
        "n=$((n+1)); done; echo \"localpath=$d $(df -Pk \"$d\" 2>/dev/null | awk 'NR==2{print $4}')\"",
        "echo \"kubelet=$(command -v kubelet >/dev/null 2>&1 && kubelet --version 2>/dev/null | head -n1)\"",
    ]
    if ocboot_workdir is not None:
        w = quote(ocboot_workdir)
        lines.append(f"echo \"ocboot=$(test -f {w}/ocboot.sh && head -n1 {w}/VERSION 2>/dev/null)\"")
    if onward is not None:
        remote = quote(f'echo "$(hostname) $({ADDRESSES})"')
        target = quote(f"{onward[0]}@{onward[1]}")
        lines += [f"out=$(timeout {PROBE_TIMEOUT_S:g} ssh {ONWARD_SSH_OPTS} -p 22 {target} {remote} 2>&1 </dev/null)",
                  "echo \"onward_rc=$?\"",
                  "echo \"onward=$(printf '%s' \"$out\" | tr '\\n' ' ')\""]
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
    local = values.get("localpath", "").split()
    local_free = int(local[1]) * 1024 if len(local) == 2 and local[1].isdigit() else None
    onward = None
    if "onward_rc" in values:
        text_onward = values.get("onward", "").strip()
        if values["onward_rc"].strip() != "0":
            onward = pf.HostProbe(address="", error=f"ssh exited {values['onward_rc'].strip()}: "
                                                    f"{text_onward[-200:] or 'no output'}")
        else:
            words = text_onward.split()
            onward = pf.HostProbe(address="", hostname=words[0] if words else None, addresses=tuple(words[1:]))
    return pf.HostProbe(
        address=address, hostname=values.get("hostname", "").strip() or None,
        addresses=tuple(values.get("addresses", "").split()), listening=pf.parse_listening(tcp),
        disk_free_bytes=int(disk) * 1024 if disk.isdigit() else None, clock_offset_s=offset,
        clock_uncertainty_s=(ended - started) / 2, k3s_version=pf.parse_k3s_version(values.get("k3s", "")),
        ocboot_version=values.get("ocboot", "").strip() if "ocboot" in values else None,
        kubeadm_version=pf.parse_kubeadm_version(values.get("kubeadm", "")),
        kubelet_version=pf.parse_kubelet_version(values.get("kubelet", "")), onward=onward,
        local_path_free_bytes=local_free, local_path_dir=local[0] if local else None)


def probe_host(*, address: str, ssh: SshAccess, ocboot_workdir: str | None = None,
               onward: tuple[str, str] | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> pf.HostProbe:
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
            result = subprocess.run(argv, input=probe_script(ocboot_workdir=ocboot_workdir, onward=onward),
                                    capture_output=True, text=True,
                                    timeout=timeout_s + (PROBE_TIMEOUT_S if onward else 0))
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
    survivor_ips: tuple[str, ...] = ()  # InternalIPs of the Ready control-plane Nodes other than the new host
    control_plane_version: str | None = None  # (kubeadm) kubeadm-config's kubernetesVersion
    control_plane_error: str | None = None


def _failure(exc: Exception) -> str:
    from cpswap.core.errors import CpswapError

    return str(exc)[:300] if isinstance(exc, CpswapError) else f"{type(exc).__name__}: {str(exc)[:200]}"


def kubeadm_version_of(api) -> tuple[str | None, str | None]:
    """kube-system/kubeadm-config's ClusterConfiguration.kubernetesVersion: the control plane a
    ``kubeadm join --control-plane`` deploys (kubeadm reads it from the cluster)."""
    import yaml

    from cpswap.executors import kube

    cm = kube.read_config_map(api, "kube-system", "kubeadm-config")
    if cm is None:
        return None, "kube-system/kubeadm-config not found"
    try:
        doc = yaml.safe_load((cm.data or {}).get("ClusterConfiguration", "") or "") or {}
    except yaml.YAMLError as exc:
        return None, f"kubeadm-config ClusterConfiguration unreadable: {str(exc)[:120]}"
    version = doc.get("kubernetesVersion") if isinstance(doc, dict) else None
    return (str(version), None) if version else (None, "kubeadm-config's ClusterConfiguration has no kubernetesVersion")


def observe_nodes(*, target: pf.Target, timeout_s: float) -> KubeFacts:
    from cpswap.core.errors import CpswapError
    from cpswap.executors import kube

    needs = registry.get(target.distribution).preflight

    try:
        with kube.connect(timeout=timeout_s) as api:
            nodes = kube.list_nodes(api)
            control_plane, control_plane_error = (kubeadm_version_of(api) if needs.installer == "kubeadm"
                                                  else (None, None))
    except CpswapError as exc:
        return KubeFacts(error=str(exc)[:300])
    except Exception as exc:  # noqa: BLE001 - any client failure means "not reachable", reported as such
        return KubeFacts(error=f"{type(exc).__name__}: {str(exc)[:200]}")
    versions, ips = [], []
    for node in nodes:
        labels = node.metadata.labels or {}
        if node.metadata.name == target.name or not any(k in labels for k in CONTROL_PLANE_LABELS):
            continue
        info = node.status.node_info if node.status else None
        if kube.node_ready(node) and info is not None and info.kubelet_version:
            versions.append((node.metadata.name, info.kubelet_version))
        ip = kube._internal_ip(node)
        if kube.node_ready(node) and ip:
            ips.append(ip)
    return KubeFacts(error=None, already_member=any(n.metadata.name == target.name for n in nodes),
                     survivor_versions=tuple(sorted(versions)), survivor_ips=tuple(sorted(ips)),
                     control_plane_version=control_plane, control_plane_error=control_plane_error)


def observe_kubean(*, target: pf.Target, namespace: str, timeout_s: float) -> pf.KubeanFacts:
    """kubean on its global cluster: the Cluster (kubean.io/v1alpha1, kubean-io/kubean
    api/apis/cluster/v1alpha1: spec.hostsConfRef, spec.varsConfRef as {namespace, name} of ConfigMaps),
    the operator Deployment (charts/kubean/templates/deployment.yaml: label
    ``app.kubernetes.io/name: kubean``) and the cluster's newest ClusterOperation (spec.cluster, spec.image)."""
    from cpswap.executors import kubean as kb

    try:
        with kb.connect_global(timeout=timeout_s) as g:
            cluster = kb._read(f"read clusters.kubean.io/{target.kubean_cluster}", g.objects.get_cluster_custom_object,
                               kb.GROUP, kb.VERSION, "clusters", target.kubean_cluster, g=g)
            missing = []
            for key in ("hostsConfRef", "varsConfRef"):
                ref = ((cluster or {}).get("spec") or {}).get(key) or {}
                if cluster is None:
                    break
                if not ref.get("name") or not ref.get("namespace"):
                    missing.append(f"Cluster {target.kubean_cluster} has no spec.{key}")
                elif kb._read(f"read configmap {ref['namespace']}/{ref['name']}", g.core.read_namespaced_config_map,
                              ref["name"], ref["namespace"], g=g) is None:
                    missing.append(f"{key} {ref['namespace']}/{ref['name']} absent")
            deployments = kb._call(f"list deployments in {namespace}", g.api.apps.list_namespaced_deployment,
                                   namespace, g=g).items
            operators = [d for d in deployments
                         if ((d.metadata.labels or {}).get("app.kubernetes.io/name")) == "kubean"]
            ready = sum(int((d.status.ready_replicas if d.status else 0) or 0) for d in operators) if operators else None
            operations = kb._call("list clusteroperations", g.objects.list_cluster_custom_object, kb.GROUP, kb.VERSION,
                                  "clusteroperations", g=g).get("items") or []
    except Exception as exc:  # noqa: BLE001 - any client failure: unobserved, with the reason
        return pf.KubeanFacts(error=_failure(exc))
    mine = [o for o in operations if (o.get("spec") or {}).get("cluster") == target.kubean_cluster]
    newest = max(mine, key=lambda o: ((o.get("metadata") or {}).get("creationTimestamp") or "",
                                      (o.get("metadata") or {}).get("name") or ""), default=None)
    last = (newest["metadata"].get("name", "?"), str((newest.get("spec") or {}).get("image"))) if newest else None
    return pf.KubeanFacts(cluster_found=cluster is not None, missing_refs=tuple(missing), operator_ready=ready,
                          last_operation=last)


def observe_machines(*, namespace: str, timeout_s: float) -> pf.OpenshiftFacts:
    """The control-plane Machines (label machine.openshift.io/cluster-api-machine-role=master) and
    controlplanemachinesets/cluster (openshift/api machine/v1 ControlPlaneMachineSet spec.state)."""
    from cpswap.core.openshift import cpms_state
    from cpswap.executors import kube
    from cpswap.executors import openshift as osx

    try:
        with kube.connect(timeout=timeout_s) as api:
            machines = osx._masters(osx._machines(api, namespace))
            cpms = cpms_state(osx.read_cpms(api, namespace))
    except Exception as exc:  # noqa: BLE001 - any client failure: unobserved, with the reason
        return pf.OpenshiftFacts(error=_failure(exc))
    facts = tuple(sorted((pf.MachineFact(name=m["metadata"]["name"],
                                         phase="Deleting" if m["metadata"].get("deletionTimestamp")
                                         else str((m.get("status") or {}).get("phase") or "Pending"),
                                         node=osx._node_of(m)) for m in machines), key=lambda m: m.name))
    return pf.OpenshiftFacts(cpms=cpms, machines=facts)


def observe_capacity(*, target: pf.Target, old_node: str, policy_json: str | None,
                     timeout_s: float) -> pf.CapacityFacts:
    """What PVC recovery would move from ``old_node`` onto the new host, observed as recovery observes
    it (cpswap.executors.kube.claims_on: PVs pinned by local-path nodeAffinity or the selected-node
    annotation; cpswap.core.recovery.plan_claim_actions with the stack's policies): the claims whose
    policy is recreate, their sizes and pods; and the new Node's allocatable and running pods."""
    import json

    from cpswap.core.recovery import parse_pvc_recovery, plan_claim_actions
    from cpswap.executors import kube

    try:
        policies, problems = parse_pvc_recovery(json.loads(policy_json) if policy_json else {},
                                                field="--policy-json")
    except json.JSONDecodeError as exc:
        return pf.CapacityFacts(old_node=old_node, error=f"--policy-json unreadable: {exc.msg}")
    if problems:
        return pf.CapacityFacts(old_node=old_node, error="; ".join(v.rule for v in problems)[:300])
    try:
        with kube.connect(timeout=timeout_s) as api:
            claims = kube.claims_on(api, nodes={old_node})
            node = kube.read_node(api, target.name)
            running = (sum(1 for p in kube.all_pods(api) if p.spec and p.spec.node_name == target.name
                           and (p.status.phase if p.status else None) not in ("Succeeded", "Failed"))
                       if node is not None else 0)
    except Exception as exc:  # noqa: BLE001 - any client failure: unobserved, with the reason
        return pf.CapacityFacts(old_node=old_node, error=_failure(exc))
    # a claim without a policy is recovery's refusal (it stops there, nothing moves); only recreates move
    actions, _ = plan_claim_actions(claims=claims, policies=policies, node=old_node)
    recreate = {f"{a.namespace}/{a.name}" for a in actions if a.policy == "recreate"}
    moving = tuple(pf.MovingClaim(key=c.key, size=c.size, pods=tuple(f"{c.namespace}/{p}" for p in c.pods))
                   for c in claims if c.key in recreate)
    allocatable = ((node.status.allocatable or {}).get("pods") if node is not None and node.status else None)
    pods = pf.parse_quantity(str(allocatable)) if allocatable is not None else None
    return pf.CapacityFacts(old_node=old_node, claims=moving, new_node_registered=node is not None,
                            allocatable_pods=pods, running_pods=running)


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


MAX_SURVIVOR_PROBES = 8  # a control plane has 3, 5 or 7 members


def gather(*, target: pf.Target, ssh: SshAccess, snapshot_dir: str, timeout_s: float = 10.0,
           kubean_namespace: str = "kubean-system",
           machine_namespace: str = "openshift-machine-api", old_node: str | None = None,
           policy_json: str | None = None) -> pf.PreflightFacts:
    """The probes of the new host, the VIP holder and the APIs run concurrently (each bounded); the
    survivors the API names are probed in a second concurrent round (their clocks), so the
    preflight costs two rounds of waiting."""
    from concurrent.futures import ThreadPoolExecutor

    from cpswap.executors.k3s_supervisor import read_critical

    needs = registry.get(target.distribution).preflight
    workdir = target.ocboot_workdir if needs.ocboot_checkout else None
    onward = (ssh.user, target.ip) if needs.join_from_vip else None
    with ThreadPoolExecutor(max_workers=7 + MAX_SURVIVOR_PROBES) as pool:
        new_future = pool.submit(probe_host, address=target.ip, ssh=ssh) if pf.needs_ssh(target.distribution) else None
        vip_future = (pool.submit(probe_host, address=target.vip, ssh=ssh, ocboot_workdir=workdir, onward=onward)
                      if pf.needs_vip_ssh(target.distribution) else None)
        kube_future = pool.submit(observe_nodes, target=target, timeout_s=timeout_s)
        kubean_future = (pool.submit(observe_kubean, target=target, namespace=kubean_namespace, timeout_s=timeout_s)
                         if needs.kubean else None)
        machines_future = (pool.submit(observe_machines, namespace=machine_namespace, timeout_s=timeout_s)
                           if needs.machine_api else None)
        k3s_future = (pool.submit(read_critical, server=target.k3s_server or f"https://{target.vip}:6443",
                                  token=os.environ.get("CPSWAP_K3S_TOKEN_DATA"))
                      if pf.needs_critical_config(target.distribution) else None)
        capacity_future = (pool.submit(observe_capacity, target=target, old_node=old_node, policy_json=policy_json,
                                       timeout_s=timeout_s) if old_node else None)
        remaining, cert_error = certificate_remaining(time.time())
        free, snapshot_error = snapshot_room(snapshot_dir)
        kube_facts = kube_future.result()
        survivor_futures = ([pool.submit(probe_host, address=ip, ssh=ssh)
                             for ip in kube_facts.survivor_ips[:MAX_SURVIVOR_PROBES]]
                            if pf.needs_ssh(target.distribution) else [])
        new_host = new_future.result() if new_future else None
        vip_host = vip_future.result() if vip_future else None
        survivors = tuple(f.result() for f in survivor_futures)
        kubean = kubean_future.result() if kubean_future else None
        machines = machines_future.result() if machines_future else None
        k3s_config = k3s_future.result() if k3s_future else None
        capacity = capacity_future.result() if capacity_future else None
    return pf.PreflightFacts(target=target, new_host=new_host, vip_host=vip_host, api_error=kube_facts.error,
                             already_member=kube_facts.already_member, survivor_versions=kube_facts.survivor_versions,
                             cert_remaining_s=remaining, cert_error=cert_error, snapshot_dir=snapshot_dir,
                             snapshot_error=snapshot_error, snapshot_free_bytes=free, survivors=survivors,
                             control_plane_version=kube_facts.control_plane_version,
                             control_plane_error=kube_facts.control_plane_error, kubean=kubean, openshift=machines,
                             k3s_config=k3s_config, capacity=capacity)
