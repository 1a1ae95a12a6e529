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
