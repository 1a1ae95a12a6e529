"""`cpswap etcd`: placeholder registered by the skeleton; replaced by its issue's work."""
from __future__ import annotations

import argparse

from cpswap.core.errors import PermanentError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser("etcd", help="(under construction)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise PermanentError("cpswap etcd is not built yet")
