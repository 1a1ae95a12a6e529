"""Renderers for an ocboot (Cloudpods on K3s) control-plane join. Pure.

ocboot adds control-plane nodes through the ``master_nodes`` section of an install config run
from an existing primary (notes/ocboot_cli.md; seed 004 step 4). The config names a surviving
node as ``primary_master_node`` and the new host under ``master_nodes.hosts``.

Two forms:
- ``primary`` given (preview of a known survivor, seed shape): ``hostname``/``node_ip``/
  ``host_networks`` of that survivor.
- ``primary`` is None (what the component runs): ``use_local: true``; the command runs over SSH
  on the VIP, which keepalived keeps on a live survivor, so "local" is that survivor. This keeps
  the slot's inputs free of other slots' hosts.
The DB password is passed in by the caller (the component passes the secret; previews pass a
placeholder) and the whole config travels on stdin, which is secret.
"""
from __future__ import annotations

from shlex import quote
from typing import Any

import yaml

from cpswap.core.model import Endpoint, Member, OcbootSettings

CONFIG_FILE = ".cpswap-join.yml"


def render_ocboot_config(*, joining: Member, endpoint: Endpoint, ocboot: OcbootSettings, db_password: str,
                         primary: Member | None = None, other_masters: tuple[Member, ...] = ()) -> dict[str, Any]:
    primary_node: dict[str, Any] = {}
    if primary is None:
        primary_node["use_local"] = True
    else:
        primary_node.update(hostname=primary.host.ip, use_local=False)
    primary_node.update({
        "user": "root",
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
    })
    if primary is not None:
        primary_node["node_ip"] = primary.host.ip
        if primary.host_networks:
            primary_node["host_networks"] = primary.host_networks
    hosts = []
    for m in (joining, *other_masters):
        entry: dict[str, Any] = {"user": "root", "hostname": m.host.ip}
        if m.host_networks:
            entry["host_networks"] = m.host_networks
        hosts.append(entry)
    return {
        "primary_master_node": primary_node,
        "master_nodes": {
            "controlplane_host": endpoint.host,
            "controlplane_port": str(endpoint.port),
            "as_controller": True,
            "as_host": ocboot.as_host,
            "high_availability": ocboot.high_availability,
            "hosts": hosts,
        },
    }


def config_text(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def render_ocboot_join(*, joining: Member, ocboot: OcbootSettings) -> str:
    """Run on the survivor holding the VIP; the config arrives on stdin and is removed afterwards."""
    name = joining.host.name
    return (
        f"set -u; if kubectl get node {quote(name)} >/dev/null 2>&1; then "
        f"echo {quote(f'{name}: already a node of this cluster; nothing to join')}; exit 0; fi; "
        f"cd {quote(ocboot.workdir)} && umask 077 && cat > {CONFIG_FILE} && "
        f"{{ ./ocboot.sh run.py {quote(ocboot.stack)} {CONFIG_FILE}; rc=$?; rm -f {CONFIG_FILE}; exit $rc; }}"
    )
