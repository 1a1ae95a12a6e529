"""End-to-end OpenShift swaps on the twin (issue 7, seed 003): the REAL program, recorded under
Pulumi mocks and carried out by the replayer, against ``OpenShiftTwin`` (the emulated Machine API
and cluster-etcd-operator over real etcd with TLS, real sshd on fake hosts).

- Machine case (2.4.1): a member's host dies; its slot is edited to the host the Machine API will
  give the next Machine. The member is removed through the survivors, its secrets deleted, its
  Machine replaced by a clean copy under a new name, and the etcd operator installs etcd on the
  new node on its own: the redeploy step waits while the new node is below the latest revision and
  forces nothing.
- Crashloop case (2.4.2): a member's etcd crashloops on a live host; ``rebuild: 1`` keeps its name,
  IP and Machine, moves the static pod manifest and data aside on the node, and forces a
  redeployment that re-adds the member.

Both start with adoption (the first ``up`` changes nothing on the cluster) and end with a no-op
``up``."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client

from cpswap.core.slots import ADOPTION_CHECK
from tests.support.etcd_cluster import digest, put_keys
from tests.support.pulumi_mocks import run_program
from tests.support.twin.cluster import etcdctl_binary
from tests.support.twin.hosts import available
from tests.support.twin.openshift import (ETCD_CR, ETCD_NS, INITIAL_REVISION, MACHINE_NS, MACHINES, MANIFEST,
                                          SECRET_KINDS, OpenShiftTwin)
from tests.support.twin.operator import activated_environ
from tests.support.twin.replayer import Replayer, Runner
from tests.twin.test_openshift_emulator import wait_for
from tests.twin.test_scenarios import Sampler, project, replay_up

pytestmark = [pytest.mark.twin, pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")]

A, B, C, D = "ocp-cp-a", "ocp-cp-b", "ocp-cp-c", "ocp-cp-d"
# the emulated operators must outlive a whole scenario (adoption, swap, no-op up) on a loaded machine:
# their default 240 s ran out mid-swap under a load average of 15 (the Machine's hook never released)
LOOPS_S = 900
SCENARIO_TIMEOUT_S = 900
# a step still running after this is a hang (EngineHang); well above a step's time on a loaded machine
# (a recover-pvcs passed 120 s at load 20), below the scenario's own timeout so the hang is named
HARNESS_S = 400
SLOTS = {"cp1": A, "cp2": B, "cp3": C}


def ocp_up(ocp: OpenShiftTwin, replayer: Replayer, workdir: Path, slots: dict[str, str | dict]):
    """One replayed `pulumi up` of the program (distribution openshift) for ``slots``; prints how
    long the recording and the replay took (where a scenario's time goes)."""
    started_at = time.monotonic()
    recording = run_program(config=ocp.twin.stack_config(members=slots, distribution="openshift"),
                            secrets=ocp.twin.secrets(), stack="twin", cwd=workdir)
    assert recording.error is None, recording.error
    recorded_at = time.monotonic()
    ran_before = len(replayer.durations)
    steps = replay_up(replayer, workdir, recording)
    commands = replayer.durations[ran_before:]
    print(f"\nup: recording {recorded_at - started_at:.1f}s, replay {time.monotonic() - recorded_at:.1f}s "
          f"({len(commands)} command(s), {sum(d for _, d in commands):.1f}s in them)")
    return recording, steps


def timed_up(label: str, ocp: OpenShiftTwin, replayer: Replayer, workdir: Path, slots: dict[str, str | dict]):
    """One `up` with quorum sampled throughout; prints its duration and its steps' durations."""
    with Sampler(ocp.twin, limit_s=120) as sampler:
        started_at = time.monotonic()
        _, steps = ocp_up(ocp, replayer, workdir, slots)
        elapsed = time.monotonic() - started_at
    print(f"\n{label}: {elapsed:.1f}s: {[(s.name, s.op, round(d, 1)) for s, d in replayer.durations[-9:]]}")
    return steps, sampler


def ran(steps) -> list[tuple[str, str]]:
    return [(s.name, s.op) for s in steps if s.op != "noop"]


def _custom(ocp: OpenShiftTwin) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(ocp.twin.emulator.api_client)


def machines(ocp: OpenShiftTwin) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in _custom(ocp).list_namespaced_custom_object(*MACHINES)["items"]}


def etcd_cr(ocp: OpenShiftTwin) -> dict:
    return _custom(ocp).get_cluster_custom_object(*ETCD_CR, "cluster")


def condition(ocp: OpenShiftTwin, kind: str) -> dict:
    return next(c for c in etcd_cr(ocp)["status"]["conditions"] if c["type"] == kind)


def secrets(ocp: OpenShiftTwin) -> set[str]:
    return {s.metadata.name for s in ocp.twin.emulator.core.list_namespaced_secret(ETCD_NS).items}


def pods(ocp: OpenShiftTwin) -> dict[str, client.V1Pod]:
    return {p.metadata.name: p for p in ocp.twin.emulator.core.list_namespaced_pod(ETCD_NS).items}


def nodes(ocp: OpenShiftTwin) -> list[str]:
    return sorted(n.metadata.name for n in ocp.twin.emulator.core.list_node().items)


def members(ocp: OpenShiftTwin) -> list[dict]:
    conn = ocp.twin.etcd_connection()
    result = subprocess.run([etcdctl_binary(), f"--endpoints={','.join(conn.endpoints)}", f"--cacert={conn.ca}",
                             f"--cert={conn.cert}", f"--key={conn.key}", "--command-timeout=5s", "member", "list",
                             "-w", "json"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["members"]


def healthy_voters(ocp: OpenShiftTwin) -> list[str]:
    """Names of the members if every one is a started, healthy voter; else []."""
    listed = members(ocp)
    if any(m.get("isLearner") or not m.get("name") for m in listed):
        return []
    urls = [m["clientURLs"][0] for m in listed]
    conn = ocp.twin.etcd_connection()
    health = subprocess.run([etcdctl_binary(), f"--endpoints={','.join(urls)}", f"--cacert={conn.ca}",
                             f"--cert={conn.cert}", f"--key={conn.key}", "endpoint", "health", "-w", "json",
                             "--command-timeout=3s"], capture_output=True, text=True, timeout=30)
    if health.returncode != 0 or not all(r["health"] for r in json.loads(health.stdout)):
        return []
    return sorted(m["name"] for m in listed)


def stdout_of(replayer: Replayer, name: str) -> str:
    return next(s.outputs["stdout"] for s in replayer.state.values() if s.name == name)


def log_of(replayer: Replayer, name: str, op: str) -> str:
    """The latest run of ``op`` on ``name`` (an adoption's create comes first)."""
    return [entry for entry in replayer.runner.log if entry.startswith(f"{op} {name} ")][-1]


def assert_no_errors(ocp: OpenShiftTwin) -> None:
    assert ocp.ceo.errors == [], ocp.ceo.errors
    assert ocp.machines.errors == [], ocp.machines.errors
    assert ocp.twin.controllers.errors == [], ocp.twin.controllers.errors


def adopt(ocp: OpenShiftTwin, replayer: Replayer, workdir: Path, *, data: str) -> None:
    """The first `up` on a healthy cluster changes nothing on it: no Machine deleted or created, no
    revision rolled, no installer run, the same members and data."""
    machines_before = {n: m["metadata"]["uid"] for n, m in machines(ocp).items()}
    members_before = sorted((m["ID"], m["name"]) for m in members(ocp))
    _, steps = ocp_up(ocp, replayer, workdir, SLOTS)
    assert {s.op for s in steps} == {"create"}
    assert {n: m["metadata"]["uid"] for n, m in machines(ocp).items()} == machines_before
    assert ocp.machines.deleted == set() and ocp.machines.failed == {}
    assert sorted((m["ID"], m["name"]) for m in members(ocp)) == members_before
    assert etcd_cr(ocp)["spec"]["forceRedeploymentReason"] == "" and ocp.ceo.revisions == []
    assert ocp.ceo.ssh_targets == []
    for slot in SLOTS:
        assert stdout_of(replayer, f"{slot}-redeploy") == "not-needed"
        assert stdout_of(replayer, f"{slot}-machine") == ocp.machine_of[SLOTS[slot]]
    assert not any(s.name.endswith("-etcd-reset") for s in steps)
    assert digest(ocp.twin.etcd_connection()) == data


@pytest.mark.timeout(SCENARIO_TIMEOUT_S)
def test_machine_case_replaces_the_dead_members_machine(started, tmp_path):
    """Seed 003 2.4.1 with the real program: A's machine is gone; cp1 becomes D, the host the
    Machine API gives the next Machine."""
    started_at = time.monotonic()
    ocp = started(members=[A, B, C], spares=[D], lifetime_s=LOOPS_S)
    print(f"\ntwin started in {time.monotonic() - started_at:.1f}s")
    twin = ocp.twin
    workdir = project(tmp_path)
    replayer = Replayer(Runner(cwd=workdir, timeout_s=HARNESS_S, environ=activated_environ()))
    put_keys(twin.etcd_connection(), 100, prefix="/registry/ocp")
    before = digest(twin.etcd_connection())
    adopt(ocp, replayer, workdir, data=before)

    old_machine = machines(ocp)[ocp.machine_of[A]]
    twin.kill(A)
    dead = twin.net.hosts[A]
    connections_at_death = dead.connections()
    wait_for("A reported unhealthy", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == f"2 of 3 members are available, {A} is unhealthy")
    # A's kubelet is gone with its host: its mirror pod still reads Running and Ready (the runbook's
    # own listing shows it so); the leave must not pick it
    stale = pods(ocp)[f"etcd-{A}"]
    assert stale.status.phase == "Running" and all(s.ready for s in stale.status.container_statuses)
    swapped = {**SLOTS, "cp1": D}
    steps, sampler = timed_up("machine case", ocp, replayer, workdir, swapped)
    # the slot's read-only preflight (issue 14) first; the first `up` after the adoption drops the
    # adoption check from state last (no delete command: its provider runs nothing)
    assert ran(steps) == [
        ("cp1-preflight", "replace-delete"), ("cp1-preflight", "create"),
        ("cp1-etcd-leave", "replace-delete"), ("cp1-etcd-leave", "create"),
        ("cp1-etcd-secrets", "replace-delete"), ("cp1-etcd-secrets", "create"),
        ("cp1-machine", "replace-delete"), ("cp1-machine", "create"),
        ("cp1-redeploy", "replace-delete"), ("cp1-redeploy", "create"),
        ("cp1-verify", "replace-delete"), ("cp1-verify", "create"),
        ("cp1-pvcs", "replace-delete"), ("cp1-pvcs", "create"),
        ("cp1-node-labels", "replace-delete"), ("cp1-node-labels", "create"),
        (ADOPTION_CHECK, "delete")]
    assert all(s.host != dead.ip for s in replayer.steps), "a step targeted the dead host"

    # 1. the member left through the survivors (the departing node's stale pod is not used)
    leave = log_of(replayer, "cp1-etcd-leave", "replace-delete")
    survivors = {f"https://{twin.net.hosts[n].ip}:2379" for n in (B, C)}
    snapshot_line = next(line for line in leave.splitlines() if line.startswith("snapshot "))
    assert any(f"from {url}:" in snapshot_line for url in survivors), leave
    assert f"{A} " in leave and "removed" in leave, leave
    # 2. its three secrets are gone
    assert not any(name.endswith(A) for name in secrets(ocp)) and ocp.leftover_secrets() == []
    # 3. the old Machine was deleted and a clean copy created under a new name, on D
    now = machines(ocp)
    new_name = stdout_of(replayer, "cp1-machine")
    assert new_name == "twin-master-3" and ocp.machine_of[A] not in now and ocp.machine_of[A] in ocp.machines.deleted
    assert sorted(now) == sorted([ocp.machine_of[B], ocp.machine_of[C], new_name])
    new = now[new_name]
    assert new["status"]["phase"] == "Running" and new["status"]["nodeRef"]["name"] == D
    assert "errorMessage" not in new["status"] and ocp.machines.failed == {}
    assert new["spec"]["providerSpec"] == old_machine["spec"]["providerSpec"]
    assert new["spec"]["providerID"] != old_machine["spec"]["providerID"]
    assert ocp.machines.terminated_live == []
    kept = twin.emulator.core.read_namespaced_config_map("cpswap-machine-cp1", MACHINE_NS)
    assert json.loads(kept.data["machine.json"])["metadata"]["name"] == ocp.machine_of[A]
    # 4. the CEO scaled D in by itself: redeploy waited while D was below the latest revision in
    # status.nodeStatuses (the operator's own signal, issue 12's race) and forced nothing, so no
    # revision was rolled and the quorum guard was never touched
    assert stdout_of(replayer, "cp1-redeploy") == "not-needed"
    redeploy = log_of(replayer, "cp1-redeploy", "create")
    assert f"etcd pod on {D} is Running and Ready" in redeploy, redeploy
    assert ocp.ceo.revisions == [] and ocp.ceo.unsafe_at_revision == [] and ocp.ceo.blocked == {}
    assert ocp.ceo.installs == [(D, INITIAL_REVISION)]
    assert etcd_cr(ocp)["spec"]["forceRedeploymentReason"] == ""
    assert "quorum guard" not in redeploy and "cpswap.io/quorum-guard-disabled-by" not in (
        etcd_cr(ocp)["metadata"].get("annotations") or {})
    # the member was removed by hand before the Machine's deletion: its preDrain hook was released
    assert "membership of " + A + ": cpswap" in leave and ocp.ceo.removed_members == []
    assert ocp.ceo.ssh_targets == [D]
    # 5. three healthy voters, the data intact, quorum throughout, the dead host never contacted
    assert healthy_voters(ocp) == sorted([B, C, D])
    assert digest(twin.etcd_connection()) == before
    assert nodes(ocp) == sorted([B, C, D])
    assert sorted(pods(ocp)) == [f"etcd-{n}" for n in sorted([B, C, D])]
    assert {f"{k}-{D}" for k in SECRET_KINDS} <= secrets(ocp)
    assert (twin.net.hosts[D].root / MANIFEST).exists()
    wait_for("3 members available", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == "3 members are available")
    assert sampler.samples > 5 and sampler.failures == [], f"quorum lost at {sampler.failures}"
    assert dead.connections() == connections_at_death, "the departed host was contacted"
    assert list((workdir / ".cpswap" / "snapshots").glob(f"before-remove-{A}-*.db"))

    # a second `up` with no change runs nothing
    _, steps = ocp_up(ocp, replayer, workdir, swapped)
    assert replayer.commands_run() == [] and {s.op for s in steps} == {"noop"}
    assert dead.connections() == connections_at_death
    assert_no_errors(ocp)


@pytest.mark.timeout(SCENARIO_TIMEOUT_S)
def test_crashloop_case_resets_etcd_on_the_node_and_keeps_the_machine(started, tmp_path):
    """Seed 003 2.4.2 with the real program: C's etcd crashloops on a live host; cp3 gets
    ``rebuild: 1`` with the same name and IP."""
    ocp = started(members=[A, B, C], lifetime_s=LOOPS_S)
    twin = ocp.twin
    workdir = project(tmp_path)
    replayer = Replayer(Runner(cwd=workdir, timeout_s=HARNESS_S, environ=activated_environ()))
    put_keys(twin.etcd_connection(), 100, prefix="/registry/ocp")
    before = digest(twin.etcd_connection())
    adopt(ocp, replayer, workdir, data=before)
    machines_before = {n: m["metadata"]["uid"] for n, m in machines(ocp).items()}
    old_id = next(m["ID"] for m in members(ocp) if m["name"] == C)

    ocp.crashloop(C)
    host = twin.net.hosts[C]
    wait_for("C reported unhealthy", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == f"2 of 3 members are available, {C} is unhealthy")
    rebuilt = {**SLOTS, "cp3": {"name": C, "ip": host.ip, "rebuild": 1}}
    real_backup = Path("/var/lib/etcd-backup")  # the test machine's own: the reset must not reach it
    real_before = sorted(real_backup.iterdir()) if real_backup.is_dir() else []
    steps, sampler = timed_up("crashloop case", ocp, replayer, workdir, rebuilt)
    # the slot's read-only preflight (issue 14) first; the first `up` after the adoption drops the
    # adoption check from state last (no delete command: its provider runs nothing)
    assert ran(steps) == [
        ("cp3-preflight", "replace-delete"), ("cp3-preflight", "create"),
        ("cp3-etcd-leave", "replace-delete"), ("cp3-etcd-leave", "create"),
        ("cp3-etcd-secrets", "replace-delete"), ("cp3-etcd-secrets", "create"),
        ("cp3-etcd-reset", "create"),
        ("cp3-redeploy", "replace-delete"), ("cp3-redeploy", "create"),
        ("cp3-verify", "replace-delete"), ("cp3-verify", "create"),
        ("cp3-pvcs", "replace-delete"), ("cp3-pvcs", "create"),
        (ADOPTION_CHECK, "delete")]
    assert ("cp3-machine", "noop") in [(s.name, s.op) for s in steps]
    assert not any(s.name.startswith(("cp1", "cp2")) for s in replayer.commands_run()), "other slots touched"

    # the member left through the other nodes' healthy pods
    leave = log_of(replayer, "cp3-etcd-leave", "replace-delete")
    survivors = {f"https://{twin.net.hosts[n].ip}:2379" for n in (A, B)}
    snapshot_line = next(line for line in leave.splitlines() if line.startswith("snapshot "))
    assert any(f"from {url}:" in snapshot_line for url in survivors), leave
    # the reset moved the manifest and the data aside into the node's own /var/lib/etcd-backup
    reset = next(s for s in replayer.steps if s.name == "cp3-etcd-reset")
    assert reset.host == host.ip
    backup = host.root / "var-lib-etcd-backup"
    assert len(list(backup.glob("etcd-pod.yaml.*"))) == 1
    moved = list(backup.glob("etcd-data.*"))
    assert len(moved) == 1 and (moved[0] / "member").is_dir()
    assert not any(twin.net.hosts[n].root.joinpath("var-lib-etcd-backup").exists() and
                   any(twin.net.hosts[n].root.joinpath("var-lib-etcd-backup").iterdir()) for n in (A, B))
    assert (sorted(real_backup.iterdir()) if real_backup.is_dir() else []) == real_before
    assert any(f"mirror pod etcd-{C} removed" in e for e in ocp.ceo.events)
    # the Machine was kept; a unique reason rolled a revision that re-added C under its name and IP
    assert {n: m["metadata"]["uid"] for n, m in machines(ocp).items()} == machines_before
    assert ocp.machines.deleted == set() and ocp.machines.terminated_live == []
    reason = stdout_of(replayer, "cp3-redeploy")
    assert reason.startswith(f"cpswap-cp3-{C}-r1-"), reason
    assert ocp.ceo.revisions == [(INITIAL_REVISION + 1, reason)]
    # the revision controller's precondition refuses with 2 of 2 healthy members: the redeploy had the
    # quorum guard off for that revision, and it is back on
    redeploy = log_of(replayer, "cp3-redeploy", "create")
    assert "2 healthy member(s) out of the 3 required" in redeploy and "quorum guard turned back on" in redeploy
    assert ocp.ceo.unsafe_at_revision == [True]
    assert "useUnsupportedUnsafeNonHANonProductionUnstableEtcd" not in (
        etcd_cr(ocp)["spec"].get("unsupportedConfigOverrides") or {})
    assert "cpswap.io/quorum-guard-disabled-by" not in (etcd_cr(ocp)["metadata"].get("annotations") or {})
    assert ocp.ceo.installs == [(C, INITIAL_REVISION + 1)] and ocp.ceo.ssh_targets == [C]
    assert healthy_voters(ocp) == sorted([A, B, C])
    member = next(m for m in members(ocp) if m["name"] == C)
    assert member["ID"] != old_id and member["peerURLs"] == [f"https://{host.ip}:2380"]
    assert digest(twin.etcd_connection()) == before
    assert ocp.leftover_secrets() == [] and {f"{k}-{C}" for k in SECRET_KINDS} <= secrets(ocp)
    pod = pods(ocp)[f"etcd-{C}"]
    assert pod.status.phase == "Running" and all(s.ready for s in pod.status.container_statuses)
    wait_for("conditions settled", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == "3 members are available" and condition(ocp, "NodeInstallerProgressing")["reason"]
             == "AllNodesAtLatestRevision")
    assert sampler.samples > 5 and sampler.failures == [], f"quorum lost at {sampler.failures}"

    # a second `up` with no change runs nothing
    _, steps = ocp_up(ocp, replayer, workdir, rebuilt)
    assert replayer.commands_run() == [] and {s.op for s in steps} == {"noop"}
    assert_no_errors(ocp)
