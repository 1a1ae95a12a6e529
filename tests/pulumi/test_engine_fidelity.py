"""What the engine stand-ins record about the program, beyond inputs (issue 18, items 6 and 10).

- Property dependencies (RegisterResourceRequest.propertyDependencies, kept by the recorder): the
  engine's dependent-replacement rule (pulumi/pulumi pkg/resource/deploy/step_generator.go,
  calculateDependentReplacements) walks them, so a property edge inside a slot could delete
  the rest of the chain before ``etcd-leave``. The only one the program makes is kubeadm's
  join stdin from join-prepare's stdout.
- Every ``cpswap`` invocation in a command's text pins the program's version.
"""
from __future__ import annotations

import re

import pytest

import cpswap
import tests.pulumi.test_distributions as dist
from tests.support.pulumi_mocks import ROOT, load_stack_file

PROD = load_stack_file(ROOT / "Pulumi.prod.yaml")
K3S = {**{k: v for k, v in PROD.items() if k != "ocboot"}, "distribution": "k3s", "etcd": {"preset": "k3s"}}
CONFIGS = {"ocboot": PROD, "k3s": K3S, "kubeadm": dist.KUBEADM_VIP, "kubean": dist.KUBEAN,
           "openshift": dist.OPENSHIFT}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def recording(request, tmp_path_factory):
    config = CONFIGS[request.param]
    return request.param, dist._run(config, dist._workdir(tmp_path_factory.mktemp(request.param), config))


def test_the_only_property_edge_inside_a_slot_is_kubeadm_join_stdin_from_join_prepare(recording):
    name, rec = recording
    by_urn = {r.urn: r for r in rec.resources}
    edges = sorted((r.name, key, by_urn[urn].name) for r in rec.resources
                   for key, urns in r.property_dependencies.items() for urn in urns)
    slots = sorted({r.name.split("-")[0] for r in rec.commands()})
    expected = sorted((f"{s}-join", "stdin", f"{s}-join-prepare") for s in slots) if name == "kubeadm" else []
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

    rec = dist._run(dist.KUBEAN, dist._workdir(tmp_path, dist.KUBEAN))
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
