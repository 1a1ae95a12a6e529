"""A twin swap driven like CI drives `pulumi up` (test helper, shared by twin scenarios).

``up`` runs the program for a slot map under mocks, replays the recorded resources on the twin and
saves the exported membership as CI does (also after a failed `up`: the engine stored the new
outputs by then). ``install_rke2`` puts RKE2's unit on a host as its installer does (not started).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.pulumi_mocks import ROOT, run_program
from tests.support.twin.cluster import Twin
from tests.support.twin.replayer import Replayer


def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    (directory / ".cpswap").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
    return directory


def up(twin: Twin, replayer: Replayer, workdir: Path, slots: dict[str, str], *, distribution: str) -> list:
    """One replayed `pulumi up` of the program for ``slots``; returns the replayed steps."""
    recording = run_program(config=twin.stack_config(members=slots, distribution=distribution),
                            secrets=twin.secrets(), stack="twin", cwd=workdir)
    assert recording.error is None, recording.error
    try:
        return replayer.up(recording.resources, outputs=recording.outputs)
    finally:
        (workdir / ".cpswap" / "applied-twin.json").write_text(json.dumps(replayer.outputs))


def install_rke2(twin: Twin, host: str) -> None:
    """rancher/rke2 install.sh installs the binary and bundle/lib/systemd/system/rke2-server.service
    (Type=notify, ExecStart=<rke2> server) and starts nothing. The twin's systemctl reads units from
    /etc/systemd/system only, so the unit goes there (install.sh's tarball method uses
    /usr/local/lib/systemd/system)."""
    unit = (f"[Unit]\nDescription=Rancher Kubernetes Engine v2 (server)\n[Install]\nWantedBy=multi-user.target\n"
            f"[Service]\nType=notify\nKillMode=process\nTimeoutStartSec=0\nExecStart={twin.workdir}/bin/rke2 server\n")
    (twin.net.hosts[host].root / "etc-systemd-system" / "rke2-server.service").write_text(unit)
