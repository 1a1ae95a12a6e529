"""Mock-run tests of the Pulumi program (issue 2): one-slot swaps, delete-before-replace,
byte-identical inputs for untouched slots, no delete path to the departing host, refusals before
any command resource, secrets and preview-known exports."""
from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from cpswap.core.slots import DESTROY_GUARD
from tests.support.pulumi_mocks import ROOT, TEST_SECRETS, Recording, load_stack_file, run_program

PROD = load_stack_file(ROOT / "Pulumi.prod.yaml")
PROD_MEMBERSHIP = {slot: {"name": m["name"], "ip": m["ip"]} for slot, m in PROD["members"].items()}


def _workdir(tmp_path: Path, membership: dict) -> Path:
    """A project dir whose exported membership is ``membership`` (what was deployed last)."""
    (tmp_path / ".cpswap").mkdir()
    (tmp_path / ".cpswap" / "applied-prod.json").write_text(json.dumps({"membership": membership}))
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    return tmp_path


def _swap(config: dict, slot: str, name: str, ip: str) -> dict:
    changed = copy.deepcopy(config)
    changed["members"][slot] = {**changed["members"][slot], "name": name, "ip": ip,
                                "hostNetworks": f"eth0/br0/{ip}"}
    return changed


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, Recording]:
    """The prod stack as deployed (adopted): applied membership == desired."""
    work = _workdir(tmp_path_factory.mktemp("deployed"), PROD_MEMBERSHIP)
    return work, run_program(config=PROD, secrets=TEST_SECRETS, cwd=work, isolate_network=True)


@pytest.fixture(scope="module")
def swapped(deployed) -> Recording:
    work, _ = deployed
    return run_program(config=_swap(PROD, "cp2", "lzx-new-2", "192.168.0.240"), secrets=TEST_SECRETS, cwd=work,
                       isolate_network=True)


def test_prod_stack_runs_and_every_command_is_dbr_with_timeouts(deployed):
    _, rec = deployed
    assert rec.error is None
    commands = [r for r in rec.commands() if r.name != DESTROY_GUARD]
    assert len(commands) == 3 * 6  # preflight, etcd-leave, node-leave, join, verify, pvcs per slot (ocboot)
    for r in commands:
        assert r.delete_before_replace, r.name
        assert r.custom_timeouts.get("create") and r.custom_timeouts.get("delete"), r.name
        assert "triggers[*]" in r.replace_on_changes, r.name
        slot = r.name.split("-")[0]
        member = PROD["members"][slot]
        assert r.inputs["triggers"] == [member["name"], member["ip"]], r.name


def test_resources_are_named_after_their_slot_and_parented(deployed):
    _, rec = deployed
    slots = {r.name: r.urn for r in rec.resources if r.type == "cpswap:index:Slot"}
    assert set(slots) == {"cp1", "cp2", "cp3"}
    for r in rec.commands():
        if r.name == DESTROY_GUARD:
            continue
        slot = r.name.split("-")[0]
        assert r.parent == slots[slot], r.name


def test_destroy_guard_depends_on_every_slot_resource(deployed):
    """`pulumi destroy` schedules deletes in antichains (pulumi/pulumi ScheduleDeletes): the guard
    depends on every slot resource, so it is deleted first and alone, and its refusal stops the rest."""
    _, rec = deployed
    guard = rec.by_name()[DESTROY_GUARD]
    slot_resources = {r.urn for r in rec.resources if r.custom and r.parent.endswith(tuple(f"::{s}" for s in PROD["members"]))}
    assert len(slot_resources) == 3 * 7 and slot_resources <= set(guard.dependencies)
    assert guard.type == "command:local:Command" and guard.parent.endswith("ControlPlane::control-plane")
    assert "exit 1" in guard.inputs["delete"] and "pulumi destroy refused" in guard.inputs["delete"]
    assert rec.outputs["destroyMode"] == "refuse"


def test_kubernetes_provider_pins_its_cluster_identifier(deployed):
    """pulumi-kubernetes DiffConfig: with clusterIdentifier set and unchanged, a kubeconfig change
    never replaces the provider (nor, with it, every object it manages)."""
    _, rec = deployed
    providers = [r for r in rec.resources if r.type == "pulumi:providers:kubernetes"]
    assert [p.inputs.get("clusterIdentifier") for p in providers] == ["cpswap-managed-cluster"]


def test_one_slot_swap_changes_only_that_slot(deployed, swapped):
    _, before = deployed
    assert swapped.error is None, swapped.error
    old, new = before.by_name(), swapped.by_name()
    assert set(old) == set(new)
    changed = sorted(name for name in old if old[name].inputs_json() != new[name].inputs_json()
                     and old[name].type != "pulumi:pulumi:Stack")
    # the ControlPlane component carries the plan document, which describes the swap
    assert [n for n in changed if not n.startswith("cp2")] == ["control-plane"]
    for name in changed:
        if name.startswith("cp2") and new[name].type.startswith("command:"):
            assert old[name].inputs["triggers"] != new[name].inputs["triggers"]
            assert new[name].delete_before_replace
    for name, rec in new.items():
        if name.startswith(("cp1", "cp3")):
            assert rec.inputs_json() == old[name].inputs_json(), name


def test_no_delete_of_the_swapped_slot_reaches_the_departing_host(deployed):
    """Deletes run from the stored (old) state: check the deployed recording for cp2."""
    _, rec = deployed
    departing = PROD["members"]["cp2"]["ip"]
    for r in rec.commands():
        if not r.name.startswith("cp2") or not r.inputs.get("delete"):
            continue
        assert r.type == "command:local:Command", f"{r.name} deletes over {r.type}"
        assert "ssh" not in r.inputs["delete"]
        assert "--ip " + departing in r.inputs["delete"] or "--node" in r.inputs["delete"]
    remote = [r for r in rec.commands() if r.type == "command:remote:Command" and r.name.startswith("cp2")]
    for r in remote:
        assert not r.inputs.get("delete"), r.name


def test_plan_exported_and_known_at_preview(deployed, tmp_path):
    work = _workdir(tmp_path, {**PROD_MEMBERSHIP, "cp1": {"name": "lzx-ha-env", "ip": "192.168.0.254"}})
    rec = run_program(config=PROD, secrets=TEST_SECRETS, cwd=work, preview=True, isolate_network=True)
    assert rec.error is None, rec.error
    plan = rec.outputs["plan"]
    assert plan["changes"][0]["slot"] == "cp1"
    assert [s["action"] for s in plan["steps"]] == ["preflight", "etcd-snapshot", "etcd-remove", "node-delete", "join",
                                                    "verify", "pvc-recover"]
    assert rec.outputs["membership"]["cp1"] == {"name": "lzx-test-add-node", "ip": "192.168.0.239"}
    assert "swap cp1: lzx-ha-env (192.168.0.254) -> lzx-test-add-node (192.168.0.239)" in rec.outputs["planTable"]
    assert any("cpswap plan: stack prod" in line for line in rec.logs)


def test_secrets_are_secret_and_never_plain(deployed):
    _, rec = deployed
    for r in rec.resources:
        plain = json.dumps({k: v for k, v in r.inputs.items()
                            if not any(p == k or p.startswith(k + ".") for p in r.secret_paths)})
        for key, value in TEST_SECRETS.items():
            for fragment in re.findall(r"TEST\w+|0neC1oudDB#test|K10test-token", value):
                assert fragment not in plain, f"{key} leaks into plain inputs of {r.name}"
    join = rec.by_name()["cp1-join"]
    assert "stdin" in join.secret_paths and "connection" in join.secret_paths
    assert "0neC1oudDB#test" in join.inputs["stdin"]  # the config carries it, secretly
    assert join.inputs.get("logging") == "none"


def test_command_text_has_no_operator_machine_paths(deployed):
    _, rec = deployed
    forbidden = [str(ROOT), sys.prefix, str(Path.home()), "/usr/local/bin", "site-packages", "venv/"]
    for r in rec.commands():
        for field in ("create", "update", "delete"):
            text = r.inputs.get(field) or ""
            for path in forbidden:
                assert path not in text, f"{r.name}.{field} contains {path}"
            if text.startswith("cpswap"):
                assert re.match(r"^cpswap --expect-version=\S+ (etcd|kube|preflight) ", text)


def test_unchanged_config_gives_identical_inputs_run_after_run(deployed):
    work, first = deployed
    second = run_program(config=PROD, secrets=TEST_SECRETS, cwd=work, isolate_network=True)
    assert [(r.name, r.inputs_json()) for r in sorted(first.resources, key=lambda r: r.name)] == \
           [(r.name, r.inputs_json()) for r in sorted(second.resources, key=lambda r: r.name)]


def _mutations() -> list[tuple[str, dict, str]]:
    two = _swap(_swap(PROD, "cp2", "lzx-new-2", "192.168.0.240"), "cp3", "lzx-new-3", "192.168.0.241")
    even = copy.deepcopy(PROD)
    even["members"]["cp4"] = {"name": "lzx-ha-env-4", "ip": "192.168.0.245"}
    few = copy.deepcopy(PROD)
    del few["members"]["cp3"]
    dup_ip = _swap(PROD, "cp3", "lzx-ha-env-3", "192.168.0.244")
    dup_name = copy.deepcopy(PROD)
    dup_name["members"]["cp3"]["name"] = "lzx-ha-env-2"
    vip = _swap(PROD, "cp3", "lzx-ha-env-3", "192.168.0.66")
    unknown = {**PROD, "distribution": "rke9"}
    meta = copy.deepcopy(PROD)
    meta["members"]["cp3"]["name"] = "lzx;rm -rf /"
    return [
        ("two-slots", two, r"members=.*cp2, cp3.*at most one slot may change per run; 2 changed"),
        ("even", even, r"members='4'.*odd number"),
        ("fewer-than-3", few, r"members='2'.*at least 3 etcd voters; 2 given"),
        ("duplicate-ip", dup_ip, r"members\.cp3\.ip='192\.168\.0\.244'.*cp2 and cp3 both use ip"),
        ("duplicate-name", dup_name, r"members\.cp3\.name='lzx-ha-env-2'.*cp2 and cp3 both use name"),
        ("vip-as-member", vip, r"members\.cp3\.ip='192\.168\.0\.66'.*VIP.*must not be a member"),
        ("unknown-distribution", unknown, r"distribution='rke9'.*unknown distribution"),
        ("shell-metacharacters", meta, r"members\.cp3\.name='lzx;rm -rf /'.*shell metacharacter"),
    ]


@pytest.mark.parametrize("case,config,message", _mutations(), ids=[m[0] for m in _mutations()])
def test_invalid_config_raises_before_any_command_resource(deployed, case, config, message):
    work, _ = deployed
    rec = run_program(config=config, secrets=TEST_SECRETS, cwd=work, isolate_network=True)
    assert rec.error is not None and re.search(message, rec.error, re.S), rec.error
    assert rec.commands() == [], f"{case}: command resources registered before the refusal"
