"""Preflight: what must hold before a swap's first destructive step. Pure (facts in, findings out).

The executor (cpswap/executors/preflight.py) gathers ``PreflightFacts`` read-only and with short
timeouts; ``decide_preflight`` turns them into one ``Finding`` per check and host, every failure
at once, each naming the check, the host, the observed value and the rule. Nothing here runs,
connects or reads the clock: the same facts always give the same findings, so re-running the
preflight on an unchanged cluster gives the same answer.

Checks (issue 14):
  ssh            the new host answers over SSH with the stack's user and key (from the operator's machine)
  identity       its hostname and one of its addresses match ``members.<slot>``
  vip-ssh        (ocboot, kubeadm) the VIP holder answers over SSH: the join or its preparation runs there
  join-ssh       (ocboot) the new host answers SSH FROM the VIP holder, as ocboot's ansible reaches it there
                 (the holder's own keys in ~/.ssh, ``ansible_user`` = the stack's ssh user, port 22), with the
                 hostname and address of ``members.<slot>``
  ocboot         (ocboot) the checkout the join runs (``ocboot.workdir`` on the VIP holder) exists, with a
                 VERSION whose major.minor is the stack's ``ocboot.version``
  installer      (k3s) ``k3s`` is on the new host at the survivors' version (their Nodes' kubeletVersion);
                 (ocboot) a k3s already on the new host must be that version too (ocboot keeps it);
                 (kubeadm) ``kubeadm`` and ``kubelet`` on the new host within kubeadm's own skew of the
                 control plane's version (``kubeadm_skew``)
  kubean         (kubean) the Cluster on the global cluster with its hostsConfRef/varsConfRef ConfigMaps,
                 the kubean operator Deployment ready, and the stack's image the one the cluster's latest
                 ClusterOperation ran with
  machine-api    (openshift) every control-plane Machine Running (none Provisioning, Deleting or Failed:
                 no other Machine change under way), the ControlPlaneMachineSet's state reported
  ports          2379, 2380, 6443 and the distribution's own (``DISTRIBUTION_PORTS``, data) free on the new
                 host, unless it is already a member of this cluster (adoption, a resumed join): then they
                 are its own
  disk           free space under /var/lib on the new host >= the etcd minimum
  clock          the new host's clock against EVERY survivor's (the Ready control-plane Nodes, probed over
                 SSH like the new host; the VIP holder's too), within the bound
  etcd-cert      the etcd client certificate is valid for longer than the run's worst case
  snapshot-dir   the snapshot directory is writable and has room
  api            the Kubernetes API answers through the VIP
  pvc-capacity   (a swap: the departing node known, ``--old-node``) the claims pinned to the departing node
                 that the policies recreate (as PVC recovery observes them: PVs pinned by local-path
                 nodeAffinity) fit on the new host: its free disk at the local-path directory
                 (``LOCAL_PATH_DIR``) >= the sum of their requested sizes (``parse_quantity``, exact), and,
                 once the new Node is registered, its allocatable pods >= its running pods + the moving
                 pods (not registered yet, normal before a join: the pod check is skipped and says so)
  k3s-config     (k3s) the cluster-critical server flags were read from a survivor through the VIP
                 (``GET /v1-k3s/config`` with the cluster token, as a joining k3s server does:
                 cpswap.core.k3s_critical); the join copies them into config.yaml, so when they
                 cannot be known the swap stops here, before anything is removed

A fact the executor could not observe (``None``) fails its check with the reason: a preflight
that could not look has not shown the swap is safe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from cpswap import distributions as registry
from cpswap.core.k3s_critical import CriticalRead, config_lines, render_critical_block
from cpswap.core.model import Member, StackModel

ETCD_PORTS = (2379, 2380)
API_PORT = 6443
GIB = 1024 ** 3
# etcd's default backend quota is 2 GiB (etcd server/storage/backend/quota.go DefaultQuotaBytes);
# the data dir needs that plus room for a defrag copy.
MIN_ETCD_DISK_BYTES = 4 * GIB
MIN_SNAPSHOT_BYTES = 2 * GIB
# etcd's peer prober warns above 1 s of clock difference (etcd server/etcdserver/api/rafthttp/probing_status.go)
MAX_CLOCK_SKEW_S = 1.0
# local-path-provisioner's default nodePath (rancher/local-path-provisioner deploy/local-path-storage.yaml
# config.json ``nodePathMap`` DEFAULT_PATH_FOR_NON_LISTED_NODES); the stack has no setting for it
LOCAL_PATH_DIR = "/opt/local-path-provisioner"
K3S_VERSION = re.compile(r"^k3s version (v[0-9][^\s]*)")


@dataclass(frozen=True)
class Limits:
    worst_case_s: float
    min_etcd_disk_bytes: int = MIN_ETCD_DISK_BYTES
    min_snapshot_bytes: int = MIN_SNAPSHOT_BYTES
    max_clock_skew_s: float = MAX_CLOCK_SKEW_S


@dataclass(frozen=True)
class HostProbe:
    """What one SSH probe of a host returned. ``error`` set means it was not reached."""

    address: str
    error: str | None = None
    hostname: str | None = None
    addresses: tuple[str, ...] = ()
    listening: tuple[int, ...] = ()
    disk_free_bytes: int | None = None
    clock_offset_s: float | None = None  # host clock minus the operator's midpoint of the call
    clock_uncertainty_s: float = 0.0  # half the round trip
    k3s_version: str | None = None
    ocboot_version: str | None = None  # the VERSION in the ocboot checkout; "" when the checkout is missing
    kubeadm_version: str | None = None  # ``kubeadm version -o short``
    kubelet_version: str | None = None  # ``kubelet --version``
    local_path_free_bytes: int | None = None  # free space at LOCAL_PATH_DIR (its nearest existing parent)
    local_path_dir: str | None = None  # the directory df measured
    onward: HostProbe | None = None  # (VIP holder) the new host as reached over SSH from here


@dataclass(frozen=True)
class Target:
    slot: str
    distribution: str
    name: str
    ip: str
    vip: str
    ocboot_workdir: str | None = None
    ocboot_version: str | None = None
    kubean_cluster: str | None = None
    kubean_image: str | None = None
    k3s_server: str | None = None  # (k3s) the join's --server, https://<controlPlaneEndpoint>


@dataclass(frozen=True)
class KubeanFacts:
    """What the global cluster shows of kubean (read-only). ``error`` set: not observed."""

    error: str | None = None
    cluster_found: bool = False
    missing_refs: tuple[str, ...] = ()  # "hostsConfRef kubean-system/x-hosts-conf (absent)", ...
    operator_ready: int | None = None  # ready replicas of the kubean operator Deployment(s); None: none found
    last_operation: tuple[str, str] | None = None  # (name, spec.image) of the cluster's newest ClusterOperation


@dataclass(frozen=True)
class MachineFact:
    name: str
    phase: str  # status.phase, "Deleting" when a deletionTimestamp is set
    node: str | None


@dataclass(frozen=True)
class OpenshiftFacts:
    error: str | None = None
    cpms: str = "absent"  # cpswap.core.openshift.cpms_state
    machines: tuple[MachineFact, ...] = ()  # control-plane (master) Machines


@dataclass(frozen=True)
class MovingClaim:
    """A claim pinned to the departing node that its policy recreates on the new node."""

    key: str  # namespace/name
    size: str  # spec.resources.requests.storage, a Kubernetes quantity
    pods: tuple[str, ...] = ()  # the pods using it (namespace-qualified by the claim's namespace)


@dataclass(frozen=True)
class CapacityFacts:
    """What PVC recovery would move onto the new node (read-only). ``error`` set: not observed."""

    old_node: str
    error: str | None = None
    claims: tuple[MovingClaim, ...] = ()
    new_node_registered: bool = False
    allocatable_pods: int | None = None  # the new Node's status.allocatable.pods
    running_pods: int = 0  # pods bound to the new Node and not finished


@dataclass(frozen=True)
class PreflightFacts:
    target: Target
    new_host: HostProbe | None  # None: the distribution reaches hosts through its operator (kubean, openshift)
    vip_host: HostProbe | None = None
    api_error: str | None = "unobserved"
    already_member: bool = False
    survivor_versions: tuple[tuple[str, str], ...] = ()  # (node, kubeletVersion) of Ready control-plane Nodes
    cert_remaining_s: float | None = None
    cert_error: str | None = None
    snapshot_dir: str = ""
    snapshot_error: str | None = None
    snapshot_free_bytes: int | None = None
    survivors: tuple[HostProbe, ...] = ()  # the other Ready control-plane Nodes (by InternalIP), over SSH
    control_plane_version: str | None = None  # (kubeadm) kubeadm-config ClusterConfiguration.kubernetesVersion
    control_plane_error: str | None = None
    kubean: KubeanFacts | None = None
    openshift: OpenshiftFacts | None = None
    k3s_config: CriticalRead | None = None  # (k3s) None: not read
    capacity: CapacityFacts | None = None  # None: no departing node known (adoption, surge, in-place rebuild)


@dataclass(frozen=True)
class Finding:
    check: str
    host: str
    ok: bool
    value: str
    rule: str

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.check:<12} {self.host:<24} {self.value} ({self.rule})"


@dataclass(frozen=True)
class PreflightResult:
    slot: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    k3s_block: str = ""  # (k3s) the config.yaml block the join copies (k3s_critical.render_critical_block)

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.ok)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "slot": self.slot, "ok": self.ok,
            "findings": [{"check": f.check, "host": f.host, "ok": f.ok, "value": f.value, "rule": f.rule}
                         for f in self.findings]}
        if self.k3s_block:
            out["k3sCriticalConfig"] = self.k3s_block
        return out


def parse_k3s_version(text: str) -> str | None:
    """``k3s --version``'s first line, ``k3s version v1.28.5+k3s1 (5b2d1271)`` (k3s-io/k3s
    pkg/cli/cmds/root.go ``cli.VersionPrinter``: ``"%s version %s\\n"`` with ``"<version> (<commit>)"``)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = K3S_VERSION.match(first)
    return match.group(1) if match else None


def parse_kubeadm_version(text: str) -> str | None:
    """``kubeadm version -o short``: the GitVersion alone, ``v1.31.2`` (kubernetes/kubernetes @ 008b3652
    cmd/kubeadm/app/cmd/version.go ``RunVersion`` ``case "short": fmt.Fprintf(out, "%s\\n", v.ClientVersion.GitVersion)``)."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return first if re.match(r"^v\d+\.\d+\.\d+", first) else None


def parse_kubelet_version(text: str) -> str | None:
    """``kubelet --version``: ``Kubernetes v1.31.2`` (kubernetes/kubernetes @ 05a338a8
    staging/src/k8s.io/component-base/version/verflag/verflag.go ``PrintAndExitIfRequested``:
    ``fmt.Printf("Kubernetes %s\\n", k8sversion.Get())``)."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    match = re.match(r"^Kubernetes (v\d+\.\d+\.\d+\S*)$", first)
    return match.group(1) if match else None


def _minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def kubeadm_skew(*, kubeadm: str | None, kubelet: str | None, control_plane: str) -> list[str]:
    """What keeps ``kubeadm join --control-plane`` on the new host from working with a control plane
    at ``control_plane`` (kubeadm-config's kubernetesVersion), by kubeadm's own rules
    (kubernetes/kubernetes @ 00b6a4c7: cmd/kubeadm/app/preflight/checks.go ``KubernetesVersionCheck``,
    run for a joining control plane by ``RunInitNodeChecks``, and ``KubeletVersionCheck``;
    cmd/kubeadm/app/constants/constants.go @ 00886ac0 ``MinimumControlPlaneVersion`` = kubeadm's
    minor - 1, ``MinimumKubeletVersion`` = kubeadm's minor - 3):
    - the control plane must not be newer than kubeadm (kubeadm warns "Kubernetes version is greater
      than kubeadm version"; cpswap refuses: the join would lay down a control plane kubeadm does not know);
    - kubeadm deploys control planes down to its own minor - 1;
    - the kubelet is at least kubeadm's minor - 3 and never newer than the control plane."""
    wanted = _minor(control_plane)
    if wanted is None:
        return [f"control plane version {control_plane!r} unreadable"]
    problems = []
    adm = _minor(kubeadm) if kubeadm else None
    if kubeadm is None or adm is None:
        problems.append("kubeadm not found" if kubeadm is None else f"kubeadm version {kubeadm!r} unreadable")
    elif adm[0] != wanted[0] or wanted[1] > adm[1]:
        problems.append(f"kubeadm {kubeadm} is older than the control plane {control_plane} (KubernetesVersionCheck)")
    elif wanted[1] < adm[1] - 1:
        problems.append(f"kubeadm {kubeadm} deploys control planes from v{adm[0]}.{adm[1] - 1} "
                        f"(MinimumControlPlaneVersion), not {control_plane}")
    let = _minor(kubelet) if kubelet else None
    if kubelet is None or let is None:
        problems.append("kubelet not found" if kubelet is None else f"kubelet version {kubelet!r} unreadable")
    else:
        if let[0] != wanted[0] or let[1] > wanted[1]:
            problems.append(f"kubelet {kubelet} is newer than the control plane {control_plane} (KubeletVersionCheck)")
        if adm is not None and let[0] == adm[0] and let[1] < adm[1] - 3:
            problems.append(f"kubelet {kubelet} is below kubeadm's minimum v{adm[0]}.{adm[1] - 3} "
                            f"(MinimumKubeletVersion)")
    return problems


def parse_listening(text: str) -> tuple[int, ...]:
    """Ports in LISTEN state (``0A``) from ``/proc/net/tcp`` and ``/proc/net/tcp6`` text (Linux
    Documentation/networking/proc_net_tcp.rst: ``sl local_address rem_address st ...``, addresses
    as hex ``ADDR:PORT``)."""
    ports: set[int] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] == "sl" or not fields[0].endswith(":"):
            continue
        local, state = fields[1], fields[3]
        if state == "0A" and ":" in local:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return tuple(sorted(ports))


def major_minor(version: str) -> str | None:
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    return f"{match.group(1)}.{match.group(2)}" if match else None


_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_SUFFIX = {None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
           "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
           "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
           "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}


def parse_quantity(text: str) -> int | None:
    """A Kubernetes quantity as whole bytes, exactly, rounded up as ``Quantity.Value()`` does
    (kubernetes/apimachinery eed236ceee2c19c2753a3d93ac0631dc20750454 pkg/api/resource/quantity.go
    ``splitREString``, suffix.go: ``<number><suffix>``, binary Ki..Ei, decimal n, u, m, k..E, or an
    exponent e/E; ``Value()`` rounds up). None for what the API would reject (or a negative size)."""
    match = _QUANTITY.fullmatch(text.strip()) if text else None
    if match is None:
        return None
    number, suffix = match.groups()
    try:
        scale = (Decimal(10) ** int(suffix[1:])) if suffix and len(suffix) > 1 and suffix[0] in "eE" else _SUFFIX[suffix]
        value = Decimal(number) * scale
    except (InvalidOperation, KeyError):
        return None
    if value < 0:
        return None
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _seconds(value: float) -> str:
    return f"{value / 3600:.1f} h" if abs(value) >= 3600 else f"{value:.0f} s"


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def _ssh_findings(t: Target, probe: HostProbe, *, check: str, who: str) -> list[Finding]:
    if probe.error is not None:
        return [Finding(check, probe.address, False, probe.error,
                        f"{who} must answer over SSH with the stack's user and key")]
    return [Finding(check, probe.address, True, f"reached as {probe.hostname}", f"{who} answers over SSH")]


def _identity(t: Target, probe: HostProbe) -> Finding:
    problems = []
    if probe.hostname != t.name:
        problems.append(f"hostname {probe.hostname!r}")
    if t.ip not in probe.addresses:
        problems.append(f"addresses {', '.join(probe.addresses) or 'none'}")
    rule = f"hostname must be members.{t.slot}.name {t.name!r} and an address members.{t.slot}.ip {t.ip}"
    return Finding("identity", t.ip, not problems, "; ".join(problems) or f"{probe.hostname} at {t.ip}", rule)


def _kubeadm_installer(f: PreflightFacts) -> list[Finding]:
    t, probe = f.target, f.new_host
    assert probe is not None
    rule = ("kubeadm and kubelet on the new host within kubeadm's skew of the control plane (kubeadm: the "
            "control plane's minor or one above; kubelet: not newer than the control plane, at least kubeadm's "
            "minor - 3)")
    if f.control_plane_version is None:
        return [Finding("installer", t.ip, False, f"control plane version unobserved: "
                        f"{f.control_plane_error or f.api_error or 'kubeadm-config has no kubernetesVersion'}", rule)]
    problems = kubeadm_skew(kubeadm=probe.kubeadm_version, kubelet=probe.kubelet_version,
                            control_plane=f.control_plane_version)
    value = "; ".join(problems) or (f"kubeadm {probe.kubeadm_version}, kubelet {probe.kubelet_version}, "
                                    f"control plane {f.control_plane_version}")
    return [Finding("installer", t.ip, not problems, value, rule)]


def _installer(f: PreflightFacts) -> list[Finding]:
    t, probe = f.target, f.new_host
    assert probe is not None
    needs = registry.get(t.distribution).preflight
    if needs.installer == "kubeadm":
        return _kubeadm_installer(f)
    if needs.installer is None:
        return []
    versions = sorted({v for _, v in f.survivor_versions})
    if f.api_error is not None:
        return [Finding("installer", t.ip, False, f"survivors' version unobserved: {f.api_error}",
                        "k3s on the new host must be the survivors' version (their Nodes' kubeletVersion)")]
    if not versions:
        return [Finding("installer", t.ip, False, "no Ready control-plane Node to compare with",
                        "k3s on the new host must be the survivors' version")]
    if len(versions) > 1:
        return [Finding("installer", t.ip, False, f"survivors disagree: {', '.join(versions)}",
                        "finish the cluster's upgrade before swapping a member")]
    wanted = versions[0]
    if probe.k3s_version is None:
        if needs.installer_optional:
            return [Finding("installer", t.ip, True, f"no k3s on the new host; {t.distribution} installs it",
                            f"{t.distribution} installs k3s {wanted}")]
        return [Finding("installer", t.ip, False, "k3s not found on the new host",
                        f"k3s {wanted} (the survivors' version) must be installed on the new host")]
    return [Finding("installer", t.ip, probe.k3s_version == wanted, f"k3s {probe.k3s_version}",
                    f"must be the survivors' version {wanted}")]


def _ocboot(f: PreflightFacts) -> list[Finding]:
    t, vip = f.target, f.vip_host
    if not registry.get(t.distribution).preflight.ocboot_checkout or vip is None or vip.error is not None:
        return []
    wanted = major_minor(t.ocboot_version or "")
    rule = (f"ocboot checked out at {t.ocboot_workdir} on the VIP holder, VERSION at {wanted} "
            f"(ocboot.version {t.ocboot_version})")
    if not vip.ocboot_version:
        return [Finding("ocboot", vip.address, False, f"no ocboot checkout (ocboot.sh and VERSION) at {t.ocboot_workdir}",
                        rule)]
    return [Finding("ocboot", vip.address, major_minor(vip.ocboot_version) == wanted,
                    f"VERSION {vip.ocboot_version}", rule)]


def _ports(f: PreflightFacts) -> list[Finding]:
    t, probe = f.target, f.new_host
    assert probe is not None
    wanted = (*ETCD_PORTS, API_PORT, *registry.get(t.distribution).preflight.ports)
    rule = f"ports {', '.join(map(str, wanted))} must be free on the new host"
    if f.already_member:
        return [Finding("ports", t.ip, True, "host is already a member; the ports are its own", rule)]
    taken = [p for p in wanted if p in probe.listening]
    return [Finding("ports", t.ip, not taken, f"in use: {', '.join(map(str, taken))}" if taken else "free", rule)]


def _disk(f: PreflightFacts, limits: Limits) -> Finding:
    assert f.new_host is not None
    free = f.new_host.disk_free_bytes
    rule = f"at least {_gib(limits.min_etcd_disk_bytes)} free under /var/lib for etcd"
    if free is None:
        return Finding("disk", f.target.ip, False, "free space unobserved", rule)
    return Finding("disk", f.target.ip, free >= limits.min_etcd_disk_bytes, f"{_gib(free)} free", rule)


def _clock(f: PreflightFacts, limits: Limits) -> list[Finding]:
    """One finding for the new host's clock against every survivor probed (the VIP holder and the
    Ready control-plane Nodes): each skew named, the worst decides."""
    new = f.new_host
    assert new is not None
    # an unreachable VIP holder is vip-ssh's failure already; an unreachable survivor is this check's
    vip = [f.vip_host] if f.vip_host is not None and f.vip_host.error is None else []
    others = [*vip, *f.survivors]
    rule = (f"clock within {limits.max_clock_skew_s:g} s of every survivor's (the VIP holder and the Ready "
            f"control-plane Nodes)")
    if not others:
        return []
    if new.clock_offset_s is None:
        return [Finding("clock", f.target.ip, False, "the new host's clock unobserved", rule)]
    parts, ok, seen = [], True, set()
    for other in others:
        who = other.hostname or other.address
        if who in seen:  # the VIP holder is also one of the control-plane Nodes
            continue
        seen.add(who)
        if other.error is not None or other.clock_offset_s is None:
            ok = False
            parts.append(f"{who}: unobserved ({other.error or 'no clock'})")
            continue
        skew = new.clock_offset_s - other.clock_offset_s
        # each offset is known to within half its round trip: fail only what is surely too far
        surely = abs(skew) - new.clock_uncertainty_s - other.clock_uncertainty_s
        ok = ok and surely <= limits.max_clock_skew_s
        parts.append(f"{who} {skew:+.2f} s")
    return [Finding("clock", f.target.ip, ok, "skew against " + ", ".join(parts), rule)]


def _join_ssh(f: PreflightFacts) -> list[Finding]:
    """(ocboot) the new host as ocboot's ansible reaches it: over SSH from the VIP holder."""
    t, vip = f.target, f.vip_host
    if not registry.get(t.distribution).preflight.join_from_vip or vip is None or vip.error is not None:
        return []
    rule = (f"the VIP holder must reach the new host over SSH with its own key (ocboot runs ansible there: "
            f"~/.ssh mounted into its container) and find members.{t.slot} ({t.name} at {t.ip})")
    onward = vip.onward
    if onward is None:
        return [Finding("join-ssh", t.ip, False, f"not probed from the VIP holder {vip.address}", rule)]
    if onward.error is not None:
        return [Finding("join-ssh", t.ip, False, f"from {vip.hostname or vip.address}: {onward.error}", rule)]
    problems = []
    if onward.hostname != t.name:
        problems.append(f"hostname {onward.hostname!r}")
    if t.ip not in onward.addresses:
        problems.append(f"addresses {', '.join(onward.addresses) or 'none'}")
    return [Finding("join-ssh", t.ip, not problems,
                    f"from {vip.hostname or vip.address}: " + ("; ".join(problems) or f"reached {onward.hostname}"),
                    rule)]


def _kubean(f: PreflightFacts) -> list[Finding]:
    t, k = f.target, f.kubean
    if not registry.get(t.distribution).preflight.kubean:
        return []
    rule = (f"kubean Cluster {t.kubean_cluster} with its hostsConfRef and varsConfRef ConfigMaps, the kubean "
            f"operator ready, and image {t.kubean_image} the one its operations ran with")
    if k is None or k.error is not None:
        return [Finding("kubean", "global", False, f"unobserved: {k.error if k else 'not probed'}", rule)]
    problems = []
    if not k.cluster_found:
        problems.append(f"Cluster {t.kubean_cluster} not found")
    problems += list(k.missing_refs)
    if k.operator_ready is None:
        problems.append("no kubean operator Deployment (label app.kubernetes.io/name=kubean)")
    elif k.operator_ready < 1:
        problems.append("kubean operator Deployment has no ready replica")
    if k.last_operation is not None and k.last_operation[1] != t.kubean_image:
        problems.append(f"image {t.kubean_image} differs from {k.last_operation[1]} of the latest operation "
                        f"{k.last_operation[0]}")
    value = "; ".join(problems) or (f"Cluster {t.kubean_cluster} found, operator ready"
                                    + (f", image as in {k.last_operation[0]}" if k.last_operation else
                                       ", no earlier operation to compare the image with"))
    return [Finding("kubean", "global", not problems, value, rule)]


def _machine_api(f: PreflightFacts) -> list[Finding]:
    t, o = f.target, f.openshift
    if not registry.get(t.distribution).preflight.machine_api:
        return []
    rule = ("every control-plane Machine Running (none Provisioning, Deleting or Failed: no other Machine change "
            "under way); ControlPlaneMachineSet Active creates the replacement itself, Inactive or absent: cpswap does")
    if o is None or o.error is not None:
        return [Finding("machine-api", "cluster", False, f"unobserved: {o.error if o else 'not probed'}", rule)]
    busy = [f"{m.name} {m.phase}" for m in o.machines if m.phase != "Running"]
    value = (f"controlplanemachinesets/cluster {o.cpms}; "
             + (f"not Running: {', '.join(busy)}" if busy else
                f"{len(o.machines)} control-plane Machine(s) Running" if o.machines else "no control-plane Machine"))
    return [Finding("machine-api", "cluster", bool(o.machines) and not busy, value, rule)]


def _cert(f: PreflightFacts, limits: Limits) -> Finding:
    rule = f"the etcd client certificate must stay valid for the run's worst case ({_seconds(limits.worst_case_s)})"
    if f.cert_remaining_s is None:
        return Finding("etcd-cert", "operator", False, f.cert_error or "unobserved", rule)
    return Finding("etcd-cert", "operator", f.cert_remaining_s > limits.worst_case_s,
                   f"expires in {_seconds(f.cert_remaining_s)}", rule)


def _snapshot(f: PreflightFacts, limits: Limits) -> Finding:
    rule = f"{f.snapshot_dir} must be writable with at least {_gib(limits.min_snapshot_bytes)} free"
    if f.snapshot_error is not None or f.snapshot_free_bytes is None:
        return Finding("snapshot-dir", "operator", False, f.snapshot_error or "unobserved", rule)
    return Finding("snapshot-dir", "operator", f.snapshot_free_bytes >= limits.min_snapshot_bytes,
                   f"writable, {_gib(f.snapshot_free_bytes)} free", rule)


def _capacity(f: PreflightFacts) -> list[Finding]:
    """The claims PVC recovery will move from the departing node fit on the new host (disk, pods)."""
    c, t = f.capacity, f.target
    if c is None:
        return []
    rule = (f"the new host {t.name} must hold the claims pinned to the departing node {c.old_node} that the "
            f"policies recreate: free disk at the local-path directory >= their requested sizes, and (once "
            f"registered) allocatable pods >= running pods + the moving pods")
    if c.error is not None:
        return [Finding("pvc-capacity", t.ip, False, f"claims on {c.old_node} unobserved: {c.error}", rule)]
    if not c.claims:
        return [Finding("pvc-capacity", t.ip, True, f"no claim on {c.old_node} to recreate", rule)]
    sizes = [(m, parse_quantity(m.size)) for m in c.claims]
    listed = ", ".join(f"{m.key} {m.size}" for m in c.claims)
    problems, notes = [], []
    bad = [m for m, n in sizes if n is None]
    if bad:
        problems.append("unreadable size: " + ", ".join(f"{m.key} {m.size!r}" for m in bad))
    need = sum(n for _, n in sizes if n is not None)
    probe = f.new_host
    free = probe.local_path_free_bytes if probe is not None else None
    where = (probe.local_path_dir if probe is not None else None) or LOCAL_PATH_DIR
    if probe is None:
        notes.append(f"disk check skipped: {t.distribution} reaches its hosts through its operator, not over SSH")
    elif free is None:
        problems.append(f"free space at {LOCAL_PATH_DIR} unobserved")
    elif free < need:
        problems.append(f"{_gib(need)} ({need} bytes) needed but {_gib(free)} ({free} bytes) free at {where}")
    else:
        notes.append(f"{_gib(need)} needed, {_gib(free)} free at {where}")
    moving = len({p for m in c.claims for p in m.pods})
    if not c.new_node_registered:
        notes.append(f"pod check skipped: {t.name} not registered yet (normal before the join)")
    elif c.allocatable_pods is None:
        problems.append(f"{t.name} reports no allocatable pods")
    elif c.allocatable_pods < c.running_pods + moving:
        problems.append(f"{t.name} allocatable pods {c.allocatable_pods} < {c.running_pods} running + {moving} moving")
    else:
        notes.append(f"pods {c.running_pods} running + {moving} moving <= {c.allocatable_pods} allocatable")
    value = f"from {c.old_node}: {listed}; " + "; ".join(problems + notes)
    return [Finding("pvc-capacity", t.ip, not problems, value, rule)]


K3S_CONFIG_RULE = ("the join copies the cluster-critical k3s server flags into config.yaml: they must be read from "
                   "a survivor (GET /v1-k3s/config through the VIP with the cluster token, as k3s does)")


def _k3s_config(f: PreflightFacts) -> list[Finding]:
    t, read = f.target, f.k3s_config
    if not needs_critical_config(t.distribution):
        return []
    if read is None:
        return [Finding("k3s-config", t.vip, False, "unobserved", K3S_CONFIG_RULE)]
    if read.config is None:
        return [Finding("k3s-config", t.vip, False, f"{read.url}: {read.error or 'no answer'}", K3S_CONFIG_RULE)]
    pinned = ("cluster CA pinned by the token's CA hash" if read.ca_pinned
              else "cluster CA not pinned: the token has no CA hash, or the CA is publicly trusted")
    lines = [line.replace('"', "") for line in config_lines(read.config) if not line.startswith(("  -", "disable:"))]
    shown = "; ".join(lines + ([f"disable: {', '.join(read.config.disable)}"] if read.config.disable else []))
    return [Finding("k3s-config", t.vip, True, f"read from {read.url} ({pinned}): {shown}", K3S_CONFIG_RULE)]


def decide_preflight(*, facts: PreflightFacts, limits: Limits) -> PreflightResult:
    """Every check's finding for one slot; ``failures`` are all of them at once."""
    t = facts.target
    findings: list[Finding] = []
    if facts.new_host is not None:
        findings += _ssh_findings(t, facts.new_host, check="ssh", who=f"the new host {t.name}")
    if facts.vip_host is not None:
        findings += _ssh_findings(t, facts.vip_host, check="vip-ssh", who="the VIP holder (where the join runs)")
    findings.append(Finding("api", t.vip, facts.api_error is None, facts.api_error or "answers",
                            "the Kubernetes API must answer through the VIP"))
    findings += _ocboot(facts)
    findings += _join_ssh(facts)
    findings += _kubean(facts)
    findings += _machine_api(facts)
    findings += _k3s_config(facts)
    if facts.new_host is not None and facts.new_host.error is None:
        findings.append(_identity(t, facts.new_host))
        findings += _installer(facts)
        findings += _ports(facts)
        findings.append(_disk(facts, limits))
        findings += _clock(facts, limits)
    if facts.new_host is None or facts.new_host.error is None:
        findings += _capacity(facts)
    findings.append(_cert(facts, limits))
    findings.append(_snapshot(facts, limits))
    read = facts.k3s_config
    block = (render_critical_block(config=read.config, source=read.url)
             if needs_critical_config(t.distribution) and read is not None and read.config is not None else "")
    return PreflightResult(slot=t.slot, findings=tuple(findings), k3s_block=block)


def target_for(*, model: StackModel, member: Member) -> Target:
    """The preflight's target for ``member`` of ``model`` (the same values the rendered step passes)."""
    return Target(slot=member.slot, distribution=model.distribution, name=member.host.name, ip=member.host.ip,
                  vip=model.endpoint.host, ocboot_workdir=model.ocboot.workdir if model.ocboot else None,
                  ocboot_version=model.ocboot.version if model.ocboot else None,
                  kubean_cluster=model.kubean.cluster if model.kubean else None,
                  kubean_image=model.kubean.image if model.kubean else None,
                  k3s_server=f"https://{model.endpoint}" if needs_critical_config(model.distribution) else None)


def needs_ssh(distribution: str) -> bool:
    """kubean and OpenShift reach hosts through their operators, not from the operator's machine."""
    return registry.get(distribution).preflight.ssh_new_host


def needs_vip_ssh(distribution: str) -> bool:
    """ocboot runs the join on the VIP holder; kubeadm prepares the join material there."""
    return registry.get(distribution).preflight.ssh_vip


def needs_critical_config(distribution: str) -> bool:
    """k3s: the cluster-critical server flags the join copies are read in the preflight."""
    return registry.get(distribution).preflight.critical_config
