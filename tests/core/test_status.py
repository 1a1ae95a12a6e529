"""`cpswap status`'s decision (pure) and its offline CLI form: no connection without credentials."""
from __future__ import annotations

import json

from cpswap.cli import main
from cpswap.core import status as st
from cpswap.core.facts import EtcdFacts, EtcdMember
from cpswap.core.model import Host, parse_stack_config
from tests.support.pulumi_mocks import ROOT

CONFIG = {"distribution": "k3s", "controlPlaneEndpoint": "10.9.0.100:6443",
          "members": {"cp1": {"name": "new-1", "ip": "10.9.0.4"}, "cp2": {"name": "n2", "ip": "10.9.0.2"},
                      "cp3": {"name": "n3", "ip": "10.9.0.3"}}}
MODEL = parse_stack_config(CONFIG, stack="t")
APPLIED = {"cp1": Host("old-1", "10.9.0.1"), "cp2": Host("n2", "10.9.0.2"), "cp3": Host("n3", "10.9.0.3")}


def member(i: int, name: str, ip: str, *, learner: bool = False, healthy: bool | None = True) -> EtcdMember:
    return EtcdMember(id=i, name=name, peer_urls=(f"https://{ip}:2380",), client_urls=(f"https://{ip}:2379",),
                      is_learner=learner, healthy=healthy)


def etcd(*members: EtcdMember, leader: int = 2) -> EtcdFacts:
    return EtcdFacts(reachable=True, members=members, leader_id=leader)


def test_converged_after_a_clean_swap():
    report = st.decide_status(model=MODEL, applied={**APPLIED, "cp1": Host("new-1", "10.9.0.4")},
                              etcd=etcd(member(1, "new-1-ab12", "10.9.0.4"), member(2, "n2-cd34", "10.9.0.2"),
                                        member(3, "n3-ef56", "10.9.0.3")), journals=(), snapshots=())
    assert report.converged and [s.live for s in report.slots] == ["voter"] * 3
    assert [s.leader for s in report.slots] == [False, True, False]
    assert st.render_status(report).endswith("converged")


def test_an_interrupted_join_names_what_the_next_up_does():
    report = st.decide_status(model=MODEL, applied=APPLIED, etcd=etcd(
        member(9, "", "10.9.0.4", learner=True, healthy=None), member(2, "n2", "10.9.0.2"), member(3, "n3", "10.9.0.3")),
        journals=(), snapshots=())
    cp1 = report.slots[0]
    assert cp1.live == "unstarted" and "re-runs cp1-join, which resumes it" in (cp1.action or "")
    assert not report.converged and report.extra_members == ()


def test_a_departed_member_not_removed_and_an_absent_slot():
    report = st.decide_status(model=MODEL, applied=APPLIED, etcd=etcd(
        member(1, "old-1", "10.9.0.1", healthy=False), member(2, "n2", "10.9.0.2"), member(3, "n3", "10.9.0.3")),
        journals=(), snapshots=())
    assert report.slots[0].live == "absent" and "run `pulumi up` to swap cp1 in" in (report.slots[0].action or "")
    assert report.extra_members == ("old-1 https://10.9.0.1:2380 voter",)


def test_an_interrupted_pvc_recovery_is_resumed_by_the_next_up():
    journal = st.Journal(name="recover-new-1.jsonl", claims=("onecloud-minio/data-minio-1",), last_step="delete-pvc")
    done = st.Journal(name="recover-x.jsonl", claims=("a/b",), last_step="uncordon")
    report = st.decide_status(model=MODEL, applied=APPLIED, etcd=None, journals=(journal, done), snapshots=())
    assert [j.name for j, _ in report.journals] == ["recover-new-1.jsonl"]
    assert "resumes 1 started claim(s): onecloud-minio/data-minio-1" in report.journals[0][1]
    assert not report.observed and [s.live for s in report.slots] == ["unobserved"] * 3


def test_cli_offline_shows_the_files_and_marks_the_rest_unobserved(capsys, monkeypatch):
    for key in ("CPSWAP_ETCD_CACERT_DATA", "CPSWAP_ETCD_CERT_DATA", "CPSWAP_ETCD_KEY_DATA"):
        monkeypatch.delenv(key, raising=False)
    assert main(["status", "--stack", "prod", "--dir", str(ROOT), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["observed"] is False and doc["converged"] is False
    assert [s["live"] for s in doc["slots"]] == ["unobserved"] * 3
    assert doc["slots"][0]["applied"] == "lzx-ha-env (192.168.0.254)"
