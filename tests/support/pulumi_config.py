"""The Pulumi CLI's project and stack config rules, as a stand-in for tests. Test-only.

Follows pulumi/pulumi at commit 1b5949891b3cefcb9974752b24a5ecef0acc86c8 (2026-08-21):

- ``pkg/workspace/config.go``: ``mergeConfig`` (a key declared in ``Pulumi.yaml`` under the
  project's namespace with neither ``default`` nor ``value`` and absent from the stack is missing;
  all missing keys are reported in one error formatted by ``formatMissingKeys`` /
  ``missingStackConfigurationKeysError``; otherwise the default (or value) is merged into the stack
  config as a plain value by ``createConfigValue``), then ``validateStackConfigValues`` /
  ``validateStackConfigValue`` over the project keys in sorted order, first error wins: a
  ``secret: true`` key whose stack value is not secure is refused (so a default on a secret key,
  merged as plain text, is refused), then the value (JSON-decoded when it is an object value) must
  pass ``ValidateConfigValue``.
- ``sdk/go/common/workspace/project.go``: ``(*Project).Validate`` (``default`` and ``value`` both
  set; an ``array`` without ``items``; a default not of its type; keys outside the project's
  namespace must carry a ``value`` and no type or default), ``ValidateConfigValue`` (string;
  integer: int, whole float or a string that parses as an integer; boolean: bool or the strings
  "true"/"false"; object: a map, accepted from CLI 3.187.0 by #20132; array: a list whose items
  pass ``items``) and ``InferFullTypeName`` (``array<T>``).
- ``sdk/go/common/resource/config/value.go``: a stack file's scalar is kept as its string form,
  a mapping or list is an object value (JSON text), ``{secure: ...}`` is a secure value.

Not modelled: ESC environments merged into the stack config, secure values nested inside
objects, decryption (a secure value's plain text is given here), and ``--skip-config-validation``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import yaml


@dataclass(frozen=True)
class StackValue:
    """One stack config value as the CLI holds it: text, whether it is secure, whether it is an object."""

    text: str
    secure: bool = False
    object: bool = False

    @staticmethod
    def of(raw: Any, *, secure: bool = False) -> StackValue:
        if isinstance(raw, (dict, list)):
            return StackValue(json.dumps(raw), secure=secure, object=True)
        if isinstance(raw, bool):
            return StackValue("true" if raw else "false", secure=secure)
        return StackValue(str(raw), secure=secure)


class ConfigRefused(Exception):
    """What the CLI prints when it refuses to run the stack."""


def load_stack_file(path: Path) -> dict[str, StackValue]:
    """``Pulumi.<stack>.yaml`` → {namespaced key: StackValue}; ``{secure: x}`` is secure (its
    ciphertext stands for the value: nothing is decrypted here)."""
    doc = yaml.safe_load(path.read_text()) or {}
    values = {}
    for key, raw in (doc.get("config") or {}).items():
        if isinstance(raw, dict) and set(raw) == {"secure"}:
            values[key] = StackValue(str(raw["secure"]), secure=True)
        else:
            values[key] = StackValue.of(raw)
    return values


def validate_config_value(type_name: str, items: Mapping[str, Any] | None, value: Any) -> bool:
    """``ValidateConfigValue``."""
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return value == math.trunc(value)
        if isinstance(value, str):
            try:
                int(value, 10)
            except ValueError:
                return False
            return True
        return False
    if type_name == "boolean":
        return value in ("true", "false") or isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    if not isinstance(value, list) or items is None:
        return False
    return all(validate_config_value(items.get("type", ""), items.get("items"), item) for item in value)


def full_type_name(type_name: str, items: Mapping[str, Any] | None) -> str:
    """``InferFullTypeName``."""
    if items is not None:
        return f"array<{full_type_name(items.get('type', ''), items.get('items'))}>"
    return type_name


def _namespaced_by_project(project: str, key: str) -> bool:
    return ":" not in key or key.startswith(project + ":")


def _declarations(project: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    # a plain scalar under config: is a value (SimplifyMarshalledProject turns it into {value: x})
    return {k: (v if isinstance(v, dict) else {"value": v}) for k, v in (project.get("config") or {}).items()}


def validate_project(project: Mapping[str, Any]) -> list[str]:
    """``(*Project).Validate``'s config rules; the first error, as the CLI stops at it (a list
    so a clean project is ``[]``)."""
    name = str(project.get("name", ""))
    if not name:
        return ["project is missing a 'name' attribute"]
    for key, decl in _declarations(project).items():
        if decl.get("default") is not None and decl.get("value") is not None:
            return [f"project config '{key}' cannot have both a 'default' and 'value' attribute"]
        typed = decl.get("type") is not None
        if _namespaced_by_project(name, key):
            if typed and decl["type"] == "array" and decl.get("items") is None:
                return [f"The configuration key '{key}' declares an array but does not specify the underlying "
                        f"type via the 'items' attribute"]
            if typed and decl.get("default") is not None and not validate_config_value(
                    decl["type"], decl.get("items"), decl["default"]):
                return [f"The default value specified for configuration key '{key}' is not of the expected type "
                        f"'{full_type_name(decl['type'], decl.get('items'))}'"]
        else:
            if typed:
                return [f"Configuration key '{key}' is not namespaced by the project and should not define a type"]
            if decl.get("default") is not None:
                return [f"Configuration key '{key}' is not namespaced by the project and should not define a "
                        f"default value. Did you mean to use the 'value' attribute instead of 'default'?"]
            if decl.get("value") is None:
                return [f"Configuration key '{key}' is namespaced and must provide an attribute 'value'"]
    return []


def _format_missing(keys: list[str]) -> str:
    if len(keys) == 1:
        return f"'{keys[0]}'"
    keys = sorted(keys)
    return "".join(f"and '{k}'" if i == len(keys) - 1 else f"'{k}' " if i == len(keys) - 2 else f"'{k}', "
                   for i, k in enumerate(keys))


def _full_key(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _default_value(raw: Any) -> StackValue:
    """``createConfigValue``: string, int and bool print as themselves; anything else is JSON."""
    if isinstance(raw, (str, bool, int)) and not isinstance(raw, float):
        return StackValue.of(raw)
    return StackValue(json.dumps(raw), object=True)


def merge_config(*, project: Mapping[str, Any], stack_name: str, stack: Mapping[str, StackValue]
                 ) -> dict[str, StackValue]:
    """``ValidateStackConfigAndApplyProjectConfig``: the merged stack config, or ``ConfigRefused``
    with the CLI's message."""
    name = str(project["name"])
    merged = dict(stack)
    declarations = _declarations(project)
    missing = []
    for key in sorted(declarations):
        decl = declarations[key]
        full = _full_key(name, key)
        found = full in merged
        has_default, has_value = decl.get("default") is not None, decl.get("value") is not None
        if not found and not has_value and not has_default and full.split(":", 1)[0] == name:
            missing.append(key)
            continue
        if not found and (has_value or has_default):
            merged[full] = _default_value(decl["default"] if has_default else decl["value"])
    if missing:
        raise ConfigRefused(f"Stack '{stack_name}' is missing configuration "
                            f"{'value' if len(missing) == 1 else 'values'} {_format_missing(missing)}")
    for key in sorted(declarations):
        decl = declarations[key]
        if decl.get("type") is None:
            continue
        value = merged.get(_full_key(name, key), StackValue(""))
        if decl.get("secret") and not value.secure:
            raise ConfigRefused(f"Stack '{stack_name}' with configuration key '{key}' must be encrypted as it's "
                                f"secret")
        content = json.loads(value.text) if value.object else value.text
        if not validate_config_value(decl["type"], decl.get("items"), content):
            raise ConfigRefused(f"Stack '{stack_name}' with configuration key '{key}' must be of type "
                                f"'{full_type_name(decl['type'], decl.get('items'))}'")
    return merged
