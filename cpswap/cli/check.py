"""`cpswap check`: the policy pack's rules, offline, against the stack files. Not pure (files).

Builds the same plan document as `cpswap plan` and the same command and ClusterOperation views
the ControlPlane component declares (``cpswap.core.rules.declared_views``, with the same slots
declaring kubean objects as the program), then runs cpswap.core.rules, as the CrossGuard pack's
resource policies do when the ControlPlane registers. Exit 0 when clean, 1 with every violation listed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cpswap.cli.plan import add_stack_arguments, build_plan
from cpswap.core.report import plan_document
from cpswap.core.rules import RULES, RuleConfig, check, declared_views
from cpswap.core.slots import slots_with_objects
from cpswap.stackfiles import declared_operations


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("check", help="run the policy pack's rules offline against the stack files")
    add_stack_arguments(parser)
    parser.add_argument("--policy-config", type=Path, help="policy pack config JSON (e.g. minVoters)")
    parser.set_defaults(func=run)


def _config(path: Path | None) -> RuleConfig:
    if path is None:
        return RuleConfig()
    raw = json.loads(path.read_text())
    entry = raw.get("cpswap-etcd-min-voters", {})
    return RuleConfig(min_voters=int(entry.get("minVoters", 3)) if isinstance(entry, dict) else 3)


def run(args: argparse.Namespace) -> int:
    plan = build_plan(args)
    doc = plan_document(plan)
    object_slots = slots_with_objects(model=plan.model, changing=frozenset(c.slot for c in plan.changes),
                                      declared=declared_operations(directory=args.dir.resolve(), stack=args.stack))
    views = declared_views(model=plan.model, object_slots=object_slots)
    violations = check(plan=doc, resources=views, config=_config(args.policy_config))
    if args.json:
        json.dump({"stack": args.stack, "clean": not violations,
                   "violations": [{"rule": v.rule, "resource": v.resource, "message": v.message} for v in violations]},
                  sys.stdout, indent=2)
        print()
    elif violations:
        print(f"cpswap check: {len(violations)} violation(s) in stack {args.stack}:")
        for v in violations:
            print(f"  {v}")
    else:
        print(f"cpswap check: stack {args.stack} passes all {len(RULES)} rules")
    return 1 if violations else 0
