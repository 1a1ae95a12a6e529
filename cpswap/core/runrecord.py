"""The run record: one JSON line per ``cpswap`` invocation start and end inside a rendered step,
read back by ``cpswap status`` as the last run's steps with their results and durations. Pure:
text in, text and data out; cpswap/executors/runrecord.py appends and rotates the file.

How a line gets written: every local command a slot renders carries its identity in the
environment of its work, ``CPSWAP_STEP='stack=S resource=cp1-pvcs op=create slot=cp1
host=NAME@IP'`` (``step_assignment``, put in front of the deadline wrapper), and every ``cpswap``
it calls appends a ``start`` line when it begins and an ``end`` line (exit code, duration, the
failure's first line) when it ends. A step the engine or its deadline KILLs leaves a ``start`` with
no ``end``: ``summarize_run`` reports it ``interrupted``. Commands that run over SSH on another
host (the joins) and the record-only ``echo`` commands call no ``cpswap`` on this machine and leave
no line; ``cpswap status`` says so.

A line holds the run id, the step's identity, the subcommand words (``kube recover-pvcs``, never
its arguments), the times, the exit code and the failure's first line (at most ``FAILURE_CHARS``,
PEM blocks cut): never a secret or a command's output. The file keeps the last ``KEEP_RUNS`` runs.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from shlex import quote

STEP_ENV = "CPSWAP_STEP"
RUN_ENV = "CPSWAP_RUN_ID"
KEEP_RUNS = 20
FAILURE_CHARS = 300
_FIELDS = ("stack", "resource", "op", "slot", "host")
_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:/-]{0,252}")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S)


class RecordError(ValueError):
    """A malformed step identity or record line (names the value and the rule)."""


@dataclass(frozen=True)
class StepTag:
    """Which step a ``cpswap`` invocation belongs to: the stack, the resource, the engine operation
    (create/update/delete), the slot (``-`` for stack-level resources) and the slot's host."""

    stack: str
    resource: str
    op: str
    slot: str = "-"
    host: str = "-"

    def __post_init__(self) -> None:
        for field in _FIELDS:
            value = getattr(self, field)
            if value != "-" and not _VALUE.fullmatch(value):
                raise RecordError(f"step {field} {value!r}: must match {_VALUE.pattern} (no spaces or quotes)")

    def render(self) -> str:
        return " ".join(f"{f}={getattr(self, f)}" for f in _FIELDS)

    @staticmethod
    def parse(text: str) -> StepTag:
        pairs = dict(word.split("=", 1) for word in text.split() if "=" in word)
        missing = [f for f in ("stack", "resource", "op") if not pairs.get(f)]
        if missing:
            raise RecordError(f"{STEP_ENV} {text[:200]!r}: missing {', '.join(missing)} "
                              f"(expected {' '.join(f'{f}=...' for f in _FIELDS)})")
        return StepTag(**{f: pairs.get(f, "-") for f in _FIELDS})


def step_assignment(tag: StepTag) -> str:
    """The shell words that put ``tag`` into the environment of the command that follows them."""
    return f"{STEP_ENV}={quote(tag.render())}"


def failure_line(text: str) -> str:
    """The first non-empty line of a failure, PEM blocks cut, at most ``FAILURE_CHARS``."""
    cleaned = _PEM.sub("[PEM block removed]", text)
    first = next((line.strip() for line in cleaned.splitlines() if line.strip()), "")
    return first[:FAILURE_CHARS]


def start_line(*, run: str, tag: StepTag, command: str, pid: int, at: float) -> str:
    return json.dumps({"run": run, "event": "start", **{f: getattr(tag, f) for f in _FIELDS},
                       "command": command, "pid": pid, "at": round(at, 3)}, sort_keys=True)


def end_line(*, run: str, tag: StepTag, command: str, pid: int, at: float, started: float, rc: int,
             failure: str | None) -> str:
    return json.dumps({"run": run, "event": "end", **{f: getattr(tag, f) for f in _FIELDS},
                       "command": command, "pid": pid, "at": round(at, 3), "durationS": round(at - started, 3),
                       "rc": rc, "failure": failure_line(failure) if failure else None}, sort_keys=True)


def parse_lines(text: str) -> tuple[dict[str, object], ...]:
    """The record's lines as dicts; a line that is not a JSON object with ``run`` and ``event`` (a
    write cut short by a crash) is skipped, so one bad line never hides the rest."""
    found = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("run"), str) and doc.get("event") in ("start", "end"):
            found.append(doc)
    return tuple(found)


def runs_in_order(lines: tuple[dict[str, object], ...]) -> tuple[str, ...]:
    """Run ids in the order their first line was written."""
    seen: dict[str, None] = {}
    for doc in lines:
        seen.setdefault(str(doc["run"]), None)
    return tuple(seen)


def kept_text(text: str, *, keep: int = KEEP_RUNS) -> str | None:
    """The record cut to its last ``keep`` runs, or None when it already holds no more."""
    lines = [line for line in text.splitlines() if line.strip()]
    docs = parse_lines(text)
    runs = runs_in_order(docs)
    if len(runs) <= keep and len(docs) == len(lines):
        return None
    kept = set(runs[-keep:])
    out = [line for line in lines for doc in parse_lines(line) if doc["run"] in kept]
    return "".join(f"{line}\n" for line in out)


@dataclass(frozen=True)
class StepRun:
    """One step of a run: its invocations' first start and last end, worst exit code."""

    resource: str
    op: str
    slot: str
    host: str
    started: float
    ended: float | None
    rc: int | None
    state: str  # ok | failed | interrupted
    failure: str | None
    commands: tuple[str, ...]

    @property
    def duration_s(self) -> float | None:
        return None if self.ended is None else round(self.ended - self.started, 3)

    def as_dict(self) -> dict[str, object]:
        return {"resource": self.resource, "op": self.op, "slot": self.slot, "host": self.host,
                "start": self.started, "end": self.ended, "durationS": self.duration_s, "rc": self.rc,
                "state": self.state, "failure": self.failure, "commands": list(self.commands)}


@dataclass(frozen=True)
class RunSummary:
    run: str
    steps: tuple[StepRun, ...]

    def as_dict(self) -> dict[str, object]:
        return {"run": self.run, "steps": [s.as_dict() for s in self.steps]}


def _step(key: tuple[str, str], docs: list[dict[str, object]]) -> StepRun:
    starts = {(d["pid"], d["command"]): d for d in docs if d["event"] == "start"}
    ends = {(d["pid"], d["command"]): d for d in docs if d["event"] == "end"}
    open_ = [k for k in starts if k not in ends]
    failed = [d for d in ends.values() if d.get("rc") not in (0, None)]
    state = "interrupted" if open_ else "failed" if failed else "ok"
    first = docs[0]
    started = min(float(d["at"]) for d in docs)  # type: ignore[arg-type]
    ended = None if open_ or not ends else max(float(d["at"]) for d in ends.values())  # type: ignore[arg-type]
    rc = None if open_ else max((int(d["rc"]) for d in ends.values()), key=lambda r: r != 0, default=None)  # type: ignore[call-overload]
    failure = next((str(d["failure"]) for d in failed if d.get("failure")), None)
    if open_ and failure is None:
        failure = (f"{len(open_)} invocation(s) ({', '.join(sorted({str(k[1]) for k in open_}))}) started and never "
                   "ended: killed (SIGKILL, the engine or the deadline's KILL) or the machine stopped")
    return StepRun(resource=key[0], op=key[1], slot=str(first.get("slot", "-")), host=str(first.get("host", "-")),
                   started=started, ended=ended, rc=rc, state=state, failure=failure,
                   commands=tuple(dict.fromkeys(str(d["command"]) for d in docs)))


def summarize_run(lines: tuple[dict[str, object], ...], *, stack: str, run: str | None = None) -> RunSummary | None:
    """The steps of ``run`` (default: the stack's last run) in the order they started."""
    mine = tuple(d for d in lines if d.get("stack") == stack)
    runs = runs_in_order(mine)
    if not runs:
        return None
    chosen = run if run is not None else runs[-1]
    grouped: dict[tuple[str, str], list[dict[str, object]]] = {}
    for doc in mine:
        if doc["run"] == chosen:
            grouped.setdefault((str(doc.get("resource")), str(doc.get("op"))), []).append(doc)
    steps = sorted((_step(k, v) for k, v in grouped.items()), key=lambda s: s.started)
    return RunSummary(run=chosen, steps=tuple(steps))
