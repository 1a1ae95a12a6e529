"""Shared fixtures of the CI pipeline tests (their helpers: tests/support/stack_repo.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack_repo import StackRepo, gitlab_ci_local_or_skip, make_stack_repo


@pytest.fixture
def stack_repo(tmp_path: Path) -> StackRepo:
    gitlab_ci_local_or_skip()
    return make_stack_repo(tmp_path)
