"""The example stack of each distribution, as a model (test helper).

``examples/Pulumi.<name>.yaml``, or the project's own example stack (``Pulumi.prod.yaml``, ocboot)
when the examples directory has none for it."""
from __future__ import annotations

from pathlib import Path

from cpswap.core.model import StackModel, parse_stack_config
from cpswap.stackfiles import load_model, load_stack_config, model_values

ROOT = Path(__file__).resolve().parents[2]


def model_for(distribution: str) -> StackModel:
    example = ROOT / "examples" / f"Pulumi.{distribution}.yaml"
    if example.exists():
        values = load_stack_config(directory=ROOT, stack=distribution, text=example.read_text(),
                                   text_source=str(example))
        return parse_stack_config(model_values(values), stack=distribution)
    model = load_model(directory=ROOT, stack="prod")
    if model.distribution != distribution:
        raise LookupError(f"no example stack for {distribution}: add examples/Pulumi.{distribution}.yaml")
    return model
