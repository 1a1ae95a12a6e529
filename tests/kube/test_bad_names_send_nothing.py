"""No request for an empty or invalid name (issue 13, "Destructive on bad input").

A fake kube-apiserver (tests/support/fake_apiserver.py) records every request and connection and
routes as the real one does: ``DELETE /api/v1/nodes/`` is a collection delete. Every executor
command that takes a name, IP, URL or duration is run in-process with bad values: each must exit 2
naming the flag, with no request, no connection, and every Node still there. The executor
functions are also called directly (past argparse) and must refuse before their first API call.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpswap.cli import main
from cpswap.core import inputs
from cpswap.core.errors import ConfigError
from cpswap.executors import kube as kx
from cpswap.executors import recovery as rx
from cpswap.executors import kubean as kubean_ex
from cpswap.executors import openshift as openshift_ex
from cpswap.core.model import KubeanSettings
from tests.support.fake_apiserver import FakeApiServer

NODES = ("lzx-ha-env", "lzx-ha-env-2", "lzx-ha-env-3")
BAD_NAMES = ["", "-", "a/b", "UPPER", "x\n", "a;reboot", "a" * 254]
KUBEAN = ["--cluster", "c1", "--image", "ghcr.io/kubean-io/spray-job:v0.12.2"]


@pytest.fixture
def apiserver(tmp_path, monkeypatch):
    with FakeApiServer() as server:
        server.seed_nodes(*NODES)
        monkeypatch.setenv("CPSWAP_KUBECONFIG_DATA", server.kubeconfig_text)
        monkeypatch.setenv("CPSWAP_GLOBAL_KUBECONFIG_DATA", server.kubeconfig_text)
        server.kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        server.ca = tmp_path / "ca.crt"
        server.ca.write_text("not a certificate; never read: nothing may be contacted\n")
        yield server


def _etcd(server: FakeApiServer) -> list[str]:
    return ["--endpoints", server.url.replace("http://", "https://"), "--cacert", str(server.ca),
            "--request-timeout", "1"]


# (id, argv template with {bad}, the flag the error must name); {kc} is the kubeconfig path, {etcd} etcd flags
COMMANDS = [
    ("kube-inventory", "kube inventory --kubeconfig {kc} --node={bad}", "--node"),
    ("kube-drain", "kube drain --kubeconfig {kc} --node={bad}", "--node"),
    ("kube-delete-node", "kube delete-node --kubeconfig {kc} --node={bad}", "--node"),
    ("kube-delete-node-drain", "kube delete-node --kubeconfig {kc} --drain --node={bad}", "--node"),
    ("kube-wait-node", "kube wait-node --kubeconfig {kc} --node={bad} --deadline 1", "--node"),
    ("kube-cordon", "kube cordon --kubeconfig {kc} --node={bad}", "--node"),
    ("kube-cordon-list", "kube cordon --kubeconfig {kc} --node=lzx-ha-env,{bad}", "--node"),
    ("kube-uncordon", "kube uncordon --kubeconfig {kc} --node={bad}", "--node"),
    ("kube-capacity", "kube capacity --kubeconfig {kc} --node={bad}", "--node"),
    ("kube-recover-new", "kube recover-pvcs --kubeconfig {kc} --new-node={bad} --old-node lzx-ha-env --policy-json {{}}", "--new-node"),
    ("kube-recover-old", "kube recover-pvcs --kubeconfig {kc} --new-node n --old-node={bad} --policy-json {{}}", "--old-node"),
    ("kube-recover-survivors", "kube recover-pvcs --kubeconfig {kc} --new-node n --orphaned --survivors={bad} --policy-json {{}}", "--survivors"),
    ("etcd-remove", "etcd remove {etcd} --node={bad} --ip 10.0.0.1", "--node"),
    ("etcd-remove-old-flag", "etcd remove {etcd} --name={bad} --ip 10.0.0.1", "--node/--name"),
    ("etcd-promote", "etcd promote {etcd} --node={bad} --ip 10.0.0.1", "--node"),
    ("etcd-wait-member", "etcd wait-member {etcd} --node={bad} --ip 10.0.0.1", "--node"),
    ("etcd-discover-namespace", "etcd members {etcd} --discover openshift --etcd-namespace={bad}", "--etcd-namespace"),
    ("kubean-leave", "kubean leave " + " ".join(KUBEAN) + " {etcd} --node={bad} --ip 10.0.0.1 --operation op", "--node"),
    ("kubean-leave-operation", "kubean leave " + " ".join(KUBEAN) + " {etcd} --node n --ip 10.0.0.1 --operation={bad}", "--operation"),
    ("kubean-inventory-add", "kubean inventory-add " + " ".join(KUBEAN) + " --node={bad} --ip 10.0.0.1", "--node"),
    ("kubean-cluster", "kubean inventory-add --cluster={bad} --image ghcr.io/k/s:v1 --node n --ip 10.0.0.1", "--cluster"),
    ("kubean-namespace", "kubean wait " + " ".join(KUBEAN) + " --namespace={bad} --operation op", "--namespace"),
    ("kubean-wait-operation", "kubean wait " + " ".join(KUBEAN) + " --operation={bad}", "--operation"),
    ("kubean-wait-node", "kubean wait " + " ".join(KUBEAN) + " --operation op --node={bad}", "--node"),
    ("openshift-secrets", "openshift delete-etcd-secrets --kubeconfig {kc} --node={bad}", "--node"),
    ("openshift-secrets-ns", "openshift delete-etcd-secrets --kubeconfig {kc} --node n --etcd-namespace={bad}", "--etcd-namespace"),
    ("openshift-delete-machine", "openshift delete-machine --kubeconfig {kc} --slot cp1 --node={bad}", "--node"),
    ("openshift-delete-machine-ns", "openshift delete-machine --kubeconfig {kc} --slot cp1 --node n --machine-namespace={bad}", "--machine-namespace"),
    ("openshift-create-machine", "openshift create-machine --kubeconfig {kc} --slot cp1 --node={bad} --ip 10.0.0.1", "--node"),
    ("openshift-create-machine-name", "openshift create-machine --kubeconfig {kc} --slot cp1 --node n --ip 10.0.0.1 --machine={bad}", "--machine"),
    ("openshift-redeploy", "openshift redeploy --kubeconfig {kc} --node={bad} --reason r", "--node"),
]

# other arguments: IPs, URLs, ports, durations, lags, images, files
OTHER = [
    ("etcd-remove-ip-empty", "etcd remove {etcd} --node n --ip=", "--ip"),
    ("etcd-remove-ip-zone", "etcd remove {etcd} --node n --ip=fe80::1%eth0", "--ip"),
    ("etcd-remove-ip-bad", "etcd remove {etcd} --node n --ip=10.0.0.300", "--ip"),
    ("etcd-endpoints-path", "etcd members --cacert {ca} --endpoints=https://127.0.0.1:9/v3/kv", "--endpoints"),
    ("etcd-endpoints-userinfo", "etcd members --cacert {ca} --endpoints=https://u@127.0.0.1:9", "--endpoints"),
    ("etcd-endpoints-v6-unbracketed", "etcd members --cacert {ca} --endpoints=https://fd00::1:2379", "--endpoints"),
    ("etcd-endpoints-empty-item", "etcd members --cacert {ca} --endpoints=https://127.0.0.1:9,,", "--endpoints"),
    ("etcd-endpoints-port", "etcd members --cacert {ca} --endpoints=https://127.0.0.1:99999", "--endpoints"),
    ("etcd-add-peer-url", "etcd add {etcd} --peer-url=10.0.0.4:2380", "--peer-url"),
    ("etcd-deadline-negative", "etcd remove {etcd} --node n --ip 10.0.0.1 --deadline=-1", "--deadline"),
    ("etcd-deadline-nan", "etcd remove {etcd} --node n --ip 10.0.0.1 --deadline=nan", "--deadline"),
    ("etcd-deadline-inf", "etcd wait-member {etcd} --node n --ip 10.0.0.1 --deadline=inf", "--deadline"),
    ("etcd-deadline-zero", "etcd promote {etcd} --node n --ip 10.0.0.1 --deadline=0", "--deadline"),
    ("etcd-max-lag-zero", "etcd wait-member {etcd} --node n --ip 10.0.0.1 --max-lag=0", "--max-lag"),
    ("etcd-max-lag-float", "etcd wait-member {etcd} --node n --ip 10.0.0.1 --max-lag=10.5", "--max-lag"),
    ("etcd-timeout-zero", "etcd members --cacert {ca} --endpoints https://127.0.0.1:1 --request-timeout=0", "--request-timeout"),
    ("etcd-timeout-old-flag", "etcd members --cacert {ca} --endpoints https://127.0.0.1:1 --timeout=-5", "--request-timeout/--timeout"),
    ("etcd-cacert-missing", "etcd members --cacert=/nonexistent/ca.crt --endpoints https://127.0.0.1:1", "--cacert"),
    ("kube-kubeconfig-missing", "kube delete-node --kubeconfig=/nonexistent/kubeconfig --node n", "--kubeconfig"),
    ("kube-kubeconfig-dir", "kube delete-node --kubeconfig=/ --node n", "--kubeconfig"),
    ("kube-drain-timeout", "kube drain --kubeconfig {kc} --node n --drain-timeout=0", "--drain-timeout"),
    ("kube-drain-timeout-old", "kube drain --kubeconfig {kc} --node n --timeout=-1", "--drain-timeout/--timeout"),
    ("kube-request-timeout", "kube capacity --kubeconfig {kc} --node n --request-timeout=1e400", "--request-timeout"),
    ("kube-endpoint-v6", "kube check-kubeadm-endpoint --kubeconfig {kc} --endpoint=fd00::1:6443", "--endpoint"),
    ("kube-endpoint-port", "kube check-kubeadm-endpoint --kubeconfig {kc} --endpoint=10.0.0.1:", "--endpoint"),
    ("kube-policy-json-bad", "kube recover-pvcs --kubeconfig {kc} --new-node n --orphaned --policy-json={{", "--policy-json"),
    ("kube-policy-json-list", "kube recover-pvcs --kubeconfig {kc} --new-node n --orphaned --policy-json=[]", "--policy-json"),
    ("kube-policy-json-rule", "kube recover-pvcs --kubeconfig {kc} --new-node n --orphaned --policy-json={{\"ns\":{{\"policy\":\"nuke\"}}}}", "--policy-json"),
    ("kubean-image-latest", "kubean inventory-add --cluster c --image=ghcr.io/k/s:latest --node n --ip 10.0.0.1", "--image"),
    ("kubean-image-newline", "kubean inventory-add --cluster c --image=ghcr.io/k/s:v1\n --node n --ip 10.0.0.1", "--image"),
    ("openshift-slot", "openshift delete-machine --kubeconfig {kc} --slot=CP1 --node n", "--slot"),
    ("openshift-ip", "openshift create-machine --kubeconfig {kc} --slot cp1 --node n --ip=::ffff:1.2.3.4%1", "--ip"),
    ("openshift-reason", "openshift redeploy --kubeconfig {kc} --node n --reason=a;b", "--reason"),
    ("openshift-deadline", "openshift redeploy --kubeconfig {kc} --node n --reason r --deadline=0", "--deadline"),
    ("openshift-kubeconfig-missing", "openshift redeploy --kubeconfig=/nonexistent --node n --reason r", "--kubeconfig"),
    ("kubean-kubeconfig-missing", "kubean wait " + " ".join(KUBEAN) + " --operation op --global-kubeconfig=/nonexistent", "--global-kubeconfig"),
]


def _argv(template: str, server: FakeApiServer, bad: str = "") -> list[str]:
    argv: list[str] = []
    for word in template.split(" "):
        if word == "{etcd}":
            argv += _etcd(server)
        else:
            argv.append(word.format(kc=server.kubeconfig, ca=server.ca, bad=bad))
    return argv


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0)


def _nothing_sent(server: FakeApiServer) -> None:
    assert server.requests == [] and server.connections == 0, (server.requests, server.connections)
    assert sorted(server.objects[("/api/v1", "nodes", None)]) == sorted(NODES)


@pytest.mark.parametrize("bad", BAD_NAMES, ids=[repr(b)[1:-1][:12] or "empty" for b in BAD_NAMES])
@pytest.mark.parametrize("template,flag", [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_bad_name_exits_2_and_sends_nothing(apiserver, capsys, template, flag, bad):
    if flag == "--survivors" and bad == "":
        pytest.skip("--survivors '' means the default (every other node), not a name")
    assert _run(_argv(template, apiserver, bad)) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "Traceback" not in err, err
    _nothing_sent(apiserver)


@pytest.mark.parametrize("template,flag", [c[1:] for c in OTHER], ids=[c[0] for c in OTHER])
def test_bad_argument_exits_2_and_sends_nothing(apiserver, capsys, template, flag):
    assert _run(_argv(template, apiserver)) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "Traceback" not in err, err
    _nothing_sent(apiserver)


def test_a_missing_kubeconfig_is_reported_as_not_found(apiserver, capsys):
    assert _run(["kube", "wait-node", "--kubeconfig", "/nonexistent/kubeconfig", "--node", "n"]) == 2
    assert "argument --kubeconfig: '/nonexistent/kubeconfig': file not found" in capsys.readouterr().err


# Executors called directly, past the CLI: refused before the first request.
def _api_calls(server: FakeApiServer):
    kc = server.kubeconfig
    kubean = KubeanSettings(cluster="c1", image="ghcr.io/kubean-io/spray-job:v0.12.2")
    with_api = {
        "read_node": lambda api, bad: kx.read_node(api, bad),
        "delete_node": lambda api, bad: kx.delete_node(api, name=bad, drain_first=True, drain_timeout_s=1, progress=print),
        "drain": lambda api, bad: kx.drain(api, name=bad, timeout_s=1, progress=print),
        "wait_node": lambda api, bad: kx.wait_node(api, name=bad, deadline_s=1, progress=print),
        "cordon": lambda api, bad: kx.cordon(api, names=["lzx-ha-env", bad], progress=print),
        "uncordon": lambda api, bad: kx.uncordon_marked(api, names=[bad], progress=print),
        "capacity": lambda api, bad: kx.capacity(api, name=bad),
        "claims_on": lambda api, bad: kx.claims_on(api, nodes={bad}),
        "recover_pvcs": lambda api, bad: rx.recover_pvcs(api, new_node=bad, policy_json="{}", old_node="lzx-ha-env",
                                                         orphaned=False, state_dir=server.ca.parent, deadline_s=1,
                                                         progress=print),
        "read_config_map": lambda api, bad: kx.read_config_map(api, "kube-system", bad),
    }
    without_api = {
        "openshift.delete_etcd_secrets": lambda bad: openshift_ex.delete_etcd_secrets(
            namespace="openshift-etcd", node=bad, progress=print, kubeconfig=kc),
        "openshift.delete_machine": lambda bad: openshift_ex.delete_machine(
            namespace="openshift-machine-api", slot="cp1", node=bad, deadline_s=1, progress=print, kubeconfig=kc),
        "openshift.create_machine": lambda bad: openshift_ex.create_machine(
            namespace="openshift-machine-api", slot="cp1", node=bad, ip="10.0.0.1", machine=None, deadline_s=1,
            progress=print, kubeconfig=kc),
        "openshift.redeploy": lambda bad: openshift_ex.redeploy(etcd_namespace="openshift-etcd", node=bad, reason="r",
                                                                progress=print, kubeconfig=kc),
        "kubean.inventory_add": lambda bad: kubean_ex.inventory_add(kubean=kubean, node=bad, ip="10.0.0.1",
                                                                    progress=print),
        "kubean.wait": lambda bad: kubean_ex.wait(name=bad, node=None, deadline_s=1, progress=print),
        "kubean.leave": lambda bad: kubean_ex.leave(kubean=kubean, node=bad, ip="10.0.0.1", operation="op",
                                                    guard=lambda: None, deadline_s=1, progress=print),
    }
    return with_api, without_api


WITH_API = ["read_node", "delete_node", "drain", "wait_node", "cordon", "uncordon", "capacity", "claims_on",
            "recover_pvcs", "read_config_map"]
WITHOUT_API = ["openshift.delete_etcd_secrets", "openshift.delete_machine", "openshift.create_machine",
               "openshift.redeploy", "kubean.inventory_add", "kubean.wait", "kubean.leave"]


@pytest.mark.parametrize("bad", ["", "-", "a/b", "UPPER", "x\n"], ids=["empty", "dash", "slash", "upper", "newline"])
@pytest.mark.parametrize("call", WITH_API + WITHOUT_API)
def test_executor_refuses_before_its_first_request(apiserver, call, bad):
    with_api, without_api = _api_calls(apiserver)
    with pytest.raises(ConfigError) as info:
        if call in with_api:
            with kx.connect(kubeconfig=apiserver.kubeconfig, timeout=2) as api:
                with_api[call](api, bad)
        else:
            without_api[call](bad)
    assert bad.strip()[:3] in str(info.value)
    _nothing_sent(apiserver)


def test_the_stand_in_routes_an_empty_name_as_kube_apiserver_does(apiserver):
    """Why the guard matters: the client's delete_node("") is DELETECOLLECTION, every Node goes."""
    with kx.connect(kubeconfig=apiserver.kubeconfig, timeout=2) as api:
        api.core.delete_node("")  # the raw client, past cpswap's guard
    assert [(r["method"], r["path"]) for r in apiserver.requests] == [("DELETE", "/api/v1/nodes/")]
    assert apiserver.objects[("/api/v1", "nodes", None)] == {}


def test_a_good_name_reaches_the_server(apiserver, capsys):
    """The zero-request assertions above are not vacuous: a valid delete-node is sent and deletes one Node."""
    assert _run(["kube", "delete-node", "--kubeconfig", apiserver.kubeconfig, "--node", "lzx-ha-env"]) == 0
    assert ("DELETE", "/api/v1/nodes/lzx-ha-env") in [(r["method"], r["path"]) for r in apiserver.requests]
    assert sorted(apiserver.objects[("/api/v1", "nodes", None)]) == ["lzx-ha-env-2", "lzx-ha-env-3"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=70).filter(lambda t: not _valid_name(t)),
       command=st.sampled_from(["kube delete-node --kubeconfig {kc} --drain --node={bad}",
                                "kube cordon --kubeconfig {kc} --node={bad}",
                                "openshift delete-etcd-secrets --kubeconfig {kc} --node={bad}",
                                "etcd remove {etcd} --node={bad} --ip 10.0.0.1"]))
def test_any_invalid_name_sends_nothing(apiserver, capsys, name, command):
    assert _run(_argv(command, apiserver, name)) == 2
    assert "Traceback" not in capsys.readouterr().err
    _nothing_sent(apiserver)


def _valid_name(text: str) -> bool:
    """Valid as a name, or as cordon's comma-separated list of names."""
    try:
        for part in text.split(","):
            inputs.dns_name(part)
    except inputs.InputError:
        return False
    return True
