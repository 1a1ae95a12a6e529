"""OpenShift: the etcd operator and the Machine API replace a control-plane member (seed 003). Pure.

Leave: remove the member through a healthy etcd pod on another node (``<slot>-etcd-leave``) and
delete the old node's etcd TLS secrets (``<slot>-etcd-secrets``). Join: recreate the Machine from
the old one's spec with a new name (``<slot>-machine``; an in-place rebuild keeps it and moves the
crashlooping static pod aside, ``<slot>-etcd-reset``) and force a redeployment of etcd
(``<slot>-redeploy``) (cpswap/core/renderers/openshift.py; docs/CONFORMANCE.md "OpenShift").
Verify finds etcd through its pods; the Machine API reaches the hosts, cpswap does not.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from cpswap.core import inputs
from cpswap.core.model import Member, OpenshiftSettings, StackModel, _Collector, _obj
from cpswap.core.renderers import openshift as ocp
from cpswap.core.renderers import render_node_verify
from cpswap.core.steps import Action
from cpswap.core.slots import LOCAL_SECRET_ENV, CommandSpec, RunsOn, SlotResource, record
from cpswap.distributions import Block, Distribution, PreflightNeeds
from cpswap.distributions.common import etcd_leave


def parse_openshift(c: _Collector, raw: Any) -> OpenshiftSettings:
    spec = _obj(c, "openshift", raw, {"machineNamespace", "etcdNamespace"})
    values = {}
    for key, attr in (("machineNamespace", "machine_namespace"), ("etcdNamespace", "etcd_namespace")):
        value = spec.get(key, getattr(OpenshiftSettings, attr))
        if not isinstance(value, str) or not inputs.DNS1123_LABEL.fullmatch(value):
            c.add(f"openshift.{key}", value, "must be a namespace name (DNS-1123 label)")
            value = getattr(OpenshiftSettings, attr)
        values[attr] = value
    return OpenshiftSettings(**values)


def _settings(model: StackModel) -> OpenshiftSettings:
    osh = model.openshift
    assert osh is not None  # parse_openshift always yields settings for this distribution
    return osh


def leave(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    osh, host, triggers = _settings(model), member.host, member.host.triggers()
    local = RunsOn("local", "operator")
    return (
        etcd_leave(member, delete=ocp.render_openshift_etcd_leave(host=host, etcd=model.etcd, openshift=osh),
                   reason="remove the member through a healthy etcd pod on another node, after a verified snapshot; "
                          "with an Active ControlPlaneMachineSet the etcd operator removes it when the Machine goes"),
        CommandSpec(
            name=f"{member.slot}-etcd-secrets", action=Action.ETCD_SECRETS_DELETE, runs_on=local,
            create=record(member, "has etcd peer/serving/metrics secrets; they are deleted when this slot changes"),
            update=record(member, "etcd secrets unchanged"),
            delete=ocp.render_delete_etcd_secrets(host=host, openshift=osh), triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1], delete_timeout="5m",
            reason="the etcd operator must issue new certificates for the member (seed 003)"),
    )


def join(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    osh, host, triggers = _settings(model), member.host, member.host.triggers()
    local = RunsOn("local", "operator")
    specs: list[SlotResource] = [
        CommandSpec(
            name=f"{member.slot}-machine", action=Action.MACHINE, runs_on=local,
            create=ocp.render_create_machine(member=member, openshift=osh),
            update=record(replace(member, host=replace(host, rebuild=0)), "Machine unchanged"),
            delete=ocp.render_delete_machine(member=member, openshift=osh),
            triggers=(host.name, host.ip), secret_env=LOCAL_SECRET_ENV[:1],
            create_timeout="65m", delete_timeout="17m",  # the executors' own --deadline: 3600 and 900
            reason="recreate the Machine from the old one's spec with a new name, without status and providerID "
                   "(an in-place rebuild keeps the Machine)"),
    ]
    if host.rebuild:
        specs.append(CommandSpec(
            name=f"{member.slot}-etcd-reset", action=Action.ETCD_RESET, runs_on=RunsOn("ssh", "self"),
            create=ocp.render_etcd_reset(host=host), update=record(member, "etcd reset earlier"), delete=None,
            triggers=triggers, create_timeout="5m",
            reason="the crashlooping etcd static pod's manifest and data directory are moved aside on the node"))
    specs.append(CommandSpec(
        name=f"{member.slot}-redeploy", action=Action.ETCD_REDEPLOY, runs_on=local,
        create=ocp.render_redeploy(member=member, openshift=osh, etcd=model.etcd),
        update=record(member, "redeployed earlier"),
        delete=None, triggers=triggers, secret_env=LOCAL_SECRET_ENV, create_timeout="10m",
        reason="forceRedeploymentReason (unique) unless the etcd operator already added the member; the quorum "
               "guard is off only while the revision controller would refuse, and always turned back on"))
    return tuple(specs)


def verify(model: StackModel, member: Member) -> tuple[str, ...]:
    return (ocp.render_openshift_etcd_verify(host=member.host, etcd=model.etcd, openshift=_settings(model)),
            render_node_verify(host=member.host))


def restore(snapshot: str, survivor: Mapping[str, Any] | None) -> str:
    return f"/usr/local/bin/cluster-restore.sh {snapshot.rsplit('/', 1)[0] if '/' in snapshot else '.'}"


def plan_notes(model: StackModel, slot: str, old: Any, new: Any) -> tuple[str, ...]:
    if old.name != new.name:
        return ()
    return (f"openshift: {new.name} is rebuilt in place (crashlooping etcd, seed 003 2.4.2): "
            f"the Machine is kept; the static pod manifest and /var/lib/etcd are moved aside on it",)


DISTRIBUTION = Distribution(
    name="openshift", summary="OpenShift: the etcd operator and the Machine API",
    blocks=(Block("openshift", parse_openshift),), rebuild_in_place=True, machine_names=True,
    leave=leave, join=join, joined_by=Action.ETCD_REDEPLOY, verify=verify, verify_timeout="42m",
    adopt_discover="openshift",
    plan_notes=plan_notes, restore=restore, preflight=PreflightNeeds(machine_api=True),
    joins_alongside=False,
    joins_alongside_why=("cpswap's OpenShift flow deletes the old Machine before it creates the new one (an "
                         "Active ControlPlaneMachineSet surges by itself)"))
