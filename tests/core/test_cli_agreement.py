"""Renderers and the CLI agree: every ``cpswap`` call in every command text the program registers, for every
distribution's example stack in both destroy modes, parses with the real CLI parser (cpswap.cli.build_parser,
argparse with the CLI's own argument types). A renamed flag, a dropped required one or a value the CLI's type
refuses fails here, before a command resource stores a call the executor would refuse months later."""
from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pytest

import cpswap
from cpswap.cli import build_parser
from cpswap.core.model import Host, parse_stack_config
from cpswap.core.rules import declared_views, views_from_specs
from cpswap.core.slots import adoption_check
from tests.support.cpswap_calls import cpswap_calls
from tests.support.pulumi_mocks import ROOT, load_stack_file

STACKS = sorted([ROOT / "Pulumi.prod.yaml", *(ROOT / "examples").glob("Pulumi.*.yaml")])


def _spelled_out(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser, and every subcommand's, refusing abbreviated flags: a stored call must name each flag in
    full, or a flag added later with the same prefix would make it ambiguous."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _spelled_out(sub)
    return parser


def _parse(argv: list[str]) -> str | None:
    """None when the real parser accepts ``argv`` (flags spelled out), else its complaint."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _spelled_out(build_parser(argv)).parse_args(argv)
    except SystemExit as exc:
        return f"exit {exc.code}: {err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ''}"
    return None


def _calls(stack: Path, destroy_mode: str) -> list[tuple[str, str, list[str]]]:
    model = parse_stack_config({**load_stack_file(stack), "destroyMode": destroy_mode},
                               stack=stack.name.split(".")[1])
    views = [*declared_views(model=model), *views_from_specs([adoption_check(model=model)])]
    if model.distro.joins_alongside:  # the first slot's surge form too (issue 16: snapshot --label, handover)
        first = model.members[0]
        views += declared_views(model=model, surge_from={first.slot: Host(name="departing-1", ip="10.77.9.9")})
    return [(view.name, field, argv) for view in views for field in ("create", "update", "delete")
            if isinstance(view.inputs.get(field), str) for argv in cpswap_calls(view.inputs[field])]


@pytest.mark.parametrize("destroy_mode", ["refuse", "release"])
@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.name)
def test_every_rendered_cpswap_call_parses_with_the_real_cli(stack, destroy_mode):
    calls = _calls(stack, destroy_mode)
    assert calls, f"{stack.name}: no cpswap call rendered"
    refused = {f"{name}.{field}: cpswap {' '.join(argv)[:200]}": _parse(argv) for name, field, argv in calls}
    assert {call: why for call, why in refused.items() if why is not None} == {}
    assert {argv[0] for _, _, argv in calls} == {f"--expect-version={cpswap.__version__}"}


def test_the_calls_cover_every_executor_the_steps_use():
    used = {tuple(argv[1:3]) for stack in STACKS for mode in ("refuse", "release")
            for _, _, argv in _calls(stack, mode)}
    # the leave, join, verify and recovery executors of the five distributions (more may come)
    assert {("etcd", "remove"), ("etcd", "wait-member"), ("kube", "delete-node"), ("kube", "wait-node"),
            ("kube", "recover-pvcs"), ("etcd", "verify-adoption")} <= used, sorted(used)


@pytest.mark.parametrize(("argv", "complaint"), [
    (["kube", "delete-node", "--node", "cp1", "--drain-t", "5"], "unrecognized arguments: --drain-t"),  # abbreviated
    (["kube", "delete-node", "--node", "cp1", "--drain-deadline", "5"], "unrecognized arguments: --drain-deadline"),
    (["kube", "wait-node", "--deadline", "600"], "the following arguments are required: --node"),
    (["kube", "wait-node", "--node", "CP_1"], "--node"),
    (["etcd", "remove", "--preset", "env", "--node", "cp1", "--ip", "10.0.0.1", "--deadline", "-5"], "--deadline"),
])
def test_the_check_sees_a_drifted_call(argv, complaint):
    why = _parse(argv)
    assert why is not None and why.startswith("exit 2") and complaint in why, why
