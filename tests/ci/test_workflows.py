"""The shipped pipelines pass the real linters with no findings (actionlint, zizmor --offline,
check-jsonschema's vendored GitHub and GitLab schemas), pin every action by commit, grant least
permissions, and keep the deploy's controls: per-stack environment and concurrency that never cancels a
run in progress, and a timeout above the swap's worst case for every distribution."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cpswap.core.ci import DEPLOY_TIMEOUT_MINUTES, worst_case_minutes
from cpswap.core.model import parse_stack_config
from cpswap.core.slots import slot_commands

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GITLAB = ROOT / ".gitlab-ci.yml"
SETUP_MARGIN_MINUTES = 30  # checkout, pulumi install of two virtualenvs, the preview part of up
EXAMPLE_STACKS = sorted([ROOT / "Pulumi.prod.yaml", *(ROOT / "examples").glob("Pulumi.*.yaml")])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (tests/run installs it with the package's [test] extras)")
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _workflow(name: str) -> dict:
    return yaml.load((ROOT / ".github" / "workflows" / name).read_text(), Loader=yaml.BaseLoader)


def test_the_pipelines_are_where_github_and_gitlab_look():
    assert [p.name for p in WORKFLOWS] == ["cpswap-deploy.yml", "cpswap-health.yml", "cpswap-review.yml"]
    assert GITLAB.is_file()


def test_actionlint_has_no_findings():
    done = _run([_tool("actionlint"), "-no-color", *map(str, WORKFLOWS)])
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_shellcheck_passes_the_scripts_the_pipelines_run():
    """actionlint also hands every `run:` block to shellcheck when it is on PATH (tests/run installs it)."""
    done = _run([_tool("shellcheck"), *map(str, sorted((ROOT / "ci").glob("*.sh")))])
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_zizmor_offline_has_no_findings():
    done = _run([_tool("zizmor"), "--offline", "--no-progress", "--format", "plain", ".github/workflows"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


@pytest.mark.parametrize("schema,files", [("vendor.github-workflows", [str(p) for p in WORKFLOWS]),
                                          ("vendor.gitlab-ci", [str(GITLAB)])])
def test_check_jsonschema_vendored_schemas_accept_them(schema, files):
    done = _run([_tool("check-jsonschema"), "--builtin-schema", schema, *files])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_every_action_is_pinned_by_commit_with_its_release_in_a_comment():
    uses = [(p.name, m.group(1), m.group(2), m.group(3)) for p in WORKFLOWS
            for m in re.finditer(r"uses: ([\w.-]+/[\w.-]+)@(\S+)(?:\s+#\s*(\S+))?", p.read_text())]
    assert {u[1] for u in uses} == {"actions/checkout", "actions/setup-python", "pulumi/actions",
                                    "actions/upload-artifact", "actions/github-script"}
    for name, action, ref, release in uses:
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{name}: {action}@{ref} is not a commit"
        assert release and re.fullmatch(r"v\d+\.\d+\.\d+", release), f"{name}: {action}@{ref} lacks its release"
    by_action = {}
    for _, action, ref, release in uses:
        assert by_action.setdefault(action, (ref, release)) == (ref, release), f"{action} pinned twice differently"


def test_least_permissions_and_no_persisted_credentials():
    for path in WORKFLOWS:
        doc = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
        assert doc["permissions"] == {}, f"{path.name}: workflow-level permissions must be empty"
        for job_name, job in doc["jobs"].items():
            assert "permissions" in job, f"{path.name}:{job_name} declares no permissions"
            assert set(job["permissions"].values()) <= {"read", "write"}
        assert "persist-credentials: false" in path.read_text()
        assert path.read_text().count("actions/checkout@") == path.read_text().count("persist-credentials: false")
    writes = {(p.name, j): sorted(k for k, v in job["permissions"].items() if v == "write")
              for p in WORKFLOWS for j, job in yaml.load(p.read_text(), Loader=yaml.BaseLoader)["jobs"].items()}
    assert {k: v for k, v in writes.items() if v} == {
        ("cpswap-deploy.yml", "up"): ["contents", "pull-requests"],
        ("cpswap-health.yml", "health"): ["issues"],
        ("cpswap-review.yml", "review"): ["pull-requests"]}


def test_no_expression_is_expanded_inside_a_script():
    """Template injection: every ${{ }} reaches run: and script: through env, never in their text."""
    for path in WORKFLOWS:
        doc = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
        for job in doc["jobs"].values():
            for step in job["steps"]:
                for text in (step.get("run", ""), step.get("with", {}).get("script", "")):
                    assert "${{" not in text, f"{path.name}: {step.get('name') or step.get('id')} expands in code"


def test_github_script_steps_parse_as_the_action_runs_them(tmp_path):
    """actions/github-script v8.0.0 runs `script` as the body of an AsyncFunction whose parameters are
    require, __original_require__, github, octokit, context, core, exec, glob, io (src/main.ts,
    src/async-function.ts); node --check parses each one wrapped that way."""
    node = _tool("node")
    scripts = [(p.name, step.get("name", ""), step["with"]["script"]) for p in WORKFLOWS
               for job in yaml.load(p.read_text(), Loader=yaml.BaseLoader)["jobs"].values() for step in job["steps"]
               if "actions/github-script@" in step.get("uses", "")]
    assert len(scripts) == 3
    for index, (workflow, name, script) in enumerate(scripts):
        wrapped = tmp_path / f"script{index}.js"
        wrapped.write_text("(async function (require, __original_require__, github, octokit, context, core, exec, glob, io) {\n"
                           f"{script}\n}});\n")
        done = _run([node, "--check", str(wrapped)])
        assert done.returncode == 0, f"{workflow}: {name}: {done.stderr}"


def test_review_runs_check_and_markdown_plan_then_preview_with_the_pack():
    review = _workflow("cpswap-review.yml")
    assert review["on"]["pull_request"]["paths"] == ["Pulumi.yaml", "Pulumi.*.yaml"]
    assert review["jobs"]["preview"]["needs"] == ["stacks", "review"]
    preview_steps = review["jobs"]["preview"]["steps"]
    assert "pulumi install\n(cd policies && pulumi install)" in preview_steps[3]["run"]
    assert preview_steps[4]["with"] == {"command": "preview", "stack-name": "${{ matrix.stack }}",
                                        "policyPacks": "policies", "comment-on-summary": "true"}
    script = (ROOT / "ci" / "review.sh").read_text()
    assert 'cpswap check --stack "$stack" --base "$base"' in script
    assert 'cpswap plan --stack "$stack" --base "$base" --format markdown' in script


def test_deploy_runs_per_stack_in_its_environment_and_is_never_cancelled():
    up = _workflow("cpswap-deploy.yml")["jobs"]["up"]
    assert up["environment"] == "cpswap-${{ matrix.stack }}"
    assert up["concurrency"] == {"group": "cpswap-up-${{ matrix.stack }}", "cancel-in-progress": "false"}
    assert up["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.stacks) }}"
    assert int(up["timeout-minutes"]) == DEPLOY_TIMEOUT_MINUTES
    assert _workflow("cpswap-deploy.yml")["on"]["push"]["branches"] == ["main"]
    deploy = (ROOT / "ci" / "deploy.sh").read_text()
    assert 'pulumi up --stack "$stack" --policy-pack policies --yes' in deploy and "unset SSH_AUTH_SOCK" in deploy
    assert "SSH_AUTH_SOCK" in (ROOT / "ci" / "setup.sh").read_text()


@pytest.mark.parametrize("stack_file", EXAMPLE_STACKS, ids=[p.name for p in EXAMPLE_STACKS])
def test_the_deploy_timeout_is_above_the_worst_case_swap(stack_file):
    config = yaml.safe_load(stack_file.read_text())["config"]
    values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("cpswap:")}
    model = parse_stack_config(values, stack=stack_file.stem.split(".", 1)[1])
    worst = max(worst_case_minutes(resources=slot_commands(model=model, member=m)) for m in model.members)
    assert worst > 60  # a real bound, not an empty sum
    assert worst + SETUP_MARGIN_MINUTES < DEPLOY_TIMEOUT_MINUTES, (
        f"{stack_file.name}: a swap may take {worst} min; the deploy job allows {DEPLOY_TIMEOUT_MINUTES}")
