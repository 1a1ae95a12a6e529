"""Drain respects PodDisruptionBudgets (issue 16: a surge drains a live node with eviction): a 429
from the eviction API is "not now", retried until the drain deadline, never a failure by itself and
never a plain delete (kubernetes/kubectl pkg/drain/drain.go ``evictPods`` at
dee3483a3d6a64c07fdf746caf80af446dee99ac retries a 429 after ``EvictErrorRetryDelay``).
A stand-in for the eviction endpoint only (kmock has none); everything else is the executor's code."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from cpswap.core.errors import DeadlineError
from cpswap.executors import kube as ex

NODE = "node-1"


class BudgetedCore:
    """The CoreV1Api calls drain makes; ``refusals[pod]`` evictions of a pod are refused with 429."""

    def __init__(self, pods: list[str], refusals: dict[str, int]) -> None:
        self.pods = {name: client.V1Pod(metadata=client.V1ObjectMeta(name=name, namespace="db"),
                                        spec=client.V1PodSpec(node_name=NODE, containers=[])) for name in pods}
        self.refusals = dict(refusals)
        self.evictions: list[tuple[str, int]] = []
        self.deleted: list[str] = []
        self.cordoned = False

    def read_node(self, name, _request_timeout=None):
        return client.V1Node(metadata=client.V1ObjectMeta(name=name), status=client.V1NodeStatus(
            conditions=[client.V1NodeCondition(type="Ready", status="True")]))

    def patch_node(self, name, body, _request_timeout=None):
        self.cordoned = body == {"spec": {"unschedulable": True}}

    def list_pod_for_all_namespaces(self, _request_timeout=None):
        return client.V1PodList(items=list(self.pods.values()))

    def create_namespaced_pod_eviction(self, name, namespace, body, _request_timeout=None):
        left = self.refusals.get(name, 0)
        self.evictions.append((name, 429 if left else 201))
        if left:
            self.refusals[name] = left - 1
            raise ApiException(status=429, reason="Too Many Requests")
        self.pods.pop(name, None)

    def delete_namespaced_pod(self, name, namespace, **kwargs):
        self.deleted.append(name)


def _api(core: BudgetedCore) -> ex.Api:
    return ex.Api(core=core, apps=SimpleNamespace(), timeout=5)  # type: ignore[arg-type]


def test_a_budget_that_refuses_for_now_is_retried_until_the_pod_is_evicted():
    core = BudgetedCore(["db-0", "web-0"], refusals={"db-0": 2})
    lines: list[str] = []
    ex.drain(_api(core), name=NODE, timeout_s=30, progress=lines.append)
    assert core.cordoned and core.pods == {} and core.deleted == []
    assert core.evictions == [("db-0", 429), ("web-0", 201), ("db-0", 429), ("db-0", 201)]
    assert lines[0] == "eviction of db/db-0 refused for now by a PodDisruptionBudget; retrying until the drain deadline"


def test_a_budget_that_never_allows_it_ends_at_the_drain_deadline_naming_it():
    core = BudgetedCore(["db-0"], refusals={"db-0": 10**6})
    with pytest.raises(DeadlineError, match=r"drain node-1: not done after 1s; last state: 1 pod\(s\) left, 1 held by "
                                            r"a PodDisruptionBudget"):
        ex.drain(_api(core), name=NODE, timeout_s=1, progress=lambda _: None)
    assert core.deleted == [] and "db-0" in core.pods
