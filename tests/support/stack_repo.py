"""The CI pipeline tests' fixture stack repository (git, with a bare `origin`) and a runner for gitlab-ci-local
4.60.0 in shell-executor mode with the `pulumi` stand-in on PATH (test-only; the fixture is in tests/ci/conftest.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "support" / "pulumi_standin.py"
GITLAB_CI_LOCAL_VERSION = "4.60.0"
OLD_CP1 = {"name": "lzx-ha-env", "ip": "192.168.0.254", "hostNetworks": "eth0/br0/192.168.0.254"}
NEW_CP1 = {"name": "lzx-test-add-node", "ip": "192.168.0.239", "hostNetworks": "eth0/br0/192.168.0.239"}
NEW_CP2 = {"name": "lzx-new-2", "ip": "192.168.0.230", "hostNetworks": "eth0/br0/192.168.0.230"}
GIT = ["git", "-c", "user.email=ci@test", "-c", "user.name=ci", "-c", "init.defaultBranch=main"]


def gitlab_ci_local_or_skip() -> str:
    tool = shutil.which("gitlab-ci-local")
    if tool is None:
        pytest.skip("gitlab-ci-local is not installed (tests/run installs npm gitlab-ci-local@4.60.0)")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    if version != GITLAB_CI_LOCAL_VERSION:
        pytest.skip(f"gitlab-ci-local {version!r} is not {GITLAB_CI_LOCAL_VERSION} (tests/run installs it)")
    if shutil.which("rsync") is None:
        pytest.skip("rsync is missing (gitlab-ci-local copies artifacts with it; tests/run installs it)")
    return tool


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


def _set_members(repo: Path, **slots: dict) -> None:
    path = repo / "Pulumi.prod.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["cpswap:members"].update(slots)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    records: list[dict]

    def started(self) -> list[str]:
        """Job names in the order gitlab-ci-local started them (child-pipeline jobs as `parent -> job`)."""
        return [f"{m.group(1)} -> {m.group(2)}" if m.group(1) else m.group(2)
                for m in re.finditer(r"^\s*(?:\[([^\]]+)\] -> )?(\S+)\s+starting shell", self.output, re.M)]

    def calls(self) -> list[list[str]]:
        return [r["argv"] for r in self.records]


@dataclass(frozen=True)
class StackRepo:
    """A stack repository as a user has it: this project's Pulumi.yaml, .gitlab-ci.yml, ci/ and the policy
    pack's PulumiPolicy.yaml, a prod stack with cp1 = lzx-ha-env, and its last deployment's outputs."""

    root: Path
    repo: Path
    bin: Path

    def main(self) -> str:
        """The commit of main before the change: the merge base, or the push's `before`."""
        return _git(self.repo, "rev-parse", "main")

    def branch(self, name: str, *, message: str, **slots: dict) -> str:
        _git(self.repo, "checkout", "-q", "-B", name, "main")
        _set_members(self.repo, **slots)
        _git(self.repo, "commit", "-qam", message)
        return _git(self.repo, "rev-parse", "HEAD")

    def merge_to_main(self, branch: str) -> None:
        """main moves to the merged change locally; `origin/main` is still the commit before the push."""
        _git(self.repo, "checkout", "-q", "main")
        _git(self.repo, "merge", "-q", "--ff-only", branch)

    def run(self, *variables: str, env: dict[str, str] | None = None) -> Run:
        record = self.root / f"pulumi-calls-{len(list(self.root.glob('pulumi-calls-*')))}.jsonl"
        outputs = self.root / "outputs.json"
        outputs.write_text(json.dumps({"membership": {"cp1": {"name": NEW_CP1["name"], "ip": NEW_CP1["ip"]}}}))
        full_env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                    "CPSWAP_PULUMI_RECORD": str(record), "CPSWAP_PULUMI_OUTPUTS": str(outputs),
                    "SSH_AUTH_SOCK": str(self.root / "stale-agent.sock"), **(env or {})}
        full_env.pop("CPSWAP_GITLAB_TOKEN", None)
        argv = [gitlab_ci_local_or_skip(), "--force-shell-executor", "--shell-executor-no-image",
                "--home", str(self.root / "gcl-home"),
                *(x for v in variables for x in ("--variable", v))]
        done = subprocess.run(argv, cwd=self.repo, env=full_env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=240)
        records = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
        output = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
        return Run(returncode=done.returncode, output=output, records=records)


def make_stack_repo(tmp_path: Path) -> StackRepo:
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    repo.mkdir()
    bin_dir.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", ".gitlab-ci.yml"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "ci", repo / "ci")
    (repo / "policies").mkdir()
    shutil.copy(ROOT / "policies" / "PulumiPolicy.yaml", repo / "policies" / "PulumiPolicy.yaml")
    _set_members(repo, cp1=OLD_CP1)
    (repo / ".cpswap").mkdir()
    applied = json.loads((ROOT / ".cpswap" / "applied-prod.json").read_text())
    (repo / ".cpswap" / "applied-prod.json").write_text(json.dumps(applied, indent=2))
    (repo / ".gitignore").write_text("venv/\n.gitlab-ci-local/\n")
    # cpswap "installed" in the program's virtualenv, as `pulumi install` leaves it: this checkout's code
    venv_bin = repo / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "cpswap").write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m cpswap \"$@\"\n")
    (venv_bin / "cpswap").chmod(0o755)
    (bin_dir / "pulumi").write_text(f"#!/bin/sh\nexec {sys.executable} {STANDIN} \"$@\"\n")
    (bin_dir / "pulumi").chmod(0o755)
    subprocess.run([*GIT, "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True, timeout=60)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "prod: cp1 lzx-ha-env")
    _git(repo, "remote", "add", "origin", str(tmp_path / "origin.git"))
    _git(repo, "push", "-q", "origin", "main")
    _git(repo, "remote", "set-head", "origin", "main")
    return StackRepo(root=tmp_path, repo=repo, bin=bin_dir)
