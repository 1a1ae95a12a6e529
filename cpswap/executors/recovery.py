"""PVC recovery onto a new node (``cpswap kube recover-pvcs``). Not pure (Kubernetes API, journal file).

Decide first, then act: the executor observes (the claims pinned to the departed node, the Nodes, the moving
pods' selectors, the journal of an interrupted run, which claims are already bound on the new node), the pure
``cpswap.core.recovery`` decides (``recovery_scope``, ``decide_recovery``), and ``_carry_out`` makes the calls.

Recovery order (seeds 000/004; notes/etcd_k8s_ops.md §d): the Node is already deleted; cordon
the survivors (marked, so only what cpswap cordoned is uncordoned, even after an interruption);
per claim, in policy order: delete the PVC, force-delete its pod, wait for the PVC to be recreated
and bound on the new node, re-delete a pod stuck on "PVC not found"; an operator-owned Deployment
is deleted with its PVC and recreated by the operator; uncordon in all cases. A journal file
records each destructive step before it happens; a re-run reads it to find claims an interrupted
run already deleted, and leaves alone a recreated claim that is being bound on the new node, so
re-runs converge instead of chasing their own recreation.

kmock (the test emulator) ignores selectors and has no eviction endpoint; real API servers do
both, and this code depends on neither. Unscheduled pods do not hold a terminating claim (as in
kube-controller-manager's pvc-protection); every pod using a terminating claim is force-deleted.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubernetes import client

from cpswap.core import inputs
from cpswap.core.errors import ConfigError, PermanentError, TransientError, UnsafeOperationError, Violation
from cpswap.core.recovery import (RECREATE_OPERATOR, RECREATE_STATEFULSET, ClaimAction, NodeRole, RecoveryPlan,
                                  RecoveryScope, decide_recovery, interrupted_actions, parse_pvc_recovery,
                                  plan_claim_actions, recovery_scope)
from cpswap.executors.kube import (CONTROL_PLANE_LABELS, CORDON_MARK, SELECTED_NODE, Api, Progress, _delete_pod,
                                   _pv_node, all_pods, claims_on, cordon, delete_if_present, list_nodes, node_ready,
                                   read_node, read_or_none, uncordon_marked)
from cpswap.executors.waiting import wait_until


class Journal:
    """Append-only JSON lines of destructive steps, written before each step happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def started_claims(self) -> dict[str, dict[str, Any]]:
        """Claims a previous (interrupted) run started to recover, with what it recorded."""
        claims: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            if "claim" in entry:
                claims.setdefault(entry["claim"], {}).update(entry)
        return claims

    def record(self, **entry: Any) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}) + "\n")


def _pvc(api: Api, namespace: str, name: str) -> client.V1PersistentVolumeClaim | None:
    return read_or_none(f"read pvc {namespace}/{name}", api.core.read_namespaced_persistent_volume_claim, name,
                        namespace, api=api)


def _bound_node(api: Api, pvc: client.V1PersistentVolumeClaim) -> str | None:
    if not pvc.spec or not pvc.spec.volume_name:
        return None
    pv = read_or_none("read pv", api.core.read_persistent_volume, pvc.spec.volume_name, api=api)
    return _pv_node(pv) if pv is not None else None


def _users(api: Api, namespace: str, claim: str) -> list[client.V1Pod]:
    return [p for p in all_pods(api) if p.metadata.namespace == namespace and any(
        v.persistent_volume_claim and v.persistent_volume_claim.claim_name == claim for v in (p.spec.volumes or []))]


def _recovered(api: Api, action: ClaimAction, new_node: str) -> bool:
    pvc = _pvc(api, action.namespace, action.name)
    return bool(pvc and not pvc.metadata.deletion_timestamp and _bound_node(api, pvc) == new_node)


def _in_flight(pvc: client.V1PersistentVolumeClaim | None, new_node: str) -> bool:
    """A recreated claim not bound yet whose pod was scheduled on ``new_node`` (selected-node set by
    the scheduler): local-path is about to bind it there, so it must not be deleted again (a re-run
    after an interruption would otherwise chase its own recreation)."""
    return bool(pvc and not pvc.metadata.deletion_timestamp and not (pvc.spec and pvc.spec.volume_name)
                and (pvc.metadata.annotations or {}).get(SELECTED_NODE) == new_node)


def _wait_recreated(api: Api, action: ClaimAction, *, new_node: str, journal: Journal, deadline_s: float,
                    progress: Progress, recreator: str) -> None:
    """Wait until the claim is recreated and bound on ``new_node``: pods holding the terminating
    PVC are force-deleted, and a pod stuck on 'persistentvolumeclaim ... not found' is deleted
    once more (kubernetes#74374)."""
    key = f"{action.namespace}/{action.name}"
    redeleted: list[str] = []

    def redelete_stuck() -> None:
        """The StatefulSet controller may recreate the pod while the PVC is still terminating; that
        pod then waits forever on 'persistentvolumeclaim ... not found' (kubernetes#74374)."""
        for pod in _users(api, action.namespace, action.name):
            stuck = [c for c in (pod.status.conditions or []) if c.message and "not found" in c.message] \
                if pod.status and not pod.spec.node_name else []
            if stuck and len(redeleted) < 5:
                journal.record(claim=key, step="re-delete-stuck-pod", pod=pod.metadata.name)
                progress(f"{key}: pod {pod.metadata.name} stuck on '{stuck[0].message}'; deleting it once more")
                redeleted.append(pod.metadata.name)
                _delete_pod(api, pod, force=True)

    def probe() -> tuple[bool, str]:
        current = _pvc(api, action.namespace, action.name)
        if current is None:
            redelete_stuck()
            return False, f"PVC deleted, waiting for {recreator} to recreate it"
        if current.metadata.deletion_timestamp:
            for pod in _users(api, action.namespace, action.name):  # wherever it runs: kubelet won't
                _delete_pod(api, pod, force=True)                   # start a pod on a terminating claim
            return False, "PVC terminating (pvc-protection until its pod is gone)"
        node = _bound_node(api, current)
        if node == new_node:
            return True, f"bound on {new_node}"
        redelete_stuck()
        return False, f"PVC recreated, bound to {node or 'nothing yet'}"
    wait_until(f"recover {key}", probe, deadline_s=deadline_s, progress=progress)


def _recover_statefulset(api: Api, action: ClaimAction, *, new_node: str, journal: Journal, deadline_s: float,
                         progress: Progress) -> None:
    key = f"{action.namespace}/{action.name}"
    pvc = _pvc(api, action.namespace, action.name)
    if _in_flight(pvc, new_node):
        progress(f"{key}: recreated and being bound on {new_node}; waiting")
    elif pvc is not None:
        if not pvc.metadata.deletion_timestamp:
            journal.record(claim=key, step="delete-pvc", volume=pvc.spec.volume_name if pvc.spec else None)
            delete_if_present(f"delete pvc {key}", api.core.delete_namespaced_persistent_volume_claim, action.name,
                              action.namespace, api=api)
        for pod in _users(api, action.namespace, action.name):  # pvc-protection holds the claim until they go
            journal.record(claim=key, step="force-delete-pod", pod=pod.metadata.name)
            _delete_pod(api, pod, force=True)
    _wait_recreated(api, action, new_node=new_node, journal=journal, deadline_s=deadline_s, progress=progress,
                    recreator="the StatefulSet controller")


def _recover_operator_deployment(api: Api, action: ClaimAction, *, new_node: str, journal: Journal,
                                 deadline_s: float, progress: Progress) -> None:
    """Delete the claim and its Deployment; the operator recreates both and the pod lands on the
    only schedulable node. The Deployment is deleted once per recovery (the journal says whether an
    interrupted run already did), not again after the operator recreated it."""
    key = f"{action.namespace}/{action.name}"
    pvc = _pvc(api, action.namespace, action.name)
    name = action.owner_name if action.owner_name not in ("", "?") else action.name
    if _in_flight(pvc, new_node):
        progress(f"{key}: recreated by the operator and being bound on {new_node}; waiting")
    else:
        deleting = pvc is not None and not pvc.metadata.deletion_timestamp
        if pvc is not None and deleting:
            journal.record(claim=key, step="delete-pvc", volume=pvc.spec.volume_name if pvc.spec else None)
            delete_if_present(f"delete pvc {key}", api.core.delete_namespaced_persistent_volume_claim,
                              action.name, action.namespace, api=api)
        if deleting or "deployment" not in journal.started_claims().get(key, {}):
            journal.record(claim=key, step="delete-deployment", deployment=name)
            delete_if_present(f"delete deployment {action.namespace}/{name}",
                              api.apps.delete_namespaced_deployment, name, action.namespace, api=api)
        if pvc is not None:
            for pod in _users(api, action.namespace, action.name):
                journal.record(claim=key, step="force-delete-pod", pod=pod.metadata.name)
                _delete_pod(api, pod, force=True)
    _wait_recreated(api, action, new_node=new_node, journal=journal, deadline_s=deadline_s, progress=progress,
                    recreator="its operator")


def node_roles(api: Api) -> list[NodeRole]:
    return [NodeRole(name=n.metadata.name,
                     control_plane=any(label in (n.metadata.labels or {}) for label in CONTROL_PLANE_LABELS),
                     labels=tuple(sorted((n.metadata.labels or {}).items())))
            for n in list_nodes(api)]


def moving_selectors(api: Api, actions: Sequence[ClaimAction]) -> list[dict[str, str]] | None:
    """The ``nodeSelector`` of each recreated claim's owner template; None when one is not found."""
    found: list[dict[str, str]] = []
    for action in actions:
        if action.policy != "recreate":
            continue
        if action.owner_kind == "StatefulSet":
            owner = read_or_none(f"read statefulset {action.namespace}/{action.owner_name}",
                                 api.apps.read_namespaced_stateful_set, action.owner_name, action.namespace, api=api)
        elif action.owner_kind in ("Deployment", "OperatorDeployment"):
            owner = read_or_none(f"read deployment {action.namespace}/{action.owner_name}",
                                 api.apps.read_namespaced_deployment, action.owner_name, action.namespace, api=api)
        else:
            return None
        if owner is None or owner.spec is None or owner.spec.template.spec is None:
            return None
        found.append(dict(owner.spec.template.spec.node_selector or {}))
    return found


def decide_scope(api: Api, *, new_node: str, old_node: str | None, orphaned: bool, survivors: Sequence[str] | None,
                 actions: Sequence[ClaimAction]) -> RecoveryScope:
    """Observe the Nodes and the moving pods' selectors, then ``recovery.recovery_scope`` decides;
    its violations are raised."""
    scope, problems = recovery_scope(nodes=node_roles(api), new_node=new_node, old_node=old_node, orphaned=orphaned,
                                     survivors=survivors,
                                     selectors=None if survivors is not None else moving_selectors(api, actions))
    if problems:
        raise ConfigError(problems)
    return scope


@inputs.validated(new_node=inputs.dns_name, old_node=inputs.dns_name, survivors=inputs.node_names, deadline_s=inputs.seconds)
def recover_pvcs(api: Api, *, new_node: str, policy_json: str, old_node: str | None, orphaned: bool,
                 state_dir: Path, deadline_s: float, progress: Progress,
                 survivors: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Recover the claims pinned to ``old_node`` (with ``orphaned`` too: only once it no longer
    exists; ``orphaned`` alone: any Node that no longer exists) onto ``new_node``, in policy order.
    Refuses before touching anything when a data-bearing claim has no policy or the new node is not
    Ready. ``survivors`` (default: the surviving control-plane Nodes, ``recovery.recovery_scope``;
    workers are left alone) are cordoned for the duration so recreated pods can only land on
    ``new_node``; they are uncordoned in all cases. Each destructive step is journaled under ``state_dir`` before it happens, so a re-run
    after an interruption picks up claims that no longer look pinned to the old node."""
    try:
        raw = json.loads(policy_json) if policy_json else {}
    except json.JSONDecodeError as exc:
        raise ConfigError([Violation("--policy-json", policy_json[:80], f"must be a JSON object ({exc.msg} at "
                                                                        f"character {exc.pos})")]) from None
    policies, problems = parse_pvc_recovery(raw, field="--policy-json")
    if problems:
        raise ConfigError(problems)
    claims = claims_on(api, nodes={old_node} if old_node else None, orphaned=orphaned and not old_node)
    actions, refusals = plan_claim_actions(claims=claims, policies=policies, node=old_node or "the departed node")
    if refusals:
        raise UnsafeOperationError("refusing to recover any claim: " + "; ".join(v.rule for v in refusals))
    node = read_node(api, new_node)
    if node is None or not node_ready(node):
        raise PermanentError(f"new node {new_node} is {'absent' if node is None else 'not Ready'}; "
                             f"run `cpswap kube wait-node --node {new_node}` first")
    scope = decide_scope(api, new_node=new_node, old_node=old_node, orphaned=orphaned, survivors=survivors,
                         actions=actions)
    progress(f"recover-pvcs scope: {scope.reason}; stay schedulable: {', '.join(scope.left_schedulable)}")
    journal = Journal(state_dir / f"recover-{new_node}.jsonl")
    interrupted = interrupted_actions(started=journal.started_claims(),
                                      known=[f"{a.namespace}/{a.name}" for a in actions], policies=policies)
    recovered = frozenset(f"{a.namespace}/{a.name}" for a in (*actions, *interrupted)
                          if a.policy == "recreate" and _recovered(api, a, new_node))
    plan = decide_recovery(actions=actions, interrupted=interrupted, recovered=recovered, survivors=scope.cordon)
    progress(f"recover-pvcs onto {new_node}: {len(plan.to_recreate)} claim(s) to recreate "
             f"({', '.join(plan.to_recreate) or 'none'})")
    return _carry_out(api, plan, new_node=new_node, journal=journal, deadline_s=deadline_s, progress=progress)


def _carry_out(api: Api, plan: RecoveryPlan, *, new_node: str, journal: Journal, deadline_s: float,
               progress: Progress) -> list[dict[str, Any]]:
    """The calls of a decided recovery: cordon, each claim's step, uncordon in all cases; then refuse on the
    claims left for the operator."""
    report: list[dict[str, Any]] = []
    try:
        if plan.cordon:  # a scope with no node a moving pod could land on cordons nothing
            journal.record(step="cordon", nodes=list(plan.cordon))
            cordon(api, names=list(plan.cordon), progress=progress)
        for step in plan.steps:
            if step.do == RECREATE_OPERATOR:
                _recover_operator_deployment(api, step.action, new_node=new_node, journal=journal,
                                             deadline_s=deadline_s, progress=progress)
            elif step.do == RECREATE_STATEFULSET:
                _recover_statefulset(api, step.action, new_node=new_node, journal=journal, deadline_s=deadline_s,
                                     progress=progress)
            progress(f"{step.key}: {step.outcome}")
            report.append({**asdict(step.action), "outcome": step.outcome})
    finally:
        try:
            uncordon_marked(api, progress=progress)  # every mark, also one left by an interrupted run
            journal.record(step="uncordon")
        except TransientError as exc:
            progress(f"WARNING: could not uncordon the survivors ({exc}); they carry {CORDON_MARK}; "
                     f"re-run, or run `cpswap kube uncordon` once the API is back")
    if plan.manual:
        raise UnsafeOperationError("claims left for the operator (policy manual): " + ", ".join(plan.manual))
    return report
