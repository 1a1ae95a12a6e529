"""Renderer for joining a K3s server on the new host: installed as a service, returning when ready. Pure.

``k3s server`` is a daemon (systemd ``Type=notify``): run in the foreground over SSH it never
returns, and it dies with the session. So the join writes what k3s reads at start-up and lets the
service manager run it (docs/CONFORMANCE.md "k3s"):

- ``/etc/rancher/k3s/cpswap-token`` (0600): the cluster token, stdin's first line
  ``k3s-token: <token>``. It reaches k3s as ``token-file`` (pkg/cli/server/server.go reads
  ``--token-file``): never in any argv.
- ``/etc/rancher/k3s/config.yaml`` (0600; k3s's default config file, pkg/configfilearg): ``server``
  (the VIP, the fixed registration address), ``token-file``, ``data-dir``, ``node-name``,
  ``node-ip``, ``tls-san`` (the VIP), then the cluster-critical server flags the slot's preflight
  read from a survivor: the rest of stdin is that step's output, and the block between
  cpswap.core.k3s_critical's markers is appended (k3s refuses a join whose critical configuration
  differs: pkg/cluster/bootstrap.go compareConfig). Without the block the join stops before
  writing anything. A config.yaml that cpswap did not write stops the join (it is the operator's;
  nothing is overwritten).
- ``/etc/systemd/system/k3s.service``: the unit k3s's install script writes (``Type=notify``,
  ``ExecStart=<k3s on PATH> server``), then ``systemctl daemon-reload`` and
  ``systemctl enable --now k3s``, which returns once k3s reports READY=1 (or fails when it exits).

A host whose K3s data dir already holds an etcd member is left alone (adoption), before anything
is written, so a first ``up`` on a healthy cluster changes nothing.
"""
from __future__ import annotations

import json
from shlex import quote

from cpswap.core.k3s_critical import BEGIN, END
from cpswap.core.model import Endpoint, Host, K3sSettings

CONFIG_DIR = "/etc/rancher/k3s"
TOKEN_FILE = f"{CONFIG_DIR}/cpswap-token"
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"
UNIT_FILE = "/etc/systemd/system/k3s.service"
MARKER = "# written by cpswap (k3s join)"
TOKEN_LINE = "k3s-token: "  # stdin's first line: the token after this prefix


def render_k3s_config(*, host: Host, endpoint: Endpoint, k3s: K3sSettings) -> str:
    """The join's own part of config.yaml (the copied critical flags follow it)."""
    q = json.dumps  # every value a double-quoted YAML string (IPv6 and names stay strings)
    return "\n".join((
        MARKER,
        f"server: {q(f'https://{endpoint}')}",
        f"token-file: {q(TOKEN_FILE)}",
        f"data-dir: {q(k3s.data_dir)}",
        f"node-name: {q(host.name)}",
        f"node-ip: {q(host.ip)}",
        "tls-san:",
        f"  - {q(endpoint.host)}",
    )) + "\n"


def render_k3s_unit() -> str:
    """get.k3s.io's k3s.service up to ExecStart, which the host fills in (the k3s on its PATH)."""
    return "\n".join((
        "[Unit]", "Description=Lightweight Kubernetes", "Documentation=https://k3s.io",
        "Wants=network-online.target", "After=network-online.target", "",
        "[Install]", "WantedBy=multi-user.target", "",
        "[Service]", "Type=notify", "EnvironmentFile=-/etc/default/%N", "EnvironmentFile=-/etc/sysconfig/%N",
        "KillMode=process", "Delegate=yes", "LimitNOFILE=1048576", "LimitNPROC=infinity", "LimitCORE=infinity",
        "TasksMax=infinity", "TimeoutStartSec=0", "Restart=always", "RestartSec=5s",
        "ExecStartPre=-/sbin/modprobe br_netfilter", "ExecStartPre=-/sbin/modprobe overlay",
    )) + "\n"


def render_k3s_join(*, host: Host, endpoint: Endpoint, k3s: K3sSettings) -> str:
    data_dir = quote(k3s.data_dir)
    name = host.name
    config = render_k3s_config(host=host, endpoint=endpoint, k3s=k3s)
    missing = (f"{name}: no cluster-critical k3s server flags from the preflight on stdin; k3s would refuse "
               "the join on any difference (re-run `up`: the slot's preflight reads them from a survivor)")
    return (
        f"set -u; if test -d {data_dir}/server/db/etcd/member; then "
        f"echo {quote(f'{name}: k3s server already initialised; nothing to join')}; exit 0; fi; "
        f"k3s=$(command -v k3s) || {{ echo {quote(f'{name}: no k3s binary on PATH; install it first')} >&2; exit 1; }}; "
        f"if test -f {CONFIG_FILE} && ! grep -qxF {quote(MARKER)} {CONFIG_FILE}; then "
        f"echo {quote(f'{name}: {CONFIG_FILE} exists and was not written by cpswap; not overwriting it')} >&2; "
        f"exit 1; fi; "
        f"line=''; IFS= read -r line || true; token=${{line#{quote(TOKEN_LINE)}}}; "
        f"test \"$token\" != \"$line\" && test -n \"$token\" || {{ echo 'no k3s token on stdin' >&2; exit 1; }}; "
        f"critical=$(sed -n {quote(f'/^{BEGIN} /,/^{END}$/p')}); "
        f"case \"$critical\" in *{quote(END)}) ;; *) echo {quote(missing)} >&2; exit 1;; esac; "
        f"umask 077; mkdir -p {CONFIG_DIR} || exit 1; "
        f"printf '%s\\n' \"$token\" > {TOKEN_FILE} && chmod 600 {TOKEN_FILE} && "
        f"{{ printf '%s' {quote(config)}; printf '%s\\n' \"$critical\"; }} > {CONFIG_FILE} && chmod 600 {CONFIG_FILE} && "
        f"{{ printf '%s' {quote(render_k3s_unit())}; printf 'ExecStart=%s server\\n' \"$k3s\"; }} > {UNIT_FILE} && "
        f"systemctl daemon-reload && systemctl enable --now k3s"
    )
