"""The ocboot join's config completion as it runs on the VIP holder, for tests (test-only): Node documents
as `kubectl get nodes -o json` prints them, seed 004's Nodes, and ``complete`` running the rendered completion
script with stand-in local addresses. Shared by tests/core/test_ocboot_join.py and the upstream ocboot test."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from cpswap.core.model import parse_stack_config
from cpswap.core.renderers.ocboot import (COMPLETE_CONFIG_PY, CONFIG_FILE, HOST_NETWORKS_ANNOTATION,
                                          render_ocboot_template, template_text)
from tests.support.pulumi_mocks import ROOT, load_stack_file
MODEL = parse_stack_config(load_stack_file(ROOT / "Pulumi.prod.yaml"), stack="prod")


def node(name: str, ip: str, *, ready: bool = True, control_plane: bool = True, networks: str | None = None) -> dict:
    labels = {"kubernetes.io/hostname": name}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = "true"
    meta: dict = {"name": name, "labels": labels}
    if networks:
        meta["annotations"] = {HOST_NETWORKS_ANNOTATION: networks}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta,
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


def listing(*nodes: dict) -> dict:
    return {"apiVersion": "v1", "items": list(nodes), "kind": "List", "metadata": {"resourceVersion": ""}}


SEED_NODES = listing(node("lzx-ha-env", "192.168.0.254", ready=False, networks="eth0/br0/192.168.0.254"),
                     node("lzx-ha-env-2", "192.168.0.244", networks="eth0/br0/192.168.0.244"),
                     node("lzx-ha-env-3", "192.168.0.243", networks="eth0/br0/192.168.0.243"))


def complete(nodes: dict, *, local: tuple[str, ...], tmp_path: Path, member: str = "cp1",
             db_password: str = "<secret:ocbootDbPassword>") -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run the completion script as the command does, with ``local`` standing in for this host's
    addresses (socket.bind succeeds only for them)."""
    template = render_ocboot_template(joining=MODEL.member(member), endpoint=MODEL.endpoint, ocboot=MODEL.ocboot,
                                      db_password=db_password)
    out = tmp_path / CONFIG_FILE
    prelude = ("import socket\n_bind = socket.socket.bind\n"
               f"def bind(self, address, _local={local!r}):\n"
               "    if address[0] not in _local:\n        raise OSError(99, 'Cannot assign requested address')\n"
               "    return _bind(self, ('127.0.0.1', 0))\n"
               "socket.socket.bind = bind\n")
    result = subprocess.run([sys.executable, "-c", prelude + COMPLETE_CONFIG_PY, str(out)],
                            input=json.dumps(nodes) + "\n" + template_text(template), capture_output=True, text=True,
                            timeout=30)
    return result, (yaml.safe_load(out.read_text()) if out.exists() else None)
