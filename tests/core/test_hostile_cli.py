"""Hostile input to `cpswap plan` and `cpswap check`, in-process (issue 13, "Input that gets through").

Every file cpswap reads (stack file, project file, saved outputs, policy config) and every argument
gets shapes a careless operator or an attacker would give it. Each must end with exit 2 and a
message, never a Python traceback, never a huge error text, never a file written by git.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpswap.cli import main
from tests.support.pulumi_mocks import ROOT

BOMB = ("config:\n  a: &a [x,x,x,x,x,x,x,x,x]\n  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "  cpswap:members: [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n")


def _project(tmp_path: Path, *, stack_text: str | bytes | None = None, applied: bool = True) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    target = tmp_path / "Pulumi.prod.yaml"
    if stack_text is None:
        shutil.copy(ROOT / "Pulumi.prod.yaml", target)
    elif isinstance(stack_text, bytes):
        target.write_bytes(stack_text)
    else:
        target.write_text(stack_text)
    if applied:
        (tmp_path / ".cpswap").mkdir()
        shutil.copy(ROOT / ".cpswap" / "applied-prod.json", tmp_path / ".cpswap" / "applied-prod.json")
    return tmp_path


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)  # an unexpected exception fails the test: that is the traceback we forbid
    out, err = capsys.readouterr()
    return code, out, err


def _prod() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())


def _with(**config) -> str:
    doc = _prod()
    doc["config"].update(config)
    return yaml.safe_dump(doc)


STACK_FILES = [
    ("alias-bomb", BOMB, "alias bomb"),
    ("top-level-list", "- config\n- x\n", "must be a mapping (key: value) at the top level"),
    ("top-level-scalar", "hello\n", "must be a mapping (key: value) at the top level"),
    ("top-level-number", "42\n", "must be a mapping"),
    ("bad-utf8", b"config:\n  cpswap:distribution: \xff\xfe\n", "must be UTF-8 text"),
    ("nul", "config: {\x00}\n", "not valid YAML"),
    ("duplicate-key", "config:\n  cpswap:distribution: k3s\n  cpswap:distribution: ocboot\n", "found duplicate key"),
    ("duplicate-member", None, "found duplicate key"),
    ("config-list", "config: [1, 2]\n", "config='list': must be a mapping"),
    ("config-scalar", "config: yes\n", "config='bool': must be a mapping"),
    ("deep", "config: " + "[" * 200 + "]" * 200 + "\n", "nests deeper than"),
    ("recursive-alias", "config: &a\n  cpswap:members: *a\n", "recursive alias"),
    ("two-documents", "config: {}\n---\nconfig: {}\n", "expected a single document"),
    ("unhashable-key", "config:\n  ? [a]\n  : 1\n", "unhashable key"),
    ("members-list", _with(**{"cpswap:members": ["a", "b", "c"]}), "members="),
    ("members-int-keys", _with(**{"cpswap:members": {1: {"name": "a", "ip": "10.0.0.1"}, 2: {"name": "b", "ip": "10.0.0.2"},
                                                     3: {"name": "c", "ip": "10.0.0.3"}}}), "slot names are"),
    ("member-spec-list", _with(**{"cpswap:members": {"cp1": [1], "cp2": 2, "cp3": None}}), "must be an object"),
    ("pvc-list", _with(**{"cpswap:pvcRecovery": [1, 2]}), "pvcRecovery="),
    ("vip-priorities-list", _with(**{"cpswap:vip": {"priorities": [1, 2]}}), "vip.priorities="),
    ("endpoint-int", _with(**{"cpswap:controlPlaneEndpoint": 6443}), "controlPlaneEndpoint="),
    ("endpoint-dict", _with(**{"cpswap:controlPlaneEndpoint": {"a": 1}}), "controlPlaneEndpoint="),
    ("distribution-list", _with(**{"cpswap:distribution": ["k3s"]}), "distribution="),
    ("big-float-port", _with(**{"cpswap:ssh": {"port": 1e400}}), "ssh.port="),
    ("ocboot-list", _with(**{"cpswap:ocboot": [1]}), "ocboot="),
]


def _stack_text(case: str, text):
    if case == "duplicate-member":
        return (ROOT / "Pulumi.prod.yaml").read_text().replace(
            "    cp2:", "    cp1:\n      name: dup\n      ip: 192.168.0.5\n    cp2:", 1)
    return text


@pytest.mark.parametrize("command", ["plan", "check"])
@pytest.mark.parametrize("case,text,message", STACK_FILES, ids=[c[0] for c in STACK_FILES])
def test_hostile_stack_file_exits_2_with_a_message(tmp_path, capsys, command, case, text, message):
    project = _project(tmp_path, stack_text=_stack_text(case, text))
    code, out, err = _run([command, "--stack", "prod", "--dir", str(project)], capsys)
    assert code == 2, (out, err)
    assert message in err, err
    assert len(err) < 4000  # bounded: no 226 MB of alias expansion


@pytest.mark.parametrize("case", ["directory", "dev-zero", "too-large", "missing"])
def test_stack_file_that_is_not_a_small_regular_file(tmp_path, capsys, case):
    project = _project(tmp_path)
    target = project / "Pulumi.prod.yaml"
    target.unlink()
    if case == "directory":
        target.mkdir()
    elif case == "dev-zero":
        target.symlink_to("/dev/zero")
    elif case == "too-large":
        target.write_text("config:\n" + "".join(f"  k{i}: {'v' * 100}\n" for i in range(12000)))
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project)], capsys)
    assert code == 2
    expected = {"directory": "stack file must be a file", "dev-zero": "must be a regular file",
                "too-large": "too large", "missing": "stack file not found"}[case]
    assert expected in err, err


@pytest.mark.parametrize("text,message", [
    ("- a\n", "project file must be a mapping"),
    ("name: x\nconfig: [1]\n", "config='list': must be a mapping"),
    ("name: x\nname: y\n", "found duplicate key"),
], ids=["list", "config-list", "duplicate"])
def test_hostile_project_file(tmp_path, capsys, text, message):
    project = _project(tmp_path)
    (project / "Pulumi.yaml").write_text(text)
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project)], capsys)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("stack", ["../../etc/passwd", "../prod", "a/b/c/d", "", "-x", "prod\n", "pr od", ".hidden",
                                   "a" * 101, "prod/../../x"])
def test_stack_cannot_traverse_out_of_the_project(tmp_path, capsys, stack):
    project = _project(tmp_path)
    code, _, err = _run(["plan", f"--stack={stack}", "--dir", str(project)], capsys)
    assert code == 2 and "argument --stack" in err, err


def test_stack_defaults_to_pulumi_stack(tmp_path, capsys, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.setenv("PULUMI_STACK", "my-org/cpswap/prod")  # fully qualified, as CI sets it
    code, out, _ = _run(["plan", "--dir", str(project)], capsys)
    assert code == 0 and "swap cp1: lzx-ha-env (192.168.0.254) -> lzx-test-add-node (192.168.0.239)" in out


def test_without_pulumi_stack_the_stack_is_required(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PULUMI_STACK", raising=False)
    code, _, err = _run(["plan", "--dir", str(_project(tmp_path))], capsys)
    assert code == 2 and "--stack" in err


def test_version(capsys):
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.startswith("cpswap ")


def _git_project(tmp_path: Path, stack_text: str | None = None) -> Path:
    project = _project(tmp_path, stack_text=stack_text, applied=False)
    git = ["git", "-C", str(project), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    return project


@pytest.mark.parametrize("base", ["--output=INJECTED", "-p", "--", "HEAD:Pulumi.yaml", "HEAD Pulumi.yaml", "",
                                  "HEAD\n", "--end-of-options"])
def test_base_cannot_inject_git_options(tmp_path, capsys, base):
    project = _git_project(tmp_path)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project), f"--base={base}"], capsys)
    finally:
        os.chdir(cwd)
    assert code == 2 and "--base" in err, err
    assert not (project / "INJECTED").exists() and not Path(cwd, "INJECTED").exists()


def test_base_that_is_not_a_commit(tmp_path, capsys):
    project = _git_project(tmp_path)
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project), "--base", "no-such-branch"], capsys)
    assert code == 2 and "--base='no-such-branch': git rev-parse failed" in err, err


def test_errors_in_the_base_revision_file_are_that_revisions(tmp_path, capsys):
    broken = _with(**{"cpswap:members": {**_prod()["config"]["cpswap:members"],
                                         "cp2": {"name": "lzx-ha-env-2", "ip": "192.168.0.999"}}})
    project = _git_project(tmp_path, stack_text=broken)
    shutil.copy(ROOT / "Pulumi.prod.yaml", project / "Pulumi.prod.yaml")  # the working tree is fine
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project), "--base", "HEAD"], capsys)
    assert code == 2
    assert "Pulumi.prod.yaml at HEAD: members.cp2.ip='192.168.0.999'" in err, err


def test_base_revision_file_that_is_not_yaml(tmp_path, capsys):
    project = _git_project(tmp_path, stack_text="- not\n- a mapping\n")
    shutil.copy(ROOT / "Pulumi.prod.yaml", project / "Pulumi.prod.yaml")
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project), "--base", "HEAD"], capsys)
    assert code == 2 and "Pulumi.prod.yaml at HEAD='list': stack file must be a mapping" in err, err


APPLIED = [
    ("list", "[1, 2]", "must be a mapping"),
    ("scalar", "3", "must be a mapping"),
    ("bad-utf8", b'{"membership": "\xff"}', "must be UTF-8"),
    ("duplicate", '{"membership": {}, "membership": {}}', "duplicate key"),
    ("nan", '{"membership": NaN}', "NaN is not a JSON number"),
    ("deep", "[" * 100000, "nested too deeply"),
    ("truncated", '{"membership": ', "not valid JSON"),
]


@pytest.mark.parametrize("case,text,message", APPLIED, ids=[a[0] for a in APPLIED])
def test_hostile_applied_file(tmp_path, capsys, case, text, message):
    project = _project(tmp_path)
    path = project / ".cpswap" / "applied-prod.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project)], capsys)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("case", ["directory", "dev-zero"])
def test_applied_file_that_is_not_a_regular_file(tmp_path, capsys, case):
    project = _project(tmp_path)
    target = project / "applied"
    target.mkdir() if case == "directory" else target.symlink_to("/dev/zero")
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(project), "--applied", str(target)], capsys)
    assert code == 2 and ("must be a file" in err or "must be a regular file" in err), err


POLICY_CONFIGS = [
    ("truncated", "{", "not valid JSON"),
    ("list", "[]", "must be a JSON object"),
    ("bad-level", '{"all": "strict"}', "'strict': is not a valid enforcement level"),
    ("number-level", '{"cpswap-etcd-min-voters": 5}', "is not a valid value; must be a string or object"),
    ("level-not-string", '{"cpswap-etcd-min-voters": {"enforcementLevel": 1}}', "must be a string"),
    ("min-voters-string", '{"cpswap-etcd-min-voters": {"minVoters": "three"}}', "must be an integer >= 1"),
    ("min-voters-fraction", '{"cpswap-etcd-min-voters": {"minVoters": 2.5}}', "must be an integer >= 1"),
    ("min-voters-zero", '{"cpswap-etcd-min-voters": {"minVoters": 0}}', "must be an integer >= 1"),
    ("environments", '{"environments": "prod"}', "must be an array of strings"),
    ("duplicate", '{"all": "mandatory", "all": "advisory"}', "duplicate key"),
]


@pytest.mark.parametrize("case,text,message", POLICY_CONFIGS, ids=[p[0] for p in POLICY_CONFIGS])
def test_malformed_policy_config_exits_2(tmp_path, capsys, case, text, message):
    project = _project(tmp_path)
    config = tmp_path / "policy.json"
    config.write_text(text)
    code, _, err = _run(["check", "--stack", "prod", "--dir", str(project), "--policy-config", str(config)], capsys)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("where", ["/dev/zero", "/", "/nonexistent/policy.json"])
def test_policy_config_that_is_not_a_file(tmp_path, capsys, where):
    code, _, err = _run(["check", "--stack", "prod", "--dir", str(_project(tmp_path)), "--policy-config", where], capsys)
    assert code == 2 and where in err, err


LEVELS = [  # minVoters 5 makes cpswap-etcd-min-voters fail on the 3-member example stack
    ("mandatory", {"cpswap-etcd-min-voters": {"minVoters": 5}}, 1, "mandatory: [cpswap-etcd-min-voters]"),
    ("remediate-is-mandatory", {"cpswap-etcd-min-voters": {"enforcementLevel": "remediate", "minVoters": 5}}, 1,
     "mandatory: [cpswap-etcd-min-voters]"),
    ("advisory", {"cpswap-etcd-min-voters": {"enforcementLevel": "advisory", "minVoters": 5}}, 0,
     "advisory: [cpswap-etcd-min-voters]"),
    ("all-advisory", {"all": "advisory", "cpswap-etcd-min-voters": {"minVoters": 5}}, 0,
     "advisory: [cpswap-etcd-min-voters]"),
    ("disabled", {"cpswap-etcd-min-voters": {"enforcementLevel": "disabled", "minVoters": 5}}, 0, "1 disabled"),
    ("all-disabled-one-mandatory", {"all": "disabled", "cpswap-etcd-min-voters": {"enforcementLevel": "mandatory",
                                                                                  "minVoters": 5}}, 1,
     "mandatory: [cpswap-etcd-min-voters]"),
    ("empty-file", None, 0, "passes all"),
]


@pytest.mark.parametrize("case,config,code,text", LEVELS, ids=[c[0] for c in LEVELS])
def test_check_honours_enforcement_levels_as_crossguard_does(tmp_path, capsys, case, config, code, text):
    project = _project(tmp_path)
    path = tmp_path / "policy.json"
    path.write_text("  \n" if config is None else json.dumps(config))
    got, out, err = _run(["check", "--stack", "prod", "--dir", str(project), "--policy-config", str(path)], capsys)
    assert got == code, (out, err)
    assert text in out, out
    if case == "disabled":
        assert "cpswap-etcd-min-voters" not in out


def test_check_json_carries_each_violations_level(tmp_path, capsys):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"cpswap-etcd-min-voters": {"enforcementLevel": "advisory", "minVoters": 5}}))
    code, out, _ = _run(["check", "--stack", "prod", "--dir", str(_project(tmp_path)), "--policy-config", str(path),
                         "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["clean"] is True
    assert [(v["rule"], v["enforcementLevel"]) for v in doc["violations"]] == [("cpswap-etcd-min-voters", "advisory")]


@pytest.mark.parametrize("argv,flag", [
    (["--observe-timeout=-1"], "--observe-timeout"), (["--timeout=nan"], "--observe-timeout/--timeout"),
    (["--timeout=0"], "--observe-timeout/--timeout"),
], ids=["negative", "nan", "zero"])
def test_plan_durations(tmp_path, capsys, argv, flag):
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(_project(tmp_path)), *argv], capsys)
    assert code == 2 and f"argument {flag}" in err, err


@pytest.mark.parametrize("case", ["missing", "file"])
def test_dir_that_is_not_a_project(tmp_path, capsys, case):
    target = tmp_path / "x"
    if case == "file":
        target.write_text("x")
    code, _, err = _run(["plan", "--stack", "prod", "--dir", str(target)], capsys)
    assert code == 2 and "Pulumi.yaml" in err, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                                   lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                               max_size=4),
                                   max_leaves=20).map(lambda v: yaml.safe_dump({"config": {"cpswap:members": v}}))))
def test_any_stack_file_gives_a_verdict_not_a_traceback(tmp_path_factory, capsys, data):
    project = _project(tmp_path_factory.mktemp("p"), stack_text=data)
    for command in ("plan", "check"):
        code, _, err = _run([command, "--stack", "prod", "--dir", str(project)], capsys)
        assert code in (0, 1, 2) and "Traceback" not in err
