"""Helpers of the Pulumi program that are not components: reading config, the applied membership
and the optional live observation. Imports pulumi; not pure.

The applied membership comes from live etcd when observation is on and etcd answered, else from
``.cpswap/applied-<stack>.json`` (the saved ``pulumi stack output --json`` of the last deployment,
which CI writes after every successful ``up``), else it is adoption: the desired one, confirmed at
run time by the adoption check before anything else runs.
"""
from __future__ import annotations


from pathlib import Path
from typing import Any

import pulumi

from cpswap.core.errors import ConfigError
from cpswap.core.facts import Observation
from cpswap.core.inputs import host_port
from cpswap.core.model import OBJECT_KEYS, StackModel, block_keys, known_keys, secret_keys
from cpswap.core.planner import AppliedMembership
from cpswap.core.stackconfig import secret_violations
from cpswap.stackfiles import load_applied



def config_values(config: pulumi.Config) -> dict[str, Any]:
    """Every non-secret cpswap key, objects decoded; secrets are read separately as Outputs."""
    values: dict[str, Any] = {}
    objects = {*OBJECT_KEYS, *block_keys()}
    for key in sorted(known_keys() - set(secret_keys())):
        if key in objects:
            value = config.get_object(key)
        elif key == "observe":
            value = config.get_bool(key)
        else:
            value = config.get(key)
        if value is not None:
            values[key] = value
    return values


def secret_config(*, config: pulumi.Config, model: StackModel) -> dict[str, pulumi.Output[str] | None]:
    """Every secret key as a secret Output (None when unset); raises ``ConfigError`` (before any
    resource is registered) when a secret this stack needs is unset or was set without ``--secret``."""
    secrets = {key: config.get_secret(key) for key in secret_keys()}
    encrypted = {key for key in secret_keys() if pulumi.runtime.is_config_secret(f"{config.name}:{key}")}
    problems = secret_violations(model=model, present={k for k, v in secrets.items() if v is not None},
                                 encrypted=encrypted)
    if problems:
        raise ConfigError(problems)
    return secrets


def applied_membership(*, stack: str, model: StackModel, observation: Observation,
                       directory: Path | None = None) -> AppliedMembership:
    """By the one rule of ``planner.choose_applied``: live etcd (observation on and answering),
    else the saved outputs of the last deployment, else adoption verified at run time. The
    destroyMode always comes from what the last deployment stored (``load_applied``)."""
    return load_applied(directory=directory or Path.cwd(), stack=stack, model=model, live=observation.etcd)


def observe_if_enabled(*, model: StackModel, config: pulumi.Config, departing_node: str | None = None) -> Observation:
    if not model.observe:
        return Observation()
    from cpswap.executors.observe import observe_cluster  # network code only when asked for

    return observe_cluster(
        etcd_endpoints=[f"https://{host_port(m.host.ip, model.etcd.client_port)}" for m in model.members],
        ca_pem=config.get("etcdCaCert"), cert_pem=config.get("etcdClientCert"), key_pem=config.get("etcdClientKey"),
        kubeconfig=config.get("kubeconfig"), departing_node=departing_node, timeout=3.0,
        warn=lambda text: pulumi.log.warn(text))

