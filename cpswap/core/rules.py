"""Policy rules shared by the CrossGuard pack, `cpswap check` and the tests. Pure.

The rules read only resource inputs, which the engine gives resource policies at registration,
before the resource's step runs: the plan document (``cpswap.plan/v1``, the ControlPlane
component's ``plan`` input, computed offline by `cpswap check`), the command and ClusterOperation
views the ControlPlane declares in its ``commands`` input (the ControlPlane registers first, so
a violation there stops `pulumi up` before any step), and each command's or operation's own
inputs and options. Outputs (a command's ``stdout``) are never read: they are unknown at preview
and would turn a mandatory policy into an advisory one. An input that is itself unknown reaches
the rules as ``UNKNOWN`` and each rule decides what it means (a secret ``stdin`` from another
command's output is still a stdin; unknown command text is a violation), so no rule is skipped.

Each rule has a name, a description and a default enforcement of ``mandatory``; thresholds come
from the policy config (``RuleConfig``). Every message names the resource, the rule and the
numbers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from cpswap.core.inputs import IMAGE
from cpswap.core.model import Host, StackModel
from cpswap.core.quorum import quorum
from cpswap.core.declarations import Declaration, declare
from cpswap.core.slots import SURGE_MARK, ObjectSpec, SlotResource, destroy_guard, slot_commands
from cpswap.core.steps import first_unsnapshotted_change

PLAN_RESOURCE_TYPE = "cpswap:index:ControlPlane"
COMMAND_TYPES = ("command:local:Command", "command:remote:Command")
OPERATION_TYPE = "kubernetes:kubean.io/v1alpha1:ClusterOperation"
_PINNED_IMAGE = IMAGE


class _Unknown:
    """An input whose value the engine does not know yet (preview)."""

    def __repr__(self) -> str:
        return "<unknown at preview>"


UNKNOWN = _Unknown()


def _n(value: Any) -> str:
    """A count as text: the engine passes numbers as doubles (protobuf Struct), 2.0 reads as 2."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _text(value: Any) -> str | None:
    """A known text input ('' when unset), or None when it is unknown at preview."""
    if value is UNKNOWN:
        return None
    return "" if value is None else str(value)


@dataclass(frozen=True)
class RuleConfig:
    min_voters: int = 3


@dataclass(frozen=True)
class RuleViolation:
    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource}: {self.message}"


@dataclass(frozen=True)
class ResourceView:
    """What a rule may know of one resource at preview."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    delete_before_replace: bool | None
    timeouts: Mapping[str, float] = field(default_factory=dict)  # seconds: create/update/delete
    additional_secret_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[..., list[RuleViolation]]
    scope: str  # "plan" | "resources"


def _desired(doc: Mapping[str, Any]) -> dict[str, Mapping[str, str]]:
    return dict(doc.get("desired") or {})


def _where(doc: Mapping[str, Any]) -> str:
    return f"stack {doc.get('stack', '?')}"


def min_voters(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    n = len(_desired(doc))
    if n < config.min_voters:
        return [RuleViolation("cpswap-etcd-min-voters", _where(doc),
                              f"{n} etcd voters configured; at least {config.min_voters} are required")]
    return []


def odd_voters(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    n = len(_desired(doc))
    if n % 2 == 0:
        return [RuleViolation("cpswap-etcd-odd-voters", _where(doc),
                              f"{n} etcd voters is even: it tolerates {n - quorum(n)} failure(s), "
                              f"no more than {n - 1} voters would")]
    return []


def one_slot_per_run(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    changes = doc.get("changes") or []
    if len(changes) > 1:
        return [RuleViolation("cpswap-one-slot-per-run", _where(doc),
                              f"{len(changes)} slots change in one run ({', '.join(c['slot'] for c in changes)}); "
                              f"at most 1 may")]
    return []


def quorum_every_step(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    found = []
    for step in doc.get("steps") or []:
        if step["healthy"] < step["quorum"]:
            found.append(RuleViolation("cpswap-quorum-every-step", step["id"],
                                       f"after {step['id']} {_n(step['healthy'])} healthy of {_n(step['voters'])} "
                                       f"voters; quorum needs {_n(step['quorum'])}"))
    for phase, state in (doc.get("quorum") or {}).items():
        if doc.get("changes") and state["healthy"] < state["quorum"]:
            found.append(RuleViolation("cpswap-quorum-every-step", f"quorum.{phase}",
                                       f"{_n(state['healthy'])} healthy of {_n(state['voters'])} voters {phase} the "
                                       f"swap; quorum needs {_n(state['quorum'])}"))
    return found


def no_other_unhealthy(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    changes = doc.get("changes") or []
    if not changes:
        return []
    departing = {c["old"]["name"] for c in changes}
    others = [n for n in doc.get("unhealthy") or [] if n not in departing]
    if others:
        return [RuleViolation("cpswap-no-other-unhealthy", changes[0]["slot"],
                              f"replacing {', '.join(sorted(departing))} while {', '.join(others)} "
                              f"{'is' if len(others) == 1 else 'are'} unhealthy ({len(others)} other unhealthy "
                              f"member(s)); only the recovery of exactly the unhealthy member is allowed")]
    return []


def unique_members(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    found = []
    for attr in ("name", "ip"):
        seen: dict[str, str] = {}
        for slot, host in sorted(_desired(doc).items()):
            if host[attr] in seen:
                found.append(RuleViolation("cpswap-unique-members", slot,
                                           f"{seen[host[attr]]} and {slot} both use {attr} {host[attr]}"))
            seen.setdefault(host[attr], slot)
    return found


def vip_not_member(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    vip = str(doc.get("endpoint", "")).rpartition(":")[0]
    return [RuleViolation("cpswap-vip-not-member", slot, f"{slot} uses the control-plane endpoint {vip} as its "
                                                         f"address; the VIP must float between members")
            for slot, host in sorted(_desired(doc).items()) if vip and vip in (host["ip"], host["name"])]


def pvc_policy(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    found = [RuleViolation("cpswap-pvc-explicit-policy", r["field"], r["rule"])
             for r in doc.get("refusals") or [] if str(r.get("field", "")).startswith("pvcRecovery")]
    for claim in doc.get("claims") or []:
        if claim.get("policy") not in ("recreate", "skip", "manual"):
            found.append(RuleViolation("cpswap-pvc-explicit-policy", f"{claim['namespace']}/{claim['name']}",
                                       f"claim has policy {claim.get('policy')!r}; recreate, skip or manual is "
                                       f"required for every data-bearing claim"))
    return found


def even_only_in_surge(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    """An even voter count exists only transiently inside one surge: one slot swapped with strategy
    surge goes n -> n+1 -> n and ends the run at n. Any other plan only ever drops one voter below
    its starting count (replace: n -> n-1 -> n)."""
    steps = list(doc.get("steps") or [])
    start = int((doc.get("quorum") or {}).get("before", {}).get("voters", len(_desired(doc))))
    strategy = (doc.get("strategy") or {}).get("strategy")
    surge = strategy == "surge" and len(doc.get("changes") or []) == 1
    allowed = (start, start + 1) if surge else (start, start - 1)
    found = []
    wrong = [s for s in steps if int(s["voters"]) not in allowed]
    if wrong:
        found.append(RuleViolation(
            "cpswap-even-only-in-surge", wrong[0]["id"],
            f"after {wrong[0]['id']} {_n(wrong[0]['voters'])} voters; "
            + (f"a surge from {start} voters may only add one ({start + 1})" if surge else
               f"outside one surge (strategy {strategy or 'none'}, {len(doc.get('changes') or [])} change(s)) the "
               f"count stays at {start} or drops by one while a member is replaced")))
    elif surge and steps and int(steps[-1]["voters"]) != start:
        found.append(RuleViolation("cpswap-even-only-in-surge", steps[-1]["id"],
                                   f"the surge ends at {_n(steps[-1]['voters'])} voters, not the {start} it started "
                                   f"with: the even count would outlive the run"))
    return found


def snapshot_first(doc: Mapping[str, Any], config: RuleConfig) -> list[RuleViolation]:
    """Defined on the step vocabulary (cpswap/core/steps.py): every action whose declared effect
    changes membership needs an etcd-snapshot step before it."""
    index = first_unsnapshotted_change([s["action"] for s in doc.get("steps") or []])
    if index is None:
        return []
    first = doc["steps"][index]["id"]
    return [RuleViolation("cpswap-snapshot-first", first,
                          f"{first} (step {index + 1}) changes membership but no etcd snapshot step comes before it")]


_LITERAL_SECRET = [
    (re.compile(r"--token[= ]+(?![\"']?\$)\S+"), "a literal --token"),
    (re.compile(r"--certificate-key[= ]+(?![\"']?\$)\S+"), "a literal --certificate-key"),
    (re.compile(r"db_password:\s*(?![\"']?\$)\S+"), "a literal db_password"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
]


def secrets_are_secret(resources: Sequence[ResourceView], config: RuleConfig) -> list[RuleViolation]:
    """Tokens, certificate keys, DB passwords and SSH keys never sit in plain command text, and
    what carries them (stdin, join material output) is hidden from logs."""
    found = []
    for r in resources:
        if r.type not in COMMAND_TYPES:
            continue
        for key in ("create", "update", "delete"):
            text = _text(r.inputs.get(key))
            if text is None:
                found.append(RuleViolation("cpswap-secrets-are-secret", r.name,
                                           f"{key} is unknown at preview; a membership command's text must be "
                                           f"known so it can be checked before it runs"))
                continue
            for pattern, what in _LITERAL_SECRET:
                if pattern.search(text):
                    found.append(RuleViolation("cpswap-secrets-are-secret", r.name,
                                               f"{key} contains {what}; pass it through a secret variable or stdin"))
        if r.inputs.get("stdin") is not None and str(r.inputs.get("logging", "")).lower() != "none":
            found.append(RuleViolation("cpswap-secrets-are-secret", r.name,
                                       f"stdin carries secret material but logging is "
                                       f"{r.inputs.get('logging') or 'stdoutAndStderr'}; it must be none"))
        if r.name.endswith("-join-prepare") and "stdout" not in r.additional_secret_outputs:
            found.append(RuleViolation("cpswap-secrets-are-secret", r.name,
                                       "prints the join token and certificate key but stdout is not an additional "
                                       "secret output"))
    return found


def kubean_operations(resources: Sequence[ResourceView], config: RuleConfig) -> list[RuleViolation]:
    """kubean ClusterOperations run the image used at deploy (pinned, one for all operations) and
    are replaced delete-before-replace like every membership resource."""
    found = []
    ops = [r for r in resources if r.type == OPERATION_TYPE]
    image_of = {r.name: _text(spec.get("image") if isinstance(spec := r.inputs.get("spec"), Mapping) else spec) or ""
                for r in ops}
    images = set(image_of.values())
    for r in ops:
        image = image_of[r.name]
        if not _PINNED_IMAGE.fullmatch(image) or image.endswith(":latest"):
            found.append(RuleViolation("cpswap-kubean-operations", r.name,
                                       f"spec.image {image or '(unset)'} is not pinned; use the spray-job image "
                                       f"(tag or digest) used at deploy"))
        if r.delete_before_replace is not True:
            found.append(RuleViolation("cpswap-kubean-operations", r.name,
                                       "ClusterOperation without deleteBeforeReplace"))
    if len(images) > 1:
        found.append(RuleViolation("cpswap-kubean-operations", ", ".join(sorted(r.name for r in ops)),
                                   f"operations use {len(images)} different images ({', '.join(sorted(images))}); "
                                   f"all must use the one used at deploy"))
    return found


def _surge_marked(r: ResourceView) -> bool:
    """A surge's resource (cpswap.core.slots ``_surge_form``): its update text carries SURGE_MARK."""
    update = _text(r.inputs.get("update"))
    return update is not None and SURGE_MARK in update


def dbr_and_timeouts(resources: Sequence[ResourceView], config: RuleConfig) -> list[RuleViolation]:
    found = []
    for r in resources:
        if r.type not in COMMAND_TYPES:
            continue
        if r.delete_before_replace is not True and not _surge_marked(r):
            found.append(RuleViolation("cpswap-membership-dbr-timeouts", r.name,
                                       "membership command without deleteBeforeReplace: the new member would be "
                                       "added before the old one leaves, which etcd refuses while a voter is down "
                                       f"(only a surge's resources, whose update carries {SURGE_MARK}, may)"))
        missing = [k for k in ("create", "delete") if not r.timeouts.get(k)]
        if missing:
            found.append(RuleViolation("cpswap-membership-dbr-timeouts", r.name,
                                       f"no {'/'.join(missing)} timeout; every membership command needs a deadline"))
    return found


RULES: tuple[Rule, ...] = (
    Rule("cpswap-etcd-min-voters", "etcd keeps at least the configured number of voters (default 3)", min_voters, "plan"),
    Rule("cpswap-etcd-odd-voters", "etcd voter count is odd", odd_voters, "plan"),
    Rule("cpswap-one-slot-per-run", "at most one slot changes per run", one_slot_per_run, "plan"),
    Rule("cpswap-quorum-every-step", "projected healthy voters stay at or above quorum at every step",
         quorum_every_step, "plan"),
    Rule("cpswap-no-other-unhealthy", "no other member is unhealthy while one is replaced, unless the plan recovers "
         "exactly that member", no_other_unhealthy, "plan"),
    Rule("cpswap-unique-members", "member names and IPs are unique", unique_members, "plan"),
    Rule("cpswap-vip-not-member", "the control-plane VIP is not a member", vip_not_member, "plan"),
    Rule("cpswap-pvc-explicit-policy", "every data-bearing PVC in the recovery has an explicit policy", pvc_policy,
         "plan"),
    Rule("cpswap-snapshot-first", "a snapshot step comes before any membership change", snapshot_first, "plan"),
    Rule("cpswap-even-only-in-surge", "an even voter count exists only transiently inside one surge (n -> n+1 -> n)",
         even_only_in_surge, "plan"),
    Rule("cpswap-secrets-are-secret", "join tokens, certificate keys, DB passwords and SSH keys are secret",
         secrets_are_secret, "resources"),
    Rule("cpswap-membership-dbr-timeouts", "membership command resources use delete-before-replace and have "
         "timeouts", dbr_and_timeouts, "resources"),
    Rule("cpswap-kubean-operations", "kubean ClusterOperations use the pinned deploy image and delete-before-replace",
         kubean_operations, "resources"),
)


def check_plan(*, plan: Any, config: RuleConfig = RuleConfig(), only: Sequence[str] | None = None
               ) -> list[RuleViolation]:
    """The plan rules (or ``only`` those named) on a plan document; a missing or unknown plan
    document is itself a violation of each."""
    found: list[RuleViolation] = []
    for rule in RULES:
        if rule.scope != "plan" or (only is not None and rule.name not in only):
            continue
        if not isinstance(plan, Mapping):
            found.append(RuleViolation(rule.name, PLAN_RESOURCE_TYPE,
                                       "no plan document found on the ControlPlane component; cannot check"))
        else:
            found.extend(rule.check(plan, config))
    return found


def check_resources(*, resources: Sequence[ResourceView], config: RuleConfig = RuleConfig(),
                    only: Sequence[str] | None = None) -> list[RuleViolation]:
    """The resource rules (or ``only`` those named) on command and ClusterOperation views."""
    found: list[RuleViolation] = []
    for rule in RULES:
        if rule.scope == "resources" and (only is None or rule.name in only):
            found.extend(rule.check(resources, config))
    return found


def check(*, plan: Mapping[str, Any] | None, resources: Sequence[ResourceView], config: RuleConfig = RuleConfig(),
          only: Sequence[str] | None = None) -> list[RuleViolation]:
    """Every rule (or ``only`` those named): the plan rules, then the resource rules."""
    return [*check_plan(plan=plan, config=config, only=only),
            *check_resources(resources=resources, config=config, only=only)]


def timeout_seconds(text: str) -> float:
    """A Pulumi custom timeout ("10m", "90s", "1h") in seconds; 0 when unset or not of that form."""
    match = re.fullmatch(r"(\d+)([smh])", text or "")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)] if match else 0.0


def view_of(declaration: Declaration) -> ResourceView:
    """What the rules see of a declared resource at preview: its inputs, with a secret stdin as a
    placeholder naming what it carries, and its options."""
    inputs = dict(declaration.inputs)
    if declaration.stdin is not None:  # where the component passes it: after the triggers
        inputs = {**{k: v for k, v in inputs.items() if k != "logging"}, "stdin": f"<secret {declaration.stdin.kind}>",
                  **({"logging": inputs["logging"]} if "logging" in inputs else {})}
    return ResourceView(type=declaration.type, name=declaration.name, inputs=inputs,
                        delete_before_replace=declaration.delete_before_replace,
                        timeouts={k: timeout_seconds(v) for k, v in declaration.timeouts.items()},
                        additional_secret_outputs=declaration.additional_secret_outputs)


def views_from_specs(specs: Sequence[SlotResource]) -> list[ResourceView]:
    """Offline views of the resources the components register for ``specs`` (both from ``declare``)."""
    return [view_of(declare(spec)) for spec in specs]


def declared_views(*, model: StackModel, object_slots: frozenset[str] | None = None,
                   surge_from: Mapping[str, Host] | None = None,
                   departed: Mapping[str, str] | None = None) -> list[ResourceView]:
    """The views of every command and ClusterOperation the components register for ``model``
    (objects only for ``object_slots``; None: every slot's; ``surge_from``: slot → departing host of
    a surge; ``departed``: ``slots.departed_nodes``), and the destroy guard, in registration order."""
    surge_from = surge_from or {}
    return [*(view for m in model.members for view in views_from_specs(
        [s for s in slot_commands(model=model, member=m, surge_from=surge_from.get(m.slot),
                                  departed=(departed or {}).get(m.slot))
         if not isinstance(s, ObjectSpec) or object_slots is None or m.slot in object_slots])),
        *views_from_specs([destroy_guard(model=model)])]


def view_to_input(view: ResourceView) -> dict[str, Any]:
    """A view as the ControlPlane's ``commands`` input carries it (plain JSON)."""
    return {"type": view.type, "name": view.name, "inputs": dict(view.inputs),
            "deleteBeforeReplace": view.delete_before_replace, "timeouts": dict(view.timeouts),
            "additionalSecretOutputs": list(view.additional_secret_outputs)}


def view_from_input(raw: Any) -> ResourceView:
    """The inverse of ``view_to_input``; unknown or malformed parts stay unknown or empty, so the
    rules report them."""
    raw = raw if isinstance(raw, Mapping) else {}
    inputs = raw.get("inputs")
    timeouts = raw.get("timeouts")
    dbr = raw.get("deleteBeforeReplace")
    secret_outputs = raw.get("additionalSecretOutputs")
    return ResourceView(
        type=str(raw.get("type", "")), name=str(raw.get("name", "")),
        inputs=dict(inputs) if isinstance(inputs, Mapping) else {},
        delete_before_replace=dbr if isinstance(dbr, bool) else None,
        timeouts={k: float(v) for k, v in timeouts.items() if isinstance(v, (int, float))}
        if isinstance(timeouts, Mapping) else {},
        additional_secret_outputs=tuple(str(x) for x in secret_outputs) if isinstance(secret_outputs, (list, tuple))
        else ())
