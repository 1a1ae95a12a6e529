"""Node-side scripts run for real, in a private mount and network namespace (``unshare``), with
tmpfs mount points where a node has its etcd disk and manifests: what a node would do with the
rendered text, without a node."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from cpswap.core.model import Host
from cpswap.core.renderers import openshift as ocp

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ss") is None,
                                reason="needs unshare and ss (util-linux, iproute2)")

SETUP = ("mount -t tmpfs none /etc/kubernetes && mount -t tmpfs none /var/lib/etcd && "
         "mount -t tmpfs none /var/lib/etcd-backup && mkdir -p /etc/kubernetes/manifests /var/lib/etcd/member/snap && "
         "echo manifest > /etc/kubernetes/manifests/etcd-pod.yaml && echo wal > /var/lib/etcd/member/snap/db && ")
REPORT = ("; rc=$?; echo \"rc=$rc\"; echo \"manifest=$(ls /etc/kubernetes/manifests)\"; "
          "echo \"data=$(ls -A /var/lib/etcd)\"; echo \"backup=$(cd /var/lib/etcd-backup && find . -type f | sort | tr '\\n' ' ')\"")


def _run(script: str, *, listener: bool, timeout: float = 150) -> dict[str, str]:
    for directory in ("/etc/kubernetes", "/var/lib/etcd", "/var/lib/etcd-backup"):
        subprocess.run(["mkdir", "-p", directory], check=True)
    # the listener is up before the script runs: waited for (bounded, 60 s), not a fixed sleep a loaded
    # machine's python start-up can outlast (the script then saw no listener and reset a serving member)
    listen = ("python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              "s.bind((\"127.0.0.1\", 2380)); s.listen(); time.sleep(120)' & listener=$!; "
              "for i in $(seq 600); do ss -Hltn 'sport = :2380' | grep -q . && break; sleep 0.1; done; ") if listener else ""
    body = SETUP + listen + "( " + script + " )" + REPORT + ("; kill $listener" if listener else "")
    done = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c",
                           "ip link set lo up; " + body], capture_output=True, text=True, timeout=timeout)
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and line.split("=", 1)[0]
                 in ("rc", "manifest", "data", "backup"))
    lines["out"], lines["err"] = done.stdout, done.stderr
    return lines


def test_etcd_reset_moves_the_manifest_and_the_data_dir_contents_of_a_crashlooping_member():
    result = _run(ocp.render_etcd_reset(host=Host("ip-10-0-131-183", "10.0.131.183", rebuild=1), recheck_s=1),
                  listener=False)
    assert result["rc"] == "0", result
    assert result["manifest"] == "" and result["data"] == ""  # the mount point itself stays, emptied
    moved = result["backup"].split()
    assert any(f.startswith("./etcd-pod.yaml.") for f in moved), moved
    assert any(f.startswith("./etcd-data.") and f.endswith("/member/snap/db") for f in moved), moved
    assert "moved the contents of /var/lib/etcd aside" in result["out"]


def test_etcd_reset_leaves_an_etcd_that_serves_peers_alone():
    result = _run(ocp.render_etcd_reset(host=Host("ip-10-0-131-183", "10.0.131.183", rebuild=1), recheck_s=1),
                  listener=True)
    assert result["rc"] == "0", result
    assert result["manifest"] == "etcd-pod.yaml" and result["data"] == "member" and result["backup"] == "", result
    assert "etcd is serving peers here" in result["out"]


def _vrrp_node(ip: str) -> str:
    """Shell setup of a node with one link eth0 (a veth whose peer nobody answers on), ``ip`` on it,
    and private /etc/keepalived and /run."""
    return ("ip link set lo up; ip link add eth0 type veth peer name eth1; ip link set eth1 up; ip link set eth0 up; "
            f"ip addr add {ip}/24 dev eth0; mount -t tmpfs none /etc/keepalived; mount -t tmpfs none /run; ")


def _in_private_node(body: str) -> subprocess.CompletedProcess:
    """``body`` in private PID, mount and network namespaces: its processes end with its shell."""
    subprocess.run(["mkdir", "-p", "/etc/keepalived"], check=True)
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--net", "--propagation",
                           "private", "sh", "-c", body], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="needs keepalived (Debian package keepalived)")
def test_keepalived_install_writes_a_config_real_keepalived_accepts_and_runs_it():
    """The keepalived step's script on a node without systemd: the config is written 0600 with the
    password from stdin, real keepalived accepts it, starts as BACKUP and, hearing no MASTER on its
    own isolated link, takes the VIP after the master-down interval. Everything runs in a private
    PID namespace: its processes end with the test's shell."""
    from cpswap.core.model import Endpoint, VipSettings
    from cpswap.core.renderers.keepalived import render_keepalived_install

    vip = VipSettings(keepalived=True, interface="eth0", instance="VI_1", virtual_router_id=51,
                      router_id="NGINX_MASTER", advert_int=1, priorities=(("cp1", 100), ("cp2", 90), ("cp3", 80)))
    script = render_keepalived_install(host=Host("k8s-backup3", "10.99.0.13"), slot="cp3", vip=vip,
                                       endpoint=Endpoint(host="10.99.0.100", port=6443))
    body = (_vrrp_node("10.99.0.13") +
            f"printf 'vrrpTst1' | ( {script} ); echo rc=$?; "
            "stat -c mode=%a /etc/keepalived/keepalived.conf; "
            "i=0; while [ $i -lt 100 ] && ! ip -4 addr show dev eth0 | grep -q 10.99.0.100; do sleep 0.1; i=$((i+1)); done; "
            "ip -4 addr show dev eth0 | grep -q 10.99.0.100 && echo vip=held || echo vip=absent; "
            "echo conf; cat /etc/keepalived/keepalived.conf")
    done = _in_private_node(body)
    out = done.stdout
    assert "rc=0" in out and "k8s-backup3: keepalived VI_1 vrid 51 configured" in out, (out, done.stderr)
    assert "mode=600" in out, out
    conf = out.split("conf\n", 1)[1]
    assert "auth_pass vrrpTst1" in conf and "@@" not in conf
    assert "state BACKUP" in conf and "priority 80" in conf and "virtual_router_id 51" in conf
    assert "vip=held" in out, (out, done.stderr)
    assert "vrrpTst1" not in done.stderr


def _stub(directory, name: str, body: str) -> str:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return f"PATH={directory}:$PATH; export PATH; "


def test_etcd_reset_moves_nothing_when_ss_fails(tmp_path):
    """A failing ss must not read as "nothing listens": that would move a healthy member aside."""
    stub = _stub(tmp_path / "bin", "ss", "echo 'ss: netlink error' >&2; exit 1")
    result = _run(stub + ocp.render_etcd_reset(host=Host("ip-10-0-131-183", "10.0.131.183", rebuild=1), recheck_s=1),
                  listener=False)
    assert result["rc"] == "1", result
    assert result["manifest"] == "etcd-pod.yaml" and result["data"] == "member" and result["backup"] == "", result
    assert "ss failed; cannot tell whether etcd serves peers here; nothing moved" in result["err"]


@pytest.mark.parametrize("stdin,message", [
    ("", "keepalivedAuthPass (stdin) must be 1-8 of [A-Za-z0-9_.-]; nothing written"),
    ("pass word", "keepalivedAuthPass (stdin) must be 1-8 of [A-Za-z0-9_.-]; nothing written"),
    ("abcdefghij", "keepalivedAuthPass (stdin) has 10 characters; keepalived uses at most 8; nothing written"),
])
def test_keepalived_install_refuses_a_bad_password_before_writing(tmp_path, stdin, message):
    from cpswap.core.model import Endpoint, VipSettings
    from cpswap.core.renderers.keepalived import render_keepalived_install

    vip = VipSettings(keepalived=True, interface="eth0", instance="VI_1", virtual_router_id=51, router_id="R",
                      priorities=(("cp1", 100),))
    script = render_keepalived_install(host=Host("h", "10.99.0.13"), slot="cp1", vip=vip,
                                       endpoint=Endpoint(host="10.99.0.100", port=6443))
    subprocess.run(["mkdir", "-p", "/etc/keepalived"], check=True)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f"mount -t tmpfs none /etc/keepalived; ( {script} ); echo rc=$?; ls /etc/keepalived"],
                          input=stdin, capture_output=True, text=True, timeout=30)
    assert "rc=2" in done.stdout and done.stdout.strip().endswith("rc=2"), done.stdout  # nothing written
    assert message in done.stderr
    if stdin:
        assert stdin not in done.stderr and stdin not in done.stdout


def test_keepalived_install_fails_when_keepalived_rejects_the_config(tmp_path):
    from cpswap.core.model import Endpoint, VipSettings
    from cpswap.core.renderers.keepalived import render_keepalived_install

    vip = VipSettings(keepalived=True, interface="eth0", instance="VI_1", virtual_router_id=51, router_id="R",
                      priorities=(("cp1", 100),))
    stub = _stub(tmp_path / "bin", "keepalived", 'case "$1" in --config-test) echo "bad config" >&2; exit 1;; esac; '
                                                 "echo started > /etc/keepalived/started")
    script = render_keepalived_install(host=Host("h", "10.99.0.13"), slot="cp1", vip=vip,
                                       endpoint=Endpoint(host="10.99.0.100", port=6443))
    subprocess.run(["mkdir", "-p", "/etc/keepalived"], check=True)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f"mount -t tmpfs none /etc/keepalived; mount -t tmpfs none /run; {stub}( {script} ); "
                           "echo rc=$?; ls /etc/keepalived"],
                          input="vrrpTst1\n", capture_output=True, text=True, timeout=30)
    assert "rc=1" in done.stdout and "started" not in done.stdout and "configured" not in done.stdout, done.stdout
    assert "keepalived --config-test rejected /etc/keepalived/keepalived.conf" in done.stderr


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="needs keepalived (Debian package keepalived)")
@pytest.mark.parametrize("existing, rc, message", [
    (None, "0", "already configured in /etc/keepalived/keepalived.conf: not rewriting it or restarting keepalived"),
    ("vrrp_instance OTHER {\n  virtual_router_id 7\n}\n", "1",
     "exists without vrrp_instance VI_1 / virtual_router_id 51: not cpswap's; nothing written"),
])
def test_keepalived_install_leaves_a_configured_member_alone(existing, rc, message):
    """Issue 13: on adoption the keepalived step rewrote keepalived.conf and restarted keepalived on
    every member, which demotes the MASTER. A second run of the step on a configured host (the
    adoption case; real keepalived running) must neither rewrite the file nor restart keepalived;
    a foreign keepalived.conf is never overwritten."""
    from cpswap.core.model import Endpoint, VipSettings
    from cpswap.core.renderers.keepalived import render_keepalived_install

    vip = VipSettings(keepalived=True, interface="eth0", instance="VI_1", virtual_router_id=51,
                      router_id="NGINX_MASTER", advert_int=1, priorities=(("cp1", 100), ("cp2", 90), ("cp3", 80)))
    script = render_keepalived_install(host=Host("k8s-master1", "10.99.0.11"), slot="cp1", vip=vip,
                                       endpoint=Endpoint(host="10.99.0.100", port=6443))
    first = (f"printf 'vrrpTst1' | ( {script} ) >/dev/null; echo first=$?; " if existing is None else
             f"printf '%s' {__import__('shlex').quote(existing)} > /etc/keepalived/keepalived.conf; ")
    body = (_vrrp_node("10.99.0.11") + first +
            "before=$(stat -c %i-%Y-%s /etc/keepalived/keepalived.conf); pids=$(pgrep -x keepalived | sort | tr '\\n' ,); "
            f"printf 'vrrpTst1' | ( {script} ); echo rc=$?; "
            "after=$(stat -c %i-%Y-%s /etc/keepalived/keepalived.conf); pids2=$(pgrep -x keepalived | sort | tr '\\n' ,); "
            "[ \"$before\" = \"$after\" ] && echo conf=untouched || echo conf=rewritten; "
            "[ \"$pids\" = \"$pids2\" ] && echo keepalived=untouched || echo keepalived=restarted; echo pids=$pids2")
    done = _in_private_node(body)
    out = done.stdout
    assert f"rc={rc}" in out and message in out + done.stderr, (out, done.stderr)
    assert "conf=untouched" in out and "keepalived=untouched" in out, out
    if existing is None:
        assert "first=0" in out and "pids=," not in out, out  # keepalived ran the whole time
