"""The twin's emulated kubean operator and Kubespray playbooks (issue 7). Test-only.

kubean (kubean-io/kubean) runs Kubespray playbooks as Jobs described by cluster-scoped
``ClusterOperation`` objects (``kubean.io/v1alpha1``, plural ``clusteroperations``) against the
inventory of a ``Cluster`` (``kubean.io/v1alpha1``, plural ``clusters``). This module plays both
parts on the twin (tests/support/twin/cluster.py) strictly, so that a product mistake fails loudly:

Fixture helpers
- ``install(twin, members=[...], cluster="twin", image=DEPLOY_IMAGE)``: the Cluster ``twin`` with
  annotation ``twin.kubean.io/deploy-image`` (the spray-job image used at deploy), its
  hosts-conf (``twin-hosts-conf``, key ``hosts.yml``) and vars-conf (``twin-vars-conf``, key
  ``group_vars.yml``) ConfigMaps in ``kubean-system``. It does NOT create the
  ``pb-clean-kube-apiserver`` ConfigMap: the product declares it (``clean_configmap()`` builds the
  seed's for tests).
- ``hosts_yaml(twin, names)`` / ``set_inventory(twin, names)`` / ``read_inventory(twin)``: the
  Kubespray inventory (the same order in kube_control_plane, kube_node and etcd; first = "first
  control-plane node"), ``leave_spec(node, dead=...)`` / ``join_spec()``: seed 001's two
  operations; ``create_operation(twin, name, spec)``.

``KubeanOperator(twin, lifetime_s=None, tick_s=0.2, connect_timeout_s=4, node_timeout_s=240)``: a
context manager thread, like ``Controllers``: it polls ClusterOperations, accepts them as kubean does and runs
their Jobs one at a time in creation order (kmock keeps no creationTimestamp: the order first seen,
which is kmock's insertion order). ``.errors`` (contract violations that no status shows: an edited
spec, an unknown Cluster, unexpected exceptions), ``.outcomes[name]`` (status, message, job, log),
``.ssh_log`` ((host name, address, command) of every SSH attempt), ``wait(name, timeout_s)`` (an
operation's outcome, bounded), ``settle(passes=2)`` (wait for full polls, e.g. before clearing
``.errors``).

What kubean does here (pkg/controllers/clusterops/controller.go): on first sight ``status.digest``;
the Cluster's hosts-conf and vars-conf are copied to ``<name>-<ms>`` ConfigMaps and written into
``spec.hostsConfRef``/``spec.varsConfRef`` (the inventory is snapshotted when the operation is
first seen, not when it runs), ``spec.entrypointSHRef`` names the rendered ``<op>-entrypoint``
ConfigMap; later operations are ``Blocked`` while an earlier one runs; the Job
``kubean-<op>-job`` in kubean-system, ``status.{status: Running, jobRef, startTime, action}``,
then ``Succeeded|Failed`` and ``endTime``; the Job gets a Complete/Failed condition whose message
is the twin's reason (real kubean keeps it in the pod log; the twin also writes
``<twin workdir>/kubean-jobs/<job>.log``). Deleting an operation garbage-collects its Job and
entrypoint ConfigMap on the emulator's next poll (background propagation: the operation is gone
first; kmock ignores a Foreground delete's propagationPolicy, so the product must wait for the Job
itself). A Job ``kubean-<op>-job`` that already exists when the operation starts is ADOPTED, as
kubean's ``CreateKubeSprayJob`` does (kubean-io/kubean@07f3c6c1 pkg/controllers/clusterops/
controller.go: a successful Get of ``GenerateJobName`` is used): its Failed/Complete condition
becomes the operation's outcome at once and nothing runs (``.adopted``). Refused before any Job
(Failed, no jobRef, as kubean does): a malformed image name, a missing hosts-conf/vars-conf, an
unknown actionType or builtin playbook. A Job name over 63 characters (it is the pod template's
``batch.kubernetes.io/job-name`` label value: kubernetes pkg/apis/batch/validation/validation.go
``validateGeneratedSelector``) makes the Job create fail; kubean's Reconcile logs it and requeues
after 3 s for ever, so the operation keeps its digest and refs and never gets a status (reported
in ``.errors``). An operation naming an unknown Cluster also stays without status (kubean
requeues it forever) and is reported in ``.errors``. Unlike kubean (whose digest skips extraArgs and which stops
looking once an operation finished), any spec edit after acceptance is reported in ``.errors``.

Inside the Job (Failed, with jobRef): the one-shot fault ``<twin workdir>/kubean-fail-once``
(removed when used); an image other than the Cluster's deploy image ("image must match the one used
at deploy", seed 001); anything but the two operations of seed 001 (exact action, extraArgs and hook
shapes; see ``leave_spec``/``join_spec``; the spec holds only cluster, image, actionType, action,
extraArgs, preHook, postHook and backoffLimit 0: a spec copied back from a live object carries
kubean's hostsConfRef, an old inventory snapshot that kubean would reuse, and entrypointSHRef,
a ConfigMap collected with the old operation, and is refused). Then the playbooks, over real SSH with the twin's key
(ansible's part), with kubean's ``set -o errexit``: pre hooks, action, post hooks, the first failure
ends the Job.

- ``remove-node.yml -e node=X [-e reset_nodes=false -e allow_ungraceful_removal=true]``: X in the
  inventory; unless reset_nodes=false, facts are gathered on every inventory host (an unreachable
  one fails the play, before any change); X neither first in kube_control_plane nor first in etcd
  ("Currently cannot remove first control plane node or first etcd node"); the delegation targets
  (first kube_control_plane: drain and node delete; first etcd: etcdctl) reachable; drain: a Ready
  Node is cordoned and its pods deleted, a NotReady one fails the play unless
  allow_ungraceful_removal=true; the etcd member whose first peer URL is https://<access_ip|ip>:2380
  is removed through ``etcdctl`` on the first etcd host (127.0.0.1:2379, server.crt, like Kubespray;
  etcd's "unhealthy cluster" in the 5 s after a leader change is retried for up to 30 s, a twin
  concession to its compressed time, see ``REMOVE_SETTLE_S``),
  and a missing member FAILS the play (Kubespray v2.29.0–v2.30.0, kubernetes-sigs/kubespray#12947;
  older grep-based versions skipped it: a product must not re-run a leave whose member is gone);
  reset (reset_nodes true, X reachable) stops X's processes by PID and wipes /var/lib/etcd/member and
  /etc/kubernetes/manifests over SSH; the Node is deleted. X is never contacted with
  reset_nodes=false.
- ``clean-kube-apiserver.yml`` (postHook, actionSource configmap): the ConfigMap and its key must
  exist and parse as a playbook; its ``hosts: "{{ node | default('kube_node') }}"`` is resolved like
  ansible: kubean runs each hook with the hook's own extraArgs only, so without
  ``extraArgs: "-e node=A,B"`` it runs on every kube_node host, and a dead host still in the
  inventory makes it fail (ansible exits 4 on an unreachable host), after remove-node.yml already
  removed the member and the Node. The kill itself is not run (the twin's hosts share one PID
  namespace); each target is reached over SSH.
- ``cluster-info.yml``: kube_control_plane[0] reachable.
- ``disable-firewalld.yml`` (preHook): every inventory host reachable (kubespray's os-services
  play runs on ``all``).
- ``cluster.yml --limit=etcd,kube_control_plane ...``: every host of both groups in ``all.hosts``
  with ``ansible_host`` (``ip``/``access_ip`` equal to it: one address per twin host), reachable, and
  answering with its inventory name (Kubespray would rename another machine and take it over);
  control-plane hosts also in etcd (stacked etcd); the first kube_control_plane and first etcd hosts
  started etcd voters; every etcd member healthy (Kubespray waits for a healthy cluster: a dead
  member not removed first fails it); then each etcd host that is not yet a member gets
  ``kubespray-node`` over SSH (learner, start, promote, Node) and the cluster must be healthy after.
- ``upgrade-cluster.yml --limit=etcd,kube_control_plane -e ignore_assert_errors=yes``: the limited
  hosts reachable; otherwise a no-op.

Layout: Kubespray's default ``etcd_deployment_type: host`` keeps etcd TLS in /etc/ssl/etcd/ssl,
which the twin's hosts do not mount privately; the twin runs kubean clusters with
``etcd_deployment_type: kubeadm`` (Twin layout ``kubeadm``): TLS in /etc/kubernetes/pki/etcd, data
in /var/lib/etcd, members named after their nodes. Kubespray's certificate distribution to a new
host is stood in for by the twin laying certificates out when it creates the host.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.kube_emulator import LOOP_BOUND_S
from tests.support.twin.cluster import Twin, etcdctl_binary
from tests.support.twin.hosts import SSH_OPTS

GROUP, VERSION = "kubean.io", "v1alpha1"
CLUSTERS, OPERATIONS = "clusters", "clusteroperations"
NAMESPACE = "kubean-system"
DEPLOY_IMAGE = "ghcr.io/kubean-io/spray-job:v0.12.2"
IMAGE_ANNOTATION = "twin.kubean.io/deploy-image"
CLEAN_CONFIGMAP = "pb-clean-kube-apiserver"
CLEAN_ACTION = "clean-kube-apiserver.yml"
# seed 001's playbook; the seed's page shows `shell:` one level too far left, which YAML rejects
CLEAN_PLAYBOOK = """- name: Clean kube-apiserver
  hosts: "{{ node | default('kube_node') }}"
  gather_facts: no
  tasks:
    - name: Kill kube-apiserver process
      shell: ps -eopid=,comm= | awk '$2=="kube-apiserver" {print $1}' | xargs -r kill -9
"""
JOIN_ARGS = "--limit=etcd,kube_control_plane -e ignore_assert_errors=yes --skip-tags=multus"
UPGRADE_ARGS = "--limit=etcd,kube_control_plane -e ignore_assert_errors=yes"
FAIL_ONCE = "kubean-fail-once"
FORKS = 5  # ansible's default parallelism
# etcd refuses `member remove` with "unhealthy cluster" for ~5 s after a leader change (HealthInterval).
# Kubespray does not retry, but a real dead node has been dead for minutes before anyone removes it,
# while the twin kills and removes within seconds: the emulator retries that error, bounded.
REMOVE_SETTLE_S = 30
# kubean's builtin playbooks (pkg/util/entrypoint/entrypoint.go)
BUILTIN_PLAYBOOKS = (
    "facts.yml", "reset.yml", "scale.yml", "cluster.yml", "remove-node.yml", "upgrade-cluster.yml", "ping.yml",
    "enable-repo.yml", "disable-firewalld.yml", "kubeconfig.yml", "cluster-info.yml", "update-hosts.yml",
    "remove-pkgs.yml", "precheck.yml", "renew-certs.yml", "config-for-kube-vip.yml", "config-insecure-registry.yml",
    "enable-nf-conntrack.yml", "mount-xfs-pquota.yml", "set-containerd-registry-mirror.yml",
    "disable-kernel-unattended-upgrade.yml", "config-docker-cgroup-driver-for-kylinSP2.yml")
SPEC_KEYS = {"cluster", "image", "actionType", "action", "extraArgs", "preHook", "postHook", "backoffLimit"}
KUBEAN_SPEC_KEYS = {"hostsConfRef", "varsConfRef", "sshAuthRef", "entrypointSHRef"}  # written by kubean itself
ETC = "/etc/kubernetes/pki/etcd"
VARS = ("etcd_deployment_type: kubeadm\nkube_version: v1.27.5\ncontainer_manager: containerd\n"
        "kube_network_plugin: calico\nkubelet_max_pods: 110\n")


# -- fixture helpers -----------------------------------------------------------------------------
def _custom(twin: Twin) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(twin.emulator.api_client)


def inventory(twin: Twin, names: list[str]) -> dict[str, Any]:
    """The Kubespray inventory kubean keeps for ``names`` (control-plane and etcd hosts, in order)."""
    hosts = {n: {"ip": twin.net.hosts[n].ip, "access_ip": twin.net.hosts[n].ip, "ansible_host": twin.net.hosts[n].ip}
             for n in names}
    group = {"hosts": {n: None for n in names}}
    return {"all": {"hosts": hosts, "children": {
        "kube_control_plane": group, "kube_node": json.loads(json.dumps(group)), "etcd": json.loads(json.dumps(group)),
        "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}}}}}


def hosts_yaml(twin: Twin, names: list[str]) -> str:
    return yaml.safe_dump(inventory(twin, names), sort_keys=False)


def install(twin: Twin, *, members: list[str], cluster: str = "twin", image: str = DEPLOY_IMAGE) -> None:
    """The deployed kubean cluster: Cluster, hosts-conf, vars-conf (see the module docstring), and
    the operator's Deployment as kubean's chart installs it (kubean-io/kubean @ 07f3c6c1
    charts/kubean/templates/deployment.yaml: name and ``app.kubernetes.io/name`` label ``kubean``
    from _helpers.tpl, in the release namespace), reporting its one replica ready: the operator
    itself is this module's thread."""
    if twin.layout != "kubeadm":
        raise ValueError("kubean clusters run on the twin's kubeadm layout (etcd_deployment_type: kubeadm)")
    core = twin.emulator.core
    labels = {"app.kubernetes.io/name": "kubean", "app.kubernetes.io/instance": "kubean"}
    twin.emulator.apps.create_namespaced_deployment(NAMESPACE, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="kubean", namespace=NAMESPACE,
                                     labels={**labels, "app.kubernetes.io/managed-by": "Helm"}),
        spec=client.V1DeploymentSpec(replicas=1, selector=client.V1LabelSelector(match_labels=labels),
                                     template=client.V1PodTemplateSpec(
                                         metadata=client.V1ObjectMeta(labels=labels),
                                         spec=client.V1PodSpec(containers=[client.V1Container(
                                             name="kubean", image="ghcr.io/kubean-io/kubean-operator:v0.12.2")]))),
        status=client.V1DeploymentStatus(replicas=1, ready_replicas=1, available_replicas=1)))
    core.create_namespaced_config_map(NAMESPACE, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"{cluster}-hosts-conf", namespace=NAMESPACE),
        data={"hosts.yml": hosts_yaml(twin, members)}))
    core.create_namespaced_config_map(NAMESPACE, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"{cluster}-vars-conf", namespace=NAMESPACE), data={"group_vars.yml": VARS}))
    custom = _custom(twin)
    custom.create_cluster_custom_object(GROUP, VERSION, CLUSTERS, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Cluster",
        "metadata": {"name": cluster, "annotations": {IMAGE_ANNOTATION: image}},
        "spec": {"hostsConfRef": {"name": f"{cluster}-hosts-conf", "namespace": NAMESPACE},
                 "varsConfRef": {"name": f"{cluster}-vars-conf", "namespace": NAMESPACE}}})
    # kmock answers 404 to a list of a custom resource it has never stored: declare it by storing one
    custom.create_cluster_custom_object(GROUP, VERSION, OPERATIONS, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterOperation", "metadata": {"name": "twin-declare"}})
    custom.delete_cluster_custom_object(GROUP, VERSION, OPERATIONS, "twin-declare")


def set_inventory(twin: Twin, names: list[str], *, cluster: str = "twin") -> None:
    twin.emulator.core.patch_namespaced_config_map(f"{cluster}-hosts-conf", NAMESPACE,
                                                   {"data": {"hosts.yml": hosts_yaml(twin, names)}})


def read_inventory(twin: Twin, *, cluster: str = "twin") -> dict[str, Any]:
    cm = twin.emulator.core.read_namespaced_config_map(f"{cluster}-hosts-conf", NAMESPACE)
    return yaml.safe_load(cm.data["hosts.yml"])


def clean_configmap() -> client.V1ConfigMap:
    """The ConfigMap seed 001 declares for the clean-kube-apiserver postHook."""
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=CLEAN_CONFIGMAP, namespace=NAMESPACE),
                              data={CLEAN_ACTION: CLEAN_PLAYBOOK})


def leave_spec(node: str, *, dead: bool, cluster: str = "twin", image: str = DEPLOY_IMAGE,
               clean_on: list[str] | None = None) -> dict[str, Any]:
    """Seed 001's remove-node operation (+ the ungraceful flags for a dead node). ``clean_on`` adds
    ``extraArgs: -e node=A,B`` to the clean-kube-apiserver hook (needed while a dead host is in
    kube_node; see the module docstring)."""
    extra = f"-e node={node}" + (" -e reset_nodes=false -e allow_ungraceful_removal=true" if dead else "")
    clean: dict[str, Any] = {"actionType": "playbook", "actionSource": "configmap",
                             "actionSourceRef": {"name": CLEAN_CONFIGMAP, "namespace": NAMESPACE},
                             "action": CLEAN_ACTION}
    if clean_on:
        clean["extraArgs"] = f"-e node={','.join(clean_on)}"
    return {"cluster": cluster, "image": image, "actionType": "playbook", "action": "remove-node.yml",
            "extraArgs": extra,
            "postHook": [clean, {"actionType": "playbook", "action": "cluster-info.yml"}]}


def join_spec(*, cluster: str = "twin", image: str = DEPLOY_IMAGE) -> dict[str, Any]:
    """Seed 001's control-plane scale-up operation."""
    return {"cluster": cluster, "image": image, "actionType": "playbook", "action": "cluster.yml",
            "extraArgs": JOIN_ARGS,
            "preHook": [{"actionType": "playbook", "action": "disable-firewalld.yml"}],
            "postHook": [{"actionType": "playbook", "action": "upgrade-cluster.yml", "extraArgs": UPGRADE_ARGS},
                         {"actionType": "playbook", "action": "cluster-info.yml"}]}


def create_operation(twin: Twin, name: str, spec: dict[str, Any]) -> None:
    _custom(twin).create_cluster_custom_object(GROUP, VERSION, OPERATIONS, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterOperation", "metadata": {"name": name}, "spec": spec})


# -- what kubean accepts, and what the twin accepts of it ----------------------------------------------
class PlaybookFailed(Exception):
    """A playbook (or the twin's contract check inside the Job) failed: the Job fails."""


def valid_image_name(image: Any) -> bool:
    """kubean's IsValidImageName."""
    return isinstance(image, str) and bool(image) and " " not in image and image[0].isalnum() and image[-1].isalnum()


def kubean_refusal(spec: dict[str, Any]) -> str | None:
    """What kubean itself refuses before creating a Job (ArgsError, image format), or None."""
    if not valid_image_name(spec.get("image")):
        return f"wrong image format {spec.get('image')!r}"
    for where, actions in (("prehook", spec.get("preHook") or []), ("action", [spec]),
                           ("posthook", spec.get("postHook") or [])):
        for action in actions:
            if not isinstance(action, dict):
                return f"{where}: not an object: {action!r}"
            kind, name = action.get("actionType"), action.get("action")
            if kind not in ("playbook", "shell"):
                return (f"{where}: unknown action type {kind!r}, the currently supported ranges include: "
                        "[playbook shell]")
            source = action.get("actionSource") or "builtin"
            if kind == "playbook" and source == "builtin" and name not in BUILTIN_PLAYBOOKS:
                return (f"{where}: unknown playbook type {name!r}, the currently supported ranges include: "
                        f"{list(BUILTIN_PLAYBOOKS)}")
            if source != "builtin" and not (action.get("actionSourceRef") or {}).get("name"):
                return f"{where}: actionSourceRef must be specified if actionSource set as configmap"
    return None


def options(extra: Any) -> list[str]:
    """ansible-playbook extra arguments as a sorted option list (``-e k=v`` pairs kept together)."""
    if extra is None:
        return []
    if not isinstance(extra, str):
        raise PlaybookFailed(f"extraArgs must be a string, got {extra!r}")
    tokens, out = shlex.split(extra), []
    while tokens:
        token = tokens.pop(0)
        if token in ("-e", "--extra-vars", "--limit", "-l", "--skip-tags", "--tags", "-t"):
            if not tokens:
                raise PlaybookFailed(f"extraArgs {extra!r}: {token} needs a value")
            value = tokens.pop(0)
            if token in ("-e", "--extra-vars"):
                token = f"-e {value}"
            else:
                token = f"{'--limit' if token in ('--limit', '-l') else token}={value}"
        out.append(token)
    return sorted(out)


@dataclass(frozen=True)
class Leave:
    node: str
    reset_nodes: bool
    ungraceful: bool
    clean_on: tuple[str, ...] | None  # -e node=... of the clean-kube-apiserver hook


@dataclass(frozen=True)
class Join:
    pass


def _builtin(hook: dict[str, Any]) -> bool:
    return hook.get("actionSource") in (None, "builtin") and "actionSourceRef" not in hook


def _hook_is(hook: Any, action: str, extra: str | None = None) -> bool:
    return (isinstance(hook, dict) and set(hook) <= {"actionType", "action", "extraArgs", "actionSource"}
            and hook.get("actionType") == "playbook" and hook.get("action") == action and _builtin(hook)
            and options(hook.get("extraArgs")) == options(extra))


def contract(spec: dict[str, Any]) -> Leave | Join:
    """The two operations cpswap runs (seed 001), exactly; anything else fails the Job saying what."""
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise PlaybookFailed(f"spec fields not accepted by the twin: {sorted(unknown)} (kubean fills "
                             f"{sorted(KUBEAN_SPEC_KEYS)} itself; the product sets {sorted(SPEC_KEYS)} only)")
    if spec.get("backoffLimit") not in (None, 0):
        raise PlaybookFailed(f"backoffLimit {spec['backoffLimit']!r} not accepted: the twin does not emulate "
                             "Job retries")
    if spec.get("actionType") != "playbook" or "actionSource" in spec:
        raise PlaybookFailed(f"actionType {spec.get('actionType')!r}: only builtin playbooks are accepted")
    action, given = spec.get("action"), options(spec.get("extraArgs"))
    if action == "remove-node.yml":
        nodes = [o[len("-e node="):] for o in given if o.startswith("-e node=")]
        flags = [o for o in given if not o.startswith("-e node=")]
        if len(nodes) != 1 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", nodes[0]):
            raise PlaybookFailed(f"remove-node.yml extraArgs {spec.get('extraArgs')!r} not accepted: exactly one "
                                 "`-e node=<name>` (one node) is required")
        allowed = {"-e reset_nodes=false", "-e allow_ungraceful_removal=true"}
        if set(flags) - allowed or len(flags) != len(set(flags)):
            raise PlaybookFailed(f"remove-node.yml extraArgs {spec.get('extraArgs')!r} not accepted: besides "
                                 f"-e node=<name> only {sorted(allowed)}")
        if spec.get("preHook"):
            raise PlaybookFailed(f"remove-node.yml preHook {spec['preHook']!r} not accepted: seed 001 has none")
        post = spec.get("postHook") or []
        clean = post[0] if post else None
        clean_ok = (isinstance(clean, dict)
                    and set(clean) <= {"actionType", "action", "actionSource", "actionSourceRef", "extraArgs"}
                    and clean.get("actionType") == "playbook" and clean.get("action") == CLEAN_ACTION
                    and clean.get("actionSource") == "configmap"
                    and clean.get("actionSourceRef") == {"name": CLEAN_CONFIGMAP, "namespace": NAMESPACE})
        clean_on = None
        if clean_ok and clean.get("extraArgs") is not None:
            clean_opts = options(clean["extraArgs"])
            clean_ok = len(clean_opts) == 1 and clean_opts[0].startswith("-e node=")
            clean_on = tuple(clean_opts[0][len("-e node="):].split(",")) if clean_ok else None
        if len(post) != 2 or not clean_ok or not _hook_is(post[1], "cluster-info.yml"):
            raise PlaybookFailed(
                f"remove-node.yml postHook {post!r} not accepted: expected [{{actionType: playbook, actionSource: "
                f"configmap, actionSourceRef: {{name: {CLEAN_CONFIGMAP}, namespace: {NAMESPACE}}}, action: "
                f"{CLEAN_ACTION}[, extraArgs: '-e node=A,B']}}, {{actionType: playbook, action: cluster-info.yml}}]")
        return Leave(node=nodes[0], reset_nodes="-e reset_nodes=false" not in flags,
                     ungraceful="-e allow_ungraceful_removal=true" in flags, clean_on=clean_on)
    if action == "cluster.yml":
        if given != options(JOIN_ARGS):
            raise PlaybookFailed(f"cluster.yml extraArgs {spec.get('extraArgs')!r} not accepted: "
                                 f"expected {JOIN_ARGS!r}")
        pre, post = spec.get("preHook") or [], spec.get("postHook") or []
        if len(pre) != 1 or not _hook_is(pre[0], "disable-firewalld.yml"):
            raise PlaybookFailed(f"cluster.yml preHook {pre!r} not accepted: expected "
                                 "[{actionType: playbook, action: disable-firewalld.yml}]")
        if len(post) != 2 or not _hook_is(post[0], "upgrade-cluster.yml", UPGRADE_ARGS) \
                or not _hook_is(post[1], "cluster-info.yml"):
            raise PlaybookFailed(f"cluster.yml postHook {post!r} not accepted: expected [{{actionType: "
                                 f"playbook, action: upgrade-cluster.yml, extraArgs: {UPGRADE_ARGS!r}}}, "
                                 "{actionType: playbook, action: cluster-info.yml}]")
        return Join()
    raise PlaybookFailed(f"action {action!r} not accepted: the twin emulates remove-node.yml and cluster.yml "
                         "(seed 001's control-plane operations) only")


# -- the inventory -----------------------------------------------------------------------------------
@dataclass
class Inventory:
    hosts: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]

    @classmethod
    def parse(cls, text: str) -> Inventory:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlaybookFailed(f"hosts.yml does not parse: {exc}") from None
        if not isinstance(data, dict) or set(data) != {"all"} or not isinstance(data["all"], dict):
            raise PlaybookFailed("hosts.yml: expected a single top-level `all` group")
        top = data["all"]
        if set(top) - {"hosts", "children", "vars"}:
            raise PlaybookFailed(f"hosts.yml: unknown keys under all: "
                                 f"{sorted(set(top) - {'hosts', 'children', 'vars'})}")
        hosts = top.get("hosts") or {}
        if not isinstance(hosts, dict) or not all(isinstance(v, dict) for v in hosts.values()):
            raise PlaybookFailed("hosts.yml: all.hosts must map host names to their variables")
        children = top.get("children") or {}
        groups: dict[str, list[str]] = {}

        def members(name: str, stack: tuple[str, ...] = ()) -> list[str]:
            group = children.get(name)
            if name in stack:
                raise PlaybookFailed(f"hosts.yml: group {name} contains itself")
            if group is None:
                return []
            if not isinstance(group, dict) or set(group) - {"hosts", "children", "vars"}:
                raise PlaybookFailed(f"hosts.yml: group {name} must have hosts/children/vars only")
            found = list((group.get("hosts") or {}).keys())
            for child in (group.get("children") or {}):
                found += [h for h in members(child, stack + (name,)) if h not in found]
            return found
        for name in children:
            groups[name] = members(name)
        for needed in ("kube_control_plane", "kube_node", "etcd", "k8s_cluster"):
            if needed not in children:
                raise PlaybookFailed(f"hosts.yml: group {needed} missing")
        if set((children["k8s_cluster"] or {}).get("children") or {}) < {"kube_control_plane", "kube_node"}:
            raise PlaybookFailed("hosts.yml: k8s_cluster must have children kube_control_plane and kube_node")
        if not groups["kube_control_plane"] or not groups["etcd"]:
            raise PlaybookFailed("hosts.yml: kube_control_plane and etcd must not be empty")
        for group, names in groups.items():
            missing = [n for n in names if n not in hosts]
            if missing:
                raise PlaybookFailed(f"hosts.yml: {missing} in group {group} but not in all.hosts (no ansible_host)")
        for name, hostvars in hosts.items():
            address = hostvars.get("ansible_host")
            if not address:
                raise PlaybookFailed(f"hosts.yml: {name} has no ansible_host")
            for key in ("ip", "access_ip"):
                if key in hostvars and hostvars[key] != address:
                    raise PlaybookFailed(f"hosts.yml: {name}: {key} {hostvars[key]} differs from ansible_host "
                                         f"{address} (a twin host has one address)")
        return cls(hosts=hosts, groups=groups)

    def pattern(self, text: str) -> list[str]:
        """Hosts of an ansible pattern: names of groups or hosts separated by ``,`` or ``:``, ``all``,
        ``group[0]``."""
        found: list[str] = []
        for part in re.split(r"[,:]", text):
            part = part.strip()
            index = re.fullmatch(r"(.+)\[(\d+)\]", part)
            if part == "all":
                names = list(self.hosts)
            elif index:
                group = self.groups.get(index.group(1), [])
                names = group[int(index.group(2)):int(index.group(2)) + 1]
            elif part in self.groups:
                names = self.groups[part]
            elif part in self.hosts:
                names = [part]
            else:
                raise PlaybookFailed(f"pattern {text!r}: {part!r} is neither a host nor a group of the inventory")
            found += [n for n in names if n not in found]
        return found

    def address(self, name: str) -> str:
        return self.hosts[name]["ansible_host"]

    def etcd_address(self, name: str) -> str | None:
        hostvars = self.hosts[name]
        return hostvars.get("access_ip") or hostvars.get("ip")


# -- the operator ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: str
    message: str
    job: str | None
    log: list[str] = field(default_factory=list)


@dataclass
class _Record:
    name: str
    spec: dict[str, Any]
    digest: str
    seq: int
    hosts_text: str = ""
    state: str = "new"  # new | queued | running | done | waiting (unknown cluster)
    edit_reported: bool = False
    blocked: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(spec: dict[str, Any]) -> str:
    own = {k: v for k, v in spec.items() if k not in KUBEAN_SPEC_KEYS}
    return hashlib.md5(json.dumps(own, sort_keys=True).encode()).hexdigest()


class _Job:
    def __init__(self, name: str) -> None:
        self.name, self.log = name, []

    def say(self, line: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {line}")


class KubeanOperator:
    """kubean's ClusterOperation controller and Kubespray's playbooks on the twin (module docstring)."""

    def __init__(self, twin: Twin, *, lifetime_s: float | None = None, tick_s: float = 0.2, connect_timeout_s: int = 4,
                 node_timeout_s: float = 240) -> None:
        if twin.layout != "kubeadm":
            raise ValueError("KubeanOperator needs a Twin with layout='kubeadm'")
        self.twin = twin
        self._tick, self._lifetime = tick_s, LOOP_BOUND_S if lifetime_s is None else lifetime_s  # until stopped
        self._connect_timeout, self._node_timeout = connect_timeout_s, node_timeout_s
        cfg = client.Configuration()
        cfg.host = twin.emulator.url
        cfg.retries = 0
        self._api_client = client.ApiClient(cfg)
        self._custom = client.CustomObjectsApi(self._api_client)
        self._core = client.CoreV1Api(self._api_client)
        self._batch = client.BatchV1Api(self._api_client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kubean-operator")
        self._worker: threading.Thread | None = None
        self._records: dict[str, _Record] = {}
        self._seq = 0
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.outcomes: dict[str, Outcome] = {}
        self.adopted: list[tuple[str, str, str]] = []  # (operation, job, outcome) of Jobs kubean adopted
        self.ssh_log: list[tuple[str, str, str]] = []
        self.passes = 0  # completed reconcile passes

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> KubeanOperator:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:  # SSH sessions of a running Job, by PID
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._thread.join(15)
        if self._worker is not None:
            self._worker.join(30)
        self._api_client.close()

    def wait(self, name: str, *, timeout_s: float = 180) -> Outcome:
        """Block until operation ``name`` finished here (bounded); returns its outcome."""
        end = time.monotonic() + timeout_s
        while name not in self.outcomes:
            if time.monotonic() > end or not self._thread.is_alive():
                state = getattr(self._records.get(name), "state", "unseen")
                raise TimeoutError(f"ClusterOperation {name} did not finish in {timeout_s:.0f} s "
                                   f"(state {state}; errors {self.errors})")
            time.sleep(0.1)
        return self.outcomes[name]

    def settle(self, *, passes: int = 2, timeout_s: float = 10) -> None:
        """Block until ``passes`` more reconcile passes completed (bounded): what the API shows now has
        been seen, and nothing listed before now is still being handled by the poller."""
        target, end = self.passes + passes, time.monotonic() + timeout_s
        while self.passes < target:
            if time.monotonic() > end or not self._thread.is_alive():
                raise TimeoutError(f"kubean operator did not complete {passes} passes in {timeout_s:.0f} s")
            time.sleep(0.05)

    def _run(self) -> None:
        end = time.monotonic() + self._lifetime
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                self.reconcile()
            except Exception as exc:  # keep polling; tests assert on .errors
                self._error(f"{type(exc).__name__}: {exc}")
            self.passes += 1
            self._stop.wait(self._tick)

    def _error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    # -- kubean's controller ---------------------------------------------------------------------
    def _list(self) -> list[dict[str, Any]]:
        try:
            return self._custom.list_cluster_custom_object(GROUP, VERSION, OPERATIONS)["items"]
        except ApiException as exc:
            if exc.status == 404:  # kmock: never declared
                return []
            raise

    def _status(self, name: str, patch: dict[str, Any]) -> None:
        self._custom.patch_cluster_custom_object_status(GROUP, VERSION, OPERATIONS, name, {"status": patch})

    def reconcile(self) -> None:
        items = self._list()
        present = {o["metadata"]["name"] for o in items}
        for name in [n for n, r in self._records.items() if n not in present and r.state != "running"]:
            self._collect(self._records.pop(name))
        for op in items:
            name, spec, status = op["metadata"]["name"], op.get("spec") or {}, op.get("status") or {}
            record = self._records.get(name)
            if record is not None and record.state == "done" and not status:
                self._records.pop(name)  # deleted and recreated between two polls
                self._collect(record)
                record = None
            if record is None:
                self._seq += 1
                record = self._records[name] = _Record(name=name, spec=spec, digest=_digest(spec), seq=self._seq)
            if record.state in ("new", "waiting"):
                record.spec, record.digest = spec, _digest(spec)
                self._accept(record)
            elif _digest(spec) != record.digest and not record.edit_reported:
                record.edit_reported = True
                self._error(f"ClusterOperation {name}: spec edited after kubean accepted it (digest {record.digest}); "
                            "kubean does not re-run an edited operation: create a new ClusterOperation instead")
        queued = sorted((r for r in self._records.values() if r.state == "queued"), key=lambda r: r.seq)
        busy = self._worker is not None and self._worker.is_alive()
        if queued and not busy:
            record, queued = queued[0], queued[1:]
            record.state = "running"
            self._worker = threading.Thread(target=self._execute, args=(record,), daemon=True,
                                            name=f"kubean-job-{record.name}")
            self._worker.start()
        for record in queued:  # an earlier operation of the cluster is running or waiting
            if not record.blocked:
                self._status(record.name, {"status": "Blocked"})
                record.blocked = True

    def _fail_early(self, record: _Record, message: str) -> None:
        """Failed before any Job, as kubean marks it (no jobRef)."""
        self._status(record.name, {"status": "Failed", "endTime": _now()})
        record.state = "done"
        self.outcomes[record.name] = Outcome("Failed", message, None, [message])

    def _accept(self, record: _Record) -> None:
        spec = record.spec
        try:
            cluster = self._custom.get_cluster_custom_object(GROUP, VERSION, CLUSTERS, str(spec.get("cluster")))
        except ApiException as exc:
            if exc.status != 404:
                raise
            record.state = "waiting"
            self._error(f"ClusterOperation {record.name}: Cluster {spec.get('cluster')!r} not found; kubean "
                        "requeues it forever without a status")
            return
        if not valid_image_name(spec.get("image")):
            return self._fail_early(record, f"wrong image format {spec.get('image')!r}")
        refs = {key: (cluster.get("spec") or {}).get(key) or {} for key in ("hostsConfRef", "varsConfRef")}
        copies: dict[str, dict[str, str]] = {}
        for key, ref in refs.items():
            try:
                cm = self._core.read_namespaced_config_map(ref.get("name", ""), ref.get("namespace", ""))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return self._fail_early(record, f"kubeanCluster {cluster['metadata']['name']} {key} "
                                                f"{ref.get('namespace')},{ref.get('name')} not found")
            stamp = int(time.time() * 1000)
            for attempt in range(20):  # kubean names the copy after the millisecond; two in one ms: the next one
                copy = f"{ref['name']}-{stamp + attempt}"
                try:
                    self._core.create_namespaced_config_map(NAMESPACE, client.V1ConfigMap(
                        metadata=client.V1ObjectMeta(name=copy, namespace=NAMESPACE), data=cm.data))
                    break
                except ApiException as exc:
                    if exc.status != 409 or attempt == 19:
                        raise
            copies[key] = {"name": copy, "namespace": NAMESPACE}
            if key == "hostsConfRef":
                record.hosts_text = (cm.data or {}).get("hosts.yml", "")
        self._status(record.name, {"digest": record.digest})
        refusal = kubean_refusal(spec)
        if refusal:
            self._custom.patch_cluster_custom_object(GROUP, VERSION, OPERATIONS, record.name, {"spec": copies})
            return self._fail_early(record, refusal)
        script = self._entrypoint(spec)
        self._core.create_namespaced_config_map(NAMESPACE, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"{record.name}-entrypoint", namespace=NAMESPACE),
            data={"entrypoint.sh": script}))
        self._custom.patch_cluster_custom_object(GROUP, VERSION, OPERATIONS, record.name, {"spec": {
            **copies, "entrypointSHRef": {"name": f"{record.name}-entrypoint", "namespace": NAMESPACE}}})
        job = f"kubean-{record.name}-job"
        if len(job) > 63:
            # CreateKubeSprayJob's Create is refused (the pod template's job-name label value is at
            # most 63 characters); Reconcile logs it and requeues after 3 s, for ever: no status
            record.state = "stuck"
            self._error(f"ClusterOperation {record.name}: Job {job!r} cannot be created (a label value is at most 63 "
                        f"characters): kubean requeues it for ever, with no status")
            return
        record.state = "queued"

    @staticmethod
    def _entrypoint(spec: dict[str, Any]) -> str:
        def command(action: dict[str, Any]) -> str:
            if action.get("actionType") == "shell":
                return str(action.get("action"))
            text = 'ansible-playbook -i /conf/hosts.yml -b --become-user root -e "@/conf/group_vars.yml"'
            if action.get("action") == "remove-node.yml":
                text += ' -e "skip_confirmation=true"'
            text += f" /kubespray/{action.get('action')}"
            return f"{text} {action['extraArgs']}" if action.get("extraArgs") else text
        parts = [command(a) for a in spec.get("preHook") or []] + [command(spec)] + \
                [command(a) for a in spec.get("postHook") or []]
        return "#!/bin/bash\n\nset -o errexit\nset -o nounset\nset -o pipefail\n\n" + "\n".join(parts)

    def _collect(self, record: _Record) -> None:
        """Garbage collection of what the deleted operation owned (its Job, its entrypoint)."""
        for delete in (lambda: self._batch.delete_namespaced_job(f"kubean-{record.name}-job", NAMESPACE),
                       lambda: self._core.delete_namespaced_config_map(f"{record.name}-entrypoint", NAMESPACE)):
            try:
                delete()
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # -- the Job ---------------------------------------------------------------------------------
    def _execute(self, record: _Record) -> None:
        job = _Job(f"kubean-{record.name}-job")
        status, message = "Failed", ""
        adopted = self._existing_job(job.name)
        if adopted is not None:  # CreateKubeSprayJob: a Job of that name is taken as this operation's
            status, message = adopted
            job.say(f"Job {job.name} exists already: adopted (kubean's CreateKubeSprayJob); its outcome is {status}")
            self.adopted.append((record.name, job.name, status))
            self._status(record.name, {"status": "Running", "jobRef": {"name": job.name, "namespace": NAMESPACE},
                                       "startTime": _now(), "action": record.spec.get("action")})
            self._status(record.name, {"status": status, "endTime": _now()})
            record.state = "done"
            self.outcomes[record.name] = Outcome(status, message, job.name, job.log)
            return
        try:
            self._batch.create_namespaced_job(NAMESPACE, client.V1Job(
                metadata=client.V1ObjectMeta(name=job.name, namespace=NAMESPACE, owner_references=[
                    client.V1OwnerReference(api_version=f"{GROUP}/{VERSION}", kind="ClusterOperation", name=record.name,
                                            uid=record.name, controller=True)]),
                spec=client.V1JobSpec(backoff_limit=int(record.spec.get("backoffLimit") or 0),
                                      template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                                          restart_policy="Never", containers=[client.V1Container(
                                              name="kubean", image=str(record.spec.get("image")),
                                              command=["/bin/entrypoint.sh"])])))))
            self._status(record.name, {"status": "Running", "jobRef": {"name": job.name, "namespace": NAMESPACE},
                                       "startTime": _now(), "action": record.spec.get("action")})
            self._job(record, job)
            status, message = "Succeeded", "all playbooks succeeded"
        except PlaybookFailed as exc:
            message = str(exc)
        except Exception as exc:  # the emulator's own failure: the Job fails and the test sees it
            message = f"twin emulator error: {type(exc).__name__}: {exc}"
            self._error(f"ClusterOperation {record.name}: {message}")
        job.say(f"Job {status}: {message}")
        try:
            out = self.twin.workdir / "kubean-jobs"
            out.mkdir(exist_ok=True)
            (out / f"{job.name}.log").write_text("\n".join(job.log) + "\n")
            condition = {"type": "Complete" if status == "Succeeded" else "Failed", "status": "True",
                         "reason": "Completed" if status == "Succeeded" else "BackoffLimitExceeded",
                         "message": message}
            self._batch.patch_namespaced_job_status(job.name, NAMESPACE, {"status": {
                "conditions": [condition], "succeeded" if status == "Succeeded" else "failed": 1}})
            self._status(record.name, {"status": status, "endTime": _now()})
        except Exception as exc:
            self._error(f"ClusterOperation {record.name}: recording its end: {type(exc).__name__}: {exc}")
        finally:
            record.state = "done"
            self.outcomes[record.name] = Outcome(status, message, job.name, job.log)

    def _existing_job(self, name: str) -> tuple[str, str] | None:
        """The outcome of a Job that already exists under this name, or None (kubean's
        FetchJobConditionStatusAndCompletionTime: a Failed/Complete condition decides)."""
        try:
            existing = self._batch.read_namespaced_job(name, NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        for condition in (existing.status.conditions or []) if existing.status else []:
            if condition.status == "True" and condition.type in ("Complete", "Failed"):
                return ("Succeeded" if condition.type == "Complete" else "Failed",
                        f"adopted job {name}: {condition.message or condition.reason}")
        return "Failed", f"adopted job {name} without a finished condition"

    def _job(self, record: _Record, job: _Job) -> None:
        spec = record.spec
        flag = self.twin.workdir / FAIL_ONCE
        if flag.exists():
            flag.unlink()
            raise PlaybookFailed("simulated failure (kubean-fail-once)")
        cluster = self._custom.get_cluster_custom_object(GROUP, VERSION, CLUSTERS, spec["cluster"])
        deployed = ((cluster.get("metadata") or {}).get("annotations") or {}).get(IMAGE_ANNOTATION)
        if spec.get("image") != deployed:
            raise PlaybookFailed(f"image {spec.get('image')!r} not accepted: image must match the one used at deploy "
                                 f"({deployed!r})")
        plan = contract(spec)
        inv = Inventory.parse(record.hosts_text)
        for hook in spec.get("preHook") or []:
            self._hook(job, inv, hook)
        if isinstance(plan, Leave):
            self._remove_node(job, inv, plan)
        else:
            self._cluster_yml(job, inv)
        for hook in spec.get("postHook") or []:
            self._hook(job, inv, hook)

    # -- ansible's part: SSH ---------------------------------------------------------------------
    def _ssh(self, job: _Job, name: str, address: str, command: str, *, timeout_s: float = 60) -> tuple[int, str, str]:
        if self._stop.is_set():
            raise PlaybookFailed("kubean operator stopped")
        self.ssh_log.append((name, address, command))
        argv = ["ssh", "-i", str(self.twin.net.client_key),
                *[f"ConnectTimeout={self._connect_timeout}" if o.startswith("ConnectTimeout=") else o
                  for o in SSH_OPTS],
                f"root@{address}", command]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        with self._lock:
            self._procs.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return -9, out, err + f"\n(killed after {timeout_s:.0f} s)"
        finally:
            with self._lock:
                self._procs.discard(proc)
        return proc.returncode, out, err

    def _gather(self, job: _Job, inv: Inventory, names: list[str], play: str) -> None:
        """Connect to each host like ansible (facts, 5 forks in parallel): unreachable hosts fail the play
        (rc 4); a host that answers with another name is refused (Kubespray would rename and take it over)."""
        with ThreadPoolExecutor(max_workers=FORKS) as pool:
            results = list(pool.map(lambda n: self._ssh(job, n, inv.address(n), "hostname",
                                                        timeout_s=self._connect_timeout + 10), names))
        unreachable = []
        for name, (rc, out, err) in zip(names, results, strict=False):
            if rc == 255 or rc == -9:
                reason = err.strip().splitlines()[-1] if err.strip() else "timeout"
                unreachable.append(f"{name} ({inv.address(name)}): {reason}")
                job.say(f"fatal: [{name}]: UNREACHABLE!")
                continue
            if rc != 0:
                raise PlaybookFailed(f"{play}: [{name}] `hostname` failed rc={rc}: {err.strip()[-300:]}")
            if out.strip() != name:
                raise PlaybookFailed(f"{play}: inventory host {name}'s ansible_host {inv.address(name)} reaches "
                                     f"a machine named {out.strip()!r}; Kubespray would rename it to {name} and "
                                     "take it over")
            job.say(f"ok: [{name}]")
        if unreachable:
            raise PlaybookFailed(f"{play}: UNREACHABLE! Failed to connect to the host via ssh: "
                                 f"{'; '.join(unreachable)}")

    def _etcdctl(self, job: _Job, inv: Inventory, host: str, args: str, *, check: bool = True) -> tuple[int, str, str]:
        command = (f"{etcdctl_binary()} --endpoints=https://127.0.0.1:2379 --cacert={ETC}/ca.crt "
                   f"--cert={ETC}/server.crt --key={ETC}/server.key --command-timeout=5s {args}")
        rc, out, err = self._ssh(job, host, inv.address(host), command, timeout_s=60)
        job.say(f"[{host}] etcdctl {args}: rc={rc}")
        if check and rc != 0:
            raise PlaybookFailed(f"[{host}] etcdctl {args} failed rc={rc}: {err.strip()[-400:]}")
        return rc, out, err

    def _members(self, job: _Job, inv: Inventory) -> list[dict[str, Any]]:
        first = inv.groups["etcd"][0]
        return json.loads(self._etcdctl(job, inv, first, "member list -w json")[1]).get("members", [])

    def _healthy(self, job: _Job, inv: Inventory, play: str) -> None:
        first = inv.groups["etcd"][0]
        rc, out, err = self._etcdctl(job, inv, first, "endpoint health --cluster -w json", check=False)
        try:
            results = json.loads(out)
        except ValueError:
            raise PlaybookFailed(f"{play}: etcd cluster health unknown: {err.strip()[-400:]}") from None
        sick = [f"{r.get('endpoint')}: {r.get('error') or 'unhealthy'}" for r in results if not r.get("health")]
        if rc != 0 or sick:
            raise PlaybookFailed(f"{play}: etcd cluster is unhealthy ({'; '.join(sick) or err.strip()[-300:]}); "
                                 "Kubespray waits for a healthy etcd cluster (remove a dead member with "
                                 "remove-node.yml first)")

    # -- the playbooks ---------------------------------------------------------------------------
    def _hook(self, job: _Job, inv: Inventory, hook: dict[str, Any]) -> None:
        action = hook["action"]
        job.say(f"PLAYBOOK {action} {hook.get('extraArgs') or ''}".rstrip())
        if action == CLEAN_ACTION:
            ref = hook["actionSourceRef"]
            try:
                cm = self._core.read_namespaced_config_map(ref["name"], ref["namespace"])
            except ApiException as exc:
                if exc.status != 404:
                    raise
                raise PlaybookFailed(f"{action}: ConfigMap {ref['namespace']}/{ref['name']} not found (real "
                                     "kubean's Job pod would hang in ContainerCreating)") from None
            if action not in (cm.data or {}):
                raise PlaybookFailed(f"{action}: ConfigMap {ref['namespace']}/{ref['name']} has no key {action} "
                                     f"(keys {sorted(cm.data or {})})")
            hosts = self._playbook_hosts(action, cm.data[action], hook)
            self._gather(job, inv, inv.pattern(hosts), action)
        elif action == "cluster-info.yml":
            self._gather(job, inv, inv.pattern("kube_control_plane[0]"), action)
        elif action == "disable-firewalld.yml":
            self._gather(job, inv, inv.pattern("all"), action)
        elif action == "upgrade-cluster.yml":
            self._gather(job, inv, inv.pattern("etcd,kube_control_plane"), action)
        else:  # contract() let nothing else through
            raise PlaybookFailed(f"hook {action} not emulated")

    @staticmethod
    def _playbook_hosts(action: str, text: str, hook: dict[str, Any]) -> str:
        try:
            plays = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlaybookFailed(f"{action}: the playbook does not parse: {exc}") from None
        if not isinstance(plays, list) or len(plays) != 1 or not isinstance(plays[0], dict) \
                or not isinstance(plays[0].get("tasks"), list) or not plays[0]["tasks"] \
                or not all(isinstance(t, dict) and len(set(t) - {"name"}) >= 1 for t in plays[0]["tasks"]):
            raise PlaybookFailed(f"{action}: expected one play with hosts and a list of tasks, got {plays!r}")
        hosts = str(plays[0].get("hosts", ""))
        node = next((o[len("-e node="):] for o in options(hook.get("extraArgs")) if o.startswith("-e node=")), None)
        templated = re.fullmatch(r"\{\{\s*node\s*\|\s*default\((['\"])(.+?)\1\)\s*\}\}", hosts)
        if templated:
            return node or templated.group(2)
        if "{{" in hosts:
            raise PlaybookFailed(f"{action}: hosts {hosts!r}: only \"{{{{ node | default('group') }}}}\" is emulated")
        return hosts

    def _remove_node(self, job: _Job, inv: Inventory, plan: Leave) -> None:
        play, node = "remove-node.yml", plan.node
        job.say(f"PLAYBOOK remove-node.yml -e node={node} reset_nodes={plan.reset_nodes} "
                f"allow_ungraceful_removal={plan.ungraceful}")
        if node not in inv.hosts:
            raise PlaybookFailed(f"{play}: node {node} is not in the inventory (the play would match no host and "
                                 "remove nothing)")
        if plan.reset_nodes:  # facts.yml on every host of the inventory
            self._gather(job, inv, list(inv.hosts), f"{play} (facts, reset_nodes=true)")
        first_cp, first_etcd = inv.groups["kube_control_plane"][0], inv.groups["etcd"][0]
        if node in (first_cp, first_etcd):
            raise PlaybookFailed(f"{play}: Currently cannot remove first control plane node or first etcd node "
                                 f"({node} is first in {'kube_control_plane' if node == first_cp else 'etcd'}); "
                                 "reorder the inventory first")
        self._gather(job, inv, [h for h in dict.fromkeys([first_cp, first_etcd])], f"{play} (delegation targets)")
        # pre-remove: drain, delegated to the first control-plane node
        try:
            target = self._core.read_node(node)
        except ApiException as exc:
            if exc.status != 404:
                raise
            target = None
            job.say(f"[{first_cp}] node {node} not in the cluster: drain skipped")
        if target is not None:
            ready = any(c.type == "Ready" and c.status == "True" for c in target.status.conditions or [])
            if not ready and not plan.ungraceful:
                raise PlaybookFailed(f"{play}: [{first_cp}] kubectl drain {node} timed out: the node is NotReady "
                                     "(unreachable); pass -e allow_ungraceful_removal=true (and -e reset_nodes=false "
                                     "for a host that cannot be reached)")
            if ready:
                self._core.patch_node(node, {"spec": {"unschedulable": True}})
                for pod in self._core.list_pod_for_all_namespaces().items:
                    if pod.spec.node_name == node:
                        try:
                            self._core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace)
                        except ApiException as exc:
                            if exc.status != 404:
                                raise
                job.say(f"[{first_cp}] drained {node}")
            else:
                job.say(f"[{first_cp}] drain of {node} failed and was ignored (allow_ungraceful_removal)")
        # remove-etcd-node, delegated to the first etcd node
        if node in inv.groups["etcd"]:
            address = inv.etcd_address(node) or (inv.address(node) if plan.reset_nodes else None)
            if not address:
                raise PlaybookFailed(f"{play}: 'ansible_default_ipv4' is undefined: {node} has neither ip nor "
                                     "access_ip and facts were not gathered (reset_nodes=false)")
            peer = f"https://{address}:2380"
            found = [m for m in self._members(job, inv) if (m.get("peerURLs") or [None])[0] == peer]
            if not found:
                raise PlaybookFailed(f"{play}: [{first_etcd}] no etcd member with peer URL {peer}: list object has no "
                                     "element 0 (Kubespray's remove-etcd-node fails on an already removed member, "
                                     "kubernetes-sigs/kubespray#12947)")
            member_id = format(found[0]["ID"], "x")
            end = time.monotonic() + REMOVE_SETTLE_S
            while True:
                rc, _, err = self._etcdctl(job, inv, first_etcd, f"member remove {member_id}", check=False)
                if rc == 0:
                    break
                if "unhealthy cluster" not in err or time.monotonic() > end or self._stop.is_set():
                    raise PlaybookFailed(f"[{first_etcd}] etcdctl member remove {member_id} failed rc={rc}: "
                                         f"{err.strip()[-400:]}")
                job.say(f"[{first_etcd}] member remove: unhealthy cluster (a leader change < 5 s ago); retrying "
                        "(a twin concession, see REMOVE_SETTLE_S)")
                time.sleep(1)
        # reset, on the node itself
        if plan.reset_nodes:
            host = self.twin.net.hosts.get(node)
            for pid in host.all_pids() if host else []:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            rc, _, err = self._ssh(job, node, inv.address(node),
                                   "rm -rf /var/lib/etcd/member /etc/kubernetes/manifests")
            if rc != 0:
                raise PlaybookFailed(f"{play}: [{node}] reset failed rc={rc}: {err.strip()[-300:]}")
            job.say(f"[{node}] reset")
        # post-remove: delete the Node, delegated to the first control-plane node (errors ignored)
        try:
            self._core.delete_node(node)
            job.say(f"[{first_cp}] kubectl delete node {node}")
        except ApiException as exc:
            if exc.status != 404:
                raise
            job.say(f"[{first_cp}] kubectl delete node {node}: not found (ignored)")

    def _cluster_yml(self, job: _Job, inv: Inventory) -> None:
        play = "cluster.yml --limit=etcd,kube_control_plane"
        job.say(f"PLAYBOOK {play}")
        limited = inv.pattern("etcd,kube_control_plane")
        stray = [n for n in inv.groups["kube_control_plane"] if n not in inv.groups["etcd"]]
        if stray:
            raise PlaybookFailed(f"{play}: {stray} in kube_control_plane but not in etcd: the twin models stacked etcd")
        self._gather(job, inv, limited, play)
        members = self._members(job, inv)

        def member_of(name: str) -> dict[str, Any] | None:
            peer = f"https://{inv.etcd_address(name) or inv.address(name)}:2380"
            return next((m for m in members if peer in (m.get("peerURLs") or [])), None)
        for role in ("kube_control_plane", "etcd"):
            name = inv.groups[role][0]
            member = member_of(name)
            if member is None or not member.get("name") or member.get("isLearner"):
                raise PlaybookFailed(f"{play}: the first {role} host {name} is not a started etcd voter; Kubespray "
                                     "would initialise the cluster on it (reorder the inventory: an existing member "
                                     "first)")
        self._healthy(job, inv, play)
        for name in inv.groups["etcd"]:
            member = member_of(name)
            if member is not None and member.get("name"):
                if member.get("isLearner"):
                    raise PlaybookFailed(f"{play}: [{name}] etcd member {member['name']} is a learner that was never "
                                         "promoted; remove it before re-running")
                job.say(f"ok: [{name}] already an etcd member")
                continue
            address = inv.etcd_address(name) or inv.address(name)
            rc, out, err = self._ssh(job, name, inv.address(name),
                                     f"kubespray-node --node-name {shlex.quote(name)} --ip {shlex.quote(address)}",
                                     timeout_s=self._node_timeout)
            job.say(f"[{name}] kubespray-node rc={rc}\n{out.strip()}\n{err.strip()[-2000:]}")
            if rc != 0:
                raise PlaybookFailed(f"{play}: [{name}] joining failed rc={rc}: {err.strip()[-600:]}")
            members = self._members(job, inv)
        self._healthy(job, inv, play)
