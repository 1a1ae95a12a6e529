"""One membership change at a time, on real TLS etcd (issue 14): the learner rule, the membership
lock under concurrency (separate processes), and a lock whose holder was killed by PID."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cpswap.core.errors import DeadlineError, UnsafeOperationError
from cpswap.core.facts import REMOVED_PREFIX
from cpswap.core.membership import CHANGE_KEY, LOCK_PREFIX
from cpswap.executors import etcd as ex
from cpswap.executors import etcd_lock
from tests.support.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.etcd
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def three(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path, n=3, distinct_ips=True)
    yield cluster
    cluster.stop()


def names(conn) -> list[str]:
    return sorted(m.name or f"{m.id:x}" for m in ex.member_list(conn))


def lock_keys(conn) -> list[str]:
    return [h.key for h in etcd_lock.current_holders(conn)]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_pending_learner_blocks_removing_another_member_but_not_itself_and_its_join_resumes(three):
    conn = three.connection()
    m4 = three.new_member("m4")
    pending = ex.add_member(conn, peer_urls=(m4.peer,), learner=True, progress=print)
    assert pending.is_learner and not pending.started
    lines: list[str] = []
    with pytest.raises(UnsafeOperationError) as info:
        ex.remove_member(conn, name="m3", ip=three.ip("m3"), snapshot_dir=None, progress=lines.append)
    text = str(info.value)
    assert "refusing to remove m3" in text and "1 member(s) pending" in text
    assert f"{pending.id:x} (learner, added but not started, peer {m4.peer})" in text
    assert names(conn) == sorted(["m1", "m2", "m3", f"{pending.id:x}"])  # nothing removed
    assert lock_keys(conn) == []  # the lock was released on the refusal
    # the slot's own interrupted join resumes: add finds the pending member, promote finishes it
    again = ex.add_member(conn, peer_urls=(m4.peer,), learner=True, progress=lines.append)
    assert again.id == pending.id and any("already a member" in line for line in lines)
    three.start_joiner(m4, current=[three.members[n] for n in ("m1", "m2", "m3")])
    ex.promote_member(conn, member_id=pending.id, deadline_s=60, progress=print)
    ex.wait_member(conn, name="m4", ip=three.ip("m4"), max_lag=10, deadline_s=60, progress=print)
    # nothing pending any more: removing m3 is allowed again (4 -> 3 voters) and is recorded
    assert ex.remove_member(conn, name="m3", ip=three.ip("m3"), snapshot_dir=None, progress=print) == "removed"
    assert names(conn) == ["m1", "m2", "m4"]
    # one change at a time: until m3's removal is made good, no other member is removed
    with pytest.raises(UnsafeOperationError, match=r"another membership change is in progress: m3 [0-9a-f]+ .*"
                                                   r"leaving 3 of 4 voters"):
        ex.remove_member(conn, name="m2", ip=three.ip("m2"), snapshot_dir=None, progress=print)
    # an abandoned change is forgotten only on purpose
    run = subprocess.run([sys.executable, "-m", "cpswap", "etcd", "change", "--endpoints", three.members["m1"].client,
                          "--cacert", str(three.ca.cert), "--cert", str(three.cert), "--key", str(three.key),
                          "--clear", "--json"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert shown["change"]["name"] == "m3" and shown["change"]["voters_before"] == 4 and shown["cleared"] is True
    assert shown["lock_queue"] == []
    assert ex.read_change(conn) is None
    assert ex.remove_member(conn, name="m2", ip=three.ip("m2"), snapshot_dir=None, progress=print) == "removed"


def test_the_pending_member_itself_may_be_removed(three):
    conn = three.connection()
    peer = "https://127.0.0.2:2380"  # never started: etcd does not dial a member it only added
    pending = ex.add_member(conn, peer_urls=(peer,), learner=False, progress=print)  # an unstarted voter
    assert not pending.started and not pending.is_learner
    with pytest.raises(UnsafeOperationError, match=r"1 member\(s\) pending .*added but not started"):
        ex.remove_member(conn, name="m2", ip=three.ip("m2"), snapshot_dir=None, progress=print)
    assert ex.remove_member(conn, name="pending-host", ip="127.0.0.2", snapshot_dir=None, progress=print) == "removed"
    assert names(conn) == ["m1", "m2", "m3"]
    assert ex.read_change(conn) is None  # removing a pending member is no change to make good
    assert ex.remove_member(conn, name="m2", ip=three.ip("m2"), snapshot_dir=None, progress=print) == "removed"


def test_three_concurrent_removes_of_three_healthy_members_remove_at_most_one(three, tmp_path):
    conn = three.connection()
    endpoints = ",".join(m.client for m in three.members.values())
    procs = {}
    for name in ("m1", "m2", "m3"):
        argv = [sys.executable, "-m", "cpswap", "etcd", "remove", "--endpoints", endpoints,
                "--cacert", str(three.ca.cert), "--cert", str(three.cert), "--key", str(three.key),
                "--name", name, "--ip", three.ip(name), "--no-snapshot", "--json", "--deadline", "60", "--lock-wait", "60"]
        procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=cli_env(), cwd=str(tmp_path))
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err)
    removed = [n for n, (rc, out, _) in results.items() if rc == 0 and json.loads(out)["outcome"] == "removed"]
    refused = [n for n, (rc, _, err) in results.items() if rc != 0]
    assert len(removed) <= 1, results
    assert len(names(conn)) >= 2
    assert sorted(removed + refused) == ["m1", "m2", "m3"], results
    for name in refused:
        err = results[name][2]
        assert "another membership change is in progress" in err or "pending" in err, err
    # they queued: every one held the lock in turn, none raced past another's check
    assert sum("membership lock" in results[n][2] and "held for remove" in results[n][2] for n in results) == 3
    assert lock_keys(conn) == []
    record = ex.read_change(conn)
    assert record is not None and record.name == removed[0] and record.voters_before == 3
    survivor = next(n for n in three.members if n not in removed)
    client = ex._client(conn, three.members[survivor].client)
    try:  # cpswap's only keys in the cluster's etcd: the change record and the removed host's removal
        # record (the lock keys went with their leases)
        assert sorted(meta.key.decode() for _, meta in client.get_prefix("/cpswap/")) == sorted(
            [CHANGE_KEY, f"{REMOVED_PREFIX}{three.ip(removed[0])}/{removed[0]}"])
    finally:
        client.close()


HOLDER = textwrap.dedent("""
    import sys, time
    from cpswap.executors import etcd as ex
    from cpswap.executors.etcd_lock import membership_lock
    conn = ex.Connection(endpoints=tuple(sys.argv[1].split(",")), ca=sys.argv[2], cert=sys.argv[3], key=sys.argv[4])
    with membership_lock(conn, what="a holder that will be killed", ttl_s=5, progress=print):
        print("HELD", flush=True)
        time.sleep(300)
""")


def test_a_lock_whose_holder_was_killed_is_freed_by_its_lease(three):
    conn = three.connection()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, ",".join(conn.endpoints), conn.ca, conn.cert, conn.key],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip().endswith("kept alive)")
        assert holder.stdout.readline().strip() == "HELD"
        [key] = lock_keys(conn)
        assert key.startswith(LOCK_PREFIX + "/")
        # while the holder lives (its keep-alives run), a short wait gives up and names it
        with pytest.raises(DeadlineError, match=r"waiting for the membership lock held by .* pid "
                                                f"{holder.pid} \\(a holder that will be killed"), \
                etcd_lock.membership_lock(conn, what="impatient", wait_s=6.0, progress=print):
            pass
        assert lock_keys(conn) == [key]  # kept alive past its 5 s TTL
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        lines: list[str] = []
        assert ex.remove_member(three.connection(), name="m3", ip=three.ip("m3"), snapshot_dir=None, progress=lines.append,
                                lock_wait_s=30) == "removed"
        waited = time.monotonic() - started
        assert waited < 20, waited  # the 5 s lease, plus etcd's expiry check
        assert any(f"pid {holder.pid}" in line for line in lines)  # it printed whom it waited for
        assert lock_keys(three.connection("m1", "m2")) == []
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)


def test_a_control_plane_node_delete_and_a_member_remove_queue_on_the_same_lock(three):
    """`kube delete-node` of a control-plane Node takes the same lock as `etcd remove` (issue 14:
    k3s removes a deleted Node's etcd member). While a third party holds the lock, both wait in
    arrival order and change nothing; released, each runs in turn. Without an etcd connection a
    control-plane Node is not deleted at all."""
    import threading

    from cpswap.core.errors import ConfigError
    from cpswap.executors import kube
    from tests.support.kube_emulator import Emulator, _node

    conn = three.connection()
    with Emulator() as emu:
        emu.core.create_node(_node("m2", three.ip("m2")))
        with pytest.raises(ConfigError, match=r"node m2 is a control-plane Node .* nothing was deleted"):
            kube.delete_node(emu.api, name="m2", drain_first=True, drain_timeout_s=5, progress=print)
        events: list[str] = []
        results: dict[str, object] = {}

        def lock(what: str):
            return etcd_lock.membership_lock(three.connection(), what=what, wait_s=60, progress=events.append)

        def delete() -> None:
            results["delete"] = kube.delete_node(emu.api, name="m2", drain_first=True, drain_timeout_s=5,
                                                 progress=events.append, lock=lock)

        def remove() -> None:
            results["remove"] = ex.remove_member(three.connection(), name="m3", ip=three.ip("m3"), snapshot_dir=None,
                                                 progress=events.append, lock_wait_s=60)

        def queue() -> list[str]:
            return [h.what for h in etcd_lock.current_holders(conn)]

        def wait_for(predicate, what: str) -> None:
            end = time.monotonic() + 30
            while not predicate():
                assert time.monotonic() < end, f"never: {what}; queue {queue()}"
                time.sleep(0.05)

        threads = [threading.Thread(target=delete), threading.Thread(target=remove)]
        with etcd_lock.membership_lock(conn, what="another pipeline's change", progress=print):
            threads[0].start()
            wait_for(lambda: len(queue()) == 2, "the delete queued")
            threads[1].start()
            wait_for(lambda: len(queue()) == 3, "the remove queued")
            assert queue() == ["another pipeline's change", "delete control-plane node m2",
                               f"remove m3 ({three.ip('m3')})"]
            assert emu.core.read_node("m2") is not None and names(conn) == ["m1", "m2", "m3"]
        for thread in threads:
            thread.join(timeout=60)
        assert results == {"delete": "deleted", "remove": "removed"}, (results, events)
        held = [e for e in events if "held for" in e]
        assert [e.split(" held for ")[1].split(" (")[0] for e in held] == [
            "delete control-plane node m2", "remove m3"], held
        assert events.index("node m2 deleted") < events.index(held[1])  # the remove held it only after the delete
        assert [n.metadata.name for n in emu.core.list_node().items] == [] and names(conn) == ["m1", "m2"]
        assert lock_keys(conn) == []
