"""Shared helpers of the twin's installer shims (they run on fake hosts over SSH). Test-only."""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

TWIN = Path(os.environ["CPSWAP_TWIN"])
HOST = os.environ["CPSWAP_TWIN_HOST"]
CONFIG = json.loads((TWIN / "twin.json").read_text())
LAYOUTS = {  # where each distribution keeps etcd's TLS files and data on a control-plane node
    "k3s": {"ca": "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
            "cert": "/var/lib/rancher/k3s/server/tls/etcd/client.crt",
            "key": "/var/lib/rancher/k3s/server/tls/etcd/client.key",
            "server_cert": "/var/lib/rancher/k3s/server/tls/etcd/server-client.crt",
            "server_key": "/var/lib/rancher/k3s/server/tls/etcd/server-client.key",
            "data": "/var/lib/rancher/k3s/server/db/etcd"},
    "rke2": {"ca": "/var/lib/rancher/rke2/server/tls/etcd/server-ca.crt",  # k3s's layout under rke2's data dir
             "cert": "/var/lib/rancher/rke2/server/tls/etcd/client.crt",
             "key": "/var/lib/rancher/rke2/server/tls/etcd/client.key",
             "server_cert": "/var/lib/rancher/rke2/server/tls/etcd/server-client.crt",
             "server_key": "/var/lib/rancher/rke2/server/tls/etcd/server-client.key",
             "data": "/var/lib/rancher/rke2/server/db/etcd"},
    "kubeadm": {"ca": "/etc/kubernetes/pki/etcd/ca.crt", "cert": "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                "key": "/etc/kubernetes/pki/etcd/healthcheck-client.key",
                "server_cert": "/etc/kubernetes/pki/etcd/server.crt",
                "server_key": "/etc/kubernetes/pki/etcd/server.key", "data": "/var/lib/etcd"},
}
TLS = LAYOUTS[CONFIG.get("layout", "k3s")]


def fail(tool: str, message: str, code: int = 2) -> None:
    print(f"{tool}: {message}", file=sys.stderr)
    sys.exit(code)


def fail_plain(message: str, code: int = 1) -> None:
    """Fail with the tool's own message and nothing added (kubectl's errors)."""
    print(message, file=sys.stderr)
    sys.exit(code)


def kube():
    from kubernetes import client
    cfg = client.Configuration()
    cfg.host = CONFIG["kube_url"]
    return client.CoreV1Api(client.ApiClient(cfg))


def etcdctl(*args: str, endpoints: list[str], check: bool = True) -> subprocess.CompletedProcess:
    argv = [CONFIG["etcdctl"], f"--endpoints={','.join(endpoints)}", f"--cacert={TLS['ca']}",
            f"--cert={TLS['cert']}", f"--key={TLS['key']}", "--command-timeout=5s", *args]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:  # a loaded machine, not etcd's answer: a state `retry` waits out, bounded
        raise RuntimeError(f"etcdctl {' '.join(args)}: timed out after 30 s (no answer)") from None
    if check and result.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)}: {result.stderr.strip()}")
    return result


def cluster_endpoints() -> list[str]:
    """What k3s learns from the server it joins: the control-plane members' client URLs."""
    urls = []
    for node in kube().list_node().items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        ip = next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), None)
        if ready and ip:
            urls.append(f"https://{ip}:2379")
    return urls


def retry(what: str, fn, *, deadline_s: float = 120):
    end = time.monotonic() + deadline_s
    delay = 0.2
    while True:
        try:
            return fn()
        except RuntimeError as exc:
            if time.monotonic() > end or not re.search(r"unhealthy cluster|too many learner|in sync with leader|"
                                                       r"not started|timed out|context deadline|leader changed|connection refused|unavailable", str(exc),
                                                       re.I):
                raise
            print(f"{what}: {exc}; retrying", file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, 2)


def _members(endpoints: list[str]) -> list[dict]:
    listing = retry("member list", lambda: etcdctl("member", "list", "-w", "json", endpoints=endpoints))
    return json.loads(listing.stdout).get("members", [])


def _promote(member_id: str, endpoints: list[str]) -> None:
    retry("member promote", lambda: etcdctl("member", "promote", member_id, endpoints=endpoints), deadline_s=120)


def _spawn_promoter(member_id: str, endpoints: list[str]) -> None:
    """K3s servers, not the joining process, promote learners once caught up: run the promotion
    detached from this SSH session, so a dropped session does not leave a started learner."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _twin; "
            "_twin._promote(sys.argv[2], sys.argv[3].split(','))")
    log = open(TWIN / HOST / "etcd.log", "ab")  # noqa: SIM115 - the detached child keeps it open
    proc = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), member_id, ",".join(endpoints)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    with open(TWIN / HOST / "pids", "a") as handle:
        handle.write(f"{proc.pid}\n")


def _hold_after_learner_add(hold_s: float = 30) -> None:
    """Fault hook (one-shot): with ``<twin>/<host>/hold-after-learner-add`` present, say so in
    ``learner-added`` and wait (bounded) before starting etcd, so a test can cut the session in
    exactly that gap."""
    hold = TWIN / HOST / "hold-after-learner-add"
    if not hold.exists():
        return
    hold.unlink()
    (TWIN / HOST / "learner-added").write_text("1")
    time.sleep(hold_s)


def join_etcd(*, node_name: str, ip: str, member_name: str | None = None, promoter: str = "self") -> None:
    """Add this host as a learner, start etcd, promote it: what k3s (and kubeadm in learner mode)
    does for a joining control-plane node.

    Like k3s, a member that carries this host's peer URL but has no name (added, never started:
    an earlier join was cut off) is this host: it is resumed, not added again. ``promoter`` is
    ``self`` (kubeadm promotes in the joining process) or ``servers`` (k3s: the servers promote,
    so the promotion outlives this session).
    """
    endpoints = cluster_endpoints()
    peer = f"https://{ip}:2380"
    ours = next((m for m in _members(endpoints) if peer in m.get("peerURLs", [])), None)
    if ours is not None and ours.get("name"):
        if ours.get("isLearner"):
            print(f"{node_name}: started learner {ours['name']}; waiting for its promotion")
            _wait_promoted(format(ours["ID"], "x"), endpoints)
        print(f"{node_name} is already an etcd member")
        return
    name = member_name or f"{node_name}-{secrets.token_hex(4)}"
    if ours is None:
        added = retry("member add", lambda: etcdctl("member", "add", name, f"--peer-urls={peer}", "--learner",
                                                     endpoints=endpoints))
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', added.stdout).group(1)
        member_id = re.search(r"Member\s+([0-9a-f]+) added", added.stdout).group(1)
        _hold_after_learner_add()
    else:
        member_id = format(ours["ID"], "x")
        initial = ",".join(f"{m.get('name') or name}={u}" for m in _members(endpoints) for u in m.get("peerURLs", []))
        print(f"{node_name}: resuming unstarted member {member_id} with this host's peer URL {peer}")
    log = open(TWIN / HOST / "etcd.log", "ab")  # noqa: SIM115 - the detached child keeps it open
    proc = subprocess.Popen([CONFIG["etcd"], "--name", name, "--data-dir", TLS["data"],
                             "--listen-client-urls", f"https://{ip}:2379,https://127.0.0.1:2379",
                             "--advertise-client-urls", f"https://{ip}:2379", "--listen-peer-urls", peer,
                             "--initial-advertise-peer-urls", peer, "--initial-cluster", initial,
                             "--initial-cluster-state", "existing", "--logger=zap", "--log-level=error",
                             "--client-cert-auth", f"--trusted-ca-file={TLS['ca']}",
                             f"--cert-file={TLS['server_cert']}", f"--key-file={TLS['server_key']}",
                             "--peer-client-cert-auth", f"--peer-trusted-ca-file={TLS['ca']}",
                             f"--peer-cert-file={TLS['server_cert']}", f"--peer-key-file={TLS['server_key']}"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    with open(TWIN / HOST / "pids", "a") as handle:
        handle.write(f"{proc.pid}\n")
    if promoter == "servers":
        _spawn_promoter(member_id, endpoints)
        _wait_promoted(member_id, endpoints)
    else:
        _promote(member_id, endpoints)
    print(f"{name} joined etcd as a learner and was promoted")


def _wait_promoted(member_id: str, endpoints: list[str], deadline_s: float = 150) -> None:
    end = time.monotonic() + deadline_s
    while True:
        member = next((m for m in _members(endpoints) if format(m["ID"], "x") == member_id), None)
        if member is not None and not member.get("isLearner"):
            return
        if time.monotonic() > end:
            raise RuntimeError(f"member {member_id} still a learner after {deadline_s:.0f} s")
        time.sleep(0.2)


def k3s_version() -> str:
    """This host's k3s version: ``<host root>/k3s-version`` if a test put one there, else the twin's."""
    override = TWIN / HOST / "k3s-version"
    return override.read_text().strip() if override.exists() else CONFIG["k3s_version"]


def register_node(*, node_name: str, ip: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    body = client.V1Node(
        metadata=client.V1ObjectMeta(name=node_name, labels={
            "kubernetes.io/hostname": node_name, "node-role.kubernetes.io/control-plane": "true",
            "node-role.kubernetes.io/etcd": "true", "node-role.kubernetes.io/master": "true"}),
        spec=client.V1NodeSpec(unschedulable=False),
        status=client.V1NodeStatus(addresses=[client.V1NodeAddress(type="InternalIP", address=ip)],
                                   allocatable={"pods": "110"}, node_info=client.V1NodeSystemInfo(
                                       architecture="amd64", boot_id=HOST, container_runtime_version="containerd://1.7.11-k3s2",
                                       kernel_version="6.1.0", kube_proxy_version=k3s_version(),
                                       kubelet_version=k3s_version(), machine_id=HOST, operating_system="linux",
                                       os_image="Debian GNU/Linux 12", system_uuid=HOST),
                                   conditions=[client.V1NodeCondition(type="Ready", status="True")]))
    try:
        kube().create_node(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    print(f"node {node_name} registered")


def fail_once(tool: str) -> None:
    flag = TWIN / HOST / "fail-once"
    if flag.exists():
        flag.unlink()
        fail(tool, "simulated failure (fail-once)", 1)
