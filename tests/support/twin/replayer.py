"""A replayer that stands in for the Pulumi engine in tests. Test-only.

It takes the resources a program run registered under mocks (tests/support/pulumi_mocks.py,
options included) and the stored state of the previous replay, and carries the steps out in
Pulumi's documented order (notes/pulumi_facts.md §1–2, pkg/resource/deploy/step_generator.go):

- creates and updates in dependency order (registration order breaks ties);
- a replacement (a ``replaceOnChanges`` path such as ``triggers[*]`` changed) with
  ``deleteBeforeReplace`` deletes first, from the OLD stored state (old command text, old
  connection, old environment, PULUMI_COMMAND_STDOUT of the old create), then creates;
- a replacement without it creates first and deletes the old copy at the end;
- an input change without a replacement is an update: ``update`` if set, else ``create``;
- no change runs nothing;
- resources no longer in the program are deleted last, in reverse order of the stored state;
- on a failure it stops like the engine: later steps do not run, and the state keeps what
  succeeded (a deleted-then-failed replacement is gone from state), so a re-run converges.

``command:remote:Command`` runs over real SSH (the key from the connection input, BatchMode,
short connect timeout), ``command:local:Command`` locally through ``/bin/sh -c`` with the
stored environment. Other resource types (providers, kubernetes patches) are recorded as
applied without side effects, and said so in ``Step.note``.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.support.pulumi_mocks import Recorded

COMMAND_TYPES = ("command:local:Command", "command:remote:Command")


@dataclass
class Stored:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    dependencies: tuple[str, ...]
    delete_before_replace: bool
    replace_on_changes: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    urn: str
    name: str
    op: str  # create | update | delete | replace-delete | noop
    host: str  # "local" or the SSH host
    note: str = ""


class StepFailed(Exception):
    def __init__(self, step: Step, detail: str) -> None:
        super().__init__(f"{step.op} {step.name} on {step.host} failed: {detail}")
        self.step = step


@dataclass
class Runner:
    """Runs command text; tests may wrap it to inject faults."""

    cwd: Path
    timeout_s: float = 300
    log: list[str] = field(default_factory=list)

    def run(self, *, kind: str, inputs: dict[str, Any], text: str, extra_env: dict[str, str]) -> tuple[int, str, str]:
        stdin = inputs.get("stdin")
        if kind == "command:local:Command":
            env = {**os.environ, **(inputs.get("environment") or {}), **extra_env}
            proc = subprocess.run(["/bin/sh", "-c", text], input=stdin, capture_output=True, text=True, env=env,
                                  cwd=self.cwd, timeout=self.timeout_s)
            return proc.returncode, proc.stdout, proc.stderr
        conn = inputs["connection"]
        with tempfile.NamedTemporaryFile("w", delete=False, prefix="twin-key-") as handle:
            handle.write(conn["privateKey"])
        os.chmod(handle.name, 0o600)
        try:
            argv = ["ssh", "-i", handle.name, "-p", str(int(conn.get("port", 22))), "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                    "-o", f"ConnectTimeout={int(conn.get('perDialTimeout', 5))}",
                    f"{conn.get('user', 'root')}@{conn['host']}", text]
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout_s)
            return proc.returncode, proc.stdout, proc.stderr
        finally:
            os.unlink(handle.name)


def _differs_on(paths: tuple[str, ...], old: dict[str, Any], new: dict[str, Any]) -> bool:
    for path in paths:
        key = path.split("[")[0].split(".")[0]
        if key == "*" or old.get(key) != new.get(key):
            if key == "*" and old == new:
                continue
            return True
    return False


def _order(resources: list[Recorded]) -> list[Recorded]:
    """Dependency order, registration order as the tie-break."""
    by_urn = {r.urn: r for r in resources}
    done: set[str] = set()
    ordered: list[Recorded] = []

    def visit(r: Recorded, stack: tuple[str, ...] = ()) -> None:
        if r.urn in done or r.urn in stack:
            return
        for dep in r.dependencies:
            if dep in by_urn:
                visit(by_urn[dep], stack + (r.urn,))
        done.add(r.urn)
        ordered.append(r)
    for r in resources:
        visit(r)
    return ordered


@dataclass
class Replayer:
    runner: Runner
    state: dict[str, Stored] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    before_step: Callable[[Step], None] = lambda step: None

    def _host(self, kind: str, inputs: dict[str, Any]) -> str:
        return inputs["connection"]["host"] if kind == "command:remote:Command" else "local"

    def _exec(self, step: Step, kind: str, inputs: dict[str, Any], text: str | None, env: dict[str, str]) -> str:
        self.before_step(step)
        self.steps.append(step)
        if not text or kind not in COMMAND_TYPES:
            return ""
        rc, out, err = self.runner.run(kind=kind, inputs=inputs, text=text, extra_env=env)
        self.runner.log.append(f"{step.op} {step.name} @{step.host} rc={rc}\n{out[-2000:]}{err[-2000:]}")
        if rc != 0:
            raise StepFailed(step, f"rc={rc}: {(err or out).strip()[-800:]}")
        return out

    def _delete(self, urn: str, stored: Stored, op: str) -> None:
        step = Step(urn, stored.name, op, self._host(stored.type, stored.inputs))
        env = {"PULUMI_COMMAND_STDOUT": stored.outputs.get("stdout", ""),
               "PULUMI_COMMAND_STDERR": stored.outputs.get("stderr", "")}
        self._exec(step, stored.type, stored.inputs, stored.inputs.get("delete"), env)
        del self.state[urn]

    def _create(self, r: Recorded, op: str = "create") -> None:
        step = Step(r.urn, r.name, op, self._host(r.type, r.inputs),
                    "" if r.type in COMMAND_TYPES else f"{r.type}: applied without side effects")
        text = r.inputs.get("create") if op == "create" else (r.inputs.get("update") or r.inputs.get("create"))
        out = self._exec(step, r.type, r.inputs, text, {})
        self.state[r.urn] = Stored(type=r.type, name=r.name, inputs=r.inputs, outputs={"stdout": out},
                                   dependencies=r.dependencies, delete_before_replace=r.delete_before_replace,
                                   replace_on_changes=r.replace_on_changes)

    def up(self, resources: list[Recorded]) -> list[Step]:
        """One `pulumi up`. Returns the steps that ran; raises StepFailed and keeps partial state."""
        self.steps = []
        custom = [r for r in resources if r.custom]
        present = {r.urn for r in custom}
        pending_deletes: list[tuple[str, Stored]] = []
        for r in _order(custom):
            old = self.state.get(r.urn)
            if old is None:
                self._create(r)
            elif old.type == r.type and _differs_on(r.replace_on_changes, old.inputs, r.inputs):
                if r.delete_before_replace:
                    self._delete(r.urn, old, "replace-delete")
                    self._create(r)
                else:
                    self._create(r)
                    pending_deletes.append((r.urn, old))
            elif old.inputs != r.inputs:
                self._create(r, op="update")
            else:
                self.steps.append(Step(r.urn, r.name, "noop", self._host(r.type, r.inputs)))
        for urn, old in pending_deletes:
            step = Step(urn, old.name, "replace-delete", self._host(old.type, old.inputs))
            env = {"PULUMI_COMMAND_STDOUT": old.outputs.get("stdout", "")}
            self._exec(step, old.type, old.inputs, old.inputs.get("delete"), env)
        for urn in reversed([u for u in self.state if u not in present]):
            self._delete(urn, self.state[urn], "delete")
        return self.steps

    def commands_run(self) -> list[Step]:
        return [s for s in self.steps if s.op != "noop"]

    def dump(self) -> str:
        return json.dumps({u: s.__dict__ for u, s in self.state.items()}, default=str)
