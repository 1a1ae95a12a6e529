"""The replayer's order is pinned to Pulumi's documented rules (synthetic recordings, no hosts)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.pulumi_mocks import Recorded
from tests.support.twin.replayer import EngineHang, Replayer, Runner, StepFailed


def cmd(name: str, *, create: str, delete: str | None = None, update: str | None = None, triggers=("a",),
        deps: tuple[str, ...] = (), dbr: bool = True, env: dict | None = None) -> Recorded:
    inputs = {"create": create, "triggers": list(triggers)}
    if delete:
        inputs["delete"] = delete
    if update:
        inputs["update"] = update
    if env:
        inputs["environment"] = env
    return Recorded(type="command:local:Command", name=name, parent="", custom=True, inputs=inputs, secret_paths=(),
                    delete_before_replace=dbr, dependencies=tuple(f"urn:{d}" for d in deps),
                    replace_on_changes=("triggers[*]",), custom_timeouts={}, additional_secret_outputs=(),
                    retain_on_delete=False, provider="", urn=f"urn:{name}")


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def echo(journal: Path, text: str) -> str:
    return f"echo {text} >> {journal}"


def lines(journal: Path) -> list[str]:
    return journal.read_text().split() if journal.exists() else []


def test_creates_in_dependency_order(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("b", create=echo(journal, "create-b"), deps=("a",)), cmd("a", create=echo(journal, "create-a"))])
    assert lines(journal) == ["create-a", "create-b"]


def test_dbr_replacement_deletes_first_with_the_stored_old_text(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("m", create=echo(journal, "create-old"), delete=echo(journal, "delete-old"), triggers=("old",))])
    r.up([cmd("m", create=echo(journal, "create-new"), delete=echo(journal, "delete-new"), triggers=("new",)),
          cmd("after", create=echo(journal, "create-after"), deps=("m",))])
    assert lines(journal) == ["create-old", "delete-old", "create-new", "create-after"]


def test_default_replacement_creates_first_and_deletes_at_the_end(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("m", create=echo(journal, "create-old"), delete=echo(journal, "delete-old"), dbr=False)])
    r.up([cmd("m", create=echo(journal, "create-new"), delete=echo(journal, "delete-new"), triggers=("b",), dbr=False),
          cmd("z", create=echo(journal, "create-z"), deps=("m",))])
    assert lines(journal) == ["create-old", "create-new", "create-z", "delete-old"]


def test_removed_resources_are_deleted_last_in_reverse(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("a", create="true", delete=echo(journal, "delete-a")),
          cmd("b", create="true", delete=echo(journal, "delete-b"), deps=("a",)),
          cmd("keep", create="true")])
    r.up([cmd("keep", create="true"), cmd("new", create=echo(journal, "create-new"))])
    assert lines(journal) == ["create-new", "delete-b", "delete-a"]


def test_update_runs_update_and_noop_runs_nothing(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("m", create=echo(journal, "create"), update=echo(journal, "update-1"))])
    steps = r.up([cmd("m", create=echo(journal, "create"), update=echo(journal, "update-2"))])
    assert lines(journal) == ["create", "update-2"] and [s.op for s in steps] == ["update"]
    steps = r.up([cmd("m", create=echo(journal, "create"), update=echo(journal, "update-2"))])
    assert [s.op for s in steps] == ["noop"] and r.commands_run() == []
    assert lines(journal) == ["create", "update-2"]


def test_delete_sees_the_old_create_output(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("m", create="echo member-id-42", delete=f'echo "$PULUMI_COMMAND_STDOUT" >> {journal}')])
    r.up([cmd("m", create="true", triggers=("b",))])
    assert lines(journal) == ["member-id-42"]


def test_failure_stops_dependents_and_a_rerun_converges(tmp_path, journal):
    flag = tmp_path / "fail-once"
    flag.write_text("x")
    failing = f"if [ -e {flag} ]; then rm {flag}; exit 3; fi; " + echo(journal, "create-b")
    program = [cmd("a", create=echo(journal, "create-a")), cmd("b", create=failing, deps=("a",)),
               cmd("c", create=echo(journal, "create-c"), deps=("b",))]
    r = Replayer(Runner(cwd=tmp_path))
    with pytest.raises(StepFailed, match="create b on local failed: rc=3"):
        r.up(program)
    assert lines(journal) == ["create-a"] and "urn:b" not in r.state
    steps = r.up(program)
    assert [(s.name, s.op) for s in steps] == [("a", "noop"), ("b", "create"), ("c", "create")]
    assert lines(journal) == ["create-a", "create-b", "create-c"]


def test_removed_resources_follow_dependencies_not_registration_order(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    # "child" is registered first but depends on "base": the engine deletes the dependent first
    r.up([cmd("child", create="true", delete=echo(journal, "delete-child"), deps=("base",)),
          cmd("base", create="true", delete=echo(journal, "delete-base"))])
    r.up([])
    assert lines(journal) == ["delete-child", "delete-base"] and r.state == {}


def test_a_failed_deferred_delete_stays_pending_and_the_next_run_retries_it(tmp_path, journal):
    flag = tmp_path / "fail-once"
    flag.write_text("x")
    old_delete = f"if [ -e {flag} ]; then rm {flag}; exit 4; fi; " + echo(journal, "delete-old")
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("m", create=echo(journal, "create-old"), delete=old_delete, dbr=False)])
    new = [cmd("m", create=echo(journal, "create-new"), delete=echo(journal, "delete-new"), triggers=("b",), dbr=False)]
    with pytest.raises(StepFailed, match="replace-delete m on local failed: rc=4"):
        r.up(new)
    assert [u for u, _ in r.pending_deletes] == ["urn:m"]
    steps = r.up(new)
    assert [(s.name, s.op) for s in steps] == [("m", "noop"), ("m", "replace-delete")]
    assert lines(journal) == ["create-old", "create-new", "delete-old"] and r.pending_deletes == []


def test_local_commands_get_stdin_their_environment_and_the_old_stderr_on_delete(tmp_path, journal):
    r = Replayer(Runner(cwd=tmp_path))
    first = cmd("m", create="read line; echo \"$line-$TWIN_VAR\"; echo warn-7 >&2",
                delete=f'echo "$PULUMI_COMMAND_STDOUT/$PULUMI_COMMAND_STDERR/$TWIN_VAR" >> {journal}',
                env={"TWIN_VAR": "old-env"})
    first.inputs["stdin"] = "from-stdin\n"
    r.up([first])
    assert r.state["urn:m"].outputs == {"stdout": "from-stdin-old-env", "stderr": "warn-7"}
    r.up([cmd("m", create="true", triggers=("b",), env={"TWIN_VAR": "new-env"})])
    assert lines(journal) == ["from-stdin-old-env/warn-7/old-env"]


def test_remote_environment_is_refused_rather_than_silently_dropped(tmp_path):
    remote = Recorded(**{**cmd("r", create="true").__dict__, "type": "command:remote:Command",
                         "inputs": {"create": "true", "environment": {"X": "1"},
                                    "connection": {"host": "127.0.0.1", "privateKey": "k"}}})
    with pytest.raises(ValueError, match=r"remote.Command environment is not modelled .*\['X'\]"):
        Replayer(Runner(cwd=tmp_path)).up([remote])


def test_kubernetes_objects_are_applied_and_replaced_when_their_name_changes(tmp_path):
    """A CustomResource through its provider's kubeconfig: create, update (merge of spec), a
    replacement when metadata.name changes (delete first: delete-before-replace), a ConfigMapPatch
    upsert, retainOnDelete leaving the object, and an unmodelled type refused."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from tests.support.kube_emulator import Emulator

    with Emulator() as emu:
        objects = client.CustomObjectsApi(emu.api_client)
        provider = Recorded(**{**cmd("k8s", create="true").__dict__, "type": "pulumi:providers:kubernetes",
                               "inputs": {"kubeconfig": emu.kubeconfig_text}, "replace_on_changes": ()})
        provider_ref = f"{provider.urn}::id"

        def operation(name: str, action: str) -> Recorded:
            return Recorded(**{**cmd("op", create="true", deps=("k8s",)).__dict__,
                               "type": "kubernetes:kubean.io/v1alpha1:ClusterOperation", "provider": provider_ref,
                               "inputs": {"apiVersion": "kubean.io/v1alpha1", "kind": "ClusterOperation",
                                          "metadata": {"name": name}, "spec": {"action": action}},
                               "replace_on_changes": ()})

        def read(name: str) -> dict | None:
            try:
                return objects.get_cluster_custom_object("kubean.io", "v1alpha1", "clusteroperations", name)
            except ApiException as exc:
                assert exc.status == 404
                return None
        patch = Recorded(**{**cmd("clean", create="true", deps=("k8s",)).__dict__,
                            "type": "kubernetes:core/v1:ConfigMapPatch", "provider": provider_ref,
                            "retain_on_delete": True, "replace_on_changes": (),
                            "inputs": {"metadata": {"name": "pb", "namespace": "kubean-system"},
                                       "data": {"a.yml": "- hosts: all"}}})
        r = Replayer(Runner(cwd=tmp_path))
        assert [s.op for s in r.up([provider, operation("a", "cluster.yml"), patch])] == ["create"] * 3
        assert read("a")["spec"] == {"action": "cluster.yml"}
        assert emu.core.read_namespaced_config_map("pb", "kubean-system").data == {"a.yml": "- hosts: all"}
        assert [s.op for s in r.up([provider, operation("a", "scale.yml"), patch])] == ["noop", "update", "noop"]
        assert read("a")["spec"] == {"action": "scale.yml"}
        assert [s.op for s in r.up([provider, operation("b", "scale.yml")])] == [
            "noop", "replace-delete", "create", "delete"]
        assert read("a") is None and read("b") is not None
        assert r.steps[-1].note == "retainOnDelete: left in place"
        assert emu.core.read_namespaced_config_map("pb", "kubean-system").data == {"a.yml": "- hosts: all"}
        # a create never overwrites an object that exists (no upsert without patchForce)
        with pytest.raises(StepFailed, match=r"create op .*Conflict|create op .*409|create op .*exists"):
            Replayer(Runner(cwd=tmp_path)).up([provider, operation("b", "x")])
        plain = Recorded(**{**cmd("cm", create="true", deps=("k8s",)).__dict__, "type": "kubernetes:core/v1:ConfigMap",
                            "provider": provider_ref, "inputs": {"metadata": {"name": "c"}}, "replace_on_changes": ()})
        with pytest.raises(StepFailed, match="only CustomResources"):
            Replayer(Runner(cwd=tmp_path)).up([provider, plain])


# --- engine and provider fidelity (issue 18; sources in the replayer's docstring) ---------------

def test_local_environment_is_the_cli_environment_plus_inputs_with_no_path_edit(tmp_path, journal):
    """COMMAND local/commandOutputs.go: os.Environ() + environment + PULUMI_COMMAND_* only when the
    previous outputs are non-empty (create: none; update and delete: the stored ones)."""
    dump = f"env | cut -d= -f1 | sort | tr '\\n' ' ' >> {journal}; echo >> {journal}; echo out-1"
    r = Replayer(Runner(cwd=tmp_path, environ={"PATH": "/usr/bin:/bin", "CLI_ONLY": "1"}))
    r.up([cmd("m", create=dump, update=dump, delete=dump, env={"FROM_INPUT": "2"})])
    r.up([cmd("m", create=dump, update=dump + " ", delete=dump, env={"FROM_INPUT": "2"})])
    r.up([])
    shell_own = {"PWD", "SHLVL", "_", "OLDPWD"}
    runs = [set(line.split()) - shell_own for line in journal.read_text().splitlines()]
    assert runs == [{"CLI_ONLY", "FROM_INPUT", "PATH"},
                    {"CLI_ONLY", "FROM_INPUT", "PATH", "PULUMI_COMMAND_STDOUT"},
                    {"CLI_ONLY", "FROM_INPUT", "PATH", "PULUMI_COMMAND_STDOUT"}]


def _versioned_cpswap(root: Path, version: str) -> Path:
    """A `cpswap` install of another version: a copy of the package with its version changed,
    and a bin/cpswap entry point like pip's."""
    import shutil
    import sys

    import cpswap

    site = root / "site"
    shutil.copytree(Path(cpswap.__file__).parent, site / "cpswap", ignore=shutil.ignore_patterns("__pycache__"))
    init = site / "cpswap" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{cpswap.__version__}"', f'__version__ = "{version}"'))
    (root / "bin").mkdir()
    entry = root / "bin" / "cpswap"
    entry.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(site)!r})\n"
                     "from cpswap.cli import main\nsys.exit(main())\n")
    entry.chmod(0o755)
    return root / "bin"


def _verify_command() -> Recorded:
    from cpswap.core.model import Host
    from cpswap.core.renderers.kube import render_node_verify

    return cmd("cp1-verify", create=render_node_verify(host=Host("n-new", "10.0.0.9"), deadline_s=5))


def test_a_local_command_fails_clearly_when_cpswap_is_not_on_the_cli_path(tmp_path):
    r = Replayer(Runner(cwd=tmp_path, environ={"PATH": "/usr/bin:/bin"}))
    with pytest.raises(StepFailed) as failed:
        r.up([_verify_command()])
    text = str(failed.value)
    assert "rc=127" in text and "cpswap: not found" in text and 'running "cpswap --expect-version=' in text


def test_a_local_command_refuses_a_cpswap_of_another_version(tmp_path):
    import cpswap

    other = _versioned_cpswap(tmp_path / "old-install", "0.0.1")
    environ = {"PATH": f"{other}:/usr/bin:/bin"}
    r = Replayer(Runner(cwd=tmp_path, environ=environ))
    with pytest.raises(StepFailed) as failed:
        r.up([_verify_command()])
    text = str(failed.value)
    assert "rc=2" in text and f"program's cpswap {cpswap.__version__}" in text and "found on PATH is 0.0.1" in text


def test_the_twin_operator_shell_finds_the_programs_cpswap(tmp_path, journal):
    """README: `pulumi up` from a shell with the program's virtualenv activated."""
    import cpswap

    from tests.support.twin.operator import activated_environ

    environ = activated_environ(base={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(cpswap.__file__).parents[1])})
    r = Replayer(Runner(cwd=tmp_path, environ=environ))
    r.up([cmd("v", create=f"cpswap --expect-version={cpswap.__version__} kube --help >/dev/null && "
                         f"command -v cpswap >> {journal}")])
    assert lines(journal)[0].startswith(environ["VIRTUAL_ENV"])


def test_a_failure_prints_the_command_and_its_full_output_whatever_logging_says(tmp_path):
    long = "x" * 6000
    failing = cmd("quiet", create=f"echo {long}; echo to-stderr >&2; exit 5")
    failing.inputs["logging"] = "none"
    r = Replayer(Runner(cwd=tmp_path))
    with pytest.raises(StepFailed) as failed:
        r.up([failing])
    expected = f'exit status 5: running "echo {long}; echo to-stderr >&2; exit 5":\n{long}\nto-stderr\n'
    assert str(failed.value).endswith(expected)
    assert r.runner.log[-1] == f"error: {expected}"  # the CLI prints the error even with logging=none


def test_a_command_printing_a_secret_it_was_given_is_caught(tmp_path):
    leaky = cmd("leaky", create="read -r line; echo \"got $line\"")
    leaky.inputs["stdin"] = "TOKEN=abcdef0123456789\nCA_HASH=sha256:public\n"
    leaky = Recorded(**{**leaky.__dict__, "secret_paths": ("stdin",)})
    with pytest.raises(AssertionError, match=r"create leaky on local: its stdout holds a part of its secret input 'stdin'"):
        Replayer(Runner(cwd=tmp_path)).up([leaky])
    quiet = Recorded(**{**leaky.__dict__, "inputs": {**leaky.inputs, "create": "read -r line; echo read"}})
    Replayer(Runner(cwd=tmp_path)).up([quiet])
    # a whole secret object (the SDK marks `connection` secret for its key): only its secret entries count
    connected = Recorded(**{**quiet.__dict__, "secret_paths": ("connection",), "inputs": {
        **quiet.inputs, "create": "echo host 10.0.0.7", "connection": {"host": "10.0.0.7", "privateKey": "PRIVATE-KEY-1"}}})
    Replayer(Runner(cwd=tmp_path)).up([connected])
    with pytest.raises(AssertionError, match="secret input 'connection'"):
        Replayer(Runner(cwd=tmp_path)).up([Recorded(**{**connected.__dict__, "inputs": {
            **connected.inputs, "create": "echo PRIVATE-KEY-1 >&2"}})])


def test_a_failed_delete_before_replace_stays_pending_replacement_and_is_not_deleted_twice(tmp_path, journal):
    flag = tmp_path / "fail-once"
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("m", create=echo(journal, "create-old"), delete=echo(journal, "delete-old"), triggers=("old",))])
    flag.write_text("x")
    new = cmd("m", create=f"if [ -e {flag} ]; then rm {flag}; exit 6; fi; " + echo(journal, "create-new"),
              delete=echo(journal, "delete-new"), triggers=("new",))
    with pytest.raises(StepFailed, match="create m on local failed: rc=6"):
        r.up([new])
    assert r.state["urn:m"].pending_replacement and r.state["urn:m"].inputs["triggers"] == ["old"]
    steps = r.up([new])
    assert [(s.name, s.op) for s in steps] == [("m", "create")]
    assert lines(journal) == ["create-old", "delete-old", "create-new"] and not r.state["urn:m"].pending_replacement
    # a resource pending replacement that leaves the program is dropped without a second delete
    flag.write_text("x")
    with pytest.raises(StepFailed):
        r.up([cmd("m", create=f"if [ -e {flag} ]; then rm {flag}; exit 6; fi", triggers=("newest",))])
    assert r.state["urn:m"].pending_replacement
    steps = r.up([])
    assert [(s.name, s.op) for s in steps] == [("m", "remove-pending-replace")] and r.state == {}
    assert lines(journal) == ["create-old", "delete-old", "create-new", "delete-new"]


def test_stack_outputs_of_a_failed_up_already_hold_the_new_values(tmp_path):
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("a", create="true")], outputs={"membership": {"cp1": "old"}, "gone": 1})
    with pytest.raises(StepFailed):
        r.up([cmd("a", create="exit 1", triggers=("b",))], outputs={"membership": {"cp1": "new"}})
    assert r.outputs == {"membership": {"cp1": "new"}, "gone": 1}  # old overlaid with new, as the engine saves
    r.up([cmd("a", create="true", triggers=("b",))], outputs={"membership": {"cp1": "new"}})
    assert r.outputs == {"membership": {"cp1": "new"}}


def test_property_dependencies_order_and_replace_dependents_like_the_engine(tmp_path, journal):
    """A dependent whose `triggers` come from a delete-before-replace resource is deleted before
    it (calculateDependentReplacements); one whose `stdin` comes from it is not (an update)."""
    def prop(r: Recorded, key: str, on: str) -> Recorded:
        return Recorded(**{**r.__dict__, "property_dependencies": {key: (f"urn:{on}",)}})

    def program(gen: str) -> list[Recorded]:
        return [prop(cmd("by-trigger", create="true", delete=echo(journal, f"delete-by-trigger-{gen}"),
                         triggers=(f"t-{gen}",)), "triggers", "root"),
                prop(cmd("by-stdin", create="true", delete=echo(journal, "delete-by-stdin")), "stdin", "root"),
                cmd("root", create="true", delete=echo(journal, f"delete-root-{gen}"), triggers=(gen,))]
    r = Replayer(Runner(cwd=tmp_path))
    steps = r.up(program("1"))
    assert [s.name for s in steps] == ["root", "by-trigger", "by-stdin"]  # property edges order creates
    steps = r.up(program("2"))
    assert lines(journal) == ["delete-by-trigger-1", "delete-root-1"]
    assert [(s.name, s.op) for s in steps] == [("by-trigger", "replace-delete"), ("root", "replace-delete"),
                                               ("root", "create"), ("by-trigger", "create"), ("by-stdin", "noop")]


def _kube_provider(emu) -> Recorded:
    return Recorded(**{**cmd("k8s", create="true").__dict__, "type": "pulumi:providers:kubernetes",
                       "inputs": {"kubeconfig": emu.kubeconfig_text}, "replace_on_changes": ()})


def _patch(kind: str, name: str, inputs: dict) -> Recorded:
    return Recorded(**{**cmd(name, create="true", deps=("k8s",)).__dict__, "type": f"kubernetes:core/v1:{kind}",
                       "provider": "urn:k8s::id", "retain_on_delete": True, "replace_on_changes": (),
                       "inputs": inputs})


def test_patches_are_server_side_applies_that_create_and_can_conflict(tmp_path):
    from kubernetes import client

    from tests.support.kube_emulator import Emulator

    with Emulator() as emu:
        labels = _patch("NodePatch", "labels", {"metadata": {"name": "never-joined", "labels": {"cpswap.io/slot": "cp1"}}})
        Replayer(Runner(cwd=tmp_path)).up([_kube_provider(emu), labels])
        assert emu.core.read_node("never-joined").metadata.labels == {"cpswap.io/slot": "cp1"}  # SSA created it
        emu.core.create_namespaced_config_map("kubean-system", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="pb", namespace="kubean-system"), data={"a.yml": "theirs"}))
        cm = _patch("ConfigMapPatch", "pb", {"metadata": {"name": "pb", "namespace": "kubean-system"},
                                             "data": {"a.yml": "ours"}})
        with pytest.raises(StepFailed, match=r"(?s)create pb .*409.*conflict.*\.data\.a\.yml"):
            Replayer(Runner(cwd=tmp_path)).up([_kube_provider(emu), cm])
        forced = _patch("ConfigMapPatch", "pb", {"metadata": {"name": "pb", "namespace": "kubean-system",
                                                              "annotations": {"pulumi.com/patchForce": "true"}},
                                                 "data": {"a.yml": "ours"}})
        r = Replayer(Runner(cwd=tmp_path))
        r.up([_kube_provider(emu), forced])
        assert emu.core.read_namespaced_config_map("pb", "kubean-system").data == {"a.yml": "ours"}
        r.up([_kube_provider(emu), Recorded(**{**forced.__dict__, "inputs": {**forced.inputs,
                                                                            "data": {"a.yml": "ours, v2"}}})])
        assert emu.core.read_namespaced_config_map("pb", "kubean-system").data == {"a.yml": "ours, v2"}


def test_custom_resource_deletes_wait_for_their_delete_timeout(tmp_path):
    from kubernetes import client

    from tests.support.kube_emulator import Emulator

    with Emulator() as emu:
        objects = client.CustomObjectsApi(emu.api_client)
        op = Recorded(**{**cmd("op", create="true", deps=("k8s",)).__dict__,
                         "type": "kubernetes:kubean.io/v1alpha1:ClusterOperation", "provider": "urn:k8s::id",
                         "replace_on_changes": (), "custom_timeouts": {"delete": "2s"},
                         "inputs": {"apiVersion": "kubean.io/v1alpha1", "kind": "ClusterOperation",
                                    "metadata": {"name": "held"}, "spec": {"action": "cluster.yml"}}})
        r = Replayer(Runner(cwd=tmp_path))
        r.up([_kube_provider(emu), op])
        objects.patch_cluster_custom_object("kubean.io", "v1alpha1", "clusteroperations", "held",
                                            {"metadata": {"finalizers": ["test/hold"]}})
        started = time.monotonic()
        with pytest.raises(StepFailed, match=r"delete op .*still present 2s after its delete"):
            r.up([_kube_provider(emu)])
        assert 2 <= time.monotonic() - started < 30


def _timed(journal: Path, name: str, seconds: float = 0.6) -> str:
    return f"echo start-{name} $(date +%s.%N) >> {journal}; sleep {seconds}; echo end-{name} $(date +%s.%N) >> {journal}"


def _times(journal: Path) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1]) for line in journal.read_text().splitlines()}


def test_deletes_run_in_concurrent_antichains_dependents_first(tmp_path, journal):
    """ScheduleDeletes + ExecuteParallel: three independent chains leave/node are destroyed as
    {node-1, node-2, node-3} at once, then {leave-1, leave-2, leave-3} at once."""
    r = Replayer(Runner(cwd=tmp_path))
    chains = []
    for i in (1, 2, 3):
        chains += [cmd(f"leave-{i}", create="true", delete=_timed(journal, f"leave-{i}")),
                   cmd(f"node-{i}", create="true", delete=_timed(journal, f"node-{i}"), deps=(f"leave-{i}",))]
    r.up(chains)
    steps = r.destroy()
    assert r.state == {} and sorted(s.name for s in steps) == sorted(c.name for c in chains)
    t = _times(journal)
    nodes, leaves = [f"node-{i}" for i in (1, 2, 3)], [f"leave-{i}" for i in (1, 2, 3)]
    assert max(t[f"start-{n}"] for n in nodes) < min(t[f"end-{n}"] for n in nodes), "node deletes not concurrent"
    assert max(t[f"start-{n}"] for n in leaves) < min(t[f"end-{n}"] for n in leaves), "leave deletes not concurrent"
    assert max(t[f"end-{n}"] for n in nodes) <= min(t[f"start-{n}"] for n in leaves), "a leave ran before the nodes"


def test_a_failed_delete_stops_the_later_antichains_and_keeps_their_state(tmp_path, journal):
    """A guard that depends on everything is deleted first and alone; its failure (no
    --continue-on-error) means no other delete runs, and the state keeps every resource."""
    r = Replayer(Runner(cwd=tmp_path))
    members = [cmd(f"leave-{i}", create="true", delete=echo(journal, f"delete-{i}")) for i in (1, 2, 3)]
    guard = cmd("guard", create="true", delete="echo refused >&2; exit 1", deps=("leave-1", "leave-2", "leave-3"))
    r.up([*members, guard])
    with pytest.raises(StepFailed, match=r"(?s)delete guard on local failed: rc=1: .*\nrefused"):
        r.destroy()
    assert lines(journal) == [] and sorted(r.state) == ["urn:guard", "urn:leave-1", "urn:leave-2", "urn:leave-3"]


def test_a_local_command_at_its_declared_timeout_loses_only_its_shell(tmp_path):
    """pulumi-command local: exec.CommandContext SIGKILLs /bin/sh at the custom timeout and Wait
    goes on until the output closes: a child holding stdout keeps the step alive; one that never
    ends is a hang the harness reports, not a step failure."""
    timed = Recorded(**{**cmd("slow", create="sleep 2 & wait").__dict__, "custom_timeouts": {"create": "0.5s"}})
    r = Replayer(Runner(cwd=tmp_path, timeout_s=20))
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"(?s)rc=-9: signal: killed: .*timeout killed /bin/sh only"):
        r.up([timed])
    assert 1.8 < time.monotonic() - started < 10  # the child kept the pipe open for its 2 s
    hung = Recorded(**{**cmd("hung", create="sleep 60 & wait").__dict__, "custom_timeouts": {"create": "0.5s"}})
    started = time.monotonic()
    with pytest.raises(EngineHang, match="harness bound of 2s"):
        Replayer(Runner(cwd=tmp_path, timeout_s=2)).up([hung])
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("old", "new", "replaces"), [
    ({"kubeconfig": "K(a)"}, {"kubeconfig": "K(a)"}, []),
    ({"kubeconfig": "K(a)"}, {"kubeconfig": "K(b)"}, ["kubeconfig"]),
    ({"kubeconfig": "K(a)", "clusterIdentifier": "x"}, {"kubeconfig": "K(b)", "clusterIdentifier": "x"}, []),
    ({"kubeconfig": "K(a)"}, {"kubeconfig": "K(b)", "clusterIdentifier": "x"}, ["kubeconfig"]),  # onboarding
    ({"kubeconfig": "K(a)", "clusterIdentifier": "x"}, {"kubeconfig": "K(a)", "clusterIdentifier": "y"},
     ["clusterIdentifier"]),
    ({"kubeconfig": "K(a)", "clusterIdentifier": "x"}, {"kubeconfig": "K(a)"}, []),  # off-boarding
    ({"kubeconfig": "K(a)"}, {"kubeconfig": "K(a)", "namespace": "n"}, []),
    ({"kubeconfig": "K(a)"}, {"kubeconfig": "K(a)", "renderYamlToDirectory": "d"}, ["renderYamlToDirectory"]),
    ({"kubeconfig": "K(a)+user"}, {"kubeconfig": "K(a)+other-user"}, []),  # same active cluster, new credentials
])
def test_kube_provider_replacement_follows_diffconfig(old, new, replaces):
    from tests.support.twin.replayer import kube_provider_replaces

    def kubeconfig(text: str) -> str:
        server, _, user = text[2:].partition(")")
        return (f"apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, "
                f"user: u}}\nclusters:\n- name: k\n  cluster: {{server: 'https://{server}:6443'}}\n"
                f"users:\n- name: u\n  user: {{token: '{user or 't'}'}}\n")
    assert kube_provider_replaces({**old, "kubeconfig": kubeconfig(old["kubeconfig"])},
                                  {**new, "kubeconfig": kubeconfig(new["kubeconfig"])}) == replaces


@pytest.mark.parametrize("identifier", [None, "cpswap-kubean-global-cluster"])
def test_a_rotated_kubeconfig_server_replaces_the_providers_objects_unless_the_identifier_pins_it(tmp_path, identifier):
    from tests.support.kube_emulator import Emulator

    with Emulator() as emu:
        def provider(server: str) -> Recorded:
            inputs = {"kubeconfig": emu.kubeconfig_text.replace(emu.url, server)}
            if identifier:
                inputs["clusterIdentifier"] = identifier
            return Recorded(**{**cmd("k8s", create="true").__dict__, "type": "pulumi:providers:kubernetes",
                               "inputs": inputs, "replace_on_changes": ()})
        op = Recorded(**{**cmd("op", create="true", deps=("k8s",)).__dict__,
                         "type": "kubernetes:kubean.io/v1alpha1:ClusterOperation", "provider": "urn:k8s::id",
                         "inputs": {"apiVersion": "kubean.io/v1alpha1", "kind": "ClusterOperation",
                                    "metadata": {"name": "join"}, "spec": {"action": "cluster.yml"}},
                         "replace_on_changes": ()})
        r = Replayer(Runner(cwd=tmp_path))
        r.up([provider(emu.url), op])
        rotated = emu.url.replace("127.0.0.1", "localhost")  # the same API server under another name
        ran = [(s.name, s.op) for s in r.up([provider(rotated), op])]
        if identifier:
            assert ran == [("k8s", "update"), ("op", "noop")]
        else:
            assert ran == [("k8s", "replace"), ("op", "replace-delete"), ("op", "create")]
        assert r.up([provider(rotated), op]) and [s.op for s in r.steps] == ["noop", "noop"]


def test_an_unchanged_resource_keeps_its_outputs_and_takes_the_new_options(tmp_path, journal):
    """SameStep (pulumi pkg/resource/deploy/step.go): the new registration's options, the old ID
    and outputs. A retainOnDelete set without an input change holds for the next destroy."""
    r = Replayer(Runner(cwd=tmp_path))
    r.up([cmd("m", create="echo out", delete=echo(journal, "deleted"))])
    retained = Recorded(**{**cmd("m", create="echo out", delete=echo(journal, "deleted")).__dict__,
                           "retain_on_delete": True})
    assert [s.op for s in r.up([retained])] == ["noop"]
    assert r.state["urn:m"].retain_on_delete and r.state["urn:m"].outputs["stdout"] == "out"
    r.destroy()
    assert lines(journal) == [] and r.state == {}


def test_an_interrupted_step_loses_its_whole_session_deadline_wrapper_included(tmp_path):
    """Fault injection (an operator's interrupt) kills every process the step started, also the
    process group coreutils `timeout` makes for the command's own deadline."""
    from cpswap.core.renderers.deadline import Deadline, render_bounded

    wrapped = cmd("w", create=render_bounded(name="w", text="sleep 60 & wait", deadline=Deadline(seconds=50)))
    r = Replayer(Runner(cwd=tmp_path, timeout_s=120))
    r.step_timeout = lambda step: 1.0
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"rc=-9"):
        r.up([wrapped])
    assert time.monotonic() - started < 45  # the 1 s interrupt, not the 50 s deadline or the 60 s sleep


def _slot_recording(journal: Path, *, specs) -> list[Recorded]:
    """A slot's resources as the Slot component registers them (names, depends_on chain,
    delete_before_replace and triggers from the specs), each command replaced by a journal line."""
    recorded, previous = [], ()
    for spec in specs:
        recorded.append(cmd(spec.name, create=echo(journal, f"{spec.name}:create"),
                            delete=echo(journal, f"{spec.name}:delete") if spec.delete else None,
                            triggers=tuple(spec.triggers), deps=previous, dbr=spec.delete_before_replace))
        previous = (spec.name,)
    return recorded


@pytest.mark.parametrize("strategy", ["surge", "replace"])
def test_a_swaps_steps_run_in_the_order_its_plan_shows(tmp_path, journal, strategy):
    """Issue 16: the plan's order for each strategy is the engine's order for the resources and
    options the slot registers (surge: no delete-before-replace, so the new chain runs first and the
    old copies are deleted after the program, dependents first; replace: each old copy's delete
    first). The slot's specs come from cpswap.core.slots, as the component's do."""
    from cpswap.core.facts import EtcdFacts, EtcdMember, Observation
    from cpswap.core.model import Host, Member, parse_stack_config
    from cpswap.core.planner import AppliedMembership, plan_swap
    from cpswap.core.slots import slot_commands

    applied = {f"cp{i}": Host(name=f"node-{i}", ip=f"10.9.0.{i}") for i in (1, 2, 3)}
    desired = {**applied, "cp1": Host(name="new-1", ip="10.9.1.1")}
    model = parse_stack_config({"distribution": "k3s", "controlPlaneEndpoint": "10.9.0.100:6443", "strategy": strategy,
                                "members": {s: h.as_dict() for s, h in desired.items()}}, stack="t")
    members = tuple(EtcdMember(id=i, name=h.name, peer_urls=(f"https://{h.ip}:2380",), client_urls=(), is_learner=False,
                               healthy=True) for i, h in enumerate(applied.values(), 1))
    plan = plan_swap(model=model, applied=AppliedMembership.of(applied, source="test"),
                     observation=Observation(etcd=EtcdFacts(reachable=True, members=members, leader_id=1)))
    assert plan.strategy is not None and plan.strategy.strategy == strategy and not plan.refusals
    old = slot_commands(model=model, member=Member(slot="cp1", host=applied["cp1"]))
    new = slot_commands(model=model, member=model.member("cp1"), surge_from=plan.surge_from.get("cp1"))
    r = Replayer(Runner(cwd=tmp_path))
    r.up(_slot_recording(journal, specs=old))
    journal.unlink()
    r.up(_slot_recording(journal, specs=new))
    ran = [tuple(line.split(":")) for line in lines(journal)]
    shown = [(s.resource, s.operation) for s in plan.steps]
    assert [pair for pair in ran if pair in set(shown)] == list(dict.fromkeys(shown)), (ran, shown)
    if strategy == "surge":
        assert ran == [("cp1-preflight", "create"), ("cp1-etcd-leave", "create"), ("cp1-node-leave", "create"),
                       ("cp1-join", "create"), ("cp1-verify", "create"), ("cp1-pvcs", "create"),
                       ("cp1-handover", "create"), ("cp1-node-leave", "delete"), ("cp1-etcd-leave", "delete")]
    else:
        assert ran == [("cp1-preflight", "create"), ("cp1-etcd-leave", "delete"), ("cp1-etcd-leave", "create"),
                       ("cp1-node-leave", "delete"), ("cp1-node-leave", "create"), ("cp1-join", "create"),
                       ("cp1-verify", "create"), ("cp1-pvcs", "create")]
