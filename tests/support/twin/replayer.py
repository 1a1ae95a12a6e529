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
- resources no longer in the program are deleted last, in reverse dependency order of the
  stored state (registration order reversed breaks ties);
- on a failure it stops like the engine: later steps do not run, and the state keeps what
  succeeded (an old copy whose deferred delete failed stays pending and is deleted by the next
  run), so a re-run converges;
- stack outputs (``up(..., outputs=...)``): registered by the program, saved when the run ends; a
  failed run saves the old outputs overlaid with the new ones (deployment_executor.go "Finalize the
  stack outputs", step_executor.go ``executeRegisterResourceOutputs``: ``outs = oldOuts.Copy();
  maps.Copy(outs, e.Outputs())``), so after a failed ``up`` the outputs already hold the new values.

Commands (COMMAND provider/pkg/provider/local/commandOutputs.go ``run``, remote/commandOutputs.go
``run``, local/commandController.go):
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

What it does not model: previews and diffs of outputs, parallelism (the engine may run
independent resources concurrently; this runs them one at a time), refresh, create/update custom
timeouts (one runner timeout instead), ``dialErrorLimit`` retries, the arrival order of stdout
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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from tests.support.pulumi_mocks import Recorded

COMMAND_TYPES = ("command:local:Command", "command:remote:Command")
NODE_PATCH = "kubernetes:core/v1:NodePatch"
CONFIG_MAP_PATCH = "kubernetes:core/v1:ConfigMapPatch"
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
            timeout_s: float | None = None) -> tuple[int, str, str]:
        """Run one command; on ``timeout_s`` its whole process group is killed (rc -9), which is
        also how tests cut an SSH connection or interrupt a step. ``extra_env`` holds the previous
        outputs' PULUMI_COMMAND_* variables (local commands only, see the module docstring)."""
        stdin = inputs.get("stdin")
        if kind == "command:remote:Command" and inputs.get("environment"):
            raise ValueError("remote.Command environment is not modelled by the twin's replayer "
                             f"(keys {sorted(inputs['environment'])}); pass values through stdin instead")
        if kind == "command:local:Command":
            argv = ["/bin/sh", "-c", text]
            base = os.environ if self.environ is None else self.environ
            env = {**base, **(inputs.get("environment") or {}), **extra_env}
            return self._spawn(argv, stdin=stdin, env=env, cwd=self.cwd, timeout_s=timeout_s or self.timeout_s)
        conn = inputs["connection"]
        with tempfile.NamedTemporaryFile("w", delete=False, prefix="twin-key-") as handle:
            handle.write(conn["privateKey"])
        os.chmod(handle.name, 0o600)
        try:
            argv = ["ssh", "-i", handle.name, "-p", str(int(conn.get("port", 22))), "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                    "-o", f"ConnectTimeout={int(conn.get('perDialTimeout', 5))}",
                    f"{conn.get('user', 'root')}@{conn['host']}", text]
            return self._spawn(argv, stdin=stdin, env=None, cwd=None, timeout_s=timeout_s or self.timeout_s)
        finally:
            os.unlink(handle.name)

    @staticmethod
    def _spawn(argv: list[str], *, stdin: str | None, env: dict[str, str] | None, cwd: Path | None,
               timeout_s: float) -> tuple[int, str, str]:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=cwd, start_new_session=True)
        try:
            out, err = proc.communicate(stdin, timeout=timeout_s)
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return -9, out, err + f"\n(killed after {timeout_s:.1f}s)"


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


@dataclass
class Replayer:
    runner: Runner
    state: dict[str, Stored] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    before_step: Callable[[Step], None] = lambda step: None
    step_timeout: Callable[[Step], float | None] = lambda step: None  # fault injection: cut a step short
    durations: list[tuple[Step, float]] = field(default_factory=list)
    pending_deletes: list[tuple[str, Stored]] = field(default_factory=list)  # replaced copies not yet deleted
    outputs: dict[str, Any] = field(default_factory=dict)  # the stack outputs, as `pulumi stack output` shows
    # server-side apply: (kind, namespace, name) -> {field path: value} applied by that patch resource
    applied_fields: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def _host(self, kind: str, inputs: dict[str, Any]) -> str:
        return inputs["connection"]["host"] if kind == "command:remote:Command" else "local"

    def _kube(self, provider: str) -> Any:
        import yaml
        from kubernetes import config

        stored = self.state.get(provider.rsplit("::", 1)[0])
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
        api_client = self._kube(provider)
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
        rc, out, err = self.runner.run(kind=kind, inputs=inputs, text=text,
                                       extra_env=env if kind == "command:local:Command" else {},
                                       timeout_s=self.step_timeout(step))
        self.durations.append((step, time.monotonic() - started))
        self._check_secrets(step, inputs, secret_paths, out, err)
        # what the provider streams to the CLI log depends on `logging` (COMMAND local/logging.go)
        logging = str(inputs.get("logging") or "stdoutAndStderr").lower()
        shown = {"none": "", "stdout": out, "stderr": err}.get(logging, out + err)
        self.runner.log.append(f"{step.op} {step.name} @{step.host} rc={rc}\n{shown[-4000:]}")
        if rc != 0:
            # COMMAND commandOutputs.go: fmt.Errorf("%w: running %q:\n%s", err, command, stdouterrbuf)
            error = f"{_exit_error(kind, rc)}: running {go_quote(text)}:\n{out}{err}"
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
        self.state[r.urn] = Stored(type=r.type, name=r.name, inputs=r.inputs, outputs=outputs,
                                   dependencies=r.dependencies, delete_before_replace=r.delete_before_replace,
                                   replace_on_changes=r.replace_on_changes, provider=r.provider,
                                   retain_on_delete=r.retain_on_delete,
                                   property_dependencies=dict(r.property_dependencies),
                                   secret_paths=r.secret_paths, custom_timeouts=dict(r.custom_timeouts))

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

    def _up(self, resources: list[Recorded]) -> None:
        custom = [r for r in resources if r.custom]
        present = {r.urn for r in custom}
        for r in _order(custom):
            r = Recorded(**{**r.__dict__, "inputs": self._resolve(r.inputs)})
            old = self.state.get(r.urn)
            if old is None:
                self._create(r)
            elif old.type == r.type and (old.pending_replacement
                                         or _differs_on(r.replace_on_changes, old.inputs, r.inputs)
                                         or _provider_replaces(r.type, old.inputs, r.inputs)):
                if r.delete_before_replace or old.pending_replacement:
                    self._delete_before_replace(r.urn, old)
                    self._create(r)
                else:
                    self._create(r)
                    self.pending_deletes.append((r.urn, old))
            elif old.inputs != r.inputs:
                self._create(r, op="update", old=old)
            else:
                self.steps.append(Step(r.urn, r.name, "noop", self._host(r.type, r.inputs)))
        # deferred deletes of replaced copies and of removed resources: last, reverse dependency order
        removed = [u for u in reversed(_stored_order(self.state)) if u not in present]
        while self.pending_deletes:
            urn, old = self.pending_deletes[-1]
            self._delete(urn, old, "replace-delete")
            self.pending_deletes.pop()
        for urn in removed:
            stored = self.state[urn]
            if stored.pending_replacement:  # ENGINE NewRemovePendingReplaceStep: already deleted
                self.steps.append(Step(urn, stored.name, "remove-pending-replace", self._host(stored.type,
                                                                                               stored.inputs)))
            else:
                self._delete(urn, stored, "delete")
            del self.state[urn]

    def commands_run(self) -> list[Step]:
        return [s for s in self.steps if s.op not in ("noop", "remove-pending-replace")]

    def dump(self) -> str:
        return json.dumps({u: s.__dict__ for u, s in self.state.items()}, default=str)
