"""Secret material committed in plain text in a stack file (rule ``cpswap-no-plain-secrets``). Pure.

``cpswap check`` runs it on the stack file as written (``Pulumi.<stack>.yaml``), before the model
drops anything: a private key anywhere, a kubeconfig credential, one of cpswap's secret keys, or a
password/token/key under a key whose name says so, whose value is not ``{secure: ...}``. Findings
name the key and what was found, never the value.
"""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Iterator, Mapping

from cpswap.core.model import secret_keys
from cpswap.core.rules import RuleViolation

RULE = "cpswap-no-plain-secrets"
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_KUBE_CREDENTIAL = re.compile(r"(?m)^\s*(client-key-data|token|password)\s*:\s*\S")
_SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "privatekey", "authpass",
                 "credential", "clientkey")
_NOT_SECRET_SUFFIXES = ("file", "path", "dir", "ref", "name", "ttl", "id", "enabled")


def _secret_name(name: str) -> bool:
    """A key whose name says it holds a secret (``dbPassword``, ``secretKey``), not where one is
    kept (``tokenFile``, ``passwordSecretRef``)."""
    norm = re.sub(r"[^a-z0-9]", "", name.lower())
    return any(word in norm for word in _SECRET_WORDS) and not norm.endswith(_NOT_SECRET_SUFFIXES)


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    else:
        yield path, value


def plain_secrets(config: Mapping[str, Any] | None, *, where: str) -> tuple[RuleViolation, ...]:
    """``config``: the ``config:`` block of a stack file, keys as written (``cpswap:k3sToken``)."""
    found: list[RuleViolation] = []
    for key, value in (config or {}).items():
        top = str(key)
        for path, leaf in _walk(value, top):
            if leaf is None or leaf == "" or isinstance(leaf, bool):
                continue
            text = str(leaf)
            last = re.split(r"[.:\[]", path)[-1]
            what = None
            if _PRIVATE_KEY.search(text):
                what = "a PEM private key"
            elif _KUBE_CREDENTIAL.search(text) and "\n" in text:
                what = "a kubeconfig with credentials"
            elif path == top and top.removeprefix("cpswap:") in secret_keys() and top.startswith("cpswap:"):
                what = f"cpswap's secret key {top.removeprefix('cpswap:')}"
            elif _secret_name(last) and isinstance(leaf, (str, int, float)):
                what = f"a value under a key named {last!r}"
            if what:
                found.append(RuleViolation(RULE, where, f"{path} holds {what} in plain text; remove it from the file "
                                                        f"(and from git history) and set it with `pulumi config set "
                                                        f"--secret {top}`" + (f" ({path.partition('.')[2]})"
                                                                              if "." in path else "")))
    return tuple(found)
