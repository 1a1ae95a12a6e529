"""Reading stack files and the applied membership from disk and git. Not pure (files, git).

- ``load_stack_config``: ``Pulumi.yaml`` defaults + ``Pulumi.<stack>.yaml`` values, with the
  ``cpswap:`` prefix removed. Secure values are never decrypted or returned: they come back as
  ``SECRET_PRESENT`` so the model can tell "set" from "missing".
- ``load_applied``: the membership applied now, per docs/CONTRACTS.md (``planner.choose_applied``):
  live etcd when observed, else ``--applied FILE`` or ``.cpswap/applied-<stack>.json`` (``pulumi
  stack output --json`` of the last deployment, validated as strictly as the stack file), else
  ``--base REV`` (the stack file at that git revision), else adoption verified at run time.
- ``declared_operations``: the kubean ClusterOperations that file says earlier runs declared.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from cpswap.core import inputs
from cpswap.core.documents import DocumentError, parse_json, parse_yaml
from cpswap.core.errors import ConfigError, Violation
from cpswap.core.facts import EtcdFacts
from cpswap.core.model import Endpoint, Host, StackModel, parse_applied_membership, parse_stack_config
from cpswap.core.planner import AppliedMembership, choose_applied

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


def membership_from_output(doc: Any, *, where: str, endpoint: Endpoint) -> dict[str, Host]:
    """The ``membership`` of saved stack outputs, validated as strictly as the stack file."""
    if not isinstance(doc, Mapping):
        raise ConfigError([Violation(where, f"{type(doc).__name__}: {json.dumps(doc)[:60]}",
                                     "saved stack output must be a mapping: the JSON object `pulumi stack output --json` prints, with a "
                                     "`membership` output; a missing applied membership never means 'anything goes'")])
    if "membership" not in doc:
        raise ConfigError([Violation(f"{where}.membership", "missing",
                                     f"the saved stack outputs have no `membership` (keys: "
                                     f"{', '.join(sorted(map(str, doc))) or 'none'})")])
    return parse_applied_membership(doc["membership"], where=f"{where}.membership", endpoint=endpoint)


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


def read_applied_output(path: Path) -> Any:
    """The saved ``pulumi stack output --json`` of the last deployment (any JSON value; the caller
    checks its shape), or ``ABSENT`` when there is no such file. A file that is there but is not a
    bounded, regular, UTF-8 JSON file is a ConfigError: it never reads as "no record"."""
    if not os.path.lexists(path):
        return ABSENT
    return parse_document(read_text(path, what="saved stack output"), where=str(path), kind="json")


ABSENT = object()


def declared_operations(*, directory: Path, stack: str) -> frozenset[str]:
    """Names of kubean ClusterOperations earlier runs declared (``kubeanOperations`` in the saved
    stack outputs): they stay declared, so a run without a change leaves them alone."""
    path = applied_output_path(directory=directory, stack=stack)
    doc = read_applied_output(path)
    if doc is ABSENT:
        return frozenset()
    if not isinstance(doc, Mapping):
        raise ConfigError([Violation(str(path), type(doc).__name__, "must be the JSON object of the saved stack outputs")])
    names = doc.get("kubeanOperations") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError([Violation(f"{path.name}.kubeanOperations", repr(names)[:80], "must be a list of names")])
    return frozenset(names)


def recorded_departed(*, directory: Path, stack: str) -> dict[str, str]:
    """The Node each slot's current host replaced, as the last deployment exported it
    (``departedNodes`` in the saved stack outputs: slot -> node name); {} without a saved file."""
    from cpswap.core import inputs

    path = applied_output_path(directory=directory, stack=stack)
    doc = read_applied_output(path)
    if doc is ABSENT:
        return {}
    if not isinstance(doc, Mapping):
        raise ConfigError([Violation(str(path), type(doc).__name__, "must be the JSON object of the saved stack outputs")])
    found = doc.get("departedNodes") or {}
    problems = []
    if not isinstance(found, Mapping):
        problems.append(Violation(f"{path.name}.departedNodes", repr(found)[:80], "must be an object of slot -> node name"))
        found = {}
    for slot, name in found.items():
        try:
            inputs.slot(slot)
            inputs.dns_name(name)
        except (inputs.InputError, TypeError) as exc:
            problems.append(Violation(f"{path.name}.departedNodes.{slot}", repr(name)[:80], str(exc)))
    if problems:
        raise ConfigError(problems)
    return dict(found)


def applied_destroy_mode(doc: Mapping[str, Any] | None) -> str | None:
    """The ``destroyMode`` stack output of the last deployment (None when it exported none)."""
    mode = (doc or {}).get("destroyMode")
    return mode if isinstance(mode, str) else None


def load_applied(*, directory: Path, stack: str, model: StackModel, applied_file: Path | None = None,
                 base: str | None = None, live: EtcdFacts | None = None) -> AppliedMembership:
    """The applied membership by the one rule of ``planner.choose_applied`` (live etcd, else the
    exported membership, else ``--base``, else adoption verified at run time). A saved outputs
    file that exists is validated strictly: null, a wrong shape or a bad host is an error, never
    "anything goes". The destroyMode is what the last deployment stored (its outputs, else the
    stack file at ``--base``), whichever source names the hosts."""
    base_hosts, base_mode, exported_mode = None, None, None
    if base is not None:
        source = f"Pulumi.{stack}.yaml at {base}"
        text = git_show(directory=directory, rev=base, path=f"Pulumi.{stack}.yaml")
        try:
            old = parse_stack_config(model_values(load_stack_config(directory=directory, stack=stack, text=text,
                                                                    text_source=source)), stack=stack)
        except ConfigError as exc:  # the base revision's file, not the working tree's
            raise ConfigError([Violation(v.field if v.field.startswith(source) else f"{source}: {v.field}",
                                         v.value, v.rule) for v in exc.violations]) from None
        base_hosts = (old.hosts(), base)
        base_mode = old.destroy_mode
    path = applied_file or applied_output_path(directory=directory, stack=stack)
    doc = read_applied_output(path)
    exported = None
    if doc is not ABSENT:
        where = str(path.relative_to(directory) if path.is_relative_to(directory) else path)
        exported = (membership_from_output(doc, where=where, endpoint=model.endpoint), where)
        exported_mode = applied_destroy_mode(doc)
    elif applied_file is not None:
        raise ConfigError([Violation("--applied", str(applied_file), "file not found")])
    applied = choose_applied(model=model, live=live, exported=exported, base=base_hosts)
    return replace(applied, destroy_mode=exported_mode if exported is not None else base_mode)
