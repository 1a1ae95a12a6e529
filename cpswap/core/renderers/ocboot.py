"""Renderers for an ocboot (Cloudpods on K3s) control-plane join. Pure.

ocboot adds control-plane nodes through the ``master_nodes`` section of an install config run
from an existing primary (notes/ocboot_cli.md; seed 004 step 4; docs/CONFORMANCE.md "ocboot").
What the real ocboot accepts (yunionio/ocboot f70e31bb) fixes the shape:

- ``primary_master_node`` is a live survivor by address (``hostname``, ``node_ip``,
  ``host_networks``, ``use_local: false``). ``use_local: true`` would mean "the ocboot container"
  (``ocboot.sh`` runs everything under ``buildah run``), not the survivor.
- ``master_nodes.hosts`` lists the new host and every other survivor: the role that writes and
  starts ``k3s-ha.service`` runs only when ``master_nodes`` has more than one host
  (onecloud/roles/k3s/k3s_server/tasks/main.yml), and then waits for ``len(master_nodes) + 1``
  control-plane Nodes.

The survivors are not in the slot's inputs (a swap never changes another slot's inputs), so the
config is completed at run time on the survivor holding the VIP: ``render_ocboot_template`` is
what is known at preview (the joining host and stack settings, DB password included, sent on
stdin as a secret), and ``COMPLETE_CONFIG_PY`` (run there with ``python3``, which ansible needs
on every host ocboot manages) reads ``kubectl get nodes -o json``: it stops with "nothing to do"
when the joining host is a Node already (adoption), else picks the Ready control-plane Node whose
InternalIP is local as primary and lists the other Ready control-plane Nodes after the new host,
with the ``hostNetworks`` each slot's own NodePatch annotated on its Node
(``cpswap.io/host-networks``). A kubectl failure fails the step: it never reads as "not a Node".
ocboot writes ``host_inventory.yml`` (with the DB password) and ``oc_vars.yml`` into its work
dir; the command removes them, and its own config, after the run. ``./ocboot.sh install`` exits 0
when its loader rejects the config (lib/install.py do_install logs the error), so a join that
ends without the host as a Node fails the step.
"""
from __future__ import annotations

import json
from shlex import quote
from typing import Any

from cpswap.core.model import Endpoint, Member, OcbootSettings

CONFIG_FILE = ".cpswap-join.yml"
HOST_NETWORKS_ANNOTATION = "cpswap.io/host-networks"
LEFTOVERS = ("host_inventory.yml", "oc_vars.yml")  # ocboot writes them into its work dir (lib/ocboot.py, lib/cmd.py)
ADOPTED_EXIT = 3  # COMPLETE_CONFIG_PY: the joining host is a Node already

# Runs on the VIP holder: stdin = `kubectl get nodes -o json`, then the template (JSON); argv[1] =
# the config file to write (only when a join is needed). Exit 3: the host is a Node already.
COMPLETE_CONFIG_PY = r'''
import json, socket, sys
raw = sys.stdin.read()
nodes, end = json.JSONDecoder().raw_decode(raw)
config = json.loads(raw[end:])
join = config.pop("cpswap")
def fail(msg):
    sys.stderr.write("ocboot join of %s (%s): %s\n" % (join["node"], join["ip"], msg))
    sys.exit(1)
if not isinstance(nodes, dict) or not isinstance(nodes.get("items"), list):
    fail("kubectl get nodes -o json did not return a List")
def address(n):
    return next((a.get("address") for a in n.get("status", {}).get("addresses") or [] if a.get("type") == "InternalIP"), None)
def ready(n):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in n.get("status", {}).get("conditions") or [])
def control_plane(n):
    labels = n.get("metadata", {}).get("labels") or {}
    return labels.get("node-role.kubernetes.io/control-plane", labels.get("node-role.kubernetes.io/master")) in ("true", "")
def local(ip):
    s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((ip, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()
items = nodes["items"]
names = [n.get("metadata", {}).get("name") for n in items]
if join["node"] in names:
    print("%s: already a node of this cluster; nothing to join" % join["node"])
    sys.exit(3)
if any(address(n) == join["ip"] for n in items):
    fail("Node %s already has InternalIP %s" % (next(n["metadata"]["name"] for n in items if address(n) == join["ip"]), join["ip"]))
survivors = sorted(((n["metadata"]["name"], address(n), (n["metadata"].get("annotations") or {}).get(join["annotation"]))
                    for n in items if control_plane(n) and ready(n) and address(n)), key=lambda s: s[0])
here = [s for s in survivors if local(s[1])]
if len(here) != 1:
    fail("this host must be exactly one Ready control-plane Node (the VIP holder, as ocboot's primary); "
         "local ones: %s of Ready control-plane Nodes %s" % ([s[0] for s in here], [s[0] for s in survivors]))
primary, others = here[0], [s for s in survivors if s is not here[0]]
def entry(s):
    e = {"user": join["user"], "hostname": s[1]}
    if s[2]:
        e["host_networks"] = s[2]
    return e
hosts = config["master_nodes"]["hosts"] + [entry(s) for s in others]
if len(hosts) < 2:
    fail("ocboot joins a server only when master_nodes lists at least 2 hosts (k3s_server role, "
         "'Start other server if any'); found %d: the new host and survivors %s" % (len(hosts), [s[0] for s in others]))
node = config["primary_master_node"]
node.update(hostname=primary[1], use_local=False, node_ip=primary[1])
if primary[2]:
    node["host_networks"] = primary[2]
config["master_nodes"]["hosts"] = hosts
with open(sys.argv[1], "w") as f:
    json.dump(config, f, indent=1)
print("ocboot: primary_master_node %s (%s); master_nodes %s" % (primary[0], primary[1], [h["hostname"] for h in hosts]))
'''.strip()


def render_ocboot_template(*, joining: Member, endpoint: Endpoint, ocboot: OcbootSettings,
                           db_password: str, user: str = "root") -> dict[str, Any]:
    """The join config as known at preview: everything but the survivors (filled in on the VIP holder)."""
    primary: dict[str, Any] = {
        "user": user,
        "onecloud_version": ocboot.version,
        "db_host": ocboot.db_host,
        "db_user": ocboot.db_user,
        "db_password": db_password,
        "db_port": str(ocboot.db_port),
        "image_repository": ocboot.image_repository,
        "ha_using_local_registry": False,
        "controlplane_host": endpoint.host,
        "controlplane_port": str(endpoint.port),
        "as_host": ocboot.as_host,
        "high_availability": ocboot.high_availability,
        "use_ee": False,
        "enable_minio": ocboot.enable_minio,
    }
    new_host: dict[str, Any] = {"user": user, "hostname": joining.host.ip}
    if joining.host_networks:
        new_host["host_networks"] = joining.host_networks
    return {
        "cpswap": {"node": joining.host.name, "ip": joining.host.ip, "user": user,
                   "annotation": HOST_NETWORKS_ANNOTATION},
        "primary_master_node": primary,
        "master_nodes": {
            "controlplane_host": endpoint.host,
            "controlplane_port": str(endpoint.port),
            "as_controller": True,
            "as_host": ocboot.as_host,
            "high_availability": ocboot.high_availability,
            "hosts": [new_host],
        },
    }


def template_text(template: dict[str, Any]) -> str:
    return json.dumps(template, sort_keys=False)


def render_ocboot_join(*, joining: Member, ocboot: OcbootSettings) -> str:
    """Run on the survivor holding the VIP; the template arrives on stdin. Nothing is written
    before the adoption check, and a kubectl failure fails the step."""
    name = joining.host.name
    invocation = "install" if ocboot.invocation == "install" else f"run.py {quote(ocboot.stack)}"
    leftovers = " ".join((CONFIG_FILE, *LEFTOVERS))
    not_joined = (f"{name}: ocboot exited 0 but {name} is not a Node (ocboot's install logs config errors and "
                  f"exits 0; its k3s role joins only with 2 or more master_nodes hosts)")
    return (
        f"set -u; nodes=$(kubectl get nodes -o json) || {{ "
        f"echo {quote(f'{name}: kubectl get nodes failed on the VIP holder; not deciding whether to join')} >&2; "
        f"exit 1; }}; cd {quote(ocboot.workdir)} || exit 1; umask 077; "
        f"{{ printf '%s\\n' \"$nodes\"; cat; }} | python3 -c {quote(COMPLETE_CONFIG_PY)} {CONFIG_FILE}; rc=$?; "
        f"if [ $rc -eq {ADOPTED_EXIT} ]; then exit 0; fi; if [ $rc -ne 0 ]; then rm -f {CONFIG_FILE}; exit $rc; fi; "
        f"./ocboot.sh {invocation} {CONFIG_FILE}; rc=$?; rm -f {leftovers}; if [ $rc -ne 0 ]; then exit $rc; fi; "
        f"kubectl get node {quote(name)} -o name >/dev/null || {{ echo {quote(not_joined)} >&2; exit 1; }}"
    )
