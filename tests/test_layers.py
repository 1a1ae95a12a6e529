"""Layer rules: the pure core imports no Pulumi, subprocess, network, client or clock code;
executors import no Pulumi; components import the core, not executors."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {"pulumi", "pulumi_command", "pulumi_kubernetes", "pulumi_policy", "subprocess", "socket",
                     "grpc", "kubernetes", "pyetcd", "etcd3", "time", "datetime", "requests", "urllib3", "http",
                     "asyncio", "threading", "os", "cpswap.executors", "cpswap.cli", "cpswap.stackfiles",
                     "cpswap.program"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _violations(files, forbidden) -> list[str]:
    found = []
    for path in files:
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


PURE = ("core", "distributions")  # the distribution modules are pure like the core they build on


def test_core_is_pure():
    files = sorted(p for layer in PURE for p in (ROOT / "cpswap" / layer).rglob("*.py"))
    assert _violations(files, FORBIDDEN_IN_CORE) == []


def test_executors_do_not_import_pulumi():
    files = sorted((ROOT / "cpswap" / "executors").rglob("*.py"))
    assert _violations(files, {"pulumi", "pulumi_command", "pulumi_kubernetes", "pulumi_policy"}) == []


def test_components_use_the_core_not_executors():
    files = sorted((ROOT / "components").rglob("*.py"))
    assert files
    assert _violations(files, {"cpswap.executors", "subprocess", "socket"}) == []


@pytest.mark.parametrize("module", sorted(str(p.relative_to(ROOT)) for layer in PURE
                                          for p in (ROOT / "cpswap" / layer).rglob("*.py")))
def test_every_core_module_says_it_is_pure(module):
    path = ROOT / module
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert doc, f"{module} has no module docstring"
    if path.name != "__init__.py" or path.parent.name == "distributions":
        assert "Pure" in doc or "pure" in doc, f"{module} docstring does not say whether it is pure"
