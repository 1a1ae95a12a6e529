"""The twin's emulated kubean operator (tests/support/twin/kubean.py), driven straight through the
API with seed 001's two ClusterOperations, no product code: what it accepts, what it refuses and
what its playbooks do to real etcd, real sshd hosts and the emulated Kubernetes API."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cpswap.executors import etcd as ex
from tests.support.etcd_cluster import put_keys
from tests.support.twin import kubean as kb
from tests.support.twin.cluster import Twin, digest
from tests.support.twin.hosts import available

pytestmark = pytest.mark.twin
needs_twin = pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")
SHIMS = Path(__file__).resolve().parents[1] / "support" / "twin" / "shims"


# -- what the twin accepts (no hosts needed) ---------------------------------------------------------
def test_seed_001_operations_are_the_accepted_ones():
    assert kb.contract(kb.leave_spec("m2", dead=False)) == kb.Leave("m2", reset_nodes=True, ungraceful=False,
                                                                     clean_on=None)
    assert kb.contract(kb.leave_spec("m2", dead=True, clean_on=["m1", "m3"])) == kb.Leave(
        "m2", reset_nodes=False, ungraceful=True, clean_on=("m1", "m3"))
    assert kb.contract(kb.join_spec()) == kb.Join()
    reordered = {**kb.join_spec(),
                 "extraArgs": "--skip-tags=multus -e ignore_assert_errors=yes --limit etcd,kube_control_plane"}
    assert kb.contract(reordered) == kb.Join(), "the same options in another order are the same operation"
    assert kb.kubean_refusal(kb.leave_spec("m2", dead=True)) is None and kb.kubean_refusal(kb.join_spec()) is None


def _leave(**changes):
    return {**kb.leave_spec("m2", dead=True), **changes}


REJECTED = [
    ("scale.yml", {**kb.join_spec(), "action": "scale.yml"}, "action 'scale.yml' not accepted"),
    ("join without --skip-tags", {**kb.join_spec(), "extraArgs": kb.UPGRADE_ARGS}, "cluster.yml extraArgs"),
    ("join with ping preHook", {**kb.join_spec(), "preHook": [
        {"actionType": "playbook", "action": "ping.yml"},
        {"actionType": "playbook", "action": "disable-firewalld.yml"}]}, "cluster.yml preHook"),
    ("upgrade hook without limit", {**kb.join_spec(), "postHook": [
        {"actionType": "playbook", "action": "upgrade-cluster.yml"},
        {"actionType": "playbook", "action": "cluster-info.yml"}]}, "cluster.yml postHook"),
    ("two nodes at once", _leave(extraArgs="-e node=m2,m3"), "exactly one `-e node=<name>`"),
    ("reset_nodes=no", _leave(extraArgs="-e node=m2 -e reset_nodes=no"), "remove-node.yml extraArgs"),
    ("skip_confirmation", _leave(extraArgs="-e node=m2 -e skip_confirmation=true"), "remove-node.yml extraArgs"),
    ("no cluster-info hook", _leave(postHook=kb.leave_spec("m2", dead=True)["postHook"][:1]),
     "remove-node.yml postHook"),
    ("other clean ConfigMap", _leave(postHook=[{**kb.leave_spec("m2", dead=True)["postHook"][0],
                                                "actionSourceRef": {"name": "clean", "namespace": kb.NAMESPACE}},
                                               {"actionType": "playbook", "action": "cluster-info.yml"}]),
     "remove-node.yml postHook"),
    ("leave with a preHook", _leave(preHook=[{"actionType": "playbook", "action": "disable-firewalld.yml"}]),
     "remove-node.yml preHook"),
    ("product sets hostsConfRef", _leave(hostsConfRef={"name": "x", "namespace": kb.NAMESPACE}), "kubean fills"),
    ("job retries", _leave(backoffLimit=3), "backoffLimit 3 not accepted"),
]


@pytest.mark.parametrize(("spec", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_anything_else_fails_the_job_saying_what(spec, message):
    with pytest.raises(kb.PlaybookFailed) as failure:
        kb.contract(spec)
    assert message in str(failure.value), str(failure.value)


@pytest.mark.parametrize(("spec", "message"), [
    ({**kb.join_spec(), "action": "grow.yml"}, "unknown playbook type 'grow.yml'"),
    ({**kb.join_spec(), "image": "ghcr.io/kubean-io/spray-job:v0.12.2 "}, "wrong image format"),
    ({**kb.join_spec(), "actionType": "ansible"}, "unknown action type 'ansible'"),
    (_leave(postHook=[{"actionType": "playbook", "actionSource": "configmap", "action": kb.CLEAN_ACTION}]),
     "actionSourceRef must be specified"),
], ids=["unknown playbook", "image format", "action type", "configmap without ref"])
def test_kubean_itself_refuses_before_any_job(spec, message):
    assert message in (kb.kubean_refusal(spec) or "")


INVENTORY = {"all": {"hosts": {"m1": {"ip": "10.0.0.1", "access_ip": "10.0.0.1", "ansible_host": "10.0.0.1"}},
                     "children": {"kube_control_plane": {"hosts": {"m1": None}}, "kube_node": {"hosts": {"m1": None}},
                                  "etcd": {"hosts": {"m1": None}},
                                  "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}}}}}


def _broken(path: str, value) -> str:
    data = json.loads(json.dumps(INVENTORY))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return json.dumps(data)


@pytest.mark.parametrize(("text", "message"), [
    (_broken("all.children.etcd.hosts", {"m1": None, "m9": None}), "['m9'] in group etcd but not in all.hosts"),
    (_broken("all.hosts.m1", {"ip": "10.0.0.1"}), "m1 has no ansible_host"),
    (_broken("all.hosts.m1.ip", "10.0.0.9"), "ip 10.0.0.9 differs from ansible_host"),
    (_broken("all.children.etcd", None), "etcd must not be empty"),
    ("all: [", "hosts.yml does not parse"),
], ids=["group host without vars", "no ansible_host", "two addresses", "empty etcd", "not yaml"])
def test_inventory_is_checked_like_kubespray_reads_it(text, message):
    with pytest.raises(kb.PlaybookFailed) as failure:
        kb.Inventory.parse(text)
    assert message in str(failure.value), str(failure.value)
    inv = kb.Inventory.parse(json.dumps(INVENTORY))
    assert inv.pattern("kube_control_plane[0]") == ["m1"] and inv.pattern("etcd,kube_control_plane") == ["m1"]


@pytest.mark.parametrize(("argv", "message"), [
    ([], "--node-name and --ip are required"),
    (["--node-name", "x", "--ip"], "unsupported invocation"),
    (["--node-name", "x", "--ip", "10.250.9.1", "--force"], "unsupported invocation"),
    (["--node-name", "not-this-host", "--ip", "10.250.9.1"], "this host is"),
], ids=["no args", "missing value", "extra flag", "other host"])
def test_kubespray_node_shim_refuses_loudly(tmp_path, argv, message):
    (tmp_path / "bin").mkdir()
    shutil.copy(SHIMS / "_twin.py", tmp_path / "bin" / "_twin.py")
    (tmp_path / "twin.json").write_text(json.dumps({"layout": "kubeadm", "vip": "10.250.9.100"}))
    env = {"CPSWAP_TWIN": str(tmp_path), "CPSWAP_TWIN_HOST": "tw-a", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(SHIMS / "kubespray-node"), *argv], env=env, capture_output=True,
                            text=True, timeout=30, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr, result.stderr


# -- on the twin -------------------------------------------------------------------------------------
def _twin(tmp_path: Path, names: list[str]) -> Twin:
    twin = Twin.start(tmp_path / "twin", members=names, spares=[], seed_workloads=False, layout="kubeadm")
    try:
        kb.install(twin, members=names)
        twin.emulator.core.create_namespaced_config_map(kb.NAMESPACE, kb.clean_configmap())
        put_keys(twin.etcd_connection(), 50, prefix="/registry/twin")
    except BaseException:
        twin.close()
        raise
    return twin


def _run(twin: Twin, kubean: kb.KubeanOperator, name: str, spec: dict, *, timeout_s: float = 150) -> kb.Outcome:
    kb.create_operation(twin, name, spec)
    return kubean.wait(name, timeout_s=timeout_s)


def _op(twin: Twin, name: str) -> dict:
    return kb._custom(twin).get_cluster_custom_object(kb.GROUP, kb.VERSION, kb.OPERATIONS, name)


def _members(twin: Twin) -> list[str]:
    return sorted(m.name for m in ex.member_list(twin.etcd_connection()))


def _nodes(twin: Twin) -> list[str]:
    return sorted(n.metadata.name for n in twin.emulator.core.list_node().items)


def _healthy_voters(twin: Twin, names: list[str]) -> None:
    conn = twin.etcd_connection()
    members = ex.member_list(conn)
    assert sorted(m.name for m in members) == sorted(names)
    assert all(not m.is_learner and ex.endpoint_health(conn, m.client_urls[0]).healthy for m in members), members


@needs_twin
def test_non_first_member_swap_and_the_mistakes_around_it(tmp_path):
    names = ["kb-1", "kb-2", "kb-3"]
    twin = _twin(tmp_path, names)
    try:
        before = digest(twin.etcd_connection())
        batch = client.BatchV1Api(twin.emulator.api_client)
        with kb.KubeanOperator(twin, connect_timeout_s=2) as kubean:
            # kubean refuses an unknown playbook before any Job
            out = _run(twin, kubean, "op-unknown", {**kb.join_spec(), "action": "grow.yml"})
            assert (out.status, out.job) == ("Failed", None) and "unknown playbook type" in out.message
            assert "jobRef" not in _op(twin, "op-unknown")["status"]
            # kubean-<name>-job over 63 characters: the Job create is refused and kubean requeues for
            # ever; the operation is accepted (digest, entrypoint) but never gets a status
            long_name = "swap-" + "x" * 50
            kb.create_operation(twin, long_name, kb.join_spec())
            end = time.monotonic() + 5
            while not any(long_name in e for e in kubean.errors) and time.monotonic() < end:
                time.sleep(0.1)
            assert any("requeues it for ever" in e for e in kubean.errors), kubean.errors
            kubean.settle()
            stuck = _op(twin, long_name)
            assert stuck["status"].get("digest") and "status" not in stuck["status"], stuck["status"]
            assert long_name not in kubean.outcomes
            kb._custom(twin).delete_cluster_custom_object(kb.GROUP, kb.VERSION, kb.OPERATIONS, long_name)
            kubean.settle()
            kubean.errors.clear()
            # an operation naming an unknown Cluster is requeued by kubean forever, without a status
            kb.create_operation(twin, "op-nocluster", {**kb.join_spec(), "cluster": "prod"})
            end = time.monotonic() + 5
            while not any("op-nocluster" in e for e in kubean.errors) and time.monotonic() < end:
                time.sleep(0.1)
            assert any("Cluster 'prod' not found" in e for e in kubean.errors), kubean.errors
            assert not _op(twin, "op-nocluster").get("status")
            kb._custom(twin).delete_cluster_custom_object(kb.GROUP, kb.VERSION, kb.OPERATIONS, "op-nocluster")
            kubean.settle()  # a poll that listed it before the delete has finished
            kubean.errors.clear()
            # another spray-job image than the deploy's fails inside its Job
            out = _run(twin, kubean, "op-image", {**kb.leave_spec("kb-2", dead=False),
                                                  "image": "ghcr.io/kubean-io/spray-job:v0.12.1"})
            assert out.status == "Failed" and "image must match the one used at deploy" in out.message
            status = _op(twin, "op-image")["status"]
            assert status["status"] == "Failed" and status["jobRef"] == {"name": "kubean-op-image-job",
                                                                         "namespace": kb.NAMESPACE}
            condition = batch.read_namespaced_job("kubean-op-image-job", kb.NAMESPACE).status.conditions[0]
            assert condition.type == "Failed" and "image must match" in condition.message
            kb._custom(twin).delete_cluster_custom_object(kb.GROUP, kb.VERSION, kb.OPERATIONS, "op-image")
            end = time.monotonic() + 5
            while True:  # garbage collection of the deleted operation's Job
                try:
                    batch.read_namespaced_job("kubean-op-image-job", kb.NAMESPACE)
                except ApiException as exc:
                    assert exc.status == 404
                    break
                assert time.monotonic() < end, "the deleted operation's Job was not collected"
                time.sleep(0.1)
            # a Job left under the operation's name (a resubmission that did not wait for the old one
            # to go) is adopted by kubean: the new operation fails at once and nothing runs
            batch.create_namespaced_job(kb.NAMESPACE, client.V1Job(
                metadata=client.V1ObjectMeta(name="kubean-op-adopt-job", namespace=kb.NAMESPACE),
                spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                    restart_policy="Never", containers=[client.V1Container(name="kubean", image=kb.DEPLOY_IMAGE)]))),
                status=client.V1JobStatus(conditions=[client.V1JobCondition(
                    type="Failed", status="True", reason="BackoffLimitExceeded", message="an earlier run")])))
            mark = len(kubean.ssh_log)
            out = _run(twin, kubean, "op-adopt", kb.leave_spec("kb-2", dead=False))
            assert out.status == "Failed" and "adopted job kubean-op-adopt-job" in out.message, out
            assert kubean.adopted == [("op-adopt", "kubean-op-adopt-job", "Failed")]
            assert kubean.ssh_log[mark:] == [] and _members(twin) == names
            kb._custom(twin).delete_cluster_custom_object(kb.GROUP, kb.VERSION, kb.OPERATIONS, "op-adopt")
            assert _members(twin) == names

            twin.kill("kb-2")
            dead = twin.net.hosts["kb-2"]
            seen = dead.connections()
            # a dead node removed without the ungraceful flags: facts on it fail before any change
            out = _run(twin, kubean, "leave-plain", kb.leave_spec("kb-2", dead=False))
            assert out.status == "Failed" and "UNREACHABLE" in out.message and "kb-2" in out.message
            assert _members(twin) == names

            # fail-once, then the fixed re-run, then a second leave of the same node: one at a time, in order
            mark = len(kubean.ssh_log)
            (twin.workdir / kb.FAIL_ONCE).write_text("the next operation fails\n")
            good = kb.leave_spec("kb-2", dead=True, clean_on=["kb-1", "kb-3"])
            for name in ("leave-1", "leave-2", "leave-3"):
                kb.create_operation(twin, name, good)
            seen_statuses = set()
            end = time.monotonic() + 60
            while "leave-2" not in kubean.outcomes and time.monotonic() < end:
                seen_statuses.add((_op(twin, "leave-3").get("status") or {}).get("status"))
                time.sleep(0.1)
            assert "Blocked" in seen_statuses, seen_statuses
            first, second, third = (kubean.wait(n) for n in ("leave-1", "leave-2", "leave-3"))
            assert first.status == "Failed" and "kubean-fail-once" in first.message
            assert not (twin.workdir / kb.FAIL_ONCE).exists()
            assert second.status == "Succeeded", second.message
            assert third.status == "Failed" and "no etcd member with peer URL" in third.message
            assert _members(twin) == ["kb-1", "kb-3"] and _nodes(twin) == ["kb-1", "kb-3"]
            assert all(address != dead.ip for _, address, _ in kubean.ssh_log[mark:]), "the dead node was contacted"
            assert dead.connections() == seen
            op = _op(twin, "leave-2")
            assert op["status"]["jobRef"]["name"] == "kubean-leave-2-job" and op["status"]["startTime"]
            assert op["status"]["endTime"] and op["status"]["digest"]
            assert op["spec"]["hostsConfRef"]["name"].startswith("twin-hosts-conf-")
            script = twin.emulator.core.read_namespaced_config_map("leave-2-entrypoint",
                                                                   kb.NAMESPACE).data["entrypoint.sh"]
            assert ('/kubespray/remove-node.yml -e node=kb-2 -e reset_nodes=false -e allow_ungraceful_removal=true'
                    in script and "skip_confirmation=true" in script and "set -o errexit" in script)

            # an operation is immutable once accepted
            kb._custom(twin).patch_cluster_custom_object(kb.GROUP, kb.VERSION, kb.OPERATIONS, "leave-2",
                                                         {"spec": {"extraArgs": "-e node=kb-3"}})
            end = time.monotonic() + 5
            while not kubean.errors and time.monotonic() < end:
                time.sleep(0.1)
            assert len(kubean.errors) == 1 and "leave-2: spec edited after kubean accepted it" in kubean.errors[0]
            kubean.errors.clear()

            # the dead host still in the inventory fails the join (its preHook runs on every host)
            out = _run(twin, kubean, "join-dead-listed", kb.join_spec())
            assert out.status == "Failed" and "UNREACHABLE" in out.message and "kb-2" in out.message
            # the machine rebuilt with kb-2's IP under a new name, the inventory not yet renamed
            twin.add_rebuilt_host("kb-2-ubuntu", ip=dead.ip)
            out = _run(twin, kubean, "join-stale-name", kb.join_spec())
            assert out.status == "Failed" and "reaches a machine named 'kb-2-ubuntu'" in out.message
            assert _members(twin) == ["kb-1", "kb-3"]

            kb.set_inventory(twin, ["kb-1", "kb-2-ubuntu", "kb-3"])  # same position: not the first node
            out = _run(twin, kubean, "join", kb.join_spec())
            assert out.status == "Succeeded", f"{out.message}\n" + "\n".join(out.log[-20:])
            assert kubean.errors == []
        _healthy_voters(twin, ["kb-1", "kb-2-ubuntu", "kb-3"])
        assert digest(twin.etcd_connection()) == before
        assert _nodes(twin) == ["kb-1", "kb-2-ubuntu", "kb-3"]
        assert (twin.workdir / "kubean-jobs" / "kubean-join-job.log").read_text().count("kubespray-node rc=0") == 1
    finally:
        twin.close()
    assert twin.net.leftovers() == []


@needs_twin
def test_first_control_plane_needs_the_reorder_and_the_seed_clean_hook_fails_on_a_dead_node(tmp_path):
    names = ["kc-1", "kc-2", "kc-3"]
    twin = _twin(tmp_path, names)
    try:
        before = digest(twin.etcd_connection())
        with kb.KubeanOperator(twin, connect_timeout_s=2) as kubean:
            out = _run(twin, kubean, "leave-first", kb.leave_spec("kc-1", dead=False))
            assert out.status == "Failed"
            assert "Currently cannot remove first control plane node or first etcd node" in out.message
            assert _members(twin) == names
            assert not twin.emulator.core.read_node("kc-1").spec.unschedulable, "refused, yet the node was drained"

            # seed 001: kc-1 moved last in kube_control_plane, kube_node and etcd; then it dies
            kb.set_inventory(twin, ["kc-2", "kc-3", "kc-1"])
            assert list(kb.read_inventory(twin)["all"]["children"]["etcd"]["hosts"]) == ["kc-2", "kc-3", "kc-1"]
            twin.kill("kc-1")
            dead = twin.net.hosts["kc-1"]
            seen = dead.connections()
            # the seed's clean-kube-apiserver hook has no `-e node=`: it runs on every kube_node host, the dead
            # one included, and fails the Job after remove-node.yml already removed the member and the Node
            out = _run(twin, kubean, "leave-kc-1", kb.leave_spec("kc-1", dead=True))
            assert out.status == "Failed" and out.message.startswith("clean-kube-apiserver.yml: UNREACHABLE")
            assert "kc-1" in out.message
            assert _members(twin) == ["kc-2", "kc-3"] and _nodes(twin) == ["kc-2", "kc-3"]
            assert dead.connections() == seen

            twin.add_rebuilt_host("kc-1-ubuntu", ip=dead.ip)
            kb.set_inventory(twin, ["kc-2", "kc-3", "kc-1-ubuntu"])
            out = _run(twin, kubean, "join-kc-1", kb.join_spec())
            assert out.status == "Succeeded", f"{out.message}\n" + "\n".join(out.log[-20:])
            _healthy_voters(twin, ["kc-1-ubuntu", "kc-2", "kc-3"])
            assert digest(twin.etcd_connection()) == before
            assert _nodes(twin) == ["kc-1-ubuntu", "kc-2", "kc-3"]

            # a live node removed the seed's way (reset on): drained, member removed, the host reset over SSH
            out = _run(twin, kubean, "leave-kc-3", kb.leave_spec("kc-3", dead=False))
            assert out.status == "Succeeded", out.message
            assert _members(twin) == ["kc-1-ubuntu", "kc-2"] and _nodes(twin) == ["kc-1-ubuntu", "kc-2"]
            assert not (twin.net.hosts["kc-3"].root / "var-lib-etcd" / "member").exists()
            assert twin.net.run("kc-3", "hostname").stdout.strip() == "kc-3"
            assert kubean.errors == []
    finally:
        twin.close()
    assert twin.net.leftovers() == []
