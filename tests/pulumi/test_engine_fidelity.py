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
