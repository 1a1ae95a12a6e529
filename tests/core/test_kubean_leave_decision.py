"""The pure decision of a kubean leave (cpswap.core.kubespray.decide_kubean_leave, has_left): table-driven on
seed 001's inventory."""
from __future__ import annotations

import pytest

from cpswap.core import kubespray as inv
from cpswap.core.errors import PermanentError
from tests.support.kubespray_fixtures import SEED_001

DOC = inv.parse_inventory(SEED_001)
M1, M2, M3 = "centos-master1", "centos-master2", "centos-master3"


@pytest.mark.parametrize(("host", "member", "node", "ready", "expected"), [
    # seed 001: the first master leaves; it moves to the end first, the hook runs on the two Ready others
    (M1, True, True, {M2: True, M3: True}, (True, True, (M2, M3), ())),
    (M2, True, False, {M1: True, M3: False}, (False, True, (M1,), (M3,))),
    # an earlier run's remove took member and Node (then failed in a post-hook): not run again
    (M3, False, False, {M1: False, M2: False}, (False, False, (), ())),
    # the member is gone but the Node is still there: the operation runs (it deletes the Node)
    (M3, False, True, {M1: True, M2: True}, (False, True, (M1, M2), ())),
])
def test_decide_kubean_leave(host, member, node, ready, expected):
    plan = inv.decide_kubean_leave(doc=DOC, host=host, member_present=member, node_present=node, ready=ready,
                                   where="kubean-system/centos-hosts-conf")
    assert (plan.move_to_end, plan.run_remove, plan.clean_on, plan.skipped) == expected


def test_no_ready_control_plane_host_is_refused_before_anything_is_written():
    with pytest.raises(PermanentError, match=r"hosts-conf kubean-system/centos-hosts-conf: no Ready "
                                             r"kube_control_plane host besides centos-master1 \(others: "
                                             r"centos-master2, centos-master3\)"):
        inv.decide_kubean_leave(doc=DOC, host=M1, member_present=True, node_present=True, ready={M2: False},
                                where="kubean-system/centos-hosts-conf")


@pytest.mark.parametrize(("host", "status", "left"), [
    (M1, None, False), ("gone", None, True), ("gone", "Succeeded", True), ("gone", "Failed", False),
    ("gone", "Running", False),
])
def test_has_left(host, status, left):
    assert inv.has_left(DOC, host, operation_status=status) is left
