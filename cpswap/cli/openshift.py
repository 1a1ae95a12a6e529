"""`cpswap openshift`: delete-etcd-secrets, delete-machine, create-machine, redeploy (seed 003).

Kubeconfig from ``--kubeconfig PATH`` or ``$CPSWAP_KUBECONFIG_DATA`` (secret stack config). Progress on stderr. Not pure.
"""
from __future__ import annotations

import argparse

from cpswap.cli import FILE, IP, NAME, NAMESPACE, OBJECT_NAME, SECONDS, SECONDS_OR_ZERO, SLOT, WORD, progress


def _namespaces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--etcd-namespace", type=NAMESPACE, default="openshift-etcd")
    parser.add_argument("--machine-namespace", type=NAMESPACE, default="openshift-machine-api")
    parser.add_argument("--node", type=NAME, required=True)
    parser.add_argument("--kubeconfig", type=FILE, help="kubeconfig path (default: $CPSWAP_KUBECONFIG_DATA text)")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    osh = sub.add_parser("openshift", help="OpenShift etcd member replacement (seed 003)")
    cmds = osh.add_subparsers(dest="openshift_command", required=True)
    p = cmds.add_parser("delete-etcd-secrets", help="etcd-peer/serving/serving-metrics-<node>; absent is fine")
    _namespaces(p)
    p.set_defaults(func=_secrets)
    p = cmds.add_parser("delete-machine", help="keep the node's Machine spec, then delete the Machine")
    _namespaces(p)
    p.add_argument("--slot", type=SLOT, required=True)
    p.add_argument("--deadline", type=SECONDS, default=900)
    p.set_defaults(func=_delete_machine)
    p = cmds.add_parser("create-machine", help="the kept spec under a new name, without status and providerID")
    _namespaces(p)
    p.add_argument("--slot", type=SLOT, required=True)
    p.add_argument("--ip", type=IP, required=True)
    p.add_argument("--machine", type=OBJECT_NAME,
                   help="the new Machine's name (default: the old base name, next free index)")
    p.add_argument("--deadline", type=SECONDS, default=3600)
    p.set_defaults(func=_create_machine)
    p = cmds.add_parser("redeploy", help="forceRedeploymentReason (unique) unless the node's etcd pod is Ready")
    _namespaces(p)
    p.add_argument("--reason", type=WORD, required=True)
    p.add_argument("--settle", type=SECONDS_OR_ZERO, default=0, help="seconds to wait for the operator before patching")
    p.set_defaults(func=_redeploy)


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
    from cpswap.executors import openshift as ex

    print(ex.redeploy(etcd_namespace=args.etcd_namespace, node=args.node, reason=args.reason, settle_s=args.settle,
                      progress=progress, kubeconfig=args.kubeconfig))
    return 0
