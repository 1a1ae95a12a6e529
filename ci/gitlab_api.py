#!/usr/bin/env python3
"""GitLab REST calls of the cpswap pipeline (.gitlab-ci.yml), standard library only.

    python3 ci/gitlab_api.py note --stack S --body FILE   create or update THE merge-request note of stack S
                                                          (found by its hidden marker, the body's first line)
    python3 ci/gitlab_api.py applied --stack S            commit .cpswap/applied-S.json to the default branch,
                                                          or open a merge request where the branch is protected

The token comes from the masked CI/CD variable CPSWAP_GITLAB_TOKEN (a project access token with the
api scope), sent only in the PRIVATE-TOKEN header, never printed. Without it nothing is posted and the
job says so (the note and the applied file stay in the job's artifacts). API: notes
(/projects/:id/merge_requests/:iid/notes), commits (/projects/:id/repository/commits) and merge
requests (/projects/:id/merge_requests) of GitLab's REST API v4 (gitlabhq/gitlabhq lib/api/notes.rb at
017a6c129d6a9e4ad9fec792cd84f88641d7dbfe, lib/api/commits.rb at 8e66411488e87d59dde65c690892d9495292fe86).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

MAX_PAGES = 20  # 2,000 notes: bounded


def _call(method: str, path: str, payload: dict | None = None) -> tuple[object, str]:
    """One REST call: (decoded JSON body, the X-Next-Page header, "" on the last page)."""
    url = f"{os.environ['CI_API_V4_URL'].rstrip('/')}{path}"
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"PRIVATE-TOKEN": os.environ["CPSWAP_GITLAB_TOKEN"],
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        next_page = response.headers.get("X-Next-Page", "") or ""
    return (json.loads(body) if body else None), next_page.strip()


def _api(method: str, path: str, payload: dict | None = None) -> object:
    return _call(method, path, payload)[0]


def _project() -> str:
    return urllib.parse.quote(os.environ["CI_PROJECT_ID"], safe="")


def note(*, stack: str, body: str) -> None:
    marker = body.splitlines()[0] if body else ""
    if not marker.startswith("<!-- cpswap-plan"):
        raise SystemExit(f"gitlab_api note: the body of stack {stack} does not start with the cpswap marker")
    base = f"/projects/{_project()}/merge_requests/{os.environ['CI_MERGE_REQUEST_IID']}/notes"
    page = "1"
    for _ in range(MAX_PAGES):
        # follow X-Next-Page, not the page's length: GitLab drops notes the token cannot read after
        # paginating, so a page may be short with more pages behind it (lib/api/notes.rb)
        notes, page = _call("GET", f"{base}?per_page=100&sort=asc&order_by=created_at&page={page}")
        mine = next((n for n in notes if isinstance(n, dict) and str(n.get("body", "")).startswith(marker)), None)
        if mine is not None:
            _api("PUT", f"{base}/{mine['id']}", {"body": body})
            print(f"gitlab_api: updated the cpswap note of stack {stack} (note {mine['id']})")
            return
        if not page:
            break
    created = _api("POST", base, {"body": body})
    print(f"gitlab_api: posted the cpswap note of stack {stack} (note {created['id']})")


def applied(*, stack: str) -> None:
    path = f".cpswap/applied-{stack}.json"
    content = Path(path).read_text()
    branch = os.environ["CI_DEFAULT_BRANCH"]
    project = _project()
    quoted = urllib.parse.quote(path, safe="")
    try:
        _api("GET", f"/projects/{project}/repository/files/{quoted}?ref={urllib.parse.quote(branch)}")
        action = "update"
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        action = "create"
    message = f"cpswap: applied membership of stack {stack} after pipeline {os.environ.get('CI_PIPELINE_ID', '?')}"
    commit = {"branch": branch, "commit_message": message,
              "actions": [{"action": action, "file_path": path, "content": content}]}
    try:
        _api("POST", f"/projects/{project}/repository/commits", commit)
        print(f"gitlab_api: committed {path} to {branch}")
        return
    except urllib.error.HTTPError as exc:
        if exc.code not in (400, 403):
            raise
        print(f"gitlab_api: {branch} refused the commit (HTTP {exc.code}, protected?); proposing a merge request")
    topic = f"cpswap/applied-{stack}-{os.environ.get('CI_PIPELINE_ID', 'run')}"
    _api("POST", f"/projects/{project}/repository/commits", {**commit, "branch": topic, "start_branch": branch})
    created = _api("POST", f"/projects/{project}/merge_requests",
                   {"source_branch": topic, "target_branch": branch, "title": message, "remove_source_branch": True})
    print(f"gitlab_api: opened merge request !{created['iid']} with {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    n = sub.add_parser("note")
    n.add_argument("--stack", required=True)
    n.add_argument("--body", type=Path, required=True)
    a = sub.add_parser("applied")
    a.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    if not os.environ.get("CPSWAP_GITLAB_TOKEN"):
        what = "the merge-request note" if args.verb == "note" else f".cpswap/applied-{args.stack}.json"
        print(f"gitlab_api: CPSWAP_GITLAB_TOKEN is not set: {what} of stack {args.stack} was not posted; "
              "it is kept in the job's artifacts", file=sys.stderr)
        return 0
    if args.verb == "note":
        note(stack=args.stack, body=args.body.read_text())
    else:
        applied(stack=args.stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
