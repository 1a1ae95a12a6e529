"""Kubernetes-side recovery against kmock's emulated API with controller hooks (issue 4)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from cpswap.core.errors import DeadlineError, UnsafeOperationError
from cpswap.executors import kube as ex
from tests.support.kube_emulator import ONECLOUD_POLICY, Controllers, Emulator, seed_004

NEW, DEAD, N2, N3 = "lzx-test-add-node", "lzx-ha-env", "lzx-ha-env-2", "lzx-ha-env-3"
RECOVERED = {"onecloud-minio/minio-1", "onecloud-monitoring/monitor-minio-1"}


@pytest.fixture
def cluster():
    with Emulator() as emu:
        seed_004(emu.core, emu.apps)
        with Controllers(emu) as controllers:
            yield emu, controllers


def placement(emu) -> dict[str, str]:
    return {f"{p.metadata.namespace}/{p.metadata.name}": p.spec.node_name
            for p in emu.core.list_pod_for_all_namespaces().items}


def recover(emu, tmp_path, *, policy=ONECLOUD_POLICY, progress=print, deadline=30):
    return ex.recover_pvcs(emu.api, new_node=NEW, policy_json=json.dumps(policy), old_node=None, orphaned=True,
                           state_dir=tmp_path / "state", deadline_s=deadline, progress=progress)


def settle(emu, predicate, what, timeout=15):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"never settled: {what}"
        time.sleep(0.05)


def assert_seed_recovered(emu, before):
    after = placement(emu)
    for key in RECOVERED:
        assert after[key] == NEW, (key, after.get(key))
    assert [k for k, n in after.items() if k.startswith("onecloud/default-victoria-metrics")] and all(
        n == NEW for k, n in after.items() if k.startswith("onecloud/default-victoria-metrics"))
    etcd_nodes = sorted(n for k, n in after.items() if k.startswith("onecloud/default-etcd"))
    assert etcd_nodes == sorted([N2, N3, NEW])
    for key, node in before.items():  # other replicas untouched
        if node != DEAD:
            assert after.get(key) == node, key
    for pvc in ("onecloud-minio/export-minio-1", "onecloud-monitoring/export-monitor-minio-1",
                "onecloud/default-victoria-metrics"):
        ns, name = pvc.split("/")
        claim = emu.core.read_namespaced_persistent_volume_claim(name, ns)
        pv = emu.core.read_persistent_volume(claim.spec.volume_name)
        assert pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0].values == [NEW]


def test_seed_004_recovery_lands_everything_on_the_new_node(cluster, tmp_path):
    emu, controllers = cluster
    before = placement(emu)
    emu.core.patch_node(N3, {"spec": {"unschedulable": True}})  # the operator cordoned lzx-ha-env-3 earlier
    started = time.monotonic()
    assert ex.delete_node(emu.api, name=DEAD, drain_first=True, drain_timeout_s=30, progress=print) == "deleted"
    assert time.monotonic() - started < 5, "drain waited on a NotReady node"
    lines: list[str] = []
    report = recover(emu, tmp_path, progress=lines.append)
    assert [(r["namespace"], r["name"], r["outcome"]) for r in report] == [
        ("onecloud-minio", "export-minio-1", "recreated"),
        ("onecloud-monitoring", "export-monitor-minio-1", "recreated"),
        ("onecloud", "default-victoria-metrics", "recreated by operator")]
    settle(emu, lambda: sum(1 for k, n in placement(emu).items() if k.startswith("onecloud/default-etcd") and n) == 3,
           "default-etcd rescheduled")
    assert_seed_recovered(emu, before)
    nodes = {n.metadata.name: n for n in emu.core.list_node().items}
    assert not nodes[N2].spec.unschedulable and ex.CORDON_MARK not in (nodes[N2].metadata.annotations or {})
    assert nodes[N3].spec.unschedulable  # operator-cordoned stays cordoned
    assert any("already cordoned by someone else" in line for line in lines)
    assert any("stuck on 'persistentvolumeclaim" in line for line in lines)
    journal = (tmp_path / "state" / f"recover-{NEW}.jsonl").read_text()
    assert '"step": "delete-pvc"' in journal and '"step": "uncordon"' in journal
    assert controllers.errors == []
    again = recover(emu, tmp_path)  # idempotent: nothing left pinned to a missing node
    assert again == []


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_at", ["cordoned", "stuck on", "export-monitor-minio-1: recreated"])
def test_recovery_interrupted_then_rerun_converges(cluster, tmp_path, stop_at):
    emu, _ = cluster
    before = placement(emu)
    ex.delete_node(emu.api, name=DEAD, drain_first=True, drain_timeout_s=30, progress=print)

    def progress(line: str) -> None:
        print(line)
        if stop_at in line:
            raise Interrupt(line)

    with pytest.raises(Interrupt):
        recover(emu, tmp_path, progress=progress)
    nodes = {n.metadata.name: n for n in emu.core.list_node().items}
    assert not any(ex.CORDON_MARK in (n.metadata.annotations or {}) for n in nodes.values()), "left cordoned"
    recover(emu, tmp_path)
    settle(emu, lambda: sum(1 for k, n in placement(emu).items() if k.startswith("onecloud/default-etcd") and n) == 3,
           "default-etcd rescheduled")
    assert_seed_recovered(emu, before)


def test_api_unreachable_mid_wait_gives_a_deadline_and_a_record(tmp_path):
    with Emulator() as emu:
        seed_004(emu.core, emu.apps)
        with Controllers(emu) as controllers:
            ex.delete_node(emu.api, name=DEAD, drain_first=True, drain_timeout_s=30, progress=print)
            controllers.paused.set()  # the StatefulSet controller is down: the wait cannot finish
            api = ex.Api(core=emu.core, apps=emu.apps, timeout=1)
            lines: list[str] = []

            def progress(line: str) -> None:
                lines.append(line)
                if "PVC terminating" in line:
                    emu.stop()  # the API server process goes away mid-wait

            with pytest.raises(DeadlineError) as info:
                ex.recover_pvcs(api, new_node=NEW, policy_json=json.dumps(ONECLOUD_POLICY), old_node=None,
                                orphaned=True, state_dir=tmp_path, deadline_s=3, progress=progress)
            assert "recover onecloud-minio/export-minio-1: not done after 3s" in str(info.value)
            assert "API unreachable" in str(info.value)
            journal = [json.loads(line) for line in (tmp_path / f"recover-{NEW}.jsonl").read_text().splitlines()]
            assert {"claim": "onecloud-minio/export-minio-1", "step": "delete-pvc"}.items() <= journal[1].items()
            assert any("could not uncordon the survivors" in line for line in lines)


def test_claim_without_policy_is_refused_before_anything_is_deleted(cluster, tmp_path):
    emu, _ = cluster
    ex.delete_node(emu.api, name=DEAD, drain_first=True, drain_timeout_s=30, progress=print)
    pvcs_before = sorted((c.metadata.namespace, c.metadata.name)
                         for c in emu.core.list_persistent_volume_claim_for_all_namespaces().items)
    policy = {k: v for k, v in ONECLOUD_POLICY.items() if k != "onecloud-monitoring"}
    with pytest.raises(UnsafeOperationError) as info:
        recover(emu, tmp_path, policy=policy)
    assert "claim onecloud-monitoring/export-monitor-minio-1 (StatefulSet monitor-minio) holds data" in str(info.value)
    assert "has no recovery policy" in str(info.value)
    assert sorted((c.metadata.namespace, c.metadata.name) for c in
                  emu.core.list_persistent_volume_claim_for_all_namespaces().items) == pvcs_before
    assert not any(n.spec.unschedulable for n in emu.core.list_node().items)


def test_capacity_refuses_a_move_over_max_pods(tmp_path):
    with Emulator() as emu:
        seed_004(emu.core, emu.apps, max_pods=4)
        emu.core.delete_node(NEW)
        verdict = ex.capacity(emu.api, name=DEAD)
        assert not verdict.allowed
        assert verdict.reason.startswith("4 pods must move but the survivors have 0 free pod slots "
                                         "(lzx-ha-env-2 4/4, lzx-ha-env-3 4/4)")
        config = emu.write_kubeconfig(tmp_path / "kubeconfig")
        result = subprocess.run(["cpswap", "kube", "capacity", "--node", DEAD, "--kubeconfig", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "0 free pod slots" in result.stderr


def test_cli_inventory_json_wait_node_and_control_plane_endpoints(tmp_path):
    with Emulator() as emu:
        seed_004(emu.core, emu.apps)
        env_config = emu.write_kubeconfig(tmp_path / "kubeconfig")
        result = subprocess.run(["cpswap", "kube", "inventory", "--node", DEAD, "--json", "--kubeconfig",
                                 str(env_config)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert [(r["namespace"], r["name"], r["owner_kind"], r["size"]) for r in rows] == [
            ("onecloud-minio", "export-minio-1", "StatefulSet", "1Ti"),
            ("onecloud-monitoring", "export-monitor-minio-1", "StatefulSet", "1Ti"),
            ("onecloud", "default-victoria-metrics", "Deployment", "20G")]
        assert ex.control_plane_endpoints(kubeconfig=str(env_config), timeout=5) == [
            "https://192.168.0.239:2379", "https://192.168.0.243:2379", "https://192.168.0.244:2379"]
        facts = ex.observe_kube(kubeconfig=emu.kubeconfig_text, node=DEAD, timeout=5)
        assert facts.reachable and facts.node_ready is False and len(facts.claims) == 3
        lines: list[str] = []
        with pytest.raises(DeadlineError, match="wait-node lzx-ha-env: not done after 1s; last state: registered, "
                                                "not Ready"):
            ex.wait_node(emu.api, name=DEAD, deadline_s=1, progress=lines.append)
        ex.wait_node(emu.api, name=NEW, deadline_s=5, progress=lines.append)
        assert lines[-1] == f"node {NEW} is Ready"
    unreachable = ex.observe_kube(kubeconfig=emu.kubeconfig_text, node=DEAD, timeout=0.5)
    assert unreachable.reachable is False and "API unreachable" in unreachable.error
