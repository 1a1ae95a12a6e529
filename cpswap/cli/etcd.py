"""`cpswap etcd`: members, health, status, snapshot, remove, add, promote, wait-member, change.

For operators and for the program's command resources. Connection flags: ``--endpoints``,
``--cacert/--cert/--key``, ``--preset k3s|kubeadm|env`` and ``--discover kube|openshift`` (add the
control-plane Nodes' InternalIPs, or the hosts of Ready etcd pods, from the Kubernetes API at the VIP). Not pure (network).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cpswap.cli import FILE, IP, LAG, NAME, NAMESPACE, SECONDS, URL, URLS, lazy_module, progress
from cpswap.core.errors import ConfigError, PermanentError, Violation
from cpswap.core.membership import DEFAULT_LOCK_TTL_S, DEFAULT_LOCK_WAIT_S
from cpswap.distributions import etcd_presets

ex = lazy_module("cpswap.executors.etcd")  # gRPC and pyetcd load on the first call, not for --help or a usage error


ABSENT_BY_HAND = "confirmed absent by the operator (--absent-by-hand)"


def _preset(value: str) -> str:
    """A distribution's etcd preset or ``env``; the registry is asked only when the flag is given,
    so ``--help`` imports no distribution module."""
    known = (*etcd_presets(), "env")
    if value not in known:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(known)})")
    return value


def connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoints", type=URLS, default=[],
                        help="comma-separated https://host:2379 URLs (IPv6 in brackets)")
    parser.add_argument("--cacert", type=FILE, help="cluster CA (TLS is always verified against it)")
    parser.add_argument("--cert", type=FILE, help="client certificate")
    parser.add_argument("--key", type=FILE, help="client key")
    parser.add_argument("--preset", type=_preset, metavar="PRESET",
                        help="a distribution's etcd files on a control-plane node (under $CPSWAP_ETCD_ROOT; "
                             "cpswap/distributions: k3s, kubeadm, ...); "
                             "env: PEM data from CPSWAP_ETCD_*_DATA (secret stack config)")
    parser.add_argument("--discover", choices=("kube", "openshift"),
                        help="kube: add control-plane Node IPs from the Kubernetes API; openshift: the hosts of "
                             "Running, Ready etcd pods (--etcd-namespace)")
    parser.add_argument("--etcd-namespace", type=NAMESPACE, default="openshift-etcd", help="for --discover openshift")
    parser.add_argument("--kubeconfig", type=FILE, help="for --discover (default: $CPSWAP_KUBECONFIG_DATA)")
    parser.add_argument("--request-timeout", "--timeout", dest="timeout", type=SECONDS, default=5.0,
                        help="per-call timeout in seconds (--timeout is the old spelling)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    etcd = sub.add_parser("etcd", help="etcd membership operations (python-etcd3 API)")
    cmds = etcd.add_subparsers(dest="etcd_command", required=True)
    for name, help_text, func in (("members", "member list with learner and started flags", _members),
                                  ("health", "linearizable read per endpoint", _health),
                                  ("status", "leader, raft term and index per endpoint", _status)):
        p = cmds.add_parser(name, help=help_text)
        connection_flags(p)
        p.set_defaults(func=func)
    p = cmds.add_parser("snapshot", help="save and verify a snapshot")
    connection_flags(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="the new snapshot file")
    where.add_argument("--label", type=NAME, help="write <label>-<UTC time>.db into --snapshot-dir (a new file each run)")
    p.add_argument("--snapshot-dir", type=Path, default=None,
                   help="with --label: private (0700) directory; default as for `remove`")
    p.set_defaults(func=_snapshot)
    p = cmds.add_parser("remove", help="remove a member safely (idempotent, quorum-guarded, snapshot first)")
    connection_flags(p)
    _member_flags(p)
    p.add_argument("--snapshot-dir", type=Path, default=None,
                   help="private (0700) directory for the snapshot taken first; default: $CPSWAP_STATE_DIR/snapshots "
                        "or ${XDG_STATE_HOME:-~/.local/state}/cpswap/snapshots, outside the repository")
    p.add_argument("--no-snapshot", action="store_true", help="skip the snapshot before removing (not advised)")
    p.add_argument("--absent-by-hand", action="store_true",
                   help="the operator confirms the host's member was removed outside cpswap: when no member carries "
                        "its name or IP, record it as removed (later runs then succeed) instead of failing")
    p.add_argument("--deadline", type=SECONDS, default=300)
    _lock_flags(p)
    p.set_defaults(func=_remove)
    p = cmds.add_parser("verify-adoption", help="read-only: each slot's host is a started voter and no other voter "
                                                "exists (the first step of an adoption)")
    connection_flags(p)
    p.add_argument("--member", action="append", required=True, metavar="SLOT=NAME@IP",
                   help="one per slot, e.g. cp1=lzx-ha-env@192.168.0.254")
    p.set_defaults(func=_verify_adoption)
    p = cmds.add_parser("add", help="add a member (learner unless --voter)")
    connection_flags(p)
    p.add_argument("--peer-url", type=URL, required=True)
    p.add_argument("--voter", action="store_true")
    p.add_argument("--deadline", type=SECONDS, default=60)
    _lock_flags(p)
    p.set_defaults(func=_add)
    p = cmds.add_parser("promote", help="promote a learner once it is in sync")
    connection_flags(p)
    _member_flags(p)
    p.add_argument("--deadline", type=SECONDS, default=120)
    _lock_flags(p)
    p.set_defaults(func=_promote)
    p = cmds.add_parser("change", help="the membership lock's queue and the recorded change in progress")
    connection_flags(p)
    p.add_argument("--clear", action="store_true",
                   help="forget the recorded change (only when that swap was abandoned for good)")
    p.set_defaults(func=_change)
    p = cmds.add_parser("wait-member", help="wait until a member is a healthy, caught-up voter")
    connection_flags(p)
    _member_flags(p)
    p.add_argument("--max-lag", type=LAG, default=1000)
    p.add_argument("--deadline", type=SECONDS, default=600)
    p.set_defaults(func=_wait)


def _lock_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-ttl", type=int, default=DEFAULT_LOCK_TTL_S,
                        help="lease TTL of the membership lock: a dead holder frees it after this many seconds")
    parser.add_argument("--lock-wait", type=SECONDS, default=DEFAULT_LOCK_WAIT_S,
                        help="how long to queue for the membership lock before giving up")


def _member_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", "--name", dest="name", type=NAME, required=True,
                        help="node name (k3s member names <name>-<8 hex> match too; --name is the old "
                             "spelling); the member must match the name AND the IP")
    parser.add_argument("--ip", type=IP, required=True, help="the member's IP (its peer URL host)")


def connect_from_args(args: argparse.Namespace, *, departing: tuple[str, str] | None = None):
    """The etcd connection of the flags; ``departing`` (name, ip) is never used as an endpoint
    found by discovery (the seed: "choose a pod that is not on the affected node")."""
    endpoints = list(args.endpoints)
    if args.discover == "kube":
        from cpswap.executors.kube import control_plane_endpoints

        endpoints += control_plane_endpoints(kubeconfig=args.kubeconfig, timeout=args.timeout)
    elif args.discover == "openshift":
        from cpswap.executors.openshift import etcd_pod_endpoints

        found = etcd_pod_endpoints(kubeconfig=args.kubeconfig, namespace=args.etcd_namespace, timeout=args.timeout,
                                   exclude_node=departing[0] if departing else None,
                                   exclude_ip=departing[1] if departing else None)
        if not found and not endpoints:
            raise PermanentError(f"no Running, Ready etcd pod in namespace {args.etcd_namespace}"
                                 + (f" on a node other than {departing[0]} ({departing[1]})" if departing else "")
                                 + ": nothing to ask (--discover openshift)")
        endpoints += found
    return ex.preset_connection(preset=args.preset, endpoints=endpoints, cacert=args.cacert, cert=args.cert,
                                key=args.key, timeout=args.timeout)


def _members(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        members = ex.member_list(conn)
    rows: list[dict[str, Any]] = [{"id": f"{m.id:x}", "name": m.name, "started": m.started, "is_learner": m.is_learner,
             "peer_urls": list(m.peer_urls), "client_urls": list(m.client_urls)} for m in members]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']}, {'started' if r['started'] else 'unstarted'}, {r['name'] or '-'}, "
                  f"{','.join(r['peer_urls'])}, {','.join(r['client_urls']) or '-'}, "
                  f"{'learner' if r['is_learner'] else 'voter'}")
    return 0


def _health(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        conn = conn.with_endpoints([u for m in _safe_members(conn) for u in m.client_urls[:1]])
        results = [ex.endpoint_health(conn, e) for e in conn.endpoints]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.endpoint} is {'healthy' if r.healthy else 'unhealthy'}: took {r.took_ms:.1f}ms"
                  + (f" ({r.error})" if r.error else ""))
    return 0 if results and all(r.healthy for r in results) else 1


def _safe_members(conn):
    try:
        return ex.member_list(conn)
    except Exception:  # health still reports each given endpoint
        return ()


def _status(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        conn = conn.with_endpoints([u for m in _safe_members(conn) for u in m.client_urls[:1]])
        results = [ex.endpoint_status(conn, e) for e in conn.endpoints]
    if args.json:
        print(json.dumps([{**asdict(r), "member_id": f"{r.member_id:x}", "leader_id": f"{r.leader_id:x}",
                           "is_leader": r.ok and r.member_id == r.leader_id} for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.endpoint}: {'leader' if r.ok and r.member_id == r.leader_id else 'follower'} "
                  f"id={r.member_id:x} term={r.raft_term} index={r.raft_index} version={r.version}"
                  if r.ok else f"{r.endpoint}: unreachable ({r.error})")
    return 0 if results and all(r.ok for r in results) else 1


def _snapshot(args: argparse.Namespace) -> int:
    if args.snapshot_dir is not None and args.label is None:
        raise ConfigError([Violation("--snapshot-dir", str(args.snapshot_dir), "applies with --label only "
                                                                             "(--out names the file itself)")])
    out = args.out or ex.labelled_snapshot_path(directory=args.snapshot_dir or ex.default_snapshot_dir(),
                                                label=args.label)
    with connect_from_args(args) as conn:
        info = ex.snapshot(conn, out=out, progress=progress)
    print(json.dumps(asdict(info)) if args.json else
          f"{info.path}: {info.size} bytes, revision {info.revision}, sha256 {info.sha256}, verified")
    return 0


def _remove(args: argparse.Namespace) -> int:
    with connect_from_args(args, departing=(args.name, args.ip)) as conn:
        outcome = ex.remove_member(conn, name=args.name, ip=args.ip,
                                   snapshot_dir=None if args.no_snapshot else args.snapshot_dir or ex.default_snapshot_dir(),
                                   deadline_s=args.deadline, progress=progress, lock_ttl_s=args.lock_ttl,
                                   lock_wait_s=args.lock_wait,
                                   absent_reason=ABSENT_BY_HAND if args.absent_by_hand else None)
    print(json.dumps({"name": args.name, "ip": args.ip, "outcome": outcome}) if args.json else outcome)
    return 0


def _verify_adoption(args: argparse.Namespace) -> int:
    hosts = []
    for text in args.member:
        slot, eq, rest = text.partition("=")
        name, at, ip = rest.rpartition("@")
        if not (eq and at and slot and name and ip):
            raise ConfigError([Violation("--member", text, "must be SLOT=NAME@IP, e.g. cp1=node-1@10.0.0.1")])
        hosts.append((slot, name, ip))
    with connect_from_args(args) as conn:
        ex.verify_adoption(conn, hosts=hosts, progress=progress)
    return 0


def _add(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        member = ex.add_member(conn, peer_urls=(args.peer_url,), learner=not args.voter, deadline_s=args.deadline,
                               progress=progress, lock_ttl_s=args.lock_ttl, lock_wait_s=args.lock_wait)
    print(json.dumps({"id": f"{member.id:x}", "is_learner": member.is_learner}) if args.json else f"{member.id:x}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        member = ex.find_member(ex.member_list(conn), name=args.name, ip=args.ip)
        if member is None:
            raise PermanentError(f"promote: {args.name} ({args.ip}) is not a member")
        ex.promote_member(conn, member_id=member.id, deadline_s=args.deadline, progress=progress,
                          lock_ttl_s=args.lock_ttl, lock_wait_s=args.lock_wait)
    return 0


def _change(args: argparse.Namespace) -> int:
    from cpswap.executors.etcd_lock import current_holders

    with connect_from_args(args) as conn:
        record = ex.read_change(conn)
        holders = current_holders(conn)
        if args.clear and record is not None:
            ex.clear_change(conn)
            progress(f"cleared the record of the removal of {record.removed} ({record.holder}, {record.at})")
    if args.json:
        print(json.dumps({"change": None if record is None else asdict(record),
                          "lock_queue": [asdict(h) for h in holders], "cleared": bool(args.clear and record)}))
    else:
        print("change in progress: " + ("none" if record is None else
              f"{record.removed} removed by {record.holder} at {record.at} ({record.voters_before} voters before)"
              + (" [cleared]" if args.clear else "")))
        print("membership lock: " + ("free" if not holders else
              "; ".join(("held by " if i == 0 else "queued: ") + h.describe() for i, h in enumerate(holders))))
    return 0


def _wait(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        member = ex.wait_member(conn, name=args.name, ip=args.ip, max_lag=args.max_lag, deadline_s=args.deadline,
                                progress=progress)
    print(json.dumps({"id": f"{member.id:x}", "name": member.name}) if args.json else f"{member.name} ready")
    return 0
