"""The plan as GitHub/GitLab-flavoured markdown, for pull-request comments and CI job summaries. Pure.

Input is the plan document (``cpswap.plan/v1``, docs/CONTRACTS.md), so a saved
``cpswap plan --json`` renders the same as a live plan. Order, top to bottom: a refusal's message
(the reviewer must see it first), the warnings, the swap, the quorum table, a mermaid chart of
voters, healthy voters and fault tolerance across the steps (both GitHub and GitLab render
``xychart-beta``), the steps table with each full command collapsed under ``<details>``, every
member with its role and steps, the safety facts (point of no return, worst case, the window with no
fault tolerance, the snapshot and its restore command), the VIP and the claims to recover. Every value taken from the document is escaped for where it lands
(table cell, HTML, fenced code), so a node name or a command cannot break the layout.
"""
from __future__ import annotations

import html
import re
from typing import Any
from collections.abc import Mapping, Sequence

Document = Mapping[str, Any]

CHART_SERIES = ("voters", "healthy", "tolerance")


MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")


def _cell(value: object) -> str:
    """Inline text (a table cell, a list item): HTML-escaped, markdown punctuation backslash-escaped
    (GFM allows that for any ASCII punctuation), on one line."""
    text = MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(str(value), quote=False))
    return " ".join(text.split())


def _table(*, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return ["| " + " | ".join(_cell(h) for h in headers) + " |",
            "|" + "|".join("---" for _ in headers) + "|",
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def _fenced(*, text: str, language: str) -> list[str]:
    """A fenced code block whose fence is longer than any backtick run in ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", text, fence]


def _host(host: Mapping[str, Any] | None) -> str:
    if not host:
        return "(none)"
    return f"{host.get('name', '?')} ({host.get('ip', '?')})"


def _refusal(refusal: Mapping[str, Any]) -> str:
    return f"{refusal.get('field', '?')}={refusal.get('value', '')!r}: {refusal.get('rule', '')}"


def chart_points(*, document: Document) -> dict[str, list[int]]:
    """Voters, healthy voters and fault tolerance before the swap and after every step."""
    before = document.get("quorum", {}).get("before", {})
    points: dict[str, list[int]] = {name: [int(before.get(name, 0))] for name in CHART_SERIES}
    for step in document.get("steps", []):
        for name in CHART_SERIES:
            points[name].append(int(step.get(name, 0)))
    return points


def _chart(*, document: Document) -> list[str]:
    points = chart_points(document=document)
    labels = ["before", *(str(i) for i in range(1, len(document.get("steps", [])) + 1))]
    values = [v for series in points.values() for v in series]
    low, high = min(0, *values), max(values) + 1
    return ["```mermaid",
            "xychart-beta",
            '    title "voters, healthy voters, fault tolerance per step"',
            "    x-axis [" + ", ".join(f'"{label}"' for label in labels) + "]",
            f'    y-axis "members" {low} --> {high}',
            *(f"    line [{', '.join(str(v) for v in points[name])}]" for name in CHART_SERIES),
            "```",
            "",
            "Lines, in order: voters, healthy voters, fault tolerance (how many more voters may fail "
            "without losing quorum). x: before the swap, then after each step of the table below."]


def _alert(*, kind: str, lines: Sequence[str]) -> list[str]:
    """A GitHub/GitLab alert block (``> [!CAUTION]``); each line a list item."""
    return [f"> [!{kind}]", *(f"> - {_cell(line)}" for line in lines)]


def _steps(*, document: Document) -> list[str]:
    steps = document.get("steps", [])
    out = ["### Steps", ""]
    out += _table(headers=["#", "step", "resource (operation)", "runs on", "voters", "healthy", "quorum",
                           "tolerance", "timeout"],
                  rows=[[i, s.get("id", ""), f"{s.get('resource', '')} ({s.get('operation', '')})",
                         s.get("runs_on", {}).get("description", ""), s.get("voters", ""), s.get("healthy", ""),
                         s.get("quorum", ""), s.get("tolerance", ""), s.get("timeout", "")]
                        for i, s in enumerate(steps, 1)])
    out.append("")
    for i, s in enumerate(steps, 1):
        summary = html.escape(f"{i}. {s.get('id', '')}: {s.get('reason', '')}", quote=False)
        out += ["<details>", f"<summary>{summary}</summary>", ""]
        out += _fenced(text=str(s.get("command", "")), language="sh")
        secrets = s.get("secret_inputs", [])
        if secrets:
            out += ["", "Secrets (from stack config, never shown): " + ", ".join(_cell(x) for x in secrets)]
        out += ["", "</details>"]
    return out


def _vip(*, vip: Mapping[str, Any]) -> list[str]:
    rows: list[list[object]] = [["endpoint", vip.get("endpoint")], ["managed by", vip.get("managed_by")],
            ["MASTER priority slot", f"{vip.get('master_slot')} ({vip.get('master_host')})"],
            ["held now by", vip.get("holder_now") or "unknown"]]
    if vip.get("new_state"):
        rows += [["held during the swap by", vip.get("holder_during") or "unknown"],
                 ["new host joins as", f"{vip.get('new_state')}, priority {vip.get('new_priority')}"],
                 ["departing node had the MASTER priority", "yes" if vip.get("departing_had_master") else "no"]]
    return ["### VIP", "", *_table(headers=["", ""], rows=rows)]


def _claims(*, claims: Sequence[Mapping[str, Any]]) -> list[str]:
    observed = any(c.get("observed") for c in claims)
    heading = "### Claims to recover" + ("" if observed else " (not observed: the policies that will apply)")
    return [heading, "",
            *_table(headers=["order", "namespace", "claim", "owner", "size", "data class", "policy"],
                    rows=[[c.get("order"), c.get("namespace"), c.get("name"),
                           f"{c.get('owner_kind', '')} {c.get('owner_name', '')}".strip(), c.get("size"),
                           c.get("data_class"), f"{c.get('policy')}{' (DATA LOSS)' if c.get('data_loss') else ''}"]
                          for c in claims])]


def _safety(*, safety: Mapping[str, Any]) -> list[str]:
    """Every member and its role, the point of no return, the worst case, the window with no fault
    tolerance, and the snapshot with its restore command (``cpswap.core.safety``)."""
    out = ["### Members and where each step runs", ""]
    out += _table(headers=["slot", "host", "ip", "role", "etcd", "VIP", "steps run here"],
                  rows=[[m.get("slot"), m.get("name"), m.get("ip"), m.get("role"), m.get("etcd"),
                         "; ".join(m.get("vip", [])) or "-", ", ".join(m.get("steps", [])) or "-"]
                        for m in safety.get("members", [])])
    if safety.get("elsewhere"):
        out += ["", "Other steps: " + "; ".join(f"{_cell(e.get('id'))} on {_cell(e.get('where'))}"
                                               for e in safety["elsewhere"])]
    out += ["", "### Safety", ""]
    point = safety.get("point_of_no_return")
    if point:
        out.append(f"- **Point of no return**: {_cell(point.get('step'))}: {_cell(point.get('why'))}. Safe to stop "
                   f"before it: {_cell(', '.join(point.get('before_it', [])) or 'nothing runs before it')}.")
    out.append(f"- **Worst-case duration**: {_cell(safety.get('worst_case'))} (the sum of the step deadlines).")
    window = safety.get("no_tolerance_window")
    if window:
        out.append(f"- **No fault tolerance** from {_cell(window.get('from'))} to {_cell(window.get('to'))} "
                   f"(tolerance {_cell(window.get('tolerance'))}): if another member fails inside it, "
                   f"{_cell(window.get('if_another_fails'))}.")
    else:
        out.append("- Fault tolerance stays at 1 or more through every step.")
    snap = safety.get("snapshot")
    if snap:
        out.append(f"- **Snapshot**: {_cell(snap.get('file'))} ({_cell(snap.get('taken_by'))}). Restore on "
                   f"{_cell(snap.get('restore_on'))}:")
        out += ["", *_fenced(text=str(snap.get("restore", "")), language="sh")]
    return out


def render_markdown(*, document: Document) -> str:
    """The whole comment/summary body for one plan document."""
    out: list[str] = []
    refusals = document.get("refusals", [])
    if refusals:
        out += _alert(kind="CAUTION", lines=[f"REFUSED: {_refusal(r)}" for r in refusals])
        out.append("")
    warnings = document.get("warnings", [])
    if warnings:
        out += _alert(kind="WARNING", lines=list(warnings))
        out.append("")
    out += [f"## cpswap plan: stack {_cell(document.get('stack', '?'))}",
            "",
            f"{_cell(document.get('distribution', '?'))}, endpoint {_cell(document.get('endpoint', '?'))}. "
            f"Applied membership: {_cell(document.get('membership_source', '?'))}; "
            + ("observed live." if document.get("observed") else "**not observed** (offline; health assumed)."),
            ""]
    changes = document.get("changes", [])
    if not changes:
        out += ["No slot changes: nothing will run.", ""]
    for change in changes:
        out.append(f"- **swap {_cell(change.get('slot'))}**: {_cell(_host(change.get('old')))} → "
                   f"{_cell(_host(change.get('new')))}")
    strategy = document.get("strategy")
    if strategy:
        out.append(f"- **strategy {_cell(strategy.get('strategy'))}** (requested {_cell(strategy.get('requested'))} "
                   f"by {_cell(strategy.get('source'))}): {_cell(strategy.get('reason'))}")
    if changes:
        out.append("")
    applied, desired = document.get("applied", {}), document.get("desired", {})
    slots = sorted(set(applied) | set(desired))
    out += _table(headers=["slot", "applied", "desired"],
                  rows=[[slot, _host(applied.get(slot)), _host(desired.get(slot))] for slot in slots])
    quorum = document.get("quorum", {})
    out += ["", "### Quorum", ""]
    out += _table(headers=["", "voters", "healthy", "quorum", "tolerance"],
                  rows=[[label, q.get("voters"), q.get("healthy"), q.get("quorum"), q.get("tolerance")]
                        for label in ("before", "during", "after") for q in (quorum.get(label, {}),)])
    chosen = (strategy or {}).get("strategy")
    for path in document.get("quorum_paths") or []:
        points = path.get("points") or []
        out += ["", f"#### {_cell(path.get('strategy'))}{' (chosen)' if path.get('strategy') == chosen else ''}: "
                    f"{' → '.join(_cell(p.get('voters')) for p in points)} voters, tolerance at least "
                    f"{_cell(path.get('min_tolerance'))}", ""]
        out += _table(headers=["at", "voters", "healthy", "quorum", "tolerance"],
                      rows=[[p.get("at"), p.get("voters"), p.get("healthy"), p.get("quorum"), p.get("tolerance")]
                            for p in points])
    if document.get("steps"):
        out += ["", *_chart(document=document), "", *_steps(document=document)]
    if document.get("safety") and document.get("changes"):
        out += ["", *_safety(safety=document["safety"])]
    if document.get("vip"):
        out += ["", *_vip(vip=document["vip"])]
    if document.get("claims"):
        out += ["", *_claims(claims=document["claims"])]
    if document.get("live"):
        out += ["", "### Live etcd members (observed)", "",
                *_table(headers=["name", "ip", "learner", "healthy"],
                        rows=[[m.get("name") or "(not started)", m.get("ip"), "yes" if m.get("learner") else "no",
                               {True: "yes", False: "NO", None: "not probed"}[m.get("healthy")]]
                              for m in document["live"]])]
    return "\n".join(out) + "\n"
