"""Where the shared upstream data (``../shared/upstream``) is, for tests. Test-only.

The folder sits beside the checkout (``/work/shared/upstream`` for ``/work/main``); a worktree one
level deeper finds it from a further parent. ``None`` when absent (a user's own machine): tests
skip with a reason then.
"""
from __future__ import annotations

from pathlib import Path

from tests.support.pulumi_mocks import ROOT


def upstream_file(relative: str) -> Path | None:
    for parent in ROOT.parents:
        candidate = parent / "shared" / "upstream" / relative
        if candidate.is_file():
            return candidate
    return None
