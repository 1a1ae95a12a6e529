"""The applied membership (issue 13 "guards that switch off silently"): a saved outputs file that
is null, of the wrong shape or names bad hosts is an error (exit 2), never "anything goes"; one
rule picks the source (live etcd > exported > --base > adoption) and the plan says which won and
why; an adoption is verified at run time by a read-only check before anything else runs."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cpswap.cli import main
from cpswap.core.facts import EtcdFacts, EtcdMember
from cpswap.core.model import Host, parse_stack_config
from cpswap.core.planner import choose_applied
from cpswap.core.renderers.executor import CPSWAP
from tests.support.pulumi_mocks import ROOT, TEST_SECRETS, load_stack_file, run_program

PROD = load_stack_file(ROOT / "Pulumi.prod.yaml")
GOOD = {slot: {"name": m["name"], "ip": m["ip"]} for slot, m in PROD["members"].items()}


def _project(tmp_path: Path, applied: bytes | None, *, two_changed: bool = True) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    if two_changed:  # the case: two changed slots planned as "nothing will run"
        doc["config"]["cpswap:members"]["cp2"] = {"name": "lzx-new-2", "ip": "192.168.0.240"}
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    if applied is not None:
        (tmp_path / ".cpswap").mkdir()
        (tmp_path / ".cpswap" / "applied-prod.json").write_bytes(applied)
    return tmp_path


def _membership(**changes) -> bytes:
    members = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        slot, _, key = path.partition("__")
        if key:
            members[slot][key] = value
        elif value is None:
            del members[slot]
        else:
            members[slot] = value
    return json.dumps({"membership": members}).encode()


BAD_FILES = [
    ("null", b"null", "must be a mapping: the JSON object `pulumi stack output --json` prints"),
    ("list", b"[]", "list: []"),
    ("string", b'"prod"', "must be a mapping"),
    ("number", b"3", "must be a mapping"),
    ("empty-object", b"{}", "applied-prod.json.membership='missing'"),
    ("membership-null", b'{"membership": null}', "required: an object keyed by slot"),
    ("membership-empty", b'{"membership": {}}', "required: an object keyed by slot"),
    ("membership-list", b'{"membership": ["cp1"]}', "required: an object keyed by slot"),
    ("not-json", b"{membership", "not valid JSON"),
    ("bad-utf8", b'{"membership": "\xff"}', "must be UTF-8 text"),
    ("empty-file", b"", "not valid JSON"),
    ("bad-ip", _membership(cp1__ip="192.168.0.999"), "membership.members.cp1.ip='192.168.0.999'"),
    ("bad-name", _membership(cp1__name="Bad_Name"), "membership.members.cp1.name='Bad_Name'"),
    ("metachar", _membership(cp1__name="a;id"), "contains shell metacharacter"),
    ("missing-ip", _membership(cp1={"name": "lzx-ha-env"}), "membership.members.cp1.ip='None'"),
    ("host-a-string", _membership(cp1="lzx-ha-env"), "membership.members.cp1='lzx-ha-env': must be an object"),
    ("two-members", _membership(cp3=None), "at least 3 etcd voters; 2 given"),
    ("duplicate-ip", _membership(cp3__ip="192.168.0.244"), "cp2 and cp3 both use ip"),
    ("vip", _membership(cp3__ip="192.168.0.66"), "the control-plane endpoint (VIP)"),
    ("unknown-key", _membership(cp1__role="master"), "membership.members.cp1.role='master': unknown key"),
    ("rebuild-bool", _membership(cp1__rebuild=True), "cp1.rebuild='True'"),
    ("bad-slot", _membership(**{"CP 1": {"name": "x", "ip": "10.0.0.1"}}), "slot names are lowercase"),
]


@pytest.mark.parametrize("case, content, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_applied_file_is_an_error_never_anything_goes(tmp_path, capsys, case, content, message):
    project = _project(tmp_path, content)
    for command in ("plan", "check"):
        assert main([command, "--stack", "prod", "--dir", str(project)]) == 2, command
        captured = capsys.readouterr()
        assert message in captured.err, captured.err
        assert "Traceback" not in captured.err and "nothing will run" not in captured.out


def test_an_applied_path_that_is_a_directory_or_a_device_exits_2(tmp_path, capsys):
    project = _project(tmp_path, None)
    (project / ".cpswap" / "applied-prod.json").mkdir(parents=True)
    assert main(["plan", "--stack", "prod", "--dir", str(project)]) == 2
    assert "'a directory': saved stack output must be a file" in capsys.readouterr().err
    assert main(["plan", "--stack", "prod", "--dir", str(project), "--applied", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_missing_file_with_two_changed_slots_is_an_adoption_checked_at_run_time(tmp_path, capsys):
    project = _project(tmp_path, None)
    assert main(["plan", "--stack", "prod", "--dir", str(project), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["membership_source"] == "none recorded (adoption)"
    assert "control-plane-adopt-check confirms at run time" in doc["membership_reason"]
    check = doc["adoption_check"]
    assert check["resource"] == "control-plane-adopt-check"
    assert "--member cp2=lzx-new-2@192.168.0.240" in check["command"]
    assert f"'{CPSWAP} etcd verify-adoption " in check["command"]  # bounded by its deadline


def test_the_applied_file_wins_over_base_and_the_plan_says_why(tmp_path, capsys):
    project = _project(tmp_path, _membership(cp1={"name": "lzx-ha-env", "ip": "192.168.0.254"}), two_changed=False)
    git = ["git", "-C", str(project), "-c", "user.email=t@t", "-c", "user.name=t"]
    base = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())
    base["config"]["cpswap:members"]["cp3"] = {"name": "lzx-old-3", "ip": "192.168.0.231"}
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(base))
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    shutil.copy(ROOT / "Pulumi.prod.yaml", project / "Pulumi.prod.yaml")
    assert main(["plan", "--stack", "prod", "--dir", str(project), "--base", "HEAD"]) == 0
    out = capsys.readouterr().out
    assert "applied membership: exported by the last deployment (.cpswap/applied-prod.json)" in out
    assert ("why this source: the last successful deployment recorded it: it is what was deployed; the stack "
            "file at HEAD differs in cp1, cp3 and is not used") in out
    assert "swap cp1: lzx-ha-env (192.168.0.254) -> lzx-test-add-node (192.168.0.239)" in out
    assert "swap cp3" not in out


def _facts(*hosts: tuple[str, str]) -> EtcdFacts:
    return EtcdFacts(reachable=True, members=tuple(
        EtcdMember(id=i, name=n, peer_urls=(f"https://{ip}:2380",), client_urls=(f"https://{ip}:2379",),
                   is_learner=False, healthy=True) for i, (n, ip) in enumerate(hosts, 1)))


MODEL = parse_stack_config(PROD, stack="prod")
DESIRED = MODEL.hosts()
OLD = {**DESIRED, "cp1": Host("lzx-ha-env", "192.168.0.254")}
LIVE_OLD = _facts(("lzx-ha-env-0a1b2c3d", "192.168.0.254"), ("lzx-ha-env-2-11223344", "192.168.0.244"),
                  ("lzx-ha-env-3-deadbeef", "192.168.0.243"))


@pytest.mark.parametrize("live, exported, base, source, adoption, reason", [
    (LIVE_OLD, (DESIRED, "f"), (DESIRED, "main"), "live etcd (read-only)", False,
     "observed live, it is what the cluster is now; also given: f (differs in cp1); main (differs in cp1)"),
    (_facts(("a", "10.0.0.1"), ("b", "10.0.0.2"), ("lzx-ha-env-3", "192.168.0.243")), (OLD, "f"), None,
     "exported by the last deployment (f)", False, "live etcd was observed but its voters do not map onto the slots"),
    (EtcdFacts(reachable=False, error="x"), (OLD, "f"), None, "exported by the last deployment (f)", False,
     "the last successful deployment recorded it"),
    (None, (OLD, "f"), (OLD, "main"), "exported by the last deployment (f)", False, "the stack file at main agrees"),
    (None, None, (OLD, "main"), "stack file at main", False, "no deployment recorded a membership"),
    (None, None, None, "none recorded (adoption)", True, "confirms at run time, before anything else runs"),
])
def test_one_rule_picks_the_applied_membership(live, exported, base, source, adoption, reason):
    applied = choose_applied(model=MODEL, live=live, exported=exported, base=base)
    assert (applied.source, applied.adoption) == (source, adoption)
    assert reason in applied.reason
    if live is LIVE_OLD:
        assert applied.as_dict()["cp1"] == Host("lzx-ha-env", "192.168.0.254")


def test_program_adoption_runs_the_check_before_every_slot_resource(tmp_path):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    rec = run_program(config=PROD, secrets=TEST_SECRETS, cwd=tmp_path, isolate_network=True)
    assert rec.error is None, rec.error
    (check,) = [r for r in rec.commands() if r.name == "control-plane-adopt-check"]
    assert f"'{CPSWAP} etcd verify-adoption --preset env --discover kube " in check.inputs["create"]
    assert "update" not in check.inputs or not check.inputs["update"]
    commands = rec.commands()
    firsts = [next(r for r in commands if r.name.startswith(f"{slot}-")) for slot in ("cp1", "cp2", "cp3")]
    assert all(any("control-plane-adopt-check" in d for d in r.dependencies) for r in firsts), firsts
    (tmp_path / ".cpswap").mkdir()
    (tmp_path / ".cpswap" / "applied-prod.json").write_text(json.dumps({"membership": GOOD}))
    recorded = run_program(config=PROD, secrets=TEST_SECRETS, cwd=tmp_path, isolate_network=True)
    assert recorded.error is None and not any(r.name == "control-plane-adopt-check" for r in recorded.commands())
