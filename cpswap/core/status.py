"""`cpswap status`: where a swap stands, from the config, the files and (when observed) the live
cluster. Pure: facts in, a report out; the CLI reads the files and the cluster.

Per slot: the configured host, the applied one (the last deployment's exported membership), and
live etcd: voter or learner, healthy, leader; unobserved when there are no credentials. A slot
whose live state differs from the config gets what to do. Interrupted PVC-recovery journals name
what the next ``up`` resumes. Snapshots are listed with their age.
"""
from __future__ import annotations

from dataclasses import dataclass

from cpswap.core.facts import EtcdFacts, EtcdMember
from cpswap.core.model import Host, StackModel


@dataclass(frozen=True)
class SlotStatus:
    slot: str
    config: str
    applied: str | None
    live: str  # voter | learner | unstarted | absent | unobserved
    healthy: bool | None
    leader: bool
    action: str | None  # what to do when the live state differs from the config

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Journal:
    name: str  # file name, e.g. recover-<node>.jsonl
    claims: tuple[str, ...]
    last_step: str


@dataclass(frozen=True)
class Snapshot:
    path: str
    age_s: float
    size: int


@dataclass(frozen=True)
class StatusReport:
    stack: str
    observed: bool
    observation_error: str | None
    slots: tuple[SlotStatus, ...]
    extra_members: tuple[str, ...]  # live members no slot names (a pending learner, a member not yet removed)
    journals: tuple[tuple[Journal, str], ...]  # (journal, what the next `up` does)
    snapshots: tuple[Snapshot, ...]

    @property
    def converged(self) -> bool:
        return (self.observed and not self.extra_members and not self.journals
                and all(s.action is None for s in self.slots))

    def as_dict(self) -> dict[str, object]:
        return {"stack": self.stack, "observed": self.observed, "observationError": self.observation_error,
                "converged": self.converged, "slots": [s.as_dict() for s in self.slots],
                "extraMembers": list(self.extra_members),
                "journals": [{"file": j.name, "claims": list(j.claims), "lastStep": j.last_step, "next": n}
                             for j, n in self.journals],
                "snapshots": [{"path": s.path, "ageSeconds": round(s.age_s), "bytes": s.size} for s in self.snapshots]}


def _member_for(host: Host, members: tuple[EtcdMember, ...], port: int = 2380) -> EtcdMember | None:
    peer = f"https://{host.ip}:{port}"
    for m in members:
        if peer in m.peer_urls or (m.name and (m.name == host.name or m.name.rsplit("-", 1)[0] == host.name)):
            return m
    return None


def _slot(slot: str, host: Host, applied: Host | None, etcd: EtcdFacts | None) -> SlotStatus:
    applied_text = str(applied) if applied is not None else None
    if etcd is None or not etcd.reachable:
        return SlotStatus(slot, str(host), applied_text, "unobserved", None, False, None)
    member = _member_for(host, etcd.members)
    if member is None:
        action: str | None = (f"{host} is not an etcd member: run `pulumi up` to swap {slot} in"
                               + (f" (applied: {applied})" if applied is not None and applied != host else ""))
        return SlotStatus(slot, str(host), applied_text, "absent", None, False, action)
    live = "unstarted" if not member.name else "learner" if member.is_learner else "voter"
    action = None
    if live == "unstarted":
        action = f"{host}'s member was added but never started: the next `up` re-runs {slot}-join, which resumes it"
    elif live == "learner":
        action = f"{host} is a learner: the next `up` re-runs {slot}-join/verify until it is promoted"
    elif member.healthy is False:
        action = f"{host} is a voter but unhealthy: check etcd on it (`cpswap etcd health`)"
    return SlotStatus(slot, str(host), applied_text, live, member.healthy, member.id == etcd.leader_id, action)


def decide_status(*, model: StackModel, applied: dict[str, Host], etcd: EtcdFacts | None,
                  journals: tuple[Journal, ...], snapshots: tuple[Snapshot, ...]) -> StatusReport:
    slots = tuple(_slot(m.slot, m.host, applied.get(m.slot), etcd) for m in model.members)
    extra: tuple[str, ...] = ()
    if etcd is not None and etcd.reachable:
        named = {id(_member_for(m.host, etcd.members)) for m in model.members}
        extra = tuple(f"{m.name or '(unstarted)'} {','.join(m.peer_urls)}"
                      + (" learner" if m.is_learner else " voter")
                      for m in etcd.members if id(m) not in named)
    pending = tuple((j, f"the next `up` re-runs the slot's pvcs step, which resumes {len(j.claims)} started "
                        f"claim(s): {', '.join(j.claims)}") for j in journals if j.last_step != "uncordon")
    return StatusReport(stack=model.stack, observed=etcd is not None and etcd.reachable,
                        observation_error=None if etcd is None else etcd.error, slots=slots,
                        extra_members=extra, journals=pending, snapshots=snapshots)


def render_status(report: StatusReport) -> str:
    lines = [f"cpswap status: stack {report.stack}; live etcd "
             + ("observed" if report.observed else f"UNOBSERVED ({report.observation_error or 'no credentials'})")]
    lines.append(f"{'slot':<6} {'config':<40} {'live':<10} {'healthy':<8} leader")
    for s in report.slots:
        healthy = "-" if s.healthy is None else "yes" if s.healthy else "NO"
        lines.append(f"{s.slot:<6} {s.config:<40} {s.live:<10} {healthy:<8} {'yes' if s.leader else ''}")
        if s.applied is not None and s.applied != s.config:
            lines.append(f"       applied by the last deployment: {s.applied}")
        if s.action:
            lines.append(f"       to do: {s.action}")
    for member in report.extra_members:
        lines.append(f"member in no slot: {member} (a departed host not yet removed, or a join in flight)")
    for journal, what in report.journals:
        lines.append(f"interrupted: {journal.name} (last step {journal.last_step}): {what}")
    for snap in report.snapshots:
        lines.append(f"snapshot: {snap.path} ({snap.size} bytes, {snap.age_s / 3600:.1f} h old)")
    lines.append("converged" if report.converged else "NOT converged" if report.observed else
                 "convergence unknown (unobserved)")
    return "\n".join(lines)
