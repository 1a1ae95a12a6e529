"""`pulumi destroy` on the twin (issue 18, item 7), and a remote command that hangs (item 4).

The replayer's ``destroy`` deletes as the engine does (ScheduleDeletes antichains, each run
concurrently; see tests/support/twin/replayer.py). Without ``destroyMode: release`` the guard,
deleted first and alone, refuses and nothing else runs; with it, every delete only records and the
cluster is left as it was. One plain-k3s twin serves both, and the hung remote command."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from cpswap.core.renderers.deadline import Deadline, render_bounded
from cpswap.core.slots import ADOPTION_CHECK, DESTROY_GUARD
from cpswap.executors import etcd as ex
from tests.support.pulumi_mocks import Recorded, run_program
from tests.support.twin.cluster import Twin, digest
from tests.support.twin.hosts import available
from tests.support.twin.operator import activated_environ
from tests.support.twin.replayer import EngineHang, Replayer, Runner, StepFailed
from tests.twin.test_scenarios import N2, N3, OLD, project, put_keys, replay_up

pytestmark = [pytest.mark.twin, pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")]


def _cluster(twin: Twin) -> tuple[list[str], list[str], str]:
    conn = twin.etcd_connection()
    members = sorted((m.name, m.is_learner) for m in ex.member_list(conn))
    nodes = sorted(n.metadata.name for n in twin.emulator.core.list_node().items)
    return [f"{n}{' (learner)' if learner else ''}" for n, learner in members], nodes, digest(conn)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _remote(twin: Twin, host: str, name: str, text: str) -> Recorded:
    """A remote.Command to ``host`` as the program registers one, declared timeout 1 s."""
    inputs = {"create": text, "connection": {"host": twin.net.hosts[host].ip, "port": 22, "user": "root",
                                             "privateKey": twin.net.client_key.read_text(), "perDialTimeout": 5}}
    return Recorded(type="command:remote:Command", name=name, parent="", custom=True, inputs=inputs, secret_paths=(),
                    delete_before_replace=True, dependencies=(), replace_on_changes=("triggers[*]",),
                    custom_timeouts={"create": "1s"}, additional_secret_outputs=(), retain_on_delete=False,
                    provider="", urn=f"urn:{name}")


def test_destroy_refuses_without_the_opt_in_and_releases_with_it(tmp_path):
    twin = Twin.start(tmp_path / "twin", members=[OLD, N2, N3], spares=[], seed_workloads=False)
    try:
        workdir = project(tmp_path)
        replayer = Replayer(Runner(cwd=workdir, timeout_s=240, environ=activated_environ()))
        put_keys(twin, 50)
        slots = {"cp1": OLD, "cp2": N2, "cp3": N3}

        def up(extra: dict | None = None) -> list[tuple[str, str]]:
            recording = run_program(config=twin.stack_config(members=slots, distribution="k3s", extra=extra),
                                    secrets=twin.secrets(), stack="twin", cwd=workdir)
            assert recording.error is None, recording.error
            return [(s.name, s.op) for s in replay_up(replayer, workdir, recording) if s.op != "noop"]

        up()  # adoption
        before = _cluster(twin)
        assert before[0] == sorted(before[0]) and len(before[0]) == 3 and len(before[1]) == 3
        stored = sorted(replayer.state)

        # 1. no opt-in: the guard is deleted first and alone, refuses, and no other delete runs
        with pytest.raises(StepFailed, match=rf"(?s)delete {DESTROY_GUARD} on local failed: rc=1: .*pulumi destroy "
                                             r"refused for stack twin.*destroyMode release"):
            replayer.destroy()
        assert [(s.name, s.op) for s in replayer.steps] == [(DESTROY_GUARD, "delete")]
        assert _cluster(twin) == before and sorted(replayer.state) == stored

        # 2. a swap while released is refused before any resource is registered
        spare = {"name": "never-contacted", "ip": "192.0.2.10"}  # refused before any resource: never reached
        refused = run_program(config=twin.stack_config(members={**slots, "cp2": spare}, distribution="k3s",
                                                       extra={"destroyMode": "release"}),
                              secrets=twin.secrets(), stack="twin", cwd=workdir)
        assert refused.error and "membership changes (cp2) are refused while the control plane is released" in \
            refused.error, refused.error
        assert not any(r.custom for r in refused.resources)

        # 3. the opt-in: `up` stores the released deletes (in-place updates that only record) ...
        # The membership is recorded since the adoption, so the program no longer registers the adoption
        # check: the engine drops it from state, and its provider runs nothing (no `delete` command)
        (check,) = [stored for stored in replayer.state.values() if stored.name == ADOPTION_CHECK]
        assert check.inputs.get("delete") is None
        ran_before = len(replayer.timeline)
        ran = up({"destroyMode": "release"})
        assert (ADOPTION_CHECK, "delete") in ran, ran
        assert {op for name, op in ran if name != ADOPTION_CHECK} == {"update"}, ran
        assert not [step for step, _, _ in replayer.timeline[ran_before:] if step.name == ADOPTION_CHECK], \
            "the adoption check's delete ran a command"
        assert _cluster(twin) == before
        # ... then destroy forgets everything, leaving every member, Node and key in place
        steps = replayer.destroy()
        assert steps[0].name == DESTROY_GUARD and replayer.state == {} and replayer.outputs == {}
        deleted = {s.name for s in steps if s.op == "delete"}
        assert {f"{slot}-{what}" for slot in slots for what in ("etcd-leave", "node-leave")} <= deleted
        assert _cluster(twin) == before
        released = [line for line in replayer.runner.log if "-etcd-leave" in line and line.startswith("delete")]
        assert len(released) == 3 and all("released by pulumi destroy" in line for line in released), released
        # the three slots' leaves ran in one antichain, at once
        leaves = [(start, end) for step, start, end in replayer.timeline if step.name.endswith("-etcd-leave")
                  and step.op == "delete"]
        assert len(leaves) == 3 and max(s for s, _ in leaves) < max(e for _, e in leaves)

        # 4. a hung remote command: the replayer, like the provider, does not stop it at its declared
        # timeout (1 s); bounded by its own deadline it ends itself and its process group ...
        hang = "echo $$; sleep 300 & echo $!; wait"
        bounded = _remote(twin, N2, "hang-bounded", render_bounded(name="hang-bounded", text=hang,
                                                                   deadline=Deadline(seconds=3, kill_after_s=2)))
        started = time.monotonic()
        with pytest.raises(StepFailed, match=r"(?s)rc=124: .*cpswap: hang-bounded: stopped at its deadline of 3s") as stopped:
            Replayer(Runner(cwd=workdir, timeout_s=60)).up([bounded])
        assert 2.5 < time.monotonic() - started < 120  # its 3 s deadline, not the 300 s sleep (loaded machine: room)
        shell, sleeper = (int(x) for x in re.findall(r"^(\d+)$", str(stopped.value), re.M)[:2])
        end = time.monotonic() + 10
        while _alive(sleeper) or _alive(shell):
            assert time.monotonic() < end, "the bounded command's process group outlived its deadline"
            time.sleep(0.1)
        # ... while an unbounded one runs past its declared timeout until the harness gives up
        unbounded = _remote(twin, N3, "hang-unbounded", hang)
        with pytest.raises(EngineHang, match="harness bound of 5s") as hung:
            Replayer(Runner(cwd=workdir, timeout_s=5)).up([unbounded])
        shell, sleeper = (int(x) for x in hung.value.out.split())
        assert _alive(sleeper), "the remote command did not outlive its declared timeout"
        for pid in (sleeper, shell):  # stop what the test started, by PID
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    finally:
        twin.close()
    assert twin.net.leftovers() == []
