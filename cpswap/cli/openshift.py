"""`cpswap openshift`: delete-etcd-secrets, delete-machine, create-machine, redeploy (seed 003).

Kubeconfig from ``$CPSWAP_KUBECONFIG_DATA`` (secret stack config). Progress on stderr. Not pure.
"""
from __future__ import annotations

import argparse

from cpswap.cli import progress


def _namespaces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--etcd-namespace", default="openshift-etcd")
    parser.add_argument("--machine-namespace", default="openshift-machine-api")
    parser.add_argument("--node", required=True)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    osh = sub.add_parser("openshift", help="OpenShift etcd member replacement (seed 003)")
    cmds = osh.add_subparsers(dest="openshift_command", required=True)
    p = cmds.add_parser("delete-etcd-secrets", help="etcd-peer/serving/serving-metrics-<node>; absent is fine")
    _namespaces(p)
    p.set_defaults(func=_secrets)
    p = cmds.add_parser("delete-machine", help="keep the node's Machine spec, then delete the Machine")
    _namespaces(p)
    p.add_argument("--slot", required=True)
    p.add_argument("--deadline", type=float, default=900)
    p.set_defaults(func=_delete_machine)
    p = cmds.add_parser("create-machine", help="the kept spec under a new name, without status and providerID")
    _namespaces(p)
    p.add_argument("--slot", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--machine", help="the new Machine's name (default: the old base name, next free index)")
    p.add_argument("--deadline", type=float, default=3600)
    p.set_defaults(func=_create_machine)
    p = cmds.add_parser("redeploy", help="forceRedeploymentReason (unique) unless the node's etcd pod is Ready")
    _namespaces(p)
    p.add_argument("--reason", required=True)
    p.add_argument("--settle", type=float, default=0, help="seconds to wait for the operator before patching")
    p.set_defaults(func=_redeploy)


def _secrets(args: argparse.Namespace) -> int:
    from cpswap.executors import openshift as ex

    ex.delete_etcd_secrets(namespace=args.etcd_namespace, node=args.node, progress=progress)
    return 0


def _delete_machine(args: argparse.Namespace) -> int:
    from cpswap.executors import openshift as ex

    print(ex.delete_machine(namespace=args.machine_namespace, slot=args.slot, node=args.node,
                            deadline_s=args.deadline, progress=progress))
    return 0


def _create_machine(args: argparse.Namespace) -> int:
    from cpswap.executors import openshift as ex

    print(ex.create_machine(namespace=args.machine_namespace, slot=args.slot, node=args.node, ip=args.ip,
                            machine=args.machine, deadline_s=args.deadline, progress=progress))
    return 0


def _redeploy(args: argparse.Namespace) -> int:
    from cpswap.executors import openshift as ex

    print(ex.redeploy(etcd_namespace=args.etcd_namespace, node=args.node, reason=args.reason, settle_s=args.settle,
                      progress=progress))
    return 0
