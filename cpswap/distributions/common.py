"""What several distributions share: the leave through the survivors and the verify checks. Pure.

A distribution whose etcd member and Node leave the ordinary way (k3s, ocboot, kubeadm, rke2) uses
``survivors_leave``: a verified snapshot and the member's removal through the surviving etcd
members, then the drain and deletion of the Node through the VIP; neither contacts the departing
host. ``member_checks`` is the verify step's ordinary pair: a started, healthy, caught-up etcd voter
and a Ready Node.
"""
from __future__ import annotations

from cpswap.core.model import Member, StackModel
from cpswap.core.renderers import render_etcd_leave, render_etcd_verify, render_node_delete, render_node_verify
from cpswap.core.steps import Action
from cpswap.core.slots import LOCAL_SECRET_ENV, CommandSpec, RunsOn, SlotResource, record


def etcd_leave(member: Member, *, delete: str, reason: str) -> CommandSpec:
    """``<slot>-etcd-leave``: records on create, removes the member (``delete``, from stored state)."""
    return CommandSpec(
        name=f"{member.slot}-etcd-leave", action=Action.ETCD_REMOVE, runs_on=RunsOn("local", "operator"),
        create=record(member, "is an etcd member; its removal runs when this slot changes"),
        update=record(member, "etcd membership unchanged"), delete=delete, triggers=member.host.triggers(),
        secret_env=LOCAL_SECRET_ENV, delete_timeout="10m", reason=reason)


def survivors_leave(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    triggers = member.host.triggers()
    local = RunsOn("local", "operator")
    return (
        etcd_leave(member, delete=render_etcd_leave(host=member.host, etcd=model.etcd),
                   reason="remove the departing member through the survivors, after a verified snapshot; "
                          "never contacts the departing host"),
        CommandSpec(
            name=f"{member.slot}-node-leave", action=Action.NODE_DELETE, runs_on=local,
            create=record(member, "is a Node; its deletion runs when this slot changes"),
            update=record(member, "Node unchanged"),
            delete=render_node_delete(host=member.host, etcd=model.etcd), triggers=triggers,
            secret_env=LOCAL_SECRET_ENV, delete_timeout="10m",
            reason="delete the Node (under the cluster's membership lock: one membership change at a time) "
                   "before the PVCs so local-path skips helper pods on the missing node"),
    )


def member_checks(model: StackModel, member: Member) -> tuple[str, ...]:
    return (render_etcd_verify(host=member.host, etcd=model.etcd), render_node_verify(host=member.host))
