"""The stack model: typed, validated control-plane membership parsed from stack config. Pure.

``parse_stack_config`` takes the config keys without the ``cpswap:`` prefix, with values already
decoded (objects as dicts), and returns a frozen ``StackModel`` or raises ``ConfigError`` with
every violation at once, each naming the field (``members.cp2.ip``), the value and the rule.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping

from cpswap.core.errors import ConfigError, Violation
from cpswap.core.recovery import ClaimPolicy, parse_pvc_recovery

DISTRIBUTIONS = ("ocboot", "k3s", "kubeadm")
RESERVED_DISTRIBUTIONS = ("kubean", "openshift")
SECRET_KEYS = ("sshPrivateKey", "kubeconfig", "etcdCaCert", "etcdClientCert", "etcdClientKey",
               "ocbootDbPassword", "k3sToken")
KNOWN_KEYS = frozenset({"distribution", "controlPlaneEndpoint", "members", "ssh", "etcd", "observe",
                        "ocboot", "kubeadm", "k3s", "pvcRecovery", *SECRET_KEYS})
_SLOT = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SHELL_META = set(";&|$`\\\"'<>()*?[]{}!#~ \t\n")
_HOST_NETWORKS = re.compile(r"^[A-Za-z0-9_.:-]+/[A-Za-z0-9_.:-]+/[0-9a-fA-F.:]+$")


@dataclass(frozen=True)
class Host:
    name: str
    ip: str

    def __str__(self) -> str:
        return f"{self.name} ({self.ip})"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "ip": self.ip}


@dataclass(frozen=True)
class Member:
    """One slot of the control plane and the host that should hold it."""

    slot: str
    host: Host
    host_networks: str | None = None


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SshSettings:
    user: str = "root"
    port: int = 22


@dataclass(frozen=True)
class EtcdSettings:
    preset: str = "env"
    client_port: int = 2379
    snapshot_dir: str = ".cpswap/snapshots"


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


@dataclass(frozen=True)
class KubeadmSettings:
    cri_socket: str | None = None
    apiserver_bind_port: int = 6443


@dataclass(frozen=True)
class K3sSettings:
    data_dir: str = "/var/lib/rancher/k3s"


@dataclass(frozen=True)
class StackModel:
    stack: str
    distribution: str
    endpoint: Endpoint
    members: tuple[Member, ...]
    ssh: SshSettings = SshSettings()
    etcd: EtcdSettings = EtcdSettings()
    observe: bool = False
    ocboot: OcbootSettings | None = None
    kubeadm: KubeadmSettings | None = None
    k3s: K3sSettings | None = None
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


def _check_name(c: _Collector, field: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        c.add(field, value, "a host name is required (lowercase DNS-1123)")
        return None
    meta = sorted(set(value) & _SHELL_META)
    if meta:
        c.add(field, value, f"contains shell metacharacter(s) {' '.join(meta)}; names must be lowercase DNS-1123")
        return None
    if not _NAME.match(value):
        c.add(field, value, "must be a lowercase DNS-1123 name (a-z, 0-9, '-', '.'; starts and ends alphanumeric)")
        return None
    return value


def _check_ip(c: _Collector, field: str, value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        c.add(field, value, "must be an IPv4 or IPv6 address")
        return None


def _int(c: _Collector, field: str, value: Any, *, default: int, lo: int = 1, hi: int = 65535) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        c.add(field, value, f"must be an integer in {lo}..{hi}")
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        c.add(field, value, f"must be an integer in {lo}..{hi}")
        return default
    if not lo <= number <= hi:
        c.add(field, value, f"must be an integer in {lo}..{hi}")
        return default
    return number


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
    if not isinstance(value, str) or not value:
        c.add(field, value, "required: the VIP as host:port, e.g. 192.168.0.66:6443")
        return Endpoint("", 0)
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        c.add(field, value, "must be host:port, e.g. 192.168.0.66:6443")
        return Endpoint(value, 0)
    host = host.strip("[]")
    if set(host) & _SHELL_META:
        c.add(field, value, "host contains shell metacharacters")
        return Endpoint("", 0)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _NAME.match(host):
            c.add(field, value, "host must be an IP address or a DNS name")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        c.add(field, value, "port must be an integer in 1..65535")
        return Endpoint(host, 0)
    return Endpoint(host, int(port))


def _parse_members(c: _Collector, raw: Any, endpoint: Endpoint) -> tuple[Member, ...]:
    if not isinstance(raw, Mapping) or not raw:
        c.add("members", raw, "required: an object keyed by slot, e.g. {cp1: {name, ip}, ...}")
        return ()
    members: list[Member] = []
    for slot, spec in sorted(raw.items(), key=lambda kv: str(kv[0])):
        field = f"members.{slot}"
        if not _SLOT.match(str(slot)):
            c.add(field, slot, "slot names are lowercase letters, digits and '-', starting with a letter")
            continue
        spec = _obj(c, field, spec, {"name", "ip", "hostNetworks"})
        name = _check_name(c, f"{field}.name", spec.get("name"))
        ip = _check_ip(c, f"{field}.ip", spec.get("ip"))
        nets = spec.get("hostNetworks")
        if nets is not None and not (isinstance(nets, str) and _HOST_NETWORKS.match(nets)):
            c.add(f"{field}.hostNetworks", nets, "must be <nic>/<bridge>/<ip>, e.g. eth0/br0/192.168.0.239")
            nets = None
        if name and ip:
            members.append(Member(slot=str(slot), host=Host(name=name, ip=ip), host_networks=nets))
    count = len(raw)
    if count < 3:
        c.add("members", count, f"an HA control plane needs at least 3 etcd voters; {count} given")
    elif count % 2 == 0:
        c.add("members", count, f"etcd voters must be an odd number (3, 5 or 7); {count} given "
                                f"tolerates no more failures than {count - 1}")
    _check_unique(c, members, endpoint)
    return tuple(members)


def _check_unique(c: _Collector, members: list[Member], endpoint: Endpoint) -> None:
    for attr in ("name", "ip"):
        seen: dict[str, str] = {}
        for m in members:
            value = getattr(m.host, attr)
            if value in seen:
                c.add(f"members.{m.slot}.{attr}", value, f"{seen[value]} and {m.slot} both use {attr} {value}; "
                                                          f"each slot needs its own host")
            else:
                seen[value] = m.slot
    for m in members:
        if endpoint.host and endpoint.host in (m.host.ip, m.host.name):
            c.add(f"members.{m.slot}.ip", endpoint.host,
                  f"the control-plane endpoint (VIP) {endpoint} must not be a member; it floats between members")


def _parse_distribution(c: _Collector, raw: Any) -> str:
    if raw in DISTRIBUTIONS:
        return str(raw)
    if raw in RESERVED_DISTRIBUTIONS:
        c.add("distribution", raw, f"{raw} is reserved and not supported yet; use one of {', '.join(DISTRIBUTIONS)}")
    else:
        c.add("distribution", raw, f"unknown distribution; use one of {', '.join(DISTRIBUTIONS)}")
    return str(raw)


def _parse_ocboot(c: _Collector, raw: Any) -> OcbootSettings | None:
    allowed = {"version", "stack", "dbHost", "dbUser", "dbPort", "imageRepository", "asHost",
               "enableMinio", "highAvailability", "workdir"}
    spec = _obj(c, "ocboot", raw, allowed)
    if raw is None:
        c.add("ocboot", None, "distribution ocboot needs the ocboot block (version, dbHost, ...)")
        return None
    version, db_host = spec.get("version"), spec.get("dbHost")
    if not isinstance(version, str) or not re.match(r"^v?\d+\.\d+(\.\d+)?$", version):
        c.add("ocboot.version", version, "must be a Cloudpods version such as v3.11.9")
    if _check_ip(c, "ocboot.dbHost", db_host) is None:
        db_host = None
    stack = spec.get("stack", "virt")
    if stack not in ("full", "cmp", "virt", "light-virt", "ai"):
        c.add("ocboot.stack", stack, "must be one of full, cmp, virt, light-virt, ai")
    user = spec.get("dbUser", "root")
    if not isinstance(user, str) or not re.match(r"^[A-Za-z0-9_]{1,32}$", user):
        c.add("ocboot.dbUser", user, "must be a database user name ([A-Za-z0-9_], up to 32)")
    repo = spec.get("imageRepository", OcbootSettings.image_repository)
    if not isinstance(repo, str) or not re.match(r"^[A-Za-z0-9._:/-]+$", repo):
        c.add("ocboot.imageRepository", repo, "must be a registry path such as registry.cn-beijing.aliyuncs.com/yunionio")
    workdir = spec.get("workdir", "ocboot")
    if not isinstance(workdir, str) or not re.match(r"^[A-Za-z0-9._/-]+$", workdir) or workdir.startswith("/"):
        c.add("ocboot.workdir", workdir, "must be a relative directory (on the survivor) holding ocboot.sh")
    return OcbootSettings(
        version=str(version), db_host=str(db_host), stack=str(stack), db_user=str(user),
        db_port=_int(c, "ocboot.dbPort", spec.get("dbPort"), default=3306),
        image_repository=str(repo), workdir=str(workdir),
        as_host=_bool(c, "ocboot.asHost", spec.get("asHost"), default=True),
        enable_minio=_bool(c, "ocboot.enableMinio", spec.get("enableMinio"), default=True),
        high_availability=_bool(c, "ocboot.highAvailability", spec.get("highAvailability"), default=True))


def _parse_kubeadm(c: _Collector, raw: Any) -> KubeadmSettings:
    spec = _obj(c, "kubeadm", raw, {"criSocket", "apiserverBindPort"})
    cri = spec.get("criSocket")
    if cri is not None and not (isinstance(cri, str) and re.match(r"^unix:///[A-Za-z0-9._/-]+$", cri)):
        c.add("kubeadm.criSocket", cri, "must be a unix:/// socket path")
        cri = None
    return KubeadmSettings(cri_socket=cri, apiserver_bind_port=_int(
        c, "kubeadm.apiserverBindPort", spec.get("apiserverBindPort"), default=6443))


def _parse_k3s(c: _Collector, raw: Any) -> K3sSettings:
    spec = _obj(c, "k3s", raw, {"dataDir"})
    data_dir = spec.get("dataDir", K3sSettings.data_dir)
    if not isinstance(data_dir, str) or not re.match(r"^/[A-Za-z0-9._/-]+$", data_dir):
        c.add("k3s.dataDir", data_dir, "must be an absolute path without shell metacharacters")
        data_dir = K3sSettings.data_dir
    return K3sSettings(data_dir=data_dir)


def _parse_etcd(c: _Collector, raw: Any) -> EtcdSettings:
    spec = _obj(c, "etcd", raw, {"preset", "clientPort", "snapshotDir"})
    preset = spec.get("preset", "env")
    if preset not in ("env", "k3s", "kubeadm"):
        c.add("etcd.preset", preset, "must be env (from secret stack config), k3s or kubeadm")
    snap = spec.get("snapshotDir", EtcdSettings.snapshot_dir)
    if not isinstance(snap, str) or not re.match(r"^[A-Za-z0-9._/-]+$", snap) or snap.startswith("/"):
        c.add("etcd.snapshotDir", snap, "must be a relative directory on the operator's machine (state holds no absolute paths)")
        snap = EtcdSettings.snapshot_dir
    return EtcdSettings(preset=str(preset), snapshot_dir=snap,
                        client_port=_int(c, "etcd.clientPort", spec.get("clientPort"), default=2379))


def _parse_ssh(c: _Collector, raw: Any) -> SshSettings:
    spec = _obj(c, "ssh", raw, {"user", "port"})
    user = spec.get("user", "root")
    if not isinstance(user, str) or not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user):
        c.add("ssh.user", user, "must be a POSIX user name")
        user = "root"
    return SshSettings(user=user, port=_int(c, "ssh.port", spec.get("port"), default=22))


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
        ocboot=_parse_ocboot(c, values.get("ocboot")) if distribution == "ocboot" else None,
        kubeadm=_parse_kubeadm(c, values.get("kubeadm")) if distribution == "kubeadm" else None,
        k3s=_parse_k3s(c, values.get("k3s")) if distribution in ("k3s", "ocboot") else None,
        pvc_policies=policies)
    if c.violations:
        raise ConfigError(c.violations)
    return model
