"""OpenShift with an Active ControlPlaneMachineSet (issue 12): the REAL program, recorded under
Pulumi mocks and carried out by the replayer, against ``OpenShiftTwin(cpms="Active")`` (the
emulated CPMS, Machine API with preDrain hooks, and cluster-etcd-operator with its machine
deletion hooks, member removal controller and revision precondition, over real etcd and sshd).

A member's host dies; its slot is edited to the host the next Machine lands on. cpswap leaves the
member to the etcd operator (CPMS Active, the Machine carries the operator's hook), deletes the
Machine, creates NO copy and adopts the one Machine the CPMS created. Afterwards: exactly one
replacement Machine, 3 healthy voters, the data intact, quorum at every sample, the dead host
never contacted, and a further `up` runs nothing."""
from __future__ import annotations

import time

import pytest

from tests.support.etcd_cluster import digest, put_keys
from tests.support.twin.hosts import available
from tests.support.twin.openshift import INITIAL_REVISION
from tests.support.twin.replayer import Replayer, Runner
from tests.twin.test_openshift_emulator import wait_for
from tests.twin.test_openshift_scenarios import (A, B, C, D, HARNESS_S, LOOPS_S, SCENARIO_TIMEOUT_S, SLOTS, adopt,
                                                 assert_no_errors, condition, healthy_voters, log_of, machines, nodes,
                                                 ocp_up, ran, stdout_of, timed_up)
from tests.twin.test_scenarios import project

pytestmark = [pytest.mark.twin, pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")]


@pytest.mark.timeout(SCENARIO_TIMEOUT_S)
def test_active_cpms_replaces_the_machine_and_the_operator_owns_the_member(started, tmp_path):
    started_at = time.monotonic()
    ocp = started(members=[A, B, C], spares=[D], cpms="Active", lifetime_s=LOOPS_S)
    twin = ocp.twin
    workdir = project(tmp_path)
    replayer = Replayer(Runner(cwd=workdir, timeout_s=HARNESS_S))
    put_keys(twin.etcd_connection(), 100, prefix="/registry/ocp")
    before = digest(twin.etcd_connection())
    adopt(ocp, replayer, workdir, data=before)
    assert ocp.machines.cpms_created == []

    twin.kill(A)
    dead = twin.net.hosts[A]
    connections_at_death = dead.connections()
    wait_for("A reported unhealthy", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == f"2 of 3 members are available, {A} is unhealthy")
    swapped = {**SLOTS, "cp1": D}
    steps, sampler = timed_up("active CPMS", ocp, replayer, workdir, swapped)
    assert ("cp1-machine", "create") in ran(steps) and ("cp1-etcd-leave", "replace-delete") in ran(steps)
    assert all(s.host != dead.ip for s in replayer.steps), "a step targeted the dead host"

    # the leave took a snapshot and left the member to the etcd operator, which removed it once the
    # Machine was being deleted (its preDrain hook held the drain until then)
    leave = log_of(replayer, "cp1-etcd-leave", "replace-delete")
    assert "membership of " + A + ": operator" in leave and "left to the etcd operator" in leave, leave
    assert list((workdir / ".cpswap" / "snapshots").glob(f"before-remove-{A}-*.db"))
    assert ocp.ceo.removed_members == [A]
    assert ocp.machine_of[A] in ocp.machines.drain_blocked
    # exactly one replacement Machine, made by the CPMS and adopted; cpswap created none
    assert len(ocp.machines.cpms_created) == 1, ocp.machines.cpms_created
    replacement = ocp.machines.cpms_created[0]
    assert stdout_of(replayer, "cp1-machine") == replacement
    now = machines(ocp)
    assert sorted(now) == sorted([ocp.machine_of[B], ocp.machine_of[C], replacement])
    assert now[replacement]["status"]["nodeRef"]["name"] == D and ocp.machines.failed == {}
    assert now[replacement]["metadata"]["ownerReferences"][0]["kind"] == "ControlPlaneMachineSet"
    # the operator scaled D in by itself; redeploy waited for it and forced no revision (issue 12's race)
    assert stdout_of(replayer, "cp1-redeploy") == "not-needed"
    assert ocp.ceo.revisions == [] and ocp.ceo.unsafe_at_revision == [] and ocp.ceo.installs == [(D, INITIAL_REVISION)]
    # 3 healthy voters, the data intact, quorum throughout, the dead host never contacted
    assert healthy_voters(ocp) == sorted([B, C, D])
    assert digest(twin.etcd_connection()) == before
    assert nodes(ocp) == sorted([B, C, D])
    assert ocp.ceo.ssh_targets == [D]
    wait_for("3 members available", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == "3 members are available")
    assert sampler.samples > 5 and sampler.failures == [], f"quorum lost at {sampler.failures}"
    assert dead.connections() == connections_at_death, "the departed host was contacted"

    _, steps = ocp_up(ocp, replayer, workdir, swapped)
    assert replayer.commands_run() == [] and {s.op for s in steps} == {"noop"}
    assert len(ocp.machines.cpms_created) == 1
    assert_no_errors(ocp)
    print(f"\nactive CPMS scenario: {time.monotonic() - started_at:.1f}s")
