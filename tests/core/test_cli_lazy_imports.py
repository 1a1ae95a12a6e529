"""`cpswap etcd` and `cpswap kube` parse their arguments without importing gRPC, pyetcd or the
Kubernetes client (issue 17: start in under 0.3 s): those load on the first executor call.

Checked in a fresh interpreter per case (``sys.modules`` after ``main``), not by wall clock, which a
loaded machine would make flaky; tests/bench/test_startup.py prints the times.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("grpc", "pyetcd", "kubernetes", "google.protobuf")

PROBE = """
import contextlib, io, json, sys
from cpswap.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
heavy = sorted({m.split('.')[0] if not m.startswith('google.protobuf') else 'google.protobuf'
                for m in sys.modules if m.split('.')[0] in ('grpc', 'pyetcd', 'kubernetes')
                or m.startswith('google.protobuf')})
print(json.dumps({"code": code, "heavy": heavy, "err": err.getvalue()[-300:]}))
"""


def _run(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in ("CPSWAP_ETCD_CACERT_DATA", "CPSWAP_ETCD_CERT_DATA", "CPSWAP_ETCD_KEY_DATA", "CPSWAP_KUBECONFIG_DATA"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env,
                          timeout=60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv, code", [
    (("etcd", "--help"), 0),
    (("etcd", "remove", "--help"), 0),
    (("etcd", "members", "--endpoints", "not-a-url"), 2),
    (("etcd", "remove", "--node", "Bad_Name", "--ip", "10.0.0.1"), 2),
    (("kube", "--help"), 0),
    (("kube", "drain", "--node", "Bad_Name"), 2),
    (("kube", "recover-pvcs", "--help"), 0),
    (("--version",), 0),
    (("--expect-version=0.0.0-other", "etcd", "members", "--preset", "k3s"), 2),
])
def test_help_and_usage_errors_import_no_client(argv, code):
    result = _run(*argv)
    assert result["code"] == code, result
    assert result["heavy"] == [], f"cpswap {' '.join(argv)} imported {result['heavy']}"


def test_an_executor_call_loads_its_client():
    """The lazy module is the real one: a command that reaches etcd imports gRPC and pyetcd (here it
    fails to connect to a closed loopback port, with the connection error, not an ImportError)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ca = Path(tmp) / "ca.crt"
        ca.write_text("not a certificate\n")
        result = _run("etcd", "members", "--endpoints", "https://127.0.0.1:9", "--cacert", str(ca),
                      "--request-timeout", "1")
    assert result["code"] != 0 and "ImportError" not in result["err"] and "No module" not in result["err"], result
    assert {"grpc", "pyetcd"} <= set(result["heavy"]), result
