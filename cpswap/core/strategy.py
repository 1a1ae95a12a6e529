"""How one slot's swap runs: ``surge`` (add the new member before removing the old one) or
``replace`` (remove first), and why. Pure.

Owns the decision (``decide_strategy``) and the quorum path of each strategy (``quorum_path``). The
per-distribution fact "the installer can join a new member while the departing one is still a
member" is the registry's ``Distribution.joins_alongside`` (with ``joins_alongside_why``).

``auto`` (the default) picks surge only when every condition holds (issue 16):
- the departing member was observed healthy (etcd refuses to add a member while a voter is down);
- the new host differs from the old: another name and another IP (two members cannot share an IP,
  so a kept IP or an in-place ``rebuild`` must remove first);
- every other member was observed healthy;
- the distribution's installer can join while the old member is still there.
Otherwise it picks replace and names every condition that failed. A forced ``surge`` whose
conditions do not hold is refused with the same reasons; a forced ``replace`` is always allowed.

Quorum paths (learners do not vote, so the join's learner phase keeps the starting state):
surge n → n+1 → n (3 → 4 → 3 keeps tolerance 1; 5 → 6 → 5 keeps 2), replace n → n-1 → n
(3 → 2 → 3 has tolerance 0 until the new member is in).
"""
from __future__ import annotations

from dataclasses import dataclass

from cpswap import distributions as registry
from cpswap.core.model import STRATEGIES, Host
from cpswap.core.quorum import QuorumState

SURGE, REPLACE, AUTO = "surge", "replace", "auto"


@dataclass(frozen=True)
class StrategyDecision:
    """The strategy a swap runs with. ``strategy`` is surge or replace; ``requested`` what config
    asked (auto, surge, replace) and ``source`` where that came from; ``blockers`` every surge
    condition that does not hold (empty: surge is possible); ``refusal`` set when a forced surge is
    not safe (the plan refuses it)."""

    slot: str
    requested: str
    source: str
    strategy: str
    reason: str
    blockers: tuple[str, ...]
    refusal: str | None = None

    @property
    def surge_possible(self) -> bool:
        return not self.blockers

    def as_dict(self) -> dict[str, object]:
        return {"slot": self.slot, "requested": self.requested, "source": self.source, "strategy": self.strategy,
                "reason": self.reason, "surge_possible": self.surge_possible, "blockers": list(self.blockers),
                "refusal": self.refusal}


def surge_blockers(*, distribution: str, old: Host, new: Host, observed: bool, departing_healthy: bool,
                   others_unhealthy: tuple[str, ...]) -> tuple[str, ...]:
    """Every surge condition that does not hold, each naming the host, the value and the rule."""
    found: list[str] = []
    if not observed:
        found.append(f"the departing member {old.name} was not observed (plan without observation): its health is "
                     f"unknown, and etcd refuses to add a member while a voter is down")
    elif not departing_healthy:
        found.append(f"the departing member {old.name} is not healthy: etcd refuses to add a member while a voter "
                     f"is down")
    if old.ip == new.ip:
        found.append(f"the new host keeps IP {new.ip}"
                     + (f" (rebuild {new.rebuild})" if new.rebuild != old.rebuild else "")
                     + ": two members cannot share it, so the old one must leave first")
    elif old.name == new.name:
        found.append(f"the new host keeps the name {new.name}: two Nodes and members cannot share it")
    if others_unhealthy:
        found.append(f"{', '.join(others_unhealthy)} {'is' if len(others_unhealthy) == 1 else 'are'} unhealthy: "
                     f"every other member must be healthy to add one")
    distro = registry.get(distribution)
    if not distro.joins_alongside:
        found.append(f"{distribution}: {distro.joins_alongside_why}")
    return tuple(found)


def decide_strategy(*, slot: str, requested: str, source: str, distribution: str, old: Host, new: Host,
                    observed: bool, departing_healthy: bool, others_unhealthy: tuple[str, ...]) -> StrategyDecision:
    """The one rule (module docstring). ``requested``: auto | surge | replace."""
    if requested not in STRATEGIES:
        raise ValueError(f"strategy {requested!r}: must be one of {', '.join(STRATEGIES)}")
    blockers = surge_blockers(distribution=distribution, old=old, new=new, observed=observed,
                              departing_healthy=departing_healthy, others_unhealthy=others_unhealthy)
    if requested == REPLACE:
        return StrategyDecision(slot, requested, source, REPLACE, f"replace forced by {source}", blockers)
    if not blockers:
        why = ("every surge condition holds: the departing member is healthy, the new host has its own name and IP, "
               "every other member is healthy, and the installer can join alongside")
        return StrategyDecision(slot, requested, source, SURGE,
                                f"surge forced by {source}; {why}" if requested == SURGE else f"auto: {why}",
                                blockers)
    if requested == SURGE:
        refusal = f"surge forced by {source} is not safe: {'; '.join(blockers)}"
        return StrategyDecision(slot, requested, source, SURGE, refusal, blockers, refusal=refusal)
    return StrategyDecision(slot, requested, source, REPLACE, f"auto falls back to replace: {'; '.join(blockers)}",
                            blockers)


@dataclass(frozen=True)
class QuorumPath:
    """The quorum at each moment of one strategy: (label, state) in order, first ``before``."""

    strategy: str
    points: tuple[tuple[str, QuorumState], ...]

    @property
    def min_tolerance(self) -> int:
        return min(state.tolerance for _, state in self.points)

    @property
    def max_voters(self) -> int:
        return max(state.voters for _, state in self.points)

    def as_dict(self) -> dict[str, object]:
        return {"strategy": self.strategy, "min_tolerance": self.min_tolerance,
                "points": [{"at": label, **state.as_dict()} for label, state in self.points]}

    def summary(self) -> str:
        return " → ".join(str(state.voters) for _, state in self.points)


def quorum_path(*, strategy: str, voters: int, healthy: int, departing_healthy: bool) -> QuorumPath:
    """``voters``/``healthy`` before the swap; the departing member counts among ``healthy`` when
    ``departing_healthy``."""
    before = QuorumState(voters=voters, healthy=healthy)
    gone = 1 if departing_healthy else 0
    if strategy == SURGE:
        learner = before  # a learner does not vote
        joined = QuorumState(voters=voters + 1, healthy=healthy + 1)
        after = QuorumState(voters=voters, healthy=healthy + 1 - gone)
        return QuorumPath(SURGE, (("before", before), ("new member a learner", learner),
                                  ("new member promoted", joined), ("old member removed", after)))
    if strategy == REPLACE:
        removed = QuorumState(voters=voters - 1, healthy=healthy - gone)
        after = QuorumState(voters=voters, healthy=healthy - gone + 1)
        return QuorumPath(REPLACE, (("before", before), ("old member removed", removed),
                                    ("new member joined", after)))
    raise ValueError(f"strategy {strategy!r}: must be surge or replace")
