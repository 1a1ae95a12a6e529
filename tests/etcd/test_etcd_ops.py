"""etcd membership operations against real TLS etcd clusters started by the tests (issue 3)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from cpswap.core.errors import DeadlineError, PermanentError, UnsafeOperationError
from cpswap.executors import etcd as ex
from cpswap.executors import etcd_wire
from tests.support.etcd_cluster import (EtcdCluster, digest, etcdutl_binary, etcd_binary, free_port, put_keys,
                                        removal_records)
from tests.support.pki import make_ca

pytestmark = pytest.mark.etcd


def leader_name(cluster: EtcdCluster, names) -> str:
    for name in names:
        status = ex.endpoint_status(cluster.connection(name), cluster.members[name].client)
        if status.ok and status.member_id == status.leader_id:
            return name
    raise AssertionError("no leader")


def voters(conn) -> list[str]:
    return sorted(m.name for m in ex.member_list(conn) if not m.is_learner)


def test_dead_member_removed_then_learner_added_promoted_and_waited(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=3, distinct_ips=True)
    lines: list[str] = []
    try:
        conn = cluster.connection()
        put_keys(conn)
        before = digest(conn)
        cluster.kill("m3")
        survivors = cluster.connection("m1", "m2")
        assert ex.remove_member(cluster.connection(), name="m3", ip=cluster.ip("m3"), snapshot_dir=tmp_path / "snaps",
                                progress=lines.append) == "removed"
        assert any("quorum check: removing m3" in line and "leaves 2 healthy of 2 voters" in line for line in lines)
        assert list((tmp_path / "snaps").glob("before-remove-m3-*.db"))
        assert voters(survivors) == ["m1", "m2"] and digest(survivors) == before
        assert removal_records(survivors)["127.0.0.13/m3"]["how"] == "cpswap etcd remove"
        m4 = cluster.new_member("m4")
        added = ex.add_member(survivors, peer_urls=(m4.peer,), learner=True, progress=lines.append)
        assert added.is_learner
        assert [m.is_learner for m in ex.member_list(survivors) if m.id == added.id] == [True]
        cluster.start_joiner(m4, current=[cluster.members["m1"], cluster.members["m2"]])
        ex.promote_member(survivors, member_id=added.id, progress=lines.append)
        ready = ex.wait_member(survivors, name="m4", ip=cluster.ip("m4"), max_lag=10, deadline_s=60, progress=lines.append)
        assert ready.name == "m4" and not ready.is_learner and ready.healthy
        assert voters(survivors) == ["m1", "m2", "m4"]
        assert digest(cluster.connection("m1", "m2", "m4")) == before
        # m4 made m3's recorded removal good: the next change is allowed and clears that record
        lines.clear()
        assert ex.remove_member(cluster.connection("m1", "m2", "m4"), name="m2", ip=cluster.ip("m2"), snapshot_dir=None,
                                progress=lines.append) == "removed"
        assert any("the earlier removal of m3" in line and "is made good: 3 started voters again" in line
                   for line in lines)
        assert ex.read_change(cluster.connection("m1", "m4")).name == "m2"
    finally:
        cluster.stop()


def test_five_members_dead_leader_is_removed_and_replaced(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=5, distinct_ips=True)
    try:
        conn = cluster.connection()
        put_keys(conn, 100)
        before = digest(conn)
        leader = leader_name(cluster, cluster.members)
        cluster.kill(leader)
        rest = [n for n in ["m1", "m2", "m3", "m4", "m5"] if n != leader]
        survivors = cluster.connection(*rest)
        assert ex.remove_member(survivors, name=leader, ip=cluster.ip(leader), snapshot_dir=tmp_path / "s", progress=print) == "removed"
        assert voters(survivors) == rest
        new = cluster.new_member("m6")
        added = ex.add_member(survivors, peer_urls=(new.peer,), progress=print)
        cluster.start_joiner(new, current=[cluster.members[n] for n in rest])
        ex.promote_member(survivors, member_id=added.id, progress=print)
        ex.wait_member(survivors, name="m6", ip=cluster.ip("m6"), max_lag=10, deadline_s=60, progress=print)
        assert len(voters(survivors)) == 5
        assert digest(survivors) == before
    finally:
        cluster.stop()


@pytest.fixture
def three_with_m3_dead(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=3, distinct_ips=True)
    cluster.kill("m3")
    yield cluster
    cluster.stop()


def test_guard_refuses_healthy_removal_while_another_is_dead_before_etcd(three_with_m3_dead, tmp_path):
    cluster = three_with_m3_dead
    conn = cluster.connection("m1", "m2")
    with pytest.raises(UnsafeOperationError) as info:
        ex.remove_member(conn, name="m2", ip=cluster.ip("m2"), snapshot_dir=tmp_path / "never", progress=print)
    text = str(info.value)
    assert "refusing to remove m2" in text and "leaves 1 healthy of 2 voters; quorum needs 2" in text
    assert "unhealthy voters: m3" in text
    assert voters(conn) == ["m1", "m2", "m3"]  # etcd was never asked
    assert not (tmp_path / "never").exists()  # nor was a snapshot taken


def test_remove_twice_is_idempotent(three_with_m3_dead):
    cluster = three_with_m3_dead
    conn = cluster.connection("m1", "m2")
    assert ex.remove_member(conn, name="m3", ip=cluster.ip("m3"), snapshot_dir=None, progress=print) == "removed"
    lines: list[str] = []
    assert ex.remove_member(conn, name="m3", ip=cluster.ip("m3"), snapshot_dir=None, progress=lines.append) == "absent"
    assert any("cpswap removed its member earlier" in line and "nothing to do" in line for line in lines)


def test_last_voter_is_never_removed(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=1)
    try:
        # the departing host's endpoints are never asked, so the last voter has no survivor to ask
        with pytest.raises(PermanentError, match=r"no etcd endpoint (left to ask|given)"):
            ex.remove_member(cluster.connection(), name="m1", ip="::ffff:127.0.0.1", snapshot_dir=None,
                             progress=print)
        assert voters(cluster.connection()) == ["m1"]
    finally:
        cluster.stop()


def test_wrong_ca_is_refused_with_a_clear_tls_error(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path / "c", n=1)
    try:
        other = make_ca(directory=tmp_path / "other", name="not-the-cluster-ca")
        conn = ex.Connection(endpoints=cluster.connection().endpoints, ca=str(other.cert), cert=str(cluster.cert),
                             key=str(cluster.key), timeout=2)
        with pytest.raises(PermanentError, match="TLS refused") as info:
            ex.member_list(conn)
        assert "PRIVATE KEY" not in str(info.value)
        facts = ex.observe_etcd(connection=conn)
        assert facts.reachable is False and "TLS refused" in facts.error
    finally:
        cluster.stop()


def test_unreachable_endpoint_is_a_deadline_not_a_hang(tmp_path):
    ca = make_ca(directory=tmp_path)
    conn = ex.Connection(endpoints=(f"https://127.0.0.1:{free_port()}",), ca=str(ca.cert), timeout=0.5)
    facts = ex.observe_etcd(connection=conn)
    assert facts.reachable is False and "UNAVAILABLE" in facts.error
    started = time.monotonic()
    with pytest.raises(DeadlineError, match=r"(membership lock: grant lease|member list): still refused after \d+ attempts"):
        ex.remove_member(conn, name="x", ip="127.0.0.9", snapshot_dir=None, deadline_s=2, progress=print)
    assert time.monotonic() - started < 15


def test_snapshot_restores_into_a_working_single_member_cluster(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path / "c", n=3)
    restored = None
    try:
        conn = cluster.connection()
        put_keys(conn, 50)
        before = digest(conn)
        info = ex.snapshot(conn, out=tmp_path / "snap.db", progress=print)
        assert info.verified and info.size > 0 and info.revision >= 50
        assert stat.S_IMODE(os.stat(info.path).st_mode) == 0o600  # every Secret is in it
        peer, client = f"https://127.0.0.1:{free_port()}", f"https://127.0.0.1:{free_port()}"
        subprocess.run([etcdutl_binary(), "snapshot", "restore", info.path, "--name", "r1", "--data-dir",
                        str(tmp_path / "r1.etcd"), "--initial-cluster", f"r1={peer}",
                        "--initial-advertise-peer-urls", peer], check=True, capture_output=True, timeout=60)
        from tests.support.etcd_cluster import etcd_member_argv
        argv = etcd_member_argv(etcd_bin=etcd_binary(), name="r1", data_dir=tmp_path / "r1.etcd", client_urls=[client],
                                peer_urls=[peer], initial_cluster=f"r1={peer}", state="new", token="restored",
                                ca=cluster.ca.cert, cert=cluster.cert, key=cluster.key)
        restored = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        rconn = ex.Connection(endpoints=(client,), ca=str(cluster.ca.cert), cert=str(cluster.cert),
                              key=str(cluster.key), timeout=2)
        end = time.monotonic() + 30
        while not ex.endpoint_health(rconn, client).healthy:
            assert time.monotonic() < end, "restored member never became healthy"
            time.sleep(0.1)
        assert digest(rconn) == before
    finally:
        cluster.stop()
        if restored is not None:
            restored.kill()
            restored.wait(timeout=10)


def test_corrupt_snapshot_is_detected(tmp_path):
    path = tmp_path / "bad.db"
    path.write_bytes(b"\0" * 512 + b"\1" * 32)
    with pytest.raises(PermanentError, match="sha256 trailer does not match"):
        ex.verify_snapshot(path)


def test_cli_members_json_with_env_preset_and_exit_codes(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=3, distinct_ips=True)
    try:
        env = {**os.environ, "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
               "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
               "CPSWAP_ETCD_ENDPOINTS": cluster.members["m1"].client}
        def run(*a):
            return subprocess.run(["cpswap", "etcd", *a], env=env, capture_output=True, text=True, timeout=60)
        result = run("members", "--preset", "env", "--json")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert sorted(r["name"] for r in rows) == ["m1", "m2", "m3"]
        assert all(r["started"] and not r["is_learner"] for r in rows)
        cluster.kill("m3")
        health = run("health", "--preset", "env", "--json", "--timeout", "1")
        assert health.returncode == 1
        assert [h["healthy"] for h in json.loads(health.stdout)].count(False) == 1
        status = run("status", "--preset", "env", "--json", "--timeout", "1")
        assert sum(1 for s in json.loads(status.stdout) if s["is_leader"]) == 1
        refused = run("remove", "--preset", "env", "--name", "m2", "--ip", cluster.ip("m2"), "--no-snapshot")
        assert refused.returncode == 1 and "leaves 1 healthy of 2 voters; quorum needs 2" in refused.stderr
        removed = run("remove", "--preset", "env", "--name", "m3", "--ip", cluster.ip("m3"), "--snapshot-dir",
                      str(tmp_path / "snaps"), "--json")
        assert removed.returncode == 0 and json.loads(removed.stdout)["outcome"] == "removed"
        for output in (result, health, status, refused, removed):
            assert "PRIVATE KEY" not in output.stdout + output.stderr
        missing = subprocess.run(["cpswap", "etcd", "members", "--preset", "env"], capture_output=True, text=True,
                                 env={k: v for k, v in env.items() if k != "CPSWAP_ETCD_KEY_DATA"}, timeout=30)
        assert missing.returncode == 1 and "CPSWAP_ETCD_KEY_DATA" in missing.stderr
    finally:
        cluster.stop()


def test_k3s_preset_reads_the_distribution_layout(tmp_path, monkeypatch):
    root = tmp_path / "host"
    tls = root / "var/lib/rancher/k3s/server/tls/etcd"
    tls.mkdir(parents=True)
    monkeypatch.setenv("CPSWAP_ETCD_ROOT", str(root))
    for name in ("server-ca.crt", "client.crt", "client.key"):
        (tls / name).write_text("x")
    with ex.preset_connection(preset="k3s") as conn:
        assert conn.endpoints == ("https://127.0.0.1:2379",)
        assert conn.ca == str(tls / "server-ca.crt") and conn.key == str(tls / "client.key")
    (tls / "client.key").unlink()
    with pytest.raises(PermanentError, match=r"--key .*client.key: file not found"), \
            ex.preset_connection(preset="k3s"):
        pass


@pytest.mark.parametrize("learner", [True, False])
def test_wire_member_add_roundtrip(learner):
    raw = etcd_wire.encode_member_add(peer_urls=("https://10.0.0.1:2380",), learner=learner)
    fields = etcd_wire.iter_fields(raw)
    assert fields[0] == (1, 2, b"https://10.0.0.1:2380")
    assert ((2, 0, 1) in fields) == learner


def test_wire_decodes_learner_flag():
    member = (b"\x08" + etcd_wire.encode_varint(0xABCDEF) + b"\x12\x02m4" + b"\x1a\x15https://10.0.0.4:2380"
              + b"\x28\x01")
    response = b"\x12" + etcd_wire.encode_varint(len(member)) + member
    (decoded,) = etcd_wire.decode_member_list(response)
    assert decoded.id == 0xABCDEF and decoded.name == "m4" and decoded.is_learner and not decoded.started


@pytest.fixture(scope="module")
def healthy_three(tmp_path_factory):
    cluster = EtcdCluster.start(workdir=tmp_path_factory.mktemp("healthy3"), n=3, distinct_ips=True)
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("name, ip_of, ip, expected", [
    ("m3", "m2", None, r"no member is both m3 and 127\.0\.0\.12: .* match only one of them"),
    ("m33", "m3", None, r"no member is both m33 and 127\.0\.0\.13"),  # a typo in the name
    ("m3", None, "127.0.0.99", r"no member is both m3 and 127\.0\.0\.99"),  # a typo in the IP
    ("m9", None, "127.0.0.99", r"m9 \(127\.0\.0\.99\) is not an etcd member and cpswap has no record"),
    ("", "m3", None, r"remove_member\(name=\)='': a name is required"),
    ("m3", None, "", r"a removal needs the host's node name and its IP"),
    ("m3", None, "fe80::1%eth0", r"IPv6 zone ids \(%iface\) are refused"),
    ("m3", None, "not-an-ip", r"remove_member\(ip=\)='not-an-ip': must be an IPv4 or IPv6 address"),
])
def test_remove_of_an_unidentified_host_is_an_error_listing_the_members(healthy_three, name, ip_of, ip, expected):
    """Issue 13: `etcd remove` matched the name OR the IP (it removed a healthy member whose IP did
    not match) and read a typo as "already removed". Now nothing is removed and the error lists
    the members."""
    cluster = healthy_three
    conn = cluster.connection()
    before = sorted((m.id, m.name) for m in ex.member_list(conn))
    with pytest.raises(PermanentError, match=expected) as info:
        ex.remove_member(conn, name=name, ip=ip if ip is not None else cluster.ip(ip_of), snapshot_dir=None,
                         deadline_s=20, progress=print)
    if "not an etcd member" in expected or "no member is both" in expected:
        assert all(f"{i:x} {n}" in str(info.value) for i, n in before), "the members are listed"
        assert "nothing removed" in str(info.value)
    assert sorted((m.id, m.name) for m in ex.member_list(conn)) == before


def test_cli_remove_of_a_typo_exits_1_and_absent_by_hand_records_it(healthy_three, tmp_path):
    cluster = healthy_three
    env = {**os.environ, "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
           "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
           "CPSWAP_ETCD_ENDPOINTS": ",".join(m.client for m in cluster.members.values())}
    base = ["python", "-m", "cpswap", "etcd", "remove", "--preset", "env", "--no-snapshot", "--deadline", "20"]

    def remove(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *extra], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    typo = remove("--name", "m4", "--ip", "127.0.0.44")
    assert typo.returncode == 1 and "cannot identify the member to remove" in typo.stderr, typo.stderr
    assert "m1" in typo.stderr and "m2" in typo.stderr and "m3" in typo.stderr
    wrong_ip = remove("--name", "m3", "--ip", cluster.ip("m2"), "--absent-by-hand")
    assert wrong_ip.returncode == 1 and "absent (confirmed absent by the operator (--absent-by-hand)) refused" in wrong_ip.stderr, wrong_ip.stderr
    confirmed = remove("--name", "m4", "--ip", "127.0.0.44", "--absent-by-hand", "--json")
    assert confirmed.returncode == 0 and json.loads(confirmed.stdout)["outcome"] == "absent", confirmed.stderr
    again = remove("--name", "m4", "--ip", "127.0.0.44")  # the record makes later runs succeed
    assert again.returncode == 0 and "cpswap removed its member earlier" in again.stderr, again.stderr
    assert voters(cluster.connection()) == ["m1", "m2", "m3"]


def _target(tmp_path, kind):
    """Build one --out target of ``kind``; returns (path, what must stay true afterwards)."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    if kind == "device":
        return Path("/dev/full"), lambda: stat.S_ISCHR(os.lstat("/dev/full").st_mode)
    if kind == "symlink":
        link = private / "snap.db"
        link.symlink_to(tmp_path / "elsewhere.db")
        return link, lambda: link.is_symlink() and not (tmp_path / "elsewhere.db").exists()
    if kind == "regular":
        existing = private / "snap.db"
        existing.write_text("keep me")
        return existing, lambda: existing.read_text() == "keep me"
    if kind == "fifo":
        fifo = private / "snap.db"
        os.mkfifo(fifo)
        return fifo, lambda: stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if kind == "open-dir":
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        shared.chmod(0o755)
        return shared / "snap.db", lambda: not (shared / "snap.db").exists()
    if kind == "symlinked-dir":
        (tmp_path / "real").mkdir(mode=0o700)
        (tmp_path / "linkdir").symlink_to(tmp_path / "real")
        return tmp_path / "linkdir" / "snap.db", lambda: not (tmp_path / "real" / "snap.db").exists()
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("device", r"/dev: mode 0755 lets others in"),  # issue 13: /dev/full was replaced by a regular file
    ("symlink", r"exists \(a symlink\); cpswap writes only new regular files"),
    ("regular", r"exists \(a regular file\)"),
    ("fifo", r"exists \(a fifo\)"),
    ("open-dir", r"mode 0755 lets others in; snapshots hold every Secret"),
    ("symlinked-dir", r"not a directory \(a symlink\)"),
])
def test_snapshot_writes_only_new_regular_files_in_a_private_directory(healthy_three, tmp_path, kind, message):
    out, unchanged = _target(tmp_path, kind)
    with pytest.raises(PermanentError, match=message):
        ex.snapshot(healthy_three.connection(), out=out, progress=print)
    assert unchanged()
    assert not list(out.parent.glob("*.part")) if out.parent != Path("/dev") else True


def test_snapshot_is_0600_in_a_new_0700_directory_and_cli_refuses_a_device(healthy_three, tmp_path):
    cluster = healthy_three
    out = tmp_path / "state" / "snapshots" / "snap.db"
    info = ex.snapshot(cluster.connection(), out=out, progress=print)
    assert info.verified and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out.parent).st_mode) == 0o700
    env = {**os.environ, "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
           "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
           "CPSWAP_ETCD_ENDPOINTS": cluster.members["m1"].client}
    result = subprocess.run(["python", "-m", "cpswap", "etcd", "snapshot", "--preset", "env", "--out", "/dev/full"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "lets others in" in result.stderr and "Traceback" not in result.stderr
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)
    # --label (a surge's snapshot before its join, issue 16): a new <label>-<UTC time>.db in the directory
    labelled = subprocess.run(["python", "-m", "cpswap", "etcd", "snapshot", "--preset", "env", "--label",
                               "before-surge-new-1", "--snapshot-dir", str(tmp_path / "labelled")],
                              env=env, capture_output=True, text=True, timeout=60)
    assert labelled.returncode == 0, labelled.stderr
    (snap,) = (tmp_path / "labelled").glob("before-surge-new-1-*.db")
    assert stat.S_IMODE(snap.stat().st_mode) == 0o600 and "verified" in labelled.stdout
    stray = subprocess.run(["python", "-m", "cpswap", "etcd", "snapshot", "--preset", "env", "--out", str(out) + "2",
                            "--snapshot-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert stray.returncode == 2 and "applies with --label only" in stray.stderr


def test_remove_snapshots_into_the_private_state_directory_by_default(tmp_path):
    """Issue 13: snapshots (every Secret) went to .cpswap/snapshots in the repository, 0644."""
    cluster = EtcdCluster.start(workdir=tmp_path / "c", n=3, distinct_ips=True)
    try:
        cluster.kill("m3")
        env = {**os.environ, "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
               "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
               "CPSWAP_ETCD_ENDPOINTS": ",".join(m.client for m in cluster.members.values()),
               "CPSWAP_STATE_DIR": str(tmp_path / "state")}
        repo = tmp_path / "repo"
        repo.mkdir()
        result = subprocess.run(["python", "-m", "cpswap", "etcd", "remove", "--preset", "env", "--name", "m3",
                                 "--ip", cluster.ip("m3")], env=env, capture_output=True, text=True, timeout=120,
                                cwd=repo)
        assert result.returncode == 0, result.stderr
        assert list(repo.rglob("*")) == []
        (snap,) = (tmp_path / "state" / "snapshots").glob("before-remove-m3-*.db")
        assert stat.S_IMODE(snap.stat().st_mode) == 0o600 and stat.S_IMODE(snap.parent.stat().st_mode) == 0o700
    finally:
        cluster.stop()


@pytest.mark.parametrize("hosts, problem", [
    ({"cp1": "m1", "cp2": "m2", "cp3": "m3"}, None),
    ({"cp1": "m1", "cp2": ("m5", "127.0.0.15"), "cp3": ("m6", "127.0.0.16")},
     r"cp2: m5 \(127\.0\.0\.15\) is not an etcd member.*cp3: m6 .*member\(s\) no slot names: [0-9a-f]+ m[23] [^;]+; [0-9a-f]+ m[23] "),
    ({"cp1": "m1", "cp2": ("m2", "127.0.0.13"), "cp3": ("m3", "127.0.0.12")}, r"cp2: no member is both m2 and 127\.0\.0\.13"),
    ({"cp1": "m1", "cp2": "m2"}, r"etcd has member\(s\) no slot names: [0-9a-f]+ m3"),
])
def test_verify_adoption_on_real_etcd(healthy_three, hosts, problem):
    """The run-time check of an adoption: read-only, each slot's host a started voter, no other voter."""
    cluster = healthy_three
    triples = [(slot, *(h if isinstance(h, tuple) else (h, cluster.ip(h)))) for slot, h in hosts.items()]
    before = sorted((m.id, m.name) for m in ex.member_list(cluster.connection()))
    lines: list[str] = []
    if problem is None:
        ex.verify_adoption(cluster.connection(), hosts=triples, progress=lines.append)
        assert lines == [f"adoption verified: cp1=m1@{cluster.ip('m1')}, cp2=m2@{cluster.ip('m2')}, "
                         f"cp3=m3@{cluster.ip('m3')} are the started etcd voters"]
    else:
        with pytest.raises(UnsafeOperationError, match=problem) as info:
            ex.verify_adoption(cluster.connection(), hosts=triples, progress=lines.append)
        assert "adoption refused" in str(info.value) and "nothing was run" in str(info.value)
    assert sorted((m.id, m.name) for m in ex.member_list(cluster.connection())) == before
