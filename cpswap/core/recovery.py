"""PVC recovery policy: parsing ``cpswap:pvcRecovery``, matching claims, ordering. Pure.

A selector is a namespace (``onecloud-minio``: every claim in it) or ``namespace/claim``; the
more specific selector wins. Data classes say what a recreate loses:
``replicated`` (peers heal it, e.g. minio), ``disposable`` (tolerable loss, e.g. metrics),
``unique`` (the only copy). Policies: ``recreate`` (cpswap deletes and recreates it),
``skip`` (left alone, stays Pending), ``manual`` (cpswap stops and tells the operator).
``recreate`` of a ``unique`` claim deletes its only copy: it needs ``acceptDataLoss: true`` in
the config, and the plan shows it as data loss (``ClaimAction.data_loss``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping, Sequence

from cpswap.core.errors import Violation
from cpswap.core.inputs import DNS1123_SUBDOMAIN
from cpswap.core.facts import ClaimFact

POLICIES = ("recreate", "skip", "manual")
DATA_CLASSES = ("replicated", "disposable", "unique")
OWNERS = ("statefulset", "operator")


@dataclass(frozen=True)
class ClaimPolicy:
    selector: str
    policy: str
    data_class: str
    order: int
    owner: str | None = None
    accept_data_loss: bool = False

    @property
    def data_loss(self) -> bool:
        """A recreate of the only copy: its data is gone."""
        return self.policy == "recreate" and self.data_class == "unique"

    @property
    def namespace(self) -> str:
        return self.selector.partition("/")[0]

    @property
    def claim(self) -> str | None:
        return self.selector.partition("/")[2] or None


@dataclass(frozen=True)
class ClaimAction:
    """What recovery does with one claim pinned to the departing node."""

    namespace: str
    name: str
    owner_kind: str
    owner_name: str
    size: str
    data_class: str
    policy: str
    order: int
    observed: bool
    data_loss: bool = False  # recreate of a unique claim (acknowledged with acceptDataLoss)

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "owner_kind": self.owner_kind,
                "owner_name": self.owner_name, "size": self.size, "data_class": self.data_class,
                "policy": self.policy, "order": self.order, "observed": self.observed, "data_loss": self.data_loss}


def _check_selector(selector: str) -> str | None:
    parts = selector.split("/")
    if len(parts) > 2 or not all(DNS1123_SUBDOMAIN.fullmatch(p) for p in parts):
        return "must be a namespace or namespace/claim of lowercase DNS-1123 names"
    return None


def parse_pvc_recovery(raw: Any, *, field: str = "pvcRecovery") -> tuple[tuple[ClaimPolicy, ...], tuple[Violation, ...]]:
    """Parse the ``cpswap:pvcRecovery`` object; every violation is returned, none raised."""
    if raw is None:
        return (), ()
    if not isinstance(raw, Mapping):
        return (), (Violation(field, repr(raw), "must be an object of selector -> {policy, dataClass, order}"),)
    policies: list[ClaimPolicy] = []
    problems: list[Violation] = []
    for selector, spec in sorted(raw.items(), key=lambda kv: str(kv[0])):
        where = f"{field}.{selector}"
        if (why := _check_selector(str(selector))) is not None:
            problems.append(Violation(where, str(selector), why))
            continue
        if not isinstance(spec, Mapping):
            problems.append(Violation(where, repr(spec), "must be an object {policy, dataClass, order}"))
            continue
        unknown = sorted(set(spec) - {"policy", "dataClass", "order", "owner", "acceptDataLoss"})
        for key in unknown:
            problems.append(Violation(f"{where}.{key}", str(spec[key]),
                                      "unknown key; allowed: policy, dataClass, order, owner, acceptDataLoss"))
        policy, data_class = spec.get("policy"), spec.get("dataClass")
        order, owner = spec.get("order", 100), spec.get("owner")
        accept = spec.get("acceptDataLoss", False)
        if not isinstance(accept, bool):
            problems.append(Violation(f"{where}.acceptDataLoss", repr(accept), "must be true or false"))
        elif policy == "recreate" and data_class == "unique" and not accept:
            problems.append(Violation(f"{where}.policy", "recreate",
                                      f"dataClass unique means the claim holds the only copy: recreating it deletes "
                                      f"that data; set {where}.acceptDataLoss: true to acknowledge the loss, or use "
                                      f"policy manual or skip"))
            accept = None
        if policy not in POLICIES:
            problems.append(Violation(f"{where}.policy", str(policy), f"must be one of {', '.join(POLICIES)}"))
        if data_class not in DATA_CLASSES:
            problems.append(Violation(f"{where}.dataClass", str(data_class), f"must be one of {', '.join(DATA_CLASSES)}"))
        if not isinstance(order, int) or isinstance(order, bool) or order < 0:
            problems.append(Violation(f"{where}.order", str(order), "must be a non-negative integer (lower recovers first)"))
        if owner is not None and owner not in OWNERS:
            problems.append(Violation(f"{where}.owner", str(owner), f"must be one of {', '.join(OWNERS)}"))
        if not unknown and policy in POLICIES and data_class in DATA_CLASSES and isinstance(order, int) \
                and not isinstance(order, bool) and order >= 0 and (owner is None or owner in OWNERS) \
                and isinstance(accept, bool):
            policies.append(ClaimPolicy(selector=str(selector), policy=policy, data_class=data_class,
                                        order=order, owner=owner, accept_data_loss=accept))
    return tuple(policies), tuple(problems)


def policy_for(*, namespace: str, name: str, policies: Sequence[ClaimPolicy]) -> ClaimPolicy | None:
    """The policy for one claim: ``ns/claim`` beats ``ns``."""
    exact = [p for p in policies if p.namespace == namespace and p.claim == name]
    if exact:
        return exact[0]
    broad = [p for p in policies if p.namespace == namespace and p.claim is None]
    return broad[0] if broad else None


def _owner_kind(claim: ClaimFact, policy: ClaimPolicy | None) -> str:
    if policy is not None and policy.owner == "operator" and claim.owner_kind in ("Deployment", "OperatorDeployment"):
        return "OperatorDeployment"
    return claim.owner_kind


def plan_claim_actions(*, claims: Sequence[ClaimFact], policies: Sequence[ClaimPolicy],
                       node: str) -> tuple[tuple[ClaimAction, ...], tuple[Violation, ...]]:
    """Order the observed claims of ``node`` for recovery; refuse data-bearing claims without policy.

    Unbound claims (no volume) hold no data and are left alone without a policy.
    """
    actions: list[ClaimAction] = []
    refusals: list[Violation] = []
    for claim in claims:
        policy = policy_for(namespace=claim.namespace, name=claim.name, policies=policies)
        if policy is None:
            if claim.volume:
                refusals.append(Violation(
                    f"pvcRecovery.{claim.key}", f"{claim.size} on {node}",
                    f"claim {claim.key} ({claim.owner_kind} {claim.owner_name}) holds data on the departing "
                    f"node {node} and has no recovery policy; add pvcRecovery.{claim.namespace} or "
                    f"pvcRecovery.{claim.key} with policy recreate, skip or manual"))
            continue
        actions.append(ClaimAction(namespace=claim.namespace, name=claim.name,
                                   owner_kind=_owner_kind(claim, policy), owner_name=claim.owner_name,
                                   size=claim.size, data_class=policy.data_class, policy=policy.policy,
                                   order=policy.order, observed=True, data_loss=policy.data_loss))
    actions.sort(key=lambda a: (a.order, a.namespace, a.name))
    return tuple(actions), tuple(refusals)


def unobserved_actions(*, policies: Sequence[ClaimPolicy]) -> tuple[ClaimAction, ...]:
    """Without a kube observation the plan lists the policies, marked unobserved."""
    rows = [ClaimAction(namespace=p.namespace, name=p.claim or "*", owner_kind=(
        "OperatorDeployment" if p.owner == "operator" else ("StatefulSet" if p.owner == "statefulset" else "?")),
        owner_name="?", size="?", data_class=p.data_class, policy=p.policy, order=p.order, observed=False,
        data_loss=p.data_loss)
        for p in policies]
    rows.sort(key=lambda a: (a.order, a.namespace, a.name))
    return tuple(rows)


@dataclass(frozen=True)
class NodeCapacity:
    name: str
    max_pods: int
    pods: int

    @property
    def free(self) -> int:
        return max(self.max_pods - self.pods, 0)


@dataclass(frozen=True)
class CapacityVerdict:
    allowed: bool
    free: int
    moving: int
    reason: str


def check_capacity(*, survivors: Sequence[NodeCapacity], moving_pods: int) -> CapacityVerdict:
    """Can the survivors' free pod slots (kubelet max-pods, 110 by default) take what moves?"""
    free = sum(n.free for n in survivors)
    detail = ", ".join(f"{n.name} {n.pods}/{n.max_pods}" for n in survivors)
    if moving_pods > free:
        return CapacityVerdict(False, free, moving_pods,
                               f"{moving_pods} pods must move but the survivors have {free} free pod slots "
                               f"({detail}); raise kubelet max-pods or add a node first")
    return CapacityVerdict(True, free, moving_pods, f"{moving_pods} pods fit in {free} free pod slots ({detail})")


@dataclass(frozen=True)
class NodeRole:
    """A Node as recovery sees it: its name, labels and whether it carries a control-plane role label."""

    name: str
    control_plane: bool
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RecoveryScope:
    """Which Nodes recovery cordons meanwhile and whose claims it takes. Decided before any call."""

    cordon: tuple[str, ...]
    claim_nodes: tuple[str, ...] | None  # None: every Node that no longer exists (the old --orphaned)
    left_schedulable: tuple[str, ...]  # nodes no moving pod can land on, and the new node
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"cordon": list(self.cordon), "claim_nodes": None if self.claim_nodes is None else
                list(self.claim_nodes), "left_schedulable": list(self.left_schedulable), "reason": self.reason}


def selector_admits(node: NodeRole, selector: Mapping[str, str]) -> bool:
    """A pod's ``spec.nodeSelector`` admits a Node when every key/value is among its labels (the
    Kubernetes rule; an empty selector admits every Node). Required node affinity is not read: a pod
    with it counts as admitted everywhere its nodeSelector allows, so more nodes are cordoned, never fewer."""
    labels = dict(node.labels)
    return all(labels.get(k) == v for k, v in selector.items())


def recovery_scope(*, nodes: Sequence[NodeRole], new_node: str, old_node: str | None, orphaned: bool,
                   survivors: Sequence[str] | None,
                   selectors: Sequence[Mapping[str, str]] | None = None) -> tuple[RecoveryScope, tuple[Violation, ...]]:
    """Decide the cordon set and the claim scope.

    Cordon: the Nodes other than ``new_node`` that a moving pod could land on, judged by the
    ``nodeSelector`` of each moving pod's template (``selectors``; None when not known: every other
    Node). Onecloud's workloads select control-plane nodes, so only the surviving control-plane Nodes
    are cordoned and workers stay schedulable. ``survivors`` given: exactly those that exist.
    Claims: those pinned to ``old_node``; with ``orphaned`` as well, only once ``old_node`` no longer
    exists; ``orphaned`` alone keeps the old meaning (any Node that no longer exists).
    """
    problems: list[Violation] = []
    existing = {n.name for n in nodes}
    if survivors is not None and new_node in survivors:
        problems.append(Violation("--survivors", ",".join(survivors),
                                  f"lists the new node {new_node}; it must stay schedulable"))
    if old_node is not None and old_node == new_node:
        problems.append(Violation("--old-node", old_node, "is the new node; claims move from the departed node to "
                                                          "a different one"))
    if orphaned and old_node is not None and old_node in existing:
        problems.append(Violation("--old-node", old_node, "still exists as a Node; --orphaned takes claims of a "
                                                          "departed node only (delete it first, or drop --orphaned)"))
    others = [n for n in nodes if n.name != new_node]
    if survivors is not None:
        cordon = tuple(n for n in survivors if n in existing and n != new_node)
        why = f"the given --survivors that exist ({', '.join(cordon) or 'none'})"
    elif selectors is None:
        cordon = tuple(sorted(n.name for n in others))
        why = f"every other node ({', '.join(cordon) or 'none'}): the moving pods' node selectors are not known"
    else:
        cordon = tuple(sorted(n.name for n in others if any(selector_admits(n, sel) for sel in selectors)))
        roles = "control-plane " if all(n.control_plane for n in nodes if n.name in cordon) else ""
        why = (f"the surviving {roles}nodes a moving pod can land on ({', '.join(cordon) or 'none'}), so recreated "
               f"pods can only land on {new_node}")
    left = tuple(sorted(n for n in existing if n not in cordon))
    claim_nodes = (old_node,) if old_node is not None else None
    scope = RecoveryScope(cordon=cordon, claim_nodes=claim_nodes, left_schedulable=left,
                          reason=f"cordon {why}; claims pinned to " + (
                              f"{old_node}" if old_node else "any Node that no longer exists"))
    return scope, tuple(problems)


def interrupted_actions(*, started: Mapping[str, Mapping[str, Any]], known: Sequence[str],
                        policies: Sequence[ClaimPolicy]) -> tuple[ClaimAction, ...]:
    """Claims an interrupted run started (its journal's ``started`` claims, ``namespace/name`` → entry) that
    the observation no longer shows pinned to the old node (it deleted them) and that still have a policy."""
    found = []
    for key, entry in started.items():
        if key in known:
            continue
        namespace, _, name = key.partition("/")
        policy = policy_for(namespace=namespace, name=name, policies=policies)
        if policy is None:
            continue
        found.append(ClaimAction(namespace=namespace, name=name,
                                 owner_kind="OperatorDeployment" if policy.owner == "operator" else "StatefulSet",
                                 owner_name=str(entry.get("deployment", "?")), size="?", data_class=policy.data_class,
                                 policy=policy.policy, order=policy.order, observed=True))
    return tuple(found)


# what the executor does for one claim, and the outcome the report then shows
RECREATE_STATEFULSET, RECREATE_OPERATOR, NOTHING = "recreate-statefulset", "recreate-operator", "nothing"


@dataclass(frozen=True)
class ClaimStep:
    action: ClaimAction
    do: str  # RECREATE_STATEFULSET, RECREATE_OPERATOR or NOTHING
    outcome: str  # the report's outcome once done: recreated, recreated by operator, already recovered, the policy

    @property
    def key(self) -> str:
        return f"{self.action.namespace}/{self.action.name}"


@dataclass(frozen=True)
class RecoveryPlan:
    """What a PVC recovery does, in order: cordon, each claim's step, uncordon (always), then stop on the
    claims left for the operator."""

    cordon: tuple[str, ...]
    steps: tuple[ClaimStep, ...]

    @property
    def to_recreate(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.steps if s.action.policy == "recreate")

    @property
    def manual(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.steps if s.action.policy == "manual")


def decide_recovery(*, actions: Sequence[ClaimAction], interrupted: Sequence[ClaimAction],
                    recovered: frozenset[str], survivors: Sequence[str]) -> RecoveryPlan:
    """The order of a recovery from what was observed: the claims pinned to the old node (``actions``), those an
    interrupted run had started (``interrupted``; dropped once recovered), which claims are already bound on
    the new node (``recovered``, ``namespace/name``), and the nodes to cordon meanwhile (``survivors``: only
    when a claim is to be recreated, so a recreated pod can land nowhere but the new node)."""
    every = [*actions, *(a for a in interrupted if f"{a.namespace}/{a.name}" not in recovered)]
    every.sort(key=lambda a: (a.order, a.namespace, a.name))
    steps = []
    for action in every:
        key = f"{action.namespace}/{action.name}"
        if action.policy != "recreate":
            steps.append(ClaimStep(action, NOTHING, action.policy))
        elif key in recovered:
            steps.append(ClaimStep(action, NOTHING, "already recovered"))
        elif action.owner_kind == "OperatorDeployment":
            steps.append(ClaimStep(action, RECREATE_OPERATOR, "recreated by operator"))
        else:
            steps.append(ClaimStep(action, RECREATE_STATEFULSET, "recreated"))
    recreating = any(a.policy == "recreate" for a in every)
    return RecoveryPlan(cordon=tuple(survivors) if recreating else (), steps=tuple(steps))
