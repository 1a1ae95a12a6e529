"""The planner: (desired model, applied membership, observation) → ordered steps. Pure.

It decides, and says why, but runs nothing. Every step carries the etcd voters, healthy voters,
quorum and tolerance after it. The plan refuses (``refusals``) instead of raising, so the same
plan can be shown in full and then enforced: ``Plan.raise_if_refused()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from cpswap.core.errors import ConfigError, Violation
from cpswap.core.facts import EtcdFacts, EtcdMember, Observation, canonical_ip
from cpswap.core.model import Host, Member, StackModel
from cpswap.core.quorum import QuorumState, can_remove
from cpswap.core.recovery import ClaimAction, plan_claim_actions, unobserved_actions
from cpswap.core.slots import ADOPTION_CHECK, CommandSpec, ObjectSpec, SlotResource, departed_nodes, slot_commands
from cpswap.core.steps import PREFLIGHT_ACTIONS, AFTER_ACTIONS, Action, Phase
from cpswap.core.strategy import REPLACE, SURGE, QuorumPath, StrategyDecision, decide_strategy, quorum_path


@dataclass(frozen=True)
class AppliedMembership:
    """Which host holds which slot as deployed now, where that knowledge came from and why that
    source won (``choose_applied``). ``adoption``: nothing recorded it; the desired membership is
    taken as applied only if a run-time check confirms, before anything else runs, that each
    slot's host is a current etcd member (``ADOPTION_CHECK``)."""

    hosts: tuple[tuple[str, Host], ...]
    source: str
    destroy_mode: str | None = None  # the destroyMode the last deployment stored (None: not recorded)
    reason: str = ""
    adoption: bool = False

    @classmethod
    def of(cls, hosts: dict[str, Host], *, source: str, destroy_mode: str | None = None, reason: str = "",
           adoption: bool = False) -> AppliedMembership:
        return cls(hosts=tuple(sorted(hosts.items())), source=source, destroy_mode=destroy_mode, reason=reason,
                   adoption=adoption)

    def as_dict(self) -> dict[str, Host]:
        return dict(self.hosts)


def membership_from_etcd(*, model: StackModel, facts: EtcdFacts) -> dict[str, Host] | None:
    """Map live etcd voters onto slots: a desired host that is a member (exactly: name and IP)
    keeps its slot; the one slot whose desired host is not a member is held by the one voter
    matching no desired host. None when that is ambiguous (more than one such slot or voter)."""
    hosts: dict[str, Host] = {}
    unmatched = [m for m in facts.voters if not any(m.matches(name=x.host.name, ip=x.host.ip) for x in model.members)]
    for member in model.members:
        if facts.find(name=member.host.name, ip=member.host.ip) is not None:
            hosts[member.slot] = member.host
    free = [m.slot for m in model.members if m.slot not in hosts]
    if len(free) == 1 and len(unmatched) == 1:
        live = unmatched[0]
        hosts[free[0]] = Host(name=node_name(live.name), ip=canonical_ip(live.ip) or live.ip)
    elif free or unmatched:
        return None
    return hosts


def node_name(member_name: str) -> str:
    """The node a member belongs to (k3s names members ``<node>-<8 hex>``)."""
    prefix, _, suffix = member_name.rpartition("-")
    return prefix if len(suffix) == 8 and all(c in "0123456789abcdef" for c in suffix) else member_name


def _diff(a: dict[str, Host], b: dict[str, Host]) -> list[str]:
    return sorted(s for s in set(a) | set(b) if a.get(s) != b.get(s))


def choose_applied(*, model: StackModel, live: EtcdFacts | None = None,
                   exported: tuple[dict[str, Host], str] | None = None,
                   base: tuple[dict[str, Host], str] | None = None) -> AppliedMembership:
    """The one rule (docs/CONTRACTS.md "Applied membership"): live etcd when it was observed and
    maps onto the slots; else the membership the last deployment exported (the saved stack
    outputs: what was deployed); else the stack file at ``--base`` (what a pull request compares
    with); else adoption, verified at run time. ``exported``/``base``: (hosts, where)."""
    passed_over = []
    if live is not None and live.reachable:
        hosts = membership_from_etcd(model=model, facts=live)
        if hosts is not None:
            others = [f"{pair[1]} ({'agrees' if not _diff(pair[0], hosts) else 'differs in ' + ', '.join(_diff(pair[0], hosts))})"
                      for pair in (exported, base) if pair is not None]
            return AppliedMembership.of(hosts, source="live etcd (read-only)", reason=(
                "observed live, it is what the cluster is now" + (f"; also given: {'; '.join(others)}" if others else "")))
        passed_over.append("live etcd was observed but its voters do not map onto the slots (more than one slot "
                           "differs)")
    if exported is not None:
        hosts, where = exported
        note = ""
        if base is not None:
            base_hosts, rev = base
            diff = _diff(base_hosts, hosts)
            note = (f"; the stack file at {rev} agrees" if not diff else
                    f"; the stack file at {rev} differs in {', '.join(diff)} and is not used (it is what the branch "
                    f"started from, not what was deployed)")
        return AppliedMembership.of(hosts, source=f"exported by the last deployment ({where})", reason=(
            "; ".join(passed_over + ["the last successful deployment recorded it: it is what was deployed"]) + note))
    if base is not None:
        hosts, rev = base
        return AppliedMembership.of(hosts, source=f"stack file at {rev}", reason="; ".join(passed_over + [
            "no deployment recorded a membership; the stack file at the base revision is taken as deployed"]))
    return AppliedMembership.of(model.hosts(), source="none recorded (adoption)", adoption=True, reason="; ".join(
        passed_over + [f"no deployment recorded a membership and none was observed: the stack config is taken as "
                       f"applied only after {ADOPTION_CHECK} confirms at run time, before anything else runs, that "
                       f"each slot's host is a current etcd member"]))


@dataclass(frozen=True)
class Change:
    slot: str
    old: Host
    new: Host
    reason: str


@dataclass(frozen=True)
class Where:
    """Where a step runs: ``local`` on the operator's machine, or ``ssh`` to ``host`` (an IP)."""

    kind: str  # local | ssh
    host: str  # "operator" or the IP reached over SSH
    description: str

    def __str__(self) -> str:
        return self.description

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "host": self.host, "description": self.description}


@dataclass(frozen=True)
class Step:
    id: str
    slot: str
    action: Action
    phase: Phase
    resource: str  # the Pulumi resource that carries it
    operation: str  # delete (runs from stored state) | create
    runs_on: Where
    kind: str  # "command" | "k8s-object" (declared with pulumi-kubernetes)
    command: str
    reason: str
    state: QuorumState
    secret_inputs: tuple[str, ...]
    timeout: str
    deadline_s: int | None = None  # a command ends itself after this (renderers/deadline.py); None: an object


@dataclass(frozen=True)
class VipRole:
    """Who carries the control-plane VIP (keepalived priorities from ``vip.priorities``)."""

    endpoint: str
    managed_by: str  # cpswap (keepalived.conf written on the new host) | the distribution | unknown
    master_slot: str | None
    master_host: str | None
    holder_now: str | None  # the healthy host with the highest priority
    departing_had_master: bool
    holder_during: str | None
    new_state: str | None
    new_priority: int | None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Plan:
    model: StackModel
    applied: AppliedMembership
    observed: bool
    changes: tuple[Change, ...]
    unhealthy: tuple[str, ...]
    steps: tuple[Step, ...]
    before: QuorumState
    during: QuorumState
    after: QuorumState
    claims: tuple[ClaimAction, ...]
    warnings: tuple[str, ...]
    refusals: tuple[Violation, ...] = field(default=())
    vip: VipRole | None = None
    live: tuple[EtcdMember, ...] = ()  # etcd's member list when observed (the health check compares it)
    leader_id: int | None = None  # etcd's leader when observed
    strategy: StrategyDecision | None = None  # how the swap runs, and why (None: no swap)
    paths: tuple[QuorumPath, ...] = ()  # the chosen strategy's quorum path first, then the other when possible

    @property
    def is_noop(self) -> bool:
        return not self.changes

    @property
    def surge_from(self) -> dict[str, Host]:
        """slot → departing host for the slot swapped by surge (its resources' surge form), else empty."""
        if self.strategy is None or self.strategy.strategy != SURGE:
            return {}
        return {c.slot: c.old for c in self.changes if c.slot == self.strategy.slot}

    def departed(self, *, recorded: Mapping[str, str]) -> dict[str, str]:
        """slot → the Node its host replaced, for PVC recovery's ``--old-node`` (``slots.departed_nodes``):
        this run's changes (none for a surge: its handover moves the claims), else ``recorded``."""
        return departed_nodes(model=self.model, recorded=recorded,
                              changes={c.slot: None if c.slot in self.surge_from else c.old.name for c in self.changes})

    def raise_if_refused(self) -> None:
        if self.refusals:
            raise ConfigError(self.refusals)


def _changes(model: StackModel, applied: AppliedMembership) -> tuple[list[Change], list[Violation]]:
    desired, current = model.hosts(), applied.as_dict()
    problems: list[Violation] = []
    added, removed = sorted(set(desired) - set(current)), sorted(set(current) - set(desired))
    if added or removed:
        problems.append(Violation(
            "members", ", ".join([*(f"+{s}" for s in added), *(f"-{s}" for s in removed)]),
            f"slots must stay the same ({', '.join(sorted(current))} applied per {applied.source}); "
            f"a swap edits the host of one slot, it does not add or remove slots"))
    changes = [Change(slot=s, old=current[s], new=desired[s],
                      reason=f"{s} holds {current[s]} per {applied.source}; stack config wants {desired[s]}")
               for s in sorted(set(desired) & set(current)) if current[s] != desired[s]]
    if len(changes) > 1:
        problems.append(Violation(
            "members", ", ".join(c.slot for c in changes),
            f"at most one slot may change per run; {len(changes)} changed "
            f"({'; '.join(f'{c.slot}: {c.old} -> {c.new}' for c in changes)})"))
    return changes, problems


def _unhealthy(model: StackModel, applied: AppliedMembership, observation: Observation) -> tuple[str, ...]:
    facts = observation.etcd
    if facts is None or not facts.reachable:
        return ()
    names = []
    for _slot, host in applied.hosts:
        member = facts.find(name=host.name, ip=host.ip)
        if member is None or member.healthy is False or (member.healthy is None and not member.started):
            names.append(host.name)
    return tuple(names)


def _claims(model: StackModel, change: Change | None, observation: Observation) -> tuple[tuple[ClaimAction, ...], tuple[Violation, ...]]:
    if change is None:
        return (), ()
    kube = observation.kube
    if kube is not None and kube.reachable:
        mine = [c for c in kube.claims if c.node == change.old.name]
        return plan_claim_actions(claims=mine, policies=model.pvc_policies, node=change.old.name)
    return unobserved_actions(policies=model.pvc_policies), ()




def _where(spec: SlotResource, member: Member, vip: str) -> Where:
    if isinstance(spec, ObjectSpec):
        api = "kubean global cluster API" if spec.provider == "global" else "cluster API (VIP)"
        return Where(kind="k8s", host=spec.provider, description=f"pulumi-kubernetes → {api}")
    return Where(kind=spec.runs_on.kind,
                 host="operator" if spec.runs_on.kind == "local" else
                 (vip if spec.runs_on.target == "vip" else member.host.ip),
                 description=spec.runs_on.describe(member, vip))


def _secrets(spec: SlotResource) -> tuple[str, ...]:
    secrets = tuple(key for _, key in spec.secret_env)
    if spec.stdin is not None and spec.stdin.secret is not None:
        secrets += (spec.stdin.secret,)
    if spec.runs_on.kind == "ssh":
        secrets += ("sshPrivateKey",)
    if isinstance(spec, ObjectSpec):
        secrets += ("globalKubeconfig",) if spec.provider == "global" else ("kubeconfig",)
    return secrets


def _steps(model: StackModel, change: Change, start: QuorumState, departing_healthy: bool,
           surge: bool = False) -> tuple[Step, ...]:
    old_member = Member(slot=change.slot, host=change.old)
    new_member = model.member(change.slot)
    old_specs = slot_commands(model=model, member=old_member)
    new_specs = slot_commands(model=model, member=new_member, surge_from=change.old if surge else None,
                              departed=None if surge or change.old.name == new_member.host.name else change.old.name)
    vip = model.endpoint.host
    steps: list[Step] = []
    removed = QuorumState(voters=start.voters - 1, healthy=start.healthy - (1 if departing_healthy else 0))
    joined = QuorumState(voters=removed.voters + 1, healthy=removed.healthy + 1)

    def add(spec: SlotResource, *, operation: str, phase: Phase, state: QuorumState, member: Member,
            action: Action | None = None, command: str | None = None, reason: str | None = None) -> None:
        act = action or spec.action
        steps.append(Step(
            id=f"{change.slot}-{act}" if operation == "create" or act.leaves or act is Action.ETCD_SNAPSHOT
            else f"{change.slot}-{act}-delete",
            slot=change.slot, action=act, phase=phase, resource=spec.name,
            operation=operation, runs_on=_where(spec, member, vip), kind=spec.kind,
            command=command or (spec.delete if operation == "delete" else spec.create) or "",
            reason=reason or spec.reason, state=state, secret_inputs=_secrets(spec),
            timeout=spec.delete_timeout if operation == "delete" else spec.create_timeout,
            deadline_s=None if not isinstance(spec, CommandSpec) else
            (spec.delete_deadline if operation == "delete" else spec.create_deadline).seconds))

    # what Pulumi replaces: a resource whose triggers change (an in-place rebuild keeps, e.g., the
    # OpenShift Machine, whose triggers are name and IP only)
    new_triggers = {spec.name: spec.triggers for spec in new_specs}
    replaced = {spec.name for spec in old_specs
                if spec.name in new_triggers and spec.triggers != new_triggers[spec.name]}
    kept = {spec.name for spec in old_specs if spec.name in new_triggers} - replaced
    for spec in new_specs:
        if spec.action in PREFLIGHT_ACTIONS and spec.name not in kept:
            add(spec, operation="create", phase="preflight", state=start, member=new_member)
    if surge:
        _surge_steps(add, new_specs=new_specs, old_specs=old_specs, replaced=replaced, start=start,
                     departing_healthy=departing_healthy, old_member=old_member, new_member=new_member,
                     member_in=model.distro.joined_by)
        return tuple(steps)
    for spec in old_specs:
        if spec.delete is None or spec.name not in replaced:
            continue
        if spec.name == f"{change.slot}-etcd-leave":
            add(spec, operation="delete", phase="leave", state=start, member=old_member, action=Action.ETCD_SNAPSHOT,
                command=f"(part of {spec.name} delete) snapshot save + verify into {model.etcd.snapshot_where()}",
                reason="a verified etcd snapshot is taken before any membership change")
        add(spec, operation="delete", phase="leave", state=removed, member=old_member)
    member_in = model.distro.joined_by  # the step after which the new member is in
    state = removed
    for spec in new_specs:
        if spec.action.leaves or spec.action in PREFLIGHT_ACTIONS or spec.name in kept:
            continue
        if spec.action in AFTER_ACTIONS:
            add(spec, operation="create", phase="after", state=joined, member=new_member)
            continue
        if spec.action == member_in:
            state = joined
        add(spec, operation="create", phase="join", state=state, member=new_member)
    return tuple(steps)


def _surge_steps(add: Callable[..., None], *, new_specs: tuple[SlotResource, ...], old_specs: tuple[SlotResource, ...],
                 replaced: set[str], start: QuorumState, departing_healthy: bool, old_member: Member,
                 new_member: Member, member_in: Action) -> None:
    """A surge in the engine's order: every replacement is created when it registers (no
    delete-before-replace), so the new chain runs first (snapshot, join, verify, claims, handover);
    the old copies' deletes run after the program, dependents first (step_generator.go
    ``ScheduleDeletes``) and find the member and the Node already gone."""
    joined = QuorumState(voters=start.voters + 1, healthy=start.healthy + 1)
    after = QuorumState(voters=start.voters, healthy=joined.healthy - (1 if departing_healthy else 0))
    state = start
    for spec in new_specs:
        if spec.action in PREFLIGHT_ACTIONS or (spec.action.leaves and spec.action not in (
                Action.ETCD_REMOVE, Action.HANDOVER)):
            continue
        if spec.action is Action.ETCD_REMOVE:
            add(spec, operation="create", phase="join", state=start, member=new_member, action=Action.ETCD_SNAPSHOT)
        elif spec.action is Action.HANDOVER:
            add(spec, operation="create", phase="leave", state=after, member=new_member)
            state = after
        elif spec.action in AFTER_ACTIONS:
            add(spec, operation="create", phase="after", state=joined, member=new_member)
        else:
            if spec.action == member_in:
                state = joined
            add(spec, operation="create", phase="join", state=state, member=new_member)
    for spec in reversed(old_specs):
        if spec.delete is None or spec.name not in replaced:
            continue
        add(spec, operation="delete", phase="leave", state=after, member=old_member,
            reason=f"the old copy's delete, from stored state after the program (no delete-before-replace): "
                   f"{old_member.host.name} was handed over already, so it finds nothing left to do and succeeds")


def _vip_role(model: StackModel, applied: AppliedMembership, change: Change | None,
              unhealthy: tuple[str, ...]) -> tuple[VipRole | None, list[str]]:
    vip = model.vip
    if not vip.priorities:
        return None, []
    hosts = applied.as_dict() or model.hosts()
    ranked = sorted(((p, s) for s, p in vip.priorities), reverse=True)
    master = vip.master_slot
    healthy = [(p, s) for p, s in ranked if s in hosts and hosts[s].name not in unhealthy]
    holder_now = hosts[healthy[0][1]].name if healthy else None
    during = [(p, s) for p, s in healthy if change is None or s != change.slot]
    holder_during = hosts[during[0][1]].name if during else None
    departing_master = change is not None and change.slot == master
    state = priority = None
    if change is not None:
        state, priority = vip.joining_priority(change.slot)
    managed = "cpswap (keepalived.conf on the new host)" if vip.keepalived else model.distro.vip_managed_by
    role = VipRole(endpoint=str(model.endpoint), managed_by=managed, master_slot=master,
                   master_host=hosts[master].name if master in hosts else None, holder_now=holder_now,
                   departing_had_master=departing_master, holder_during=holder_during,
                   new_state=state, new_priority=priority)
    warnings = []
    if departing_master and change is not None:
        warnings.append(
            f"{change.old.name} had the keepalived MASTER priority ({vip.priority(change.slot)}): the VIP "
            f"{model.endpoint.host} is on {holder_during} during the swap; {change.new.name} joins as {state} "
            f"priority {priority}" + ("" if vip.take_over_primary else
                                      " and the VIP stays where it is (set vip.takeOverPrimary to move it back)"))
    return role, warnings


def _released(model: StackModel, applied: AppliedMembership, changes: list[Change]) -> list[Violation]:
    """With ``destroyMode: release`` the leave commands in state only record (a destroy must leave the
    cluster intact), so no slot may change: a swap would join a new member without removing the old
    one. The same holds for the run that switches back, whose replacements still delete from the
    stored, released commands."""
    if not changes:
        return []
    slots = ", ".join(c.slot for c in changes)
    if model.destroy_mode == "release":
        return [Violation("destroyMode", "release", f"membership changes ({slots}) are refused while the control "
                          "plane is released: its leave commands only record; set destroyMode to refuse, run "
                          "`pulumi up` without a change, then swap")]
    if applied.destroy_mode == "release":
        return [Violation("destroyMode", f"release -> {model.destroy_mode}",
                          f"membership changes ({slots}) are refused in the run that ends the release: the "
                          "replaced leave commands would run from state, where they only record; run `pulumi up` "
                          "without a change first")]
    return []


def plan_swap(*, model: StackModel, applied: AppliedMembership, observation: Observation) -> Plan:
    changes, refusals = _changes(model, applied)
    refusals.extend(_released(model, applied, changes))
    unhealthy = _unhealthy(model, applied, observation)
    voters = len(applied.hosts) or len(model.members)
    warnings: list[str] = []
    observed = observation.observed
    change = changes[0] if len(changes) == 1 else None
    if not observed and change is not None:
        unhealthy = (change.old.name,)  # worst case for tolerance: the departing member is dead
    before = QuorumState(voters=voters, healthy=voters - len(unhealthy))
    if observation.etcd is not None and not observation.etcd.reachable:
        warnings.append(f"etcd not observed ({observation.etcd.error}); the plan assumes every member "
                        f"except the departing one is healthy")
    steps: tuple[Step, ...] = ()
    during = after = before
    decision: StrategyDecision | None = None
    paths: tuple[QuorumPath, ...] = ()
    if change is not None:
        departing_healthy = observed and change.old.name not in unhealthy
        others_down = [n for n in unhealthy if n != change.old.name]
        requested, source = model.requested_strategy(change.slot)
        decision = decide_strategy(slot=change.slot, requested=requested, source=source,
                                   distribution=model.distribution, old=change.old, new=change.new, observed=observed,
                                   departing_healthy=departing_healthy, others_unhealthy=tuple(others_down))
        surge = decision.strategy == SURGE
        if decision.refusal is not None:
            refusals.append(Violation(source if source.startswith("members.") else "strategy", requested,
                                      decision.refusal))
        paths = tuple(quorum_path(strategy=name, voters=before.voters, healthy=before.healthy,
                                  departing_healthy=departing_healthy)
                      for name in ((SURGE, REPLACE) if surge else (REPLACE, SURGE) if decision.surge_possible
                                   else (REPLACE,)))
        verdict = (can_remove(voters=before.voters + 1, healthy=before.healthy + 1, target_healthy=departing_healthy,
                              target=f"{change.slot} ({change.old})") if surge else
                   can_remove(voters=before.voters, healthy=before.healthy, target_healthy=departing_healthy,
                              target=f"{change.slot} ({change.old})"))
        if not verdict.allowed:
            refusals.append(Violation(f"members.{change.slot}", str(change.old), verdict.reason))
        if others_down:
            refusals.append(Violation(
                f"members.{change.slot}", str(change.old),
                f"{', '.join(others_down)} {'is' if len(others_down) == 1 else 'are'} unhealthy too; etcd refuses "
                f"to add a member while a voter is down, so replacing {change.old.name} now would strand the "
                f"cluster at {before.voters - 1} voters; recover {', '.join(others_down)} first"))
        if change.old.ip == change.new.ip and not surge:
            warnings.append(f"{change.slot} keeps IP {change.new.ip}: remove-then-add runs with "
                            f"{verdict.after.voters} voters (tolerance {verdict.after.tolerance}) until the rebuilt "
                            f"member has joined")
        if not observed:
            warnings.append(f"unobserved: {change.old} is assumed dead (the worst case for tolerance); "
                            f"run with observation to check the survivors' health first")
        steps = _steps(model, change, before, departing_healthy, surge=surge)
        chosen = paths[0].points
        during = min((state for _, state in chosen[1:-1]), key=lambda q: (q.tolerance, -q.voters))
        after = chosen[-1][1]
    vip_role, vip_warnings = _vip_role(model, applied, change, unhealthy)
    warnings.extend(vip_warnings)
    if change is not None:
        warnings.extend(model.distro.plan_notes(model, change.slot, change.old, change.new))
    claims, claim_refusals = _claims(model, change, observation)
    refusals.extend(claim_refusals)
    lost = [c for c in claims if c.data_loss]
    if lost:
        warnings.append("DATA LOSS: " + "; ".join(
            f"{c.namespace}/{c.name} ({c.size}, dataClass unique: the only copy) is recreated empty"
            for c in lost) + " (acknowledged with acceptDataLoss)")
    if change is not None and not any(c.observed for c in claims) and claims:
        warnings.append(f"claims on {change.old.name} not observed: recovery at run time handles claims "
                        f"matching the policies below and refuses any data-bearing claim without one")
    return Plan(model=model, applied=applied, observed=observed, changes=tuple(changes), unhealthy=unhealthy,
                steps=steps, before=before, during=during, after=after, claims=claims,
                warnings=tuple(warnings), refusals=tuple(refusals), vip=vip_role,
                live=observation.etcd.members if observed and observation.etcd is not None else (),
                leader_id=observation.etcd.leader_id if observed and observation.etcd is not None else None,
                strategy=decision, paths=paths)
