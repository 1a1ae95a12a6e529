"""etcd executor: membership operations and read-only observation over the etcd v3 API.

Not pure: it talks gRPC to etcd. Built on python-etcd3's API through its maintained fork
etcd-sdk-python (``import pyetcd``): a fresh client per endpoint and per attempt (a failed
pyetcd client refuses every later call with "Trying to use a failed node"), and the real gRPC
error is surfaced from the exception chain. The Cluster API fields its protos lack (learner
flag, learner add, promote) go over the same channel as raw protobuf (``etcd_wire``).

Guards live here whatever the caller checked: ``remove`` is idempotent, never removes the last
voter, refuses when the projected healthy voters would fall below quorum, while another member is
a pending learner or unstarted, or while an earlier recorded removal is not yet made good
(``cpswap.core.membership``), snapshots first, and retries only the transient refusals (unhealthy
cluster, the post-reconfiguration window). ``remove``, ``add`` and ``promote`` hold the cluster's
membership lock (``etcd_lock``) so concurrent pipelines queue instead of racing.
TLS is always verified against the cluster CA. Key material never reaches logs or messages.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlsplit

import pyetcd
from pyetcd import etcdrpc

from cpswap.core import inputs
from cpswap.core.errors import (ConfigError, NotFoundError, PermanentError, TransientError, UnsafeOperationError,
                                Violation)
from cpswap.core.facts import (EtcdFacts, EtcdMember, canonical_ip, identify_member, removed_record_key, same_ip,
                               url_host)
from cpswap.core.membership import CHANGE_KEY, ChangeRecord, change_in_progress, learner_rule
from cpswap.core.quorum import can_remove
from cpswap.distributions import etcd_presets
from cpswap.executors import etcd_wire
from cpswap.executors.boundary import etcd_error, retry
from cpswap.executors.etcd_lock import DEFAULT_TTL_S, DEFAULT_WAIT_S, holder_id, membership_lock
from cpswap.executors.secretfiles import private_dir, write_secret
from cpswap.executors.waiting import wait_until

Progress = Callable[[str], None]

ENV_KEYS = ("CPSWAP_ETCD_CACERT_DATA", "CPSWAP_ETCD_CERT_DATA", "CPSWAP_ETCD_KEY_DATA")
# A departing member's health probe waits at most this long (not the whole request timeout): its
# answer does not change a removal's verdict (``_voters_health``), and a dead host answers nothing.
DEPARTING_PROBE_S = 1.0


@dataclass(frozen=True)
class Connection:
    endpoints: tuple[str, ...]
    ca: str
    cert: str | None = None
    key: str | None = None
    timeout: float = 5.0

    def without_host(self, ip: str) -> Connection:
        return replace(self, endpoints=tuple(e for e in self.endpoints if not same_ip(url_host(e), ip)))

    def with_endpoints(self, extra: Sequence[str]) -> Connection:
        merged = list(self.endpoints)
        merged += [e for e in extra if e not in merged]
        return replace(self, endpoints=tuple(merged))


def _peer_urls(urls: Sequence[str]) -> list[str]:
    if isinstance(urls, str) or not urls:
        raise inputs.InputError("at least one peer URL is required, e.g. https://10.0.0.4:2380")
    return [inputs.endpoint_url(u) for u in urls]


def _ip_if_given(ip: str) -> str:
    """The CLI requires --ip; "" passes this check but identifies no member (members are matched by
    name AND IP, ``cpswap.core.facts.member_matches``; a removal refuses it); any other value must be an IP."""
    return ip if ip == "" else inputs.ip_address(ip)


def _endpoints(urls: Sequence[str]) -> list[str]:
    if isinstance(urls, str):
        raise inputs.InputError("must be a list of URLs")
    return [inputs.endpoint_url(u) for u in urls]


@inputs.validated(endpoints=_endpoints, timeout=inputs.seconds)
@contextlib.contextmanager
def preset_connection(*, preset: str | None, endpoints: Sequence[str] = (), cacert: str | None = None,
                      cert: str | None = None, key: str | None = None, timeout: float = 5.0) -> Iterator[Connection]:
    """Resolve connection flags. ``env`` writes PEM data from the environment to a private
    directory (``secretfiles.private_dir``: 0700, removed on exit, SIGTERM and SIGINT, or by the
    next run after a SIGKILL); ``k3s``/``kubeadm`` use the distribution's paths under
    ``$CPSWAP_ETCD_ROOT`` (default ``/``); explicit ``--cacert/--cert/--key`` win."""
    with contextlib.ExitStack() as stack:
        eps = list(endpoints)
        if preset == "env":
            missing = [k for k in ENV_KEYS if not os.environ.get(k)]
            if missing:
                raise PermanentError(f"--preset env needs {', '.join(missing)} in the environment "
                                     f"(set by the program from secret stack config)")
            paths = stack.enter_context(_pem_files(*(os.environ[var] for var in ENV_KEYS)))
            cacert, cert, key = cacert or paths[0], cert or paths[1], key or paths[2]
            from_env = [e for e in os.environ.get("CPSWAP_ETCD_ENDPOINTS", "").split(",") if e]
            try:
                eps += _endpoints(from_env)
            except inputs.InputError as exc:
                raise ConfigError([Violation("CPSWAP_ETCD_ENDPOINTS", ",".join(from_env)[:120], str(exc))]) from None
        elif preset in (presets := etcd_presets()):
            root = os.environ.get("CPSWAP_ETCD_ROOT", "/")
            files = presets[preset]
            ca_p, cert_p, key_p = (os.path.join(root, p) for p in (files.cacert, files.cert, files.key))
            cacert, cert, key = cacert or ca_p, cert or cert_p, key or key_p
            eps = eps or ["https://127.0.0.1:2379"]
        elif preset is not None:
            raise PermanentError(f"--preset {preset!r}: unknown; use {', '.join(presets)} or env")
        if not cacert:
            raise PermanentError("no CA given: pass --cacert or a --preset; TLS is always verified against the cluster CA")
        for label, path in (("--cacert", cacert), ("--cert", cert), ("--key", key)):
            if path and not os.path.exists(path):
                raise PermanentError(f"{label} {path}: file not found")
        yield Connection(endpoints=tuple(dict.fromkeys(eps)), ca=cacert, cert=cert, key=key, timeout=timeout)


@contextlib.contextmanager
def _pem_files(ca_pem: str, cert_pem: str, key_pem: str) -> Iterator[tuple[str, str, str]]:
    """The CA, client certificate and key PEM texts as 0600 files in a private directory
    (``secretfiles.private_dir``), removed on exit."""
    with private_dir("etcd") as tmp:
        yield (write_secret(tmp, "ca.crt", ca_pem), write_secret(tmp, "client.crt", cert_pem),
               write_secret(tmp, "client.key", key_pem))


@inputs.validated(endpoints=_endpoints, timeout=inputs.seconds)
@contextlib.contextmanager
def pem_connection(*, endpoints: Sequence[str], ca_pem: str, cert_pem: str, key_pem: str,
                   timeout: float = 5.0) -> Iterator[Connection]:
    """A connection from PEM texts handed over explicitly (the program's secret config), never
    through the process environment."""
    with _pem_files(ca_pem, cert_pem, key_pem) as (cacert, cert, key):
        yield Connection(endpoints=tuple(dict.fromkeys(endpoints)), ca=cacert, cert=cert, key=key, timeout=timeout)


def _client(conn: Connection, endpoint: str) -> pyetcd.Etcd3Client:
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        raise PermanentError(f"endpoint {endpoint!r}: must be https://host:port (TLS is required)")
    return pyetcd.client(host=parts.hostname, port=parts.port or 2379, ca_cert=conn.ca, cert_key=conn.key,
                         cert_cert=conn.cert, timeout=conn.timeout)


def _raw(client: pyetcd.Etcd3Client, method: str, payload: bytes, timeout: float) -> bytes:
    call = client.channel.unary_unary(f"/etcdserverpb.Cluster/{method}", request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
    return call(payload, timeout=timeout)


def _on_any(conn: Connection, what: str, action: Callable[[pyetcd.Etcd3Client, str], object]) -> object:
    """Run ``action`` on the first endpoint that answers; fresh client each try."""
    if not conn.endpoints:
        raise PermanentError(f"{what}: no etcd endpoint left to ask")
    failures: list[Exception] = []
    for endpoint in conn.endpoints:
        client = None
        try:
            client = _client(conn, endpoint)
            return action(client, endpoint)
        except (PermanentError, TransientError, UnsafeOperationError):
            raise
        except Exception as exc:  # pyetcd wraps grpc errors; the boundary surfaces the real one
            error = etcd_error(exc, endpoint=endpoint, what=what)
            if isinstance(error, PermanentError) and "TLS refused" not in str(error):
                raise error from exc
            failures.append(error)
        finally:
            if client is not None:
                client.close()
    if all(isinstance(f, PermanentError) for f in failures):
        raise PermanentError("; ".join(str(f) for f in failures))
    raise TransientError("; ".join(str(f) for f in failures))


def member_list(conn: Connection) -> tuple[EtcdMember, ...]:
    def call(client: pyetcd.Etcd3Client, _: str) -> tuple[EtcdMember, ...]:
        return etcd_wire.decode_member_list(_raw(client, "MemberList", b"", conn.timeout))
    return _on_any(conn, "member list", call)  # type: ignore[return-value]


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: str
    ok: bool
    member_id: int = 0
    leader_id: int = 0
    raft_term: int = 0
    raft_index: int = 0
    db_size: int = 0
    version: str = ""
    revision: int = 0
    error: str = ""


def endpoint_status(conn: Connection, endpoint: str) -> EndpointStatus:
    client = None
    try:
        client = _client(conn, endpoint)
        resp = client.maintenancestub.Status(etcdrpc.StatusRequest(), conn.timeout)
        return EndpointStatus(endpoint=endpoint, ok=True, member_id=resp.header.member_id, leader_id=resp.leader,
                              raft_term=resp.raftTerm, raft_index=resp.raftIndex, db_size=resp.dbSize,
                              version=resp.version, revision=resp.header.revision)
    except PermanentError:
        raise
    except Exception as exc:
        return EndpointStatus(endpoint=endpoint, ok=False, error=str(etcd_error(exc, endpoint=endpoint, what="status")))
    finally:
        if client is not None:
            client.close()


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: str
    healthy: bool
    took_ms: float
    error: str = ""


def endpoint_health(conn: Connection, endpoint: str) -> EndpointHealth:
    """A linearizable read of key ``health`` (what ``etcdctl endpoint health`` does): needs quorum."""
    started = time.monotonic()
    client = None
    try:
        client = _client(conn, endpoint)
        client.kvstub.Range(etcdrpc.RangeRequest(key=b"health"), conn.timeout)
        return EndpointHealth(endpoint, True, (time.monotonic() - started) * 1000)
    except PermanentError:
        raise
    except Exception as exc:
        return EndpointHealth(endpoint, False, (time.monotonic() - started) * 1000,
                              str(etcd_error(exc, endpoint=endpoint, what="health")))
    finally:
        if client is not None:
            client.close()


def _member_health(conn: Connection, member: EtcdMember) -> bool:
    if not member.client_urls:
        return False
    return any(endpoint_health(conn, url).healthy for url in member.client_urls[:1])


def _voters_health(conn: Connection, voters: Sequence[EtcdMember], *, departing: int) -> dict[int, bool]:
    """Each voter's health (a linearizable read through it), all probed at once. The departing
    member's probe is bounded by ``DEPARTING_PROBE_S``: ``can_remove`` counts the healthy voters
    that stay, so its health changes only the report, and probing a dead host would otherwise
    cost the whole request timeout (seed 004: the dead leader's 5 s in every leave)."""
    def probe(member: EtcdMember) -> bool:
        bounded = replace(conn, timeout=min(conn.timeout, DEPARTING_PROBE_S)) if member.id == departing else conn
        return _member_health(bounded, member)
    if not voters:
        return {}
    with ThreadPoolExecutor(max_workers=len(voters), thread_name_prefix="cpswap-health") as pool:
        futures = {m.id: pool.submit(probe, m) for m in voters}
        return {member_id: future.result() for member_id, future in futures.items()}


def observe_etcd(*, connection: Connection) -> EtcdFacts:
    """Read-only facts with the connection's (short) timeout; never raises for reachability."""
    try:
        members = member_list(connection)
    except Exception as exc:  # observation degrades, it does not fail the preview
        return EtcdFacts(reachable=False, endpoints=connection.endpoints, error=_safe(str(exc)))
    observed = []
    leader_id, term = None, None
    for m in members:
        status = endpoint_status(connection, m.client_urls[0]) if m.client_urls else None
        healthy = bool(status and status.ok) and _member_health(connection, m)
        if status and status.ok:
            leader_id, term = status.leader_id or leader_id, status.raft_term or term
        observed.append(replace(m, healthy=healthy, raft_index=status.raft_index if status and status.ok else None))
    return EtcdFacts(reachable=True, members=tuple(observed), leader_id=leader_id, raft_term=term,
                     endpoints=connection.endpoints)


def _safe(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "PRIVATE KEY" not in line)[:500]


@dataclass(frozen=True)
class SnapshotInfo:
    path: str
    size: int
    revision: int
    sha256: str
    verified: bool


def verify_snapshot(path: Path) -> str:
    """etcd appends the sha256 of the bolt db to a streamed snapshot; check it and return it."""
    data = path.read_bytes()
    if len(data) < 512 + 32 or len(data) % 512 != 32:
        raise PermanentError(f"snapshot {path}: {len(data)} bytes is not a bolt db followed by a sha256 trailer")
    digest = hashlib.sha256(data[:-32]).digest()
    if digest != data[-32:]:
        raise PermanentError(f"snapshot {path}: sha256 trailer does not match the content (corrupt)")
    return digest.hex()


def default_snapshot_dir() -> Path:
    """Outside any repository: ``$CPSWAP_STATE_DIR/snapshots``, else
    ``${XDG_STATE_HOME:-~/.local/state}/cpswap/snapshots``."""
    if os.environ.get("CPSWAP_STATE_DIR"):
        return Path(os.environ["CPSWAP_STATE_DIR"]).expanduser() / "snapshots"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state).expanduser() / "cpswap" / "snapshots"


def labelled_snapshot_path(*, directory: Path, label: str) -> Path:
    """``<directory>/<label>-<UTC time>.db``: a new name for every run (the clock is read here)."""
    return directory.expanduser() / f"{label}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.db"


def private_directory(path: Path) -> Path:
    """``path`` as a directory only this user can enter: created 0700 (with its missing parents)
    when absent; an existing one must be a real directory (no symlink) owned by this user with no
    group or other access. Snapshots hold every Kubernetes Secret."""
    path = path.expanduser()
    if not os.path.lexists(path):
        old = os.umask(0o077)
        try:
            path.mkdir(parents=True, mode=0o700, exist_ok=True)
        finally:
            os.umask(old)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise PermanentError(f"snapshot directory {path}: not a directory (a {_kind(info.st_mode)}); "
                             f"snapshots are written only into a private directory")
    if info.st_uid != os.getuid():
        raise PermanentError(f"snapshot directory {path}: owned by uid {info.st_uid}, not by this user "
                             f"({os.getuid()}); snapshots hold every Secret")
    if info.st_mode & 0o077:
        raise PermanentError(f"snapshot directory {path}: mode {stat.S_IMODE(info.st_mode):04o} lets others in; "
                             f"snapshots hold every Secret: use a 0700 directory (chmod 700 {path})")
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return name
    return "special file"


def snapshot(conn: Connection, *, out: Path, progress: Progress = print) -> SnapshotInfo:
    """Save a verified snapshot to ``out``: a new regular file, 0600, in a private directory
    (``private_directory``). Written as ``<out>.part`` (O_EXCL, O_NOFOLLOW) and linked to ``out``,
    which never replaces anything: an existing ``out`` of any kind is refused."""
    out = out.expanduser()
    if not out.name or out.name in (".", ".."):
        raise PermanentError(f"snapshot --out {out}: not a file name")
    directory = private_directory(out.parent if str(out.parent) else Path("."))
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    part = out.name + ".part"
    try:
        try:
            info = os.lstat(out.name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        else:
            raise PermanentError(f"snapshot --out {out}: exists (a {_kind(info.st_mode)}); cpswap writes only new "
                                 f"regular files and never replaces one")
        with contextlib.suppress(FileNotFoundError):
            stale = os.lstat(part, dir_fd=dfd)
            if not stat.S_ISREG(stale.st_mode):
                raise PermanentError(f"snapshot {directory / part}: exists (a {_kind(stale.st_mode)}); not touching it")
            os.unlink(part, dir_fd=dfd)  # an interrupted earlier snapshot's partial file

        def call(client: pyetcd.Etcd3Client, endpoint: str) -> SnapshotInfo:
            revision = client.maintenancestub.Status(etcdrpc.StatusRequest(), conn.timeout).header.revision
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
            with os.fdopen(fd, "wb") as handle:
                client.snapshot(handle)
                handle.flush()
                os.fsync(handle.fileno())
            digest = verify_snapshot(directory / part)
            os.link(part, out.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            size = os.stat(out.name, dir_fd=dfd, follow_symlinks=False).st_size
            info = SnapshotInfo(path=str(out), size=size, revision=revision, sha256=digest, verified=True)
            progress(f"snapshot {out} from {endpoint}: {size} bytes, revision {revision}, sha256 {digest[:16]}…, "
                     f"verified (0600 in {directory})")
            return info
        try:
            return _on_any(conn, "snapshot", call)  # type: ignore[return-value]
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part, dir_fd=dfd)
    finally:
        os.close(dfd)


def find_member(members: Sequence[EtcdMember], *, name: str, ip: str) -> EtcdMember | None:
    """The member that is exactly host ``name``/``ip``'s (name under the k3s rule and IP), if any."""
    found = identify_member(tuple(members), name=name, ip=ip)
    return found.member


def _check_host(*, name: str, ip: str) -> None:
    if not name or canonical_ip(ip) is None:
        raise PermanentError(f"member name={name!r} ip={ip!r}: a removal needs the host's node name and its IP "
                             f"(the member's peer URL host), both exactly")


def removed_record(conn: Connection, *, name: str, ip: str) -> str | None:
    """What an earlier run recorded when it removed host ``name``/``ip``'s member, or None."""
    def call(client: pyetcd.Etcd3Client, _: str) -> str | None:
        value, _meta = client.get(removed_record_key(name=name, ip=ip))
        return value.decode() if value is not None else None
    return _on_any(conn, "read removal record", call)  # type: ignore[return-value]


def record_removal(conn: Connection, *, name: str, ip: str, member: EtcdMember | None, how: str) -> None:
    """Record in etcd, before the member goes, that cpswap removes host ``name``/``ip``'s member."""
    value = json.dumps({"id": f"{member.id:x}" if member else None, "member": member.name if member else None,
                        "how": how, "at": int(time.time())}, sort_keys=True)
    _on_any(conn, "write removal record",
            lambda client, _: client.put(removed_record_key(name=name, ip=ip), value))


def discover(conn: Connection, *, exclude_ip: str) -> Connection:
    """Add the other members' client URLs from member list (stored endpoints may be stale)."""
    base = conn.without_host(exclude_ip)
    try:
        members = member_list(base)
    except (TransientError, PermanentError):
        return base
    urls = [u for m in members for u in m.client_urls[:1] if not same_ip(url_host(u), exclude_ip)]
    return base.with_endpoints(urls)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_change(conn: Connection) -> ChangeRecord | None:
    """The recorded membership change in progress (``membership.CHANGE_KEY``), if any."""
    def call(client: pyetcd.Etcd3Client, _: str) -> ChangeRecord | None:
        value, _meta = client.get(CHANGE_KEY)
        return ChangeRecord.from_json(value.decode()) if value else None
    return _on_any(conn, "read membership change record", call)  # type: ignore[return-value]


def write_change(conn: Connection, record: ChangeRecord) -> None:
    _on_any(conn, "record membership change", lambda client, _: client.put(CHANGE_KEY, record.to_json()))


def clear_change(conn: Connection) -> None:
    _on_any(conn, "clear membership change record", lambda client, _: client.delete(CHANGE_KEY))


@inputs.validated(name=inputs.dns_name, ip=_ip_if_given, deadline_s=inputs.seconds)
def guard_removal(conn: Connection, *, name: str, ip: str, snapshot_dir: Path | None, deadline_s: float = 300,
                  progress: Progress = print, absent_reason: str | None = None) -> EtcdMember | None:
    """The checks before removing host ``name``/``ip``'s member (through the other members): the
    member is identified exactly (``identify_member``), no other member is pending (learner rule),
    no other recorded change is in progress, it is not the last voter, quorum survives its removal,
    and a verified snapshot is taken. Returns the member, or None when an earlier run removed it
    (its removal record in etcd). A host that cannot be identified raises PermanentError listing
    the members; with ``absent_reason`` (why the member may be gone without cpswap's record: the
    operator confirms it, or kubean's remove-node.yml removed it) a host whose name and IP no
    member carries is recorded as removed for that reason instead. Raises UnsafeOperationError
    with the numbers."""
    conn = discover(conn, exclude_ip=ip)
    _check_host(name=name, ip=ip)
    members = retry("member list", lambda: member_list(conn), deadline_s=min(deadline_s, 60), progress=progress)
    assert isinstance(members, tuple)
    found = identify_member(members, name=name, ip=ip)
    if found.outcome == "unknown" and not any(m.related(name=name, ip=ip) for m in members):
        removed = retry("read removal record", lambda: removed_record(conn, name=name, ip=ip),
                        deadline_s=min(deadline_s, 60), progress=progress)
        found = identify_member(members, name=name, ip=ip, removed_record=removed)
        if found.outcome == "unknown" and absent_reason:
            record_removal(conn, name=name, ip=ip, member=None, how=absent_reason)
            found = identify_member(members, name=name, ip=ip, removed_record=absent_reason)
    elif found.outcome == "unknown" and absent_reason:
        raise PermanentError(f"absent ({absent_reason}) refused: {found.reason}")
    if found.outcome == "unknown":
        raise PermanentError(f"cannot identify the member to remove: {found.reason}; nothing removed")
    progress(found.reason)
    target = found.member
    if target is None:
        return None
    voters = [m for m in members if not m.is_learner]
    label = f"{target.name or '(unstarted)'} {target.id:x}"
    blocked = learner_rule(members, target=target)
    if blocked is not None:
        raise UnsafeOperationError(f"refusing to remove {label}: {blocked}")
    record = read_change(conn)
    change = change_in_progress(record, members=members, target_id=target.id)
    if not change.allowed:
        raise UnsafeOperationError(f"refusing to remove {label}: {change.reason}")
    if record is not None:
        progress(change.reason)
        if change.record_done:
            clear_change(conn)
    if not target.is_learner:
        if len(voters) <= 1:
            raise UnsafeOperationError(f"refusing to remove {label}: it is the last voter ({len(voters)} voter)")
        health = _voters_health(conn, voters, departing=target.id)
        healthy = [m for m in voters if health[m.id]]
        verdict = can_remove(voters=len(voters), healthy=len(healthy), target_healthy=health[target.id],
                             target=label)
        progress(f"quorum check: {verdict.reason} (healthy: {', '.join(m.name for m in healthy) or 'none'}; "
                 f"unhealthy: {', '.join(m.name or f'{m.id:x}' for m in voters if not health[m.id]) or 'none'})")
        if not verdict.allowed:
            raise UnsafeOperationError(f"refusing to remove {label}: {verdict.reason}; unhealthy voters: "
                                       f"{', '.join(m.name or f'{m.id:x}' for m in voters if not health[m.id])}")
    if snapshot_dir is not None:
        snapshot(conn, out=snapshot_dir.expanduser() / f"before-remove-{target.name or f'{target.id:x}'}-"
                                                       f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{target.id:x}.db",
                 progress=progress)
    return target


@inputs.validated(name=inputs.dns_name, ip=_ip_if_given, deadline_s=inputs.seconds)
def remove_member(conn: Connection, *, name: str, ip: str, snapshot_dir: Path | None, deadline_s: float = 300,
                  progress: Progress = print, lock_ttl_s: int = DEFAULT_TTL_S,
                  lock_wait_s: float = DEFAULT_WAIT_S, absent_reason: str | None = None) -> str:
    """Remove the member of host ``name``/``ip`` through the other members. Idempotent: right before
    the removal it records, per host, that cpswap removed it (``record_removal``), so a re-run finds
    that record instead of the member. Holds the cluster's membership lock from the checks to the
    removal (``etcd_lock``), and records the change (``membership.ChangeRecord``) so no other
    member is removed until it is made good."""
    conn = discover(conn, exclude_ip=ip)
    with membership_lock(conn, what=f"remove {name} ({ip})", ttl_s=lock_ttl_s, wait_s=lock_wait_s,
                         progress=progress, connect_deadline_s=min(deadline_s, 60)) as lock:
        target = guard_removal(conn, name=name, ip=ip, snapshot_dir=snapshot_dir, deadline_s=deadline_s,
                               progress=progress, absent_reason=absent_reason)
        if target is None:
            return "absent"
        lock.ensure_held()
        retry(f"record removal of {target.name or target.id}",
              lambda: record_removal(conn, name=name, ip=ip, member=target, how="cpswap etcd remove"),
              deadline_s=min(deadline_s, 60), progress=progress)
        if target.started and not target.is_learner:
            write_change(conn, ChangeRecord(
                removed=f"{target.name or '(unstarted)'} {target.id:x}", member_id=target.id, name=name, ip=ip,
                voters_before=sum(1 for m in member_list(conn) if m.started and not m.is_learner),
                holder=holder_id(), at=_now()))
        return _remove_locked(conn, target=target, ip=ip, deadline_s=deadline_s, progress=progress)


def _remove_locked(conn: Connection, *, target: EtcdMember, ip: str, deadline_s: float, progress: Progress) -> str:
    label = f"{target.name or '(unstarted)'} {target.id:x}"

    def call() -> str:
        def remove(client: pyetcd.Etcd3Client, endpoint: str) -> str:
            client.clusterstub.MemberRemove(etcdrpc.MemberRemoveRequest(ID=target.id), conn.timeout)
            return "removed"
        try:
            return str(_on_any(conn, f"remove {label}", remove))
        except NotFoundError:  # etcd's "member not found": removed before (by us, or by hand)
            return "absent"

    outcome = retry(f"remove {label}", call, deadline_s=deadline_s, progress=progress)
    progress(f"{label}: {'removed' if outcome == 'removed' else 'already gone'}")
    return str(outcome)


def verify_adoption(conn: Connection, *, hosts: Sequence[tuple[str, str, str]], progress: Progress = print) -> None:
    """Read-only check of an adoption: each (slot, name, ip) is exactly one started voter, and etcd
    has no other voter. Raises UnsafeOperationError naming each slot that is not, with the members."""
    members = member_list(conn)
    problems = []
    for slot, name, ip in hosts:
        found = identify_member(members, name=name, ip=ip)
        if found.member is None:
            problems.append(f"{slot}: {found.reason}")
        elif not found.member.started or found.member.is_learner:
            problems.append(f"{slot}: {name} ({ip}) is {'a learner' if found.member.is_learner else 'not started'}")
    claimed = {found.member.id for slot, name, ip in hosts
               if (found := identify_member(members, name=name, ip=ip)).member is not None}
    extra = [m for m in members if m.id not in claimed]
    if extra:
        problems.append(f"etcd has member(s) no slot names: {'; '.join(m.describe() for m in extra)}")
    if problems:
        raise UnsafeOperationError(
            "adoption refused: the stack config is not the applied membership and no deployment recorded one "
            "(.cpswap/applied-<stack>.json); nothing was run. " + " | ".join(problems)
            + ". Restore the saved stack outputs, or make the stack config say what the cluster is, then change "
              "one slot at a time")
    progress(f"adoption verified: {', '.join(f'{slot}={name}@{ip}' for slot, name, ip in hosts)} are the started "
             f"etcd voters")


@inputs.validated(peer_urls=_peer_urls, deadline_s=inputs.seconds)
def add_member(conn: Connection, *, peer_urls: tuple[str, ...], learner: bool = True, deadline_s: float = 60,
               progress: Progress = print, lock_ttl_s: int = DEFAULT_TTL_S,
               lock_wait_s: float = DEFAULT_WAIT_S) -> EtcdMember:
    """Add a member (a learner by default) under the membership lock; retries the
    post-reconfiguration window. Idempotent (an interrupted join's pending member is found by its
    peer URL and returned)."""
    with membership_lock(conn, what=f"add {peer_urls[0]}", ttl_s=lock_ttl_s, wait_s=lock_wait_s,
                         progress=progress, connect_deadline_s=deadline_s) as lock:
        lock.ensure_held()
        return _add_locked(conn, peer_urls=peer_urls, learner=learner, deadline_s=deadline_s, progress=progress)


def _add_locked(conn: Connection, *, peer_urls: tuple[str, ...], learner: bool, deadline_s: float,
                progress: Progress) -> EtcdMember:
    existing = [m for m in member_list(conn) if set(m.peer_urls) & set(peer_urls)]
    if existing:
        progress(f"{peer_urls[0]} is already a member ({existing[0].id:x}); not adding")
        return existing[0]
    payload = etcd_wire.encode_member_add(peer_urls=peer_urls, learner=learner)

    def call() -> object:
        return _on_any(conn, f"add {peer_urls[0]}", lambda c, _: etcd_wire.decode_member_add(
            _raw(c, "MemberAdd", payload, conn.timeout)))
    member = retry(f"add {peer_urls[0]}", call, deadline_s=deadline_s, progress=progress)
    assert isinstance(member, EtcdMember)
    progress(f"added {'learner' if learner else 'voter'} {member.id:x} at {peer_urls[0]}")
    return member


@inputs.validated(deadline_s=inputs.seconds)
def promote_member(conn: Connection, *, member_id: int, deadline_s: float = 120, progress: Progress = print,
                   lock_ttl_s: int = DEFAULT_TTL_S, lock_wait_s: float = DEFAULT_WAIT_S) -> None:
    """Promote a learner once it is in sync, under the membership lock; 'not in sync' is retried
    until the deadline."""
    with membership_lock(conn, what=f"promote {member_id:x}", ttl_s=lock_ttl_s, wait_s=lock_wait_s,
                         progress=progress, connect_deadline_s=min(deadline_s, 60)) as lock:
        lock.ensure_held()
        _promote_locked(conn, member_id=member_id, deadline_s=deadline_s, progress=progress)


def _promote_locked(conn: Connection, *, member_id: int, deadline_s: float, progress: Progress) -> None:
    current = {m.id: m for m in member_list(conn)}
    if member_id in current and not current[member_id].is_learner:
        progress(f"{member_id:x} is already a voter")
        return

    def call() -> object:
        def promote(client: pyetcd.Etcd3Client, endpoint: str) -> object:
            # a learner not yet in sync with the leader, or not started, is refused: the boundary
            # makes that a TransientError, retried below
            return _raw(client, "MemberPromote", etcd_wire.encode_member_id(member_id), conn.timeout)
        return _on_any(conn, f"promote {member_id:x}", promote)
    retry(f"promote {member_id:x}", call, deadline_s=deadline_s, progress=progress)
    progress(f"promoted {member_id:x} to voter")


@inputs.validated(name=inputs.dns_name, ip=_ip_if_given, max_lag=inputs.lag, deadline_s=inputs.seconds)
def wait_member(conn: Connection, *, name: str, ip: str, max_lag: int = 1000, deadline_s: float = 600,
                progress: Progress = print, poll_s: float = 0.2) -> EtcdMember:
    """Until the member is started, a voter, healthy and within ``max_lag`` raft entries of the leader."""
    found: list[EtcdMember] = []

    def probe() -> tuple[bool, str]:
        nonlocal conn
        conn = conn.with_endpoints([u for m in member_list(conn) for u in m.client_urls[:1]])
        member = find_member(member_list(conn), name=name, ip=ip)
        if member is None:
            return False, "not a member yet"
        if not member.started:
            return False, "added but not started"
        if member.is_learner:
            return False, "started as a learner, not yet promoted"
        mine = endpoint_status(conn, member.client_urls[0])
        if not mine.ok or not _member_health(conn, member):
            return False, f"voter but not healthy ({mine.error or 'health read failed'})"
        leader = next((s for s in (endpoint_status(conn, e) for e in conn.endpoints)
                       if s.ok and s.member_id == mine.leader_id), mine)
        lag = max(leader.raft_index - mine.raft_index, 0)
        if lag > max_lag:
            return False, f"healthy voter but {lag} raft entries behind the leader (limit {max_lag})"
        progress(f"{member.name} ({member.id:x}) is a healthy voter, {lag} raft entries behind the leader "
                 f"(limit {max_lag})")
        found.append(replace(member, healthy=True, raft_index=mine.raft_index))
        return True, "ready"

    wait_until(f"wait-member {name} ({ip})", probe, deadline_s=deadline_s, progress=progress, poll_s=poll_s,
               max_delay_s=0.5)
    return found[-1]
