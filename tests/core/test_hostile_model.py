"""Input that got through the stack model (issue 13, "Input that gets through"): every field.

Each row mutates one field of a valid config and names the violation that must be reported
(field, value, rule). Every row failed before this hardening (accepted, truncated or a traceback).
"""
from __future__ import annotations

import copy
import re

import pytest

from cpswap.core.errors import ConfigError
from cpswap.core.model import parse_stack_config
from cpswap.core.renderers.k3s import render_k3s_join

GOOD = {
    "distribution": "k3s",
    "controlPlaneEndpoint": "10.0.0.100:6443",
    "members": {"cp1": {"name": "a", "ip": "10.0.0.1"}, "cp2": {"name": "b", "ip": "10.0.0.2"},
                "cp3": {"name": "c", "ip": "10.0.0.3"}},
}
KUBEAN = {"cluster": "c", "image": "ghcr.io/kubean-io/spray-job:v0.12.2"}
OCBOOT = {"version": "v3.11.9", "dbHost": "10.0.0.50"}


def _set(config: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def config_with(*changes: tuple[str, object]) -> dict:
    config = copy.deepcopy(GOOD)
    for path, value in changes:
        _set(config, path, value)
    return config


V6 = {"cp1": {"name": "a", "ip": "fd00::1"}, "cp2": {"name": "b", "ip": "fd00::2"}, "cp3": {"name": "c", "ip": "fd00::3"}}
NINE = {f"cp{i}": {"name": f"n{i}", "ip": f"10.0.0.{i}"} for i in range(1, 10)}
PRIO = {"cp1": 3, "cp2": 2, "cp3": 1}

# (id, changes, expected violation regex)
CASES = [
    # trailing newline: re.match with `$` let these through
    ("image-latest-newline", [("distribution", "kubean"), ("kubean", {**KUBEAN, "image": "ghcr.io/k/spray-job:latest\n"})],
     r"kubean.image='ghcr.io/k/spray-job:latest\\n': must be the spray-job image"),
    ("kubean-cluster-newline", [("distribution", "kubean"), ("kubean", {**KUBEAN, "cluster": "c\n"})],
     r"kubean.cluster='c\\n': contains shell metacharacter"),
    ("kubean-namespace-newline", [("distribution", "kubean"), ("kubean", {**KUBEAN, "namespace": "ns\n"})],
     r"kubean.namespace='ns\\n': must be a namespace name"),
    ("openshift-namespace-newline", [("distribution", "openshift"), ("openshift", {"etcdNamespace": "openshift-etcd\n"})],
     r"openshift.etcdNamespace='openshift-etcd\\n': must be a namespace name"),
    ("vip-interface-newline", [("vip", {"interface": "eth0\n"})], r"vip.interface='eth0\\n': must be 1-32 of"),
    ("ssh-user-newline", [("ssh", {"user": "root\n"})], r"ssh.user='root\\n': must be a POSIX user name"),
    ("slot-newline", [("members", {**GOOD["members"], "cp3\n": {"name": "d", "ip": "10.0.0.4"}})],
     r"members.cp3\n='cp3\\n': slot names are"),
    ("k3s-datadir-newline", [("k3s", {"dataDir": "/var/lib/k3s\n"})], r"k3s.dataDir='/var/lib/k3s\\n': must be an absolute path"),
    ("snapshot-dir-newline", [("etcd", {"snapshotDir": "snaps\n"})], r"etcd.snapshotDir='snaps\\n': must be a relative directory"),
    ("pvc-selector-newline", [("pvcRecovery", {"ns\n": {"policy": "skip", "dataClass": "unique"}})],
     r"pvcRecovery.ns\n='ns\\n': must be a namespace or namespace/claim"),
    ("ocboot-version-newline", [("distribution", "ocboot"), ("ocboot", {**OCBOOT, "version": "v3.11.9\n"})],
     r"ocboot.version='v3.11.9\\n': must be a Cloudpods version"),
    ("ocboot-dbuser-newline", [("distribution", "ocboot"), ("ocboot", {**OCBOOT, "dbUser": "root\n"})],
     r"ocboot.dbUser='root\\n': must be a database user name"),
    ("ocboot-workdir-newline", [("distribution", "ocboot"), ("ocboot", {**OCBOOT, "workdir": "ocboot\n"})],
     r"ocboot.workdir='ocboot\\n': must be a relative directory"),
    ("hostnetworks-newline", [("members.cp1.hostNetworks", "eth0/br0/10.0.0.1\n")],
     r"members.cp1.hostNetworks='eth0/br0/10.0.0.1\\n': must be <nic>/<bridge>/<ip>"),
    ("hostnetworks-not-an-ip", [("members.cp1.hostNetworks", "eth0/br0/abc")],
     r"members.cp1.hostNetworks='eth0/br0/abc': must be <nic>/<bridge>/<ip>"),
    ("unicode-digits-version", [("distribution", "ocboot"), ("ocboot", {**OCBOOT, "version": "v٣.1"})],
     r"ocboot.version='v٣.1': must be a Cloudpods version"),
    # IPv6 zone ids
    ("zone-id", [("members.cp1.ip", "fe80::1%eth0")], r"members.cp1.ip='fe80::1%eth0': IPv6 zone ids .* are refused"),
    ("zone-id-injection", [("members.cp1.ip", "fe80::1%eth0;reboot")], r"members.cp1.ip='fe80::1%eth0;reboot': IPv6 zone ids"),
    ("zone-id-dbhost", [("distribution", "ocboot"), ("ocboot", {**OCBOOT, "dbHost": "fe80::5%lo"})],
     r"ocboot.dbHost='fe80::5%lo': IPv6 zone ids"),
    # canonical comparison: duplicate and VIP rules
    ("dup-ipv4-mapped", [("members.cp3.ip", "::ffff:10.0.0.2")], r"members.cp3.ip='10.0.0.2': cp2 and cp3 both use ip 10.0.0.2"),
    ("dup-ipv6-spelling", [("members", {**V6, "cp3": {"name": "c", "ip": "fd00:0:0:0::2"}}), ("controlPlaneEndpoint", "[fd00::64]:6443")],
     r"members.cp3.ip='fd00::2': cp2 and cp3 both use ip fd00::2"),
    ("vip-ipv4-mapped", [("controlPlaneEndpoint", "[::ffff:10.0.0.2]:6443")],
     r"members.cp2.ip='10.0.0.2': the control-plane endpoint \(VIP\) 10.0.0.2:6443 must not be a member"),
    ("vip-ipv6-spelling", [("members", V6), ("controlPlaneEndpoint", "[fd00:0::3]:6443")],
     r"members.cp3.ip='fd00::3': the control-plane endpoint \(VIP\) \[fd00::3\]:6443 must not be a member"),
    # IPv6 host:port must be bracketed
    ("endpoint-unbracketed-v6", [("controlPlaneEndpoint", "fd00::64:6443")],
     r"controlPlaneEndpoint='fd00::64:6443': an IPv6 host must be in brackets"),
    ("endpoint-half-bracket", [("controlPlaneEndpoint", "[10.0.0.100:6443")], r"controlPlaneEndpoint='\[10.0.0.100:6443': must be \[ipv6\]:port"),
    ("endpoint-v4-in-brackets", [("controlPlaneEndpoint", "[10.0.0.100]:6443")],
     r"controlPlaneEndpoint='\[10.0.0.100\]:6443': only IPv6 addresses go in brackets"),
    ("endpoint-port-newline", [("controlPlaneEndpoint", "10.0.0.100:6443\n")], r"controlPlaneEndpoint='10.0.0.100:6443\\n': port must be an integer"),
    ("endpoint-unicode-port", [("controlPlaneEndpoint", "10.0.0.100:٦٤٤٣")], r"port must be an integer in 1..65535"),
    # DNS VIP with keepalived
    ("dns-vip-keepalived", [("controlPlaneEndpoint", "vip.example.com:6443"), ("vip", {"keepalived": True, "priorities": PRIO})],
     r"controlPlaneEndpoint='vip.example.com:6443': with vip.keepalived the endpoint host must be the VIP's IP address"),
    # member counts 3, 5 or 7
    ("nine-members", [("members", NINE)], r"members='9': etcd voters must be 3, 5 or 7; 9 given"),
    # floats refused, not truncated
    ("float-ssh-port", [("ssh", {"port": 22.5})], r"ssh.port='22.5': must be an integer in 1..65535 \(not a fraction\)"),
    ("float-rebuild", [("distribution", "kubeadm"), ("members.cp1.rebuild", 1.5)], r"members.cp1.rebuild='1.5': must be an integer in 0..999"),
    ("float-priority", [("vip", {"keepalived": True, "priorities": {"cp1": 100.7, "cp2": 2, "cp3": 1}})],
     r"vip.priorities.cp1='100.7': must be an integer in 1..254"),
    ("float-client-port", [("etcd", {"clientPort": 2379.9})], r"etcd.clientPort='2379.9': must be an integer"),
    ("string-port-spaces", [("ssh", {"port": " 22"})], r"ssh.port=' 22': must be an integer"),
    # non-string keys crashed sorting
    ("int-priority-key", [("vip", {"keepalived": True, "priorities": {1: 3, "cp2": 2, "cp3": 1}})],
     r"vip.priorities='1, cp2, cp3': must name exactly the slots cp1, cp2, cp3"),
    ("int-pvc-selector", [("pvcRecovery", {1: {"policy": "skip", "dataClass": "unique"}, "Bad": {"policy": "skip", "dataClass": "unique"}})],
     r"pvcRecovery.Bad=.Bad.: must be a namespace or namespace/claim"),
    ("int-slot", [("members", {1: {"name": "d", "ip": "10.0.0.4"}, **GOOD["members"]})], r"members.1='1': slot names are"),
    # names: empty labels and over-long labels
    ("name-empty-label", [("members.cp1.name", "a..b")], r"members.cp1.name='a..b': must be a lowercase DNS-1123 name"),
    ("name-long-label", [("members.cp1.name", "a" * 64)], r"members.cp1.name='a{64}': must be a lowercase DNS-1123 name"),
]


@pytest.mark.parametrize("changes,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_field_is_a_named_violation(changes, message):
    with pytest.raises(ConfigError) as info:
        parse_stack_config(config_with(*changes), stack="t")
    assert re.search(message, str(info.value)), str(info.value)


@pytest.mark.parametrize("changes,canonical", [
    ([("members.cp1.ip", "::ffff:10.0.0.9")], "10.0.0.9"),
    ([("members", {**V6, "cp1": {"name": "a", "ip": "FD00:0000::0001"}}), ("controlPlaneEndpoint", "[fd00::64]:6443")], "fd00::1"),
], ids=["ipv4-mapped", "ipv6-spelling"])
def test_addresses_are_stored_canonically(changes, canonical):
    model = parse_stack_config(config_with(*changes), stack="t")
    assert model.member("cp1").host.ip == canonical


@pytest.mark.parametrize("count", [3, 5, 7])
def test_three_five_or_seven_members_parse(count):
    members = {f"cp{i}": {"name": f"n{i}", "ip": f"10.0.0.{i}"} for i in range(1, count + 1)}
    assert len(parse_stack_config(config_with(("members", members)), stack="t").members) == count


def test_ipv6_is_bracketed_where_a_host_meets_a_port():
    model = parse_stack_config(config_with(("members", V6), ("controlPlaneEndpoint", "[fd00::64]:6443")), stack="t")
    assert str(model.endpoint) == "[fd00::64]:6443"
    command = render_k3s_join(host=model.member("cp1").host, endpoint=model.endpoint, k3s=model.k3s)
    assert 'server: "https://[fd00::64]:6443"' in command and '  - "fd00::64"' in command
