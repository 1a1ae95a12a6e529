"""Suite-wide scheduling and bounds (tests/run runs the suite on two xdist workers).

- Slowest first: items are ordered by their file's measured time (``SLOW_FILES``, seconds of test
  time per file from a JUnit run of the whole suite on 2 cores, two workers), heaviest first, then
  every other file in collection order; items keep their order within a file. With
  ``--maxschedchunk 1`` (set here under xdist unless given) each worker holds at most two pending
  tests, so the long twin scenarios start at once, on both workers, instead of queueing behind
  chunks of fast tests and running last on one worker (longest-processing-time-first scheduling).
  Every worker computes the same order (xdist requires identical collections).
- No test may run longer than the reconcile loops of the twin and the kube tests live
  (``tests.support.kube_emulator.LOOP_BOUND_S``): a timeout above it is refused at collection.
"""
from __future__ import annotations

from pathlib import Path

import pytest

# seconds of test time per file (JUnit `time` summed, setup included), the larger of two `pytest -n 2
# --junitxml` runs on this 2-core machine (the files outside tests/twin alone; the whole suite at load ~20,
# where some twin scenarios ran into their timeouts); only the order matters (unlisted files run after
# these, in collection order); refresh with `python -m tests.support.durations <junit.xml>`
SLOW_FILES: dict[str, float] = {
    "tests/twin/test_scenarios.py": 1742,
    "tests/twin/test_openshift_scenarios.py": 876,
    "tests/twin/test_openshift_cpms.py": 507,
    "tests/twin/test_kubean_scenarios.py": 303,
    "tests/twin/test_preflight.py": 301,
    "tests/twin/test_openshift_emulator.py": 263,
    "tests/kube/test_recovery.py": 231,
    "tests/twin/test_destroy.py": 161,
    "tests/twin/test_kubean_emulator.py": 131,
    "tests/ci/test_gitlab_pipeline.py": 124,
    "tests/policy/test_rules.py": 95,
    "tests/pulumi/test_program.py": 78,
    "tests/pulumi/test_engine_fidelity.py": 77,
    "tests/etcd/test_etcd_ops.py": 65,
    "tests/etcd/test_membership_lock.py": 56,
    "tests/pulumi/test_stack_config.py": 55,
    "tests/pulumi/test_distributions.py": 51,
    "tests/twin/test_shims.py": 39,
    "tests/policy/test_servicer.py": 31,
    "tests/kube/test_bad_names_send_nothing.py": 30,
    "tests/upstream/test_ocboot_upstream.py": 24,
    "tests/kube/test_kubean_openshift_executors.py": 23,
    "tests/core/test_applied.py": 17,
    "tests/twin/test_replayer_order.py": 15,
    "tests/twin/test_hosts.py": 11,
    "tests/etcd/test_observe.py": 11,
    "tests/ci/test_health_real_etcd.py": 11,
    "tests/ci/test_workflows.py": 11,
    "tests/twin/test_node_scripts.py": 8,
}


def _weight(item: pytest.Item) -> float:
    return SLOW_FILES.get(Path(str(item.path)).relative_to(Path(__file__).parent.parent).as_posix(), 0.0)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "maxschedchunk", "absent") is None and getattr(config.option, "numprocesses", None):
        config.option.maxschedchunk = 1


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.support.kube_emulator import LOOP_BOUND_S

    try:
        ini_timeout = float(config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout not loaded
        ini_timeout = 0.0
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker and marker.args else ini_timeout
        if seconds >= LOOP_BOUND_S:
            raise pytest.UsageError(f"{item.nodeid}: timeout {seconds:.0f}s is not below the reconcile loops' bound "
                                    f"LOOP_BOUND_S={LOOP_BOUND_S:.0f}s (tests/support/kube_emulator.py); raise that "
                                    "bound with it")
    position = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda item: (-_weight(item), position[id(item)]))
