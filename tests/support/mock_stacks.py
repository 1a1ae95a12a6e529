"""Stack configs of the kubean, OpenShift and kubeadm-with-keepalived distributions, their secrets, and a
mock run of the program on one (test-only). Shared by the Pulumi mock-run, deadline and engine-fidelity
tests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.pulumi_mocks import ROOT, TEST_SECRETS, Recording, run_program

SECRETS = {**TEST_SECRETS, "globalKubeconfig": "apiVersion: v1\nkind: Config\n# TESTGLOBALKUBECONFIG\n",
           "keepalivedAuthPass": "vrrpTst1"}
MEMBERS = {"cp1": {"name": "centos-master1", "ip": "10.6.0.11"}, "cp2": {"name": "centos-master2", "ip": "10.6.0.12"},
           "cp3": {"name": "centos-master3", "ip": "10.6.0.13"}}
KUBEAN = {"distribution": "kubean", "controlPlaneEndpoint": "10.6.0.100:6443", "etcd": {"preset": "env"},
          "kubean": {"cluster": "centos", "image": "ghcr.io/kubean-io/spray-job:v0.12.2"}, "members": MEMBERS}
OPENSHIFT = {"distribution": "openshift", "controlPlaneEndpoint": "10.7.0.100:6443", "etcd": {"preset": "env"},
             "members": {"cp1": {"name": "ip-10-7-0-11", "ip": "10.7.0.11"},
                         "cp2": {"name": "ip-10-7-0-12", "ip": "10.7.0.12"},
                         "cp3": {"name": "ip-10-7-0-13", "ip": "10.7.0.13"}}}
KUBEADM_VIP = {"distribution": "kubeadm", "controlPlaneEndpoint": "10.8.0.100:6443", "etcd": {"preset": "env"},
               "members": {"cp1": {"name": "k8s-master", "ip": "10.8.0.11"},
                           "cp2": {"name": "k8s-backup1", "ip": "10.8.0.12"},
                           "cp3": {"name": "k8s-backup2", "ip": "10.8.0.13"}},
               "vip": {"keepalived": True, "interface": "ens33", "virtualRouterId": 51, "routerId": "NGINX_MASTER",
                       "priorities": {"cp1": 100, "cp2": 90, "cp3": 80}}}


def workdir(tmp_path: Path, config: dict, extra: dict | None = None) -> Path:
    (tmp_path / ".cpswap").mkdir(exist_ok=True)
    applied = {"membership": {s: dict(m) for s, m in config["members"].items()}, **(extra or {})}
    (tmp_path / ".cpswap" / "applied-prod.json").write_text(json.dumps(applied))
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    return tmp_path


def run_config(config: dict, work: Path, **kw) -> Recording:
    rec = run_program(config=config, secrets=SECRETS, cwd=work, isolate_network=True, **kw)
    assert rec.error is None, rec.error
    return rec
