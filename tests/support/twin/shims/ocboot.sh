#!/usr/bin/env python3
"""ocboot.sh shim: what ocboot's loader and its k3s roles do with a control-plane join config. Test-only.

Follows yunionio/ocboot f70e31bb (rules and citations in _ocboot.py; docs/CONFORMANCE.md "ocboot"):
1. `run.py <stack> <config>` or `install <config>` (else ocboot.sh/argparse refuse, rc 2).
2. The loader (lib/ocboot.py): a missing required key is ConfigNotFoundException. `install`
   logs it and exits 0 (lib/install.py do_install catches it; ocboot.py sys.exit(None)); `run.py`
   lets it escape (rc 1).
3. It writes host_inventory.yml (db_password included) and oc_vars.yml into the work dir.
4. The play aborts on use_local (Alpine container) and on a primary without node_ip (rc 2).
5. Every listed host is reached over SSH with the VIP holder's own root key (ocboot.sh mounts
   $HOME/.ssh into its container; no key file in the inventory), unreachable: rc 4. The roles are re-applied to each:
   the k3s config template; the primary gets k3s-cluster-init.service when master_nodes has more
   than one host; each master_nodes host gets k3s-ha.service and `systemctl enable` + `start`
   (ansible's systemd `state: started` does not restart a running unit; 5 tries, 5 s apart),
   only when master_nodes has more than one host; then it waits for len(master_nodes) + 1
   control-plane Nodes (20 tries, 10 s apart). With one host nothing joins and the play succeeds.
Not modelled: the other roles (prereq, airgap binary install: the units point at the twin's k3s
shim), keepalived's static pod, the cloud setup, and buildah itself.
"""
import json
import os
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.join(os.environ["CPSWAP_TWIN"], "bin"))
import _ocboot  # noqa: E402
import _twin  # noqa: E402

TOKEN = "mytoken@yunionio"  # lib/ocboot.py VAL_K3S_TOKEN
K3S = str(_twin.TWIN / "bin" / "k3s")  # the airgap role installs /usr/local/bin/k3s; the twin's shim stands in


def ssh(address: str, command: str, *, stdin: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """As ansible reaches each listed host from ocboot's container: the running user's own keys
    (ocboot.sh L138 mounts $HOME/.ssh; lib/ocboot.py Node.ansible_host_vars sets no key file)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"root@{address}",
            command]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


def config_yaml(host: "_ocboot.Host", *, ha_vip: str) -> str:
    """onecloud/roles/k3s/config/templates/config.yaml.j2 for an IPv4 server (is_k3s_server: True),
    with lib/ocboot.py's defaults (pod 10.40.0.0/16, service 10.96.0.0/12, cluster.local)."""
    return yaml.safe_dump({
        "node-ip": host.node_ip, "pause-image": "registry.cn-beijing.aliyuncs.com/yunionio/pause:3.1",
        "tls-san": ha_vip, "flannel-backend": "none", "disable-network-policy": True,
        "cluster-cidr": "10.40.0.0/16", "service-cidr": "10.96.0.0/12", "cluster-domain": "cluster.local",
        "default-local-storage-path": "/opt/k3s/storage",
        "kube-apiserver-arg": ["enable-admission-plugins=DefaultTolerationSeconds"],
        "node-label": ["onecloud.yunion.io/controller=enable"],
        "kubelet-arg": ["pod-manifest-path=/var/lib/rancher/k3s/agent/pod-manifests"],
        "kube-proxy-arg": ["proxy-mode=ipvs"]}, sort_keys=False)


def unit(exec_start: str) -> str:
    """k3s-ha.service.j2 / k3s-cluster-init.service.j2 (the [Service] part the twin's systemctl reads)."""
    return ("[Unit]\nDescription=Lightweight Kubernetes\n[Install]\nWantedBy=multi-user.target\n[Service]\n"
            f"Type=notify\nKillMode=process\nTimeoutStartSec=0\nRestart=always\nRestartSec=5s\nExecStart={exec_start}\n")


def apply(host: "_ocboot.Host", files: dict[str, str], *, start: bool) -> None:
    for path, text in files.items():
        result = ssh(host.address, f"mkdir -p {os.path.dirname(path)} && cat > {path}", stdin=text)
        if result.returncode != 0:
            _twin.fail("ocboot.sh", f"fatal: [{host.address}]: writing {path} failed: {result.stderr.strip()}", 2)
    if not start:
        return
    for attempt in range(5):  # "Enable and check K3s service": retries 5, delay 5, until succeeded
        result = ssh(host.address, "systemctl daemon-reload && systemctl enable k3s && systemctl start k3s")
        sys.stdout.write(result.stdout)
        if result.returncode == 0:
            return
        print(f"FAILED - RETRYING: [{host.address}]: Enable and check K3s service ({4 - attempt} retries left): "
              f"{result.stderr.strip()[-300:]}", file=sys.stderr)
        time.sleep(5)
    _twin.fail("ocboot.sh", f"fatal: [{host.address}]: Enable and check K3s service failed", 2)


def control_plane_nodes() -> list[str]:
    nodes = _twin.kube().list_node(label_selector="node-role.kubernetes.io/control-plane=true").items
    return [n.metadata.name for n in nodes]


args = sys.argv[1:]
try:
    path = _ocboot.invocation(args)
except _ocboot.OcbootError as exc:
    _twin.fail("ocboot.sh", str(exc), 2)
config = yaml.safe_load(open(path))
try:
    inventory = _ocboot.load(config)
except _ocboot.OcbootError as exc:
    if args[0] == "install":  # do_install logs ConfigNotFoundException and returns None: exit status 0
        print(f"ERROR {exc}", file=sys.stderr)
        sys.exit(0)
    _twin.fail("ocboot.sh", f"Traceback (most recent call last): ... {exc}", 1)
hosts = (inventory.primary, *inventory.masters)
with open(_twin.TWIN / "ocboot-configs.jsonl", "a") as handle:  # for the tests: what ocboot was given
    handle.write(json.dumps({"argv": args, "config": config}) + "\n")
with open("host_inventory.yml", "w") as handle:  # OcbootConfig.generate_inventory_file
    yaml.safe_dump({"all": {"children": {
        "primary_master_node": {"hosts": {inventory.primary.address: {"db_password": inventory.db_password}}},
        "master_nodes": {"hosts": {h.address: {} for h in inventory.masters}}}}}, handle)
with open("oc_vars.yml", "w") as handle:  # lib/cmd.py run_ansible_playbook
    yaml.safe_dump({"token": TOKEN, "onecloud_version": config["primary_master_node"]["onecloud_version"]}, handle)
try:
    _ocboot.check_play(inventory)
except _ocboot.OcbootError as exc:
    _twin.fail("ocboot.sh", f"fatal: {exc}", 2)
for host in hosts:
    if ssh(host.address, "true", timeout=30).returncode != 0:
        _twin.fail("ocboot.sh", f"fatal: [{host.address}]: UNREACHABLE! ssh: connect to host {host.address}", 4)
_twin.fail_once("ocboot.sh")
server = f"https://{inventory.controlplane_host}:{inventory.controlplane_port}"
joins = _ocboot.joins(inventory)
primary_files = {"/etc/rancher/k3s/config.yaml": config_yaml(inventory.primary, ha_vip=inventory.controlplane_host)}
if joins:  # 'Copy K3s service file [HA]' on the primary: k3s-cluster-init.service.j2
    primary_files["/etc/systemd/system/k3s.service"] = unit(f"{K3S} server --cluster-init --data-dir "
                                                            f"/var/lib/rancher/k3s --token {TOKEN}")
elif not inventory.masters:  # 'Copy K3s service file [Single]': no master_nodes group at all
    primary_files["/etc/systemd/system/k3s.service"] = unit(f"{K3S} server --data-dir /var/lib/rancher/k3s")
apply(inventory.primary, primary_files, start=True)
for host in inventory.masters:
    files = {"/etc/rancher/k3s/config.yaml": config_yaml(host, ha_vip=inventory.controlplane_host)}
    if joins:  # 'Start other server if any and verify status': k3s-ha.service.j2
        files["/etc/systemd/system/k3s.service"] = unit(f"{K3S} server --data-dir /var/lib/rancher/k3s "
                                                        f"--server {server} --token {TOKEN}")
    apply(host, files, start=joins)
if not joins:
    print(f"skipping: Start other server if any and verify status (master_nodes has {len(inventory.masters)} "
          f"host; the block needs more than 1) [{_ocboot.UPSTREAM} "
          f"onecloud/roles/k3s/k3s_server/tasks/main.yml L132-135]")
else:
    want = _ocboot.expected_servers(inventory)
    for attempt in range(200):  # 'Verify that all server nodes joined': 20 retries x 10 s
        found = control_plane_nodes()
        if len(found) == want:
            break
        time.sleep(1)
    else:
        _twin.fail("ocboot.sh", f"fatal: Verify that all server nodes joined: {len(found)} control-plane Nodes "
                                f"{sorted(found)}, want len(master_nodes) + 1 = {want}", 2)
print(f"PLAY RECAP: {len(hosts)} hosts ok, failed=0")
