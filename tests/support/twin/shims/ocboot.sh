#!/usr/bin/env python3
"""Strict ocboot.sh shim: `run.py <stack> <config>` or `install <config>`, with the config checked
against ocboot's loader rules (notes/ocboot_cli.md). Joins every master_nodes host that is not a
member yet by running `k3s server` on it over SSH, as ocboot's K3s role does. Test-only."""
import os
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.join(os.environ["CPSWAP_TWIN"], "bin"))
import _twin  # noqa: E402

PRIMARY_KEYS = {"hostname", "host", "use_local", "user", "port", "controlplane_host", "controlplane_port", "db_host",
                "db_user", "db_password", "db_port", "onecloud_version", "operator_version", "ip_type", "as_host",
                "high_availability", "enable_minio", "image_repository", "host_networks", "node_ip", "restore_mode",
                "use_ee", "ha_using_local_registry", "insecure_registries", "region", "zone", "high_availability_vip"}
MASTER_KEYS = {"hosts", "controlplane_host", "controlplane_port", "as_controller", "as_host", "high_availability",
               "controlplane_ssh_port", "join_token", "join_certificate_key", "ntpd_server"}
HOST_KEYS = {"hostname", "host", "user", "port", "host_networks"}
args = sys.argv[1:]
if len(args) == 3 and args[0] == "run.py" and args[1] in ("full", "cmp", "virt", "light-virt", "ai"):
    path = args[2]
elif len(args) == 2 and args[0] == "install":
    path = args[1]
else:
    _twin.fail("ocboot.sh", f"unsupported invocation {args}; use `run.py <stack> <config.yml>` or `install <config.yml>`")
config = yaml.safe_load(open(path))
if "mariadb_node" in config and "mariadb_ha_nodes" in config:
    _twin.fail("ocboot.sh", "mariadb_node and mariadb_ha_nodes cannot both be set")
primary, masters = config.get("primary_master_node") or {}, config.get("master_nodes") or {}
for section, keys, allowed in (("primary_master_node", primary, PRIMARY_KEYS), ("master_nodes", masters, MASTER_KEYS)):
    unknown = sorted(set(keys) - allowed)
    if unknown:
        _twin.fail("ocboot.sh", f"{section}: unknown keys {unknown}")
if not (primary.get("hostname") or primary.get("host") or primary.get("use_local")):
    _twin.fail("ocboot.sh", "ConfigNotFoundException: primary_master_node.hostname")
for key in ("controlplane_host", "db_host", "db_password", "onecloud_version"):
    if not primary.get(key):
        _twin.fail("ocboot.sh", f"ConfigNotFoundException: primary_master_node.{key}")
for key in ("controlplane_host", "hosts"):
    if not masters.get(key):
        _twin.fail("ocboot.sh", f"ConfigNotFoundException: master_nodes.{key}")
for entry in masters["hosts"]:
    if set(entry) - HOST_KEYS or not (entry.get("hostname") or entry.get("host")):
        _twin.fail("ocboot.sh", f"master_nodes.hosts entry {entry} invalid")
primary_address = "127.0.0.1" if primary.get("use_local") else (primary.get("hostname") or primary.get("host"))
alive = _twin.etcdctl("endpoint", "health", endpoints=[f"https://{primary_address}:2379"], check=False)
if alive.returncode != 0:
    _twin.fail("ocboot.sh", f"primary_master_node {primary_address} is not a healthy control-plane node: "
                            f"{alive.stderr.strip()[:200]}", 1)
_twin.fail_once("ocboot.sh")
members = _twin.etcdctl("member", "list", endpoints=[f"https://{primary_address}:2379"]).stdout
server = f"https://{masters['controlplane_host']}:{masters.get('controlplane_port', 6443)}"
for entry in masters["hosts"]:
    address = entry.get("hostname") or entry.get("host")
    if f"https://{address}:2380" in members:
        print(f"{address}: already a control-plane member")
        continue
    ssh = ["ssh", "-i", _twin.CONFIG["ssh_key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"root@{address}"]
    name = subprocess.run([*ssh, "hostname"], capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    result = subprocess.run([*ssh, f"k3s server --data-dir /var/lib/rancher/k3s --server {server} "
                                   f"--token mytoken@yunionio --node-name {name} --node-ip {address} "
                                   f"--tls-san {masters['controlplane_host']}"],
                            capture_output=True, text=True, timeout=180)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        _twin.fail("ocboot.sh", f"joining {address} failed", result.returncode)
print("ocboot: control-plane nodes joined")
