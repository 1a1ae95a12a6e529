"""What the CI pipelines decide (cpswap.core.ci), table-driven: touched stacks, the review comment, the
health verdict of an observed plan document, a failed up's summary, the GitLab child pipeline."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cpswap.core.ci import (COMMENT_LIMIT, Finding, failed_steps, gitlab_deploy_pipeline, health_findings, minutes,
                            render_failure, render_health, review_comment, touched_stacks)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "markdown"
SWAP = json.loads((FIXTURES / "ocboot-swap.json").read_text())
PRESENT = ["Pulumi.prod.yaml", "Pulumi.eu-1.yaml", "Pulumi.yaml", "README.md"]


@pytest.mark.parametrize("changed,expected", [
    (["Pulumi.prod.yaml"], ["prod"]),
    (["Pulumi.prod.yaml", "Pulumi.eu-1.yaml", "README.md"], ["eu-1", "prod"]),
    (["Pulumi.yaml"], ["eu-1", "prod"]),                      # the project file touches every stack
    (["Pulumi.gone.yaml"], []),                                # a deleted stack file has nothing to deploy
    (["examples/Pulumi.k3s.yaml", "docs/Pulumi.prod.yaml"], []),  # only the project root's stack files
    (["README.md", ".cpswap/applied-prod.json"], []),
])
def test_touched_stacks(changed, expected):
    assert touched_stacks(changed=changed, present=PRESENT) == expected


def test_review_comment_puts_an_invalid_config_error_on_top():
    text = review_comment(stack="prod", plan_markdown=None, error="cpswap: 1 config violation(s):\n  - members.cp2.ip='x': bad",
                          check="cpswap: 1 config violation(s)", check_failed=True)
    assert text.splitlines()[:5] == ["<!-- cpswap-plan stack=prod -->", "> [!CAUTION]",
                                     "> **cpswap plan failed for stack prod**", ">", "> cpswap: 1 config violation(s):"]
    assert "<summary>cpswap check: violations found</summary>" in text


def test_review_comment_is_truncated_below_githubs_limit_with_a_closed_fence():
    plan = "# plan\n```sh\n" + ("x" * 100 + "\n") * 1000 + "```\n"
    text = review_comment(stack="prod", plan_markdown=plan, error="", check="ok", check_failed=False,
                          details_url="https://ci.example/run/1")
    assert len(text) < COMMENT_LIMIT + 200
    assert text.count("```") % 2 == 0 and text.rstrip().endswith("the full plan is in the job summary (https://ci.example/run/1).")


def _observed(**changes) -> dict:
    doc = copy.deepcopy(SWAP)
    doc.update(observed=True, changes=[], unhealthy=[], warnings=[],
               desired={"cp1": {"name": "a", "ip": "10.0.0.1"}, "cp2": {"name": "b", "ip": "10.0.0.2"},
                        "cp3": {"name": "c", "ip": "10.0.0.3"}},
               live=[{"name": "a", "ip": "10.0.0.1", "learner": False, "healthy": True},
                     {"name": "b-0123abcd", "ip": "10.0.0.2", "learner": False, "healthy": True},
                     {"name": "c", "ip": "10.0.0.3", "learner": False, "healthy": True}])
    doc.update(changes)
    return doc


LIVE_B_SICK = [{"name": "a", "ip": "10.0.0.1", "learner": False, "healthy": True},
               {"name": "b", "ip": "10.0.0.2", "learner": False, "healthy": False},
               {"name": "c", "ip": "10.0.0.3", "learner": False, "healthy": True}]
LIVE_C_REPLACED = [{"name": "a", "ip": "10.0.0.1", "learner": False, "healthy": True},
                   {"name": "b", "ip": "10.0.0.2", "learner": False, "healthy": True},
                   {"name": "d", "ip": "10.0.0.4", "learner": False, "healthy": True}]
LIVE_C_LEARNER = [*LIVE_C_REPLACED[:2], {"name": "c", "ip": "10.0.0.3", "learner": True, "healthy": None}]


@pytest.mark.parametrize("changes,expected", [
    ({}, []),  # healthy, k3s-style member name matched to its host
    ({"live": LIVE_B_SICK, "unhealthy": ["b"]},
     [("cp2", "etcd member b (10.0.0.2) in cp2 is unhealthy",
       "replace it: in Pulumi.prod.yaml set cpswap:members.cp2 to the replacement host")]),
    ({"live": LIVE_C_REPLACED},
     [("cp3", "c (10.0.0.3) in cp3 is not an etcd member",
       "in Pulumi.prod.yaml set cpswap:members.cp3 to {name: d, ip: 10.0.0.4}")]),
    ({"live": LIVE_C_LEARNER},
     [("cp3", "c (10.0.0.3) in cp3 is still an etcd learner", "no edit: run the deploy pipeline again")]),
    ({"changes": [{"slot": "cp1", "old": {"name": "z", "ip": "10.0.0.9"}, "new": {"name": "a", "ip": "10.0.0.1"}}]},
     [("cp1", "Pulumi.prod.yaml wants a (10.0.0.1) in cp1, the last deployment recorded z (10.0.0.9)",
       "no edit: run the deploy pipeline for this stack again")]),
    ({"observed": False, "warnings": ["etcd not observed (deadline exceeded); the plan assumes every member healthy"]},
     [("", "the cluster could not be observed: etcd not observed (deadline exceeded)", "check the CPSWAP_ETCD_*")]),
], ids=["healthy", "unhealthy", "replaced-outside", "learner", "not-deployed", "unobserved"])
def test_health_findings_name_the_slot_and_the_edit(changes, expected):
    findings = health_findings(document=_observed(**changes), stack_file="Pulumi.prod.yaml")
    assert [(f.slot, f.problem[:len(p)], f.edit[:len(e)]) for f, (_, p, e) in zip(findings, expected, strict=False)] == expected
    assert len(findings) == len(expected)


def test_extra_members_without_a_missing_slot_are_reported_on_their_own():
    live = [*_observed()["live"], {"name": "", "ip": "10.0.0.7", "learner": True, "healthy": None}]
    findings = health_findings(document=_observed(live=live), stack_file="Pulumi.prod.yaml")
    assert [(f.slot, f.problem) for f in findings] == [
        ("", "etcd member (unstarted) (10.0.0.7) is not in Pulumi.prod.yaml")]


def test_render_health_is_a_table_of_problems():
    text = render_health(stack="prod", findings=[Finding(slot="cp2", problem="b | down", edit="edit <x>")],
                         document=_observed())
    assert text.splitlines()[0] == "## cpswap health: stack prod needs attention"
    assert "| cp2 | b \\| down | edit &lt;x&gt; |" in text
    assert render_health(stack="prod", findings=[], document=_observed()).startswith("cpswap health: stack prod is healthy")


@pytest.mark.parametrize("log,expected", [
    ("Diagnostics:\n  command:remote:Command (cp1-join):\n    error: Process exited with status 1\n", ["cp1-join"]),
    (" +-  command:local:Command cp1-pvcs replacing (4s) error: deadline\n", ["cp1-pvcs"]),
    ("  command:local:Command (cp1-etcd-leave):\n    error: refused\n", ["cp1-etcd-leave"]),  # one entry for 2 steps
    ("  command:remote:Command (cp1-join-prepare):\n    error: x\n", []),  # another resource's name is not a hit
    ("Updating (prod)\nResources: 6 unchanged\n", []),
])
def test_failed_steps_are_found_by_their_resource_names(log, expected):
    assert [s.resource for s in failed_steps(log=log, document=SWAP)] == expected


def test_render_failure_without_a_plan_still_says_that_rerunning_converges():
    text = render_failure(stack="prod", log="error: could not read stack", document=None, ci_step="pulumi up")
    assert "Failed CI step: **pulumi up**." in text and "**Re-running converges**" in text
    assert "No swap step reported an error" in text and "error: could not read stack" in text


@pytest.mark.parametrize("text,expected", [("10m", 10), ("95m", 95), ("2h", 120), ("30s", 1), ("61s", 2)])
def test_minutes(text, expected):
    assert minutes(text) == expected


def test_minutes_refuses_other_units():
    with pytest.raises(ValueError, match="'1d' is not <number>s\\|m\\|h"):
        minutes("1d")


def test_gitlab_child_pipeline_has_one_job_per_stack_and_refuses_odd_names():
    doc = gitlab_deploy_pipeline(stacks=["prod", "eu-1"])
    assert list(doc) == ["stages", "cpswap-up:prod", "cpswap-up:eu-1"]
    assert doc["cpswap-up:eu-1"]["resource_group"] == "cpswap-eu-1"
    assert doc["cpswap-up:eu-1"]["environment"]["name"] == "cpswap/eu-1"
    assert list(gitlab_deploy_pipeline(stacks=[])) == ["stages", "cpswap-nothing-to-deploy"]
    with pytest.raises(ValueError, match="stack name 'prod; rm' is not"):
        gitlab_deploy_pipeline(stacks=["prod; rm"])
