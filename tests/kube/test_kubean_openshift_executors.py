"""The kubean and OpenShift executors against kmock's emulated API (issue 7). A minimal status
writer stands in for the kubean operator here; the strict emulators and the end-to-end swaps on
real etcd are in tests/twin."""
from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from cpswap.core import kubespray as inv
from cpswap.core.errors import PermanentError
from cpswap.core.model import KubeanSettings
from cpswap.executors import kubean as kx
from cpswap.executors import openshift as ox
from tests.support.kube_emulator import Emulator, register_node, set_node_ready
from tests.core.test_kubespray import CLUSTER_INFO, SEED_001

KUBEAN = KubeanSettings(cluster="centos", image="ghcr.io/kubean-io/spray-job:v0.12.2")
M1, M2, M3 = "centos-master1", "centos-master2", "centos-master3"


class FakeKubean(threading.Thread):
    """Sets each new ClusterOperation Running, then Succeeded (or Failed, once, when asked). Bounded."""

    def __init__(self, emu: Emulator, *, fail_first: bool = False, lifetime_s: float = 60) -> None:
        super().__init__(daemon=True)
        self.objects = client.CustomObjectsApi(emu.api_client)
        self.fail_first, self.end, self.seen = fail_first, time.monotonic() + lifetime_s, []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set() and time.monotonic() < self.end:
            try:  # kmock answers 404 for a kind until its first object exists
                ops = self.objects.list_cluster_custom_object("kubean.io", "v1alpha1", "clusteroperations")["items"]
            except client.exceptions.ApiException:
                ops = []
            for op in ops:
                name = op["metadata"]["name"]
                if (op.get("status") or {}).get("status"):
                    continue
                failed = self.fail_first and not any(s == name for s in self.seen)
                self.seen.append(name)
                status = {"status": "Failed" if failed else "Succeeded",
                          "jobRef": {"name": f"kubean-{name}-job{len(self.seen)}", "namespace": "kubean-system"}}
                self.objects.patch_cluster_custom_object("kubean.io", "v1alpha1", "clusteroperations", name,
                                                         {"status": status})
                self.fail_first = self.fail_first and not failed
            time.sleep(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(5)


@pytest.fixture
def kubean_env(monkeypatch):
    with Emulator() as emu:
        monkeypatch.setenv("CPSWAP_KUBECONFIG_DATA", emu.kubeconfig_text)
        monkeypatch.setenv("CPSWAP_GLOBAL_KUBECONFIG_DATA", emu.kubeconfig_text)
        objects = client.CustomObjectsApi(emu.api_client)
        objects.create_cluster_custom_object("kubean.io", "v1alpha1", "clusters", {
            "apiVersion": "kubean.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "centos"},
            "spec": {"hostsConfRef": {"name": "centos-hosts-conf", "namespace": "kubean-system"}}})
        emu.core.create_namespaced_config_map("kubean-system", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="centos-hosts-conf"), data={"hosts.yml": SEED_001}))
        emu.core.create_namespaced_config_map("kube-public", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="cluster-info"), data={"kubeconfig": CLUSTER_INFO}))
        emu.core.create_namespaced_config_map("kube-system", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="kubeadm-config"),
            data={"ClusterConfiguration": "controlPlaneEndpoint: 10.6.0.11:6443\n"}))
        for i, name in enumerate((M1, M2, M3), 1):
            register_node(emu.core, name, f"10.6.0.1{i}")
        yield emu


def _inventory(emu) -> dict:
    return inv.parse_inventory(emu.core.read_namespaced_config_map("centos-hosts-conf", "kubean-system").data["hosts.yml"])


def test_first_node_leave_reorders_removes_and_repoints_then_rejoin_appends(kubean_env):
    emu, lines, guarded = kubean_env, [], []
    set_node_ready(emu.core, M1, False)  # dead: the ungraceful flags are needed
    with FakeKubean(emu):
        kx.leave(kubean=KUBEAN, node=M1, ip="10.6.0.11", operation="cpswap-cp1-remove-centos-master1",
                 guard=lambda: guarded.append(True), deadline_s=20, progress=lines.append)
        op = client.CustomObjectsApi(emu.api_client).get_cluster_custom_object(
            "kubean.io", "v1alpha1", "clusteroperations", "cpswap-cp1-remove-centos-master1")
        assert op["spec"]["extraArgs"] == "-e node=centos-master1 -e reset_nodes=false -e allow_ungraceful_removal=true"
        # the clean-up hook restarts the survivors' apiservers only: the dead host is not a target
        assert op["spec"]["postHook"][0]["extraArgs"] == f"-e node={M2},{M3}"
        assert guarded == [True]
        assert any("moved to the end" in line for line in lines), lines
        doc = _inventory(emu)
        assert {g: inv.group_hosts(doc, g) for g in inv.GROUPS} == {g: [M2, M3] for g in inv.GROUPS}
        info = emu.core.read_namespaced_config_map("cluster-info", "kube-public").data["kubeconfig"]
        assert "server: https://10.6.0.12:6443" in info and "certificate-authority-data: Q0E=" in info
        kadm = emu.core.read_namespaced_config_map("kubeadm-config", "kube-system").data["ClusterConfiguration"]
        assert "controlPlaneEndpoint: 10.6.0.12:6443" in kadm
        # a re-run of the leave is a no-op
        lines.clear()
        kx.leave(kubean=KUBEAN, node=M1, ip="10.6.0.11", operation="cpswap-cp1-remove-centos-master1",
                 guard=lambda: None, deadline_s=20, progress=lines.append)
        assert any("has left already" in line for line in lines), lines
        kx.inventory_add(kubean=KUBEAN, node=M1, ip="10.6.0.11", progress=lines.append)
        assert inv.group_hosts(_inventory(emu), "kube_control_plane") == [M2, M3, M1]  # seed 001's final order


def test_a_failed_operation_stops_with_the_job_and_the_rerun_resubmits(kubean_env):
    emu = kubean_env
    body = {"apiVersion": "kubean.io/v1alpha1", "kind": "ClusterOperation", "metadata": {"name": "cpswap-cp2-join-x"},
            "spec": {"cluster": "centos", "image": KUBEAN.image, "actionType": "playbook", "action": "cluster.yml"}}
    lines: list[str] = []
    with FakeKubean(emu, fail_first=True):
        with kx.connect_global() as g:
            with pytest.raises(PermanentError, match=r"ClusterOperation cpswap-cp2-join-x failed: job "
                                                     r"kubean-system/kubean-cpswap-cp2-join-x-job1"):
                kx.run_operation(g, name="cpswap-cp2-join-x", body=body, deadline_s=20, progress=lines.append)
        job = kx.wait(name="cpswap-cp2-join-x", node=None, deadline_s=20, progress=lines.append)
    assert job == "kubean-system/kubean-cpswap-cp2-join-x-job2"
    assert any("failed earlier" in line and "resubmitting" in line for line in lines), lines


def test_wait_without_an_operation_accepts_a_ready_node_only(kubean_env):
    emu, lines = kubean_env, []
    assert kx.wait(name="cpswap-cp2-join-centos-master2", node=M2, deadline_s=5, progress=lines.append) == "(none)"
    set_node_ready(emu.core, M3, False)
    with pytest.raises(PermanentError, match="does not exist"):
        kx.wait(name="cpswap-cp3-join-centos-master3", node=M3, deadline_s=5, progress=lines.append)


def _machine(name: str, node: str | None, *, provider_id: str = "aws:///us-east-1a/i-0ec2782f8287dfb7e") -> dict:
    return {"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
            "metadata": {"name": name, "namespace": "openshift-machine-api",
                         "labels": {"machine.openshift.io/cluster-api-machine-role": "master"},
                         "annotations": {"machine.openshift.io/instance-state": "stopped"}},
            "spec": {"providerID": provider_id, "providerSpec": {"value": {"instanceType": "m4.xlarge"}}},
            "status": {"phase": "Running", **({"nodeRef": {"kind": "Node", "name": node}} if node else {})}}


@pytest.fixture
def openshift_env(monkeypatch):
    with Emulator() as emu:
        monkeypatch.setenv("CPSWAP_KUBECONFIG_DATA", emu.kubeconfig_text)
        objects = client.CustomObjectsApi(emu.api_client)
        for i, node in enumerate(("ip-10-0-131-183", "ip-10-0-154-204", "ip-10-0-164-97")):
            objects.create_namespaced_custom_object("machine.openshift.io", "v1beta1", "openshift-machine-api",
                                                    "machines", _machine(f"clustername-8qw5l-master-{i}", node))
            for prefix in ox.SECRET_PREFIXES:
                emu.core.create_namespaced_secret("openshift-etcd", client.V1Secret(
                    metadata=client.V1ObjectMeta(name=f"{prefix}{node}"), type="kubernetes.io/tls"))
        objects.create_cluster_custom_object("operator.openshift.io", "v1", "etcds", {
            "apiVersion": "operator.openshift.io/v1", "kind": "Etcd", "metadata": {"name": "cluster"},
            "spec": {"forceRedeploymentReason": ""}})
        yield emu, objects


def test_machine_is_kept_deleted_and_recreated_clean_under_the_next_free_name(openshift_env):
    emu, objects = openshift_env
    lines: list[str] = []
    assert ox.delete_etcd_secrets(namespace="openshift-etcd", node="ip-10-0-131-183", progress=lines.append) == [
        "etcd-peer-ip-10-0-131-183", "etcd-serving-ip-10-0-131-183", "etcd-serving-metrics-ip-10-0-131-183"]
    assert ox.delete_etcd_secrets(namespace="openshift-etcd", node="ip-10-0-131-183", progress=lines.append) == []
    assert ox.delete_machine(namespace="openshift-machine-api", slot="cp1", node="ip-10-0-131-183", deadline_s=10,
                             progress=lines.append) == "clustername-8qw5l-master-0"
    assert ox.delete_machine(namespace="openshift-machine-api", slot="cp1", node="ip-10-0-131-183", deadline_s=10,
                             progress=lines.append) == "absent"

    def provision() -> None:  # the Machine API: the copy becomes Running with a node
        end = time.monotonic() + 20
        while time.monotonic() < end:
            items = objects.list_namespaced_custom_object("machine.openshift.io", "v1beta1", "openshift-machine-api",
                                                          "machines")["items"]
            new = [m for m in items if not m.get("status")]
            for m in new:
                assert "providerID" not in m["spec"] and "machine.openshift.io/instance-state" not in (
                    m["metadata"].get("annotations") or {})
                objects.patch_namespaced_custom_object(
                    "machine.openshift.io", "v1beta1", "openshift-machine-api", "machines", m["metadata"]["name"],
                    {"status": {"phase": "Running", "nodeRef": {"kind": "Node", "name": "ip-10-0-133-53"}}})
                return
            time.sleep(0.05)

    thread = threading.Thread(target=provision, daemon=True)
    thread.start()
    name = ox.create_machine(namespace="openshift-machine-api", slot="cp1", node="ip-10-0-133-53", ip="10.0.133.53",
                             machine=None, deadline_s=20, progress=lines.append)
    thread.join(5)
    assert name == "clustername-8qw5l-master-3"  # the seed's advice: same base name, next free number
    created = objects.get_namespaced_custom_object("machine.openshift.io", "v1beta1", "openshift-machine-api",
                                                   "machines", name)
    assert created["spec"]["providerSpec"] == {"value": {"instanceType": "m4.xlarge"}}
    again = ox.create_machine(namespace="openshift-machine-api", slot="cp1", node="ip-10-0-133-53", ip="10.0.133.53",
                              machine=None, deadline_s=5, progress=lines.append)
    assert again == name and any("backed by Machine" in line for line in lines)


def test_create_machine_without_a_kept_spec_refuses_clearly(openshift_env):
    with pytest.raises(PermanentError, match=r"no Machine backs node ip-10-0-9-9 and there is no template "
                                             r"openshift-machine-api/cpswap-machine-cp3"):
        ox.create_machine(namespace="openshift-machine-api", slot="cp3", node="ip-10-0-9-9", ip="10.0.9.9",
                          machine=None, deadline_s=5, progress=print)


def test_redeploy_patches_a_unique_reason_unless_the_etcd_pod_is_ready(openshift_env):
    emu, objects = openshift_env
    first = ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-133-53", reason="cpswap-cp1-ip-10-0-133-53-r0",
                        settle_s=0, progress=print)
    time.sleep(0.01)
    second = ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-133-53", reason="cpswap-cp1-ip-10-0-133-53-r0",
                         settle_s=0, progress=print)
    assert first != second and first.startswith("cpswap-cp1-ip-10-0-133-53-r0-")
    etcd = objects.get_cluster_custom_object("operator.openshift.io", "v1", "etcds", "cluster")
    assert etcd["spec"]["forceRedeploymentReason"] == second
    emu.core.create_namespaced_pod("openshift-etcd", client.V1Pod(
        metadata=client.V1ObjectMeta(name="etcd-ip-10-0-133-53", labels={"app": "etcd"}),
        spec=client.V1PodSpec(node_name="ip-10-0-133-53", containers=[client.V1Container(name="etcd", image="e")])))
    emu.core.patch_namespaced_pod_status("etcd-ip-10-0-133-53", "openshift-etcd", {"status": {
        "phase": "Running", "hostIP": "10.0.133.53", "conditions": [{"type": "Ready", "status": "True"}]}})
    assert ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-133-53", reason="x", settle_s=0,
                       progress=print) == "not-needed"
    assert ox.etcd_pod_endpoints(kubeconfig=None, namespace="openshift-etcd", timeout=5) == ["https://10.0.133.53:2379"]
    # the departing node's pod is never an endpoint for its own removal, by name or by address
    assert ox.etcd_pod_endpoints(kubeconfig=None, namespace="openshift-etcd", timeout=5,
                                 exclude_node="ip-10-0-133-53") == []
    assert ox.etcd_pod_endpoints(kubeconfig=None, namespace="openshift-etcd", timeout=5,
                                 exclude_ip="10.0.133.53") == []


def test_leave_after_a_partly_successful_remove_skips_the_operation(kubean_env):
    """remove-node.yml took the member and the Node, then failed in a post-hook: the re-run must not
    run it again (Kubespray fails on a missing member) but finish the inventory and pointer edits."""
    emu, lines = kubean_env, []
    emu.core.delete_node(M2)
    kx.leave(kubean=KUBEAN, node=M2, ip="10.6.0.12", operation="cpswap-cp2-remove-centos-master2",
             guard=lambda: None, deadline_s=10, progress=lines.append)
    assert any("not running remove-node.yml again" in line for line in lines), lines
    assert all(M2 not in inv.group_hosts(_inventory(emu), g) for g in inv.GROUPS)
    with kx.connect_global() as g:
        assert kx._read_operation(g, "cpswap-cp2-remove-centos-master2") is None


def test_the_clean_up_hook_skips_survivors_whose_node_is_not_ready(kubean_env):
    """A second dead control-plane host would fail the hook (unreachable) after the member was gone."""
    emu, lines = kubean_env, []
    set_node_ready(emu.core, M3, False)
    with FakeKubean(emu):
        kx.leave(kubean=KUBEAN, node=M2, ip="10.6.0.12", operation="cpswap-cp2-remove-centos-master2",
                 guard=lambda: object(), deadline_s=20, progress=lines.append)
    op = client.CustomObjectsApi(emu.api_client).get_cluster_custom_object(
        "kubean.io", "v1alpha1", "clusteroperations", "cpswap-cp2-remove-centos-master2")
    assert op["spec"]["postHook"][0]["extraArgs"] == f"-e node={M1}"
    assert any(f"skipping {M3}" in line and "not Ready" in line for line in lines), lines


def test_the_leave_refuses_when_no_other_control_plane_node_is_ready(kubean_env):
    emu = kubean_env
    set_node_ready(emu.core, M1, False)
    set_node_ready(emu.core, M3, False)
    with pytest.raises(PermanentError, match=rf"no Ready kube_control_plane host besides {M2} \(others: {M1}, {M3}\)"):
        kx.leave(kubean=KUBEAN, node=M2, ip="10.6.0.12", operation="cpswap-cp2-remove-centos-master2",
                 guard=lambda: object(), deadline_s=5, progress=print)
    with kx.connect_global() as g:
        assert kx._read_operation(g, "cpswap-cp2-remove-centos-master2") is None  # nothing submitted
    # the first node too: refused before its reorder is written
    def order() -> dict:  # the groups as lists: dict equality ignores the order that matters here
        return {g: inv.group_hosts(_inventory(emu), g) for g in inv.GROUPS}
    before = order()
    set_node_ready(emu.core, M2, False)
    with pytest.raises(PermanentError, match=rf"no Ready kube_control_plane host besides {M1}"):
        kx.leave(kubean=KUBEAN, node=M1, ip="10.6.0.11", operation="cpswap-cp1-remove-centos-master1",
                 guard=lambda: object(), deadline_s=5, progress=print)
    assert order() == before == {g: [M1, M2, M3] for g in inv.GROUPS}


def test_openshift_discovery_that_finds_no_other_ready_etcd_pod_says_where_it_looked(openshift_env):
    import argparse

    from cpswap.cli.etcd import connect_from_args

    args = argparse.Namespace(endpoints="", discover="openshift", kubeconfig=None, etcd_namespace="openshift-etcd",
                              timeout=5.0)
    with pytest.raises(PermanentError, match=r"no Running, Ready etcd pod in namespace openshift-etcd on a node other "
                                             r"than ip-10-0-133-53 \(10\.0\.133\.53\): nothing to ask"):
        connect_from_args(args, departing=("ip-10-0-133-53", "10.0.133.53"))
