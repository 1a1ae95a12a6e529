"""Preflight on the twin (issue 14): faults on the new host stop the swap before anything is
removed, every failure reported in one run, the etcd member list and the Node list untouched."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from cpswap.executors import etcd as ex
from tests.support.twin.cluster import Twin
from tests.support.twin.hosts import available
from tests.support.twin.operator import activated_environ
from tests.support.twin.replayer import Replayer, Runner, StepFailed
from tests.twin.test_scenarios import N2, N3, NEW, OLD, project, up

pytestmark = [pytest.mark.twin, pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")]


def _cluster(twin: Twin) -> tuple[list[str], list[str]]:
    members = sorted((m.name, m.is_learner) for m in ex.member_list(twin.etcd_connection()))
    nodes = sorted(n.metadata.name for n in twin.emulator.core.list_node().items)
    return members, nodes


def _failure_lines(error: StepFailed) -> list[str]:
    return sorted(line.strip() for line in str(error).splitlines() if line.strip().startswith("FAIL"))


def test_preflight_stops_the_swap_with_every_fault_reported_and_the_cluster_untouched(tmp_path):
    twin = Twin.start(tmp_path / "twin", members=[OLD, N2, N3], spares=[NEW], seed_workloads=False)
    try:
        workdir = project(tmp_path)
        replayer = Replayer(Runner(cwd=workdir, timeout_s=120, environ=activated_environ()))
        slots = {"cp1": OLD, "cp2": N2, "cp3": N3}
        _, steps = up(twin, replayer, workdir, slots)  # adoption: every slot's preflight passes
        print(f"\nadoption: {[(s.name, s.op, round(d, 1)) for s, d in replayer.durations]}")
        assert [s.op for s in steps if s.name.endswith("-preflight")] == ["create"] * 3
        twin.kill(OLD)
        new = twin.net.hosts[NEW]
        # three faults at once: a k3s of another version on the new host, a port taken there, no ocboot checkout
        (new.root / "k3s-version").write_text("v1.27.9+k3s1\n")
        listener = twin.net.run(NEW, "nohup setsid python3 -c 'import socket, time; s = socket.socket(); "
                                     "s.bind((\"0.0.0.0\", 6443)); s.listen(); time.sleep(300)' "
                                     ">/dev/null 2>&1 </dev/null & echo $!").stdout.strip()
        new.pids.append(int(listener))
        shutil.move(twin.workdir / "ocboot", twin.workdir / "ocboot.moved")
        before = _cluster(twin)
        swapped = {**slots, "cp1": NEW}
        answers = []
        for _ in range(2):  # the same answer twice, and nothing changed
            with pytest.raises(StepFailed, match=r"create cp1-preflight on local failed") as failed:
                up(twin, replayer, workdir, swapped)
            assert {s.name for s in replayer.commands_run()} == {"cp1-preflight"}, replayer.commands_run()
            assert _cluster(twin) == before
            answers.append(_failure_lines(failed.value))
        assert answers[0] == answers[1]
        text = "\n".join(answers[0])
        assert len(answers[0]) == 3, text
        assert f"ocboot       {twin.net.vip}" in text and "no ocboot checkout" in text
        assert f"installer    {new.ip}" in text and "k3s v1.27.9+k3s1" in text and "v1.28.5+k3s1" in text
        assert f"ports        {new.ip}" in text and "in use: 6443" in text

        # the fourth fault alone: the new host refuses every key (the other checks pass now): the
        # operator's SSH and the VIP holder's, which ocboot's ansible uses, both fail
        (new.root / "k3s-version").unlink()
        subprocess.run(["kill", listener], check=False)
        shutil.move(twin.workdir / "ocboot.moved", twin.workdir / "ocboot")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
        authorized = (new.root / "ssh" / "authorized_keys").read_text()
        shutil.copy(tmp_path / "other.pub", new.root / "ssh" / "authorized_keys")
        with pytest.raises(StepFailed, match=r"create cp1-preflight on local failed") as failed:
            up(twin, replayer, workdir, swapped)
        lines = _failure_lines(failed.value)
        assert len(lines) == 2 and all("Permission denied" in line for line in lines), lines
        assert f"join-ssh     {new.ip}" in lines[0] and f"ssh          {new.ip}" in lines[1], lines
        assert {s.name for s in replayer.commands_run()} == {"cp1-preflight"}
        assert _cluster(twin) == before

        # the fifth: the operator's key is taken, the VIP holder's is not (ocboot would fail at the join)
        operator_key = (twin.net.workdir / "client_key.pub").read_text()
        assert operator_key in authorized
        (new.root / "ssh" / "authorized_keys").write_text(operator_key)
        with pytest.raises(StepFailed, match=r"create cp1-preflight on local failed") as failed:
            up(twin, replayer, workdir, swapped)
        lines = _failure_lines(failed.value)
        holder = twin.net.vip_holder
        assert len(lines) == 1 and f"join-ssh     {new.ip}" in lines[0] and f"from {holder}: ssh exited 255" in lines[0] \
            and "Permission denied" in lines[0], lines
        assert {s.name for s in replayer.commands_run()} == {"cp1-preflight"}
        assert _cluster(twin) == before
    finally:
        twin.close()
    assert twin.net.leftovers() == []
