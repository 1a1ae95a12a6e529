"""recreate on a ``unique`` data class (the only copy) needs ``acceptDataLoss: true`` and the plan
shows it as data loss (issue 13)."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from cpswap.cli import main
from cpswap.core.recovery import parse_pvc_recovery
from cpswap.core.renderers.kube import policy_json
from tests.support.pulumi_mocks import ROOT


@pytest.mark.parametrize("spec, problem, loss", [
    ({"policy": "recreate", "dataClass": "unique"}, "dataClass unique means the claim holds the only copy", None),
    ({"policy": "recreate", "dataClass": "unique", "acceptDataLoss": False}, "set pvcRecovery.db.acceptDataLoss: true",
     None),
    ({"policy": "recreate", "dataClass": "unique", "acceptDataLoss": "yes"}, "acceptDataLoss=\"'yes'\": must be true or false", None),
    ({"policy": "recreate", "dataClass": "unique", "acceptDataLoss": True}, None, True),
    ({"policy": "manual", "dataClass": "unique"}, None, False),
    ({"policy": "skip", "dataClass": "unique"}, None, False),
    ({"policy": "recreate", "dataClass": "replicated"}, None, False),
    ({"policy": "recreate", "dataClass": "disposable", "acceptDataLoss": True}, None, False),
])
def test_recreate_of_the_only_copy_needs_an_acknowledgement(spec, problem, loss):
    policies, problems = parse_pvc_recovery({"db": spec})
    if problem:
        assert policies == () and any(problem in str(v) for v in problems), problems
        return
    assert problems == ()
    (policy,) = policies
    assert policy.data_loss is loss
    again, none = parse_pvc_recovery(json.loads(policy_json(policies)), field="--policy-json")  # what the executor parses
    assert again == policies and none == ()


def _project(tmp_path, accept):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    spec = {"policy": "recreate", "dataClass": "unique", "order": 0}
    if accept is not None:
        spec["acceptDataLoss"] = accept
    doc["config"]["cpswap:pvcRecovery"]["onecloud/mysql"] = spec
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / ".cpswap").mkdir()
    shutil.copy(ROOT / ".cpswap" / "applied-prod.json", tmp_path / ".cpswap" / "applied-prod.json")
    return tmp_path


def test_the_plan_shows_an_acknowledged_loss_and_refuses_an_unacknowledged_one(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    assert main(["plan", "--stack", "prod", "--dir", str(_project(tmp_path / "a", None))]) == 2
    assert "pvcRecovery.onecloud/mysql.policy='recreate': dataClass unique" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    project = _project(tmp_path / "b", True)
    assert main(["plan", "--stack", "prod", "--dir", str(project)]) == 0
    out = capsys.readouterr().out
    assert "recreate (DATA LOSS)" in out
    assert "WARNING: DATA LOSS: onecloud/mysql (?, dataClass unique: the only copy) is recreated empty" in out
    assert main(["plan", "--stack", "prod", "--dir", str(project), "--json"]) == 0
    claims = json.loads(capsys.readouterr().out)["claims"]
    assert [c["data_loss"] for c in claims if c["name"] == "mysql"] == [True]
    assert not any(c["data_loss"] for c in claims if c["name"] != "mysql")
