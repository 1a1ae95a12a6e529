"""A replayer that stands in for the Pulumi engine in tests. Test-only.

It takes the resources a program run registered under mocks (tests/support/pulumi_mocks.py,
options included) and the stored state of the previous replay, and carries the steps out in
Pulumi's documented order (notes/pulumi_facts.md §1–2, pkg/resource/deploy/step_generator.go):

- creates and updates in dependency order (registration order breaks ties);
- a replacement (a ``replaceOnChanges`` path such as ``triggers[*]`` changed) with
  ``deleteBeforeReplace`` deletes first, from the OLD stored state (old command text, old
  connection, old environment, PULUMI_COMMAND_STDOUT of the old create), then creates;
- a replacement without it creates first and deletes the old copy at the end;
- an input change without a replacement is an update: ``update`` if set, else ``create``;
- no change runs nothing;
- resources no longer in the program are deleted last, in reverse dependency order of the
  stored state (registration order reversed breaks ties);
- on a failure it stops like the engine: later steps do not run, and the state keeps what
  succeeded (a deleted-then-failed replacement is gone from state; an old copy whose deferred
  delete failed stays pending and is deleted by the next run), so a re-run converges.

``command:remote:Command`` runs over real SSH (the key from the connection input, BatchMode,
short connect timeout, host key not checked), ``command:local:Command`` locally through
``/bin/sh -c`` with the stored environment merged into ``os.environ``; both get ``stdin``, and a
delete sees ``PULUMI_COMMAND_STDOUT``/``PULUMI_COMMAND_STDERR`` of the old create.
Kubernetes objects go to the emulated API with the official client, through the kubeconfig of
their provider's stored inputs, as pulumi-kubernetes would send them:
- ``kubernetes:core/v1:NodePatch``: the labels are patched onto the Node;
- ``kubernetes:core/v1:ConfigMapPatch``: server-side apply upserts (pulumi-kubernetes#2194): the
  ConfigMap is created when absent, else its ``data`` keys are patched;
- ``kubernetes:<group>/<version>:<Kind>`` (``apiextensions.CustomResource``): create POSTs the
  object and fails when it exists already (no upsert without ``patchForce``); an update
  merge-patches ``metadata.labels`` and ``spec``; a delete sends DELETE and waits (bounded) until
  the API answers 404, as the provider's delete await does. Plural = lower-case kind + ``s``; no
  ``metadata.namespace`` means cluster-scoped.
``retainOnDelete`` resources are dropped from state without touching the cluster. Any other
``kubernetes:`` type is refused (an unmodelled type must not pass silently); providers and
components are recorded as applied without side effects, said in ``Step.note``.

What it does not model: previews and diffs of outputs, parallelism (the engine may run
independent resources concurrently; this runs them one at a time), refresh, custom timeouts
(one runner timeout instead), ``dialErrorLimit`` retries, remote ``environment`` (rejected, the
program does not use it), ``ignoreChanges``/``aliases``, and state checkpoints on disk.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.support.pulumi_mocks import Recorded

COMMAND_TYPES = ("command:local:Command", "command:remote:Command")
NODE_PATCH = "kubernetes:core/v1:NodePatch"
CONFIG_MAP_PATCH = "kubernetes:core/v1:ConfigMapPatch"
DELETE_WAIT_S = 120  # a CustomResource delete waits for the object to go (finalizers, kubean's GC)


def is_kube_object(kind: str) -> bool:
    return kind.startswith("kubernetes:")


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


@dataclass(frozen=True)
class Step:
    urn: str
    name: str
    op: str  # create | update | delete | replace-delete | noop
    host: str  # "local" or the SSH host
    note: str = ""


class StepFailed(Exception):
    def __init__(self, step: Step, detail: str) -> None:
        super().__init__(f"{step.op} {step.name} on {step.host} failed: {detail}")
        self.step = step


@dataclass
class Runner:
    """Runs command text; tests may wrap it to inject faults."""

    cwd: Path
    timeout_s: float = 300
    log: list[str] = field(default_factory=list)

    def run(self, *, kind: str, inputs: dict[str, Any], text: str, extra_env: dict[str, str],
            timeout_s: float | None = None) -> tuple[int, str, str]:
        """Run one command; on ``timeout_s`` its whole process group is killed (rc -9), which is
        also how tests cut an SSH connection or interrupt a step."""
        stdin = inputs.get("stdin")
        if kind == "command:remote:Command" and inputs.get("environment"):
            raise ValueError("remote.Command environment is not modelled by the twin's replayer "
                             f"(keys {sorted(inputs['environment'])}); pass values through stdin instead")
        if kind == "command:local:Command":
            argv = ["/bin/sh", "-c", text]
            env: dict[str, str] | None = {**os.environ, **(inputs.get("environment") or {}), **extra_env}
            # `cpswap` from the interpreter's own bin first: the operator's venv, not a pyenv shim
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
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


def _stored_order(state: dict[str, Stored]) -> list[str]:
    """Stored URNs in dependency order (stored order breaks ties); deletes walk it reversed."""
    done: set[str] = set()
    ordered: list[str] = []

    def visit(urn: str, stack: tuple[str, ...] = ()) -> None:
        if urn in done or urn in stack:
            return
        for dep in state[urn].dependencies:
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
        for dep in r.dependencies:
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

    def _apply_object(self, kind: str, inputs: dict[str, Any], provider: str, op: str) -> None:
        """Create, update or delete one Kubernetes object (see the module docstring)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        metadata = inputs.get("metadata") or {}
        api_client = self._kube(provider)
        try:
            core = client.CoreV1Api(api_client)
            if kind == NODE_PATCH:
                core.patch_node(metadata["name"], {"metadata": {"labels": metadata.get("labels") or {}}})
                return
            if kind == CONFIG_MAP_PATCH:
                name, namespace = metadata["name"], metadata.get("namespace") or "default"
                try:
                    core.patch_namespaced_config_map(name, namespace, {"data": inputs.get("data") or {}})
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
                        metadata=client.V1ObjectMeta(name=name, namespace=namespace), data=inputs.get("data") or {}))
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
                try:
                    (objects.delete_namespaced_custom_object if namespace else objects.delete_cluster_custom_object)(
                        *scope, name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                end = time.monotonic() + DELETE_WAIT_S
                while True:
                    try:
                        get(*scope, name)
                    except ApiException as exc:
                        if exc.status == 404:
                            return
                        raise
                    if time.monotonic() > end:
                        raise TimeoutError(f"{kind} {name} still present {DELETE_WAIT_S}s after its delete")
                    time.sleep(0.2)
        finally:
            api_client.close()

    def _exec(self, step: Step, kind: str, inputs: dict[str, Any], text: str | None, env: dict[str, str],
              provider: str = "") -> tuple[str, str]:
        self.before_step(step)
        self.steps.append(step)
        if is_kube_object(kind):
            try:
                self._apply_object(kind, inputs, provider, "delete" if "delete" in step.op else step.op)
            except Exception as exc:  # the engine reports a provider error as the step's failure
                raise StepFailed(step, f"{type(exc).__name__}: {str(exc)[-800:]}") from exc
            return "", ""
        if not text or kind not in COMMAND_TYPES:
            return "", ""
        started = time.monotonic()
        rc, out, err = self.runner.run(kind=kind, inputs=inputs, text=text, extra_env=env,
                                       timeout_s=self.step_timeout(step))
        self.durations.append((step, time.monotonic() - started))
        # what the provider streams to the CLI log depends on `logging` (pulumi-command)
        logging = str(inputs.get("logging") or "stdoutAndStderr").lower()
        shown = {"none": "", "stdout": out, "stderr": err}.get(logging, out + err)
        self.runner.log.append(f"{step.op} {step.name} @{step.host} rc={rc}\n{shown[-4000:]}")
        if rc != 0:
            if os.environ.get("CPSWAP_TWIN_DEBUG"):  # local debugging only: may show secret output
                print(f"--- {step.name} rc={rc}\nstdin={inputs.get('stdin')!r}\n{out[-3000:]}\n{err[-3000:]}", file=sys.stderr)
            raise StepFailed(step, f"rc={rc}: {(shown or f'(output hidden: logging={logging})').strip()[-800:]}")
        return out, err

    def _delete(self, urn: str, stored: Stored, op: str) -> None:
        """Delete from stored state: the old text, connection and environment, and the old outputs."""
        step = Step(urn, stored.name, op, self._host(stored.type, stored.inputs),
                    "retainOnDelete: left in place" if stored.retain_on_delete else "")
        env = {"PULUMI_COMMAND_STDOUT": stored.outputs.get("stdout", ""),
               "PULUMI_COMMAND_STDERR": stored.outputs.get("stderr", "")}
        kind = "retained" if stored.retain_on_delete else stored.type
        self._exec(step, kind, stored.inputs, stored.inputs.get("delete"), env, stored.provider)

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

    def _create(self, r: Recorded, op: str = "create") -> None:
        note = "" if r.type in COMMAND_TYPES or is_kube_object(r.type) else f"{r.type}: applied without side effects"
        step = Step(r.urn, r.name, op, self._host(r.type, r.inputs), note)
        text = r.inputs.get("create") if op == "create" else (r.inputs.get("update") or r.inputs.get("create"))
        out, err = self._exec(step, r.type, r.inputs, text, {}, r.provider)
        # pulumi-command stores stdout/stderr with one trailing newline trimmed
        self.state[r.urn] = Stored(type=r.type, name=r.name, inputs=r.inputs, outputs={"stdout": out.removesuffix("\n"),
                                                                             "stderr": err.removesuffix("\n")},
                                   dependencies=r.dependencies, delete_before_replace=r.delete_before_replace,
                                   replace_on_changes=r.replace_on_changes, provider=r.provider,
                                   retain_on_delete=r.retain_on_delete)

    def up(self, resources: list[Recorded]) -> list[Step]:
        """One `pulumi up`. Returns the steps that ran; raises StepFailed and keeps partial state."""
        self.steps = []
        custom = [r for r in resources if r.custom]
        present = {r.urn for r in custom}
        for r in _order(custom):
            r = Recorded(**{**r.__dict__, "inputs": self._resolve(r.inputs)})
            old = self.state.get(r.urn)
            if old is None:
                self._create(r)
            elif old.type == r.type and (_differs_on(r.replace_on_changes, old.inputs, r.inputs)
                                         or _provider_replaces(r.type, old.inputs, r.inputs)):
                if r.delete_before_replace:
                    self._delete(r.urn, old, "replace-delete")
                    del self.state[r.urn]
                    self._create(r)
                else:
                    self._create(r)
                    self.pending_deletes.append((r.urn, old))
            elif old.inputs != r.inputs:
                self._create(r, op="update")
            else:
                self.steps.append(Step(r.urn, r.name, "noop", self._host(r.type, r.inputs)))
        # deferred deletes of replaced copies and of removed resources: last, reverse dependency order
        removed = [u for u in reversed(_stored_order(self.state)) if u not in present]
        while self.pending_deletes:
            urn, old = self.pending_deletes[-1]
            self._delete(urn, old, "replace-delete")
            self.pending_deletes.pop()
        for urn in removed:
            self._delete(urn, self.state[urn], "delete")
            del self.state[urn]
        return self.steps

    def commands_run(self) -> list[Step]:
        return [s for s in self.steps if s.op != "noop"]

    def dump(self) -> str:
        return json.dumps({u: s.__dict__ for u, s in self.state.items()}, default=str)
