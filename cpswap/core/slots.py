"""What Pulumi resources one slot consists of, as pure data. Pure.

``slot_commands`` is the single source for both the Pulumi components (which turn each
``CommandSpec`` into a pulumi-command resource) and the planner (which turns the specs of the
changed slot into the ordered steps of the preview), so the preview shows exactly what runs.

A spec holds only the slot's own host, the control-plane endpoint (VIP) and stack-level settings,
never another slot's host: a swap therefore never changes another slot's inputs, and a delete
that runs later from stored state is still valid (survivors are discovered at run time).

Resources of a slot, in dependency order (each replaced delete-before-replace when the slot's host
changes, so the old member leaves before the new one joins):
  <slot>-etcd-leave   delete: snapshot + remove the member via survivors   create: record only
  <slot>-node-leave   delete: drain (bounded) + delete the Node            create: record only
  <slot>-join-prepare (kubeadm) on the VIP: upload certs, create a token; output secret
  <slot>-join         join the host (ocboot on the VIP holder; k3s/kubeadm on the new host)
  <slot>-verify       wait until the member is a healthy caught-up voter and the Node is Ready
  <slot>-pvcs         recover claims pinned to Nodes that no longer exist onto the new host
"""
from __future__ import annotations

from dataclasses import dataclass
from shlex import quote

from cpswap.core.model import Member, StackModel
from cpswap.core.renderers import (render_etcd_leave, render_etcd_verify, render_k3s_join, render_kubeadm_join,
                                   render_kubeadm_prepare, render_node_delete, render_node_verify,
                                   render_ocboot_join, render_pvc_recover)

LOCAL_SECRET_ENV = (
    ("CPSWAP_KUBECONFIG_DATA", "kubeconfig"),
    ("CPSWAP_ETCD_CACERT_DATA", "etcdCaCert"),
    ("CPSWAP_ETCD_CERT_DATA", "etcdClientCert"),
    ("CPSWAP_ETCD_KEY_DATA", "etcdClientKey"),
)


@dataclass(frozen=True)
class RunsOn:
    """Where a command runs: ``local`` (the operator's machine) or ``ssh`` to ``target``.

    ``target`` is ``operator``, ``vip`` (the control-plane endpoint host, held by a survivor)
    or ``self`` (the slot's own, new host).
    """

    kind: str
    target: str

    def describe(self, member: Member, vip: str) -> str:
        if self.kind == "local":
            return "operator"
        return f"ssh {vip} (VIP, a survivor)" if self.target == "vip" else f"ssh {member.host.ip} (new host)"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    action: str
    runs_on: RunsOn
    create: str
    update: str | None
    delete: str | None
    triggers: tuple[str, ...]
    secret_env: tuple[tuple[str, str], ...] = ()  # (env var, secret config key)
    stdin: str | None = None  # "k3s-token" | "ocboot-config" | "kubeadm-join-material"
    create_timeout: str = "10m"
    delete_timeout: str = "10m"
    secret_output: bool = False
    reason: str = ""
    delete_before_replace: bool = True  # membership resources always leave before they join


def _record(member: Member, what: str) -> str:
    return f"echo {quote(f'{member.slot}: {member.host} {what}')}"


def _join(model: StackModel, member: Member) -> tuple[CommandSpec, ...]:
    triggers = (member.host.name, member.host.ip)
    if model.distribution == "ocboot":
        assert model.ocboot is not None
        return (CommandSpec(
            name=f"{member.slot}-join", action="join", runs_on=RunsOn("ssh", "vip"),
            create=render_ocboot_join(joining=member, ocboot=model.ocboot),
            update=_record(member, "joined earlier; connection details changed, not re-joining"),
            delete=None, triggers=triggers, stdin="ocboot-config", create_timeout="60m",
            reason="ocboot adds control-plane nodes from an existing primary: run it on the survivor holding the VIP"),)
    if model.distribution == "k3s":
        assert model.k3s is not None
        return (CommandSpec(
            name=f"{member.slot}-join", action="join", runs_on=RunsOn("ssh", "self"),
            create=render_k3s_join(host=member.host, endpoint=model.endpoint, k3s=model.k3s),
            update=_record(member, "joined earlier; not re-joining"), delete=None, triggers=triggers,
            stdin="k3s-token", create_timeout="30m",
            reason="k3s servers join through the fixed registration address (the VIP) with the cluster token"),)
    assert model.kubeadm is not None
    return (
        CommandSpec(
            name=f"{member.slot}-join-prepare", action="join-prepare", runs_on=RunsOn("ssh", "vip"),
            create=render_kubeadm_prepare(), update=_record(member, "join material issued earlier"),
            delete=None, triggers=triggers, secret_output=True, create_timeout="5m",
            reason="a survivor uploads the control-plane certs and issues a token (both expire; made just in time)"),
        CommandSpec(
            name=f"{member.slot}-join", action="join", runs_on=RunsOn("ssh", "self"),
            create=render_kubeadm_join(host=member.host, endpoint=model.endpoint, kubeadm=model.kubeadm),
            update=_record(member, "joined earlier; not re-joining"), delete=None, triggers=triggers,
            stdin="kubeadm-join-material", create_timeout="30m",
            reason="kubeadm join --control-plane on the new host with the survivor's token and certificate key"),
    )


def slot_commands(*, model: StackModel, member: Member) -> tuple[CommandSpec, ...]:
    """The command resources of one slot, in dependency order."""
    triggers = (member.host.name, member.host.ip)
    local = RunsOn("local", "operator")
    leave = (
        CommandSpec(
            name=f"{member.slot}-etcd-leave", action="etcd-remove", runs_on=local,
            create=_record(member, "is an etcd member; its removal runs when this slot changes"),
            update=_record(member, "etcd membership unchanged"),
            delete=render_etcd_leave(host=member.host, etcd=model.etcd), triggers=triggers,
            secret_env=LOCAL_SECRET_ENV, delete_timeout="10m",
            reason="remove the departing member through the survivors, after a verified snapshot; "
                   "never contacts the departing host"),
        CommandSpec(
            name=f"{member.slot}-node-leave", action="node-delete", runs_on=local,
            create=_record(member, "is a Node; its deletion runs when this slot changes"),
            update=_record(member, "Node unchanged"),
            delete=render_node_delete(host=member.host), triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1], delete_timeout="10m",
            reason="delete the Node before the PVCs so local-path skips helper pods on the missing node"),
    )
    after = (
        CommandSpec(
            name=f"{member.slot}-verify", action="verify", runs_on=local,
            create=f"{render_etcd_verify(host=member.host, etcd=model.etcd)} && {render_node_verify(host=member.host)}",
            update=_record(member, "verified earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV, create_timeout="20m",
            reason="the new member must be a started, healthy, caught-up voter and its Node Ready before PVCs move"),
        CommandSpec(
            name=f"{member.slot}-pvcs", action="pvc-recover", runs_on=local,
            create=render_pvc_recover(host=member.host, policies=model.pvc_policies),
            update=_record(member, "claims recovered earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1], create_timeout="30m",
            reason="recreate stateful pods whose local-path claims were pinned to the departed node"),
    )
    return (*leave, *_join(model, member), *after)
