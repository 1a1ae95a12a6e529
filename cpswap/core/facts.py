"""Observed facts: what the live cluster looked like when it was read. Pure data.

Executors (cpswap.executors.etcd / .kube) build these objects; the planner and the impact
report consume them. Nothing here talks to anything. A fact set that could not be read is
still a value: ``reachable=False`` with ``error`` saying why, and the plan is then marked
unobserved instead of failing.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit


def url_host(url: str) -> str:
    """Host part of an etcd peer/client URL (``https://10.0.0.1:2380`` → ``10.0.0.1``)."""
    return urlsplit(url).hostname or ""


def member_matches(*, member_name: str, member_ip: str, name: str, ip: str) -> bool:
    """True if the etcd member ``member_name``/``member_ip`` is exactly host ``name``/``ip``'s: the
    IPs are equal (canonically) AND the name is ``name`` under the k3s rule (``member_name_is``);
    a member added but not started has no name yet, and its peer URL alone identifies it."""
    return same_ip(member_ip, ip) and (not member_name or member_name_is(member_name, name))


@dataclass(frozen=True)
class EtcdMember:
    """One etcd member as ``member list`` reports it, plus health when it was probed."""

    id: int
    name: str  # "" while a member is added but not started (etcd's own convention)
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool
    healthy: bool | None = None  # None: not probed
    raft_index: int | None = None

    @property
    def started(self) -> bool:
        return bool(self.name) and bool(self.client_urls)

    @property
    def ip(self) -> str:
        return url_host(self.peer_urls[0]) if self.peer_urls else ""

    def matches(self, *, name: str, ip: str) -> bool:
        """True if this member is exactly host ``name``/``ip``'s: its peer URL host is ``ip``
        (compared canonically) and its name is ``name`` under the k3s rule (k3s names members
        ``<hostname>-<8 hex>``; kubeadm, ocboot's etcd and OpenShift name them after the host).
        A member added but not started has no name yet: its peer URL alone identifies it."""
        return member_matches(member_name=self.name, member_ip=self.ip, name=name, ip=ip)

    def related(self, *, name: str, ip: str) -> bool:
        """True if the name or the IP points at host ``name``/``ip`` (one of them may be a typo)."""
        return same_ip(self.ip, ip) or (bool(self.name) and member_name_is(self.name, name))

    def describe(self) -> str:
        return (f"{self.id:x} {self.name or '(unstarted)'} {','.join(self.peer_urls) or '-'}"
                f"{' learner' if self.is_learner else ''}")


def canonical_ip(text: str) -> str | None:
    """The canonical spelling of an IP (``::ffff:10.0.0.1`` is ``10.0.0.1``), or None if it is none.
    Zone ids (``fe80::1%eth0``) are not an address of a member."""
    try:
        address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def same_ip(a: str, b: str) -> bool:
    ca, cb = canonical_ip(a), canonical_ip(b)
    return ca is not None and ca == cb


def member_name_is(member_name: str, node: str) -> bool:
    """k3s names etcd members ``<node>-<8 hex>``; the others use the node name itself."""
    if not node or not member_name:
        return False
    if member_name == node:
        return True
    prefix, _, suffix = member_name.rpartition("-")
    return prefix == node and len(suffix) == 8 and all(c in "0123456789abcdef" for c in suffix)


@dataclass(frozen=True)
class Identified:
    """Which member a removal of host ``name``/``ip`` means (pure decision, ``identify_member``).

    ``outcome``: ``member`` (exactly one member is that host's), ``removed`` (none is, and a
    record says cpswap removed that host's member earlier: idempotent success) or ``unknown``
    (the host cannot be identified: an error that lists the members, never "nothing to do")."""

    outcome: Literal["member", "removed", "unknown"]
    member: EtcdMember | None
    reason: str


def identify_member(members: tuple[EtcdMember, ...] | list[EtcdMember], *, name: str, ip: str,
                    removed_record: str | None = None) -> Identified:
    """``removed_record``: what cpswap recorded (in etcd, ``REMOVED_PREFIX``) when it removed this
    host's member earlier, or None when it never did."""
    listing = "; ".join(m.describe() for m in members) or "none"
    exact = [m for m in members if m.matches(name=name, ip=ip)]
    if len(exact) == 1:
        return Identified("member", exact[0], f"{name} ({ip}) is member {exact[0].describe()}")
    if len(exact) > 1:
        return Identified("unknown", None, f"{name} ({ip}) matches {len(exact)} members; refusing to guess "
                                           f"(members: {listing})")
    if removed_record is not None:
        return Identified("removed", None, f"{name} ({ip}) is not an etcd member; cpswap removed its member "
                                           f"earlier ({removed_record}): nothing to do")
    partial = [m for m in members if m.related(name=name, ip=ip)]
    if partial:
        return Identified("unknown", None, f"no member is both {name} and {ip}: "
                                           f"{', '.join(m.describe() for m in partial)} match only one of them "
                                           f"(a typo, or another host's member); members: {listing}")
    return Identified("unknown", None, f"{name} ({ip}) is not an etcd member and cpswap has no record of "
                                       f"removing it (a typo, or removed by hand); members: {listing}")


def removed_record_key(*, name: str, ip: str) -> bytes:
    """Where cpswap records, in etcd itself, that it removed host ``name``/``ip``'s member: read by
    every later run wherever it runs, so an earlier run's removal is told from a typo."""
    return f"{REMOVED_PREFIX}{canonical_ip(ip) or ip}/{name}".encode()


REMOVED_PREFIX = "/cpswap/removed-members/"


@dataclass(frozen=True)
class EtcdFacts:
    """A read-only observation of the etcd cluster."""

    reachable: bool
    members: tuple[EtcdMember, ...] = ()
    leader_id: int | None = None
    raft_term: int | None = None
    endpoints: tuple[str, ...] = ()  # what was asked, never credentials
    error: str | None = None

    @property
    def voters(self) -> tuple[EtcdMember, ...]:
        return tuple(m for m in self.members if not m.is_learner)

    @property
    def learners(self) -> tuple[EtcdMember, ...]:
        return tuple(m for m in self.members if m.is_learner)

    def find(self, *, name: str, ip: str) -> EtcdMember | None:
        for member in self.members:
            if member.matches(name=name, ip=ip):
                return member
        return None


DataClass = Literal["replicated", "disposable", "unique"]
RecoveryPolicy = Literal["recreate", "skip", "manual"]
OwnerKind = Literal["StatefulSet", "OperatorDeployment", "Deployment", "Bare"]


@dataclass(frozen=True)
class ClaimFact:
    """A PVC whose PV is pinned to a node (local-path affinity or selected-node annotation)."""

    namespace: str
    name: str
    node: str
    volume: str  # PV name, "" if unbound
    size: str  # e.g. "1Ti"
    storage_class: str
    owner_kind: OwnerKind
    owner_name: str
    pods: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class KubeFacts:
    """A read-only observation of the Kubernetes side for one departing node."""

    reachable: bool
    node: str = ""
    node_ready: bool | None = None
    claims: tuple[ClaimFact, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything observed for one plan; ``None`` means observation was not asked for."""

    etcd: EtcdFacts | None = None
    kube: KubeFacts | None = None

    @property
    def observed(self) -> bool:
        return bool(self.etcd and self.etcd.reachable)
