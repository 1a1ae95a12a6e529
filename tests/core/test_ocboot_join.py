"""The ocboot join as it runs on the VIP holder: the config completion script (table-driven, on
`kubectl get nodes -o json` documents) and the rendered command run by /bin/sh with stand-in
kubectl and ocboot.sh on PATH (adoption, kubectl failure, join, leftovers removed)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from cpswap.core.model import parse_stack_config
from cpswap.core.renderers.ocboot import (CONFIG_FILE, render_ocboot_join, render_ocboot_template, template_text)
from tests.support.ocboot_join import MODEL, SEED_NODES, complete, listing, node
from tests.support.pulumi_mocks import ROOT, load_stack_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "renderers"


def test_the_seed_shape_is_completed_on_the_vip_holder(tmp_path):
    result, config = complete(SEED_NODES, local=("192.168.0.244",), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert config == yaml.safe_load((FIXTURES / "ocboot-seed-004.yaml").read_text())
    assert "primary_master_node lzx-ha-env-2 (192.168.0.244)" in result.stdout


ERRORS = [
    ("not on a control-plane node", SEED_NODES, ("10.9.9.9",), "must be exactly one Ready control-plane Node"),
    ("one survivor only", listing(node("lzx-ha-env-2", "192.168.0.244")), ("192.168.0.244",),
     "at least 2 hosts (k3s_server role, 'Start other server if any'); found 1"),
    ("the other survivor is NotReady", listing(node("lzx-ha-env-2", "192.168.0.244"),
                                               node("lzx-ha-env-3", "192.168.0.243", ready=False)),
     ("192.168.0.244",), "at least 2 hosts (k3s_server role, 'Start other server if any'); found 1"),
    ("a worker does not count", listing(node("lzx-ha-env-2", "192.168.0.244"),
                                        node("w1", "192.168.0.50", control_plane=False)),
     ("192.168.0.244",), "at least 2 hosts (k3s_server role, 'Start other server if any'); found 1"),
    ("the joining IP is another Node's", listing(node("lzx-ha-env-2", "192.168.0.244"),
                                                 node("lzx-ha-env-3", "192.168.0.243"),
                                                 node("someone", "192.168.0.239")),
     ("192.168.0.244",), "Node someone already has InternalIP 192.168.0.239"),
    ("not a List", {"kind": "Status"}, ("192.168.0.244",), "did not return a List"),
]


@pytest.mark.parametrize(("nodes", "local", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_completion_refuses_what_ocboot_cannot_join(tmp_path, nodes, local, message):
    result, config = complete(nodes, local=local, tmp_path=tmp_path)
    assert result.returncode == 1 and config is None
    assert message in result.stderr and "lzx-test-add-node (192.168.0.239)" in result.stderr, result.stderr


def test_a_joining_host_that_is_a_node_already_is_adoption(tmp_path):
    nodes = listing(*SEED_NODES["items"], node("lzx-test-add-node", "192.168.0.239"))
    result, config = complete(nodes, local=("192.168.0.244",), tmp_path=tmp_path)
    assert result.returncode == 3 and config is None
    assert "already a node of this cluster; nothing to join" in result.stdout


# --- the rendered command, run by /bin/sh with stand-ins for kubectl and ocboot.sh -------------------------

KUBECTL = """#!/bin/sh
# stand-in: `get nodes -o json` prints $STATE/nodes.json; `get node N -o name` looks N up; $STATE/kubectl-rc fails all
echo "kubectl $*" >> "$STATE/calls"
if [ -f "$STATE/kubectl-rc" ]; then echo 'Unable to connect to the server: dial tcp: i/o timeout' >&2; exit 1; fi
case "$1 $2" in
  "get nodes") cat "$STATE/nodes.json";;
  "get node") grep -q "\\"name\\": \\"$3\\"" "$STATE/nodes.json" && echo "node/$3" || {
      echo "Error from server (NotFound): nodes \\"$3\\" not found" >&2; exit 1; };;
esac
"""
OCBOOT = """#!/bin/sh
# stand-in: records its argv and config, writes ocboot's leftovers, optionally registers the Node
echo "ocboot.sh $*" >> "$STATE/calls"
cp "$3" "$STATE/config-seen" 2>/dev/null || cp "$2" "$STATE/config-seen"
stat -c %a "$2" > "$STATE/config-mode" 2>/dev/null
echo "db_password: x" > host_inventory.yml; echo "token: t" > oc_vars.yml
if [ -f "$STATE/register" ]; then cp "$STATE/register" "$STATE/nodes.json"; fi
exit "$(cat "$STATE/ocboot-rc" 2>/dev/null || echo 0)"
"""


@pytest.fixture
def sandbox(tmp_path):
    state, work, bin_dir = tmp_path / "state", tmp_path / "home" / "ocboot", tmp_path / "bin"
    for d in (state, work, bin_dir):
        d.mkdir(parents=True)
    (bin_dir / "kubectl").write_text(KUBECTL)
    (work / "ocboot.sh").write_text(OCBOOT)
    for f in (bin_dir / "kubectl", work / "ocboot.sh"):
        f.chmod(0o755)
    return state, work, bin_dir


def run_join(sandbox, nodes: dict, *, invocation: str = "install") -> subprocess.CompletedProcess:
    state, work, bin_dir = sandbox
    (state / "nodes.json").write_text(json.dumps(nodes, indent=4))
    model = parse_stack_config({**load_stack_file(ROOT / "Pulumi.prod.yaml"),
                                "ocboot": {**load_stack_file(ROOT / "Pulumi.prod.yaml")["ocboot"],
                                           "invocation": invocation}}, stack="prod")
    member = model.member("cp1")
    # the sandbox's own address plays the VIP holder (lzx-ha-env-2)
    template = render_ocboot_template(joining=member, endpoint=model.endpoint, ocboot=model.ocboot, db_password="pw")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state), "HOME": str(work.parent)}
    return subprocess.run(["/bin/sh", "-c", render_ocboot_join(joining=member, ocboot=model.ocboot)],
                          input=template_text(template), capture_output=True, text=True, env=env,
                          cwd=work.parent, timeout=60)


HERE = listing(node("lzx-ha-env-2", "127.0.0.1", networks="eth0/br0/127.0.0.1"),
               node("lzx-ha-env-3", "192.0.2.43", networks="eth0/br0/192.0.2.43"))


def calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines() if (state / "calls").exists() else []


def test_kubectl_failure_fails_the_join_and_runs_nothing(sandbox):
    state, work, _ = sandbox
    (state / "kubectl-rc").write_text("1")
    result = run_join(sandbox, HERE)
    assert result.returncode == 1
    assert "kubectl get nodes failed on the VIP holder; not deciding whether to join" in result.stderr
    assert calls(state) == ["kubectl get nodes -o json"]
    assert sorted(p.name for p in work.iterdir()) == ["ocboot.sh"]


def test_adoption_writes_nothing_and_runs_no_ocboot(sandbox):
    state, work, _ = sandbox
    result = run_join(sandbox, listing(*HERE["items"], node("lzx-test-add-node", "192.0.2.39")))
    assert result.returncode == 0, result.stderr
    assert "nothing to join" in result.stdout
    assert calls(state) == ["kubectl get nodes -o json"]
    assert sorted(p.name for p in work.iterdir()) == ["ocboot.sh"]


@pytest.mark.parametrize(("invocation", "argv"), [("install", "install .cpswap-join.yml"),
                                                  ("run.py", "run.py virt .cpswap-join.yml")])
def test_join_runs_ocboot_with_the_completed_config_and_removes_its_leftovers(sandbox, invocation, argv):
    state, work, _ = sandbox
    (state / "register").write_text(json.dumps(listing(*HERE["items"], node("lzx-test-add-node", "192.0.2.39"))))
    result = run_join(sandbox, HERE, invocation=invocation)
    assert result.returncode == 0, result.stderr
    assert calls(state) == ["kubectl get nodes -o json", f"ocboot.sh {argv}", "kubectl get node lzx-test-add-node -o name"]
    seen = yaml.safe_load((state / "config-seen").read_text())
    assert seen["primary_master_node"]["hostname"] == "127.0.0.1" and seen["primary_master_node"]["use_local"] is False
    assert seen["primary_master_node"]["host_networks"] == "eth0/br0/127.0.0.1"
    assert [h["hostname"] for h in seen["master_nodes"]["hosts"]] == ["192.168.0.239", "192.0.2.43"]
    assert seen["primary_master_node"]["db_password"] == "pw" and "cpswap" not in seen
    if invocation == "install":
        assert (state / "config-mode").read_text().strip() == "600"
    assert sorted(p.name for p in work.iterdir()) == ["ocboot.sh"], "ocboot's leftovers (DB password) must go"


def test_an_ocboot_failure_fails_the_step_and_still_removes_the_leftovers(sandbox):
    state, work, _ = sandbox
    (state / "ocboot-rc").write_text("2")
    result = run_join(sandbox, HERE)
    assert result.returncode == 2
    assert sorted(p.name for p in work.iterdir()) == ["ocboot.sh"]


def test_ocboot_exiting_0_without_joining_fails_the_step(sandbox):
    """`./ocboot.sh install` logs a ConfigNotFoundException and exits 0; a one-host master_nodes
    joins nothing and succeeds: either way the host is not a Node afterwards."""
    _state, _, _ = sandbox
    result = run_join(sandbox, HERE)
    assert result.returncode == 1
    assert "ocboot exited 0 but lzx-test-add-node is not a Node" in result.stderr


def test_the_secret_template_never_reaches_argv_or_the_command_text():
    text = render_ocboot_join(joining=MODEL.member("cp1"), ocboot=MODEL.ocboot)
    assert "db_password" not in text and "ocbootDbPassword" not in text
    assert os.path.basename(CONFIG_FILE) in text
