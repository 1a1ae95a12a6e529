"""Stack config as the real Pulumi CLI treats it (issue 18, item 1).

``Pulumi.yaml`` validates against the engine's project schema; the CLI's config rules
(``tests/support/pulumi_config.py``, from pulumi/pulumi ``pkg/workspace/config.go``) accept
``Pulumi.yaml`` with each example stack set up exactly as the README's "Secrets per distribution"
says, and the program then runs (under mocks) with exactly those secrets: one fewer, or one set
without ``--secret``, is refused by the CLI or by the program before anything is registered.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cpswap.core.model import DISTRIBUTIONS, parse_stack_config
from cpswap.core.stackconfig import COMMON_SECRETS, required_secrets, secret_violations
from tests.support.pulumi_config import (ConfigRefused, StackValue, load_stack_file, merge_config,
                                         validate_project)
from tests.support.pulumi_mocks import ROOT, TEST_SECRETS, run_program
from tests.support.upstream import upstream_file

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
PROJECT_SCHEMA = upstream_file("pulumi/project.json")
README = (ROOT / "README.md").read_text()
SECRET_VALUES = {**TEST_SECRETS, "globalKubeconfig": "apiVersion: v1\nkind: Config\n# TESTGLOBALKUBECONFIG\n",
                 "keepalivedAuthPass": "vrrpTst1"}


def _readme_secrets() -> tuple[tuple[str, ...], list[tuple[str, Path, tuple[str, ...]]]]:
    """(the secrets every distribution sets, [(distribution, example stack, its own secrets)])
    from the README's "Secrets per distribution" section."""
    section = README.split("### Secrets per distribution", 1)[1].split("\n## ", 1)[0]
    common = tuple(re.findall(r"pulumi config set --secret cpswap:(\w+)", section.split("```sh", 1)[1].split("```")[0]))
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in DISTRIBUTIONS:
            stack = re.match(r"`([^`]+)`", cells[1]).group(1)
            own = tuple(re.findall(r"`(\w+)`", cells[2]))
            rows.append((cells[0], ROOT / stack, own))
    return common, rows


COMMON, ROWS = _readme_secrets()


def _stack_name(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def _setup(path: Path, secrets: tuple[str, ...], *, plain: tuple[str, ...] = ()) -> dict[str, StackValue]:
    """The stack file plus `pulumi config set --secret` of each secret (``plain``: without --secret)."""
    values = load_stack_file(path)
    for key in secrets:
        values[f"cpswap:{key}"] = StackValue(SECRET_VALUES[key], secure=key not in plain)
    return values


def _model(path: Path):
    doc = yaml.safe_load(path.read_text())["config"]
    return parse_stack_config({k.removeprefix("cpswap:"): v for k, v in doc.items()}, stack=_stack_name(path))


def test_readme_lists_every_distribution_with_an_example_stack():
    assert COMMON == COMMON_SECRETS
    assert sorted(d for d, _, _ in ROWS) == sorted(DISTRIBUTIONS)
    for distribution, path, _ in ROWS:
        assert path.is_file(), path
        assert _model(path).distribution == distribution


def test_pulumi_yaml_validates_against_the_project_schema():
    if PROJECT_SCHEMA is None:
        pytest.skip("../shared/upstream/pulumi/project.json (the engine's project schema) is absent")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(PROJECT_SCHEMA.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(PROJECT)


def test_pulumi_yaml_passes_the_cli_project_rules():
    assert validate_project(PROJECT) == []
    declared = PROJECT["config"]
    assert not [k for k, d in declared.items() if d.get("secret") and "default" in d]
    assert {k for k, d in declared.items() if d.get("secret")} == set(COMMON_SECRETS)


@pytest.mark.parametrize("distribution,path,own", ROWS, ids=[r[0] for r in ROWS])
def test_cli_accepts_each_example_stack_set_up_as_the_readme_says(distribution, path, own):
    merged = merge_config(project=PROJECT, stack_name=_stack_name(path), stack=_setup(path, COMMON + own))
    assert merged["cpswap:observe"] == StackValue("false")  # the declared default is merged
    model = _model(path)
    assert required_secrets(model=model) == COMMON + own  # exactly the README's secrets, no more
    everything = set(COMMON + own)
    assert secret_violations(model=model, present=everything, encrypted=everything) == []


@pytest.mark.parametrize("distribution,path,own", ROWS, ids=[r[0] for r in ROWS])
def test_each_readme_secret_is_needed_and_must_be_encrypted(distribution, path, own):
    name, model = _stack_name(path), _model(path)
    for key in COMMON + own:
        rest = tuple(k for k in COMMON + own if k != key)
        if key in COMMON:  # declared in Pulumi.yaml: the CLI itself refuses
            with pytest.raises(ConfigRefused, match=f"^Stack '{name}' is missing configuration value '{key}'$"):
                merge_config(project=PROJECT, stack_name=name, stack=_setup(path, rest))
            with pytest.raises(ConfigRefused, match=f"^Stack '{name}' with configuration key '{key}' must be "
                                                    f"encrypted as it's secret$"):
                merge_config(project=PROJECT, stack_name=name, stack=_setup(path, COMMON + own, plain=(key,)))
        else:  # the distribution's own: the CLI runs the program, which refuses before registering
            merge_config(project=PROJECT, stack_name=name, stack=_setup(path, rest))
            assert [str(v) for v in secret_violations(model=model, present=set(rest), encrypted=set(rest))] == [
                f"{key}='unset': secret required for {distribution}"
                f"{' with vip.keepalived' if key == 'keepalivedAuthPass' else ''}; "
                f"set it with `pulumi config set --secret cpswap:{key} ...`"]
            assert [v.value for v in secret_violations(model=model, present=set(COMMON + own),
                                                       encrypted=set(rest))] == ["(plain text)"]


@pytest.mark.parametrize("distribution,path,own", ROWS, ids=[r[0] for r in ROWS])
def test_program_runs_with_exactly_the_readme_secrets(tmp_path, distribution, path, own):
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    config = {k.removeprefix("cpswap:"): v for k, v in yaml.safe_load(path.read_text())["config"].items()}
    rec = run_program(config=config, secrets={k: SECRET_VALUES[k] for k in COMMON + own}, stack=_stack_name(path),
                      cwd=tmp_path, preview=True, isolate_network=True)
    assert rec.error is None, rec.error
    assert any(r.type == "cpswap:index:ControlPlane" for r in rec.resources)
    if distribution == "ocboot":  # a secret given as plain config: refused before any resource (one run
        # suffices: secret_violations is the same decision for every distribution, tested above)
        key = own[0]
        plain = run_program(config={**config, key: SECRET_VALUES[key]},
                            secrets={k: SECRET_VALUES[k] for k in COMMON + own if k != key},
                            stack=_stack_name(path), cwd=tmp_path, preview=True, isolate_network=True)
        assert plain.error and f"{key}='(plain text)': cpswap:{key} is stored unencrypted" in plain.error
        assert [r.type for r in plain.resources if r.type != "pulumi:pulumi:Stack"] == []


# The stand-in itself, table-driven: each case's message is the CLI's format string filled in.
OLD_PROJECT = {"name": "cpswap", "config": {
    **{k: {"type": "string", "secret": True} for k in (*COMMON_SECRETS, "ocbootDbPassword", "k3sToken",
                                                       "globalKubeconfig", "keepalivedAuthPass")},
    "distribution": {"type": "string"}, "observe": {"type": "boolean", "default": False}}}
ENGINE_CASES = [
    ("issue-18: every secret declared, an ocboot stack set up as the README says",
     OLD_PROJECT, COMMON_SECRETS + ("ocbootDbPassword",), {"cpswap:distribution": StackValue("ocboot")},
     "Stack 'prod' is missing configuration values 'globalKubeconfig', 'k3sToken' and 'keepalivedAuthPass'"),
    ("secret key with a default", {"name": "cpswap", "config": {"k3sToken": {"type": "string", "secret": True,
                                                                            "default": ""}}},
     (), {}, "Stack 'prod' with configuration key 'k3sToken' must be encrypted as it's secret"),
    ("object given a list", {"name": "cpswap", "config": {"members": {"type": "object"}}}, (),
     {"cpswap:members": StackValue.of(["cp1"])}, "Stack 'prod' with configuration key 'members' must be of type 'object'"),
    ("boolean given yes", {"name": "cpswap", "config": {"observe": {"type": "boolean", "default": False}}}, (),
     {"cpswap:observe": StackValue("yes")}, "Stack 'prod' with configuration key 'observe' must be of type 'boolean'"),
    ("integer given text", {"name": "cpswap", "config": {"port": {"type": "integer"}}}, (),
     {"cpswap:port": StackValue("22a")}, "Stack 'prod' with configuration key 'port' must be of type 'integer'"),
    ("array of integers given strings", {"name": "cpswap", "config": {"ports": {"type": "array",
                                                                                "items": {"type": "integer"}}}}, (),
     {"cpswap:ports": StackValue.of(["a"])}, "Stack 'prod' with configuration key 'ports' must be of type 'array<integer>'"),
    ("one key missing", {"name": "cpswap", "config": {"members": {"type": "object"}}}, (), {},
     "Stack 'prod' is missing configuration value 'members'"),
]


@pytest.mark.parametrize("case,project,secrets,stack,message", ENGINE_CASES, ids=[c[0] for c in ENGINE_CASES])
def test_cli_config_rules(case, project, secrets, stack, message):
    values = {**stack, **{f"cpswap:{k}": StackValue("x", secure=True) for k in secrets}}
    with pytest.raises(ConfigRefused) as refused:
        merge_config(project=project, stack_name="prod", stack=values)
    assert str(refused.value) == message


PROJECT_CASES = [
    ({"a": {"type": "string", "default": "x", "value": "y"}}, "project config 'a' cannot have both a 'default' and 'value' attribute"),
    ({"a": {"type": "array"}}, "The configuration key 'a' declares an array but does not specify the underlying type via the 'items' attribute"),
    ({"a": {"type": "integer", "default": "x"}}, "The default value specified for configuration key 'a' is not of the expected type 'integer'"),
    ({"aws:region": {"type": "string", "value": "x"}}, "Configuration key 'aws:region' is not namespaced by the project and should not define a type"),
    ({"aws:region": {"default": "x"}}, "Configuration key 'aws:region' is not namespaced by the project and should not define a default value. Did you mean to use the 'value' attribute instead of 'default'?"),
    ({"members": {"type": "object", "default": {"cp1": {}}}}, None),
]


@pytest.mark.parametrize("config,message", PROJECT_CASES, ids=[str(i) for i in range(len(PROJECT_CASES))])
def test_cli_project_rules(config, message):
    assert validate_project({"name": "cpswap", "config": config}) == ([message] if message else [])
