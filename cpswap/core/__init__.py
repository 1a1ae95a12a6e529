"""Pure core: model, quorum, planner, renderers and policy rules.

Nothing under this package imports pulumi, subprocess, socket, grpc, kubernetes or reads the clock.
"""
