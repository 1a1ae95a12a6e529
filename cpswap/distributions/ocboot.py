"""ocboot (Cloudpods on K3s): the join runs ocboot on the survivor holding the VIP. Pure.

Leave: through the survivors (common.survivors_leave). Join: on the VIP holder, the seed's config
shape completed there from the live Nodes, then ``./ocboot.sh`` (cpswap/core/renderers/ocboot.py;
notes/ocboot_cli.md; docs/CONFORMANCE.md "ocboot"). It reads the ``ocboot`` block and, being K3s,
the ``k3s`` block; ocboot configures its own keepalived.
"""
from __future__ import annotations

from typing import Any

from cpswap.core.model import Member, OcbootSettings, StackModel, _bool, _check_ip, _Collector, _fullmatch, _int, _obj
from cpswap.core.renderers import render_ocboot_join, render_ocboot_template
from cpswap.core.renderers.ocboot import template_text
from cpswap.core.renderers.etcd import render_etcdutl_restore
from cpswap.core.steps import Action, Stdin
from cpswap.core.slots import CommandSpec, RunsOn, SlotResource, record
from cpswap.distributions import Block, Distribution, PreflightNeeds
from cpswap.distributions.common import member_checks, survivors_leave
from cpswap.distributions.k3s import K3S_BLOCK, K3S_ETCD


def parse_ocboot(c: _Collector, raw: Any) -> OcbootSettings | None:
    allowed = {"version", "stack", "dbHost", "dbUser", "dbPort", "imageRepository", "asHost",
               "enableMinio", "highAvailability", "workdir", "invocation"}
    spec = _obj(c, "ocboot", raw, allowed)
    if raw is None:
        c.add("ocboot", None, "distribution ocboot needs the ocboot block (version, dbHost, ...)")
        return None
    version, db_host = spec.get("version"), spec.get("dbHost")
    if not _fullmatch(r"v?[0-9]+\.[0-9]+(\.[0-9]+)?", version):
        c.add("ocboot.version", version, "must be a Cloudpods version such as v3.11.9")
    if _check_ip(c, "ocboot.dbHost", db_host) is None:
        db_host = None
    stack = spec.get("stack", "virt")
    if stack not in ("full", "cmp", "virt", "light-virt", "ai"):
        c.add("ocboot.stack", stack, "must be one of full, cmp, virt, light-virt, ai")
    user = spec.get("dbUser", "root")
    if not _fullmatch(r"[A-Za-z0-9_]{1,32}", user):
        c.add("ocboot.dbUser", user, "must be a database user name ([A-Za-z0-9_], up to 32)")
    repo = spec.get("imageRepository", OcbootSettings.image_repository)
    if not _fullmatch(r"[A-Za-z0-9._:/-]+", repo):
        c.add("ocboot.imageRepository", repo, "must be a registry path such as registry.cn-beijing.aliyuncs.com/yunionio")
    workdir = spec.get("workdir", "ocboot")
    if not _fullmatch(r"[A-Za-z0-9._/-]+", workdir) or workdir.startswith("/"):
        c.add("ocboot.workdir", workdir, "must be a relative directory (on the survivor) holding ocboot.sh")
    invocation = spec.get("invocation", "install")
    if invocation not in ("install", "run.py"):
        c.add("ocboot.invocation", invocation,
              "must be install (./ocboot.sh install <config>) or run.py (./ocboot.sh run.py <stack> <config>)")
    return OcbootSettings(
        version=str(version), db_host=str(db_host), stack=str(stack), db_user=str(user),
        db_port=_int(c, "ocboot.dbPort", spec.get("dbPort"), default=3306),
        image_repository=str(repo), workdir=str(workdir), invocation=str(invocation),
        as_host=_bool(c, "ocboot.asHost", spec.get("asHost"), default=True),
        enable_minio=_bool(c, "ocboot.enableMinio", spec.get("enableMinio"), default=True),
        high_availability=_bool(c, "ocboot.highAvailability", spec.get("highAvailability"), default=True))



def ocboot_config(model: StackModel, member: Member, db_password: str) -> str:
    """The seed's config template for the VIP holder (completed there from the live Nodes)."""
    ocboot = model.ocboot
    assert ocboot is not None
    return template_text(render_ocboot_template(joining=member, endpoint=model.endpoint, ocboot=ocboot,
                                                db_password=db_password, user=model.ssh.user))


OCBOOT_CONFIG = Stdin("ocboot-config", secret="ocbootDbPassword", render=ocboot_config)


def join(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    ocboot = model.ocboot
    assert ocboot is not None  # a stack without the block is refused by parse_ocboot
    return (CommandSpec(
        name=f"{member.slot}-join", action=Action.JOIN, runs_on=RunsOn("ssh", "vip"),
        create=render_ocboot_join(joining=member, ocboot=ocboot),
        update=record(member, "joined earlier; connection details changed, not re-joining"),
        delete=None, triggers=member.host.triggers(), stdin=OCBOOT_CONFIG, create_timeout="60m",
        reason="ocboot adds control-plane nodes from an existing primary: run it on the survivor holding the VIP"),)


DISTRIBUTION = Distribution(
    name="ocboot", summary="Cloudpods on K3s, joined by ocboot on the survivor holding the VIP",
    blocks=(Block("ocboot", parse_ocboot), K3S_BLOCK), secrets=("ocbootDbPassword",), etcd_preset=K3S_ETCD,
    vip_managed_by="ocboot (its own keepalived)",
    leave=survivors_leave, join=join, verify=member_checks,
    preflight=PreflightNeeds(ssh_new_host=True, ssh_vip=True, installer="k3s", installer_optional=True,
                             ocboot_checkout=True, join_from_vip=True),
    restore=render_etcdutl_restore,
    joins_alongside=False,
    joins_alongside_why=("cpswap's ocboot join completes ocboot's config from every live control-plane Node, so "
                         "the departing node would be among ocboot's master_nodes and get its playbook; it is not "
                         "excluded yet"))
