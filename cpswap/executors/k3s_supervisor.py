"""Reads the cluster's critical k3s configuration from a survivor, as a joining k3s server does. Not pure.

Follows k3s-io/k3s ``pkg/clientaccess/token.go`` (``ParseAndValidateToken``, ``getCACerts``,
``validateCAHash``, ``hashCA``, ``GetHTTPClient``, ``get``) and ``pkg/cluster/bootstrap.go``
``compareConfig`` (user ``node``, ``GET /v1-k3s/config``):

1. ``GET <server>/cacerts`` verified against the system's CA bundle; if that succeeds the cluster CA
   is publicly trusted and nothing is pinned. Otherwise fetch ``/cacerts`` without verification,
   then fetch it again verifying the server's certificate (and its name) against that bundle.
2. A token with a CA hash (``K10<sha256>::...``) must match the bundle's hash (the file's bytes for
   one certificate; the DER of the bundle's root for several), else "token CA hash does not match
   the Cluster CA certificate hash". A token without one is accepted, as k3s does (it warns); the
   result says the CA was not pinned.
3. ``GET <server>/v1-k3s/config`` with basic auth ``node:<password>`` (a bootstrap token as a bearer
   token) over the verified connection; a status outside 2xx fails with ``<url>: <status>``.

Every request is bounded (k3s's ``defaultClientTimeout``, 10 s). The token is never logged, put
in an argv or in an error message. Errors name the URL and the reason.
"""
from __future__ import annotations

import base64
import hashlib
import ssl
from http.client import HTTPException, HTTPSConnection
from urllib.parse import urlsplit

from cpswap.core import k3s_critical as kc

TIMEOUT_S = 10.0  # pkg/clientaccess/token.go defaultClientTimeout


class SupervisorError(Exception):
    """The config could not be read; the message names the URL and why (never the token)."""


def _get(url: str, *, context: ssl.SSLContext, timeout_s: float, headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    connection = HTTPSConnection(parts.hostname or "", parts.port or 443, timeout=timeout_s, context=context)
    try:
        connection.request("GET", parts.path or "/", headers=headers or {})
        response = connection.getresponse()
        body = response.read()
    except (OSError, HTTPException) as exc:  # ssl.SSLError and socket timeouts are OSErrors
        raise SupervisorError(f"{url}: {type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
    if not 200 <= response.status <= 299:
        raise SupervisorError(f"{url}: {response.status} {response.reason}")
    return body


def _insecure() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _pinned(cacerts: bytes) -> ssl.SSLContext:
    """``GetHTTPClient``: RootCAs is the bundle alone (server name verified, as Go does)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=cacerts.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise SupervisorError(f"the server's /cacerts holds no usable CA certificate: {exc}") from None
    return context


def hash_ca(cacerts: bytes) -> str:
    """``hashCA``: sha256 of the bytes for one certificate; for a bundle, of the DER of the first
    certificate's root (found by issuer, as far as the bundle goes), else of the bytes."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(cacerts)
    except ValueError:
        certs = []
    data = cacerts
    if len(certs) > 1:
        current, rest = certs[0], certs[1:]
        for _ in range(len(rest)):
            parent = next((c for c in rest if c.subject == current.issuer), None)
            if parent is None:
                break
            current = parent
            if current.subject == current.issuer:
                from cryptography.hazmat.primitives.serialization import Encoding
                data = current.public_bytes(Encoding.DER)
                break
    return hashlib.sha256(data).hexdigest()


def cluster_ca(*, server: str, ca_hash: str, timeout_s: float = TIMEOUT_S) -> tuple[ssl.SSLContext, bool]:
    """Steps 1 and 2: the context to reach ``server`` with, and whether the CA was pinned by the token."""
    url = f"{server}/cacerts"
    try:
        _get(url, context=ssl.create_default_context(), timeout_s=timeout_s)
        return ssl.create_default_context(), False  # publicly trusted: k3s pins nothing (and skips the hash)
    except SupervisorError:
        pass
    cacerts = _get(url, context=_insecure(), timeout_s=timeout_s)
    context = _pinned(cacerts)
    try:
        _get(url, context=context, timeout_s=timeout_s)
    except SupervisorError as exc:
        raise SupervisorError(f"CA cert validation failed: {exc}") from None
    if ca_hash:
        served = hash_ca(cacerts)
        if served != ca_hash:
            raise SupervisorError(f"token CA hash does not match the Cluster CA certificate hash: {ca_hash} != {served}")
    return context, bool(ca_hash)


def read_critical(*, server: str, token: str | None, timeout_s: float = TIMEOUT_S) -> kc.CriticalRead:
    """The cluster's critical config from ``server`` (``https://<VIP>:6443``), or why not."""
    server = server.rstrip("/")
    url = f"{server}{kc.CONFIG_PATH}"
    if not token:
        return kc.CriticalRead(url=url, config=None, error="no k3s token ($CPSWAP_K3S_TOKEN_DATA, secret cpswap:k3sToken)")
    try:
        parsed = kc.parse_join_token(token.strip()).as_user("node")
    except kc.ShapeError as exc:
        return kc.CriticalRead(url=url, config=None, error=f"the k3s token (cpswap:k3sToken): {exc}")
    try:
        context, pinned = cluster_ca(server=server, ca_hash=parsed.ca_hash, timeout_s=timeout_s)
        if parsed.bootstrap:
            auth = f"Bearer {parsed.password}"
        else:
            auth = "Basic " + base64.b64encode(f"{parsed.username}:{parsed.password}".encode()).decode()
        body = _get(url, context=context, timeout_s=timeout_s, headers={"Authorization": auth})
        return kc.CriticalRead(url=url, config=kc.parse_control(body.decode("utf-8", "replace")), ca_pinned=pinned)
    except kc.ShapeError as exc:
        return kc.CriticalRead(url=url, config=None, error=f"unexpected answer: {exc}")
    except SupervisorError as exc:
        return kc.CriticalRead(url=url, config=None, error=str(exc))
