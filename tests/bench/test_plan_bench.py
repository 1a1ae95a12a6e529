"""Benchmark (not a timed test): plan 7 members with 2,000 nodes and 20,000 PVCs observed.

Run: python -m pytest -q -m bench tests/bench/test_plan_bench.py -s
"""
from __future__ import annotations

import time

import pytest

from cpswap.core.facts import ClaimFact, EtcdFacts, EtcdMember, KubeFacts, Observation
from cpswap.core.model import Host, parse_stack_config
from cpswap.core.planner import AppliedMembership, plan_swap
from cpswap.core.report import plan_document, plan_table


@pytest.mark.bench
def test_plan_7_members_2000_nodes_20000_pvcs():
    applied = {f"cp{i}": Host(name=f"cp-node-{i}", ip=f"10.8.0.{i}") for i in range(1, 8)}
    desired = {**applied, "cp4": Host(name="cp-node-new", ip="10.8.0.40")}
    namespaces = [f"ns{i}" for i in range(50)]
    config = {"distribution": "k3s", "controlPlaneEndpoint": "10.8.0.100:6443",
              "members": {s: {"name": h.name, "ip": h.ip} for s, h in desired.items()},
              "pvcRecovery": {ns: {"policy": "recreate", "dataClass": "replicated", "order": i}
                              for i, ns in enumerate(namespaces)}}
    nodes = [f"cp-node-{i}" for i in range(1, 8)] + [f"worker-{i}" for i in range(1993)]
    claims = tuple(ClaimFact(namespace=namespaces[i % 50], name=f"data-{i}", node=nodes[i % len(nodes)],
                             volume=f"pv-{i}", size="10Gi", storage_class="local-path", owner_kind="StatefulSet",
                             owner_name=f"sts-{i % 300}") for i in range(20_000))
    members = tuple(EtcdMember(id=i, name=f"{h.name}-0a1b2c3d", peer_urls=(f"https://{h.ip}:2380",),
                               client_urls=(f"https://{h.ip}:2379",), is_learner=False, healthy=h.name != "cp-node-4")
                    for i, h in enumerate(applied.values(), 1))
    observation = Observation(etcd=EtcdFacts(reachable=True, members=members, leader_id=1),
                              kube=KubeFacts(reachable=True, node="cp-node-4", claims=claims))
    start = time.perf_counter()
    model = parse_stack_config(config, stack="bench")
    plan = plan_swap(model=model, applied=AppliedMembership.of(applied, source="bench"), observation=observation)
    plan_document(plan)
    plan_table(plan)
    elapsed = time.perf_counter() - start
    print(f"\nplan 7 members / {len(nodes)} nodes / {len(claims)} PVCs: {elapsed * 1000:.1f} ms "
          f"({len(plan.claims)} claims on the departing node)")
    assert plan.refusals == ()
    assert len(plan.claims) == sum(1 for c in claims if c.node == "cp-node-4")
    assert elapsed < 1.0
