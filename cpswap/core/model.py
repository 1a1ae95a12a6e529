"""The stack model: typed, validated control-plane membership parsed from stack config. Pure.

``parse_stack_config`` takes the config keys without the ``cpswap:`` prefix, with values already
decoded (objects as dicts), and returns a frozen ``StackModel`` or raises ``ConfigError`` with
every violation at once, each naming the field (``members.cp2.ip``), the value and the rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from shlex import quote
from typing import Any, Callable, Mapping

from cpswap.core import inputs
from cpswap.core.errors import ConfigError, Violation
from cpswap.core.recovery import ClaimPolicy, parse_pvc_recovery

DISTRIBUTIONS = ("ocboot", "k3s", "kubeadm", "kubean", "openshift")
SECRET_KEYS = ("sshPrivateKey", "kubeconfig", "etcdCaCert", "etcdClientCert", "etcdClientKey",
               "ocbootDbPassword", "k3sToken", "globalKubeconfig", "keepalivedAuthPass")
DESTROY_MODES = ("refuse", "release")  # what `pulumi destroy` does (docs/CONTRACTS.md, "Destroy")
KNOWN_KEYS = frozenset({"distribution", "controlPlaneEndpoint", "members", "ssh", "etcd", "observe", "destroyMode",
                        "ocboot", "kubeadm", "k3s", "kubean", "openshift", "vip", "pvcRecovery", *SECRET_KEYS})
KEEPALIVED_DISTRIBUTIONS = ("k3s", "kubeadm")  # ocboot configures keepalived itself; kubean/openshift bring their own
_SLOT = re.compile(r"[a-z][a-z0-9-]{0,30}")
_HOST_NETWORKS = re.compile(r"[A-Za-z0-9_.:-]+/[A-Za-z0-9_.:-]+/[0-9a-fA-F.:]+")


@dataclass(frozen=True)
class Host:
    """A machine holding a slot. ``rebuild`` counts in-place rebuilds of the same host (same name
    and IP, e.g. OpenShift's crashlooping etcd member): bumping it replaces the slot's member."""

    name: str
    ip: str
    rebuild: int = 0

    def __str__(self) -> str:
        return f"{self.name} ({self.ip}{f', rebuild {self.rebuild}' if self.rebuild else ''})"

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "ip": self.ip}
        if self.rebuild:
            doc["rebuild"] = self.rebuild
        return doc

    def triggers(self) -> tuple[str, ...]:
        return (self.name, self.ip, *((f"rebuild={self.rebuild}",) if self.rebuild else ()))


@dataclass(frozen=True)
class Member:
    """One slot of the control plane and the host that should hold it."""

    slot: str
    host: Host
    host_networks: str | None = None
    machine: str | None = None  # openshift: the Machine to create for a new host (else the next free name)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return inputs.host_port(self.host, self.port)


@dataclass(frozen=True)
class SshSettings:
    user: str = "root"
    port: int = 22


DEFAULT_SNAPSHOT_DIR = "$CPSWAP_STATE_DIR/snapshots, else ~/.local/state/cpswap/snapshots (0700, outside the repository)"
DEFAULT_SNAPSHOT_PATH = "~/.local/state/cpswap/snapshots"  # the default above without CPSWAP_STATE_DIR/XDG_STATE_HOME


@dataclass(frozen=True)
class EtcdSettings:
    preset: str = "env"
    client_port: int = 2379
    snapshot_dir: str | None = None  # None: the executor's private default (DEFAULT_SNAPSHOT_DIR)

    def snapshot_flag(self) -> str:
        """The executors' ``--snapshot-dir`` flag, or nothing for their private default."""
        return f" --snapshot-dir {quote(self.snapshot_dir)}" if self.snapshot_dir else ""

    def snapshot_where(self) -> str:
        return self.snapshot_dir or DEFAULT_SNAPSHOT_DIR


@dataclass(frozen=True)
class OcbootSettings:
    version: str
    db_host: str
    stack: str = "virt"
    db_user: str = "root"
    db_port: int = 3306
    image_repository: str = "registry.cn-beijing.aliyuncs.com/yunionio"
    as_host: bool = True
    enable_minio: bool = True
    high_availability: bool = True
    workdir: str = "ocboot"
    invocation: str = "install"  # `./ocboot.sh install <config>` or the seeds' `./ocboot.sh run.py <stack> <config>`


@dataclass(frozen=True)
class KubeadmSettings:
    cri_socket: str | None = None
    apiserver_bind_port: int = 6443


@dataclass(frozen=True)
class K3sSettings:
    data_dir: str = "/var/lib/rancher/k3s"


@dataclass(frozen=True)
class KubeanSettings:
    """kubean (DCE 5.0): the Cluster on the global cluster and the spray-job image used at deploy."""

    cluster: str
    image: str
    namespace: str = "kubean-system"


@dataclass(frozen=True)
class OpenshiftSettings:
    machine_namespace: str = "openshift-machine-api"
    etcd_namespace: str = "openshift-etcd"


@dataclass(frozen=True)
class VipSettings:
    """The keepalived VRRP instance that carries the control-plane endpoint (seed 002).

    ``priorities`` maps every slot to its keepalived priority; the highest is the MASTER priority.
    A host joining the MASTER slot gets a BACKUP priority below every survivor unless
    ``take_over_primary`` (then the VIP preempts to it once keepalived starts there)."""

    keepalived: bool = False
    interface: str = "eth0"
    instance: str = "VI_1"
    virtual_router_id: int = 51
    router_id: str = "cpswap"
    advert_int: int = 1
    priorities: tuple[tuple[str, int], ...] = ()
    take_over_primary: bool = False

    def priority(self, slot: str) -> int | None:
        return dict(self.priorities).get(slot)

    @property
    def master_slot(self) -> str | None:
        return max(self.priorities, key=lambda kv: (kv[1], kv[0]))[0] if self.priorities else None

    def joining_priority(self, slot: str) -> tuple[str, int]:
        """(state, priority) for a host joining ``slot``."""
        own = self.priority(slot) or 1
        if slot != self.master_slot:
            return "BACKUP", own
        if self.take_over_primary:
            return "MASTER", own
        others = [p for s, p in self.priorities if s != slot]
        return "BACKUP", max(1, min(others, default=own) - 10)


@dataclass(frozen=True)
class StackModel:
    stack: str
    distribution: str
    endpoint: Endpoint
    members: tuple[Member, ...]
    ssh: SshSettings = SshSettings()
    etcd: EtcdSettings = EtcdSettings()
    observe: bool = False
    destroy_mode: str = "refuse"  # refuse: `pulumi destroy` stops before touching the cluster; release: see CONTRACTS
    ocboot: OcbootSettings | None = None
    kubeadm: KubeadmSettings | None = None
    k3s: K3sSettings | None = None
    kubean: KubeanSettings | None = None
    openshift: OpenshiftSettings | None = None
    vip: VipSettings = VipSettings()
    pvc_policies: tuple[ClaimPolicy, ...] = ()

    def member(self, slot: str) -> Member:
        for m in self.members:
            if m.slot == slot:
                return m
        raise KeyError(slot)

    def hosts(self) -> dict[str, Host]:
        return {m.slot: m.host for m in self.members}


class _Collector:
    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def add(self, field: str, value: Any, rule: str) -> None:
        self.violations.append(Violation(field, str(value), rule))


def _checked(c: _Collector, field: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)`` (a cpswap.core.inputs validator), or None with the violation recorded."""
    try:
        return check(value)
    except inputs.InputError as exc:
        c.add(field, value, str(exc))
        return None


def _check_name(c: _Collector, field: str, value: Any) -> str | None:
    return _checked(c, field, value, lambda v: inputs.dns_name(v, what="host name"))


def _check_ip(c: _Collector, field: str, value: Any) -> str | None:
    return _checked(c, field, value, inputs.ip_address)


def _int(c: _Collector, field: str, value: Any, *, default: int, lo: int = 1, hi: int = 65535) -> int:
    if value is None:
        return default
    number = _checked(c, field, value, lambda v: inputs.integer(v, lo=lo, hi=hi))
    return default if number is None else number


def _fullmatch(pattern: str, value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


def _bool(c: _Collector, field: str, value: Any, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    c.add(field, value, "must be true or false")
    return default


def _obj(c: _Collector, field: str, value: Any, allowed: set[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add(field, value, "must be an object")
        return {}
    for key in sorted(set(value) - allowed):
        c.add(f"{field}.{key}", value[key], f"unknown key; allowed: {', '.join(sorted(allowed))}")
    return value


def _parse_endpoint(c: _Collector, value: Any) -> Endpoint:
    field = "controlPlaneEndpoint"
    if value is None or value == "":
        c.add(field, value, "required: the VIP as host:port, e.g. 192.168.0.66:6443")
        return Endpoint("", 0)
    parsed = _checked(c, field, value, inputs.split_host_port)
    return Endpoint(*parsed) if parsed else Endpoint("", 0)


def _parse_members(c: _Collector, raw: Any, endpoint: Endpoint) -> tuple[Member, ...]:
    if not isinstance(raw, Mapping) or not raw:
        c.add("members", raw, "required: an object keyed by slot, e.g. {cp1: {name, ip}, ...}")
        return ()
    members: list[Member] = []
    for slot, spec in sorted(raw.items(), key=lambda kv: str(kv[0])):
        field = f"members.{slot}"
        if not isinstance(slot, str) or not _SLOT.fullmatch(slot):
            c.add(field, slot, "slot names are lowercase letters, digits and '-', starting with a letter")
            continue
        spec = _obj(c, field, spec, {"name", "ip", "hostNetworks", "rebuild", "machine"})
        name = _check_name(c, f"{field}.name", spec.get("name"))
        ip = _check_ip(c, f"{field}.ip", spec.get("ip"))
        nets = spec.get("hostNetworks")
        if nets is not None and not (isinstance(nets, str) and _HOST_NETWORKS.fullmatch(nets)
                                     and inputs.is_ip(nets.rsplit("/", 1)[-1])):
            c.add(f"{field}.hostNetworks", nets, "must be <nic>/<bridge>/<ip>, e.g. eth0/br0/192.168.0.239")
            nets = None
        rebuild = _int(c, f"{field}.rebuild", spec.get("rebuild"), default=0, lo=0, hi=999)
        machine = spec.get("machine")
        if machine is not None:
            machine = _check_name(c, f"{field}.machine", machine)
        if name and ip:
            members.append(Member(slot=str(slot), host=Host(name=name, ip=ip, rebuild=rebuild),
                                  host_networks=nets, machine=machine))
    count = len(raw)
    if count < 3:
        c.add("members", count, f"an HA control plane needs at least 3 etcd voters; {count} given")
    elif count % 2 == 0:
        c.add("members", count, f"etcd voters must be an odd number (3, 5 or 7); {count} given "
                                f"tolerates no more failures than {count - 1}")
    elif count not in inputs.MEMBER_COUNTS:
        c.add("members", count, f"etcd voters must be 3, 5 or 7; {count} given (more voters slow every write "
                                f"and etcd advises at most 7)")
    _check_unique(c, members, endpoint)
    return tuple(members)


def _check_unique(c: _Collector, members: list[Member], endpoint: Endpoint) -> None:
    for attr in ("name", "ip"):
        seen: dict[str, str] = {}
        for m in members:
            value = getattr(m.host, attr)
            value = inputs.ip_address(value) if attr == "ip" else value
            if value in seen:
                c.add(f"members.{m.slot}.{attr}", value, f"{seen[value]} and {m.slot} both use {attr} {value}; "
                                                          f"each slot needs its own host")
            else:
                seen[value] = m.slot
    for m in members:
        if endpoint.host and (endpoint.host == m.host.name or inputs.same_address(endpoint.host, m.host.ip)):
            c.add(f"members.{m.slot}.ip", endpoint.host,
                  f"the control-plane endpoint (VIP) {endpoint} must not be a member; it floats between members")


def _parse_distribution(c: _Collector, raw: Any) -> str:
    if raw in DISTRIBUTIONS:
        return str(raw)
    c.add("distribution", raw, f"unknown distribution; use one of {', '.join(DISTRIBUTIONS)}")
    return str(raw)




def _parse_kubean(c: _Collector, raw: Any) -> KubeanSettings | None:
    spec = _obj(c, "kubean", raw, {"cluster", "image", "namespace"})
    if raw is None:
        c.add("kubean", None, "distribution kubean needs the kubean block (cluster, image)")
        return None
    cluster, image = spec.get("cluster"), spec.get("image")
    namespace = spec.get("namespace", KubeanSettings.namespace)
    _checked(c, "kubean.cluster", cluster,
             lambda v: inputs.dns_name(v, what="name of the clusters.kubean.io object"))
    if not isinstance(image, str) or not inputs.IMAGE.fullmatch(image):
        c.add("kubean.image", image, "must be the spray-job image used at deploy, with its tag or digest, "
                                     "e.g. ghcr.io/kubean-io/spray-job:v0.12.2")
    elif image.endswith(":latest"):
        c.add("kubean.image", image, "must be pinned to the image used at deploy, not :latest")
    if not isinstance(namespace, str) or not inputs.DNS1123_LABEL.fullmatch(namespace):
        c.add("kubean.namespace", namespace, "must be a namespace name (DNS-1123 label)")
    return KubeanSettings(cluster=str(cluster), image=str(image), namespace=str(namespace))


def _parse_openshift(c: _Collector, raw: Any) -> OpenshiftSettings:
    spec = _obj(c, "openshift", raw, {"machineNamespace", "etcdNamespace"})
    values = {}
    for key, attr in (("machineNamespace", "machine_namespace"), ("etcdNamespace", "etcd_namespace")):
        value = spec.get(key, getattr(OpenshiftSettings, attr))
        if not isinstance(value, str) or not inputs.DNS1123_LABEL.fullmatch(value):
            c.add(f"openshift.{key}", value, "must be a namespace name (DNS-1123 label)")
            value = getattr(OpenshiftSettings, attr)
        values[attr] = value
    return OpenshiftSettings(**values)


_VRRP_WORD = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _parse_vip(c: _Collector, raw: Any, *, distribution: str, members: tuple[Member, ...],
               endpoint: Endpoint) -> VipSettings:
    allowed = {"keepalived", "interface", "instance", "virtualRouterId", "routerId", "advertInt", "priorities",
               "takeOverPrimary"}
    spec = _obj(c, "vip", raw, allowed)
    keepalived = _bool(c, "vip.keepalived", spec.get("keepalived"), default=False)
    words = {}
    for key, default in (("interface", VipSettings.interface), ("instance", VipSettings.instance),
                         ("routerId", VipSettings.router_id)):
        value = spec.get(key, default)
        if not isinstance(value, str) or not _VRRP_WORD.fullmatch(value):
            c.add(f"vip.{key}", value, "must be 1-32 of [A-Za-z0-9_.-] (it is written into keepalived.conf)")
            value = default
        words[key] = value
    raw_prio = spec.get("priorities") or {}
    priorities: list[tuple[str, int]] = []
    if not isinstance(raw_prio, Mapping):
        c.add("vip.priorities", raw_prio, "must map every slot to its keepalived priority, e.g. {cp1: 100, cp2: 90}")
    else:
        for slot, value in sorted(raw_prio.items(), key=lambda kv: str(kv[0])):
            priorities.append((str(slot), _int(c, f"vip.priorities.{slot}", value, default=1, lo=1, hi=254)))
        slots = {m.slot for m in members}
        if priorities and {s for s, _ in priorities} != slots:
            c.add("vip.priorities", ", ".join(sorted(map(str, raw_prio))),
                  f"must name exactly the slots {', '.join(sorted(slots))}")
        values = [p for _, p in priorities]
        if len(values) != len(set(values)):
            c.add("vip.priorities", values, "priorities must be distinct so exactly one slot holds the MASTER priority")
    if keepalived and distribution not in KEEPALIVED_DISTRIBUTIONS:
        c.add("vip.keepalived", True, f"cpswap writes keepalived.conf only for {', '.join(KEEPALIVED_DISTRIBUTIONS)}; "
                                      f"{distribution} manages its own VIP (set vip.priorities only, for the plan)")
    if keepalived and not priorities:
        c.add("vip.priorities", None, "required with vip.keepalived: every slot's keepalived priority")
    if keepalived and endpoint.host and not inputs.is_ip(endpoint.host):
        c.add("controlPlaneEndpoint", str(endpoint), "with vip.keepalived the endpoint host must be the VIP's IP "
                                                     "address (keepalived's virtual_ipaddress takes no DNS name)")
    return VipSettings(
        keepalived=keepalived, interface=words["interface"], instance=words["instance"], router_id=words["routerId"],
        virtual_router_id=_int(c, "vip.virtualRouterId", spec.get("virtualRouterId"), default=51, lo=1, hi=255),
        advert_int=_int(c, "vip.advertInt", spec.get("advertInt"), default=1, lo=1, hi=255),
        priorities=tuple(priorities),
        take_over_primary=_bool(c, "vip.takeOverPrimary", spec.get("takeOverPrimary"), default=False))


def _parse_ocboot(c: _Collector, raw: Any) -> OcbootSettings | None:
    allowed = {"version", "stack", "dbHost", "dbUser", "dbPort", "imageRepository", "asHost",
               "enableMinio", "highAvailability", "workdir", "invocation"}
    spec = _obj(c, "ocboot", raw, allowed)
    if raw is None:
        c.add("ocboot", None, "distribution ocboot needs the ocboot block (version, dbHost, ...)")
        return None
    version, db_host = spec.get("version"), spec.get("dbHost")
    if not _fullmatch(r"v?[0-9]+\.[0-9]+(\.[0-9]+)?", version):
        c.add("ocboot.version", version, "must be a Cloudpods version such as v3.11.9")
    if _check_ip(c, "ocboot.dbHost", db_host) is None:
        db_host = None
    stack = spec.get("stack", "virt")
    if stack not in ("full", "cmp", "virt", "light-virt", "ai"):
        c.add("ocboot.stack", stack, "must be one of full, cmp, virt, light-virt, ai")
    user = spec.get("dbUser", "root")
    if not _fullmatch(r"[A-Za-z0-9_]{1,32}", user):
        c.add("ocboot.dbUser", user, "must be a database user name ([A-Za-z0-9_], up to 32)")
    repo = spec.get("imageRepository", OcbootSettings.image_repository)
    if not _fullmatch(r"[A-Za-z0-9._:/-]+", repo):
        c.add("ocboot.imageRepository", repo, "must be a registry path such as registry.cn-beijing.aliyuncs.com/yunionio")
    workdir = spec.get("workdir", "ocboot")
    if not _fullmatch(r"[A-Za-z0-9._/-]+", workdir) or workdir.startswith("/"):
        c.add("ocboot.workdir", workdir, "must be a relative directory (on the survivor) holding ocboot.sh")
    invocation = spec.get("invocation", "install")
    if invocation not in ("install", "run.py"):
        c.add("ocboot.invocation", invocation,
              "must be install (./ocboot.sh install <config>) or run.py (./ocboot.sh run.py <stack> <config>)")
    return OcbootSettings(
        version=str(version), db_host=str(db_host), stack=str(stack), db_user=str(user),
        db_port=_int(c, "ocboot.dbPort", spec.get("dbPort"), default=3306),
        image_repository=str(repo), workdir=str(workdir), invocation=str(invocation),
        as_host=_bool(c, "ocboot.asHost", spec.get("asHost"), default=True),
        enable_minio=_bool(c, "ocboot.enableMinio", spec.get("enableMinio"), default=True),
        high_availability=_bool(c, "ocboot.highAvailability", spec.get("highAvailability"), default=True))


def _parse_kubeadm(c: _Collector, raw: Any) -> KubeadmSettings:
    spec = _obj(c, "kubeadm", raw, {"criSocket", "apiserverBindPort"})
    cri = spec.get("criSocket")
    if cri is not None and not (_fullmatch(r"unix:///[A-Za-z0-9._/-]+", cri)):
        c.add("kubeadm.criSocket", cri, "must be a unix:/// socket path")
        cri = None
    return KubeadmSettings(cri_socket=cri, apiserver_bind_port=_int(
        c, "kubeadm.apiserverBindPort", spec.get("apiserverBindPort"), default=6443))


def _parse_k3s(c: _Collector, raw: Any) -> K3sSettings:
    spec = _obj(c, "k3s", raw, {"dataDir"})
    data_dir = spec.get("dataDir", K3sSettings.data_dir)
    if not _fullmatch(r"/[A-Za-z0-9._/-]+", data_dir) or ".." in data_dir.split("/"):
        c.add("k3s.dataDir", data_dir, "must be an absolute path without shell metacharacters")
        data_dir = K3sSettings.data_dir
    return K3sSettings(data_dir=data_dir)


def _parse_etcd(c: _Collector, raw: Any) -> EtcdSettings:
    spec = _obj(c, "etcd", raw, {"preset", "clientPort", "snapshotDir"})
    preset = spec.get("preset", "env")
    if preset not in ("env", "k3s", "kubeadm"):
        c.add("etcd.preset", preset, "must be env (from secret stack config), k3s or kubeadm")
    snap = spec.get("snapshotDir", EtcdSettings.snapshot_dir)
    if snap is not None and (not _fullmatch(r"(~/)?[A-Za-z0-9._/-]+", snap) or snap.startswith("/")
                             or ".." in snap.split("/")):
        c.add("etcd.snapshotDir", snap, "must be a relative directory or one under ~/ on the operator's machine, "
                                        "without '..' (state holds no absolute paths); it is kept private (0700)")
        snap = EtcdSettings.snapshot_dir
    return EtcdSettings(preset=str(preset), snapshot_dir=snap,
                        client_port=_int(c, "etcd.clientPort", spec.get("clientPort"), default=2379))


def _parse_ssh(c: _Collector, raw: Any) -> SshSettings:
    spec = _obj(c, "ssh", raw, {"user", "port"})
    user = spec.get("user", "root")
    if not _fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        c.add("ssh.user", user, "must be a POSIX user name")
        user = "root"
    return SshSettings(user=user, port=_int(c, "ssh.port", spec.get("port"), default=22))


def _parse_destroy_mode(c: _Collector, value: Any) -> str:
    if value is None:
        return "refuse"
    if value not in DESTROY_MODES:
        c.add("destroyMode", value, f"must be one of {', '.join(DESTROY_MODES)} (refuse: `pulumi destroy` stops "
                                    "before touching the cluster; release: it forgets the cluster and leaves it running)")
        return "refuse"
    return str(value)


def parse_stack_config(values: Mapping[str, Any], *, stack: str) -> StackModel:
    """Validate the whole stack config; raise ConfigError listing every violation."""
    c = _Collector()
    for key in sorted(set(values) - KNOWN_KEYS):
        c.add(key, "…", f"unknown config key cpswap:{key}")
    distribution = _parse_distribution(c, values.get("distribution"))
    endpoint = _parse_endpoint(c, values.get("controlPlaneEndpoint"))
    members = _parse_members(c, values.get("members"), endpoint)
    policies, problems = parse_pvc_recovery(values.get("pvcRecovery"))
    c.violations.extend(problems)
    model = StackModel(
        stack=stack, distribution=distribution, endpoint=endpoint, members=members,
        ssh=_parse_ssh(c, values.get("ssh")), etcd=_parse_etcd(c, values.get("etcd")),
        observe=_bool(c, "observe", values.get("observe"), default=False),
        destroy_mode=_parse_destroy_mode(c, values.get("destroyMode")),
        ocboot=_parse_ocboot(c, values.get("ocboot")) if distribution == "ocboot" else None,
        kubeadm=_parse_kubeadm(c, values.get("kubeadm")) if distribution == "kubeadm" else None,
        k3s=_parse_k3s(c, values.get("k3s")) if distribution in ("k3s", "ocboot") else None,
        kubean=_parse_kubean(c, values.get("kubean")) if distribution == "kubean" else None,
        openshift=_parse_openshift(c, values.get("openshift")) if distribution == "openshift" else None,
        vip=_parse_vip(c, values.get("vip"), distribution=distribution, members=members, endpoint=endpoint),
        pvc_policies=policies)
    for key, needs in (("kubean", "kubean"), ("openshift", "openshift"), ("ocboot", "ocboot"), ("kubeadm", "kubeadm")):
        if key in values and distribution != needs and distribution in DISTRIBUTIONS:
            c.add(key, "…", f"the {key} block applies to distribution {needs}, not {distribution}")
    for m in members:
        job = len(f"kubean-cpswap-{m.slot}-remove-{m.host.name}-r{m.host.rebuild}-job")
        if distribution == "kubean" and job > 63:
            c.add(f"members.{m.slot}.name", m.host.name,
                  f"kubean names the Job kubean-cpswap-{m.slot}-remove-<name>[-rN]-job, which must fit 63 "
                  f"characters ({job} here); use a shorter slot or host name")
        if m.machine and distribution != "openshift":
            c.add(f"members.{m.slot}.machine", m.machine, "machine names apply to distribution openshift only")
        if m.host.rebuild and distribution not in ("openshift", "kubeadm", "kubean"):
            c.add(f"members.{m.slot}.rebuild", m.host.rebuild,
                  f"in-place rebuilds of the same host are supported for openshift, kubeadm and kubean, not {distribution}")
    if c.violations:
        raise ConfigError(c.violations)
    return model


def parse_applied_membership(raw: Any, *, where: str, endpoint: Endpoint) -> dict[str, Host]:
    """A recorded membership (the ``membership`` a deployment exported), validated as strictly as
    the stack file's ``members``: slot names, DNS-1123 names, IPs, an odd count of at least 3,
    unique names and IPs, not the VIP. Every violation is reported, prefixed with ``where``."""
    c = _Collector()
    members = _parse_members(c, raw, endpoint)
    if c.violations:
        raise ConfigError([Violation(f"{where}.{v.field}", v.value, v.rule) for v in c.violations])
    return {m.slot: m.host for m in members}
