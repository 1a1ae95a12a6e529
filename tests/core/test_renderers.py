"""Table-driven renderer fixtures (tests/fixtures/renderers/): args → exact text."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from cpswap.core.model import parse_stack_config
from cpswap.core.renderers import render_etcd_leave, render_k3s_join, render_kubeadm_join, render_kubeadm_prepare
from cpswap.core.renderers.executor import CPSWAP

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "renderers"
CASES = yaml.safe_load((FIXTURES / "cases.yaml").read_text())
ALLOWED_KEYS = {"id", "renderer", "model", "member", "expect"}


def _render(case: dict) -> str:
    model = parse_stack_config(case["model"], stack="fixture")
    member = model.member(case["member"])
    return {
        "k3s_join": lambda: render_k3s_join(host=member.host, endpoint=model.endpoint, k3s=model.k3s),
        "kubeadm_join": lambda: render_kubeadm_join(host=member.host, endpoint=model.endpoint, kubeadm=model.kubeadm),
        "kubeadm_prepare": lambda: render_kubeadm_prepare(host=member.host),
        "etcd_leave": lambda: render_etcd_leave(host=member.host, etcd=model.etcd),
    }[case["renderer"]]()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_renderer_fixture(case):
    assert set(case) <= ALLOWED_KEYS, f"unknown fixture keys {set(case) - ALLOWED_KEYS}"
    assert _render(case) == case["expect"].replace("{cpswap}", CPSWAP)


def test_rendered_commands_parse_as_shell():
    for case in CASES:
        shlex.split(_render(case))  # balanced quoting


def test_hostile_values_are_quoted():
    from cpswap.core.model import EtcdSettings, Host

    text = render_etcd_leave(host=Host(name="x; rm -rf /", ip="10.0.0.1"), etcd=EtcdSettings())
    assert "--node 'x; rm -rf /'" in text
    assert shlex.split(text)[shlex.split(text).index("--node") + 1] == "x; rm -rf /"


def test_k3s_join_installs_a_service_and_keeps_the_token_out_of_argv():
    from cpswap.core.model import Endpoint, Host, K3sSettings
    from cpswap.core.renderers.k3s import CONFIG_FILE, TOKEN_FILE, render_k3s_config

    host, endpoint = Host(name="k3s-b", ip="10.0.0.2"), Endpoint(host="10.0.0.100", port=6443)
    text = render_k3s_join(host=host, endpoint=endpoint, k3s=K3sSettings())
    assert "exec " not in text and "--token" not in text and "K3S_TOKEN" not in text
    assert text.endswith("systemctl daemon-reload && systemctl enable --now k3s")
    assert text.index("server/db/etcd/member") < text.index("mkdir"), "adoption is decided before anything is written"
    assert text.index("! grep -qxF") < text.index(f"> {CONFIG_FILE}"), "an operator's config.yaml is never overwritten"
    assert f"chmod 600 {TOKEN_FILE}" in text and f"chmod 600 {CONFIG_FILE}" in text and "umask 077" in text
    assert yaml.safe_load(render_k3s_config(host=host, endpoint=endpoint, k3s=K3sSettings())) == {
        "server": "https://10.0.0.100:6443", "token-file": TOKEN_FILE, "data-dir": "/var/lib/rancher/k3s",
        "node-name": "k3s-b", "node-ip": "10.0.0.2", "tls-san": ["10.0.0.100"]}


def _run_k3s_join(tmp_path: Path, monkeypatch, stdin: str):
    """The rendered join run by /bin/sh with its files under ``tmp_path`` (the module's paths
    patched) and stand-ins for `k3s` and `systemctl` that only record their calls."""
    import subprocess

    from cpswap.core.model import Endpoint, Host, K3sSettings
    from cpswap.core.renderers import k3s as renderer

    etc = tmp_path / "etc-rancher-k3s"
    for name, value in (("CONFIG_DIR", str(etc)), ("TOKEN_FILE", str(etc / "cpswap-token")),
                        ("CONFIG_FILE", str(etc / "config.yaml")), ("UNIT_FILE", str(tmp_path / "k3s.service"))):
        monkeypatch.setattr(renderer, name, value)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("k3s", "systemctl"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {tmp_path}/calls\n")
        (bin_dir / tool).chmod(0o755)
    text = renderer.render_k3s_join(host=Host(name="k3s-b", ip="10.0.0.2"),
                                    endpoint=Endpoint(host="10.0.0.100", port=6443),
                                    k3s=K3sSettings(data_dir=str(tmp_path / "data")))
    result = subprocess.run(["/bin/sh", "-c", text], input=stdin, capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    return result, etc


PREFLIGHT_OUTPUT = """preflight cp2: passed
  ok   k3s-config   10.0.0.100               read from https://10.0.0.100:6443/v1-k3s/config (...)
# cpswap: cluster-critical k3s server flags, read from https://10.0.0.100:6443/v1-k3s/config
cluster-cidr: "10.52.0.0/16"
service-cidr: "10.43.0.0/16"
cluster-dns: "10.43.0.10"
cluster-domain: "cluster.local"
flannel-backend: "vxlan"
disable:
  - "traefik"
# cpswap: end of the cluster-critical k3s server flags
"""


def test_k3s_join_copies_the_preflights_critical_flags_into_config_yaml(tmp_path, monkeypatch):
    result, etc = _run_k3s_join(tmp_path, monkeypatch, f"k3s-token: T0K3N-secret\n{PREFLIGHT_OUTPUT}\n")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((etc / "config.yaml").read_text())
    assert config["cluster-cidr"] == "10.52.0.0/16" and config["disable"] == ["traefik"]
    assert config["server"] == "https://10.0.0.100:6443" and config["node-name"] == "k3s-b"
    assert "preflight cp2" not in (etc / "config.yaml").read_text(), "only the block is copied"
    assert (etc / "cpswap-token").read_text() == "T0K3N-secret\n"
    assert "T0K3N" not in (tmp_path / "calls").read_text()
    assert (tmp_path / "calls").read_text().splitlines() == ["systemctl daemon-reload", "systemctl enable --now k3s"]


@pytest.mark.parametrize(("stdin", "message"), [
    ("k3s-token: T0K3N-secret\npreflight cp2: passed\n", "no cluster-critical k3s server flags from the preflight"),
    ("k3s-token: T0K3N-secret\n" + PREFLIGHT_OUTPUT.rsplit("# cpswap: end", 1)[0], "no cluster-critical k3s"),
    ("T0K3N-secret\n" + PREFLIGHT_OUTPUT, "no k3s token on stdin"),
])
def test_k3s_join_without_the_critical_flags_writes_nothing(tmp_path, monkeypatch, stdin, message):
    result, etc = _run_k3s_join(tmp_path, monkeypatch, stdin)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert not etc.exists() and not (tmp_path / "calls").exists()
    assert "T0K3N" not in result.stderr + result.stdout
