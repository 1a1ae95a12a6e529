"""The preflight decision, per check (table-driven), and its parsers. Pure: no host is contacted."""
from __future__ import annotations

from dataclasses import replace

import pytest

from cpswap.core import k3s_critical as kc
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
                        clock_uncertainty_s=0.05, ocboot_version="v3.11.2",
                        onward=pf.HostProbe(address="", hostname="new-1", addresses=("10.9.0.4",)))
SURVIVOR = pf.HostProbe(address="10.9.0.3", hostname="cp-3", addresses=("10.9.0.3",), clock_offset_s=0.3,
                        clock_uncertainty_s=0.05)
CONFIG_URL = "https://10.9.0.100:6443/v1-k3s/config"
CRITICAL = kc.CriticalConfig(cluster_cidr=("10.52.0.0/16",), service_cidr=("10.43.0.0/16",), cluster_dns=("10.43.0.10",),
                             cluster_domain="cluster.local", flannel_backend="vxlan", egress_selector_mode="agent",
                             switches=(("disable-network-policy", True),), disable=("traefik",))
GOOD = pf.PreflightFacts(target=TARGET, new_host=GOOD_HOST, api_error=None,
                         survivor_versions=(("cp-2", "v1.28.5+k3s1"), ("cp-3", "v1.28.5+k3s1")),
                         cert_remaining_s=30 * 86400.0, snapshot_dir=".cpswap/snapshots", snapshot_free_bytes=20 * GIB,
                         k3s_config=kc.CriticalRead(url=CONFIG_URL, config=CRITICAL))
OCBOOT = replace(GOOD, target=replace(TARGET, distribution="ocboot", ocboot_workdir="ocboot",
                                      ocboot_version="v3.11.9"), vip_host=GOOD_VIP, k3s_config=None)
KUBEADM = replace(GOOD, target=replace(TARGET, distribution="kubeadm"), vip_host=GOOD_VIP,
                  new_host=replace(GOOD_HOST, k3s_version=None, kubeadm_version="v1.31.2", kubelet_version="v1.31.2"),
                  control_plane_version="v1.31.2")
KUBEAN = replace(GOOD, target=replace(TARGET, distribution="kubean", kubean_cluster="c1", kubean_image="spray:v1"),
                 new_host=None, kubean=pf.KubeanFacts(cluster_found=True, operator_ready=1,
                                                      last_operation=("c1-deploy", "spray:v1")))
MACHINES = tuple(pf.MachineFact(name=f"m-master-{i}", phase="Running", node=f"cp-{i}") for i in (0, 1, 2))
OPENSHIFT = replace(GOOD, target=replace(TARGET, distribution="openshift"), new_host=None,
                    openshift=pf.OpenshiftFacts(cpms="Inactive", machines=MACHINES))
LIMITS = pf.Limits(worst_case_s=3 * 3600.0)


def failures(facts: pf.PreflightFacts) -> list[tuple[str, str, str]]:
    return [(f.check, f.host, f.value) for f in pf.decide_preflight(facts=facts, limits=LIMITS).failures]


def test_good_facts_pass_every_check():
    result = pf.decide_preflight(facts=GOOD, limits=LIMITS)
    assert result.ok and {f.check for f in result.findings} == {
        "ssh", "api", "k3s-config", "identity", "installer", "ports", "disk", "etcd-cert", "snapshot-dir"}
    (read,) = [f for f in result.findings if f.check == "k3s-config"]
    assert read.host == "10.9.0.100" and read.value == (
        f"read from {CONFIG_URL} (cluster CA not pinned: the token has no CA hash, or the CA is publicly trusted): "
        "cluster-cidr: 10.52.0.0/16; service-cidr: 10.43.0.0/16; cluster-dns: 10.43.0.10; cluster-domain: "
        "cluster.local; flannel-backend: vxlan; egress-selector-mode: agent; disable-network-policy: true; "
        "disable: traefik")
    # what the join copies: the block between the markers, with its source
    assert result.k3s_block == kc.render_critical_block(config=CRITICAL, source=CONFIG_URL)
    assert result.as_dict()["k3sCriticalConfig"] == result.k3s_block
    ocboot = pf.decide_preflight(facts=OCBOOT, limits=LIMITS)
    assert ocboot.ok and {"vip-ssh", "join-ssh", "ocboot", "clock"} <= {f.check for f in ocboot.findings}
    for facts, check in ((KUBEADM, "installer"), (KUBEAN, "kubean"), (OPENSHIFT, "machine-api")):
        result = pf.decide_preflight(facts=facts, limits=LIMITS)
        assert result.ok and check in {f.check for f in result.findings}, result.failures
    assert "clock" in {f.check for f in pf.decide_preflight(facts=replace(GOOD, survivors=(SURVIVOR,)),
                                                             limits=LIMITS).findings}
    assert "k3s-config" not in {f.check for f in ocboot.findings} and ocboot.k3s_block == ""


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
     [("clock", "10.9.0.4", "skew against cp-2 +2.90 s")]),
    ("k3s config refused", replace(GOOD, k3s_config=kc.CriticalRead(url=CONFIG_URL, config=None,
                                                                     error=f"{CONFIG_URL}: 401 Unauthorized")),
     [("k3s-config", "10.9.0.100", f"{CONFIG_URL}: {CONFIG_URL}: 401 Unauthorized")]),
    ("k3s config unobserved", replace(GOOD, k3s_config=None), [("k3s-config", "10.9.0.100", "unobserved")]),
    ("vip unreachable", replace(OCBOOT, vip_host=pf.HostProbe(address="10.9.0.100", error="no answer within 20 s")),
     [("vip-ssh", "10.9.0.100", "no answer within 20 s")]),
    ("new host refuses the VIP holder's key", replace(OCBOOT, vip_host=replace(GOOD_VIP, onward=pf.HostProbe(
        address="", error="ssh exited 255: root@10.9.0.4: Permission denied (publickey)."))),
     [("join-ssh", "10.9.0.4", "from cp-2: ssh exited 255: root@10.9.0.4: Permission denied (publickey).")]),
    ("VIP holder reaches another host", replace(OCBOOT, vip_host=replace(GOOD_VIP, onward=pf.HostProbe(
        address="", hostname="other", addresses=("10.9.0.5",)))),
     [("join-ssh", "10.9.0.4", "from cp-2: hostname 'other'; addresses 10.9.0.5")]),
    ("clock skew against one survivor", replace(GOOD, survivors=(SURVIVOR, replace(SURVIVOR, address="10.9.0.2",
                                                                                   hostname="cp-2", clock_offset_s=2.0))),
     [("clock", "10.9.0.4", "skew against cp-3 -0.10 s, cp-2 -1.80 s")]),
    ("a survivor unreachable", replace(GOOD, survivors=(SURVIVOR, pf.HostProbe(address="10.9.0.2", error="timeout"))),
     [("clock", "10.9.0.4", "skew against cp-3 -0.10 s, 10.9.0.2: unobserved (timeout)")]),
    ("kubeadm older than the control plane", replace(KUBEADM, new_host=replace(KUBEADM.new_host, kubeadm_version="v1.30.4")),
     [("installer", "10.9.0.4", "kubeadm v1.30.4 is older than the control plane v1.31.2 (KubernetesVersionCheck)")]),
    ("kubeadm two minors newer", replace(KUBEADM, new_host=replace(KUBEADM.new_host, kubeadm_version="v1.33.0")),
     [("installer", "10.9.0.4", "kubeadm v1.33.0 deploys control planes from v1.32 (MinimumControlPlaneVersion), "
                                "not v1.31.2")]),
    ("kubelet newer than the control plane", replace(KUBEADM, new_host=replace(KUBEADM.new_host, kubelet_version="v1.32.1")),
     [("installer", "10.9.0.4", "kubelet v1.32.1 is newer than the control plane v1.31.2 (KubeletVersionCheck)")]),
    ("kubelet too old for kubeadm", replace(KUBEADM, new_host=replace(KUBEADM.new_host, kubelet_version="v1.27.3")),
     [("installer", "10.9.0.4", "kubelet v1.27.3 is below kubeadm's minimum v1.28 (MinimumKubeletVersion)")]),
    ("kubeadm and kubelet missing", replace(KUBEADM, new_host=replace(KUBEADM.new_host, kubeadm_version=None,
                                                                      kubelet_version=None)),
     [("installer", "10.9.0.4", "kubeadm not found; kubelet not found")]),
    ("control plane version unobserved", replace(KUBEADM, control_plane_version=None,
                                                 control_plane_error="kube-system/kubeadm-config not found"),
     [("installer", "10.9.0.4", "control plane version unobserved: kube-system/kubeadm-config not found")]),
    ("kubean cluster absent", replace(KUBEAN, kubean=pf.KubeanFacts(cluster_found=False, operator_ready=1)),
     [("kubean", "global", "Cluster c1 not found")]),
    ("kubean operator and refs", replace(KUBEAN, kubean=replace(KUBEAN.kubean, operator_ready=None, missing_refs=(
        "varsConfRef kubean-system/c1-vars-conf absent",))),
     [("kubean", "global", "varsConfRef kubean-system/c1-vars-conf absent; no kubean operator Deployment "
                           "(label app.kubernetes.io/name=kubean)")]),
    ("kubean image differs", replace(KUBEAN, kubean=replace(KUBEAN.kubean, last_operation=("c1-deploy", "spray:v0"))),
     [("kubean", "global", "image spray:v1 differs from spray:v0 of the latest operation c1-deploy")]),
    ("kubean unobserved", replace(KUBEAN, kubean=pf.KubeanFacts(error="no kubeconfig for kubean's global cluster")),
     [("kubean", "global", "unobserved: no kubeconfig for kubean's global cluster")]),
    ("a Machine still provisioning", replace(OPENSHIFT, openshift=pf.OpenshiftFacts(cpms="Active", machines=(
        *MACHINES[:2], pf.MachineFact(name="m-master-3", phase="Provisioning", node=None)))),
     [("machine-api", "cluster", "controlplanemachinesets/cluster Active; not Running: m-master-3 Provisioning")]),
    ("a Machine deleting", replace(OPENSHIFT, openshift=pf.OpenshiftFacts(cpms="Inactive", machines=(
        *MACHINES[:2], replace(MACHINES[2], phase="Deleting")))),
     [("machine-api", "cluster", "controlplanemachinesets/cluster Inactive; not Running: m-master-2 Deleting")]),
    ("machine api unobserved", replace(OPENSHIFT, openshift=pf.OpenshiftFacts(error="403 Forbidden")),
     [("machine-api", "cluster", "unobserved: 403 Forbidden")]),
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


@pytest.mark.parametrize("parse,text,version", [
    (pf.parse_kubeadm_version, "v1.31.2\n", "v1.31.2"), (pf.parse_kubeadm_version, "", None),
    (pf.parse_kubeadm_version, "kubeadm: command not found", None),
    (pf.parse_kubelet_version, "Kubernetes v1.31.2\n", "v1.31.2"),
    (pf.parse_kubelet_version, "Kubernetes v1.29.0-rc.1", "v1.29.0-rc.1"),
    (pf.parse_kubelet_version, "v1.31.2", None), (pf.parse_kubelet_version, "", None),
])
def test_parse_kubeadm_and_kubelet_versions(parse, text, version):
    assert parse(text) == version


def test_parse_probe_reads_the_onward_ssh_from_the_vip_holder():
    from cpswap.executors.preflight import parse_probe

    head = "hostname=cp-2\naddresses=10.9.0.2 10.9.0.100\nclock=100.5\nkubeadm=v1.31.2\nkubelet=Kubernetes v1.31.2\n"
    ok = parse_probe(address="10.9.0.100", text=head + "onward_rc=0\nonward=new-1 127.0.0.1 10.9.0.4 \n--- tcp\n",
                     started=100.0, ended=101.0)
    assert ok.onward == pf.HostProbe(address="", hostname="new-1", addresses=("127.0.0.1", "10.9.0.4"))
    assert (ok.kubeadm_version, ok.kubelet_version, ok.clock_offset_s) == ("v1.31.2", "v1.31.2", 0.0)
    refused = parse_probe(address="10.9.0.100", text=head + "onward_rc=255\nonward=root@10.9.0.4: Permission denied "
                                                            "(publickey). \n--- tcp\n", started=100.0, ended=101.0)
    assert refused.onward.error == "ssh exited 255: root@10.9.0.4: Permission denied (publickey)."
    assert parse_probe(address="10.9.0.4", text=head + "--- tcp\n", started=100.0, ended=101.0).onward is None


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
    assert ("preflight --distribution k3s --slot cp1 --node n1 --ip 10.9.0.1 --vip 10.9.0.100 --ssh-user root "
            "--ssh-port 22 --k3s-server https://10.9.0.100:6443") in pre.create
    assert ("CPSWAP_SSH_KEY_DATA", "sshPrivateKey") in pre.secret_env
    assert ("CPSWAP_K3S_TOKEN_DATA", "k3sToken") in pre.secret_env  # k3s: it reads the critical flags
    assert "${PULUMI_COMMAND_STDOUT:-}" in pre.update  # an update keeps them in its stdout
    assert pf.target_for(model=model, member=model.members[0]) == pf.Target(
        slot="cp1", distribution="k3s", name="n1", ip="10.9.0.1", vip="10.9.0.100",
        k3s_server="https://10.9.0.100:6443")


@pytest.mark.parametrize(("text", "size"), [
    ("1Ti", 2 ** 40), ("1Gi", 2 ** 30), ("20Mi", 20 * 2 ** 20), ("512Ki", 512 * 1024), ("1Pi", 2 ** 50),
    ("20G", 20 * 10 ** 9), ("1T", 10 ** 12), ("5M", 5 * 10 ** 6), ("3k", 3000), ("1E", 10 ** 18),
    ("1073741824", 2 ** 30), ("0", 0), ("1.5Gi", 3 * 2 ** 29), ("0.5k", 500), ("1e3", 1000), ("2E3", 2000),
    ("1500m", 2),  # fractional bytes round up, as Quantity.Value()
    ("+1Ki", 1024), (".5Ki", 512), ("1n", 1), ("2000000u", 2),
    ("", None), ("1TB", None), ("1 Gi", None), ("Gi", None), ("-1Gi", None), ("1gi", None), ("1K", None),
    ("1.2.3", None), ("?", None),
])
def test_parse_quantity_is_exact(text, size):
    assert pf.parse_quantity(text) == size


MOVING = (pf.MovingClaim(key="onecloud-minio/export-minio-1", size="1Ti", pods=("onecloud-minio/minio-1",)),
          pf.MovingClaim(key="onecloud/default-victoria-metrics", size="20G", pods=("onecloud/vm-abc",)))
NEED = 2 ** 40 + 20 * 10 ** 9
ROOMY = replace(GOOD_HOST, local_path_free_bytes=NEED, local_path_dir="/opt")


def capacity_finding(facts: pf.PreflightFacts) -> pf.Finding | None:
    found = [f for f in pf.decide_preflight(facts=facts, limits=LIMITS).findings if f.check == "pvc-capacity"]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.mark.parametrize(("facts", "ok", "says"), [
    # no departing node known (adoption, surge): no check
    (GOOD, None, ()),
    # exactly enough disk; the new Node not registered yet: the pod check is skipped and says so
    (replace(GOOD, new_host=ROOMY, capacity=pf.CapacityFacts(old_node="old-1", claims=MOVING)), True,
     ("pod check skipped: new-1 not registered yet", "free at /opt")),
    # one byte short: names the node, the claims, their sizes and the free space
    (replace(GOOD, new_host=replace(ROOMY, local_path_free_bytes=NEED - 1),
             capacity=pf.CapacityFacts(old_node="old-1", claims=MOVING)), False,
     ("from old-1", "onecloud-minio/export-minio-1 1Ti", "onecloud/default-victoria-metrics 20G",
      f"({NEED} bytes) needed", f"({NEED - 1} bytes) free at /opt")),
    # registered: allocatable pods must hold the running ones plus the moving ones
    (replace(GOOD, new_host=ROOMY, capacity=pf.CapacityFacts(old_node="old-1", claims=MOVING, new_node_registered=True,
                                                             allocatable_pods=10, running_pods=8)), True,
     ("pods 8 running + 2 moving <= 10 allocatable",)),
    (replace(GOOD, new_host=ROOMY, capacity=pf.CapacityFacts(old_node="old-1", claims=MOVING, new_node_registered=True,
                                                             allocatable_pods=10, running_pods=9)), False,
     ("new-1 allocatable pods 10 < 9 running + 2 moving",)),
    (replace(GOOD, new_host=ROOMY, capacity=pf.CapacityFacts(old_node="old-1", claims=MOVING, new_node_registered=True)),
     False, ("new-1 reports no allocatable pods",)),
    # the free space could not be read, or a size is unreadable: not shown safe
    (replace(GOOD, capacity=pf.CapacityFacts(old_node="old-1", claims=MOVING)), False,
     ("free space at /opt/local-path-provisioner unobserved",)),
    (replace(GOOD, new_host=ROOMY, capacity=pf.CapacityFacts(
        old_node="old-1", claims=(pf.MovingClaim(key="a/b", size="1TB"),))), False, ("unreadable size: a/b '1TB'",)),
    (replace(GOOD, capacity=pf.CapacityFacts(old_node="old-1", error="Forbidden")), False,
     ("claims on old-1 unobserved: Forbidden",)),
    # nothing to move passes whatever the disk
    (replace(GOOD, capacity=pf.CapacityFacts(old_node="old-1")), True, ("no claim on old-1 to recreate",)),
    # kubean reaches hosts through its operator: the disk is not probed, and the finding says so
    (replace(KUBEAN, capacity=pf.CapacityFacts(old_node="old-1", claims=MOVING)), True,
     ("disk check skipped: kubean reaches its hosts through its operator",)),
])
def test_pvc_capacity_on_the_new_host(facts, ok, says):
    finding = capacity_finding(facts)
    if ok is None:
        assert finding is None
        return
    assert finding is not None and finding.ok is ok and finding.host == "10.9.0.4", finding
    for text in says:
        assert text in finding.value, (text, finding.value)
    assert "departing node old-1" in finding.rule


def test_parse_probe_reads_the_local_path_free_space():
    text = "hostname=new-1\nlocalpath=/opt 1048576\n--- tcp\n"
    probe = ex_parse(text)
    assert (probe.local_path_dir, probe.local_path_free_bytes) == ("/opt", 1024 ** 3)
    assert ex_parse("hostname=new-1\nlocalpath=/opt \n--- tcp\n").local_path_free_bytes is None


def ex_parse(text: str) -> pf.HostProbe:
    from cpswap.executors.preflight import parse_probe

    return parse_probe(address="10.9.0.4", text=text, started=0.0, ended=0.0)


def test_a_swap_preflight_carries_the_departing_node_and_the_policies():
    config = {"distribution": "k3s", "controlPlaneEndpoint": "10.9.0.100:6443",
              "members": {f"cp{i}": {"name": f"n{i}", "ip": f"10.9.0.{i}"} for i in (1, 2, 3)},
              "pvcRecovery": {"onecloud-minio": {"policy": "recreate", "dataClass": "replicated", "order": 1}}}
    model = parse_stack_config(config, stack="t")
    member = model.members[0]
    swap = slot_commands(model=model, member=member, departed="old-cp1")[0].create
    assert "--old-node old-cp1 --policy-json" in swap and "onecloud-minio" in swap
    assert "--old-node" not in slot_commands(model=model, member=member)[0].create  # adoption: no departing node
