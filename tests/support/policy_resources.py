"""Turn recorded RegisterResourceRequests into pulumi_policy PolicyResources, as the engine's
analyzer would present them at preview. Test-only."""
from __future__ import annotations

import re
from typing import Any

from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, StackValidationArgs

from tests.support.pulumi_mocks import Recorded


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", text or "")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)] if match else 0.0


def to_policy_resource(r: Recorded) -> PolicyResource:
    t = r.custom_timeouts
    opts = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=r.delete_before_replace,
                                 aliases=[], custom_timeouts=PolicyCustomTimeouts(
                                     _seconds(t.get("create", "")), _seconds(t.get("update", "")),
                                     _seconds(t.get("delete", ""))),
                                 additional_secret_outputs=list(r.additional_secret_outputs), parent=r.parent or None)
    return PolicyResource(resource_type=r.type, props=r.inputs, urn=r.urn, name=r.name, opts=opts, provider=None,
                          parent=None, dependencies=[], property_dependencies={})


def stack_args(resources: list[Recorded], config: dict[str, Any] | None = None) -> StackValidationArgs:
    return StackValidationArgs(resources=[to_policy_resource(r) for r in resources], config=config or {})
