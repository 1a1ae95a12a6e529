"""Planner properties (Hypothesis) and decisions (issue 2)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from cpswap.core.facts import EtcdFacts, EtcdMember, Observation
from cpswap.core.model import Host, parse_stack_config
from cpswap.core.planner import AppliedMembership, plan_swap
from cpswap.core.quorum import QuorumState, can_remove, quorum


def _config(hosts: dict[str, Host]) -> dict:
    return {"distribution": "k3s", "controlPlaneEndpoint": "10.9.0.100:6443",
            "members": {s: {"name": h.name, "ip": h.ip} for s, h in hosts.items()}}


def _applied(n: int) -> dict[str, Host]:
    return {f"cp{i}": Host(name=f"node-{i}", ip=f"10.9.0.{i}") for i in range(1, n + 1)}


def _observation(hosts: dict[str, Host], unhealthy: set[str]) -> Observation:
    members = tuple(EtcdMember(id=i, name=f"{h.name}-0a1b2c3d", peer_urls=(f"https://{h.ip}:2380",),
                               client_urls=(f"https://{h.ip}:2379",), is_learner=False,
                               healthy=h.name not in unhealthy) for i, h in enumerate(hosts.values(), 1))
    return Observation(etcd=EtcdFacts(reachable=True, members=members, leader_id=1))


@settings(max_examples=300, deadline=None)
@given(n=st.sampled_from([3, 5, 7]), data=st.data())
def test_plan_never_drops_healthy_voters_below_quorum_and_refuses_when_it_must(n, data):
    applied = _applied(n)
    slots = sorted(applied)
    slot = data.draw(st.sampled_from(slots), label="swapped slot")
    departing_dead = data.draw(st.booleans(), label="departing dead")
    other = data.draw(st.sampled_from([None, *[s for s in slots if s != slot]]), label="other unhealthy")
    keep_ip = data.draw(st.booleans(), label="keep ip")
    unhealthy = {applied[slot].name} if departing_dead else set()
    if other:
        unhealthy.add(applied[other].name)
    desired = dict(applied)
    desired[slot] = Host(name=f"new-{slot}", ip=applied[slot].ip if keep_ip else "10.9.1.1")
    model = parse_stack_config(_config(desired), stack="t")
    plan = plan_swap(model=model, applied=AppliedMembership.of(applied, source="test"),
                     observation=_observation(applied, unhealthy))
    must_refuse = not can_remove(voters=n, healthy=n - len(unhealthy),
                                 target_healthy=not departing_dead).allowed or other is not None
    assert bool(plan.refusals) == must_refuse, (plan.refusals, unhealthy)
    if not plan.refusals:
        for step in plan.steps:
            assert step.state.has_quorum, f"{step.id}: {step.state}"
        assert plan.after == QuorumState(voters=n, healthy=n)
    for refusal in plan.refusals:
        assert refusal.field == f"members.{slot}"
        assert applied[slot].name in refusal.value


@given(n=st.sampled_from([3, 5, 7]), healthy=st.integers(min_value=0, max_value=7), target=st.booleans())
def test_can_remove_matches_projected_quorum(n, healthy, target):
    healthy = min(healthy, n)
    if target and healthy == 0:
        target = False
    verdict = can_remove(voters=n, healthy=healthy, target_healthy=target)
    after_healthy = healthy - (1 if target else 0)
    assert verdict.allowed == (n > 1 and after_healthy >= quorum(n - 1))
    assert str(after_healthy) in verdict.reason and str(n - 1) in verdict.reason


@given(n=st.integers(min_value=1, max_value=9), others_healthy=st.integers(min_value=0, max_value=8))
def test_the_departing_members_health_does_not_change_the_verdict(n, others_healthy):
    """What lets `etcd remove` bound the departing member's health probe (DEPARTING_PROBE_S): only the
    voters that stay count, so a dead target and a healthy one get the same verdict."""
    others_healthy = min(others_healthy, n - 1)
    alive = can_remove(voters=n, healthy=others_healthy + 1, target_healthy=True)
    dead = can_remove(voters=n, healthy=others_healthy, target_healthy=False)
    assert (alive.allowed, alive.after) == (dead.allowed, dead.after)


def test_healthy_member_removal_refused_while_another_is_dead_names_numbers():
    applied = _applied(3)
    desired = {**applied, "cp2": Host(name="new-cp2", ip="10.9.1.2")}
    plan = plan_swap(model=parse_stack_config(_config(desired), stack="t"),
                     applied=AppliedMembership.of(applied, source="test"),
                     observation=_observation(applied, {"node-3"}))
    text = " ".join(v.rule for v in plan.refusals)
    assert "leaves 1 healthy of 2 voters; quorum needs 2" in text
    assert "node-3 is unhealthy too; etcd refuses to add a member while a voter is down" in text


def test_noop_plan_has_no_steps():
    applied = _applied(3)
    plan = plan_swap(model=parse_stack_config(_config(applied), stack="t"),
                     applied=AppliedMembership.of(applied, source="test"), observation=Observation())
    assert plan.is_noop and plan.steps == () and plan.refusals == ()


def test_keep_ip_warns_about_reduced_tolerance():
    applied = _applied(3)
    desired = {**applied, "cp1": Host(name="rebuilt-1", ip=applied["cp1"].ip)}
    plan = plan_swap(model=parse_stack_config(_config(desired), stack="t"),
                     applied=AppliedMembership.of(applied, source="test"), observation=_observation(applied, {"node-1"}))
    assert any("keeps IP 10.9.0.1: remove-then-add runs with 2 voters (tolerance 0)" in w for w in plan.warnings)


def test_leave_steps_come_before_join_and_snapshot_first():
    applied = _applied(5)
    desired = {**applied, "cp4": Host(name="new-4", ip="10.9.1.4")}
    plan = plan_swap(model=parse_stack_config(_config(desired), stack="t"),
                     applied=AppliedMembership.of(applied, source="test"), observation=Observation())
    actions = [s.action for s in plan.steps]
    assert actions == ["preflight", "etcd-snapshot", "etcd-remove", "node-delete", "join", "verify", "pvc-recover"]
    assert plan.steps[0].operation == "create" and "--node new-4" in plan.steps[0].command  # checks the new host
    assert [s.operation for s in plan.steps[1:4]] == ["delete"] * 3
    assert all("node-4" in s.command or s.action == "etcd-snapshot" for s in plan.steps[1:4])
    assert all(s.runs_on.kind == "local" and s.runs_on.host == "operator" for s in plan.steps[:4])


def test_changing_slot_set_is_refused():
    applied = _applied(3)
    desired = {"cp1": applied["cp1"], "cp2": applied["cp2"], "cpx": Host(name="x", ip="10.9.1.9")}
    plan = plan_swap(model=parse_stack_config(_config(desired), stack="t"),
                     applied=AppliedMembership.of(applied, source="test"), observation=Observation())
    assert any("slots must stay the same" in v.rule and v.value == "+cpx, -cp3" for v in plan.refusals)


def test_no_swap_while_released_nor_in_the_run_that_ends_the_release():
    """destroyMode release stores leave commands that only record: a swap then, or in the run that
    switches back (whose replaced leaves still run from the stored, released state), would join a
    member without removing the old one."""
    applied = _applied(3)
    swapped = {**applied, "cp1": Host(name="node-new", ip="10.9.0.9")}
    cases = [("release", None, swapped, "refused while the control plane is released"),
             ("refuse", "release", swapped, "refused in the run that ends the release"),
             ("release", "release", applied, None), ("refuse", "release", applied, None),
             ("refuse", "refuse", swapped, None), ("refuse", None, swapped, None)]
    for mode, stored, desired, refusal in cases:
        model = parse_stack_config({**_config(desired), "destroyMode": mode}, stack="t")
        plan = plan_swap(model=model, applied=AppliedMembership.of(applied, source="test", destroy_mode=stored),
                         observation=Observation())
        found = [v.rule for v in plan.refusals if v.field == "destroyMode"]
        assert (found[0] if found else None) is None if refusal is None else refusal in found[0], (mode, stored, found)
