"""`cpswap preflight`: every safety check of a swap before its first destructive step. Not pure.

Two forms, the same decision (cpswap.core.preflight) on the same facts (cpswap.executors.preflight):
- ``cpswap preflight --stack S [--slot cpN]``: from the stack file, for each slot (or one);
- the rendered step ``<slot>-preflight`` passes the slot's host and settings as flags.
Credentials come from the environment the components set (``$CPSWAP_SSH_KEY_DATA`` or
``--ssh-key FILE``, ``$CPSWAP_KUBECONFIG_DATA``, ``$CPSWAP_ETCD_CERT_DATA``, and for k3s the
cluster token ``$CPSWAP_K3S_TOKEN_DATA``). Read-only. Exit 0 when every check passes, 1 with every
failure listed (check, host, value, rule), 2 on bad input. For k3s the text output ends with the
cluster-critical server flags read from a survivor, between the markers of
cpswap.core.k3s_critical: the join finds them there (its stdin carries this step's stdout).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cpswap.cli import FILE, IP, NAME, NAMESPACE, SECONDS, SLOT, STACK, WORD, argtype, progress
from cpswap.core import inputs
from cpswap import distributions as registry
from cpswap.core import preflight as pf
from cpswap.core.model import StackModel
from cpswap.core.renderers.kube import policy_json
from cpswap.executors import preflight as ex



def _text(value: str) -> str:
    if not value or "\n" in value or "\0" in value:
        raise inputs.InputError("must be a non-empty single line")
    return value


TEXT = argtype(_text, "text")
PORT = argtype(inputs.port, "port")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("preflight", help="check the new host and the run before anything is removed")
    p.add_argument("--stack", type=STACK, help="check from Pulumi.<stack>.yaml (every slot, or --slot)")
    p.add_argument("--dir", type=Path, default=Path("."), help="project directory with --stack (default: .)")
    p.add_argument("--slot", type=SLOT)
    p.add_argument("--distribution", choices=registry.KNOWN)
    p.add_argument("--node", type=NAME, help="the slot's host name (the rendered step's form)")
    p.add_argument("--ip", type=IP)
    p.add_argument("--vip", type=TEXT, help="the control-plane endpoint's host")
    p.add_argument("--ssh-user", type=WORD, default="root")
    p.add_argument("--ssh-port", type=PORT, default=22)
    p.add_argument("--ssh-key", type=FILE, help="private key file (default: $CPSWAP_SSH_KEY_DATA)")
    p.add_argument("--k3s-server", type=TEXT,
                   help="(k3s) the join's --server, https://<controlPlaneEndpoint> (default: https://<vip>:6443)")
    p.add_argument("--ocboot-workdir", type=TEXT)
    p.add_argument("--ocboot-version", type=TEXT)
    p.add_argument("--kubean-cluster", type=NAME, help="(kubean) the Cluster on the global cluster")
    p.add_argument("--kubean-image", type=TEXT, help="(kubean) the spray-job image the stack runs operations with")
    p.add_argument("--kubean-namespace", type=NAMESPACE, default="kubean-system", help="(kubean) the operator's namespace")
    p.add_argument("--machine-namespace", type=NAMESPACE, default="openshift-machine-api",
                   help="(openshift) the Machines' namespace")
    p.add_argument("--old-node", type=NAME, help="(a swap) the departing Node: its claims that the policies recreate "
                                                 "must fit on the new host (disk at the local-path directory, pods)")
    p.add_argument("--policy-json", type=TEXT, help="with --old-node: the pvcRecovery policies as JSON "
                                                    "(default with --stack: the stack's)")
    p.add_argument("--snapshot-dir", type=TEXT, help="default: the etcd executor's ($CPSWAP_STATE_DIR/snapshots, "
                                                      "else ~/.local/state/cpswap/snapshots)")
    p.add_argument("--worst-case", type=SECONDS, default=3 * 3600.0,
                   help="the run's worst-case duration in seconds (the etcd certificate must outlive it)")
    p.add_argument("--timeout", type=SECONDS, default=10.0, help="per-request timeout in seconds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _targets_from_stack(args: argparse.Namespace) -> tuple[list[pf.Target], StackModel]:
    from cpswap.stackfiles import load_model

    model = load_model(directory=args.dir.resolve(), stack=args.stack)
    members = [m for m in model.members if args.slot in (None, m.slot)]
    if not members:
        raise argparse.ArgumentTypeError(f"--slot {args.slot}: not a slot of stack {args.stack}")
    if args.old_node is not None and len(members) != 1:  # the rendered form always names one slot
        raise argparse.ArgumentTypeError(f"--old-node {args.old_node} names one slot's departing node: give --slot too")
    return [pf.target_for(model=model, member=m) for m in members], model


def _usage(message: str) -> int:
    print(f"cpswap preflight: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.stack:
        try:
            targets, model = _targets_from_stack(args)
        except argparse.ArgumentTypeError as exc:
            return _usage(str(exc))
        ssh = (model.ssh.user, model.ssh.port)
        snapshot_dir = model.etcd.snapshot_dir
        kubean_namespace = model.kubean.namespace if model.kubean else args.kubean_namespace
        machine_namespace = model.openshift.machine_namespace if model.openshift else args.machine_namespace
        args.policy_json = args.policy_json or policy_json(model.pvc_policies)
    else:
        missing = [f"--{n.replace('_', '-')}" for n in ("distribution", "slot", "node", "ip", "vip")
                   if getattr(args, n) is None]
        if missing:
            return _usage(f"give --stack S, or all of {', '.join(missing)}")
        if (registry.get(args.distribution).preflight.ocboot_checkout
                and not (args.ocboot_workdir and args.ocboot_version)):
            return _usage(f"--distribution {args.distribution} needs --ocboot-workdir and --ocboot-version")
        if registry.get(args.distribution).preflight.kubean and not (args.kubean_cluster and args.kubean_image):
            return _usage(f"--distribution {args.distribution} needs --kubean-cluster and --kubean-image")
        if args.k3s_server is not None and not args.k3s_server.startswith("https://"):
            return _usage(f"--k3s-server {args.k3s_server}: only https:// URLs are supported (as k3s)")
        k3s_server = (args.k3s_server or f"https://{inputs.host_port(args.vip, 6443)}"
                      if pf.needs_critical_config(args.distribution) else None)
        targets = [pf.Target(slot=args.slot, distribution=args.distribution, name=args.node, ip=args.ip,
                             vip=args.vip, ocboot_workdir=args.ocboot_workdir, ocboot_version=args.ocboot_version,
                             kubean_cluster=args.kubean_cluster, kubean_image=args.kubean_image,
                             k3s_server=k3s_server)]
        ssh = (args.ssh_user, args.ssh_port)
        snapshot_dir = args.snapshot_dir
        kubean_namespace, machine_namespace = args.kubean_namespace, args.machine_namespace
    if snapshot_dir is None:
        from cpswap.executors.etcd import default_snapshot_dir

        snapshot_dir = str(default_snapshot_dir())
    key = Path(args.ssh_key).read_text() if args.ssh_key else os.environ.get("CPSWAP_SSH_KEY_DATA")
    access = ex.SshAccess(user=ssh[0], port=ssh[1], key_text=key)
    limits = pf.Limits(worst_case_s=args.worst_case)
    results = []
    for target in targets:
        progress(f"preflight {target.slot}: checking {target.name} ({target.ip}) ...")
        facts = ex.gather(target=target, ssh=access, snapshot_dir=snapshot_dir, timeout_s=args.timeout,
                          kubean_namespace=kubean_namespace, machine_namespace=machine_namespace,
                          old_node=args.old_node, policy_json=args.policy_json)
        results.append(pf.decide_preflight(facts=facts, limits=limits))
    if args.json:
        print(json.dumps({"ok": all(r.ok for r in results), "slots": [r.as_dict() for r in results]}, indent=2))
    else:
        for result in results:
            print(f"preflight {result.slot}: {'passed' if result.ok else f'{len(result.failures)} check(s) failed'}")
            for finding in result.findings:
                print(f"  {finding.line()}")
            if result.k3s_block:
                print(result.k3s_block, end="")
    failures = [f for r in results for f in r.failures]
    if failures:
        print(f"cpswap preflight: refusing: {len(failures)} failed check(s): "
              + "; ".join(f"{f.check} on {f.host}: {f.value} (rule: {f.rule})" for f in failures),
              file=sys.stderr)
        return 1
    return 0
