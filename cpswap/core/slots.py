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

A slot swapped by surge (``slot_commands(..., surge_from=<departing host>)``, issue 16; k3s and
kubeadm) has the same resources without ``delete_before_replace``: the engine then creates each
replacement when it registers and deletes the old copies after the program, dependents first
(step_generator.go, ``ScheduleDeletes``), so the new member joins while the old one is still there.
Its ``<slot>-etcd-leave`` create takes the verified snapshot (before the join changes membership),
and one more resource runs after ``<slot>-pvcs``:
  <slot>-handover     recover the claims pinned to the departing Node onto the new one, drain it
                      with eviction (PodDisruptionBudgets respected, bounded), remove its etcd member
                      (quorum-guarded, 4 -> 3) and delete its Node
The old copies' deletes that follow (``etcd remove``, ``delete-node``) find the member removed (its
removal record) and the Node gone, and succeed without changing anything. Their ``update`` text
carries ``SURGE_MARK`` (the policy rule allows no delete-before-replace only with it).

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
from typing import Mapping

from cpswap.core.model import Host, Member, StackModel
from cpswap.core.renderers import render_adoption_check, render_keepalived_install, render_pvc_recover
from cpswap.core.renderers.deadline import Deadline, deadline_for, render_bounded
from cpswap.core.renderers.etcd import render_etcd_snapshot
from cpswap.core.renderers.kube import render_handover
from cpswap.core.renderers.preflight import render_preflight
from cpswap.core.steps import Action, RunKind, RunTarget, Stdin
from cpswap.core.runrecord import StepTag, step_assignment

LOCAL_SECRET_ENV = (
    ("CPSWAP_KUBECONFIG_DATA", "kubeconfig"),
    ("CPSWAP_ETCD_CACERT_DATA", "etcdCaCert"),
    ("CPSWAP_ETCD_CERT_DATA", "etcdClientCert"),
    ("CPSWAP_ETCD_KEY_DATA", "etcdClientKey"),
)
GLOBAL_KUBECONFIG_ENV = (("CPSWAP_GLOBAL_KUBECONFIG_DATA", "globalKubeconfig"),)
SSH_KEY_ENV = (("CPSWAP_SSH_KEY_DATA", "sshPrivateKey"),)
KEEPALIVED_AUTH = Stdin("keepalived-auth", secret="keepalivedAuthPass")
K3S_TOKEN_ENV = (("CPSWAP_K3S_TOKEN_DATA", "k3sToken"),)


@dataclass(frozen=True)
class RunsOn:
    """Where a command runs: ``local`` (the operator's machine) or ``ssh`` to ``target``.

    ``target`` is ``operator``, ``vip`` (the control-plane endpoint host, held by a survivor)
    or ``self`` (the slot's own, new host).
    """

    kind: RunKind
    target: RunTarget

    def describe(self, member: Member, vip: str) -> str:
        if self.kind == "local":
            return "operator"
        return f"ssh {vip} (VIP, a survivor)" if self.target == "vip" else f"ssh {member.host.ip} (new host)"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    action: Action
    runs_on: RunsOn
    create: str
    update: str | None
    delete: str | None
    triggers: tuple[str, ...]
    secret_env: tuple[tuple[str, str], ...] = ()  # (env var, secret config key)
    stdin: Stdin | None = None  # a secret config value or an earlier resource's secret output
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

    def bounded(self, *, stack: str, slot: str = "-", host: str = "-") -> CommandSpec:
        """The same resource with every command text ending itself at its deadline (renderers/deadline.py);
        a local command also names its step for the run record (core/runrecord.py): the ``cpswap``
        calls it makes on the operator's machine append their start and end."""
        def step(op: str) -> str | None:
            return (step_assignment(StepTag(stack=stack, resource=self.name, op=op, slot=slot, host=host))
                    if self.runs_on.kind == "local" else None)

        def wrap(text: str | None, deadline: Deadline, op: str) -> str | None:
            return None if text is None else render_bounded(name=self.name, text=text, deadline=deadline,
                                                            step=step(op))
        return replace(self, create=render_bounded(name=self.name, text=self.create, deadline=self.create_deadline,
                                                   step=step("create")),
                       update=wrap(self.update, self.create_deadline, "update"),
                       delete=wrap(self.delete, self.delete_deadline, "delete"))


@dataclass(frozen=True)
class ObjectSpec:
    """A Kubernetes object declared with pulumi-kubernetes (``provider``: ``global`` is kubean's
    global cluster, ``cluster`` the managed one). Its name carries the slot's host, so a swap
    replaces it (delete-before-replace: the old object goes first)."""

    name: str
    action: Action
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
    stdin: Stdin | None = None
    triggers: tuple[str, ...] = ()
    retain_on_delete: bool = False  # destroyMode release: a destroy leaves the object in place

    def spec_dict(self) -> dict[str, object]:
        spec: dict[str, object] = json.loads(json.dumps(dict(self.spec)))
        return spec

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


def record(member: Member, what: str) -> str:
    return f"echo {quote(f'{member.slot}: {member.host} {what}')}"


def _keepalived(model: StackModel, member: Member) -> tuple[CommandSpec, ...]:
    if not model.vip.keepalived:
        return ()
    state, priority = model.vip.joining_priority(member.slot)
    return (CommandSpec(
        name=f"{member.slot}-keepalived", action=Action.KEEPALIVED, runs_on=RunsOn("ssh", "self"),
        create=render_keepalived_install(host=member.host, slot=member.slot, vip=model.vip, endpoint=model.endpoint),
        update=record(member, "keepalived configured earlier"), delete=None, triggers=member.host.triggers(),
        stdin=KEEPALIVED_AUTH, create_timeout="5m",
        reason=f"same VRRP instance {model.vip.instance} (vrid {model.vip.virtual_router_id}) as the survivors, "
               f"{state} priority {priority}"),)


def _preflight_update(model: StackModel, text: str) -> str:
    """The preflight's update: ``text``, and (k3s) its previous stdout again, which holds the critical
    flags the join copies (pulumi-command gives an update the previous outputs in $PULUMI_COMMAND_STDOUT)."""
    return text + ("; printf '%s\\n' \"${PULUMI_COMMAND_STDOUT:-}\"" if model.distro.preflight.critical_config else "")


def _preflight(model: StackModel, member: Member, rest: tuple[SlotResource, ...],
               departed: str | None = None) -> CommandSpec:
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
    # k3s: the step reads the cluster-critical server flags with the token, and the join copies them from
    # its stdout; an update (inputs changed, host unchanged) keeps them in its new stdout
    k3s = model.distro.preflight.critical_config
    update = _preflight_update(model, record(member, "preflight passed earlier"))
    return CommandSpec(
        name=f"{member.slot}-preflight", action=Action.PREFLIGHT, runs_on=RunsOn("local", "operator"),
        create=render_preflight(model=model, member=member, worst_case_s=worst, old_node=departed),
        update=update, delete=None, triggers=member.host.triggers(),
        secret_env=LOCAL_SECRET_ENV + SSH_KEY_ENV + (GLOBAL_KUBECONFIG_ENV if model.distro.global_cluster else ())
        + (K3S_TOKEN_ENV if k3s else ()),
        create_timeout="4m",
        reason="check the new host (SSH, also from the VIP holder for ocboot; identity, installer, ports, disk, clock "
               "against every survivor), the installer's side (kubean Cluster and operator, OpenShift Machines) and "
               "the run (etcd certificate, snapshot room, API through the VIP) before the first destructive step; "
               "every failure at once" + ("; read the cluster-critical k3s server flags the join copies" if k3s else ""))


SURGE_MARK = "cpswap-surge"  # in the update text of a surge's resources (no delete-before-replace)


def _surge_form(model: StackModel, member: Member, old: Host,
                specs: tuple[SlotResource, ...]) -> tuple[SlotResource, ...]:
    """The slot's resources for a surge from ``old``: no delete-before-replace, the snapshot taken by
    the etcd-leave create, and the handover after the claims step (module docstring)."""
    if not model.distro.joins_alongside:
        raise ValueError(f"{member.slot}: distribution {model.distribution} cannot join alongside; it has no surge form")
    mark = record(member, f"{SURGE_MARK}: joined alongside {old} (added before it left); not re-running")
    local = RunsOn("local", "operator")
    out: list[SlotResource] = []
    for spec in specs:
        assert isinstance(spec, CommandSpec)
        if spec.action is Action.ETCD_REMOVE:
            spec = replace(spec, create=render_etcd_snapshot(etcd=model.etcd, label=f"before-surge-{member.host.name}"),
                           create_timeout="5m",
                           reason="a verified etcd snapshot before the new member joins (the first membership change)")
        update = _preflight_update(model, mark) if spec.action is Action.PREFLIGHT else mark
        out.append(replace(spec, update=update, delete_before_replace=False))
    out.append(CommandSpec(
        name=f"{member.slot}-handover", action=Action.HANDOVER, runs_on=local,
        create=render_handover(old=old, new=member.host, policies=model.pvc_policies, etcd=model.etcd),
        update=mark, delete=None, triggers=member.host.triggers(), secret_env=LOCAL_SECRET_ENV,
        create_timeout="40m", delete_before_replace=False,
        reason=f"move {old.name}'s workloads to {member.host.name} (claims by their policies, then a drain with "
               f"eviction that respects PodDisruptionBudgets), then remove its etcd member (quorum checked on the "
               f"projected membership) and delete its Node"))
    return tuple(out)


def slot_commands(*, model: StackModel, member: Member, surge_from: Host | None = None,
                  departed: str | None = None) -> tuple[SlotResource, ...]:
    """The resources of one slot, in dependency order (the preflight first), every command bounded by
    its own deadline. With ``destroyMode: release`` every delete only records that the member was released.
    ``surge_from``: the departing host when this slot is swapped by surge (the surge form).
    ``departed``: the Node the slot's host replaced (``departed_nodes``), whose claims PVC recovery takes."""
    rest = _slot_resources(model=model, member=member, departed=departed)
    specs = (_preflight(model, member, rest, departed), *rest)
    if surge_from is not None:
        specs = _surge_form(model, member, surge_from, specs)
    if model.destroy_mode == "release":
        specs = tuple(replace(s, delete=record(member, RELEASED)) if isinstance(s, CommandSpec) and s.delete
                      else replace(s, retain_on_delete=True) if isinstance(s, ObjectSpec) else s for s in specs)
    return tuple(s.bounded(stack=model.stack, slot=member.slot, host=member.host.name) if isinstance(s, CommandSpec) else s
                 for s in specs)


RELEASED = "released by pulumi destroy (cpswap:destroyMode release): left in the cluster, no longer managed"


def _slot_resources(*, model: StackModel, member: Member, departed: str | None = None) -> tuple[SlotResource, ...]:
    """Between the preflight and the verify: the distribution's leave and join (cpswap/distributions),
    then the keepalived instance where cpswap writes it."""
    distro = model.distro
    return (*distro.leave(model, member), *distro.join(model, member), *_keepalived(model, member),
            *_after(model, member, RunsOn("local", "operator"), departed))


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
        name=DESTROY_GUARD, action=Action.DESTROY_GUARD, runs_on=RunsOn("local", "operator"),
        create=f"echo {quote(f'cpswap: stack {stack}: destroyMode {model.destroy_mode}')}",
        update=f"echo {quote(f'cpswap: stack {stack}: destroyMode now {model.destroy_mode}')}",
        delete=delete, triggers=(), create_timeout="2m", delete_timeout="2m",
        reason="pulumi destroy deletes this first; it refuses, or records a release").bounded(stack=stack)


ADOPTION_CHECK = "control-plane-adopt-check"


def adoption_check(*, model: StackModel) -> CommandSpec:
    """The run-time check of an adoption (no recorded membership): before any slot resource runs,
    every slot's host must be a started etcd voter and no other voter may exist. Read-only. Its
    triggers are the whole membership, so an edit while still unrecorded checks again."""
    members = tuple((m.slot, m.host) for m in model.members)
    return CommandSpec(
        name=ADOPTION_CHECK, action=Action.ADOPT_CHECK, runs_on=RunsOn("local", "operator"),
        create=render_adoption_check(members=members, etcd=model.etcd,
                                     discover=model.distro.adopt_discover),
        update=None, delete=None, triggers=tuple(f"{slot}={host.name}@{host.ip}" for slot, host in members),
        secret_env=LOCAL_SECRET_ENV, create_timeout="5m", delete_before_replace=False,
        reason="no deployment recorded the membership: the stack config is taken as applied only if etcd "
               "confirms each slot's host is a current member; otherwise the run stops before anything runs"
    ).bounded(stack=model.stack)


def departed_nodes(*, model: StackModel, changes: Mapping[str, str | None],
                   recorded: Mapping[str, str]) -> dict[str, str]:
    """Per slot, the Node its current host replaced, which its PVC recovery takes the claims of
    (``--orphaned --old-node``): the old host of a change of this run (``changes``: slot -> old
    name; None for a surge, whose handover moves the claims while the old Node still exists), else
    the one an earlier run recorded (``recorded``: the exported ``departedNodes``), kept while the
    slot holds the host that replaced it, so a run without a change renders the same command (no
    update). An in-place rebuild keeps the name: nothing departed."""
    found: dict[str, str] = {}
    for m in model.members:
        old = changes[m.slot] if m.slot in changes else recorded.get(m.slot)
        if old and old != m.host.name:
            found[m.slot] = old
    return found


def slots_with_objects(*, model: StackModel, changing: frozenset[str], declared: frozenset[str]) -> frozenset[str]:
    """Slots whose Kubernetes objects (kubean's join ClusterOperation) are declared: those changing
    now, and those whose object an earlier run declared (``declared``, by object name). A first
    `up` (adoption) declares none, so no playbook runs on a healthy cluster."""
    return changing | {m.slot for m in model.members
                       if any(isinstance(s, ObjectSpec) and s.object_name in declared
                              for s in slot_commands(model=model, member=m))}

def _verify_command(model: StackModel, member: Member) -> str:
    return " && ".join(model.distro.verify(model, member))

def _after(model: StackModel, member: Member, local: RunsOn, departed: str | None = None) -> tuple[CommandSpec, ...]:
    triggers = member.host.triggers()
    return (
        CommandSpec(
            name=f"{member.slot}-verify", action=Action.VERIFY, runs_on=local,
            create=_verify_command(model, member),
            update=record(member, "verified earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV, create_timeout=model.distro.verify_timeout,
            reason="the new member must be a started, healthy, caught-up voter and its Node Ready before PVCs move"),
        CommandSpec(
            name=f"{member.slot}-pvcs", action=Action.PVC_RECOVER, runs_on=local,
            create=render_pvc_recover(host=member.host, policies=model.pvc_policies, old_node=departed),
            update=record(member, "claims recovered earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1], create_timeout="30m",
            reason=(f"recreate stateful pods whose local-path claims were pinned to the departed node {departed} "
                    "(only its claims, once its Node is gone)" if departed else
                    "recreate stateful pods whose local-path claims were pinned to Nodes that no longer exist "
                    "(the departed node is not known to this run)")),
    )
