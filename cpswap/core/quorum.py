"""Quorum arithmetic for etcd voters. Pure.

Learners do not vote and are not counted. ``quorum(n) = n // 2 + 1``; the fault tolerance of
``n`` voters of which ``healthy`` are up is ``healthy - quorum(n)`` (negative means quorum is lost).
"""
from __future__ import annotations

from dataclasses import dataclass


def quorum(voters: int) -> int:
    """Votes needed for a decision among ``voters`` members."""
    if voters < 0:
        raise ValueError(f"voters must be >= 0, got {voters}")
    return voters // 2 + 1


def tolerance(*, voters: int, healthy: int) -> int:
    """How many more healthy voters may fail before quorum is lost (negative: already lost)."""
    return healthy - quorum(voters)


@dataclass(frozen=True)
class QuorumState:
    """Voters, healthy voters, quorum and tolerance at one moment of a plan."""

    voters: int
    healthy: int

    @property
    def quorum(self) -> int:
        return quorum(self.voters)

    @property
    def tolerance(self) -> int:
        return tolerance(voters=self.voters, healthy=self.healthy)

    @property
    def has_quorum(self) -> bool:
        return self.voters > 0 and self.healthy >= self.quorum

    def as_dict(self) -> dict[str, int]:
        return {"voters": self.voters, "healthy": self.healthy, "quorum": self.quorum,
                "tolerance": self.tolerance}

    def __str__(self) -> str:
        return (f"{self.healthy} healthy of {self.voters} voters, quorum {self.quorum}, "
                f"tolerance {self.tolerance}")


@dataclass(frozen=True)
class RemovalVerdict:
    """Whether removing one voter keeps the survivors at quorum, and why."""

    allowed: bool
    before: QuorumState
    after: QuorumState
    reason: str


def can_remove(*, voters: int, healthy: int, target_healthy: bool, target: str = "the member") -> RemovalVerdict:
    """Decide on removing one voter, from the projected state after removal.

    Follows Cluster API's ``canSafelyRemoveEtcdMember``: the remaining healthy voters must reach
    the quorum of the remaining voter count. Removing the last voter is always refused.
    """
    before = QuorumState(voters=voters, healthy=healthy)
    after = QuorumState(voters=voters - 1, healthy=healthy - (1 if target_healthy else 0))
    if voters <= 1:
        return RemovalVerdict(False, before, after,
                              f"removing {target} would remove the last voter ({voters} voter(s) now)")
    if not after.has_quorum:
        return RemovalVerdict(
            False, before, after,
            f"removing {target} leaves {after.healthy} healthy of {after.voters} voters; "
            f"quorum needs {after.quorum}")
    return RemovalVerdict(True, before, after,
                          f"removing {target} leaves {after.healthy} healthy of {after.voters} voters; "
                          f"quorum {after.quorum} holds")
