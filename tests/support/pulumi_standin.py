#!/usr/bin/env python3
"""A stand-in for the `pulumi` CLI in the CI pipeline tests (tests/ci/). Test-only: it records each call
and accepts only what the real CLI accepts for the calls the pipelines make; it deploys nothing.

Upstream: pulumi/pulumi at 1b5949891b3cefcb9974752b24a5ecef0acc86c8 (docs/CONFORMANCE.md, "CI pipelines"):
- pkg/cmd/pulumi/pulumi.go: ``--non-interactive`` is a persistent root flag (valid before or after the verb);
- pkg/cmd/pulumi/install/install.go: ``pulumi install`` takes no arguments and installs the program of the
  project found from the working directory, or the policy pack (PulumiPolicy.yaml) when run inside one;
- pkg/cmd/pulumi/operations/preview.go: ``--stack/-s``, ``--policy-pack`` (repeatable, a pack directory);
- pkg/cmd/pulumi/operations/up.go: the same plus ``--yes/-y`` and ``--skip-preview/-f``; non-interactive
  without either refuses (``NoConfirmationInNonInteractiveError``, up.go:637-639);
- pkg/cmd/pulumi/stack/stack_output.go: ``stack output`` with ``--json/-j`` and ``--stack/-s``.
Any other verb or flag fails with exit 255, as cobra's errors do through pulumi's main.

Environment: CPSWAP_PULUMI_RECORD (JSON lines: argv, cwd, CI_JOB_NAME, CI_ENVIRONMENT_NAME),
CPSWAP_PULUMI_OUTPUTS (the file ``stack output --json`` prints), CPSWAP_PULUMI_UP_FAIL (a resource name:
``up`` then fails on it, printing Pulumi's diagnostics layout).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

VALUE_FLAGS = {"preview": {"--stack": "stack", "-s": "stack", "--policy-pack": "policy_pack"},
               "up": {"--stack": "stack", "-s": "stack", "--policy-pack": "policy_pack"},
               "stack output": {"--stack": "stack", "-s": "stack"},
               "install": {}}
BOOL_FLAGS = {"preview": {"--non-interactive"},
              "up": {"--non-interactive", "--yes", "-y", "--skip-preview", "-f"},
              "stack output": {"--non-interactive", "--json", "-j"},
              "install": {"--non-interactive"}}


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 255


def parse(argv: list[str]) -> tuple[str, dict[str, list[str]], set[str]] | str:
    words = [a for a in argv if not a.startswith("-")]
    verb = "stack output" if words[:2] == ["stack", "output"] else (words[0] if words else "")
    if verb not in VALUE_FLAGS:
        return f"unknown command {' '.join(words[:2])!r} for \"pulumi\" (the stand-in knows {sorted(VALUE_FLAGS)})"
    values: dict[str, list[str]] = {}
    flags: set[str] = set()
    rest = list(argv)
    for word in verb.split():
        rest.remove(word)
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in VALUE_FLAGS[verb]:
            if i + 1 >= len(rest):
                return f"flag needs an argument: {arg}"
            values.setdefault(VALUE_FLAGS[verb][arg], []).append(rest[i + 1])
            i += 2
        elif arg in BOOL_FLAGS[verb]:
            flags.add(arg)
            i += 1
        elif arg.startswith("-"):
            return f"unknown flag: {arg}"
        else:
            return f"accepts 0 arg(s), received 1 ({arg!r})" if verb in ("install", "up", "preview") else f"unexpected {arg!r}"
        continue
    return verb, values, flags


def main(argv: list[str]) -> int:
    record = os.environ.get("CPSWAP_PULUMI_RECORD")
    if record:
        with open(record, "a") as out:
            out.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "job": os.environ.get("CI_JOB_NAME", ""),
                                  "environment": os.environ.get("CI_ENVIRONMENT_NAME", ""),
                                  "ssh_auth_sock": "SSH_AUTH_SOCK" in os.environ}) + "\n")
    parsed = parse(argv)
    if isinstance(parsed, str):
        return fail(parsed)
    verb, values, flags = parsed
    cwd = Path.cwd()
    if verb == "install":
        if not (cwd / "Pulumi.yaml").is_file() and not (cwd / "PulumiPolicy.yaml").is_file():
            return fail("no Pulumi.yaml project file found (searching upwards from the working directory)")
        print(f"Installing dependencies in {cwd.name}... done")
        return 0
    if not (cwd / "Pulumi.yaml").is_file():
        return fail("no Pulumi.yaml project file found")
    stack = (values.get("stack") or [""])[-1]
    if not stack or not (cwd / f"Pulumi.{stack}.yaml").is_file():
        return fail(f"no stack named {stack!r} found")
    for pack in values.get("policy_pack", []):
        if not (cwd / pack / "PulumiPolicy.yaml").is_file():
            return fail(f"{pack}: no PulumiPolicy.yaml found")
    if verb == "stack output":
        if "--json" not in flags and "-j" not in flags:
            return fail("the stand-in prints outputs only as JSON (--json)")
        sys.stdout.write(Path(os.environ["CPSWAP_PULUMI_OUTPUTS"]).read_text())
        return 0
    if verb == "up" and not flags & {"--yes", "-y", "--skip-preview", "-f"} and "--non-interactive" in flags:
        return fail("--yes or --skip-preview must be passed in to proceed when running in non-interactive mode")
    print(f"{'Previewing update' if verb == 'preview' else 'Updating'} ({stack})")
    failing = os.environ.get("CPSWAP_PULUMI_UP_FAIL", "") if verb == "up" else ""
    if failing:
        print(f" +-  command:remote:Command {failing} replacing (3s) error: Process exited with status 1")
        print("\nDiagnostics:")
        print(f"  command:remote:Command ({failing}):")
        print("    error: Process exited with status 1")
        print(f"\n  pulumi:pulumi:Stack (cpswap-{stack}):")
        print("    error: update failed")
        return 255
    print("Resources:\n    6 unchanged" if verb == "preview" else "Resources:\n    +-6 replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
