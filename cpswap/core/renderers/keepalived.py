"""Renderer for the keepalived VRRP instance that carries the control-plane VIP (seed 002). Pure.

The joining host gets the same VRRP instance, virtual_router_id and router_id as the survivors
(stack-level ``vip`` settings), ``state BACKUP`` at a priority from ``VipSettings.joining_priority``
(below every survivor when it joins the MASTER slot, unless ``takeOverPrimary``). The auth
password is secret: it arrives on stdin and is substituted on the host, never rendered here.
"""
from __future__ import annotations

from shlex import quote

from cpswap.core.model import Endpoint, Host, VipSettings

CONF = "/etc/keepalived/keepalived.conf"
AUTH_PLACEHOLDER = "@@CPSWAP_AUTH_PASS@@"


def render_keepalived_conf(*, slot: str, vip: VipSettings, endpoint: Endpoint) -> str:
    state, priority = vip.joining_priority(slot)
    return (
        f"# managed by cpswap for slot {slot}; the VRRP instance is shared by every control-plane node\n"
        f"global_defs {{\n  router_id {vip.router_id}\n}}\n"
        f"vrrp_instance {vip.instance} {{\n"
        f"  state {state}\n  interface {vip.interface}\n  virtual_router_id {vip.virtual_router_id}\n"
        f"  priority {priority}\n  advert_int {vip.advert_int}\n"
        f"  authentication {{\n    auth_type PASS\n    auth_pass {AUTH_PLACEHOLDER}\n  }}\n"
        f"  virtual_ipaddress {{\n    {endpoint.host}\n  }}\n}}\n"
    )


def render_keepalived_install(*, host: Host, slot: str, vip: VipSettings, endpoint: Endpoint) -> str:
    """Write keepalived.conf (0600, auth password from stdin) and (re)start keepalived on the new host:
    through systemd when it is the init system (sd_booted's test), else checked with
    ``--config-test`` and reloaded (SIGHUP) or started.

    A host whose keepalived.conf already declares this VRRP instance (same name and
    virtual_router_id) is left exactly as it is: that is a member being adopted (or a join re-run),
    and rewriting its config or restarting keepalived would demote the MASTER and move the VIP. A
    keepalived.conf with another instance or router id is somebody else's: the step fails without
    touching it."""
    conf = render_keepalived_conf(slot=slot, vip=vip, endpoint=endpoint)
    mine = f"{host.name}: keepalived {vip.instance} vrid {vip.virtual_router_id}"
    return (
        "set -eu; umask 077; AUTH=; IFS= read -r AUTH || true; "
        f"if [ -e {CONF} ]; then "
        f"if grep -Eq {quote(f'^[[:space:]]*vrrp_instance[[:space:]]+{vip.instance}[[:space:]]*[{{]?[[:space:]]*$')} {CONF} && "
        f"grep -Eq {quote(f'^[[:space:]]*virtual_router_id[[:space:]]+{vip.virtual_router_id}[[:space:]]*$')} {CONF}; then "
        f"echo {quote(f'{mine} already configured in {CONF}: not rewriting it or restarting keepalived (that would demote the MASTER)')}; "
        "exit 0; fi; "
        f"echo {quote(f'{CONF} exists without vrrp_instance {vip.instance} / virtual_router_id {vip.virtual_router_id}: not cpswap' + chr(39) + 's; nothing written')} >&2; "
        "exit 1; fi; "
        "case $AUTH in *[!A-Za-z0-9_.-]*|'') echo 'keepalivedAuthPass (stdin) must be 1-8 of [A-Za-z0-9_.-]; "
        "nothing written' >&2; exit 2;; esac; "
        "if [ ${#AUTH} -gt 8 ]; then echo \"keepalivedAuthPass (stdin) has ${#AUTH} characters; keepalived uses at "
        "most 8; nothing written\" >&2; exit 2; fi; "
        f"mkdir -p /etc/keepalived; printf '%s' {quote(conf)} | sed \"s/{AUTH_PLACEHOLDER}/$AUTH/\" > {CONF}.cpswap; "
        f"mv {CONF}.cpswap {CONF}; "
        "if [ -d /run/systemd/system ]; then systemctl enable keepalived >/dev/null 2>&1 || true; "
        "systemctl restart keepalived; else keepalived --config-test -f " + CONF + " || { echo 'keepalived "
        "--config-test rejected " + CONF + "' >&2; exit 1; }; pkill -HUP -x keepalived || keepalived -f " + CONF + "; fi; "
        f"echo {quote(f'{mine} configured')}"
    )
