"""Key material in $TMPDIR (issue 13): the etcd key, certificates and kubeconfig an executor writes
live in a private 0700 directory that is removed on exit, on SIGTERM (CI cancellation) and on
SIGINT, and a SIGKILLed run's directory is removed first thing by the next run."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.etcd_cluster import free_port
from tests.support.pki import make_ca, make_cert

pytestmark = pytest.mark.etcd


def _env(tmp_path: Path) -> dict[str, str]:
    ca = make_ca(directory=tmp_path / "pki")
    cert, key = make_cert(ca=ca, directory=tmp_path / "pki", name="client", sans=["127.0.0.1"])
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    return {**os.environ, "TMPDIR": str(tmpdir), "CPSWAP_ETCD_CACERT_DATA": ca.cert.read_text(),
            "CPSWAP_ETCD_CERT_DATA": cert.read_text(), "CPSWAP_ETCD_KEY_DATA": key.read_text(),
            "CPSWAP_KUBECONFIG_DATA": "apiVersion: v1\nkind: Config\nclusters: []\n",
            "CPSWAP_ETCD_ENDPOINTS": f"https://127.0.0.1:{free_port()}"}  # nothing listens: the run retries


def _leftovers(env: dict[str, str]) -> list[str]:
    return sorted(str(p.relative_to(env["TMPDIR"])) for p in Path(env["TMPDIR"]).rglob("*") if not p.is_dir())


def _start(env: dict[str, str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "cpswap", "etcd", "remove", "--preset", "env", "--name", "gone", "--ip",
            "127.0.0.9", "--no-snapshot", "--deadline", "120"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_key(env: dict[str, str], proc: subprocess.Popen) -> Path:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        keys = list(Path(env["TMPDIR"]).glob(f"cpswap-{os.getuid()}/run-{proc.pid}-etcd-*/client.key"))
        if keys:
            return keys[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the executor never wrote its key")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, None)])
def test_a_signalled_executor_leaves_no_key_material(tmp_path, signum, code):
    env = _env(tmp_path)
    proc = _start(env)
    key = _wait_for_key(env, proc)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.parent.parent.stat().st_mode) == 0o700
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and (code is None or proc.returncode == code), (proc.returncode, err)
    assert _leftovers(env) == [] and list(Path(env["TMPDIR"]).iterdir()) == [], err
    assert "PRIVATE KEY" not in err


def test_a_sigkilled_executors_key_is_removed_first_thing_by_the_next_run(tmp_path):
    env = _env(tmp_path)
    proc = _start(env)
    key = _wait_for_key(env, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert key.exists()  # SIGKILL cannot be caught
    nxt = _start(env)
    try:
        _wait_for_key(env, nxt)
        assert not key.parent.exists()
        assert all(f"run-{nxt.pid}-" in p for p in _leftovers(env))
    finally:
        nxt.terminate()
        nxt.communicate(timeout=60)
    assert _leftovers(env) == []


def test_the_kubeconfig_is_written_to_the_private_directory_and_removed(tmp_path, monkeypatch):
    from cpswap.core.errors import PermanentError
    from cpswap.executors import kube

    env = _env(tmp_path)
    monkeypatch.setenv("TMPDIR", env["TMPDIR"])
    monkeypatch.setenv("CPSWAP_KUBECONFIG_DATA", "apiVersion: v1\nkind: Config\n")
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(PermanentError, match="kubeconfig unusable"), kube.connect(timeout=1):
        pass
    assert list(Path(env["TMPDIR"]).iterdir()) == []  # the empty base goes too
