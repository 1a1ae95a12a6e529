"""The executors' one error boundary and one retry loop (cpswap/executors/boundary.py): table-driven, no cluster."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import grpc
import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from cpswap.core.errors import (ApiError, ConflictError, DeadlineError, NotFoundError, PermanentError,
                                TooManyRequestsError, TransientError)
from cpswap.executors import boundary, waiting

ROOT = Path(__file__).resolve().parents[2]


def _api(status, *, reason="Reason", message=None, headers=None):
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message}) if message else None
    exc.headers = headers or {}
    return exc


@pytest.mark.parametrize(("exc", "kind", "text", "delay"), [
    (_api(404, reason="Not Found", message='nodes "cp9" not found'), NotFoundError,
     'read node cp9: API 404 Not Found: nodes "cp9" not found', None),
    (_api(409, reason="Conflict", message="already exists"), ConflictError, "API 409 Conflict: already exists", None),
    (_api(403, reason="Forbidden", message="nodes is forbidden: User cannot list"), ApiError,
     "API 403 Forbidden: nodes is forbidden", None),
    (_api(422, reason="Unprocessable Entity"), ApiError, "API 422 Unprocessable Entity", None),
    (_api(429, reason="Too Many Requests", headers={"Retry-After": "7"}), TooManyRequestsError, "API 429", 7.0),
    (_api(503, reason="Service Unavailable"), TransientError, "API 503 Service Unavailable", None),
    (_api(500, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}), TransientError, "API 500", None),
    (_api(429, headers={"Retry-After": "3600"}), TooManyRequestsError, "API 429", 60.0),  # bounded
    (MaxRetryError(None, "/api/v1/nodes", "connection refused"), TransientError, "API unreachable: MaxRetryError",
     None),
    (ReadTimeoutError(None, "/api/v1/nodes", "read timed out"), TransientError, "API unreachable", None),
])
def test_kubernetes_failures_become_cpswap_errors(exc, kind, text, delay):
    with pytest.raises(kind) as info, boundary.kube_errors("read node cp9"):
        raise exc
    assert type(info.value) is kind
    assert text in str(info.value)
    if isinstance(info.value, TransientError):
        assert info.value.delay == delay
    if isinstance(info.value, ApiError):
        assert info.value.status == exc.status and isinstance(info.value, PermanentError)


def test_cpswap_errors_pass_the_boundary_unchanged():
    original = PermanentError("refused before any request")
    with pytest.raises(PermanentError) as info, boundary.kube_errors("x"):
        raise original
    assert info.value is original


class _Rpc(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.mark.parametrize(("code", "details", "kind", "text"), [
    (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found", NotFoundError, "member not found"),
    (grpc.StatusCode.UNAVAILABLE, "connection refused", TransientError, "UNAVAILABLE: connection refused"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "", TransientError, "DEADLINE_EXCEEDED"),
    (grpc.StatusCode.UNKNOWN, "etcdserver: unhealthy cluster", TransientError, "unhealthy cluster"),
    (grpc.StatusCode.FAILED_PRECONDITION,
     "etcdserver: can only promote a learner member which is in sync with leader", TransientError, "in sync"),
    (grpc.StatusCode.UNAVAILABLE, "SSL handshake failed", PermanentError, "TLS refused"),
    (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: re-configuration failed due to not enough started members",
     TransientError, "not enough started members"),
    (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: peerURL exists", PermanentError, "peerURL exists"),
])
def test_etcd_failures_become_cpswap_errors(code, details, kind, text):
    wrapped = RuntimeError("pyetcd wrapper")
    wrapped.__cause__ = _Rpc(code, details)
    error = boundary.etcd_error(wrapped, endpoint="https://127.0.0.1:2379", what="remove m3")
    assert type(error) is kind
    assert text in str(error) and "remove m3 via https://127.0.0.1:2379" in str(error)


class _Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_retry_waits_what_the_error_asks_else_a_doubling_backoff():
    clock = _Clock()
    errors = iter([TransientError("busy", delay=2.5), TransientError("busy"), TransientError("busy"),
                   TransientError("busy", delay=0.0)])

    def action():
        error = next(errors, None)
        if error is not None:
            raise error
        return "done"
    lines = []
    assert boundary.retry("remove m3", action, deadline_s=30, progress=lines.append, sleep=clock.sleep,
                          clock=clock) == "done"
    assert clock.slept == [2.5, 0.4, 0.8, 0.0]
    assert "remove m3: transient refusal (attempt 1), retrying in 2.5s" in lines[0]


def test_retry_never_waits_past_its_deadline_and_names_the_last_refusal():
    clock = _Clock()

    def action():
        raise TransientError("etcdserver: unhealthy cluster", delay=4.0)
    with pytest.raises(DeadlineError, match=r"member list: still refused after 4 attempts in 10s; last: etcdserver"):
        boundary.retry("member list", action, deadline_s=10, progress=lambda _: None, sleep=clock.sleep, clock=clock)
    assert clock.slept == [4.0, 4.0, 2.0]


def test_retry_raises_anything_but_a_transient_error_at_once():
    calls = []

    def action():
        calls.append(1)
        raise NotFoundError("gone", status=404)
    with pytest.raises(NotFoundError):
        boundary.retry("x", action, deadline_s=10, progress=lambda _: None, sleep=lambda _: None)
    assert calls == [1]


def test_wait_until_honours_the_delay_a_transient_state_asks_for(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(waiting.time, "monotonic", clock)
    monkeypatch.setattr(waiting.time, "sleep", clock.sleep)
    states = iter([TransientError("API 429", delay=3.0), (False, "registered"), (True, "Ready")])

    def probe():
        state = next(states)
        if isinstance(state, Exception):
            raise state
        return state
    waiting.wait_until("wait-node cp4", probe, deadline_s=60, progress=lambda _: None, poll_s=0.1)
    assert clock.slept == [3.0, 0.15]


def test_no_module_but_the_boundary_handles_client_exceptions():
    """kubernetes-client, urllib3 and gRPC exceptions are converted in one place."""
    names = {"ApiException", "RpcError", "MaxRetryError", "ProtocolError", "NewConnectionError"}
    found = []
    for path in sorted((ROOT / "cpswap").rglob("*.py")):
        if path.name == "boundary.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = {n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "")
                          for n in ast.walk(node.type)}
                found += [f"{path.relative_to(ROOT)}:{node.lineno} catches {name}" for name in caught & names]
    assert found == []
