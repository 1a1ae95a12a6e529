"""Hostile input to `cpswap ci` (the glue the shipped pipelines call), in-process (issue 13). Its arguments
come from CI variables and files earlier steps wrote: each bad one ends with exit 2 naming the flag or file and
the rule, never a traceback, never a git option smuggled in, never an unbounded read."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cpswap.cli import main


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)  # an unexpected exception fails the test
    out, err = capsys.readouterr()
    return code, out, err


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "Pulumi.prod.yaml").write_text("config: {}\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    (repo / "Pulumi.prod.yaml").write_text("config: {a: 1}\n")
    subprocess.run([*git, "commit", "-qam", "change"], check=True)
    return repo


@pytest.mark.parametrize("flag", ["--base", "--head"])
@pytest.mark.parametrize("value", ["--output=INJECTED", "-p", "HEAD:Pulumi.prod.yaml", "HEAD Pulumi.prod.yaml",
                                   "HEAD\n", ""])
def test_stacks_revisions_cannot_inject_git_options(tmp_path, capsys, flag, value):
    repo = _repo(tmp_path)
    other = {"--base": ["--head", "HEAD"], "--head": ["--base", "HEAD~1"]}[flag]
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        code, out, err = _run(["ci", "stacks", "--dir", str(repo), *other, f"{flag}={value}"], capsys)
    finally:
        os.chdir(cwd)
    assert code == 2 and flag in err and out == "", err
    assert not (repo / "INJECTED").exists() and not Path(cwd, "INJECTED").exists()


def test_stacks_on_good_revisions_and_a_new_branch(tmp_path, capsys):
    repo = _repo(tmp_path)
    assert _run(["ci", "stacks", "--dir", str(repo), "--base", "HEAD~1"], capsys)[:2] == (0, "prod\n")
    # GitLab's CI_COMMIT_BEFORE_SHA on a new branch is all zeros: compare with the head's parent
    assert _run(["ci", "stacks", "--dir", str(repo), "--base", "0" * 40, "--json"], capsys)[:2] == (0, '["prod"]\n')
    code, _, err = _run(["ci", "stacks", "--dir", str(repo), "--base", "no-such-branch"], capsys)
    assert code == 2 and "--base" in err and "git diff no-such-branch HEAD failed" in err


@pytest.mark.parametrize("stack", ["../etc/passwd", "prod\n", "-x", "", "a/b/c/d", "pr od"])
@pytest.mark.parametrize("verb", ["health", "failure", "comment"])
def test_stack_names_are_checked_by_every_verb(tmp_path, capsys, verb, stack):
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    rest = {"health": ["--plan", str(plan)], "failure": ["--log", str(plan), "--step", "up"],
            "comment": ["--plan", str(plan), "--plan-error", str(plan), "--plan-exit", "0", "--check", str(plan),
                        "--check-exit", "0"]}[verb]
    code, out, err = _run(["ci", verb, f"--stack={stack}", *rest], capsys)
    assert code == 2 and "--stack" in err and out == "", err


@pytest.mark.parametrize("text,message", [
    ("{not json", "not valid JSON"), ('{"a": 1, "a": 2}', "duplicate"), ("[1, 2]", "a plan document is a JSON object")])
def test_health_refuses_a_plan_that_is_not_a_plan_document(tmp_path, capsys, text, message):
    plan = tmp_path / "plan.json"
    plan.write_text(text)
    code, out, err = _run(["ci", "health", "--stack", "prod", "--plan", str(plan)], capsys)
    assert code == 2 and str(plan) in err and message in err and out == "", err


@pytest.mark.parametrize("where", ["/dev/zero", "dir", "missing"])
def test_health_plan_must_be_a_small_regular_file(tmp_path, capsys, where):
    path = {"/dev/zero": Path("/dev/zero"), "dir": tmp_path, "missing": tmp_path / "none.json"}[where]
    code, _, err = _run(["ci", "health", "--stack", "prod", "--plan", str(path)], capsys)
    assert code == 2 and str(path) in err, err


def test_health_plan_over_the_size_bound_is_refused_unparsed(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text('{"pad": "' + "x" * (1 << 20) + '"}')
    code, _, err = _run(["ci", "health", "--stack", "prod", "--plan", str(plan)], capsys)
    assert code == 2 and "too large" in err, err


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://ci.example/run 1", "https://x/)[y](z",
                                 "https://x/`code`", "https://x/\n# heading"])
def test_comment_details_url_cannot_break_out_of_the_markdown(tmp_path, capsys, url):
    empty = tmp_path / "empty"
    empty.write_text("")
    code, out, err = _run(["ci", "comment", "--stack", "prod", "--plan", str(empty), "--plan-error", str(empty),
                           "--plan-exit", "2", "--check", str(empty), "--check-exit", "0", f"--details-url={url}"],
                          capsys)
    assert code == 2 and "--details-url" in err and out == "", err


def test_comment_with_missing_outputs_of_earlier_steps_still_comments(tmp_path, capsys):
    missing = tmp_path / "never-written"
    code, out, _ = _run(["ci", "comment", "--stack", "prod", "--plan", str(missing), "--plan-error", str(missing),
                         "--plan-exit", "2", "--check", str(missing), "--check-exit", "0",
                         "--details-url", "https://ci.example/run/1"], capsys)
    assert code == 0 and "**cpswap plan failed for stack prod**" in out and "cpswap plan exited 2" in out


@pytest.mark.parametrize("step", ["", "up\n# injected heading", "x" * 201, "`rm -rf`", "up\x1b[2J"])
def test_failure_step_name_is_checked(tmp_path, capsys, step):
    log = tmp_path / "up.log"
    log.write_text("error: boom\n")
    code, out, err = _run(["ci", "failure", "--stack", "prod", "--log", str(log), f"--step={step}"], capsys)
    assert code == 2 and "--step" in err and out == "", err


def test_failure_summarises_the_tail_of_a_huge_non_utf8_log(tmp_path, capsys):
    log = tmp_path / "up.log"
    with log.open("wb") as handle:
        handle.write(b"\xff\xfe noise\n" * 700_000)  # ~8 MiB, not UTF-8: only the tail is read, leniently
        handle.write(b"error: update failed\n")
    plan = tmp_path / "plan.json"
    plan.write_text("{not json")  # a broken plan is summarised without, not refused
    step = "pulumi stack output (up succeeded; re-run to record the membership)"  # as ci/deploy.sh names it
    code, out, err = _run(["ci", "failure", "--stack", "prod", "--log", str(log), "--plan", str(plan),
                           "--step", step], capsys)
    assert code == 0 and "prod" in out and "summarising without it" in err, (out, err)


def test_gitlab_deploy_names_the_bad_line_of_the_stacks_file(tmp_path, capsys):
    stacks = tmp_path / "stacks.txt"
    stacks.write_text("prod\n../../x\n")
    code, out, err = _run(["ci", "gitlab-deploy", "--stacks-file", str(stacks)], capsys)
    assert code == 2 and f"{stacks}:2" in err and "../../x" in err and out == "", err
    stacks.write_text("prod\nstaging\n")
    code, out, _ = _run(["ci", "gitlab-deploy", "--stacks-file", str(stacks)], capsys)
    assert code == 0 and "cpswap-up:prod" in out and "cpswap-up:staging" in out
    assert json.dumps(out)  # printable YAML text
