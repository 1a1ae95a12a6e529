"""Live observation for the planner (issue 3 §5): read-only, short timeout, degrades to unobserved."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from tests.support.etcd_cluster import EtcdCluster, free_port
from tests.support.pulumi_mocks import ROOT

pytestmark = pytest.mark.etcd


def _project(tmp_path, names):
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    members = {f"cp{i}": {"name": n, "ip": f"127.0.0.{10 + int(n[1:])}"} for i, n in enumerate(names, 1)}
    config = {"cpswap:distribution": "k3s", "cpswap:controlPlaneEndpoint": "10.77.0.100:6443",
              "cpswap:members": members}
    (tmp_path / "Pulumi.twin.yaml").write_text(yaml.safe_dump({"config": config}))
    applied = {**members, "cp3": {"name": "m3", "ip": "127.0.0.13"}}
    (tmp_path / ".cpswap").mkdir()
    (tmp_path / ".cpswap" / "applied-twin.json").write_text(json.dumps({"membership": applied}))
    return tmp_path


def _plan(tmp_path, env):
    return subprocess.run(["cpswap", "plan", "--stack", "twin", "--dir", str(tmp_path), "--observe", "--json",
                           "--timeout", "1"], capture_output=True, text=True, env=env, timeout=60)


def test_observed_plan_sees_the_dead_member_and_stays_safe(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path / "etcd", n=3, distinct_ips=True)
    try:
        cluster.kill("m3")
        project = _project(tmp_path / "p", ["m1", "m2", "m4"])
        env = {**os.environ, "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
               "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
               "CPSWAP_ETCD_ENDPOINTS": ",".join(m.client for m in cluster.members.values())}
        result = _plan(project, env)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["observed"] is True and doc["unhealthy"] == ["m3"]
        assert doc["quorum"]["before"] == {"voters": 3, "healthy": 2, "quorum": 2, "tolerance": 0}
        assert "PRIVATE KEY" not in result.stdout + result.stderr
        swap_healthy = _project(tmp_path / "q", ["m1", "m5", "m3"])  # replacing healthy m2 while m3 is dead
        (swap_healthy / ".cpswap" / "applied-twin.json").write_text(json.dumps({"membership": {
            "cp1": {"name": "m1", "ip": "127.0.0.11"}, "cp2": {"name": "m2", "ip": "127.0.0.12"},
            "cp3": {"name": "m3", "ip": "127.0.0.13"}}}))
        refused = _plan(swap_healthy, env)
        assert refused.returncode == 1
        rules = " ".join(r["rule"] for r in json.loads(refused.stdout)["refusals"])
        assert "leaves 1 healthy of 2 voters; quorum needs 2" in rules
    finally:
        cluster.stop()


def test_unreachable_etcd_warns_and_marks_the_plan_unobserved(tmp_path):
    cluster = EtcdCluster.start(workdir=tmp_path / "etcd", n=1)
    cluster.stop()  # credentials exist, the cluster does not answer
    project = _project(tmp_path / "p", ["m1", "m2", "m4"])
    env = {**os.environ, "CPSWAP_ETCD_CACERT_DATA": cluster.ca.cert.read_text(),
           "CPSWAP_ETCD_CERT_DATA": cluster.cert.read_text(), "CPSWAP_ETCD_KEY_DATA": cluster.key.read_text(),
           "CPSWAP_ETCD_ENDPOINTS": f"https://127.0.0.1:{free_port()}"}
    result = _plan(project, env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["observed"] is False
    assert "WARNING: etcd not observed" in result.stderr
    assert any("etcd not observed" in w for w in doc["warnings"])


class _NoWrites(dict):
    """os.environ stand-in that fails the test on any write: credentials must be handed over explicitly."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError(f"observation wrote the process environment: {args!r}")

    __setitem__ = __delitem__ = pop = update = setdefault = clear = _refuse


def test_observation_takes_the_credentials_as_arguments_never_through_the_environment(tmp_path, monkeypatch):
    from cpswap.executors.observe import observe_cluster

    cluster = EtcdCluster.start(workdir=tmp_path / "etcd", n=1)
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CPSWAP_ETCD_")}
        with monkeypatch.context() as patched:  # undone before pytest itself writes the environment again
            patched.setattr(os, "environ", _NoWrites(clean))
            observation = observe_cluster(etcd_endpoints=[m.client for m in cluster.members.values()],
                                          ca_pem=cluster.ca.cert.read_text(), cert_pem=cluster.cert.read_text(),
                                          key_pem=cluster.key.read_text(), timeout=3.0)
            assert dict(os.environ) == clean
        assert observation.etcd.reachable, observation.etcd.error
        assert [m.name for m in observation.etcd.members] == ["m1"]
    finally:
        cluster.stop()
