"""Every Kubernetes object cpswap renders for kubean and OpenShift validates against the upstream
CRD schema (issue 12): a CRD's ``spec.versions[*].schema.openAPIV3Schema`` is a JSON schema
(OpenAPI v3's subset; python ``jsonschema``'s Draft 4 rules). The schemas are unmodified upstream
data in ``../shared/upstream`` (see its README for repository, path and commit); the tests skip
with the reason where that folder is absent. Not checked here: ``x-kubernetes-validations`` (CEL
rules the API server evaluates) and server-side defaulting.

Objects: the ``remove-node.yml`` and ``cluster.yml`` ClusterOperations (kubean), the Machine copy
(``clean_copy`` of a Machine as the Machine API stores it, preDrain hook included), and the
``etcd/cluster`` merge patches (``forceRedeploymentReason``, the quorum-guard override on and
off) applied to an Etcd object."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from cpswap.core.model import Host, KubeanSettings
from cpswap.core import openshift as ocp_rules
from cpswap.core.renderers import kubean as kb
from cpswap.executors import openshift as ox

ROOT = Path(__file__).resolve().parents[2]
# ../shared/upstream next to the checkout; a git worktree (…/wt/<name>) finds it one level further up
UPSTREAM = next((p / "shared" / "upstream" for p in (ROOT.parent, ROOT.parent.parent)
                 if (p / "shared" / "upstream").is_dir()), ROOT.parent / "shared" / "upstream")
KUBEAN = KubeanSettings(cluster="centos", image="ghcr.io/kubean-io/spray-job:v0.12.2")


def openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI v3's ``nullable: true`` is JSON schema's ``type: [T, "null"]``; the rest is kept."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def schema(relative: str, version: str) -> dict[str, Any]:
    path = UPSTREAM / relative
    if not path.exists():
        pytest.skip(f"upstream CRD {path} is absent (../shared/upstream is not on this machine)")
    crd = yaml.safe_load(path.read_text())
    found = next((v for v in crd["spec"]["versions"] if v["name"] == version), None)
    assert found is not None, f"{relative}: no version {version}"
    return openapi_to_jsonschema(found["schema"]["openAPIV3Schema"])


def pruned(document: Any, node: dict[str, Any], path: str = "") -> list[str]:
    """Fields a structural schema does not declare: the API server drops them silently on create
    (pruning), so what cpswap meant would never reach the operator. ``metadata`` at the root, and
    objects with x-kubernetes-preserve-unknown-fields or additionalProperties, keep everything."""
    if isinstance(document, list):
        items = node.get("items") or {}
        return [p for i, d in enumerate(document) for p in pruned(d, items, f"{path}/{i}")]
    if not isinstance(document, dict) or node.get("x-kubernetes-preserve-unknown-fields"):
        return []
    props = node.get("properties")
    if props is None:
        return []
    found = []
    for key, value in document.items():
        if not path and key in ("apiVersion", "kind", "metadata"):
            continue
        if key in props:
            found += pruned(value, props[key], f"{path}/{key}")
        elif not node.get("additionalProperties"):
            found.append(f"{path.lstrip('/')}/{key}: not in the schema: pruned by the API server".lstrip("/"))
    return found


def problems(document: dict[str, Any], relative: str, version: str) -> list[str]:
    tree = schema(relative, version)
    validator = Draft4Validator(tree)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)] + \
        pruned(document, tree)


CLUSTER_OPERATIONS = "kubean/kubean.io_clusteroperations.yaml"
MACHINES = "openshift/machines.machine.openshift.io.crd.yaml"
ETCDS = "openshift/etcds.operator.openshift.io.crd.yaml"
CPMS = "openshift/controlplanemachinesets.machine.openshift.io.crd.yaml"


@pytest.mark.parametrize("body", [
    kb.remove_operation(name="cpswap-cp1-remove-centos-master1", node="centos-master1", kubean=KUBEAN, dead=True,
                        clean_on=("centos-master2", "centos-master3")),
    kb.remove_operation(name="cpswap-cp1-remove-centos-master1", node="centos-master1", kubean=KUBEAN, dead=False,
                        clean_on=("centos-master2",)),
    {"apiVersion": kb.API_VERSION, "kind": "ClusterOperation",
     "metadata": {"name": kb.operation_name(slot="cp1", action="join", host=Host(name="centos-master4", ip="10.6.0.14"))},
     "spec": kb.join_operation_spec(kubean=KUBEAN)},
], ids=["remove-dead", "remove-live", "join"])
def test_cluster_operations_validate(body):
    assert problems(body, CLUSTER_OPERATIONS, "v1alpha1") == []


def test_the_cluster_operation_schema_is_live_not_vacuous():
    """The same validator refuses what kubean's CRD refuses (no spec.cluster, a non-string image), and
    a field the API server would prune is reported. The CRD types actionType as a free string:
    kubean's controller, not the schema, rejects an unknown one (the twin's emulator does)."""
    bad = kb.remove_operation(name="x", node="a", kubean=KUBEAN, dead=False, clean_on=("b",))
    bad["spec"]["image"] = 7
    bad["spec"]["retries"] = 3
    del bad["spec"]["cluster"]
    found = problems(bad, CLUSTER_OPERATIONS, "v1alpha1")
    assert any("image" in p for p in found) and any("cluster" in p for p in found), found
    assert any("spec/retries" in p and "pruned" in p for p in found), found


def stored_machine() -> dict[str, Any]:
    """A control-plane Machine as the Machine API stores it (AWS shape; the etcd operator's preDrain hook)."""
    return {
        "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
        "metadata": {"name": "ocp-8qw5l-master-0", "namespace": "openshift-machine-api", "uid": "4f2c-1",
                     "resourceVersion": "18231", "generation": 3, "creationTimestamp": "2026-01-02T03:04:05Z",
                     "finalizers": ["machine.machine.openshift.io"],
                     "annotations": {"machine.openshift.io/instance-state": "running"},
                     "labels": {"machine.openshift.io/cluster-api-cluster": "ocp-8qw5l",
                                "machine.openshift.io/cluster-api-machine-role": "master",
                                "machine.openshift.io/cluster-api-machine-type": "master"},
                     "ownerReferences": [{"apiVersion": "machine.openshift.io/v1", "kind": "ControlPlaneMachineSet",
                                          "name": "cluster", "uid": "77aa", "controller": True}]},
        "spec": {"metadata": {}, "providerID": "aws:///us-east-1a/i-0abc",
                 "lifecycleHooks": {"preDrain": [{"name": "EtcdQuorumOperator", "owner": "clusteroperator/etcd"}]},
                 "providerSpec": {"value": {"apiVersion": "machine.openshift.io/v1beta1",
                                            "kind": "AWSMachineProviderConfig", "instanceType": "m6i.xlarge",
                                            "placement": {"availabilityZone": "us-east-1a", "region": "us-east-1"},
                                            "userDataSecret": {"name": "master-user-data"}}}},
        "status": {"phase": "Running", "nodeRef": {"kind": "Node", "name": "ip-10-0-1-5"},
                   "addresses": [{"type": "InternalIP", "address": "10.0.1.5"}]}}


def test_the_stored_machine_fixture_is_schema_valid():
    assert problems(stored_machine(), MACHINES, "v1beta1") == []


def test_the_machine_copy_validates_and_drops_what_the_runbook_drops():
    copy = ox.clean_copy(stored_machine(), name="ocp-8qw5l-master-3")
    assert problems(copy, MACHINES, "v1beta1") == []
    assert "status" not in copy and "providerID" not in copy["spec"]
    assert set(copy["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    assert copy["spec"]["lifecycleHooks"] == stored_machine()["spec"]["lifecycleHooks"]


def stored_etcd() -> dict[str, Any]:
    return {"apiVersion": "operator.openshift.io/v1", "kind": "Etcd", "metadata": {"name": "cluster"},
            "spec": {"managementState": "Managed", "forceRedeploymentReason": "", "logLevel": "Normal",
                     "operatorLogLevel": "Normal", "unsupportedConfigOverrides": None},
            "status": {"latestAvailableRevision": 7, "nodeStatuses": [
                {"nodeName": "ip-10-0-1-5", "currentRevision": 7}]}}


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``patch_cluster_custom_object`` sends for a dict body)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


@pytest.mark.parametrize("patch", [
    ox.redeploy_patch("cpswap-cp1-ocp-cp-d-r0-20260101T000000.000000Z"),
    ocp_rules.guard_patch(disabled=True, owner="cpswap-cp1-ocp-cp-d-r0"),
    ocp_rules.guard_patch(disabled=False, owner="cpswap-cp1-ocp-cp-d-r0"),
], ids=["forceRedeploymentReason", "guard-off", "guard-on"])
def test_etcd_operator_patches_validate(patch):
    assert problems(merge(stored_etcd(), patch), ETCDS, "v1") == []


def test_guard_patch_round_trip_leaves_other_overrides_alone():
    etcd = stored_etcd()
    etcd["spec"]["unsupportedConfigOverrides"] = {"someOtherKnob": "x"}
    off = merge(etcd, ocp_rules.guard_patch(disabled=True, owner="o"))
    assert off["spec"]["unsupportedConfigOverrides"] == {"someOtherKnob": "x", ocp_rules.GUARD_KEY: True}
    on = merge(off, ocp_rules.guard_patch(disabled=False, owner="o"))
    assert on["spec"]["unsupportedConfigOverrides"] == {"someOtherKnob": "x"}
    assert ocp_rules.GUARD_ANNOTATION not in (on["metadata"].get("annotations") or {})
    assert problems(on, ETCDS, "v1") == []


def test_the_twin_cpms_validates():
    from tests.support.twin.openshift import cpms_object
    assert problems(cpms_object(state="Active", replicas=3), CPMS, "v1") == []
