"""`cpswap kube`: inventory, drain, delete-node, wait-node, cordon/uncordon, capacity, recover-pvcs.

Uses the official kubernetes client (no kubectl). Kubeconfig from ``--kubeconfig PATH`` or
``$CPSWAP_KUBECONFIG_DATA`` (text, secret stack config). Progress goes to stderr. Not pure.
"""
from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from cpswap.cli import FILE, HOST_PORT, NAME, NAMES, POLICY_JSON, SECONDS, URLS, lazy_module, progress
from cpswap.core.errors import ConfigError, UnsafeOperationError, Violation
from cpswap.core.inputs import host_port
from cpswap.core.membership import DEFAULT_LOCK_TTL_S, DEFAULT_LOCK_WAIT_S

ex = lazy_module("cpswap.executors.kube")  # the Kubernetes client loads on the first call, not for --help
recovery = lazy_module("cpswap.executors.recovery")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=FILE, help="kubeconfig path (default: $CPSWAP_KUBECONFIG_DATA text)")
    parser.add_argument("--request-timeout", type=SECONDS, default=10.0, help="per-request API timeout in seconds")
    parser.add_argument("--json", action="store_true")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kube = sub.add_parser("kube", help="Kubernetes-side node and stateful-pod recovery")
    cmds = kube.add_subparsers(dest="kube_command", required=True)
    p = cmds.add_parser("inventory", help="claims pinned to a node, their owners, pods and sizes")
    _common(p)
    p.add_argument("--node", type=NAME, required=True)
    p.set_defaults(func=_inventory)
    p = cmds.add_parser("drain", help="cordon and empty a node; never hangs on a NotReady node")
    _common(p)
    p.add_argument("--node", type=NAME, required=True)
    p.add_argument("--drain-timeout", "--timeout", dest="drain_timeout", type=SECONDS, default=120,
                   help="eviction wait bound in seconds (skipped on a NotReady node; --timeout is the old spelling)")
    p.set_defaults(func=_drain)
    p = cmds.add_parser("delete-node", help="(drain and) delete a Node; absent counts as success")
    _common(p)
    p.add_argument("--node", type=NAME, required=True)
    p.add_argument("--drain", action="store_true")
    p.add_argument("--drain-timeout", type=SECONDS, default=120)
    _etcd_lock_flags(p)
    p.set_defaults(func=_delete_node)
    p = cmds.add_parser("check-kubeadm-endpoint",
                        help="kubeadm-config's controlPlaneEndpoint must be the VIP (it goes into apiserver SANs)")
    _common(p)
    p.add_argument("--endpoint", type=HOST_PORT, required=True, help="the VIP as host:port ([ipv6]:port)")
    p.set_defaults(func=_check_kubeadm_endpoint)
    p = cmds.add_parser("wait-node", help="wait until a Node is registered and Ready")
    _common(p)
    p.add_argument("--node", type=NAME, required=True)
    p.add_argument("--deadline", type=SECONDS, default=600)
    p.set_defaults(func=_wait_node)
    p = cmds.add_parser("cordon", help="cordon nodes, marking them so uncordon restores exactly")
    _common(p)
    p.add_argument("--node", type=NAMES, required=True, help="comma-separated node names")
    p.set_defaults(func=_cordon)
    p = cmds.add_parser("uncordon", help="uncordon the nodes cpswap cordoned (operator-cordoned ones stay)")
    _common(p)
    p.add_argument("--node", type=NAMES, help="comma-separated node names (default: every node cpswap marked)")
    p.set_defaults(func=_uncordon)
    p = cmds.add_parser("capacity", help="can the survivors' pod slots take what moves off a node?")
    _common(p)
    p.add_argument("--node", type=NAME, required=True)
    p.set_defaults(func=_capacity)
    p = cmds.add_parser("recover-pvcs", help="recreate stateful pods whose local-path claims were on a lost node")
    _common(p)
    p.add_argument("--new-node", type=NAME, required=True)
    p.add_argument("--old-node", type=NAME, help="the departed node: only claims pinned to it are taken")
    p.add_argument("--orphaned", action="store_true",
                   help="with --old-node: only once that Node no longer exists; alone: claims pinned to any Node "
                        "that no longer exists")
    p.add_argument("--policy-json", type=POLICY_JSON, required=True, help="the stack's cpswap:pvcRecovery object as JSON")
    p.add_argument("--survivors", type=NAMES, help="comma-separated nodes to cordon meanwhile (default: every other node)")
    p.add_argument("--state-dir", type=Path, default=Path(".cpswap/recovery"))
    p.add_argument("--deadline", type=SECONDS, default=900, help="per-claim wait deadline in seconds")
    p.set_defaults(func=_recover)


def _etcd_lock_flags(parser: argparse.ArgumentParser) -> None:
    """The cluster's etcd, for the membership lock a control-plane Node's delete takes (issue 14)."""
    from cpswap.cli.etcd import _preset as etcd_preset
    group = parser.add_argument_group("etcd (membership lock; required to delete a control-plane Node)")
    group.add_argument("--endpoints", type=URLS, default=[], help="comma-separated https://host:2379 URLs")
    group.add_argument("--cacert", type=FILE)
    group.add_argument("--cert", type=FILE)
    group.add_argument("--key", type=FILE)
    group.add_argument("--preset", type=etcd_preset, metavar="PRESET", help="as for `cpswap etcd`")
    group.add_argument("--discover", choices=("kube",), help="add the control-plane Node IPs as etcd endpoints")
    group.add_argument("--lock-ttl", type=int, default=DEFAULT_LOCK_TTL_S, help="lease TTL of the membership lock")
    group.add_argument("--lock-wait", type=SECONDS, default=DEFAULT_LOCK_WAIT_S,
                       help="how long to queue for the membership lock before giving up")


@contextlib.contextmanager
def _membership_lock(args: argparse.Namespace, what: str) -> Iterator[object]:
    from cpswap.executors import etcd
    from cpswap.executors.etcd_lock import membership_lock

    endpoints = list(args.endpoints)
    if args.discover == "kube":
        endpoints += ex.control_plane_endpoints(kubeconfig=args.kubeconfig, timeout=args.request_timeout)
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(etcd.preset_connection(preset=args.preset, endpoints=endpoints, cacert=args.cacert,
                                                          cert=args.cert, key=args.key, timeout=args.request_timeout))
        yield stack.enter_context(membership_lock(conn, what=what, ttl_s=args.lock_ttl, wait_s=args.lock_wait,
                                                  progress=progress))


def _api(args: argparse.Namespace):
    return ex.connect(kubeconfig=args.kubeconfig, timeout=args.request_timeout)


def _inventory(args: argparse.Namespace) -> int:
    with _api(args) as api:
        claims = ex.claims_on(api, nodes={args.node})
    if args.json:
        print(json.dumps([asdict(c) for c in claims], indent=2))
    else:
        for c in claims:
            print(f"{c.namespace}/{c.name}  {c.size}  {c.owner_kind} {c.owner_name}  pv={c.volume or '-'}  "
                  f"pods={','.join(c.pods) or '-'}")
    return 0


def _drain(args: argparse.Namespace) -> int:
    with _api(args) as api:
        ex.drain(api, name=args.node, timeout_s=args.drain_timeout, progress=progress)
    return 0


def _delete_node(args: argparse.Namespace) -> int:
    with _api(args) as api:
        lock = (None if not (args.preset or args.endpoints or args.cacert)
                else lambda what: _membership_lock(args, what))
        print(ex.delete_node(api, name=args.node, drain_first=args.drain, drain_timeout_s=args.drain_timeout,
                             progress=progress, lock=lock))
    return 0


def _check_kubeadm_endpoint(args: argparse.Namespace) -> int:
    from cpswap.core.kubespray import endpoint_covers

    host, port = args.endpoint
    shown = host_port(host, port)
    with _api(args) as api:
        cm = ex.read_config_map(api, "kube-system", "kubeadm-config")
    text = (cm.data or {}).get("ClusterConfiguration", "") if cm is not None else ""
    ok, found = endpoint_covers(text, vip_host=host, vip_port=port)
    if not ok:
        raise UnsafeOperationError(
            f"kube-system/kubeadm-config: controlPlaneEndpoint must be the VIP {shown} so joining nodes "
            f"use it and their apiserver certificates carry it in their SANs; found {found}")
    print(f"kubeadm-config: controlPlaneEndpoint is the VIP {shown} ({found})")
    return 0


def _wait_node(args: argparse.Namespace) -> int:
    with _api(args) as api:
        ex.wait_node(api, name=args.node, deadline_s=args.deadline, progress=progress)
    return 0


def _cordon(args: argparse.Namespace) -> int:
    with _api(args) as api:
        ex.cordon(api, names=args.node, progress=progress)
    return 0


def _uncordon(args: argparse.Namespace) -> int:
    with _api(args) as api:
        ex.uncordon_marked(api, progress=progress,
                           names=args.node)
    return 0


def _capacity(args: argparse.Namespace) -> int:
    with _api(args) as api:
        verdict = ex.capacity(api, name=args.node)
    print(json.dumps(asdict(verdict)) if args.json else verdict.reason)
    if not verdict.allowed:
        raise UnsafeOperationError(verdict.reason)
    return 0


def _recover(args: argparse.Namespace) -> int:
    if not args.old_node and not args.orphaned:
        raise ConfigError([Violation("--old-node", "", "give the departed node (--old-node), --orphaned, or both")])
    with _api(args) as api:
        report = recovery.recover_pvcs(api, new_node=args.new_node, policy_json=args.policy_json,
                                       old_node=args.old_node, orphaned=args.orphaned, state_dir=args.state_dir,
                                       deadline_s=args.deadline, progress=progress, survivors=args.survivors)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for row in report:
            print(f"{row['namespace']}/{row['name']}: {row['outcome']}")
    return 0
