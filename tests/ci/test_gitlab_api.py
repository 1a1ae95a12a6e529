"""ci/gitlab_api.py against a loopback stand-in of the GitLab REST endpoints it calls
(tests/support/gitlab_api_standin.py): ONE note per stack updated in place, also when GitLab returns a
short page with more behind it; the applied membership committed to the default branch, or proposed as
a merge request when the branch is protected; the token never printed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.gitlab_api_standin import GitLabStandin

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glpat-TESTTOKEN0123456789"


def _run(gitlab: GitLabStandin, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CPSWAP_GITLAB_TOKEN": TOKEN, "CI_API_V4_URL": gitlab.url, "CI_PROJECT_ID": "group/stacks",
           "CI_MERGE_REQUEST_IID": "7", "CI_DEFAULT_BRANCH": "main", "CI_PIPELINE_ID": "4242"}
    done = subprocess.run([sys.executable, str(ROOT / "ci" / "gitlab_api.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert TOKEN not in done.stdout + done.stderr
    return done


def test_one_note_per_stack_is_created_then_updated_in_place(tmp_path):
    body = tmp_path / "comment.md"
    with GitLabStandin(token=TOKEN) as gitlab:
        # 150 earlier notes, the first page's last one unreadable: page 1 comes back short (99 of 100)
        gitlab.state.notes.extend({"id": i, "body": f"review {i}"} for i in range(1, 151))
        gitlab.state.unreadable.add(100)
        gitlab.state.notes[148]["body"] = "a reviewer quotes <!-- cpswap-plan stack=prod --> here"  # not ours
        body.write_text("<!-- cpswap-plan stack=prod -->\nfirst plan\n")
        first = _run(gitlab, tmp_path, "note", "--stack", "prod", "--body", str(body))
        assert first.returncode == 0, first.stderr
        assert first.stdout == "gitlab_api: posted the cpswap note of stack prod (note 151)\n"
        body.write_text("<!-- cpswap-plan stack=prod -->\nsecond plan\n")
        second = _run(gitlab, tmp_path, "note", "--stack", "prod", "--body", str(body))
        assert second.returncode == 0, second.stderr
        assert second.stdout == "gitlab_api: updated the cpswap note of stack prod (note 151)\n"
        ours = [n for n in gitlab.state.notes if n["body"].startswith("<!-- cpswap-plan stack=prod -->")]
        assert ours == [{"id": 151, "body": "<!-- cpswap-plan stack=prod -->\nsecond plan\n"}]
        assert gitlab.state.notes[148]["body"].startswith("a reviewer quotes")
        assert gitlab.state.requests.count(("GET", "/api/v4/projects/group%2Fstacks/merge_requests/7/notes")) == 4


def test_a_body_without_the_marker_is_refused(tmp_path):
    (tmp_path / "comment.md").write_text("no marker\n")
    with GitLabStandin(token=TOKEN) as gitlab:
        done = _run(gitlab, tmp_path, "note", "--stack", "prod", "--body", str(tmp_path / "comment.md"))
        assert done.returncode != 0 and "does not start with the cpswap marker" in done.stderr
        assert gitlab.state.notes == []


def test_applied_membership_is_committed_to_the_default_branch(tmp_path):
    (tmp_path / ".cpswap").mkdir()
    (tmp_path / ".cpswap" / "applied-prod.json").write_text('{"membership": {}}\n')
    with GitLabStandin(token=TOKEN) as gitlab:
        gitlab.state.files[("main", ".cpswap/applied-prod.json")] = "old"
        done = _run(gitlab, tmp_path, "applied", "--stack", "prod")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "gitlab_api: committed .cpswap/applied-prod.json to main\n"
        assert gitlab.state.files[("main", ".cpswap/applied-prod.json")] == '{"membership": {}}\n'
        assert gitlab.state.merge_requests == []


def test_a_protected_branch_gets_a_merge_request_instead(tmp_path):
    (tmp_path / ".cpswap").mkdir()
    (tmp_path / ".cpswap" / "applied-prod.json").write_text('{"membership": {"cp1": {}}}\n')
    with GitLabStandin(token=TOKEN) as gitlab:
        gitlab.state.protected.add("main")
        done = _run(gitlab, tmp_path, "applied", "--stack", "prod")
        assert done.returncode == 0, done.stderr
        assert "main refused the commit (HTTP 403, protected?)" in done.stdout
        assert "opened merge request !1 with .cpswap/applied-prod.json" in done.stdout
        assert ("main", ".cpswap/applied-prod.json") not in gitlab.state.files
        assert gitlab.state.files[("cpswap/applied-prod-4242", ".cpswap/applied-prod.json")] == '{"membership": {"cp1": {}}}\n'
        (mr,) = gitlab.state.merge_requests
        assert (mr["source_branch"], mr["target_branch"]) == ("cpswap/applied-prod-4242", "main")
