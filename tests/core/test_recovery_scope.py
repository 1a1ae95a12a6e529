"""recovery.recovery_scope: which Nodes are cordoned and whose claims are taken (issue 14)."""
from __future__ import annotations

import pytest

from cpswap.core.recovery import NodeRole, recovery_scope

CP = (("node-role.kubernetes.io/control-plane", "true"),)
NODES = (NodeRole("cp1", True, CP), NodeRole("cp2", True, CP), NodeRole("new", True, CP), NodeRole("w1", False),
         NodeRole("w2", False, (("pool", "db"),)))
ONECLOUD = [{"node-role.kubernetes.io/control-plane": "true"}]


@pytest.mark.parametrize("old,orphaned,survivors,selectors,cordon,claim_nodes,problem", [
    ("gone", True, None, ONECLOUD, ("cp1", "cp2"), ("gone",), None),  # workers stay schedulable
    ("gone", False, None, ONECLOUD, ("cp1", "cp2"), ("gone",), None),
    (None, True, None, ONECLOUD, ("cp1", "cp2"), None, None),  # --orphaned alone: any vanished node
    ("gone", True, None, [{"pool": "db"}], ("w2",), ("gone",), None),
    ("gone", True, None, [*ONECLOUD, {"pool": "db"}], ("cp1", "cp2", "w2"), ("gone",), None),
    ("gone", True, None, [{}], ("cp1", "cp2", "w1", "w2"), ("gone",), None),  # no selector: anywhere
    ("gone", True, None, None, ("cp1", "cp2", "w1", "w2"), ("gone",), None),  # not known: every other node
    ("gone", True, None, [], (), ("gone",), None),  # nothing moves
    ("gone", True, ["cp1", "w1", "absent"], ONECLOUD, ("cp1", "w1"), ("gone",), None),
    ("gone", True, ["new"], ONECLOUD, (), ("gone",), "--survivors"),
    ("cp2", True, None, ONECLOUD, ("cp1", "cp2"), ("cp2",), "still exists as a Node"),
    ("new", False, None, ONECLOUD, ("cp1", "cp2"), ("new",), "is the new node"),
])
def test_recovery_scope(old, orphaned, survivors, selectors, cordon, claim_nodes, problem):
    scope, problems = recovery_scope(nodes=NODES, new_node="new", old_node=old, orphaned=orphaned,
                                     survivors=survivors, selectors=selectors)
    if problem is None:
        assert problems == ()
        assert scope.cordon == cordon and scope.claim_nodes == claim_nodes
        assert set(scope.left_schedulable) == {n.name for n in NODES} - set(cordon)
        if selectors == ONECLOUD and survivors is None:
            assert "surviving control-plane nodes a moving pod can land on (cp1, cp2)" in scope.reason
    else:
        assert any(problem in str(p) for p in problems), problems
