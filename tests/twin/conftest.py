"""Fixtures shared by the twin's tests."""
from __future__ import annotations

import pytest

from tests.support.twin.openshift import OpenShiftTwin


@pytest.fixture
def started(tmp_path):
    """``started(members=..., spares=...)`` starts an ``OpenShiftTwin`` under the test's tmp_path;
    each is closed at teardown (its events printed) and must leave no namespace or link behind."""
    made: list[OpenShiftTwin] = []

    def start(**kw) -> OpenShiftTwin:
        ocp = OpenShiftTwin.start(tmp_path / "twin", **kw)
        made.append(ocp)
        return ocp
    yield start
    for ocp in made:
        print("\n" + "\n".join(sorted(ocp.machines.events + ocp.ceo.events, key=lambda e: e[:8])))
        ocp.close()
        assert ocp.twin.net.leftovers() == []
