"""Which secret stack config a stack needs, and whether what it has is usable. Pure.

The Pulumi CLI refuses to run a stack that lacks a value for a key ``Pulumi.yaml`` declares
without ``default`` (pulumi/pulumi ``pkg/workspace/config.go`` ``mergeConfig``), and rejects a
default on a ``secret: true`` key (the default is merged as plain text, then
``validateStackConfigValue`` demands an encrypted value). So ``Pulumi.yaml`` declares only the
secrets every distribution needs (``COMMON_SECRETS``); the distribution's own secrets are not
declared and the program requires them here, per distribution, before any resource is
registered: set, and set with ``--secret``.
"""
from __future__ import annotations

from collections.abc import Set as AbstractSet

from cpswap.core.errors import Violation
from cpswap.core.model import COMMON_SECRET_KEYS, KEEPALIVED_SECRET_KEYS, StackModel

COMMON_SECRETS = COMMON_SECRET_KEYS
KEEPALIVED_SECRETS = KEEPALIVED_SECRET_KEYS


def required_secrets(*, model: StackModel) -> tuple[str, ...]:
    """Every secret key (without ``cpswap:``) the program of this stack reads: the common ones,
    the distribution's and the keepalived password when ``vip.keepalived`` is on."""
    return (*COMMON_SECRETS, *model.distro.secrets,
            *(KEEPALIVED_SECRETS if model.vip.keepalived else ()))


def secret_violations(*, model: StackModel, present: AbstractSet[str], encrypted: AbstractSet[str]) -> list[Violation]:
    """One violation per required secret that is unset or was set without ``--secret``."""
    found = []
    for key in required_secrets(model=model):
        if key not in present:
            found.append(Violation(key, "unset", f"secret required for {model.distribution}"
                                                 f"{' with vip.keepalived' if key in KEEPALIVED_SECRETS else ''}; "
                                                 f"set it with `pulumi config set --secret cpswap:{key} ...`"))
        elif key not in encrypted:
            found.append(Violation(key, "(plain text)", f"cpswap:{key} is stored unencrypted in the stack file; "
                                                        f"set it again with `pulumi config set --secret cpswap:{key}`"))
    return found
