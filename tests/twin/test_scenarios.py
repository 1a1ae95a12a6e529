"""End-to-end swaps on the twin (issue 6): real etcd with TLS on fake hosts in network namespaces,
real sshd, strict installer shims, the kube emulator, and the replayer standing in for `pulumi up`."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from cpswap.executors import etcd as ex
from tests.support.pulumi_mocks import ROOT, run_program
from tests.support.twin.cluster import Twin, digest
from tests.support.twin.hosts import available
from tests.support.twin.replayer import Replayer, Runner, StepFailed

pytestmark = [pytest.mark.twin, pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")]

OLD, N2, N3, NEW = "lzx-ha-env", "lzx-ha-env-2", "lzx-ha-env-3", "lzx-test-add-node"


class Sampler:
    """Reads etcd linearizably from the operator's side every 100 ms (bounded), recording every
    moment quorum was missing."""

    def __init__(self, twin: Twin, *, limit_s: float = 240) -> None:
        self.twin, self.limit_s = twin, limit_s
        self.samples, self.failures = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < end:
            conn = self.twin.etcd_connection(timeout=2)
            healthy = any(ex.endpoint_health(conn, e).healthy for e in conn.endpoints)
            self.samples += 1
            if not healthy:
                self.failures.append(time.strftime("%H:%M:%S"))
            self._stop.wait(0.1)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    (directory / ".cpswap").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
    return directory


def up(twin: Twin, replayer: Replayer, workdir: Path, slots: dict[str, str]):
    recording = run_program(config=twin.stack_config(members=slots), secrets=twin.secrets(), stack="twin",
                            cwd=workdir)
    assert recording.error is None, recording.error
    steps = replayer.up(recording.resources)
    (workdir / ".cpswap" / "applied-twin.json").write_text(json.dumps({"membership": recording.outputs["membership"]}))
    return recording, steps


def put_keys(twin: Twin, count: int = 200) -> None:
    conn = twin.etcd_connection()
    client = ex._client(conn, conn.endpoints[0])
    try:
        for i in range(count):
            client.put(f"/registry/twin/key-{i:04d}", f"value-{i}")
    finally:
        client.close()


def make_leader(twin: Twin, name: str) -> None:
    conn = twin.etcd_connection()
    members = ex.member_list(conn)
    target = next(m for m in members if m.name.startswith(name + "-") and m.name.count("-") == name.count("-") + 1)
    for endpoint in conn.endpoints:
        status = ex.endpoint_status(conn, endpoint)
        if status.ok and status.member_id == status.leader_id:
            if status.leader_id != target.id:
                client = ex._client(conn, endpoint)
                try:
                    client.maintenancestub.MoveLeader(ex.etcdrpc.MoveLeaderRequest(targetID=target.id), 5)
                finally:
                    client.close()
            break
    end = time.monotonic() + 10
    while ex.endpoint_status(conn, target.client_urls[0]).leader_id != target.id:
        assert time.monotonic() < end, "leadership did not move"
        time.sleep(0.1)


@pytest.fixture
def twin(tmp_path):
    instance = Twin.start(tmp_path / "twin", members=[OLD, N2, N3], spares=[NEW])
    yield instance
    instance.close()
    assert instance.net.leftovers() == []


def test_seed_004_swap_on_the_twin(twin, tmp_path):
    workdir = project(tmp_path)
    replayer = Replayer(Runner(cwd=workdir, timeout_s=240))
    put_keys(twin)
    before = digest(twin.etcd_connection())
    members_before = sorted(m.name for m in ex.member_list(twin.etcd_connection()))

    # adoption: the first `up` on a healthy cluster changes nothing on it
    _, steps = up(twin, replayer, workdir, {"cp1": OLD, "cp2": N2, "cp3": N3})
    assert {s.op for s in steps} == {"create"}
    assert sorted(m.name for m in ex.member_list(twin.etcd_connection())) == members_before
    assert digest(twin.etcd_connection()) == before
    # a second `up` with no config change runs no commands
    _, steps = up(twin, replayer, workdir, {"cp1": OLD, "cp2": N2, "cp3": N3})
    assert replayer.commands_run() == [] and {s.op for s in steps} == {"noop"}

    make_leader(twin, OLD)
    twin.kill(OLD)
    dead = twin.net.hosts[OLD]
    connections_at_death = dead.connections()
    with Sampler(twin) as sampler:
        started = time.monotonic()
        _, steps = up(twin, replayer, workdir, {"cp1": NEW, "cp2": N2, "cp3": N3})
        elapsed = time.monotonic() - started
    print(f"\nswap wall time {elapsed:.1f}s; steps: {[(s.name, s.op, s.host) for s in replayer.commands_run()]}")
    ran = [(s.name, s.op) for s in replayer.commands_run() if s.name.startswith("cp1")]
    assert ran[:2] == [("cp1-etcd-leave", "replace-delete"), ("cp1-etcd-leave", "create")]
    assert ("cp1-join", "create") in ran and ("cp1-pvcs", "create") in ran
    assert all(s.host != dead.ip for s in replayer.steps), "a step targeted the dead host"
    assert not any(s.name.startswith(("cp2", "cp3")) for s in replayer.commands_run()), "other slots touched"

    conn = twin.etcd_connection()
    members = ex.member_list(conn)
    assert sorted(m.name.rsplit("-", 1)[0] for m in members) == sorted([N2, N3, NEW])
    assert not any(m.is_learner for m in members)
    assert all(ex.endpoint_health(conn, m.client_urls[0]).healthy for m in members)
    assert digest(conn) == before
    nodes = {n.metadata.name: n for n in twin.emulator.core.list_node().items}
    assert sorted(nodes) == sorted([N2, N3, NEW])
    assert not any(n.spec.unschedulable for n in nodes.values())
    pods = {f"{p.metadata.namespace}/{p.metadata.name}": p.spec.node_name
            for p in twin.emulator.core.list_pod_for_all_namespaces().items}
    assert pods["onecloud-minio/minio-1"] == NEW and pods["onecloud-monitoring/monitor-minio-1"] == NEW
    assert [n for k, n in pods.items() if k.startswith("onecloud/default-victoria-metrics")] == [NEW]
    assert sampler.samples > 5 and sampler.failures == [], f"quorum lost at {sampler.failures}"
    assert dead.connections() == connections_at_death
    assert list((workdir / ".cpswap" / "snapshots").glob("before-remove-*.db"))


def test_plain_k3s_swap_converges_after_the_join_fails_once(tmp_path):
    twin = Twin.start(tmp_path / "twin", members=[OLD, N2, N3], spares=[NEW], seed_workloads=False)
    try:
        workdir = project(tmp_path)
        replayer = Replayer(Runner(cwd=workdir, timeout_s=240))
        put_keys(twin, 50)
        before = digest(twin.etcd_connection())
        slots = {"cp1": OLD, "cp2": N2, "cp3": N3}

        def k3s_up(members):
            recording = run_program(config=twin.stack_config(members=members, distribution="k3s"),
                                    secrets=twin.secrets(), stack="twin", cwd=workdir)
            assert recording.error is None, recording.error
            steps = replayer.up(recording.resources)
            (workdir / ".cpswap" / "applied-twin.json").write_text(
                json.dumps({"membership": recording.outputs["membership"]}))
            return steps

        k3s_up(slots)  # adoption: each join sees an initialised k3s data dir and does nothing
        assert digest(twin.etcd_connection()) == before
        twin.kill(N2)
        dead = twin.net.hosts[N2]
        (twin.net.hosts[NEW].root / "fail-once").write_text("the first join fails")
        swapped = {**slots, "cp2": NEW}
        with pytest.raises(StepFailed, match="create cp2-join on 10.250.* failed: rc=1: .*simulated failure"):
            k3s_up(swapped)
        steps = k3s_up(swapped)  # re-running `up` converges
        ran = [(s.name, s.op) for s in steps if s.op != "noop"]
        assert ("cp2-join", "create") in ran and ("cp2-etcd-leave", "replace-delete") not in ran
        conn = twin.etcd_connection()
        members = ex.member_list(conn)
        assert sorted(m.name.rsplit("-", 1)[0] for m in members) == sorted([OLD, N3, NEW])
        assert all(not m.is_learner and ex.endpoint_health(conn, m.client_urls[0]).healthy for m in members)
        assert digest(conn) == before
        assert all(s.host != dead.ip for s in replayer.steps)
        assert sorted(n.metadata.name for n in twin.emulator.core.list_node().items) == sorted([OLD, N3, NEW])
    finally:
        twin.close()
    assert twin.net.leftovers() == []


def test_kubeadm_rebuilds_keeping_the_ip_non_first_then_first(tmp_path):
    """Seed 001's situation on kubeadm: a member is rebuilt with a new OS and name but its IP.
    First a non-first member (cp2), then the first one (cp1, which holds the VIP)."""
    names = ["kadm-1", "kadm-2", "kadm-3"]
    twin = Twin.start(tmp_path / "twin", members=names, spares=[], seed_workloads=False, layout="kubeadm")
    try:
        workdir = project(tmp_path)
        replayer = Replayer(Runner(cwd=workdir, timeout_s=240))
        put_keys(twin, 50)
        before = digest(twin.etcd_connection())
        slots = {"cp1": "kadm-1", "cp2": "kadm-2", "cp3": "kadm-3"}

        def kubeadm_up(members):
            recording = run_program(config=twin.stack_config(members=members, distribution="kubeadm"),
                                    secrets=twin.secrets(), stack="twin", cwd=workdir)
            assert recording.error is None, recording.error
            assert any("keeps IP" in line for line in recording.logs) or members == slots
            steps = replayer.up(recording.resources)
            (workdir / ".cpswap" / "applied-twin.json").write_text(
                json.dumps({"membership": recording.outputs["membership"]}))
            return steps

        kubeadm_up(slots)  # adoption: manifests exist, so no join runs
        assert sorted(m.name for m in ex.member_list(twin.etcd_connection())) == names
        for slot, old, new in (("cp2", "kadm-2", "kadm-2-ubuntu"), ("cp1", "kadm-1", "kadm-1-ubuntu")):
            ip = twin.net.hosts[old].ip
            twin.kill(old)
            twin.add_rebuilt_host(new, ip=ip)
            slots = {**slots, slot: new}
            started = time.monotonic()
            steps = kubeadm_up(slots)
            print(f"\n{slot} rebuild: {time.monotonic() - started:.1f}s: "
                  f"{[(s.name, s.op, round(d, 1)) for s, d in replayer.durations[-8:]]}")
            ran = [(s.name, s.op) for s in steps if s.op != "noop"]
            assert (f"{slot}-etcd-leave", "replace-delete") in ran and (f"{slot}-join", "create") in ran
            prepare = next(s for s in steps if s.name == f"{slot}-join-prepare" and s.op == "create")
            assert prepare.host == twin.net.vip
            conn = twin.etcd_connection()
            members = ex.member_list(conn)
            assert sorted(m.name for m in members) == sorted(slots.values())
            assert all(not m.is_learner and ex.endpoint_health(conn, m.client_urls[0]).healthy for m in members)
            assert digest(conn) == before
        log = "\n".join(replayer.runner.log)
        state = json.loads((twin.workdir / "kubeadm.json").read_text())
        for secret in [*state["tokens"], *state["keys"]]:
            assert secret not in log, "a join token or certificate key reached the command log"
    finally:
        twin.close()
    assert twin.net.leftovers() == []
