"""Every command bounds itself with its own deadline, and no step runs a daemon in the foreground
(cpswap/core/renderers/deadline.py; the provider facts are cited there and in docs/CONFORMANCE.md)."""
from __future__ import annotations

import re
import subprocess
import time

import pytest

from cpswap.core.model import parse_stack_config
from cpswap.core.renderers.deadline import (KILL_AFTER_S, MARGIN_S, Deadline, bounded_work, deadline_for,
                                            foreground_daemon, parse_duration, render_bounded)
from cpswap.core.slots import DESTROY_GUARD, CommandSpec, destroy_guard, slot_commands
from cpswap.stackfiles import load_model
from tests.support.mock_stacks import KUBEADM_VIP, KUBEAN, MEMBERS, OPENSHIFT
from tests.support.pulumi_mocks import ROOT

K3S = {"distribution": "k3s", "controlPlaneEndpoint": "10.9.0.100:6443", "etcd": {"preset": "env"}, "members": MEMBERS}
REBUILT = {**OPENSHIFT, "members": {**OPENSHIFT["members"], "cp1": {"name": "ip-10-7-0-11", "ip": "10.7.0.11",
                                                                    "rebuild": 1}}}


def _models():
    yield "ocboot", load_model(directory=ROOT, stack="prod")
    for name, config in (("k3s", K3S), ("kubeadm", KUBEADM_VIP), ("kubean", KUBEAN), ("openshift", REBUILT)):
        yield name, parse_stack_config(config, stack="prod")


def _commands():
    for name, model in _models():
        for member in model.members[:1]:
            for spec in slot_commands(model=model, member=member):
                if isinstance(spec, CommandSpec):
                    yield name, spec
        yield name, destroy_guard(model=model)


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("1h30m", 5400), ("95m", 5700), ("90s", 90),
                                               ("2h", 7200)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5d", "1m1h"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_deadline_is_the_timeout_minus_the_margin_and_short_timeouts_are_refused():
    assert deadline_for(name="x", timeout="10m") == Deadline(seconds=600 - MARGIN_S)
    with pytest.raises(ValueError, match=r"x: timeout 1m \(60s\) is below 120s"):
        deadline_for(name="x", timeout="1m")


@pytest.mark.parametrize(("text", "daemon"), [
    ("exec k3s server --server https://vip:6443", "k3s server"),
    ("if test -d x; then exit 0; fi; IFS= read -r T; exec k3s server --token \"$T\"", "k3s server"),
    ("if true; then k3s agent; fi", "k3s agent"),
    ("K=1 nohup etcd --name a", "etcd --name"),
    ("sh -c 'cd /; /usr/local/bin/kubelet --config x'", "/usr/local/bin/kubelet --config"),
    ("keepalived -n -f /etc/keepalived/keepalived.conf", "keepalived -n"),
    ("k3s server --data-dir x & sleep 1", None),
    ("systemctl enable --now k3s", None),
    ("k3s kubectl get node x", None),
    ("keepalived --config-test -f x", None),
    ("cpswap etcd remove --name etcd-1 && echo etcd", None),
    ("kubeadm join --config /root/join.yaml", None),
])
def test_foreground_daemon_table(text, daemon):
    assert foreground_daemon(text) == daemon


def test_every_command_bounds_itself_with_a_deadline_inside_its_timeout():
    seen = 0
    for name, spec in _commands():
        for op, text, timeout in (("create", spec.create, spec.create_timeout),
                                  ("update", spec.update, spec.create_timeout),
                                  ("delete", spec.delete, spec.delete_timeout)):
            if text is None:
                continue
            seen += 1
            deadline = parse_duration(timeout) - MARGIN_S
            # a local command names its step for the run record (cpswap/core/runrecord.py); a remote one does not
            step = (f"CPSWAP_STEP='stack=prod resource={spec.name} op={op} "
                    + ("slot=- host=-' " if spec.name == DESTROY_GUARD else "slot=cp1 host=")
                    if spec.runs_on.kind == "local" else "")
            assert text.startswith(f"rc=0; {step}"), (name, spec.name, op, text[:200])
            assert f" timeout --kill-after={KILL_AFTER_S}s {deadline}s sh -c " in text.split(" || rc=$?;")[0]
            assert deadline + KILL_AFTER_S < parse_duration(timeout)
            # the executors' own --deadline values, run one after the other, fit inside the command's
            inner = sum(int(d) for d in re.findall(r"--deadline (\d+)", text))
            assert inner <= deadline, (name, spec.name, op, inner, deadline)
    assert seen > 60


@pytest.mark.parametrize("work", ["echo \"it's\" $X", "set -e; IFS= read -r T; printf '%s' \"$T\" | x", ""])
def test_bounded_work_is_the_inverse_of_render_bounded(work):
    assert bounded_work(render_bounded(name="n", text=work, deadline=Deadline(seconds=9))) == work
    step = "CPSWAP_STEP='stack=s resource=cp1-pvcs op=create slot=cp1 host=a@10.0.0.1'"
    assert bounded_work(render_bounded(name="n", text=work, deadline=Deadline(seconds=9), step=step)) == work
    assert bounded_work(work) == work


def test_no_step_runs_a_daemon_in_the_foreground():
    found = {(name, spec.name, op): foreground_daemon(text)
             for name, spec in _commands()
             for op, text in (("create", spec.create), ("update", spec.update), ("delete", spec.delete))
             if text is not None and foreground_daemon(text)}
    assert found == {}


def test_a_bounded_command_ends_itself_and_its_process_group(tmp_path):
    """Real coreutils `timeout`: a command that would hang (a child holding stdout) is stopped at
    its deadline with the group, stdin and exit code pass through, and the stop is reported."""
    child = tmp_path / "child.pid"
    text = render_bounded(name="cp1-hang", text=f"sleep 300 & echo $! > {child}; read -r line; echo got $line; wait",
                          deadline=Deadline(seconds=2, kill_after_s=1))
    started = time.monotonic()
    result = subprocess.run(["/bin/sh", "-c", text], input="hello\n", capture_output=True, text=True, timeout=90)
    assert time.monotonic() - started < 60  # stopped at its 2+1 s, not the child's 300 s (room for a loaded machine)
    assert result.returncode == 124 and result.stdout == "got hello\n"
    assert "cpswap: cp1-hang: stopped at its deadline of 2s" in result.stderr
    pid = int(child.read_text())
    end = time.monotonic() + 5
    while subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < end, "the backgrounded child outlived the deadline"
        time.sleep(0.05)
    ok = subprocess.run(["/bin/sh", "-c", render_bounded(name="x", text="echo \"it's\" $0; exit 3",
                                                         deadline=Deadline(seconds=5))],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 3 and ok.stdout == "it's sh\n" and ok.stderr == ""


@pytest.mark.parametrize("mode", ["refuse", "release"])
def test_destroy_guard_refuses_or_releases_and_touches_nothing(mode, tmp_path):
    model = parse_stack_config({**K3S, "destroyMode": mode}, stack="prod")
    guard = destroy_guard(model=model)
    result = subprocess.run(["/bin/sh", "-c", guard.delete], capture_output=True, text=True, timeout=30,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    if mode == "refuse":
        assert result.returncode == 1
        assert "pulumi destroy refused for stack prod" in result.stderr and "destroyMode release" in result.stderr
    else:
        assert result.returncode == 0 and "control plane released" in result.stdout
    assert list(tmp_path.iterdir()) == []
    assert "cpswap " not in guard.delete  # no executor: nothing is contacted


def test_release_mode_makes_every_slot_delete_a_record():
    for name, _model in _models():
        released = parse_stack_config({**_config_of(name), "destroyMode": "release"}, stack="prod") \
            if name != "ocboot" else None
        if released is None:
            continue
        for member in released.members:
            for spec in slot_commands(model=released, member=member):
                if isinstance(spec, CommandSpec) and spec.delete:
                    assert "cpswap " not in spec.delete and "released by pulumi destroy" in spec.delete, spec.name
                elif not isinstance(spec, CommandSpec):
                    assert spec.retain_on_delete, spec.name


def _config_of(name: str) -> dict:
    return {"k3s": K3S, "kubeadm": KUBEADM_VIP, "kubean": KUBEAN, "openshift": REBUILT}[name]
