"""Membership-change rules that go beyond quorum arithmetic. Pure.

Owns two decisions, both taken on etcd's own member list:

- **The learner rule** (Cluster API's control-plane controller refuses to touch membership while a
  member is pending): a learner, or a member added but not yet started, blocks the removal of any
  *other* member. The member being removed may itself be pending (removing a learner or an
  unstarted member changes no quorum); a slot's own interrupted join is resumed by its join step
  (``add`` finds the pending member by peer URL, ``promote`` finishes it), never blocked.
- **One change at a time**: every removal leaves a durable record (``ChangeRecord``) in the
  cluster's own etcd saying how many voters there were before it. Until the voters are back to
  that count (the replacement has joined and been promoted), a removal of any other member is
  refused. The record of the same member is the same change resumed. Together with the
  membership lock (``cpswap.executors.etcd_lock``) this makes concurrent pipelines queue and then
  see each other's change instead of each passing its own quorum check.

The keys live under ``LOCK_PREFIX``/``CHANGE_KEY`` in the cluster's etcd; nothing else of cpswap
is stored there.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from collections.abc import Sequence

from cpswap.core.facts import EtcdMember

CPSWAP_PREFIX = "/cpswap/"
DEFAULT_LOCK_TTL_S = 15  # the lock's lease TTL: a dead holder frees it after this many seconds
DEFAULT_LOCK_WAIT_S = 600.0  # how long a change queues for the lock before giving up
LOCK_PREFIX = "/cpswap/membership-lock"  # keys <prefix>/<lease id hex>, as etcd's concurrency.Mutex
CHANGE_KEY = "/cpswap/membership-change"


def _label(member: EtcdMember) -> str:
    state = "learner" if member.is_learner else "voter"
    started = "started" if member.started else "added but not started"
    return f"{member.name or '(unstarted)'} {member.id:x} ({state}, {started}, peer {', '.join(member.peer_urls)})"


def pending_members(members: Sequence[EtcdMember]) -> tuple[EtcdMember, ...]:
    """Learners and members added but not started: a join that has not finished."""
    return tuple(m for m in members if m.is_learner or not m.started)


def learner_blockers(members: Sequence[EtcdMember], *, target_id: int) -> tuple[EtcdMember, ...]:
    """The pending members that block removing ``target_id`` (every pending member but the target)."""
    return tuple(m for m in pending_members(members) if m.id != target_id)


def learner_rule(members: Sequence[EtcdMember], *, target: EtcdMember) -> str | None:
    """None when removing ``target`` is allowed by the learner rule, else the reason with the members."""
    blockers = learner_blockers(members, target_id=target.id)
    if not blockers:
        return None
    return (f"{len(blockers)} member(s) pending ({'; '.join(_label(m) for m in blockers)}): a pending learner "
            f"or unstarted member blocks the removal of any other member; let its join finish (re-run the "
            f"swap of its slot: add and promote resume it) or remove it first with `cpswap etcd remove` "
            f"of its host")


@dataclass(frozen=True)
class ChangeRecord:
    """A removal that is not yet made good by a replacement: stored as JSON under ``CHANGE_KEY``."""

    removed: str  # the removed member's label (name and id)
    member_id: int
    name: str
    ip: str
    voters_before: int
    holder: str  # host and PID of the process that removed it
    at: str  # ISO time, informational (the executor's clock)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ChangeRecord | None:
        try:
            raw = json.loads(text)
            return cls(removed=str(raw["removed"]), member_id=int(raw["member_id"]), name=str(raw["name"]),
                       ip=str(raw["ip"]),
                       voters_before=int(raw["voters_before"]), holder=str(raw["holder"]), at=str(raw["at"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class ChangeVerdict:
    """What an earlier, recorded removal means for removing ``name``/``ip`` now."""

    allowed: bool
    record_done: bool  # the recorded change is complete (voters restored): the record can be cleared
    reason: str


def change_in_progress(record: ChangeRecord | None, *, members: Sequence[EtcdMember], target_id: int) -> ChangeVerdict:
    """Decide whether a recorded earlier removal still blocks removing member ``target_id``. The
    recorded member itself is the same change resumed (recorded, then interrupted before etcd
    removed it); once etcd removed it, a re-run finds it absent and never gets here."""
    if record is None:
        return ChangeVerdict(True, False, "no membership change in progress")
    if record.member_id == target_id:
        return ChangeVerdict(True, False, f"resuming the change in progress: the removal of {record.removed} "
                                          f"was started by {record.holder} at {record.at}")
    voters = sum(1 for m in members if not m.is_learner and m.started)
    if voters >= record.voters_before and not pending_members(members):
        return ChangeVerdict(True, True, f"the earlier removal of {record.removed} is made good: {voters} started "
                                         f"voters again (it left {record.voters_before - 1} of {record.voters_before})")
    return ChangeVerdict(False, False, (
        f"another membership change is in progress: {record.removed} ({record.name or '-'}, {record.ip or '-'}) "
        f"was removed by {record.holder} at {record.at}, leaving {record.voters_before - 1} of "
        f"{record.voters_before} voters, and its replacement has not joined yet ({voters} started voters now); "
        f"one membership change at a time: finish that swap first (re-run it), or, if it was abandoned for "
        f"good, run `cpswap etcd change --clear`"))
