"""Task planner: which worker runs each task, and when.

Pure Python, standard library only: no database, no I/O. Times are seconds relative to "now" = 0.0.

The problem (see docs/adr/0003-planner.md): workers of a flavour (CPU, RAM, disk) run several tasks at
once as long as their sum fits the flavour; budgets cap the totals over everything running at one
instant (CPU, RAM, storage, and ``vm_max`` workers in use); tasks have dependencies, an earliest start,
and optionally a priority (lane) and a deadline; tasks already running (``fixed``) stay where they are
and occupy capacity.

The modules, in the order a plan is made:
- ``model``: the data classes (tasks, workers, budgets, fixed tasks; the plan and its figures);
- ``problem``: the input checked and indexed, the tasks that can never run and why;
- ``bounds``: the lower bound on the makespan, and the sentences that explain a missed horizon;
  ``capacity``: its knapsack (how much of a group of tasks a worker or the budgets hold at once);
- ``schedule``: one pass of the event-driven list scheduler; ``packing``: its packing-search variant;
- ``lanes``: priorities and deadlines (who goes first, what less urgent work may back-fill);
- ``rules``: the priority rules tried and which plan is kept;
- ``planning``: ``plan_tasks`` (deadline mode included) and the assembled plan;
- ``figures``: resource use over time, VMs and VM-hours;
- ``validate``: ``validate_plan``, the independent check.
"""

from hrwsi.planner.bounds import explain_infeasible_horizon, lower_bound, lower_bound_parts
from hrwsi.planner.figures import USAGE_KEYS, usage_steps
from hrwsi.planner.model import (
    Assignment,
    Budgets,
    FixedTask,
    Flavour,
    LateTask,
    Plan,
    PlanFigures,
    PlanningError,
    TaskDemand,
    Unplannable,
    Worker,
)
from hrwsi.planner.planning import plan_tasks
from hrwsi.planner.validate import validate_plan

__all__ = [
    "USAGE_KEYS",
    "Assignment",
    "Budgets",
    "FixedTask",
    "Flavour",
    "LateTask",
    "Plan",
    "PlanFigures",
    "PlanningError",
    "TaskDemand",
    "Unplannable",
    "Worker",
    "explain_infeasible_horizon",
    "lower_bound",
    "lower_bound_parts",
    "plan_tasks",
    "usage_steps",
    "validate_plan",
]
