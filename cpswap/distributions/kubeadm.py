"""kubeadm: a survivor issues the join material, the new host runs ``kubeadm join --control-plane``. Pure.

Leave: through the survivors (common.survivors_leave). Join: ``<slot>-join-prepare`` on the VIP
holder uploads the control-plane certificates and creates a token (a secret output), then
``<slot>-join`` on the new host writes a 0600 JoinConfiguration from it (cpswap/core/renderers/
kubeadm.py; docs/CONFORMANCE.md "kubeadm"). Verify also checks that ``controlPlaneEndpoint`` and
cluster-info name the VIP. The kubelet's port 10250 must be free too.
"""
from __future__ import annotations

from typing import Any

from cpswap.core.model import KubeadmSettings, Member, StackModel, _Collector, _fullmatch, _int, _obj
from cpswap.core.renderers import render_kubeadm_join, render_kubeadm_prepare
from cpswap.core.renderers.kube import render_kubeadm_endpoint_check
from cpswap.core.renderers.etcd import render_etcdutl_restore
from cpswap.core.steps import Action, Stdin
from cpswap.core.slots import CommandSpec, RunsOn, SlotResource, record
from cpswap.distributions import Block, Distribution, EtcdPreset, PreflightNeeds
from cpswap.distributions.common import member_checks, survivors_leave


def parse_kubeadm(c: _Collector, raw: Any) -> KubeadmSettings:
    spec = _obj(c, "kubeadm", raw, {"criSocket", "apiserverBindPort"})
    cri = spec.get("criSocket")
    if cri is not None and not (_fullmatch(r"unix:///[A-Za-z0-9._/-]+", cri)):
        c.add("kubeadm.criSocket", cri, "must be a unix:/// socket path")
        cri = None
    return KubeadmSettings(cri_socket=cri, apiserver_bind_port=_int(
        c, "kubeadm.apiserverBindPort", spec.get("apiserverBindPort"), default=6443))



def join(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    kubeadm, triggers = model.kubeadm, member.host.triggers()
    assert kubeadm is not None  # parse_kubeadm always yields settings for this distribution
    return (
        CommandSpec(
            name=f"{member.slot}-join-prepare", action=Action.JOIN_PREPARE, runs_on=RunsOn("ssh", "vip"),
            create=render_kubeadm_prepare(host=member.host), update=record(member, "join material issued earlier"),
            delete=None, triggers=triggers, secret_output=True, create_timeout="5m",
            reason="a survivor uploads the control-plane certs and issues a token (both expire; made just in time)"),
        CommandSpec(
            name=f"{member.slot}-join", action=Action.JOIN, runs_on=RunsOn("ssh", "self"),
            create=render_kubeadm_join(host=member.host, endpoint=model.endpoint, kubeadm=kubeadm),
            update=record(member, "joined earlier; not re-joining"), delete=None, triggers=triggers,
            stdin=Stdin("kubeadm-join-material", output_of=Action.JOIN_PREPARE), create_timeout="30m",
            reason="kubeadm join --control-plane on the new host with the survivor's token and certificate key"),
    )


def verify(model: StackModel, member: Member) -> tuple[str, ...]:
    return (*member_checks(model, member), render_kubeadm_endpoint_check(endpoint=model.endpoint))


DISTRIBUTION = Distribution(
    name="kubeadm", summary="kubeadm with stacked etcd; a survivor issues the join material",
    blocks=(Block("kubeadm", parse_kubeadm),), etcd_preset=EtcdPreset(
        "kubeadm", cacert="etc/kubernetes/pki/etcd/ca.crt", cert="etc/kubernetes/pki/etcd/healthcheck-client.crt",
        key="etc/kubernetes/pki/etcd/healthcheck-client.key"),
    keepalived=True, rebuild_in_place=True,
    leave=survivors_leave, join=join, verify=verify,
    preflight=PreflightNeeds(ssh_new_host=True, ssh_vip=True, ports=(10250,), installer="kubeadm"),
    restore=render_etcdutl_restore,
    joins_alongside=True,
    joins_alongside_why=("kubeadm join --control-plane adds one member next to the existing ones (as a learner, "
                         "promoted once in sync, with EtcdLearnerMode: on by default from 1.29)"))
