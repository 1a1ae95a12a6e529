"""The CrossGuard policies built from cpswap.core.rules. Imports pulumi_policy; not pure.

``policies()`` returns one mandatory StackValidationPolicy per rule; ``policies/__main__.py``
only wraps them in a PolicyPack (which starts a gRPC server and blocks, so tests never import
it: they call ``policies()`` and ``validate`` directly).
"""
from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, StackValidationArgs, StackValidationPolicy

from cpswap.core.rules import RULES, Rule, RuleConfig, check, views_from_policy_resources


def _config(args: StackValidationArgs) -> RuleConfig:
    raw = args.get_config() or {}
    return RuleConfig(min_voters=int(raw.get("minVoters", RuleConfig.min_voters)))


def _validator(rule: Rule):
    def validate(args: StackValidationArgs, report_violation: Any) -> None:
        plan, views = views_from_policy_resources(args.resources)
        urns = {r.name: r.urn for r in args.resources}
        for violation in check(plan=plan, resources=views, config=_config(args), only=[rule.name]):
            report_violation(str(violation), urns.get(violation.resource))
    return validate


def policies() -> list[StackValidationPolicy]:
    result = []
    for rule in RULES:
        schema = None
        if rule.name == "cpswap-etcd-min-voters":
            schema = PolicyConfigSchema(properties={"minVoters": {"type": "integer", "default": 3, "minimum": 1}})
        result.append(StackValidationPolicy(name=rule.name, description=rule.description, validate=_validator(rule),
                                            enforcement_level=EnforcementLevel.MANDATORY, config_schema=schema))
    return result
