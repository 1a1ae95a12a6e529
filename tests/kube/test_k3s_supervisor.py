"""cpswap's read of the cluster-critical k3s flags (cpswap.executors.k3s_supervisor) against the
twin's k3s supervisor stand-in (tests/support/twin/shims/_supervisor.py) on a loopback address:
TLS trust from /cacerts and the token's CA hash, basic auth as user ``node``, every failure
naming the URL and the reason and never the token. About 2 s."""
from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import pytest

from cpswap.executors.k3s_supervisor import read_critical
from tests.support.pki import make_ca, make_cert

SHIMS = Path(__file__).resolve().parents[1] / "support" / "twin" / "shims"
sys.path.insert(0, str(SHIMS))
import _k3s  # noqa: E402
import _supervisor  # noqa: E402

PASSWORD = "s3cret@cluster"


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory):
    """A survivor's supervisor on 127.a.b.c:6443 (a loopback address of its own: no other test's)."""
    pki = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory=pki)
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    cert, key = make_cert(ca=ca, directory=pki, name="survivor", sans=[address])
    control = _k3s.control({"cluster-cidr": "10.52.0.0/16", "disable-network-policy": True, "disable": ["traefik"]})
    server = _supervisor.serve(address=address, port=6443, ca=str(ca.cert), cert=str(cert), key=str(key),
                               control=control, token=PASSWORD)
    try:
        yield f"https://{address}:6443", hashlib.sha256(Path(ca.cert).read_bytes()).hexdigest()
    finally:
        server.shutdown()
        server.server_close()


def test_reads_the_survivors_critical_flags_as_a_joining_k3s_server_does(supervisor):
    url, ca_hash = supervisor
    bare = read_critical(server=url, token=PASSWORD)
    assert bare.error is None and bare.url == f"{url}/v1-k3s/config" and not bare.ca_pinned
    assert bare.config is not None and bare.config.cluster_cidr == ("10.52.0.0/16",)
    assert ("disable-network-policy", True) in bare.config.switches and bare.config.disable == ("traefik",)
    pinned = read_critical(server=url, token=f"K10{ca_hash}::server:{PASSWORD}")
    assert pinned.config == bare.config and pinned.ca_pinned  # the token's CA hash matched /cacerts


@pytest.mark.parametrize(("token", "reason"), [
    ("wrong-password", "/v1-k3s/config: 401 Unauthorized"),
    (f"K10{'0' * 64}::server:{PASSWORD}", "token CA hash does not match the Cluster CA certificate hash: 000"),
    ("K10abc::server:x", "the k3s token (cpswap:k3sToken): invalid token CA hash length"),
    (None, "no k3s token ($CPSWAP_K3S_TOKEN_DATA, secret cpswap:k3sToken)"),
])
def test_a_refused_read_names_the_url_and_why_and_never_the_token(supervisor, token, reason):
    url, _ = supervisor
    read = read_critical(server=url, token=token)
    assert read.config is None and read.error is not None and reason in read.error, read.error
    assert PASSWORD not in read.error and (not token or token not in read.error)


def test_no_survivor_answering_is_an_error_within_the_timeout(supervisor):
    url, _ = supervisor
    closed = url.replace(":6443", ":6444")
    read = read_critical(server=closed, token=PASSWORD, timeout_s=2)
    assert read.config is None and read.error == f"{closed}/cacerts: ConnectionRefusedError: [Errno 111] Connection refused"


def test_a_server_whose_certificate_does_not_name_the_address_is_refused(tmp_path):
    """getCACerts's second request verifies the server against the bundle it served, name included."""
    ca = make_ca(directory=tmp_path)
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    cert, key = make_cert(ca=ca, directory=tmp_path, name="elsewhere", sans=["10.1.1.1"])
    server = _supervisor.serve(address=address, port=6443, ca=str(ca.cert), cert=str(cert), key=str(key),
                               control=_k3s.control({}), token=PASSWORD)
    try:
        read = read_critical(server=f"https://{address}:6443", token=PASSWORD, timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()
    assert read.config is None and read.error.startswith("CA cert validation failed: ") and "IP address mismatch" \
        in read.error, read.error
