"""The membership lock: one etcd membership change (or control-plane Node delete) at a time,
held in the cluster's own etcd. Not pure: it talks gRPC to etcd and runs a keep-alive thread.

Follows etcd's ``concurrency.Mutex`` (go.etcd.io/etcd/client/v3/concurrency, etcd-io/etcd
``client/v3/concurrency/mutex.go`` @ 3fc5ea4edd97b72e1642a148a4223bee09a3f250 and ``key.go`` @
0721d2f2544151c1113c4ea79a7b49fdb106f506) rather than pyetcd's ``Lock`` (one key ``/locks/<name>``
taken by ``create_revision == 0``, no queue, and a new lease per attempt that is never revoked):

- a session is a lease with a TTL kept alive while the holder lives (``concurrency.Session``);
  a holder that dies (SIGKILL) stops the keep-alives, etcd expires the lease and deletes its key;
- the waiter's key is ``<prefix>/<lease id in hex>``, put with that lease by a transaction
  ``if create_revision(key) == 0 then put`` (``tryAcquire``);
- the owner is the key under the prefix with the lowest create revision (``WithFirstCreate``):
  waiters queue in arrival order; after waiting, the holder checks its own key still exists
  (``ErrSessionExpired`` otherwise);
- unlock deletes the key; here the lease is revoked as well.

The wait is bounded (``deadline_s``) and prints who holds the lock. Where etcd's Go client watches
for the deletion of the previous key (``waitDeletes``), this polls the prefix every
``poll_s`` seconds: the same order and outcome, with a bounded loop. (pyetcd's ``get_prefix``
with ``max_create_revision`` sets ``min_mod_revision`` instead, so it is not used.)
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
from dataclasses import dataclass
from collections.abc import Callable, Iterator

import pyetcd

from cpswap.core.errors import PermanentError, TransientError, UnsafeOperationError
from cpswap.core.membership import DEFAULT_LOCK_TTL_S, DEFAULT_LOCK_WAIT_S, LOCK_PREFIX
from cpswap.executors.waiting import wait_until

Progress = Callable[[str], None]
DEFAULT_TTL_S = DEFAULT_LOCK_TTL_S
DEFAULT_WAIT_S = DEFAULT_LOCK_WAIT_S


@dataclass(frozen=True)
class Holder:
    key: str
    create_revision: int
    who: str
    what: str
    since: str

    def describe(self) -> str:
        return f"{self.who} ({self.what}, since {self.since})"


def holder_id() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def _holders(client: pyetcd.Etcd3Client) -> list[Holder]:
    rows = []
    for value, meta in client.get_prefix(LOCK_PREFIX + "/", sort_order="ascend", sort_target="create"):
        try:
            info = json.loads(value or b"{}")
        except ValueError:
            info = {}
        rows.append(Holder(key=meta.key.decode(), create_revision=meta.create_revision,
                           who=str(info.get("who", "?")), what=str(info.get("what", "?")),
                           since=str(info.get("since", "?"))))
    return sorted(rows, key=lambda h: h.create_revision)


def current_holders(conn, *, what: str = "lock holders") -> list[Holder]:
    """The lock's queue, owner first (read-only)."""
    from cpswap.executors.etcd import _on_any

    return _on_any(conn, what, lambda client, _: _holders(client))  # type: ignore[return-value]


class MembershipLock:
    """The lock's session: a lease, our key, and a client that moves to the next endpoint when the
    one it talks to fails (the lease is the cluster's, not the endpoint's: a member removed by an
    earlier holder must not strand the waiters that were talking to it). ``ensure_held()`` before
    each change raises when the lease was lost."""

    def __init__(self, *, conn, ttl: int, progress: Progress) -> None:
        self._conn, self._ttl, self._progress = conn, ttl, progress
        self._guard = threading.RLock()
        self._client: pyetcd.Etcd3Client | None = None
        self._at = 0  # index of the endpoint in use
        self._stop = threading.Event()
        self._lost: str | None = None
        self.lease_id = 0
        self.key = ""
        self._thread = threading.Thread(target=self._keep_alive, name="cpswap membership lock keep-alive",
                                        daemon=True)

    def call(self, what: str, action: Callable[[pyetcd.Etcd3Client], object]) -> object:
        """``action(client)`` on the endpoint in use, moving on to the next ones when it fails."""
        from cpswap.executors.boundary import etcd_error
        from cpswap.executors.etcd import _client

        errors: list[str] = []
        with self._guard:
            for _ in range(len(self._conn.endpoints)):
                endpoint = self._conn.endpoints[self._at]
                try:
                    if self._client is None:
                        self._client = _client(self._conn, endpoint)
                    return action(self._client)
                except (PermanentError, UnsafeOperationError):
                    raise
                except Exception as exc:
                    error = etcd_error(exc, endpoint=endpoint, what=what)
                    errors.append(str(error))
                    self._drop()
                    self._at = (self._at + 1) % len(self._conn.endpoints)
                    if isinstance(error, PermanentError) and "TLS refused" not in str(error):
                        raise error from exc
        raise TransientError("; ".join(errors) or f"{what}: no etcd endpoint given")

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _keep_alive(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                responses = self.call("membership lock: keep-alive",
                                      lambda c: list(c.refresh_lease(self.lease_id)))
                if responses and responses[-1].TTL <= 0:  # type: ignore[index]
                    self._lost = f"lease {self.lease_id:x} expired"
                    return
            except Exception as exc:  # the next refresh may succeed; the lease outlives a blip
                self._lost = f"keep-alive failed: {exc}"

    def holders(self) -> list[Holder]:
        return self.call("membership lock: read queue", _holders)  # type: ignore[return-value]

    def ensure_held(self) -> None:
        value = self.call("membership lock: check", lambda c: c.get(self.key)[0])
        if value is None:
            raise UnsafeOperationError(f"membership lock {self.key} lost ({self._lost or 'its key is gone'}): "
                                       f"another change may be running; nothing was changed, re-run")

    def close(self) -> None:
        self._stop.set()
        try:
            if self.key:
                self.call("membership lock: release", lambda c: (c.delete(self.key), c.revoke_lease(self.lease_id)))
        except Exception as exc:  # the lease TTL frees it anyway
            self._progress(f"membership lock {self.key}: release failed ({exc}); it is freed when its lease "
                           f"expires within {self._ttl}s")
        finally:
            with self._guard:
                self._drop()


@contextlib.contextmanager
def membership_lock(conn, *, what: str, ttl_s: int = DEFAULT_TTL_S, wait_s: float = DEFAULT_WAIT_S,
                    progress: Progress = print, poll_s: float = 0.2,
                    connect_deadline_s: float = 60) -> Iterator[MembershipLock]:
    """Hold the cluster's membership lock for ``what``; queue behind earlier holders, at most
    ``wait_s`` seconds (DeadlineError naming the holder). Reaching etcd at all is retried for at
    most ``connect_deadline_s``. Released on exit, also on error."""
    from cpswap.executors.boundary import retry

    if ttl_s < 5:
        raise PermanentError(f"--lock-ttl {ttl_s}: must be at least 5 seconds (keep-alives go every ttl/3)")
    if not conn.endpoints:
        raise PermanentError(f"membership lock for {what}: no etcd endpoint given")
    lock = MembershipLock(conn=conn, ttl=ttl_s, progress=progress)
    try:
        lease = retry("membership lock: grant lease", lambda: lock.call(
            "membership lock: grant lease", lambda c: c.lease(ttl_s)), deadline_s=min(wait_s, connect_deadline_s),
            progress=progress)
        lock.lease_id = lease.id  # type: ignore[attr-defined]
        lock.key = key = f"{LOCK_PREFIX}/{lock.lease_id:x}"
        since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        value = json.dumps({"who": holder_id(), "what": what, "since": since}, sort_keys=True)
        lock.call("membership lock: enqueue", lambda c: c.transaction(
            compare=[c.transactions.create(key) == 0],
            success=[c.transactions.put(key, value, lease=lock.lease_id)], failure=[]))
        lock._thread.start()

        def probe() -> tuple[bool, str]:
            queue = lock.holders()
            mine = next((h for h in queue if h.key == key), None)
            if mine is None:
                raise UnsafeOperationError(f"membership lock: our key {key} vanished while waiting (lease "
                                           f"{lock.lease_id:x} expired: {lock._lost or 'no keep-alive answer'})")
            if queue[0].key == key:
                return True, "held"
            ahead = [h for h in queue if h.create_revision < mine.create_revision]
            return False, (f"waiting for the membership lock held by {ahead[0].describe()}"
                           + (f"; {len(ahead) - 1} more ahead" if len(ahead) > 1 else "")
                           + " (a dead holder frees it within its lease TTL)")
        wait_until(f"membership lock for {what}", probe, deadline_s=wait_s, progress=progress, poll_s=poll_s,
                   max_delay_s=1.0)
        lock.ensure_held()
        progress(f"membership lock {key} held for {what} (lease TTL {ttl_s}s, kept alive)")
        yield lock
    finally:
        lock.close()
