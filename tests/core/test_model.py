"""Model parsing: table-driven violations, every one reported at once (issue 2)."""
from __future__ import annotations

import copy
import re

import pytest

from cpswap.core.errors import ConfigError
from cpswap.core.model import parse_stack_config

GOOD = {
    "distribution": "k3s",
    "controlPlaneEndpoint": "10.0.0.100:6443",
    "members": {"cp1": {"name": "a", "ip": "10.0.0.1"}, "cp2": {"name": "b", "ip": "10.0.0.2"},
                "cp3": {"name": "c", "ip": "10.0.0.3"}},
}


def mutate(path: str, value):
    config = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return config


CASES = [
    ("members.cp3", KeyError, r"members='2': an HA control plane needs at least 3 etcd voters; 2 given"),
    ("members.cp4", {"name": "d", "ip": "10.0.0.4"}, r"members='4': etcd voters must be an odd number"),
    ("members.cp3.ip", "10.0.0.2", r"members.cp3.ip='10.0.0.2': cp2 and cp3 both use ip 10.0.0.2"),
    ("members.cp3.name", "b", r"members.cp3.name='b': cp2 and cp3 both use name b"),
    ("members.cp2.ip", "10.0.0.100", r"members.cp2.ip='10.0.0.100': the control-plane endpoint \(VIP\) 10.0.0.100:6443 must not be a member"),
    ("distribution", "rke9", r"distribution='rke9': unknown distribution; use one of ocboot, k3s, kubeadm"),
    ("distribution", "kubean", r"kubean=\'None\': distribution kubean needs the kubean block \(cluster, image\)"),
    ("kubean", {"cluster": "c", "image": "i:1"}, r"kubean='…': the kubean block applies to distribution kubean, not k3s"),
    ("vip", {"keepalived": True, "priorities": {"cp1": 3, "cp2": 2, "cp3": 1}}, r"^(?!.)"),  # valid: no violation
    ("members.cp1.machine", "m-0", r"members.cp1.machine='m-0': machine names apply to distribution openshift only"),
    ("members.cp1.rebuild", -1, r"members.cp1.rebuild='-1': must be an integer in 0..999"),
    ("vip", {"keepalived": True}, r"vip.priorities='None': required with vip.keepalived"),
    ("vip", {"priorities": {"cp1": 100, "cp2": 90}}, r"vip.priorities='cp1, cp2': must name exactly the slots cp1, cp2, cp3"),
    ("vip", {"priorities": {"cp1": 100, "cp2": 90, "cp3": 90}}, r"priorities must be distinct"),
    ("vip", {"interface": "eth0;reboot"}, r"vip.interface='eth0;reboot': must be 1-32 of"),
    ("vip", {"virtualRouterId": 300}, r"vip.virtualRouterId='300': must be an integer in 1..255"),
    ("members.cp1.name", "a$(reboot)", r"members.cp1.name='a\$\(reboot\)': contains shell metacharacter"),
    ("members.cp1.name", "a;b", r"members.cp1.name='a;b': contains shell metacharacter\(s\) ;"),
    ("members.cp1.name", "UPPER", r"members.cp1.name='UPPER': must be a lowercase DNS-1123 name"),
    ("members.cp1.ip", "10.0.0.300", r"members.cp1.ip='10.0.0.300': must be an IPv4 or IPv6 address"),
    ("members.cp1.hostNetworks", "eth0", r"members.cp1.hostNetworks='eth0': must be <nic>/<bridge>/<ip>"),
    ("members.cp1.port", 22, r"members.cp1.port='22': unknown key"),
    ("controlPlaneEndpoint", "10.0.0.100", r"controlPlaneEndpoint='10.0.0.100': must be host:port"),
    ("controlPlaneEndpoint", "10.0.0.100:99999", r"controlPlaneEndpoint='10.0.0.100:99999': port must be an integer in 1..65535"),
    ("controlPlaneEndpoint", KeyError, r"controlPlaneEndpoint='None': required"),
    ("ssh.user", "root;id", r"ssh.user='root;id': must be a POSIX user name"),
    ("ssh.port", "x", r"ssh.port='x': must be an integer"),
    ("etcd.preset", "magic", r"etcd.preset='magic': must be env"),
    ("etcd.snapshotDir", "/var/backups", r"etcd.snapshotDir='/var/backups': must be a relative directory or one under ~/"),
    ("etcd.snapshotDir", "~/../x", r"etcd.snapshotDir='~/../x': must be a relative directory or one under ~/"),
    ("k3s.dataDir", "relative", r"k3s.dataDir='relative': must be an absolute path"),
    ("observe", "yes", r"observe='yes': must be true or false"),
    ("pvcRecovery", {"onecloud-minio": {"policy": "nuke", "dataClass": "replicated"}},
     r"pvcRecovery.onecloud-minio.policy='nuke': must be one of recreate, skip, manual"),
    ("pvcRecovery", {"Bad_NS": {"policy": "skip", "dataClass": "unique"}},
     r"pvcRecovery.Bad_NS='Bad_NS': must be a namespace or namespace/claim"),
    ("pvcRecovery", {"ns/c": {"policy": "skip", "dataClass": "precious"}},
     r"pvcRecovery.ns/c.dataClass='precious': must be one of replicated, disposable, unique"),
    ("pvcRecovery", {"ns": {"policy": "skip", "dataClass": "unique", "order": -1}},
     r"pvcRecovery.ns.order='-1': must be a non-negative integer"),
    ("bogus", 1, r"bogus='…': unknown config key cpswap:bogus"),
]


@pytest.mark.parametrize("path,value,message", CASES, ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES])
def test_violation_names_field_value_and_rule(path, value, message):
    if message == r"^(?!.)":
        parse_stack_config(mutate(path, value), stack="t")
        return
    with pytest.raises(ConfigError) as info:
        parse_stack_config(mutate(path, value), stack="t")
    assert re.search(message, str(info.value)), str(info.value)


KUBEAN = {"cluster": "centos", "image": "ghcr.io/kubean-io/spray-job:v0.12.2"}
DISTRIBUTION_CASES = [  # (distribution, block key, block, expected violation)
    ("kubean", "kubean", {**KUBEAN, "image": "ghcr.io/kubean-io/spray-job:latest"},
     r"kubean.image='ghcr.io/kubean-io/spray-job:latest': must be pinned to the image used at deploy"),
    ("kubean", "kubean", {**KUBEAN, "image": "ghcr.io/kubean-io/spray-job"},
     r"kubean.image='ghcr.io/kubean-io/spray-job': must be the spray-job image used at deploy, with its tag"),
    ("kubean", "kubean", {**KUBEAN, "cluster": "Centos_7"}, r"kubean.cluster=.Centos_7.: must be a lowercase DNS-1123 name .* for the name of the clusters.kubean.io object"),
    ("kubean", "members", {"cp1": {"name": "a-very-long-control-plane-host-name-01", "ip": "10.0.0.1"},
                           "cp2": {"name": "b", "ip": "10.0.0.2"}, "cp3": {"name": "c", "ip": "10.0.0.3"}},
     r"members.cp1.name='a-very-long-control-plane-host-name-01': kubean names the Job .* must fit 63 characters"),
    ("kubean", "vip", {"keepalived": True, "priorities": {"cp1": 3, "cp2": 2, "cp3": 1}},
     r"vip.keepalived='True': cpswap writes keepalived.conf only for k3s, kubeadm; kubean manages its own VIP"),
    ("openshift", "openshift", {"machineNamespace": "Bad NS"},
     r"openshift.machineNamespace='Bad NS': must be a namespace name"),
    ("openshift", "ocboot", {"version": "v3.11.9"}, r"ocboot='…': the ocboot block applies to distribution ocboot, not openshift"),
]


@pytest.mark.parametrize("distribution,key,block,message", DISTRIBUTION_CASES,
                         ids=[f"{c[0]}:{c[1]}" for c in DISTRIBUTION_CASES])
def test_distribution_blocks_name_field_value_and_rule(distribution, key, block, message):
    config = {**copy.deepcopy(GOOD), "distribution": distribution, key: block}
    if distribution == "kubean" and key != "kubean":
        config["kubean"] = dict(KUBEAN)
    with pytest.raises(ConfigError) as info:
        parse_stack_config(config, stack="t")
    assert re.search(message, str(info.value)), str(info.value)


def test_kubean_and_openshift_parse_with_their_blocks_and_member_fields():
    config = {**copy.deepcopy(GOOD), "distribution": "openshift"}
    config["members"]["cp1"].update(machine="ocp-master-3", rebuild=2)
    model = parse_stack_config(config, stack="t")
    assert model.openshift is not None and model.openshift.machine_namespace == "openshift-machine-api"
    member = model.member("cp1")
    assert member.machine == "ocp-master-3" and member.host.rebuild == 2
    assert member.host.triggers() == ("a", "10.0.0.1", "rebuild=2") and member.host.as_dict()["rebuild"] == 2
    kubean = parse_stack_config({**copy.deepcopy(GOOD), "distribution": "kubean", "kubean": KUBEAN}, stack="t")
    assert kubean.kubean is not None and kubean.kubean.namespace == "kubean-system"


@pytest.mark.parametrize("priorities,take_over,slot,expected", [
    ({"cp1": 100, "cp2": 90, "cp3": 80}, False, "cp2", ("BACKUP", 90)),
    ({"cp1": 100, "cp2": 90, "cp3": 80}, False, "cp1", ("BACKUP", 70)),
    ({"cp1": 100, "cp2": 90, "cp3": 80}, True, "cp1", ("MASTER", 100)),
    ({"cp1": 5, "cp2": 90, "cp3": 8}, False, "cp2", ("BACKUP", 1)),
])
def test_a_host_joining_the_master_slot_gets_a_backup_priority_unless_it_takes_over(priorities, take_over, slot, expected):
    config = {**copy.deepcopy(GOOD), "vip": {"keepalived": True, "priorities": priorities, "takeOverPrimary": take_over}}
    vip = parse_stack_config(config, stack="t").vip
    assert vip.joining_priority(slot) == expected


def test_every_violation_is_reported_at_once():
    config = mutate("distribution", "nope")
    config["members"]["cp1"]["name"] = "a;b"
    config["members"]["cp3"]["ip"] = "10.0.0.2"
    with pytest.raises(ConfigError) as info:
        parse_stack_config(config, stack="t")
    fields = [v.field for v in info.value.violations]
    assert {"distribution", "members.cp1.name", "members.cp3.ip"} <= set(fields)


def test_ocboot_requires_its_block():
    with pytest.raises(ConfigError, match=r"ocboot='None': distribution ocboot needs the ocboot block"):
        parse_stack_config(mutate("distribution", "ocboot"), stack="t")


def test_good_config_parses():
    model = parse_stack_config(GOOD, stack="t")
    assert [m.slot for m in model.members] == ["cp1", "cp2", "cp3"]
    assert str(model.endpoint) == "10.0.0.100:6443"
