"""`cpswap plan`: the impact review of a stack, offline, from the stack files. Not pure (files).

Prints the same plan the Pulumi program logs at preview. Never opens a connection unless
``--observe`` is given (then read-only, with a short timeout).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cpswap.cli import REVISION, SECONDS, STACK
from cpswap.core.errors import ConfigError, Violation
from cpswap.core.facts import Observation
from cpswap.core.markdown import render_markdown
from cpswap.core.planner import Plan, plan_swap
from cpswap.core.report import plan_document, plan_table
from cpswap.stackfiles import load_applied, load_model

FORMATS = ("text", "json", "markdown")


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    default_stack = os.environ.get("PULUMI_STACK") or None
    parser.add_argument("--stack", type=STACK, default=default_stack, required=default_stack is None,
                        help="stack name: reads Pulumi.<stack>.yaml (default: $PULUMI_STACK)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="project directory (default: .)")
    parser.add_argument("--json", action="store_true", help="print the plan document as JSON")
    parser.add_argument("--base", type=REVISION,
                        help="git revision whose stack file is the applied membership (a PR's base)")
    parser.add_argument("--applied", type=Path, help="saved `pulumi stack output --json` of the last deployment")
    parser.add_argument("--observe", action="store_true",
                        help="read live etcd and Kubernetes state (read-only, short timeout); off by default")
    parser.add_argument("--observe-timeout", "--timeout", dest="timeout", type=SECONDS, default=3.0,
                        help="observation timeout in seconds (--timeout is the old spelling)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("plan", help="show what a swap will do, offline, from the stack files")
    add_stack_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="text (default), json (same as --json) or markdown (GitHub/GitLab: pull-request "
                             "comments and CI job summaries)")
    parser.add_argument("--wide", action="store_true", help="text: print every command in full (not cut at 400 "
                                                             "characters)")
    parser.set_defaults(func=run)


def build_plan(args: argparse.Namespace) -> Plan:
    directory = args.dir.resolve()
    model = load_model(directory=directory, stack=args.stack)
    applied = load_applied(directory=directory, stack=args.stack, model=model, applied_file=args.applied,
                           base=args.base)
    observation = Observation()
    if args.observe:
        from cpswap.executors.observe import observe_from_environment  # network code only when asked for

        desired = model.hosts()
        departing = next((h.name for s, h in applied.hosts if desired.get(s) != h), None)
        observation = observe_from_environment(model=model, departing_node=departing, timeout=args.timeout,
                                               warn=lambda text: print(f"WARNING: {text}", file=sys.stderr))
        applied = load_applied(directory=directory, stack=args.stack, model=model, applied_file=args.applied,
                               base=args.base, live=observation.etcd)
    return plan_swap(model=model, applied=applied, observation=observation)


def output_format(args: argparse.Namespace) -> str:
    """``--json`` is ``--format json``; asking for two different formats is a usage error."""
    chosen = args.format or ("json" if args.json else "text")
    if args.json and chosen != "json":
        raise ConfigError([Violation(field="--format", value=chosen, rule="--json asks for json; pass one of them")])
    return chosen


def run(args: argparse.Namespace) -> int:
    chosen = output_format(args)
    plan = build_plan(args)
    if chosen == "json":
        json.dump(plan_document(plan), sys.stdout, indent=2, sort_keys=False)
        print()
    elif chosen == "markdown":
        sys.stdout.write(render_markdown(document=plan_document(plan)))
    else:
        print(plan_table(plan, wide=args.wide))
    return 1 if plan.refusals else 0
