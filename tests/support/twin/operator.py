"""The operator's shell the twin runs `pulumi up` from, as the README tells operators to. Test-only.

Providers do not run inside the program's virtualenv: the Pulumi CLI starts them with its own
environment (pulumi-command local/commandOutputs.go ``cmd.Env = os.Environ()``), so the
``cpswap`` a local command runs is whatever the CLI's PATH finds. The README's step: run
``pulumi`` with the program's virtualenv activated (``. venv/bin/activate``), which sets
``VIRTUAL_ENV`` and puts its ``bin`` first on PATH. Here the virtualenv is the environment this
test interpreter runs in (``sys.prefix``: where ``pip install -e .`` put ``cpswap``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from collections.abc import Mapping


def activated_environ(*, venv: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) after ``. <venv>/bin/activate``."""
    venv = Path(sys.prefix) if venv is None else venv
    env = dict(os.environ if base is None else base)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)  # activate unsets it
    return env
