"""The distribution registry and the step vocabulary (cpswap/distributions, cpswap/core/steps.py)."""
from __future__ import annotations

import pytest

from cpswap import distributions as registry
from cpswap.core.model import COMMON_SECRET_KEYS, KEEPALIVED_SECRET_KEYS
from cpswap.core.rules import RuleConfig, snapshot_first
from cpswap.core.slots import slot_commands
from cpswap.core.steps import Action, Effect, Stdin, first_unsnapshotted_change
from tests.support.stacks import model_for


def test_an_unknown_distribution_is_refused_with_the_known_ones():
    with pytest.raises(registry.UnknownDistribution, match=r"unknown distribution 'k8s'; use one of ocboot, k3s"):
        registry.get("k8s")


def test_every_known_name_is_a_module_declaring_itself():
    assert [d.name for d in registry.every()] == list(registry.KNOWN)


@pytest.mark.parametrize("action", [a for a in Action if a.changes_membership], ids=str)
def test_no_membership_action_escapes_snapshot_first(action):
    steps = [{"id": "cp1-preflight", "action": "preflight"}, {"id": f"cp1-{action}", "action": str(action)}]
    found = snapshot_first({"steps": steps}, RuleConfig())
    assert [v.rule for v in found] == ["cpswap-snapshot-first"]
    assert first_unsnapshotted_change(["etcd-snapshot", str(action)]) is None


def test_membership_effects_are_the_rules_and_the_planners():
    assert {a for a in Action if a.changes_membership} == {
        Action.ETCD_REMOVE, Action.KUBEAN_REMOVE, Action.JOIN, Action.MACHINE, Action.ETCD_REDEPLOY, Action.HANDOVER}
    assert {a for a in Action if a.leaves} == {
        Action.ETCD_REMOVE, Action.KUBEAN_REMOVE, Action.NODE_DELETE, Action.ETCD_SECRETS_DELETE, Action.HANDOVER}
    assert all(isinstance(a.effect, Effect) for a in Action)


def test_stdin_is_a_secret_or_an_earlier_output_both_only_when_declared_in_order():
    with pytest.raises(ValueError, match="exactly one"):
        Stdin("x")
    with pytest.raises(ValueError, match="exactly one"):
        Stdin("x", secret="k3sToken", output_of=Action.JOIN_PREPARE)
    with pytest.raises(ValueError, match="then_output needs"):
        Stdin("x", secret="k3sToken", then_output=True)
    # k3s's join: the token line, then the preflight's output (the critical flags it read)
    both = Stdin("x", secret="k3sToken", output_of=Action.PREFLIGHT, then_output=True)
    assert both.secret == "k3sToken" and both.output_of is Action.PREFLIGHT


@pytest.mark.parametrize("name", registry.KNOWN)
def test_every_resource_speaks_the_vocabulary_and_reads_only_declared_secrets(name):
    model = model_for(name)
    distro = registry.get(name)
    allowed = {*COMMON_SECRET_KEYS, *KEEPALIVED_SECRET_KEYS, *distro.secrets}
    actions = set()
    for member in model.members:
        for spec in slot_commands(model=model, member=member):
            assert isinstance(spec.action, Action), spec.name
            actions.add(spec.action)
            if spec.stdin is not None and spec.stdin.secret is not None:
                assert spec.stdin.secret in allowed, (spec.name, spec.stdin)
            assert {key for _, key in spec.secret_env} <= allowed, spec.name
    assert distro.joined_by in actions


@pytest.mark.parametrize("name", registry.KNOWN)
def test_the_plan_document_of_every_distribution_has_the_typed_schema(name):
    from cpswap.core.facts import Observation
    from cpswap.core.model import Host
    from cpswap.core.plan_schema import conformance
    from cpswap.core.planner import AppliedMembership, plan_swap
    from cpswap.core.report import plan_document

    model = model_for(name)
    applied = {**model.hosts(), "cp1": Host(name="gone-1", ip="10.99.0.1")}  # cp1 is being swapped
    plan = plan_swap(model=model, applied=AppliedMembership.of(applied, source="test", reason="test"),
                     observation=Observation())
    document = plan_document(plan)
    assert document["steps"] and conformance(document) == []
    assert conformance({**document, "extra": 1}) == ["plan.extra: not in the schema"]
    assert conformance({**document, "observed": "yes"}) == ["plan.observed: 'yes' is not a bool"]
