"""The registry of distributions: one module per distribution, asked by name. Pure.

Everything cpswap knows about a distribution lives in its module ``cpswap/distributions/<name>.py``,
which defines ``DISTRIBUTION``, a frozen ``Distribution``: its config blocks and their validation,
its own secrets, its leave, join and verify resources (built with its renderers), its etcd preset,
its VIP handling, its preflight needs, its policy facts and its plan notes. The model, slots,
planner, preflight, safety section, components and CLI ask ``get(name)`` and never branch on a
distribution's name. Adding a distribution is its module plus a name in ``KNOWN``.

A module is imported when it is first asked for (``get``), not when the registry is: the modules
build on the pure core (model, renderers, slot specs) and the core asks the registry, so neither
imports the other at load time. Distribution modules are pure, like the core.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from cpswap.core.steps import Action  # the vocabulary imports nothing of cpswap

if TYPE_CHECKING:  # the modules import these at load time; the registry only names them
    from cpswap.core.errors import Violation
    from cpswap.core.model import Member, StackModel
    from cpswap.core.slots import SlotResource

# Every distribution, in the order the documentation lists them. A name here is a module here.
KNOWN: tuple[str, ...] = ("ocboot", "k3s", "kubeadm", "kubean", "openshift", "rke2")


class UnknownDistribution(ValueError):
    """A name the registry does not know; the message lists the known ones."""

    def __init__(self, name: object) -> None:
        super().__init__(f"unknown distribution {name!r}; use one of {', '.join(KNOWN)}")
        self.name = name


@dataclass(frozen=True)
class Block:
    """A stack-config block a distribution reads (``cpswap:<key>``) and its validation:
    ``parse(collector, raw)`` returns the settings, recording every violation on the collector
    (``cpswap.core.model``'s), with ``raw`` None when the block is absent."""

    key: str
    parse: Callable[[Any, Any], object]


@dataclass(frozen=True)
class EtcdPreset:
    """The etcd client files on a control-plane node (``cpswap etcd --preset <name>``), relative to
    ``$CPSWAP_ETCD_ROOT``: CA, client certificate, client key."""

    name: str
    cacert: str
    cert: str
    key: str


@dataclass(frozen=True)
class PreflightNeeds:
    """What the preflight probes for this distribution (cpswap/core/preflight.py decides).

    ``ssh_new_host``: cpswap reaches the new host over SSH (kubean and OpenShift reach hosts
    through their operators). ``ssh_vip``: the join or its preparation runs on the VIP holder.
    ``ports``: ports of its own that must be free on the new host, besides etcd's and the API's.
    ``installer``: the binary whose version on the new host must be the survivors' kubelet version
    (None: not checked; ``"kubeadm"``: kubeadm and kubelet within kubeadm's skew of kubeadm-config's
    kubernetesVersion); ``installer_optional``: a missing binary is fine (the join installs it).
    ``ocboot_checkout``: an ocboot checkout of the stack's version must be on the VIP holder.
    ``join_from_vip``: the join reaches the new host over SSH from the VIP holder (ocboot's ansible),
    so that hop is probed too. ``kubean``: the Cluster, its ConfigMaps, the operator and the image on
    the global cluster. ``machine_api``: the control-plane Machines must all be Running.
    ``critical_config``: (k3s) the cluster-critical server flags are read from a survivor through the
    VIP with the cluster token (secret ``k3sToken``) and printed for the join, which copies them."""

    ssh_new_host: bool = False
    ssh_vip: bool = False
    ports: tuple[int, ...] = ()
    installer: str | None = None
    installer_optional: bool = False
    ocboot_checkout: bool = False
    join_from_vip: bool = False
    kubean: bool = False
    machine_api: bool = False
    critical_config: bool = False


@dataclass(frozen=True)
class ConfigMapPatch:
    """Keys a distribution sets in a ConfigMap of its global cluster before any slot resource (a
    forced server-side apply, kept on delete): e.g. kubean's clean-up playbook."""

    name: str
    namespace: str
    data: tuple[tuple[str, str], ...]


Resources = Callable[["StackModel", "Member"], "tuple[SlotResource, ...]"]


def _no_resources(model: StackModel, member: Member) -> tuple[SlotResource, ...]:
    return ()


def _no_config_maps(model: StackModel) -> tuple[ConfigMapPatch, ...]:
    return ()


def _no_notes(model: StackModel, slot: str, old: Any, new: Any) -> tuple[str, ...]:
    return ()


def _no_member_rules(member: Member) -> tuple[Violation, ...]:
    return ()


def _no_checks(model: StackModel, member: Member) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True, kw_only=True)
class Distribution:
    """Everything cpswap knows about one distribution (see the module docstring).

    ``leave``/``join`` build the slot's resources between its preflight and its verify (``leave``
    deletes run from stored state through survivors; ``join`` creates bring the new host in);
    ``verify`` renders the checks of the verify step; ``restore`` the snapshot's restore command
    for the plan's safety section; ``plan_notes`` the warnings a swap of ``slot`` from ``old`` to
    ``new`` adds to the plan."""

    name: str
    summary: str
    blocks: tuple[Block, ...] = ()
    requires_block: bool = False  # the first block must be present (its parser says what it needs)
    secrets: tuple[str, ...] = ()
    etcd_preset: EtcdPreset | None = None
    keepalived: bool = False  # cpswap writes keepalived.conf on the new host when vip.keepalived is set
    vip_managed_by: str = "the distribution"
    rebuild_in_place: bool = False  # members.<slot>.rebuild is allowed
    machine_names: bool = False  # members.<slot>.machine is allowed
    member_rules: Callable[[Member], tuple[Violation, ...]] = _no_member_rules
    leave: Resources = _no_resources
    join: Resources = _no_resources
    verify: Callable[[StackModel, Member], tuple[str, ...]] = _no_checks
    joined_by: Action = Action.JOIN  # the action after which the new member is in (the plan's quorum moves there)
    verify_timeout: str = "22m"
    adopt_discover: str = "kube"  # how `cpswap etcd verify-adoption --discover` finds the endpoints
    preflight: PreflightNeeds = PreflightNeeds()
    restore: Callable[[str, Mapping[str, Any] | None], str] | None = None
    plan_notes: Callable[[StackModel, str, Any, Any], tuple[str, ...]] = _no_notes
    global_cluster: bool = False  # it declares objects on a second (global) cluster with its own kubeconfig
    global_config_maps: Callable[[StackModel], tuple[ConfigMapPatch, ...]] = _no_config_maps
    # its installer can join a new member while the departing one is still a member (issue 16: a
    # swap may then surge, cpswap.core.strategy), and why it can or cannot
    joins_alongside: bool = False
    joins_alongside_why: str = "not known to join a new member while the old one is still there"

    @property
    def block_keys(self) -> tuple[str, ...]:
        return tuple(b.key for b in self.blocks)


def known() -> tuple[str, ...]:
    return KNOWN


def get(name: object) -> Distribution:
    """The distribution called ``name``; ``UnknownDistribution`` (listing the known ones) otherwise."""
    if not isinstance(name, str) or name not in KNOWN:
        raise UnknownDistribution(name)
    module = importlib.import_module(f"{__name__}.{name}")
    found = getattr(module, "DISTRIBUTION", None)
    if not isinstance(found, Distribution) or found.name != name:
        raise TypeError(f"{module.__name__} must define DISTRIBUTION = Distribution(name={name!r}, ...)")
    return found


def every() -> tuple[Distribution, ...]:
    """Every known distribution, in ``KNOWN``'s order."""
    return tuple(get(name) for name in KNOWN)


def block_owners() -> dict[str, tuple[str, ...]]:
    """Each config block key and the distributions that read it."""
    owners: dict[str, list[str]] = {}
    for d in every():
        for key in d.block_keys:
            owners.setdefault(key, []).append(d.name)
    return {key: tuple(names) for key, names in owners.items()}


def etcd_presets() -> dict[str, EtcdPreset]:
    """Every distribution's etcd client files by preset name (``cpswap etcd --preset``)."""
    return {d.etcd_preset.name: d.etcd_preset for d in every() if d.etcd_preset is not None}


def distribution_secrets() -> tuple[str, ...]:
    """Every distribution's own secret keys, without repeats, in ``KNOWN``'s order."""
    return tuple(dict.fromkeys(key for d in every() for key in d.secrets))
