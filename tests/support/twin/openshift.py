"""The twin's emulated OpenShift control plane (issue 7): the Machine API and the
cluster-etcd-operator (CEO), strict, over the twin's REAL etcd, sshd and fake hosts. Test-only.

Stand-in layout: OpenShift keeps etcd's TLS under /etc/kubernetes/static-pod-resources and its data
in /var/lib/etcd; the twin uses its kubeadm layout instead (TLS in /etc/kubernetes/pki/etcd, data
in /var/lib/etcd, each a private bind mount of the fake host) and names etcd members after the
node name, as OpenShift does. The static pod manifest is /etc/kubernetes/manifests/etcd-pod.yaml.

API
- ``OpenShiftTwin.start(workdir, *, members, spares=(), lifetime_s=None, provision_s=1.0)``:
  a kubeadm-layout ``Twin`` (``.twin``) whose hosts ``members`` run etcd (member name = node name)
  and ``spares`` are idle machines; ``spares`` is a list (FIFO: each provisioned Machine takes the
  next live one) or a dict Machine name -> host. It seeds the API objects below, then runs
  ``.machines`` (``MachineAPI``) and ``.ceo`` (``EtcdOperator``), two bounded threads like
  ``kube_emulator.Controllers`` (``.errors``, ``.events``, ``.paused``, ``.ticks`` and
  ``settle(passes)`` to wait for more full passes; stopped by ``close()``).
  ``.machine_of[node]`` is the initial Machine name; ``crashloop(node)`` puts a member in seed
  003 2.4.2's state; ``leftover_secrets()`` lists etcd secrets of nodes that no longer exist;
  ``close()`` stops the threads (and any SSH they run, by PID), then the twin.
- Seeded objects (in namespaces ``openshift-etcd`` and ``openshift-machine-api``; kmock cannot
  create Namespace objects, and needs none): per member node a
  mirror pod ``etcd-<node>`` (Running, 3 ready containers, spec.nodeName, status.hostIP, labels
  ``app: etcd``, ``k8s-app: etcd``, ``etcd: "true"``) and Secrets ``etcd-peer-<node>``,
  ``etcd-serving-<node>``, ``etcd-serving-metrics-<node>`` (kubernetes.io/tls, dummy data);
  ``operator.openshift.io/v1`` ``Etcd/cluster`` (``spec.forceRedeploymentReason: ""``,
  ``status.latestAvailableRevision: 3``, ``status.nodeStatuses``, conditions
  ``EtcdMembersAvailable`` "3 members are available", ``NodeInstallerProgressing``
  AllNodesAtLatestRevision, and the ``*Degraded`` conditions named below); per member a
  ``machine.openshift.io/v1beta1`` ``Machine`` ``twin-master-<i>`` in ``openshift-machine-api``
  (label ``machine.openshift.io/cluster-api-machine-role: master``, finalizer
  ``machine.machine.openshift.io``, ``spec.providerSpec.value`` a dummy provider config with a
  per-machine zone, ``spec.providerID``, ``status: {phase: Running, nodeRef, addresses}`` and the
  uid/resourceVersion/creationTimestamp an API server would have set). Nodes carry
  ``node-role.kubernetes.io/master`` and ``node-role.kubernetes.io/control-plane``.

Machine API (``MachineAPI``), every ``tick_s``:
- A Machine being deleted (kmock honours the finalizer): its Node (status.nodeRef) is deleted,
  its host is terminated if it is still alive (``.terminated_live`` records that: deleting a
  healthy master's Machine kills it, as the cloud would), the finalizer is removed, the name is
  remembered. The pod GC of ``kube_emulator.Controllers`` then removes the pods of the Node.
- A Machine it has not seen before is a create. It gets a uid, creationTimestamp, resourceVersion
  and the finalizer, then it is checked; ALL violations go to ``status.errorMessage`` with
  ``status.phase: Failed`` (errorReason InvalidConfiguration), and it is never provisioned:
  a non-empty ``status`` (the runbook removes the whole section); ``spec.providerID`` present;
  no ``spec.providerSpec.value``; a providerSpec.value equal to no control-plane Machine's ever
  seen (not a copy); no label ``machine.openshift.io/cluster-api-machine-role: master``;
  a ``metadata.resourceVersion`` (a real API server rejects the create: "resourceVersion should
  not be set on objects to be created"); a name some deleted Machine had.
- A valid create: if ``<twin workdir>/machine-fail-once`` exists, the file is removed and the
  Machine goes Failed (errorReason CreateError, "simulated provisioning failure"); if no live spare
  host is left (or the dict maps none to this name) it goes Failed (errorReason InsufficientCapacity).
  Otherwise: phase Provisioning -> (``provision_s``) Provisioned with a new ``spec.providerID``
  ``twin:///<zone>/i-<hex>`` and status.addresses -> (``provision_s``/2) the spare's Node is
  registered (Ready, master + control-plane labels, annotation machine.openshift.io/machine) as
  its kubelet would, status.nodeRef is set and the phase is Running. Failed Machines stay Failed.

CEO (``EtcdOperator``), every ``tick_s``; it reads etcd with the twin's etcdctl and operator
client certificate (a member whose host is dead counts as unhealthy without being probed):
- ``spec.forceRedeploymentReason`` changed -> a new revision (``status.latestAvailableRevision``
  +1, ``latestAvailableRevisionReason``). A value that was used before (A -> B -> A) still rolls a
  revision, as the real operator would, but is recorded in ``.errors`` (the runbook requires a
  unique value). A merge patch that leaves the value unchanged changes nothing stored, so neither
  the real operator nor this one can see it: it rolls no revision (``.revisions`` lists the
  rolled ones), which is how a test catches a non-unique value.
- Emulated kubelet: on a live host whose etcd-pod.yaml is gone, the mirror pod ``etcd-<node>`` is
  deleted (moving the manifest out stops the static pod).
- Nodes with a healthy member are at the latest revision; a started learner is promoted once
  etcd accepts it. A Ready control-plane Node without an etcd member (by name or by its peer URL;
  a member added for it that never started, an install cut short, counts as none and is resumed
  by the shim) is installed when it is new (not in nodeStatuses yet: a new Machine's node) or when
  its revision is behind (after a forced redeployment). For such a node, one at a time: (1) if ``etcd-peer-<node>`` or ``etcd-serving-<node>`` exists and this
  CEO did not issue it for this install, the certificates are STALE: condition
  ``EtcdCertSignerControllerDegraded`` True naming the node, nothing added; (2) if any member is
  an unhealthy voter, unstarted or a learner: ``ClusterMemberControllerDegraded`` True, nothing
  added (etcd refuses it too); (3) a dead host is never contacted; (4) it creates the three
  secrets, then runs ``openshift-etcd install --node-name N --ip IP --revision R`` on the node
  over SSH (the installer pod; the shim adds the learner, starts etcd, promotes it, writes the
  manifest). A refusal sets ``InstallerControllerDegraded`` True with the shim's message and
  ``nodeStatuses[].lastFailedRevision``; it is retried every ``retry_s``. On success the pod
  ``etcd-<node>`` is (re)created Running and the node reaches the latest revision.
- ``status.nodeStatuses`` follows library-go's static-pod controllers (vendored in
  cluster-etcd-operator b4786ae33ca2aceae72d67e6644e9928ead71f18 under
  vendor/github.com/openshift/library-go/pkg/operator/staticpod/controller/): the NodeController
  (node/node_controller.go ``sync``) lists every control-plane Node as soon as it exists, with no
  revision (``currentRevision`` 0), and drops removed ones, and that is written AT ONCE, not at the
  end of a pass; the installer controller (installer/installer_controller.go
  ``manageInstallationPods``) writes the node's ``targetRevision`` BEFORE its installer runs, and
  ``newNodeStateForInstallInProgress`` moves ``currentRevision`` to it (and clears the target) only
  once the etcd pod is Ready at that revision, i.e. after the member joined; a failed installer
  keeps the target and sets ``lastFailedRevision``/``lastFailedRevisionErrors``. A new revision
  (``latestAvailableRevision``) is written as soon as it is created. So while a new node is being
  scaled in, its ``currentRevision`` is below the latest: the signal
  ``cpswap.core.openshift.redeploy_decision`` waits on. ``targetRevision``/``lastFailed*`` are
  omitted when zero (omitempty).
- Every tick: ``EtcdMembersAvailable`` ("3 members are available" / "2 of 3 members are
  available, X is unhealthy" / "... X has not started", as the real EtcdMembersController words
  it) and ``NodeInstallerProgressing`` worded as installer_controller.go
  ``prepareNodeInstallerConditionApplyConfiguration`` does ("3 nodes are at revision 4", reason
  AllNodesAtLatestRevision; while any node is behind, True with reason "" and "1 node is at
  revision 0; 2 nodes are at revision 3").
- ``.ssh_targets`` lists every host it ran the installer on; ``.installs`` (node, revision).

Not modelled: the quorum-guard PDB, revision rollouts restarting healthy members (a node with a
healthy member is at the latest revision at once), the installer controller's one-node-at-a-time
target for nodes it cannot install yet (a new node waiting for its member shows currentRevision 0
without a target), the new node's etcd pod while it is Running but not Ready (the pod appears Ready
when the member joined), the cert signer re-issuing secrets, conflicts (kmock has no
resourceVersion checks), ``metadata.generation``, the kubelet restarting a crashlooping etcd.

Twin limits for runbook 2.4.2's node shell: /var/lib/etcd is a mount point on a fake host (as on a
node whose etcd has its own disk), so ``mv /var/lib/etcd/ /tmp`` fails with "Device or resource
busy"; move its contents. /var/lib/etcd-backup is private to each fake host (a bind mount, like
/var/lib/rancher, /etc/kubernetes and /var/lib/etcd); /tmp is NOT: what is moved there lands on the
test machine, shared by every fake host.
"""
from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.kube_emulator import ReconcileLoop
from tests.support.twin.cluster import Twin, etcdctl_binary

ETCD_NS = "openshift-etcd"
MACHINE_NS = "openshift-machine-api"
ETCD_CR = ("operator.openshift.io", "v1", "etcds")
MACHINES = ("machine.openshift.io", "v1beta1", MACHINE_NS, "machines")
ROLE_LABEL = "machine.openshift.io/cluster-api-machine-role"
TYPE_LABEL = "machine.openshift.io/cluster-api-machine-type"
FINALIZER = "machine.machine.openshift.io"
MANIFEST = "etc-kubernetes/manifests/etcd-pod.yaml"  # under a host root; /etc/kubernetes/manifests/etcd-pod.yaml
SECRET_KINDS = ("etcd-peer", "etcd-serving", "etcd-serving-metrics")
INITIAL_REVISION = 3
FAIL_ONCE = "machine-fail-once"
GUARD_KEY = "useUnsupportedUnsafeNonHANonProductionUnstableEtcd"
HOOK_NAME, HOOK_OWNER = "EtcdQuorumOperator", "clusteroperator/etcd"  # ceohelpers/common.go
CPMS = ("machine.openshift.io", "v1", MACHINE_NS, "controlplanemachinesets")
DEGRADED = ("EtcdCertSignerControllerDegraded", "ClusterMemberControllerDegraded", "InstallerControllerDegraded")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def _control_plane(node: client.V1Node) -> bool:
    labels = node.metadata.labels or {}
    return "node-role.kubernetes.io/master" in labels or "node-role.kubernetes.io/control-plane" in labels


def _unsafe(etcd: dict[str, Any]) -> bool:
    """isUnsupportedUnsafeEtcd (cluster-etcd-operator pkg/operator/ceohelpers/unsupported_override.go):
    the key as a bool, or a string strconv.ParseBool reads as true."""
    value = ((etcd.get("spec") or {}).get("unsupportedConfigOverrides") or {}).get(GUARD_KEY)
    return value is True or (isinstance(value, str) and value in ("1", "t", "T", "TRUE", "true", "True"))


def _url_host(url: str) -> str:
    return url.split("//", 1)[-1].rsplit(":", 1)[0]


def _machine_ips(machine: dict[str, Any]) -> set[str]:
    return {a.get("address") for a in (machine.get("status") or {}).get("addresses") or []
            if a.get("type") == "InternalIP"}


def _pre_drain(machine: dict[str, Any]) -> list[dict[str, str]]:
    return list(((machine.get("spec") or {}).get("lifecycleHooks") or {}).get("preDrain") or [])


def cpms_object(*, state: str, replicas: int, strategy: str = "RollingUpdate") -> dict[str, Any]:
    """``controlplanemachinesets/cluster`` (machine.openshift.io/v1) as the installer creates it;
    tests/core/test_crd_schemas.py validates it against the upstream CRD."""
    labels = {ROLE_LABEL: "master", TYPE_LABEL: "master", "machine.openshift.io/cluster-api-cluster": "twin"}
    return {"apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
            "metadata": {"name": "cluster", "namespace": MACHINE_NS},
            "spec": {"state": state, "replicas": replicas, "strategy": {"type": strategy},
                     "selector": {"matchLabels": labels},
                     "template": {"machineType": "machines_v1beta1_machine_openshift_io",
                                  "machines_v1beta1_machine_openshift_io": {
                                      "metadata": {"labels": labels},
                                      "spec": {"providerSpec": {"value": _provider_spec("twin-a")}}}}}}


def _internal_ip(node: client.V1Node) -> str | None:
    return next((a.address for a in (node.status.addresses or []) if a.type == "InternalIP"), None)


def _provider_spec(zone: str) -> dict[str, Any]:
    return {"apiVersion": "twinproviderconfig.cpswap.io/v1beta1", "kind": "TwinMachineProviderConfig",
            "instanceType": "twin.xlarge", "zone": zone, "image": {"id": "rhcos-twin"},
            "userDataSecret": {"name": "master-user-data"}, "credentialsSecret": {"name": "twin-cloud-credentials"}}


def _node_body(name: str, ip: str, *, machine: str, provider_id: str) -> client.V1Node:
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels={
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "node-role.kubernetes.io/master": "",
            "node-role.kubernetes.io/control-plane": ""},
            annotations={"machine.openshift.io/machine": f"{MACHINE_NS}/{machine}"}),
        spec=client.V1NodeSpec(provider_id=provider_id, unschedulable=False),
        status=client.V1NodeStatus(addresses=[client.V1NodeAddress(type="InternalIP", address=ip),
                                              client.V1NodeAddress(type="Hostname", address=name)],
                                   allocatable={"pods": "250"},
                                   conditions=[client.V1NodeCondition(type="Ready", status="True")]))


def _secret(kind: str, node: str, ip: str) -> client.V1Secret:
    dummy = base64.b64encode(f"twin {kind} certificate for {node}".encode()).decode()
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=f"{kind}-{node}", namespace=ETCD_NS, annotations={
            "auth.openshift.io/certificate-hostnames": f"{ip},localhost,127.0.0.1"}),
        type="kubernetes.io/tls", data={"tls.crt": dummy, "tls.key": dummy})


def _etcd_pod(node: str, ip: str, revision: int) -> client.V1Pod:
    names = ("etcdctl", "etcd", "etcd-metrics")
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"etcd-{node}", namespace=ETCD_NS, labels={
            "app": "etcd", "k8s-app": "etcd", "etcd": "true", "revision": str(revision)}),
        spec=client.V1PodSpec(node_name=node, host_network=True,
                              containers=[client.V1Container(name=n, image="quay.io/openshift/etcd") for n in names]),
        status=client.V1PodStatus(
            phase="Running", host_ip=ip, pod_ip=ip,
            conditions=[client.V1PodCondition(type="Ready", status="True")],
            container_statuses=[client.V1ContainerStatus(
                name=n, ready=True, restart_count=0, image="quay.io/openshift/etcd", image_id="",
                state=client.V1ContainerState(running=client.V1ContainerStateRunning(started_at=None)))
                for n in names]))


def machine_violations(machine: dict[str, Any], *, deleted: set[str], provider_specs: list[dict]) -> list[str]:
    """Why the Machine API must refuse this newly created Machine (empty: provision it)."""
    meta = machine.get("metadata") or {}
    spec = machine.get("spec") or {}
    name = meta.get("name")
    found = []
    if name in deleted:
        found.append(f"name {name} belonged to a deleted Machine: a replacement needs a new name")
    if machine.get("status"):
        found.append("carries a status section (the runbook removes the whole status)")
    if "providerID" in spec:
        found.append(f"carries spec.providerID {spec['providerID']!r} (the runbook removes it: it names the old "
                     f"instance)")
    value = (spec.get("providerSpec") or {}).get("value")
    if not value:
        found.append("has no spec.providerSpec.value")
    elif value not in provider_specs:
        found.append("spec.providerSpec.value is not a copy of a control-plane Machine's")
    if (meta.get("labels") or {}).get(ROLE_LABEL) != "master":
        found.append(f"lacks the label {ROLE_LABEL}: master")
    if meta.get("resourceVersion"):
        found.append("metadata.resourceVersion should not be set on objects to be created")
    return found


class _Loop(ReconcileLoop):
    """A reconcile loop on the twin's API; ``.events`` records what it did."""

    name = "loop"

    def __init__(self, twin: Twin, *, lifetime_s: float | None, tick_s: float) -> None:
        super().__init__(twin.emulator.url, lifetime_s=lifetime_s, tick_s=tick_s)
        self.twin = twin
        self.custom = client.CustomObjectsApi(self._api_client)
        self.events: list[str] = []

    def _event(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {self.name}: {text}")


class MachineAPI(_Loop):
    """The Machine API's machine controller plus the cloud and the new node's kubelet."""

    name = "machine-api"

    def __init__(self, twin: Twin, *, spares: list[str] | dict[str, str], provision_s: float = 1.0,
                 lifetime_s: float | None = None, tick_s: float = 0.25) -> None:
        super().__init__(twin, lifetime_s=lifetime_s, tick_s=tick_s)
        self._fifo = None if isinstance(spares, dict) else list(spares)
        self._by_machine = dict(spares) if isinstance(spares, dict) else None
        self._provision_s = provision_s
        self._known: dict[str, str] = {}  # name -> uid
        self._provisioning: dict[str, dict[str, Any]] = {}
        self.provider_specs: list[dict] = []
        self.deleted: set[str] = set()
        self.failed: dict[str, str] = {}
        self.terminated_live: list[str] = []
        self.cpms_created: list[str] = []
        self.drain_blocked: set[str] = set()

    def seed(self, nodes: list[str]) -> dict[str, str]:
        """Machines for the initial control-plane nodes; returns node -> Machine name."""
        names = {}
        for i, node in enumerate(nodes):
            name, zone = f"twin-master-{i}", f"twin-{'abc'[i % 3]}"
            ip = self.twin.net.hosts[node].ip
            value = _provider_spec(zone)
            uid = f"{pysecrets.token_hex(4)}-{pysecrets.token_hex(2)}-{pysecrets.token_hex(2)}"
            self.custom.create_namespaced_custom_object(*MACHINES, {
                "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
                "metadata": {"name": name, "namespace": MACHINE_NS, "uid": uid, "resourceVersion": "1001",
                             "creationTimestamp": _now(), "finalizers": [FINALIZER],
                             "labels": {ROLE_LABEL: "master", TYPE_LABEL: "master",
                                        "machine.openshift.io/cluster-api-cluster": "twin"}},
                "spec": {"metadata": {}, "providerSpec": {"value": value},
                         "lifecycleHooks": {"preDrain": [{"name": HOOK_NAME, "owner": HOOK_OWNER}]},
                         "providerID": f"twin:///{zone}/i-{pysecrets.token_hex(8)}"},
                "status": {"phase": "Running", "nodeRef": {"kind": "Node", "name": node},
                           "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": node}],
                           "lastUpdated": _now()}})
            self.core.patch_node(node, {"metadata": {"annotations": {"machine.openshift.io/machine":
                                                                     f"{MACHINE_NS}/{name}"}}})
            self._known[name] = uid
            self.provider_specs.append(value)
            names[node] = name
        return names

    def _patch(self, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(*MACHINES, name, body)

    def _fail(self, name: str, reason: str, message: str) -> None:
        self._patch(name, {"status": {"phase": "Failed", "errorReason": reason, "errorMessage": message,
                                      "lastUpdated": _now()}})
        self.failed[name] = message
        self._event(f"{name} Failed: {message}")

    def reconcile(self) -> None:
        items = self.custom.list_namespaced_custom_object(*MACHINES)["items"]
        self._cpms(items)
        seen = set()
        for machine in items:
            meta = machine.get("metadata") or {}
            name = meta.get("name")
            if not name:
                self.errors.append(f"{self.name}: a Machine without a name was stored: {meta}")
                continue
            seen.add(name)
            if meta.get("deletionTimestamp"):
                self._delete(name, machine)
            elif name not in self._known:
                self._created(name, machine)
            elif name in self._provisioning:
                self._advance(name)
        for name in [n for n in self._known if n not in seen]:  # removed without our finalizer
            self._event(f"{name} vanished without going through deletion")
            self._known.pop(name)
            self.deleted.add(name)
            self._provisioning.pop(name, None)

    def _cpms(self, items: list[dict[str, Any]]) -> None:
        """The ControlPlaneMachineSet controller (openshift/cluster-control-plane-machine-set-operator
        pkg/controllers/controlplanemachineset/controller.go: only ``cluster``, only ``Active``;
        updates.go: an index whose Machine is deleted, or missing, gets one replacement, named
        ``<cluster>-<role>-<5 random>-<index>`` by pkg/machineproviders/providers/openshift/machine/
        v1beta1/provider.go ``getMachineName``; the old one is not touched again)."""
        try:
            cpms = self.custom.get_namespaced_custom_object(*CPMS, "cluster")
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if (cpms.get("spec") or {}).get("state") != "Active":
            return
        by_index: dict[int, list[dict[str, Any]]] = {}
        for machine in items:
            meta = machine.get("metadata") or {}
            if (meta.get("labels") or {}).get(ROLE_LABEL) != "master":
                continue
            digits = meta.get("name", "").rsplit("-", 1)[-1]
            if digits.isdigit():
                by_index.setdefault(int(digits), []).append(machine)
        for index in range(int(cpms["spec"].get("replicas") or 0)):
            machines = by_index.get(index, [])
            if any(not (m.get("metadata") or {}).get("deletionTimestamp") for m in machines):
                continue
            value = self.provider_specs[index % len(self.provider_specs)]
            name = f"twin-master-{pysecrets.token_hex(3)[:5]}-{index}"
            self.custom.create_namespaced_custom_object(*MACHINES, {
                "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
                "metadata": {"name": name, "namespace": MACHINE_NS, "labels": {
                    ROLE_LABEL: "master", TYPE_LABEL: "master", "machine.openshift.io/cluster-api-cluster": "twin"},
                    "ownerReferences": [{"apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
                                         "name": "cluster", "uid": cpms["metadata"].get("uid", "cpms"),
                                         "controller": True, "blockOwnerDeletion": True}]},
                "spec": {"metadata": {}, "providerSpec": {"value": value}}})
            self.cpms_created.append(name)
            self._event(f"controlplanemachineset: index {index} has no Machine that is not being deleted: created "
                        f"{name}")

    def _delete(self, name: str, machine: dict[str, Any]) -> None:
        node = ((machine.get("status") or {}).get("nodeRef") or {}).get("name")
        hooks = _pre_drain(machine)
        if hooks and node:  # machine-api-operator pkg/controller/machine/drain_controller.go: "Drain blocked by pre-drain hook"
            if name not in self.drain_blocked:
                self.drain_blocked.add(name)
                self._event(f"{name}: not draining machine: lifecycle blocked by pre-drain hook "
                            f"{[h.get('name') for h in hooks]}")
            return
        host = self.twin.net.hosts.get(node) if node else None
        if host is not None and host.alive:
            self.terminated_live.append(node)
            self._event(f"deleting {name} terminates its live instance {node}")
            self.twin.net.kill(node)
        if node:
            try:
                self.core.delete_node(node)
                self._event(f"{name} deleted: Node {node} deleted")
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self._provisioning.pop(name, None)  # a spare taken by a deleted Machine is not handed out again
        self._patch(name, {"metadata": {"finalizers": None}})
        self._known.pop(name, None)
        self.deleted.add(name)

    def _created(self, name: str, machine: dict[str, Any]) -> None:
        violations = machine_violations(machine, deleted=self.deleted, provider_specs=self.provider_specs)
        uid = f"{pysecrets.token_hex(4)}-{pysecrets.token_hex(2)}-{pysecrets.token_hex(2)}"
        self._known[name] = uid
        self._patch(name, {"metadata": {"uid": uid, "creationTimestamp": _now(), "finalizers": [FINALIZER],
                                        "resourceVersion": str(2000 + len(self._known))}})
        self._event(f"{name} created")
        if violations:
            self._fail(name, "InvalidConfiguration", f"Machine {name}: " + "; ".join(violations))
            return
        flag = self.twin.workdir / FAIL_ONCE
        if flag.exists():
            flag.unlink()
            self._fail(name, "CreateError", f"Machine {name}: simulated provisioning failure (twin {FAIL_ONCE})")
            return
        host = self._take_spare(name)
        if host is None:
            self._fail(name, "InsufficientCapacity", f"Machine {name}: no live spare host left in the twin")
            return
        zone = machine["spec"]["providerSpec"]["value"].get("zone", "twin-a")
        self._provisioning[name] = {"host": host, "zone": zone, "since": time.monotonic(), "stage": 0}
        self._patch(name, {"status": {"phase": "Provisioning", "lastUpdated": _now()}})
        self._event(f"{name} Provisioning on {host}")

    def _take_spare(self, name: str) -> str | None:
        if self._by_machine is not None:
            host = self._by_machine.get(name)
            if host and self.twin.net.hosts[host].alive:
                del self._by_machine[name]
                return host
            return None
        while self._fifo:
            host = self._fifo.pop(0)
            if self.twin.net.hosts[host].alive:
                return host
        return None

    def _advance(self, name: str) -> None:
        state = self._provisioning[name]
        host = self.twin.net.hosts[state["host"]]
        elapsed = time.monotonic() - state["since"]
        if not host.alive:
            self._provisioning.pop(name)
            self._fail(name, "CreateError", f"Machine {name}: instance {host.name} died while provisioning")
            return
        if state["stage"] == 0 and elapsed >= self._provision_s:
            state["provider_id"] = f"twin:///{state['zone']}/i-{pysecrets.token_hex(8)}"
            self._patch(name, {"spec": {"providerID": state["provider_id"]}, "status": {
                "phase": "Provisioned", "lastUpdated": _now(), "addresses": [
                    {"type": "InternalIP", "address": host.ip}, {"type": "Hostname", "address": host.name}]}})
            state["stage"] = 1
            self._event(f"{name} Provisioned ({state['provider_id']})")
        elif state["stage"] == 1 and elapsed >= self._provision_s * 1.5:
            try:
                self.core.create_node(_node_body(host.name, host.ip, machine=name, provider_id=state["provider_id"]))
            except ApiException as exc:
                if exc.status != 409:
                    raise
            self._patch(name, {"status": {"phase": "Running", "lastUpdated": _now(),
                                          "nodeRef": {"kind": "Node", "name": host.name}}})
            self._provisioning.pop(name)
            self._event(f"{name} Running: Node {host.name} registered")


@dataclass
class _View:
    members: list[dict[str, Any]] = field(default_factory=list)
    healthy: set[str] = field(default_factory=set)  # member IDs
    ok: bool = False
    error: str = ""

    def voter_problems(self, *, own: int | None = None) -> list[str]:
        """What forbids adding a member; ``own`` is the candidate node's own leftover member."""
        found = []
        for m in self.members:
            if m["ID"] == own:
                continue
            if not m.get("name"):
                found.append(f"{m['peerURLs'][0]} has not started")
            elif m.get("isLearner"):
                found.append(f"{m['name']} is a learner")
            elif m["ID"] not in self.healthy:
                found.append(f"{m['name']} is unhealthy")
        return found


class EtcdOperator(_Loop):
    """cluster-etcd-operator: revisions, certificates, the installer, member scaling, conditions."""

    name = "cluster-etcd-operator"

    def __init__(self, twin: Twin, *, lifetime_s: float | None = None, tick_s: float = 0.5,
                 install_timeout_s: float = 150,
                 retry_s: float = 2.0) -> None:
        super().__init__(twin, lifetime_s=lifetime_s, tick_s=tick_s)
        self._install_timeout, self._retry = install_timeout_s, retry_s
        self.revision = INITIAL_REVISION
        self.reason = ""
        self.reasons: list[str] = [""]  # every forceRedeploymentReason seen, the initial "" first
        self.revisions: list[tuple[int, str]] = []
        self.node_revisions: dict[str, int] = {}
        self.failed_revisions: dict[str, tuple[int, str]] = {}
        self.target_revisions: dict[str, int] = {}  # nodes whose installer is rolling a revision
        self._retry_at: dict[str, float] = {}
        self._issued: set[str] = set()  # nodes whose secrets this CEO issued for a pending install
        self._conditions: dict[str, dict[str, Any]] = {}
        self._written: str = ""
        self.installs: list[tuple[str, int]] = []
        self.ssh_targets: list[str] = []
        self._proc: subprocess.Popen | None = None
        self.blocked: dict[str, str] = {}  # forceRedeploymentReason -> why the precondition held it back
        self.unsafe_at_revision: list[bool] = []  # per rolled revision: was the quorum guard off
        self.removed_members: list[str] = []  # members the removal controller took out
        self.desired = 3  # controlPlane replicas (install-config)
        self._ignored: set[tuple[str, str]] = set()
        self._pass_lock = threading.Lock()

    # -- seeding -----------------------------------------------------------------------------
    def seed(self, nodes: list[str]) -> None:
        for node in nodes:  # no Namespace objects: kmock answers POST /api/v1/namespaces with a 500
            ip = self.twin.net.hosts[node].ip
            self.core.create_namespaced_pod(ETCD_NS, _etcd_pod(node, ip, self.revision))
            for kind in SECRET_KINDS:
                self.core.create_namespaced_secret(ETCD_NS, _secret(kind, node, ip))
            self.node_revisions[node] = self.revision
        for cond, status, reason, message in (
                ("EtcdMembersAvailable", "True", "EtcdQuorate", f"{len(nodes)} members are available"),
                ("NodeInstallerProgressing", "False", "AllNodesAtLatestRevision",
                 f"{len(nodes)} nodes are at revision {self.revision}"),
                *((t, "False", "AsExpected", "") for t in DEGRADED)):
            self._set(cond, status, reason, message)
        self.custom.create_cluster_custom_object(*ETCD_CR, {
            "apiVersion": "operator.openshift.io/v1", "kind": "Etcd",
            "metadata": {"name": "cluster", "uid": pysecrets.token_hex(8), "creationTimestamp": _now()},
            "spec": {"managementState": "Managed", "forceRedeploymentReason": "", "logLevel": "Normal",
                     "operatorLogLevel": "Normal"},
            "status": self._status()})
        self._written = json.dumps(self._status(), sort_keys=True)

    # -- status --------------------------------------------------------------------------------
    def _set(self, kind: str, status: str, reason: str, message: str) -> None:
        old = self._conditions.get(kind)
        changed = old is None or old["status"] != status
        self._conditions[kind] = {"type": kind, "status": status, "reason": reason, "message": message,
                                  "lastTransitionTime": _now() if changed else old["lastTransitionTime"]}
        if status == "True" and kind.endswith("Degraded") and (old is None or old["message"] != message):
            self._event(f"{kind}: {message}")

    def _status(self) -> dict[str, Any]:
        """operatorv1.StaticPodOperatorStatus: ``targetRevision``/``lastFailed*`` are omitempty."""
        return {"latestAvailableRevision": self.revision, "latestAvailableRevisionReason": self.reason,
                "nodeStatuses": [{"nodeName": n, "currentRevision": r,
                                  **({"targetRevision": self.target_revisions[n]} if n in self.target_revisions
                                     else {}),
                                  **({"lastFailedRevision": self.failed_revisions[n][0],
                                      "lastFailedRevisionErrors": [self.failed_revisions[n][1]]}
                                     if n in self.failed_revisions else {})}
                                 for n, r in sorted(self.node_revisions.items())],
                "conditions": [self._conditions[k] for k in sorted(self._conditions)]}

    def _write_status(self) -> None:
        status = self._status()
        text = json.dumps(status, sort_keys=True)
        if text != self._written:
            self.custom.patch_cluster_custom_object(*ETCD_CR, "cluster", {"status": status})
            self._written = text

    # -- etcd ----------------------------------------------------------------------------------
    def _etcdctl(self, endpoints: list[str], *args: str, timeout_s: float = 3) -> subprocess.CompletedProcess:
        argv = [etcdctl_binary(), f"--endpoints={','.join(endpoints)}", f"--cacert={self.twin.ca.cert}",
                f"--cert={self.twin.client_cert}", f"--key={self.twin.client_key}", "--dial-timeout=1s",
                f"--command-timeout={timeout_s:.0f}s", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 10)

    def _view(self) -> _View:
        """Members and which of them answer a linearizable health check. Dead hosts are not
        probed; an endpoint that refuses TCP is unhealthy without waiting for etcdctl's timeout."""
        view = _View()
        by_ip = {h.ip: h for h in list(self.twin.net.hosts.values()) if h.alive}  # the test thread may add hosts
        listening = {ip for ip in by_ip if _listening(ip, 2379)}
        endpoints = [f"https://{ip}:2379" for ip in sorted(listening)]
        if not endpoints:
            view.error = "no live host serves etcd"
            return view
        listing = self._etcdctl(endpoints, "member", "list", "-w", "json")
        if listing.returncode != 0:
            view.error = listing.stderr.strip()[-300:]
            return view
        view.members = json.loads(listing.stdout).get("members", [])
        view.ok = True
        probe = {}
        for m in view.members:
            url = (m.get("clientURLs") or [None])[0]
            if not url or not m.get("name"):
                continue
            ip = url.split("//", 1)[1].rsplit(":", 1)[0]
            if ip in listening:
                probe[url] = m["ID"]
        if probe:
            health = self._etcdctl(list(probe), "endpoint", "health", "-w", "json", timeout_s=2)
            try:
                results = json.loads(health.stdout or "[]")
            except json.JSONDecodeError:
                results = []
            view.healthy = {probe[r["endpoint"]] for r in results if r.get("health") and r.get("endpoint") in probe}
        return view

    # -- one pass --------------------------------------------------------------------------------
    def pause(self, *, timeout_s: float = 200) -> None:
        """Stop reconciling and wait (bounded) until a pass in flight (an installer run included) has
        ended, so a test can change a node without racing the operator; ``paused.clear()`` resumes."""
        self.paused.set()
        if not self._pass_lock.acquire(timeout=timeout_s):
            raise RuntimeError(f"{self.name}: a pass did not end within {timeout_s:.0f} s")
        self._pass_lock.release()

    def reconcile(self) -> None:
        with self._pass_lock:
            self._reconcile()

    def _reconcile(self) -> None:
        cr = self.custom.get_cluster_custom_object(*ETCD_CR, "cluster")
        nodes = {n.metadata.name: n for n in self.core.list_node().items if _control_plane(n)}
        self._node_controller(nodes)
        self._kubelet(nodes)
        view = self._view()
        masters = [m for m in self.custom.list_namespaced_custom_object(*MACHINES)["items"]
                   if ((m.get("metadata") or {}).get("labels") or {}).get(ROLE_LABEL) == "master"]
        if view.ok:
            self._hooks(masters, view)
            if self._member_removal(masters, view):
                view = self._view()
        reason = (cr.get("spec") or {}).get("forceRedeploymentReason") or ""
        if reason != self.reason:
            blocked = self._precondition(cr, view)
            if blocked is not None:
                if reason not in self.blocked:
                    self.blocked[reason] = blocked
                    self._event(f"revision controller: no revision for forceRedeploymentReason {reason!r}: {blocked}")
            else:
                if reason in self.reasons:
                    self.errors.append(f"{self.name}: forceRedeploymentReason {reason!r} was used before: it must "
                                       f"be unique (runbook: append a timestamp)")
                self.reasons.append(reason)
                self.reason = reason
                self.revision += 1
                self.revisions.append((self.revision, reason))
                self.unsafe_at_revision.append(_unsafe(cr))
                self._event(f"revision {self.revision} (forceRedeploymentReason {reason!r})")
                self._installer_condition()
                self._write_status()  # the revision controller writes latestAvailableRevision on its own
        if view.ok:
            self._scale(nodes, view, masters)
            view = self._view()
        self._report(nodes, view)
        self._write_status()

    def _node_controller(self, nodes: dict[str, client.V1Node]) -> None:
        """library-go staticpod/controller/node/node_controller.go ``sync``: every master Node is in
        ``status.nodeStatuses`` (a new one with no revision: currentRevision 0), a removed one is
        dropped; written at once, as that controller writes its own status, not at the end of a
        pass that may be running an installer."""
        changed = False
        for name in list(self.node_revisions):
            if name not in nodes:
                del self.node_revisions[name]
                self.failed_revisions.pop(name, None)
                self.target_revisions.pop(name, None)
                changed = True
        for name in sorted(nodes):
            if name not in self.node_revisions:
                self.node_revisions[name] = 0
                self._event(f"node controller: observed new master node {name}")
                changed = True
        if changed:
            self._installer_condition()
            self._write_status()

    # -- revision precondition, machine deletion hooks, member removal ------------------------
    def _precondition(self, cr: dict[str, Any], view: _View) -> str | None:
        """CheckSafeToScaleCluster (cluster-etcd-operator pkg/operator/ceohelpers/bootstrap.go), the
        revision controller's precondition (pkg/operator/starter.go WithRevisionControllerPrecondition):
        None (a revision may be created) while a revision rolls out or a node has none, with the
        unsupported override, or with at least 3 healthy members and fault tolerance."""
        if any(r != self.revision for r in self.node_revisions.values()):
            return None
        if _unsafe(cr):
            return None
        if not view.ok:
            return f"CheckSafeToScaleCluster couldn't determine member health: {view.error}"
        healthy, total = len([m for m in view.members if m["ID"] in view.healthy]), len(view.members)
        if healthy < 3:
            return (f"CheckSafeToScaleCluster found {healthy} healthy member(s) out of the 3 required by the "
                    f"HAScalingStrategy")
        quorum = total // 2 + 1
        if total - quorum < 1 or healthy - quorum < 1:
            return f"etcd cluster has quorum of {quorum} and {healthy} healthy members which is not fault tolerant"
        return None

    def _hooks(self, masters: list[dict[str, Any]], view: _View) -> None:
        """MachineDeletionHooksController (pkg/operator/machinedeletionhooks/machinedeletionhooks.go):
        the preDrain hook on every master Machine not being deleted; removed from a Machine pending
        deletion once no member (learners included) has one of its InternalIPs."""
        member_ips = {_url_host(u) for m in view.members for u in m.get("peerURLs", [])}
        for machine in masters:
            name = machine["metadata"]["name"]
            hooks = _pre_drain(machine)
            has = any(h.get("name") == HOOK_NAME and h.get("owner") == HOOK_OWNER for h in hooks)
            deleting = bool(machine["metadata"].get("deletionTimestamp"))
            if not deleting and not has:
                hooks = [h for h in hooks if h.get("name") != HOOK_NAME] + [{"name": HOOK_NAME, "owner": HOOK_OWNER}]
                self._patch_hooks(name, hooks)
                self._event(f"preDrain hook {HOOK_NAME} added to Machine {name}")
            elif deleting and has and not (_machine_ips(machine) & member_ips):
                self._patch_hooks(name, [h for h in hooks if h.get("name") != HOOK_NAME])
                self._event(f"preDrain hook {HOOK_NAME} removed from Machine {name}: it hosts no member")

    def _patch_hooks(self, name: str, hooks: list[dict[str, str]]) -> None:
        self.custom.patch_namespaced_custom_object(*MACHINES, name, {"spec": {"lifecycleHooks": {"preDrain": hooks}}})

    def _member_removal(self, masters: list[dict[str, Any]], view: _View) -> bool:
        """ClusterMemberRemovalController.attemptToScaleDown
        (pkg/operator/clustermemberremovalcontroller/clustermemberremovalcontroller.go), with a stable
        revision: the voting member of a master Machine pending deletion (with the hook) is removed
        when it is unhealthy and the healthy voters make quorum of the desired replicas, or when it
        is healthy and a replacement already joined (more voters than desired, all healthy). One
        member at a time. Not modelled: removeMemberWithoutMachine, attemptToRemoveLearningMember."""
        if any(r != self.revision for r in self.node_revisions.values()):
            return False
        voters = [m for m in view.members if m.get("name") and not m.get("isLearner")]
        healthy = [m for m in voters if m["ID"] in view.healthy]
        if len(voters) < self.desired:
            return False
        if len(healthy) < self.desired // 2 + 1:
            self._event(f"ScaleDown: ignoring scale down since the number of healthy voting members ({len(healthy)}) "
                        f"< minimum required to maintain quorum ({self.desired // 2 + 1})")
            return False
        for machine in masters:
            if not machine["metadata"].get("deletionTimestamp") or not any(
                    h.get("name") == HOOK_NAME for h in _pre_drain(machine)):
                continue
            ips = _machine_ips(machine)
            member = next((m for m in voters if _url_host(m["peerURLs"][0]) in ips), None)
            if member is None:
                continue
            unhealthy = member["ID"] not in view.healthy
            if not unhealthy and not (len(voters) > self.desired and len(healthy) == len(voters)):
                continue  # a healthy member leaves only after its replacement joined
            endpoints = [u for m in healthy for u in m.get("clientURLs", [])[:1]]
            result = self._etcdctl(endpoints, "member", "remove", format(member["ID"], "x"))
            if result.returncode == 0:
                self.removed_members.append(member["name"])
                self._event(f"removed member {member['name']} of Machine {machine['metadata']['name']} pending "
                            f"deletion ({'unhealthy' if unhealthy else 'replaced'})")
                return True
            self._event(f"removing member {member['name']} failed: {result.stderr.strip()[-200:]}")
        return False

    def _kubelet(self, nodes: dict[str, client.V1Node]) -> None:
        pods = {p.metadata.name for p in self.core.list_namespaced_pod(ETCD_NS).items}
        for name in nodes:
            host = self.twin.net.hosts.get(name)
            if host is None or not host.alive or f"etcd-{name}" not in pods:
                continue
            if not (host.root / MANIFEST).exists():
                self.core.delete_namespaced_pod(f"etcd-{name}", ETCD_NS, grace_period_seconds=0)
                self._event(f"kubelet on {name}: etcd-pod.yaml is gone, mirror pod etcd-{name} removed")

    def _member_of(self, view: _View, name: str, ip: str | None) -> dict[str, Any] | None:
        peer = f"https://{ip}:2380" if ip else None
        return next((m for m in view.members if m.get("name") == name or peer in m.get("peerURLs", [])), None)

    def _scale(self, nodes: dict[str, client.V1Node], view: _View, masters: list[dict[str, Any]]) -> None:
        candidates, own = [], {}
        for name, node in sorted(nodes.items()):
            member = self._member_of(view, name, _internal_ip(node))
            if member is not None and member.get("name"):
                if member.get("isLearner"):
                    self._promote(name, member, view)
                elif member["ID"] in view.healthy:
                    self.node_revisions[name] = self.revision
                    self.failed_revisions.pop(name, None)
                    self.target_revisions.pop(name, None)
                    self._issued.discard(name)
                continue
            # no member, or one added for this node that never started (an install cut short):
            # the installer runs (again) and the shim resumes that member
            if _ready(node) and self.node_revisions[name] < self.revision:
                candidates.append(name)
                own[name] = member["ID"] if member is not None else None
        secrets = {s.metadata.name for s in self.core.list_namespaced_secret(ETCD_NS).items} if candidates else set()
        found: dict[str, list[str]] = {kind: [] for kind in DEGRADED}
        for name in candidates:
            stale = [f"{k}-{name}" for k in SECRET_KINDS[:2] if f"{k}-{name}" in secrets and name not in self._issued]
            if stale:
                found["EtcdCertSignerControllerDegraded"].append(
                    f"node {name} has no etcd member but its certificates exist ({', '.join(stale)}): stale; delete "
                    f"etcd-peer-{name}, etcd-serving-{name} and etcd-serving-metrics-{name} to have new ones issued")
                continue
            problems = view.voter_problems(own=own[name])
            if problems:
                found["ClusterMemberControllerDegraded"].append(
                    f"not adding {name}: {', '.join(problems)}; etcd refuses a new member while a member is unhealthy")
                continue
            ip = _internal_ip(nodes[name])
            machine = next((m for m in masters if ip in _machine_ips(m)), None)
            gate = ("no Machine found referencing this node's internal IP" if machine is None else
                    f"its machine ({machine['metadata']['name']}) is pending deletion"
                    if machine["metadata"].get("deletionTimestamp") else
                    f"its machine ({machine['metadata']['name']}) is missing the PreDrain deletion hook"
                    if not any(h.get("name") == HOOK_NAME for h in _pre_drain(machine)) else None)
            if gate is not None:  # clustermembercontroller.go: the Machine API is functional here
                if (name, gate) not in self._ignored:
                    self._ignored.add((name, gate))
                    self._event(f"Ignoring node ({name}) for scale-up since {gate}")
                continue
            host = self.twin.net.hosts.get(name)
            if host is None or not host.alive or host.ip != ip:
                found["InstallerControllerDegraded"].append(
                    f"node {name} ({ip}) is not a live twin host: not contacted")
                continue
            if time.monotonic() < self._retry_at.get(name, 0):
                found["InstallerControllerDegraded"].append(self._failure(name))
                continue
            self._kubelet({name: nodes[name]})  # the kubelet runs on its own: a moved manifest is seen first
            if not self._install(name, host, secrets):
                found["InstallerControllerDegraded"].append(self._failure(name))
            break  # one member at a time
        for kind, messages in found.items():
            if messages:
                self._set(kind, "True", {"EtcdCertSignerControllerDegraded": "StaleCertificates",
                                         "ClusterMemberControllerDegraded": "UnhealthyMembers"}.get(
                    kind, "InstallerPodFailed"), "; ".join(messages))
            else:
                self._set(kind, "False", "AsExpected", "")

    def _promote(self, name: str, member: dict[str, Any], view: _View) -> None:
        """CEO promotes a started learner once etcd says it caught up (etcd refuses before)."""
        endpoints = [u for m in view.members if m["ID"] in view.healthy for u in m.get("clientURLs", [])]
        if not endpoints:
            return
        result = self._etcdctl(endpoints, "member", "promote", format(member["ID"], "x"))
        if result.returncode == 0:
            self._event(f"promoted learner {member['name']} of {name}")
        elif "in sync with leader" not in result.stderr:
            self._event(f"promoting learner {member['name']} of {name} failed: {result.stderr.strip()[-200:]}")

    def _failure(self, name: str) -> str:
        revision, message = self.failed_revisions.get(name, (self.revision, "retrying"))
        return f"installer pod for revision {revision} on node {name} failed: {message}"

    def _install(self, name: str, host: Any, secrets: set[str]) -> bool:
        for kind in SECRET_KINDS:
            if f"{kind}-{name}" not in secrets:
                self.core.create_namespaced_secret(ETCD_NS, _secret(kind, name, host.ip))
        self._issued.add(name)
        revision = self.revision
        # installer_controller.go manageInstallationPods: the node's targetRevision is written before
        # the installer pod runs; currentRevision moves to it only once the etcd pod is Ready
        # (newNodeStateForInstallInProgress), i.e. after the member joined
        self.target_revisions[name] = revision
        self._installer_condition()
        self._write_status()
        self.ssh_targets.append(name)
        self._event(f"installer: revision {revision} on {name}")
        rc, out, err = self._ssh(host, f"openshift-etcd install --node-name {name} --ip {host.ip} "
                                       f"--revision {revision}")
        if rc != 0:
            message = (err.strip().splitlines() or [f"rc={rc}"])[-1]
            self.failed_revisions[name] = (revision, message)
            self._retry_at[name] = time.monotonic() + self._retry
            self._event(f"installer on {name} failed: {message}")
            return False
        self.failed_revisions.pop(name, None)
        self.node_revisions[name] = revision
        self.target_revisions.pop(name, None)
        self._issued.discard(name)
        self.installs.append((name, revision))
        try:
            self.core.delete_namespaced_pod(f"etcd-{name}", ETCD_NS, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
        self.core.create_namespaced_pod(ETCD_NS, _etcd_pod(name, host.ip, revision))
        self._event(f"{name} joined etcd at revision {revision}: {' | '.join(out.strip().splitlines()[-2:])}")
        return True

    def _ssh(self, host: Any, command: str) -> tuple[int, str, str]:
        """The installer pod on ``host``, bounded, killed by PID when the loop stops."""
        if not host.alive:  # never contact a dead host
            return 255, "", f"{host.name} is dead: not contacted"
        proc = subprocess.Popen(self.twin.net.ssh_argv(host.ip, command), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        self._proc = proc
        end = time.monotonic() + self._install_timeout
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.5)
                    return proc.returncode, out, err
                except subprocess.TimeoutExpired:
                    if self._stop.is_set() or time.monotonic() > end:
                        os.killpg(proc.pid, signal.SIGKILL)
                        out, err = proc.communicate(timeout=10)
                        return -9, out, err + f"\ninstaller on {host.name} killed (timeout or shutdown)"
        finally:
            self._proc = None

    def _report(self, nodes: dict[str, client.V1Node], view: _View) -> None:
        self._node_controller(nodes)
        if view.ok:
            available = [m["name"] for m in view.members if m.get("name") and m["ID"] in view.healthy]
            unhealthy = [m["name"] for m in view.members if m.get("name") and m["ID"] not in view.healthy]
            unstarted = [m["peerURLs"][0] for m in view.members if not m.get("name")]
            total = len(view.members)
            parts = []
            if available and len(available) == total:
                parts.append(f"{len(available)} members are available")
            elif available:
                parts.append(f"{len(available)} of {total} members are available")
            parts += [f"{n} is unhealthy" for n in unhealthy] + [f"{u} has not started" for u in unstarted]
            message = ", ".join(parts)
            if len(available) > total // 2:
                self._set("EtcdMembersAvailable", "True", "EtcdQuorate", message)
            else:
                self._set("EtcdMembersAvailable", "False", "NoQuorum", message)
        else:
            self._set("EtcdMembersAvailable", "False", "NoQuorum", f"etcd member list failed: {view.error}")
        self._installer_condition()

    def _installer_condition(self) -> None:
        """``NodeInstallerProgressing`` as library-go installer_controller.go
        ``prepareNodeInstallerConditionApplyConfiguration`` words it: True (reason "") while any
        node's currentRevision is not the latest, "N node(s) is/are at revision R" per revision."""
        counts: dict[int, int] = {}
        for revision in self.node_revisions.values():
            counts[revision] = counts.get(revision, 0) + 1
        words = [f"{c} {'node is' if c == 1 else 'nodes are'} at revision {r}" for r, c in sorted(counts.items())]
        if set(counts) <= {self.revision}:
            self._set("NodeInstallerProgressing", "False", "AllNodesAtLatestRevision", "; ".join(words))
        else:
            if self.revision not in counts:
                words.append(f"0 nodes have achieved new revision {self.revision}")
            self._set("NodeInstallerProgressing", "True", "", "; ".join(words))

    def stop(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        super().stop()


def _listening(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class OpenShiftTwin:
    twin: Twin
    machines: MachineAPI
    ceo: EtcdOperator
    machine_of: dict[str, str]

    @classmethod
    def start(cls, workdir: Path, *, members: list[str], spares: list[str] | dict[str, str] = (),
              lifetime_s: float | None = None, provision_s: float = 1.0,
              cpms: str | None = None) -> OpenShiftTwin:
        """``cpms``: ``Active``/``Inactive`` creates controlplanemachinesets/cluster in that state."""
        spare_hosts = list(spares.values()) if isinstance(spares, dict) else list(spares)
        twin = Twin.start(workdir, members=members, spares=spare_hosts, seed_workloads=False, layout="kubeadm")
        machines = ceo = None
        try:
            for node in members:
                manifests = twin.net.hosts[node].root / "etc-kubernetes" / "manifests"
                (manifests / "etcd.yaml").rename(manifests / "etcd-pod.yaml")  # OpenShift's static pod file
                twin.emulator.core.patch_node(node, {"metadata": {"labels": {
                    "node-role.kubernetes.io/master": "", "node-role.kubernetes.io/control-plane": ""}}})
            ceo = EtcdOperator(twin, lifetime_s=lifetime_s)
            ceo.seed(members)
            machines = MachineAPI(twin, spares=spares, provision_s=provision_s, lifetime_s=lifetime_s)
            machine_of = machines.seed(members)
            if cpms is not None:
                machines.custom.create_namespaced_custom_object(*CPMS, cpms_object(state=cpms, replicas=len(members)))
            machines.start()
            ceo.start()
            return cls(twin=twin, machines=machines, ceo=ceo, machine_of=machine_of)
        except BaseException:
            for loop in (machines, ceo):
                if loop is not None:
                    loop.stop()
            twin.close()
            raise

    def crashloop(self, node: str, *, timeout_s: float = 10) -> None:
        """Seed 003 2.4.2's starting point: the etcd process on ``node`` is killed (the host stays
        up), its pod ``etcd-<node>`` is in CrashLoopBackOff, /etc/kubernetes/manifests/etcd-pod.yaml
        is still there and /var/lib/etcd still holds the member's data."""
        host = self.twin.net.hosts[node]
        assert host.alive and (host.root / MANIFEST).exists(), f"{node}: not a live member with a manifest"
        pids = host.all_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + timeout_s
        while any(_alive(pid) for pid in pids):
            if time.monotonic() > end:
                raise RuntimeError(f"{node}: etcd did not die in {timeout_s} s")
            time.sleep(0.05)
        host.pids.clear()  # dead now: never signalled again (no PID reuse at close)
        (host.root / "pids").write_text("")
        names = ("etcdctl", "etcd", "etcd-metrics")
        self.twin.emulator.core.patch_namespaced_pod_status(f"etcd-{node}", ETCD_NS, {"status": {
            "phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"name": n, "ready": n != "etcd", "restartCount": 7 if n == "etcd" else 0, "image":
                 "quay.io/openshift/etcd", "imageID": "", "state": {
                     "waiting": {"reason": "CrashLoopBackOff",
                                 "message": "back-off 5m0s restarting failed container=etcd"}}
                 if n == "etcd" else {"running": {}}} for n in names]}})

    def leftover_secrets(self) -> list[str]:
        """etcd-peer/-serving/-serving-metrics secrets of nodes that no longer exist (the CEO ignores
        them: a replacement node has a new name; the runbook deletes them anyway)."""
        nodes = {n.metadata.name for n in self.twin.emulator.core.list_node().items}
        return sorted(s.metadata.name for s in self.twin.emulator.core.list_namespaced_secret(ETCD_NS).items
                      if not any(s.metadata.name == f"{k}-{n}" for k in SECRET_KINDS for n in nodes))

    def close(self) -> None:
        try:
            for loop in (self.ceo, self.machines):
                loop.stop()
        finally:
            self.twin.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


__all__ = [
    "ETCD_CR",
    "ETCD_NS",
    "FAIL_ONCE",
    "INITIAL_REVISION",
    "MACHINES",
    "MACHINE_NS",
    "MANIFEST",
    "SECRET_KINDS",
    "EtcdOperator",
    "MachineAPI",
    "OpenShiftTwin",
    "machine_violations",
]
