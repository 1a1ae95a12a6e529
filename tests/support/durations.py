"""Per-file test time from a JUnit report, for ``SLOW_FILES`` in tests/conftest.py. Test-only.

Run: python -m tests.support.durations report.xml   (a report of the whole suite:
``pytest -n 2 --junitxml report.xml``); prints the dict, slowest first, files over 1 s.
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict


def per_file(report: str) -> dict[str, float]:
    """Seconds per test file: each testcase's ``time`` summed under its ``classname``'s module path."""
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        module = next((n for n in range(len(parts), 0, -1) if parts[n - 1].startswith("test_")), None)
        if module is None:
            continue
        totals["/".join(parts[:module]) + ".py"] += float(case.get("time") or 0)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print("SLOW_FILES: dict[str, float] = {")
    for path, seconds in per_file(argv[0]).items():
        if seconds >= 1:
            print(f'    "{path}": {seconds:.0f},')
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
