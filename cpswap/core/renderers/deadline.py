"""Every command ends itself at its own deadline, and no step runs a daemon in the foreground. Pure.

Why the command must bound itself (pulumi-command at 010bd8e0dd8a2f13707aa3b5061739edd90790a5,
pulumi-go-provider at ac69bde08a7f84ee355614eb0b6c848871b37901):

- The engine sends the resource's custom timeout with Create/Update/Delete; pulumi-go-provider's
  ``middleware/cancel/cancel.go`` turns it into ``context.WithTimeout`` (whole seconds).
- remote: ``provider/pkg/provider/remote/commandOutputs.go`` uses the context only to dial;
  ``session.Run(cmd)`` takes no context, so a remote command that never exits hangs ``pulumi up``
  for ever, whatever the timeout says.
- local: ``provider/pkg/provider/local/commandOutputs.go`` runs ``exec.CommandContext(ctx, "/bin/sh",
  "-c", cmd)``: at the deadline Go SIGKILLs ``/bin/sh`` only, and ``cmd.Wait`` then still waits for
  stdout/stderr to close, i.e. for every child that inherited them.

So each command is rendered as ``timeout --kill-after=K D sh -c '<text>'`` (GNU coreutils: without
``--foreground`` it runs the command in its own process group and signals the whole group: TERM at
D seconds, KILL K seconds later). D is the declared timeout minus ``MARGIN_S`` (the dial and the
kill grace fit inside the engine's timeout), so the command stops before the provider's own
deadline and reports why (exit 124, or 137 after the KILL).

A daemon started in the foreground never returns: the step would hang until its deadline and
then kill the daemon. ``foreground_daemon`` finds such a step in rendered text; the test over every
rendered command keeps all of them out.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

MARGIN_S = 60  # declared timeout - deadline: room for the SSH dial and the KILL grace
KILL_AFTER_S = 30  # TERM first; KILL the process group this long after
MIN_TIMEOUT_S = 2 * MARGIN_S

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> int:
    """Seconds of a Pulumi custom timeout string (Go duration subset: ``1h30m``, ``10m``, ``90s``)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"timeout {text!r}: not a duration of hours, minutes and seconds such as 10m or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class Deadline:
    """When a command ends itself: TERM to its process group after ``seconds``, KILL ``kill_after_s`` later."""

    seconds: int
    kill_after_s: int = KILL_AFTER_S

    def describe(self) -> str:
        return (f"ends itself after {self.seconds}s (TERM to its process group, KILL {self.kill_after_s}s later)")


def deadline_for(*, name: str, timeout: str) -> Deadline:
    """The deadline of a step whose declared (custom) timeout is ``timeout``."""
    seconds = parse_duration(timeout)
    if seconds < MIN_TIMEOUT_S:
        raise ValueError(f"{name}: timeout {timeout} ({seconds}s) is below {MIN_TIMEOUT_S}s; the command's own "
                         f"deadline is the timeout minus {MARGIN_S}s")
    return Deadline(seconds=seconds - MARGIN_S)


def render_bounded(*, name: str, text: str, deadline: Deadline, step: str | None = None) -> str:
    """``text`` run under ``timeout`` in its own process group; stdin, environment and exit code
    pass through, and a stop at the deadline is reported on stderr with the step's name.
    ``step`` (shell assignment words, cpswap/core/runrecord.py ``step_assignment``) goes in front
    of ``timeout``, so every ``cpswap`` the work calls appends to the run record."""
    said = shlex.quote(f"cpswap: {name}: stopped at its deadline of {deadline.seconds}s "
                       f"(TERM to its process group, KILL {deadline.kill_after_s}s later)")
    env = f"{step} " if step else ""
    return (f"rc=0; {env}timeout --kill-after={deadline.kill_after_s}s {deadline.seconds}s sh -c {shlex.quote(text)} "
            f"|| rc=$?; case $rc in 124|137) echo {said} >&2;; esac; exit $rc")


def bounded_work(text: str) -> str:
    """The work a ``render_bounded`` text runs (the ``sh -c`` argument); any other text as it is."""
    if not re.match(r"rc=0; (CPSWAP_STEP=('[^']*'|\S+) )?timeout --kill-after=", text):
        return text
    words = shlex.split(text.split(" || rc=$?;", 1)[0])
    return words[words.index("-c") + 1] if "-c" in words[:-1] else text


# Binaries that serve until stopped, with the arguments that make them do so. ``None``: any call.
DAEMONS: dict[str, tuple[str, ...] | None] = {
    "k3s": ("server", "agent"),
    "rke2": ("server", "agent"),
    "etcd": None,
    "kube-apiserver": None,
    "kube-controller-manager": None,
    "kube-scheduler": None,
    "kubelet": None,
    "containerd": None,
    "dockerd": None,
}
_PREFIXES = {"exec", "nohup", "sudo", "env", "command", "setsid",  # run what follows in the foreground
             "if", "then", "else", "elif", "do", "while", "until", "!", "{", "("}
_FOREGROUND_FLAGS = {"keepalived": ("-n", "--dont-fork")}  # keepalived forks unless told not to


def _simple_commands(text: str) -> list[tuple[list[str], bool]]:
    """Each simple command of ``text`` (split at ``;``, ``&``, ``|``, ``&&``, ``||``) as its words
    and whether a lone ``&`` puts it in the background, recursing into ``sh -c``/``bash -c``
    arguments. Quoting follows shlex (POSIX)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""  # `${#VAR}` is not a comment
    commands: list[tuple[list[str], bool]] = []
    words: list[str] = []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append((words, token == "&"))
            words = []
        else:
            words.append(token)
    commands.append((words, False))
    found: list[tuple[list[str], bool]] = []
    for words, background in commands:
        if not words:
            continue
        found.append((words, background))
        for i, word in enumerate(words[:-2]):
            if word.rsplit("/", 1)[-1] in ("sh", "bash") and words[i + 1] == "-c":
                found.extend(_simple_commands(words[i + 2]))
                break
    return found


def foreground_daemon(text: str) -> str | None:
    """The first daemon ``text`` would run in the foreground (it never returns), else None."""
    for words, background in _simple_commands(text):
        while words and (words[0] in _PREFIXES or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])):
            words = words[1:]
        if not words or background:
            continue
        program = words[0].rsplit("/", 1)[-1]
        if program in DAEMONS:
            modes = DAEMONS[program]
            if modes is None or (len(words) > 1 and words[1] in modes):
                return " ".join(words[:2])
        if program in _FOREGROUND_FLAGS and any(w in _FOREGROUND_FLAGS[program] for w in words[1:]):
            return " ".join(words[:2])
    return None
