"""What Pulumi resources one slot consists of, as pure data. Pure.

``slot_commands`` is the single source for both the Pulumi components (which turn each
``CommandSpec`` into a pulumi-command resource) and the planner (which turns the specs of the
changed slot into the ordered steps of the preview), so the preview shows exactly what runs.

A spec holds only the slot's own host, the control-plane endpoint (VIP) and stack-level settings,
never another slot's host: a swap therefore never changes another slot's inputs, and a delete
that runs later from stored state is still valid (survivors are discovered at run time).

Resources of a slot, in dependency order (each replaced delete-before-replace when the slot's host
changes, so the old member leaves before the new one joins):
  <slot>-preflight    create: every safety check of the new host and the run (cpswap preflight); the
                      leave depends on it, so a failure stops the swap before anything is removed
  <slot>-etcd-leave   delete: snapshot + remove the member via survivors   create: record only
  <slot>-node-leave   delete: drain (bounded) + delete the Node            create: record only
  <slot>-join-prepare (kubeadm) on the VIP: upload certs, create a token; output secret
  <slot>-join         join the host (ocboot on the VIP holder; k3s/kubeadm on the new host)
  <slot>-keepalived   (k3s/kubeadm with vip.keepalived) the VRRP instance on the new host, BACKUP
  <slot>-verify       wait until the member is a healthy caught-up voter and the Node is Ready
  <slot>-pvcs         recover claims pinned to Nodes that no longer exist onto the new host

kubean replaces leave/join with (seed 001): ``<slot>-etcd-leave`` (delete: guard, snapshot, first-node
reorder, remove-node.yml operation, cluster-info/kubeadm-config fix), ``<slot>-inventory`` (the host
in hosts-conf), ``<slot>-join`` (the cluster.yml ClusterOperation, an ``ObjectSpec`` declared with
pulumi-kubernetes on the global cluster) and ``<slot>-join-wait``.
openshift (seed 003): ``<slot>-etcd-leave`` (through healthy etcd pods), ``<slot>-etcd-secrets``
(delete the old node's etcd TLS secrets), ``<slot>-machine`` (delete: keep the spec, delete the
Machine; create: the copy with a new name), ``<slot>-etcd-reset`` (in-place rebuilds only: move the
crashlooping static pod aside on the node), ``<slot>-redeploy`` (forceRedeploymentReason, unique).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from shlex import quote

from cpswap.core.model import Member, StackModel
from cpswap.core.renderers import (render_adoption_check, render_etcd_leave, render_etcd_verify, render_k3s_join, render_kubeadm_join,
                                   render_kubeadm_prepare, render_keepalived_install, render_node_delete,
                                   render_node_verify, render_ocboot_join, render_pvc_recover)
from cpswap.core.renderers import kubean as kb
from cpswap.core.renderers import openshift as ocp
from cpswap.core.renderers.deadline import Deadline, deadline_for, render_bounded
from cpswap.core.renderers.kube import render_kubeadm_endpoint_check
from cpswap.core.renderers.preflight import render_preflight

LOCAL_SECRET_ENV = (
    ("CPSWAP_KUBECONFIG_DATA", "kubeconfig"),
    ("CPSWAP_ETCD_CACERT_DATA", "etcdCaCert"),
    ("CPSWAP_ETCD_CERT_DATA", "etcdClientCert"),
    ("CPSWAP_ETCD_KEY_DATA", "etcdClientKey"),
)
GLOBAL_KUBECONFIG_ENV = (("CPSWAP_GLOBAL_KUBECONFIG_DATA", "globalKubeconfig"),)
SSH_KEY_ENV = (("CPSWAP_SSH_KEY_DATA", "sshPrivateKey"),)


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
    stdin: str | None = None  # "k3s-token" | "ocboot-config" | "kubeadm-join-material" | "keepalived-auth"
    create_timeout: str = "10m"
    delete_timeout: str = "10m"
    secret_output: bool = False
    reason: str = ""
    delete_before_replace: bool = True  # membership resources always leave before they join
    kind: str = "command"

    @property
    def create_deadline(self) -> Deadline:
        """Also the update's: the program declares the update timeout equal to the create timeout."""
        return deadline_for(name=self.name, timeout=self.create_timeout)

    @property
    def delete_deadline(self) -> Deadline:
        return deadline_for(name=self.name, timeout=self.delete_timeout)

    def bounded(self) -> "CommandSpec":
        """The same resource with every command text ending itself at its deadline (renderers/deadline.py)."""
        def wrap(text: str | None, deadline: Deadline) -> str | None:
            return None if text is None else render_bounded(name=self.name, text=text, deadline=deadline)
        return replace(self, create=wrap(self.create, self.create_deadline),
                       update=wrap(self.update, self.create_deadline), delete=wrap(self.delete, self.delete_deadline))


@dataclass(frozen=True)
class ObjectSpec:
    """A Kubernetes object declared with pulumi-kubernetes (``provider``: ``global`` is kubean's
    global cluster, ``cluster`` the managed one). Its name carries the slot's host, so a swap
    replaces it (delete-before-replace: the old object goes first)."""

    name: str
    action: str
    provider: str
    api_version: str
    object_kind: str
    object_name: str
    spec: tuple[tuple[str, object], ...]  # frozen form of the object's spec (see ``spec_dict``)
    reason: str
    create_timeout: str = "5m"
    delete_timeout: str = "5m"
    delete_before_replace: bool = True
    kind: str = "k8s-object"
    runs_on: RunsOn = RunsOn("local", "operator")
    secret_env: tuple[tuple[str, str], ...] = ()
    stdin: str | None = None
    triggers: tuple[str, ...] = ()
    retain_on_delete: bool = False  # destroyMode release: a destroy leaves the object in place

    def spec_dict(self) -> dict[str, object]:
        return json.loads(json.dumps(dict(self.spec)))

    def labels(self) -> dict[str, str]:
        """The object's labels: marked as cpswap's."""
        return {"app.kubernetes.io/managed-by": "cpswap"}

    @property
    def create(self) -> str:
        return f"apply {self.api_version} {self.object_kind}/{self.object_name}: {json.dumps(dict(self.spec), sort_keys=True)}"

    @property
    def delete(self) -> str | None:
        return None


SlotResource = CommandSpec | ObjectSpec


def _record(member: Member, what: str) -> str:
    return f"echo {quote(f'{member.slot}: {member.host} {what}')}"


def _join(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    triggers = member.host.triggers()
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
            create=render_kubeadm_prepare(host=member.host), update=_record(member, "join material issued earlier"),
            delete=None, triggers=triggers, secret_output=True, create_timeout="5m",
            reason="a survivor uploads the control-plane certs and issues a token (both expire; made just in time)"),
        CommandSpec(
            name=f"{member.slot}-join", action="join", runs_on=RunsOn("ssh", "self"),
            create=render_kubeadm_join(host=member.host, endpoint=model.endpoint, kubeadm=model.kubeadm),
            update=_record(member, "joined earlier; not re-joining"), delete=None, triggers=triggers,
            stdin="kubeadm-join-material", create_timeout="30m",
            reason="kubeadm join --control-plane on the new host with the survivor's token and certificate key"),
    )


def _kubean(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    assert model.kubean is not None
    kubean, host, triggers = model.kubean, member.host, member.host.triggers()
    local = RunsOn("local", "operator")
    operation = kb.operation_name(slot=member.slot, action="join", host=host)
    return (
        CommandSpec(
            name=f"{member.slot}-etcd-leave", action="kubean-remove", runs_on=local,
            create=_record(member, "is a kubean control-plane node; its removal runs when this slot changes"),
            update=_record(member, "membership unchanged"),
            delete=kb.render_kubean_leave(host=host, slot=member.slot, kubean=kubean, etcd=model.etcd),
            triggers=triggers, secret_env=LOCAL_SECRET_ENV + GLOBAL_KUBECONFIG_ENV, delete_timeout="70m",
            reason="guard quorum and snapshot etcd, move a first control-plane node to the end of the inventory, "
                   "run remove-node.yml (ClusterOperation) and fix cluster-info/kubeadm-config; never contacts "
                   "the departing host"),
        CommandSpec(
            name=f"{member.slot}-inventory", action="kubean-inventory", runs_on=local,
            create=kb.render_kubean_inventory(host=host, kubean=kubean),
            update=_record(member, "in the inventory already"), delete=None, triggers=triggers,
            secret_env=GLOBAL_KUBECONFIG_ENV, create_timeout="5m",
            reason="the joining host must be in hosts-conf (etcd, kube_control_plane, kube_node) for cluster.yml"),
        ObjectSpec(
            name=f"{member.slot}-join", action="join", provider="global", api_version=kb.API_VERSION,
            object_kind="ClusterOperation", object_name=operation,
            spec=tuple(kb.join_operation_spec(kubean=kubean).items()), triggers=triggers,
            reason="kubean runs cluster.yml --limit=etcd,kube_control_plane, then upgrade-cluster.yml and "
                   "cluster-info.yml (seed 001), with the image used at deploy"),
        CommandSpec(
            name=f"{member.slot}-join-wait", action="join-wait", runs_on=local,
            create=kb.render_kubean_wait(name=operation, host=host, kubean=kubean),
            update=_record(member, "join operation finished earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1] + GLOBAL_KUBECONFIG_ENV, create_timeout="95m",
            reason="wait for the ClusterOperation; Failed stops the run with the job's name (a re-run resubmits it)"),
    )


def _openshift(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    assert model.openshift is not None
    osh, host, triggers = model.openshift, member.host, member.host.triggers()
    local = RunsOn("local", "operator")
    specs: list[SlotResource] = [
        CommandSpec(
            name=f"{member.slot}-etcd-leave", action="etcd-remove", runs_on=local,
            create=_record(member, "is an etcd member; its removal runs when this slot changes"),
            update=_record(member, "etcd membership unchanged"),
            delete=ocp.render_openshift_etcd_leave(host=host, etcd=model.etcd, openshift=osh), triggers=triggers,
            secret_env=LOCAL_SECRET_ENV, delete_timeout="10m",
            reason="remove the member through a healthy etcd pod on another node, after a verified snapshot; "
                   "with an Active ControlPlaneMachineSet the etcd operator removes it when the Machine goes"),
        CommandSpec(
            name=f"{member.slot}-etcd-secrets", action="etcd-secrets-delete", runs_on=local,
            create=_record(member, "has etcd peer/serving/metrics secrets; they are deleted when this slot changes"),
            update=_record(member, "etcd secrets unchanged"),
            delete=ocp.render_delete_etcd_secrets(host=host, openshift=osh), triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1], delete_timeout="5m",
            reason="the etcd operator must issue new certificates for the member (seed 003)"),
        CommandSpec(
            name=f"{member.slot}-machine", action="machine", runs_on=local,
            create=ocp.render_create_machine(member=member, openshift=osh),
            update=_record(replace(member, host=replace(host, rebuild=0)), "Machine unchanged"),
            delete=ocp.render_delete_machine(member=member, openshift=osh),
            triggers=(host.name, host.ip), secret_env=LOCAL_SECRET_ENV[:1],
            create_timeout="65m", delete_timeout="17m",  # the executors' own --deadline: 3600 and 900
            reason="recreate the Machine from the old one's spec with a new name, without status and providerID "
                   "(an in-place rebuild keeps the Machine)"),
    ]
    if host.rebuild:
        specs.append(CommandSpec(
            name=f"{member.slot}-etcd-reset", action="etcd-reset", runs_on=RunsOn("ssh", "self"),
            create=ocp.render_etcd_reset(host=host), update=_record(member, "etcd reset earlier"), delete=None,
            triggers=triggers, create_timeout="5m",
            reason="the crashlooping etcd static pod's manifest and data directory are moved aside on the node"))
    specs.append(CommandSpec(
        name=f"{member.slot}-redeploy", action="etcd-redeploy", runs_on=local,
        create=ocp.render_redeploy(member=member, openshift=osh, etcd=model.etcd),
        update=_record(member, "redeployed earlier"),
        delete=None, triggers=triggers, secret_env=LOCAL_SECRET_ENV, create_timeout="10m",
        reason="forceRedeploymentReason (unique) unless the etcd operator already added the member; the quorum "
               "guard is off only while the revision controller would refuse, and always turned back on"))
    return tuple(specs)


def _keepalived(model: StackModel, member: Member) -> tuple[CommandSpec, ...]:
    if not model.vip.keepalived:
        return ()
    state, priority = model.vip.joining_priority(member.slot)
    return (CommandSpec(
        name=f"{member.slot}-keepalived", action="keepalived", runs_on=RunsOn("ssh", "self"),
        create=render_keepalived_install(host=member.host, slot=member.slot, vip=model.vip, endpoint=model.endpoint),
        update=_record(member, "keepalived configured earlier"), delete=None, triggers=member.host.triggers(),
        stdin="keepalived-auth", create_timeout="5m",
        reason=f"same VRRP instance {model.vip.instance} (vrid {model.vip.virtual_router_id}) as the survivors, "
               f"{state} priority {priority}"),)


def _preflight(model: StackModel, member: Member, rest: tuple[SlotResource, ...]) -> CommandSpec:
    """Runs first, as a create the leave depends on. The engine registers a resource only once its
    ``depends_on`` resources' steps completed (pulumi SDK runtime/resource.py awaits each
    dependency's URN, resolved by the RegisterResource answer, which the engine sends after the step:
    pkg/resource/deploy/step_executor.go ``e.Done()``), and the delete of a delete-before-replace
    replacement is generated at the replaced resource's registration (step_generator.go). So a
    failed preflight means the leave's delete never starts. Delete-before-replace like every slot
    command: it has no delete, and the leave depends on it by ``depends_on`` only, which pulls no
    dependent's delete forward (step_generator.go ``calculateDependentReplacements`` follows property
    dependencies)."""
    from cpswap.core.rules import timeout_seconds  # rules imports this module

    worst = int(sum(timeout_seconds(s.create_timeout) + timeout_seconds(s.delete_timeout) for s in rest))
    return CommandSpec(
        name=f"{member.slot}-preflight", action="preflight", runs_on=RunsOn("local", "operator"),
        create=render_preflight(model=model, member=member, worst_case_s=worst),
        update=_record(member, "preflight passed earlier"), delete=None, triggers=member.host.triggers(),
        secret_env=LOCAL_SECRET_ENV + SSH_KEY_ENV, create_timeout="4m",
        reason="check the new host (SSH, identity, installer, ports, disk, clock) and the run (etcd certificate, "
               "snapshot room, API through the VIP) before the first destructive step; every failure at once")


def slot_commands(*, model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    """The resources of one slot, in dependency order (the preflight first), every command bounded by
    its own deadline. With ``destroyMode: release`` every delete only records that the member was released."""
    rest = _slot_resources(model=model, member=member)
    specs = (_preflight(model, member, rest), *rest)
    if model.destroy_mode == "release":
        specs = tuple(replace(s, delete=_record(member, RELEASED)) if isinstance(s, CommandSpec) and s.delete
                      else replace(s, retain_on_delete=True) if isinstance(s, ObjectSpec) else s for s in specs)
    return tuple(s.bounded() if isinstance(s, CommandSpec) else s for s in specs)


RELEASED = "released by pulumi destroy (cpswap:destroyMode release): left in the cluster, no longer managed"


def _slot_resources(*, model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    triggers = member.host.triggers()
    local = RunsOn("local", "operator")
    if model.distribution == "kubean":
        return (*_kubean(model, member), *_after(model, member, local))
    if model.distribution == "openshift":
        return (*_openshift(model, member), *_after(model, member, local))
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
    return (*leave, *_join(model, member), *_keepalived(model, member), *_after(model, member, local))



DESTROY_GUARD = "control-plane-destroy-guard"


def destroy_guard(*, model: StackModel) -> CommandSpec:
    """The resource `pulumi destroy` deletes first (it depends on every slot resource, so the
    engine's ScheduleDeletes puts it alone in the first antichain). With ``destroyMode: refuse`` its
    delete fails without touching anything, and the engine runs none of the deletes it depends on;
    with ``release`` it records the release (every slot delete then only records too)."""
    stack = model.stack
    if model.destroy_mode == "release":
        delete = f"echo {quote(f'cpswap: stack {stack}: control plane released; every member keeps running')}"
    else:
        refusal = (f"cpswap: pulumi destroy refused for stack {stack}: it would remove every control-plane member "
                   "at once (cpswap:destroyMode is refuse). To stop managing the cluster and leave it running: "
                   "pulumi config set cpswap:destroyMode release; pulumi up; pulumi destroy. To replace a node, "
                   "edit its slot instead.")
        delete = f"echo {quote(refusal)} >&2; exit 1"
    return CommandSpec(
        name=DESTROY_GUARD, action="destroy-guard", runs_on=RunsOn("local", "operator"),
        create=f"echo {quote(f'cpswap: stack {stack}: destroyMode {model.destroy_mode}')}",
        update=f"echo {quote(f'cpswap: stack {stack}: destroyMode now {model.destroy_mode}')}",
        delete=delete, triggers=(), create_timeout="2m", delete_timeout="2m",
        reason="pulumi destroy deletes this first; it refuses, or records a release").bounded()


ADOPTION_CHECK = "control-plane-adopt-check"


def adoption_check(*, model: StackModel) -> CommandSpec:
    """The run-time check of an adoption (no recorded membership): before any slot resource runs,
    every slot's host must be a started etcd voter and no other voter may exist. Read-only. Its
    triggers are the whole membership, so an edit while still unrecorded checks again."""
    members = tuple((m.slot, m.host) for m in model.members)
    return CommandSpec(
        name=ADOPTION_CHECK, action="adopt-check", runs_on=RunsOn("local", "operator"),
        create=render_adoption_check(members=members, etcd=model.etcd,
                                     discover="openshift" if model.distribution == "openshift" else "kube"),
        update=None, delete=None, triggers=tuple(f"{slot}={host.name}@{host.ip}" for slot, host in members),
        secret_env=LOCAL_SECRET_ENV, create_timeout="5m", delete_before_replace=False,
        reason="no deployment recorded the membership: the stack config is taken as applied only if etcd "
               "confirms each slot's host is a current member; otherwise the run stops before anything runs").bounded()


def slots_with_objects(*, model: StackModel, changing: frozenset[str], declared: frozenset[str]) -> frozenset[str]:
    """Slots whose Kubernetes objects (kubean's join ClusterOperation) are declared: those changing
    now, and those whose object an earlier run declared (``declared``, by object name). A first
    `up` (adoption) declares none, so no playbook runs on a healthy cluster."""
    return changing | {m.slot for m in model.members
                       if any(isinstance(s, ObjectSpec) and s.object_name in declared
                              for s in slot_commands(model=model, member=m))}

def _verify_command(model: StackModel, member: Member) -> str:
    if model.distribution == "openshift":
        assert model.openshift is not None
        etcd = ocp.render_openshift_etcd_verify(host=member.host, etcd=model.etcd, openshift=model.openshift)
    else:
        etcd = render_etcd_verify(host=member.host, etcd=model.etcd)
    checks = [etcd, render_node_verify(host=member.host)]
    if model.distribution == "kubeadm":
        checks.append(render_kubeadm_endpoint_check(endpoint=model.endpoint))
    return " && ".join(checks)


def _after(model: StackModel, member: Member, local: RunsOn) -> tuple[CommandSpec, ...]:
    triggers = member.host.triggers()
    return (
        CommandSpec(
            name=f"{member.slot}-verify", action="verify", runs_on=local,
            create=_verify_command(model, member),
            update=_record(member, "verified earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV, create_timeout="42m" if model.distribution == "openshift" else "22m",
            reason="the new member must be a started, healthy, caught-up voter and its Node Ready before PVCs move"),
        CommandSpec(
            name=f"{member.slot}-pvcs", action="pvc-recover", runs_on=local,
            create=render_pvc_recover(host=member.host, policies=model.pvc_policies),
            update=_record(member, "claims recovered earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1], create_timeout="30m",
            reason="recreate stateful pods whose local-path claims were pinned to the departed node"),
    )
