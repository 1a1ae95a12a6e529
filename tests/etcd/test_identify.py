"""Which etcd member a removal means: exact name (k3s suffix rule) AND IP, or an earlier run's
record; otherwise an error listing the members (issue 13). Pure table tests."""
from __future__ import annotations

import pytest

from cpswap.core.facts import EtcdMember, canonical_ip, identify_member, removed_record_key


def member(id_: int, name: str, ip: str, *, learner: bool = False) -> EtcdMember:
    return EtcdMember(id=id_, name=name, peer_urls=(f"https://{ip}:2380",),
                      client_urls=(f"https://{ip}:2379",) if name else (), is_learner=learner)


K3S = (member(0xa1, "lzx-ha-env-0a1b2c3d", "192.0.2.1"), member(0xa2, "lzx-ha-env-2-11223344", "192.0.2.2"),
       member(0xa3, "lzx-ha-env-3-deadbeef", "192.0.2.3"))
KUBEADM = (member(0xb1, "kadm-1", "192.0.2.11"), member(0xb2, "kadm-2", "192.0.2.12"), member(0xb3, "", "192.0.2.13"))
V6 = (member(0xc1, "v6-1", "[2001:db8::1]"), member(0xc2, "v6-2", "[2001:db8::2]"))


@pytest.mark.parametrize("members, name, ip, record, outcome, member_id, reason", [
    # exact: the k3s suffix rule, the plain name, an unstarted member by its peer URL
    (K3S, "lzx-ha-env", "192.0.2.1", None, "member", 0xa1, "is member a1"),
    (K3S, "lzx-ha-env-2", "192.0.2.2", None, "member", 0xa2, ""),
    (KUBEADM, "kadm-2", "192.0.2.12", None, "member", 0xb2, ""),
    (KUBEADM, "kadm-3", "192.0.2.13", None, "member", 0xb3, ""),
    (KUBEADM, "kadm-2", "::ffff:192.0.2.12", None, "member", 0xb2, ""),  # canonical comparison
    (V6, "v6-2", "2001:0db8:0:0::2", None, "member", 0xc2, ""),
    # the name of one member and the IP of another: never a removal
    (K3S, "lzx-ha-env", "192.0.2.2", None, "unknown", None, "no member is both lzx-ha-env and 192.0.2.2"),
    (KUBEADM, "kadm-1", "192.0.2.12", None, "unknown", None, "match only one of them"),
    # a suffix that is not k3s's 8 hex digits is another name
    (K3S, "lzx-ha", "192.0.2.9", None, "unknown", None, "is not an etcd member"),
    (K3S, "lzx-ha-env-0a1b2c3", "192.0.2.1", None, "unknown", None, "match only one of them"),
    # a typo is an error listing the members, never "already removed"
    (K3S, "lzx-ha-env-9", "192.0.2.9", None, "unknown", None,
     "cpswap has no record of removing it (a typo, or removed by hand); members: a1 lzx-ha-env-0a1b2c3d"),
    (KUBEADM, "kadm-1", "fe80::1%eth0", None, "unknown", None, "match only one of them"),
    # idempotence: absent, and an earlier run recorded removing exactly this host
    (K3S, "lzx-ha-env-9", "192.0.2.9", '{"id": "a9"}', "removed", None, "cpswap removed its member earlier"),
    # a record never hides a present member, nor a conflict
    (K3S, "lzx-ha-env", "192.0.2.1", '{"id": "a1"}', "member", 0xa1, ""),
    ((member(1, "x", "192.0.2.1"), member(2, "x-0a1b2c3d", "192.0.2.1")), "x", "192.0.2.1", None, "unknown", None,
     "matches 2 members"),
])
def test_identify_member(members, name, ip, record, outcome, member_id, reason):
    found = identify_member(members, name=name, ip=ip, removed_record=record)
    assert found.outcome == outcome
    assert (found.member.id if found.member else None) == member_id
    assert reason in found.reason


@pytest.mark.parametrize("text, canonical", [
    ("10.0.0.1", "10.0.0.1"), ("::ffff:10.0.0.1", "10.0.0.1"), ("2001:DB8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"), ("fe80::1%eth0", None), ("10.0.0.1\n", None), ("", None), ("host", None)])
def test_canonical_ip(text, canonical):
    assert canonical_ip(text) == canonical


def test_the_record_key_is_canonical():
    assert removed_record_key(name="n", ip="::ffff:10.0.0.1") == removed_record_key(name="n", ip="10.0.0.1")
