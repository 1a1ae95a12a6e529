"""The stack model: typed, validated control-plane membership parsed from stack config. Pure.

``parse_stack_config`` takes the config keys without the ``cpswap:`` prefix, with values already
decoded (objects as dicts), and returns a frozen ``StackModel`` or raises ``ConfigError`` with
every violation at once, each naming the field (``members.cp2.ip``), the value and the rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from shlex import quote
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from cpswap import distributions as registry
from cpswap.core import inputs
from cpswap.core.errors import ConfigError, Violation
from cpswap.core.recovery import ClaimPolicy, parse_pvc_recovery

DISTRIBUTIONS = registry.KNOWN
COMMON_SECRET_KEYS = ("sshPrivateKey", "kubeconfig", "etcdCaCert", "etcdClientCert", "etcdClientKey")
KEEPALIVED_SECRET_KEYS = ("keepalivedAuthPass",)
DESTROY_MODES = ("refuse", "release")  # what `pulumi destroy` does (docs/CONTRACTS.md, "Destroy")
COMMON_KEYS = ("distribution", "controlPlaneEndpoint", "members", "ssh", "etcd", "observe", "destroyMode", "vip",
               "pvcRecovery", "strategy")
STRATEGIES = ("auto", "surge", "replace")  # how a swap runs (cpswap.core.strategy); auto decides per swap
OBJECT_KEYS = ("members", "ssh", "etcd", "vip", "pvcRecovery")  # besides the distributions' blocks


def secret_keys() -> tuple[str, ...]:
    """Every secret config key: the common ones, every distribution's own, the keepalived password."""
    return (*COMMON_SECRET_KEYS, *registry.distribution_secrets(), *KEEPALIVED_SECRET_KEYS)


def block_keys() -> tuple[str, ...]:
    """Every distribution's config block (``cpswap:<key>``, an object)."""
    return tuple(registry.block_owners())


def known_keys() -> frozenset[str]:
    return frozenset({*COMMON_KEYS, *block_keys(), *secret_keys()})


def keepalived_distributions() -> tuple[str, ...]:
    """The distributions whose keepalived.conf cpswap writes (the others manage their own VIP)."""
    return tuple(d.name for d in registry.every() if d.keepalived)
_T = TypeVar("_T")
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
    strategy: str | None = None  # auto | surge | replace for a swap of this slot; None: the stack's default


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
    blocks: tuple[tuple[str, object], ...] = ()  # the distribution's config blocks, parsed by its module
    strategy: str = "auto"  # the stack's default swap strategy (members.<slot>.strategy overrides it)
    vip: VipSettings = VipSettings()
    pvc_policies: tuple[ClaimPolicy, ...] = ()

    def block(self, key: str) -> object | None:
        """The parsed ``cpswap:<key>`` block of the distribution, None when it reads no such block."""
        return dict(self.blocks).get(key)

    def _typed(self, key: str, kind: type[_T]) -> _T | None:
        value = self.block(key)
        return value if isinstance(value, kind) else None

    @property
    def ocboot(self) -> OcbootSettings | None:
        return self._typed("ocboot", OcbootSettings)

    @property
    def kubeadm(self) -> KubeadmSettings | None:
        return self._typed("kubeadm", KubeadmSettings)

    @property
    def k3s(self) -> K3sSettings | None:
        return self._typed("k3s", K3sSettings)

    @property
    def kubean(self) -> KubeanSettings | None:
        return self._typed("kubean", KubeanSettings)

    @property
    def openshift(self) -> OpenshiftSettings | None:
        return self._typed("openshift", OpenshiftSettings)

    @property
    def distro(self) -> registry.Distribution:
        """The distribution's module (cpswap/distributions), asked instead of branching on its name."""
        return registry.get(self.distribution)

    def member(self, slot: str) -> Member:
        for m in self.members:
            if m.slot == slot:
                return m
        raise KeyError(slot)

    def hosts(self) -> dict[str, Host]:
        return {m.slot: m.host for m in self.members}

    def requested_strategy(self, slot: str) -> tuple[str, str]:
        """(auto | surge | replace, where it was set) for a swap of ``slot``."""
        own = self.member(slot).strategy
        if own is not None:
            return own, f"members.{slot}.strategy"
        return self.strategy, "strategy" if self.strategy != "auto" else "the default (auto)"


class _Collector:
    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def add(self, field: str, value: Any, rule: str) -> None:
        self.violations.append(Violation(field, str(value), rule))


def _checked(c: _Collector, field: str, value: Any, check: Callable[[Any], _T]) -> _T | None:
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
        spec = _obj(c, field, spec, {"name", "ip", "hostNetworks", "rebuild", "machine", "strategy"})
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
        strategy = spec.get("strategy")
        if strategy is not None:
            strategy = _parse_strategy(c, f"{field}.strategy", strategy)
        if name and ip:
            members.append(Member(slot=str(slot), host=Host(name=name, ip=ip, rebuild=rebuild),
                                  host_networks=nets, machine=machine, strategy=strategy))
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


def _parse_distribution(c: _Collector, raw: Any) -> registry.Distribution | None:
    try:
        return registry.get(raw)
    except registry.UnknownDistribution:
        c.add("distribution", raw, f"unknown distribution; use one of {', '.join(DISTRIBUTIONS)}")
        return None


def _parse_blocks(c: _Collector, values: Mapping[str, Any],
                  dist: registry.Distribution | None) -> tuple[tuple[str, object], ...]:
    """The distribution's own blocks, each validated by its module; a block of another one is refused."""
    if dist is None:
        return ()
    for key, owners in registry.block_owners().items():
        if key in values and key not in dist.block_keys:
            c.add(key, "…", f"the {key} block applies to distribution {' or '.join(owners)}, not {dist.name}")
    return tuple((b.key, b.parse(c, values.get(b.key))) for b in dist.blocks)




_VRRP_WORD = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _parse_vip(c: _Collector, raw: Any, *, dist: registry.Distribution | None, members: tuple[Member, ...],
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
    if keepalived and dist is not None and not dist.keepalived:
        c.add("vip.keepalived", True, f"cpswap writes keepalived.conf only for {', '.join(keepalived_distributions())}; "
                                      f"{dist.name} manages its own VIP (set vip.priorities only, for the plan)")
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


def _parse_etcd(c: _Collector, raw: Any) -> EtcdSettings:
    spec = _obj(c, "etcd", raw, {"preset", "clientPort", "snapshotDir"})
    preset = spec.get("preset", "env")
    presets = tuple(registry.etcd_presets())
    if preset not in ("env", *presets):
        c.add("etcd.preset", preset, f"must be env (from secret stack config) or a distribution's files: "
                                     f"{' or '.join(presets)}")
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


def _parse_strategy(c: _Collector, field: str, value: Any) -> str:
    if value is None:
        return "auto"
    if value not in STRATEGIES:
        c.add(field, value, "must be one of auto (surge when it is safe, else replace), surge (add the new member "
                            "before removing the old one) or replace (remove first)")
        return "auto"
    return str(value)


def parse_stack_config(values: Mapping[str, Any], *, stack: str) -> StackModel:
    """Validate the whole stack config; raise ConfigError listing every violation."""
    c = _Collector()
    for key in sorted(set(values) - known_keys()):
        c.add(key, "…", f"unknown config key cpswap:{key}")
    dist = _parse_distribution(c, values.get("distribution"))
    endpoint = _parse_endpoint(c, values.get("controlPlaneEndpoint"))
    members = _parse_members(c, values.get("members"), endpoint)
    policies, problems = parse_pvc_recovery(values.get("pvcRecovery"))
    c.violations.extend(problems)
    model = StackModel(
        stack=stack, distribution=str(values.get("distribution")), endpoint=endpoint, members=members,
        ssh=_parse_ssh(c, values.get("ssh")), etcd=_parse_etcd(c, values.get("etcd")),
        observe=_bool(c, "observe", values.get("observe"), default=False),
        destroy_mode=_parse_destroy_mode(c, values.get("destroyMode")),
        blocks=_parse_blocks(c, values, dist),
        vip=_parse_vip(c, values.get("vip"), dist=dist, members=members, endpoint=endpoint),
        strategy=_parse_strategy(c, "strategy", values.get("strategy")),
        pvc_policies=policies)
    if dist is not None:
        _check_members_for(c, members, dist)
    if c.violations:
        raise ConfigError(c.violations)
    return model


def _check_members_for(c: _Collector, members: tuple[Member, ...], dist: registry.Distribution) -> None:
    """What the distribution allows of a member: its own rules, a Machine name, an in-place rebuild."""
    rebuilds = ", ".join(d.name for d in registry.every() if d.rebuild_in_place)
    machines = ", ".join(d.name for d in registry.every() if d.machine_names)
    for m in members:
        c.violations.extend(dist.member_rules(m))
        if m.machine and not dist.machine_names:
            c.add(f"members.{m.slot}.machine", m.machine, f"machine names apply to distribution {machines} only")
        if m.host.rebuild and not dist.rebuild_in_place:
            c.add(f"members.{m.slot}.rebuild", m.host.rebuild,
                  f"in-place rebuilds of the same host are supported for {rebuilds}, not {dist.name}")


def parse_applied_membership(raw: Any, *, where: str, endpoint: Endpoint) -> dict[str, Host]:
    """A recorded membership (the ``membership`` a deployment exported), validated as strictly as
    the stack file's ``members``: slot names, DNS-1123 names, IPs, an odd count of at least 3,
    unique names and IPs, not the VIP. Every violation is reported, prefixed with ``where``."""
    c = _Collector()
    members = _parse_members(c, raw, endpoint)
    if c.violations:
        raise ConfigError([Violation(f"{where}.{v.field}", v.value, v.rule) for v in c.violations])
    return {m.slot: m.host for m in members}
