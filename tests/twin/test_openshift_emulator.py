"""The twin's emulated OpenShift control plane (tests/support/twin/openshift.py), driven directly
through the Kubernetes API and etcd, without product code: seed 003's two cases (a member whose
machine is gone; a member whose etcd pod crashloops) end to end, and the refusals that make a
product mistake fail loudly (stale certificates, a dirty data dir, a copied Machine that keeps its
providerID or status, a reused name, a reused forceRedeploymentReason)."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.etcd_cluster import digest, put_keys
from tests.support.twin.cluster import etcdctl_binary
from tests.support.twin.hosts import available
from tests.support.twin.openshift import (ETCD_CR, ETCD_NS, FAIL_ONCE, INITIAL_REVISION, MACHINES, MANIFEST,
                                          OpenShiftTwin)

pytestmark = [pytest.mark.twin, pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")]

A, B, C, D = "ocp-cp-a", "ocp-cp-b", "ocp-cp-c", "ocp-cp-d"
SHIM = Path(__file__).resolve().parents[1] / "support" / "twin" / "shims" / "openshift-etcd"


def wait_for(what: str, predicate, *, timeout_s: float = 60, every_s: float = 0.2):
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def etcdctl(ocp: OpenShiftTwin, hosts: list[str], *args: str, deadline_s: float = 30) -> str:
    """etcdctl from the operator's side; etcd's transient refusal right after a member change or
    a member loss ("unhealthy cluster") is retried, bounded."""
    twin = ocp.twin
    endpoints = ",".join(f"https://{twin.net.hosts[h].ip}:2379" for h in hosts)
    end = time.monotonic() + deadline_s
    while True:
        result = subprocess.run([etcdctl_binary(), f"--endpoints={endpoints}", f"--cacert={twin.ca.cert}",
                                 f"--cert={twin.client_cert}", f"--key={twin.client_key}", "--command-timeout=5s",
                                 *args], capture_output=True, text=True, timeout=30)
        if result.returncode == 0 or "unhealthy cluster" not in result.stderr or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    return result.stdout


def members(ocp: OpenShiftTwin, via: list[str]) -> list[dict]:
    return json.loads(etcdctl(ocp, via, "member", "list", "-w", "json"))["members"]


def remove_member(ocp: OpenShiftTwin, name: str, *, via: list[str]) -> None:
    """Seed step 1: `etcdctl member remove <id>` through a healthy member."""
    member = next(m for m in members(ocp, via) if m.get("name") == name)
    etcdctl(ocp, via, "member", "remove", format(member["ID"], "x"))


def healthy_voters(ocp: OpenShiftTwin, names: list[str]) -> bool:
    listed = members(ocp, [n for n in names if ocp.twin.net.hosts[n].alive])
    if sorted(m.get("name", "") for m in listed) != sorted(names) or any(m.get("isLearner") for m in listed):
        return False
    urls = ",".join(m["clientURLs"][0] for m in listed)
    health = subprocess.run([etcdctl_binary(), f"--endpoints={urls}", f"--cacert={ocp.twin.ca.cert}",
                             f"--cert={ocp.twin.client_cert}", f"--key={ocp.twin.client_key}", "endpoint", "health",
                             "-w", "json", "--command-timeout=3s"], capture_output=True, text=True, timeout=30)
    return health.returncode == 0 and all(r["health"] for r in json.loads(health.stdout))


def _custom(ocp: OpenShiftTwin) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(ocp.twin.emulator.api_client)


def etcd_cr(ocp: OpenShiftTwin) -> dict:
    return _custom(ocp).get_cluster_custom_object(*ETCD_CR, "cluster")


def condition(ocp: OpenShiftTwin, kind: str) -> dict:
    return next(c for c in etcd_cr(ocp)["status"]["conditions"] if c["type"] == kind)


def machine(ocp: OpenShiftTwin, name: str) -> dict | None:
    try:
        return _custom(ocp).get_namespaced_custom_object(*MACHINES, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def clean_copy(old: dict, name: str) -> dict:
    """What the runbook makes of `oc get machine -o yaml`: no status, no providerID, a new name,
    and none of the fields the API server sets."""
    new = copy.deepcopy(old)
    new.pop("status", None)
    new["spec"].pop("providerID", None)
    new["metadata"] = {k: v for k, v in old["metadata"].items()
                       if k in ("namespace", "labels", "annotations")}
    new["metadata"]["name"] = name
    return new


def create_machine(ocp: OpenShiftTwin, body: dict) -> None:
    _custom(ocp).create_namespaced_custom_object(*MACHINES, body)


def delete_machine(ocp: OpenShiftTwin, name: str) -> None:
    _custom(ocp).delete_namespaced_custom_object(*MACHINES, name)
    wait_for(f"Machine {name} to be gone", lambda: machine(ocp, name) is None, timeout_s=20)


def phase(ocp: OpenShiftTwin, name: str, wanted: str, *, timeout_s: float = 20) -> dict:
    return wait_for(f"Machine {name} {wanted}", lambda: (m := machine(ocp, name)) and
                    (m.get("status") or {}).get("phase") == wanted and m, timeout_s=timeout_s)


def force_redeploy(ocp: OpenShiftTwin, reason: str) -> None:
    _custom(ocp).patch_cluster_custom_object(*ETCD_CR, "cluster", {"spec": {"forceRedeploymentReason": reason}})


def pods(ocp: OpenShiftTwin) -> dict:
    return {p.metadata.name: p for p in ocp.twin.emulator.core.list_namespaced_pod(ETCD_NS).items}


def secrets(ocp: OpenShiftTwin) -> dict:
    return {s.metadata.name: s for s in ocp.twin.emulator.core.list_namespaced_secret(ETCD_NS).items}


def assert_no_errors(ocp: OpenShiftTwin) -> None:
    assert ocp.ceo.errors == [], ocp.ceo.errors
    assert ocp.machines.errors == [], ocp.machines.errors
    assert ocp.twin.controllers.errors == [], ocp.twin.controllers.errors


def test_machine_case_end_to_end(started):
    """Seed 003 2.4.1: the machine of A is gone. Remove its member, delete its secrets, delete its
    Machine and create a clean copy under a new name, force a redeployment: B, C and the new node
    D are three healthy voters, the data is intact, the dead host was never contacted."""
    ocp = started(members=[A, B, C], spares=[D])
    twin = ocp.twin
    put_keys(twin.etcd_connection(), 100, prefix="/registry/ocp")
    before = digest(twin.etcd_connection())

    # the seeded cluster
    assert {n: (p.status.phase, p.spec.node_name, p.status.host_ip, p.metadata.labels["app"])
            for n, p in pods(ocp).items()} == {f"etcd-{n}": ("Running", n, twin.net.hosts[n].ip, "etcd")
                                               for n in (A, B, C)}
    assert {n: s.type for n, s in secrets(ocp).items()} == {
        f"{k}-{n}": "kubernetes.io/tls" for k in ("etcd-peer", "etcd-serving", "etcd-serving-metrics")
        for n in (A, B, C)}
    cr = etcd_cr(ocp)
    assert cr["spec"]["forceRedeploymentReason"] == ""
    assert cr["status"]["latestAvailableRevision"] == INITIAL_REVISION
    assert condition(ocp, "EtcdMembersAvailable")["message"] == "3 members are available"
    old = machine(ocp, ocp.machine_of[A])
    assert old["metadata"]["labels"]["machine.openshift.io/cluster-api-machine-role"] == "master"
    assert old["status"] == {**old["status"], "phase": "Running", "nodeRef": {"kind": "Node", "name": A}}
    assert old["spec"]["providerID"].startswith("twin:///") and old["spec"]["providerSpec"]["value"]
    labels = {n.metadata.name: n.metadata.labels for n in twin.emulator.core.list_node().items}
    assert all("node-role.kubernetes.io/master" in labels[n] and "node-role.kubernetes.io/control-plane" in labels[n]
               for n in (A, B, C))
    assert sorted(m["name"] for m in members(ocp, [B])) == [A, B, C]

    twin.kill(A)
    dead = twin.net.hosts[A]
    connections_at_death = dead.connections()
    wait_for("A reported unhealthy", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == f"2 of 3 members are available, {A} is unhealthy", timeout_s=20)

    # 1. remove the member through a healthy one; 2. delete its secrets
    remove_member(ocp, A, via=[B, C])
    for kind in ("etcd-peer", "etcd-serving", "etcd-serving-metrics"):
        twin.emulator.core.delete_namespaced_secret(f"{kind}-{A}", ETCD_NS)
    # 3. delete the Machine: the Machine API deletes its Node; pod GC removes etcd-A
    delete_machine(ocp, ocp.machine_of[A])
    wait_for("Node A deleted and etcd-A collected", lambda: A not in
             {n.metadata.name for n in twin.emulator.core.list_node().items} and f"etcd-{A}" not in pods(ocp))
    assert ocp.machines.terminated_live == []

    # a copy under the deleted name fails, whatever else it gets right
    create_machine(ocp, clean_copy(old, ocp.machine_of[A]))
    reused = phase(ocp, ocp.machine_of[A], "Failed")
    assert f"name {ocp.machine_of[A]} belonged to a deleted Machine" in reused["status"]["errorMessage"]
    delete_machine(ocp, ocp.machine_of[A])
    # the one-shot provisioning fault
    (twin.workdir / FAIL_ONCE).write_text("the next provisioning fails")
    create_machine(ocp, clean_copy(old, "twin-master-3"))
    assert "simulated provisioning failure" in phase(ocp, "twin-master-3", "Failed")["status"]["errorMessage"]
    assert not (twin.workdir / FAIL_ONCE).exists()
    delete_machine(ocp, "twin-master-3")
    assert D not in {n.metadata.name for n in twin.emulator.core.list_node().items}

    # the clean copy is provisioned on the spare, whose Node registers; CEO scales etcd onto it
    create_machine(ocp, clean_copy(old, "twin-master-4"))
    phase(ocp, "twin-master-4", "Provisioning", timeout_s=5)
    new = phase(ocp, "twin-master-4", "Running")
    assert new["status"]["nodeRef"] == {"kind": "Node", "name": D}
    assert new["spec"]["providerID"].startswith("twin:///") and new["spec"]["providerID"] != old["spec"]["providerID"]
    node = twin.emulator.core.read_node(D)
    assert "node-role.kubernetes.io/master" in node.metadata.labels
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    wait_for("the installer done on D", lambda: (D, INITIAL_REVISION) in ocp.ceo.installs, timeout_s=90)
    assert healthy_voters(ocp, [B, C, D])

    # 4. force a redeployment with a unique reason: a new revision that every node reaches
    force_redeploy(ocp, f"recovery-{time.time_ns()}")
    wait_for("all nodes at the new revision", lambda: etcd_cr(ocp)["status"]["latestAvailableRevision"]
             == INITIAL_REVISION + 1 and condition(ocp, "NodeInstallerProgressing")["reason"]
             == "AllNodesAtLatestRevision", timeout_s=20)

    # 5. all members healthy, the data intact, nothing touched the dead host
    assert healthy_voters(ocp, [B, C, D])
    assert digest(twin.etcd_connection()) == before
    wait_for("3 members available", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == "3 members are available", timeout_s=20)
    running = pods(ocp)
    assert sorted(running) == [f"etcd-{n}" for n in sorted((B, C, D))]
    assert all(p.status.phase == "Running" and all(s.ready for s in p.status.container_statuses)
               for p in running.values())
    assert {f"{k}-{D}" for k in ("etcd-peer", "etcd-serving", "etcd-serving-metrics")} <= set(secrets(ocp))
    assert not any(name.endswith(A) for name in secrets(ocp)) and ocp.leftover_secrets() == []
    assert {n: r["currentRevision"] for n, r in ((s["nodeName"], s) for s in
                                                 etcd_cr(ocp)["status"]["nodeStatuses"])} == {
        n: INITIAL_REVISION + 1 for n in (B, C, D)}
    assert A not in ocp.ceo.ssh_targets and dead.connections() == connections_at_death
    assert (twin.net.hosts[D].root / MANIFEST).exists()
    assert_no_errors(ocp)


def test_copied_machine_that_keeps_its_provider_id_or_status_fails(started):
    """The Machine API refuses a create that is not the runbook's clean copy; nothing is
    provisioned, no Node registers, etcd is untouched. Then a clean copy's node, whose earlier
    install was cut after the learner add, is resumed rather than wedging the operator."""
    ocp = started(members=[A, B, C], spares=[D])
    old = machine(ocp, ocp.machine_of[B])
    with_provider_id = clean_copy(old, "twin-master-3")
    with_provider_id["spec"]["providerID"] = old["spec"]["providerID"]
    with_status = clean_copy(old, "twin-master-4")
    with_status["status"] = old["status"]
    no_provider_spec = clean_copy(old, "twin-master-5")
    del no_provider_spec["spec"]["providerSpec"]
    full_copy = copy.deepcopy(old)
    full_copy["metadata"]["name"] = "twin-master-6"
    for body in (with_provider_id, with_status, no_provider_spec, full_copy):
        create_machine(ocp, body)
    expected = {"twin-master-3": ["carries spec.providerID"], "twin-master-4": ["carries a status section"],
                "twin-master-5": ["has no spec.providerSpec.value"],
                "twin-master-6": ["carries a status section", "carries spec.providerID",
                                  "resourceVersion should not be set on objects to be created"]}
    for name, needles in expected.items():
        message = phase(ocp, name, "Failed")["status"]["errorMessage"]
        assert all(n in message for n in needles), message
    ocp.machines.settle(4)  # a provisioning would have started by now
    assert D not in {n.metadata.name for n in ocp.twin.emulator.core.list_node().items}
    assert sorted(m["name"] for m in members(ocp, [A])) == [A, B, C]
    assert ocp.ceo.ssh_targets == [] and ocp.machines.terminated_live == []

    # an install cut short after the learner add (the member exists, never started) does not wedge
    # the operator: the installer runs again and the shim resumes that member
    peer = f"https://{ocp.twin.net.hosts[D].ip}:2380"
    etcdctl(ocp, [A], "member", "add", D, "--learner", f"--peer-urls={peer}")
    cut = next(m for m in members(ocp, [A]) if peer in m["peerURLs"])
    assert not cut.get("name") and cut.get("isLearner")
    create_machine(ocp, clean_copy(old, "twin-master-7"))
    assert phase(ocp, "twin-master-7", "Running")["status"]["nodeRef"]["name"] == D
    wait_for("the installer done on D", lambda: (D, INITIAL_REVISION) in ocp.ceo.installs, timeout_s=90)
    resumed = next(m for m in members(ocp, [A]) if peer in m["peerURLs"])
    assert resumed["ID"] == cut["ID"] and resumed["name"] == D and not resumed.get("isLearner")
    assert ocp.ceo.ssh_targets == [D]
    assert_no_errors(ocp)


def test_crashloop_case_with_stale_secrets_and_a_dirty_data_dir(started):
    """Seed 003 2.4.2: C's etcd crashloops on a live host. While its old secrets remain the CEO is
    Degraded and adds nothing; while its data dir holds the old member the installer refuses; once
    both are cleared, a forced redeployment re-adds C under its own name and IP."""
    ocp = started(members=[A, B, C])
    twin = ocp.twin
    put_keys(twin.etcd_connection(), 100, prefix="/registry/ocp")
    before = digest(twin.etcd_connection())

    ocp.crashloop(C)
    pod = pods(ocp)[f"etcd-{C}"]
    etcd_status = next(s for s in pod.status.container_statuses if s.name == "etcd")
    assert etcd_status.state.waiting.reason == "CrashLoopBackOff" and not etcd_status.ready
    assert (twin.net.hosts[C].root / MANIFEST).exists()
    wait_for("C reported unhealthy", lambda: condition(ocp, "EtcdMembersAvailable")["message"]
             == f"2 of 3 members are available, {C} is unhealthy", timeout_s=20)

    remove_member(ocp, C, via=[A, B])
    ocp.ceo.settle(3)  # without a new revision the operator leaves a known node alone
    assert ocp.ceo.ssh_targets == []

    # the revision controller's precondition (CheckSafeToScaleCluster): 2 healthy of 2 members and
    # every node at the latest revision, so a forced redeployment rolls no revision...
    reason = f"single-master-recovery-{time.time_ns()}"
    force_redeploy(ocp, reason)
    held = wait_for("the precondition holding the revision", lambda: ocp.ceo.blocked.get(reason), timeout_s=20)
    assert "found 2 healthy member(s) out of the 3 required by the HAScalingStrategy" in held, held
    ocp.ceo.settle(3)
    assert ocp.ceo.revisions == [] and etcd_cr(ocp)["status"]["latestAvailableRevision"] == INITIAL_REVISION
    # ...until the quorum guard is off (the documented unsupportedConfigOverrides key); it goes back on
    _custom(ocp).patch_cluster_custom_object(*ETCD_CR, "cluster", {"spec": {"unsupportedConfigOverrides": {
        "useUnsupportedUnsafeNonHANonProductionUnstableEtcd": "true"}}})
    wait_for("revision +1", lambda: ocp.ceo.revisions == [(INITIAL_REVISION + 1, reason)], timeout_s=20)
    assert ocp.ceo.unsafe_at_revision == [True]
    _custom(ocp).patch_cluster_custom_object(*ETCD_CR, "cluster", {"spec": {"unsupportedConfigOverrides": None}})
    # stale certificates: the new revision adds nothing and says why
    stale = wait_for("EtcdCertSignerControllerDegraded", lambda: (c := condition(
        ocp, "EtcdCertSignerControllerDegraded"))["status"] == "True" and c, timeout_s=20)
    assert f"node {C} has no etcd member" in stale["message"] and f"etcd-peer-{C}" in stale["message"]
    ocp.ceo.settle(3)
    assert sorted(m["name"] for m in members(ocp, [A, B])) == [A, B] and ocp.ceo.ssh_targets == []

    # secrets deleted, but /var/lib/etcd still holds the old member: the installer refuses
    for kind in ("etcd-peer", "etcd-serving", "etcd-serving-metrics"):
        twin.emulator.core.delete_namespaced_secret(f"{kind}-{C}", ETCD_NS)
    refused = wait_for("InstallerControllerDegraded", lambda: (c := condition(
        ocp, "InstallerControllerDegraded"))["status"] == "True" and c, timeout_s=30)
    assert "data dir /var/lib/etcd holds an old member (member)" in refused["message"], refused["message"]
    assert condition(ocp, "EtcdCertSignerControllerDegraded")["status"] == "False"
    assert sorted(m["name"] for m in members(ocp, [A, B])) == [A, B]

    # runbook 2.4.2's node shell, kept inside the fake host's private mounts: move the static pod
    # manifest and the data out (the twin's /var/lib/etcd is a mount point, as on a node whose
    # etcd has its own disk, so the directory itself cannot be moved)
    ocp.ceo.pause()  # not while an installer retry runs on C: the kubelet must see the manifest gone
    twin.net.run(C, "mkdir -p /etc/kubernetes/etcd-backup && mv /etc/kubernetes/manifests/etcd-pod.yaml "
                    "/etc/kubernetes/etcd-backup/ && mv /var/lib/etcd/member /etc/kubernetes/etcd-backup/")
    ocp.ceo.paused.clear()
    wait_for("the installer done on C", lambda: (C, INITIAL_REVISION + 1) in ocp.ceo.installs, timeout_s=90)
    assert healthy_voters(ocp, [A, B, C])
    assert any(f"mirror pod etcd-{C} removed" in e for e in ocp.ceo.events)
    wait_for("conditions settled", lambda: condition(ocp, "InstallerControllerDegraded")["status"] == "False"
             and condition(ocp, "EtcdMembersAvailable")["message"] == "3 members are available"
             and condition(ocp, "NodeInstallerProgressing")["reason"] == "AllNodesAtLatestRevision", timeout_s=20)
    pod = pods(ocp)[f"etcd-{C}"]
    assert pod.status.phase == "Running" and all(s.ready for s in pod.status.container_statuses)
    assert pod.status.host_ip == twin.net.hosts[C].ip
    assert {f"{k}-{C}" for k in ("etcd-peer", "etcd-serving", "etcd-serving-metrics")} <= set(secrets(ocp))
    member = next(m for m in members(ocp, [A]) if m["name"] == C)
    assert member["peerURLs"] == [f"https://{twin.net.hosts[C].ip}:2380"]
    assert digest(twin.etcd_connection()) == before

    # forceRedeploymentReason must be unique: going back to an earlier value is flagged
    first = etcd_cr(ocp)["spec"]["forceRedeploymentReason"]
    force_redeploy(ocp, f"again-{time.time_ns()}")
    wait_for("revision +1", lambda: etcd_cr(ocp)["status"]["latestAvailableRevision"] == INITIAL_REVISION + 2)
    force_redeploy(ocp, first)
    wait_for("the reuse flagged", lambda: ocp.ceo.errors, timeout_s=10)
    assert ocp.ceo.errors == [f"cluster-etcd-operator: forceRedeploymentReason {first!r} was used before: it must "
                              f"be unique (runbook: append a timestamp)"]
    ocp.ceo.errors.clear()
    assert_no_errors(ocp)


SHIM_CASES = [
    ("no arguments", [], "unsupported invocation"),
    ("not install", ["uninstall"], "unsupported invocation"),
    ("unknown flag", ["install", "--node-name", "tw-a", "--ip", "10.250.9.1", "--revision", "4", "--force", "x"],
     "unknown flag"),
    ("missing revision", ["install", "--node-name", "tw-a", "--ip", "10.250.9.1"], "missing --revision"),
    ("bad revision", ["install", "--node-name", "tw-a", "--ip", "10.250.9.1", "--revision", "latest"],
     "not a revision number"),
    ("another node", ["install", "--node-name", "tw-b", "--ip", "10.250.9.2", "--revision", "4"],
     "the installer pod for node tw-b runs on"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in SHIM_CASES], ids=[c[0] for c in SHIM_CASES])
def test_installer_shim_refuses_loudly(tmp_path, argv, message):
    """Refusals that happen before the shim reads any host path or contacts anything."""
    (tmp_path / "bin").mkdir()
    shutil.copy(SHIM.with_name("_twin.py"), tmp_path / "bin" / "_twin.py")
    (tmp_path / "twin.json").write_text(json.dumps({"layout": "kubeadm", "hosts": {"tw-a": "10.250.9.1"}}))
    env = {"CPSWAP_TWIN": str(tmp_path), "CPSWAP_TWIN_HOST": "tw-a", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(SHIM), *argv], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
