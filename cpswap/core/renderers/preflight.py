"""Renderer for the preflight step's command line, run from the operator's machine. Pure.

The command carries only the slot's own host, the VIP and stack-level settings (like every slot
resource), and the run's worst-case duration the etcd client certificate must outlive. The SSH
key and the etcd and Kubernetes credentials arrive in secret environment variables.
"""
from __future__ import annotations

from shlex import quote

from cpswap.core.model import Member, StackModel
from cpswap.core.renderers.executor import CPSWAP
from cpswap.core.renderers.kube import policy_json


def render_preflight(*, model: StackModel, member: Member, worst_case_s: int, old_node: str | None = None) -> str:
    """``cpswap preflight`` for ``member``: exits 1 with every failed check, before any leave runs.
    ``old_node``: the Node the slot's host replaces (a swap): its claims must fit on the new host."""
    parts = [f"{CPSWAP} preflight --distribution {quote(model.distribution)} --slot {quote(member.slot)}",
             f"--node {quote(member.host.name)} --ip {quote(member.host.ip)} --vip {quote(model.endpoint.host)}",
             f"--ssh-user {quote(model.ssh.user)} --ssh-port {model.ssh.port}"]
    if model.distro.preflight.critical_config:
        parts.append(f"--k3s-server {quote(f'https://{model.endpoint}')}")
    if model.ocboot is not None:
        parts.append(f"--ocboot-workdir {quote(model.ocboot.workdir)} --ocboot-version {quote(model.ocboot.version)}")
    if model.kubean is not None:
        parts.append(f"--kubean-cluster {quote(model.kubean.cluster)} --kubean-image {quote(model.kubean.image)} "
                     f"--kubean-namespace {quote(model.kubean.namespace)}")
    if model.openshift is not None:
        parts.append(f"--machine-namespace {quote(model.openshift.machine_namespace)}")
    if old_node:
        parts.append(f"--old-node {quote(old_node)} --policy-json {quote(policy_json(model.pvc_policies))}")
    parts.append(f"{model.etcd.snapshot_flag().strip()} --worst-case {worst_case_s}".strip())
    return " ".join(parts)
