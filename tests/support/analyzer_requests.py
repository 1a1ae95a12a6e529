"""The analyzer requests the Pulumi engine sends a policy pack, built from a mock recording. Test-only.

A stand-in for the engine's side of the analyzer protocol. It follows:

- pulumi/pulumi at 1b5949891b3cefcb9974752b24a5ecef0acc86c8:
  ``pkg/resource/deploy/step_generator.go`` (``continueStepsFromImport`` → ``analyzeAll``): every
  registered resource, components included, is analyzed with its INPUTS and options
  (deleteBeforeReplace, customTimeouts, additionalSecretOutputs, parent) before its step;
  ``AnalyzeResources`` sends ``AnalyzeStack`` every resource's OUTPUTS after all steps ran.
  ``pkg/resource/plugin/analyzer_plugin.go`` (``Analyze``, ``AnalyzeStack``,
  ``marshalResourceOptions``): properties are marshalled with ``KeepUnknowns`` and
  ``KeepSecrets``, so an unknown value is the string sentinel ``UnknownStringValue``
  (``sdk/go/common/resource/plugin/rpc.go``) and a secret is the ``{4dabf1…: 1b4706…, value}``
  envelope; custom timeouts are seconds; ``deleteBeforeReplaceDefined`` says whether it was set.
- pulumi/pulumi-command at 010bd8e0dd8a2f13707aa3b5061739edd90790a5
  (``provider/pkg/provider/{local,remote}/commandController.go`` ``Create``/``Update``: in preview
  nothing runs and the state is the inputs) with pulumi/pulumi-go-provider at
  ac69bde08a7f84ee355614eb0b6c848871b37901 (``infer/resource.go`` ``markComputed``: on a create in
  preview, an output that does not mirror an input, i.e. ``stdout``/``stderr``, is computed):
  at preview a created or replaced command's ``stdout`` and ``stderr`` are unknown, and so is any
  input built from them (the SDK sends an Output that is not known as the unknown sentinel).

The mock recorder returns a placeholder ``@@stdout:<name>@@`` for command outputs; in a
preview-shaped request an input holding the placeholder of a command in ``changed`` is unknown.
Not modelled: provider resources (``provider`` field), aliases, ``propertyDependencies``.
"""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Iterable

from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2

from cpswap.core.rules import timeout_seconds
from tests.support.pulumi_mocks import Recorded

UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_PLACEHOLDER = re.compile(r"@@stdout:([A-Za-z0-9._-]+)@@")
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _unknown_from_changed(value: Any, changed: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _unknown_from_changed(v, changed) for k, v in value.items()}
    if isinstance(value, list):
        return [_unknown_from_changed(v, changed) for v in value]
    if isinstance(value, str) and any(m.group(1) in changed for m in _PLACEHOLDER.finditer(value)):
        return UNKNOWN_STRING
    return value


def _wrap_secrets(value: Any, paths: Iterable[str]) -> Any:
    """Put the recorded secret paths back into the secret envelope (KeepSecrets)."""
    import copy

    value = copy.deepcopy(value)
    for path in paths:
        if path == ".":
            return {SECRET_SIG_KEY: SECRET_SIG, "value": value}
        tokens = [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_TOKEN.finditer(path)]
        node = value
        for token in tokens[:-1]:
            node = node[token]
        last = tokens[-1]
        node[last] = {SECRET_SIG_KEY: SECRET_SIG, "value": node[last]}
    return value


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(props)
    return struct


def _options(r: Recorded) -> analyzer_pb2.AnalyzerResourceOptions:
    # the recorder keeps deleteBeforeReplace as a bool: unset and false both arrive as "not defined"
    t = r.custom_timeouts
    return analyzer_pb2.AnalyzerResourceOptions(
        deleteBeforeReplace=r.delete_before_replace, deleteBeforeReplaceDefined=r.delete_before_replace,
        additionalSecretOutputs=list(r.additional_secret_outputs),
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
            create=timeout_seconds(t.get("create", "")), update=timeout_seconds(t.get("update", "")),
            delete=timeout_seconds(t.get("delete", ""))),
        parent=r.parent)


def analyze_request(r: Recorded, *, changed: frozenset[str] = frozenset(),
                    inputs: dict[str, Any] | None = None) -> analyzer_pb2.AnalyzeRequest:
    """What ``Analyze`` receives when ``r`` registers; ``changed``: commands created or replaced
    in this preview (their outputs are unknown); ``inputs`` overrides the recorded inputs."""
    props = _wrap_secrets(_unknown_from_changed(r.inputs if inputs is None else inputs, changed),
                          r.secret_paths if inputs is None else ())
    return analyzer_pb2.AnalyzeRequest(type=r.type, properties=_struct(props), urn=r.urn, name=r.name,
                                       options=_options(r))


def preview_outputs(r: Recorded, *, changed: frozenset[str]) -> dict[str, Any]:
    """A resource's outputs at the end of a preview, as ``AnalyzeStack`` gets them."""
    outputs = dict(_unknown_from_changed(r.inputs, changed))
    if r.type.startswith("command:"):
        created = r.name in changed
        outputs["stdout"] = UNKNOWN_STRING if created else f"@@stdout:{r.name}@@"
        outputs["stderr"] = UNKNOWN_STRING if created else ""
    if r.type == "cpswap:index:Slot" and any(n.startswith(f"{r.name}-") for n in changed):
        outputs["labels"] = UNKNOWN_STRING  # the replaced NodePatch's metadata
    return outputs


def analyze_stack_request(resources: list[Recorded], *, changed: frozenset[str]) -> analyzer_pb2.AnalyzeStackRequest:
    return analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=r.type, properties=_struct(preview_outputs(r, changed=changed)),
                                      urn=r.urn, name=r.name, options=_options(r), parent=r.parent,
                                      dependencies=list(r.dependencies))
        for r in resources])


class Pack:
    """cpswap's policies served by pulumi_policy's own analyzer servicer, called in-process
    (``PolicyPack`` would start a gRPC server and block). ``config``: the policy pack config as
    ``--policy-pack-config`` gives it ({policy: {properties}}), sent through ``Configure``."""

    def __init__(self, *, policies: list | None = None, config: dict[str, dict[str, Any]] | None = None) -> None:
        from pulumi_policy import EnforcementLevel
        from pulumi_policy.policy import _PolicyAnalyzerServicer

        from cpswap.policy_pack import PACK_NAME, policies as cpswap_policies

        self.servicer = _PolicyAnalyzerServicer(PACK_NAME, "0.0.1", policies or cpswap_policies(),
                                                EnforcementLevel.MANDATORY)
        if config:
            self.servicer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
                name: analyzer_pb2.PolicyConfig(enforcementLevel=analyzer_pb2.MANDATORY, properties=_struct(props))
                for name, props in config.items()}), None)

    def analyze(self, request: analyzer_pb2.AnalyzeRequest) -> list[analyzer_pb2.AnalyzeDiagnostic]:
        return list(self.servicer.Analyze(request, None).diagnostics)

    def analyze_stack(self, request: analyzer_pb2.AnalyzeStackRequest) -> list[analyzer_pb2.AnalyzeDiagnostic]:
        return list(self.servicer.AnalyzeStack(request, None).diagnostics)

    def preview(self, resources: list[Recorded], *, changed: frozenset[str] = frozenset()
                ) -> list[tuple[str, analyzer_pb2.AnalyzeDiagnostic]]:
        """Every resource analyzed at registration, in order, then the stack: [(resource name or
        "stack", diagnostic)]."""
        found = [(r.name, d) for r in resources for d in self.analyze(analyze_request(r, changed=changed))]
        return found + [("stack", d) for d in self.analyze_stack(analyze_stack_request(resources, changed=changed))]


def violation_text(diagnostic: analyzer_pb2.AnalyzeDiagnostic) -> str:
    """The rule's own message: the servicer prefixes the policy description and a newline."""
    return diagnostic.message.split("\n", 1)[1] if "\n" in diagnostic.message else diagnostic.message
