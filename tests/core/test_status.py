"""`cpswap status`'s decision (pure) and its offline CLI form: no connection without credentials."""
from __future__ import annotations

import json

import pytest

from cpswap.cli import main
from cpswap.core import runrecord as rr
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


def _run(*steps: tuple[str, str, str]) -> rr.RunSummary:
    """(resource, op, state) in order."""
    return rr.RunSummary(run="r", steps=tuple(
        rr.StepRun(resource=res, op=op, slot=res.split("-")[0], host="h", started=float(i), ended=None if
                   state == "interrupted" else i + 0.5, rc=None if state == "interrupted" else 0 if state == "ok" else 1,
                   state=state, failure=None if state == "ok" else "boom", commands=("kube x",))
        for i, (res, op, state) in enumerate(steps)))


VOTERS = etcd(member(1, "new-1-ab12", "10.9.0.4"), member(2, "n2-cd34", "10.9.0.2"), member(3, "n3-ef56", "10.9.0.3"))
SURVIVORS = etcd(member(2, "n2-cd34", "10.9.0.2"), member(3, "n3-ef56", "10.9.0.3"))
LEFT = _run(("cp1-preflight", "create", "ok"), ("cp1-etcd-leave", "delete", "ok"), ("cp1-node-leave", "delete", "ok"))
NODES = (("new-1", True), ("n2", True), ("n3", True))


@pytest.mark.parametrize(("facts", "run", "kube", "action", "converged"), [
    # the leave ran, the join (over SSH: no record line) did not complete
    (SURVIVORS, LEFT, None, "but cp1-join did not complete (it runs over SSH, so it leaves no line in the run "
     "record: its result is in the `up` log): the next `up` re-runs cp1-join and the steps after it "
     "(cp1-verify, cp1-pvcs)", False),
    # nothing of the swap ran yet
    (SURVIVORS, None, None, "run `pulumi up` to swap cp1 in", False),
    # a step failed before the leave: it is named
    (SURVIVORS, _run(("cp1-preflight", "create", "failed")), None,
     "cp1-preflight (create) failed in the last run: boom; the next `up` re-runs it", False),
    # the member is in, its recovery was killed
    (VOTERS, _run(("cp1-verify", "create", "ok"), ("cp1-pvcs", "create", "interrupted")), None,
     "cp1-pvcs (create) interrupted in the last run: boom; the next `up` re-runs it", False),
    # in, and its Node is not Ready
    (VOTERS, None, st.KubeView(reachable=True, nodes=(("new-1", False), ("n2", True), ("n3", True))),
     "its Node is NotReady", False),
    (VOTERS, _run(("cp1-verify", "create", "ok"), ("cp1-pvcs", "create", "ok")),
     st.KubeView(reachable=True, nodes=NODES), None, True),
])
def test_slot_action_table(facts, run, kube, action, converged):
    report = st.decide_status(model=MODEL, applied=APPLIED, etcd=facts, journals=(), snapshots=(), run=run, kube=kube)
    cp1 = report.slots[0]
    assert (cp1.action is None) if action is None else action in (cp1.action or ""), cp1.action
    assert report.converged is converged
    assert report.next_up == ((f"cp1: {cp1.action}",) if cp1.action else ())
    json.dumps(report.as_dict())


def test_nodes_and_the_vip_holder_per_slot():
    report = st.decide_status(model=MODEL, applied=APPLIED, etcd=VOTERS, journals=(), snapshots=(),
                              kube=st.KubeView(reachable=True, nodes=NODES[1:]),
                              vip=st.VipView(address="10.9.0.100", holder="n2"))
    assert [(s.node, s.vip) for s in report.slots] == [("absent", False), ("Ready", True), ("Ready", False)]
    assert "VIP 10.9.0.100: held by n2" in st.render_status(report)


@pytest.mark.parametrize(("op", "state", "next_"), [
    ({"metadata": {"name": "cpswap-cp1-join-kb-4"}, "status": {"status": "Running", "jobRef": {"namespace": "k",
      "name": "kubean-cpswap-cp1-join-kb-4-job"}}}, "Running", "the next `up` waits for it"),
    ({"metadata": {"name": "cpswap-cp1-remove-kb-3"}, "status": {"status": "Failed"}}, "Failed",
     "deletes it with its job (Foreground) and resubmits the same spec once"),
    ({"metadata": {"name": "cpswap-cp1-join-kb-4"}}, "Pending", "the next `up` waits for it"),
    ({"metadata": {"name": "cpswap-cp1-join-kb-4"}, "status": {"status": "Succeeded"}}, None, None),
    ({"metadata": {"name": "cluster1-ops-1"}, "status": {"status": "Failed"}}, None, None),  # not cpswap's
])
def test_kubean_operations_table(op, state, next_):
    found = st.kubean_pending((op,))
    assert [p.state for p in found] == ([state] if state else [])
    assert all(next_ in p.next for p in found)


def test_openshift_machines_being_replaced():
    model = parse_stack_config({**CONFIG, "distribution": "openshift"}, stack="t")
    machines = ({"metadata": {"name": "m-0", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                 "status": {"phase": "Running", "nodeRef": {"name": "old-1"}}},
                {"metadata": {"name": "m-3"}, "status": {"phase": "Provisioning"}},
                {"metadata": {"name": "m-1"}, "status": {"phase": "Running", "nodeRef": {"name": "n2"}}})
    found = st.openshift_pending(model=model, machines=machines, templates=(("cp1", "old-1"), ("cp2", "n2")))
    assert [(p.name, p.state) for p in found] == [("m-0", "Deleting"), ("m-3", "Provisioning"),
                                                  ("cpswap-machine-cp1", "spec kept")]
    assert "re-runs cp1-machine create" in found[2].next
