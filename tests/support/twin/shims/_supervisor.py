"""The k3s supervisor's unauthenticated and agent endpoints, for the twin's k3s servers. Test-only.

Follows k3s-io/k3s ``pkg/server/handlers/router.go`` (1be7bd23587bd49583acc5e8211d39987fe267dd) and
``handlers.go`` (10e42d4f1295c68cd8277738f264a8ae7dc62bf8), served on the supervisor port (6443,
``SupervisorPort`` defaults to ``HTTPSPort``) over TLS with the server's certificate:

- ``/cacerts`` (no auth): the server CA file's bytes (``CACerts``); ``/ping`` (no auth): ``pong``.
- ``/v1-k3s/config``: the ``authed`` router, ``auth.HasRole(k3s:agent, system:nodes,
  system:bootstrappers)``: basic auth ``node:<agent token>`` (the passwd file's ``node`` user,
  group ``k3s:agent``; the agent token is the server token's password when none is set). Not
  authenticated: 401; the ``server`` user (group ``k3s:server`` only): 403. The answer is
  ``config.Control`` as JSON (``Config``), here the critical part and ``Disables`` as
  ``_k3s.control`` builds them.
- anything else: 404 (the real one proxies to the apiserver; the twin's API is kmock elsewhere).

Run as a process (``python3 _supervisor.py --settings FILE``, JSON; the token stays out of argv) for the twin's bootstrapped servers,
or started in-process by the k3s shim once a joined server is up. Each request is handled in a
thread with a socket timeout; ``serve`` returns the server, ``shutdown()`` stops it.
"""
from __future__ import annotations

import base64
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _handler(*, ca_bytes: bytes, control: dict, agent_password: str, server_password: str):
    body = json.dumps(control).encode()

    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def log_message(self, *_: object) -> None:  # quiet: the twin's logs are the shims' own
            pass

        def _send(self, status: int, data: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _user(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            wanted = {"node": agent_password, "server": server_password}.get(user)
            return user if wanted is not None and password == wanted else None

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/cacerts":
                return self._send(200, ca_bytes)
            if self.path == "/ping":
                return self._send(200, b"pong")
            if self.path == "/v1-k3s/config":
                user = self._user()
                if user is None:
                    return self._send(401, b"Unauthorized\n")
                if user != "node":
                    return self._send(403, b"Forbidden\n")
                return self._send(200, body, "application/json")
            return self._send(404, b"404 page not found\n")

    return Handler


def serve(*, address: str, port: int, ca: str, cert: str, key: str, control: dict, token: str) -> ThreadingHTTPServer:
    """Serve in a daemon thread. ``token``: the cluster token's password (server and agent alike)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((address, port), _handler(ca_bytes=Path(ca).read_bytes(), control=control,
                                                          agent_password=token, server_password=token))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                     name="k3s-supervisor").start()
    return server


if __name__ == "__main__":
    if sys.argv[1:2] != ["--settings"] or len(sys.argv) != 3:
        sys.exit("usage: _supervisor.py --settings FILE (JSON: address, port, ca, cert, key, control, token)")
    serve(**json.loads(Path(sys.argv[2]).read_text()))
    threading.Event().wait()  # the process's lifetime is the host's (the twin kills it by PID)
