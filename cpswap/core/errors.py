"""The one error hierarchy of cpswap. Pure.

Every error says which object, which rule and which numbers. Callers decide whether to
retry by type alone: TransientError may succeed later, PermanentError never will.
"""
from __future__ import annotations

from dataclasses import dataclass


class CpswapError(Exception):
    """Base of every error cpswap raises on purpose."""


class PermanentError(CpswapError):
    """Retrying will not help (bad input, a guard refused, etcd refused for good)."""


class TransientError(CpswapError):
    """May succeed later (unhealthy cluster, post-reconfiguration window, timeouts). ``delay``: how long the
    other side asked to wait before the next attempt (e.g. an API server's Retry-After), None when it did
    not say; the executors' one retry loop (cpswap.executors.boundary.retry) waits that long."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class TooManyRequestsError(TransientError):
    """HTTP 429: the API server asks to come back later (``delay``: its Retry-After). On the eviction API it is
    a PodDisruptionBudget refusing for now, which ``kubectl drain`` retries until its deadline."""


class ApiError(PermanentError):
    """A cluster API refused a call with a status (the HTTP status; 404 for etcd's "member not found")."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(ApiError):
    """The object the call named does not exist (404)."""


class ConflictError(ApiError):
    """The object exists already, or changed under the call (409)."""


class DeadlineError(PermanentError):
    """A bounded wait ran out. The message names what was awaited and for how long."""


class UnsafeOperationError(PermanentError):
    """A safety guard refused (quorum, last voter, two slots at once)."""


@dataclass(frozen=True)
class Violation:
    """One broken rule: the field (e.g. ``members.cp2.ip``), the offending value and the rule."""

    field: str
    value: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}={self.value!r}: {self.rule}"


class ConfigError(PermanentError):
    """Stack config broke one or more rules; every violation is reported at once."""

    def __init__(self, violations: tuple[Violation, ...] | list[Violation]) -> None:
        self.violations = tuple(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"{len(self.violations)} config violation(s):\n{lines}")
