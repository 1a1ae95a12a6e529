"""PVC recovery takes only the departed node's claims: the swap's rendered recover-pvcs passes
--old-node, and runs without a change render the same command (issue 14). Pure, fast."""
from __future__ import annotations

import json

import pytest

from cpswap.core.errors import ConfigError
from cpswap.core.model import parse_stack_config
from cpswap.core.rules import declared_views
from cpswap.core.slots import departed_nodes, slot_commands
from cpswap.stackfiles import recorded_departed

CONFIG = {"distribution": "k3s", "controlPlaneEndpoint": "10.9.0.100:6443",
          "members": {"cp1": {"name": "new-1", "ip": "10.9.0.4"}, "cp2": {"name": "n2", "ip": "10.9.0.2"},
                      "cp3": {"name": "n3", "ip": "10.9.0.3"}}}
MODEL = parse_stack_config(CONFIG, stack="t")


@pytest.mark.parametrize("changes,recorded,expected", [
    ({"cp1": "old-1"}, {}, {"cp1": "old-1"}),                       # this run's swap
    ({}, {"cp1": "old-1"}, {"cp1": "old-1"}),                       # a later run: the recorded one stays
    ({"cp1": "older"}, {"cp1": "old-1"}, {"cp1": "older"}),         # the change of this run wins
    ({"cp1": "new-1"}, {}, {}),                                     # in-place rebuild keeping the name
    ({}, {"cp1": "new-1"}, {}),                                     # recorded, but the slot's host has it again
    ({}, {"cp9": "x"}, {}),                                         # a slot no longer in the config
    ({}, {}, {}),                                                   # adoption: nothing known
    ({"cp1": None}, {"cp1": "older"}, {}),                          # a surge: its handover moves the claims
])
def test_departed_nodes(changes, recorded, expected):
    assert departed_nodes(model=MODEL, changes=changes, recorded=recorded) == expected


def pvcs(departed: str | None) -> str:
    spec = next(s for s in slot_commands(model=MODEL, member=MODEL.members[0], departed=departed)
                if s.name == "cp1-pvcs")
    return spec.create


def test_the_swap_renders_old_node_and_a_later_run_renders_the_same_command():
    assert "recover-pvcs --new-node new-1 --orphaned --old-node old-1 --policy-json" in pvcs("old-1")
    assert "--old-node" not in pvcs(None) and "--orphaned --policy-json" in pvcs(None)
    swap = declared_views(model=MODEL, departed=departed_nodes(model=MODEL, changes={"cp1": "old-1"}, recorded={}))
    later = declared_views(model=MODEL, departed=departed_nodes(model=MODEL, changes={}, recorded={"cp1": "old-1"}))
    assert swap == later  # no input differs: the run after the swap updates nothing


def test_recorded_departed_reads_the_saved_outputs_strictly(tmp_path):
    (tmp_path / ".cpswap").mkdir()
    path = tmp_path / ".cpswap" / "applied-t.json"
    assert recorded_departed(directory=tmp_path, stack="t") == {}
    path.write_text(json.dumps({"membership": {}, "departedNodes": {"cp1": "old-1"}}))
    assert recorded_departed(directory=tmp_path, stack="t") == {"cp1": "old-1"}
    path.write_text(json.dumps({"departedNodes": {"cp1": "Bad Name"}}))
    with pytest.raises(ConfigError, match=r"applied-t.json.departedNodes.cp1"):
        recorded_departed(directory=tmp_path, stack="t")
    path.write_text(json.dumps({"departedNodes": ["old-1"]}))
    with pytest.raises(ConfigError, match="must be an object of slot -> node name"):
        recorded_departed(directory=tmp_path, stack="t")
