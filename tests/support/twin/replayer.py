"""A replayer that stands in for the Pulumi engine and its providers in tests. Test-only.

It takes the resources a program run registered under mocks (tests/support/pulumi_mocks.py,
options and property dependencies included) and the stored state of the previous replay, and
carries the steps out as the engine orders them. Each rule names its source; the commits read are
pulumi/pulumi@1b5949891b3cefcb9974752b24a5ecef0acc86c8 (ENGINE),
pulumi/pulumi-command@010bd8e0dd8a2f13707aa3b5061739edd90790a5 (COMMAND) and
pulumi/pulumi-kubernetes@94977969d64112b04e19945818a7d5d5f38f631d (KUBERNETES); docs/CONFORMANCE.md
lists them with what remains unmodelled.

Engine (ENGINE pkg/resource/deploy/step_generator.go, step.go, deployment_executor.go,
step_executor.go; notes/pulumi_facts.md §1–2):
- creates and updates in dependency order (``dependencies``, which the SDK fills with every
  property dependency too, pulumi SDK runtime/resource.py ``_prepare_resource``; registration
  order breaks ties);
- a replacement (a ``replaceOnChanges`` path such as ``triggers[*]`` changed, or the provider
  asks for one) with ``deleteBeforeReplace`` deletes first, from the OLD stored state (old
  command text, old connection, old environment, old outputs), then creates. Before that delete,
  stored resources whose PROPERTY dependencies lead to the replaced one and whose provider would
  replace them once that property is unknown are deleted too, dependents first
  (step_generator.go ``calculateDependentReplacements``; for pulumi-command only ``triggers``
  replaces, COMMAND provider/pkg/provider/common/inputs.go);
- a delete-before-replace whose delete succeeded leaves the old resource in state marked
  ``PendingReplacement`` until its create succeeds (step.go ``DeleteStep.Apply``); the next run
  replaces it without deleting again (step_generator.go: ``old.PendingReplacement`` forces the
  replacement and skips ``NewDeleteReplacementStep``), and a pending resource that left the
  program is dropped without a provider delete (``NewRemovePendingReplaceStep``);
- a replacement without it creates first and deletes the old copy at the end;
- an input change without a replacement is an update: ``update`` if set, else ``create``;
- no change runs nothing;
- resources no longer in the program, and replaced copies, are deleted after the program as
  ``ScheduleDeletes`` (step_generator.go) schedules them: repeatedly the condemned resources none
  of whose dependencies (``DependenciesOf``, pkg/resource/graph/dependency_graph.go: dependencies,
  property dependencies, parent, provider) is still condemned form an antichain; reversed,
  dependents go first. deployment_executor.go runs each antichain with ``ExecuteParallel`` (here
  one thread per step) and the next only after it; after a failure (step_executor.go
  ``cancelDueToError``, no ``--continue-on-error``) the running steps finish and no later
  antichain starts. ``destroy`` deletes every stored resource the same way;
- an unchanged resource (``SameStep``, step.go) keeps its outputs and takes the new
  registration's options (a ``retainOnDelete`` set by an ``up`` holds at the next destroy);
- a ``pulumi:providers:kubernetes`` whose inputs change is replaced when pulumi-kubernetes'
  ``DiffConfig`` (KUBERNETES provider/pkg/provider/provider.go, ``getActiveClusterFromConfig`` in
  util.go) asks for it: ``clusterIdentifier`` updated (not added or removed), ``kubeconfig``/
  ``context``/``cluster`` changed with a different active cluster, ``renderYamlToDirectory``
  changed; a set and unchanged ``clusterIdentifier`` clears every replacement. A resource whose
  provider was replaced is replaced itself (step_generator.go ``providerChanged``), as its own
  delete-before-replace says, its delete going through the old provider;
- on a failure it stops like the engine: later steps do not run, and the state keeps what
  succeeded (an old copy whose deferred delete failed stays pending and is deleted by the next
  run), so a re-run converges;
- stack outputs (``up(..., outputs=...)``): registered by the program, saved when the run ends; a
  failed run saves the old outputs overlaid with the new ones (deployment_executor.go "Finalize the
  stack outputs", step_executor.go ``executeRegisterResourceOutputs``: ``outs = oldOuts.Copy();
  maps.Copy(outs, e.Outputs())``), so after a failed ``up`` the outputs already hold the new values.

Commands (COMMAND provider/pkg/provider/local/commandOutputs.go ``run``, remote/commandOutputs.go
``run``, local/commandController.go):
- timeouts: pulumi-go-provider (at ac69bde08a7f84ee355614eb0b6c848871b37901, which COMMAND pins as
  v1.5.0) turns the step's custom timeout into a context deadline (middleware/cancel/cancel.go).
  A local command runs under ``exec.CommandContext``: at the deadline only ``/bin/sh`` is SIGKILLed
  and the step still waits until its stdout/stderr close. A remote ``session.Run`` takes no context:
  nothing stops it. A command still running at the runner's harness bound (``Runner.timeout_s``)
  raises ``EngineHang`` (a real ``pulumi up`` would hang there), not a step failure;
- ``command:local:Command`` runs ``/bin/sh -c <text>`` in ``Runner.environ`` (the environment the
  Pulumi CLI, and so the provider, runs in: ``cmd.Env = os.Environ()``; no PATH edit) plus the
  resource's ``environment``, plus ``PULUMI_COMMAND_STDOUT``/``PULUMI_COMMAND_STDERR`` only when
  the previous outputs are non-empty; create has none, update and delete see the stored outputs;
- ``command:remote:Command`` runs over real SSH (the key from the connection input, BatchMode,
  short connect timeout, host key not checked). The provider's ``session.Setenv`` of the previous
  outputs needs ``AcceptEnv`` on the server, which a default sshd lacks: it warns and goes on, so
  the replayer sends none. Remote ``environment`` is refused (the program does not use it);
- both get ``stdin``; stdout and stderr are stored with one trailing newline trimmed;
- what reaches the CLI log depends on ``logging``, but a failure's error is
  ``<exit error>: running "<command>":\n<stdout and stderr>`` whatever ``logging`` says, and the
  CLI prints it: ``Runner.log`` gets that text and ``StepFailed`` carries it in full;
- derived secrets (test-bed rule): a command's stdout and stderr, which a failure would print,
  must not contain a secret the command was given (its secret ``stdin``, ``environment`` or
  connection key; of a whole secret object, the entries whose key names a secret): the whole
  value if one line, else each ``KEY=value``/``key: value`` value whose key names a token, key,
  password, secret or certificate, and each PEM body line. A leak raises
  ``SecretInOutput``, whatever ``logging`` and the exit code.

Kubernetes objects go to the emulated API with the official client, through the kubeconfig of
their provider's stored inputs, as pulumi-kubernetes >= 4.29 (server-side apply mode, the
default) sends them (KUBERNETES provider/pkg/await/await.go, provider/pkg/ssa, CHANGELOG 4.29.0):
- ``NodePatch`` and ``ConfigMapPatch`` are server-side applies (``await.Creation``: Patch
  resources always PATCH with ``types.ApplyPatchType``): the object is CREATED when absent (a
  NodePatch on a missing Node makes a Node), else the applied fields are set. Applies are not
  forced unless the ``pulumi.com/patchForce`` annotation is "true" (``patchForce``): a field this
  resource's field manager does not own whose live value differs is a 409 conflict. kmock keeps
  no managedFields, so the replayer tracks the fields each patch resource applied;
- ``kubernetes:<group>/<version>:<Kind>`` (``apiextensions.CustomResource``): create POSTs the
  object and fails with AlreadyExists when it exists (from 4.29.0; older versions upserted); an
  update merge-patches ``metadata.labels`` and ``spec``; a delete sends DELETE with
  ``propagationPolicy: Foreground`` (metadata/overrides.go ``DeletionPropagation``) and waits
  until the API answers 404 for the resource's ``customTimeouts.delete``, else 10 minutes
  (``await.Deletion``). Plural = lower-case kind + ``s``; no ``metadata.namespace`` means
  cluster-scoped.
``retainOnDelete`` resources are dropped from state without touching the cluster. Any other
``kubernetes:`` type, and the delete of a patch resource that is not retained (``ssa.Relinquish``),
is refused (an unmodelled case must not pass silently); providers and components are recorded
as applied without side effects, said in ``Step.note``.

What it does not model: previews and diffs of outputs, parallelism of creates and updates (the
engine may run independent registrations concurrently; this runs them one at a time), refresh,
``deletedWith`` edges, DiffConfig's computed-kubeconfig case (inputs are known here),
``--continue-on-error`` and targeted destroys, ``dialErrorLimit`` retries, the arrival order of stdout
and stderr in a failure's text (stdout first here), ``ignoreChanges``/``aliases``, foreground
garbage collection of dependents (kmock deletes at once), SSA removal of fields dropped from an
apply, a create-before-delete replacement of a resource pending replacement, and state
checkpoints on disk.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Mapping

from tests.support.pulumi_mocks import Recorded

COMMAND_TYPES = ("command:local:Command", "command:remote:Command")
NODE_PATCH = "kubernetes:core/v1:NodePatch"
CONFIG_MAP_PATCH = "kubernetes:core/v1:ConfigMapPatch"
KUBE_PROVIDER = "pulumi:providers:kubernetes"
PATCH_FORCE = "pulumi.com/patchForce"  # KUBERNETES provider/pkg/metadata/annotations.go
DEFAULT_DELETE_WAIT_S = 600.0  # KUBERNETES await.Deletion: 10 minutes unless customTimeouts.delete
SECRET_KEY_WORDS = re.compile(r"token|key|pass|secret|cert", re.IGNORECASE)
PEM_BODY = re.compile(r"^[A-Za-z0-9+/=]{40,}$")


def is_kube_object(kind: str) -> bool:
    return kind.startswith("kubernetes:")


def go_duration_s(text: str) -> float:
    """A Go ``time.ParseDuration`` string as the engine passes customTimeouts ("10m", "1h30m", "90s")."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"customTimeouts value {text!r} is not a Go duration such as 10m or 1h30m")
    return sum(float(n) * units[u] for n, u in parts)


def go_quote(text: str) -> str:
    """Close to Go's ``%q`` (strconv.Quote), which the provider uses for the command in its error."""
    return json.dumps(text, ensure_ascii=False)


@dataclass
class Stored:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    dependencies: tuple[str, ...]
    delete_before_replace: bool
    replace_on_changes: tuple[str, ...]
    provider: str = ""
    retain_on_delete: bool = False
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    secret_paths: tuple[str, ...] = ()
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    pending_replacement: bool = False  # deleted by a delete-before-replace whose create has not succeeded
    parent: str = ""


@dataclass(frozen=True)
class Step:
    urn: str
    name: str
    op: str  # create | update | delete | replace-delete | remove-pending-replace | noop
    host: str  # "local" or the SSH host
    note: str = ""


class StepFailed(Exception):
    def __init__(self, step: Step, detail: str) -> None:
        super().__init__(f"{step.op} {step.name} on {step.host} failed: {detail}")
        self.step = step


class EngineHang(Exception):
    """A command was still running at the harness bound, which the provider would not have stopped
    (a remote session has no deadline; a local one waits for every child holding its output): a
    real `pulumi up` would hang here. Carries what the command printed so far."""

    def __init__(self, argv: list[str], bound_s: float, out: str, err: str) -> None:
        super().__init__(f"still running after the harness bound of {bound_s:.0f}s, which the provider would "
                         f"not have stopped (a real `pulumi up` hangs here): {argv[-1][:300]!r}")
        self.out, self.err = out, err


class SecretInOutput(AssertionError):
    """A command's output, which a failure prints whatever ``logging`` says, holds a secret it was given."""


def _value_at(inputs: Any, path: str) -> Any:
    """The input value at a recorder secret path ("stdin", "environment.X", "connection.privateKey")."""
    value = inputs
    for part in re.findall(r"[^.\[\]]+", path) if path != "." else []:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def secret_fragments(value: Any) -> Iterator[str]:
    """The parts of a secret input a command must never print (see the module docstring)."""
    if not isinstance(value, str):
        if isinstance(value, dict):  # a whole object marked secret (the SDK marks `connection` so for its key)
            for key, item in value.items():
                if SECRET_KEY_WORDS.search(key):
                    yield from secret_fragments(item)
        return
    lines = [line.strip() for line in value.strip().splitlines() if line.strip()]
    if len(lines) == 1:
        if len(lines[0]) >= 6:
            yield lines[0]
        return
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*[=:]\s*(.+)$", line)
        if match and SECRET_KEY_WORDS.search(match.group(1)) and len(match.group(2).strip("'\" ")) >= 6:
            yield match.group(2).strip("'\" ")
        elif PEM_BODY.match(line):
            yield line


@dataclass
class Runner:
    """Runs command text; tests may wrap it to inject faults.

    ``environ`` is the environment of the Pulumi CLI, which the command provider inherits
    (COMMAND local/commandOutputs.go ``cmd.Env = os.Environ()``): None means this process's
    environment at run time. The replayer adds nothing to it, PATH included; the twin builds it
    as the README tells operators to (tests/support/twin/operator.py)."""

    cwd: Path
    timeout_s: float = 300
    log: list[str] = field(default_factory=list)
    environ: Mapping[str, str] | None = None

    def run(self, *, kind: str, inputs: dict[str, Any], text: str, extra_env: dict[str, str],
            timeout_s: float | None = None, declared_s: float | None = None) -> tuple[int, str, str]:
        """Run one command. ``declared_s`` is the step's custom timeout: a local command's
        ``/bin/sh`` alone is then SIGKILLed; a remote command ignores it (module docstring).
        ``timeout_s`` is fault injection: the whole process group is killed then (rc -9), as when
        a test cuts an SSH connection or interrupts a step. A command still running at
        ``self.timeout_s`` raises ``EngineHang``. ``extra_env`` holds the previous outputs'
        PULUMI_COMMAND_* variables (local commands only, see the module docstring)."""
        stdin = inputs.get("stdin")
        if kind == "command:remote:Command" and inputs.get("environment"):
            raise ValueError("remote.Command environment is not modelled by the twin's replayer "
                             f"(keys {sorted(inputs['environment'])}); pass values through stdin instead")
        if kind == "command:local:Command":
            argv = ["/bin/sh", "-c", text]
            base = os.environ if self.environ is None else self.environ
            env = {**base, **(inputs.get("environment") or {}), **extra_env}
            return self._spawn(argv, stdin=stdin, env=env, cwd=self.cwd, timeout_s=timeout_s, declared_s=declared_s)
        conn = inputs["connection"]
        with tempfile.NamedTemporaryFile("w", delete=False, prefix="twin-key-") as handle:
            handle.write(conn["privateKey"])
        os.chmod(handle.name, 0o600)
        try:
            argv = ["ssh", "-i", handle.name, "-p", str(int(conn.get("port", 22))), "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                    "-o", f"ConnectTimeout={int(conn.get('perDialTimeout', 5))}",
                    f"{conn.get('user', 'root')}@{conn['host']}", text]
            return self._spawn(argv, stdin=stdin, env=None, cwd=None, timeout_s=timeout_s, declared_s=None)
        finally:
            os.unlink(handle.name)

    def _spawn(self, argv: list[str], *, stdin: str | None, env: dict[str, str] | None, cwd: Path | None,
               timeout_s: float | None, declared_s: float | None = None) -> tuple[int, str, str]:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=cwd, start_new_session=True)
        started = time.monotonic()
        events = sorted((at, what) for at, what in ((timeout_s, "interrupt"), (declared_s, "declared"),
                                                     (self.timeout_s, "harness")) if at is not None)
        note = ""
        for at, what in events:
            try:
                out, err = proc.communicate(stdin, timeout=max(0.0, started + at - time.monotonic()))
                return proc.returncode, out, err + note
            except subprocess.TimeoutExpired:
                pass
            if what == "declared":  # exec.CommandContext: Process.Kill() of /bin/sh alone; Wait goes on
                os.kill(proc.pid, signal.SIGKILL)
                note = f"\n(the provider's {at:.1f}s timeout killed /bin/sh only)"
                continue
            kill_session(proc.pid)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired as exc:
                raise EngineHang(argv, at, "", "") from exc
            if what == "interrupt":
                return -9, out, err + f"\n(killed after {at:.1f}s)"
            raise EngineHang(argv, at, out, err)
        raise AssertionError("the harness bound always ends the loop")


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (the spawned command's, ``start_new_session``),
    process groups made inside it included (coreutils ``timeout`` makes its own)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and int(fields[3]) == sid:  # state ppid pgrp session ...
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _exit_error(kind: str, rc: int) -> str:
    """The error the provider wraps: Go's exec.ExitError locally, x/crypto/ssh's ExitError remotely."""
    if kind == "command:remote:Command":
        return f"Process exited with status {rc}"
    return "signal: killed" if rc == -9 else (f"signal: {-rc}" if rc < 0 else f"exit status {rc}")


def _differs_on(paths: tuple[str, ...], old: dict[str, Any], new: dict[str, Any]) -> bool:
    for path in paths:
        key = path.split("[")[0].split(".")[0]
        if key == "*" or old.get(key) != new.get(key):
            if key == "*" and old == new:
                continue
            return True
    return False


def _provider_replaces(kind: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Replacements the provider itself asks for: pulumi-kubernetes replaces an object whose
    ``metadata.name`` or ``metadata.namespace`` changes (pulumi-command asks for none)."""
    if not kind.startswith("kubernetes:"):
        return False
    before, after = old.get("metadata") or {}, new.get("metadata") or {}
    return any(before.get(k) != after.get(k) for k in ("name", "namespace"))


def _replaced_when_unknown(stored: Stored, keys: set[str]) -> bool:
    """Whether the provider's Diff replaces ``stored`` once the input ``keys`` become unknown
    (ENGINE step_generator.go calculateDependentReplacements calls Diff with them computed):
    a ``replaceOnChanges`` key (commands: ``triggers``), or a Kubernetes object's ``metadata``."""
    replacing = {p.split("[")[0].split(".")[0] for p in stored.replace_on_changes}
    if is_kube_object(stored.type):
        replacing.add("metadata")
    return bool(keys & replacing) or "*" in replacing


def _deps(r: Recorded | Stored) -> tuple[str, ...]:
    """Ordering edges: ``dependencies`` plus every property dependency (the SDK merges them)."""
    extra = [u for urns in r.property_dependencies.values() for u in urns if u not in r.dependencies]
    return (*r.dependencies, *extra)


def _active_cluster(inputs: dict[str, Any]) -> dict[str, Any] | None:
    """getActiveClusterFromConfig (KUBERNETES provider/pkg/provider/util.go): the cluster entry of
    the current context, the ``context``/``cluster`` inputs overriding; None when not found."""
    import yaml

    try:
        config = yaml.safe_load(inputs.get("kubeconfig") or "") or {}
    except yaml.YAMLError:
        return None
    if not isinstance(config, dict) or not config.get("clusters"):
        return None
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    clusters = {c.get("name"): c.get("cluster") for c in config.get("clusters") or []}
    context = contexts.get(inputs.get("context") or config.get("current-context"))
    if context is None:
        return None
    return clusters.get(inputs.get("cluster") or context.get("cluster"))


def kube_provider_replaces(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys for which pulumi-kubernetes' ``DiffConfig`` replaces the provider (module docstring)."""
    if old == new:
        return []
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    replaces = ["clusterIdentifier"] if ("clusterIdentifier" in changed and "clusterIdentifier" in old
                                         and "clusterIdentifier" in new) else []
    if "renderYamlToDirectory" in changed:
        replaces.append("renderYamlToDirectory")
    before, after = _active_cluster(old), _active_cluster(new)
    if before is not None and after is not None and before != after:
        replaces += [k for k in ("kubeconfig", "context", "cluster") if k in changed]
    if new.get("clusterIdentifier") is not None and old.get("clusterIdentifier") == new.get("clusterIdentifier"):
        return []
    return replaces


def _provider_urn(reference: str) -> str:
    return reference.rsplit("::", 1)[0] if reference else ""


def schedule_deletes(condemned: dict[str, Stored]) -> list[list[str]]:
    """ScheduleDeletes (module docstring). Keys are URNs, ``urn#old<i>`` for a replaced copy that
    shares its URN with the live resource."""
    by_urn: dict[str, set[str]] = {}
    for key in condemned:
        by_urn.setdefault(key.split("#", 1)[0], set()).add(key)
    remaining, antichains = set(condemned), []
    while remaining:
        chain = sorted(k for k in remaining
                       if not any(by_urn.get(d, set()) & remaining - {k}
                                  for d in (*_deps(condemned[k]), condemned[k].parent,
                                            _provider_urn(condemned[k].provider)) if d))
        if not chain:
            raise ValueError(f"dependency cycle among deletes: {sorted(remaining)}")
        remaining -= set(chain)
        antichains.append(chain)
    return antichains[::-1]


def _stored_order(state: dict[str, Stored]) -> list[str]:
    """Stored URNs in dependency order (stored order breaks ties); deletes walk it reversed."""
    done: set[str] = set()
    ordered: list[str] = []

    def visit(urn: str, stack: tuple[str, ...] = ()) -> None:
        if urn in done or urn in stack:
            return
        for dep in _deps(state[urn]):
            if dep in state:
                visit(dep, stack + (urn,))
        done.add(urn)
        ordered.append(urn)
    for urn in state:
        visit(urn)
    return ordered


def _order(resources: list[Recorded]) -> list[Recorded]:
    """Dependency order, registration order as the tie-break."""
    by_urn = {r.urn: r for r in resources}
    done: set[str] = set()
    ordered: list[Recorded] = []

    def visit(r: Recorded, stack: tuple[str, ...] = ()) -> None:
        if r.urn in done or r.urn in stack:
            return
        for dep in _deps(r):
            if dep in by_urn:
                visit(by_urn[dep], stack + (r.urn,))
        done.add(r.urn)
        ordered.append(r)
    for r in resources:
        visit(r)
    return ordered


def _stored(r: Recorded, outputs: dict[str, Any]) -> Stored:
    """The state a registration leaves: its inputs and options, with ``outputs``."""
    return Stored(type=r.type, name=r.name, inputs=r.inputs, outputs=outputs, dependencies=r.dependencies,
                  delete_before_replace=r.delete_before_replace, replace_on_changes=r.replace_on_changes,
                  provider=r.provider, retain_on_delete=r.retain_on_delete,
                  property_dependencies=dict(r.property_dependencies), secret_paths=r.secret_paths,
                  custom_timeouts=dict(r.custom_timeouts), parent=r.parent)


def _with_provider_first(resources: list[Recorded]) -> list[Recorded]:
    """A resource depends on its provider (DependenciesOf), which is therefore registered first."""
    return [Recorded(**{**r.__dict__, "dependencies": (*r.dependencies, _provider_urn(r.provider))})
            if r.provider and _provider_urn(r.provider) not in r.dependencies else r for r in resources]


@dataclass
class Replayer:
    runner: Runner
    state: dict[str, Stored] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    before_step: Callable[[Step], None] = lambda step: None
    step_timeout: Callable[[Step], float | None] = lambda step: None  # fault injection: cut a step short
    durations: list[tuple[Step, float]] = field(default_factory=list)
    timeline: list[tuple[Step, float, float]] = field(default_factory=list)  # (step, started, ended), monotonic
    pending_deletes: list[tuple[str, Stored]] = field(default_factory=list)  # replaced copies not yet deleted
    retired_providers: dict[str, Stored] = field(default_factory=dict)  # replaced providers, for old deletes
    outputs: dict[str, Any] = field(default_factory=dict)  # the stack outputs, as `pulumi stack output` shows
    # server-side apply: (kind, namespace, name) -> {field path: value} applied by that patch resource
    applied_fields: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _host(self, kind: str, inputs: dict[str, Any]) -> str:
        return inputs["connection"]["host"] if kind == "command:remote:Command" else "local"

    def _kube(self, provider: str, *, old: bool = False) -> Any:
        import yaml
        from kubernetes import config

        urn = _provider_urn(provider)
        stored = self.retired_providers.get(urn) if old and urn in self.retired_providers else self.state.get(urn)
        if stored is None or not stored.inputs.get("kubeconfig"):
            raise ValueError(f"a Kubernetes object needs its provider's kubeconfig in state; provider {provider!r} "
                             "has none")
        return config.new_client_from_config_dict(yaml.safe_load(stored.inputs["kubeconfig"]))

    def _server_side_apply(self, api_client: Any, kind: str, inputs: dict[str, Any]) -> None:
        """A Patch resource's apply (module docstring): create when absent, else set the applied
        fields, refusing with a 409 conflict what another manager set differently unless forced."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(api_client)
        metadata = inputs.get("metadata") or {}
        name, namespace = metadata["name"], metadata.get("namespace") or ("" if kind == NODE_PATCH else "default")
        fields = {f"metadata.labels.{k}": v for k, v in (metadata.get("labels") or {}).items()}
        fields.update({f"metadata.annotations.{k}": v for k, v in (metadata.get("annotations") or {}).items()})
        if kind == CONFIG_MAP_PATCH:
            fields.update({f"data.{k}": v for k, v in (inputs.get("data") or {}).items()})
        force = str((metadata.get("annotations") or {}).get(PATCH_FORCE, "")).lower() == "true"
        key = (kind, namespace, name)
        try:
            live = (core.read_node(name) if kind == NODE_PATCH else core.read_namespaced_config_map(name, namespace))
        except ApiException as exc:
            if exc.status != 404:
                raise
            body_meta = client.V1ObjectMeta(name=name, labels=metadata.get("labels"),
                                            annotations=metadata.get("annotations"))
            if kind == NODE_PATCH:
                core.create_node(client.V1Node(metadata=body_meta))
            else:
                body_meta.namespace = namespace
                core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=body_meta,
                                                                                data=inputs.get("data")))
            self.applied_fields[key] = fields
            return
        current = {f"metadata.labels.{k}": v for k, v in (live.metadata.labels or {}).items()}
        current.update({f"metadata.annotations.{k}": v for k, v in (live.metadata.annotations or {}).items()})
        if kind == CONFIG_MAP_PATCH:
            current.update({f"data.{k}": v for k, v in (live.data or {}).items()})
        owned = self.applied_fields.get(key, {})
        conflicts = sorted(path for path, value in fields.items()
                           if path in current and current[path] != value and path not in owned)
        if conflicts and not force:
            raise ApiException(status=409, reason=(
                f"Conflict: Apply failed with {len(conflicts)} conflict(s): conflict with another field manager: "
                + ", ".join(f".{p}" for p in conflicts)
                + f" (set the {PATCH_FORCE} annotation to override)"))
        patch: dict[str, Any] = {"metadata": {"labels": metadata.get("labels") or None,
                                              "annotations": metadata.get("annotations") or None}}
        if kind == NODE_PATCH:
            core.patch_node(name, patch)
        else:
            core.patch_namespaced_config_map(name, namespace, {**patch, "data": inputs.get("data") or {}})
        self.applied_fields[key] = fields

    def _apply_object(self, kind: str, inputs: dict[str, Any], provider: str, op: str,
                      timeouts: dict[str, str]) -> None:
        """Create, update or delete one Kubernetes object (see the module docstring)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        metadata = inputs.get("metadata") or {}
        api_client = self._kube(provider, old=op == "delete")
        try:
            if kind in (NODE_PATCH, CONFIG_MAP_PATCH):
                if op == "delete":
                    raise ValueError(f"{kind} {metadata.get('name')}: deleting a patch resource relinquishes its "
                                     "fields (ssa.Relinquish), which the twin's replayer does not model; "
                                     "declare it retainOnDelete")
                self._server_side_apply(api_client, kind, inputs)
                return
            group_version, _, object_kind = kind[len("kubernetes:"):].rpartition(":")
            if "." not in group_version.split("/")[0]:
                raise ValueError(f"{kind}: only CustomResources (a dotted API group) and the NodePatch and "
                                 "ConfigMapPatch types are modelled by the twin's replayer")
            group, version = group_version.split("/")
            plural, name, namespace = object_kind.lower() + "s", metadata["name"], metadata.get("namespace")
            objects = client.CustomObjectsApi(api_client)
            scope = (group, version, namespace, plural) if namespace else (group, version, plural)
            if op == "create":
                body = {"apiVersion": inputs.get("apiVersion", group_version), "kind": inputs.get("kind", object_kind),
                        **{k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")}}
                (objects.create_namespaced_custom_object if namespace else objects.create_cluster_custom_object)(
                    *scope, body)
            elif op == "update":
                patch = {"metadata": {"labels": metadata.get("labels") or {}}, "spec": inputs.get("spec") or {}}
                (objects.patch_namespaced_custom_object if namespace else objects.patch_cluster_custom_object)(
                    *scope, name, patch)
            else:
                get = objects.get_namespaced_custom_object if namespace else objects.get_cluster_custom_object
                options = client.V1DeleteOptions(propagation_policy="Foreground")
                try:
                    (objects.delete_namespaced_custom_object if namespace else objects.delete_cluster_custom_object)(
                        *scope, name, body=options)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                wait_s = go_duration_s(timeouts["delete"]) if timeouts.get("delete") else DEFAULT_DELETE_WAIT_S
                end = time.monotonic() + wait_s
                while True:
                    try:
                        get(*scope, name)
                    except ApiException as exc:
                        if exc.status == 404:
                            return
                        raise
                    if time.monotonic() > end:
                        raise TimeoutError(f"{kind} {name} still present {wait_s:.0f}s after its delete "
                                           "(customTimeouts.delete)")
                    time.sleep(0.2)
        finally:
            api_client.close()

    def _check_secrets(self, step: Step, inputs: dict[str, Any], secret_paths: tuple[str, ...], out: str,
                       err: str) -> None:
        for path in secret_paths:
            for fragment in secret_fragments(_value_at(inputs, path)):
                for stream, text in (("stdout", out), ("stderr", err)):
                    if fragment in text:
                        raise SecretInOutput(
                            f"{step.op} {step.name} on {step.host}: its {stream} holds a part of its secret input "
                            f"{path!r}; a failure's error text prints stdout and stderr whatever `logging` says "
                            "(pulumi-command commandOutputs.go run)")

    def _exec(self, step: Step, kind: str, inputs: dict[str, Any], text: str | None, env: dict[str, str],
              provider: str = "", *, secret_paths: tuple[str, ...] = (),
              timeouts: dict[str, str] | None = None) -> tuple[str, str] | None:
        """Run one step; None when the provider ran no command (its outputs stay as they were)."""
        self.before_step(step)
        with self._lock:
            self.steps.append(step)
        if is_kube_object(kind):
            try:
                self._apply_object(kind, inputs, provider, "delete" if "delete" in step.op else step.op,
                                   timeouts or {})
            except Exception as exc:  # the engine reports a provider error as the step's failure
                raise StepFailed(step, f"{type(exc).__name__}: {str(exc)[-800:]}") from exc
            return "", ""
        if not text or kind not in COMMAND_TYPES:
            return None
        started = time.monotonic()
        operation = "delete" if "delete" in step.op else "create" if step.op == "create" else "update"
        declared = (timeouts or {}).get(operation)
        rc, out, err = self.runner.run(kind=kind, inputs=inputs, text=text,
                                       extra_env=env if kind == "command:local:Command" else {},
                                       timeout_s=self.step_timeout(step),
                                       declared_s=go_duration_s(declared) if declared else None)
        ended = time.monotonic()
        self._check_secrets(step, inputs, secret_paths, out, err)
        # what the provider streams to the CLI log depends on `logging` (COMMAND local/logging.go)
        logging = str(inputs.get("logging") or "stdoutAndStderr").lower()
        shown = {"none": "", "stdout": out, "stderr": err}.get(logging, out + err)
        with self._lock:
            self.durations.append((step, ended - started))
            self.timeline.append((step, started, ended))
            self.runner.log.append(f"{step.op} {step.name} @{step.host} rc={rc}\n{shown[-4000:]}")
        if rc != 0:
            # COMMAND commandOutputs.go: fmt.Errorf("%w: running %q:\n%s", err, command, stdouterrbuf)
            error = f"{_exit_error(kind, rc)}: running {go_quote(text)}:\n{out}{err}"
            with self._lock:
                self.runner.log.append(f"error: {error}")
            raise StepFailed(step, f"rc={rc}: {error}")
        return out, err

    @staticmethod
    def _previous_output_env(outputs: dict[str, Any]) -> dict[str, str]:
        """PULUMI_COMMAND_STDOUT/STDERR of the stored outputs, set only when non-empty (COMMAND run)."""
        return {var: outputs[key] for var, key in (("PULUMI_COMMAND_STDOUT", "stdout"),
                                                   ("PULUMI_COMMAND_STDERR", "stderr")) if outputs.get(key)}

    def _delete(self, urn: str, stored: Stored, op: str) -> None:
        """Delete from stored state: the old text, connection and environment, and the old outputs."""
        step = Step(urn, stored.name, op, self._host(stored.type, stored.inputs),
                    "retainOnDelete: left in place" if stored.retain_on_delete else "")
        kind = "retained" if stored.retain_on_delete else stored.type
        self._exec(step, kind, stored.inputs, stored.inputs.get("delete"), self._previous_output_env(stored.outputs),
                   stored.provider, secret_paths=stored.secret_paths, timeouts=stored.custom_timeouts)

    def _resolve(self, value: Any) -> Any:
        """Replace the mocks' ``@@stdout:<name>@@`` sentinels by the real stdout of that resource
        (what the engine does for an input that is another resource's output)."""
        if isinstance(value, str) and "@@stdout:" in value:
            for stored in self.state.values():
                value = value.replace(f"@@stdout:{stored.name}@@", stored.outputs.get("stdout", ""))
            return value
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        return value

    def _create(self, r: Recorded, op: str = "create", old: Stored | None = None) -> None:
        note = "" if r.type in COMMAND_TYPES or is_kube_object(r.type) else f"{r.type}: applied without side effects"
        step = Step(r.urn, r.name, op, self._host(r.type, r.inputs), note)
        text = r.inputs.get("create") if op == "create" else (r.inputs.get("update") or r.inputs.get("create"))
        previous = old.outputs if (op == "update" and old is not None) else {}
        ran = self._exec(step, r.type, r.inputs, text, self._previous_output_env(previous), r.provider,
                         secret_paths=r.secret_paths, timeouts=r.custom_timeouts)
        # pulumi-command stores stdout/stderr with one trailing newline trimmed; no command: outputs kept
        outputs = ({"stdout": ran[0].removesuffix("\n"), "stderr": ran[1].removesuffix("\n")} if ran is not None
                   else dict(previous) or {"stdout": "", "stderr": ""})
        self.state[r.urn] = _stored(r, outputs)

    def _dependent_replacements(self, root: str) -> list[str]:
        """Stored resources that must be deleted before ``root``'s delete-before-replace delete,
        in dependency order (ENGINE step_generator.go calculateDependentReplacements)."""
        replace_set = {root}
        found: list[str] = []
        for urn in _stored_order(self.state):
            stored = self.state[urn]
            if urn == root or stored.pending_replacement or not stored.type.startswith(("command:", "kubernetes:")):
                continue
            keys = {key for key, urns in stored.property_dependencies.items() if set(urns) & replace_set}
            if keys and _replaced_when_unknown(stored, keys):
                replace_set.add(urn)
                found.append(urn)
        return found

    def _delete_before_replace(self, urn: str, old: Stored) -> None:
        """The delete half of a delete-before-replace; the old state stays, pending replacement."""
        for dependent in reversed(self._dependent_replacements(urn)):
            self._delete(dependent, self.state[dependent], "replace-delete")
            self.state[dependent].pending_replacement = True
        if not old.pending_replacement:
            self._delete(urn, old, "replace-delete")
            old.pending_replacement = True

    def up(self, resources: list[Recorded], *, outputs: dict[str, Any] | None = None) -> list[Step]:
        """One `pulumi up`. Returns the steps that ran; raises StepFailed and keeps partial state.
        ``outputs``: the stack outputs the program registered, saved as the engine saves them."""
        self.steps = []
        try:
            self._up(resources)
        except BaseException:
            if outputs is not None:
                self.outputs = {**self.outputs, **outputs}
            raise
        if outputs is not None:
            self.outputs = dict(outputs)
        return self.steps

    def _replaces(self, r: Recorded, old: Stored, replaced_providers: set[str]) -> bool:
        if old.type != r.type:
            return False
        if r.type == KUBE_PROVIDER:
            return bool(kube_provider_replaces(old.inputs, r.inputs))
        return (old.pending_replacement or _differs_on(r.replace_on_changes, old.inputs, r.inputs)
                or _provider_replaces(r.type, old.inputs, r.inputs) or _provider_urn(r.provider) in replaced_providers)

    def _up(self, resources: list[Recorded]) -> None:
        custom = [r for r in resources if r.custom]
        present = {r.urn for r in custom}
        replaced_providers: set[str] = set()
        for r in _order(_with_provider_first(custom)):
            r = Recorded(**{**r.__dict__, "inputs": self._resolve(r.inputs)})
            old = self.state.get(r.urn)
            if old is None:
                self._create(r)
            elif self._replaces(r, old, replaced_providers):
                if r.type == KUBE_PROVIDER:  # a provider is replaced create-before-delete; its delete does nothing
                    replaced_providers.add(r.urn)
                    self.retired_providers[r.urn] = old
                    self._create(r, op="replace")
                elif r.delete_before_replace or old.pending_replacement:
                    self._delete_before_replace(r.urn, old)
                    self._create(r)
                else:
                    self._create(r)
                    self.pending_deletes.append((r.urn, old))
            elif old.inputs != r.inputs:
                self._create(r, op="update", old=old)
            else:  # SameStep (ENGINE step.go): the new registration's options, the old outputs
                self.steps.append(Step(r.urn, r.name, "noop", self._host(r.type, r.inputs)))
                self.state[r.urn] = _stored(r, old.outputs)
        # deferred deletes of replaced copies and of removed resources, as ScheduleDeletes schedules them
        self._delete_all_but(present)
        self.retired_providers.clear()

    def destroy(self) -> list[Step]:
        """One `pulumi destroy`: every stored resource (and pending replaced copy) deleted from state in
        the engine's concurrent antichains; the stack outputs go too. Raises the first failure,
        keeping what was not deleted."""
        self.steps = []
        self._delete_all_but(set())
        self.outputs = {}
        return self.steps

    def _delete_all_but(self, present: set[str]) -> None:
        """Delete the pending replaced copies and every stored resource not in ``present``; one
        already deleted by a delete-before-replace is dropped without a provider delete (ENGINE
        NewRemovePendingReplaceStep)."""
        for urn in [u for u, stored in self.state.items() if u not in present and stored.pending_replacement]:
            stored = self.state.pop(urn)
            self.steps.append(Step(urn, stored.name, "remove-pending-replace", self._host(stored.type, stored.inputs)))
        condemned = {f"{urn}#old{i}": (old, "replace-delete") for i, (urn, old) in enumerate(self.pending_deletes)}
        condemned.update({urn: (stored, "delete") for urn, stored in self.state.items() if urn not in present})

        def deleted(key: str) -> None:
            if "#old" in key:
                self.pending_deletes.remove((key.split("#", 1)[0], condemned[key][0]))
            else:
                del self.state[key]
        self._run_deletes(condemned, deleted)

    def _run_deletes(self, condemned: dict[str, tuple[Stored, str]], on_deleted: Callable[[str], None]) -> None:
        """Antichains from ``schedule_deletes``, each run concurrently; after a failure the running
        steps finish and no later antichain starts (module docstring)."""
        for antichain in schedule_deletes({key: stored for key, (stored, _) in condemned.items()}):
            with ThreadPoolExecutor(max_workers=len(antichain), thread_name_prefix="delete") as pool:
                futures = {pool.submit(self._delete, key.split("#", 1)[0], *condemned[key]): key for key in antichain}
            failures = [future.exception() for future in futures if future.exception() is not None]
            for future, key in futures.items():
                if future.exception() is None:
                    on_deleted(key)
            if failures:
                raise failures[0]

    def commands_run(self) -> list[Step]:
        return [s for s in self.steps if s.op not in ("noop", "remove-pending-replace")]

    def dump(self) -> str:
        return json.dumps({u: s.__dict__ for u, s in self.state.items()}, default=str)
