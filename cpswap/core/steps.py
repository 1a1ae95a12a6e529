"""The step vocabulary shared by slots, distributions, planner, rules and components. Pure.

- ``Action``: what a slot resource (and the plan step it becomes) does. Every action declares its
  ``Effect`` on membership where it is defined, so an action cannot exist without saying whether it
  removes a member, adds one, cleans up after a leave, or leaves membership alone. The
  snapshot-first rule (``first_unsnapshotted_change``) and the planner's leave/join phases are
  defined on that effect, not on lists of names: a new membership action is covered by them the
  moment it is declared.
- ``Phase``: where a step sits in a swap. ``RunKind`` and ``RunTarget``: where a command runs.
- ``Stdin``: what a command reads on stdin, a secret stack config value or the secret output of an
  earlier resource of the same slot; the components, the planner's secret list and the policy
  views all read it from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Sequence

if TYPE_CHECKING:
    from cpswap.core.model import Member, StackModel


class Effect(Enum):
    """What an action does to etcd membership."""

    NONE = "none"  # reads, records, prepares, checks
    REMOVES = "removes"  # takes a member out of etcd (the step the snapshot must precede)
    CLEANS_UP = "cleans-up"  # part of a leave that does not change etcd membership (the Node, secrets)
    ADDS = "adds"  # brings a member in (a join, a recreated Machine, a redeployment that adds it)

    @property
    def changes_membership(self) -> bool:
        return self in (Effect.REMOVES, Effect.ADDS)


class Action(StrEnum):
    """A slot resource's action; its value is the string the plan document and the policy pack carry."""

    effect: Effect

    def __new__(cls, value: str, effect: Effect) -> Action:
        member = str.__new__(cls, value)
        member._value_ = value
        member.effect = effect
        return member

    PREFLIGHT = ("preflight", Effect.NONE)
    ETCD_SNAPSHOT = ("etcd-snapshot", Effect.NONE)
    ETCD_REMOVE = ("etcd-remove", Effect.REMOVES)
    KUBEAN_REMOVE = ("kubean-remove", Effect.REMOVES)
    NODE_DELETE = ("node-delete", Effect.CLEANS_UP)
    ETCD_SECRETS_DELETE = ("etcd-secrets-delete", Effect.CLEANS_UP)
    JOIN_PREPARE = ("join-prepare", Effect.NONE)
    KUBEAN_INVENTORY = ("kubean-inventory", Effect.NONE)
    JOIN = ("join", Effect.ADDS)
    JOIN_WAIT = ("join-wait", Effect.NONE)
    MACHINE = ("machine", Effect.ADDS)
    ETCD_RESET = ("etcd-reset", Effect.NONE)
    ETCD_REDEPLOY = ("etcd-redeploy", Effect.ADDS)
    KEEPALIVED = ("keepalived", Effect.NONE)
    VERIFY = ("verify", Effect.NONE)
    PVC_RECOVER = ("pvc-recover", Effect.NONE)
    HANDOVER = ("handover", Effect.REMOVES)  # a surge's last step: claims and pods move, the old member leaves
    DESTROY_GUARD = ("destroy-guard", Effect.NONE)
    ADOPT_CHECK = ("adopt-check", Effect.NONE)

    @property
    def changes_membership(self) -> bool:
        return self.effect.changes_membership

    @property
    def leaves(self) -> bool:
        """A step of the old member's leave (the planner's leave phase, a step id without ``-delete``)."""
        return self.effect in (Effect.REMOVES, Effect.CLEANS_UP)

    @classmethod
    def parse(cls, value: object) -> Action | None:
        """The action called ``value``; None for a string outside the vocabulary."""
        text = str(value)
        return next((action for action in cls if action.value == text), None)


AFTER_ACTIONS = (Action.VERIFY, Action.PVC_RECOVER)  # once the member is in: verify, then move claims
PREFLIGHT_ACTIONS = (Action.PREFLIGHT,)  # before the first destructive step: the leave depends on it

Phase = Literal["preflight", "leave", "join", "after"]
RunKind = Literal["local", "ssh"]  # the operator's machine, or SSH to a target
RunTarget = Literal["operator", "vip", "self"]  # the operator, the VIP holder (a survivor), the slot's new host


def first_unsnapshotted_change(actions: Sequence[object]) -> int | None:
    """Snapshot-first, on the vocabulary: the index of the first membership-changing action when no
    ``etcd-snapshot`` comes before it, else None. Strings outside the vocabulary change nothing."""
    for index, value in enumerate(actions):
        action = Action.parse(value)
        if action is Action.ETCD_SNAPSHOT:
            return None
        if action is not None and action.changes_membership:
            return index
    return None


def membership_changes(actions: Iterable[Action]) -> tuple[Action, ...]:
    return tuple(a for a in actions if a.changes_membership)


def _line(model: StackModel, member: Member, value: str) -> str:
    return value + "\n"


@dataclass(frozen=True)
class Stdin:
    """What a command reads on stdin, always secret (the command logs nothing).

    ``secret``: a secret stack config key, turned into the text by ``render`` (its value and a
    newline unless the distribution renders more, e.g. ocboot's config); ``output_of``: the stdout
    of the slot's earlier resource with that action (kubeadm's join material). With both
    (``then_output``), the secret's text comes first and the output follows it (k3s: the token line,
    then the preflight's output with the critical flags it read). ``kind`` names it in the plan and
    the policy views (``<secret kind>``)."""

    kind: str
    secret: str | None = None
    output_of: Action | None = None
    render: Callable[[StackModel, Member, str], str] = _line
    then_output: bool = False  # both a secret and an output, in that order

    def __post_init__(self) -> None:
        if self.then_output:
            if self.secret is None or self.output_of is None:
                raise ValueError(f"stdin {self.kind}: then_output needs a secret config key and an earlier resource")
        elif (self.secret is None) == (self.output_of is None):
            raise ValueError(f"stdin {self.kind}: exactly one of a secret config key or an earlier resource's output")

    def __str__(self) -> str:
        return self.kind
