"""The CrossGuard policies built from cpswap.core.rules. Imports pulumi_policy; not pure.

Every rule is a mandatory RESOURCE policy. The engine runs resource policies on a resource's
inputs when it registers, before that resource's step, and in `pulumi up` a mandatory violation
makes the resource invalid so no step for it runs (pulumi/pulumi
``pkg/resource/deploy/step_generator.go`` ``analyzeAll``, ``analyze_snapshot.go``
``analyzeResource``). Stack policies run only after every step has executed
(``deployment_executor.go``), so none of the rules is one.

- On the ControlPlane component (registered before any slot resource): the plan rules on its
  ``plan`` input, and the resource rules on the commands and ClusterOperations it declares in its
  ``commands`` input. A violation here stops `up` before the first step.
- On each command and ClusterOperation: the resource rules on its own inputs and options, so
  what is really registered is checked too, before its own step.

pulumi_policy hands policies their properties wrapped so that reading an unknown value raises
``UnknownValueError``, which downgrades the whole policy to an advisory "can't run policy ...
during preview" (``_PolicyAnalyzerServicer.Analyze``). ``known`` reads every value once, catching
that per value, and gives the rules ``cpswap.core.rules.UNKNOWN`` instead.

The one stack policy, ``cpswap-plan-present``, reads only resource types and property names
(never values): it reports a stack with no ControlPlane carrying a plan, i.e. nothing the resource
policies could check. ``policies/__main__.py`` only wraps ``policies()`` in a PolicyPack (which
starts a gRPC server and blocks, so tests drive pulumi_policy's analyzer servicer instead).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy,
                           StackValidationArgs, StackValidationPolicy)
from pulumi_policy.proxy import UnknownValueError

from cpswap.core.rules import (COMMAND_TYPES, OPERATION_TYPE, PLAN_RESOURCE_TYPE, RULES, UNKNOWN, ResourceView, Rule,
                               RuleConfig, check_plan, check_resources, view_from_input)

PACK_NAME = "cpswap"
PLAN_PRESENT = "cpswap-plan-present"


def known(value: Any) -> Any:
    """Plain values from pulumi_policy's unknown-checking proxies; an unknown value becomes UNKNOWN."""
    if isinstance(value, Mapping):
        result = {}
        for key in list(iter(value)):
            try:
                result[key] = known(value[key])
            except UnknownValueError:
                result[key] = UNKNOWN
        return result
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = []
        for index in range(len(value)):
            try:
                items.append(known(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def _config(args: Any) -> RuleConfig:
    raw = args.get_config() or {}
    return RuleConfig(min_voters=int(raw.get("minVoters", RuleConfig.min_voters)))


def resource_view(args: ResourceValidationArgs) -> ResourceView:
    """What a rule may know of the resource being registered: its inputs and options."""
    opts = args.opts
    timeouts = opts.custom_timeouts
    return ResourceView(
        type=args.resource_type, name=args.name, inputs=known(args.props),
        delete_before_replace=opts.delete_before_replace,
        timeouts={"create": timeouts.create_seconds or 0, "update": timeouts.update_seconds or 0,
                  "delete": timeouts.delete_seconds or 0},
        additional_secret_outputs=tuple(opts.additional_secret_outputs or ()))


def _validator(rule: Rule):
    def validate(args: ResourceValidationArgs, report_violation: Any) -> None:
        config = _config(args)
        if args.resource_type == PLAN_RESOURCE_TYPE:
            props = known(args.props)
            if rule.scope == "plan":
                found = check_plan(plan=props.get("plan"), config=config, only=[rule.name])
            else:
                declared = props.get("commands")
                views = [view_from_input(v) for v in declared] if isinstance(declared, list) else []
                found = check_resources(resources=views, config=config, only=[rule.name])
        elif rule.scope == "resources" and args.resource_type in (*COMMAND_TYPES, OPERATION_TYPE):
            found = check_resources(resources=[resource_view(args)], config=config, only=[rule.name])
        else:
            return
        for violation in found:
            report_violation(str(violation))
    return validate


def _plan_present(args: StackValidationArgs, report_violation: Any) -> None:
    planes = [r for r in args.resources if r.resource_type == PLAN_RESOURCE_TYPE]
    if not planes:
        report_violation(f"[{PLAN_PRESENT}] stack: no {PLAN_RESOURCE_TYPE} resource; the cpswap rules had nothing "
                         f"to check")
    for r in planes:
        if "plan" not in list(iter(r.props)):
            report_violation(f"[{PLAN_PRESENT}] {r.name}: the ControlPlane has no plan output; the cpswap rules had "
                             f"nothing to check", r.urn)


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    result: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for rule in RULES:
        schema = None
        if rule.name == "cpswap-etcd-min-voters":
            schema = PolicyConfigSchema(properties={"minVoters": {"type": "integer", "default": 3, "minimum": 1}})
        result.append(ResourceValidationPolicy(name=rule.name, description=rule.description,
                                               validate=_validator(rule),
                                               enforcement_level=EnforcementLevel.MANDATORY, config_schema=schema))
    result.append(StackValidationPolicy(name=PLAN_PRESENT, description="the ControlPlane component carrying the plan "
                                        "document is in the stack", validate=_plan_present,
                                        enforcement_level=EnforcementLevel.MANDATORY))
    return result
