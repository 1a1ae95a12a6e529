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

import json
import subprocess
from pathlib import Path
from typing import Any, Mapping

import yaml

from cpswap.core.errors import ConfigError, Violation
from cpswap.core.model import Host, StackModel, parse_stack_config
from cpswap.core.planner import AppliedMembership

PREFIX = "cpswap:"
SECRET_PRESENT = "[secret]"


def _config_from(document: Mapping[str, Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in ((document or {}).get("config") or {}).items():
        if not str(key).startswith(PREFIX):
            continue
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            value = SECRET_PRESENT
        values[str(key)[len(PREFIX):]] = value
    return values


def _project_defaults(project: Mapping[str, Any]) -> dict[str, Any]:
    defaults = {}
    for key, decl in (project.get("config") or {}).items():
        name = str(key).removeprefix(PREFIX)
        if isinstance(decl, Mapping) and "default" in decl:
            defaults[name] = decl["default"]
    return defaults


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open() as handle:
            return yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError([Violation(str(path), "missing", "stack file not found")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Violation(str(path), "unparsable", f"not valid YAML: {exc}")]) from None


def load_stack_config(*, directory: Path, stack: str, text: str | None = None) -> dict[str, Any]:
    """Config values for ``stack`` (project defaults overlaid by the stack file, or ``text``)."""
    project = read_yaml(directory / "Pulumi.yaml")
    stack_doc = yaml.safe_load(text) if text is not None else read_yaml(directory / f"Pulumi.{stack}.yaml")
    return {**_project_defaults(project), **_config_from(stack_doc)}


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


def git_show(*, directory: Path, rev: str, path: str) -> str:
    result = subprocess.run(["git", "-C", str(directory), "show", f"{rev}:{path}"], capture_output=True,
                            text=True, timeout=20, check=False)
    if result.returncode != 0:
        raise ConfigError([Violation("--base", rev, f"git cannot show {path} at that revision: "
                                                    f"{result.stderr.strip()[:200]}")])
    return result.stdout


def applied_output_path(*, directory: Path, stack: str) -> Path:
    return directory / ".cpswap" / f"applied-{stack}.json"


def read_applied_output(path: Path) -> dict[str, Any] | None:
    """The saved ``pulumi stack output --json`` of the last deployment, or None when there is none."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError([Violation(str(path), "unparsable", f"not JSON: {exc}")]) from None


def declared_operations(*, directory: Path, stack: str) -> frozenset[str]:
    """Names of kubean ClusterOperations earlier runs declared (``kubeanOperations`` in the saved
    stack outputs): they stay declared, so a run without a change leaves them alone."""
    doc = read_applied_output(applied_output_path(directory=directory, stack=stack)) or {}
    return frozenset(str(n) for n in doc.get("kubeanOperations") or [] if isinstance(n, str))


def load_applied(*, directory: Path, stack: str, model: StackModel, applied_file: Path | None = None,
                 base: str | None = None) -> AppliedMembership:
    if base is not None:
        text = git_show(directory=directory, rev=base, path=f"Pulumi.{stack}.yaml")
        old = parse_stack_config(model_values(load_stack_config(directory=directory, stack=stack, text=text)),
                                 stack=stack)
        return AppliedMembership.of(old.hosts(), source=f"stack file at {base}")
    path = applied_file or applied_output_path(directory=directory, stack=stack)
    doc = read_applied_output(path)
    if doc is not None:
        return AppliedMembership.of(membership_from_output(doc, where=path.name),
                                    source=f"exported by the last deployment ({path.relative_to(directory) if path.is_relative_to(directory) else path})")
    if applied_file is not None:
        raise ConfigError([Violation("--applied", str(applied_file), "file not found")])
    return AppliedMembership.of(model.hosts(), source="none recorded (adoption: applied = desired)")
