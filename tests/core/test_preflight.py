"""The preflight decision, per check (table-driven), and its parsers. Pure: no host is contacted."""
from __future__ import annotations

from dataclasses import replace

import pytest

from cpswap.core import preflight as pf
from cpswap.core.model import parse_stack_config
from cpswap.core.slots import slot_commands

GIB = pf.GIB
TARGET = pf.Target(slot="cp1", distribution="k3s", name="new-1", ip="10.9.0.4", vip="10.9.0.100")
GOOD_HOST = pf.HostProbe(address="10.9.0.4", hostname="new-1", addresses=("127.0.0.1", "10.9.0.4"),
                         listening=(22,), disk_free_bytes=50 * GIB, clock_offset_s=0.2, clock_uncertainty_s=0.05,
                         k3s_version="v1.28.5+k3s1")
GOOD_VIP = pf.HostProbe(address="10.9.0.100", hostname="cp-2", addresses=("10.9.0.2", "10.9.0.100"),
                        listening=(22, 2379, 2380, 6443), disk_free_bytes=50 * GIB, clock_offset_s=0.1,
                        clock_uncertainty_s=0.05, ocboot_version="v3.11.2")
GOOD = pf.PreflightFacts(target=TARGET, new_host=GOOD_HOST, api_error=None,
                         survivor_versions=(("cp-2", "v1.28.5+k3s1"), ("cp-3", "v1.28.5+k3s1")),
                         cert_remaining_s=30 * 86400.0, snapshot_dir=".cpswap/snapshots", snapshot_free_bytes=20 * GIB)
OCBOOT = replace(GOOD, target=replace(TARGET, distribution="ocboot", ocboot_workdir="ocboot",
                                      ocboot_version="v3.11.9"), vip_host=GOOD_VIP)
LIMITS = pf.Limits(worst_case_s=3 * 3600.0)


def failures(facts: pf.PreflightFacts) -> list[tuple[str, str, str]]:
    return [(f.check, f.host, f.value) for f in pf.decide_preflight(facts=facts, limits=LIMITS).failures]


def test_good_facts_pass_every_check():
    result = pf.decide_preflight(facts=GOOD, limits=LIMITS)
    assert result.ok and {f.check for f in result.findings} == {
        "ssh", "api", "identity", "installer", "ports", "disk", "etcd-cert", "snapshot-dir"}
    ocboot = pf.decide_preflight(facts=OCBOOT, limits=LIMITS)
    assert ocboot.ok and {"vip-ssh", "ocboot", "clock"} <= {f.check for f in ocboot.findings}


CASES = [
    ("wrong key", replace(GOOD, new_host=pf.HostProbe(address="10.9.0.4", error="ssh root@10.9.0.4:22: Permission denied (publickey).")),
     [("ssh", "10.9.0.4", "ssh root@10.9.0.4:22: Permission denied (publickey).")]),
    ("hostname differs", replace(GOOD, new_host=replace(GOOD_HOST, hostname="other")),
     [("identity", "10.9.0.4", "hostname 'other'")]),
    ("ip not on host", replace(GOOD, new_host=replace(GOOD_HOST, addresses=("10.9.0.5",))),
     [("identity", "10.9.0.4", "addresses 10.9.0.5")]),
    ("k3s differs", replace(GOOD, new_host=replace(GOOD_HOST, k3s_version="v1.27.1+k3s1")),
     [("installer", "10.9.0.4", "k3s v1.27.1+k3s1")]),
    ("k3s missing", replace(GOOD, new_host=replace(GOOD_HOST, k3s_version=None)),
     [("installer", "10.9.0.4", "k3s not found on the new host")]),
    ("survivors disagree", replace(GOOD, survivor_versions=(("a", "v1.28.5+k3s1"), ("b", "v1.29.0+k3s1"))),
     [("installer", "10.9.0.4", "survivors disagree: v1.28.5+k3s1, v1.29.0+k3s1")]),
    ("ports taken", replace(GOOD, new_host=replace(GOOD_HOST, listening=(22, 2380, 6443))),
     [("ports", "10.9.0.4", "in use: 2380, 6443")]),
    ("disk small", replace(GOOD, new_host=replace(GOOD_HOST, disk_free_bytes=GIB)),
     [("disk", "10.9.0.4", "1.0 GiB free")]),
    ("cert expiring", replace(GOOD, cert_remaining_s=3600.0), [("etcd-cert", "operator", "expires in 1.0 h")]),
    ("cert absent", replace(GOOD, cert_remaining_s=None, cert_error="no etcd client certificate"),
     [("etcd-cert", "operator", "no etcd client certificate")]),
    ("snapshot dir read-only", replace(GOOD, snapshot_free_bytes=None, snapshot_error="/x is not writable by uid 1000"),
     [("snapshot-dir", "operator", "/x is not writable by uid 1000")]),
    ("snapshot room", replace(GOOD, snapshot_free_bytes=GIB), [("snapshot-dir", "operator", "writable, 1.0 GiB free")]),
    ("api down", replace(GOOD, api_error="connection refused"),
     [("api", "10.9.0.100", "connection refused"),
      ("installer", "10.9.0.4", "survivors' version unobserved: connection refused")]),
    ("no ocboot checkout", replace(OCBOOT, vip_host=replace(GOOD_VIP, ocboot_version="")),
     [("ocboot", "10.9.0.100", "no ocboot checkout (ocboot.sh and VERSION) at ocboot")]),
    ("ocboot other version", replace(OCBOOT, vip_host=replace(GOOD_VIP, ocboot_version="v4.0.3")),
     [("ocboot", "10.9.0.100", "VERSION v4.0.3")]),
    ("clock skew", replace(OCBOOT, new_host=replace(GOOD_HOST, clock_offset_s=3.0)),
     [("clock", "10.9.0.4", "skew +2.90 s")]),
    ("vip unreachable", replace(OCBOOT, vip_host=pf.HostProbe(address="10.9.0.100", error="no answer within 20 s")),
     [("vip-ssh", "10.9.0.100", "no answer within 20 s")]),
]


@pytest.mark.parametrize("facts,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_fault_is_reported_with_check_host_and_value(facts, expected):
    assert failures(facts) == expected


def test_every_failure_is_reported_at_once_with_its_rule():
    facts = replace(OCBOOT, vip_host=replace(GOOD_VIP, ocboot_version=""),
                    new_host=replace(GOOD_HOST, listening=(2379,), k3s_version="v1.27.1+k3s1"), cert_remaining_s=60.0)
    result = pf.decide_preflight(facts=facts, limits=LIMITS)
    assert [f.check for f in result.failures] == ["ocboot", "installer", "ports", "etcd-cert"]
    assert all(f.rule for f in result.failures)
    assert result.failures[1].rule == "must be the survivors' version v1.28.5+k3s1"
    assert pf.decide_preflight(facts=facts, limits=LIMITS) == result  # same facts, same answer


def test_ocboot_without_k3s_on_the_new_host_passes_and_a_member_host_owns_its_ports():
    assert failures(replace(OCBOOT, new_host=replace(GOOD_HOST, k3s_version=None))) == []
    assert failures(replace(GOOD, already_member=True, new_host=replace(GOOD_HOST, listening=(2379, 2380, 6443)))) == []


def test_a_clock_within_the_round_trip_uncertainty_is_not_failed():
    close = replace(OCBOOT, new_host=replace(GOOD_HOST, clock_offset_s=1.5, clock_uncertainty_s=0.4))
    assert failures(close) == []


@pytest.mark.parametrize("text,version", [
    ("k3s version v1.28.5+k3s1 (5b2d1271)\ngo version go1.20.12\n", "v1.28.5+k3s1"),
    ("k3s version v1.21.1+k3s1 (75dba57f)", "v1.21.1+k3s1"),
    ("", None), ("kubectl version v1.28", None), ("k3s: command not found", None),
])
def test_parse_k3s_version(text, version):
    assert pf.parse_k3s_version(text) == version


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0953 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0400FA0A:0954 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0400FA0A:0016 0100FA0A:D2F0 01 00000000:00000000 02:0000A7B1 00000000     0        0 3 4 0 20 4 29 10 -1
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1923 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
"""


def test_parse_listening_takes_listen_sockets_of_both_tables():
    assert pf.parse_listening(PROC_NET_TCP) == (2387, 2388, 6435)  # 0x0953, 0x0954, 0x1923; the established :22 is not listening
    assert pf.parse_listening("") == ()


def test_the_preflight_is_every_slots_first_resource_and_the_leave_follows():
    config = {"distribution": "k3s", "controlPlaneEndpoint": "10.9.0.100:6443",
              "members": {f"cp{i}": {"name": f"n{i}", "ip": f"10.9.0.{i}"} for i in (1, 2, 3)}}
    model = parse_stack_config(config, stack="t")
    specs = slot_commands(model=model, member=model.members[0])
    assert [s.name for s in specs[:2]] == ["cp1-preflight", "cp1-etcd-leave"]
    pre = specs[0]
    assert pre.delete is None and pre.runs_on.kind == "local" and pre.triggers == specs[1].triggers
    assert "preflight --distribution k3s --slot cp1 --node n1 --ip 10.9.0.1 --vip 10.9.0.100" in pre.create
    assert ("CPSWAP_SSH_KEY_DATA", "sshPrivateKey") in pre.secret_env
    assert pf.target_for(model=model, member=model.members[0]) == pf.Target(
        slot="cp1", distribution="k3s", name="n1", ip="10.9.0.1", vip="10.9.0.100")
