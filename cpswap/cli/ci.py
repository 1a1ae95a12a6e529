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

from cpswap.cli import REVISION, STACK, argtype
from cpswap.core import inputs
from cpswap.core.ci import (gitlab_deploy_pipeline, health_findings, health_title, render_failure, render_health,
                            review_comment, touched_stacks)
from cpswap.core.errors import ConfigError, Violation
from cpswap.stackfiles import MAX_FILE_BYTES, parse_document, read_text

NO_COMMIT = re.compile(r"0+")  # GitLab's CI_COMMIT_BEFORE_SHA / GitHub's event.before on a new branch
LOG_TAIL_BYTES = 4 << 20  # the output of a `pulumi up` can be long; its tail holds the failed steps
_DETAILS_URL = re.compile(r"https?://[^\s<>()\[\]`\x00-\x1f\x7f]{1,2000}")
_STEP = re.compile(r"[^\x00-\x1f\x7f`]{1,200}")


def _details_url(value: str) -> str:
    """The CI run's page, shown in the comment: an http(s) URL with no space, bracket, backtick or control
    character (it lands inside markdown), at most 2000 characters; empty means none."""
    if value and not _DETAILS_URL.fullmatch(value):
        raise inputs.InputError("must be an http(s) URL without spaces, brackets, backticks or control characters")
    return value


def _step(value: str) -> str:
    if not _STEP.fullmatch(value):
        raise inputs.InputError("must be a CI step's description: 1 to 200 characters, no backtick, newline or other "
                                "control character (it is shown in the summary)")
    return value


DETAILS_URL = argtype(_details_url, "url")
STEP = argtype(_step, "step")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("ci", help="helpers for the shipped CI pipelines (stacks, comment, health, failure)")
    verbs = parser.add_subparsers(dest="verb", required=True)

    stacks = verbs.add_parser("stacks", help="stacks whose Pulumi.<stack>.yaml changed between two revisions")
    stacks.add_argument("--base", type=REVISION, required=True,
                        help="git revision to compare with (the merge base, or the push's before)")
    stacks.add_argument("--head", type=REVISION, default="HEAD")
    stacks.add_argument("--dir", type=Path, default=Path("."))
    stacks.add_argument("--json", action="store_true", help="a JSON list (a GitHub matrix) instead of lines")
    stacks.set_defaults(func=run_stacks)

    comment = verbs.add_parser("comment", help="the review comment: marker, refusal or error on top, plan, check")
    comment.add_argument("--stack", type=STACK, required=True)
    comment.add_argument("--plan", type=Path, required=True, help="output of cpswap plan --format markdown")
    comment.add_argument("--plan-error", type=Path, required=True, help="its stderr")
    comment.add_argument("--plan-exit", type=int, required=True)
    comment.add_argument("--check", type=Path, required=True, help="output of cpswap check")
    comment.add_argument("--check-exit", type=int, required=True)
    comment.add_argument("--details-url", type=DETAILS_URL, default="")
    comment.set_defaults(func=run_comment)

    health = verbs.add_parser("health", help="judge a cpswap plan --observe --json document")
    health.add_argument("--stack", type=STACK, required=True)
    health.add_argument("--plan", type=Path, required=True)
    health.add_argument("--title", action="store_true", help="print only the issue title")
    health.set_defaults(func=run_health)

    failure = verbs.add_parser("failure", help="the summary of a failed deploy")
    failure.add_argument("--stack", type=STACK, required=True)
    failure.add_argument("--log", type=Path, required=True, help="the output of pulumi up")
    failure.add_argument("--plan", type=Path, help="cpswap plan --json made before the run")
    failure.add_argument("--step", type=STEP, required=True, help="the CI step that failed")
    failure.set_defaults(func=run_failure)

    deploy = verbs.add_parser("gitlab-deploy", help="the GitLab child pipeline: one deploy job per stack")
    deploy.add_argument("--stacks-file", type=Path, required=True, help="output of cpswap ci stacks")
    deploy.set_defaults(func=run_gitlab_deploy)


def _text(path: Path | None, *, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """An optional output of an earlier CI step: "" when the step wrote nothing (no file), else its text,
    bounded (a regular UTF-8 file of at most ``limit`` bytes; ConfigError naming the file otherwise)."""
    if path is None or not path.exists():
        return ""
    return read_text(path, what=what, limit=limit)


def _log_tail(path: Path) -> str:
    """The last LOG_TAIL_BYTES of the `pulumi up` output, decoded leniently (a log is not ours to refuse);
    "" when there is none; a path that is not a regular file is refused like any other input file."""
    if not path.exists():
        return ""
    if not path.is_file():
        raise ConfigError([Violation(str(path), "not a regular file", "the pulumi up log must be a regular file")])
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return handle.read(LOG_TAIL_BYTES).decode("utf-8", errors="replace")


def _plan_document(path: Path) -> object:
    """A `cpswap plan --json` document: bounded, strict JSON (duplicate keys refused), ConfigError otherwise."""
    return parse_document(read_text(path, what="plan document"), where=str(path), kind="json")


def run_stacks(args: argparse.Namespace) -> int:
    directory = args.dir.resolve()
    base = f"{args.head}~1" if NO_COMMIT.fullmatch(args.base) else args.base
    diff = subprocess.run(["git", "-C", str(directory), "diff", "--name-only", "--end-of-options", base, args.head,
                           "--"],
                          capture_output=True, text=True, check=False)
    if diff.returncode != 0:
        raise ConfigError([Violation(field="--base", value=args.base,
                                     rule=f"git diff {base} {args.head} failed: {diff.stderr.strip()}")])
    present = [p.name for p in directory.glob("Pulumi.*.yaml")]
    stacks = touched_stacks(changed=diff.stdout.splitlines(), present=present)
    print(json.dumps(stacks) if args.json else "\n".join(stacks))
    return 0


def run_comment(args: argparse.Namespace) -> int:
    markdown = _text(args.plan, what="plan markdown")
    error = _text(args.plan_error, what="plan stderr")
    failed = args.plan_exit not in (0, 1) or not markdown.strip()
    print(review_comment(stack=args.stack, plan_markdown=None if failed else markdown,
                         error=error or f"cpswap plan exited {args.plan_exit}",
                         check=_text(args.check, what="cpswap check output"),
                         check_failed=args.check_exit != 0, details_url=args.details_url), end="")
    return 0


def run_health(args: argparse.Namespace) -> int:
    stack = args.stack
    if args.title:
        print(health_title(stack=stack))
        return 0
    document = _plan_document(args.plan)
    if not isinstance(document, dict):
        raise ConfigError([Violation(str(args.plan), type(document).__name__, "a plan document is a JSON object")])
    findings = health_findings(document=document, stack_file=f"Pulumi.{stack}.yaml")
    print(render_health(stack=stack, findings=findings, document=document), end="")
    return 1 if findings else 0


def run_failure(args: argparse.Namespace) -> int:
    document = None
    if args.plan is not None and args.plan.is_file():
        try:
            parsed = _plan_document(args.plan)
            document = parsed if isinstance(parsed, dict) else None
        except ConfigError:
            print(f"cpswap ci failure: {args.plan} is not a plan document; summarising without it", file=sys.stderr)
    log = _log_tail(args.log)
    print(render_failure(stack=args.stack, log=log, document=document, ci_step=args.step), end="")
    return 0


def run_gitlab_deploy(args: argparse.Namespace) -> int:
    stacks = []
    for number, line in enumerate(read_text(args.stacks_file, what="stacks file").splitlines(), start=1):
        if line.strip():
            try:
                stacks.append(inputs.stack_name(line.strip()))
            except inputs.InputError as exc:
                raise ConfigError([Violation(f"{args.stacks_file}:{number}", line.strip(), str(exc))]) from None
    print(yaml.safe_dump(gitlab_deploy_pipeline(stacks=stacks), sort_keys=False, width=200), end="")
    return 0
