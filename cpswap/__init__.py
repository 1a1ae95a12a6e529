"""cpswap: replace a Kubernetes control-plane node by editing one slot in stack config.

Layers (enforced by tests/test_layers.py):
  cpswap.core       pure: model, quorum, planner, renderers, rules. No pulumi, subprocess, network, clock.
  cpswap.executors  etcd and kube clients behind the `cpswap etcd|kube` subcommands.
  components/       Pulumi wiring (imports cpswap.core only).
  __main__.py       the Pulumi program.
"""
__version__ = "0.1.0"
