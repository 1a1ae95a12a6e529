"""The cpswap Pulumi program: config → model → applied membership → plan → components → exports.

Invalid config or an unsafe plan raises here, before any resource is registered.
"""
from pathlib import Path

import pulumi

from components import ControlPlane, ControlPlaneArgs, SecretInputs
from cpswap.core.facts import Observation
from cpswap.core.model import parse_stack_config
from cpswap.core.planner import plan_swap
from cpswap.core.report import plan_document, plan_table
from cpswap.core.slots import slots_with_objects
from cpswap.program import applied_membership, config_values, observe_if_enabled, secret_config
from cpswap.stackfiles import declared_operations, recorded_departed

config = pulumi.Config("cpswap")
stack = pulumi.get_stack()
model = parse_stack_config(config_values(config), stack=stack)
secrets = secret_config(config=config, model=model)

observation: Observation = observe_if_enabled(model=model, config=config)
plan = plan_swap(model=model, applied=applied_membership(stack=stack, model=model, observation=observation),
                 observation=observation)
table = plan_table(plan)
pulumi.log.info(table)
plan.raise_if_refused()
document = plan_document(plan)

object_slots = slots_with_objects(model=model, changing=frozenset(c.slot for c in plan.changes),
                                  declared=declared_operations(directory=Path.cwd(), stack=stack))
departed = plan.departed(recorded=recorded_departed(directory=Path.cwd(), stack=stack))
control_plane = ControlPlane("control-plane", ControlPlaneArgs(model=model, plan=document, object_slots=object_slots,
                                                               departed=departed,
                                                               adoption=plan.applied.adoption,
                                                               surge_from=plan.surge_from,
                                                               secrets=SecretInputs(values=secrets)))

pulumi.export("membership", control_plane.membership)
pulumi.export("plan", document)
pulumi.export("planTable", table)
pulumi.export("departedNodes", departed)  # the next runs render the same recover-pvcs --old-node
pulumi.export("destroyMode", model.destroy_mode)  # the next run refuses a swap while the stored deletes only record
if model.distro.global_cluster:
    pulumi.export("kubeanOperations", control_plane.operations)
