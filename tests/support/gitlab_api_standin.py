"""A stand-in for the few GitLab REST API v4 endpoints ci/gitlab_api.py calls, on loopback. Test-only.

It refuses what GitLab refuses for those calls, from gitlabhq/gitlabhq (docs/CONFORMANCE.md, "CI pipelines"):
- lib/api/notes.rb at 017a6c129d6a9e4ad9fec792cd84f88641d7dbfe: GET .../merge_requests/:iid/notes takes
  ``sort`` asc|desc (default desc), ``order_by`` created_at|updated_at and pagination (page, per_page
  up to 100, ``X-Next-Page`` header); notes the token cannot read are dropped AFTER paginating, so a page
  may be short while more follow (``unreadable`` below plays that); POST needs ``body``; PUT's ``body``
  may not be blank.
- lib/api/files.rb: GET .../repository/files/:file_path needs a non-blank ``ref``; a missing file is 404.
- lib/api/commits.rb at 8e66411488e87d59dde65c690892d9495292fe86: POST .../repository/commits needs
  ``branch`` (non-blank), ``commit_message`` and ``actions`` (action create|update|move|delete|chmod and
  file_path); pushing to a protected branch is 403 (``authorize_push_to_branch!``); a new branch needs
  ``start_branch``; a failed action (create over an existing file, update of a missing one) is 400.
- merge requests: POST .../merge_requests needs source_branch, target_branch and title.
Every request must carry the PRIVATE-TOKEN header (401 otherwise).
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ACTIONS = {"create", "update", "move", "delete", "chmod"}


@dataclass
class GitLabState:
    token: str
    notes: list[dict] = field(default_factory=list)  # {"id", "body"}
    unreadable: set[int] = field(default_factory=set)  # note ids the token cannot read
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (branch, path) -> content
    branches: set[str] = field(default_factory=lambda: {"main"})
    protected: set[str] = field(default_factory=set)
    merge_requests: list[dict] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: GitLabState

    def log_message(self, *args) -> None:  # quiet
        return

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.state.requests.append((method, url.path))
        if self.headers.get("PRIVATE-TOKEN") != self.state.token:
            return self._send(401, {"message": "401 Unauthorized"})
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes(?:/(\d+))?", url.path)
        if m:
            return self._notes(method, query, note_id=m.group(3))
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/repository/files/(.+)", url.path)
        if m and method == "GET":
            ref = query.get("ref", "")
            if not ref:
                return self._send(400, {"error": "ref is missing, ref is empty"})
            path = unquote(m.group(2))
            if (ref, path) not in self.state.files:
                return self._send(404, {"message": "404 File Not Found"})
            return self._send(200, {"file_path": path, "ref": ref})
        if re.fullmatch(r"/api/v4/projects/([^/]+)/repository/commits", url.path) and method == "POST":
            return self._commit(self._body())
        if re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests", url.path) and method == "POST":
            body = self._body()
            missing = [k for k in ("source_branch", "target_branch", "title") if not body.get(k)]
            if missing:
                return self._send(400, {"error": f"{', '.join(missing)} is missing"})
            mr = {"iid": len(self.state.merge_requests) + 1, **body}
            self.state.merge_requests.append(mr)
            return self._send(201, mr)
        return self._send(404, {"error": "404 Not Found"})

    def _notes(self, method: str, query: dict, *, note_id: str | None) -> None:
        notes = self.state.notes
        if method == "GET" and note_id is None:
            if query.get("sort", "desc") not in ("asc", "desc") or query.get("order_by", "created_at") not in (
                    "created_at", "updated_at"):
                return self._send(400, {"error": "sort or order_by does not have a valid value"})
            ordered = sorted(notes, key=lambda n: n["id"], reverse=query.get("sort", "desc") == "desc")
            page, per_page = int(query.get("page", 1)), min(int(query.get("per_page", 20)), 100)
            chunk = ordered[(page - 1) * per_page: page * per_page]
            more = page * per_page < len(ordered)
            readable = [n for n in chunk if n["id"] not in self.state.unreadable]  # filtered after paginating
            return self._send(200, readable, {"X-Next-Page": str(page + 1) if more else ""})
        if method == "POST" and note_id is None:
            body = self._body().get("body")
            if body is None:
                return self._send(400, {"error": "body is missing"})
            note = {"id": max((n["id"] for n in notes), default=0) + 1, "body": body}
            notes.append(note)
            return self._send(201, note)
        if method == "PUT" and note_id is not None:
            body = self._body().get("body")
            if body is not None and not body.strip():
                return self._send(400, {"error": "body is empty"})
            note = next((n for n in notes if n["id"] == int(note_id)), None)
            if note is None:
                return self._send(404, {"message": "404 Note Not Found"})
            note["body"] = body if body is not None else note["body"]
            return self._send(200, note)
        return self._send(405, {"error": "405 Method Not Allowed"})

    def _commit(self, body: dict) -> None:
        branch, start = body.get("branch") or "", body.get("start_branch")
        if not branch or not body.get("commit_message") or not isinstance(body.get("actions"), list):
            return self._send(400, {"error": "branch, commit_message or actions is missing"})
        if branch in self.state.protected:
            return self._send(403, {"message": "403 Forbidden - You are not allowed to push into this branch"})
        if branch not in self.state.branches and not start:
            return self._send(400, {"message": "You can only create or edit files when you are on a branch"})
        base = start or branch
        for action in body["actions"]:
            if action.get("action") not in ACTIONS or not action.get("file_path"):
                return self._send(400, {"error": "actions[action] does not have a valid value"})
            exists = (base, action["file_path"]) in self.state.files
            if action["action"] == "create" and exists:
                return self._send(400, {"message": "A file with this name already exists"})
            if action["action"] == "update" and not exists:
                return self._send(400, {"message": "A file with this name doesn't exist"})
        if branch not in self.state.branches:
            self.state.branches.add(branch)
            for (b, path), content in list(self.state.files.items()):
                if b == base:
                    self.state.files[(branch, path)] = content
        for action in body["actions"]:
            self.state.files[(branch, action["file_path"])] = action.get("content", "")
        return self._send(201, {"id": "0" * 40, "title": body["commit_message"]})

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")


class GitLabStandin:
    """``with GitLabStandin(token=...) as gitlab:`` serves on 127.0.0.1; ``gitlab.url`` is CI_API_V4_URL."""

    def __init__(self, *, token: str) -> None:
        self.state = GitLabState(token=token)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/v4"

    def __enter__(self) -> GitLabStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
