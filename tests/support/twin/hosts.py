"""Fake hosts for the twin: network namespaces on a bridge, each with its own address, hostname
(UTS namespace), private /var/lib/rancher, /etc/rancher, /etc/kubernetes, /etc/systemd/system, /var/lib/etcd,
/var/lib/etcd-backup and /root/.ssh (mount namespace bind mounts; /root/.ssh holds the hosts' own root
key, ``root_key``, which every host authorizes next to the operator's ``client_key``), a real sshd
taking key logins, and the service manager shim (``shims/systemctl``) on PATH. Test-only; needs root and iproute2.

``Network.create(workdir)`` picks a free 10.250.X.0/24 and bridge; ``add_host(name)`` starts one;
``run(host, cmd)`` runs a command over real SSH; ``kill(host)`` SIGKILLs the host's processes by
PID and cuts its link; ``rebuild(host)`` brings a killed host back as a reinstalled machine (same
name and address, empty disks, new host key; the old namespace is kept until ``close()``); ``move_vip`` plays keepalived; ``close()`` stops every PID and removes the
namespaces, veths and the bridge, always.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PRIVATE_DIRS = {"var-lib-rancher": "/var/lib/rancher", "etc-kubernetes": "/etc/kubernetes",
                "var-lib-etcd": "/var/lib/etcd", "var-lib-etcd-backup": "/var/lib/etcd-backup",
                "etc-rancher": "/etc/rancher", "etc-systemd-system": "/etc/systemd/system",
                "root-ssh": "/root/.ssh"}  # the host root's own SSH identity (``root_key``), as ocboot uses it
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def available() -> str | None:
    """Why the twin cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("/usr/sbin/sshd", "/usr/bin/ssh", "/usr/sbin/ip", "/usr/bin/unshare"):
        if not Path(tool).exists() and not Path(tool.replace("/usr/sbin", "/sbin")).exists():
            return f"{tool} missing"
    probe = sh("ip", "netns", "list", check=False)
    return None if probe.returncode == 0 else f"ip netns unavailable: {probe.stderr.strip()}"


@dataclass
class Host:
    name: str
    ip: str
    netns: str
    veth: str
    root: Path
    sshd: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)  # processes started on this host (etcd ...)
    alive: bool = True

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"

    def all_pids(self) -> list[int]:
        """PIDs started on this host: by the twin, and by shims (recorded in <root>/pids)."""
        recorded = self.root / "pids"
        extra = [int(p) for p in recorded.read_text().split()] if recorded.exists() else []
        return [*self.pids, *extra]

    def connections(self) -> int:
        """How many SSH connections this host's sshd has accepted."""
        return self.sshd_log.read_text().count("Accepted publickey") if self.sshd_log.exists() else 0


@dataclass
class Network:
    workdir: Path
    index: int
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)
    vip_holder: str | None = None
    retired: list[Host] = field(default_factory=list)  # hosts replaced by a rebuild; cleaned up by close()
    started: int = 0  # hosts ever started: the next one's namespace and default address index

    @classmethod
    def create(cls, workdir: Path) -> Network:
        workdir.mkdir(parents=True, exist_ok=True)
        used = sh("ip", "-o", "link", "show", check=False).stdout
        for index in range(10, 250):
            bridge = f"cpsb{index}"
            # claimed by creating it: parallel test workers may race for the same free index
            if f" {bridge}:" not in used and sh("ip", "link", "add", bridge, "type", "bridge",
                                                 check=False).returncode == 0:
                break
        else:
            raise RuntimeError("no free twin bridge index")
        net = cls(workdir=workdir, index=index, bridge=bridge)
        sh("ip", "addr", "add", f"{net.gateway}/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        key = workdir / "client_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        # the hosts' own root identity (each host's ~/.ssh/id_ed25519): what ocboot's ansible uses from the
        # VIP holder (ocboot.sh mounts $HOME/.ssh into its container); the operator's key is client_key
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "root_key"))
        (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text()
                                                 + (workdir / "root_key.pub").read_text())
        for mount_point in PRIVATE_DIRS.values():
            Path(mount_point).mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        return net

    @property
    def gateway(self) -> str:
        return f"10.250.{self.index}.254"

    @property
    def vip(self) -> str:
        return f"10.250.{self.index}.100"

    @property
    def client_key(self) -> Path:
        return self.workdir / "client_key"

    def add_host(self, name: str, *, env: dict[str, str] | None = None, ip: str | None = None) -> Host:
        """Start a host; ``ip`` reuses a dead host's address (a rebuild that keeps its IP)."""
        self.started += 1
        i = self.started
        if ip is not None and any(h.alive and h.ip == ip for h in self.hosts.values()):
            raise ValueError(f"{ip} is still held by a live host")
        if name in self.hosts and self.hosts[name].alive:
            raise ValueError(f"host {name} exists and is alive")
        root = self.workdir / name if name not in self.hosts else self.workdir / f"{name}.{i}"
        host = Host(name=name, ip=ip or f"10.250.{self.index}.{i}", netns=f"cps{self.index}h{i}",
                    veth=f"cps{self.index}v{i}", root=root)
        for sub in (*PRIVATE_DIRS, "ssh"):
            (host.root / sub).mkdir(parents=True, exist_ok=True)
        sh("ip", "netns", "add", host.netns)
        sh("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        sh("ip", "link", "set", host.veth, "master", self.bridge, "up")
        sh("ip", "-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", host.netns, "link", "set", "lo", "up")
        # each host its own authorized_keys (a copy of the network's), so a test can make one host refuse the key
        shutil.copy(self.workdir / "authorized_keys", host.root / "ssh" / "authorized_keys")
        identity = host.root / "root-ssh" / "id_ed25519"
        shutil.copy(self.workdir / "root_key", identity)
        identity.chmod(0o600)
        hostkey = host.root / "ssh" / "host_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
        setenv = " ".join(f"{k}={v}" for k, v in {"PATH": f"{self.workdir}/bin:/usr/local/bin:/usr/bin:/bin:"
                                                          f"/usr/sbin:/sbin", "CPSWAP_TWIN": str(self.workdir),
                                                  "CPSWAP_TWIN_HOST": name, **(env or {})}.items())
        config = host.root / "ssh" / "sshd_config"
        config.write_text(f"ListenAddress 0.0.0.0\nHostKey {hostkey}\nPidFile {host.root}/ssh/sshd.pid\n"
                          f"AuthorizedKeysFile {host.root}/ssh/authorized_keys\nPermitRootLogin prohibit-password\n"
                          f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                          f"LogLevel VERBOSE\nSetEnv {setenv}\nMaxStartups 100\n")
        mounts = "".join(f"mount --bind {host.root}/{sub} {target} && " for sub, target in PRIVATE_DIRS.items())
        script = f"hostname {name} && {mounts}exec /usr/sbin/sshd -D -f {config} -E {host.sshd_log}"
        host.sshd = subprocess.Popen(["ip", "netns", "exec", host.netns, "unshare", "--uts", "--mount",
                                      "--propagation", "private", "sh", "-c", script],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if name in self.hosts:
            self.retired.append(self.hosts[name])
        self.hosts[name] = host
        sh("ip", "neigh", "flush", "to", host.ip, check=False)  # a reused address has a new MAC
        self._wait_ssh(host)
        if self.vip_holder is None:
            self.move_vip(name)
        return host

    def rebuild(self, name: str) -> Host:
        """A killed host reinstalled: same name and address, empty disks, a new host key."""
        old = self.hosts[name]
        if old.alive:
            raise ValueError(f"host {name} is alive: kill it before rebuilding it")
        old.pids.clear()  # killed already: never signalled again (PIDs get reused)
        (old.root / "pids").unlink(missing_ok=True)
        return self.add_host(name, ip=old.ip)

    def _wait_ssh(self, host: Host, deadline_s: float = 15) -> None:
        end = time.monotonic() + deadline_s
        while True:
            result = self.run(host.name, "hostname", check=False, timeout=5)
            if result.returncode == 0 and result.stdout.strip() == host.name:
                return
            if time.monotonic() > end:
                raise RuntimeError(f"sshd on {host.name} ({host.ip}) not answering: {result.stderr.strip()}")
            time.sleep(0.1)

    def ssh_argv(self, address: str, command: str) -> list[str]:
        return ["ssh", "-i", str(self.client_key), *SSH_OPTS, f"root@{address}", command]

    def run(self, name: str, command: str, *, check: bool = True, timeout: float = 60,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(self.ssh_argv(self.hosts[name].ip, command), input=stdin, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{name}: `{command[:120]}` failed rc={result.returncode}: {result.stderr[-500:]}")
        return result

    def move_vip(self, to: str) -> None:
        """keepalived's part: the VIP lives on one live host."""
        if self.vip_holder and self.hosts[self.vip_holder].alive:
            sh("ip", "-n", self.hosts[self.vip_holder].netns, "addr", "del", f"{self.vip}/32", "dev", "eth0",
               check=False)
        sh("ip", "-n", self.hosts[to].netns, "addr", "add", f"{self.vip}/32", "dev", "eth0")
        self.vip_holder = to
        # keepalived announces the move with gratuitous ARP; flushing the neighbour caches does the same here
        sh("ip", "neigh", "flush", "to", self.vip, check=False)
        for host in self.hosts.values():
            if host.alive:
                sh("ip", "-n", host.netns, "neigh", "flush", "to", self.vip, check=False)

    def kill(self, name: str) -> None:
        """Hard kill: SIGKILL the host's processes and cut its link; the VIP moves on."""
        host = self.hosts[name]
        for pid in host.all_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if host.sshd and host.sshd.poll() is None:
            os.killpg(host.sshd.pid, signal.SIGKILL)
            host.sshd.wait(timeout=10)
        sh("ip", "link", "set", host.veth, "down")
        host.alive = False
        if self.vip_holder == name:
            sh("ip", "-n", host.netns, "addr", "del", f"{self.vip}/32", "dev", "eth0", check=False)
            self.vip_holder = None
            survivor = next((h for h in self.hosts.values() if h.alive), None)
            if survivor:
                self.move_vip(survivor.name)

    def close(self) -> None:
        for host in [*self.retired, *self.hosts.values()]:
            for pid in host.all_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if host.sshd and host.sshd.poll() is None:
                os.killpg(host.sshd.pid, signal.SIGKILL)
                host.sshd.wait(timeout=10)
            sh("ip", "netns", "del", host.netns, check=False)
            sh("ip", "link", "del", host.veth, check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        links = sh("ip", "-o", "link", "show", check=False).stdout
        spaces = sh("ip", "netns", "list", check=False).stdout
        every = [*self.retired, *self.hosts.values()]
        found = [h.netns for h in every if h.netns in spaces]
        found += [h.veth for h in every if f" {h.veth}@" in links or f" {h.veth}:" in links]
        found += [self.bridge] if f" {self.bridge}:" in links else []
        return found
