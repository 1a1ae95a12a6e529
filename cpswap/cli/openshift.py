"""`cpswap openshift`: leave, delete-etcd-secrets, delete-machine, create-machine, redeploy (seed 003).

Kubeconfig from ``--kubeconfig PATH`` or ``$CPSWAP_KUBECONFIG_DATA`` (secret stack config). Progress on stderr. Not pure.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from cpswap.cli import FILE, IP, NAME, NAMESPACE, OBJECT_NAME, SECONDS, SLOT, WORD, progress
from cpswap.core.errors import PermanentError


def _namespaces(parser: argparse.ArgumentParser, *, etcd_flags: bool = False) -> None:
    if etcd_flags:  # the etcd connection flags, with --etcd-namespace and --kubeconfig for --discover openshift
        from cpswap.cli.etcd import connection_flags

        connection_flags(parser)
    else:
        parser.add_argument("--etcd-namespace", type=NAMESPACE, default="openshift-etcd")
        parser.add_argument("--kubeconfig", type=FILE, help="kubeconfig path (default: $CPSWAP_KUBECONFIG_DATA text)")
    parser.add_argument("--machine-namespace", type=NAMESPACE, default="openshift-machine-api")
    parser.add_argument("--node", type=NAME, required=True)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    osh = sub.add_parser("openshift", help="OpenShift etcd member replacement (seed 003)")
    cmds = osh.add_subparsers(dest="openshift_command", required=True)
    p = cmds.add_parser("leave", help="remove the node's etcd member (snapshot first), or leave it to the etcd "
                                      "operator when controlplanemachinesets/cluster is Active")
    _namespaces(p, etcd_flags=True)
    p.add_argument("--ip", type=IP, required=True)
    p.add_argument("--snapshot-dir", type=Path, default=None,
                   help="private (0700) directory for the snapshot taken first; default: $CPSWAP_STATE_DIR/snapshots "
                        "or ${XDG_STATE_HOME:-~/.local/state}/cpswap/snapshots, outside the repository")
    p.add_argument("--deadline", type=SECONDS, default=300)
    p.set_defaults(func=_leave)
    p = cmds.add_parser("delete-etcd-secrets", help="etcd-peer/serving/serving-metrics-<node>; absent is fine")
    _namespaces(p)
    p.set_defaults(func=_secrets)
    p = cmds.add_parser("delete-machine", help="keep the node's Machine spec, then delete the Machine")
    _namespaces(p)
    p.add_argument("--slot", type=SLOT, required=True)
    p.add_argument("--deadline", type=SECONDS, default=900)
    p.set_defaults(func=_delete_machine)
    p = cmds.add_parser("create-machine", help="the kept spec under a new name, without status and providerID; "
                                               "with an Active ControlPlaneMachineSet its replacement, adopted")
    _namespaces(p)
    p.add_argument("--slot", type=SLOT, required=True)
    p.add_argument("--ip", type=IP, required=True)
    p.add_argument("--machine", type=OBJECT_NAME,
                   help="the new Machine's name (default: the old base name, next free index)")
    p.add_argument("--deadline", type=SECONDS, default=3600)
    p.set_defaults(func=_create_machine)
    p = cmds.add_parser("redeploy", help="wait while the etcd operator scales the node in; then "
                                         "forceRedeploymentReason (unique) only if every node is at the latest "
                                         "revision and the node's etcd pod is not Ready; the quorum guard is off "
                                         "only while the revision controller needs it")
    _namespaces(p, etcd_flags=True)
    p.add_argument("--reason", type=WORD, required=True)
    p.add_argument("--deadline", type=SECONDS, default=300,
                   help="seconds for the whole command: the operator scaling the node in, then the new revision")
    p.set_defaults(func=_redeploy)


def _leave(args: argparse.Namespace) -> int:
    from cpswap.cli.etcd import connect_from_args
    from cpswap.executors import etcd as etcd_ex
    from cpswap.executors import openshift as ex

    snapshot_dir = args.snapshot_dir or etcd_ex.default_snapshot_dir()

    def snapshot() -> object:
        with connect_from_args(args, departing=(args.node, args.ip)) as conn:
            out = snapshot_dir.expanduser() / f"before-remove-{args.node}-{int(time.time())}.db"
            return etcd_ex.snapshot(conn, out=out, progress=progress)

    def remove() -> object:
        with connect_from_args(args, departing=(args.node, args.ip)) as conn:
            return etcd_ex.remove_member(conn, name=args.node, ip=args.ip, snapshot_dir=snapshot_dir,
                                         deadline_s=args.deadline, progress=progress)
    print(ex.leave_member(namespace=args.machine_namespace, node=args.node, snapshot=snapshot, remove=remove,
                          progress=progress, kubeconfig=args.kubeconfig))
    return 0


def _secrets(args: argparse.Namespace) -> int:
    from cpswap.executors import openshift as ex

    ex.delete_etcd_secrets(namespace=args.etcd_namespace, node=args.node, progress=progress,
                           kubeconfig=args.kubeconfig)
    return 0


def _delete_machine(args: argparse.Namespace) -> int:
    from cpswap.executors import openshift as ex

    print(ex.delete_machine(namespace=args.machine_namespace, slot=args.slot, node=args.node,
                            deadline_s=args.deadline, progress=progress, kubeconfig=args.kubeconfig))
    return 0


def _create_machine(args: argparse.Namespace) -> int:
    from cpswap.executors import openshift as ex

    print(ex.create_machine(namespace=args.machine_namespace, slot=args.slot, node=args.node, ip=args.ip,
                            machine=args.machine, deadline_s=args.deadline, progress=progress,
                            kubeconfig=args.kubeconfig))
    return 0


def _redeploy(args: argparse.Namespace) -> int:
    from cpswap.cli.etcd import connect_from_args
    from cpswap.executors import etcd as etcd_ex
    from cpswap.executors import openshift as ex

    def members_health() -> tuple[int, int]:
        with connect_from_args(args) as conn:
            facts = etcd_ex.observe_etcd(connection=conn)
        if not facts.reachable:
            raise PermanentError(f"etcd did not answer ({facts.error}): cannot tell whether the etcd operator would "
                                 f"roll a revision")
        return sum(1 for m in facts.members if m.healthy), len(facts.members)
    print(ex.redeploy(etcd_namespace=args.etcd_namespace, node=args.node, reason=args.reason,
                      progress=progress, members_health=members_health, deadline_s=args.deadline,
                      kubeconfig=args.kubeconfig))
    return 0
