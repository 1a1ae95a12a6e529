"""The preflight's pvc-capacity facts observed on kmock's emulated API with seed 004 (issue 14, check 6):
the claims pinned to the departing node that the policies recreate, as PVC recovery observes them, and
the new Node's allocatable and running pods."""
from __future__ import annotations

import json

import pytest

from cpswap.core import preflight as pf
from cpswap.executors import preflight as ex
from tests.support.kube_emulator import ONECLOUD_POLICY, Emulator, seed_004

NEW, DEAD = "lzx-test-add-node", "lzx-ha-env"
TARGET = pf.Target(slot="cp1", distribution="ocboot", name=NEW, ip="10.127.100.9", vip="10.127.100.100")
MOVING = (("onecloud-minio/export-minio-1", "1Ti", ("onecloud-minio/minio-1",)),
          ("onecloud-monitoring/export-monitor-minio-1", "1Ti", ("onecloud-monitoring/monitor-minio-1",)),
          ("onecloud/default-victoria-metrics", "20G", ("onecloud/default-victoria-metrics-7f9c6-abcde",)))


def rows(facts: pf.CapacityFacts) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    return tuple((c.key, c.size, c.pods) for c in facts.claims)


@pytest.mark.parametrize("with_new_node", [False, True])
def test_the_departing_nodes_recreated_claims_and_the_new_nodes_pods(monkeypatch, with_new_node):
    with Emulator() as emu:
        seed_004(emu.core, emu.apps, max_pods=4, dead_ready=True, with_new_node=with_new_node)
        monkeypatch.setenv("CPSWAP_KUBECONFIG_DATA", emu.kubeconfig_text)
        facts = ex.observe_capacity(target=TARGET, old_node=DEAD, policy_json=json.dumps(ONECLOUD_POLICY),
                                    timeout_s=5)
        assert facts.error is None and rows(facts) == MOVING
        assert facts.new_node_registered is with_new_node
        assert (facts.allocatable_pods, facts.running_pods) == ((4, 0) if with_new_node else (None, 0))
        # a skip policy moves nothing: the claim stays Pending on purpose
        skip = {**ONECLOUD_POLICY, "onecloud-monitoring": {"policy": "skip", "dataClass": "replicated", "order": 2}}
        kept = ex.observe_capacity(target=TARGET, old_node=DEAD, policy_json=json.dumps(skip), timeout_s=5)
        assert [k for k, _, _ in rows(kept)] == ["onecloud-minio/export-minio-1", "onecloud/default-victoria-metrics"]
        # decided: 2 TiB + 20 GB cannot fit in 1 TiB free; 3 moving pods fit in 4 allocatable
        host = pf.HostProbe(address=TARGET.ip, hostname=NEW, local_path_free_bytes=2 ** 40, local_path_dir="/opt")
        finding = pf._capacity(pf.PreflightFacts(target=TARGET, new_host=host, capacity=facts))[0]
        assert not finding.ok and f"{2 * 2 ** 40 + 20 * 10 ** 9} bytes) needed" in finding.value
        assert ("pods 0 running + 3 moving <= 4 allocatable" in finding.value) is with_new_node


def test_unreachable_api_is_unobserved_with_the_reason(monkeypatch):
    with Emulator() as emu:
        text = emu.kubeconfig_text
    monkeypatch.setenv("CPSWAP_KUBECONFIG_DATA", text)  # the emulator is stopped: nothing answers
    facts = ex.observe_capacity(target=TARGET, old_node=DEAD, policy_json="{}", timeout_s=0.5)
    assert facts.error and facts.claims == ()
    bad = ex.observe_capacity(target=TARGET, old_node=DEAD, policy_json="{nope", timeout_s=0.5)
    assert bad.error and "--policy-json unreadable" in bad.error
