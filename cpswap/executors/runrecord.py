"""Appends to the run record (cpswap/core/runrecord.py decides every line) and reads it. Not pure
(files, locks, /proc).

Where: ``.cpswap/runs/<stack>/steps.jsonl`` under the directory the command runs in. The Pulumi
CLI starts its providers in the project directory and pulumi-command runs a local command there
(no ``dir`` is set), so this is next to ``.cpswap/applied-<stack>.json`` and the recovery
journals on the operator's machine, and inside ``.cpswap/runs/<stack>/``, the directory CI's
deploy job keeps as an artifact. The directory is made 0700, the file 0600.

A run: ``$CPSWAP_RUN_ID`` when set (CI sets it to its pipeline's id); else the process that
started the step's shell, found by walking up past ``sh``/``timeout``/``env`` (Linux ``/proc``, else
``ps``): the engine starts one command provider per ``pulumi up``, so its pid and start time name
the run.

Appends are one ``write`` of a whole line under ``flock`` (steps run concurrently); when a new run
begins, the file is cut to the last ``KEEP_RUNS`` runs in place, under the same lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from pathlib import Path
from typing import Iterator

from cpswap.core import runrecord as rr

RECORD = Path(".cpswap") / "runs"
_SHELLS = {"sh", "dash", "bash", "ash", "zsh", "busybox", "timeout", "env"}


def record_path(*, directory: Path, stack: str) -> Path:
    return directory / RECORD / stack / "steps.jsonl"


def _proc_parent(pid: int) -> tuple[str, int, str] | None:
    """(comm, parent pid, start time) of ``pid`` from /proc, else from ``ps``; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        return comm, int(fields[1]), fields[19]
    except (OSError, ValueError, IndexError):
        pass
    try:
        out = subprocess.run(["ps", "-o", "ppid=,lstart=,comm=", "-p", str(pid)], capture_output=True, text=True,
                             timeout=2, check=False).stdout.split()
        return os.path.basename(out[-1]), int(out[0]), "_".join(out[1:-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def run_id() -> str:
    """``$CPSWAP_RUN_ID``, else the first ancestor that is not a shell, ``timeout`` or ``env``."""
    explicit = os.environ.get(rr.RUN_ENV, "").strip()
    if explicit:
        return explicit[:128]
    pid = os.getppid()
    for _ in range(16):
        found = _proc_parent(pid)
        if found is None:
            break
        comm, parent, started = found
        if comm not in _SHELLS or parent <= 1:
            return f"{comm}-{pid}-{started}"
        pid = parent
    return f"pid-{os.getppid()}"


def _private_dir(path: Path) -> None:
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(old)
    info = os.lstat(path)
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        os.chmod(path, 0o700)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    _private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def append(*, path: Path, line: str, run: str, keep: int = rr.KEEP_RUNS) -> None:
    """Append ``line``; when ``run`` is new to the file, first cut the file to its last ``keep - 1``
    runs so that it holds at most ``keep`` with this one."""
    with _locked(path) as fd:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        text = Path(path).read_text(errors="replace")
        if f'"run": {_json_str(run)}' not in text:
            kept = rr.kept_text(text, keep=keep - 1)
            if kept is not None:
                os.ftruncate(fd, 0)
                os.write(fd, kept.encode())
        os.write(fd, (line + "\n").encode())


def _json_str(text: str) -> str:
    import json

    return json.dumps(text)


def read(*, path: Path) -> str:
    """The record's text ('' when there is none); at most 4 MiB from its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - (4 << 20)))
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


class Outcome:
    """What the recorded invocation sets: its exit code and its failure's text."""

    def __init__(self) -> None:
        self.rc: int = 0
        self.failure: str | None = None


def _subcommand(argv: list[str]) -> str:
    """The subcommand words (``kube recover-pvcs``), never an argument's value."""
    words = [a for a in argv if not a.startswith("-")][:2]
    if len(words) == 2 and argv.index(words[1]) != argv.index(words[0]) + 1:
        words = words[:1]  # the second word is a flag's value, not a subcommand
    return " ".join(words) or "cpswap"


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def recording(*, step: str, argv: list[str], directory: Path | None = None) -> Iterator[Outcome]:
    """Records the invocation's start and end for ``step`` (``$CPSWAP_STEP``). A record that cannot
    be written (a malformed step, a read-only directory) is reported on stderr and never fails the
    command itself. SIGTERM (the deadline's first signal) ends it as exit 143, recorded."""
    import signal
    import sys
    import time

    outcome = Outcome()
    try:
        tag = rr.StepTag.parse(step)
        run, path, command = run_id(), record_path(directory=directory or Path.cwd(), stack=tag.stack), _subcommand(argv)
        started = time.time()
        append(path=path, line=rr.start_line(run=run, tag=tag, command=command, pid=os.getpid(), at=started), run=run)
    except (OSError, rr.RecordError) as exc:
        print(f"cpswap: run record not written: {exc}", file=sys.stderr)
        yield outcome
        return
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        yield outcome
    except SystemExit as exc:
        outcome.rc = exc.code if isinstance(exc.code, int) else 1
        outcome.failure = f"ended by signal {outcome.rc - 128}" if outcome.rc > 128 else f"exit {outcome.rc}"
        raise
    except BaseException as exc:
        outcome.rc, outcome.failure = 1, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            append(path=path, run=run, line=rr.end_line(run=run, tag=tag, command=command, pid=os.getpid(),
                                                       at=time.time(), started=started, rc=outcome.rc,
                                                       failure=(outcome.failure or f"exit {outcome.rc}") if outcome.rc else None))
        except OSError as exc:
            print(f"cpswap: run record not written: {exc}", file=sys.stderr)
