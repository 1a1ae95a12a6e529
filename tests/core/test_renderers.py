"""Table-driven renderer fixtures (tests/fixtures/renderers/): args → exact text."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from cpswap.core.model import parse_stack_config
from cpswap.core.renderers import (render_etcd_leave, render_k3s_join, render_kubeadm_join, render_kubeadm_prepare,
                                   render_ocboot_config, render_ocboot_join)
from cpswap.core.renderers.executor import CPSWAP
from cpswap.core.renderers.ocboot import config_text
from tests.support.pulumi_mocks import ROOT, load_stack_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "renderers"
CASES = yaml.safe_load((FIXTURES / "cases.yaml").read_text())
ALLOWED_KEYS = {"id", "renderer", "model", "member", "expect"}


def _render(case: dict) -> str:
    model = parse_stack_config(case["model"], stack="fixture")
    member = model.member(case["member"])
    return {
        "k3s_join": lambda: render_k3s_join(host=member.host, endpoint=model.endpoint, k3s=model.k3s),
        "kubeadm_join": lambda: render_kubeadm_join(host=member.host, endpoint=model.endpoint, kubeadm=model.kubeadm),
        "kubeadm_prepare": render_kubeadm_prepare,
        "etcd_leave": lambda: render_etcd_leave(host=member.host, etcd=model.etcd),
        "ocboot_join": lambda: render_ocboot_join(joining=member, ocboot=model.ocboot),
    }[case["renderer"]]()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_renderer_fixture(case):
    assert set(case) <= ALLOWED_KEYS, f"unknown fixture keys {set(case) - ALLOWED_KEYS}"
    assert _render(case) == case["expect"].replace("{cpswap}", CPSWAP)


def test_rendered_commands_parse_as_shell():
    for case in CASES:
        shlex.split(_render(case))  # balanced quoting


def test_ocboot_config_for_the_seed_has_the_seed_shape():
    model = parse_stack_config(load_stack_file(ROOT / "Pulumi.prod.yaml"), stack="prod")
    config = render_ocboot_config(joining=model.member("cp1"), endpoint=model.endpoint, ocboot=model.ocboot,
                                  db_password="<secret:ocbootDbPassword>", primary=model.member("cp2"),
                                  other_masters=(model.member("cp3"),))
    assert config == yaml.safe_load((FIXTURES / "ocboot-seed-004.yaml").read_text())
    assert yaml.safe_load(config_text(config)) == config


def test_ocboot_config_run_on_the_vip_uses_the_local_survivor_as_primary():
    model = parse_stack_config(load_stack_file(ROOT / "Pulumi.prod.yaml"), stack="prod")
    config = render_ocboot_config(joining=model.member("cp1"), endpoint=model.endpoint, ocboot=model.ocboot,
                                  db_password="x")
    assert config["primary_master_node"]["use_local"] is True
    assert "hostname" not in config["primary_master_node"]
    assert [h["hostname"] for h in config["master_nodes"]["hosts"]] == ["192.168.0.239"]
    for key in ("controlplane_host", "db_host", "db_password", "onecloud_version"):  # ocboot loader's required keys
        assert key in config["primary_master_node"]
    assert {"controlplane_host", "hosts"} <= set(config["master_nodes"])


def test_hostile_values_are_quoted():
    from cpswap.core.model import EtcdSettings, Host

    text = render_etcd_leave(host=Host(name="x; rm -rf /", ip="10.0.0.1"), etcd=EtcdSettings())
    assert "--node 'x; rm -rf /'" in text
    assert shlex.split(text)[shlex.split(text).index("--node") + 1] == "x; rm -rf /"
