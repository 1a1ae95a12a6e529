"""The executors' one error boundary and their one retry loop. Not pure (client exception types, clock, sleep).

Boundary: every Kubernetes API call runs inside ``kube_errors`` and every etcd gRPC failure passes through
``etcd_error``; they turn the clients' exceptions into cpswap's hierarchy (``cpswap.core.errors``), so no
other module catches ``ApiException``, urllib3 or gRPC errors:

- Kubernetes: 404 is ``NotFoundError`` and 409 ``ConflictError`` (API errors the caller may expect: an absent
  object, an existing one); 429 (``TooManyRequestsError``) and 5xx are ``TransientError`` with the server's
  ``Retry-After`` as its delay;
  any other status is an ``ApiError`` naming the call, the status and the API server's message; no answer
  (connection refused, reset, timed out) is ``TransientError``.
- etcd: a TLS refusal is ``PermanentError``; ``member not found`` is ``NotFoundError``; unavailable, deadline
  exceeded and etcd's own transient refusals (``TRANSIENT_MARKERS``) are ``TransientError``; the rest
  ``PermanentError``, with etcd's message.

Retry: ``retry`` re-runs an action while it raises ``TransientError``, until a deadline, waiting what the error
asks (``TransientError.delay``) or, when it asks nothing, a doubling backoff; ``wait_until``
(``cpswap.executors.waiting``) polls on the same wait decision, ``next_wait``.
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from cpswap.core.errors import (ApiError, ConflictError, CpswapError, DeadlineError, NotFoundError, PermanentError,
                                TooManyRequestsError, TransientError)

if TYPE_CHECKING:  # the clients load lazily: importing this module costs neither
    import grpc

T = TypeVar("T")
Progress = Callable[[str], None]

TRANSIENT_STATUSES = (429, 500, 502, 503, 504)
TRANSIENT_MARKERS = ("unhealthy cluster", "not enough started members", "too many requests",
                     "leader changed", "no leader", "timed out", "request timed out",
                     # MemberPromote before the learner caught up (etcdserver.ErrLearnerNotReady) or started
                     "in sync with leader", "not started")
TLS_MARKERS = ("certificate", "ssl", "handshake", "tls")


def _retry_after(headers: object) -> float | None:
    """The ``Retry-After`` header in seconds (the delta form; an HTTP date is ignored), bounded to 60 s."""
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else min(seconds, 60.0)


def _api_message(body: object) -> str:
    """The API server's Status message, else the start of the body."""
    try:
        doc = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])[:300]
    return str(body or "")[:160]


def kube_error(exc: Exception, *, what: str) -> Exception:
    """A kubernetes-client failure as a cpswap error (see the module docstring)."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        if status in TRANSIENT_STATUSES:
            kind_t = TooManyRequestsError if status == 429 else TransientError
            return kind_t(f"{what}: API {status} {exc.reason}", delay=_retry_after(exc.headers))
        kind = NotFoundError if status == 404 else ConflictError if status == 409 else ApiError
        return kind(f"{what}: API {status} {exc.reason}: {_api_message(exc.body)}", status=status)
    return TransientError(f"{what}: API unreachable: {type(exc).__name__}: {str(exc)[:160]}")


@contextlib.contextmanager
def kube_errors(what: str) -> Iterator[None]:
    """Run a Kubernetes API call: its client's failures leave as cpswap errors."""
    try:
        yield
    except CpswapError:  # already ours (a refused argument, a guard): unchanged
        raise
    except Exception as exc:  # ApiException, urllib3's connection errors and timeouts
        raise kube_error(exc, what=what) from None


def _rpc_error(exc: BaseException) -> grpc.RpcError | None:
    import grpc

    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, grpc.RpcError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def etcd_error(exc: BaseException, *, endpoint: str, what: str) -> Exception:
    """A pyetcd/gRPC failure as a cpswap error carrying etcd's own message."""
    import grpc

    rpc = _rpc_error(exc)
    if rpc is None:
        return PermanentError(f"{what} via {endpoint}: {type(exc).__name__}: {exc}")
    code = rpc.code() if hasattr(rpc, "code") else None
    details = (rpc.details() if hasattr(rpc, "details") else str(rpc)) or ""
    text = f"{what} via {endpoint}: {code.name if code else 'error'}: {details}"
    lowered = details.lower()
    if any(marker in lowered for marker in TLS_MARKERS):
        return PermanentError(f"{what} via {endpoint}: TLS refused (the server certificate is not trusted by the "
                              f"given CA, or the client certificate was rejected): {details}")
    if "member not found" in lowered:
        return NotFoundError(text, status=404)
    if any(marker in lowered for marker in TRANSIENT_MARKERS) or code in (
            grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return TransientError(text)
    return PermanentError(text)


def next_wait(*, backoff: float, asked: float | None, left: float) -> float:
    """Pure: how long to wait before the next attempt: what the error asked for, else the backoff; never past
    the deadline."""
    return max(0.0, min(asked if asked is not None else backoff, left))


def retry(what: str, action: Callable[[], T], *, deadline_s: float, progress: Progress,
          first_delay_s: float = 0.2, max_delay_s: float = 5.0, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> T:
    """``action()``, retried while it raises TransientError until ``deadline_s``; anything else is raised at once.
    Each wait is the error's ``delay`` when it gives one, else a backoff doubling from ``first_delay_s`` to
    ``max_delay_s``. DeadlineError names the attempts and the last refusal."""
    end = clock() + deadline_s
    backoff, attempt = first_delay_s, 0
    while True:
        attempt += 1
        try:
            return action()
        except TransientError as exc:
            left = end - clock()
            if left <= 0:
                raise DeadlineError(f"{what}: still refused after {attempt} attempts in {deadline_s:.0f}s; "
                                    f"last: {exc}") from exc
            wait = next_wait(backoff=backoff, asked=exc.delay, left=left)
            progress(f"{what}: transient refusal (attempt {attempt}), retrying in {wait:.1f}s "
                     f"({left:.0f}s left): {exc}")
            sleep(wait)
            backoff = min(backoff * 2, max_delay_s)
