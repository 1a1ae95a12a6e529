"""RKE2 (Rancher's hardened Kubernetes): servers with embedded etcd, joined as a service. Pure.

Read in github:rancher/rke2 at 6ce1a8019e9d0b81eb7a715edbc2b8ac12d26da0 (docs/CONFORMANCE.md "rke2"):
RKE2 is k3s's server with RKE2's defaults (``pkg/cli/cmds/server.go`` copies k3s's flags, drops
``supervisor-port`` and friends; ``pkg/cli/defaults/defaults.go`` fixes the supervisor port at 9345
and the API at 6443, ``ClusterInit``), so a server joins through ``server: https://<VIP>:9345`` with
the cluster token, reads ``/etc/rancher/rke2/config.yaml`` (k3s's ``configfilearg`` with
``version.Program=rke2``, ``scripts/build-binary``), keeps its data under ``/var/lib/rancher/rke2``
(its etcd certificates under ``server/tls/etcd``), and runs as ``rke2-server.service``
(``bundle/lib/systemd/system/rke2-server.service``: ``Type=notify``, installed with the binary by
``install.sh``). Its embedded etcd adds a new member as a learner and promotes it (k3s's etcd code).

Leave: through the survivors (common.survivors_leave). Join (``render_rke2_join``) on the new host,
where rke2 is installed and not started: the token from stdin into a 0600 ``token-file`` (never in an
argv), a 0600 ``config.yaml`` (``server``, ``token-file``, ``node-name``, ``node-ip``, ``tls-san``),
then ``systemctl enable --now rke2-server``, which returns when rke2 reports READY=1. A host whose
data dir holds an etcd member is left alone (adoption); an operator's config.yaml is never
overwritten.
"""
from __future__ import annotations

import json
from shlex import quote
from typing import Any, Mapping

from cpswap.core import inputs
from cpswap.core.model import Endpoint, Host, Member, StackModel
from cpswap.core.slots import CommandSpec, RunsOn, SlotResource, record
from cpswap.core.steps import Action, Stdin
from cpswap.distributions import Distribution, EtcdPreset, PreflightNeeds
from cpswap.distributions.common import member_checks, survivors_leave

SUPERVISOR_PORT = 9345  # pkg/cli/defaults/defaults.go: cmds.ServerConfig.SupervisorPort
DATA_DIR = "/var/lib/rancher/rke2"  # pkg/cli/cmds/server.go: rke2Path, the data-dir default
CONFIG_DIR = "/etc/rancher/rke2"
TOKEN_FILE = f"{CONFIG_DIR}/cpswap-token"
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"
MARKER = "# written by cpswap (rke2 join)"


def render_rke2_config(*, host: Host, endpoint: Endpoint) -> str:
    """config.yaml of the joining server; every value a double-quoted YAML string."""
    q = json.dumps
    server = f"https://{inputs.host_port(endpoint.host, SUPERVISOR_PORT)}"
    return "\n".join((
        MARKER,
        f"server: {q(server)}",
        f"token-file: {q(TOKEN_FILE)}",
        f"node-name: {q(host.name)}",
        f"node-ip: {q(host.ip)}",
        "tls-san:",
        f"  - {q(endpoint.host)}",
    )) + "\n"


def render_rke2_join(*, host: Host, endpoint: Endpoint) -> str:
    name = host.name
    return (
        f"set -u; if test -d {DATA_DIR}/server/db/etcd/member; then "
        f"echo {quote(f'{name}: rke2 server already initialised; nothing to join')}; exit 0; fi; "
        f"command -v rke2 >/dev/null || {{ echo {quote(f'{name}: no rke2 binary on PATH; install it first')} >&2; "
        f"exit 1; }}; "
        f"if test -f {CONFIG_FILE} && ! grep -qxF {quote(MARKER)} {CONFIG_FILE}; then "
        f"echo {quote(f'{name}: {CONFIG_FILE} exists and was not written by cpswap; not overwriting it')} >&2; "
        f"exit 1; fi; "
        f"umask 077; mkdir -p {CONFIG_DIR} || exit 1; "
        f"token=''; IFS= read -r token || true; test -n \"$token\" || {{ echo 'no rke2 token on stdin' >&2; exit 1; }}; "
        f"printf '%s\\n' \"$token\" > {TOKEN_FILE} && chmod 600 {TOKEN_FILE} && "
        f"printf '%s' {quote(render_rke2_config(host=host, endpoint=endpoint))} > {CONFIG_FILE} && "
        f"chmod 600 {CONFIG_FILE} && systemctl enable --now rke2-server"
    )


def join(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    return (CommandSpec(
        name=f"{member.slot}-join", action=Action.JOIN, runs_on=RunsOn("ssh", "self"),
        create=render_rke2_join(host=member.host, endpoint=model.endpoint),
        update=record(member, "joined earlier; not re-joining"), delete=None, triggers=member.host.triggers(),
        stdin=Stdin("rke2-token", secret="rke2Token"), create_timeout="30m",
        reason=f"rke2 servers join through the supervisor port {SUPERVISOR_PORT} of the VIP with the cluster token"),)


def restore(snapshot: str, survivor: Mapping[str, Any] | None) -> str:
    return f"rke2 server --cluster-reset --cluster-reset-restore-path={snapshot}"


DISTRIBUTION = Distribution(
    name="rke2", summary="RKE2 servers with embedded etcd, joined as a service through the VIP's port 9345",
    secrets=("rke2Token",), vip_managed_by="external (a load balancer or VIP in front of the servers' 6443 and 9345)",
    etcd_preset=EtcdPreset("rke2", cacert="var/lib/rancher/rke2/server/tls/etcd/server-ca.crt",
                           cert="var/lib/rancher/rke2/server/tls/etcd/server-client.crt",
                           key="var/lib/rancher/rke2/server/tls/etcd/server-client.key"),
    leave=survivors_leave, join=join, verify=member_checks,
    preflight=PreflightNeeds(ssh_new_host=True, ports=(SUPERVISOR_PORT,)),
    restore=restore)
