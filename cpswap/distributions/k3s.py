"""K3s: servers with embedded etcd, joined as a systemd service through the VIP. Pure.

Leave: through the survivors (common.survivors_leave). Join: ``config.yaml`` (``server:
https://<VIP>:6443``, ``token-file``, node name and IP, the cluster's critical flags, which the
slot's preflight reads from a survivor and the join finds in that step's output on stdin) and
``systemctl enable --now k3s`` on the new host (cpswap/core/renderers/k3s.py; docs/CONFORMANCE.md
"k3s"). Its etcd client files are under ``/var/lib/rancher/k3s/server/tls/etcd``; a snapshot is
restored with ``k3s server --cluster-reset``.
"""
from __future__ import annotations

from typing import Any, Mapping

from cpswap.core.model import K3sSettings, Member, StackModel, _Collector, _fullmatch, _obj
from cpswap.core.renderers import render_k3s_join
from cpswap.core.renderers.k3s import TOKEN_LINE
from cpswap.core.steps import Action, Stdin
from cpswap.core.slots import CommandSpec, RunsOn, SlotResource, record
from cpswap.distributions import Block, Distribution, EtcdPreset, PreflightNeeds
from cpswap.distributions.common import member_checks, survivors_leave


def parse_k3s(c: _Collector, raw: Any) -> K3sSettings:
    spec = _obj(c, "k3s", raw, {"dataDir"})
    data_dir = spec.get("dataDir", K3sSettings.data_dir)
    if not _fullmatch(r"/[A-Za-z0-9._/-]+", data_dir) or ".." in data_dir.split("/"):
        c.add("k3s.dataDir", data_dir, "must be an absolute path without shell metacharacters")
        data_dir = K3sSettings.data_dir
    return K3sSettings(data_dir=data_dir)


K3S_BLOCK = Block("k3s", parse_k3s)
K3S_ETCD = EtcdPreset("k3s", cacert="var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
                      cert="var/lib/rancher/k3s/server/tls/etcd/client.crt",
                      key="var/lib/rancher/k3s/server/tls/etcd/client.key")


def _token_line(model: StackModel, member: Member, token: str) -> str:
    return f"{TOKEN_LINE}{token}\n"


# the token line, then the preflight's output: the join copies the cluster-critical server flags the
# preflight read from a survivor (cpswap/core/k3s_critical.py, renderers/k3s.py)
K3S_JOIN_STDIN = Stdin("k3s-token", secret="k3sToken", output_of=Action.PREFLIGHT, render=_token_line,
                       then_output=True)


def join(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    k3s = model.k3s
    assert k3s is not None  # parse_k3s always yields settings for this distribution
    return (CommandSpec(
        name=f"{member.slot}-join", action=Action.JOIN, runs_on=RunsOn("ssh", "self"),
        create=render_k3s_join(host=member.host, endpoint=model.endpoint, k3s=k3s),
        update=record(member, "joined earlier; not re-joining"), delete=None, triggers=member.host.triggers(),
        stdin=K3S_JOIN_STDIN, create_timeout="30m",
        reason="k3s servers join through the fixed registration address (the VIP) with the cluster token"),)


def restore(snapshot: str, survivor: Mapping[str, Any] | None) -> str:
    return f"k3s server --cluster-reset --cluster-reset-restore-path={snapshot}"


DISTRIBUTION = Distribution(
    name="k3s", summary="K3s servers with embedded etcd, joined as a service through the VIP",
    blocks=(K3S_BLOCK,), secrets=("k3sToken",), etcd_preset=K3S_ETCD, keepalived=True,
    leave=survivors_leave, join=join, verify=member_checks,
    preflight=PreflightNeeds(ssh_new_host=True, installer="k3s", critical_config=True),
    restore=restore,
    joins_alongside=True,
    joins_alongside_why=("a k3s server joins through the VIP as an etcd learner and is promoted; the other "
                         "members stay as they are"))
