"""`cpswap ci`: the glue the shipped pipelines call (ci/*.sh, .github/workflows/, .gitlab-ci.yml).
Not pure (reads files, runs git); every decision is in cpswap.core.ci.

    cpswap ci stacks  --base REV [--head REV] [--json]      touched Pulumi.<stack>.yaml files (the matrix)
    cpswap ci comment --stack S --plan F --plan-error F --plan-exit N --check F --check-exit N
    cpswap ci health  --stack S --plan F [--title]          exit 1 when a member is unhealthy or differs
    cpswap ci failure --stack S --log F [--plan F] --step NAME
    cpswap ci gitlab-deploy --stacks-file F               the child pipeline: one cpswap-up:<stack> job each
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from cpswap.core.ci import (STACK_NAME, gitlab_deploy_pipeline, health_findings, health_title, render_failure,
                            render_health, review_comment, touched_stacks)
from cpswap.core.errors import ConfigError, Violation

NO_COMMIT = re.compile(r"^0+$")  # GitLab's CI_COMMIT_BEFORE_SHA / GitHub's event.before on a new branch


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("ci", help="helpers for the shipped CI pipelines (stacks, comment, health, failure)")
    verbs = parser.add_subparsers(dest="verb", required=True)

    stacks = verbs.add_parser("stacks", help="stacks whose Pulumi.<stack>.yaml changed between two revisions")
    stacks.add_argument("--base", required=True, help="git revision to compare with (the merge base, or the push's before)")
    stacks.add_argument("--head", default="HEAD")
    stacks.add_argument("--dir", type=Path, default=Path("."))
    stacks.add_argument("--json", action="store_true", help="a JSON list (a GitHub matrix) instead of lines")
    stacks.set_defaults(func=run_stacks)

    comment = verbs.add_parser("comment", help="the review comment: marker, refusal or error on top, plan, check")
    comment.add_argument("--stack", required=True)
    comment.add_argument("--plan", type=Path, required=True, help="output of cpswap plan --format markdown")
    comment.add_argument("--plan-error", type=Path, required=True, help="its stderr")
    comment.add_argument("--plan-exit", type=int, required=True)
    comment.add_argument("--check", type=Path, required=True, help="output of cpswap check")
    comment.add_argument("--check-exit", type=int, required=True)
    comment.add_argument("--details-url", default="")
    comment.set_defaults(func=run_comment)

    health = verbs.add_parser("health", help="judge a cpswap plan --observe --json document")
    health.add_argument("--stack", required=True)
    health.add_argument("--plan", type=Path, required=True)
    health.add_argument("--title", action="store_true", help="print only the issue title")
    health.set_defaults(func=run_health)

    failure = verbs.add_parser("failure", help="the summary of a failed deploy")
    failure.add_argument("--stack", required=True)
    failure.add_argument("--log", type=Path, required=True, help="the output of pulumi up")
    failure.add_argument("--plan", type=Path, help="cpswap plan --json made before the run")
    failure.add_argument("--step", required=True, help="the CI step that failed")
    failure.set_defaults(func=run_failure)

    deploy = verbs.add_parser("gitlab-deploy", help="the GitLab child pipeline: one deploy job per stack")
    deploy.add_argument("--stacks-file", type=Path, required=True, help="output of cpswap ci stacks")
    deploy.set_defaults(func=run_gitlab_deploy)


def _text(path: Path | None) -> str:
    return path.read_text(errors="replace") if path is not None and path.is_file() else ""


def _stack(name: str) -> str:
    if not STACK_NAME.match(name):
        raise ConfigError([Violation(field="--stack", value=name, rule="a stack name is [A-Za-z0-9][A-Za-z0-9_.-]*")])
    return name


def run_stacks(args: argparse.Namespace) -> int:
    directory = args.dir.resolve()
    base = f"{args.head}~1" if NO_COMMIT.match(args.base) else args.base
    diff = subprocess.run(["git", "-C", str(directory), "diff", "--name-only", base, args.head],
                          capture_output=True, text=True, check=False)
    if diff.returncode != 0:
        raise ConfigError([Violation(field="--base", value=args.base,
                                     rule=f"git diff {base} {args.head} failed: {diff.stderr.strip()}")])
    present = [p.name for p in directory.glob("Pulumi.*.yaml")]
    stacks = touched_stacks(changed=diff.stdout.splitlines(), present=present)
    print(json.dumps(stacks) if args.json else "\n".join(stacks))
    return 0


def run_comment(args: argparse.Namespace) -> int:
    markdown = _text(args.plan)
    error = _text(args.plan_error)
    failed = args.plan_exit not in (0, 1) or not markdown.strip()
    print(review_comment(stack=_stack(args.stack), plan_markdown=None if failed else markdown,
                         error=error or f"cpswap plan exited {args.plan_exit}", check=_text(args.check),
                         check_failed=args.check_exit != 0, details_url=args.details_url), end="")
    return 0


def run_health(args: argparse.Namespace) -> int:
    stack = _stack(args.stack)
    if args.title:
        print(health_title(stack=stack))
        return 0
    document = json.loads(args.plan.read_text())
    findings = health_findings(document=document, stack_file=f"Pulumi.{stack}.yaml")
    print(render_health(stack=stack, findings=findings, document=document), end="")
    return 1 if findings else 0


def run_failure(args: argparse.Namespace) -> int:
    document = None
    if args.plan is not None and args.plan.is_file():
        try:
            document = json.loads(args.plan.read_text())
        except ValueError:
            print(f"cpswap ci failure: {args.plan} is not a plan document; summarising without it", file=sys.stderr)
    print(render_failure(stack=_stack(args.stack), log=_text(args.log), document=document, ci_step=args.step), end="")
    return 0


def run_gitlab_deploy(args: argparse.Namespace) -> int:
    stacks = [_stack(line.strip()) for line in args.stacks_file.read_text().splitlines() if line.strip()]
    print(yaml.safe_dump(gitlab_deploy_pipeline(stacks=stacks), sort_keys=False, width=200), end="")
    return 0
