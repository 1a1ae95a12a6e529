"""OpenShift decisions (seed 003, issue 12), taken from cluster-etcd-operator's and the
control-plane machine set operator's source. Pure: data in, decision out; the executor
(cpswap/executors/openshift.py) reads the objects and acts.

Sources (openshift/cluster-etcd-operator at b4786ae33ca2aceae72d67e6644e9928ead71f18):
- Revision precondition: pkg/operator/starter.go wires ``WithRevisionControllerPrecondition(quorumSafe)``;
  ``quorumSafe`` is ``ceohelpers.CheckSafeToScaleCluster`` (pkg/operator/ceohelpers/bootstrap.go):
  safe when the revision is not stable (``IsRevisionStable``: latestAvailableRevision 0, or a node
  whose currentRevision differs), or the scaling strategy is ``UnsafeScalingStrategy`` (the
  ``unsupportedConfigOverrides.useUnsupportedUnsafeNonHANonProductionUnstableEtcd`` key parsed as a
  bool, pkg/operator/ceohelpers/unsupported_override.go), else when at least 3 members are healthy
  and the cluster is fault tolerant (pkg/etcdcli/health.go ``IsQuorumFaultTolerantErr``,
  quorum ``members/2+1``). ``forceRedeploymentReason`` reaches the revision controller only
  through the ``etcd-pod`` ConfigMap (pkg/operator/targetconfigcontroller/targetconfigcontroller.go),
  so a forced redeployment after a hand removal (2 healthy of 2 members, every node at the
  latest revision: seed 003's crashloop case) creates NO revision: it stalls until the guard is
  off. A new Node appears in ``nodeStatuses`` without a revision (library-go
  staticpod/controller/node/node_controller.go), which makes the revision unstable, so the
  Machine case does not stall.
- Machine deletion hook: pkg/operator/machinedeletionhooks/machinedeletionhooks.go adds the
  preDrain hook ``EtcdQuorumOperator`` owned by ``clusteroperator/etcd`` (ceohelpers/common.go)
  to every master Machine while the Machine API is functional (ceohelpers/machine_api.go), and
  removes it from a Machine pending deletion once no member has the Machine's InternalIP.
- Member removal: pkg/operator/clustermemberremovalcontroller/clustermemberremovalcontroller.go
  ``attemptToScaleDown`` removes the member of a master Machine pending deletion (with the hook):
  an unhealthy one when the healthy voters still make quorum of the desired replicas, a healthy
  one only once the voters exceed the desired count (a replacement joined: add before remove).
- ControlPlaneMachineSet (openshift/cluster-control-plane-machine-set-operator at
  85f92f79174d6df783f631eb3187f0e11e89cc96): pkg/controllers/controlplanemachineset/controller.go
  reconciles only ``controlplanemachinesets/cluster`` whose ``spec.state`` is ``Active``
  (``isActive``); updates.go creates a replacement in the index of a Machine that "needs updating
  (or has been deleted)" (RollingUpdate, ``createRollingUpdateReplacementMachines``) or is deleted
  (OnDelete, ``createOnDeleteReplacementMachines``). A copy made by cpswap would be a fourth
  Machine. The CRD's default state is ``Inactive``.

- Scaling a new node in (``redeploy_decision``): library-go's NodeController
  (vendor/github.com/openshift/library-go/pkg/operator/staticpod/controller/node/node_controller.go,
  ``sync``) lists every master Node in ``status.nodeStatuses`` as soon as it exists, with no
  revision. The installer controller (.../staticpod/controller/installer/installer_controller.go)
  sets ``targetRevision`` to the latest revision for a node that is not at it (``getRevisionToStart``),
  runs the installer pod, and moves ``currentRevision`` to the target only once the node's etcd
  pod is Ready at that revision (``newNodeStateForInstallInProgress``, ``staticPodStateReady``).
  The etcd pod is Ready only when its member serves: the ClusterMemberController
  (pkg/operator/clustermembercontroller/clustermembercontroller.go) adds the learner once the pod
  runs but is not ready (``isEtcdContainerRunningNotReady``) and promotes it. So while a node is
  being scaled in, its ``currentRevision`` is below ``latestAvailableRevision``
  (``NodeInstallerProgressing`` True, ``IsRevisionStable`` false): the operator is still working
  and a forced revision is not needed. Only when every node is at the latest revision (scaling
  done) and the node's etcd pod is still not Ready (seed 003 2.4.2: the member was removed and the
  pod moved aside on a node that already had the latest revision) does nothing but a new
  revision bring it back.

Decisions here: ``redeploy_decision`` (wait, not needed, or force a revision), ``revision_blocked``
(the precondition), ``cpms_state``, ``membership_owner`` and ``cpms_replacements``; ``guard_patch``
is the merge patch that turns the guard off and on again without touching other overrides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Mapping

GUARD_KEY = "useUnsupportedUnsafeNonHANonProductionUnstableEtcd"
GUARD_ANNOTATION = "cpswap.io/quorum-guard-disabled-by"
HOOK_NAME, HOOK_OWNER = "EtcdQuorumOperator", "clusteroperator/etcd"
HA_MINIMUM = 3
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def guard_patch(*, disabled: bool, owner: str) -> dict[str, Any]:
    """The etcd/cluster merge patch: the override key on (quorum guard off) with cpswap's marker
    annotation, or both removed (guard back on). Other overrides are left as they are."""
    return {"metadata": {"annotations": {GUARD_ANNOTATION: owner if disabled else None}},
            "spec": {"unsupportedConfigOverrides": {GUARD_KEY: True if disabled else None}}}


def unsafe_override(etcd: Mapping[str, Any]) -> bool:
    """``isUnsupportedUnsafeEtcd``: the key as a bool, or a string Go's strconv.ParseBool accepts."""
    overrides = (etcd.get("spec") or {}).get("unsupportedConfigOverrides") or {}
    value = overrides.get(GUARD_KEY) if isinstance(overrides, Mapping) else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value in _TRUE  # the operator errors on anything else (assumes HA): not unsafe
    return False


def guard_owner(etcd: Mapping[str, Any]) -> str | None:
    """Who (which cpswap step) turned the guard off, or None: cpswap never turns on a guard it did not turn off."""
    return ((etcd.get("metadata") or {}).get("annotations") or {}).get(GUARD_ANNOTATION)


def revision_blocked(*, etcd: Mapping[str, Any], healthy: int, total: int) -> str | None:
    """Why CEO's revision controller would create no new revision now (``CheckSafeToScaleCluster``),
    or None when it would."""
    status = etcd.get("status") or {}
    latest = int(status.get("latestAvailableRevision") or 0)
    if latest == 0 or any(int(n.get("currentRevision") or 0) != latest for n in status.get("nodeStatuses") or []):
        return None  # a revision is still rolling out (or a new node has none): always safe
    if unsafe_override(etcd):
        return None
    if healthy < HA_MINIMUM:
        return (f"CheckSafeToScaleCluster found {healthy} healthy member(s) out of the {HA_MINIMUM} required by "
                f"the HAScalingStrategy")
    quorum = total // 2 + 1
    if total - quorum < 1 or healthy - quorum < 1:
        return f"etcd cluster has quorum of {quorum} and {healthy} healthy members which is not fault tolerant"
    return None


@dataclass(frozen=True)
class RedeployDecision:
    action: str  # "not-needed" | "wait" | "redeploy"
    reason: str


def _node_status(etcd: Mapping[str, Any], node: str) -> Mapping[str, Any] | None:
    return next((n for n in (etcd.get("status") or {}).get("nodeStatuses") or [] if n.get("nodeName") == node), None)


def _failure(entry: Mapping[str, Any]) -> str:
    """The installer's last failure for the revision it is rolling, as the operator reports it."""
    failed, target = int(entry.get("lastFailedRevision") or 0), int(entry.get("targetRevision") or 0)
    if not failed or failed != target:
        return ""
    errors = "; ".join(str(e) for e in entry.get("lastFailedRevisionErrors") or []) or "no message"
    return f"; its installer failed on revision {failed} ({errors}), the operator retries it"


def redeploy_decision(*, etcd: Mapping[str, Any], node: str, pod_ready: bool) -> RedeployDecision:
    """Whether ``node``'s etcd needs a forced revision now, from the operator's own signals
    (``status.latestAvailableRevision``, ``status.nodeStatuses``; see the module docstring):

    - the node's etcd pod is Running and Ready: ``not-needed``;
    - no revision yet, the node not in ``nodeStatuses`` yet, or any node below the latest revision
      (the installer controller is rolling it; for a new node, until its member joined): ``wait``;
    - every node at the latest revision and the node's pod not Ready: ``redeploy``."""
    if pod_ready:
        return RedeployDecision("not-needed", f"etcd pod on {node} is Running and Ready: the etcd operator has it")
    status = etcd.get("status") or {}
    latest = int(status.get("latestAvailableRevision") or 0)
    if latest == 0:
        return RedeployDecision("wait", "etcd/cluster has no revision yet (status.latestAvailableRevision 0)")
    entry = _node_status(etcd, node)
    if entry is None:
        return RedeployDecision("wait", f"node {node} is not in etcd/cluster status.nodeStatuses yet (the operator's "
                                        f"node controller lists every master Node)")
    current, target = int(entry.get("currentRevision") or 0), int(entry.get("targetRevision") or 0)
    if current != latest:
        rolling = f"installing revision {target}" if target else f"revision {latest} not started on it yet"
        return RedeployDecision("wait", f"node {node} is at revision {current} of {latest} ({rolling}): the etcd "
                                        f"operator is scaling it in (its revision becomes current once the etcd pod "
                                        f"is Ready, i.e. the member joined){_failure(entry)}")
    behind = sorted(f"{n.get('nodeName')} at {int(n.get('currentRevision') or 0)}"
                    for n in status.get("nodeStatuses") or [] if int(n.get("currentRevision") or 0) != latest)
    if behind:
        return RedeployDecision("wait", f"revision {latest} is still rolling out ({', '.join(behind)})")
    return RedeployDecision("redeploy", f"every node is at revision {latest} and the etcd pod on {node} is not "
                                        f"Ready: no rollout will reach it without a new revision")


def cpms_state(cpms: Mapping[str, Any] | None) -> str:
    """``absent``, ``Inactive`` or ``Active`` (the CRD's default is Inactive)."""
    if cpms is None:
        return "absent"
    return str((cpms.get("spec") or {}).get("state") or "Inactive")


def has_etcd_hook(machine: Mapping[str, Any]) -> bool:
    hooks = ((machine.get("spec") or {}).get("lifecycleHooks") or {}).get("preDrain") or []
    return any(h.get("name") == HOOK_NAME and h.get("owner") == HOOK_OWNER for h in hooks)


@dataclass(frozen=True)
class MembershipOwner:
    owner: str  # "operator" | "cpswap"
    reason: str


def membership_owner(*, cpms: str, machine: Mapping[str, Any] | None, node: str) -> MembershipOwner:
    """Who removes the departing member. The operator does when a ControlPlaneMachineSet is Active
    (it creates the replacement, so a healthy member is removed only after the new one joined) and
    the node's Machine carries the etcd operator's preDrain hook (its MachineDeletionHooksController
    runs only with a functional Machine API, and so does the ClusterMemberRemovalController). Else
    cpswap removes it by hand (seed 003): without CPMS nothing but cpswap adds the replacement, and
    etcd refuses an add while a voter is down."""
    if machine is None:
        return MembershipOwner("cpswap", f"no Machine backs {node}: the etcd operator cannot tie the member to a "
                                         f"deletion")
    name = (machine.get("metadata") or {}).get("name")
    if cpms != "Active":
        return MembershipOwner("cpswap", f"controlplanemachinesets/cluster is {cpms}: nothing but cpswap creates "
                                         f"{name}'s replacement")
    if not has_etcd_hook(machine):
        return MembershipOwner("cpswap", f"Machine {name} has no preDrain hook {HOOK_NAME} ({HOOK_OWNER}): the etcd "
                                         f"operator's Machine API controllers are not running")
    return MembershipOwner("operator", f"controlplanemachinesets/cluster is Active and Machine {name} carries the "
                                       f"preDrain hook {HOOK_NAME}: deleting it lets the etcd operator remove the "
                                       f"member (add before remove for a healthy one)")


def cpms_replacements(*, machines: Iterable[Mapping[str, Any]], siblings: Iterable[str], old: str) -> list[str]:
    """Control-plane Machines that are neither the deleted one nor one that existed beside it when
    it was deleted: what the ControlPlaneMachineSet created."""
    known = {old, *siblings}
    return sorted(name for m in machines
                  if isinstance(name := (m.get("metadata") or {}).get("name"), str) and name not in known
                  and ((m.get("metadata") or {}).get("labels") or {}).get(
                      "machine.openshift.io/cluster-api-machine-role") == "master"
                  and not (m.get("metadata") or {}).get("deletionTimestamp"))
