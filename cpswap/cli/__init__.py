"""The `cpswap` command line: plan, check, etcd, kube, kubean, openshift, ci.

Each subcommand module exposes ``register(subparsers)``; it sets ``func(args) -> int`` on its
parser. Exit codes: 0 ok, 1 refused or violations found, 2 usage or config error,
3 a deadline or transient failure that outlived its retries.

``--expect-version=X`` (what every rendered command passes, cpswap/core/renderers/executor.py):
refuse with exit 2, before any subcommand runs, unless this is cpswap X. Providers run
commands with the Pulumi CLI's PATH, which may hold another cpswap than the program's.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

import cpswap

from cpswap.core.errors import ConfigError, CpswapError, DeadlineError, TransientError

SUBCOMMAND_MODULES = ("plan", "check", "etcd", "kube", "kubean", "openshift", "ci")


def progress(line: str) -> None:
    """Progress lines of the executor commands: stderr, flushed (stdout carries their results)."""
    print(line, file=sys.stderr, flush=True)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Registers only the chosen subcommand when there is one (command resources call
    `cpswap etcd|kube` several times per swap; the clients take a second to import)."""
    parser = argparse.ArgumentParser(prog="cpswap", description=__doc__.splitlines()[0])
    parser.add_argument("--expect-version", metavar="X",
                        help="refuse (exit 2) unless this cpswap is version X; rendered commands pass the program's")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    refusal = version_mismatch(args.expect_version)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"cpswap: {exc}", file=sys.stderr)
        return 2
    except (DeadlineError, TransientError) as exc:
        print(f"cpswap: {exc}", file=sys.stderr)
        return 3
    except CpswapError as exc:
        print(f"cpswap: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
