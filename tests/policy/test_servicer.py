"""The policy pack under pulumi_policy's real analyzer servicer, with preview-shaped requests
(issue 18, items 2 and 3).

``Pack`` serves ``cpswap.policy_pack.policies()`` through ``_PolicyAnalyzerServicer`` (the class a
``PolicyPack`` serves over gRPC), called in-process with the protobufs the engine sends
(``tests/support/analyzer_requests.py``): each resource's inputs at registration, then every
resource's outputs, where a created or replaced command's ``stdout``/``stderr`` are unknown.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import json_format
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import StackValidationPolicy

from cpswap.core.rules import RULES
from tests.support.analyzer_requests import (SECRET_SIG, SECRET_SIG_KEY, UNKNOWN_STRING, Pack, analyze_request, analyze_stack_request,
                                             violation_text)
from tests.support.pulumi_mocks import ROOT, TEST_SECRETS, Recording, load_stack_file, run_program

SECRETS = {**TEST_SECRETS, "globalKubeconfig": "apiVersion: v1\nkind: Config\n# TESTGLOBALKUBECONFIG\n",
           "keepalivedAuthPass": "vrrpTst1"}
MANDATORY, ADVISORY = analyzer_pb2.MANDATORY, analyzer_pb2.ADVISORY


def _swap(tmp: Path, *, stack_file: Path, slot: str, new: dict | None, secrets: tuple[str, ...]) -> Recording:
    """A preview of a swap of ``slot`` to ``new`` (None: the stack file's own swap, against the
    committed applied membership)."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp / "Pulumi.yaml")
    (tmp / ".cpswap").mkdir()
    config = load_stack_file(stack_file)
    if new is None:
        shutil.copy(ROOT / ".cpswap" / "applied-prod.json", tmp / ".cpswap" / "applied-prod.json")
    else:
        applied = {s: {"name": m["name"], "ip": m["ip"]} for s, m in config["members"].items()}
        (tmp / ".cpswap" / "applied-prod.json").write_text(json.dumps({"membership": applied}))
        config = {**config, "members": {**config["members"], slot: new}}
    rec = run_program(config=config, secrets={k: SECRETS[k] for k in secrets}, cwd=tmp, preview=True,
                      isolate_network=True)
    assert rec.error is None, rec.error
    return rec


COMMON = ("sshPrivateKey", "kubeconfig", "etcdCaCert", "etcdClientCert", "etcdClientKey")
SWAPS = {
    "ocboot": dict(stack_file=ROOT / "Pulumi.prod.yaml", slot="cp1", new=None, secrets=COMMON + ("ocbootDbPassword",)),
    "kubeadm": dict(stack_file=ROOT / "examples" / "Pulumi.kubeadm.yaml", slot="cp2",
                    new={"name": "k8s-backup9", "ip": "10.8.0.19"}, secrets=COMMON + ("keepalivedAuthPass",)),
    "kubean": dict(stack_file=ROOT / "examples" / "Pulumi.kubean.yaml", slot="cp3",
                   new={"name": "centos-master4", "ip": "10.6.0.14"}, secrets=COMMON + ("globalKubeconfig",)),
}


@pytest.fixture(scope="module")
def swaps(tmp_path_factory) -> dict[str, tuple[Recording, frozenset[str]]]:
    result = {}
    for name, spec in SWAPS.items():
        rec = _swap(tmp_path_factory.mktemp(name), **spec)
        # what the preview creates or replaces: the swapped slot's commands and objects
        changed = frozenset(r.name for r in rec.resources
                            if r.name.startswith(f"{spec['slot']}-") and r.type != "cpswap:index:Slot")
        assert changed, name
        result[name] = (rec, changed)
    return result


@pytest.mark.parametrize("distribution", list(SWAPS))
def test_a_swap_preview_produces_no_diagnostic(swaps, distribution):
    rec, changed = swaps[distribution]
    assert Pack().preview(rec.resources, changed=changed) == []


@pytest.mark.parametrize("distribution", list(SWAPS))
def test_the_requests_are_preview_shaped(swaps, distribution):
    """Not vacuous: the same requests carry unknowns, and a policy that reads every property (as
    the pack did before) is downgraded to advisory by the servicer."""
    rec, changed = swaps[distribution]
    stack = analyze_stack_request(rec.resources, changed=changed)
    unknown_stdout = [r.name for r in stack.resources
                      if "stdout" in r.properties and r.properties["stdout"] == UNKNOWN_STRING]
    assert sorted(unknown_stdout) == sorted(n for n in changed if n in {r.name for r in rec.commands()})
    reads_everything = StackValidationPolicy(name="reads-everything", description="reads every output",
                                             validate=lambda args, report: [dict(r.props) for r in args.resources])
    found = Pack(policies=[reads_everything]).analyze_stack(stack)
    assert [(d.enforcementLevel, d.message.split(": ", 1)[0]) for d in found] == [
        (ADVISORY, "can't run policy 'reads-everything' from policy pack 'cpswap@v0.0.1' during preview")]
    assert found[0].message.endswith("can't be known during preview")


def test_kubeadm_join_stdin_is_unknown_at_registration_and_still_checked(swaps):
    rec, changed = swaps["kubeadm"]
    join = rec.by_name()["cp2-join"]
    request = analyze_request(join, changed=changed)
    # join-prepare's stdout: secret, and not yet known
    assert json_format.MessageToDict(request.properties)["stdin"] == {SECRET_SIG_KEY: SECRET_SIG,
                                                                      "value": UNKNOWN_STRING}
    assert Pack().analyze(request) == []
    # the rule still sees that stdin is set: logging must be none
    loud = analyze_request(join, changed=changed, inputs={**join.inputs, "stdin": "@@stdout:cp2-join-prepare@@",
                                                          "logging": "stdoutAndStderr"})
    found = Pack().analyze(loud)
    assert [(d.enforcementLevel, violation_text(d)) for d in found] == [
        (MANDATORY, "[cpswap-secrets-are-secret] cp2-join: stdin carries secret material but logging is "
                    "stdoutAndStderr; it must be none")]


def _engine_stops_before_step(diagnostics: list, *, dry_run: bool) -> bool:
    """pulumi/pulumi pkg/resource/deploy/analyze_snapshot.go analyzeResource: a MANDATORY
    diagnostic makes the resource invalid unless dry-run; step_generator.go then bails with
    "resource ... is invalid" before generating the resource's steps."""
    return any(d.enforcementLevel == MANDATORY for d in diagnostics) and not dry_run


def _control_plane(rec: Recording):
    order = [r.type for r in rec.resources]
    # the ControlPlane is the first resource after the stack: nothing has a step before it
    assert order[:2] == ["pulumi:pulumi:Stack", "cpswap:index:ControlPlane"], order[:4]
    return rec.resources[1]


def _with_plan(plane, change) -> dict:
    inputs = copy.deepcopy(plane.inputs)
    change(inputs["plan"])
    return inputs


PLAN_BREAKS = [
    ("two slots changed", lambda p: p["changes"].append({"slot": "cp2", "old": {"name": "a", "ip": "10.0.0.1"},
                                                         "new": {"name": "b", "ip": "10.0.0.2"}}),
     "[cpswap-one-slot-per-run] stack prod: 2 slots change in one run (cp1, cp2); at most 1 may"),
    ("quorum break", lambda p: p["steps"][2].update(healthy=1),
     "[cpswap-quorum-every-step] cp1-etcd-remove: after cp1-etcd-remove 1 healthy of 2 voters; quorum needs 2"),
]


@pytest.mark.parametrize("case,change,message", PLAN_BREAKS, ids=[c[0] for c in PLAN_BREAKS])
def test_a_plan_break_is_mandatory_on_the_control_plane_before_any_step(swaps, case, change, message):
    rec, changed = swaps["ocboot"]
    plane = _control_plane(rec)
    found = Pack().analyze(analyze_request(plane, changed=changed, inputs=_with_plan(plane, change)))
    assert [(d.enforcementLevel, d.urn or plane.urn, violation_text(d)) for d in found] == [
        (MANDATORY, plane.urn, message)]
    assert _engine_stops_before_step(found, dry_run=False)  # `up` stops at the ControlPlane
    assert not _engine_stops_before_step(found, dry_run=True)  # preview reports it and fails at the end


def test_a_command_violation_is_mandatory_on_the_control_plane_and_on_the_command(swaps):
    rec, changed = swaps["ocboot"]
    plane = _control_plane(rec)
    inputs = copy.deepcopy(plane.inputs)
    declared = {c["name"]: c for c in inputs["commands"]}
    assert {r.name for r in rec.resources if r.type.startswith("command:")} == set(declared)
    declared["cp1-join"]["deleteBeforeReplace"] = False
    expected = ("[cpswap-membership-dbr-timeouts] cp1-join: membership command without deleteBeforeReplace: the new "
                "member would be added before the old one leaves, which etcd refuses while a voter is down (only a surge's "
                "resources, whose update carries cpswap-surge, may)")
    at_plane = Pack().analyze(analyze_request(plane, changed=changed, inputs=inputs))
    assert [(d.enforcementLevel, violation_text(d)) for d in at_plane] == [(MANDATORY, expected)]
    join = rec.by_name()["cp1-join"]
    at_join = Pack().analyze(analyze_request(type(join)(**{**join.__dict__, "delete_before_replace": False}),
                                             changed=changed))
    assert [(d.enforcementLevel, violation_text(d)) for d in at_join] == [(MANDATORY, expected)]


def test_unknown_command_text_is_a_violation_not_a_skipped_policy(swaps):
    rec, changed = swaps["ocboot"]
    join = rec.by_name()["cp1-join"]
    found = Pack().analyze(analyze_request(join, changed=changed, inputs={**join.inputs, "create": UNKNOWN_STRING}))
    assert [(d.enforcementLevel, violation_text(d)) for d in found] == [
        (MANDATORY, "[cpswap-secrets-are-secret] cp1-join: create is unknown at preview; a membership command's "
                    "text must be known so it can be checked before it runs")]


def test_every_rule_is_a_mandatory_resource_policy():
    info = Pack().servicer.GetAnalyzerInfo(None, None)
    kinds = {p.name: (p.policy_type, p.enforcementLevel) for p in info.policies}
    assert {name: kinds[name] for name in (r.name for r in RULES)} == {
        r.name: (analyzer_pb2.POLICY_TYPE_RESOURCE, MANDATORY) for r in RULES}
    assert kinds["cpswap-plan-present"] == (analyzer_pb2.POLICY_TYPE_STACK, MANDATORY)
    assert set(kinds) == {r.name for r in RULES} | {"cpswap-plan-present"}


def test_a_stack_without_the_control_plane_is_reported(swaps):
    rec, changed = swaps["ocboot"]
    others = [r for r in rec.resources if r.type != "cpswap:index:ControlPlane"]
    found = Pack().analyze_stack(analyze_stack_request(others, changed=changed))
    assert [(d.enforcementLevel, violation_text(d)) for d in found] == [
        (MANDATORY, "[cpswap-plan-present] stack: no cpswap:index:ControlPlane resource; the cpswap rules had nothing "
                    "to check")]


def test_policy_config_reaches_the_rules_through_configure(swaps):
    rec, changed = swaps["ocboot"]
    plane = _control_plane(rec)
    found = Pack(config={"cpswap-etcd-min-voters": {"minVoters": 5}}).analyze(analyze_request(plane, changed=changed))
    assert [violation_text(d) for d in found] == [
        "[cpswap-etcd-min-voters] stack prod: 3 etcd voters configured; at least 5 are required"]


@pytest.mark.parametrize("distribution", list(SWAPS))
def test_the_control_plane_declares_what_the_slots_register(swaps, distribution):
    """The check at the ControlPlane stands for the later registrations: each command's and
    ClusterOperation's inputs and options, as the servicer hands them to a resource policy, are
    the ones the ControlPlane declared."""
    from cpswap.core.rules import COMMAND_TYPES, OPERATION_TYPE, view_from_input
    from cpswap.policy_pack import resource_view
    from pulumi_policy import ResourceValidationPolicy

    rec, changed = swaps[distribution]
    seen = {}
    capture = ResourceValidationPolicy(name="capture", description="keeps what the rules would see",
                                       validate=lambda args, report: seen.__setitem__(args.name, resource_view(args)))
    pack = Pack(policies=[capture])
    registered = [r for r in rec.resources if r.type in (*COMMAND_TYPES, OPERATION_TYPE)]
    for r in registered:
        assert pack.analyze(analyze_request(r, changed=changed)) == []
    declared = {v.name: v for v in map(view_from_input, _control_plane(rec).inputs["commands"])}
    assert sorted(declared) == sorted(r.name for r in registered)
    for name, actual in seen.items():
        want = declared[name]
        assert (actual.type, actual.delete_before_replace) == (want.type, want.delete_before_replace), name
        # the SDK adds "connection" to a remote command's secret outputs
        assert set(want.additional_secret_outputs) <= set(actual.additional_secret_outputs), name
        assert {k: actual.timeouts[k] for k in want.timeouts} == want.timeouts, name
        for key, value in want.inputs.items():
            if key == "stdin":  # declared as "<secret NAME>"; registered as the secret (or unknown)
                assert actual.inputs.get("stdin") is not None, name
            else:
                assert actual.inputs.get(key) == value, (name, key)
