"""Kubernetes executor: Nodes (list, wait, cordon, drain, delete) and claims via the official client; PVC
recovery is cpswap/executors/recovery.py. Calls go through the one error boundary (executors/boundary.py).

Not pure (HTTP to the API server). Every call carries a request timeout and every wait a
deadline with progress lines. Selectors are applied client-side (lists are filtered here), so
the code behaves the same against servers that ignore them, such as the kmock emulator used in
tests; eviction falls back to a plain delete when the eviction endpoint is missing. Cordons are
marked with an annotation, so only what cpswap cordoned is uncordoned, even after an interruption.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Iterator, Sequence

from kubernetes import client, config as kconfig

from cpswap.core import inputs
from cpswap.core.errors import ConfigError, NotFoundError, PermanentError, TooManyRequestsError, Violation
from cpswap.core.facts import ClaimFact, KubeFacts, OwnerKind
from cpswap.core.inputs import host_port
from cpswap.executors.boundary import kube_errors
from cpswap.executors.secretfiles import private_dir, write_secret
from cpswap.executors.waiting import wait_until
from cpswap.core.recovery import (NodeCapacity, check_capacity)

Progress = Callable[[str], None]
CORDON_MARK = "cpswap.io/cordoned-for-recovery"
HOSTNAME_KEY = "kubernetes.io/hostname"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
LOCAL_PATH_NODE = "local.path.provisioner/selected-node"
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master",
                        "node-role.kubernetes.io/etcd")


@dataclass(frozen=True)
class Api:
    core: client.CoreV1Api
    apps: client.AppsV1Api
    timeout: float


@contextlib.contextmanager
def connect(*, kubeconfig: str | None = None, kubeconfig_text: str | None = None, timeout: float = 10.0) -> Iterator[Api]:
    """``kubeconfig`` is a path; else ``kubeconfig_text`` or env CPSWAP_KUBECONFIG_DATA (written to a
    0600 file in a private directory removed on exit, SIGTERM and SIGINT: ``secretfiles``)."""
    with contextlib.ExitStack() as stack:
        path = kubeconfig
        if path is None:
            text = kubeconfig_text if kubeconfig_text is not None else os.environ.get("CPSWAP_KUBECONFIG_DATA")
            if not text:
                raise PermanentError("no kubeconfig: pass --kubeconfig or set CPSWAP_KUBECONFIG_DATA "
                                     "(secret stack config cpswap:kubeconfig)")
            path = write_secret(stack.enter_context(private_dir("kubeconfig")), "kubeconfig", text)
        cfg = client.Configuration()
        try:
            kconfig.load_kube_config(config_file=path, client_configuration=cfg)
        except Exception as exc:
            raise PermanentError(f"kubeconfig unusable: {type(exc).__name__}: {str(exc)[:200]}") from None
        cfg.retries = 0
        api_client = client.ApiClient(cfg)
        try:
            yield Api(core=client.CoreV1Api(api_client), apps=client.AppsV1Api(api_client), timeout=timeout)
        finally:
            api_client.close()


def _call(what: str, fn: Callable[..., Any], *args: Any, api: Api, **kwargs: Any) -> Any:
    """Every API call: positional strings are path segments (group, version, namespace, plural, name)
    and must be non-empty DNS-1123 names, so an empty name can never become a collection request."""
    for arg in args:
        if isinstance(arg, str):
            try:
                inputs.path_segment(arg)
            except inputs.InputError as exc:
                raise ConfigError([Violation(what, arg, f"refused before any request: {exc}")]) from None
    with kube_errors(what):  # the one boundary: client failures leave as cpswap errors
        return fn(*args, _request_timeout=api.timeout, **kwargs)


def list_nodes(api: Api) -> list[client.V1Node]:
    return list(_call("list nodes", api.core.list_node, api=api).items)


def read_or_none(what: str, fn: Callable[..., Any], *args: Any, api: Api) -> Any:
    """``fn(*args)`` through ``_call``; an absent object (404) is None."""
    try:
        return _call(what, fn, *args, api=api)
    except NotFoundError:
        return None


def delete_if_present(what: str, fn: Callable[..., Any], *args: Any, api: Api, **kwargs: Any) -> bool:
    """``fn(*args, **kwargs)`` through ``_call``; True when it deleted something, False when it was absent (404)."""
    try:
        _call(what, fn, *args, api=api, **kwargs)
        return True
    except NotFoundError:
        return False


def read_node(api: Api, name: str) -> client.V1Node | None:
    return read_or_none(f"read node {name}", api.core.read_node, name, api=api)


def read_config_map(api: Api, namespace: str, name: str) -> client.V1ConfigMap | None:
    return read_or_none(f"read configmap {namespace}/{name}", api.core.read_namespaced_config_map, name, namespace,
                        api=api)


def node_ready(node: client.V1Node) -> bool:
    for cond in (node.status.conditions or []) if node.status else []:
        if cond.type == "Ready":
            return cond.status == "True"
    return False


def _internal_ip(node: client.V1Node) -> str | None:
    for address in (node.status.addresses or []) if node.status else []:
        if address.type == "InternalIP":
            return address.address
    return None


@inputs.validated(timeout=inputs.seconds, port=inputs.port)
def control_plane_endpoints(*, kubeconfig: str | None, timeout: float, port: int = 2379) -> list[str]:
    """https://<InternalIP>:<port> of Ready control-plane Nodes (etcd runs there)."""
    with connect(kubeconfig=kubeconfig, timeout=timeout) as api:
        nodes = list_nodes(api)
    urls = []
    for node in nodes:
        labels = node.metadata.labels or {}
        ip = _internal_ip(node)
        if ip and node_ready(node) and any(label in labels for label in CONTROL_PLANE_LABELS):
            urls.append(f"https://{host_port(ip, port)}")
    return sorted(urls)


def all_pods(api: Api) -> list[client.V1Pod]:
    return list(_call("list pods", api.core.list_pod_for_all_namespaces, api=api).items)


def _pv_node(pv: client.V1PersistentVolume) -> str | None:
    affinity = pv.spec.node_affinity if pv.spec else None
    if affinity and affinity.required:
        for term in affinity.required.node_selector_terms or []:
            for expr in term.match_expressions or []:
                if expr.key == HOSTNAME_KEY and expr.operator == "In" and expr.values:
                    return expr.values[0]
    return (pv.metadata.annotations or {}).get(LOCAL_PATH_NODE)


def _owner(api: Api, pvc: client.V1PersistentVolumeClaim, pods: list[client.V1Pod],
           statefulsets: list[client.V1StatefulSet],
           deployments: Sequence[client.V1Deployment] = ()) -> tuple[OwnerKind, str, tuple[str, ...]]:
    users = [p for p in pods if p.metadata.namespace == pvc.metadata.namespace and any(
        v.persistent_volume_claim and v.persistent_volume_claim.claim_name == pvc.metadata.name
        for v in (p.spec.volumes or []))]
    names = tuple(sorted(p.metadata.name for p in users))
    for pod in users:
        for ref in pod.metadata.owner_references or []:
            if ref.kind == "StatefulSet":
                return "StatefulSet", ref.name, names
            if ref.kind == "ReplicaSet":
                return "Deployment", ref.name.rsplit("-", 1)[0], names
            if ref.kind == "Deployment":
                return "Deployment", ref.name, names
    for sts in statefulsets:
        if sts.metadata.namespace != pvc.metadata.namespace:
            continue
        for template in sts.spec.volume_claim_templates or []:
            prefix = f"{template.metadata.name}-{sts.metadata.name}-"
            if pvc.metadata.name.startswith(prefix) and pvc.metadata.name[len(prefix):].isdigit():
                return "StatefulSet", sts.metadata.name, names
    for dep in deployments:  # no pod right now (e.g. just garbage-collected): the template says who owns it
        volumes = dep.spec.template.spec.volumes or [] if dep.spec and dep.spec.template.spec else []
        if dep.metadata.namespace == pvc.metadata.namespace and any(
                v.persistent_volume_claim and v.persistent_volume_claim.claim_name == pvc.metadata.name for v in volumes):
            return "Deployment", dep.metadata.name, names
    return "Bare", "", names


@inputs.validated(nodes=inputs.node_names)
def claims_on(api: Api, *, nodes: set[str] | None = None, orphaned: bool = False) -> list[ClaimFact]:
    """Claims whose PV is pinned to one of ``nodes`` (or, with ``orphaned``, to a Node that no
    longer exists), plus unbound claims whose selected-node annotation names such a node."""
    existing = {n.metadata.name for n in list_nodes(api)}
    wanted = (lambda n: n is not None and n not in existing) if orphaned else (lambda n: n in (nodes or set()))
    pvs = list(_call("list PVs", api.core.list_persistent_volume, api=api).items)
    pvcs = list(_call("list PVCs", api.core.list_persistent_volume_claim_for_all_namespaces, api=api).items)
    pods = all_pods(api)
    statefulsets = list(_call("list statefulsets", api.apps.list_stateful_set_for_all_namespaces, api=api).items)
    deployments = list(_call("list deployments", api.apps.list_deployment_for_all_namespaces, api=api).items)
    pinned = {(pv.spec.claim_ref.namespace, pv.spec.claim_ref.name): (pv, _pv_node(pv))
              for pv in pvs if pv.spec and pv.spec.claim_ref}
    facts = []
    for pvc in pvcs:
        key = (pvc.metadata.namespace, pvc.metadata.name)
        pv, node = pinned.get(key, (None, None))
        if node is None:
            node = (pvc.metadata.annotations or {}).get(SELECTED_NODE)
        if not wanted(node):
            continue
        kind, owner, users = _owner(api, pvc, pods, statefulsets, deployments)
        size = ((pvc.spec.resources.requests or {}).get("storage", "?") if pvc.spec and pvc.spec.resources else "?")
        facts.append(ClaimFact(namespace=key[0], name=key[1], node=str(node), volume=pv.metadata.name if pv else "",
                               size=str(size), storage_class=(pvc.spec.storage_class_name or "") if pvc.spec else "",
                               owner_kind=kind, owner_name=owner, pods=users))
    return sorted(facts, key=lambda c: c.key)


@inputs.validated(node=inputs.dns_name, timeout=inputs.seconds)
def observe_kube(*, kubeconfig: str, node: str, timeout: float) -> KubeFacts:
    """Read-only facts for the departing node; never raises for reachability."""
    try:
        with connect(kubeconfig_text=kubeconfig, timeout=timeout) as api:
            current = read_node(api, node)
            return KubeFacts(reachable=True, node=node, node_ready=node_ready(current) if current else None,
                             claims=tuple(claims_on(api, nodes={node})))
    except Exception as exc:  # degrade to unobserved
        return KubeFacts(reachable=False, node=node, error=str(exc)[:300])


@inputs.validated(name=inputs.dns_name, deadline_s=inputs.seconds)
def wait_node(api: Api, *, name: str, deadline_s: float, progress: Progress) -> None:
    def probe() -> tuple[bool, str]:
        node = read_node(api, name)
        if node is None:
            return False, "not registered yet"
        return node_ready(node), "registered, Ready" if node_ready(node) else "registered, not Ready"
    wait_until(f"wait-node {name}", probe, deadline_s=deadline_s, progress=progress)
    progress(f"node {name} is Ready")


@inputs.validated(names=inputs.node_names)
def cordon(api: Api, *, names: Sequence[str], progress: Progress) -> list[str]:
    """Cordon nodes that are schedulable and mark them; an already-cordoned node is left as it is."""
    marked = []
    for name in names:
        node = read_node(api, name)
        if node is None:
            continue
        annotations = node.metadata.annotations or {}
        if node.spec and node.spec.unschedulable and CORDON_MARK not in annotations:
            progress(f"{name}: already cordoned by someone else; it stays cordoned")
            continue
        _call(f"cordon {name}", api.core.patch_node, name,
              {"metadata": {"annotations": {CORDON_MARK: "true"}}, "spec": {"unschedulable": True}}, api=api)
        marked.append(name)
        progress(f"{name}: cordoned (marked {CORDON_MARK})")
    return marked


@inputs.validated(names=inputs.node_names)
def uncordon_marked(api: Api, *, progress: Progress, names: Sequence[str] | None = None) -> list[str]:
    """Uncordon exactly the nodes cpswap cordoned (carrying the mark), and drop the mark; a node
    cordoned by someone else carries no mark and stays cordoned. ``names`` limits it to those nodes."""
    restored = []
    for node in list_nodes(api):
        if names is not None and node.metadata.name not in names:
            continue
        if CORDON_MARK in (node.metadata.annotations or {}):
            _call(f"uncordon {node.metadata.name}", api.core.patch_node, node.metadata.name,
                  {"metadata": {"annotations": {CORDON_MARK: None}}, "spec": {"unschedulable": False}}, api=api)
            restored.append(node.metadata.name)
            progress(f"{node.metadata.name}: uncordoned")
    return restored


def _is_daemonset_pod(pod: client.V1Pod) -> bool:
    return any(ref.kind == "DaemonSet" for ref in pod.metadata.owner_references or [])


def _delete_pod(api: Api, pod: client.V1Pod, *, force: bool) -> None:
    delete_if_present(f"delete pod {pod.metadata.namespace}/{pod.metadata.name}", api.core.delete_namespaced_pod,
                      pod.metadata.name, pod.metadata.namespace, api=api, grace_period_seconds=0 if force else None)


def _evict(api: Api, pod: client.V1Pod, progress: Progress) -> bool:
    """Ask the eviction API to evict ``pod``; False when a PodDisruptionBudget refuses it for now
    (429 Too Many Requests, which ``kubectl drain`` retries after a delay: kubernetes/kubectl
    pkg/drain/drain.go ``evictPods`` at dee3483a3d6a64c07fdf746caf80af446dee99ac), True otherwise."""
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=pod.metadata.namespace))
    try:
        _call("evict", api.core.create_namespaced_pod_eviction, pod.metadata.name, pod.metadata.namespace, body,
              api=api)
    except TooManyRequestsError:  # not a transient API failure: the budget says "not now"
        progress(f"eviction of {pod.metadata.namespace}/{pod.metadata.name} refused for now by a "
                 f"PodDisruptionBudget; retrying until the drain deadline")
        return False
    except NotFoundError:
        if _still_there(api, pod):
            progress(f"eviction API unavailable for {pod.metadata.namespace}/{pod.metadata.name}; deleting instead")
            _delete_pod(api, pod, force=False)
    return True


def _still_there(api: Api, pod: client.V1Pod) -> bool:
    return read_or_none("read pod", api.core.read_namespaced_pod, pod.metadata.name, pod.metadata.namespace,
                        api=api) is not None


@inputs.validated(name=inputs.dns_name, timeout_s=inputs.seconds)
def drain(api: Api, *, name: str, timeout_s: float, progress: Progress) -> None:
    """Cordon and empty a node. A NotReady node cannot confirm deletions, so its pods are
    force-deleted and nothing is awaited; otherwise evict and wait, bounded by ``timeout_s``."""
    node = read_node(api, name)
    if node is None:
        progress(f"drain {name}: node absent, nothing to drain")
        return
    _call(f"cordon {name}", api.core.patch_node, name, {"spec": {"unschedulable": True}}, api=api)
    pods = [p for p in all_pods(api) if p.spec.node_name == name and not _is_daemonset_pod(p)]
    if not node_ready(node):
        progress(f"drain {name}: node is NotReady; force-deleting {len(pods)} pod(s) without waiting")
        for pod in pods:
            _delete_pod(api, pod, force=True)
        return
    blocked = {(p.metadata.namespace, p.metadata.name) for p in pods if not _evict(api, p, progress)}

    def probe() -> tuple[bool, str]:
        left = [p for p in all_pods(api) if p.spec.node_name == name and not _is_daemonset_pod(p)]
        for pod in left:  # a PodDisruptionBudget that refused an eviction may allow it now
            if (pod.metadata.namespace, pod.metadata.name) in blocked and _evict(api, pod, lambda _: None):
                blocked.discard((pod.metadata.namespace, pod.metadata.name))
        return not left, f"{len(left)} pod(s) left" + (f", {len(blocked)} held by a PodDisruptionBudget"
                                                       if blocked else "")

    wait_until(f"drain {name}", probe, deadline_s=timeout_s, progress=progress)


def is_control_plane(node: client.V1Node) -> bool:
    return any(label in (node.metadata.labels or {}) for label in CONTROL_PLANE_LABELS)


@inputs.validated(name=inputs.dns_name, drain_timeout_s=inputs.seconds)
def delete_node(api: Api, *, name: str, drain_first: bool, drain_timeout_s: float, progress: Progress,
                lock: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None) -> str:
    """Drain (optionally) and delete the Node ``name``; absent is success. A control-plane Node
    (``CONTROL_PLANE_LABELS``) is deleted only under the cluster's membership lock: ``lock(what)``
    is entered first (``etcd_lock.membership_lock`` on the cluster's etcd: k3s removes the Node's
    etcd member with it, so it is a membership change like ``etcd remove``, issue 14), and the Node
    is read again under it. Without ``lock`` a control-plane Node is refused before anything is sent."""
    node = read_node(api, name)
    if node is None:
        progress(f"node {name} is already gone")
        return "absent"
    if not is_control_plane(node):
        return _drain_and_delete(api, name=name, drain_first=drain_first, drain_timeout_s=drain_timeout_s,
                                 progress=progress)
    if lock is None:
        raise ConfigError([Violation("--preset/--endpoints", "", f"node {name} is a control-plane Node (labels "
                                     f"{', '.join(k for k in CONTROL_PLANE_LABELS if k in (node.metadata.labels or {}))}): "
                                     "deleting it changes the control plane, so it needs the cluster's etcd "
                                     "connection to take the membership lock first; nothing was deleted")])
    with lock(f"delete control-plane node {name}"):
        if read_node(api, name) is None:
            progress(f"node {name} is already gone")
            return "absent"
        return _drain_and_delete(api, name=name, drain_first=drain_first, drain_timeout_s=drain_timeout_s,
                                 progress=progress)


def _drain_and_delete(api: Api, *, name: str, drain_first: bool, drain_timeout_s: float, progress: Progress) -> str:
    if drain_first:
        drain(api, name=name, timeout_s=drain_timeout_s, progress=progress)
    delete_if_present(f"delete node {name}", api.core.delete_node, name, api=api)
    progress(f"node {name} deleted")
    return "deleted"


@inputs.validated(name=inputs.dns_name)
def capacity(api: Api, *, name: str) -> Any:
    nodes = list_nodes(api)
    pods = all_pods(api)
    moving = len([p for p in pods if p.spec.node_name == name and not _is_daemonset_pod(p)])
    survivors = []
    for node in nodes:
        if node.metadata.name == name or not node_ready(node) or (node.spec and node.spec.unschedulable):
            continue
        max_pods = int(((node.status.allocatable or {}) if node.status else {}).get("pods", 110))
        on = len([p for p in pods if p.spec.node_name == node.metadata.name])
        survivors.append(NodeCapacity(name=node.metadata.name, max_pods=max_pods, pods=on))
    return check_capacity(survivors=survivors, moving_pods=moving)
