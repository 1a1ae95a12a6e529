"""Renderers for kubean (DCE 5.0): the ClusterOperation specs of seed 001 and the executor lines. Pure.

kubean runs Kubespray playbooks as ``ClusterOperation`` objects on the global cluster. A swap is:
- leave (delete, from stored state): ``cpswap kubean leave``, which guards quorum and snapshots
  etcd, moves a first control-plane node to the end of the inventory groups (Kubespray cannot
  remove the first one), creates and waits for ``remove-node.yml -e node=...`` with the seed's
  kube-apiserver clean-up post-hook (aimed at the surviving control-plane hosts), fixes ``cluster-info`` and ``kubeadm-config`` when they
  pointed at the departed node, and drops it from the inventory. It is created by the executor,
  not declared: it runs at delete time and needs the departed host, which only stored state has.
- join (create): the slot's host is added to the inventory, then the ``cluster.yml
  --limit=etcd,kube_control_plane`` operation (declared with pulumi-kubernetes) runs with the
  ``upgrade-cluster.yml`` and ``cluster-info.yml`` post-hooks, and ``cpswap kubean wait`` waits
  for it (a Failed status stops the run with the job's name).
"""
from __future__ import annotations

import hashlib
from shlex import quote
from typing import Any

from cpswap.core.model import EtcdSettings, Host, KubeanSettings
from cpswap.core.renderers.executor import CPSWAP

API_VERSION = "kubean.io/v1alpha1"
CLEAN_CONFIGMAP = "pb-clean-kube-apiserver"
CLEAN_PLAYBOOK = "clean-kube-apiserver.yml"
CLEAN_PLAYBOOK_TEXT = """- name: Clean kube-apiserver
  hosts: "{{ node | default('kube_node') }}"
  gather_facts: no
  tasks:
    - name: Kill kube-apiserver process
      shell: ps -eopid=,comm= | awk '$2=="kube-apiserver" {print $1}' | xargs -r kill -9
"""
JOIN_LIMIT = "--limit=etcd,kube_control_plane -e ignore_assert_errors=yes"
UNGRACEFUL = "-e reset_nodes=false -e allow_ungraceful_removal=true"


def _kubean_flags(kubean: KubeanSettings) -> str:
    return f"--cluster {quote(kubean.cluster)} --namespace {quote(kubean.namespace)} --image {quote(kubean.image)}"


JOB_NAMESPACE = "kubean-system"  # where kubean runs its Jobs (its own namespace)
# kubean names an operation's Job ``kubean-<operation>-job`` (pkg/controllers/clusterops/controller.go
# GenerateJobName); Kubernetes refuses a Job whose name, copied into the pod template's
# ``batch.kubernetes.io/job-name`` label, exceeds a label value's 63 characters, and kubean then
# requeues the operation for ever with no status. So an operation name has at most 63 - 11.
MAX_OPERATION_NAME = 63 - len("kubean--job")


def job_name(operation: str) -> str:
    return f"kubean-{operation}-job"


def operation_name(*, slot: str, action: str, host: Host) -> str:
    """Deterministic, unique per host and rebuild: ``cpswap-cp1-join-node1`` (``-r2`` after rebuilds).
    A name longer than ``MAX_OPERATION_NAME`` keeps its start and ends in 8 hex of its sha256, so
    kubean can create its Job; it stays a DNS-1123 label (lower-case host names, as the model requires)."""
    suffix = f"-r{host.rebuild}" if host.rebuild else ""
    name = f"cpswap-{slot}-{action}-{host.name}{suffix}"
    if len(name) <= MAX_OPERATION_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_OPERATION_NAME - 9].rstrip('-.')}-{digest}"


def remove_operation(*, name: str, node: str, kubean: KubeanSettings, dead: bool,
                     clean_on: tuple[str, ...]) -> dict[str, Any]:
    """seed 001 step 3; a dead node also needs reset_nodes=false and allow_ungraceful_removal=true.

    The seed's clean-kube-apiserver hook restarts kube-apiserver so that it drops the removed etcd
    member; its ``hosts: "{{ node | default('kube_node') }}"`` gets ``node`` only from the hook's own
    extraArgs (kubean runs each hook with its own), so without them it runs on every kube_node host
    and fails on an unreachable one (a dead departing node stays in the inventory until the leave
    drops it). The hook therefore names ``clean_on``: the surviving control-plane hosts, the ones
    that run kube-apiserver."""
    if not clean_on or node in clean_on:
        raise ValueError(f"remove_operation for {node}: clean_on must name the surviving control-plane hosts, "
                         f"got {list(clean_on)}")
    extra = f"-e node={node}" + (f" {UNGRACEFUL}" if dead else "")
    return {"apiVersion": API_VERSION, "kind": "ClusterOperation", "metadata": {"name": name},
            "spec": {"cluster": kubean.cluster, "image": kubean.image, "actionType": "playbook",
                     "action": "remove-node.yml", "extraArgs": extra,
                     "postHook": [{"actionType": "playbook", "actionSource": "configmap",
                                   "actionSourceRef": {"name": CLEAN_CONFIGMAP, "namespace": kubean.namespace},
                                   "action": CLEAN_PLAYBOOK, "extraArgs": f"-e node={','.join(clean_on)}"},
                                  {"actionType": "playbook", "action": "cluster-info.yml"}]}}


def join_operation_spec(*, kubean: KubeanSettings) -> dict[str, Any]:
    """seed 001 step 4: the control-plane scale-up. Names no host: the inventory says who joins."""
    return {"cluster": kubean.cluster, "image": kubean.image, "actionType": "playbook", "action": "cluster.yml",
            "extraArgs": f"{JOIN_LIMIT} --skip-tags=multus",
            "preHook": [{"actionType": "playbook", "action": "disable-firewalld.yml"}],
            "postHook": [{"actionType": "playbook", "action": "upgrade-cluster.yml", "extraArgs": JOIN_LIMIT},
                         {"actionType": "playbook", "action": "cluster-info.yml"}]}


def render_kubean_leave(*, host: Host, slot: str, kubean: KubeanSettings, etcd: EtcdSettings,
                        deadline_s: int = 3600) -> str:
    return (f"{CPSWAP} kubean leave {_kubean_flags(kubean)} --node {quote(host.name)} --ip {quote(host.ip)} "
            f"--operation {quote(operation_name(slot=slot, action='remove', host=host))} "
            f"--preset {quote(etcd.preset)} {etcd.snapshot_flag()} --deadline {deadline_s}")


def render_kubean_inventory(*, host: Host, kubean: KubeanSettings) -> str:
    return f"{CPSWAP} kubean inventory-add {_kubean_flags(kubean)} --node {quote(host.name)} --ip {quote(host.ip)}"


def render_kubean_wait(*, name: str, host: Host, kubean: KubeanSettings, deadline_s: int = 5400) -> str:
    """Wait for the join operation; without one (a first `up` declares none) the Node must be Ready."""
    return (f"{CPSWAP} kubean wait {_kubean_flags(kubean)} --operation {quote(name)} --node {quote(host.name)} "
            f"--deadline {deadline_s}")
