"""Renderers for the etcd executor command lines run from the operator's machine. Pure."""
from __future__ import annotations

from shlex import quote

from cpswap.core.model import EtcdSettings, Host
from cpswap.core.renderers.executor import CPSWAP


def render_etcd_leave(*, host: Host, etcd: EtcdSettings, deadline_s: int = 300) -> str:
    """Remove ``host``'s member through the survivors (discovered via the VIP), snapshot first.

    Idempotent: a member already gone is success. Never contacts ``host`` itself.
    """
    return (f"{CPSWAP} etcd remove --preset {quote(etcd.preset)} --discover kube "
            f"--node {quote(host.name)} --ip {quote(host.ip)}{etcd.snapshot_flag()} "
            f"--deadline {deadline_s}")


def render_etcd_verify(*, host: Host, etcd: EtcdSettings, max_lag: int = 1000, deadline_s: int = 600) -> str:
    """Wait until ``host``'s member is started, a voter, healthy and caught up with the leader."""
    return (f"{CPSWAP} etcd wait-member --preset {quote(etcd.preset)} --discover kube "
            f"--node {quote(host.name)} --ip {quote(host.ip)} --max-lag {max_lag} --deadline {deadline_s}")
