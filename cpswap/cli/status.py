"""`cpswap status --stack S [--json]`: where a swap stands. Read-only, short timeouts. Not pure.

Reads the stack file, the last deployment's exported membership (``.cpswap/applied-<stack>.json``),
the PVC-recovery journals (``.cpswap/recovery/recover-<node>.jsonl``) and the snapshots
(``etcd.snapshotDir``); live etcd only with credentials in ``$CPSWAP_ETCD_*_DATA`` (else the rows
say unobserved). cpswap.core.status decides.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cpswap.cli import SECONDS, STACK
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
    report = st.decide_status(model=model, applied=applied.as_dict(), etcd=_etcd(model, args.timeout),
                              journals=_journals(recovery), snapshots=_snapshots(snapshot_dir, time.time()))
    print(json.dumps(report.as_dict(), indent=2) if args.json else st.render_status(report))
    return 0
