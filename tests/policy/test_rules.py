"""Policy rules (issue 5): one known-good fixture, one field changed per case, message asserted;
the pack's validators over mock-run resources (preview too); `cpswap check` agrees with the pack."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cpswap.core.rules import RULES, RuleConfig, ResourceView, check
from tests.support.analyzer_requests import Pack, violation_text
from tests.support.pulumi_mocks import ROOT, TEST_SECRETS, load_stack_file, run_program

GOOD_PLAN = json.loads(subprocess.run(["cpswap", "plan", "--stack", "prod", "--json"], cwd=ROOT, capture_output=True,
                                      text=True, check=True, timeout=60).stdout)


def _plan_with(path: str, value) -> dict:
    doc = copy.deepcopy(GOOD_PLAN)
    node = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def test_good_plan_and_specs_pass_every_rule():
    assert GOOD_PLAN["refusals"] == []
    assert check(plan=GOOD_PLAN, resources=[]) == []


PLAN_CASES = [
    ("desired", {"cp1": {"name": "lzx-test-add-node", "ip": "192.168.0.239"}}, "cpswap-etcd-min-voters",
     r"stack prod: 1 etcd voters configured; at least 3 are required"),
    ("desired.cp4", {"name": "n4", "ip": "192.168.0.4"}, "cpswap-etcd-odd-voters", r"4 etcd voters is even: it tolerates 1 failure\(s\), no more than 3 voters would"),
    ("changes", [{"slot": "cp1", "old": {"name": "lzx-ha-env", "ip": "1"}, "new": {"name": "b", "ip": "2"}},
                 {"slot": "cp2", "old": {"name": "c", "ip": "3"}, "new": {"name": "d", "ip": "4"}}],
     "cpswap-one-slot-per-run", r"2 slots change in one run \(cp1, cp2\); at most 1 may"),
    ("steps.2.healthy", 1, "cpswap-quorum-every-step", r"cp1-etcd-remove: after cp1-etcd-remove 1 healthy of 2 voters; quorum needs 2"),
    ("quorum.during.healthy", 1, "cpswap-quorum-every-step", r"quorum.during: 1 healthy of 2 voters during the swap; quorum needs 2"),
    ("unhealthy", ["lzx-ha-env", "lzx-ha-env-3"], "cpswap-no-other-unhealthy", r"cp1: replacing lzx-ha-env while lzx-ha-env-3 is unhealthy \(1 other"),
    ("desired.cp3.ip", "192.168.0.244", "cpswap-unique-members", r"cp3: cp2 and cp3 both use ip 192.168.0.244"),
    ("desired.cp3.name", "lzx-ha-env-2", "cpswap-unique-members", r"cp3: cp2 and cp3 both use name lzx-ha-env-2"),
    ("desired.cp2.ip", "192.168.0.66", "cpswap-vip-not-member", r"cp2: cp2 uses the control-plane endpoint 192.168.0.66"),
    ("claims.0.policy", None, "cpswap-pvc-explicit-policy", r"onecloud-minio/\*: claim has policy None"),
    ("refusals", [{"field": "pvcRecovery.ns/data-0", "value": "1Ti on x", "rule": "claim ns/data-0 holds data on the departing node x and has no recovery policy"}],
     "cpswap-pvc-explicit-policy", r"pvcRecovery.ns/data-0: claim ns/data-0 holds data .* no recovery policy"),
    ("steps.3.voters", 4, "cpswap-even-only-in-surge",
     r"cp1-node-delete: after cp1-node-delete 4 voters; outside one surge \(strategy replace, 1 change\(s\)\) the count "
     r"stays at 3 or drops by one"),
    ("steps.1", {"id": "cp1-noop", "action": "noop", "healthy": 2, "quorum": 2, "voters": 3}, "cpswap-snapshot-first",
     r"cp1-etcd-remove: cp1-etcd-remove \(step 3\) changes membership but no etcd snapshot step comes before it"),
]


@pytest.mark.parametrize("path,value,rule,message", PLAN_CASES, ids=[f"{c[2]}:{c[0]}" for c in PLAN_CASES])
def test_plan_rule_one_field_changed(path, value, rule, message):
    found = check(plan=_plan_with(path, value), resources=[])
    assert [v.rule for v in found] == [rule], found
    assert re.search(message, str(found[0])), str(found[0])


def test_min_voters_is_configurable():
    found = check(plan=GOOD_PLAN, resources=[], config=RuleConfig(min_voters=5))
    assert [str(v) for v in found] == ["[cpswap-etcd-min-voters] stack prod: 3 etcd voters configured; at least 5 are required"]


def test_missing_plan_document_is_reported_per_plan_rule():
    found = check(plan=None, resources=[])
    assert {v.rule for v in found} == {r.name for r in RULES if r.scope == "plan"}
    assert all("no plan document found" in v.message for v in found)


GOOD_VIEW = ResourceView(type="command:remote:Command", name="cp1-join",
                         inputs={"create": 'kubeadm join 10.0.0.1:6443 --token "$TOKEN" --certificate-key "$CERT_KEY"',
                                 "stdin": "x", "logging": "none", "triggers": ["a", "1"]},
                         delete_before_replace=True, timeouts={"create": 600, "delete": 600})

VIEW_CASES = [
    ({"delete_before_replace": False}, r"\[cpswap-membership-dbr-timeouts\] cp1-join: membership command without deleteBeforeReplace"),
    ({"delete_before_replace": None}, r"cp1-join: membership command without deleteBeforeReplace"),
    ({"timeouts": {"create": 600}}, r"cp1-join: no delete timeout"),
    ({"timeouts": {}}, r"cp1-join: no create/delete timeout"),
    ({"inputs": {**GOOD_VIEW.inputs, "create": "kubeadm join x --token abcdef.0123456789abcdef"}}, r"create contains a literal --token"),
    ({"inputs": {**GOOD_VIEW.inputs, "create": "kubeadm join x --certificate-key 0123abcd"}}, r"create contains a literal --certificate-key"),
    ({"inputs": {**GOOD_VIEW.inputs, "delete": "echo 'db_password: hunter2'"}}, r"delete contains a literal db_password"),
    ({"inputs": {**GOOD_VIEW.inputs, "update": "echo '-----BEGIN RSA PRIVATE KEY-----'"}}, r"update contains a private key"),
    ({"inputs": {**GOOD_VIEW.inputs, "logging": "stdoutAndStderr"}}, r"stdin carries secret material but logging is stdoutAndStderr"),
    ({"name": "cp1-join-prepare"}, r"cp1-join-prepare: prints the join token and certificate key but stdout is not an additional secret output"),
]


@pytest.mark.parametrize("change,message", VIEW_CASES, ids=[str(i) for i in range(len(VIEW_CASES))])
def test_resource_rule_one_field_changed(change, message):
    view = ResourceView(**{**GOOD_VIEW.__dict__, **change})
    found = check(plan=GOOD_PLAN, resources=[view])
    assert len(found) == 1 and re.search(message, str(found[0])), found


def test_good_view_passes():
    assert check(plan=GOOD_PLAN, resources=[GOOD_VIEW]) == []


def _pack(recorded, config=None) -> list[str]:
    """Distinct violation messages of the pack served by pulumi_policy's analyzer servicer over a
    preview of ``recorded`` (a command violation is reported on the ControlPlane, which declares
    it, and again on the command itself)."""
    found = Pack(config={"cpswap-etcd-min-voters": config} if config else None).preview(recorded)
    assert all(d.enforcementLevel == 1 for _, d in found), found  # MANDATORY, never downgraded
    return sorted({violation_text(d) for _, d in found})


@pytest.fixture(scope="module")
def prod_recording(tmp_path_factory):
    work = tmp_path_factory.mktemp("prod")
    shutil.copy(ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
    (work / ".cpswap").mkdir()
    shutil.copy(ROOT / ".cpswap" / "applied-prod.json", work / ".cpswap" / "applied-prod.json")
    return {preview: run_program(config=load_stack_file(ROOT / "Pulumi.prod.yaml"), secrets=TEST_SECRETS, cwd=work,
                                 preview=preview, isolate_network=True) for preview in (False, True)}


@pytest.mark.parametrize("preview", [False, True])
def test_pack_passes_on_the_prod_program(prod_recording, preview):
    recording = prod_recording[preview]
    assert recording.error is None
    assert _pack(recording.resources) == []


def test_pack_rules_fail_on_mutated_resources(prod_recording):
    resources = list(prod_recording[True].resources)
    names = {r.name: i for i, r in enumerate(resources)}
    join = resources[names["cp2-join"]]
    resources[names["cp2-join"]] = type(join)(**{**join.__dict__, "delete_before_replace": False})
    control = resources[names["control-plane"]]
    plan = copy.deepcopy(control.inputs["plan"])
    plan["unhealthy"] = ["lzx-ha-env", "lzx-ha-env-3"]
    resources[names["control-plane"]] = type(control)(**{**control.__dict__, "inputs": {"plan": plan}})
    messages = _pack(resources)
    assert any(m.startswith("[cpswap-membership-dbr-timeouts] cp2-join:") for m in messages), messages
    assert any(m.startswith("[cpswap-no-other-unhealthy] cp1: replacing lzx-ha-env while lzx-ha-env-3") for m in messages)
    assert len(messages) == 2, messages
    assert _pack(prod_recording[True].resources, {"minVoters": 5}) == [  # the policy's own config
        "[cpswap-etcd-min-voters] stack prod: 3 etcd voters configured; at least 5 are required"]


def _stack(tmp_path: Path, config: dict, applied: dict | None) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": {f"cpswap:{k}": v for k, v in config.items()}}))
    if applied is not None:
        (tmp_path / ".cpswap").mkdir()
        (tmp_path / ".cpswap" / "applied-prod.json").write_text(json.dumps({"membership": applied}))
    return tmp_path


PROD = load_stack_file(ROOT / "Pulumi.prod.yaml")
MEMBERS = {s: {"name": m["name"], "ip": m["ip"]} for s, m in PROD["members"].items()}
KUBEADM5 = {"distribution": "kubeadm", "controlPlaneEndpoint": "10.1.0.100:6443",
            "members": {f"cp{i}": {"name": f"kadm-{i}", "ip": f"10.1.0.{i}"} for i in range(1, 6)}}
K3S = {"distribution": "k3s", "controlPlaneEndpoint": "10.2.0.100:6443",
       "members": {f"cp{i}": {"name": f"k3s-{i}", "ip": f"10.2.0.{i}"} for i in range(1, 4)}}
KUBEAN = load_stack_file(ROOT / "examples" / "Pulumi.kubean.yaml")
FIXTURES = [
    ("prod-swap", PROD, {**MEMBERS, "cp1": {"name": "lzx-ha-env", "ip": "192.168.0.254"}}),
    ("prod-adopted", PROD, MEMBERS),
    ("kubeadm5-swap", {**KUBEADM5, "members": {**KUBEADM5["members"], "cp4": {"name": "kadm-new", "ip": "10.1.0.44"}}},
     KUBEADM5["members"]),
    ("k3s-keep-ip", {**K3S, "members": {**K3S["members"], "cp2": {"name": "k3s-rebuilt", "ip": "10.2.0.2"}}},
     K3S["members"]),
    ("kubean-swap", {**KUBEAN, "members": {**KUBEAN["members"], "cp3": {"name": "centos-master4", "ip": "10.6.0.14"}}},
     KUBEAN["members"]),
    ("two-slots", {**K3S, "members": {**K3S["members"], "cp2": {"name": "x2", "ip": "10.2.0.22"},
                                      "cp3": {"name": "x3", "ip": "10.2.0.33"}}}, K3S["members"]),
]


@pytest.mark.parametrize("case,config,applied", FIXTURES, ids=[f[0] for f in FIXTURES])
def test_cpswap_check_agrees_with_the_pack(tmp_path, case, config, applied):
    project = _stack(tmp_path, config, applied)
    result = subprocess.run(["cpswap", "check", "--stack", "prod", "--dir", str(project), "--json"],
                            capture_output=True, text=True, timeout=60)
    offline = json.loads(result.stdout)
    secrets = {**TEST_SECRETS, "globalKubeconfig": "apiVersion: v1\nkind: Config\n"}
    recording = run_program(config=config, secrets=secrets, cwd=project, preview=True, isolate_network=True)
    if recording.error is not None:  # the program refuses before registering: the pack never runs
        assert recording.commands() == []
        assert result.returncode == 1 and not offline["clean"]
        rules = {v["rule"] for v in offline["violations"]}
        assert rules == {"cpswap-one-slot-per-run"}, rules
        assert "at most one slot may change per run" in recording.error
        return
    pack = sorted(_pack(recording.resources))
    assert sorted({f"[{v['rule']}] {v['resource']}: {v['message']}" for v in offline["violations"]}) == pack
    assert result.returncode == (1 if pack else 0)
