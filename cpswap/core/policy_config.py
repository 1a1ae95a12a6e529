"""Policy pack config (``--policy-config``, ``pulumi preview --policy-pack-config``) as CrossGuard
reads it: enforcement levels and rule properties. Pure.

Follows the Pulumi engine, pulumi/pulumi@1b5949891b3cefcb9974752b24a5ecef0acc86c8
``pkg/resource/analyzer/config.go`` (``parsePolicyPackConfig``, ``extractEnforcementLevel``,
``ReconcilePolicyPackConfig``/``applyConfig``) and ``sdk/go/common/apitype/policy.go``
(``EnforcementLevel.IsValid``), and the Python analyzer, pulumi/pulumi-policy@805bcbcd3a6d826eab5574bd8976301161008acf
``sdk/python/lib/pulumi_policy/policy.py`` (``AnalyzeStack``: a ``disabled`` policy does not run;
``remediate`` on a stack policy counts as ``mandatory``):

- empty (whitespace) content means no config; otherwise a JSON object;
- ``environments``, if present, is an array of strings (ESC environments; not used offline);
- each other key maps a policy name (or ``all``) to a level string or to an object with an
  optional ``enforcementLevel`` string plus properties; anything else is an error;
- levels: ``advisory``, ``mandatory``, ``remediate``, ``disabled``;
- every policy starts at the pack's level (cpswap's: ``mandatory``) with its schema defaults;
  ``all`` sets every policy's level first, then each named policy's level and properties apply;
- properties are validated against the policy's config schema (``minVoters``: integer >= 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping, Sequence

from cpswap.core.errors import ConfigError, Violation
from cpswap.core.rules import RuleConfig

LEVELS = ("advisory", "mandatory", "remediate", "disabled")
PACK_LEVEL = "mandatory"


@dataclass(frozen=True)
class PolicyConfig:
    """Each rule's effective enforcement level and the rules' properties."""

    levels: Mapping[str, str] = field(default_factory=dict)
    rules: RuleConfig = field(default_factory=RuleConfig)

    def level(self, rule: str) -> str:
        return self.levels.get(rule, PACK_LEVEL)

    def enforced(self, rule: str) -> str:
        """What a violation of ``rule`` means: ``mandatory`` (fails), ``advisory`` or ``disabled``."""
        level = self.level(rule)
        return "mandatory" if level == "remediate" else level


def _level(value: Any, *, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError([Violation(where, repr(value)[:80], "is not a valid enforcement level; must be a string "
                                                                f"({', '.join(LEVELS)})")])
    if value not in LEVELS:
        raise ConfigError([Violation(where, value, f"is not a valid enforcement level ({', '.join(LEVELS)})")])
    return value


def _min_voters(value: Any, *, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError([Violation(where, repr(value)[:80], "must be an integer >= 1 (policy config schema)")])
    if value < 1:
        raise ConfigError([Violation(where, repr(value), "must be an integer >= 1 (policy config schema)")])
    return int(value)


def parse_policy_config(doc: Any, *, rules: Sequence[str], where: str = "--policy-config") -> PolicyConfig:
    """``doc`` is the parsed JSON (None for empty content); ``rules`` are the pack's policy names."""
    if doc is None:
        return PolicyConfig(levels={r: PACK_LEVEL for r in rules})
    if not isinstance(doc, Mapping):
        raise ConfigError([Violation(where, type(doc).__name__, "must be a JSON object of policy name -> "
                                                                "level or {enforcementLevel, ...properties}")])
    levels = {r: PACK_LEVEL for r in rules}
    properties: dict[str, dict[str, Any]] = {}
    given: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for name, value in doc.items():
        if name == "environments":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError([Violation(f"{where}: environments", repr(value)[:80], "must be an array of strings")])
            continue
        if isinstance(value, str):
            given[name] = (_level(value, where=f"{where}: {name}"), {})
        elif isinstance(value, Mapping):
            props = dict(value)
            level = _level(props.pop("enforcementLevel"), where=f"{where}: {name}.enforcementLevel") \
                if "enforcementLevel" in props else None
            given[name] = (level, props)
        else:
            raise ConfigError([Violation(f"{where}: {name}", repr(value)[:80], "is not a valid value; must be a string "
                                                                                "or object")])
    all_level = given.get("all", (None, {}))[0]
    if all_level is not None:
        levels = {r: all_level for r in levels}
    for name, (level, props) in given.items():
        if level is not None:
            levels[name] = level
        if props:
            properties.setdefault(name, {}).update(props)
    min_voters = RuleConfig.min_voters
    voters_props = properties.get("cpswap-etcd-min-voters", {})
    if "minVoters" in voters_props:
        min_voters = _min_voters(voters_props["minVoters"], where=f"{where}: cpswap-etcd-min-voters.minVoters")
    return PolicyConfig(levels={k: v for k, v in levels.items() if k != "all"}, rules=RuleConfig(min_voters=min_voters))
