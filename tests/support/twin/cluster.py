"""The twin cluster: fake hosts with real TLS etcd laid out like k3s, the strict shims on their
PATH, and the kube emulator (with controllers) that the shims register Nodes in. Test-only.

``Twin.start(workdir, members=[...], spares=[...], seed_workloads=True)`` builds it;
``stack_config()`` and ``secrets()`` give what the Pulumi program needs to drive it;
``etcd_connection()`` reads etcd from the operator's side; ``close()`` stops everything.
"""
from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpswap.executors.etcd import Connection
from tests.support.etcd_cluster import digest, etcd_binary  # noqa: F401  (digest: used by twin tests)
from tests.support.kube_emulator import K3S_VERSION, Controllers, Emulator, ONECLOUD_POLICY, seed_004
from tests.support.pki import make_ca, make_cert
from tests.support.twin.hosts import PRIVATE_DIRS, Network

SHIMS = Path(__file__).parent / "shims"
OCBOOT_TOKEN = "mytoken@yunionio"
# the critical k3s server flags ocboot's config template gives every server (onecloud/roles/k3s/config/
# templates/config.yaml.j2 with lib/ocboot.py's defaults); a joining server must match them
OCBOOT_SERVER_CONFIG = {"flannel-backend": "none", "disable-network-policy": True, "cluster-cidr": "10.40.0.0/16",
                        "service-cidr": "10.96.0.0/12", "cluster-domain": "cluster.local"}
LAYOUTS = {  # (TLS dir under the host root, file names: ca, client cert, client key, server cert, server key; data)
    "k3s": ("var-lib-rancher/k3s/server/tls/etcd", ("server-ca.crt", "client.crt", "client.key", "server-client.crt",
                                                    "server-client.key"), "var-lib-rancher/k3s/server/db/etcd"),
    "rke2": ("var-lib-rancher/rke2/server/tls/etcd", ("server-ca.crt", "client.crt", "client.key",
                                                      "server-client.crt", "server-client.key"),
             "var-lib-rancher/rke2/server/db/etcd"),
    "kubeadm": ("etc-kubernetes/pki/etcd", ("ca.crt", "healthcheck-client.crt", "healthcheck-client.key",
                                            "server.crt", "server.key"), "var-lib-etcd"),
}
MOUNTS = PRIVATE_DIRS
K3S_NAMING = ("k3s", "rke2")  # layouts whose etcd members are named <hostname>-<8 hex> (k3s's embedded etcd)


def in_host(relative: str) -> str:
    """The path a host sees for a directory under its root (its private bind mounts)."""
    top, _, rest = relative.partition("/")
    return f"{MOUNTS[top]}/{rest}" if rest else MOUNTS[top]


def _install_shim(source: Path, target: Path) -> None:
    """Copy a shim with this interpreter in its shebang (the fake hosts share the filesystem)."""
    text = source.read_text()
    if text.startswith("#!/usr/bin/env python3"):
        text = f"#!{sys.executable}" + text[len("#!/usr/bin/env python3"):]
    target.write_text(text)
    target.chmod(0o755)


def _shim_module(name: str):
    """A rule module of the shims (they import each other by file name on the hosts)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"twin_shim_{name}", SHIMS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def etcdctl_binary() -> str:
    return str(Path(etcd_binary()).with_name("etcdctl"))


@dataclass
class Twin:
    workdir: Path
    net: Network
    emulator: Emulator
    controllers: Controllers
    ca: Any
    client_cert: Path
    client_key: Path
    members: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # host -> etcd member name
    layout: str = "k3s"
    k3s_server_config: dict[str, Any] = field(default_factory=dict)  # the survivors' critical k3s flags

    @classmethod
    def start(cls, workdir: Path, *, members: list[str], spares: list[str], seed_workloads: bool = True,
              layout: str = "k3s", k3s_server_config: dict[str, Any] | None = None) -> Twin:
        net = Network.create(workdir)
        twin = None
        try:
            (workdir / "bin").mkdir()
            for shim in SHIMS.iterdir():
                if shim.is_file():
                    _install_shim(shim, workdir / "bin" / shim.name)
            (workdir / "ocboot").mkdir()
            _install_shim(SHIMS / "ocboot.sh", workdir / "ocboot" / "ocboot.sh")
            (workdir / "ocboot" / "VERSION").write_text("v3.11.9\n")  # as in yunionio/ocboot's checkout root
            link = Path.home() / ".cache" / "cpswap-twin" / f"{net.index}-{os.getpid()}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(workdir / "ocboot")
            ca = make_ca(directory=workdir / "pki")
            client_cert, client_key = make_cert(ca=ca, directory=workdir / "pki", name="operator", sans=["operator"])
            emulator = Emulator(host=net.gateway).__enter__()
            twin = cls(workdir=workdir, net=net, emulator=emulator, controllers=Controllers(emulator), ca=ca,
                       client_cert=client_cert, client_key=client_key, layout=layout,
                       k3s_server_config=dict(k3s_server_config or {}))
            for name in [*members, *spares]:
                host = net.add_host(name)
                twin._lay_out_tls(name, host.ip)
            twin._write_config()
            twin._bootstrap_etcd(members)
            if seed_workloads:
                seed_004(emulator.core, emulator.apps, ips={n: net.hosts[n].ip for n in net.hosts},
                         dead_ready=True, with_new_node=False, export_size="1Gi", metrics_size="200M")
            else:
                from tests.support.kube_emulator import register_node
                for name in members:
                    register_node(emulator.core, name, net.hosts[name].ip)
            if layout == "kubeadm":  # what `kubeadm init --control-plane-endpoint VIP:6443` leaves behind
                from kubernetes import client as k8s_client
                emulator.core.create_namespaced_config_map("kube-system", k8s_client.V1ConfigMap(
                    metadata=k8s_client.V1ObjectMeta(name="kubeadm-config"),
                    data={"ClusterConfiguration": f"apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n"
                                                  f"kubernetesVersion: v1.31.2\n"
                                                  f"controlPlaneEndpoint: {net.vip}:6443\n"}))
            twin.controllers.__enter__()
            return twin
        except BaseException:
            if twin is not None:
                twin.close()
            else:
                net.close()
            raise

    def _lay_out_tls(self, name: str, ip: str) -> None:
        directory, files, _ = LAYOUTS[self.layout]
        tls = self.net.hosts[name].root / directory
        tls.mkdir(parents=True)
        cert, key = make_cert(ca=self.ca, directory=self.workdir / "pki", name=name,
                              sans=[ip, self.net.vip, "127.0.0.1", "localhost", name])
        for source, target in zip((self.ca.cert, self.client_cert, self.client_key, cert, key), files, strict=False):
            shutil.copy(source, tls / target)

    def add_rebuilt_host(self, name: str, *, ip: str) -> None:
        """A reinstalled machine that keeps a dead host's IP (seed 001), with a new name."""
        self.net.add_host(name, ip=ip)
        self._lay_out_tls(name, ip)
        self._write_config()

    def rebuild_host(self, name: str) -> None:
        """Seed 001's first-node case: a killed host reinstalled with the same name and IP (empty
        disks; the twin lays out its certificates, standing in for the installer's distribution)."""
        host = self.net.rebuild(name)
        self._lay_out_tls(name, host.ip)
        self._write_config()

    def _write_config(self) -> None:
        (self.workdir / "twin.json").write_text(json.dumps({
            "vip": self.net.vip, "kube_url": self.emulator.url, "k3s_token": OCBOOT_TOKEN,
            "k3s_version": K3S_VERSION, "etcd": etcd_binary(), "etcdctl": etcdctl_binary(),
            "ssh_key": str(self.net.client_key),
            "hosts": {n: h.ip for n, h in self.net.hosts.items() if h.alive}, "layout": self.layout,
            "k3s_server_config": self.k3s_server_config}))

    def _bootstrap_etcd(self, members: list[str]) -> None:
        directory, files, data = LAYOUTS[self.layout]
        self.names = {n: f"{n}-{pysecrets.token_hex(4)}" if self.layout in K3S_NAMING else n for n in members}
        initial = ",".join(f"{self.names[n]}=https://{self.net.hosts[n].ip}:2380" for n in members)
        tls = in_host(directory)
        ca, _, _, server_cert, server_key = (f"{tls}/{f}" for f in files)
        for name in members:
            ip = self.net.hosts[name].ip
            if self.layout == "kubeadm":
                manifests = self.net.hosts[name].root / "etc-kubernetes" / "manifests"
                manifests.mkdir(parents=True)
                (manifests / "etcd.yaml").write_text(f"# static pod manifest for etcd on {name}\n")
                (manifests.parent / "admin.conf").write_text(f"# admin kubeconfig of {name} (the twin's API)\n")
            command = (f"nohup setsid {etcd_binary()} --name {self.names[name]} "
                       f"--data-dir {in_host(data)} "
                       f"--listen-client-urls https://{ip}:2379,https://127.0.0.1:2379 --advertise-client-urls "
                       f"https://{ip}:2379 --listen-peer-urls https://{ip}:2380 --initial-advertise-peer-urls "
                       f"https://{ip}:2380 --initial-cluster {initial} --initial-cluster-state new "
                       f"--initial-cluster-token twin --logger=zap --log-level=error --client-cert-auth "
                       f"--trusted-ca-file={ca} --cert-file={server_cert} --key-file={server_key} "
                       f"--peer-client-cert-auth --peer-trusted-ca-file={ca} --peer-cert-file={server_cert} "
                       f"--peer-key-file={server_key} > {self.net.hosts[name].root}/etcd.log 2>&1 "
                       f"< /dev/null & echo $!")
            pid = int(self.net.run(name, command).stdout.strip())
            self.net.hosts[name].pids.append(pid)
            if self.layout == "k3s":
                self._k3s_service_running(name, pid)
                self._start_supervisor(name)
        self.members = list(members)
        from cpswap.executors.etcd import endpoint_health
        import time
        end = time.monotonic() + 30
        conn = Connection(endpoints=tuple(f"https://{self.net.hosts[n].ip}:2379" for n in members),
                          ca=str(self.ca.cert), cert=str(self.client_cert), key=str(self.client_key), timeout=2)
        while not all(endpoint_health(conn, e).healthy for e in conn.endpoints):
            if time.monotonic() > end:
                raise RuntimeError("twin etcd did not become healthy in 30 s")
            time.sleep(0.1)

    def _start_supervisor(self, name: str) -> None:
        """The k3s server's supervisor endpoints on <host>:6443 (shims/_supervisor.py: /cacerts and the
        token-authenticated /v1-k3s/config a joining server reads), answering the critical
        configuration the survivors run with (``k3s_server_config``). Settings in a private file: the
        token never reaches an argv."""
        directory, files, _ = LAYOUTS["k3s"]
        tls = in_host(directory)
        settings = self.net.hosts[name].root / "supervisor.json"
        settings.touch(mode=0o600)
        settings.write_text(json.dumps({
            "address": "0.0.0.0", "port": 6443, "ca": f"{tls}/{files[0]}", "cert": f"{tls}/{files[3]}",
            "key": f"{tls}/{files[4]}", "control": _shim_module("_k3s").control(self.k3s_server_config),
            "token": OCBOOT_TOKEN}))
        command = (f"nohup setsid {sys.executable} {self.workdir}/bin/_supervisor.py --settings {settings} "
                   f"> {self.net.hosts[name].root}/supervisor.log 2>&1 < /dev/null & echo $!")
        self.net.hosts[name].pids.append(int(self.net.run(name, command).stdout.strip()))

    def _k3s_service_running(self, name: str, pid: int) -> None:
        """What an installed K3s server looks like to the service manager shim: an enabled, active
        k3s.service (its main PID stands for k3s, which runs etcd in-process)."""
        import hashlib
        flags = " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in self.k3s_server_config.items())
        text = (f"[Unit]\nDescription=Lightweight Kubernetes\n[Service]\nType=notify\n"
                f"ExecStart={self.workdir}/bin/k3s server {flags}\n")
        (self.net.hosts[name].root / "etc-systemd-system" / "k3s.service").write_text(text)
        state = self.workdir / name / "systemd"
        state.mkdir(parents=True, exist_ok=True)
        (state / "k3s.service.json").write_text(json.dumps({
            "active": "active", "pid": pid, "enabled": True, "loaded": text,
            "digest": hashlib.sha256(text.encode()).hexdigest()}))

    def etcd_connection(self, *, timeout: float = 2.0) -> Connection:
        """The live hosts that run etcd (those whose k3s data dir holds a member)."""
        data = LAYOUTS[self.layout][2]
        alive = [h for h in self.net.hosts.values() if h.alive and (h.root / data / "member").exists()]
        return Connection(endpoints=tuple(f"https://{h.ip}:2379" for h in alive), ca=str(self.ca.cert),
                          cert=str(self.client_cert), key=str(self.client_key), timeout=timeout)

    def kill(self, name: str) -> None:
        from tests.support.kube_emulator import set_node_ready
        self.net.kill(name)
        set_node_ready(self.emulator.core, name, False)  # the node controller marks it NotReady

    def stack_config(self, *, members: dict[str, str], distribution: str = "ocboot",
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The program's config for this twin: ``members`` maps slots to host names (a value may also
        be a member dict, e.g. with ``rebuild``); ``extra`` adds top-level keys (``kubean``,
        ``openshift``, ``vip`` ...)."""
        ocboot_dir = str(self.ocboot_link().relative_to(Path.home()))
        config: dict[str, Any] = {
            "distribution": distribution, "controlPlaneEndpoint": f"{self.net.vip}:6443",
            "members": {slot: host if isinstance(host, dict) else {
                "name": host, "ip": self.net.hosts[host].ip,
                # ocboot's <nic>/<bridge>/<ip>: each slot's NodePatch annotates its Node with it
                **({"hostNetworks": f"eth0/br0/{self.net.hosts[host].ip}"} if distribution == "ocboot" else {})}
                for slot, host in members.items()},
            "ssh": {"user": "root", "port": 22}, "etcd": {"preset": "env", "snapshotDir": ".cpswap/snapshots"},
            "pvcRecovery": ONECLOUD_POLICY,
        }
        if distribution == "ocboot":
            config["ocboot"] = {"version": "v3.11.9", "dbHost": self.net.gateway, "workdir": ocboot_dir}
        if distribution == "kubeadm":
            config["kubeadm"] = {"apiserverBindPort": 6443}
        return {**config, **(extra or {})}

    def secrets(self) -> dict[str, str]:
        return {"sshPrivateKey": self.net.client_key.read_text(), "kubeconfig": self.emulator.kubeconfig_text,
                "etcdCaCert": Path(self.ca.cert).read_text(), "etcdClientCert": self.client_cert.read_text(),
                "etcdClientKey": self.client_key.read_text(), "ocbootDbPassword": "twin-db-password",
                "k3sToken": OCBOOT_TOKEN, "rke2Token": OCBOOT_TOKEN,
                # the twin has one API server: it plays kubean's global cluster as well as the managed one
                "globalKubeconfig": self.emulator.kubeconfig_text}

    def ocboot_link(self) -> Path:
        """``ocboot.workdir`` must be relative without '..' (the model), and SSH sessions start in root's
        home: a per-twin symlink there leads to the twin's ocboot checkout (removed on close)."""
        return Path.home() / ".cache" / "cpswap-twin" / f"{self.net.index}-{os.getpid()}"

    def close(self) -> None:
        self.ocboot_link().unlink(missing_ok=True)
        try:
            if self.controllers._thread.is_alive():
                self.controllers.__exit__(None, None, None)
        finally:
            try:
                self.emulator.__exit__(None, None, None)
            finally:
                self.net.close()


def run_quiet(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)
