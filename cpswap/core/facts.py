"""Observed facts: what the live cluster looked like when it was read. Pure data.

Executors (cpswap.executors.etcd / .kube) build these objects; the planner and the impact
report consume them. Nothing here talks to anything. A fact set that could not be read is
still a value: ``reachable=False`` with ``error`` saying why, and the plan is then marked
unobserved instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit


def url_host(url: str) -> str:
    """Host part of an etcd peer/client URL (``https://10.0.0.1:2380`` → ``10.0.0.1``)."""
    return urlsplit(url).hostname or ""


def member_matches(*, member_name: str, member_ip: str, name: str, ip: str) -> bool:
    """True if the etcd member ``member_name``/``member_ip`` belongs to the host ``name``/``ip``.

    k3s names members ``<hostname>-<8 hex>``; kubeadm and ocboot name them after the host.
    """
    if ip and member_ip == ip:
        return True
    if not name or not member_name:
        return False
    if member_name == name:
        return True
    prefix, _, suffix = member_name.rpartition("-")
    return prefix == name and len(suffix) == 8 and all(c in "0123456789abcdef" for c in suffix)


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
        """True if this member belongs to the host ``name``/``ip`` (see ``member_matches``)."""
        return member_matches(member_name=self.name, member_ip=self.ip, name=name, ip=ip)


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
