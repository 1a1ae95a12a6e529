"""``cpswap.core.openshift.redeploy_decision`` over etcd/cluster states as cluster-etcd-operator
writes them (library-go NodeController and InstallerController ``status.nodeStatuses``, see the
module docstring). Pure, table-driven."""
from __future__ import annotations

import pytest

from cpswap.core.openshift import redeploy_decision

NEW, OLD_A, OLD_B = "ocp-cp-d", "ocp-cp-b", "ocp-cp-c"


def etcd(latest: int, *nodes: dict) -> dict:
    return {"spec": {"forceRedeploymentReason": ""},
            "status": {"latestAvailableRevision": latest, "nodeStatuses": list(nodes)}}


def at(name: str, current: int, target: int = 0, **extra) -> dict:
    return {"nodeName": name, "currentRevision": current, **({"targetRevision": target} if target else {}), **extra}


CASES = [
    # (id, etcd/cluster, pod Ready on NEW, action, words in the reason)
    ("pod-ready-first-up", etcd(3, at(OLD_A, 3), at(OLD_B, 3), at(NEW, 3)), True, "not-needed",
     "Running and Ready"),
    ("pod-ready-before-listed", etcd(3, at(OLD_A, 3), at(OLD_B, 3)), True, "not-needed", "Running and Ready"),
    ("no-revision-yet", etcd(0), False, "wait", "no revision yet"),
    ("new-node-not-listed-yet", etcd(3, at(OLD_A, 3), at(OLD_B, 3)), False, "wait",
     f"node {NEW} is not in etcd/cluster status.nodeStatuses yet"),
    ("new-node-listed-no-installer-yet", etcd(3, at(OLD_A, 3), at(OLD_B, 3), at(NEW, 0)), False, "wait",
     f"node {NEW} is at revision 0 of 3 (revision 3 not started on it yet)"),
    # the race: installer at the latest revision, the member not added yet (pod not Ready)
    ("new-node-installing-member-not-added", etcd(3, at(OLD_A, 3), at(OLD_B, 3), at(NEW, 0, 3)), False, "wait",
     f"node {NEW} is at revision 0 of 3 (installing revision 3)"),
    ("forced-revision-rolling-on-node", etcd(4, at(OLD_A, 4), at(OLD_B, 4), at(NEW, 3, 4)), False, "wait",
     "at revision 3 of 4 (installing revision 4)"),
    ("installer-failing-retried", etcd(3, at(OLD_A, 3), at(OLD_B, 3), at(
        NEW, 0, 3, lastFailedRevision=3, lastFailedRevisionErrors=["installer: pod did not start"])), False, "wait",
     "its installer failed on revision 3 (installer: pod did not start), the operator retries it"),
    ("old-failure-not-for-current-target", etcd(4, at(OLD_A, 4), at(OLD_B, 4), at(
        NEW, 0, 4, lastFailedRevision=3, lastFailedRevisionErrors=["old"])), False, "wait", "(installing revision 4)"),
    ("another-node-still-rolling", etcd(4, at(OLD_A, 3, 4), at(OLD_B, 4), at(NEW, 4)), False, "wait",
     f"revision 4 is still rolling out ({OLD_A} at 3)"),
    # seed 003 2.4.2 after the reset: the node keeps the latest revision, its member and pod are gone
    ("stable-pod-gone-crashloop-reset", etcd(3, at(OLD_A, 3), at(OLD_B, 3), at(NEW, 3)), False, "redeploy",
     f"every node is at revision 3 and the etcd pod on {NEW} is not Ready"),
]


@pytest.mark.parametrize("state,pod_ready,action,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_redeploy_decision(state, pod_ready, action, words):
    decision = redeploy_decision(etcd=state, node=NEW, pod_ready=pod_ready)
    assert (decision.action, words in decision.reason) == (action, True), decision.reason


def test_a_status_without_node_statuses_waits():
    assert redeploy_decision(etcd={"status": {"latestAvailableRevision": 5}}, node=NEW, pod_ready=False).action == \
        "wait"
    assert redeploy_decision(etcd={}, node=NEW, pod_ready=False).action == "wait"
