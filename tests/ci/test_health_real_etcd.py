"""The scheduled health check (ci/health.sh: `cpswap plan --observe --json` judged by `cpswap ci health`)
against a real 3-member TLS etcd cluster on loopback: healthy first, then a member killed, which must
fail the check naming its slot and the edit to make. Read-only: the cluster is only read."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.etcd
ROOT = Path(__file__).resolve().parents[2]


def _project(path: Path, *, cluster: EtcdCluster | None = None) -> Path:
    """The stack's hosts are the cluster's members, name AND IP (a live member belongs to a configured host
    only when both match: facts.member_matches); without a cluster, addresses nothing is asked about."""
    path.mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", path / "Pulumi.yaml")
    members = {f"cp{i}": {"name": f"m{i}", "ip": cluster.ip(f"m{i}") if cluster else f"10.77.0.{i}"} for i in (1, 2, 3)}
    config = {"cpswap:distribution": "k3s", "cpswap:controlPlaneEndpoint": "10.77.0.100:6443",
              "cpswap:members": members}
    (path / "Pulumi.twin.yaml").write_text(yaml.safe_dump({"config": config}))
    (path / ".cpswap").mkdir()
    (path / ".cpswap" / "applied-twin.json").write_text(json.dumps({"membership": members}))
    return path


def _health(project: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "ci" / "health.sh"), "twin", str(out)], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def test_health_check_passes_then_names_the_dead_members_slot(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path / "etcd", n=3, distinct_ips=True)
    try:
        project = _project(tmp_path / "stack", cluster=cluster)
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
               "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
               "CPSWAP_ETCD_ENDPOINTS": ",".join(m.client for m in cluster.members.values())}
        healthy = _health(project, tmp_path / "run1", env)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert healthy.stdout == "cpswap health: stack twin is healthy and its live membership matches the config.\n"
        live = json.loads((tmp_path / "run1" / "plan.json").read_text())["live"]
        assert sorted(m["name"] for m in live) == ["m1", "m2", "m3"] and all(m["healthy"] for m in live)

        cluster.kill("m3")
        sick = _health(project, tmp_path / "run2", env)
        assert sick.returncode == 1, sick.stdout + sick.stderr
        report = (tmp_path / "run2" / "health.md").read_text()
        assert report.startswith("## cpswap health: stack twin needs attention")
        assert ("| cp3 | etcd member m3 (127.0.0.13) in cp3 is unhealthy | replace it: in Pulumi.twin.yaml set "
                "cpswap:members.cp3 to the replacement host") in report
        assert "Voters 3, healthy 2, quorum 2, fault tolerance 0." in report
        assert "PRIVATE KEY" not in sick.stdout + sick.stderr + report
    finally:
        cluster.stop()


def test_health_check_without_observation_credentials_checks_nothing(tmp_path):
    project = _project(tmp_path / "stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPSWAP_ETCD_")}
    done = _health(project, tmp_path / "out", {**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "observation is not configured" in done.stdout
    assert not (tmp_path / "out" / "plan.json").exists()
