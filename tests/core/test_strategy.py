"""Swap strategy (issue 16): the surge/replace decision, both quorum paths, the plan's order for a
surge, its rendering, and the policy rules that allow the transient even count only inside one."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from cpswap.core.facts import EtcdFacts, EtcdMember, Observation
from cpswap.core.errors import ConfigError
from cpswap.core.markdown import render_markdown
from cpswap.core.model import Host, parse_stack_config
from cpswap.core.planner import AppliedMembership, plan_swap
from cpswap.core.quorum import quorum, tolerance
from cpswap.core.report import plan_document, plan_table
from cpswap.core.rules import check, declared_views
from cpswap import distributions as registry
from cpswap.core.strategy import decide_strategy, quorum_path

OLD = Host(name="node-1", ip="10.9.0.1")
NEW = Host(name="new-1", ip="10.9.1.1")


def _decide(*, requested="auto", distribution="k3s", old=OLD, new=NEW, observed=True, departing_healthy=True,
            others=()):
    return decide_strategy(slot="cp1", requested=requested, source="members.cp1.strategy", distribution=distribution,
                           old=old, new=new, observed=observed, departing_healthy=departing_healthy,
                           others_unhealthy=tuple(others))


DECISIONS = [
    # (case, kwargs, strategy, refused, text in the reason)
    ("auto, all conditions hold", {}, "surge", False, "auto: every surge condition holds"),
    ("auto, departing dead", {"departing_healthy": False}, "replace", False,
     "auto falls back to replace: the departing member node-1 is not healthy: etcd refuses to add a member"),
    ("auto, unobserved", {"observed": False, "departing_healthy": False}, "replace", False,
     "the departing member node-1 was not observed"),
    ("auto, kept IP", {"new": Host(name="new-1", ip="10.9.0.1")}, "replace", False,
     "the new host keeps IP 10.9.0.1: two members cannot share it"),
    ("auto, rebuild in place", {"distribution": "kubeadm", "new": Host(name="node-1", ip="10.9.0.1", rebuild=1)},
     "replace", False, r"keeps IP 10.9.0.1 \(rebuild 1\)"),
    ("auto, kept name", {"new": Host(name="node-1", ip="10.9.1.1")}, "replace", False, "keeps the name node-1"),
    ("auto, another member down", {"others": ("node-3",)}, "replace", False,
     "node-3 is unhealthy: every other member must be healthy"),
    ("auto, kubean", {"distribution": "kubean"}, "replace", False, "Stop if even number of etcd hosts"),
    ("auto, openshift", {"distribution": "openshift"}, "replace", False, "deletes the old Machine before"),
    ("auto, ocboot", {"distribution": "ocboot"}, "replace", False, "among ocboot's master_nodes"),
    ("forced replace on a safe swap", {"requested": "replace"}, "replace", False, "replace forced by members.cp1"),
    ("forced surge, safe", {"requested": "surge"}, "surge", False, "surge forced by members.cp1.strategy; every"),
    ("forced surge, departing dead", {"requested": "surge", "departing_healthy": False}, "surge", True,
     "surge forced by members.cp1.strategy is not safe: the departing member node-1 is not healthy"),
    ("forced surge, kept IP and unobserved", {"requested": "surge", "observed": False,
                                              "new": Host(name="new-1", ip="10.9.0.1")}, "surge", True,
     "not observed .*; the new host keeps IP 10.9.0.1"),
]


@pytest.mark.parametrize("case,kwargs,strategy,refused,text", DECISIONS, ids=[d[0] for d in DECISIONS])
def test_decision_table(case, kwargs, strategy, refused, text):
    import re

    decision = _decide(**kwargs)
    assert decision.strategy == strategy
    assert (decision.refusal is not None) == refused
    assert re.search(text, decision.reason), decision.reason


@settings(max_examples=200, deadline=None)
@given(requested=st.sampled_from(["auto", "surge", "replace"]), distribution=st.sampled_from(registry.known()),
       observed=st.booleans(), departing_healthy=st.booleans(), kept_ip=st.booleans(), kept_name=st.booleans(),
       others=st.lists(st.sampled_from(["node-2", "node-3"]), unique=True, max_size=2))
def test_surge_only_when_every_condition_holds_and_forced_unsafe_surge_is_refused(
        requested, distribution, observed, departing_healthy, kept_ip, kept_name, others):
    new = Host(name=OLD.name if kept_name else NEW.name, ip=OLD.ip if kept_ip else NEW.ip)
    decision = _decide(requested=requested, distribution=distribution, new=new, observed=observed,
                       departing_healthy=departing_healthy and observed, others=others)
    safe = (observed and departing_healthy and not kept_ip and not kept_name and not others
            and registry.get(distribution).joins_alongside)
    assert decision.surge_possible == safe
    assert decision.strategy == ("replace" if requested == "replace" else "surge" if requested == "surge" or safe
                                 else "replace")
    assert (decision.refusal is not None) == (requested == "surge" and not safe)
    if not safe:
        assert (decision.blockers and all(b in decision.reason for b in decision.blockers)) or requested == "replace"


@settings(max_examples=200, deadline=None)
@given(n=st.sampled_from([3, 5, 7]), down=st.integers(min_value=0, max_value=3), departing_healthy=st.booleans())
def test_surge_never_has_less_tolerance_than_replace_and_ends_where_it_started(n, down, departing_healthy):
    healthy = n - min(down, n)
    if departing_healthy and healthy == 0:
        departing_healthy = False
    surge = quorum_path(strategy="surge", voters=n, healthy=healthy, departing_healthy=departing_healthy)
    replace = quorum_path(strategy="replace", voters=n, healthy=healthy, departing_healthy=departing_healthy)
    assert surge.min_tolerance >= replace.min_tolerance
    assert surge.max_voters == n + 1 and replace.max_voters == n
    assert surge.points[-1][1] == replace.points[-1][1]
    assert [s.voters for _, s in surge.points] == [n, n, n + 1, n]
    if healthy == n and departing_healthy:  # the planned case: no tolerance lost by surge, one by replace
        assert surge.min_tolerance == tolerance(voters=n, healthy=n) == n - quorum(n)
        assert replace.min_tolerance == (n - 1) - quorum(n - 1)


def test_quorum_tables_of_the_issue():
    assert [(s.voters, s.tolerance) for _, s in quorum_path(strategy="surge", voters=3, healthy=3,
                                                            departing_healthy=True).points] == [(3, 1), (3, 1), (4, 1),
                                                                                                (3, 1)]
    assert [(s.voters, s.tolerance) for _, s in quorum_path(strategy="replace", voters=3, healthy=3,
                                                            departing_healthy=True).points] == [(3, 1), (2, 0), (3, 1)]
    assert quorum_path(strategy="surge", voters=5, healthy=5, departing_healthy=True).min_tolerance == 2


def _hosts(n: int) -> dict[str, Host]:
    return {f"cp{i}": Host(name=f"node-{i}", ip=f"10.9.0.{i}") for i in range(1, n + 1)}


def _plan(*, n=3, distribution="k3s", unhealthy=(), observed=True, new=NEW, strategy=None, member_strategy=None):
    applied = _hosts(n)
    desired = {**applied, "cp1": new}
    config = {"distribution": distribution, "controlPlaneEndpoint": "10.9.0.100:6443",
              "members": {s: {"name": h.name, "ip": h.ip, **({"rebuild": h.rebuild} if h.rebuild else {})}
                          for s, h in desired.items()}}
    if strategy:
        config["strategy"] = strategy
    if member_strategy:
        config["members"]["cp1"]["strategy"] = member_strategy
    members = tuple(EtcdMember(id=i, name=f"{h.name}-0a1b2c3d", peer_urls=(f"https://{h.ip}:2380",),
                               client_urls=(f"https://{h.ip}:2379",), is_learner=False,
                               healthy=h.name not in unhealthy) for i, h in enumerate(applied.values(), 1))
    observation = Observation(etcd=EtcdFacts(reachable=True, members=members, leader_id=2)) if observed else Observation()
    return plan_swap(model=parse_stack_config(config, stack="t"), applied=AppliedMembership.of(applied, source="test"),
                     observation=observation)


@pytest.mark.parametrize("n", [3, 5])
def test_surge_plan_runs_in_the_engines_order_with_tolerance_kept(n):
    plan = _plan(n=n)
    assert plan.strategy is not None and plan.strategy.strategy == "surge" and not plan.refusals
    assert [(s.id, s.resource, s.operation) for s in plan.steps] == [
        ("cp1-preflight", "cp1-preflight", "create"),
        ("cp1-etcd-snapshot", "cp1-etcd-leave", "create"),
        ("cp1-join", "cp1-join", "create"),
        ("cp1-verify", "cp1-verify", "create"),
        ("cp1-pvc-recover", "cp1-pvcs", "create"),
        ("cp1-handover", "cp1-handover", "create"),
        ("cp1-node-delete", "cp1-node-leave", "delete"),  # the old copies, after the program, dependents first
        ("cp1-etcd-remove", "cp1-etcd-leave", "delete"),
    ]
    assert [s.state.voters for s in plan.steps] == [n, n, n + 1, n + 1, n + 1, n, n, n]
    assert min(s.state.tolerance for s in plan.steps) == n - quorum(n) >= 1
    assert (plan.before.voters, plan.during.voters, plan.after.voters) == (n, n + 1, n)
    handover = plan.steps[5].command
    assert "recover-pvcs --old-node node-1 --new-node new-1" in handover
    assert "kube drain --node node-1" in handover and "etcd remove" in handover and "delete-node --node node-1" in handover
    doc = plan_document(plan)
    assert check(plan=doc, resources=declared_views(model=plan.model, surge_from=plan.surge_from)) == []
    assert [p["strategy"] for p in doc["quorum_paths"]] == ["surge", "replace"]
    assert doc["safety"]["no_tolerance_window"] is None


def test_surge_resources_are_not_delete_before_replace_and_carry_the_mark():
    plan = _plan()
    views = {v.name: v for v in declared_views(model=plan.model, surge_from=plan.surge_from)}
    cp1 = [v for name, v in views.items() if name.startswith("cp1-")]
    assert cp1 and all(v.delete_before_replace is False and "cpswap-surge" in v.inputs["update"] for v in cp1)
    assert all(v.delete_before_replace is True for name, v in views.items() if name.startswith(("cp2-", "cp3-")))
    assert "etcd snapshot" in views["cp1-etcd-leave"].inputs["create"]
    # without the mark, a resource that is not delete-before-replace is refused
    plain = {v.name: v for v in declared_views(model=plan.model)}
    from dataclasses import replace
    found = check(plan=None, resources=[replace(plain["cp1-join"], delete_before_replace=False)],
                  only=["cpswap-membership-dbr-timeouts"])
    assert [v.resource for v in found] == ["cp1-join"]


def test_plan_text_and_markdown_name_strategy_reason_and_both_tables():
    plan = _plan()
    text = plan_table(plan)
    assert "strategy: surge (requested auto by the default (auto)): auto: every surge condition holds" in text
    assert "surge (3 → 3 → 4 → 3 voters, tolerance at least 1) [chosen]" in text
    assert "replace (3 → 2 → 3 voters, tolerance at least 0) [not chosen]" in text
    md = render_markdown(document=plan_document(plan))
    assert "**strategy surge**" in md and "#### surge (chosen): 3 → 3 → 4 → 3 voters, tolerance at least 1" in md
    assert "#### replace: 3 → 2 → 3 voters, tolerance at least 0" in md


@pytest.mark.parametrize("kwargs,why", [
    ({"unhealthy": ("node-1",)}, "the departing member node-1 is not healthy"),
    ({"new": Host(name="new-1", ip="10.9.0.1")}, "keeps IP 10.9.0.1"),
    ({"observed": False}, "was not observed"),
    ({"strategy": "replace"}, "replace forced by strategy"),
])
def test_auto_falls_back_to_replace_with_the_reason_in_the_plan(kwargs, why):
    plan = _plan(**kwargs)
    assert plan.strategy is not None and plan.strategy.strategy == "replace" and not plan.surge_from
    assert why in plan.strategy.reason and why in plan_table(plan)
    assert [s.id for s in plan.steps][:3] == ["cp1-preflight", "cp1-etcd-snapshot", "cp1-etcd-remove"]
    assert plan_document(plan)["quorum_paths"][0]["strategy"] == "replace"


def test_forced_unsafe_surge_is_refused_with_the_reason():
    plan = _plan(unhealthy=("node-1",), member_strategy="surge")
    assert [(v.field, v.value) for v in plan.refusals] == [("members.cp1.strategy", "surge")]
    assert "is not safe: the departing member node-1 is not healthy" in plan.refusals[0].rule
    plan = _plan(strategy="surge", observed=False)
    assert [v.field for v in plan.refusals] == ["strategy"]


def test_strategy_config_is_validated():
    with pytest.raises(ConfigError) as err:
        _plan(member_strategy="fast")
    assert "members.cp1.strategy" in str(err.value) and "must be one of auto" in str(err.value)
    with pytest.raises(ConfigError) as err:
        _plan(strategy="yes")
    assert "strategy" in str(err.value)
