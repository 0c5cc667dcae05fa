"""The benchmark's summary of the planner ladder (benchmarks/figures.py): issue 15 item 6."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from figures import planner_figures  # noqa: E402


def row(instance, tasks, x_peer, ratio=1.0, horizon_s=None, plan_s=0.5):
    return {"instance": instance, "tasks": tasks, "x_peer": x_peer, "ratio": ratio, "horizon_s": horizon_s,
            "plan_s": plan_s}


def test_the_planner_is_compared_with_the_list_scheduler_on_its_worst_instance_but_the_deadline_mode():
    ladder = {"rows": [row("reference 3/2/2", 10000, 0.4, 1.0006), row("random graph", 10000, 1.7, 1.01),
                       row("random graph", 100000, 0.6, plan_s=3.0),
                       row("reference deadline", 4000, 2.6, 1.6, horizon_s=5750)]}
    figures = planner_figures(ladder, quick=False)
    versus = figures["planner_vs_list_scheduler"]
    assert versus["values"]["hrwsi"]["median"] == 1.7 and versus["target_met"] is True
    assert figures["planner_worst_ratio_to_lb"]["values"]["hrwsi"]["median"] == 1.01
    assert figures["planner_random_100k_s"]["values"]["hrwsi"]["median"] == 3.0


def test_a_ladder_that_did_not_run_leaves_every_planner_figure_missing_with_why():
    figures = planner_figures(None, quick=False)
    assert all(entry["missing"] == "not measured: the ladder did not run" for entry in figures.values())
