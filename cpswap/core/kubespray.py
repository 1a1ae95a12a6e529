"""Kubespray inventory (kubean hosts-conf) and kubeadm ConfigMap edits of seed 001. Pure.

- ``first_control_plane``: the first host of ``kube_control_plane`` (Kubespray's "first master").
- ``move_to_end``: seed 001's reorder (node1/node2/node3 -> node2/node3/node1) in
  ``kube_control_plane``, ``kube_node`` and ``etcd``, so that a first node can be removed.
- ``without_host`` / ``with_host``: the inventory after a host left / with a joining host
  appended to the control-plane groups (``ansible_host``, ``ip``, ``access_ip``).
- ``repoint_server`` / ``repoint_endpoint``: ``cluster-info``'s kubeconfig ``server`` and
  ``kubeadm-config``'s ``controlPlaneEndpoint``, moved off a departed node's IP (a VIP is kept).
Inventories are plain dicts (YAML documents); functions return new dicts and never mutate.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from cpswap.core.documents import DocumentError, parse_yaml
from cpswap.core.errors import PermanentError
from cpswap.core.inputs import host_port, same_address, url_host

GROUPS = ("kube_control_plane", "kube_node", "etcd")


def _mapping(text: str, *, what: str) -> dict[str, Any]:
    """A YAML mapping read from the cluster (bounded, strict: cpswap.core.documents); else PermanentError."""
    try:
        doc = parse_yaml(text) or {}
    except DocumentError as exc:
        raise PermanentError(f"{what}: {exc}") from None
    if not isinstance(doc, dict):
        raise PermanentError(f"{what}: must be a YAML mapping, found {type(doc).__name__}")
    return doc


def parse_inventory(text: str) -> dict[str, Any]:
    doc = _mapping(text, what="hosts-conf hosts.yml")
    if not isinstance(doc, dict) or not isinstance(doc.get("all"), dict):
        raise ValueError("hosts-conf hosts.yml has no top-level 'all' mapping")
    return doc


def dump_inventory(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def group_hosts(doc: dict[str, Any], group: str) -> list[str]:
    hosts = ((doc["all"].get("children") or {}).get(group) or {}).get("hosts") or {}
    return list(hosts)


def first_control_plane(doc: dict[str, Any]) -> str | None:
    hosts = group_hosts(doc, "kube_control_plane")
    return hosts[0] if hosts else None


def host_ip(doc: dict[str, Any], host: str) -> str | None:
    vars_ = (doc["all"].get("hosts") or {}).get(host) or {}
    return vars_.get("ansible_host") or vars_.get("ip") or vars_.get("access_ip")


def _set_group(doc: dict[str, Any], group: str, hosts: list[str]) -> None:
    children = doc["all"].setdefault("children", {})
    children.setdefault(group, {})
    if children[group] is None:
        children[group] = {}
    children[group]["hosts"] = {h: None for h in hosts}


def move_to_end(doc: dict[str, Any], host: str) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    for group in GROUPS:
        hosts = group_hosts(new, group)
        if host in hosts:
            _set_group(new, group, [h for h in hosts if h != host] + [host])
    return new


def without_host(doc: dict[str, Any], host: str) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    for group in list(new["all"].get("children") or {}):
        hosts = group_hosts(new, group)
        if host in hosts:
            _set_group(new, group, [h for h in hosts if h != host])
    (new["all"].get("hosts") or {}).pop(host, None)
    return new


def with_host(doc: dict[str, Any], host: str, ip: str) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    hosts = new["all"].setdefault("hosts", {})
    entry = dict(hosts.get(host) or {})
    entry.update(ip=ip, access_ip=ip, ansible_host=ip)
    hosts[host] = entry
    for group in GROUPS:
        members = group_hosts(new, group)
        if host not in members:
            _set_group(new, group, members + [host])
    return new


def _swap_host(url: str, old_ip: str, new_host: str) -> str:
    scheme, sep, rest = url.partition("://")
    hostport = rest if sep else url
    host, colon, port = hostport.rpartition(":")
    if not colon:
        host, port = hostport, ""
    if not same_address(host.strip("[]"), old_ip):
        return url
    new = f"{url_host(new_host)}:{port}" if port else url_host(new_host)
    return f"{scheme}://{new}" if sep else new


def repoint_server(kubeconfig_text: str, *, old_ip: str, new_host: str) -> tuple[str, bool]:
    """cluster-info's ``kubeconfig``: every cluster ``server`` at ``old_ip`` moves to ``new_host``."""
    doc = _mapping(kubeconfig_text, what="kube-public/cluster-info kubeconfig")
    changed = False
    for entry in doc.get("clusters") or []:
        cluster = entry.get("cluster") or {}
        server = cluster.get("server")
        if isinstance(server, str):
            moved = _swap_host(server, old_ip, new_host)
            if moved != server:
                cluster["server"], changed = moved, True
    return (yaml.safe_dump(doc, sort_keys=False) if changed else kubeconfig_text), changed


def repoint_endpoint(cluster_configuration: str, *, old_ip: str, new_host: str) -> tuple[str, bool]:
    """kubeadm-config's ``ClusterConfiguration``: ``controlPlaneEndpoint`` at ``old_ip`` moves."""
    doc = _mapping(cluster_configuration, what="kube-system/kubeadm-config ClusterConfiguration")
    endpoint = doc.get("controlPlaneEndpoint")
    if not isinstance(endpoint, str):
        return cluster_configuration, False
    moved = _swap_host(endpoint, old_ip, new_host)
    if moved == endpoint:
        return cluster_configuration, False
    doc["controlPlaneEndpoint"] = moved
    return yaml.safe_dump(doc, sort_keys=False), True


def endpoint_covers(cluster_configuration: str, *, vip_host: str, vip_port: int) -> tuple[bool, str]:
    """Is the VIP kubeadm's ``controlPlaneEndpoint`` (kubeadm then puts it into every apiserver
    certificate's SANs) or at least listed in ``apiServer.certSANs``? Returns (ok, what was found)."""
    doc = _mapping(cluster_configuration, what="kube-system/kubeadm-config ClusterConfiguration")
    endpoint = str(doc.get("controlPlaneEndpoint") or "")
    sans = [str(s) for s in ((doc.get("apiServer") or {}).get("certSANs") or [])]
    found = f"controlPlaneEndpoint={endpoint or '(unset)'}, certSANs={sans}"
    if endpoint == host_port(vip_host, vip_port):
        return True, found
    return False, found


def present(doc: dict[str, Any], host: str) -> bool:
    """``host`` is still in the inventory (``all.hosts`` or any group)."""
    return host in ((doc.get("all") or {}).get("hosts") or {}) or any(host in group_hosts(doc, g) for g in GROUPS)


def has_left(doc: dict[str, Any], host: str, *, operation_status: str | None) -> bool:
    """``host`` has left through kubean: gone from the inventory, and its remove operation absent or Succeeded."""
    return not present(doc, host) and operation_status in (None, "Succeeded")


@dataclass(frozen=True)
class KubeanLeave:
    """How a kubean leave goes, decided before anything is written (executors/kubean.py carries it out)."""

    move_to_end: bool  # the host is the first control-plane/etcd node: Kubespray cannot remove it there
    run_remove: bool  # False: an earlier run's remove operation already took the etcd member and the Node
    clean_on: tuple[str, ...]  # the Ready control-plane hosts the clean-kube-apiserver hook runs on
    skipped: tuple[str, ...]  # control-plane hosts left out of the hook (Node not Ready: unreachable hosts fail it)


def decide_kubean_leave(*, doc: dict[str, Any], host: str, member_present: bool, node_present: bool,
                        ready: Mapping[str, bool], where: str) -> KubeanLeave:
    """``ready``: each other control-plane host's Node is Ready (absent: not Ready). Refuses (PermanentError)
    when the clean-up hook would have no target, before anything is written."""
    others = tuple(h for h in group_hosts(doc, "kube_control_plane") if h != host)
    removed_earlier = not member_present and not node_present
    survivors = () if removed_earlier else tuple(h for h in others if ready.get(h, False))
    if not removed_earlier and not survivors:
        raise PermanentError(f"hosts-conf {where}: no Ready kube_control_plane host besides {host} "
                             f"(others: {', '.join(others) or 'none'}); the clean-up hook would have no "
                             "target: refusing to remove it")
    return KubeanLeave(move_to_end=host in (first_control_plane(doc), *group_hosts(doc, "etcd")[:1]),
                       run_remove=not removed_earlier, clean_on=survivors,
                       skipped=() if removed_earlier else tuple(h for h in others if h not in survivors))
