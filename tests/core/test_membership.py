"""The learner rule and one-change-at-a-time decisions (cpswap.core.membership), table-driven and
with Hypothesis."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpswap.core.facts import EtcdMember
from cpswap.core.membership import ChangeRecord, change_in_progress, learner_blockers, learner_rule


def member(i: int, *, learner: bool = False, started: bool = True) -> EtcdMember:
    return EtcdMember(id=i, name=f"m{i}" if started else "", peer_urls=(f"https://10.0.0.{i}:2380",),
                      client_urls=(f"https://10.0.0.{i}:2379",) if started else (), is_learner=learner)


THREE = (member(1), member(2), member(3))


@pytest.mark.parametrize("members,target,blocked_by", [
    (THREE, 3, ()),
    ((*THREE, member(4, learner=True, started=False)), 3, (4,)),
    ((*THREE, member(4, learner=True, started=True)), 3, (4,)),  # a started learner not yet promoted
    ((*THREE, member(4, started=False)), 2, (4,)),  # an unstarted voter
    ((*THREE, member(4, learner=True, started=False)), 4, ()),  # the pending member itself
    ((*THREE, member(4, learner=True), member(5, started=False)), 4, (5,)),
])
def test_learner_rule(members, target, blocked_by):
    chosen = next(m for m in members if m.id == target)
    assert tuple(m.id for m in learner_blockers(members, target_id=target)) == blocked_by
    reason = learner_rule(members, target=chosen)
    assert (reason is None) == (not blocked_by)
    if reason:
        assert f"{len(blocked_by)} member(s) pending" in reason and "blocks the removal of any other member" in reason


RECORD = ChangeRecord(removed="m3 3", member_id=3, name="m3", ip="10.0.0.3", voters_before=3, holder="op pid 7",
                      at="2026-12-01T01:00:00Z")


@pytest.mark.parametrize("record,members,target,allowed,done,phrase", [
    (None, THREE, 2, True, False, "no membership change in progress"),
    (RECORD, THREE[:2], 2, False, False, "another membership change is in progress: m3 3"),
    (RECORD, THREE, 3, True, False, "resuming the change in progress"),  # recorded, not yet removed
    (RECORD, (*THREE[:2], member(4, learner=True)), 2, False, False, "has not joined yet"),
    (RECORD, (*THREE[:2], member(4)), 2, True, True, "is made good: 3 started voters again"),
    (RECORD, (*THREE[:2], member(4), member(5, learner=True, started=False)), 2, False, False, "in progress"),
])
def test_change_in_progress(record, members, target, allowed, done, phrase):
    verdict = change_in_progress(record, members=members, target_id=target)
    assert (verdict.allowed, verdict.record_done) == (allowed, done)
    assert phrase in verdict.reason


def test_record_round_trips_and_garbage_is_no_record():
    assert ChangeRecord.from_json(RECORD.to_json()) == RECORD
    assert ChangeRecord.from_json("{not json") is None
    assert ChangeRecord.from_json('{"removed": "x"}') is None


@given(voters=st.integers(2, 7), extra=st.integers(0, 3), pending=st.integers(0, 2))
def test_a_recorded_removal_blocks_others_until_the_voters_are_back(voters, extra, pending):
    record = ChangeRecord(removed="m1 1", member_id=1, name="m1", ip="10.0.0.1", voters_before=voters, holder="h", at="t")
    live = [member(i) for i in range(2, voters + 1 + extra)]  # m1 gone, maybe replacements added
    live += [member(100 + i, learner=True, started=False) for i in range(pending)]
    verdict = change_in_progress(record, members=live, target_id=2)
    restored = len([m for m in live if m.started and not m.is_learner]) >= voters and pending == 0
    assert verdict.allowed == restored == verdict.record_done
