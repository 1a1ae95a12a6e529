"""A recording stand-in for kube-apiserver on 127.0.0.1 that routes request paths as the real one
does, so a test can prove that bad input sends nothing (issue 13). Test-only.

``FakeApiServer()`` (context manager): ``.url``, ``.kubeconfig_text``, ``.write_kubeconfig(path)``,
``.requests`` (every HTTP request: method, path, query), ``.connections`` (TCP connections
accepted, HTTP or not: an etcd gRPC dial counts too), ``.objects`` (what it stores) and
``.seed_nodes(*names)``.

Routing follows the real server, not what a client meant:

- kube-apiserver installs, per resource, the collection actions (LIST, POST, DELETECOLLECTION) at
  ``<prefix>/<resource>`` and the item actions (GET, PUT, PATCH, DELETE) at
  ``<prefix>/<resource>/{name}``: kubernetes/kubernetes@b7d23d711108805cd0dd15b1e208b30c6c3e9eec
  ``staging/src/k8s.io/apiserver/pkg/endpoints/installer.go`` (``registerResourceHandlers``,
  "Add actions at the resource path" / "at the item path").
- Its router is go-restful's CurlyRouter, which tokenises the path without empty tokens (with
  ``TrimRightSlashEnabled``, trailing slashes trimmed): emicklei/go-restful@d027240e5b12b402550ea1185315b9628c941e27
  ``route.go`` (``tokenizePath``) and ``curly.go`` (``SelectRoute``). So ``DELETE /api/v1/nodes/``
  (a client's ``delete_node("")``) is DELETECOLLECTION on nodes, answered 200 with the deleted
  list: the apiserver log in kubernetes-client/python#2209 (``verb="DELETE" URI="/api/v1/nodes/"
  resp=200``, every Node gone) and kubernetes/kubernetes#127746.
- Item reads of an absent object answer 404 with a ``Status`` (reason NotFound); unknown
  resources answer 404 as well (the real server has no route for them). Only the resources
  cpswap uses are known; anything else it does not model answers 405 MethodNotAllowed rather
  than pretending to succeed.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

KNOWN = {  # (api prefix, resource) -> namespaced
    ("/api/v1", "nodes"): False, ("/api/v1", "namespaces"): False, ("/api/v1", "persistentvolumes"): False,
    ("/api/v1", "pods"): True, ("/api/v1", "persistentvolumeclaims"): True, ("/api/v1", "configmaps"): True,
    ("/api/v1", "secrets"): True, ("/apis/apps/v1", "statefulsets"): True, ("/apis/apps/v1", "deployments"): True,
    ("/apis/machine.openshift.io/v1beta1", "machines"): True, ("/apis/operator.openshift.io/v1", "etcds"): False,
    ("/apis/kubean.io/v1alpha1", "clusters"): False, ("/apis/kubean.io/v1alpha1", "clusteroperations"): False,
}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class FakeApiServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.objects: dict[tuple[str, str, str | None], dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        owner = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                with owner._lock:
                    owner.connections += 1
                return True

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with owner._lock:
                    owner.requests.append({"method": self.command, "path": parts.path, "query": parts.query})
                    code, doc = owner._route(self.command, parts.path, body)
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def kubeconfig_text(self) -> str:
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]})

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(self.kubeconfig_text)
        return path

    def seed_nodes(self, *names: str) -> None:
        store = self.objects.setdefault(("/api/v1", "nodes", None), {})
        for name in names:
            store[name] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        tokens = [t for t in path.split("/") if t]  # CurlyRouter: no empty tokens
        if tokens[:2] == ["api", "v1"]:
            prefix, rest = "/api/v1", tokens[2:]
        elif tokens[:1] == ["apis"] and len(tokens) >= 3:
            prefix, rest = f"/apis/{tokens[1]}/{tokens[2]}", tokens[3:]
        else:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or (prefix, rest[0]) not in KNOWN or len(rest) > 2:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        resource, name = rest[0], (rest[1] if len(rest) == 2 else None)
        store = self.objects.setdefault((prefix, resource, namespace), {})
        if name is None:
            if method == "GET":
                return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": list(store.values())}
            if method == "DELETE":  # DELETECOLLECTION: every object goes, the list of them comes back
                deleted = list(store.values())
                store.clear()
                return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": deleted}
            if method == "POST":
                obj = json.loads(body or b"{}")
                obj_name = (obj.get("metadata") or {}).get("name")
                if not obj_name:
                    return 422, _status(422, "Invalid", "metadata.name: Required value: name or generateName is required")
                if obj_name in store:
                    return 409, _status(409, "AlreadyExists", f'{resource} "{obj_name}" already exists')
                store[obj_name] = obj
                return 201, obj
            return 405, _status(405, "MethodNotAllowed", f"{method} is not supported on the {resource} collection here")
        if name not in store:
            return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
        if method == "GET":
            return 200, store[name]
        if method == "DELETE":
            return 200, store.pop(name)
        return 405, _status(405, "MethodNotAllowed", f"{method} on {resource}/{name} is not modelled by this stand-in")
