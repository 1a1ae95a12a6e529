"""The replayer's order is pinned to Pulumi's documented rules (synthetic recordings, no hosts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pulumi_mocks import Recorded
from tests.support.twin.replayer import Replayer, Runner, StepFailed


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
