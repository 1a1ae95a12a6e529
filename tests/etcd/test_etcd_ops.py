"""etcd membership operations against real TLS etcd clusters started by the tests (issue 3)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from cpswap.core.errors import DeadlineError, PermanentError, UnsafeOperationError
from cpswap.executors import etcd as ex
from cpswap.executors import etcd_wire
from tests.support.etcd_cluster import EtcdCluster, digest, etcdutl_binary, etcd_binary, free_port, put_keys
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
    cluster = EtcdCluster.start(workdir=tmp_path, n=3)
    lines: list[str] = []
    try:
        conn = cluster.connection()
        put_keys(conn)
        before = digest(conn)
        cluster.kill("m3")
        survivors = cluster.connection("m1", "m2")
        assert ex.remove_member(cluster.connection(), name="m3", ip="", snapshot_dir=tmp_path / "snaps",
                                progress=lines.append) == "removed"
        assert any("quorum check: removing m3" in line and "leaves 2 healthy of 2 voters" in line for line in lines)
        assert list((tmp_path / "snaps").glob("before-remove-m3-*.db"))
        assert voters(survivors) == ["m1", "m2"] and digest(survivors) == before
        m4 = cluster.new_member("m4")
        added = ex.add_member(survivors, peer_urls=(m4.peer,), learner=True, progress=lines.append)
        assert added.is_learner
        assert [m.is_learner for m in ex.member_list(survivors) if m.id == added.id] == [True]
        cluster.start_joiner(m4, current=[cluster.members["m1"], cluster.members["m2"]])
        ex.promote_member(survivors, member_id=added.id, progress=lines.append)
        ready = ex.wait_member(survivors, name="m4", ip="", max_lag=10, deadline_s=60, progress=lines.append)
        assert ready.name == "m4" and not ready.is_learner and ready.healthy
        assert voters(survivors) == ["m1", "m2", "m4"]
        assert digest(cluster.connection("m1", "m2", "m4")) == before
        # m4 made m3's recorded removal good: the next change is allowed and clears that record
        lines.clear()
        assert ex.remove_member(cluster.connection("m1", "m2", "m4"), name="m2", ip="", snapshot_dir=None,
                                progress=lines.append) == "removed"
        assert any("the earlier removal of m3" in line and "is made good: 3 started voters again" in line
                   for line in lines)
        assert ex.read_change(cluster.connection("m1", "m4")).name == "m2"
    finally:
        cluster.stop()


def test_five_members_dead_leader_is_removed_and_replaced(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=5)
    try:
        conn = cluster.connection()
        put_keys(conn, 100)
        before = digest(conn)
        leader = leader_name(cluster, cluster.members)
        cluster.kill(leader)
        rest = [n for n in ["m1", "m2", "m3", "m4", "m5"] if n != leader]
        survivors = cluster.connection(*rest)
        assert ex.remove_member(survivors, name=leader, ip="", snapshot_dir=tmp_path / "s", progress=print) == "removed"
        assert voters(survivors) == rest
        new = cluster.new_member("m6")
        added = ex.add_member(survivors, peer_urls=(new.peer,), progress=print)
        cluster.start_joiner(new, current=[cluster.members[n] for n in rest])
        ex.promote_member(survivors, member_id=added.id, progress=print)
        ex.wait_member(survivors, name="m6", ip="", max_lag=10, deadline_s=60, progress=print)
        assert len(voters(survivors)) == 5
        assert digest(survivors) == before
    finally:
        cluster.stop()


@pytest.fixture
def three_with_m3_dead(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=3)
    cluster.kill("m3")
    yield cluster
    cluster.stop()


def test_guard_refuses_healthy_removal_while_another_is_dead_before_etcd(three_with_m3_dead, tmp_path):
    cluster = three_with_m3_dead
    conn = cluster.connection("m1", "m2")
    with pytest.raises(UnsafeOperationError) as info:
        ex.remove_member(conn, name="m2", ip="", snapshot_dir=tmp_path / "never", progress=print)
    text = str(info.value)
    assert "refusing to remove m2" in text and "leaves 1 healthy of 2 voters; quorum needs 2" in text
    assert "unhealthy voters: m3" in text
    assert voters(conn) == ["m1", "m2", "m3"]  # etcd was never asked
    assert not (tmp_path / "never").exists()  # nor was a snapshot taken


def test_remove_twice_is_idempotent(three_with_m3_dead):
    conn = three_with_m3_dead.connection("m1", "m2")
    assert ex.remove_member(conn, name="m3", ip="", snapshot_dir=None, progress=print) == "removed"
    lines: list[str] = []
    assert ex.remove_member(conn, name="m3", ip="", snapshot_dir=None, progress=lines.append) == "absent"
    assert any("already removed, nothing to do" in line for line in lines)


def test_last_voter_is_never_removed(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=1)
    try:
        with pytest.raises(UnsafeOperationError, match=r"refusing to remove m1 [0-9a-f]+: it is the last voter"):
            ex.remove_member(cluster.connection(), name="m1", ip="", snapshot_dir=None, progress=print)
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
        ex.remove_member(conn, name="x", ip="", snapshot_dir=None, deadline_s=2, progress=print)
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
    cluster = EtcdCluster.start(workdir=tmp_path, n=3)
    try:
        env = {**os.environ, "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
               "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
               "CPSWAP_ETCD_ENDPOINTS": cluster.members["m1"].client}
        run = lambda *a: subprocess.run(["cpswap", "etcd", *a], env=env, capture_output=True, text=True, timeout=60)
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
        refused = run("remove", "--preset", "env", "--name", "m2", "--ip", "127.0.0.2", "--no-snapshot")
        assert refused.returncode == 1 and "leaves 1 healthy of 2 voters; quorum needs 2" in refused.stderr
        removed = run("remove", "--preset", "env", "--name", "m3", "--ip", "127.0.0.3", "--snapshot-dir",
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
    with pytest.raises(PermanentError, match=r"--key .*client.key: file not found"):
        with ex.preset_connection(preset="k3s"):
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
