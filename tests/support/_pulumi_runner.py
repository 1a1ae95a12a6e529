"""Subprocess body of tests/support/pulumi_mocks.py: run __main__.py under recording mocks. Test-only.

Reads a JSON payload on stdin, prints a JSON recording on stdout.
"""
from __future__ import annotations

import json
import logging
import os
import runpy
import sys
from typing import Any

from google.protobuf import json_format

import pulumi
from pulumi.runtime.mocks import MockMonitor

SECRET_SIG = "4dabf18193072939515e22adb298388d"


def _unwrap(value: Any, path: str, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            secrets.append(path or ".")
            return _unwrap(value.get("value"), path, secrets)
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[dict[str, Any]] = []

    def RegisterResource(self, request):  # noqa: N802 (gRPC name)
        secrets: list[str] = []
        raw = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
        timeouts = json_format.MessageToDict(request.customTimeouts) if request.HasField("customTimeouts") else {}
        self.recorded.append({
            "type": request.type, "name": request.name, "parent": request.parent, "custom": bool(request.custom),
            "inputs": _unwrap(raw, "", secrets), "secret_paths": secrets,
            "delete_before_replace": bool(request.deleteBeforeReplace),
            "dependencies": list(request.dependencies), "replace_on_changes": list(request.replaceOnChanges),
            # RegisterResourceRequest.propertyDependencies: input key -> URNs its value came from
            # (the SDK sends every key, most with no URN; only the non-empty ones are kept)
            "property_dependencies": {key: sorted(deps.urns) for key, deps in request.propertyDependencies.items()
                                      if deps.urns},
            "custom_timeouts": timeouts, "additional_secret_outputs": list(request.additionalSecretOutputs),
            "retain_on_delete": bool(request.retainOnDelete) if request.HasField("retainOnDelete") else False,
            "provider": request.provider, "urn": self.make_urn(request.parent, request.type, request.name),
        })
        return super().RegisterResource(request)


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ.startswith("command:"):
            # a sentinel the twin's replayer replaces with the real stdout of this resource
            outputs.setdefault("stdout", f"@@stdout:{args.name}@@")
            outputs.setdefault("stderr", "")
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def _resolve(value: Any) -> Any:
    """Plain value of a stack output; unknown-at-preview values become the marker "<unknown>"."""
    from pulumi.runtime.sync_await import _sync_await

    if isinstance(value, pulumi.Output):
        known = _sync_await(value.is_known())
        return _sync_await(value.future()) if known else "<unknown>"
    return value


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def main() -> None:
    payload = json.load(sys.stdin)
    os.chdir(payload["cwd"])
    sys.path.insert(0, payload["root"])
    config = {f"cpswap:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in payload["config"].items()}
    config.update({f"cpswap:{k}": v for k, v in payload["secrets"].items()})
    pulumi.runtime.set_all_config(config, [f"cpswap:{k}" for k in payload["secrets"]])
    handler = ListHandler()
    logger = logging.getLogger("cpswap-mocks")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="cpswap", stack=payload["stack"], preview=payload["preview"],
                             monitor=monitor, logger=logger)
    error = None
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        runpy.run_path(os.path.join(payload["root"], "__main__.py"), run_name="__main__")

    try:
        program()
    except Exception as exc:  # the program's own refusal is data for the test
        error = f"{type(exc).__name__}: {exc}"
    root = pulumi.runtime.settings.get_root_resource()
    for key, value in (getattr(root, "outputs", None) or {}).items():
        outputs[key] = _resolve(value)
    json.dump({"resources": monitor.recorded, "outputs": outputs, "logs": handler.lines, "error": error},
              sys.stdout, default=str)


if __name__ == "__main__":
    main()
