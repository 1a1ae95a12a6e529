"""The impact report: the plan as a table for people and as a JSON document for machines. Pure.

The document (schema ``cpswap.plan/v1``, docs/CONTRACTS.md) is what ``cpswap plan --json``
prints, what the program exports as the ``plan`` stack output and what the policy rules read.
"""
from __future__ import annotations

import typing
from typing import Any

from cpswap.core.model import DEFAULT_SNAPSHOT_PATH
from cpswap.core.plan_schema import PlanDocument
from cpswap.core.planner import Plan
from cpswap.core.safety import human, safety_section
from cpswap.core.slots import adoption_check

SCHEMA = "cpswap.plan/v1"


def plan_document(plan: Plan) -> PlanDocument:
    """The plan as its document; its keys and types are ``PlanDocument`` (cpswap/core/plan_schema.py)."""
    model = plan.model
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "stack": model.stack,
        "distribution": model.distribution,
        "endpoint": str(model.endpoint),
        "membership_source": plan.applied.source,
        "destroy_mode": model.destroy_mode,
        "membership_reason": plan.applied.reason,
        "adoption_check": adoption_check_doc(plan),
        "observed": plan.observed,
        "desired": {m.slot: m.host.as_dict() for m in model.members},
        "applied": {slot: host.as_dict() for slot, host in plan.applied.hosts},
        "changes": [{"slot": c.slot, "old": c.old.as_dict(), "new": c.new.as_dict(), "reason": c.reason}
                    for c in plan.changes],
        "unhealthy": list(plan.unhealthy),
        "steps": [{"id": s.id, "slot": s.slot, "action": str(s.action), "phase": s.phase, "resource": s.resource,
                   "operation": s.operation, "kind": s.kind, "runs_on": s.runs_on.as_dict(), "command": s.command,
                   "reason": s.reason, **s.state.as_dict(), "secret_inputs": list(s.secret_inputs),
                   "timeout": s.timeout, "deadline_s": s.deadline_s} for s in plan.steps],
        "quorum": {"before": plan.before.as_dict(), "during": plan.during.as_dict(), "after": plan.after.as_dict()},
        "strategy": plan.strategy.as_dict() if plan.strategy else None,
        "quorum_paths": [p.as_dict() for p in plan.paths],
        "claims": [c.as_dict() for c in plan.claims],
        "vip": plan.vip.as_dict() if plan.vip else None,
        "warnings": list(plan.warnings),
        "refusals": [{"field": v.field, "value": v.value, "rule": v.rule} for v in plan.refusals],
        "live": [{"name": m.name, "ip": m.ip, "learner": m.is_learner, "healthy": m.healthy,
                  "leader": plan.leader_id is not None and m.id == plan.leader_id} for m in plan.live]
        if plan.observed else None,
    }
    document["safety"] = safety_section(document, snapshot_dir=model.etcd.snapshot_dir or DEFAULT_SNAPSHOT_PATH)
    return typing.cast(PlanDocument, document)


def adoption_check_doc(plan: Plan) -> dict[str, str] | None:
    """The run-time check an adoption runs first (read-only), or None when the membership is known."""
    if not plan.applied.adoption:
        return None
    spec = adoption_check(model=plan.model)
    return {"resource": spec.name, "runs_on": "operator", "command": spec.create, "reason": spec.reason}


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]


def _safety_lines(safety: dict[str, Any]) -> list[str]:
    lines = ["", "members (every host, and where each step runs)"]
    lines += _table(["slot", "host", "ip", "role", "etcd", "VIP", "steps run here"],
                    [[m["slot"], str(m["name"]), str(m["ip"]), m["role"], m["etcd"], "; ".join(m["vip"]) or "-",
                      ", ".join(m["steps"]) or "-"] for m in safety["members"]])
    if safety["elsewhere"]:
        lines.append("other steps: " + "; ".join(f"{e['id']} on {e['where']}" for e in safety["elsewhere"]))
    point = safety["point_of_no_return"]
    lines.append("")
    if point:
        lines.append(f"point of no return: {point['step']} ({point['why']}); safe to stop before it: "
                     f"{', '.join(point['before_it']) or 'nothing runs before it'}")
    lines.append(f"worst-case duration: {safety['worst_case']} (the sum of the step deadlines)")
    window = safety["no_tolerance_window"]
    if window:
        lines.append(f"no fault tolerance from {window['from']} to {window['to']} (tolerance {window['tolerance']}, "
                     f"up to {human(window['seconds'])}): if another member fails inside it, {window['if_another_fails']}")
    else:
        lines.append("fault tolerance stays at 1 or more through every step")
    snap = safety["snapshot"]
    if snap:
        lines.append(f"snapshot: {snap['file']} ({snap['taken_by']})")
        lines.append(f"   restore on {snap['restore_on']}:")
        lines.append(f"   $ {snap['restore']}")
    return lines


def _path_lines(plan: Plan) -> list[str]:
    """The quorum table of each strategy the swap could take, the chosen one first."""
    lines: list[str] = []
    for path in plan.paths:
        chosen = plan.strategy is not None and path.strategy == plan.strategy.strategy
        lines.append("")
        lines.append(f"{path.strategy} ({path.summary()} voters, tolerance at least {path.min_tolerance})"
                     + (" [chosen]" if chosen else " [not chosen]"))
        lines += _table(["at", "voters", "healthy", "quorum", "tolerance"],
                        [[label, str(q.voters), str(q.healthy), str(q.quorum), str(q.tolerance)]
                         for label, q in path.points])
    return lines


def plan_table(plan: Plan, *, wide: bool = False) -> str:
    """The plan for people; ``wide`` prints every command in full (else cut at 400 characters)."""
    model = plan.model
    lines = [f"cpswap plan: stack {model.stack}, {model.distribution}, endpoint {model.endpoint}",
             f"applied membership: {plan.applied.source}; "
             f"{'observed live' if plan.observed else 'NOT observed (offline; health assumed)'}"]
    lines.append("pulumi destroy: " + ("releases the control plane (forgets it, leaves every member running)"
                                       if model.destroy_mode == "release" else
                                       "refused before any command touches the cluster (destroyMode refuse)"))
    if plan.applied.reason:
        lines.append(f"  why this source: {plan.applied.reason}")
    if plan.applied.adoption:
        check = adoption_check(model=model)
        lines.append(f"adoption: first, {check.name} (read-only, on the operator's machine) stops the run unless "
                     f"every slot's host is a started etcd voter; then each slot's resources are recorded and "
                     f"find their member: no command changes anything on the cluster")
        lines.append(f"   $ {check.create}")
    elif plan.is_noop:
        lines.append("no slot changes: nothing will run")
    for c in plan.changes:
        lines.append(f"swap {c.slot}: {c.old} -> {c.new}")
    if plan.strategy is not None:
        d = plan.strategy
        lines.append(f"strategy: {d.strategy} (requested {d.requested} by {d.source}): {d.reason}")
    lines.append("")
    lines += _table(["quorum", "voters", "healthy", "quorum", "tolerance"],
                    [[label, str(q.voters), str(q.healthy), str(q.quorum), str(q.tolerance)]
                     for label, q in (("before", plan.before), ("during", plan.during), ("after", plan.after))])
    lines += _path_lines(plan)
    if plan.steps:
        lines.append("")
        lines += _table(["#", "step", "resource", "runs on", "voters/healthy/quorum/tol"],
                        [[str(i), s.id, f"{s.resource} ({s.operation})", str(s.runs_on),
                          f"{s.state.voters}/{s.state.healthy}/{s.state.quorum}/{s.state.tolerance}"]
                         for i, s in enumerate(plan.steps, 1)])
        lines.append("")
        for i, s in enumerate(plan.steps, 1):
            lines.append(f"{i}. {s.id}: {s.reason}")
            lines.append(f"   $ {s.command if wide or len(s.command) < 400 else s.command[:400] + ' ... (--wide)'}")
            lines.append(f"   timeout {s.timeout}; " + (f"the command ends itself after {s.deadline_s}s"
                                                       if s.deadline_s is not None else "awaited by pulumi-kubernetes"))
            if s.secret_inputs:
                lines.append(f"   secrets (from stack config, never shown): {', '.join(s.secret_inputs)}")
    if plan.vip is not None:
        v = plan.vip
        lines.append("")
        lines.append(f"VIP {v.endpoint} (managed by {v.managed_by}): MASTER priority slot {v.master_slot} "
                     f"({v.master_host}); held now by {v.holder_now or 'unknown'}"
                     + (f"; during the swap by {v.holder_during}; new host joins {v.new_state} priority {v.new_priority}"
                        f"{' (departing node had the MASTER priority)' if v.departing_had_master else ''}"
                        if v.new_state else ""))
    if plan.claims:
        lines.append("")
        lines.append("claims to recover" + ("" if any(c.observed for c in plan.claims) else " (not observed; policies)"))
        lines += _table(["order", "namespace", "claim", "owner", "size", "data class", "policy"],
                        [[str(c.order), c.namespace, c.name, f"{c.owner_kind} {c.owner_name}".strip(), c.size,
                          c.data_class, c.policy + (" (DATA LOSS)" if c.data_loss else "")] for c in plan.claims])
    if plan.changes:
        lines += _safety_lines(plan_document(plan)["safety"])
    for w in plan.warnings:
        lines.append(f"WARNING: {w}")
    for refusal in plan.refusals:
        lines.append(f"REFUSED: {refusal}")
    return "\n".join(lines)
