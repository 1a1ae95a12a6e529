"""What the engine stand-ins record about the program, beyond inputs (issue 18, items 6 and 10).

- Property dependencies (RegisterResourceRequest.propertyDependencies, kept by the recorder): the
  engine's dependent-replacement rule (pulumi/pulumi pkg/resource/deploy/step_generator.go,
  calculateDependentReplacements) walks them, so a property edge inside a slot could delete
  the rest of the chain before ``etcd-leave``. The program makes two, both a join's ``stdin``,
  which the command provider updates rather than replaces (so no dependent is deleted early, and
  the join has no delete command anyway): kubeadm's from join-prepare's stdout, and k3s's from the
  preflight's stdout (the cluster-critical server flags it read).
- Every ``cpswap`` invocation in a command's text pins the program's version.
"""
from __future__ import annotations

import re

import pytest

import cpswap
from cpswap.core.renderers.deadline import bounded_work
from cpswap.core.slots import DESTROY_GUARD
from tests.support import mock_stacks as dist
from tests.support.pulumi_mocks import ROOT, load_stack_file

PROD = load_stack_file(ROOT / "Pulumi.prod.yaml")
K3S = {**{k: v for k, v in PROD.items() if k != "ocboot"}, "distribution": "k3s", "etcd": {"preset": "k3s"}}
CONFIGS = {"ocboot": PROD, "k3s": K3S, "kubeadm": dist.KUBEADM_VIP, "kubean": dist.KUBEAN,
           "openshift": dist.OPENSHIFT}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def recording(request, tmp_path_factory):
    config = CONFIGS[request.param]
    return request.param, dist.run_config(config, dist.workdir(tmp_path_factory.mktemp(request.param), config))


def test_the_only_property_edges_inside_a_slot_are_the_join_stdin_of_kubeadm_and_k3s(recording):
    name, rec = recording
    by_urn = {r.urn: r for r in rec.resources}
    edges = sorted((r.name, key, by_urn[urn].name) for r in rec.resources
                   for key, urns in r.property_dependencies.items() for urn in urns)
    slots = sorted({r.name.split("-")[0] for r in rec.commands() if r.name != DESTROY_GUARD})
    source = {"kubeadm": "join-prepare", "k3s": "preflight"}.get(name)
    expected = sorted((f"{s}-join", "stdin", f"{s}-{source}") for s in slots) if source else []
    assert edges == expected
    for r in rec.resources:  # the SDK also lists each property edge in `dependencies`
        assert {u for urns in r.property_dependencies.values() for u in urns} <= set(r.dependencies)


def test_every_cpswap_call_in_command_text_pins_the_programs_version(recording):
    _, rec = recording
    unpinned = re.compile(r"(?<![\w./-])cpswap\s+(etcd|kube|kubean|openshift|plan|check)\b")
    pinned = 0
    for r in rec.commands():
        for field in ("create", "update", "delete"):
            text = r.inputs.get(field) or ""
            assert not unpinned.search(text), (r.name, field, text)
            pinned += text.count(f"cpswap --expect-version={cpswap.__version__} ")
    assert pinned > 0


def test_kubean_clean_playbook_patch_takes_over_the_seeds_configmap_key(tmp_path):
    """A cluster set up as in seed 001 may already hold ``pb-clean-kube-apiserver`` (created with
    kubectl), its playbook key differing from cpswap's. The ConfigMapPatch is a server-side apply,
    which conflicts (409) on that key unless forced; the program forces it."""
    from kubernetes import client

    from tests.support.kube_emulator import Emulator
    from tests.support.twin import kubean as twin_kubean
    from tests.support.twin.replayer import CONFIG_MAP_PATCH, Replayer, Runner, StepFailed

    rec = dist.run_config(dist.KUBEAN, dist.workdir(tmp_path, dist.KUBEAN))
    patch = next(r for r in rec.resources if r.type == CONFIG_MAP_PATCH)
    assert patch.inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"} and patch.retain_on_delete
    provider = next(r for r in rec.resources if patch.provider.startswith(r.urn + "::"))
    name, namespace = patch.inputs["metadata"]["name"], patch.inputs["metadata"]["namespace"]
    unforced = type(patch)(**{**patch.__dict__, "inputs": {
        **patch.inputs, "metadata": {k: v for k, v in patch.inputs["metadata"].items() if k != "annotations"}}})

    def operators_own(emu) -> None:
        seed = twin_kubean.clean_configmap()
        seed.metadata = client.V1ObjectMeta(name=name, namespace=namespace)
        seed.data = {key: "# the operator's own copy\n" + text for key, text in seed.data.items()}
        emu.core.create_namespaced_config_map(namespace, seed)

    with Emulator() as emu:
        live = type(provider)(**{**provider.__dict__, "inputs": {"kubeconfig": emu.kubeconfig_text}})
        operators_own(emu)
        with pytest.raises(StepFailed, match="409"):
            Replayer(Runner(cwd=tmp_path)).up([live, unforced])
        Replayer(Runner(cwd=tmp_path)).up([live, patch])
        assert emu.core.read_namespaced_config_map(name, namespace).data == patch.inputs["data"]


# A failed command's error text holds its whole stdout and stderr whatever `logging` says
# (pulumi-command provider/pkg/provider/local/commandOutputs.go and remote/commandOutputs.go `run`:
# fmt.Errorf("%w: running %q:\n%s", err, cmd, stdouterrbuf)). So a command given a secret must
# never print it, and a command whose stdout IS a secret must print it only as its last act, after
# every check passed (`set -e`), so that no failure prints it. Checked on the text of every command
# every distribution registers; the twin's replayer also checks every output it sees at run time.
STATEMENTS = re.compile(r";|&&|\|\||\n|\bthen\b|\bdo\b|\belse\b|[{}]")
PRINTERS = re.compile(r"(?<![\w./-])(echo|printf|cat|tee)(?![\w-])")
TO_FILE = re.compile(r"(?<![&\d])>\s*(?![&>])\S")
READ_VARS = re.compile(r"\bread\s+(?:-[a-z]+\s+)*([A-Za-z_][A-Za-z0-9_ ]*)")


def _secret_vars(r) -> set[str]:
    text = bounded_work(r.inputs.get("create") or "")
    names = {key.split(".", 1)[1] for key in r.secret_paths if key.startswith("environment.")}
    if "stdin" in r.secret_paths:
        read = {n for m in READ_VARS.finditer(text) for n in m.group(1).split()}
        names |= read
        # values copied from a read variable (`case $k in TOKEN) TOKEN=$v;; ...`)
        names |= {m.group(1) for v in read for m in re.finditer(rf"\b([A-Za-z_][A-Za-z0-9_]*)=\"?\${v}\b", text)}
    return names


def _uses(statement: str, name: str) -> bool:
    return re.search(rf"\$(?:\{{)?{name}\b", statement) is not None  # ${#NAME} (its length) does not match


FILTERS = {"echo", "printf", "cat", "tee", "sed", "awk", "tr", "cut", "head", "tail", "grep", "base64", "xargs", "sort"}


def _shell_statements(text: str) -> list[str]:
    """The statements of ``text``: single-quoted strings blanked (nothing expands inside them),
    each ``{ a; b; } >file`` or ``{ ...; } | cmd`` group distributed over its statements, then
    split at ``;``, ``&&``, ``||``, ``then``, ``do``, ``else`` and newlines."""
    text = re.sub(r"'[^']*'", "'_'", text)
    group = re.compile(r"\{([^{}]*)\}\s*((?<![&\d])>\s*\S+|\|(?!\|)[^;&|{}]*)?")
    while True:
        replaced = group.sub(lambda m: "; ".join(f"{part.strip()} {m.group(2) or ''}" for part in
                                                 re.split(r";|&&|\|\|", m.group(1)) if part.strip()), text)
        if replaced == text:
            break
        text = replaced
    return [part for part in STATEMENTS.split(text) if part.strip()]


def _reaches_output(statement: str, start: int) -> bool:
    """Whether what the stage at ``start`` writes can reach the command's stdout or stderr (both
    are in a failure's text): not when redirected to a file, nor when piped into a command that
    consumes it rather than passing it on."""
    if TO_FILE.search(statement):
        return False
    stages = re.split(r"(?<!\|)\|(?!\|)", statement[start:])
    last = stages[-1].split()
    return len(stages) == 1 or not last or last[0] in FILTERS


def print_risks(r) -> list[str]:
    """Where command ``r``'s text could print a secret it is given, or its secret stdout before
    all its checks passed (empty: none)."""
    risks: list[str] = []
    secret_stdout = "stdout" in r.additional_secret_outputs
    if not (r.secret_paths or secret_stdout):
        return risks
    secret = _secret_vars(r)
    for field in ("create", "update", "delete"):
        text = bounded_work(r.inputs.get(field) or "")  # the deadline wrapper prints only its stop notice, on stderr
        statements = _shell_statements(text)
        if re.search(r"\bset\s+-[a-z]*x|\bxtrace\b|\b(ba)?sh\s+-x\b", text):
            risks.append(f"{field}: shell tracing prints every expanded value")
        for statement in statements:
            printer = PRINTERS.search(statement)
            if printer is None or not _reaches_output(statement, printer.start()):
                continue
            if any(_uses(statement[printer.start():], name) for name in secret):
                risks.append(f"{field}: prints a secret variable: {statement.strip()}")
            elif "stdin" in r.secret_paths and re.search(r"\bcat\s*($|\|)", statement):
                risks.append(f"{field}: prints its secret stdin: {statement.strip()}")
        if secret_stdout and field == "create" and statements:
            if not text.startswith("set -e"):
                risks.append("create: secret stdout without `set -e`: a failure may follow a print")
            if not PRINTERS.search(statements[-1]):
                risks.append(f"create: the secret output is not printed last: {statements[-1].strip()}")
            early = [s.strip() for s in statements[:-1] if PRINTERS.search(s) and ">&2" not in s
                     and _reaches_output(s, PRINTERS.search(s).start())]
            risks.extend(f"create: prints before its last statement: {s}" for s in early)
    return risks


def test_no_command_prints_a_secret_where_a_failure_would_show_it(recording):
    _, rec = recording
    given = [r for r in rec.commands() if r.secret_paths or "stdout" in r.additional_secret_outputs]
    assert given and {r.name: print_risks(r) for r in given} == {r.name: [] for r in given}


def _command(text: str, *, secret_paths=("stdin",), secret_stdout: bool = False, env: dict | None = None):
    from tests.support.pulumi_mocks import Recorded

    return Recorded(type="command:remote:Command", name="c", parent="", custom=True,
                    inputs={"create": text, "environment": env or {}}, secret_paths=tuple(secret_paths),
                    delete_before_replace=True, dependencies=(), replace_on_changes=(), custom_timeouts={},
                    additional_secret_outputs=("stdout", "stderr") if secret_stdout else (),
                    retain_on_delete=False, provider="", urn="urn:c")


@pytest.mark.parametrize("text,kw,risky", [
    ("IFS= read -r K3S_TOKEN; exec k3s server --token \"$K3S_TOKEN\"", {}, False),
    ("IFS= read -r K3S_TOKEN; echo \"joining with $K3S_TOKEN\"; exec k3s server", {}, True),
    ("read -r k v; case $k in TOKEN) TOKEN=$v;; esac; printf '%s' \"$TOKEN\"", {}, True),
    ("set -eux; IFS= read -r T; exec k3s server --token \"$T\"", {}, True),
    ("umask 077 && cat > conf.yml && ./ocboot.sh run.py virt conf.yml", {}, False),
    ("cat | ./install.sh", {}, False),
    ("cat | tee /tmp/x", {}, True),
    ("{ printf '%s' 'head'; cat; } > /etc/k3s/config.yaml && chmod 600 /etc/k3s/config.yaml", {}, False),
    ("{ printf '%s\\n' \"$nodes\"; cat; } | python3 -c 'import sys; sys.stdin.read()'", {}, False),
    ("{ echo start; cat; }", {}, True),
    ("IFS= read -r T; echo 'no $T here'", {}, False),
    ("IFS= read -r T; echo \"$T\" >&2", {}, True),
    ("IFS= read -r AUTH; printf '%s' conf | sed \"s/x/$AUTH/\" > /etc/k.conf", {}, False),
    ("IFS= read -r AUTH; echo \"${#AUTH} characters\" >&2", {}, False),
    ("cpswap --expect-version=1 etcd remove", {"secret_paths": ("environment.CPSWAP_ETCD_KEY_DATA",)}, False),
    ("echo \"$CPSWAP_ETCD_KEY_DATA\" | base64 -d", {"secret_paths": ("environment.CPSWAP_ETCD_KEY_DATA",)}, True),
    ("set -eu; key=$(make-key); test -n \"$key\"; printf 'KEY=%s\\n' \"$key\"",
     {"secret_paths": (), "secret_stdout": True}, False),
    ("set -eu; key=$(make-key); printf 'KEY=%s\\n' \"$key\"; test -n \"$key\"",
     {"secret_paths": (), "secret_stdout": True}, True),
    ("key=$(make-key); printf 'KEY=%s\\n' \"$key\"", {"secret_paths": (), "secret_stdout": True}, True),
])
def test_print_risks_are_found(text, kw, risky):
    assert bool(print_risks(_command(text, **kw))) is risky, print_risks(_command(text, **kw))
