"""End-to-end kubean (DCE 5.0) swaps on the twin (issue 7): the real program, replayed, against the
emulated kubean operator and Kubespray playbooks (tests/support/twin/kubean.py) over real etcd,
real sshd and fake hosts. Seed 001: the first control-plane node replaced keeping its name and IP,
then a dead non-first node replaced by a new host."""
from __future__ import annotations

import time

import pytest
import yaml
from kubernetes import client, config

from cpswap.core.slots import ADOPTION_CHECK
from cpswap.executors import etcd as ex
from tests.support.pulumi_mocks import run_program
from tests.support.twin import kubean as kb
from tests.support.twin.cluster import Twin, digest
from tests.support.twin.forwarder import Forwarder
from tests.support.twin.hosts import available
from tests.support.twin.operator import activated_environ
from tests.support.twin.replayer import Replayer, Runner
from tests.twin.test_scenarios import Sampler, project, put_keys, replay_up

pytestmark = [pytest.mark.twin, pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")]

K1, K2, K3, K4 = "kb-1", "kb-2", "kb-3", "kb-4"
KUBEAN = {"kubean": {"cluster": "twin", "image": kb.DEPLOY_IMAGE}}


def _kubespray_pointers(twin: Twin, first_ip: str) -> None:
    """What Kubespray leaves without a load balancer: cluster-info and kubeadm-config name the first
    control-plane node (seed 001 step 4 has the operator repoint both)."""
    core = twin.emulator.core
    core.create_namespaced_config_map("kube-public", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cluster-info"),
        data={"kubeconfig": yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [
            {"name": "", "cluster": {"certificate-authority-data": "Q0E=", "server": f"https://{first_ip}:6443"}}]})}))
    core.patch_namespaced_config_map("kubeadm-config", "kube-system", {"data": {"ClusterConfiguration": (
        f"apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: {first_ip}:6443\n")}})


def _pointers(twin: Twin) -> tuple[str, str]:
    core = twin.emulator.core
    info = yaml.safe_load(core.read_namespaced_config_map("cluster-info", "kube-public").data["kubeconfig"])
    config = yaml.safe_load(core.read_namespaced_config_map("kubeadm-config", "kube-system").data["ClusterConfiguration"])
    return info["clusters"][0]["cluster"]["server"], config["controlPlaneEndpoint"]


def _voters(twin: Twin) -> list[str]:
    conn = twin.etcd_connection()
    members = ex.member_list(conn)
    assert all(not m.is_learner and m.name and ex.endpoint_health(conn, m.client_urls[0]).healthy for m in members), \
        members
    return sorted(m.name for m in members)


@pytest.fixture
def kubean_twin(tmp_path):
    twin = Twin.start(tmp_path / "twin", members=[K1, K2, K3], spares=[K4], seed_workloads=False, layout="kubeadm")
    try:
        kb.install(twin, members=[K1, K2, K3])
        _kubespray_pointers(twin, twin.net.hosts[K1].ip)
        with kb.KubeanOperator(twin) as operator:
            yield twin, operator
    finally:
        twin.close()
    assert twin.net.leftovers() == []


def test_seed_001_first_node_rebuilt_in_place_then_a_dead_node_replaced(kubean_twin, tmp_path):
    twin, operator = kubean_twin
    workdir = project(tmp_path)
    replayer = Replayer(Runner(cwd=workdir, timeout_s=240, environ=activated_environ()))
    put_keys(twin, 50)
    before = digest(twin.etcd_connection())

    def up(slots: dict, secrets: dict | None = None) -> list:
        recording = run_program(config=twin.stack_config(members=slots, distribution="kubean", extra=KUBEAN),
                                secrets=secrets or twin.secrets(), stack="twin", cwd=workdir)
        assert recording.error is None, recording.error
        steps = replay_up(replayer, workdir, recording)
        return [(s.name, s.op) for s in steps if s.op != "noop"]

    def spec(name: str) -> dict:
        """The operation's spec as cpswap submitted it (kubean adds its own refs on acceptance)."""
        found = client.CustomObjectsApi(twin.emulator.api_client).get_cluster_custom_object(
            kb.GROUP, kb.VERSION, kb.OPERATIONS, name)["spec"]
        return {k: v for k, v in found.items() if k in kb.SPEC_KEYS}

    def operations() -> list[str]:
        items = client.CustomObjectsApi(twin.emulator.api_client).list_cluster_custom_object(
            kb.GROUP, kb.VERSION, kb.OPERATIONS)["items"]
        return sorted(o["metadata"]["name"] for o in items)

    # adoption: the clean-up playbook is declared, no ClusterOperation is, nothing on the cluster moves
    slots: dict = {"cp1": K1, "cp2": K2, "cp3": K3}
    started = time.monotonic()
    up(slots)
    print(f"\nadoption {time.monotonic() - started:.1f}s: {[(st.name, round(d, 1)) for st, d in replayer.durations]}")
    assert operations() == []
    assert twin.emulator.core.read_namespaced_config_map(kb.CLEAN_CONFIGMAP, kb.NAMESPACE).data == {
        kb.CLEAN_ACTION: kb.CLEAN_PLAYBOOK}
    assert _voters(twin) == [K1, K2, K3] and operator.outcomes == {}
    # no change: no commands. The membership is recorded now (the saved outputs), so the program no longer
    # registers the adoption check: the engine drops it from state, and its provider runs nothing
    # (pulumi-command's Delete returns at once when the resource has no `delete` command)
    (check,) = [stored for stored in replayer.state.values() if stored.name == ADOPTION_CHECK]
    assert check.inputs.get("delete") is None
    ran_before = len(replayer.timeline)
    assert up(slots) == [(ADOPTION_CHECK, "delete")]
    assert len(replayer.timeline) == ran_before, "a command ran on the second up"

    # seed 001, first control-plane node: kb-1 dies and is reinstalled with the same name and IP
    ip1 = twin.net.hosts[K1].ip
    twin.kill(K1)
    twin.rebuild_host(K1)
    slots["cp1"] = {"name": K1, "ip": ip1, "rebuild": 1}
    with Sampler(twin) as sampler:
        started = time.monotonic()
        ran = up(slots)
        first_swap_s = time.monotonic() - started
    print(f"\nfirst-node swap {first_swap_s:.1f}s: {[(st.name, st.op, round(d, 1)) for st, d in replayer.durations[-8:]]}")
    # the slot's read-only preflight (issue 14) first, then the leave: the first step that changes anything
    assert ran[:3] == [("cp1-preflight", "replace-delete"), ("cp1-preflight", "create"),
                       ("cp1-etcd-leave", "replace-delete")], ran
    assert [name for name, op in ran if op == "create"] == ["cp1-preflight", "cp1-etcd-leave", "cp1-inventory",
                                                            "cp1-join", "cp1-join-wait", "cp1-verify", "cp1-pvcs"], ran
    remove, join = "cpswap-cp1-remove-kb-1", "cpswap-cp1-join-kb-1-r1"  # leave: the departing (old) host
    assert operator.outcomes[remove].status == "Succeeded" and operator.outcomes[join].status == "Succeeded"
    # the dead node is removed without drain or reset; the clean-up hook restarts the survivors' apiservers
    assert kb.contract(spec(remove)) == kb.Leave(K1, reset_nodes=False, ungraceful=True, clean_on=(K2, K3))
    assert kb.contract(spec(join)) == kb.Join()
    inventory = kb.read_inventory(twin)
    assert list(inventory["all"]["children"]["kube_control_plane"]["hosts"]) == [K2, K3, K1]  # seed 001's final order
    assert list(inventory["all"]["children"]["etcd"]["hosts"]) == [K2, K3, K1]
    ip2 = twin.net.hosts[K2].ip
    assert _pointers(twin) == (f"https://{ip2}:6443", f"{ip2}:6443")
    assert _voters(twin) == [K1, K2, K3]
    assert digest(twin.etcd_connection()) == before
    assert sampler.samples > 10 and sampler.failures == [], sampler.failures
    assert operator.errors == []

    # a dead non-first node replaced by a new host: the dead one is never contacted
    twin.kill(K3)
    dead_connections, ssh_seen = twin.net.hosts[K3].connections(), len(operator.ssh_log)
    slots["cp3"] = K4
    with Sampler(twin) as sampler:
        ran = up(slots)
    assert ran[:3] == [("cp3-preflight", "replace-delete"), ("cp3-preflight", "create"),
                       ("cp3-etcd-leave", "replace-delete")], ran
    assert [name for name, op in ran if op == "create"] == ["cp3-preflight", "cp3-etcd-leave", "cp3-inventory",
                                                            "cp3-join", "cp3-join-wait", "cp3-verify", "cp3-pvcs",
                                                            "cp3-node-labels"], ran
    assert kb.contract(spec("cpswap-cp3-remove-kb-3")) == kb.Leave(K3, reset_nodes=False, ungraceful=True, clean_on=(K2, K1))
    assert "cpswap-cp1-join-kb-1-r1" in operations() and "cpswap-cp3-join-kb-4" in operations()
    assert list(kb.read_inventory(twin)["all"]["children"]["kube_control_plane"]["hosts"]) == [K2, K1, K4]
    assert _voters(twin) == [K1, K2, K4]
    assert digest(twin.etcd_connection()) == before
    assert sampler.failures == [], sampler.failures
    assert twin.net.hosts[K3].connections() == dead_connections
    assert [entry for entry in operator.ssh_log[ssh_seen:] if entry[0] == K3] == []  # not even tried
    assert operator.errors == []
    assert up(slots) == []  # converged: a re-run runs nothing, the declared join operations stay
    assert "cpswap-cp1-join-kb-1-r1" in operations()

    # the global kubeconfig's server is rotated (a new address in front of the same API): the
    # providers' clusterIdentifier keeps them, so no declared ClusterOperation is deleted or
    # re-created (without it pulumi-kubernetes' DiffConfig would replace them all: cluster.yml again)
    declared, outcomes = operations(), dict(operator.outcomes)
    url = twin.emulator.url
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    with Forwarder(host, int(port)) as forwarder:
        rotated = twin.secrets()["globalKubeconfig"].replace(url, forwarder.url)
        assert rotated != twin.secrets()["globalKubeconfig"]
        same = config.new_client_from_config_dict(yaml.safe_load(rotated))
        try:  # the rotated address reaches the same cluster
            assert sorted(o["metadata"]["name"] for o in client.CustomObjectsApi(same).list_cluster_custom_object(
                kb.GROUP, kb.VERSION, kb.OPERATIONS)["items"]) == declared
        finally:
            same.close()
        ran = up(slots, secrets={**twin.secrets(), "globalKubeconfig": rotated})
    assert ("control-plane-k8s-global", "update") in ran and {op for _, op in ran} == {"update"}, ran
    assert not any(name.endswith("-join") for name, _ in ran), ran
    assert operations() == declared and operator.outcomes == outcomes
    print(f"\nseed 001 first-node swap: {first_swap_s:.1f}s")
