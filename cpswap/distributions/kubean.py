"""kubean (DCE 5.0): Kubespray playbooks run as ClusterOperations on the global cluster (seed 001). Pure.

Leave (``<slot>-etcd-leave`` delete): guard quorum and snapshot etcd, move a first control-plane node
to the end of the inventory, run remove-node.yml and fix cluster-info/kubeadm-config. Join: the host
in hosts-conf (``<slot>-inventory``), the cluster.yml ClusterOperation (``<slot>-join``, an object on
the global cluster, declared with pulumi-kubernetes) and ``<slot>-join-wait``
(cpswap/core/renderers/kubean.py; docs/CONFORMANCE.md "kubean"). kubean reaches the hosts itself;
cpswap needs the global cluster's kubeconfig (``globalKubeconfig``).
"""
from __future__ import annotations

from typing import Any

from cpswap.core import inputs
from cpswap.core.errors import Violation
from cpswap.core.model import KubeanSettings, Member, StackModel, _checked, _Collector, _obj
from cpswap.core.renderers import kubean as kb
from cpswap.core.renderers.etcd import render_etcdutl_restore
from cpswap.core.steps import Action
from cpswap.core.slots import GLOBAL_KUBECONFIG_ENV, LOCAL_SECRET_ENV, CommandSpec, ObjectSpec, RunsOn, SlotResource, record
from cpswap.distributions import Block, ConfigMapPatch, Distribution, PreflightNeeds
from cpswap.distributions.common import member_checks


def parse_kubean(c: _Collector, raw: Any) -> KubeanSettings | None:
    spec = _obj(c, "kubean", raw, {"cluster", "image", "namespace"})
    if raw is None:
        c.add("kubean", None, "distribution kubean needs the kubean block (cluster, image)")
        return None
    cluster, image = spec.get("cluster"), spec.get("image")
    namespace = spec.get("namespace", KubeanSettings.namespace)
    _checked(c, "kubean.cluster", cluster,
             lambda v: inputs.dns_name(v, what="name of the clusters.kubean.io object"))
    if not isinstance(image, str) or not inputs.IMAGE.fullmatch(image):
        c.add("kubean.image", image, "must be the spray-job image used at deploy, with its tag or digest, "
                                     "e.g. ghcr.io/kubean-io/spray-job:v0.12.2")
    elif image.endswith(":latest"):
        c.add("kubean.image", image, "must be pinned to the image used at deploy, not :latest")
    if not isinstance(namespace, str) or not inputs.DNS1123_LABEL.fullmatch(namespace):
        c.add("kubean.namespace", namespace, "must be a namespace name (DNS-1123 label)")
    return KubeanSettings(cluster=str(cluster), image=str(image), namespace=str(namespace))


def _settings(model: StackModel) -> KubeanSettings:
    kubean = model.kubean
    assert kubean is not None  # a stack without the block is refused by parse_kubean
    return kubean


def leave(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    kubean, host, triggers = _settings(model), member.host, member.host.triggers()
    local = RunsOn("local", "operator")
    return (
        CommandSpec(
            name=f"{member.slot}-etcd-leave", action=Action.KUBEAN_REMOVE, runs_on=local,
            create=record(member, "is a kubean control-plane node; its removal runs when this slot changes"),
            update=record(member, "membership unchanged"),
            delete=kb.render_kubean_leave(host=host, slot=member.slot, kubean=kubean, etcd=model.etcd),
            triggers=triggers, secret_env=LOCAL_SECRET_ENV + GLOBAL_KUBECONFIG_ENV, delete_timeout="70m",
            reason="guard quorum and snapshot etcd, move a first control-plane node to the end of the inventory, "
                   "run remove-node.yml (ClusterOperation) and fix cluster-info/kubeadm-config; never contacts "
                   "the departing host"),
    )


def join(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    kubean, host, triggers = _settings(model), member.host, member.host.triggers()
    local = RunsOn("local", "operator")
    operation = kb.operation_name(slot=member.slot, action="join", host=host)
    return (
        CommandSpec(
            name=f"{member.slot}-inventory", action=Action.KUBEAN_INVENTORY, runs_on=local,
            create=kb.render_kubean_inventory(host=host, kubean=kubean),
            update=record(member, "in the inventory already"), delete=None, triggers=triggers,
            secret_env=GLOBAL_KUBECONFIG_ENV, create_timeout="5m",
            reason="the joining host must be in hosts-conf (etcd, kube_control_plane, kube_node) for cluster.yml"),
        ObjectSpec(
            name=f"{member.slot}-join", action=Action.JOIN, provider="global", api_version=kb.API_VERSION,
            object_kind="ClusterOperation", object_name=operation,
            spec=tuple(kb.join_operation_spec(kubean=kubean).items()), triggers=triggers,
            reason="kubean runs cluster.yml --limit=etcd,kube_control_plane, then upgrade-cluster.yml and "
                   "cluster-info.yml (seed 001), with the image used at deploy"),
        CommandSpec(
            name=f"{member.slot}-join-wait", action=Action.JOIN_WAIT, runs_on=local,
            create=kb.render_kubean_wait(name=operation, host=host, kubean=kubean),
            update=record(member, "join operation finished earlier"), delete=None, triggers=triggers,
            secret_env=LOCAL_SECRET_ENV[:1] + GLOBAL_KUBECONFIG_ENV, create_timeout="95m",
            reason="wait for the ClusterOperation; Failed stops the run with the job's name (a re-run resubmits it)"),
    )


def member_rules(member: Member) -> tuple[Violation, ...]:
    """kubean names the removal's Job after the slot and host; a Job name fits 63 characters."""
    job = len(f"kubean-cpswap-{member.slot}-remove-{member.host.name}-r{member.host.rebuild}-job")
    if job <= 63:
        return ()
    return (Violation(f"members.{member.slot}.name", member.host.name,
                      f"kubean names the Job kubean-cpswap-{member.slot}-remove-<name>[-rN]-job, which must fit 63 "
                      f"characters ({job} here); use a shorter slot or host name"),)


def plan_notes(model: StackModel, slot: str, old: Any, new: Any) -> tuple[str, ...]:
    return (f"kubean: if {old.name} is first in kube_control_plane/etcd of hosts-conf, the leave "
            f"moves it to the end first (Kubespray cannot remove the first node) and then points "
            f"cluster-info and kubeadm-config at the new first control-plane node if they named it",)


def clean_playbook(model: StackModel) -> tuple[ConfigMapPatch, ...]:
    """The clean-up playbook remove-node.yml's postHook runs (seed 001), in kubean's namespace."""
    return (ConfigMapPatch(kb.CLEAN_CONFIGMAP, _settings(model).namespace, ((kb.CLEAN_PLAYBOOK, kb.CLEAN_PLAYBOOK_TEXT),)),)


DISTRIBUTION = Distribution(
    name="kubean", summary="DCE 5.0 / kubean: Kubespray ClusterOperations on the global cluster",
    blocks=(Block("kubean", parse_kubean),), secrets=("globalKubeconfig",), rebuild_in_place=True,
    member_rules=member_rules, leave=leave, join=join, joined_by=Action.JOIN_WAIT, verify=member_checks,
    plan_notes=plan_notes,
    global_cluster=True, global_config_maps=clean_playbook, restore=render_etcdutl_restore, preflight=PreflightNeeds(kubean=True),
    joins_alongside=False,
    joins_alongside_why=("Kubespray's preinstall check 'Stop if even number of etcd hosts' refuses an inventory "
                         "with 4 etcd hosts, so cluster.yml cannot run while the old node is still in it"))
