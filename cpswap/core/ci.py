"""What the CI pipelines decide (`cpswap ci ...`, .github/workflows/, .gitlab-ci.yml). Pure.

- which stacks a change touched (the fleet matrix: one ``Pulumi.<stack>.yaml`` per cluster);
- the review comment: a hidden marker (so CI finds and updates its one comment), a refusal's or
  an error's message on top, the markdown plan, the ``cpswap check`` result;
- the health verdict of a scheduled ``cpswap plan --observe --json``: every problem names the slot
  and the edit to make;
- a failed ``pulumi up``'s summary: which plan step failed, and that re-running converges.

Inputs are texts and plan documents; nothing here reads files, runs git or talks to a cluster.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

from cpswap.core.facts import member_matches

STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STACK_FILE = re.compile(r"^Pulumi\.([A-Za-z0-9][A-Za-z0-9_.-]*)\.yaml$")
COMMENT_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters; GitLab notes allow 1,000,000


def comment_marker(*, stack: str) -> str:
    """The hidden first line by which CI finds its own comment for ``stack`` and edits it in place."""
    return f"<!-- cpswap-plan stack={stack} -->"


def touched_stacks(*, changed: Iterable[str], present: Iterable[str]) -> list[str]:
    """Stacks whose ``Pulumi.<stack>.yaml`` (at the project root) changed and still exists. A change of
    the project file ``Pulumi.yaml`` touches every stack present."""
    present_stacks = sorted({m.group(1) for p in present if (m := STACK_FILE.match(p))})
    changed = list(changed)
    if "Pulumi.yaml" in changed:
        return present_stacks
    return sorted({m.group(1) for p in changed if (m := STACK_FILE.match(p))} & set(present_stacks))


def review_comment(*, stack: str, plan_markdown: str | None, error: str, check: str,
                   check_failed: bool, details_url: str = "") -> str:
    """The review comment/summary for one stack: ``plan_markdown`` is ``cpswap plan --format markdown``'s
    output (a refusal already opens it), or None when no plan could be made (invalid config: ``error``,
    cpswap's message, then opens the comment)."""
    lines = [comment_marker(stack=stack)]
    if plan_markdown is None:
        lines += ["> [!CAUTION]", f"> **cpswap plan failed for stack {stack}**", ">",
                  *(f"> {line}" if line else ">" for line in (error.strip() or "no output").splitlines()), ""]
    else:
        lines.append(plan_markdown.rstrip("\n"))
    lines += ["", "<details>",
              f"<summary>cpswap check: {'violations found' if check_failed else 'all rules pass'}</summary>", "",
              "```text", check.strip() or "(no output)", "```", "", "</details>"]
    text = "\n".join(lines) + "\n"
    if len(text) > COMMENT_LIMIT:
        cut = text[:COMMENT_LIMIT].rsplit("\n", 1)[0]
        fence = "\n```" if cut.count("```") % 2 else ""
        text = (cut + fence + "\n\n**Truncated**: the full plan is in the job summary"
                + (f" ({details_url})" if details_url else "") + ".\n")
    return text


@dataclass(frozen=True)
class Finding:
    """One health problem: the slot it concerns ("" when none), what is wrong, and the edit to make."""

    slot: str
    problem: str
    edit: str


def _host_text(host: Mapping[str, Any]) -> str:
    return f"{host.get('name', '?')} ({host.get('ip', '?')})"


def _matches(member: Mapping[str, Any], host: Mapping[str, Any]) -> bool:
    """A live member of the plan document belongs to a configured host (facts.member_matches)."""
    return member_matches(member_name=str(member.get("name") or ""), member_ip=str(member.get("ip") or ""),
                          name=str(host.get("name") or ""), ip=str(host.get("ip") or ""))


def health_findings(*, document: Mapping[str, Any], stack_file: str) -> list[Finding]:
    """Problems a read-only ``cpswap plan --observe --json`` shows. Empty means healthy and in line with
    the config."""
    desired: Mapping[str, Mapping[str, Any]] = document.get("desired", {})
    if not document.get("observed"):
        reasons = "; ".join(w for w in document.get("warnings", []) if "observ" in w) or "etcd did not answer"
        return [Finding(slot="", problem=f"the cluster could not be observed: {reasons}",
                        edit="check the CPSWAP_ETCD_* observation secrets and that the runner reaches the members' "
                             "etcd client port; nothing to edit in the stack file")]
    findings: list[Finding] = []
    for change in document.get("changes", []):
        findings.append(Finding(
            slot=change["slot"],
            problem=f"{stack_file} wants {_host_text(change['new'])} in {change['slot']}, the last deployment "
                    f"recorded {_host_text(change['old'])}: the swap has not been deployed, or its run failed",
            edit="no edit: run the deploy pipeline for this stack again (re-running `pulumi up` converges); "
                 f"if {_host_text(change['old'])} is in fact the right host, set cpswap:members.{change['slot']} "
                 f"back to {{name: {change['old'].get('name')}, ip: {change['old'].get('ip')}}}"))
    live: Sequence[Mapping[str, Any]] = document.get("live") or []
    unhealthy = set(document.get("unhealthy", []))
    missing = [slot for slot, host in sorted(desired.items()) if not any(_matches(m, host) for m in live)]
    extra = [m for m in live if not any(_matches(m, host) for host in desired.values())]
    for slot, host in sorted(desired.items()):
        member = next((m for m in live if _matches(m, host)), None)
        if member is None:
            continue
        if member.get("learner"):
            findings.append(Finding(slot=slot, problem=f"{_host_text(host)} in {slot} is still an etcd learner "
                                                         "(a join did not finish)",
                                    edit="no edit: run the deploy pipeline again; the join resumes the learner"))
        elif member.get("healthy") is False or host.get("name") in unhealthy:
            findings.append(Finding(
                slot=slot, problem=f"etcd member {_host_text(host)} in {slot} is unhealthy",
                edit=f"replace it: in {stack_file} set cpswap:members.{slot} to the replacement host "
                     f"({{name: <new host>, ip: <new ip>}}) in a pull request; its plan shows the swap"))
    for slot in missing:
        host = desired[slot]
        if len(missing) == 1 and len(extra) == 1:
            other = extra[0]
            edit = (f"in {stack_file} set cpswap:members.{slot} to {{name: {other.get('name')}, ip: {other.get('ip')}}} "
                    f"(the live member that is not in the config), or, if {_host_text(host)} is right, run the "
                    "deploy pipeline to swap it in")
        else:
            edit = (f"if {_host_text(host)} is gone, set cpswap:members.{slot} in {stack_file} to its replacement "
                    "in a pull request; otherwise run the deploy pipeline (re-running converges)")
        findings.append(Finding(slot=slot, problem=f"{_host_text(host)} in {slot} is not an etcd member", edit=edit))
    if not (len(missing) == 1 and len(extra) == 1):
        for member in extra:
            findings.append(Finding(
                slot="", problem=f"etcd member {member.get('name') or '(unstarted)'} ({member.get('ip')}) is not in "
                                 f"{stack_file}",
                edit="put it into the slot it replaced (cpswap:members.<slot>: {name, ip}), or remove it from etcd "
                     "if it was added by mistake"))
    return findings


def health_title(*, stack: str) -> str:
    """The one issue per stack that the scheduled check opens or updates (found by this exact title)."""
    return f"cpswap health: stack {stack} needs attention"


def render_health(*, stack: str, findings: Sequence[Finding], document: Mapping[str, Any]) -> str:
    if not findings:
        return f"cpswap health: stack {stack} is healthy and its live membership matches the config.\n"
    rows = [f"| {f.slot or '-'} | {_escape(f.problem)} | {_escape(f.edit)} |" for f in findings]
    quorum = document.get("quorum", {}).get("before", {})
    return "\n".join([
        f"## {health_title(stack=stack)}", "",
        f"{len(findings)} problem(s) found by `cpswap plan --stack {stack} --observe --json` "
        f"(read-only). Voters {quorum.get('voters', '?')}, healthy {quorum.get('healthy', '?')}, "
        f"quorum {quorum.get('quorum', '?')}, fault tolerance {quorum.get('tolerance', '?')}.", "",
        "| slot | problem | edit to make |", "|---|---|---|", *rows, ""])


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class FailedStep:
    """The plan step whose Pulumi resource reported an error in ``pulumi up``'s output."""

    number: int
    id: str
    resource: str
    operation: str


def failed_steps(*, log: str, document: Mapping[str, Any]) -> list[FailedStep]:
    """Plan steps whose resource name appears, as Pulumi prints it (``type (name):`` in the
    diagnostics, ``name`` on a progress line), on a line with an error or within the 3 lines above one."""
    lines = log.splitlines()
    error_at = [i for i, line in enumerate(lines) if re.search(r"\berror\b|\bfailed\b", line, re.I)]
    found: list[FailedStep] = []
    for number, step in enumerate(document.get("steps", []), 1):
        name = re.escape(str(step.get("resource", "")))
        pattern = re.compile(rf"(\({name}\)|(?<![\w-]){name}(?![\w-]))")
        hit = any(pattern.search(lines[j]) for i in error_at for j in range(max(0, i - 3), i + 1))
        if hit and all(f.resource != step.get("resource") for f in found):
            found.append(FailedStep(number=number, id=str(step.get("id")), resource=str(step.get("resource")),
                                    operation=str(step.get("operation"))))
    return found


def render_failure(*, stack: str, log: str, document: Mapping[str, Any] | None, ci_step: str) -> str:
    """The job summary of a failed deploy: the failed step, the last error lines, and what to do."""
    steps = failed_steps(log=log, document=document) if document else []
    errors = [line.strip() for line in log.splitlines() if re.search(r"\berror\b", line, re.I)][-8:]
    head = [f"## cpswap deploy of stack {stack} FAILED", "", f"Failed CI step: **{_escape(ci_step)}**."]
    if steps:
        head.append("Failed swap step(s): " + ", ".join(
            f"**{s.number}. {s.id}** (`{s.resource}`, {s.operation})" for s in steps) + ".")
    elif ci_step == "pulumi up":
        head.append("No swap step reported an error: pulumi failed before or outside the swap's resources "
                    "(see the log).")
    head += ["", "**Re-running converges**: every step is idempotent (a removed member counts as removed, a joined "
             "host is detected, PVC recovery resumes from its journal), so run this job again once the cause is "
             "fixed. `.cpswap/applied-" + stack + ".json` was NOT updated: the stack outputs may already hold the "
             "new membership, but the applied file moves only after a successful `up`."]
    if errors:
        head += ["", "<details>", "<summary>last error lines</summary>", "", "```text", *errors, "```", "",
                 "</details>"]
    return "\n".join(head) + "\n"


DEPLOY_TIMEOUT_MINUTES = 360  # the deploy job's timeout on GitHub and GitLab; above worst_case_minutes()


def minutes(timeout: str) -> int:
    """``"95m"``/``"2h"``/``"30s"`` (Pulumi custom timeouts) in whole minutes, rounded up."""
    match = re.fullmatch(r"(\d+)([smh])", timeout)
    if match is None:
        raise ValueError(f"timeout {timeout!r} is not <number>s|m|h")
    value, unit = int(match.group(1)), match.group(2)
    return {"s": -(-value // 60), "m": value, "h": value * 60}[unit]


def worst_case_minutes(*, resources: Iterable[Any]) -> int:
    """Upper bound of one swap: every resource of the slot deleted and created once, each up to its
    custom timeout, one after another (a swap's resources form one dependency chain)."""
    return sum(minutes(r.delete_timeout) + minutes(r.create_timeout) for r in resources)


def gitlab_deploy_pipeline(*, stacks: Sequence[str]) -> dict[str, Any]:
    """The child pipeline cpswap-fleet writes on the default branch: one ``cpswap-up:<stack>`` job per
    touched stack, in environment ``cpswap/<stack>`` (protect it: deployment approvals) and resource
    group ``cpswap-<stack>`` (GitLab runs one job of a group at a time and never cancels a running one)."""
    jobs: dict[str, Any] = {"stages": ["deploy"]}
    for stack in stacks:
        if not STACK_NAME.match(stack):
            raise ValueError(f"stack name {stack!r} is not [A-Za-z0-9][A-Za-z0-9_.-]*")
        jobs[f"cpswap-up:{stack}"] = {
            "stage": "deploy",
            "image": "$CPSWAP_PULUMI_IMAGE",
            "rules": [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}],
            "environment": {"name": f"cpswap/{stack}", "deployment_tier": "production", "action": "start"},
            "resource_group": f"cpswap-{stack}",
            "timeout": f"{DEPLOY_TIMEOUT_MINUTES} minutes",
            "variables": {"CPSWAP_STACK": stack},
            "script": ["pulumi install", "(cd policies && pulumi install)", ". ci/setup.sh",
                       'ci/deploy.sh "$CPSWAP_STACK" ".cpswap/runs/$CPSWAP_STACK"',
                       'python3 ci/gitlab_api.py applied --stack "$CPSWAP_STACK"'],
            "after_script": ['cat ".cpswap/runs/$CPSWAP_STACK/summary.md" 2>/dev/null || true'],
            "artifacts": {"when": "always", "name": f"cpswap-run-{stack}-$CI_PIPELINE_ID", "expire_in": "90 days",
                          "paths": [f".cpswap/runs/{stack}/", ".cpswap/recovery/", f".cpswap/applied-{stack}.json"]},
        }
    if not stacks:
        jobs["cpswap-nothing-to-deploy"] = {"stage": "deploy", "script": ["echo 'no stack file changed: nothing to deploy'"]}
    return jobs
