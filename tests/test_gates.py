"""The duplicates gate's reading of a `duplicates` report (tests/support/duplicates_gate.py): table-driven."""
from __future__ import annotations

import pytest

from tests.support.duplicates_gate import judge

HEAD = "3 pairs of places (161 files read), each sharing runs of 6 or more identical or same-shape lines"


@pytest.mark.parametrize(("report", "failing_rows", "problems"), [
    ("no duplicates (161 files read)", [], 0),
    (f"{HEAD}\nD1 cpswap/cli/etcd.py:50-56 ~ cpswap/cli/kube.py:61-67 (+2 more runs)",
     ["D1 cpswap/cli/etcd.py:50-56 ~ cpswap/cli/kube.py:61-67 (+2 more runs)"], 0),
    # alike in shape only (other names and values): a place to look, not a failure
    (f"{HEAD}\nD1 cpswap/cli/etcd.py:50-56 ~ cpswap/cli/kube.py:61-67 shape (+2 more runs)", [], 0),
    # a pair with the test bed on one side is the test bed's business
    (f"{HEAD}\nD1 cpswap/core/renderers/kubean.py:24-35 ~ tests/support/twin/kubean.py:131-143 shape", [], 0),
    (f"{HEAD}\nD4 tests/a.py:1-9 ~ tests/b.py:3-11", [], 0),
    (f"{HEAD}\nD2 components/control_plane.py:1-8 ~ __main__.py:10-17", ["D2 components/control_plane.py:1-8 ~ __main__.py:10-17"], 0),
    (f"{HEAD}\nD3 policies/__main__.py:1-8 ~ cpswap/policy_pack.py:9-16 shape boilerplate", [], 0),
    (f"{HEAD}\nD5 cpswap/distributions/common.py:26-32 ~ cpswap/distributions/openshift.py:51-57 (+1 more run)",
     ["D5 cpswap/distributions/common.py:26-32 ~ cpswap/distributions/openshift.py:51-57 (+1 more run)"], 0),
    # what was not read, or cut off, cannot pass
    (f"{HEAD}\nincomplete: time: 40 files not paired", [], 1),
    (f"{HEAD}\nD1 tests/a.py:1-9 ~ tests/b.py:3-11\n(+12 more pairs)", [], 1),
    (f"{HEAD}\nleft out: 2 runs of 6 lines that stand in more than 8 places each (too common to list)", [], 0),
])
def test_judge(report, failing_rows, problems):
    verdict = judge(report)
    assert [p.row for p in verdict.identical] == failing_rows
    assert len(verdict.problems) == problems
    assert verdict.ok == (not failing_rows and not problems)
