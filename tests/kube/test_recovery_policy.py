"""Pure recovery policy (cpswap.core.recovery): parsing, matching, ordering, refusals, capacity."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cpswap.core.errors import Violation
from cpswap.core.facts import ClaimFact
from cpswap.core.recovery import (ClaimPolicy, NodeCapacity, check_capacity, parse_pvc_recovery,
                                  plan_claim_actions, policy_for)

SEED = {"onecloud-minio": {"policy": "recreate", "dataClass": "replicated", "order": 0},
        "onecloud-monitoring": {"policy": "recreate", "dataClass": "replicated", "order": 1},
        "onecloud/default-victoria-metrics": {"policy": "recreate", "dataClass": "disposable", "order": 2,
                                              "owner": "operator"}}


@pytest.mark.parametrize("raw, expected", [
    ("recreate", [Violation("pvcRecovery", "'recreate'",
                            "must be an object of selector -> {policy, dataClass, order}")]),
    ({"Bad_NS": {"policy": "recreate", "dataClass": "unique"}},
     [Violation("pvcRecovery.Bad_NS", "Bad_NS", "must be a namespace or namespace/claim of lowercase DNS-1123 names")]),
    ({"a/b/c": {"policy": "skip", "dataClass": "unique"}},
     [Violation("pvcRecovery.a/b/c", "a/b/c", "must be a namespace or namespace/claim of lowercase DNS-1123 names")]),
    ({"ns": "recreate"}, [Violation("pvcRecovery.ns", "'recreate'", "must be an object {policy, dataClass, order}")]),
    ({"onecloud-minio": {"policy": "nuke", "dataClass": "precious", "order": -1, "owner": "helm", "ttl": 3}}, [
        Violation("pvcRecovery.onecloud-minio.ttl", "3", "unknown key; allowed: policy, dataClass, order, owner, acceptDataLoss"),
        Violation("pvcRecovery.onecloud-minio.policy", "nuke", "must be one of recreate, skip, manual"),
        Violation("pvcRecovery.onecloud-minio.dataClass", "precious", "must be one of replicated, disposable, unique"),
        Violation("pvcRecovery.onecloud-minio.order", "-1", "must be a non-negative integer (lower recovers first)"),
        Violation("pvcRecovery.onecloud-minio.owner", "helm", "must be one of statefulset, operator")]),
    ({"ns": {"policy": "skip", "dataClass": "unique", "order": True}},
     [Violation("pvcRecovery.ns.order", "True", "must be a non-negative integer (lower recovers first)")]),
])
def test_parse_reports_every_violation_and_keeps_nothing_broken(raw, expected):
    policies, problems = parse_pvc_recovery(raw)
    assert list(problems) == expected
    assert policies == ()


def test_parse_seed_policy_and_defaults():
    policies, problems = parse_pvc_recovery(SEED)
    assert problems == ()
    assert ClaimPolicy("onecloud/default-victoria-metrics", "recreate", "disposable", 2, "operator") in policies
    assert parse_pvc_recovery(None) == ((), ())
    (only,), _ = parse_pvc_recovery({"ns": {"policy": "manual", "dataClass": "unique"}})
    assert (only.order, only.owner, only.namespace, only.claim) == (100, None, "ns", None)


@pytest.mark.parametrize("namespace, name, selector", [
    ("onecloud", "default-victoria-metrics", "onecloud/default-victoria-metrics"),  # ns/claim beats ns
    ("onecloud", "default-etcd", "onecloud"),
    ("onecloud-minio", "export-minio-1", "onecloud-minio"),
    ("kube-system", "anything", None),
])
def test_policy_for_prefers_the_exact_claim(namespace, name, selector):
    policies, _ = parse_pvc_recovery({**SEED, "onecloud": {"policy": "skip", "dataClass": "unique"}})
    found = policy_for(namespace=namespace, name=name, policies=policies)
    assert (found.selector if found else None) == selector


def claim(ns: str, name: str, *, volume: str = "pv-1", owner: str = "StatefulSet") -> ClaimFact:
    return ClaimFact(namespace=ns, name=name, node="lzx-ha-env", volume=volume, size="1Ti",
                     storage_class="local-path", owner_kind=owner, owner_name=name.rsplit("-", 1)[0])


def test_plan_orders_critical_first_and_marks_operator_deployments():
    policies, _ = parse_pvc_recovery(SEED)
    claims = [claim("onecloud", "default-victoria-metrics", owner="Deployment"),
              claim("onecloud-monitoring", "export-monitor-minio-1"), claim("onecloud-minio", "export-minio-1")]
    actions, refusals = plan_claim_actions(claims=claims, policies=policies, node="lzx-ha-env")
    assert refusals == ()
    assert [(a.namespace, a.name, a.owner_kind, a.data_class, a.order) for a in actions] == [
        ("onecloud-minio", "export-minio-1", "StatefulSet", "replicated", 0),
        ("onecloud-monitoring", "export-monitor-minio-1", "StatefulSet", "replicated", 1),
        ("onecloud", "default-victoria-metrics", "OperatorDeployment", "disposable", 2)]


def test_plan_refuses_data_bearing_claims_without_policy_but_not_unbound_ones():
    policies, _ = parse_pvc_recovery(SEED)
    claims = [claim("apps", "db-0"), claim("apps", "pending-0", volume=""), claim("onecloud-minio", "export-minio-1")]
    actions, refusals = plan_claim_actions(claims=claims, policies=policies, node="lzx-ha-env")
    assert [a.name for a in actions] == ["export-minio-1"]
    assert [(v.field, v.value) for v in refusals] == [("pvcRecovery.apps/db-0", "1Ti on lzx-ha-env")]
    assert "claim apps/db-0 (StatefulSet db) holds data on the departing node lzx-ha-env" in refusals[0].rule


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3), st.booleans()), max_size=12,
                unique_by=lambda t: t[0]))
def test_plan_is_sorted_and_accounts_for_every_claim(specs):
    raw = {ns: {"policy": "recreate", "dataClass": "unique", "order": order, "acceptDataLoss": True}
           for ns, order, _ in specs}
    policies, _ = parse_pvc_recovery(raw)
    claims = [claim(ns, f"c-{ns}") for ns, _, _ in specs] + [claim("z", "orphan", volume=""),
                                                               claim("y", "data")]
    actions, refusals = plan_claim_actions(claims=claims, policies=policies, node="n")
    assert [(a.order, a.namespace, a.name) for a in actions] == sorted((a.order, a.namespace, a.name) for a in actions)
    assert len(actions) == len(specs) and [v.field for v in refusals] == ["pvcRecovery.y/data"]


@pytest.mark.parametrize("survivors, moving, allowed, reason", [
    ([NodeCapacity("lzx-ha-env-2", 110, 60), NodeCapacity("lzx-ha-env-3", 110, 100)], 60, True,
     "60 pods fit in 60 free pod slots (lzx-ha-env-2 60/110, lzx-ha-env-3 100/110)"),
    ([NodeCapacity("lzx-ha-env-2", 110, 60), NodeCapacity("lzx-ha-env-3", 110, 100)], 61, False,
     "61 pods must move but the survivors have 60 free pod slots (lzx-ha-env-2 60/110, lzx-ha-env-3 100/110); "
     "raise kubelet max-pods or add a node first"),
    ([NodeCapacity("over", 4, 6)], 0, True, "0 pods fit in 0 free pod slots (over 6/4)"),
    ([], 1, False, "1 pods must move but the survivors have 0 free pod slots (); "
                   "raise kubelet max-pods or add a node first"),
])
def test_capacity_verdict_names_the_numbers(survivors, moving, allowed, reason):
    verdict = check_capacity(survivors=survivors, moving_pods=moving)
    assert (verdict.allowed, verdict.moving, verdict.reason) == (allowed, moving, reason)


@given(st.lists(st.tuples(st.integers(1, 250), st.integers(0, 300)), max_size=5), st.integers(0, 600))
def test_capacity_allows_exactly_when_free_slots_suffice(nodes, moving):
    survivors = [NodeCapacity(f"n{i}", max_pods, pods) for i, (max_pods, pods) in enumerate(nodes)]
    verdict = check_capacity(survivors=survivors, moving_pods=moving)
    assert verdict.free == sum(max(m - p, 0) for m, p in nodes)
    assert verdict.allowed == (moving <= verdict.free)
