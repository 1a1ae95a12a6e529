"""RKE2's distribution module (cpswap/distributions/rke2.py): what its join writes and runs."""
from __future__ import annotations

import subprocess

import yaml

from cpswap import distributions as registry
from cpswap.core.model import Endpoint, Host
from cpswap.core.slots import slot_commands
from cpswap.distributions import rke2
from tests.support.stacks import model_for

HOST = Host(name="rke2-4", ip="10.4.0.4")


def test_config_joins_through_the_supervisor_port_with_a_token_file():
    text = rke2.render_rke2_config(host=HOST, endpoint=Endpoint("10.4.0.100", 6443))
    assert text.startswith(rke2.MARKER + "\n")
    assert yaml.safe_load(text) == {"server": "https://10.4.0.100:9345", "token-file": "/etc/rancher/rke2/cpswap-token",
                                    "node-name": "rke2-4", "node-ip": "10.4.0.4", "tls-san": ["10.4.0.100"]}
    v6 = yaml.safe_load(rke2.render_rke2_config(host=HOST, endpoint=Endpoint("fd00::64", 6443)))
    assert v6["server"] == "https://[fd00::64]:9345"


def test_join_is_valid_shell_with_no_secret_and_starts_the_installed_service():
    text = rke2.render_rke2_join(host=HOST, endpoint=Endpoint("10.4.0.100", 6443))
    assert subprocess.run(["sh", "-n", "-c", text], capture_output=True).returncode == 0
    assert text.endswith("systemctl enable --now rke2-server")
    assert "/var/lib/rancher/rke2/server/db/etcd/member" in text  # adoption: an initialised server is left alone
    assert "K10" not in text and "token:" not in text


def test_example_stack_plans_the_rke2_swap():
    model = model_for("rke2")
    distro = registry.get("rke2")
    assert distro.preflight.ports == (9345,) and distro.etcd_preset and distro.etcd_preset.name == "rke2"
    specs = {s.name: s for s in slot_commands(model=model, member=model.member("cp1"))}
    assert list(specs) == ["cp1-preflight", "cp1-etcd-leave", "cp1-node-leave", "cp1-join", "cp1-verify", "cp1-pvcs"]
    assert specs["cp1-join"].stdin is not None and specs["cp1-join"].stdin.secret == "rke2Token"
    assert specs["cp1-join"].runs_on.target == "self"
    assert "--distribution rke2" in specs["cp1-preflight"].create
    assert registry.get("rke2").restore("/s/x.db", None) == \
        "rke2 server --cluster-reset --cluster-reset-restore-path=/s/x.db"
