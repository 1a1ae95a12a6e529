"""A loopback TCP forwarder: the same API server reached under a second address. Test-only.

``with Forwarder(target_host, target_port) as f: f.url`` listens on 127.0.0.1 (a free port) and
pipes each connection to the target, so a test can rotate a kubeconfig's ``server`` (a new load
balancer address in front of the same cluster) without a second cluster. Bounded: the accept loop
and every pipe end on ``close()`` (``lifetime_s``, default the reconcile loops' ``LOOP_BOUND_S``, only
ends one a test leaked), and each thread is joined.
"""
from __future__ import annotations

import socket
import threading
import time

from tests.support.kube_emulator import LOOP_BOUND_S


class Forwarder:
    def __init__(self, target_host: str, target_port: int, *, lifetime_s: float | None = None) -> None:
        self.target = (target_host, target_port)
        self.deadline = time.monotonic() + (LOOP_BOUND_S if lifetime_s is None else lifetime_s)
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> Forwarder:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self.deadline

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="twin-forwarder")
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while self._running():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            for sock in (client, upstream):
                sock.settimeout(0.2)
                self._sockets.append(sock)
            self._spawn(self._pipe, client, upstream)
            self._spawn(self._pipe, upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        while self._running():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                sink.sendall(data)
            except OSError:
                break
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()
