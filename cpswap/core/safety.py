"""What an operator needs from a plan at 3 a.m. Pure: plan document in, ``safety`` section out.

Owns the ``safety`` object of the plan document (``cpswap.plan/v1``, docs/CONTRACTS.md): every
member with its role (departing, joining, survivor; etcd leader; VIP holder) and the steps that run
on it; the point of no return (the first step that changes membership); the worst-case duration
(the sum of the step deadlines); the window with no fault tolerance and what a second failure inside
it means; where the snapshot is written and how it is restored. It reads only the document, so a
saved ``cpswap plan --json`` and a live plan give the same section.
"""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Mapping, Sequence

from cpswap import distributions as registry
from cpswap.core.facts import member_matches
from cpswap.core.renderers.etcd import render_etcdutl_restore
from cpswap.core.steps import Action

_UNIT = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)([hms])")


def parse_timeout(text: str) -> int:
    """Seconds of a Pulumi custom timeout (``30m``, ``1h30m``, ``90s``); 0 when empty or unreadable."""
    parts = _DURATION.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != (text or "").strip():
        return 0
    return sum(int(n) * _UNIT[u] for n, u in parts)


def human(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v) or "0s"


def restore_command(*, distribution: str, snapshot: str, survivor: Mapping[str, Any] | None) -> str:
    """How the snapshot is restored, per distribution (run on one surviving control-plane host, with
    etcd / the distribution stopped on every control-plane host first)."""
    try:
        restore = registry.get(distribution).restore
    except registry.UnknownDistribution:
        restore = None
    return (restore or render_etcdutl_restore)(snapshot, survivor)


def _live_role(live: Sequence[Mapping[str, Any]] | None, host: Mapping[str, Any]) -> str:
    if live is None:
        return "not observed"
    for member in live:
        if member_matches(member_name=str(member.get("name") or ""), member_ip=str(member.get("ip") or ""),
                          name=str(host.get("name", "")), ip=str(host.get("ip", ""))):
            role = "learner" if member.get("learner") else ("leader" if member.get("leader") else "voter")
            health = {True: "healthy", False: "UNHEALTHY", None: "health unknown"}[member.get("healthy")]
            return f"{role}, {health}"
    return "not an etcd member"


def safety_section(document: Mapping[str, Any], *, snapshot_dir: str) -> dict[str, Any]:
    """The ``safety`` object of a plan document (built from the rest of it)."""
    steps: list[Mapping[str, Any]] = list(document.get("steps", []))
    change = (document.get("changes") or [None])[0]
    vip = document.get("vip") or {}
    vip_ip = str(document.get("endpoint", "")).rsplit(":", 1)[0]
    live = document.get("live")
    hosts: list[tuple[str, Mapping[str, Any], str]] = []
    for slot, host in sorted((document.get("applied") or document.get("desired") or {}).items()):
        if change and slot == change["slot"]:
            hosts.append((slot, change["old"], "departing"))
            hosts.append((slot, change["new"], "joining"))
        else:
            hosts.append((slot, host, "survivor"))

    def runs_here(step: Mapping[str, Any], host: Mapping[str, Any]) -> bool:
        where = step.get("runs_on", {})
        if where.get("kind") != "ssh":
            return False
        if where.get("host") == host.get("ip"):
            return True
        return where.get("host") == vip_ip and bool(vip) and vip.get("holder_during") == host.get("name")

    members: list[dict[str, Any]] = []
    for slot, host, role in hosts:
        vip_roles = [label for label, key in (("holds the VIP now", "holder_now"),
                                              ("holds the VIP during the swap", "holder_during"))
                     if vip.get(key) and vip.get(key) == host.get("name")]
        members.append({"slot": slot, "name": host.get("name"), "ip": host.get("ip"), "role": role,
                        "etcd": "joins" if role == "joining" else _live_role(live, host), "vip": vip_roles,
                        "steps": [s["id"] for s in steps if runs_here(s, host)]})
    elsewhere = [{"id": s["id"], "where": s.get("runs_on", {}).get("description", "")} for s in steps
                 if not any(s["id"] in m["steps"] for m in members)]
    first = next((s for s in steps if (a := Action.parse(s.get("action"))) is not None and a.leaves), None)
    before_pnr = [s["id"] for s in steps[:steps.index(first)]] if first else [s["id"] for s in steps]
    quorum = document.get("quorum", {})
    during = quorum.get("during", {})
    surge = (document.get("strategy") or {}).get("strategy") == "surge"
    point = None if first is None else {
        "step": first["id"],
        "before_it": before_pnr,
        "why": (f"{first['id']} moves the old member's workloads and removes it, after the new member joined "
                f"alongside ({during.get('voters', '?')} voters, tolerance {during.get('tolerance', '?')}); an "
                f"interruption before it leaves the old member in place next to the new one, and the next up "
                f"resumes" if surge else
                f"{first['id']} changes membership: from there the old member is gone and the cluster runs with "
                f"{during.get('voters', '?')} voters (tolerance {during.get('tolerance', '?')}) until the new member "
                f"has joined; an interruption before it leaves the cluster as it was")}
    worst = sum(parse_timeout(str(s.get("timeout", ""))) for s in steps)
    exposed = [s for s in steps if int(s.get("tolerance", 1)) <= 0]
    window = None
    if exposed:
        window = {"from": exposed[0]["id"], "to": exposed[-1]["id"], "tolerance": min(int(s["tolerance"]) for s in
                                                                                       exposed),
                  "seconds": sum(parse_timeout(str(s.get("timeout", ""))) for s in exposed),
                  "if_another_fails": (
                      f"quorum is lost: {during.get('healthy', '?')} healthy of {during.get('voters', '?')} voters need "
                      f"{during.get('quorum', '?')}; one more failure stops etcd from accepting writes and the "
                      f"Kubernetes API from serving; the swap's next etcd step fails at its deadline and nothing "
                      f"further is changed. Bring the failed member back first (it rejoins with its data); if it "
                      f"cannot come back, restore the snapshot (below) on one survivor")}
    survivor = next((h for _, h, role in hosts if role == "survivor"), None)
    etcd_dir = snapshot_dir.rstrip("/") or "."
    snapshot = None
    if change is not None:
        path = f"{etcd_dir}/before-remove-{change['old'].get('name')}-<UTC time>-<member id>.db"
        snapshot = {"dir": etcd_dir, "file": path, "taken_by": "the etcd leave step, on the operator's machine, "
                                                             "verified by its sha256 trailer",
                    "restore_on": (f"{survivor.get('name')} ({survivor.get('ip')})" if survivor else "a survivor")
                    + ": copy the file there and stop etcd (the distribution) on every control-plane host first",
                    "restore": restore_command(distribution=str(document.get("distribution", "")), snapshot=path,
                                               survivor=survivor)}
    return {"members": members, "elsewhere": elsewhere, "point_of_no_return": point, "worst_case_seconds": worst,
            "worst_case": human(worst), "no_tolerance_window": window, "snapshot": snapshot}
