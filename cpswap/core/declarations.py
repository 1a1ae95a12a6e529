"""A slot's specs as the Pulumi resources the components register, in plain data. Pure.

``declare`` is the one place a ``CommandSpec`` or ``ObjectSpec`` becomes a resource declaration: its
type token, its inputs, its options (delete-before-replace, retain-on-delete, custom timeouts,
additional secret outputs) and what the component still has to wire (stdin, the secret
environment, the SSH target, the Kubernetes provider). The components register exactly this, and
the policy views of ``cpswap check`` and of the ControlPlane's ``commands`` input are made from it
(``cpswap.core.rules.views_from_specs``), so what the rules check cannot drift from what is
registered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cpswap.core.slots import CommandSpec, RunsOn, SlotResource
from cpswap.core.steps import Stdin

LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"


@dataclass(frozen=True)
class Declaration:
    """One resource as registered. ``inputs`` are the plain inputs without ``stdin`` (the component
    resolves ``stdin`` to a secret Output); ``logging`` is ``"none"`` where a secret passes through."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    delete_before_replace: bool
    timeouts: Mapping[str, str]  # create/update/delete, as Pulumi custom timeouts ("10m")
    retain_on_delete: bool = False
    additional_secret_outputs: tuple[str, ...] = ()
    stdin: Stdin | None = None
    secret_env: tuple[tuple[str, str], ...] = ()  # (environment variable, secret config key)
    runs_on: RunsOn = RunsOn("local", "operator")
    provider: str | None = None  # Kubernetes objects: "cluster" (through the VIP) or "global" (kubean's)

    @property
    def local(self) -> bool:
        return self.type == LOCAL_COMMAND


def declare(spec: SlotResource) -> Declaration:
    """The resource the components register for ``spec``."""
    if not isinstance(spec, CommandSpec):
        return Declaration(
            type=f"kubernetes:{spec.api_version}:{spec.object_kind}", name=spec.name,
            inputs={"apiVersion": spec.api_version, "kind": spec.object_kind,
                    "metadata": {"name": spec.object_name, "labels": spec.labels()}, "spec": spec.spec_dict()},
            delete_before_replace=spec.delete_before_replace, retain_on_delete=spec.retain_on_delete,
            timeouts={"create": spec.create_timeout, "delete": spec.delete_timeout}, provider=spec.provider)
    inputs: dict[str, Any] = {"create": spec.create, "update": spec.update, "delete": spec.delete,
                              "triggers": list(spec.triggers)}
    if spec.stdin is not None or spec.secret_output:
        inputs["logging"] = "none"
    return Declaration(
        type=LOCAL_COMMAND if spec.runs_on.kind == "local" else REMOTE_COMMAND, name=spec.name, inputs=inputs,
        delete_before_replace=spec.delete_before_replace,
        timeouts={"create": spec.create_timeout, "update": spec.create_timeout, "delete": spec.delete_timeout},
        additional_secret_outputs=("stdout", "stderr") if spec.secret_output else (),
        stdin=spec.stdin, secret_env=spec.secret_env, runs_on=spec.runs_on)
