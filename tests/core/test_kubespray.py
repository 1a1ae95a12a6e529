"""Kubespray inventory and kubeadm ConfigMap edits of seed 001, the keepalived config and the
kubean/OpenShift command text: table-driven, pure (issue 7)."""
from __future__ import annotations

import pytest

from cpswap.core import kubespray as inv
from cpswap.core.model import Endpoint, EtcdSettings, Host, KubeanSettings, Member, OpenshiftSettings, VipSettings
from cpswap.core.renderers import kubean as kb
from cpswap.core.renderers import openshift as ocp
from cpswap.core.renderers.executor import CPSWAP
from cpswap.core.renderers.keepalived import AUTH_PLACEHOLDER, render_keepalived_conf, render_keepalived_install
from tests.support.kubespray_fixtures import CLUSTER_INFO, SEED_001

M1, M2, M3 = "centos-master1", "centos-master2", "centos-master3"


def _groups(doc):
    return {g: inv.group_hosts(doc, g) for g in inv.GROUPS}


@pytest.mark.parametrize("operation,expected", [
    (lambda d: inv.move_to_end(d, M1), {g: [M2, M3, M1] for g in inv.GROUPS}),  # the seed's reorder
    (lambda d: inv.move_to_end(d, M3), {g: [M1, M2, M3] for g in inv.GROUPS}),
    (lambda d: inv.without_host(d, M2), {g: [M1, M3] for g in inv.GROUPS}),
    (lambda d: inv.with_host(inv.without_host(d, M1), M1, "10.6.0.11"), {g: [M2, M3, M1] for g in inv.GROUPS}),
    (lambda d: inv.with_host(d, "ubuntu-master4", "10.6.0.14"), {g: [M1, M2, M3, "ubuntu-master4"] for g in inv.GROUPS}),
])
def test_inventory_edits(operation, expected):
    doc = inv.parse_inventory(SEED_001)
    result = operation(doc)
    assert _groups(result) == expected
    assert _groups(doc) == {g: [M1, M2, M3] for g in inv.GROUPS}, "edits must not mutate their input"
    assert inv.parse_inventory(inv.dump_inventory(result)) == result
    assert (result["all"]["children"]["k8s_cluster"] == {"children": {"kube_control_plane": None, "kube_node": None}})


def test_inventory_host_vars_and_first_node():
    doc = inv.parse_inventory(SEED_001)
    assert inv.first_control_plane(doc) == M1 and inv.host_ip(doc, M2) == "10.6.0.12"
    added = inv.with_host(doc, "ubuntu-master4", "10.6.0.14")
    assert added["all"]["hosts"]["ubuntu-master4"] == {"ip": "10.6.0.14", "access_ip": "10.6.0.14",
                                                      "ansible_host": "10.6.0.14"}
    assert "centos-master2" not in inv.without_host(doc, M2)["all"]["hosts"]
    with pytest.raises(ValueError, match="no top-level 'all'"):
        inv.parse_inventory("hosts: {}")





@pytest.mark.parametrize("fix,text,old_ip,new,changed,needle", [
    (inv.repoint_server, CLUSTER_INFO, "10.6.0.11", "10.6.0.12", True, "server: https://10.6.0.12:6443"),
    (inv.repoint_server, CLUSTER_INFO, "10.6.0.13", "10.6.0.12", False, "server: https://10.6.0.11:6443"),
    (inv.repoint_server, CLUSTER_INFO.replace("10.6.0.11", "10.6.0.100"), "10.6.0.11", "10.6.0.12", False,
     "https://10.6.0.100:6443"),  # a VIP stays
    (inv.repoint_endpoint, "controlPlaneEndpoint: 10.6.0.11:6443\nkubernetesVersion: v1.27.5\n", "10.6.0.11",
     "10.6.0.12", True, "controlPlaneEndpoint: 10.6.0.12:6443"),
    (inv.repoint_endpoint, "controlPlaneEndpoint: lb.example:6443\n", "10.6.0.11", "10.6.0.12", False, "lb.example"),
    (inv.repoint_endpoint, "kubernetesVersion: v1.27.5\n", "10.6.0.11", "10.6.0.12", False, "v1.27.5"),
])
def test_control_plane_pointers(fix, text, old_ip, new, changed, needle):
    fixed, did = fix(text, old_ip=old_ip, new_host=new)
    assert did is changed and needle in fixed
    if changed:
        assert "certificate-authority-data" not in text or "certificate-authority-data: Q0E=" in fixed


@pytest.mark.parametrize("config,ok", [
    ("controlPlaneEndpoint: 10.8.0.100:6443\n", True),
    ("controlPlaneEndpoint: 10.8.0.11:6443\napiServer: {certSANs: [10.8.0.100]}\n", False),
    ("kubernetesVersion: v1.27.5\n", False),
])
def test_kubeadm_endpoint_must_be_the_vip(config, ok):
    assert inv.endpoint_covers(config, vip_host="10.8.0.100", vip_port=6443)[0] is ok


KUBEAN = KubeanSettings(cluster="centos", image="ghcr.io/kubean-io/spray-job:v0.12.2")


@pytest.mark.parametrize("dead,extra", [(False, "-e node=centos-master1"),
                                        (True, "-e node=centos-master1 -e reset_nodes=false "
                                                "-e allow_ungraceful_removal=true")])
def test_remove_operation_is_the_seed_spec(dead, extra):
    op = kb.remove_operation(name="cpswap-cp1-remove-centos-master1", node=M1, kubean=KUBEAN, dead=dead,
                             clean_on=("centos-master2", "centos-master3"))
    spec = op["spec"]
    assert (spec["cluster"], spec["image"], spec["action"], spec["extraArgs"]) == (
        "centos", "ghcr.io/kubean-io/spray-job:v0.12.2", "remove-node.yml", extra)
    assert spec["postHook"][0] == {"actionType": "playbook", "actionSource": "configmap",
                                   "actionSourceRef": {"name": "pb-clean-kube-apiserver", "namespace": "kubean-system"},
                                   "action": "clean-kube-apiserver.yml",
                                   "extraArgs": "-e node=centos-master2,centos-master3"}
    assert spec["postHook"][1]["action"] == "cluster-info.yml"


@pytest.mark.parametrize("clean_on", [(), (M1,), ("centos-master2", M1)])
def test_remove_operation_refuses_a_clean_up_that_targets_the_departing_node_or_none(clean_on):
    with pytest.raises(ValueError, match="clean_on must name the surviving control-plane hosts"):
        kb.remove_operation(name="x", node=M1, kubean=KUBEAN, dead=True, clean_on=clean_on)


@pytest.mark.parametrize("host,name", [(Host(M1, "10.6.0.11"), "cpswap-cp1-join-centos-master1"),
                                       (Host(M1, "10.6.0.11", rebuild=2), "cpswap-cp1-join-centos-master1-r2")])
def test_operation_names_are_unique_per_host_and_rebuild(host, name):
    assert kb.operation_name(slot="cp1", action="join", host=host) == name


VIP = VipSettings(keepalived=True, interface="ens33", instance="VI_1", virtual_router_id=51, router_id="NGINX_MASTER",
                  priorities=(("cp1", 100), ("cp2", 90), ("cp3", 80)))


@pytest.mark.parametrize("slot,take_over,state,priority", [("cp2", False, "BACKUP", 90), ("cp1", False, "BACKUP", 70),
                                                            ("cp1", True, "MASTER", 100)])
def test_keepalived_conf(slot, take_over, state, priority):
    from dataclasses import replace

    conf = render_keepalived_conf(slot=slot, vip=replace(VIP, take_over_primary=take_over),
                                  endpoint=Endpoint("10.8.0.100", 6443))
    parsed = [line.strip() for line in conf.splitlines()]
    for needle in ("router_id NGINX_MASTER", "vrrp_instance VI_1 {", f"state {state}", "interface ens33",
                   "virtual_router_id 51", f"priority {priority}", "10.8.0.100", f"auth_pass {AUTH_PLACEHOLDER}"):
        assert needle in parsed, needle


def test_keepalived_install_reads_the_password_from_stdin_only():
    text = render_keepalived_install(host=Host("k8s-master-new", "10.8.0.21"), slot="cp1", vip=VIP,
                                     endpoint=Endpoint("10.8.0.100", 6443))
    assert "read -r AUTH" in text and AUTH_PLACEHOLDER in text and "systemctl restart keepalived" in text


OSH = OpenshiftSettings()


@pytest.mark.parametrize("render,expected", [
    (lambda: ocp.render_openshift_etcd_leave(host=Host("ip-10-0-131-183", "10.0.131.183"), etcd=EtcdSettings(),
                                             openshift=OSH),
     f"{CPSWAP} openshift leave --preset env --discover openshift --etcd-namespace openshift-etcd --machine-namespace "
     "openshift-machine-api --node ip-10-0-131-183 --ip 10.0.131.183 --deadline 300"),
    (lambda: ocp.render_delete_etcd_secrets(host=Host("ip-10-0-131-183", "10.0.131.183"), openshift=OSH),
     f"{CPSWAP} openshift delete-etcd-secrets --etcd-namespace openshift-etcd --machine-namespace openshift-machine-api "
     "--node ip-10-0-131-183"),
    (lambda: ocp.render_create_machine(member=Member("cp1", Host("ip-10-0-133-53", "10.0.133.53"),
                                                     machine="clustername-8qw5l-master-3"), openshift=OSH),
     f"{CPSWAP} openshift create-machine --etcd-namespace openshift-etcd --machine-namespace openshift-machine-api "
     "--slot cp1 --node ip-10-0-133-53 --ip 10.0.133.53 --machine clustername-8qw5l-master-3 --deadline 3600"),
    (lambda: ocp.render_redeploy(member=Member("cp1", Host("ip-10-0-131-183", "10.0.131.183", rebuild=1)),
                                 openshift=OSH, etcd=EtcdSettings()),
     f"{CPSWAP} openshift redeploy --preset env --discover openshift --etcd-namespace openshift-etcd "
     "--machine-namespace openshift-machine-api --node ip-10-0-131-183 --reason cpswap-cp1-ip-10-0-131-183-r1 "
     "--deadline 300"),
])
def test_openshift_command_text(render, expected):
    assert render() == expected


def test_etcd_reset_moves_the_data_dir_contents_not_the_mount_point():
    text = ocp.render_etcd_reset(host=Host("ip-10-0-131-183", "10.0.131.183", rebuild=1))
    assert "mv /var/lib/etcd " not in text
    assert "find /var/lib/etcd -mindepth 1 -maxdepth 1 -exec mv -t /var/lib/etcd-backup/etcd-data.$stamp {} +" in text


@pytest.mark.parametrize("text,message", [
    ("- a\n", "must be a YAML mapping, found list"),
    ("a: &a [*a]\n", "recursive alias"),
    ("{\n", "not valid YAML"),
    ("a: 1\na: 2\n", "duplicate key"),
], ids=["list", "recursive", "truncated", "duplicate"])
@pytest.mark.parametrize("read", [
    lambda t: inv.endpoint_covers(t, vip_host="10.0.0.100", vip_port=6443),
    lambda t: inv.repoint_server(t, old_ip="10.0.0.1", new_host="10.0.0.2"),
    lambda t: inv.repoint_endpoint(t, old_ip="10.0.0.1", new_host="10.0.0.2"),
    lambda t: inv.parse_inventory(t),
], ids=["endpoint_covers", "repoint_server", "repoint_endpoint", "parse_inventory"])
def test_yaml_read_from_the_cluster_is_bounded_and_a_clear_error(read, text, message):
    """kubeadm-config, cluster-info and hosts-conf come from the cluster: malformed ones are a
    PermanentError naming the object (exit 1), never a traceback (issue 13)."""
    from cpswap.core.errors import PermanentError

    with pytest.raises(PermanentError, match=message):
        read(text)
