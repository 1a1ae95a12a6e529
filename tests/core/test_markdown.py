"""`cpswap plan --format markdown` (issue 15): table-driven fixtures, plan document → exact markdown
(tests/fixtures/markdown/<case>.json → <case>.md), the layout rules a reviewer relies on, and the CLI flag.

Regenerate the expected files after a deliberate layout change with CPSWAP_REGEN_MARKDOWN=1 and review
the diff."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cpswap.cli import main
from cpswap.core.markdown import chart_points, render_markdown
from tests.support.pulumi_mocks import ROOT

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "markdown"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def _document(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def test_every_case_has_its_expected_markdown():
    assert set(CASES) == {"adoption-noop", "k3s-vip-swap", "observed-escaping", "ocboot-swap", "two-slots-refused"}
    assert sorted(p.stem for p in FIXTURES.glob("*.md")) == CASES


@pytest.mark.parametrize("case", CASES)
def test_markdown_fixture(case):
    rendered = render_markdown(document=_document(case))
    expected = FIXTURES / f"{case}.md"
    if os.environ.get("CPSWAP_REGEN_MARKDOWN") == "1":
        expected.write_text(rendered)
    assert rendered == expected.read_text()


def test_a_refusal_is_the_very_first_thing():
    text = render_markdown(document=_document("two-slots-refused"))
    lines = text.splitlines()
    assert lines[0] == "> [!CAUTION]"
    assert lines[1].startswith("> - REFUSED: members='cp1, cp2': at most one slot may change per run; 2 changed")
    assert "```mermaid" not in text  # a refused plan has no steps to chart


def test_warnings_come_before_the_plan_and_every_step_is_collapsible():
    doc = _document("ocboot-swap")
    text = render_markdown(document=doc)
    assert text.startswith("> [!WARNING]\n> - unobserved: lzx-ha-env (192.168.0.254) is assumed dead")
    assert text.index("[!WARNING]") < text.index("## cpswap plan: stack prod")
    assert text.count("<details>") == text.count("</details>") == len(doc["steps"]) == 6
    for step in doc["steps"]:
        assert f"\n{step['command']}\n" in text  # the full command, unabridged, inside its block
    assert "| cp1 | lzx-ha-env (192.168.0.254) | lzx-test-add-node (192.168.0.239) |" in text


def test_the_chart_follows_voters_healthy_and_tolerance_across_the_steps():
    doc = _document("ocboot-swap")
    points = chart_points(document=doc)
    assert points == {"voters": [3, 3, 2, 2, 3, 3, 3], "healthy": [2, 2, 2, 2, 3, 3, 3],
                      "tolerance": [0, 0, 0, 0, 1, 1, 1]}
    chart = re.search(r"```mermaid\n(.*?)\n```", render_markdown(document=doc), re.S).group(1)
    assert chart.splitlines()[0] == "xychart-beta"
    assert 'x-axis ["before", "1", "2", "3", "4", "5", "6"]' in chart
    assert [line.strip() for line in chart.splitlines() if line.strip().startswith("line")] == [
        "line [3, 3, 2, 2, 3, 3, 3]", "line [2, 2, 2, 2, 3, 3, 3]", "line [0, 0, 0, 0, 1, 1, 1]"]


def test_values_cannot_break_the_layout():
    text = render_markdown(document=_document("observed-escaping"))
    assert "<summary>1. cp1-etcd-snapshot: reason with &lt;b&gt;html&lt;/b&gt; &amp; a | pipe</summary>" in text
    assert "````sh\nprintf '%s' \"a|b\" && echo ```fenced``` <not-html>\n````" in text  # fence outgrows the text's
    assert "## cpswap plan: stack prod\\_eu" in text
    assert "| 1 | onecloud-minio | data-minio-1 | StatefulSet minio | 200Gi | replicated | recreate |" in text
    assert "[!WARNING]" not in text and "observed live." in text


def test_cli_format_markdown_renders_the_plan_document(capsys):
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert markdown == render_markdown(document=document)
    assert "- **swap cp1**: lzx-ha-env (192.168.0.254) → lzx-test-add-node (192.168.0.239)" in markdown


def test_cli_json_and_another_format_is_a_usage_error(capsys):
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT), "--json", "--format", "markdown"]) == 2
    assert "--format='markdown': --json asks for json; pass one of them" in capsys.readouterr().err
