"""`cpswap status`: where a swap stands, from the config, the files and (when observed) the live
cluster. Pure: facts in, a report out; the CLI reads the files and the cluster.

Per slot: the configured host, the applied one (the last deployment's exported membership), live
etcd (voter or learner, healthy, leader; unobserved without credentials), its Node (Ready or not,
with a kubeconfig) and whether it holds the VIP (with an SSH key). A slot whose live state differs
from the config, or whose step failed or was interrupted in the last run, gets what to do, named
after the slot's resources in their order (``cpswap.core.slots``). Journals: PVC recoveries that
did not reach ``uncordon``, kubean ClusterOperations in flight or failed, OpenShift Machines being
replaced; each with what the next ``up`` resumes. The last run's steps come from the run record
(cpswap/core/runrecord.py). Snapshots are listed with their age.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cpswap.core.facts import EtcdFacts, EtcdMember
from cpswap.core.model import Host, StackModel
from cpswap.core.runrecord import RunSummary, StepRun


@dataclass(frozen=True)
class SlotStatus:
    slot: str
    config: str
    applied: str | None
    live: str  # voter | learner | unstarted | absent | unobserved
    healthy: bool | None
    leader: bool
    action: str | None  # what to do when the live state differs from the config
    node: str = "unobserved"  # Ready | NotReady | absent | unobserved
    vip: bool | None = None  # holds the VIP address now (None: not observed)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Pending:
    """An operation in the cluster the next ``up`` picks up: a kubean ClusterOperation in flight or
    failed, an OpenShift Machine being replaced."""

    kind: str  # kubean-operation | openshift-machine
    name: str
    state: str
    next: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "state": self.state, "next": self.next}


@dataclass(frozen=True)
class KubeView:
    """What the Kubernetes API said: each Node's readiness (name -> Ready), and the journals in it."""

    reachable: bool
    nodes: tuple[tuple[str, bool], ...] = ()
    pending: tuple[Pending, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class VipView:
    """Who answers on the VIP address (its hostname over SSH, the preflight's probe)."""

    address: str
    holder: str | None
    error: str | None = None


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
    pending: tuple[Pending, ...] = ()
    last_run: RunSummary | None = None
    record: str | None = None  # where the run record was read
    kube_error: str | None = "no kubeconfig (CPSWAP_KUBECONFIG_DATA)"
    vip: VipView | None = None

    @property
    def unfinished_steps(self) -> tuple[StepRun, ...]:
        return tuple(s for s in (self.last_run.steps if self.last_run else ()) if s.state != "ok")

    @property
    def next_up(self) -> tuple[str, ...]:
        """What the next ``up`` will do, one line per thing that is not converged."""
        return (*(f"{s.slot}: {s.action}" for s in self.slots if s.action),
                *(what for _, what in self.journals), *(p.next for p in self.pending),
                *(f"{m}: the next `up` removes it only if its slot's leave runs; otherwise remove it by hand "
                  "(`cpswap etcd remove`)" for m in self.extra_members if " learner" not in m))

    @property
    def converged(self) -> bool:
        return (self.observed and not self.extra_members and not self.journals and not self.pending
                and not self.unfinished_steps and all(s.action is None for s in self.slots))

    def as_dict(self) -> dict[str, object]:
        return {"schema": "cpswap.status/v1", "stack": self.stack, "observed": self.observed,
                "observationError": self.observation_error, "kubeError": self.kube_error,
                "converged": self.converged, "next": list(self.next_up),
                "slots": [s.as_dict() for s in self.slots],
                "extraMembers": list(self.extra_members),
                "vip": None if self.vip is None else {"address": self.vip.address, "holder": self.vip.holder,
                                                      "error": self.vip.error},
                "journals": [{"kind": "pvc-recovery", "file": j.name, "claims": list(j.claims),
                              "lastStep": j.last_step, "next": n} for j, n in self.journals]
                            + [p.as_dict() for p in self.pending],
                "lastRun": None if self.last_run is None else {**self.last_run.as_dict(), "record": self.record},
                "snapshots": [{"path": s.path, "ageSeconds": round(s.age_s), "bytes": s.size} for s in self.snapshots]}


def _member_for(host: Host, members: tuple[EtcdMember, ...], port: int = 2380) -> EtcdMember | None:
    peer = f"https://{host.ip}:{port}"
    for m in members:
        if peer in m.peer_urls or (m.name and (m.name == host.name or m.name.rsplit("-", 1)[0] == host.name)):
            return m
    return None


def _after_leave(model: StackModel, slot: str, run: RunSummary | None) -> str:
    """What the next ``up`` runs for a slot whose host is not a member yet, from the last run's record
    and the slot's resources in order."""
    from cpswap.core.slots import CommandSpec, slot_commands  # slots imports the renderers
    from cpswap.core.steps import PREFLIGHT_ACTIONS

    member = next(m for m in model.members if m.slot == slot)
    order = [r for r in slot_commands(model=model, member=member)]
    done = {s.resource for s in (run.steps if run else ()) if s.slot == slot and s.state == "ok"}
    leaves = [s.resource for s in (run.steps if run else ())
              if s.slot == slot and s.op == "delete" and s.state == "ok"]
    if not leaves:
        return f"run `pulumi up` to swap {slot} in (its preflight, the old host's leave, the join, verify)"
    later = [r for r in order if r.name not in done and not (r.action in PREFLIGHT_ACTIONS or r.action.leaves)]
    if not later:
        return f"the next `up` re-runs {slot}'s join"
    step = later[0]
    where = ("over SSH, so it leaves no line in the run record: its result is in the `up` log"
             if isinstance(step, CommandSpec) and step.runs_on.kind == "ssh" else "")
    return (f"the old host left ({', '.join(leaves)} done in the last run) but {step.name} did not complete"
            + (f" (it runs {where})" if where else "")
            + f": the next `up` re-runs {step.name} and the steps after it ({', '.join(r.name for r in later[1:]) or 'none'})")


def _slot(model: StackModel, slot: str, host: Host, applied: Host | None, etcd: EtcdFacts | None,
          run: RunSummary | None) -> SlotStatus:
    applied_text = str(applied) if applied is not None else None
    unfinished = [s for s in (run.steps if run else ()) if s.slot == slot and s.state != "ok"]
    step_action = None
    if unfinished:
        s = unfinished[0]
        step_action = (f"{s.resource} ({s.op}) {s.state} in the last run"
                       + (f": {s.failure}" if s.failure else "") + "; the next `up` re-runs it")
    if etcd is None or not etcd.reachable:
        return SlotStatus(slot, str(host), applied_text, "unobserved", None, False, step_action)
    member = _member_for(host, etcd.members)
    if member is None:
        action: str | None = (f"{host} is not an etcd member"
                              + (f" (applied: {applied})" if applied is not None and applied != host else "")
                              + f": {step_action or _after_leave(model, slot, run)}")
        return SlotStatus(slot, str(host), applied_text, "absent", None, False, action)
    live = "unstarted" if not member.name else "learner" if member.is_learner else "voter"
    action = step_action
    if live == "unstarted":
        action = f"{host}'s member was added but never started: the next `up` re-runs {slot}-join, which resumes it"
    elif live == "learner":
        action = f"{host} is a learner: the next `up` re-runs {slot}-join/verify until it is promoted"
    elif member.healthy is False:
        action = f"{host} is a voter but unhealthy: check etcd on it (`cpswap etcd health`)"
    return SlotStatus(slot, str(host), applied_text, live, member.healthy, member.id == etcd.leader_id, action)


def _with_cluster(status: SlotStatus, host: Host, kube: KubeView | None, vip: VipView | None) -> SlotStatus:
    nodes = dict(kube.nodes) if kube is not None and kube.reachable else None
    node = ("unobserved" if nodes is None else "absent" if host.name not in nodes
            else "Ready" if nodes[host.name] else "NotReady")
    holds = None if vip is None or vip.holder is None else vip.holder == host.name
    action = status.action
    if action is None and status.live == "voter" and node in ("absent", "NotReady"):
        action = (f"{host} is a voter but its Node is {node}: the next `up` re-runs its verify step "
                  "(wait-node) only if the slot changes; check the kubelet/k3s service on it")
    return SlotStatus(status.slot, status.config, status.applied, status.live, status.healthy, status.leader,
                      action, node=node, vip=holds)


def decide_status(*, model: StackModel, applied: dict[str, Host], etcd: EtcdFacts | None,
                  journals: tuple[Journal, ...], snapshots: tuple[Snapshot, ...], run: RunSummary | None = None,
                  record: str | None = None, kube: KubeView | None = None, vip: VipView | None = None) -> StatusReport:
    slots = tuple(_with_cluster(_slot(model, m.slot, m.host, applied.get(m.slot), etcd, run), m.host, kube, vip)
                  for m in model.members)
    extra: tuple[str, ...] = ()
    if etcd is not None and etcd.reachable:
        named = {id(_member_for(m.host, etcd.members)) for m in model.members}
        extra = tuple(f"{m.name or '(unstarted)'} {','.join(m.peer_urls)}"
                      + (" learner" if m.is_learner else " voter")
                      for m in etcd.members if id(m) not in named)
    pending = tuple((j, f"{j.name}: the next `up` re-runs the slot's pvcs step, which resumes {len(j.claims)} "
                        f"started claim(s): {', '.join(j.claims)}") for j in journals if j.last_step != "uncordon")
    return StatusReport(stack=model.stack, observed=etcd is not None and etcd.reachable,
                        observation_error=None if etcd is None else etcd.error, slots=slots,
                        extra_members=extra, journals=pending, snapshots=snapshots,
                        pending=kube.pending if kube is not None else (), last_run=run, record=record,
                        kube_error=None if kube is not None and kube.reachable else
                        (kube.error if kube is not None else "no kubeconfig (CPSWAP_KUBECONFIG_DATA)"), vip=vip)


def _step_line(step: StepRun) -> str:
    took = "-" if step.duration_s is None else f"{step.duration_s:.1f}s"
    rc = "-" if step.rc is None else str(step.rc)
    line = f"  {step.resource:<24} {step.op:<7} {step.state:<12} rc {rc:<4} {took:>8}  {', '.join(step.commands)}"
    return line + (f"\n      {step.failure}" if step.failure and step.state != "ok" else "")


def render_status(report: StatusReport) -> str:
    lines = [f"cpswap status: stack {report.stack}; live etcd "
             + ("observed" if report.observed else f"UNOBSERVED ({report.observation_error or 'no credentials'})")
             + (f"; Kubernetes UNOBSERVED ({report.kube_error})" if report.kube_error else "; Kubernetes observed")]
    if report.vip is not None:
        lines.append(f"VIP {report.vip.address}: held by {report.vip.holder or 'UNKNOWN'}"
                     + (f" ({report.vip.error})" if report.vip.error else ""))
    lines.append(f"{'slot':<6} {'config':<40} {'live':<10} {'healthy':<8} {'leader':<7} {'node':<11} vip")
    for s in report.slots:
        healthy = "-" if s.healthy is None else "yes" if s.healthy else "NO"
        vip = "-" if s.vip is None else "yes" if s.vip else ""
        lines.append(f"{s.slot:<6} {s.config:<40} {s.live:<10} {healthy:<8} {'yes' if s.leader else '':<7} "
                     f"{s.node:<11} {vip}")
        if s.applied is not None and s.applied != s.config:
            lines.append(f"       applied by the last deployment: {s.applied}")
        if s.action:
            lines.append(f"       to do: {s.action}")
    for member in report.extra_members:
        lines.append(f"member in no slot: {member} (a departed host not yet removed, or a join in flight)")
    for journal, what in report.journals:
        lines.append(f"interrupted: {journal.name} (last step {journal.last_step}): {what}")
    for item in report.pending:
        lines.append(f"in the cluster: {item.kind} {item.name} ({item.state}): {item.next}")
    if report.last_run is None:
        lines.append("last run: no run record" + (f" at {report.record}" if report.record else ""))
    else:
        lines.append(f"last run {report.last_run.run} ({report.record}); steps that call cpswap here "
                     "(SSH steps and record-only steps leave no line):")
        lines.extend(_step_line(step) for step in report.last_run.steps)
    for snap in report.snapshots:
        lines.append(f"snapshot: {snap.path} ({snap.size} bytes, {snap.age_s / 3600:.1f} h old)")
    lines.append("converged" if report.converged else "NOT converged" if report.observed else
                 "convergence unknown (unobserved)")
    return "\n".join(lines)


def _at(doc: object, *path: str) -> object:
    """``doc[path[0]][path[1]]...`` through mappings; None where a key or a mapping is missing."""
    for key in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def kubean_pending(operations: tuple[Mapping[str, object], ...]) -> tuple[Pending, ...]:
    """cpswap's ClusterOperations (``cpswap-<slot>-...``) that did not succeed, from their
    ``status.status`` (kubean: Running, Succeeded, Failed; none yet: Pending)."""
    found = []
    for op in operations:
        name = str(_at(op, "metadata", "name") or "")
        status = str(_at(op, "status", "status") or "Pending")
        if not name.startswith("cpswap-") or status == "Succeeded":
            continue
        job = _at(op, "status", "jobRef")
        job_text = (f" (job {_at(job, 'namespace') or '?'}/{_at(job, 'name') or '?'})"
                    if isinstance(job, Mapping) and job else "")
        if status == "Failed":
            what = (f"ClusterOperation {name} failed{job_text}: read its job's log and fix the cause; the next `up` "
                    "deletes it with its job (Foreground) and resubmits the same spec once")
        else:
            what = (f"ClusterOperation {name} is {status}{job_text}: the next `up` waits for it (it does not start "
                    "another); a Failed end is then resubmitted once")
        found.append(Pending(kind="kubean-operation", name=name, state=status, next=what))
    return tuple(found)


def openshift_pending(*, model: StackModel, machines: tuple[Mapping[str, object], ...],
                      templates: tuple[tuple[str, str], ...]) -> tuple[Pending, ...]:
    """OpenShift Machines being replaced: a master Machine being deleted or not Running yet, and a
    slot whose old Machine's spec is kept (ConfigMap ``cpswap-machine-<slot>``: (slot, old node))
    while no Machine backs its configured node."""
    found = []
    backed = {str(_at(m, "status", "nodeRef", "name")) for m in machines}
    for m in machines:
        name = str(_at(m, "metadata", "name") or "")
        phase = str(_at(m, "status", "phase") or "Pending")
        if _at(m, "metadata", "deletionTimestamp"):
            found.append(Pending(kind="openshift-machine", name=name, state="Deleting",
                                 next=f"Machine {name} is being deleted: the next `up`'s machine delete waits until "
                                      "it is gone (the etcd operator releases its preDrain hook once the member is "
                                      "removed)"))
        elif phase != "Running":
            found.append(Pending(kind="openshift-machine", name=name, state=phase,
                                 next=f"Machine {name} is {phase}: the next `up`'s machine create waits until it is "
                                      "Running with its node"))
    for slot, old_node in templates:
        member = next((x for x in model.members if x.slot == slot), None)
        if member is None or member.host.name in backed or member.host.name == old_node:
            continue
        found.append(Pending(kind="openshift-machine", name=f"cpswap-machine-{slot}", state="spec kept",
                             next=f"{slot}: the Machine of {old_node} was deleted and its spec kept in "
                                  f"cpswap-machine-{slot}; no Machine backs {member.host.name} yet: the next `up` "
                                  f"re-runs {slot}-machine create from that spec"))
    return tuple(found)
