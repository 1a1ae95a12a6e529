"""The pure decision of a PVC recovery (cpswap.core.recovery.decide_recovery, interrupted_actions): what the
executor then does, in which order; table-driven."""
from __future__ import annotations

import pytest

from cpswap.core.recovery import (NOTHING, RECREATE_OPERATOR, RECREATE_STATEFULSET, ClaimAction, ClaimPolicy,
                                  decide_recovery, interrupted_actions)


def _action(key, *, policy="recreate", order=1, owner_kind="StatefulSet"):
    namespace, _, name = key.partition("/")
    return ClaimAction(namespace=namespace, name=name, owner_kind=owner_kind, owner_name="o", size="1Gi",
                       data_class="replicated", policy=policy, order=order, observed=True)


MINIO = _action("onecloud-minio/export-0", order=1)
MONITOR = _action("onecloud-monitoring/data-0", order=2)
VM = _action("onecloud/vm-0", order=3, owner_kind="OperatorDeployment")
KEEP = _action("logs/es-0", policy="skip", order=4)
ASK = _action("db/pg-0", policy="manual", order=5)


@pytest.mark.parametrize(("actions", "interrupted", "recovered", "steps", "cordon", "manual"), [
    # the seed-004 claims, in policy order, the survivors cordoned meanwhile
    ([VM, MINIO, MONITOR], [], set(),
     [("onecloud-minio/export-0", RECREATE_STATEFULSET, "recreated"),
      ("onecloud-monitoring/data-0", RECREATE_STATEFULSET, "recreated"),
      ("onecloud/vm-0", RECREATE_OPERATOR, "recreated by operator")], ("cp2", "cp3"), ()),
    # a re-run: what is bound on the new node is not touched again
    ([MINIO, MONITOR], [], {"onecloud-minio/export-0"},
     [("onecloud-minio/export-0", NOTHING, "already recovered"),
      ("onecloud-monitoring/data-0", RECREATE_STATEFULSET, "recreated")], ("cp2", "cp3"), ()),
    # an interrupted run deleted minio's claim (no longer pinned): taken from the journal; done ones dropped
    ([MONITOR], [MINIO, VM], {"onecloud/vm-0"},
     [("onecloud-minio/export-0", RECREATE_STATEFULSET, "recreated"),
      ("onecloud-monitoring/data-0", RECREATE_STATEFULSET, "recreated")], ("cp2", "cp3"), ()),
    # nothing to recreate: no cordon; skip is left alone, manual stops the run after the uncordon
    ([ASK, KEEP], [], set(), [("logs/es-0", NOTHING, "skip"), ("db/pg-0", NOTHING, "manual")], (), ("db/pg-0",)),
    ([], [], set(), [], (), ()),
])
def test_decide_recovery(actions, interrupted, recovered, steps, cordon, manual):
    plan = decide_recovery(actions=actions, interrupted=interrupted, recovered=frozenset(recovered),
                           survivors=("cp2", "cp3"))
    assert [(s.key, s.do, s.outcome) for s in plan.steps] == steps
    assert plan.cordon == cordon
    assert plan.manual == manual


def test_interrupted_claims_come_from_the_journal_with_their_policy():
    policies = (ClaimPolicy(selector="onecloud-minio", policy="recreate", data_class="replicated", order=1,
                            owner="statefulset"),
                ClaimPolicy(selector="onecloud/vm-0", policy="recreate", data_class="disposable", order=3,
                            owner="operator"))
    started = {"onecloud-minio/export-0": {"step": "delete-pvc"}, "onecloud/vm-0": {"deployment": "vm"},
               "other/x": {"step": "delete-pvc"}, "onecloud-minio/export-1": {"step": "delete-pvc"}}
    found = interrupted_actions(started=started, known=["onecloud-minio/export-1"], policies=policies)
    assert [(a.namespace, a.name, a.owner_kind, a.owner_name, a.order) for a in found] == [
        ("onecloud-minio", "export-0", "StatefulSet", "?", 1), ("onecloud", "vm-0", "OperatorDeployment", "vm", 3)]
