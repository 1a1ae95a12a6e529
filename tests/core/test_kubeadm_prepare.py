"""kubeadm's join-prepare as it runs on the VIP holder, by /bin/sh with stand-in kubectl and
kubeadm on PATH: adoption and kubectl failures issue nothing; a join gets material made with the
cluster's own ClusterConfiguration (no online version lookup)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cpswap.core.model import Host
from cpswap.core.renderers.kubeadm import render_kubeadm_prepare

KUBECTL = """#!/bin/sh
echo "kubectl $*" >> "$STATE/calls"
case "$MODE:$*" in
  unreachable:*) echo 'The connection to the server 10.0.0.100:6443 was refused - did you specify the right host or port?' >&2; exit 1;;
  node:*"get node"*) echo "node/$5";;
  *"get node"*) echo "Error from server (NotFound): nodes \\"$5\\" not found" >&2; exit 1;;
  noversion:*configmap*) printf 'apiVersion: kubeadm.k8s.io/v1beta3\\nkind: ClusterConfiguration\\n';;
  *configmap*) printf 'apiVersion: kubeadm.k8s.io/v1beta3\\nkind: ClusterConfiguration\\nkubernetesVersion: v1.31.2\\n';;
esac
"""
KUBEADM = """#!/bin/sh
echo "kubeadm $*" >> "$STATE/calls"
for a in "$@"; do case $a in /*) cp "$a" "$STATE/config-seen"; stat -c %a "$a" > "$STATE/config-mode";; esac; done
case "$1 $2" in
  "init phase") echo '[upload-certs] Using certificate key:'; echo 0123abcd;;
  "token create") echo 'kubeadm join 10.0.0.100:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:ff ';;
esac
"""


@pytest.fixture
def sandbox(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("kubectl", KUBECTL), ("kubeadm", KUBEADM)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir, state, tmp_path


def run(sandbox, mode: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir, state, tmp = sandbox
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state), "MODE": mode, "TMPDIR": str(tmp)}
    result = subprocess.run(["/bin/sh", "-c", render_kubeadm_prepare(host=Host(name="kadm-b", ip="10.0.0.2"))],
                            env=env, capture_output=True, text=True, timeout=30)
    calls = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    return result, calls


def test_a_joining_host_that_is_a_node_already_gets_no_join_material(sandbox):
    result, calls = run(sandbox, "node")
    assert result.returncode == 0 and result.stdout == "ADOPTED=kadm-b\nTOKEN=\nCA_HASH=\nCERT_KEY=\n"
    assert not any(c.startswith("kubeadm") for c in calls), calls


def test_a_kubectl_failure_issues_nothing_and_fails(sandbox):
    result, calls = run(sandbox, "unreachable")
    assert result.returncode == 1 and result.stdout == ""
    assert "cannot tell whether it is a Node" in result.stderr and "was refused" in result.stderr
    assert not any(c.startswith("kubeadm") for c in calls), calls


def test_a_join_gets_material_made_with_the_clusters_configuration(sandbox):
    result, calls = run(sandbox, "notfound")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ADOPTED=\nTOKEN=abcdef.0123456789abcdef\nCA_HASH=sha256:ff\nCERT_KEY=0123abcd\n"
    kubeadm = [c.split() for c in calls if c.startswith("kubeadm")]
    assert [c[:5] for c in kubeadm] == [["kubeadm", "init", "phase", "upload-certs", "--upload-certs"],
                                        ["kubeadm", "token", "create", "--print-join-command", "--config"]]
    assert all("--config" in c for c in kubeadm)
    _, state, tmp = sandbox
    assert "kubernetesVersion: v1.31.2" in (state / "config-seen").read_text()
    assert (state / "config-mode").read_text().strip() == "600"
    assert not list(Path(tmp).glob("tmp.*")), "the ClusterConfiguration temp file is removed"


def test_a_cluster_configuration_without_a_version_is_refused(sandbox):
    result, calls = run(sandbox, "noversion")
    assert result.returncode == 1 and "kubernetesVersion" in result.stderr
    assert not any(c.startswith("kubeadm") for c in calls), calls
