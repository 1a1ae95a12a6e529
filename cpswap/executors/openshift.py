"""OpenShift executor (seed 003): healthy etcd pods, the member's TLS secrets, Machines and the
etcd operator's forced redeployment. Not pure (HTTP to the API server via the official client).

- ``etcd_pod_endpoints``: client URLs of Running, Ready etcd pods; a removal excludes the
  departing node's pod (the seed's "choose a pod that is not on the affected node").
- ``delete_etcd_secrets``: ``etcd-peer-<node>``, ``etcd-serving-<node>``,
  ``etcd-serving-metrics-<node>``; absent counts as deleted.
- ``delete_machine``: the Machine whose ``status.nodeRef`` is the node; its spec is kept first in
  the ConfigMap ``cpswap-machine-<slot>`` (the delete runs from stored state, the create later
  needs the spec), then it is deleted and its disappearance awaited.
- ``create_machine``: the copy, with a new name (given, or the old base name with the next free
  index, as the seed advises) and without status and providerID; waits for Running and a nodeRef.
  A node already backed by a Machine is adopted.
- ``redeploy``: first waits (bounded, printing the operator's state) while the etcd operator is
  still scaling the node in, then the ``forceRedeploymentReason`` patch, with a unique value, only
  when ``core.openshift.redeploy_decision`` says no rollout will reach the node: every node at the
  latest revision and its etcd pod not Ready. A Ready pod (the operator scaled it in by itself, or
  a first ``up``) needs none. When
  the etcd operator's revision precondition would create no revision (``core.openshift.revision_blocked``:
  2 healthy of 2 members after a hand removal, every node at the latest revision) the quorum guard
  is turned off for the patch (``unsupportedConfigOverrides``, marked with the annotation
  ``cpswap.io/quorum-guard-disabled-by``) until the new revision exists, and ALWAYS turned back on:
  in a ``finally``, and at the start of every redeploy and leave (a run killed in between).
- ControlPlaneMachineSet (``controlplanemachinesets/cluster`` Active): ``create_machine`` creates
  nothing and adopts the Machine the CPMS created (checked against the slot's node);
  ``leave_member`` leaves the member's removal to the etcd operator when
  ``core.openshift.membership_owner`` says so (the Machine's deletion drives it), after a snapshot.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any
from collections.abc import Callable

from kubernetes import client

from cpswap.core import inputs
from cpswap.core import openshift as rules
from cpswap.core.errors import ConflictError, PermanentError
from cpswap.core.inputs import host_port
from cpswap.executors import kube as kx
from cpswap.executors.waiting import wait_until

Progress = Callable[[str], None]
MACHINE = ("machine.openshift.io", "v1beta1", "machines")
ETCD_OPERATOR = ("operator.openshift.io", "v1", "etcds")
CPMS = ("machine.openshift.io", "v1", "controlplanemachinesets")
MASTER_ROLE = "machine.openshift.io/cluster-api-machine-role"
SECRET_PREFIXES = ("etcd-peer-", "etcd-serving-", "etcd-serving-metrics-")
DROP_ANNOTATIONS = ("machine.openshift.io/instance-state",)


def _objects(api: kx.Api) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api.core.api_client)


def _pod_ready(pod: client.V1Pod) -> bool:
    status = pod.status
    if not status or status.phase != "Running":
        return False
    containers_ready = all(c.ready for c in status.container_statuses or [])
    condition = next((c.status == "True" for c in status.conditions or [] if c.type == "Ready"), True)
    return containers_ready and condition


def _etcd_pods(api: kx.Api, namespace: str) -> list[client.V1Pod]:
    pods = kx._call(f"list pods in {namespace}", api.core.list_namespaced_pod, namespace, api=api).items
    return [p for p in pods if p.metadata.name.startswith("etcd-") and not p.metadata.name.startswith(
        ("etcd-guard-", "etcd-quorum-guard", "etcd-operator", "etcd-installer", "etcd-revision-pruner"))
            and (p.metadata.labels or {}).get("app", "etcd") == "etcd"]


@inputs.validated(namespace=inputs.dns_label, exclude_node=inputs.dns_name, exclude_ip=inputs.ip_address,
                  timeout=inputs.seconds, port=inputs.port)
def etcd_pod_endpoints(*, kubeconfig: str | None, namespace: str, timeout: float, port: int = 2379,
                       exclude_node: str | None = None, exclude_ip: str | None = None) -> list[str]:
    """Client URLs of Running, Ready etcd pods, without the pod of ``exclude_node``/``exclude_ip``
    (a dead node's mirror pod can still read Ready until the node controller notices)."""
    with kx.connect(kubeconfig=kubeconfig, timeout=timeout) as api:
        pods = _etcd_pods(api, namespace)

    def usable(pod: client.V1Pod) -> bool:
        on_departing = exclude_node is not None and pod.spec is not None and pod.spec.node_name == exclude_node
        return _pod_ready(pod) and bool(pod.status.host_ip) and pod.status.host_ip != exclude_ip and not on_departing
    return sorted({f"https://{host_port(p.status.host_ip, port)}" for p in pods if usable(p)})


@inputs.validated(namespace=inputs.dns_label, node=inputs.dns_name)
def delete_etcd_secrets(*, namespace: str, node: str, progress: Progress, kubeconfig: str | None = None) -> list[str]:
    deleted = []
    with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
        for prefix in SECRET_PREFIXES:
            name = f"{prefix}{node}"
            if kx.delete_if_present(f"delete secret {namespace}/{name}", api.core.delete_namespaced_secret, name,
                                    namespace, api=api):
                deleted.append(name)
                progress(f"secret {namespace}/{name}: deleted")
            else:
                progress(f"secret {namespace}/{name}: absent")
    return deleted


def _machines(api: kx.Api, namespace: str) -> list[dict[str, Any]]:
    return list(kx._call(f"list machines in {namespace}", _objects(api).list_namespaced_custom_object,
                         *MACHINE[:2], namespace, MACHINE[2], api=api).get("items") or [])


def _node_of(machine: dict[str, Any]) -> str | None:
    return ((machine.get("status") or {}).get("nodeRef") or {}).get("name")


def _template_name(slot: str) -> str:
    return f"cpswap-machine-{slot}"


def clean_copy(machine: dict[str, Any], *, name: str) -> dict[str, Any]:
    """The seed's edits: no status, no providerID, a new name (and no server-set metadata)."""
    meta = machine.get("metadata") or {}
    spec = {k: v for k, v in (machine.get("spec") or {}).items() if k != "providerID"}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in DROP_ANNOTATIONS}
    return {"apiVersion": machine.get("apiVersion", "machine.openshift.io/v1beta1"), "kind": "Machine",
            "metadata": {"name": name, "namespace": meta.get("namespace"), "labels": dict(meta.get("labels") or {}),
                         **({"annotations": annotations} if annotations else {})},
            "spec": spec}


def next_name(old: str, taken: set[str]) -> str:
    """``clustername-8qw5l-master-0`` -> the next free ``clustername-8qw5l-master-<n>``."""
    match = re.match(r"^(.*?)(\d+)$", old)
    base, start = (match.group(1), int(match.group(2)) + 1) if match else (f"{old}-", 1)
    numbers = [int(m.group(1)) for t in taken if (m := re.match(rf"^{re.escape(base)}(\d+)$", t))]
    n = max([start - 1, *numbers]) + 1
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def read_cpms(api: kx.Api, namespace: str) -> dict[str, Any] | None:
    """``controlplanemachinesets/cluster`` (the only one the CPMS operator reconciles), or None."""
    return kx.read_or_none(f"read controlplanemachinesets/cluster in {namespace}",
                           _objects(api).get_namespaced_custom_object, *CPMS[:2], namespace, CPMS[2], "cluster",
                           api=api)


def _masters(machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in machines if ((m.get("metadata") or {}).get("labels") or {}).get(MASTER_ROLE) == "master"]


@inputs.validated(namespace=inputs.dns_label, node=inputs.dns_name)
def membership_owner(*, namespace: str, node: str, kubeconfig: str | None = None) -> rules.MembershipOwner:
    with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
        machine = next((m for m in _machines(api, namespace) if _node_of(m) == node), None)
        return rules.membership_owner(cpms=rules.cpms_state(read_cpms(api, namespace)), machine=machine, node=node)


@inputs.validated(namespace=inputs.dns_label, slot=inputs.slot, node=inputs.dns_name, deadline_s=inputs.seconds)
def delete_machine(*, namespace: str, slot: str, node: str, deadline_s: float, progress: Progress,
                   kubeconfig: str | None = None) -> str:
    with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
        objects = _objects(api)
        machines = _machines(api, namespace)
        machine = next((m for m in machines if _node_of(m) == node), None)
        if machine is None:
            progress(f"no Machine in {namespace} has nodeRef {node}: already deleted")
            return "absent"
        name = machine["metadata"]["name"]
        siblings = sorted(m["metadata"]["name"] for m in _masters(machines) if m["metadata"]["name"] != name)
        cpms = rules.cpms_state(read_cpms(api, namespace))
        data = {"machine.json": json.dumps(machine, sort_keys=True), "node": node, "siblings": json.dumps(siblings),
                "cpms": cpms}
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=_template_name(slot), namespace=namespace,
                                                               labels={"app.kubernetes.io/managed-by": "cpswap"}),
                                  data=data)
        try:
            kx._call("create machine template", api.core.create_namespaced_config_map, namespace, body, api=api)
        except ConflictError:
            kx._call("replace machine template", api.core.replace_namespaced_config_map, _template_name(slot),
                     namespace, body, api=api)
        progress(f"Machine {name} (node {node}): spec kept in configmap {namespace}/{_template_name(slot)}"
                 + (" (controlplanemachinesets/cluster is Active: it creates the replacement)" if cpms == "Active"
                    else ""))
        kx.delete_if_present(f"delete machine {name}", objects.delete_namespaced_custom_object, *MACHINE[:2],
                             namespace, MACHINE[2], name, api=api)

        def gone() -> tuple[bool, str]:
            current = next((m for m in _machines(api, namespace) if m["metadata"]["name"] == name), None)
            if current is None:
                return True, "deleted"
            hooks = [h.get("name") for h in ((current.get("spec") or {}).get("lifecycleHooks") or {}).get(
                "preDrain") or []]
            return False, f"deleting; preDrain hooks {', '.join(hooks)} (the etcd operator releases its hook once " \
                          f"the member is gone)" if hooks else "deleting"
        wait_until(f"Machine {name} deleted", gone, deadline_s=deadline_s, progress=progress, max_delay_s=5.0)
        progress(f"Machine {name}: deleted")
        return name


def _wait_running(api: kx.Api, namespace: str, name: str, *, deadline_s: float, progress: Progress) -> dict[str, Any]:
    objects = _objects(api)
    final: dict[str, Any] = {}

    def probe() -> tuple[bool, str]:
        current = kx._call(f"read machine {name}", objects.get_namespaced_custom_object, *MACHINE[:2], namespace,
                           MACHINE[2], name, api=api)
        status = current.get("status") or {}
        phase = status.get("phase") or "Pending"
        if phase == "Failed":
            raise PermanentError(f"Machine {name} failed: {status.get('errorMessage') or status.get('errorReason')}")
        final.clear()
        final.update(current)
        return phase == "Running" and bool(_node_of(current)), f"{phase}, node {_node_of(current) or '-'}"

    wait_until(f"Machine {name}", probe, deadline_s=deadline_s, progress=progress, max_delay_s=10.0)
    return final


def _check_node(machine: dict[str, Any], *, slot: str, node: str, made_by: str) -> str:
    name, got = machine["metadata"]["name"], _node_of(machine)
    if got != node:
        raise PermanentError(f"Machine {name} ({made_by}) provisioned node {got}, but members.{slot}.name is {node}: "
                             f"set members.{slot} to {got} and its IP, then re-run")
    return name


def _adopt_cpms_replacement(api: kx.Api, *, namespace: str, slot: str, node: str, old: dict[str, Any],
                            siblings: list[str], deadline_s: float, progress: Progress) -> str:
    """controlplanemachinesets/cluster is Active: it creates the replacement; cpswap creates nothing."""
    found: list[str] = []

    def probe() -> tuple[bool, str]:
        found[:] = rules.cpms_replacements(machines=_machines(api, namespace), siblings=siblings,
                                           old=old["metadata"]["name"])
        return bool(found), (f"waiting for the ControlPlaneMachineSet to create the replacement of "
                             f"{old['metadata']['name']}")
    wait_until("CPMS replacement Machine", probe, deadline_s=deadline_s, progress=progress, max_delay_s=5.0)
    if len(found) > 1:
        raise PermanentError(f"controlplanemachinesets/cluster created {len(found)} Machines ({', '.join(found)}) "
                             f"besides {', '.join(siblings)}: expected one replacement of {old['metadata']['name']}; "
                             f"resolve by hand and re-run")
    progress(f"controlplanemachinesets/cluster is Active: adopting its replacement Machine {found[0]} (cpswap creates "
             f"no copy, which would be a fourth control-plane Machine)")
    machine = _wait_running(api, namespace, found[0], deadline_s=deadline_s, progress=progress)
    name = _check_node(machine, slot=slot, node=node, made_by="created by controlplanemachinesets/cluster")
    progress(f"Machine {name}: Running, node {node}")
    return name


@inputs.validated(namespace=inputs.dns_label, slot=inputs.slot, node=inputs.dns_name, ip=inputs.ip_address,
                  machine=inputs.dns_name, deadline_s=inputs.seconds)
def create_machine(*, namespace: str, slot: str, node: str, ip: str, machine: str | None, deadline_s: float,
                   progress: Progress, kubeconfig: str | None = None) -> str:
    with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
        objects = _objects(api)
        machines = _machines(api, namespace)
        backing = next((m for m in machines if _node_of(m) == node), None)
        if backing is not None:
            progress(f"node {node} is backed by Machine {backing['metadata']['name']}: nothing to create")
            return backing["metadata"]["name"]
        cm = kx.read_config_map(api, namespace, _template_name(slot))
        cpms = rules.cpms_state(read_cpms(api, namespace))
        if cm is None:
            raise PermanentError(
                f"no Machine backs node {node} and there is no template {namespace}/{_template_name(slot)}: the "
                f"slot's leave keeps the old Machine's spec there; create the Machine by the method used at "
                f"install, or restore the template")
        old = json.loads(cm.data["machine.json"])
        if cpms == "Active":
            if machine:
                progress(f"members.{slot}.machine={machine} is ignored: controlplanemachinesets/cluster names its "
                         f"Machines")
            siblings = json.loads(cm.data.get("siblings") or "[]")
            return _adopt_cpms_replacement(api, namespace=namespace, slot=slot, node=node, old=old, siblings=siblings,
                                           deadline_s=deadline_s, progress=progress)
        taken = {m["metadata"]["name"] for m in machines} | {old["metadata"]["name"]}
        name = machine or next_name(old["metadata"]["name"], taken)
        existing = next((m for m in machines if m["metadata"]["name"] == name), None)
        if existing is None:
            if name == old["metadata"]["name"]:
                raise PermanentError(f"members.{slot}.machine={name} is the deleted Machine's name; "
                                     f"a recreated Machine needs a new name")
            body = clean_copy(old, name=name)
            body["metadata"]["namespace"] = namespace
            kx._call(f"create machine {name}", objects.create_namespaced_custom_object, *MACHINE[:2], namespace,
                     MACHINE[2], body, api=api)
            progress(f"Machine {name}: created from {old['metadata']['name']}'s spec (no status, no providerID)")
        final = _wait_running(api, namespace, name, deadline_s=deadline_s, progress=progress)
        _check_node(final, slot=slot, node=node, made_by="cpswap's copy")
        progress(f"Machine {name}: Running, node {node}")
        return name


def redeploy_patch(value: str) -> dict[str, Any]:
    return {"spec": {"forceRedeploymentReason": value}}


def _etcd_cr(api: kx.Api) -> dict[str, Any]:
    return kx._call("read etcd/cluster", _objects(api).get_cluster_custom_object, *ETCD_OPERATOR[:2],
                    ETCD_OPERATOR[2], "cluster", api=api)


def _set_guard(api: kx.Api, *, disabled: bool, owner: str) -> None:
    kx._call("patch etcd/cluster unsupportedConfigOverrides", _objects(api).patch_cluster_custom_object,
             *ETCD_OPERATOR[:2], ETCD_OPERATOR[2], "cluster", rules.guard_patch(disabled=disabled, owner=owner),
             api=api)


def restore_guard(*, progress: Progress, api: kx.Api | None = None, kubeconfig: str | None = None) -> bool:
    """Turn the quorum guard back on if cpswap turned it off (a run killed in between); True if it did."""
    if api is None:
        with kx.connect(kubeconfig=kubeconfig, timeout=10) as fresh:
            return restore_guard(progress=progress, api=fresh)
    owner = rules.guard_owner(_etcd_cr(api))
    if owner is None:
        return False
    _set_guard(api, disabled=False, owner=owner)
    progress(f"etcd/cluster: quorum guard turned back on ({rules.GUARD_KEY} removed; it was turned off by {owner})")
    return True


@inputs.validated(etcd_namespace=inputs.dns_label, node=inputs.dns_name, reason=inputs.word,
                  deadline_s=inputs.seconds)
def redeploy(*, etcd_namespace: str, node: str, reason: str, progress: Progress,
             members_health: Callable[[], tuple[int, int]], deadline_s: float = 300,
             kubeconfig: str | None = None) -> str:
    """``members_health()`` -> (healthy members, all members), read from etcd now. ``deadline_s``
    bounds the whole command: the wait while the operator scales the node in, then the wait for
    the new revision."""
    end_at = time.monotonic() + deadline_s
    with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
        restore_guard(progress=progress, api=api)
        decided: list[rules.RedeployDecision] = []

        def settled() -> tuple[bool, str]:
            pods = [p for p in _etcd_pods(api, etcd_namespace) if p.spec and p.spec.node_name == node]
            decision = rules.redeploy_decision(etcd=_etcd_cr(api), node=node, pod_ready=any(map(_pod_ready, pods)))
            decided[:] = [decision]
            return decision.action != "wait", decision.reason
        wait_until(f"etcd operator on {node}", settled, deadline_s=deadline_s, progress=progress, max_delay_s=2.0)
        decision = decided[0]
        progress(f"etcd/cluster: {decision.reason}")
        if decision.action == "not-needed":
            return "not-needed"
        value = f"{reason}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')}"
        etcd = _etcd_cr(api)
        healthy, total = members_health()
        blocked = rules.revision_blocked(etcd=etcd, healthy=healthy, total=total)
        before = int((etcd.get("status") or {}).get("latestAvailableRevision") or 0)
        if blocked is None:
            kx._call("patch etcd/cluster", _objects(api).patch_cluster_custom_object, *ETCD_OPERATOR[:2],
                     ETCD_OPERATOR[2], "cluster", redeploy_patch(value), api=api)
            progress(f"etcd/cluster: forceRedeploymentReason={value} (the operator rolls out a new revision)")
            return value
        progress(f"etcd/cluster: the revision controller would not roll a revision now ({blocked}); turning the "
                 f"quorum guard off ({rules.GUARD_KEY}) until it has")
        try:
            _set_guard(api, disabled=True, owner=reason)
            kx._call("patch etcd/cluster", _objects(api).patch_cluster_custom_object, *ETCD_OPERATOR[:2],
                     ETCD_OPERATOR[2], "cluster", redeploy_patch(value), api=api)
            progress(f"etcd/cluster: forceRedeploymentReason={value}")

            def rolled() -> tuple[bool, str]:
                latest = int((_etcd_cr(api).get("status") or {}).get("latestAvailableRevision") or 0)
                return latest > before, f"latestAvailableRevision {latest} (was {before})"
            wait_until("a new etcd revision", rolled, deadline_s=max(1.0, end_at - time.monotonic()),
                       progress=progress, max_delay_s=5.0)
        finally:
            _set_guard(api, disabled=False, owner=reason)
            progress("etcd/cluster: quorum guard turned back on")
        return value


@inputs.validated(namespace=inputs.dns_label, node=inputs.dns_name)
def leave_member(*, namespace: str, node: str, snapshot: Callable[[], object], remove: Callable[[], object],
                 progress: Progress, kubeconfig: str | None = None) -> str:
    """The departing member leaves: by hand (``remove``, quorum-guarded with its own snapshot) unless
    the etcd operator owns it (``core.openshift.membership_owner``), then only ``snapshot``."""
    with kx.connect(kubeconfig=kubeconfig, timeout=10) as api:
        restore_guard(progress=progress, api=api)
        machine = next((m for m in _machines(api, namespace) if _node_of(m) == node), None)
        decision = rules.membership_owner(cpms=rules.cpms_state(read_cpms(api, namespace)), machine=machine,
                                          node=node)
    progress(f"membership of {node}: {decision.owner} ({decision.reason})")
    if decision.owner == "operator":
        snapshot()
        progress(f"{node}: member left to the etcd operator; it is removed when the Machine is deleted")
        return "left-to-operator"
    return str(remove())
