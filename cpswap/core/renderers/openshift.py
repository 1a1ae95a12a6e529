"""Renderers for OpenShift, following seed 003 for both of its cases. Pure.

- Machine not running (the slot's host changes): remove the member through a healthy etcd pod's
  endpoint, delete the ``etcd-peer/serving/serving-metrics-<node>`` secrets, delete the Machine
  (its spec is kept in a ConfigMap first) and create a copy with a new name and without status
  and providerID, then force an etcd redeployment if the etcd operator has not scaled in the new
  node by itself, and verify.
- etcd pod crashlooping (same host, ``rebuild`` bumped): the same, except that instead of a new
  Machine the crashlooping static pod's manifest and data directory are moved aside on the node.
"""
from __future__ import annotations

from shlex import quote

from cpswap.core.model import EtcdSettings, Host, Member, OpenshiftSettings
from cpswap.core.renderers.executor import CPSWAP

MANIFEST = "/etc/kubernetes/manifests/etcd-pod.yaml"
BACKUP = "/var/lib/etcd-backup"


def _ns(openshift: OpenshiftSettings) -> str:
    return f"--etcd-namespace {quote(openshift.etcd_namespace)} --machine-namespace {quote(openshift.machine_namespace)}"


def _etcd_flags(etcd: EtcdSettings, openshift: OpenshiftSettings) -> str:
    return (f"--preset {quote(etcd.preset)} --discover openshift --etcd-namespace {quote(openshift.etcd_namespace)} "
            f"--machine-namespace {quote(openshift.machine_namespace)}")


def render_openshift_etcd_leave(*, host: Host, etcd: EtcdSettings, openshift: OpenshiftSettings,
                                deadline_s: int = 300) -> str:
    """Remove the member through the endpoints of Running etcd pods on other nodes (seed: "choose a
    pod that is not on the affected node"), after a verified snapshot; with an Active
    ControlPlaneMachineSet and the etcd operator's preDrain hook on the node's Machine, only the
    snapshot: the operator removes the member when the Machine is deleted (cpswap.core.openshift)."""
    return (f"{CPSWAP} openshift leave {_etcd_flags(etcd, openshift)} "
            f"--node {quote(host.name)} --ip {quote(host.ip)}{etcd.snapshot_flag()} "
            f"--deadline {deadline_s}")


def render_openshift_etcd_verify(*, host: Host, etcd: EtcdSettings, openshift: OpenshiftSettings,
                                 max_lag: int = 1000, deadline_s: int = 1800) -> str:
    return (f"{CPSWAP} etcd wait-member --preset {quote(etcd.preset)} --discover openshift "
            f"--etcd-namespace {quote(openshift.etcd_namespace)} "
            f"--node {quote(host.name)} --ip {quote(host.ip)} --max-lag {max_lag} --deadline {deadline_s}")


def render_delete_etcd_secrets(*, host: Host, openshift: OpenshiftSettings) -> str:
    return f"{CPSWAP} openshift delete-etcd-secrets {_ns(openshift)} --node {quote(host.name)}"


def render_delete_machine(*, member: Member, openshift: OpenshiftSettings, deadline_s: int = 900) -> str:
    return (f"{CPSWAP} openshift delete-machine {_ns(openshift)} --slot {quote(member.slot)} "
            f"--node {quote(member.host.name)} --deadline {deadline_s}")


def render_create_machine(*, member: Member, openshift: OpenshiftSettings, deadline_s: int = 3600) -> str:
    machine = f" --machine {quote(member.machine)}" if member.machine else ""
    return (f"{CPSWAP} openshift create-machine {_ns(openshift)} --slot {quote(member.slot)} "
            f"--node {quote(member.host.name)} --ip {quote(member.host.ip)}{machine} --deadline {deadline_s}")


def redeploy_reason(*, member: Member) -> str:
    return f"cpswap-{member.slot}-{member.host.name}-r{member.host.rebuild}"


def render_redeploy(*, member: Member, openshift: OpenshiftSettings, etcd: EtcdSettings, deadline_s: int = 300) -> str:
    """forceRedeploymentReason when the etcd operator's own rollout will not reach the node
    (cpswap.core.openshift.redeploy_decision, waited for within the deadline); the etcd flags let it
    tell whether the operator's revision precondition needs the quorum guard off
    (cpswap.core.openshift.revision_blocked)."""
    return (f"{CPSWAP} openshift redeploy {_etcd_flags(etcd, openshift)} --node {quote(member.host.name)} "
            f"--reason {quote(redeploy_reason(member=member))} --deadline {deadline_s}")


def render_etcd_reset(*, host: Host, recheck_s: int = 5) -> str:
    """Seed 003 2.4.2 step 1 on the node itself: move the crashlooping etcd static pod's manifest and
    its data directory's contents aside (/var/lib/etcd is often a mount point, which cannot be
    moved itself). Destroys nothing: moved data is kept. A node whose etcd serves peers (a
    listener on :2380 in the node's network namespace, seen twice ``recheck_s`` apart, so a
    crashlooping etcd's brief restarts and a just-removed member shutting down do not count) is
    left alone: that is a first `up` on a healthy cluster, or a member that recovered. The check
    is per network namespace, not per process table (etcd runs with host networking)."""
    name = quote(host.name)
    return (
        "set -eu; "
        "command -v ss >/dev/null || { echo 'ss (iproute2) is needed to tell a serving etcd from a crashlooping "
        "one; nothing moved' >&2; exit 1; }; "
        # an ss failure must not read as "nothing listens" (that would move a healthy member aside)
        "serving() { out=$(ss -Hltn 'sport = :2380') || { echo 'ss failed; cannot tell whether etcd serves "
        "peers here; nothing moved' >&2; exit 1; }; test -n \"$out\"; }; "
        f"if serving && sleep {int(recheck_s)} && serving; then "
        f"echo {name}': etcd is serving peers here (:2380, checked twice {int(recheck_s)}s apart); nothing to reset'; "
        "exit 0; fi; "
        f"mkdir -p {BACKUP}; stamp=$(date +%Y%m%dT%H%M%S); "
        f"if test -f {MANIFEST}; then mv {MANIFEST} {BACKUP}/etcd-pod.yaml.$stamp; "
        f"echo {name}': moved the etcd static pod manifest to '{BACKUP}; fi; "
        f"if test -d /var/lib/etcd && test -n \"$(ls -A /var/lib/etcd 2>/dev/null)\"; then "
        f"mkdir -p {BACKUP}/etcd-data.$stamp && "
        f"find /var/lib/etcd -mindepth 1 -maxdepth 1 -exec mv -t {BACKUP}/etcd-data.$stamp {{}} +; "
        f"echo {name}': moved the contents of /var/lib/etcd aside to '{BACKUP}/etcd-data.$stamp; fi"
    )
