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


def _run(tmp_path: Path, tool: str, argv: list[str], *, vip: str = "10.250.9.100") -> subprocess.CompletedProcess:
    (tmp_path / "bin").mkdir(exist_ok=True)
    for helper in ("_twin.py", "_ocboot.py", "_k3s.py", "_supervisor.py"):
        shutil.copy(SHIMS / helper, tmp_path / "bin" / helper)
    (tmp_path / "twin.json").write_text(json.dumps({"layout": "k3s", "vip": vip, "k3s_token": "T0K"}))
    env = {"CPSWAP_TWIN": str(tmp_path), "CPSWAP_TWIN_HOST": "tw-a", "PATH": "/usr/bin:/bin",
           "K3S_CONFIG_FILE": str(tmp_path / "no-config.yaml")}
    return subprocess.run([sys.executable, str(SHIMS / tool), *argv], env=env, capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)


sys.path.insert(0, str(SHIMS))
import _ocboot  # noqa: E402

OCBOOT_RULES = [  # (config, rule cited in the error, message)
    ({"primary_master_node": GOOD_PRIMARY, "mariadb_node": {"hostname": "a"}, "mariadb_ha_nodes": [{"hostname": "b"}],
      "master_nodes": {"controlplane_host": "v", "hosts": [{"hostname": "x"}]}}, "OcbootConfig.__init__",
     "can't coexist"),
    ({"primary_master_node": {k: v for k, v in GOOD_PRIMARY.items() if k != "db_password"},
      "master_nodes": {"controlplane_host": "v", "hosts": [{"hostname": "x"}]}}, "Config.ensure_get",
     "not found 'db_password'"),
    ({"primary_master_node": {k: v for k, v in GOOD_PRIMARY.items() if k != "hostname"},
      "master_nodes": {"controlplane_host": "v", "hosts": [{"hostname": "x"}]}}, "Config.ensure_get",
     "not found 'host or hostname'"),
    ({"primary_master_node": GOOD_PRIMARY, "master_nodes": {"controlplane_host": "v", "hosts": []}},
     "Config.ensure_get", "not found 'hosts'"),
    ({"primary_master_node": GOOD_PRIMARY, "master_nodes": {"hosts": [{"hostname": "x"}]}}, "Config.ensure_get",
     "not found 'controlplane_host'"),
    ({"master_nodes": {"controlplane_host": "v", "hosts": [{"hostname": "x"}]}}, "_fetch_conf",
     "through primary_master_node only"),
]


@pytest.mark.parametrize(("config", "rule", "message"), OCBOOT_RULES, ids=[r[2] for r in OCBOOT_RULES])
def test_ocboot_loader_rules(config, rule, message):
    with pytest.raises(_ocboot.OcbootError) as caught:
        _ocboot.load(config)
    assert rule in caught.value.rule and message in str(caught.value)
    assert _ocboot.UPSTREAM in str(caught.value)


def test_ocboot_loader_ignores_unknown_keys_as_ocboot_does():
    inventory = _ocboot.load({"primary_master_node": {**GOOD_PRIMARY, "colour": "red"},
                              "master_nodes": {"controlplane_host": "v", "bogus": 1,
                                               "hosts": [{"hostname": "10.250.9.12"}, {"hostname": "10.250.9.13"}]}})
    assert inventory.primary.node_ip == "10.250.9.11" and _ocboot.joins(inventory)


PLAY_RULES = [  # what the old cpswap join sent, rule by rule
    ({**GOOD_PRIMARY, "use_local": True}, "misc-check/tasks/os.yml", "Alpine container"),
    ({**GOOD_PRIMARY, "hostname": "127.0.0.1"}, "config.yaml.j2", "has no node_ip"),
]


@pytest.mark.parametrize(("primary", "rule", "message"), PLAY_RULES, ids=[r[2] for r in PLAY_RULES])
def test_ocboot_play_aborts(primary, rule, message):
    inventory = _ocboot.load({"primary_master_node": primary,
                              "master_nodes": {"controlplane_host": "v", "hosts": [{"hostname": "10.250.9.12"}]}})
    with pytest.raises(_ocboot.OcbootError) as caught:
        _ocboot.check_play(inventory)
    assert rule in caught.value.rule and message in str(caught.value)


def test_ocboot_joins_only_with_two_master_hosts():
    one = _ocboot.load({"primary_master_node": GOOD_PRIMARY,
                        "master_nodes": {"controlplane_host": "v", "hosts": [{"hostname": "10.250.9.12"}]}})
    assert not _ocboot.joins(one)
    assert not _ocboot.joins(_ocboot.load({"primary_master_node": GOOD_PRIMARY}))  # a single-server install


CASES = [
    ("no arguments", [], None, 2, "unsupported invocation"),
    ("unknown stack", ["run.py", "bogus", "c.yml"], None, 2, "unsupported invocation"),
    ("extra flag", ["install", "c.yml", "--force"], None, 2, "unsupported invocation"),
    # lib/install.py do_install logs ConfigNotFoundException and returns None: `install` exits 0
    ("install: missing db_password exits 0", ["install", "c.yml"],
     {"primary_master_node": {k: v for k, v in GOOD_PRIMARY.items() if k != "db_password"}}, 0,
     "not found 'db_password'"),
    ("run.py: missing db_password", ["run.py", "virt", "c.yml"],
     {"primary_master_node": {k: v for k, v in GOOD_PRIMARY.items() if k != "db_password"}}, 1,
     "not found 'db_password'"),
]


@pytest.mark.parametrize(("argv", "config", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ocboot_shim_refuses_as_ocboot_does(tmp_path, argv, config, code, message):
    if config is not None:
        (tmp_path / "c.yml").write_text(yaml.safe_dump(config))
    result = _run(tmp_path, "ocboot.sh", argv)
    assert result.returncode == code
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "host_inventory.yml").exists(), "the loader failed before the inventory was written"


K3S_CASES = [
    ("not server", ["agent"], "only `k3s server`"),
    ("unknown flag", ["server", "--server", "https://10.250.9.100:6443", "--token", "T0K", "--bogus", "x"],
     "Incorrect Usage: flag provided but not defined: -bogus"),
    ("no token", ["server", "--server", "https://10.250.9.100:6443"], "--token is required"),
    ("wrong server", ["server", "--server", "https://10.250.9.11:6443", "--token", "T0K"],
     "not the fixed registration address"),
    ("wrong token", ["server", "--server", "https://10.250.9.100:6443", "--token", "nope"], "--token rejected"),
    ("unreadable token file", ["server", "--server", "https://10.250.9.100:6443", "--token-file", "/nonexistent/t"],
     "failed to read token file /nonexistent/t"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in K3S_CASES], ids=[c[0] for c in K3S_CASES])
def test_k3s_shim_refuses_loudly(tmp_path, argv, message):
    result = _run(tmp_path, "k3s", argv)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "T0K" not in result.stderr, "the join token must never be printed"


import _k3s  # noqa: E402


def test_k3s_reads_config_file_drop_ins_and_cli_as_k3s_does(tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text("server: https://v:6443\ntoken-file: /t\ntls-san: [a]\nbogus-key: 1\ndisable-network-policy: true\n")
    (tmp_path / "config.yaml.d").mkdir()
    (tmp_path / "config.yaml.d" / "10-x.yaml").write_text("tls-san: [b]\ncluster-cidr: 10.40.0.0/16\n")
    (tmp_path / "config.yaml.d" / "20-y.yml").write_text("tls-san+: [b2]\n")
    flags, warnings = _k3s.server_flags(["--config", str(config), "--tls-san", "c", "--node-name=n1"])
    # a drop-in's key replaces config.yaml's, `key+` appends, the CLI's list flags add to both
    assert flags["tls-san"] == ["b", "b2", "c"] and flags["node-name"] == "n1" and flags["token-file"] == "/t"
    assert flags["disable-network-policy"] is True and flags["cluster-cidr"] == "10.40.0.0/16"
    assert warnings == ["Unknown flag --bogus-key found in config.yaml, skipping"]
    with pytest.raises(_k3s.K3sError, match="no such file"):
        _k3s.server_flags(["--config", str(tmp_path / "missing.yaml")])
    monkeypatch.setenv("K3S_CONFIG_FILE", str(tmp_path / "absent.yaml"))
    assert _k3s.server_flags([]) == ({}, [])  # the default file may be absent


def test_k3s_compares_the_critical_fields_as_compare_config_does():
    """mismatch(joining flags, the cluster's /v1-k3s/config JSON): CriticalControlArgs at 005499a,
    defaults and derived values as pkg/cli/server/server.go computes them."""
    default = _k3s.control({})
    assert default["ClusterDNSs"] == ["10.43.0.10"] and default["ClusterIPRanges"] == [
        {"IP": "10.42.0.0", "Mask": "//8AAA=="}]  # Go's JSON of a *net.IPNet
    assert _k3s.mismatch({}, default) == []
    assert _k3s.mismatch({"cluster-dns": "10.43.0.10", "flannel-backend": "vxlan"}, default) == []  # the defaults
    assert _k3s.mismatch({"service-cidr": "10.96.0.0/12"}, default) == ["cluster-dns", "service-cidr"]
    assert _k3s.mismatch({"cluster-cidr": "10.99.0.0/16", "disable-network-policy": True}, default) == [
        "cluster-cidr", "disable-network-policy"]
    # shadowed by Control's own DisableServiceLB: `disable: servicelb` is never compared; nor is `disable`
    assert _k3s.mismatch({"disable": ["servicelb", "traefik"]}, default) == []
    # a down-level server without EgressSelectorMode: the joining server's own value is used
    assert _k3s.mismatch({"egress-selector-mode": "pod"}, {**default, "EgressSelectorMode": ""}) == []
    assert _k3s.mismatch({"egress-selector-mode": "pod"}, default) == ["egress-selector-mode"]


def test_k3s_join_reads_the_clusters_config_from_the_server_and_refuses_a_mismatch(tmp_path):
    """The shim reads /v1-k3s/config from --server with the token as k3s does (a supervisor on a
    loopback address of its own plays the survivor) and refuses a differing cluster-cidr with k3s's
    warning per field and its error; without an answer it goes on, as k3s does."""
    import random

    from tests.support.pki import make_ca, make_cert
    import _supervisor

    ca = make_ca(directory=tmp_path / "pki")
    vip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    cert, key = make_cert(ca=ca, directory=tmp_path / "pki", name="survivor", sans=[vip])
    server = _supervisor.serve(address=vip, port=6443, ca=str(ca.cert), cert=str(cert), key=str(key),
                               control=_k3s.control({"cluster-cidr": "10.52.0.0/16"}), token="T0K")
    try:
        result = _run(tmp_path, "k3s", ["server", "--server", f"https://{vip}:6443", "--token", "T0K",
                                        "--cluster-cidr", "10.99.0.0/16", "--disable", "servicelb"], vip=vip)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert 'level=warning msg="critical configuration mismatched: cluster-cidr"' in result.stderr
    assert "failed to validate server configuration: critical configuration value mismatch between servers" \
        in result.stderr and "disable-service-lb" not in result.stderr
    assert "T0K" not in result.stderr
