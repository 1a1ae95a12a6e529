"""The kubean and OpenShift executors against kmock's emulated API (issue 7). A minimal status
writer stands in for the kubean operator here; the strict emulators and the end-to-end swaps on
real etcd are in tests/twin."""
from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from cpswap.core import kubespray as inv
from cpswap.core import openshift as ocp_rules
from cpswap.core.errors import DeadlineError, PermanentError
from cpswap.core.model import Host, KubeanSettings
from cpswap.core.renderers import kubean as kb
from cpswap.executors import kubean as kx
from cpswap.executors import openshift as ox
from tests.support.kube_emulator import Emulator, register_node, set_node_ready
from tests.support.kubespray_fixtures import CLUSTER_INFO, SEED_001

KUBEAN = KubeanSettings(cluster="centos", image="ghcr.io/kubean-io/spray-job:v0.12.2")
M1, M2, M3 = "centos-master1", "centos-master2", "centos-master3"


class _FakeLoop(threading.Thread):
    """A bounded fake controller thread, used as a context manager (started on enter, stopped on exit)."""

    def __init__(self, *, lifetime_s: float) -> None:
        super().__init__(daemon=True)
        self.end, self.stop_event = time.monotonic() + lifetime_s, threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(5)


class FakeKubean(_FakeLoop):
    """Sets each new ClusterOperation Running, then Succeeded (or Failed, once, when asked), with the
    Job ``kubean-<name>-job`` that kubean names after it. As kubean (pkg/controllers/clusterops/
    controller.go CreateKubeSprayJob) it ADOPTS a Job of that name that exists already: its Failed
    condition fails the new operation at once. The Job of a deleted operation is collected
    ``gc_delay_s`` later (the garbage collector). Bounded."""

    def __init__(self, emu: Emulator, *, fail_first: bool = False, lifetime_s: float = 60,
                 gc_delay_s: float = 0.5) -> None:
        super().__init__(lifetime_s=lifetime_s)
        self.objects = client.CustomObjectsApi(emu.api_client)
        self.batch = client.BatchV1Api(emu.api_client)
        self.fail_first, self.seen = fail_first, []
        self.gc_delay_s, self.adopted, self._gone_at = gc_delay_s, [], {}

    def _job(self, name: str, *, failed: bool) -> str:
        job = f"kubean-{name}-job"
        try:
            old = self.batch.read_namespaced_job(job, "kubean-system")
        except client.exceptions.ApiException:
            old = None
        if old is not None:  # adopted: its outcome is the operation's
            self.adopted.append(job)
            return "Failed" if any(c.type == "Failed" for c in (old.status.conditions or [])) else "Succeeded"
        self.batch.create_namespaced_job("kubean-system", client.V1Job(
            metadata=client.V1ObjectMeta(name=job, namespace="kubean-system"),
            spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                restart_policy="Never", containers=[client.V1Container(name="kubean", image=KUBEAN.image)]))),
            status=client.V1JobStatus(conditions=[client.V1JobCondition(
                type="Failed" if failed else "Complete", status="True")])))
        return "Failed" if failed else "Succeeded"

    def run(self) -> None:
        while not self.stop_event.is_set() and time.monotonic() < self.end:
            try:  # kmock answers 404 for a kind until its first object exists
                ops = self.objects.list_cluster_custom_object("kubean.io", "v1alpha1", "clusteroperations")["items"]
            except client.exceptions.ApiException:
                ops = []
            present = {op["metadata"]["name"] for op in ops}
            for name in [n for n in self.seen if n not in present]:
                gone = self._gone_at.setdefault(name, time.monotonic())
                if time.monotonic() - gone >= self.gc_delay_s:
                    try:
                        self.batch.delete_namespaced_job(f"kubean-{name}-job", "kubean-system")
                    except client.exceptions.ApiException:
                        pass
                    self.seen.remove(name)
                    self._gone_at.pop(name)
            for op in ops:
                name = op["metadata"]["name"]
                if (op.get("status") or {}).get("status"):
                    continue
                failed = self.fail_first and name not in self.seen
                self.seen.append(name)
                status = {"status": self._job(name, failed=failed),
                          "jobRef": {"name": f"kubean-{name}-job", "namespace": "kubean-system"}}
                self.objects.patch_cluster_custom_object("kubean.io", "v1alpha1", "clusteroperations", name,
                                                         {"status": status})
                self.fail_first = self.fail_first and not failed
            time.sleep(0.05)


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


def test_a_failed_operation_stops_with_the_job_and_the_rerun_resubmits(kubean_env, monkeypatch):
    """The re-run deletes the Failed operation with Foreground propagation and waits until its Job is
    gone too: kubean would adopt the old, Failed Job of the same name and fail at once."""
    emu = kubean_env
    body = {"apiVersion": "kubean.io/v1alpha1", "kind": "ClusterOperation", "metadata": {"name": "cpswap-cp2-join-x"},
            "spec": {"cluster": "centos", "image": KUBEAN.image, "actionType": "playbook", "action": "cluster.yml"}}
    lines: list[str] = []
    deletes: list[object] = []
    real_delete = client.CustomObjectsApi.delete_cluster_custom_object

    def recording_delete(self, *args, **kwargs):
        deletes.append(kwargs.get("body"))
        return real_delete(self, *args, **kwargs)
    monkeypatch.setattr(client.CustomObjectsApi, "delete_cluster_custom_object", recording_delete)
    with FakeKubean(emu, fail_first=True, gc_delay_s=1.0) as kubean:
        with kx.connect_global() as g, \
                pytest.raises(PermanentError, match=r"ClusterOperation cpswap-cp2-join-x failed: job "
                                                    r"kubean-system/kubean-cpswap-cp2-join-x-job"):
            kx.run_operation(g, name="cpswap-cp2-join-x", body=body, deadline_s=20, progress=lines.append)
        job = kx.wait(name="cpswap-cp2-join-x", node=None, deadline_s=20, progress=lines.append)
    assert job == "kubean-system/kubean-cpswap-cp2-join-x-job"
    assert kubean.adopted == [], "the resubmission reused the old Failed Job"
    assert [getattr(d, "propagation_policy", None) for d in deletes] == ["Foreground"]
    assert any("failed earlier" in line and "resubmitting" in line for line in lines), lines
    assert any("waiting for job kubean-system/kubean-cpswap-cp2-join-x-job to go" in line for line in lines), lines


def test_the_fake_kubean_adopts_a_leftover_job(kubean_env):
    """The stand-in is live: without the wait, the old Failed Job fails the resubmission at once."""
    emu = kubean_env
    body = {"apiVersion": "kubean.io/v1alpha1", "kind": "ClusterOperation", "metadata": {"name": "op-y"},
            "spec": {"cluster": "centos", "image": KUBEAN.image, "actionType": "playbook", "action": "cluster.yml"}}
    objects = client.CustomObjectsApi(emu.api_client)
    with FakeKubean(emu, fail_first=True, gc_delay_s=30) as kubean, kx.connect_global() as g:
        with pytest.raises(PermanentError):
            kx.run_operation(g, name="op-y", body=body, deadline_s=20, progress=lambda _: None)
        objects.delete_cluster_custom_object("kubean.io", "v1alpha1", "clusteroperations", "op-y")
        with pytest.raises(PermanentError, match="kubean-op-y-job"):
            kx.run_operation(g, name="op-y", body=body, deadline_s=20, progress=lambda _: None)
    assert kubean.adopted == ["kubean-op-y-job"]


def test_operation_names_fit_kubeans_job_name():
    long_host = Host(name="node-" + "a" * 55, ip="10.6.0.20", rebuild=2)
    name = kb.operation_name(slot="cp1", action="remove", host=long_host)
    assert len(kb.job_name(name)) <= 63 and name.startswith("cpswap-cp1-remove-node-aaa")
    assert name == kb.operation_name(slot="cp1", action="remove", host=long_host)  # deterministic
    other = kb.operation_name(slot="cp1", action="remove", host=Host(name=long_host.name, ip="10.6.0.20", rebuild=3))
    assert other != name
    assert kb.operation_name(slot="cp1", action="join", host=Host(name="centos-master4", ip="10.6.0.14")) \
        == "cpswap-cp1-join-centos-master4"


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
        _stable_at(objects, 3)
        yield emu, objects


def test_machine_is_kept_deleted_and_recreated_clean_under_the_next_free_name(openshift_env):
    _emu, objects = openshift_env
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
    """Every node at the latest revision and the node's etcd pod not Ready: only a new revision brings it back."""
    emu, objects = openshift_env
    first = ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-131-183", reason="cpswap-cp1-ip-10-0-131-183-r1",
                        progress=print, members_health=lambda: (3, 3))
    time.sleep(0.01)
    second = ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-131-183", reason="cpswap-cp1-ip-10-0-131-183-r1",
                         progress=print, members_health=lambda: (3, 3))
    assert first != second and first.startswith("cpswap-cp1-ip-10-0-131-183-r1-")
    etcd = objects.get_cluster_custom_object("operator.openshift.io", "v1", "etcds", "cluster")
    assert etcd["spec"]["forceRedeploymentReason"] == second
    _ready_pod(emu, "ip-10-0-133-53", "10.0.133.53")  # not even listed by the operator yet: Ready is enough
    assert ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-133-53", reason="x",
                       progress=print, members_health=lambda: (3, 3)) == "not-needed"
    assert ox.etcd_pod_endpoints(kubeconfig=None, namespace="openshift-etcd", timeout=5) == ["https://10.0.133.53:2379"]
    # the departing node's pod is never an endpoint for its own removal, by name or by address
    assert ox.etcd_pod_endpoints(kubeconfig=None, namespace="openshift-etcd", timeout=5,
                                 exclude_node="ip-10-0-133-53") == []
    assert ox.etcd_pod_endpoints(kubeconfig=None, namespace="openshift-etcd", timeout=5,
                                 exclude_ip="10.0.133.53") == []


ETCD = ("operator.openshift.io", "v1", "etcds")
MACHINES = ("machine.openshift.io", "v1beta1", "openshift-machine-api", "machines")


def _stable_at(objects, revision: int, *, new: str | None = None, target: int = 0) -> None:
    """etcd/cluster's status as the operator writes it: the three nodes at ``revision``; ``new`` a
    node the NodeController just listed (currentRevision 0, ``target`` its installer's revision)."""
    nodes = [{"nodeName": n, "currentRevision": revision}
             for n in ("ip-10-0-131-183", "ip-10-0-154-204", "ip-10-0-164-97")]
    if new is not None:
        nodes.append({"nodeName": new, "currentRevision": 0, "targetRevision": target})
    objects.patch_cluster_custom_object(*ETCD, "cluster", {"status": {"latestAvailableRevision": revision,
                                                                      "nodeStatuses": nodes}})


def _ready_pod(emu, node: str, ip: str) -> None:
    emu.core.create_namespaced_pod("openshift-etcd", client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"etcd-{node}", labels={"app": "etcd"}),
        spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="etcd", image="e")])))
    emu.core.patch_namespaced_pod_status(f"etcd-{node}", "openshift-etcd", {"status": {
        "phase": "Running", "hostIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})


def test_redeploy_waits_while_the_operator_scales_a_new_node_in(openshift_env):
    """The race of issue 12: a new node listed below the latest revision (the installer rolling it,
    its member not added yet) is the operator's; redeploy waits, and patches nothing once the
    node's etcd pod is Ready and its revision current."""
    emu, objects = openshift_env
    _stable_at(objects, 3, new="ip-10-0-133-53", target=3)
    lines: list[str] = []

    def operator() -> None:  # the member joins; the installer controller marks the revision current
        time.sleep(0.5)
        _ready_pod(emu, "ip-10-0-133-53", "10.0.133.53")
        _stable_at(objects, 3)
    scaler = threading.Thread(target=operator, daemon=True)
    scaler.start()
    try:
        assert ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-133-53", reason="cpswap-cp1-x-r0",
                           progress=lines.append, members_health=lambda: (2, 2), deadline_s=20) == "not-needed"
    finally:
        scaler.join(5)
    cr = objects.get_cluster_custom_object(*ETCD, "cluster")
    assert cr["spec"]["forceRedeploymentReason"] == "" and not ocp_rules.unsafe_override(cr)
    assert any("is at revision 0 of 3 (installing revision 3)" in line for line in lines), lines


def test_redeploy_gives_up_at_its_deadline_while_the_operator_is_still_scaling(openshift_env):
    _, objects = openshift_env
    _stable_at(objects, 3, new="ip-10-0-133-53")
    objects.patch_cluster_custom_object(*ETCD, "cluster", {"status": {"nodeStatuses": [
        {"nodeName": "ip-10-0-133-53", "currentRevision": 0, "targetRevision": 3, "lastFailedRevision": 3,
         "lastFailedRevisionErrors": ["installer: etcd pod did not start"]}]}})
    with pytest.raises(DeadlineError, match=r"etcd operator on ip-10-0-133-53: not done after 1s; last state: node "
                                            r"ip-10-0-133-53 is at revision 0 of 3 .*installer failed on revision 3 "
                                            r"\(installer: etcd pod did not start\)"):
        ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-133-53", reason="cpswap-cp1-x-r0", progress=print,
                    members_health=lambda: (2, 2), deadline_s=1)
    cr = objects.get_cluster_custom_object(*ETCD, "cluster")
    assert cr["spec"]["forceRedeploymentReason"] == "" and ocp_rules.guard_owner(cr) is None


class FakeRevisionController(_FakeLoop):
    """cluster-etcd-operator's revision controller with its precondition reduced to the override:
    a new forceRedeploymentReason rolls a revision only while the quorum guard is off. Bounded."""

    def __init__(self, objects, *, lifetime_s: float = 20) -> None:
        super().__init__(lifetime_s=lifetime_s)
        self.objects = objects
        self.rolled: list[tuple[str, bool]] = []

    def run(self) -> None:
        seen = ""
        while not self.stop_event.is_set() and time.monotonic() < self.end:
            cr = self.objects.get_cluster_custom_object(*ETCD, "cluster")
            reason = cr["spec"].get("forceRedeploymentReason") or ""
            unsafe = ocp_rules.unsafe_override(cr)
            if reason != seen and unsafe:
                seen = reason
                latest = cr["status"]["latestAvailableRevision"] + 1
                self.rolled.append((reason, unsafe))
                self.objects.patch_cluster_custom_object(*ETCD, "cluster", {"status": {"latestAvailableRevision": latest}})
            time.sleep(0.05)


def test_redeploy_turns_the_quorum_guard_off_only_while_the_revision_controller_needs_it(openshift_env):
    """2 healthy of 2 members, every node at the latest revision: CheckSafeToScaleCluster refuses, so
    the guard goes off around the patch and is back on afterwards, other overrides kept."""
    _emu, objects = openshift_env
    _stable_at(objects, 7)
    objects.patch_cluster_custom_object(*ETCD, "cluster", {"spec": {"unsupportedConfigOverrides": {"other": 1}}})
    lines: list[str] = []
    with FakeRevisionController(objects) as controller:
        value = ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-131-183", reason="cpswap-cp3-x-r1",
                            progress=lines.append, members_health=lambda: (2, 2), deadline_s=10)
    assert controller.rolled == [(value, True)]
    cr = objects.get_cluster_custom_object(*ETCD, "cluster")
    assert cr["spec"]["unsupportedConfigOverrides"] == {"other": 1}
    assert ocp_rules.GUARD_ANNOTATION not in (cr["metadata"].get("annotations") or {})
    assert cr["status"]["latestAvailableRevision"] == 8
    assert any("2 healthy member(s) out of the 3 required" in line for line in lines), lines


def test_the_quorum_guard_is_back_on_after_a_failure_and_on_a_rerun(openshift_env):
    _emu, objects = openshift_env
    _stable_at(objects, 7)
    with pytest.raises(Exception, match="new etcd revision"):  # no revision controller: the wait times out
        ox.redeploy(etcd_namespace="openshift-etcd", node="ip-10-0-131-183", reason="cpswap-cp3-x-r1",
                    progress=print, members_health=lambda: (2, 2), deadline_s=1)
    cr = objects.get_cluster_custom_object(*ETCD, "cluster")
    assert not ocp_rules.unsafe_override(cr) and ocp_rules.guard_owner(cr) is None
    # a run killed while the guard was off (the finally never ran): the next run turns it back on
    objects.patch_cluster_custom_object(*ETCD, "cluster", ocp_rules.guard_patch(disabled=True, owner="cpswap-cp3-x-r1"))
    lines: list[str] = []
    assert ox.restore_guard(progress=lines.append) is True
    cr = objects.get_cluster_custom_object(*ETCD, "cluster")
    assert not ocp_rules.unsafe_override(cr) and ocp_rules.guard_owner(cr) is None
    assert ox.restore_guard(progress=lines.append) is False
    # an override the operator set by hand is not cpswap's to turn off
    objects.patch_cluster_custom_object(*ETCD, "cluster", {"spec": {"unsupportedConfigOverrides": {
        ocp_rules.GUARD_KEY: True}}})
    assert ox.restore_guard(progress=lines.append) is False
    assert ocp_rules.unsafe_override(objects.get_cluster_custom_object(*ETCD, "cluster"))


def _cpms(objects, state: str) -> None:
    objects.create_namespaced_custom_object("machine.openshift.io", "v1", "openshift-machine-api",
                                            "controlplanemachinesets", {
        "apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
        "metadata": {"name": "cluster", "namespace": "openshift-machine-api"}, "spec": {"state": state, "replicas": 3}})


def _hooked(objects, name: str) -> None:
    objects.patch_namespaced_custom_object(*MACHINES, name, {"spec": {"lifecycleHooks": {"preDrain": [
        {"name": ocp_rules.HOOK_NAME, "owner": ocp_rules.HOOK_OWNER}]}}})


@pytest.mark.parametrize("provisions,error", [("ip-10-0-133-53", None),
                                              ("ip-10-0-140-1", "provisioned node ip-10-0-140-1, but members.cp1.name")])
def test_an_active_cpms_replacement_is_adopted_and_nothing_is_created(openshift_env, provisions, error):
    _emu, objects = openshift_env
    _cpms(objects, "Active")
    for i in range(3):
        objects.patch_namespaced_custom_object(*MACHINES, f"clustername-8qw5l-master-{i}", {"metadata": {"labels": {
            "machine.openshift.io/cluster-api-machine-role": "master"}}})
    lines: list[str] = []
    ox.delete_machine(namespace="openshift-machine-api", slot="cp1", node="ip-10-0-131-183", deadline_s=10,
                      progress=lines.append)
    created: list[str] = []

    def cpms() -> None:  # the CPMS controller: one replacement in index 0, then the Machine API runs it
        time.sleep(0.3)
        name = "clustername-8qw5l-master-x7k2p-0"
        objects.create_namespaced_custom_object(*MACHINES, {
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
            "metadata": {"name": name, "labels": {"machine.openshift.io/cluster-api-machine-role": "master"}},
            "spec": {"providerSpec": {"value": {"instanceType": "m4.xlarge"}}}})
        created.append(name)
        time.sleep(0.3)
        objects.patch_namespaced_custom_object(*MACHINES, name, {"status": {
            "phase": "Running", "nodeRef": {"kind": "Node", "name": provisions}}})

    thread = threading.Thread(target=cpms, daemon=True)
    thread.start()
    try:
        if error:
            with pytest.raises(PermanentError, match=error):
                ox.create_machine(namespace="openshift-machine-api", slot="cp1", node="ip-10-0-133-53",
                                  ip="10.0.133.53", machine=None, deadline_s=10, progress=lines.append)
        else:
            assert ox.create_machine(namespace="openshift-machine-api", slot="cp1", node="ip-10-0-133-53",
                                     ip="10.0.133.53", machine=None, deadline_s=10,
                                     progress=lines.append) == "clustername-8qw5l-master-x7k2p-0"
    finally:
        thread.join(5)
    names = {m["metadata"]["name"] for m in objects.list_namespaced_custom_object(*MACHINES)["items"]}
    assert names == {"clustername-8qw5l-master-1", "clustername-8qw5l-master-2", *created}, "cpswap created a Machine"
    assert any("adopting its replacement" in line for line in lines), lines


@pytest.mark.parametrize("state,hook,owner", [("Active", True, "operator"), ("Active", False, "cpswap"),
                                              ("Inactive", True, "cpswap"), (None, True, "cpswap")])
def test_membership_is_left_to_the_operator_only_with_an_active_cpms_and_its_hook(openshift_env, state, hook, owner):
    _emu, objects = openshift_env
    if state:
        _cpms(objects, state)
    if hook:
        _hooked(objects, "clustername-8qw5l-master-0")
    calls: list[str] = []
    got = ox.leave_member(namespace="openshift-machine-api", node="ip-10-0-131-183",
                          snapshot=lambda: calls.append("snapshot"), remove=lambda: calls.append("remove") or "removed",
                          progress=print)
    assert calls == (["snapshot"] if owner == "operator" else ["remove"])
    assert got == ("left-to-operator" if owner == "operator" else "removed")


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
