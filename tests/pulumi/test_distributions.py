"""Mock-run tests of the kubean and OpenShift distributions and the keepalived VIP role (issue 7):
the same one-slot and delete-before-replace guarantees as the core, adoption declaring nothing
that runs, and secrets staying secret."""
from __future__ import annotations

import copy
import json

import pytest

from tests.support.pulumi_mocks import TEST_SECRETS, Recording, run_program
from tests.support.mock_stacks import KUBEADM_VIP, KUBEAN, OPENSHIFT
from tests.support.mock_stacks import run_config as _run
from tests.support.mock_stacks import workdir as _workdir

OP_TYPE = "kubernetes:kubean.io/v1alpha1:ClusterOperation"


def _with(config: dict, slot: str, **host) -> dict:
    changed = copy.deepcopy(config)
    changed["members"][slot] = {**changed["members"][slot], **host}
    return changed


def _changed(before: Recording, after: Recording) -> set[str]:
    old, new = before.by_name(), after.by_name()
    return {n for n in set(old) | set(new) if n not in old or n not in new or
            (old[n].inputs_json() != new[n].inputs_json() and old[n].type != "pulumi:pulumi:Stack")}


@pytest.fixture(scope="module")
def kubean_runs(tmp_path_factory):
    work = _workdir(tmp_path_factory.mktemp("kubean"), KUBEAN)
    adopted = _run(KUBEAN, work)
    swapped = _run(_with(KUBEAN, "cp1", rebuild=1), work)  # seed 001: same name and IP, new OS
    return work, adopted, swapped


def test_kubean_adoption_declares_no_operation_and_every_command_is_dbr(kubean_runs):
    _, adopted, _ = kubean_runs
    assert [r for r in adopted.resources if r.type == OP_TYPE] == []
    assert adopted.outputs["kubeanOperations"] == []
    names = sorted(r.name for r in adopted.commands() if r.name.startswith("cp1"))
    assert names == ["cp1-etcd-leave", "cp1-inventory", "cp1-join-wait", "cp1-preflight", "cp1-pvcs", "cp1-verify"]
    for r in adopted.commands():
        assert r.delete_before_replace and r.custom_timeouts.get("create") and r.custom_timeouts.get("delete"), r.name
    clean = next(r for r in adopted.resources if r.type == "kubernetes:core/v1:ConfigMapPatch")
    assert clean.inputs["metadata"] == {"name": "pb-clean-kube-apiserver", "namespace": "kubean-system",
                                        "annotations": {"pulumi.com/patchForce": "true"}}
    assert "kill -9" in clean.inputs["data"]["clean-kube-apiserver.yml"]
    global_provider = next(r for r in adopted.resources if r.type == "pulumi:providers:kubernetes"
                           and r.name.endswith("-global"))
    assert clean.provider.startswith(global_provider.urn)


def test_kubean_both_kubernetes_providers_pin_their_cluster_identifier(kubean_runs):
    """A rotated global kubeconfig must not replace the provider and with it every declared
    ClusterOperation (pulumi-kubernetes DiffConfig; the twin's kubean scenario rotates it)."""
    _, adopted, swapped = kubean_runs
    for rec in (adopted, swapped):
        ids = {r.name: r.inputs.get("clusterIdentifier") for r in rec.resources if r.type == "pulumi:providers:kubernetes"}
        assert ids == {"control-plane-k8s": "cpswap-managed-cluster",
                       "control-plane-k8s-global": "cpswap-kubean-global-cluster"}


def test_kubean_swap_declares_the_join_operation_on_the_global_cluster_for_that_slot_only(kubean_runs):
    _, adopted, swapped = kubean_runs
    ops = [r for r in swapped.resources if r.type == OP_TYPE]
    assert [r.name for r in ops] == ["cp1-join"]
    op = ops[0]
    assert op.delete_before_replace and op.inputs["metadata"]["name"] == "cpswap-cp1-join-centos-master1-r1"
    assert op.inputs["spec"]["image"] == "ghcr.io/kubean-io/spray-job:v0.12.2"
    assert op.inputs["spec"]["action"] == "cluster.yml"
    assert op.inputs["spec"]["extraArgs"] == "--limit=etcd,kube_control_plane -e ignore_assert_errors=yes --skip-tags=multus"
    assert [h["action"] for h in op.inputs["spec"]["postHook"]] == ["upgrade-cluster.yml", "cluster-info.yml"]
    global_provider = next(r for r in swapped.resources if r.type == "pulumi:providers:kubernetes"
                           and r.name.endswith("-global"))
    assert op.provider.startswith(global_provider.urn)
    assert "TESTGLOBALKUBECONFIG" not in json.dumps(global_provider.inputs) or "kubeconfig" in global_provider.secret_paths
    assert swapped.outputs["kubeanOperations"] == ["cpswap-cp1-join-centos-master1-r1"]
    changed = _changed(adopted, swapped)
    assert {n for n in changed if not n.startswith("cp1")} == {"control-plane"}
    wait = swapped.by_name()["cp1-join-wait"]
    assert wait.dependencies and any(d.endswith("cp1-join") for d in wait.dependencies)
    # the wait reads the operation on the global cluster and, without one, the Node on the managed one
    # (found by the twin: the adoption path had no managed kubeconfig)
    both = {"CPSWAP_KUBECONFIG_DATA", "CPSWAP_GLOBAL_KUBECONFIG_DATA"}
    assert both <= set(wait.inputs.get("environment") or {})
    assert both <= set(swapped.by_name()["cp1-etcd-leave"].inputs.get("environment") or {})
    leave = swapped.by_name()["cp1-etcd-leave"]
    assert leave.type == "command:local:Command" and "kubean leave" in leave.inputs["delete"]
    assert "--operation cpswap-cp1-remove-centos-master1-r1" in leave.inputs["delete"]
    plan = swapped.outputs["plan"]
    assert [s["action"] for s in plan["steps"]] == ["preflight", "etcd-snapshot", "kubean-remove", "kubean-inventory", "join",
                                                    "join-wait", "verify", "pvc-recover"]
    assert plan["steps"][4]["kind"] == "k8s-object"
    assert any("keeps IP 10.6.0.11" in w for w in plan["warnings"])
    assert any("first in kube_control_plane" in w for w in plan["warnings"])


def test_kubean_operations_stay_declared_on_later_runs_without_a_change(kubean_runs, tmp_path):
    _, _, swapped = kubean_runs
    config = _with(KUBEAN, "cp1", rebuild=1)
    work = _workdir(tmp_path, config, {"kubeanOperations": swapped.outputs["kubeanOperations"]})
    again = _run(config, work)
    assert _changed(swapped, again) <= {"control-plane"}, _changed(swapped, again)
    assert [r.name for r in again.resources if r.type == OP_TYPE] == ["cp1-join"]
    assert again.outputs["plan"]["changes"] == []


def test_kubean_needs_the_global_kubeconfig_before_any_resource(tmp_path):
    work = _workdir(tmp_path, KUBEAN)
    rec = run_program(config=KUBEAN, secrets=TEST_SECRETS, cwd=work, isolate_network=True)
    assert rec.error and "globalKubeconfig='unset': secret required for kubean" in rec.error
    assert rec.commands() == []


@pytest.fixture(scope="module")
def openshift_runs(tmp_path_factory):
    work = _workdir(tmp_path_factory.mktemp("openshift"), OPENSHIFT)
    adopted = _run(OPENSHIFT, work)
    machine = _run(_with(OPENSHIFT, "cp2", name="ip-10-7-0-22", ip="10.7.0.22", machine="ocp-master-3"), work)
    crashloop = _run(_with(OPENSHIFT, "cp2", rebuild=1), work)
    return adopted, machine, crashloop


def test_openshift_machine_case_runs_the_seed_steps_in_order_and_only_for_that_slot(openshift_runs):
    adopted, machine, _ = openshift_runs
    plan = machine.outputs["plan"]
    assert [(s["action"], s["operation"]) for s in plan["steps"]] == [
        ("preflight", "create"), ("etcd-snapshot", "delete"), ("etcd-remove", "delete"), ("etcd-secrets-delete", "delete"),
        ("machine", "delete"), ("machine", "create"), ("etcd-redeploy", "create"), ("verify", "create"),
        ("pvc-recover", "create")]
    assert {n for n in _changed(adopted, machine) if not n.startswith("cp2")} == {"control-plane"}
    old = adopted.by_name()
    for name in ("cp2-etcd-leave", "cp2-etcd-secrets", "cp2-machine"):
        r = old[name]
        assert r.type == "command:local:Command" and r.delete_before_replace, name
        assert "10.7.0.12" not in r.inputs["delete"] or "--ip 10.7.0.12" in r.inputs["delete"], name
        assert "ssh" not in r.inputs["delete"]
    assert "--discover openshift" in old["cp2-etcd-leave"].inputs["delete"]
    assert "--machine ocp-master-3" in machine.by_name()["cp2-machine"].inputs["create"]
    assert "cp2-etcd-reset" not in machine.by_name()


def test_openshift_crashloop_case_keeps_the_machine_and_resets_etcd_on_the_node(openshift_runs):
    adopted, _, crashloop = openshift_runs
    by_name = crashloop.by_name()
    assert by_name["cp2-machine"].inputs_json() == adopted.by_name()["cp2-machine"].inputs_json()
    reset = by_name["cp2-etcd-reset"]
    assert reset.type == "command:remote:Command" and reset.inputs["connection"]["host"] == "10.7.0.12"
    assert reset.inputs.get("delete") is None and "etcd-pod.yaml" in reset.inputs["create"]
    actions = [(s["action"], s["operation"]) for s in crashloop.outputs["plan"]["steps"]]
    assert ("machine", "delete") not in actions and ("machine", "create") not in actions
    assert actions[:4] == [("preflight", "create"), ("etcd-snapshot", "delete"), ("etcd-remove", "delete"), ("etcd-secrets-delete", "delete")]
    assert ("etcd-reset", "create") in actions and ("etcd-redeploy", "create") in actions
    assert any("rebuilt in place" in w for w in crashloop.outputs["plan"]["warnings"])


def test_keepalived_joins_backup_with_the_same_instance_and_a_secret_password(tmp_path):
    work = _workdir(tmp_path, KUBEADM_VIP)
    rec = _run(_with(KUBEADM_VIP, "cp1", name="k8s-master-new", ip="10.8.0.21"), work)
    keepalived = rec.by_name()["cp1-keepalived"]
    assert keepalived.type == "command:remote:Command" and keepalived.inputs["connection"]["host"] == "10.8.0.21"
    text = keepalived.inputs["create"]
    for needle in ("vrrp_instance VI_1", "virtual_router_id 51", "router_id NGINX_MASTER", "state BACKUP",
                   "priority 70", "interface ens33", "10.8.0.100"):
        assert needle in text, needle
    assert "vrrpTst1" not in json.dumps(keepalived.inputs) or "stdin" in keepalived.secret_paths
    assert keepalived.inputs["logging"] == "none" and "stdin" in keepalived.secret_paths
    assert "check-kubeadm-endpoint --endpoint 10.8.0.100:6443" in rec.by_name()["cp1-verify"].inputs["create"]
    vip = rec.outputs["plan"]["vip"]
    assert vip["master_slot"] == "cp1" and vip["departing_had_master"] is True
    assert vip["holder_during"] == "k8s-backup1" and (vip["new_state"], vip["new_priority"]) == ("BACKUP", 70)
    assert any("had the keepalived MASTER priority (100)" in w for w in rec.outputs["plan"]["warnings"])
    assert "VIP 10.8.0.100:6443 (managed by cpswap" in rec.outputs["planTable"]
