"""The `duplicates` gate of tests/gates: no run of six or more lines (the same, or the same shape with other
names) stands twice in the product code: cpswap/, components/, the Pulumi program and the policy pack.

`duplicates` is a command of this machine's tool library (/work/.library/duplicates/README.md), not a
package: it is called, never copied. Its report: a count line, then one row a pair,
``D1 a.py:10-24 ~ b.py:40-54 [shape] [boilerplate] [(+N more runs)]``, then ``(+N more pairs)``,
``left out: ...`` and ``incomplete: ...`` lines. It always exits 0, so this module reads the rows: a pair
with both places in the product fails the gate, and so does an incomplete report (its rows speak only of
what it read). Where the command is absent (a machine without the tool library) the gate says so and skips.
Pairs that touch tests/ are the test bed's business, not this gate's.

Only identical runs fail: a ``shape`` row (alike but for names and values: two frozen dataclasses with three
string fields, two resource declarations with the same keywords) is a place to look, not a verdict (the tool's
README says so), and is printed without failing.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("cpswap/", "components/", "policies/")
PRODUCT_FILES = ("__main__.py",)
ROW = re.compile(r"^(D\d+) (\S+):(\d+)-(\d+) ~ (\S+):(\d+)-(\d+)(.*)$")


@dataclass(frozen=True)
class Pair:
    row: str
    left: str
    right: str

    @property
    def shape_only(self) -> bool:
        return " shape" in self.row.split(" ~ ", 1)[1]


@dataclass(frozen=True)
class Verdict:
    product_pairs: tuple[Pair, ...]
    problems: tuple[str, ...]  # incomplete report, pairs cut off by --most

    @property
    def identical(self) -> tuple[Pair, ...]:
        return tuple(p for p in self.product_pairs if not p.shape_only)

    @property
    def ok(self) -> bool:
        return not self.identical and not self.problems


def is_product(path: str) -> bool:
    return path.startswith(PRODUCT_DIRS) or path in PRODUCT_FILES


def judge(report: str) -> Verdict:
    """Pure: the gate's verdict on one `duplicates` report."""
    pairs: list[Pair] = []
    problems: list[str] = []
    for line in report.splitlines():
        line = line.strip()
        match = ROW.match(line)
        if match:
            left, right = match.group(2), match.group(5)
            if is_product(left) and is_product(right):
                pairs.append(Pair(row=line, left=left, right=right))
        elif line.startswith("incomplete:"):
            problems.append(f"duplicates did not read everything ({line}); its rows speak only of what it read")
        elif re.fullmatch(r"\(\+\d+ more pairs?\)", line):
            problems.append(f"duplicates cut its list ({line}): raise --most")
    return Verdict(product_pairs=tuple(pairs), problems=tuple(problems))


def main() -> int:
    tool = shutil.which("duplicates")
    if tool is None:
        print("gates: duplicates   skipped: the `duplicates` command is not on PATH (it comes with the tool library "
              "of this project's development machines, not from a package registry)")
        return 0
    done = subprocess.run([tool, "--repo", str(ROOT), "--most", "200", "--seconds", "120"],
                          capture_output=True, text=True, timeout=180, check=False)
    verdict = judge(done.stdout)
    shapes = [p for p in verdict.product_pairs if p.shape_only]
    if verdict.ok:
        print(f"gates: duplicates   ok ({len(shapes)} product pair(s) alike in shape only: places to look, "
              "`duplicates --most 40`)")
        return 0
    print("gates: duplicates   FAILED: product code written twice (fold each pair into one piece of code)")
    for pair in verdict.identical:
        print(f"  {pair.row}")
    for problem in verdict.problems:
        print(f"  {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
