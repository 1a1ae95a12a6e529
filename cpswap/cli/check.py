"""`cpswap check`: the policy pack's rules, offline, against the stack files. Not pure (files).

Builds the same plan document as `cpswap plan` and the same command-resource views the
components create (from cpswap.core.slots), then runs cpswap.core.rules, exactly as the
CrossGuard pack does on a preview. Exit 0 when clean, 1 with every violation listed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cpswap.cli.plan import add_stack_arguments, build_plan
from cpswap.core.report import plan_document
from cpswap.core.rules import RULES, RuleConfig, check, views_from_specs
from cpswap.core.slots import slot_commands


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
    views = [v for m in plan.model.members for v in views_from_specs(slot_commands(model=plan.model, member=m))]
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
