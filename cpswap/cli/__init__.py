"""The `cpswap` command line: plan, check, preflight, status, etcd, kube, kubean, openshift, ci.

Each subcommand module exposes ``register(subparsers)``; it sets ``func(args) -> int`` on its
parser. Exit codes: 0 ok, 1 refused or violations found, 2 usage or config error,
3 a deadline or transient failure that outlived its retries.

``--expect-version=X`` (what every rendered command passes, cpswap/core/renderers/executor.py):
refuse with exit 2, before any subcommand runs, unless this is cpswap X. Providers run
commands with the Pulumi CLI's PATH, which may hold another cpswap than the program's.

Start-up: only the chosen subcommand's module is imported, and the `etcd` and `kube` modules load
their executor (gRPC and pyetcd, the Kubernetes client) with ``lazy_module``, on the first call that
uses it, so ``--help`` and argument errors answer without those clients (tests/bench/test_startup.py).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import cpswap
from cpswap.core import inputs
from cpswap.core.errors import ConfigError, CpswapError, DeadlineError, TransientError

SUBCOMMAND_MODULES = ("plan", "check", "preflight", "status", "etcd", "kube", "kubean", "openshift", "ci")


def lazy_module(name: str) -> types.ModuleType:
    """Module ``name``, executed on its first attribute access (``importlib.util.LazyLoader``).
    It is the module in ``sys.modules`` (an already imported one is returned as is), so a later
    ``import`` of it gets the same object."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def progress(line: str) -> None:
    """Progress lines of the executor commands: stderr, flushed (stdout carries their results)."""
    print(line, file=sys.stderr, flush=True)


def argtype(check: Callable[[Any], Any], what: str) -> Callable[[str], Any]:
    """An argparse ``type=`` from a cpswap.core.inputs validator: a bad value is a usage error
    (exit 2, naming the flag, the value and the rule) before anything is contacted."""
    def convert(text: str) -> Any:
        try:
            return check(text)
        except inputs.InputError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    convert.__name__ = what
    return convert


def _names(text: str) -> list[str]:
    names = [inputs.dns_name(n, what="node name") for n in text.split(",")]
    if not names:
        raise inputs.InputError("at least one node name is required")
    return names


def _file(text: str) -> str:
    if not text:
        raise inputs.InputError("a file path is required")
    if not os.path.exists(text):
        raise inputs.InputError("file not found")
    if not os.path.isfile(text):
        raise inputs.InputError("not a regular file")
    return text


def _stack(text: str) -> str:
    """``name`` or fully qualified ``org/project/name``: the stack file is ``Pulumi.<name>.yaml``, as in Pulumi."""
    parts = text.split("/")
    if len(parts) > 3:
        raise inputs.InputError("must be <stack>, <org>/<stack> or <org>/<project>/<stack>")
    for part in parts:
        inputs.stack_name(part)
    return parts[-1]


def _policy_json(text: str) -> str:
    """The stack's ``cpswap:pvcRecovery`` object as JSON, checked as the model checks it."""
    from cpswap.core.documents import DocumentError, parse_json
    from cpswap.core.recovery import parse_pvc_recovery

    try:
        doc = parse_json(text)
    except DocumentError as exc:
        raise inputs.InputError(str(exc)) from None
    if not isinstance(doc, dict):
        raise inputs.InputError("must be a JSON object of selector -> {policy, dataClass, order}")
    _, problems = parse_pvc_recovery(doc)
    if problems:
        raise inputs.InputError("; ".join(str(p) for p in problems[:5]))
    return text


NAME = argtype(lambda v: inputs.dns_name(v, what="node name"), "name")
NAMES = argtype(_names, "names")
OBJECT_NAME = argtype(inputs.dns_name, "name")
NAMESPACE = argtype(lambda v: inputs.dns_label(v, what="namespace"), "namespace")
IP = argtype(inputs.ip_address, "ip")
URL = argtype(inputs.endpoint_url, "url")
URLS = argtype(lambda v: [inputs.endpoint_url(u) for u in v.split(",")] if v else [], "urls")
HOST_PORT = argtype(inputs.split_host_port, "host:port")
SECONDS = argtype(inputs.seconds, "seconds")
LAG = argtype(inputs.lag, "lag")
FILE = argtype(_file, "file")
STACK = argtype(_stack, "stack")
REVISION = argtype(inputs.git_revision, "revision")
SLOT = argtype(inputs.slot, "slot")
IMAGE = argtype(inputs.image, "image")
WORD = argtype(inputs.word, "word")
POLICY_JSON = argtype(_policy_json, "policy-json")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Registers only the chosen subcommand when there is one (command resources call
    `cpswap etcd|kube` several times per swap; the clients take a second to import)."""
    parser = argparse.ArgumentParser(prog="cpswap", description=__doc__.splitlines()[0])
    parser.add_argument("--expect-version", metavar="X",
                        help="refuse (exit 2) unless this cpswap is version X; rendered commands pass the program's")
    parser.add_argument("--version", action="version", version=f"cpswap {cpswap.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), None)
    for name in (chosen,) if chosen in SUBCOMMAND_MODULES else SUBCOMMAND_MODULES:
        module = importlib.import_module(f"cpswap.cli.{name}")
        module.register(sub)
    return parser


def version_mismatch(expected: str | None) -> str | None:
    """The refusal text when this cpswap is not the version a command was rendered for, else None."""
    if expected is None or expected == cpswap.__version__:
        return None
    return (f"cpswap: refusing to run: the command was rendered by the Pulumi program's cpswap {expected} "
            f"(--expect-version={expected}), but the cpswap found on PATH is {cpswap.__version__} "
            f"({Path(cpswap.__file__).parent}). Put the program's cpswap first on PATH before `pulumi up` "
            "(README: activate the program's virtualenv), or run `pulumi up` once with no slot change after "
            "upgrading so that stored delete commands carry the new version.")


def _run(argv: Sequence[str] | None) -> tuple[int, str | None]:
    """The exit code, and the failure's text when it failed with one."""
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0): a code, also in-process
        return (exc.code if isinstance(exc.code, int) else 2), None
    refusal = version_mismatch(args.expect_version)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2, refusal
    try:
        return int(args.func(args)), None
    except ConfigError as exc:
        failed: tuple[int, CpswapError] = (2, exc)
    except (DeadlineError, TransientError) as exc:
        failed = (3, exc)
    except CpswapError as exc:
        failed = (1, exc)
    print(f"cpswap: {failed[1]}", file=sys.stderr)
    return failed[0], f"cpswap: {failed[1]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand. Inside a rendered step (``$CPSWAP_STEP`` set) it also appends its start
    and end to the run record (cpswap/core/runrecord.py): a KILLed step leaves a start and no end."""
    step = os.environ.get("CPSWAP_STEP")
    if not step:
        return _run(argv)[0]
    from cpswap.executors.runrecord import recording

    with recording(step=step, argv=list(sys.argv[1:] if argv is None else argv)) as outcome:
        outcome.rc, outcome.failure = _run(argv)
    return outcome.rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
