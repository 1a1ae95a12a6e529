"""The GitLab pipeline (.gitlab-ci.yml + ci/) run for real by gitlab-ci-local 4.60.0 in shell-executor mode
on a fixture stack repository, with the `pulumi` CLI replaced by a stand-in that records its calls
(tests/support/pulumi_standin.py). No GitLab API is reached: without CPSWAP_GITLAB_TOKEN the note and
the applied-membership commit are skipped, and the jobs say so."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.support.stack_repo import NEW_CP1, NEW_CP2, StackRepo

pytestmark = pytest.mark.timeout(600)


def _merge_request(repo: StackRepo, base: str):
    return repo.run("CI_PIPELINE_SOURCE=merge_request_event", f"CI_MERGE_REQUEST_DIFF_BASE_SHA={base}",
                    "CI_MERGE_REQUEST_IID=7", "CI_API_V4_URL=http://127.0.0.1:9/api/v4")


def test_merge_request_with_one_slot_reviews_then_previews_with_the_policy_pack(stack_repo: StackRepo):
    base = stack_repo.main()  # the merge base
    stack_repo.branch("swap-cp1", message="swap cp1", cp1=NEW_CP1)
    run = _merge_request(stack_repo, base)
    assert run.returncode == 0, run.output
    assert run.started() == ["cpswap-review", "cpswap-preview"]  # the review gates the preview; no deploy job
    assert "PASS  cpswap-review" in run.output and "PASS  cpswap-preview" in run.output
    assert run.calls() == [["install"], ["install"],
                           ["preview", "--stack", "prod", "--policy-pack", "policies", "--non-interactive"]]
    assert [r["cwd"].rsplit("/", 1)[-1] for r in run.records[:2]] == ["repo", "policies"]  # program, then the pack
    assert {r["job"] for r in run.records} == {"cpswap-preview"}
    review = stack_repo.repo / "cpswap-review" / "prod"
    plan = (review / "plan.md").read_text()
    assert "- **swap cp1**: lzx-ha-env (192.168.0.254) → lzx-test-add-node (192.168.0.239)" in plan
    assert "```mermaid\nxychart-beta" in plan
    steps = re.findall(r"^<summary>\d+\. (cp1-[a-z-]+):", plan, re.M)  # every step collapsible, preflight first
    assert steps == ["cp1-preflight", "cp1-etcd-snapshot", "cp1-etcd-remove", "cp1-node-delete", "cp1-join",
                     "cp1-verify", "cp1-pvc-recover"]
    assert plan.count("<details>") == plan.count("</details>") == len(steps)
    comment = (review / "comment.md").read_text()
    assert comment.startswith("<!-- cpswap-plan stack=prod -->\n> [!WARNING]\n")
    assert "<summary>cpswap check: all rules pass</summary>" in comment
    assert "CPSWAP_GITLAB_TOKEN is not set: the merge-request note of stack prod was not posted" in run.output
    assert "observation off (no CPSWAP_ETCD_* credentials configured)" in run.output


def test_merge_request_with_two_slots_fails_before_any_pulumi_call(stack_repo: StackRepo):
    base = stack_repo.main()
    stack_repo.branch("swap-two", message="swap cp1 and cp2", cp1=NEW_CP1, cp2=NEW_CP2)
    run = _merge_request(stack_repo, base)
    assert run.returncode != 0
    assert "FAIL" in run.output and "cpswap-review" in run.output
    assert run.started() == ["cpswap-review"]  # the preview never starts
    assert run.records == []  # pulumi was never called
    comment = (stack_repo.repo / "cpswap-review" / "prod" / "comment.md").read_text().splitlines()
    assert comment[:3] == ["<!-- cpswap-plan stack=prod -->", "> [!CAUTION]",
                           comment[2]] and comment[2].startswith("> - REFUSED: members='cp1, cp2': at most one slot")
    assert "cpswap plan exited 1" in run.output


def test_merge_to_main_deploys_in_the_stack_environment_and_records_the_membership(stack_repo: StackRepo):
    before = stack_repo.main()
    stack_repo.branch("swap-cp1", message="swap cp1", cp1=NEW_CP1)
    stack_repo.merge_to_main("swap-cp1")
    run = stack_repo.run(f"CI_COMMIT_BEFORE_SHA={before}")
    assert run.returncode == 0, run.output
    assert run.started() == ["cpswap-fleet", "cpswap-deploy -> cpswap-up:prod"]
    child = yaml.safe_load((stack_repo.repo / "cpswap-deploy.yml").read_text())
    job = child["cpswap-up:prod"]
    assert job["environment"]["name"] == "cpswap/prod" and job["resource_group"] == "cpswap-prod"
    assert job["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}] and job["timeout"] == "360 minutes"
    assert run.calls() == [["install"], ["install"],
                           ["up", "--stack", "prod", "--policy-pack", "policies", "--yes", "--non-interactive"],
                           ["stack", "output", "--stack", "prod", "--json"]]
    assert {(r["job"], r["environment"]) for r in run.records} == {("cpswap-up:prod", "cpswap/prod")}
    up = run.records[2]
    assert up["ssh_auth_sock"] is False  # the runner had a (stale) agent socket; up ran without it
    applied = json.loads((stack_repo.repo / ".cpswap" / "applied-prod.json").read_text())
    assert applied["membership"]["cp1"] == {"name": NEW_CP1["name"], "ip": NEW_CP1["ip"]}
    summary = (stack_repo.repo / ".cpswap" / "runs" / "prod" / "summary.md").read_text()
    assert summary.startswith("## cpswap deploy of stack prod succeeded")
    assert "- **swap cp1**: lzx-ha-env (192.168.0.254) → lzx-test-add-node (192.168.0.239)" in summary
    assert "CPSWAP_GITLAB_TOKEN is not set: .cpswap/applied-prod.json of stack prod was not posted" in run.output
    (job_artifacts,) = (stack_repo.repo / ".gitlab-ci-local" / "artifacts").glob("cpswap-up*prod")  # ':' made safe
    artifacts = job_artifacts / ".cpswap"
    assert (artifacts / "runs" / "prod" / "up.log").is_file() and (artifacts / "applied-prod.json").is_file()
    assert not (artifacts / "snapshots").exists()


def test_a_failed_up_names_the_step_and_leaves_the_applied_membership(stack_repo: StackRepo):
    before = stack_repo.main()
    stack_repo.branch("swap-cp1", message="swap cp1", cp1=NEW_CP1)
    stack_repo.merge_to_main("swap-cp1")
    applied_before = (stack_repo.repo / ".cpswap" / "applied-prod.json").read_text()
    run = stack_repo.run(f"CI_COMMIT_BEFORE_SHA={before}", env={"CPSWAP_PULUMI_UP_FAIL": "cp1-join"})
    # the child job fails; gitlab-ci-local 4.60.0 passes its trigger job whatever the child did (job.js
    # start(): a trigger's exit code is set to 0), where GitLab fails it under `strategy: depend`
    assert "FAIL  cpswap-up:prod" in run.output and "PASS  [cpswap-deploy] -> cpswap-up:prod" not in run.output
    assert [c[0] for c in run.calls()] == ["install", "install", "up"]  # no `stack output` after a failed up
    assert (stack_repo.repo / ".cpswap" / "applied-prod.json").read_text() == applied_before
    summary = (stack_repo.repo / ".cpswap" / "runs" / "prod" / "summary.md").read_text()
    assert summary.startswith("## cpswap deploy of stack prod FAILED")
    assert "Failed CI step: **pulumi up**." in summary
    assert "Failed swap step(s): **5. cp1-join** (`cp1-join`, create)." in summary
    assert "**Re-running converges**" in summary and "was NOT updated" in summary
    assert "Failed swap step(s): **5. cp1-join**" in run.output  # the job log shows it too (after_script)


def test_a_push_to_another_branch_runs_no_pipeline(stack_repo: StackRepo):
    before = stack_repo.main()
    stack_repo.branch("swap-cp1", message="swap cp1", cp1=NEW_CP1)
    run = stack_repo.run(f"CI_COMMIT_BEFORE_SHA={before}")
    assert run.started() == [] and run.records == []
