"""Reading stack files and the applied membership from disk and git. Not pure (files, git).

- ``load_stack_config``: ``Pulumi.yaml`` defaults + ``Pulumi.<stack>.yaml`` values, with the
  ``cpswap:`` prefix removed. Secure values are never decrypted or returned: they come back as
  ``SECRET_PRESENT`` so the model can tell "set" from "missing".
- ``load_applied``: the membership applied now, per docs/CONTRACTS.md: ``--applied FILE`` or
  ``.cpswap/applied-<stack>.json`` (``pulumi stack output --json`` of the last deployment),
  else ``--base REV`` (the stack file at that git revision), else none (adoption).
- ``declared_operations``: the kubean ClusterOperations that file says earlier runs declared.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any, Mapping

from cpswap.core import inputs
from cpswap.core.documents import DocumentError, parse_json, parse_yaml
from cpswap.core.errors import ConfigError, Violation
from cpswap.core.model import Host, StackModel, parse_stack_config
from cpswap.core.planner import AppliedMembership

PREFIX = "cpswap:"
SECRET_PRESENT = "[secret]"
MAX_FILE_BYTES = 1 << 20  # stack files, saved outputs and policy config are a few KiB


def read_text(path: Path, *, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, else ConfigError naming the file
    and why (missing, a directory, a device such as /dev/zero, too large, not UTF-8, unreadable)."""
    where = str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError([Violation(where, "a directory", f"{what} must be a file")])
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([Violation(where, "not a regular file",
                                         f"{what} must be a regular file (not a device, FIFO or socket)")])
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError([Violation(where, "missing", f"{what} not found")]) from None
    except OSError as exc:
        raise ConfigError([Violation(where, "unreadable", f"cannot read {what}: {exc.strerror or exc}")]) from None
    if len(data) > limit:
        raise ConfigError([Violation(where, f"more than {limit} bytes", f"{what} is too large to be one; refusing to parse it")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Violation(where, f"byte 0x{data[exc.start]:02x} at offset {exc.start}",
                                     f"{what} must be UTF-8 text")]) from None


def parse_document(text: str, *, where: str, kind: str = "yaml") -> Any:
    """``text`` parsed by the bounded YAML or JSON parser; problems become ConfigError at ``where``."""
    try:
        return parse_yaml(text) if kind == "yaml" else parse_json(text)
    except DocumentError as exc:
        raise ConfigError([Violation(where, "unparsable", str(exc))]) from None


def _mapping(doc: Any, *, where: str, what: str) -> Mapping[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ConfigError([Violation(where, type(doc).__name__, f"{what} must be a mapping (key: value) at the top level")])
    return doc


def _section(doc: Mapping[str, Any], *, where: str) -> Mapping[str, Any]:
    config = doc.get("config")
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError([Violation(f"{where}: config", type(config).__name__, "must be a mapping of key: value")])
    return config


def _config_from(document: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in _section(document, where=where).items():
        if not str(key).startswith(PREFIX):
            continue
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            value = SECRET_PRESENT
        values[str(key)[len(PREFIX):]] = value
    return values


def _project_defaults(project: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    defaults = {}
    for key, decl in _section(project, where=where).items():
        name = str(key).removeprefix(PREFIX)
        if isinstance(decl, Mapping) and "default" in decl:
            defaults[name] = decl["default"]
    return defaults


def read_yaml(path: Path, *, what: str = "stack file") -> Mapping[str, Any]:
    return _mapping(parse_document(read_text(path, what=what), where=str(path)), where=str(path), what=what)


def check_stack_name(stack: str) -> str:
    """A Pulumi stack name that names files inside the project (no path separators)."""
    try:
        return inputs.stack_name(stack)
    except inputs.InputError as exc:
        raise ConfigError([Violation("--stack", stack, str(exc))]) from None


def load_stack_config(*, directory: Path, stack: str, text: str | None = None,
                      text_source: str | None = None) -> dict[str, Any]:
    """Config values for ``stack`` (project defaults overlaid by the stack file, or ``text``, which
    came from ``text_source``, e.g. ``Pulumi.prod.yaml at origin/main``)."""
    check_stack_name(stack)
    project_path = directory / "Pulumi.yaml"
    project = read_yaml(project_path, what="project file")
    if text is not None:
        where = text_source or f"Pulumi.{stack}.yaml"
        stack_doc = _mapping(parse_document(text, where=where), where=where, what="stack file")
    else:
        where = str(directory / f"Pulumi.{stack}.yaml")
        stack_doc = read_yaml(directory / f"Pulumi.{stack}.yaml")
    return {**_project_defaults(project, where=str(project_path)), **_config_from(stack_doc, where=where)}


def model_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values the model parses (secrets are wired by the program, never parsed)."""
    return {k: v for k, v in values.items() if v != SECRET_PRESENT}


def load_model(*, directory: Path, stack: str) -> StackModel:
    return parse_stack_config(model_values(load_stack_config(directory=directory, stack=stack)), stack=stack)


def membership_from_output(doc: Mapping[str, Any], *, where: str) -> dict[str, Host]:
    raw = doc.get("membership", doc)
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError([Violation(f"{where}.membership", repr(raw)[:80], "must map slot -> {name, ip}")])
    hosts = {}
    for slot, spec in raw.items():
        if not isinstance(spec, Mapping) or not spec.get("name") or not spec.get("ip"):
            raise ConfigError([Violation(f"{where}.membership.{slot}", repr(spec)[:80], "needs name and ip")])
        rebuild = spec.get("rebuild", 0)
        if not isinstance(rebuild, int) or isinstance(rebuild, bool) or rebuild < 0:
            raise ConfigError([Violation(f"{where}.membership.{slot}.rebuild", repr(rebuild), "must be an integer >= 0")])
        hosts[str(slot)] = Host(name=str(spec["name"]), ip=str(spec["ip"]), rebuild=rebuild)
    return hosts


def _git(directory: Path, *args: str, rev: str) -> bytes:
    try:
        result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, timeout=20, check=False,
                                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError([Violation("--base", rev, f"cannot run git: {exc}")]) from None
    if result.returncode != 0:
        raise ConfigError([Violation("--base", rev, f"git {args[0]} failed: "
                                                    f"{result.stderr.decode('utf-8', 'replace').strip()[:200]}")])
    return result.stdout


def resolve_revision(*, directory: Path, rev: str) -> str:
    """The commit id of ``rev``; option-like or malformed revisions never reach git as options."""
    try:
        inputs.git_revision(rev)
    except inputs.InputError as exc:
        raise ConfigError([Violation("--base", rev, str(exc))]) from None
    out = _git(directory, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", rev=rev)
    commit = out.decode("ascii", "replace").strip()
    if not inputs.COMMIT_ID.fullmatch(commit):
        raise ConfigError([Violation("--base", rev, "git rev-parse did not name one commit")])
    return commit


def git_show(*, directory: Path, rev: str, path: str) -> str:
    """``path`` at revision ``rev`` (resolved to a commit id first), bounded and UTF-8."""
    commit = resolve_revision(directory=directory, rev=rev)
    data = _git(directory, "show", f"{commit}:{path}", rev=rev)
    where = f"{path} at {rev}"
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([Violation(where, f"more than {MAX_FILE_BYTES} bytes", "stack file is too large to be one")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Violation(where, f"byte at offset {exc.start}", "stack file must be UTF-8 text")]) from None


def applied_output_path(*, directory: Path, stack: str) -> Path:
    return directory / ".cpswap" / f"applied-{stack}.json"


def read_applied_output(path: Path) -> dict[str, Any] | None:
    """The saved ``pulumi stack output --json`` of the last deployment, or None when there is none."""
    if not path.exists():
        return None
    doc = parse_document(read_text(path, what="saved stack output"), where=str(path), kind="json")
    return dict(_mapping(doc, where=str(path), what="saved stack output (pulumi stack output --json)"))


def declared_operations(*, directory: Path, stack: str) -> frozenset[str]:
    """Names of kubean ClusterOperations earlier runs declared (``kubeanOperations`` in the saved
    stack outputs): they stay declared, so a run without a change leaves them alone."""
    doc = read_applied_output(applied_output_path(directory=directory, stack=stack)) or {}
    return frozenset(str(n) for n in doc.get("kubeanOperations") or [] if isinstance(n, str))


def applied_destroy_mode(doc: Mapping[str, Any] | None) -> str | None:
    """The ``destroyMode`` stack output of the last deployment (None when it exported none)."""
    mode = (doc or {}).get("destroyMode")
    return mode if isinstance(mode, str) else None


def load_applied(*, directory: Path, stack: str, model: StackModel, applied_file: Path | None = None,
                 base: str | None = None) -> AppliedMembership:
    if base is not None:
        source = f"Pulumi.{stack}.yaml at {base}"
        text = git_show(directory=directory, rev=base, path=f"Pulumi.{stack}.yaml")
        try:
            old = parse_stack_config(model_values(load_stack_config(directory=directory, stack=stack, text=text,
                                                                    text_source=source)), stack=stack)
        except ConfigError as exc:  # the base revision's file, not the working tree's
            raise ConfigError([Violation(v.field if v.field.startswith(source) else f"{source}: {v.field}",
                                         v.value, v.rule) for v in exc.violations]) from None
        return AppliedMembership.of(old.hosts(), source=f"stack file at {base}", destroy_mode=old.destroy_mode)
    path = applied_file or applied_output_path(directory=directory, stack=stack)
    doc = read_applied_output(path)
    if doc is not None:
        return AppliedMembership.of(membership_from_output(doc, where=path.name), destroy_mode=applied_destroy_mode(doc),
                                    source=f"exported by the last deployment ({path.relative_to(directory) if path.is_relative_to(directory) else path})")
    if applied_file is not None:
        raise ConfigError([Violation("--applied", str(applied_file), "file not found")])
    return AppliedMembership.of(model.hosts(), source="none recorded (adoption: applied = desired)")
