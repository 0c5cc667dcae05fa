"""The benchmark's summary of the planner ladder (benchmarks/figures.py): issue 15 item 6."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from figures import figure_entry, planner_figures, round_figures  # noqa: E402
from scenarios import Sizes  # noqa: E402


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


def burst(seconds, recorded_s, engine_s):
    return {"seconds": seconds, "recorded_s": recorded_s, "cpu": {"engine_s": engine_s}}


def test_a_burst_s_growth_is_reported_three_ways_each_system_against_its_own_small_burst():
    # hrwsi's clock stops before its small burst's outcomes are recorded: its time grows 12x while
    # the time to every outcome recorded and its CPU grow 9x and 8.5x.
    service = {"hrwsi": {"small": burst(1.0, 1.3, 2.0), "large": burst(12.0, 11.7, 17.0)},
               "pgqueuer": {"small": burst(2.0, 2.1, 3.0), "large": burst(20.0, 21.0, 30.0)}}
    figures = {figure.key: figure for figure in round_figures(Sizes())}

    def hrwsi_and_peer(key):
        entry = figure_entry(figures[key], [{"service": service}])
        return entry["values"]["hrwsi"]["median"], entry["values"]["pgqueuer"]["median"], entry

    assert hrwsi_and_peer("large_burst_growth")[:2] == (12.0, 10.0)
    assert hrwsi_and_peer("large_burst_growth")[2]["target_met"] is False
    assert hrwsi_and_peer("large_burst_recorded_growth")[:2] == (9.0, 10.0)
    assert hrwsi_and_peer("large_burst_cpu_growth")[:2] == (8.5, 10.0)
    assert hrwsi_and_peer("burst_recorded_s")[:2] == (1.3, 2.1)


def test_a_ratio_to_a_system_whose_value_is_zero_is_missing_with_why():
    # The floor's CPU in a burst of a few rows is below /proc's 10 ms clock: 0.0, nothing to divide by.
    service = {"hrwsi": {"small": {"cpu": {"engine_ms_per_job": 0.2}}},
               "pgqueuer": {"small": {"cpu": {"engine_ms_per_job": 0.25}}},
               "floor": {"small": {"cpu": {"engine_ms_per_job": 0.0}}}}
    figure = next(f for f in round_figures(Sizes()) if f.key == "burst_engine_cpu_ms")
    entry = figure_entry(figure, [{"service": service}])
    assert entry["ratios"]["to_peer"]["median"] == 0.8
    assert entry["ratios"]["to_floor"] is None
    assert entry["ratio_notes"]["to_floor"].startswith("n/a: no round had a value of the floor")
    assert entry["ratios"]["to_peer_tuned"] is None and "pgqueuer with batch 100" in entry["ratio_notes"]["to_peer_tuned"]
