"""Renderers for the etcd executor command lines run from the operator's machine. Pure."""
from __future__ import annotations

from shlex import quote
from typing import Any, Mapping

from cpswap.core.model import EtcdSettings, Host
from cpswap.core.renderers.executor import CPSWAP


def render_etcd_leave(*, host: Host, etcd: EtcdSettings, deadline_s: int = 300) -> str:
    """Remove ``host``'s member through the survivors (discovered via the VIP), snapshot first.

    Idempotent: a member already gone is success. Never contacts ``host`` itself.
    """
    return (f"{CPSWAP} etcd remove --preset {quote(etcd.preset)} --discover kube "
            f"--node {quote(host.name)} --ip {quote(host.ip)}{etcd.snapshot_flag()} "
            f"--deadline {deadline_s}")


def render_etcd_snapshot(*, etcd: EtcdSettings, label: str) -> str:
    """A verified snapshot through the members (discovered via the VIP) into the snapshot directory,
    as a new file ``<label>-<UTC time>.db``."""
    return (f"{CPSWAP} etcd snapshot --preset {quote(etcd.preset)} --discover kube --label {quote(label)}"
            f"{etcd.snapshot_flag()}")


def render_etcd_verify(*, host: Host, etcd: EtcdSettings, max_lag: int = 1000, deadline_s: int = 600) -> str:
    """Wait until ``host``'s member is started, a voter, healthy and caught up with the leader."""
    return (f"{CPSWAP} etcd wait-member --preset {quote(etcd.preset)} --discover kube "
            f"--node {quote(host.name)} --ip {quote(host.ip)} --max-lag {max_lag} --deadline {deadline_s}")


def render_adoption_check(*, members: tuple[tuple[str, Host], ...], etcd: EtcdSettings, discover: str) -> str:
    """Read-only: every slot's host must be a started etcd voter (name and IP), and no other voter
    may exist, or the run stops before anything else runs (adoption without a recorded membership)."""
    endpoints = ",".join(f"https://{_bracket(h.ip)}:{etcd.client_port}" for _, h in members)
    return (f"{CPSWAP} etcd verify-adoption --preset {quote(etcd.preset)} --discover {quote(discover)} "
            f"--endpoints {quote(endpoints)} "
            + " ".join(f"--member {quote(f'{slot}={host.name}@{host.ip}')}" for slot, host in members))


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def render_etcdutl_restore(snapshot: str, survivor: Mapping[str, Any] | None) -> str:
    """etcd's own restore of ``snapshot`` on ``survivor`` (for the plan's safety section; not run by cpswap)."""
    name = (survivor or {}).get("name", "<survivor>")
    ip = (survivor or {}).get("ip", "<survivor-ip>")
    return (f"etcdutl snapshot restore {snapshot} --data-dir /var/lib/etcd-restore --name {name} "
            f"--initial-cluster {name}=https://{ip}:2380 --initial-advertise-peer-urls https://{ip}:2380")
