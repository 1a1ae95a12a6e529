"""`cpswap status --stack S [--json]`: where a swap stands. Read-only, short timeouts. Not pure.

Reads the stack file, the last deployment's exported membership (``.cpswap/applied-<stack>.json``),
the run record (``.cpswap/runs/<stack>/steps.jsonl``), the PVC-recovery journals
(``.cpswap/recovery/recover-<node>.jsonl``) and the snapshots (``etcd.snapshotDir``). Live state
only with credentials, each part on its own (else it says unobserved): etcd with
``$CPSWAP_ETCD_*_DATA``; Nodes, OpenShift Machines with ``$CPSWAP_KUBECONFIG_DATA``; kubean's
ClusterOperations with ``$CPSWAP_GLOBAL_KUBECONFIG_DATA``; the VIP holder (its hostname over SSH,
the preflight's probe) with ``$CPSWAP_SSH_KEY_DATA``. Nothing is written. cpswap.core.status decides.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cpswap.cli import SECONDS, STACK
from cpswap.core import runrecord as rr
from cpswap.core import status as st


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="where are we: config vs live membership, interrupted journals, snapshots")
    p.add_argument("--stack", type=STACK, default=os.environ.get("PULUMI_STACK") or None,
                   required=not os.environ.get("PULUMI_STACK"))
    p.add_argument("--dir", type=Path, default=Path("."), help="project directory (default: .)")
    p.add_argument("--recovery-dir", type=Path, default=Path(".cpswap/recovery"))
    p.add_argument("--timeout", type=SECONDS, default=3.0, help="observation timeout in seconds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _journals(directory: Path) -> tuple[st.Journal, ...]:
    found = []
    for path in sorted(directory.glob("recover-*.jsonl")) if directory.is_dir() else []:
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if entries:
            claims = tuple(sorted({e["claim"] for e in entries if "claim" in e}))
            found.append(st.Journal(name=path.name, claims=claims, last_step=str(entries[-1].get("step", "?"))))
    return tuple(found)


def _snapshots(directory: Path, now: float) -> tuple[st.Snapshot, ...]:
    files = sorted(directory.glob("*.db")) if directory.is_dir() else []
    return tuple(st.Snapshot(path=str(p), age_s=now - p.stat().st_mtime, size=p.stat().st_size) for p in files)


def _etcd(model, timeout: float):  # noqa: ANN001, ANN202 - StackModel -> EtcdFacts | None
    from cpswap.executors.etcd import ENV_KEYS

    if not all(os.environ.get(k) for k in ENV_KEYS):
        return None
    from cpswap.executors.observe import observe_from_environment

    observation = observe_from_environment(model=model, departing_node=None, timeout=timeout, warn=lambda _: None)
    return observation.etcd


def _kube(model, timeout: float) -> st.KubeView | None:  # noqa: ANN001 - StackModel
    """Nodes (and OpenShift Machines) through ``$CPSWAP_KUBECONFIG_DATA``; kubean's ClusterOperations
    through ``$CPSWAP_GLOBAL_KUBECONFIG_DATA``. Never raises: a failure is the view's error."""
    if not os.environ.get("CPSWAP_KUBECONFIG_DATA"):
        return None
    from cpswap.executors import kube

    pending: tuple[st.Pending, ...] = ()
    try:
        with kube.connect(timeout=timeout) as api:
            nodes = tuple((n.metadata.name, kube.node_ready(n)) for n in kube.list_nodes(api))
            if model.distribution == "openshift":
                pending = _openshift(model, api)
        if model.distribution == "kubean":
            pending = _kubean(timeout)
    except Exception as exc:  # noqa: BLE001 - any client failure: Kubernetes unobserved, with the reason
        return st.KubeView(reachable=False, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    return st.KubeView(reachable=True, nodes=nodes, pending=pending)


def _kubean(timeout: float) -> tuple[st.Pending, ...]:
    if not os.environ.get("CPSWAP_GLOBAL_KUBECONFIG_DATA"):
        return ()
    from cpswap.executors import kubean

    with kubean.connect_global(timeout=timeout) as g:
        items = g.objects.list_cluster_custom_object(kubean.GROUP, kubean.VERSION, "clusteroperations",
                                                     _request_timeout=timeout).get("items") or []
    return st.kubean_pending(tuple(items))


def _openshift(model, api) -> tuple[st.Pending, ...]:  # noqa: ANN001 - StackModel, kube.Api
    from cpswap.executors import kube, openshift

    assert model.openshift is not None
    namespace = model.openshift.machine_namespace
    machines = tuple(openshift._machines(api, namespace))
    templates = []
    for member in model.members:
        cm = kube.read_config_map(api, namespace, f"cpswap-machine-{member.slot}")
        if cm is not None:
            templates.append((member.slot, (cm.data or {}).get("node", "")))
    return st.openshift_pending(model=model, machines=machines, templates=tuple(templates))


def _vip(model, timeout: float) -> st.VipView | None:  # noqa: ANN001 - StackModel
    """Who answers on the VIP address over SSH (the preflight's probe: its hostname)."""
    key = os.environ.get("CPSWAP_SSH_KEY_DATA")
    if not key:
        return None
    from cpswap.executors import preflight

    probe = preflight.probe_host(address=model.endpoint.host,
                                 ssh=preflight.SshAccess(user=model.ssh.user, port=model.ssh.port, key_text=key),
                                 timeout_s=max(timeout, 5.0))
    return st.VipView(address=model.endpoint.host, holder=probe.hostname, error=probe.error)


def _last_run(directory: Path, stack: str) -> tuple[rr.RunSummary | None, str]:
    from cpswap.executors import runrecord

    path = runrecord.record_path(directory=directory, stack=stack)
    return rr.summarize_run(rr.parse_lines(runrecord.read(path=path)), stack=stack), str(path)


def run(args: argparse.Namespace) -> int:
    from cpswap.stackfiles import load_applied, load_model

    directory = args.dir.resolve()
    model = load_model(directory=directory, stack=args.stack)
    applied = load_applied(directory=directory, stack=args.stack, model=model)
    recovery = args.recovery_dir if args.recovery_dir.is_absolute() else directory / args.recovery_dir
    if model.etcd.snapshot_dir:
        snapshot_dir = Path(model.etcd.snapshot_dir)
        snapshot_dir = snapshot_dir if snapshot_dir.is_absolute() else directory / snapshot_dir
    else:
        from cpswap.executors.etcd import default_snapshot_dir

        snapshot_dir = default_snapshot_dir()
    last_run, record = _last_run(directory, model.stack)
    report = st.decide_status(model=model, applied=applied.as_dict(), etcd=_etcd(model, args.timeout),
                              journals=_journals(recovery), snapshots=_snapshots(snapshot_dir, time.time()),
                              run=last_run, record=record, kube=_kube(model, args.timeout),
                              vip=_vip(model, args.timeout))
    print(json.dumps(report.as_dict(), indent=2) if args.json else st.render_status(report))
    return 0
