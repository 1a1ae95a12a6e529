"""`cpswap check`: the policy pack's rules, offline, against the stack files. Not pure (files).

Builds the same plan document as `cpswap plan` and the same command and ClusterOperation views
the ControlPlane component declares (``cpswap.core.rules.declared_views``, with the same slots
declaring kubean objects as the program), then runs cpswap.core.rules, as the CrossGuard pack's
resource policies do when the ControlPlane registers. Enforcement levels come from ``--policy-config``
as CrossGuard reads them (cpswap.core.policy_config): a ``disabled`` rule does not run, an ``advisory``
violation is listed but does not fail. It also flags secret material committed in plain text in the
stack file (``cpswap.core.secretscan``, rule cpswap-no-plain-secrets; check only: the pack never
sees the file). Exit 0 without mandatory violations, 1 with every violation
listed, 2 for a malformed stack file or policy config.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cpswap.cli.plan import add_stack_arguments, build_plan
from cpswap.core.report import plan_document
from cpswap.core.policy_config import PolicyConfig, parse_policy_config
from cpswap.core.rules import RULES, check, declared_views
from cpswap.core.slots import slots_with_objects
from cpswap.core.secretscan import RULE as PLAIN_SECRETS, plain_secrets
from cpswap.stackfiles import declared_operations, parse_document, read_text, read_yaml, recorded_departed


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("check", help="run the policy pack's rules offline against the stack files")
    add_stack_arguments(parser)
    parser.add_argument("--policy-config", type=Path, help="policy pack config JSON (e.g. minVoters)")
    parser.set_defaults(func=run)


def _config(path: Path | None) -> PolicyConfig:
    rules = [r.name for r in RULES]
    if path is None:
        return parse_policy_config(None, rules=rules)
    text = read_text(path, what="policy config")
    doc = None if not text.strip() else parse_document(text, where=str(path), kind="json")
    return parse_policy_config(doc, rules=rules, where=str(path))


def run(args: argparse.Namespace) -> int:
    config = _config(args.policy_config)  # a malformed config is exit 2 before anything else
    plan = build_plan(args)
    doc = plan_document(plan)
    object_slots = slots_with_objects(model=plan.model, changing=frozenset(c.slot for c in plan.changes),
                                      declared=declared_operations(directory=args.dir.resolve(), stack=args.stack))
    departed = plan.departed(recorded=recorded_departed(directory=args.dir.resolve(), stack=args.stack))
    views = declared_views(model=plan.model, object_slots=object_slots, surge_from=plan.surge_from,
                           departed=departed)
    enabled = [r.name for r in RULES if config.enforced(r.name) != "disabled"]
    found = check(plan=doc, resources=views, config=config.rules, only=enabled)
    if config.enforced(PLAIN_SECRETS) != "disabled":
        stack_file = args.dir.resolve() / f"Pulumi.{args.stack}.yaml"
        found = [*plain_secrets(read_yaml(stack_file).get("config"), where=stack_file.name), *found]
    failing = [v for v in found if config.enforced(v.rule) == "mandatory"]
    if args.json:
        json.dump({"stack": args.stack, "clean": not failing,
                   "violations": [{"rule": v.rule, "resource": v.resource, "message": v.message,
                                   "enforcementLevel": config.enforced(v.rule)} for v in found],
                   "disabled": [r.name for r in RULES if r.name not in enabled]},
                  sys.stdout, indent=2)
        print()
    elif found:
        print(f"cpswap check: {len(failing)} mandatory and {len(found) - len(failing)} advisory violation(s) "
              f"in stack {args.stack}:")
        for v in found:
            print(f"  {config.enforced(v.rule)}: {v}")
    else:
        print(f"cpswap check: stack {args.stack} passes all {len(enabled)} enabled rules"
              + (f" ({len(RULES) - len(enabled)} disabled)" if len(enabled) < len(RULES) else ""))
    return 1 if failing else 0
