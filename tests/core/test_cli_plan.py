"""`cpswap plan` offline (issue 2): table, --json, --base, refusals with exit codes, no network."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from cpswap.cli import main
from cpswap.core.renderers.executor import CPSWAP
from tests.support.pulumi_mocks import ROOT


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"cpswap plan tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def _project(tmp_path: Path, mutate=None, applied: bool = True) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    if mutate:
        mutate(doc["config"])
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    if applied:
        (tmp_path / ".cpswap").mkdir()
        shutil.copy(ROOT / ".cpswap" / "applied-prod.json", tmp_path / ".cpswap" / "applied-prod.json")
    return tmp_path


def test_plan_prod_prints_the_swap(capsys):
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert "swap cp1: lzx-ha-env (192.168.0.254) -> lzx-test-add-node (192.168.0.239)" in out
    assert "exported by the last deployment (.cpswap/applied-prod.json)" in out
    assert "NOT observed" in out
    assert "ssh 192.168.0.66 (VIP, a survivor)" in out
    for line in ("before  3       2        2       0", "during  2       2        2       0",
                 "after   3       3        2       1"):
        assert line in out
    assert "onecloud             default-victoria-metrics  OperatorDeployment" in out


def test_plan_json_is_the_plan_document(capsys):
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "cpswap.plan/v1"
    assert doc["changes"] == [{"slot": "cp1", "old": {"name": "lzx-ha-env", "ip": "192.168.0.254"},
                               "new": {"name": "lzx-test-add-node", "ip": "192.168.0.239"},
                               "reason": doc["changes"][0]["reason"]}]
    assert doc["quorum"]["during"] == {"voters": 2, "healthy": 2, "quorum": 2, "tolerance": 0}
    assert [c["namespace"] for c in doc["claims"]] == ["onecloud-minio", "onecloud-monitoring", "onecloud"]
    assert doc["observed"] is False and doc["refusals"] == []
    where = {s["action"]: (s["runs_on"]["kind"], s["runs_on"]["host"]) for s in doc["steps"]}
    assert where == {"preflight": ("local", "operator"), "etcd-snapshot": ("local", "operator"), "etcd-remove": ("local", "operator"),
                     "node-delete": ("local", "operator"), "join": ("ssh", "192.168.0.66"),
                     "verify": ("local", "operator"), "pvc-recover": ("local", "operator")}
    assert all(s["runs_on"]["host"] != "192.168.0.254" for s in doc["steps"])  # never the departing host
    text = json.dumps(doc)
    assert "0neC1oudDB" not in text  # no secret in the document


def test_plan_base_compares_with_the_stack_file_at_a_revision(tmp_path, capsys):
    project = _project(tmp_path, applied=False)
    git = ["git", "-C", str(project), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    doc = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())
    doc["config"]["cpswap:members"]["cp3"] = {"name": "lzx-new-3", "ip": "192.168.0.230"}
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    assert main(["plan", "--stack", "prod", "--dir", str(project), "--base", "HEAD", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["membership_source"] == "stack file at HEAD"
    assert [c["slot"] for c in out["changes"]] == ["cp3"]


def test_plan_without_record_is_adoption(tmp_path, capsys):
    project = _project(tmp_path, applied=False)
    assert main(["plan", "--stack", "prod", "--dir", str(project)]) == 0
    out = capsys.readouterr().out
    assert "applied membership: none recorded (adoption)" in out
    assert "adoption: first, control-plane-adopt-check (read-only, on the operator's machine) stops the run" in out
    assert (f"'{CPSWAP} etcd verify-adoption --preset env --discover kube --endpoints https://192.168.0.239:2379,"
            "https://192.168.0.244:2379,https://192.168.0.243:2379 --member cp1=lzx-test-add-node@192.168.0.239") in out
    assert "nothing will run" not in out


def _set(path, value):
    def mutate(config):
        node = config
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return mutate


BAD = [
    ("two-slots", lambda c: (c["cpswap:members"]["cp2"].update(name="x2", ip="192.168.0.10"),),
     1, "members='cp1, cp2': at most one slot may change per run; 2 changed"),
    ("even", _set("cpswap:members.cp4", {"name": "n4", "ip": "192.168.0.11"}), 2, "members='4': etcd voters must be an odd number"),
    ("fewer-than-3", _set("cpswap:members.cp3", None), 2, "members='2': an HA control plane needs at least 3 etcd voters"),
    ("duplicate-ip", _set("cpswap:members.cp3.ip", "192.168.0.244"), 2, "members.cp3.ip='192.168.0.244': cp2 and cp3 both use ip"),
    ("duplicate-name", _set("cpswap:members.cp3.name", "lzx-ha-env-2"), 2, "members.cp3.name='lzx-ha-env-2': cp2 and cp3 both use name"),
    ("vip", _set("cpswap:members.cp3.ip", "192.168.0.66"), 2, "members.cp3.ip='192.168.0.66': the control-plane endpoint (VIP)"),
    ("distribution", _set("cpswap:distribution", "rancher"), 2, "distribution='rancher': unknown distribution"),
    ("metacharacters", _set("cpswap:members.cp2.name", "a`id`"), 2, "members.cp2.name='a`id`': contains shell metacharacter"),
]


@pytest.mark.parametrize("case,mutate,code,message", BAD, ids=[b[0] for b in BAD])
def test_plan_refuses_bad_stacks_naming_field_value_rule(tmp_path, capsys, case, mutate, code, message):
    project = _project(tmp_path, mutate)
    assert main(["plan", "--stack", "prod", "--dir", str(project)]) == code
    captured = capsys.readouterr()
    assert message in captured.out + captured.err


def test_cpswap_command_is_installed_and_runs_offline():
    result = subprocess.run(["unshare", "-n", "cpswap", "plan", "--stack", "prod"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "swap cp1" in result.stdout
