"""`cpswap kubean`: leave, inventory-add, wait (seed 001 through kubean ClusterOperations).

Global cluster kubeconfig from ``--global-kubeconfig PATH`` or ``$CPSWAP_GLOBAL_KUBECONFIG_DATA``; the
managed cluster's from ``--kubeconfig PATH`` or ``$CPSWAP_KUBECONFIG_DATA``; etcd from the connection flags of `cpswap etcd`. Not pure.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cpswap.cli import FILE, IMAGE, IP, NAME, NAMESPACE, OBJECT_NAME, SECONDS, progress
from cpswap.core.model import KubeanSettings


def _settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", type=OBJECT_NAME, required=True, help="the clusters.kubean.io object")
    parser.add_argument("--namespace", type=NAMESPACE, default="kubean-system")
    parser.add_argument("--image", type=IMAGE, required=True, help="the spray-job image used at deploy")


def _kubeconfigs(parser: argparse.ArgumentParser, *, managed: bool = True) -> None:
    parser.add_argument("--global-kubeconfig", type=FILE,
                        help="kubean's global cluster kubeconfig path (default: $CPSWAP_GLOBAL_KUBECONFIG_DATA text)")
    if managed:
        parser.add_argument("--kubeconfig", type=FILE,
                            help="the managed cluster's kubeconfig path (default: $CPSWAP_KUBECONFIG_DATA text)")


def _kubean(args: argparse.Namespace) -> KubeanSettings:
    return KubeanSettings(cluster=args.cluster, image=args.image, namespace=args.namespace)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cpswap.cli.etcd import connection_flags

    kubean = sub.add_parser("kubean", help="kubean (DCE 5.0) ClusterOperations and inventory")
    cmds = kubean.add_subparsers(dest="kubean_command", required=True)
    p = cmds.add_parser("leave", help="guard + snapshot etcd, reorder a first node, remove-node.yml, fix pointers")
    _settings(p)
    connection_flags(p)  # its --kubeconfig is the managed cluster's (etcd discovery and Nodes)
    _kubeconfigs(p, managed=False)
    p.add_argument("--node", type=NAME, required=True)
    p.add_argument("--ip", type=IP, required=True)
    p.add_argument("--operation", type=OBJECT_NAME, required=True, help="the remove ClusterOperation's name")
    p.add_argument("--snapshot-dir", type=Path, default=None,
                   help="private (0700) directory for the snapshot taken first; default: $CPSWAP_STATE_DIR/snapshots "
                        "or ${XDG_STATE_HOME:-~/.local/state}/cpswap/snapshots, outside the repository")
    p.add_argument("--deadline", type=SECONDS, default=3600)
    p.set_defaults(func=_leave)
    p = cmds.add_parser("inventory-add", help="put a joining host into hosts-conf's control-plane groups")
    _settings(p)
    _kubeconfigs(p)
    p.add_argument("--node", type=NAME, required=True)
    p.add_argument("--ip", type=IP, required=True)
    p.set_defaults(func=_inventory_add)
    p = cmds.add_parser("wait", help="wait for a ClusterOperation; Failed stops with the job name")
    _settings(p)
    _kubeconfigs(p)
    p.add_argument("--operation", type=OBJECT_NAME, required=True)
    p.add_argument("--node", type=NAME,
                   help="without the operation (never declared: adoption), this Node must be Ready")
    p.add_argument("--deadline", type=SECONDS, default=5400)
    p.set_defaults(func=_wait)


def _leave(args: argparse.Namespace) -> int:
    from cpswap.cli.etcd import connect_from_args
    from cpswap.executors import etcd as etcd_ex
    from cpswap.executors import kubean as ex

    args.discover = args.discover or "kube"

    def guard() -> object:
        with connect_from_args(args) as conn:
            return etcd_ex.guard_removal(conn, name=args.node, ip=args.ip,
                                         snapshot_dir=args.snapshot_dir or etcd_ex.default_snapshot_dir(),
                                         deadline_s=min(args.deadline, 300), progress=progress,
                                         absent_reason=f"removed by kubean's remove-node.yml ({args.operation})")

    ex.leave(kubean=_kubean(args), node=args.node, ip=args.ip, operation=args.operation, guard=guard,
             deadline_s=args.deadline, progress=progress, kubeconfig=args.kubeconfig,
             global_kubeconfig=args.global_kubeconfig)
    print(f"{args.node}: left through kubean")
    return 0


def _inventory_add(args: argparse.Namespace) -> int:
    from cpswap.executors import kubean as ex

    ex.inventory_add(kubean=_kubean(args), node=args.node, ip=args.ip, progress=progress, kubeconfig=args.kubeconfig,
                     global_kubeconfig=args.global_kubeconfig)
    return 0


def _wait(args: argparse.Namespace) -> int:
    from cpswap.executors import kubean as ex

    job = ex.wait(name=args.operation, node=args.node, deadline_s=args.deadline, progress=progress,
                  kubeconfig=args.kubeconfig, global_kubeconfig=args.global_kubeconfig)
    print(f"{args.operation}: Succeeded (job {job})")
    return 0
