"""kubean executor: ClusterOperations, the hosts-conf inventory and the seed-001 ConfigMap fixes.

Not pure (HTTP to two API servers: kubean's global cluster, from CPSWAP_GLOBAL_KUBECONFIG_DATA,
and the managed cluster, from CPSWAP_KUBECONFIG_DATA). Every wait has a deadline and prints
progress. A ClusterOperation is immutable once it runs (kubean digests it), so a Failed one is
never edited: the run stops naming its job; the next run sees the failure it reported (annotation
``cpswap.io/failure-reported``) and resubmits the same spec under the same name. Before it does,
the Failed operation is deleted with Foreground propagation and the run waits until both the
operation and its Job ``kubean-<operation>-job`` are gone: kubean names the Job after the
operation and ADOPTS an existing Job of that name (kubean-io/kubean pkg/controllers/clusterops/
controller.go ``CreateKubeSprayJob``: a successful Get of ``GenerateJobName`` is used as the new
operation's job), so a leftover Failed Job would fail the resubmission at once without running.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Iterator

from kubernetes import client

from cpswap.core import inputs
from cpswap.core import kubespray as inv
from cpswap.core.errors import ApiError, PermanentError, TransientError
from cpswap.core.model import KubeanSettings
from cpswap.core.renderers import kubean as kb
from cpswap.executors import kube as kx
from cpswap.executors.waiting import wait_until

Progress = Callable[[str], None]
GROUP, VERSION = "kubean.io", "v1alpha1"
REPORTED = "cpswap.io/failure-reported"
SPEC_FIELDS = ("cluster", "image", "actionType", "action", "extraArgs", "preHook", "postHook", "backoffLimit")


@dataclass(frozen=True)
class Global:
    api: kx.Api  # kubean's global cluster
    objects: client.CustomObjectsApi

    @property
    def core(self) -> client.CoreV1Api:
        return self.api.core

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api.core.api_client)


@contextlib.contextmanager
def connect_global(*, timeout: float = 10.0, kubeconfig: str | None = None) -> Iterator[Global]:
    """``kubeconfig`` is a path; else env CPSWAP_GLOBAL_KUBECONFIG_DATA (the kubeconfig text)."""
    if kubeconfig is not None:
        with kx.connect(kubeconfig=kubeconfig, timeout=timeout) as api:
            yield Global(api=api, objects=client.CustomObjectsApi(api.core.api_client))
        return
    text = os.environ.get("CPSWAP_GLOBAL_KUBECONFIG_DATA")
    if not text:
        raise PermanentError("no kubeconfig for kubean's global cluster: set CPSWAP_GLOBAL_KUBECONFIG_DATA "
                             "(secret stack config cpswap:globalKubeconfig)")
    with kx.connect(kubeconfig_text=text, timeout=timeout) as api:
        yield Global(api=api, objects=client.CustomObjectsApi(api.core.api_client))


def _call(what: str, fn: Callable[..., Any], *args: Any, g: Global, **kwargs: Any) -> Any:
    return kx._call(f"global cluster: {what}", fn, *args, api=g.api, **kwargs)


def _read(what: str, fn: Callable[..., Any], *args: Any, g: Global) -> Any:
    """Like ``_call``; an absent object is None."""
    return kx.read_or_none(f"global cluster: {what}", fn, *args, api=g.api)


def hosts_conf_ref(g: Global, kubean: KubeanSettings) -> tuple[str, str]:
    cluster = _read(f"read clusters.kubean.io/{kubean.cluster}", g.objects.get_cluster_custom_object, GROUP,
                    VERSION, "clusters", kubean.cluster, g=g)
    if cluster is None:
        raise PermanentError(f"kubean Cluster {kubean.cluster} not found on the global cluster "
                             f"(cpswap:kubean.cluster)")
    ref = (cluster.get("spec") or {}).get("hostsConfRef") or {}
    if not ref.get("name"):
        raise PermanentError(f"kubean Cluster {kubean.cluster} has no spec.hostsConfRef")
    return ref.get("namespace") or kubean.namespace, ref["name"]


def read_inventory(g: Global, kubean: KubeanSettings) -> tuple[tuple[str, str], dict[str, Any]]:
    namespace, name = hosts_conf_ref(g, kubean)
    cm = kx.read_config_map(g.api, namespace, name)
    if cm is None:
        raise PermanentError(f"hosts-conf {namespace}/{name} (spec.hostsConfRef of Cluster {kubean.cluster}) not found")
    text = (cm.data or {}).get("hosts.yml")
    if not text:
        raise PermanentError(f"hosts-conf {namespace}/{name} has no hosts.yml")
    try:
        return (namespace, name), inv.parse_inventory(text)
    except ValueError as exc:
        raise PermanentError(f"hosts-conf {namespace}/{name}: {exc}") from None


def write_inventory(g: Global, ref: tuple[str, str], doc: dict[str, Any], *, why: str, progress: Progress) -> None:
    namespace, name = ref
    _call(f"patch configmap {namespace}/{name}", g.core.patch_namespaced_config_map, name, namespace,
          {"data": {"hosts.yml": inv.dump_inventory(doc)}}, g=g)
    progress(f"hosts-conf {namespace}/{name}: {why}; kube_control_plane is now "
             f"{', '.join(inv.group_hosts(doc, 'kube_control_plane'))}")


def _read_operation(g: Global, name: str) -> dict[str, Any] | None:
    return _read(f"read ClusterOperation {name}", g.objects.get_cluster_custom_object, GROUP, VERSION,
                 "clusteroperations", name, g=g)


def _create_operation(g: Global, body: dict[str, Any], progress: Progress) -> None:
    clean = {"apiVersion": body.get("apiVersion", kb.API_VERSION), "kind": "ClusterOperation",
             "metadata": {"name": body["metadata"]["name"], "labels": {"app.kubernetes.io/managed-by": "cpswap"}},
             "spec": body["spec"]}
    _call(f"create ClusterOperation {clean['metadata']['name']}", g.objects.create_cluster_custom_object,
          GROUP, VERSION, "clusteroperations", clean, g=g)
    progress(f"ClusterOperation {clean['metadata']['name']}: created ({clean['spec']['action']} "
             f"{clean['spec'].get('extraArgs', '')})".rstrip())


def _job(op: dict[str, Any]) -> str:
    ref = (op.get("status") or {}).get("jobRef") or {}
    return f"{ref.get('namespace', '?')}/{ref.get('name', '?')}" if ref else "(no job yet)"


def run_operation(g: Global, *, name: str, body: dict[str, Any] | None, deadline_s: float,
                  progress: Progress) -> str:
    """Make the operation ``name`` succeed: create it from ``body`` if absent, wait for its status,
    resubmit it once when its failure was reported by an earlier run. Returns the job name."""
    op = _read_operation(g, name)
    if op is None:
        if body is None:
            raise PermanentError(f"ClusterOperation {name} does not exist (it is declared by the program)")
        _create_operation(g, body, progress)
    elif (op.get("status") or {}).get("status") == "Failed":
        job = _job(op)
        if (op["metadata"].get("annotations") or {}).get(REPORTED) != job:
            _report_failure(g, name, job)
            raise _failed(name, job)
        progress(f"ClusterOperation {name}: failed earlier (job {job}, reported); resubmitting the same spec")
        delete_operation(g, name=name, job_namespace=((op.get("status") or {}).get("jobRef") or {}).get(
            "namespace") or kb.JOB_NAMESPACE, deadline_s=120, progress=progress)
        # resubmit only the fields cpswap sets: kubean fills hostsConfRef, varsConfRef and
        # entrypointSHRef itself (a snapshot of the inventory at first sight)
        own = body or {"metadata": {"name": name}, "spec": {k: v for k, v in (op.get("spec") or {}).items()
                                                            if k in SPEC_FIELDS}}
        _create_operation(g, own, progress)
    final: dict[str, Any] = {}

    def probe() -> tuple[bool, str]:
        current = _read_operation(g, name)
        if current is None:
            raise PermanentError(f"ClusterOperation {name} disappeared while running")
        status = (current.get("status") or {}).get("status") or "Pending"
        if status == "Failed":
            job = _job(current)
            _report_failure(g, name, job)
            raise _failed(name, job)
        final.update(current)
        return status == "Succeeded", f"{status} (job {_job(current)})"

    wait_until(f"ClusterOperation {name}", probe, deadline_s=deadline_s, progress=progress, max_delay_s=5.0)
    progress(f"ClusterOperation {name}: Succeeded (job {_job(final)})")
    return _job(final)


def delete_operation(g: Global, *, name: str, job_namespace: str, deadline_s: float, progress: Progress) -> None:
    """Delete the operation with Foreground propagation (its Job goes first: it is owned by the
    operation) and wait until the operation and ``kubean-<name>-job`` are both gone."""
    job = kb.job_name(name)
    kx.delete_if_present(f"global cluster: delete ClusterOperation {name}", g.objects.delete_cluster_custom_object,
                         GROUP, VERSION, "clusteroperations", name, api=g.api,
                         body=client.V1DeleteOptions(propagation_policy="Foreground"))

    def gone() -> tuple[bool, str]:
        op = _read_operation(g, name)
        left = _read(f"read job {job_namespace}/{job}", g.batch.read_namespaced_job, job, job_namespace, g=g)
        waiting = [w for w, present in ((f"ClusterOperation {name}", op is not None),
                                        (f"job {job_namespace}/{job}", left is not None)) if present]
        return not waiting, "waiting for " + " and ".join(waiting) + " to go (kubean would adopt the old job)"
    wait_until(f"ClusterOperation {name} and its job deleted", gone, deadline_s=deadline_s, progress=progress)
    progress(f"ClusterOperation {name} and job {job_namespace}/{job}: deleted")


def _failed(name: str, job: str) -> PermanentError:
    namespace, _, job_name = job.partition("/")
    return PermanentError(f"ClusterOperation {name} failed: job {job}; read it with `kubectl -n {namespace} logs "
                          f"job/{job_name}`, fix the cause and re-run")


def _report_failure(g: Global, name: str, job: str) -> None:
    with contextlib.suppress(ApiError, TransientError):
        _call(f"annotate ClusterOperation {name}", g.objects.patch_cluster_custom_object, GROUP, VERSION,
              "clusteroperations", name, {"metadata": {"annotations": {REPORTED: job}}}, g=g)


def _node_dead(node: str, current: client.V1Node | None, progress: Progress) -> bool:
    dead = current is None or not kx.node_ready(current)
    progress(f"Node {node}: {'absent' if current is None else 'Ready' if not dead else 'NotReady'}"
             + ("; removing without drain or reset (reset_nodes=false, allow_ungraceful_removal=true)" if dead else ""))
    return dead


def _fix_control_plane_pointers(*, old_ip: str, new_first: str, new_ip: str, progress: Progress,
                                kubeconfig: str | None = None) -> None:
    """seed 001 step 4 of the first-node case: cluster-info ``server`` and kubeadm-config
    ``controlPlaneEndpoint`` move to the new first control-plane node when they named the old one."""
    with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
        for namespace, name, key, fix in (("kube-public", "cluster-info", "kubeconfig", inv.repoint_server),
                                          ("kube-system", "kubeadm-config", "ClusterConfiguration",
                                           inv.repoint_endpoint)):
            cm = kx.read_config_map(api, namespace, name)
            if cm is None:
                progress(f"{namespace}/{name}: absent; nothing to fix")
                continue
            text = (cm.data or {}).get(key, "")
            fixed, changed = fix(text, old_ip=old_ip, new_host=new_ip)
            if not changed:
                progress(f"{namespace}/{name}: does not name {old_ip}; unchanged")
                continue
            kx._call(f"patch configmap {namespace}/{name}", api.core.patch_namespaced_config_map, name, namespace,
                     {"data": {key: fixed}}, api=api)
            progress(f"{namespace}/{name}: {key} now points at {new_first} ({new_ip}) instead of {old_ip}")


@inputs.validated(node=inputs.dns_name, ip=inputs.ip_address, operation=inputs.dns_name, deadline_s=inputs.seconds)
def leave(*, kubean: KubeanSettings, node: str, ip: str, operation: str, guard: Callable[[], object],
          deadline_s: float, progress: Progress, kubeconfig: str | None = None, global_kubeconfig: str | None = None) -> None:
    """The departing node leaves through kubean (seed 001 steps 2-4). Idempotent; never contacts it.

    When an earlier run's remove operation already took the etcd member and the Node (and then
    failed in a post-hook), the operation is not run again: Kubespray fails on a missing member."""
    member = guard()  # quorum check and verified snapshot, through the surviving etcd members; None: gone
    with connect_global(kubeconfig=global_kubeconfig) as g:
        ref, doc = read_inventory(g, kubean)
        done = _read_operation(g, operation)
        if inv.has_left(doc, node, operation_status=(done.get("status") or {}).get("status") if done else None):
            progress(f"{node} is not in hosts-conf: it has left already")
            return
        others = [h for h in inv.group_hosts(doc, "kube_control_plane") if h != node]
        with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:  # observe, then decide, then act
            current = kx.read_node(api, node)
            ready = {h: (n := kx.read_node(api, h)) is not None and kx.node_ready(n) for h in others}
        plan = inv.decide_kubean_leave(doc=doc, host=node, member_present=member is not None,
                                       node_present=current is not None, ready=ready, where=f"{ref[0]}/{ref[1]}")
        if plan.move_to_end:
            doc = inv.move_to_end(doc, node)
            write_inventory(g, ref, doc, why=f"{node} was the first control-plane/etcd node; moved to the end "
                                              f"(Kubespray cannot remove the first node)", progress=progress)
        if not plan.run_remove:
            progress(f"{node}: etcd member and Node already removed (by an earlier run's {operation}); "
                     f"not running remove-node.yml again")
        else:
            if plan.skipped:
                progress(f"clean-kube-apiserver hook: skipping {', '.join(plan.skipped)} "
                         "(Node not Ready: unreachable hosts fail the hook)")
            body = kb.remove_operation(name=operation, node=node, kubean=kubean,
                                       dead=_node_dead(node, current, progress), clean_on=plan.clean_on)
            run_operation(g, name=operation, body=body, deadline_s=deadline_s, progress=progress)
        ref, doc = read_inventory(g, kubean)
        new_first = inv.first_control_plane(inv.without_host(doc, node))
        if new_first is None:
            raise PermanentError(f"hosts-conf would have no kube_control_plane host left after removing {node}")
        new_ip = inv.host_ip(doc, new_first)
        if new_ip is None:
            raise PermanentError(f"hosts-conf: {new_first} has no ansible_host/ip")
        _fix_control_plane_pointers(old_ip=ip, new_first=new_first, new_ip=new_ip, progress=progress,
                                    kubeconfig=kubeconfig)
        write_inventory(g, ref, inv.without_host(doc, node), why=f"{node} removed", progress=progress)


@inputs.validated(node=inputs.dns_name, ip=inputs.ip_address)
def inventory_add(*, kubean: KubeanSettings, node: str, ip: str, progress: Progress,
                  kubeconfig: str | None = None, global_kubeconfig: str | None = None) -> None:
    with connect_global(kubeconfig=global_kubeconfig) as g:
        ref, doc = read_inventory(g, kubean)
        updated = inv.with_host(doc, node, ip)
        if updated == doc:
            progress(f"{node} ({ip}) is in hosts-conf already")
            return
        write_inventory(g, ref, updated, why=f"{node} ({ip}) added to kube_control_plane, kube_node and etcd",
                        progress=progress)


@inputs.validated(name=inputs.dns_name, node=inputs.dns_name, deadline_s=inputs.seconds)
def wait(*, name: str, node: str | None, deadline_s: float, progress: Progress, kubeconfig: str | None = None,
         global_kubeconfig: str | None = None) -> str:
    with connect_global(kubeconfig=global_kubeconfig) as g:
        if _read_operation(g, name) is None and node is not None:
            with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
                current = kx.read_node(api, node)
            if current is not None and kx.node_ready(current):
                progress(f"no ClusterOperation {name} (none declared: {node} joined before cpswap managed it); "
                         f"Node {node} is Ready")
                return "(none)"
        return run_operation(g, name=name, body=None, deadline_s=deadline_s, progress=progress)

