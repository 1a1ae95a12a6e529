"""Renderer for joining a K3s server: ``k3s server --server https://VIP --token`` on the new host. Pure.

The token arrives on stdin (secret; SSH servers often refuse ``Setenv``), is read into the
variable ``K3S_TOKEN`` and never rendered into the text. A host that already runs a K3s server with an etcd member is left alone
(adoption), so a first ``up`` on a healthy cluster changes nothing.
"""
from __future__ import annotations

from shlex import quote

from cpswap.core.model import Endpoint, Host, K3sSettings


def render_k3s_join(*, host: Host, endpoint: Endpoint, k3s: K3sSettings) -> str:
    data_dir = quote(k3s.data_dir)
    server = quote(f"https://{endpoint}")
    return (
        f"if test -d {data_dir}/server/db/etcd/member; then "
        f"echo {quote(f'{host.name}: k3s server already initialised; nothing to join')}; exit 0; fi; "
        f"IFS= read -r K3S_TOKEN; export K3S_TOKEN; "
        f"exec k3s server --data-dir {data_dir} --server {server} --token \"$K3S_TOKEN\" "
        f"--node-name {quote(host.name)} --node-ip {quote(host.ip)} --tls-san {quote(endpoint.host)}"
    )
