"""Strict installer shims (tests/support/twin/shims) refuse invocations and config keys the real
tools refuse, before touching any cluster. Runs the shims locally with a twin config dir; the
accepted forms are exercised end to end by tests/twin/test_scenarios.py."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.twin
SHIMS = Path(__file__).resolve().parents[1] / "support" / "twin" / "shims"
GOOD_PRIMARY = {"hostname": "10.250.9.11", "controlplane_host": "10.250.9.100", "db_host": "10.250.9.11",
                "db_password": "x", "onecloud_version": "v3.11.8"}


def _run(tmp_path: Path, tool: str, argv: list[str]) -> subprocess.CompletedProcess:
    (tmp_path / "bin").mkdir(exist_ok=True)
    shutil.copy(SHIMS / "_twin.py", tmp_path / "bin" / "_twin.py")
    (tmp_path / "twin.json").write_text(json.dumps({"layout": "k3s", "vip": "10.250.9.100", "k3s_token": "T0K"}))
    env = {"CPSWAP_TWIN": str(tmp_path), "CPSWAP_TWIN_HOST": "tw-a", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(SHIMS / tool), *argv], env=env, capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)


CASES = [
    ("no arguments", [], None, "unsupported invocation"),
    ("unknown stack", ["run.py", "bogus", "c.yml"], None, "unsupported invocation"),
    ("extra flag", ["install", "c.yml", "--force"], None, "unsupported invocation"),
    ("both mariadb forms", ["install", "c.yml"],
     {"primary_master_node": GOOD_PRIMARY, "mariadb_node": {}, "mariadb_ha_nodes": []}, "cannot both be set"),
    ("unknown primary key", ["install", "c.yml"],
     {"primary_master_node": {**GOOD_PRIMARY, "colour": "red"}}, "unknown keys ['colour']"),
    ("unknown master key", ["install", "c.yml"],
     {"primary_master_node": GOOD_PRIMARY, "master_nodes": {"hosts": [], "bogus": 1}}, "unknown keys ['bogus']"),
    ("missing db_password", ["install", "c.yml"],
     {"primary_master_node": {k: v for k, v in GOOD_PRIMARY.items() if k != "db_password"}},
     "primary_master_node.db_password"),
]


@pytest.mark.parametrize(("argv", "config", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ocboot_shim_refuses_loudly(tmp_path, argv, config, message):
    if config is not None:
        (tmp_path / "c.yml").write_text(yaml.safe_dump(config))
    result = _run(tmp_path, "ocboot.sh", argv)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


K3S_CASES = [
    ("not server", ["agent"], "only `k3s server`"),
    ("unknown flag", ["server", "--server", "https://10.250.9.100:6443", "--token", "T0K", "--cluster-init", "x"],
     "unknown flag"),
    ("no token", ["server", "--server", "https://10.250.9.100:6443"], "--token is required"),
    ("wrong server", ["server", "--server", "https://10.250.9.11:6443", "--token", "T0K"],
     "not the fixed registration address"),
    ("wrong token", ["server", "--server", "https://10.250.9.100:6443", "--token", "nope"], "--token rejected"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in K3S_CASES], ids=[c[0] for c in K3S_CASES])
def test_k3s_shim_refuses_loudly(tmp_path, argv, message):
    result = _run(tmp_path, "k3s", argv)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "T0K" not in result.stderr, "the join token must never be printed"
