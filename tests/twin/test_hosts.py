"""Fake hosts of the twin (tests/support/twin/hosts.py): own hostname over real SSH, a hard kill
cuts the link and the dead host's sshd logs no further connection, teardown leaves nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.twin import hosts

pytestmark = pytest.mark.twin


def _running(pid: int) -> bool:
    """True while the PID exists and is not a zombie awaiting its reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def network(tmp_path):
    reason = hosts.available()
    if reason:
        pytest.skip(reason)
    net = hosts.Network.create(tmp_path / "net")
    try:
        yield net
    finally:
        net.close()


def test_hosts_answer_over_ssh_with_their_own_hostname_kill_cuts_them_and_teardown_is_clean(network):
    for name in ("tw-a", "tw-b"):
        network.add_host(name)
    for name in ("tw-a", "tw-b"):
        assert network.run(name, "hostname").stdout.strip() == name
    b = network.hosts["tw-b"]
    seen = b.connections()
    assert seen >= 1, "sshd log must record accepted key logins"
    pids = b.all_pids() + [b.sshd.pid]
    network.kill("tw-b")
    refused = network.run("tw-b", "true", check=False, timeout=15)
    assert refused.returncode != 0, "a killed host must be unreachable"
    assert b.connections() == seen, "the killed host's sshd received a connection after the kill"
    assert [pid for pid in pids if _running(pid)] == [], "kill left processes running"
    assert network.run("tw-a", "hostname").stdout.strip() == "tw-a"
    network.close()
    assert network.leftovers() == []
