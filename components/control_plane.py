"""ControlPlane and Slot components. Pulumi wiring only; the decisions live in cpswap.core.

``ControlPlane`` → one ``Slot`` component per slot. Each slot's children come from
``cpswap.core.slots.slot_commands`` (the same specs the preview plan shows): they are named after
the slot, carry the slot's host in ``triggers`` and are created with ``delete_before_replace`` so
the old member leaves (from stored state, through survivors) before the new one joins. Children
are chained with ``depends_on``. Inputs hold only the slot's own host, the VIP and stack-level
settings, so a swap of one slot never changes another slot's inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s
from pulumi_command import local, remote

from cpswap.core.model import Host, Member, StackModel
from cpswap.core.renderers.ocboot import HOST_NETWORKS_ANNOTATION
from cpswap.core.declarations import Declaration, declare
from cpswap.core.rules import declared_views, view_to_input
from cpswap.core.slots import CommandSpec, ObjectSpec, adoption_check, destroy_guard, slot_commands

# pulumi-kubernetes replaces a provider, and with it every object it manages, when the active
# cluster of its kubeconfig changes, unless clusterIdentifier is set and unchanged
# (provider/pkg/provider/provider.go DiffConfig at 94977969d64112b04e19945818a7d5d5f38f631d).
# These name the clusters for good: a rotated kubeconfig (new server, CA or credentials) is an
# update. Change one only when the provider really points at another cluster.
MANAGED_CLUSTER_ID = "cpswap-managed-cluster"
GLOBAL_CLUSTER_ID = "cpswap-kubean-global-cluster"



@dataclass(frozen=True)
class SecretInputs:
    """Secret stack config as Pulumi secret Outputs, by config key (``cpswap.core.model.secret_keys``:
    the common ones, every distribution's own, the keepalived password); never plain strings."""

    values: Mapping[str, pulumi.Output[str] | None]

    @property
    def kubeconfig(self) -> pulumi.Output[str]:
        return self.by_config_key("kubeconfig")

    def by_config_key(self, key: str) -> pulumi.Output[str]:
        value = self.values.get(key)
        if value is None:
            raise KeyError(f"secret config cpswap:{key} is required here")
        return pulumi.Output.secret(value)


@dataclass(frozen=True)
class ControlPlaneArgs:
    model: StackModel
    plan: dict[str, Any]  # the plan document, known at preview; the policy pack reads it
    secrets: SecretInputs
    # slots whose Kubernetes objects (kubean's join ClusterOperation) are declared: the slot
    # changing in this run, plus those declared by earlier runs (exported as kubeanOperations).
    # A first `up` (adoption) declares none, so it runs no playbook.
    object_slots: frozenset[str] = frozenset()
    # slot -> the Node its host replaced, whose claims PVC recovery takes (cpswap.core.slots.departed_nodes)
    departed: Mapping[str, str] = field(default_factory=dict)
    # no recorded membership: a read-only check that each slot's host is a current etcd member
    # runs before any slot resource (cpswap.core.slots.adoption_check)
    adoption: bool = False
    # slot -> departing host of the slot swapped by surge (Plan.surge_from): its resources take the
    # surge form (no delete-before-replace, snapshot before the join, the handover last)
    surge_from: dict[str, Host] | None = None


@dataclass(frozen=True)
class SlotArgs:
    model: StackModel
    member: Member
    secrets: SecretInputs
    k8s_provider: k8s.Provider
    global_provider: k8s.Provider | None = None
    declare_objects: bool = False
    after: pulumi.Resource | None = None  # the adoption check, when there is one
    surge_from: Host | None = None  # the departing host when this slot is swapped by surge
    departed: str | None = None  # the Node this slot's host replaced (cpswap.core.slots.departed_nodes)


def _options(d: Declaration, *, parent: pulumi.Resource, depends_on: list[pulumi.Resource],
             provider: pulumi.ProviderResource | None = None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, depends_on=depends_on, provider=provider,
                                  delete_before_replace=d.delete_before_replace, retain_on_delete=d.retain_on_delete,
                                  custom_timeouts=pulumi.CustomTimeouts(**d.timeouts),
                                  additional_secret_outputs=list(d.additional_secret_outputs))


def _command_inputs(d: Declaration, *, stdin: pulumi.Input[str] | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {**d.inputs, "stdin": stdin}
    if "logging" in inputs:
        inputs["logging"] = (local.Logging if d.local else remote.Logging)(inputs["logging"])
    return inputs


def local_command(spec: CommandSpec, *, parent: pulumi.Resource, depends_on: list[pulumi.Resource],
                  stdin: pulumi.Input[str] | None = None,
                  environment: dict[str, pulumi.Output[str]] | None = None) -> local.Command:
    d = declare(spec)
    return local.Command(d.name, environment=environment or None,
                         opts=_options(d, parent=parent, depends_on=depends_on),
                         **_command_inputs(d, stdin=stdin))


class Slot(pulumi.ComponentResource):
    """One control-plane slot: leave (on stored state), join, verify, recover claims."""

    def __init__(self, name: str, args: SlotArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cpswap:index:Slot", name, {"slot": args.member.slot, "host": args.member.host.as_dict()},
                         opts)
        self._args = args
        previous: list[pulumi.Resource] = [args.after] if args.after is not None else []
        resources: dict[str, pulumi.Resource] = {}
        self.operations: list[str] = []
        for spec in slot_commands(model=args.model, member=args.member, surge_from=args.surge_from,
                                  departed=args.departed):
            if isinstance(spec, ObjectSpec):
                if not args.declare_objects:
                    continue
                resource = self._object(spec, depends_on=previous)
                self.operations.append(spec.object_name)
            else:
                resource = self._command(spec, depends_on=previous, resources=resources)
            resources[spec.action] = resource
            previous = [resource]
        # the slot's own hostNetworks, read at run time by another slot's ocboot join (its survivors)
        annotations = ({HOST_NETWORKS_ANNOTATION: args.member.host_networks} if args.member.host_networks else None)
        labels = k8s.core.v1.NodePatch(
            f"{args.member.slot}-node-labels",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=args.member.host.name, labels={"cpswap.io/slot": args.member.slot}, annotations=annotations),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=previous,
                                        delete_before_replace=True, retain_on_delete=True))
        self.host = pulumi.Output.from_input(args.member.host.as_dict())
        self.register_outputs({"host": self.host, "labels": labels.metadata})

    def _stdin(self, spec: CommandSpec, resources: dict[str, pulumi.Resource]) -> pulumi.Input[str] | None:
        a, stdin = self._args, spec.stdin
        if stdin is None:
            return None
        earlier = resources[stdin.output_of] if stdin.output_of is not None else None
        assert earlier is None or isinstance(earlier, (local.Command, remote.Command))
        if earlier is not None and not stdin.then_output:
            return pulumi.Output.secret(earlier.stdout)
        assert stdin.secret is not None
        render = stdin.render
        text = a.secrets.by_config_key(stdin.secret).apply(lambda value: render(a.model, a.member, value))
        if earlier is None:
            return text
        # the secret's text, then the earlier resource's output (an Output: the engine resolves it at run time)
        return pulumi.Output.secret(pulumi.Output.all(text, earlier.stdout).apply(lambda v: f"{v[0]}{v[1]}\n"))

    def _object(self, spec: ObjectSpec, *, depends_on: list[pulumi.Resource]) -> pulumi.Resource:
        a, d = self._args, declare(spec)
        provider = a.global_provider if d.provider == "global" else a.k8s_provider
        if provider is None:
            raise ValueError(f"{d.name}: no Kubernetes provider for the {d.provider} cluster")
        return k8s.apiextensions.CustomResource(
            d.name, api_version=d.inputs["apiVersion"], kind=d.inputs["kind"],
            metadata=k8s.meta.v1.ObjectMetaArgs(**d.inputs["metadata"]), spec=d.inputs["spec"],
            opts=_options(d, parent=self, depends_on=depends_on, provider=provider))

    def _command(self, spec: CommandSpec, *, depends_on: list[pulumi.Resource],
                 resources: dict[str, pulumi.Resource]) -> pulumi.Resource:
        a, d = self._args, declare(spec)
        if d.local:
            return local_command(spec, parent=self, depends_on=depends_on, stdin=self._stdin(spec, resources),
                                 environment={var: a.secrets.by_config_key(key) for var, key in d.secret_env})
        opts = _options(d, parent=self, depends_on=depends_on)
        common = _command_inputs(d, stdin=self._stdin(spec, resources))
        host = a.model.endpoint.host if d.runs_on.target == "vip" else a.member.host.ip
        connection = remote.ConnectionArgs(host=host, port=a.model.ssh.port, user=a.model.ssh.user,
                                           private_key=a.secrets.by_config_key("sshPrivateKey"),
                                           dial_error_limit=5, per_dial_timeout=15)
        return remote.Command(spec.name, connection=connection, opts=opts, **common)


class ControlPlane(pulumi.ComponentResource):
    """The whole control plane: one Slot per slot, plus the Kubernetes provider through the VIP."""

    def __init__(self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Registered before every slot resource: the policy pack checks the plan and the declared
        # commands here, so a violation stops `pulumi up` before the first step.
        commands = [view_to_input(v) for v in declared_views(model=args.model, object_slots=args.object_slots,
                                                             surge_from=args.surge_from, departed=args.departed)]
        super().__init__("cpswap:index:ControlPlane", name, {"plan": args.plan, "commands": commands}, opts)
        provider = k8s.Provider(f"{name}-k8s", kubeconfig=args.secrets.kubeconfig,
                                cluster_identifier=MANAGED_CLUSTER_ID, opts=pulumi.ResourceOptions(parent=self))
        global_provider = None
        clean: list[pulumi.Resource] = []
        model = args.model
        if model.distro.global_cluster:
            global_provider = k8s.Provider(f"{name}-k8s-global", kubeconfig=args.secrets.by_config_key("globalKubeconfig"),
                                           cluster_identifier=GLOBAL_CLUSTER_ID,
                                           opts=pulumi.ResourceOptions(parent=self))
            clean = [k8s.core.v1.ConfigMapPatch(
                f"{name}-{patch.name}",
                # a server-side apply: forced, because a cluster set up as in seed 001 already holds this
                # key with the seed's playbook under another field manager (a 409 conflict otherwise,
                # pulumi-kubernetes provider/pkg/await/await.go patchForce)
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(name=patch.name, namespace=patch.namespace,
                                                         annotations={"pulumi.com/patchForce": "true"}),
                data=dict(patch.data),
                opts=pulumi.ResourceOptions(parent=self, provider=global_provider, retain_on_delete=True))
                for patch in model.distro.global_config_maps(model)]
        check = None
        if args.adoption:
            spec = adoption_check(model=model)
            check = local_command(spec, parent=self, depends_on=clean,
                                  environment={var: args.secrets.by_config_key(key) for var, key in spec.secret_env})
        self.slots = {m.slot: Slot(m.slot, SlotArgs(model=model, member=m, secrets=args.secrets,
                                                    k8s_provider=provider, global_provider=global_provider,
                                                    declare_objects=m.slot in args.object_slots, after=check,
                                                    surge_from=(args.surge_from or {}).get(m.slot),
                                                    departed=args.departed.get(m.slot)),
                                   opts=pulumi.ResourceOptions(parent=self, depends_on=clean))
                      for m in model.members}
        # `pulumi destroy` deletes this first: it depends on every slot resource (Slot components expand to
        # their children), so ScheduleDeletes puts it alone in the first antichain (docs/CONTRACTS.md, Destroy)
        self.destroy_guard = local_command(destroy_guard(model=model), parent=self,
                                           depends_on=[*self.slots.values(), *clean])
        self.membership = pulumi.Output.from_input({m.slot: m.host.as_dict() for m in model.members})
        self.operations = sorted(op for slot in self.slots.values() for op in slot.operations)
        self.register_outputs({"membership": self.membership, "plan": args.plan, "operations": self.operations})
