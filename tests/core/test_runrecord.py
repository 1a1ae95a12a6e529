"""The run record (cpswap/core/runrecord.py decides, cpswap/executors/runrecord.py writes): a
rendered step's `cpswap` calls append their start and end; a KILLed step leaves a start with no
end; the file is 0600 in a 0700 directory, keeps the last runs, and never holds a secret."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cpswap.core import runrecord as rr
from cpswap.core.renderers.deadline import Deadline, render_bounded
from cpswap.executors import runrecord as ex

TAG = rr.StepTag(stack="s", resource="cp1-pvcs", op="create", slot="cp1", host="new-1")
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize(("text", "tag", "error"), [
    ("stack=s resource=cp1-pvcs op=create slot=cp1 host=new-1", TAG, None),
    ("stack=s resource=control-plane-destroy-guard op=delete",
     rr.StepTag(stack="s", resource="control-plane-destroy-guard", op="delete"), None),
    ("resource=cp1-pvcs op=create", None, "missing stack"),
    ("stack=s resource=a'b op=create", None, "no spaces or quotes"),
])
def test_step_tag_table(text, tag, error):
    if error:
        with pytest.raises(rr.RecordError, match=error):
            rr.StepTag.parse(text)
    else:
        assert rr.StepTag.parse(text) == tag and rr.StepTag.parse(tag.render()) == tag


@pytest.mark.parametrize(("failure", "line"), [
    ("etcd remove: 1 healthy of 2 voters\nmore detail", "etcd remove: 1 healthy of 2 voters"),
    (f"\n\nbad key {KEY} here", "bad key [PEM block removed] here"),
    ("x" * 1000, "x" * rr.FAILURE_CHARS),
])
def test_failure_line_table(failure, line):
    assert rr.failure_line(failure) == line


def _lines(*events: tuple[str, str, str, int, float, int | None]) -> tuple[dict, ...]:
    """(run, resource, event, pid, at, rc)"""
    out = []
    for run, resource, event, pid, at, rc in events:
        tag = rr.StepTag(stack="s", resource=resource, op="create", slot="cp1", host="h@10.0.0.1")
        out.append(rr.start_line(run=run, tag=tag, command="kube x", pid=pid, at=at) if event == "start" else
                   rr.end_line(run=run, tag=tag, command="kube x", pid=pid, at=at, started=at - 1, rc=rc or 0,
                               failure="boom\nsecond" if rc else None))
    return rr.parse_lines("\n".join(out) + "\nnot json\n")


def test_the_last_run_names_ok_failed_and_interrupted_steps():
    lines = _lines(("r1", "cp1-verify", "start", 1, 1.0, None), ("r1", "cp1-verify", "end", 1, 2.0, 1),
                   ("r2", "cp1-verify", "start", 2, 10.0, None), ("r2", "cp1-verify", "end", 2, 12.5, 0),
                   ("r2", "cp1-pvcs", "start", 3, 13.0, None), ("r2", "cp1-pvcs", "end", 3, 14.0, 0),
                   ("r2", "cp1-pvcs", "start", 4, 14.5, None),
                   ("r2", "cp1-node-labels", "start", 5, 20.0, None), ("r2", "cp1-node-labels", "end", 5, 21.0, 3))
    run = rr.summarize_run(lines, stack="s")
    assert run is not None and run.run == "r2"
    assert [(s.resource, s.state, s.rc, s.duration_s) for s in run.steps] == [
        ("cp1-verify", "ok", 0, 2.5), ("cp1-pvcs", "interrupted", None, None), ("cp1-node-labels", "failed", 3, 1.0)]
    assert "started and never ended" in (run.steps[1].failure or "") and run.steps[2].failure == "boom"
    assert rr.summarize_run(lines, stack="other") is None


def test_the_file_keeps_the_last_runs():
    text = "".join(rr.start_line(run=f"r{i}", tag=TAG, command="kube x", pid=i, at=i) + "\n" for i in range(5))
    kept = rr.kept_text(text, keep=2)
    assert kept is not None and [d["run"] for d in rr.parse_lines(kept)] == ["r3", "r4"]
    assert rr.kept_text(kept, keep=2) is None


def _run_step(tmp_path: Path, work: str, *, env: dict[str, str] | None = None) -> subprocess.Popen:
    text = render_bounded(name=TAG.resource, text=work, deadline=Deadline(seconds=60),
                          step=rr.step_assignment(TAG))
    environ = {**os.environ, **(env or {})}
    environ.pop(rr.STEP_ENV, None)
    return subprocess.Popen(["/bin/sh", "-c", text], cwd=tmp_path, env=environ, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


CPSWAP = f"{sys.executable} -m cpswap"


def test_a_rendered_step_records_each_cpswap_call_and_a_killed_one_stays_open(tmp_path):
    # one step, two calls: a refusal (wrong version: exit 2, its first line recorded) and --version (exit 0)
    proc = _run_step(tmp_path, f"{CPSWAP} --version; {CPSWAP} --expect-version=0.0.0-other status --stack s",
                     env={rr.RUN_ENV: "run-a"})
    assert proc.wait(60) == 2
    path = ex.record_path(directory=tmp_path, stack="s")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    docs = rr.parse_lines(path.read_text())
    assert [(d["event"], d["command"], d.get("rc")) for d in docs] == [
        ("start", "cpswap", None), ("end", "cpswap", 0), ("start", "status", None), ("end", "status", 2)]
    assert docs[-1]["failure"].startswith("cpswap: refusing to run: the command was rendered by the Pulumi "
                                          "program's cpswap 0.0.0-other")
    # a second run, KILLed while its call runs: a start with no end. Without $CPSWAP_RUN_ID the run is
    # the first ancestor that is not a shell, timeout or env: this test's interpreter here, as the
    # command provider is in a real `pulumi up`
    code = ("import os,sys,time; from cpswap.executors.runrecord import recording; "
            "f=recording(step=os.environ['CPSWAP_STEP'], argv=['kube','recover-pvcs']); f.__enter__(); "
            "print('started', flush=True); time.sleep(60)")
    proc = _run_step(tmp_path, f"{sys.executable} -c {json.dumps(code)}")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    run = rr.summarize_run(rr.parse_lines(path.read_text()), stack="s")
    assert run is not None and run.run.split("-")[-2] == str(os.getpid()), run.run
    assert [(s.resource, s.state, s.commands) for s in run.steps] == [("cp1-pvcs", "interrupted", ("kube recover-pvcs",))]
    assert KEY not in path.read_text()
