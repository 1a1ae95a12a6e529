"""RKE2 on the twin: a dead server is swapped end to end (cpswap/distributions/rke2.py, shim
tests/support/twin/shims/rke2). Needs root for network namespaces."""
from __future__ import annotations

import importlib.util
import json
import stat
from pathlib import Path

import pytest
import yaml

from cpswap.executors import etcd as ex
from tests.support.etcd_cluster import put_keys
from tests.support.twin.cluster import SHIMS, Twin, digest
from tests.support.twin.hosts import available
from tests.support.twin.operator import activated_environ
from tests.support.twin.replayer import Replayer, Runner
from tests.support.twin.scenario import install_rke2, project, up

OLD, N2, N3, NEW = "rke2-srv-1", "rke2-srv-2", "rke2-srv-3", "rke2-srv-4"


def _rke2_rules():
    spec = importlib.util.spec_from_file_location("twin_shim_rke2", SHIMS / "_rke2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rke2_shim_reads_its_config_and_refuses_what_rke2_drops(tmp_path, monkeypatch):
    rules = _rke2_rules()
    config = tmp_path / "config.yaml"
    config.write_text("server: https://10.0.0.1:9345\ntoken-file: /t\nflannel-backend: none\ntls-san: [a]\n")
    (tmp_path / "config.yaml.d").mkdir()
    (tmp_path / "config.yaml.d" / "50-more.yaml").write_text("tls-san+: [b]\nnode-name: n0\n")
    flags, warnings = rules.server_flags(["--config", str(config), "--node-name=n1"])
    assert flags == {"config": str(config), "server": "https://10.0.0.1:9345", "token-file": "/t",
                     "tls-san": ["a", "b"], "node-name": "n1"}
    assert warnings == ["Unknown flag --flannel-backend found in config.yaml, skipping"]
    for dropped in ("--flannel-backend=none", "--supervisor-port=9346", "--cluster-init"):
        with pytest.raises(rules.Rke2Error, match="flag provided but not defined"):
            rules.parse([dropped])
    monkeypatch.setenv("RKE2_TOKEN", "from-env")
    assert rules.token({}) == "from-env"



@pytest.mark.twin
@pytest.mark.skipif(available() is not None, reason=f"twin: {available()}")
@pytest.mark.timeout(600)  # two replayed `up`s over SSH: about a minute idle, far more on a loaded machine
def test_rke2_swap_of_a_dead_server_converges(tmp_path):
    twin = Twin.start(tmp_path / "twin", members=[OLD, N2, N3], spares=[NEW], seed_workloads=False, layout="rke2")
    try:
        workdir = project(tmp_path)
        replayer = Replayer(Runner(cwd=workdir, timeout_s=240, environ=activated_environ()))
        install_rke2(twin, NEW)
        put_keys(twin.etcd_connection(), 50, prefix="/registry/twin")
        before = digest(twin.etcd_connection())
        slots = {"cp1": OLD, "cp2": N2, "cp3": N3}
        adoption = up(twin, replayer, workdir, slots, distribution="rke2")  # every join finds its etcd member
        assert [s.name for s in adoption if s.op == "replace-delete"] == []
        assert digest(twin.etcd_connection()) == before
        twin.kill(N2)
        dead = twin.net.hosts[N2]
        steps = up(twin, replayer, workdir, {**slots, "cp2": NEW}, distribution="rke2")
        ran = [(s.name, s.op) for s in steps if s.op != "noop"]
        assert ran.index(("cp2-preflight", "create")) < ran.index(("cp2-etcd-leave", "replace-delete")) \
            < ran.index(("cp2-join", "create")) < ran.index(("cp2-verify", "create"))
        conn = twin.etcd_connection()
        members = ex.member_list(conn)
        assert sorted(m.name.rsplit("-", 1)[0] for m in members) == sorted([OLD, N3, NEW])
        assert all(not m.is_learner and ex.endpoint_health(conn, m.client_urls[0]).healthy for m in members)
        assert digest(conn) == before
        # the one step addressed to the dead host is the old join's replacement, which has no delete
        # command, so the provider connects to nobody (pulumi-command runs nothing without one)
        assert [(s.name, s.op) for s in replayer.steps if s.host == dead.ip] == [("cp2-join", "replace-delete")]
        assert sorted(n.metadata.name for n in twin.emulator.core.list_node().items) == sorted([OLD, N3, NEW])
        root = twin.net.hosts[NEW].root
        config = yaml.safe_load((root / "etc-rancher/rke2/config.yaml").read_text())
        assert config["server"] == f"https://{twin.net.vip}:9345" and config["node-name"] == NEW
        for private in ("etc-rancher/rke2/cpswap-token", "etc-rancher/rke2/config.yaml"):
            assert stat.S_IMODE((root / private).stat().st_mode) == 0o600, private
        unit = json.loads((twin.workdir / NEW / "systemd" / "rke2-server.service.json").read_text())
        assert unit["active"] == "active" and Path(f"/proc/{unit['pid']}").exists()
        token = twin.secrets()["rke2Token"].encode()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    assert token not in (proc / "cmdline").read_bytes(), f"the token is in the argv of PID {proc.name}"
                except OSError:
                    continue
    finally:
        twin.close()
    assert twin.net.leftovers() == []
