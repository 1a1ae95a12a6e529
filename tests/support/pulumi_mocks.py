"""Run the cpswap Pulumi program under Pulumi mocks and record every RegisterResourceRequest.

Test-only. ``run_program(config=..., secrets=..., stack=..., preview=...)`` executes
``__main__.py`` in a fresh subprocess (the Pulumi runtime keeps process-global state, so a
subprocess per run gives each run a clean engine) and returns a ``Recording``:

- ``resources``: one ``Recorded`` per RegisterResourceRequest, in registration order, with the
  type, name, parent URN, inputs (plain JSON; secret values unwrapped, their paths listed in
  ``secret_paths``) and the options the engine would see: deleteBeforeReplace, dependencies,
  replaceOnChanges, customTimeouts, additionalSecretOutputs, retainOnDelete, provider, and
  ``property_dependencies`` (RegisterResourceRequest.propertyDependencies, pulumi/pulumi
  proto/pulumi/resource.proto at 1b5949891b3cefcb9974752b24a5ecef0acc86c8: input key → the URNs
  whose outputs its value came from; keys without any are left out). The engine builds its
  dependency graph and dependent replacements from them (see tests/support/twin/replayer.py).
- ``outputs``: the stack outputs (known at preview if ``preview=True`` shows them).
- ``logs``: what the program logged (info/warn/error).
- ``error``: the exception text if the program raised (no resources after that point).

The subprocess runs with networking as the caller has it; tests that must prove no connection
is made run it under ``unshare -n`` via ``isolate_network=True``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "4dabf18193072939515e22adb298388d"


@dataclass(frozen=True)
class Recorded:
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    secret_paths: tuple[str, ...]
    delete_before_replace: bool
    dependencies: tuple[str, ...]
    replace_on_changes: tuple[str, ...]
    custom_timeouts: dict[str, str]
    additional_secret_outputs: tuple[str, ...]
    retain_on_delete: bool
    provider: str
    urn: str
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def inputs_json(self) -> str:
        return json.dumps(self.inputs, sort_keys=True)


@dataclass
class Recording:
    resources: list[Recorded] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    error: str | None = None

    def by_name(self) -> dict[str, Recorded]:
        return {r.name: r for r in self.resources}

    def commands(self) -> list[Recorded]:
        return [r for r in self.resources if r.type.startswith("command:")]


def run_program(*, config: dict[str, Any], secrets: dict[str, str], stack: str = "prod", preview: bool = False,
                isolate_network: bool = False, cwd: Path = ROOT, timeout: float = 120) -> Recording:
    payload = json.dumps({"config": config, "secrets": secrets, "stack": stack, "preview": preview,
                          "root": str(ROOT), "cwd": str(cwd)})
    argv = [sys.executable, "-m", "tests.support._pulumi_runner"]
    if isolate_network:
        argv = ["unshare", "-n", *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(argv, input=payload, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"mock runner failed (rc={result.returncode}):\n{result.stderr[-4000:]}")
    doc = json.loads(result.stdout)
    rec = Recording(outputs=doc["outputs"], logs=doc["logs"], error=doc["error"])
    rec.resources = [Recorded(**{**r, "secret_paths": tuple(r["secret_paths"]),
                                 "dependencies": tuple(r["dependencies"]),
                                 "replace_on_changes": tuple(r["replace_on_changes"]),
                                 "additional_secret_outputs": tuple(r["additional_secret_outputs"]),
                                 "property_dependencies": {k: tuple(v) for k, v in r["property_dependencies"].items()}})
                     for r in doc["resources"]]
    return rec


def load_stack_file(path: Path) -> dict[str, Any]:
    """Stack file → {key without 'cpswap:': value} (what `pulumi config` would pass)."""
    import yaml

    doc = yaml.safe_load(path.read_text()) or {}
    return {k.removeprefix("cpswap:"): v for k, v in (doc.get("config") or {}).items() if k.startswith("cpswap:")}


TEST_SECRETS = {
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nTESTKEYMATERIAL\n-----END OPENSSH PRIVATE KEY-----\n",
    "kubeconfig": "apiVersion: v1\nkind: Config\nclusters: []\n# TESTKUBECONFIG\n",
    "etcdCaCert": "-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n",
    "etcdClientCert": "-----BEGIN CERTIFICATE-----\nTESTCERT\n-----END CERTIFICATE-----\n",
    "etcdClientKey": "-----BEGIN PRIVATE KEY-----\nTESTCLIENTKEY\n-----END PRIVATE KEY-----\n",
    "ocbootDbPassword": "0neC1oudDB#test",
    "k3sToken": "K10test-token::server:secret",
    "rke2Token": "K10rke2-test-token::server:secret",
}
