"""An emulated Kubernetes API (kmock's KubernetesEmulator over HTTP) plus small controller hooks
that play the parts no emulator runs. Test-only.

API (reused by the twin, tests/support/twin/):
- ``Emulator(host="127.0.0.1")`` context manager: kmock in a forked child process on ``host`` and a
  free port; ``.url``, ``.kubeconfig_text`` (token auth, no secrets), ``.write_kubeconfig(path)``,
  ``.api`` (a ``cpswap.executors.kube.Api``), ``.core``/``.apps`` clients, ``.stop()`` (the API
  process goes away: requests fail, for fault tests; idempotent, SIGKILL by PID after 5 s).
- ``Controllers(emulator, lifetime_s=None, tick_s=0.2)`` context manager (a ``ReconcileLoop``, the base
  the twin's emulated operators share): a thread that reconciles
  every ``tick_s`` until stopped (``lifetime_s``, default ``LOOP_BOUND_S``, only ends a loop a test leaked); ``.paused`` (Event) halts it, ``.errors``
  collects unexpected API errors. It plays: pod GC (pods on Nodes that no longer exist are deleted),
  pvc-protection (a terminating PVC loses its finalizer once no *scheduled* pod uses it, as in
  kube-controller-manager), the StatefulSet controller (recreates a missing pod, and its PVC from the
  claim template if absent; like Kubernetes before #93457 it does not wait for a terminating PVC,
  which is the race cpswap handles), the Deployment controller (one pod per Deployment), a scheduler
  (Ready, schedulable nodes with free max-pods from status.allocatable.pods; a pod whose PVC is bound
  goes to the PV's node; required pod anti-affinity by ``app`` label; a missing or terminating PVC
  leaves the pod Pending with 'persistentvolumeclaim "x" not found'), local-path (binds an unbound
  claim to a new PV pinned, by nodeAffinity kubernetes.io/hostname and annotation, to its pod's node)
  and the onecloud operator (recreates Deployment onecloud/default-victoria-metrics and its PVC, and
  keeps 3 default-etcd pods).
- ``seed_004(core, apps, *, max_pods=110, ips=None, dead_ready=False, with_new_node=True)``: the
  seed-004 cluster: nodes lzx-ha-env (NotReady unless ``dead_ready``), lzx-ha-env-2, lzx-ha-env-3,
  lzx-test-add-node; onecloud-minio/minio (4 replicas), onecloud-monitoring/monitor-minio (4),
  onecloud/default-victoria-metrics (Deployment + PVC), 3 default-etcd pods; minio-1,
  monitor-minio-1, default-victoria-metrics and one default-etcd pod on lzx-ha-env. The default IPs
  are the seed's and are only stored, never contacted.
- ``register_node(core, name, ip, ready=True, max_pods=110)``, ``set_node_ready(core, name, ready)``:
  what a kubelet does on join / on losing its node.
- ``ONECLOUD_POLICY``: the seed's ``cpswap:pvcRecovery`` object.

kmock gaps, handled here or in the client layer: it ignores label and field selectors (everything
lists and filters client-side); it has no eviction endpoint (the executor falls back to delete); it
runs no controllers (the hooks above); and it matches every request against its whole request
history, so per-request cost grows without bound (``_TrimmedEmulator`` keeps the last 64).
"""
from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import string
import threading
import time
from pathlib import Path
from typing import Any

import kmock
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cpswap.executors.kube import Api

ONECLOUD_POLICY = {
    "onecloud-minio": {"policy": "recreate", "dataClass": "replicated", "order": 1, "owner": "statefulset"},
    "onecloud-monitoring": {"policy": "recreate", "dataClass": "replicated", "order": 2, "owner": "statefulset"},
    "onecloud/default-victoria-metrics": {"policy": "recreate", "dataClass": "disposable", "order": 3,
                                          "owner": "operator"},
}


HISTORY = 64


class _TrimmedEmulator(kmock.KubernetesEmulator):
    """kmock keeps every request for assertions and matches each new request against that whole
    history (``request in payload._source`` walks it), so per-request cost grows linearly and a
    controller loop slows to ~100 ms per call within minutes. Only the last ``HISTORY`` requests are
    kept: far more than can be in flight, and these tests assert on API state, not on requests."""

    async def __call__(self, raw_request: Any) -> Any:
        del self._requests[:-HISTORY]
        return await super().__call__(raw_request)


def _serve(conn: Any, host: str) -> None:
    """Child process: kmock's KubernetesEmulator behind kmock.Server on ``host`` (a free port),
    until the parent sends anything (or closes the pipe)."""
    async def main() -> None:
        async with _TrimmedEmulator() as k, kmock.Server(k, host=host) as server:
            k.resources.load_bundled()
            conn.send(str(server.url).rstrip("/"))
            with contextlib.suppress(EOFError):
                await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    asyncio.run(main())


class Emulator:
    """kmock in its own process (its own core and GIL: the API, the controllers and the code under
    test then run in parallel, like a real cluster). ``stop()`` makes the API vanish mid-test.
    ``host`` is where it listens: 127.0.0.1, or an address inside a test's own network namespace."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self._host = host

    def __enter__(self) -> Emulator:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, self._host), daemon=True, name="kmock-emulator")
        self._process.start()
        child.close()
        if not self._conn.poll(15):
            self.stop()
            raise RuntimeError("kmock emulator did not start in 15 s")
        self.url = self._conn.recv()
        cfg = client.Configuration()
        cfg.host = self.url
        cfg.retries = 0
        self.api_client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.api = Api(core=self.core, apps=self.apps, timeout=5)
        return self

    def stop(self) -> None:
        """Stop the API server (idempotent): asks it to exit, then SIGKILLs it by PID after 5 s."""
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send("stop")
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()

    def __exit__(self, *exc: Any) -> None:
        if hasattr(self, "api_client"):
            self.api_client.close()
        self.stop()

    @property
    def kubeconfig_text(self) -> str:
        return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: twin\n  cluster:\n    server: {self.url}\n"
                f"contexts:\n- name: twin\n  context:\n    cluster: twin\n    user: twin\ncurrent-context: twin\n"
                f"users:\n- name: twin\n  user:\n    token: emulator-token\n")

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(self.kubeconfig_text)
        return path


def _meta(name: str, namespace: str | None = None, **kw: Any) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, namespace=namespace, **kw)


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


# A reconcile loop lives until it is stopped: a fixed lifetime shorter than its test can expire on a
# loaded machine (the test then fails on controllers that quietly stopped). This bound only ends a
# loop whose test leaked it; it is above every test's pytest timeout (the longest is 900 s), so the
# test's own timeout always fires first and its teardown stops the loop.
LOOP_BOUND_S = 3600.0


class ReconcileLoop:
    """A reconcile loop in a thread against the emulator at ``url``, running until ``stop()``
    (bounded by ``lifetime_s``, default ``LOOP_BOUND_S``): ``reconcile()`` runs every ``tick_s`` unless ``.paused`` is set; API
    races with the code under test (404, 409) are retried on the next tick, anything else goes to
    ``.errors`` (prefixed with ``name`` when it has one); ``.ticks`` counts completed passes and
    ``settle(passes)`` waits (bounded) for more of them."""

    name = ""

    def __init__(self, url: str, *, lifetime_s: float | None, tick_s: float) -> None:
        cfg = client.Configuration()
        cfg.host = url
        cfg.retries = 0
        self._api_client = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self._api_client)
        self._lifetime, self._tick = LOOP_BOUND_S if lifetime_s is None else lifetime_s, tick_s
        self._stop = threading.Event()
        self.paused = threading.Event()
        self.errors: list[str] = []
        self.ticks = 0
        self._in_pass = threading.Lock()  # held for the length of one pass (hold() waits for it)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"twin-{self.name or 'controllers'}")

    def start(self) -> ReconcileLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(20)
        self._api_client.close()

    def _run(self) -> None:
        end = time.monotonic() + self._lifetime
        prefix = f"{self.name}: " if self.name else ""
        while not self._stop.is_set() and time.monotonic() < end:
            if not self.paused.is_set():
                try:
                    with self._in_pass:
                        self.reconcile()
                except ApiException as exc:  # conflicts with the code under test are normal; retry next tick
                    if exc.status not in (404, 409):
                        self.errors.append(f"{prefix}{exc.status} {exc.reason}")
                except Exception as exc:  # keep reconciling; tests assert on .errors
                    self.errors.append(f"{prefix}{type(exc).__name__}: {exc}")
                self.ticks += 1
            self._stop.wait(self._tick)

    def hold(self, *, timeout_s: float = 60) -> None:
        """Pause, and return only once no pass is running: from then on nothing changes until
        ``.paused`` is cleared (a test may run ``reconcile()`` itself, one deterministic pass)."""
        self.paused.set()
        if not self._in_pass.acquire(timeout=timeout_s):
            raise RuntimeError(f"{self.name or 'controllers'}: a pass did not end within {timeout_s:.0f} s")
        self._in_pass.release()

    def settle(self, passes: int = 2, *, timeout_s: float = 30) -> None:
        """Wait until ``passes`` more full passes have run (bounded)."""
        target, end = self.ticks + passes, time.monotonic() + timeout_s
        while self.ticks < target:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError(f"{self.name or 'controllers'}: {passes} passes did not complete in "
                                   f"{timeout_s:.0f} s")
            time.sleep(0.05)

    def reconcile(self) -> None:
        raise NotImplementedError


class Controllers(ReconcileLoop):
    """The cluster's controllers (module docstring), as a context manager."""

    def __init__(self, emulator: Emulator, *, lifetime_s: float | None = None, tick_s: float = 0.2) -> None:
        super().__init__(emulator.url, lifetime_s=lifetime_s, tick_s=tick_s)
        self.apps = client.AppsV1Api(self._api_client)

    def __enter__(self) -> Controllers:
        return self.start()  # type: ignore[return-value]

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- one pass of every controller ------------------------------------------------------
    def reconcile(self) -> None:
        nodes = {n.metadata.name: n for n in self.core.list_node().items}
        pods = self.core.list_pod_for_all_namespaces().items
        pvcs = {(c.metadata.namespace, c.metadata.name): c
                for c in self.core.list_persistent_volume_claim_for_all_namespaces().items}
        self._pod_gc(nodes, pods)
        self._pvc_protection(pods, pvcs)
        self._statefulsets(pods, pvcs)
        self._operator()
        self._deployments(pods)
        self._schedule(nodes)
        self._local_path()

    def _pod_gc(self, nodes: dict, pods: list) -> None:
        for pod in pods:
            if pod.spec.node_name and pod.spec.node_name not in nodes:
                self._delete_pod(pod)

    def _delete_pod(self, pod: client.V1Pod) -> None:
        try:
            self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _pvc_protection(self, pods: list, pvcs: dict) -> None:
        """Like kube-controller-manager's pvc-protection: only a scheduled pod (spec.nodeName set)
        keeps a terminating claim, since kubelet never starts a pod on a terminating claim."""
        used = {(p.metadata.namespace, v.persistent_volume_claim.claim_name) for p in pods if p.spec.node_name
                for v in (p.spec.volumes or []) if v.persistent_volume_claim}
        for key, pvc in pvcs.items():
            if pvc.metadata.deletion_timestamp and key not in used:
                self.core.patch_namespaced_persistent_volume_claim(key[1], key[0], {"metadata": {"finalizers": None}})
                if pvc.spec.volume_name:
                    try:
                        self.core.delete_persistent_volume(pvc.spec.volume_name)
                    except ApiException as exc:
                        if exc.status != 404:
                            raise

    def _statefulsets(self, pods: list, pvcs: dict) -> None:
        names = {(p.metadata.namespace, p.metadata.name) for p in pods}
        for sts in self.apps.list_stateful_set_for_all_namespaces().items:
            ns, name = sts.metadata.namespace, sts.metadata.name
            for i in range(sts.spec.replicas or 0):
                pod_name = f"{name}-{i}"
                if (ns, pod_name) in names:
                    continue
                volumes = []
                for template in sts.spec.volume_claim_templates or []:
                    claim = f"{template.metadata.name}-{name}-{i}"
                    if (ns, claim) not in pvcs:
                        self.core.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
                            metadata=_meta(claim, ns, finalizers=["kubernetes.io/pvc-protection"],
                                           labels={"app": name}),
                            spec=client.V1PersistentVolumeClaimSpec(
                                access_modes=["ReadWriteOnce"], storage_class_name="local-path",
                                resources=template.spec.resources)))
                    volumes.append(client.V1Volume(name=template.metadata.name,
                                                   persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                                                       claim_name=claim)))
                self.core.create_namespaced_pod(ns, client.V1Pod(
                    metadata=_meta(pod_name, ns, labels={"app": name}, owner_references=[client.V1OwnerReference(
                        api_version="apps/v1", kind="StatefulSet", name=name, uid=sts.metadata.uid or name)]),
                    spec=client.V1PodSpec(containers=[client.V1Container(name=name, image="minio")], volumes=volumes),
                    status=client.V1PodStatus(phase="Pending")))

    def _deployments(self, pods: list) -> None:
        owned = {(p.metadata.namespace, r.name.rsplit("-", 1)[0]) for p in pods
                 for r in (p.metadata.owner_references or []) if r.kind == "ReplicaSet"}
        for dep in self.apps.list_deployment_for_all_namespaces().items:
            ns, name = dep.metadata.namespace, dep.metadata.name
            if (ns, name) in owned:
                continue
            template = dep.spec.template.spec
            self.core.create_namespaced_pod(ns, client.V1Pod(
                metadata=_meta(f"{name}-7f9c6-{_suffix()}", ns, labels={"app": name}, owner_references=[
                    client.V1OwnerReference(api_version="apps/v1", kind="ReplicaSet", name=f"{name}-7f9c6",
                                            uid=f"{name}-rs")]),
                spec=client.V1PodSpec(containers=template.containers, volumes=template.volumes,
                                      affinity=template.affinity),
                status=client.V1PodStatus(phase="Pending")))

    def _operator(self) -> None:
        ns, name = "onecloud", "default-victoria-metrics"
        try:
            self.core.read_namespaced_persistent_volume_claim(name, ns)
        except ApiException as missing:  # the operator keeps its claim present
            if missing.status != 404:
                raise
            self.core.create_namespaced_persistent_volume_claim(ns, _claim(name, ns, "20G"))
        try:
            self.apps.read_namespaced_deployment(name, ns)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.apps.create_namespaced_deployment(ns, _deployment(name, ns, claim=name))
        etcd_pods = [p for p in self.core.list_namespaced_pod("onecloud").items
                     if (p.metadata.labels or {}).get("app") == "default-etcd"]
        for _ in range(3 - len(etcd_pods)):
            self.core.create_namespaced_pod("onecloud", _etcd_pod(f"default-etcd-{_suffix()}{_suffix()}", None))

    def _schedule(self, nodes: dict) -> None:
        pods = self.core.list_pod_for_all_namespaces().items
        pvcs = {(c.metadata.namespace, c.metadata.name): c
                for c in self.core.list_persistent_volume_claim_for_all_namespaces().items}
        pvs = {pv.metadata.name: pv for pv in self.core.list_persistent_volume().items}
        load = {n: sum(1 for p in pods if p.spec.node_name == n) for n in nodes}
        for pod in pods:
            if pod.spec.node_name:
                continue
            candidates = [n for n, node in nodes.items() if _ready(node) and not node.spec.unschedulable
                          and load[n] < int((node.status.allocatable or {}).get("pods", 110))]
            message = None
            for volume in pod.spec.volumes or []:
                if not volume.persistent_volume_claim:
                    continue
                claim = pvcs.get((pod.metadata.namespace, volume.persistent_volume_claim.claim_name))
                if claim is None or claim.metadata.deletion_timestamp:
                    message = f'persistentvolumeclaim "{volume.persistent_volume_claim.claim_name}" not found'
                    candidates = []
                elif claim.spec.volume_name:
                    pinned = _pv_node(pvs.get(claim.spec.volume_name))
                    candidates = [n for n in candidates if n == pinned]
                    if not candidates:
                        message = f"volume node affinity conflict ({pinned})"
            for label in _anti_affinity(pod):
                taken = {p.spec.node_name for p in pods if (p.metadata.labels or {}).get("app") == label
                         and p.metadata.name != pod.metadata.name}
                candidates = [n for n in candidates if n not in taken]
            if not candidates:
                self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": {
                    "phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                        "message": message or "0 nodes are available"}]}})
                continue
            chosen = min(candidates, key=lambda n: (load[n], n))
            load[chosen] += 1
            self.core.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, {"spec": {"nodeName": chosen}})
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": {
                "phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}})
            for volume in pod.spec.volumes or []:
                if volume.persistent_volume_claim:
                    self.core.patch_namespaced_persistent_volume_claim(
                        volume.persistent_volume_claim.claim_name, pod.metadata.namespace,
                        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": chosen}}})

    def _local_path(self) -> None:
        for pvc in self.core.list_persistent_volume_claim_for_all_namespaces().items:
            node = (pvc.metadata.annotations or {}).get("volume.kubernetes.io/selected-node")
            if pvc.spec.volume_name or not node or pvc.metadata.deletion_timestamp:
                continue
            pv_name = f"pvc-{_suffix()}{_suffix()}"
            self.core.create_persistent_volume(_pv(pv_name, node, pvc.metadata.namespace, pvc.metadata.name,
                                                   (pvc.spec.resources.requests or {}).get("storage", "1Gi")))
            self.core.patch_namespaced_persistent_volume_claim(pvc.metadata.name, pvc.metadata.namespace, {
                "spec": {"volumeName": pv_name}, "status": {"phase": "Bound"}})


def _ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def _pv_node(pv: client.V1PersistentVolume | None) -> str | None:
    if pv is None or not pv.spec.node_affinity:
        return None
    return pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0].values[0]


def _anti_affinity(pod: client.V1Pod) -> list[str]:
    affinity = pod.spec.affinity
    if not affinity or not affinity.pod_anti_affinity:
        return []
    terms = affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution or []
    return [t.label_selector.match_labels["app"] for t in terms if t.label_selector and t.label_selector.match_labels]


K3S_VERSION = "v1.28.5+k3s1"  # what the twin's Nodes and `k3s --version` report


def node_info(kubelet_version: str = K3S_VERSION) -> client.V1NodeSystemInfo:
    """A kubelet's ``status.nodeInfo`` (K3s reports its own version as kubeletVersion)."""
    return client.V1NodeSystemInfo(
        architecture="amd64", boot_id="twin", container_runtime_version="containerd://1.7.11-k3s2",
        kernel_version="6.1.0", kube_proxy_version=kubelet_version, kubelet_version=kubelet_version,
        machine_id="twin", operating_system="linux", os_image="Debian GNU/Linux 12", system_uuid="twin")


def _node(name: str, ip: str, *, ready: bool = True, max_pods: int = 110) -> client.V1Node:
    return client.V1Node(
        metadata=_meta(name, labels={"kubernetes.io/hostname": name, "node-role.kubernetes.io/control-plane": "true",
                                     "node-role.kubernetes.io/etcd": "true"}),
        spec=client.V1NodeSpec(unschedulable=False),
        status=client.V1NodeStatus(addresses=[client.V1NodeAddress(type="InternalIP", address=ip)],
                                   allocatable={"pods": str(max_pods)}, node_info=node_info(),
                                   conditions=[client.V1NodeCondition(type="Ready",
                                                                      status="True" if ready else "Unknown")]))


def _claim(name: str, ns: str, size: str) -> client.V1PersistentVolumeClaim:
    return client.V1PersistentVolumeClaim(
        metadata=_meta(name, ns, finalizers=["kubernetes.io/pvc-protection"]),
        spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"], storage_class_name="local-path",
                                                resources=client.V1VolumeResourceRequirements(
                                                    requests={"storage": size})))


def _pv(name: str, node: str, ns: str, claim: str, size: str) -> client.V1PersistentVolume:
    return client.V1PersistentVolume(
        metadata=_meta(name, annotations={"local.path.provisioner/selected-node": node},
                       finalizers=["kubernetes.io/pv-protection"]),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": size}, access_modes=["ReadWriteOnce"], storage_class_name="local-path",
            host_path=client.V1HostPathVolumeSource(path=f"/opt/k3s/storage/{name}_{ns}_{claim}"),
            claim_ref=client.V1ObjectReference(namespace=ns, name=claim),
            node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(node_selector_terms=[
                client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                    key="kubernetes.io/hostname", operator="In", values=[node])])]))))


def _deployment(name: str, ns: str, *, claim: str) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=_meta(name, ns, owner_references=[client.V1OwnerReference(
            api_version="onecloud.yunion.io/v1alpha1", kind="OnecloudCluster", name="default", uid="oc-default")]),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(metadata=_meta(name, labels={"app": name}), spec=client.V1PodSpec(
                containers=[client.V1Container(name=name, image="victoria-metrics")],
                volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=claim))]))))


def _etcd_pod(name: str, node: str | None) -> client.V1Pod:
    anti = client.V1Affinity(pod_anti_affinity=client.V1PodAntiAffinity(
        required_during_scheduling_ignored_during_execution=[client.V1PodAffinityTerm(
            topology_key="kubernetes.io/hostname",
            label_selector=client.V1LabelSelector(match_labels={"app": "default-etcd"}))]))
    return client.V1Pod(metadata=_meta(name, "onecloud", labels={"app": "default-etcd"}),
                        spec=client.V1PodSpec(node_name=node, affinity=anti,
                                              containers=[client.V1Container(name="etcd", image="etcd")]),
                        status=client.V1PodStatus(phase="Running" if node else "Pending"))


def _bound_claim(core: client.CoreV1Api, ns: str, claim: str, node: str, size: str) -> None:
    body = _claim(claim, ns, size)
    body.metadata.annotations = {"volume.kubernetes.io/selected-node": node}
    pv_name = f"pvc-{ns}-{claim}"
    body.spec.volume_name = pv_name
    core.create_namespaced_persistent_volume_claim(ns, body)
    core.patch_namespaced_persistent_volume_claim_status(claim, ns, {"status": {"phase": "Bound"}})
    core.create_persistent_volume(_pv(pv_name, node, ns, claim, size))


def _sts_pod(core: client.CoreV1Api, ns: str, sts: str, i: int, node: str, template: str) -> None:
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=_meta(f"{sts}-{i}", ns, labels={"app": sts}, owner_references=[client.V1OwnerReference(
            api_version="apps/v1", kind="StatefulSet", name=sts, uid=sts)]),
        spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name=sts, image="minio")],
                              volumes=[client.V1Volume(name=template,
                                                       persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                                                           claim_name=f"{template}-{sts}-{i}"))]),
        status=client.V1PodStatus(phase="Running")))


SEED_IPS = {"lzx-ha-env": "192.168.0.254", "lzx-ha-env-2": "192.168.0.244", "lzx-ha-env-3": "192.168.0.243",
            "lzx-test-add-node": "192.168.0.239"}


def register_node(core: client.CoreV1Api, name: str, ip: str, *, ready: bool = True, max_pods: int = 110) -> None:
    """What a joining kubelet does: register its Node (used by the twin's installer shims)."""
    core.create_node(_node(name, ip, ready=ready, max_pods=max_pods))


def set_node_ready(core: client.CoreV1Api, name: str, ready: bool) -> None:
    core.patch_node_status(name, {"status": {"conditions": [{"type": "Ready",
                                                             "status": "True" if ready else "Unknown"}]}})


def seed_004(core: client.CoreV1Api, apps: client.AppsV1Api, *, max_pods: int = 110, ips: dict[str, str] | None = None,
             dead_ready: bool = False, with_new_node: bool = True, export_size: str = "1Ti",
             metrics_size: str = "20G") -> None:
    """Seed 004's cluster. ``ips`` maps node names to addresses (the twin passes its own; the
    defaults are the seed's and are never contacted: the emulator only stores them). ``export_size``
    and ``metrics_size``: the claims' requested sizes (the seed's 1Ti and 20G; the twin declares sizes
    its hosts' shared disk holds, as the preflight's pvc-capacity check measures it)."""
    ips = {**SEED_IPS, **(ips or {})}
    dead, n2, n3, new = "lzx-ha-env", "lzx-ha-env-2", "lzx-ha-env-3", "lzx-test-add-node"
    core.create_node(_node(dead, ips[dead], ready=dead_ready, max_pods=max_pods))
    core.create_node(_node(n2, ips[n2], max_pods=max_pods))
    core.create_node(_node(n3, ips[n3], max_pods=max_pods))
    if with_new_node:
        core.create_node(_node(new, ips[new], max_pods=max_pods))
    for ns, sts, placement in (("onecloud-minio", "minio", [n2, dead, n3, n3]),
                               ("onecloud-monitoring", "monitor-minio", [n2, dead, n3, n2])):
        apps.create_namespaced_stateful_set(ns, client.V1StatefulSet(
            metadata=_meta(sts, ns), spec=client.V1StatefulSetSpec(
                replicas=4, service_name=f"{sts}-svc", selector=client.V1LabelSelector(match_labels={"app": sts}),
                template=client.V1PodTemplateSpec(metadata=_meta(sts, labels={"app": sts}), spec=client.V1PodSpec(
                    containers=[client.V1Container(name=sts, image="minio")])),
                volume_claim_templates=[client.V1PersistentVolumeClaim(
                    metadata=_meta("export"), spec=client.V1PersistentVolumeClaimSpec(
                        access_modes=["ReadWriteOnce"], storage_class_name="local-path",
                        resources=client.V1VolumeResourceRequirements(requests={"storage": export_size})))])))
        for i, node in enumerate(placement):
            _bound_claim(core, ns, f"export-{sts}-{i}", node, export_size)
            _sts_pod(core, ns, sts, i, node, "export")
    _bound_claim(core, "onecloud", "default-victoria-metrics", dead, metrics_size)
    apps.create_namespaced_deployment("onecloud", _deployment("default-victoria-metrics", "onecloud",
                                                              claim="default-victoria-metrics"))
    core.create_namespaced_pod("onecloud", client.V1Pod(
        metadata=_meta("default-victoria-metrics-7f9c6-abcde", "onecloud", labels={"app": "default-victoria-metrics"},
                       owner_references=[client.V1OwnerReference(api_version="apps/v1", kind="ReplicaSet",
                                                                 name="default-victoria-metrics-7f9c6", uid="rs")]),
        spec=client.V1PodSpec(node_name=dead, containers=[client.V1Container(name="vm", image="victoria-metrics")],
                              volumes=[client.V1Volume(name="data", persistent_volume_claim=(
                                  client.V1PersistentVolumeClaimVolumeSource(claim_name="default-victoria-metrics")))]),
        status=client.V1PodStatus(phase="Running")))
    for name, node in (("default-etcd-2lnzlkt4fc", dead), ("default-etcd-x9k2m3n4p5", n2),
                       ("default-etcd-q8w7e6r5t4", n3)):
        core.create_namespaced_pod("onecloud", _etcd_pod(name, node))
