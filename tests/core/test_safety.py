"""The plan's safety section (cpswap.core.safety), the text and markdown renderings, and --wide
(issue 14: a plan an operator can act on at 3 a.m.)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpswap.cli import main
from cpswap.core.safety import human, parse_timeout, restore_command, safety_section

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "markdown"


@pytest.mark.parametrize("text,seconds", [("10m", 600), ("1h30m", 5400), ("90s", 90), ("70m", 4200), ("", 0),
                                          ("ten", 0), ("5m junk", 0), ("2h", 7200)])
def test_parse_timeout(text, seconds):
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (6900, "1h55m"), (61, "1m1s"), (3600, "1h")])
def test_human(seconds, text):
    assert human(seconds) == text


@pytest.mark.parametrize("distribution,start", [
    ("k3s", "k3s server --cluster-reset --cluster-reset-restore-path=/s/x.db"),
    ("kubeadm", "etcdutl snapshot restore /s/x.db --data-dir /var/lib/etcd-restore --name cp2 "
                "--initial-cluster cp2=https://10.0.0.2:2380"),
    ("openshift", "/usr/local/bin/cluster-restore.sh /s"),
])
def test_restore_command(distribution, start):
    assert restore_command(distribution=distribution, snapshot="/s/x.db",
                           survivor={"name": "cp2", "ip": "10.0.0.2"}).startswith(start)


def test_every_member_its_role_and_the_windows_of_the_k3s_fixture():
    doc = json.loads((FIXTURES / "k3s-vip-swap.json").read_text())
    safety = safety_section({k: v for k, v in doc.items() if k != "safety"}, snapshot_dir=".cpswap/snapshots")
    assert safety == doc["safety"]  # the fixture is what the code computes
    roles = {(m["slot"], m["name"]): (m["role"], m["vip"], m["steps"]) for m in safety["members"]}
    assert roles[("cp1", "lzx-ha-env")][0] == "departing"
    assert roles[("cp1", "lzx-test-add-node")] == ("joining", [], ["cp1-join", "cp1-keepalived"])
    assert roles[("cp2", "lzx-ha-env-2")][:2] == ("survivor", ["holds the VIP now", "holds the VIP during the swap"])
    assert roles[("cp3", "lzx-ha-env-3")][0] == "survivor"
    assert safety["point_of_no_return"]["step"] == "cp1-etcd-remove"
    assert safety["point_of_no_return"]["before_it"] == ["cp1-etcd-snapshot"]
    assert safety["worst_case_seconds"] == sum(parse_timeout(s["timeout"]) for s in doc["steps"]) == 6900
    window = safety["no_tolerance_window"]
    assert (window["from"], window["to"], window["tolerance"]) == ("cp1-etcd-snapshot", "cp1-node-delete", 0)
    assert "quorum is lost: 2 healthy of 2 voters need 2" in window["if_another_fails"]
    assert safety["snapshot"]["file"] == ".cpswap/snapshots/before-remove-lzx-ha-env-<UTC time>-<member id>.db"
    assert safety["snapshot"]["restore"].startswith("k3s server --cluster-reset --cluster-reset-restore-path=")
    assert safety["snapshot"]["restore_on"].startswith("lzx-ha-env-2 (192.168.0.244)")


def test_observed_leader_and_health_are_named():
    doc = json.loads((FIXTURES / "k3s-vip-swap.json").read_text())
    doc["live"] = [{"name": "lzx-ha-env-2", "ip": "192.168.0.244", "learner": False, "healthy": True, "leader": True},
                   {"name": "lzx-ha-env-3", "ip": "192.168.0.243", "learner": False, "healthy": False,
                    "leader": False}]
    etcd = {m["name"]: m["etcd"] for m in safety_section(doc, snapshot_dir="/s")["members"]}
    assert etcd == {"lzx-ha-env": "not an etcd member", "lzx-test-add-node": "joins",
                    "lzx-ha-env-2": "leader, healthy", "lzx-ha-env-3": "voter, UNHEALTHY"}


def test_no_change_means_no_point_of_no_return_and_no_snapshot():
    doc = json.loads((FIXTURES / "adoption-noop.json").read_text())
    safety = safety_section(doc, snapshot_dir="/s")
    assert safety["point_of_no_return"] is None and safety["snapshot"] is None and safety["worst_case_seconds"] == 0
    assert all(m["role"] == "survivor" for m in safety["members"])


def test_plan_text_names_every_member_and_wide_prints_commands_in_full(capsys):
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT)]) == 0
    short = capsys.readouterr().out
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT), "--wide"]) == 0
    wide = capsys.readouterr().out
    assert " ... (--wide)" in short and " ... (--wide)" not in wide
    for line in ("cp2   lzx-ha-env-2", "cp3   lzx-ha-env-3", "departing", "joining", "survivor",
                 "point of no return: cp1-etcd-remove", "worst-case duration:", "no fault tolerance from",
                 "snapshot: ~/.local/state/cpswap/snapshots/before-remove-lzx-ha-env-<UTC time>-<member id>.db", "restore on lzx-ha-env-2"):
        assert line in wide, line
    assert main(["plan", "--stack", "prod", "--dir", str(ROOT), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["safety"]["point_of_no_return"]["step"] == "cp1-etcd-remove"
    long_commands = [s["command"] for s in doc["steps"] if len(s["command"]) >= 400]
    assert long_commands and all(c in wide for c in long_commands)
