"""Renderers for the kube executor command lines run from the operator's machine. Pure."""
from __future__ import annotations

import json
from shlex import quote
from collections.abc import Sequence

from cpswap.core.model import Endpoint, EtcdSettings, Host
from cpswap.core.recovery import ClaimPolicy
from cpswap.core.renderers.etcd import render_etcd_leave
from cpswap.core.renderers.executor import CPSWAP


def render_node_delete(*, host: Host, etcd: EtcdSettings, drain_timeout_s: int = 120) -> str:
    """Cordon, drain (skipping the eviction wait on a NotReady node) and delete the Node. Idempotent.
    A control-plane Node is deleted under the cluster's membership lock (the etcd found through the
    VIP's control-plane Nodes, as ``etcd remove`` finds it), so it queues behind any other change."""
    return (f"{CPSWAP} kube delete-node --node {quote(host.name)} --drain --drain-timeout {drain_timeout_s} "
            f"--preset {quote(etcd.preset)} --discover kube")


def render_node_verify(*, host: Host, deadline_s: int = 600) -> str:
    """Wait until the Node of ``host`` is registered and Ready."""
    return f"{CPSWAP} kube wait-node --node {quote(host.name)} --deadline {deadline_s}"


def policy_json(policies: Sequence[ClaimPolicy]) -> str:
    """The pvcRecovery object in canonical JSON (sorted keys) so inputs are byte-stable."""
    doc = {p.selector: {k: v for k, v in (("policy", p.policy), ("dataClass", p.data_class),
                                           ("order", p.order), ("owner", p.owner),
                                           ("acceptDataLoss", True if p.accept_data_loss else None)) if v is not None}
           for p in policies}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def render_pvc_recover(*, host: Host, policies: Sequence[ClaimPolicy], deadline_s: int = 900,
                       old_node: str | None = None) -> str:
    """Recover onto ``host`` the claims pinned to ``old_node`` once that Node is gone (``--orphaned
    --old-node``: not the claims of any other vanished node); without ``old_node`` (not known: an
    adoption, an in-place rebuild keeping the name) the claims of every Node that no longer exists."""
    departed = f" --old-node {quote(old_node)}" if old_node else ""
    return (f"{CPSWAP} kube recover-pvcs --new-node {quote(host.name)} --orphaned{departed} "
            f"--policy-json {quote(policy_json(policies))} --deadline {deadline_s}")


def render_handover(*, old: Host, new: Host, policies: Sequence[ClaimPolicy], etcd: EtcdSettings,
                    recover_deadline_s: int = 900, drain_timeout_s: int = 600, remove_deadline_s: int = 300) -> str:
    """A surge's last step, on the operator's machine (issue 16): the claims pinned to ``old`` are
    recreated on ``new`` by their policies, ``old`` is drained with eviction (PodDisruptionBudgets
    respected, bounded), its etcd member removed (quorum-guarded, snapshot first) and its Node
    deleted. Each part is idempotent, so a re-run after an interruption resumes."""
    return (f"{CPSWAP} kube recover-pvcs --old-node {quote(old.name)} --new-node {quote(new.name)} "
            f"--policy-json {quote(policy_json(policies))} --deadline {recover_deadline_s} && "
            f"{CPSWAP} kube drain --node {quote(old.name)} --drain-timeout {drain_timeout_s} && "
            f"{render_etcd_leave(host=old, etcd=etcd, deadline_s=remove_deadline_s)} && "
            f"{render_node_delete(host=old, etcd=etcd)}")


def render_kubeadm_endpoint_check(*, endpoint: Endpoint) -> str:
    """kubeadm-config's controlPlaneEndpoint must be the VIP (kubeadm puts its host into every new
    apiserver certificate's SANs), or the certSANs must list the VIP."""
    return f"{CPSWAP} kube check-kubeadm-endpoint --endpoint {quote(str(endpoint))}"
