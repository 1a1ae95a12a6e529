"""The typed schema of the plan document (``cpswap.plan/v1``, docs/CONTRACTS.md). Pure.

``PlanDocument`` and the ``TypedDict``s it nests say every key and the type of its value, as
``cpswap.core.report.plan_document`` builds it and as the policy rules, the markdown renderer and
CI read it. ``conformance(document)`` checks a document against them at run time (every key
present, no other key, each value of its type), so the schema cannot drift from the builder.
``safety`` is typed loosely (an object): ``cpswap.core.safety`` owns its shape.
"""
from __future__ import annotations

import types
import typing
from typing import Any, Literal, TypedDict, Union


class HostDoc(TypedDict, total=False):
    name: str
    ip: str
    rebuild: int


class ChangeDoc(TypedDict):
    slot: str
    old: HostDoc
    new: HostDoc
    reason: str


class WhereDoc(TypedDict):
    kind: str  # local | ssh | k8s
    host: str
    description: str


class StepDoc(TypedDict):
    id: str
    slot: str
    action: str  # a cpswap.core.steps.Action value
    phase: Literal["preflight", "leave", "join", "after"]
    resource: str
    operation: Literal["create", "delete"]
    kind: str  # command | k8s-object
    runs_on: WhereDoc
    command: str
    reason: str
    voters: int
    healthy: int
    quorum: int
    tolerance: int
    secret_inputs: list[str]
    timeout: str
    deadline_s: int | None


class QuorumDoc(TypedDict):
    voters: int
    healthy: int
    quorum: int
    tolerance: int


class QuorumsDoc(TypedDict):
    before: QuorumDoc
    during: QuorumDoc
    after: QuorumDoc


class StrategyDoc(TypedDict):
    """How the swap runs and why (``cpswap.core.strategy.StrategyDecision``)."""

    slot: str
    requested: Literal["auto", "surge", "replace"]
    source: str
    strategy: Literal["surge", "replace"]
    reason: str
    surge_possible: bool
    blockers: list[str]
    refusal: str | None


class PathPointDoc(TypedDict):
    at: str
    voters: int
    healthy: int
    quorum: int
    tolerance: int


class QuorumPathDoc(TypedDict):
    """One strategy's quorum at each moment (``cpswap.core.strategy.QuorumPath``)."""

    strategy: Literal["surge", "replace"]
    min_tolerance: int
    points: list[PathPointDoc]


class ClaimDoc(TypedDict):
    namespace: str
    name: str
    owner_kind: str | None
    owner_name: str | None
    size: str | None
    data_class: str | None
    policy: str | None
    order: int | None
    observed: bool
    data_loss: bool


class VipDoc(TypedDict):
    endpoint: str
    managed_by: str
    master_slot: str | None
    master_host: str | None
    holder_now: str | None
    departing_had_master: bool
    holder_during: str | None
    new_state: str | None
    new_priority: int | None


class RefusalDoc(TypedDict):
    field: str
    value: str
    rule: str


class LiveMemberDoc(TypedDict):
    name: str
    ip: str
    learner: bool
    healthy: bool | None
    leader: bool


class AdoptionCheckDoc(TypedDict):
    resource: str
    runs_on: str
    command: str
    reason: str


class PlanDocument(TypedDict):
    schema: Literal["cpswap.plan/v1"]
    stack: str
    distribution: str
    endpoint: str
    membership_source: str
    destroy_mode: str
    membership_reason: str
    adoption_check: AdoptionCheckDoc | None
    observed: bool
    desired: dict[str, HostDoc]
    applied: dict[str, HostDoc]
    changes: list[ChangeDoc]
    unhealthy: list[str]
    steps: list[StepDoc]
    quorum: QuorumsDoc
    strategy: StrategyDoc | None
    quorum_paths: list[QuorumPathDoc]
    claims: list[ClaimDoc]
    vip: VipDoc | None
    warnings: list[str]
    refusals: list[RefusalDoc]
    live: list[LiveMemberDoc] | None
    safety: dict[str, Any]


def _is_typeddict(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, dict) and hasattr(kind, "__annotations__") \
        and hasattr(kind, "__total__")


def _problems(value: Any, kind: Any, where: str) -> list[str]:
    origin = typing.get_origin(kind)
    if kind is Any:
        return []
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        attempts = [_problems(value, option, where) for option in options]
        return [] if any(not found for found in attempts) else min(attempts, key=len)
    if origin is Literal:
        return [] if value in typing.get_args(kind) else [f"{where}: {value!r} is not one of {typing.get_args(kind)}"]
    if kind is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if _is_typeddict(kind):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} is not an object"]
        hints = typing.get_type_hints(kind)
        required = kind.__required_keys__
        found = [f"{where}.{key}: missing" for key in sorted(required - set(value))]
        found += [f"{where}.{key}: not in the schema" for key in sorted(set(value) - set(hints))]
        for key in sorted(set(value) & set(hints)):
            found += _problems(value[key], hints[key], f"{where}.{key}")
        return found
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} is not a list"]
        (item,) = typing.get_args(kind)
        return [p for i, v in enumerate(value) for p in _problems(v, item, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} is not an object"]
        _, item = typing.get_args(kind)
        return [p for k, v in value.items() for p in _problems(v, item, f"{where}.{k}")]
    if kind is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: {value!r} is not an integer"]
    if isinstance(kind, type):
        return [] if isinstance(value, kind) else [f"{where}: {value!r} is not a {kind.__name__}"]
    return [f"{where}: no rule for {kind!r}"]


def conformance(document: Any) -> list[str]:
    """Every way ``document`` differs from ``PlanDocument`` (empty: it conforms)."""
    return _problems(document, PlanDocument, "plan")
