"""How command text calls the ``cpswap`` executors. Pure.

Providers run commands in the Pulumi CLI's environment, not the program's virtualenv
(pulumi-command local/commandOutputs.go: ``cmd.Env = os.Environ()``), so the ``cpswap`` a
command finds on ``PATH`` may be another install than the program's. Every call therefore
carries the program's version, ``cpswap --expect-version=X ...``, and the CLI refuses (exit 2,
naming both versions) when it is not version X. One token (``--expect-version=X``) so the CLI
can still find its subcommand as the first argument without a dash.
"""
from __future__ import annotations

from cpswap import __version__

CPSWAP = f"cpswap --expect-version={__version__}"
