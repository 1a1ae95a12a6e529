# shellcheck shell=sh
# Sourced by the pipelines (`. ci/setup.sh`): cpswap from this checkout, the commit under review or being
# deployed (the pinned version; the command text stored in Pulumi state calls `cpswap` from PATH), in
# the program's virtualenv `venv/` (Pulumi.yaml: runtime.options.virtualenv), put first on PATH.
# `pulumi install` creates the same virtualenv from requirements.txt; jobs without the Pulumi CLI create
# it here. SSH_AUTH_SOCK is unset: a stale agent socket fails every remote command of pulumi-command.
if [ ! -x venv/bin/cpswap ]; then
  python3 -m venv venv && venv/bin/python -m pip install --quiet -e . || return 1
fi
PATH="$PWD/venv/bin:$PATH"
export PATH
unset SSH_AUTH_SOCK
