"""`python benchmarks/run.py --quick` as a smoke test of the benchmark harness: it runs hrwsi, the peer
(pgqueuer, the `bench` extra) and the floor against one real PostgreSQL server, and writes every
figure with its values, its ratios to the peer and the floor (or why a ratio does not apply), its
target and whether it is met. It asserts nothing about speed: the quick sizes measure nothing."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUND_FIGURES = (
    "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "burst_s", "large_burst_s", "large_burst_growth",
    "burst_recorded_s", "large_burst_recorded_growth", "burst_engine_cpu_ms", "large_burst_cpu_growth",
    "peak_rss_orchestrator_mb", "peak_rss_launcher_mb", "peak_rss_small_orchestrator_mb", "peak_rss_small_launcher_mb",
    "chain_s", "chain_engine_cpu_ms", "chain_subprocess_cpu_ms",
    "chain_machine_busy", "backfill_tiles_s", "backfill_one_tile_s", "aged_latency_p50_ms",
    "aged_latency_p99_ms",
)
# (The CPU of the floor's quick burst of 1,000 rows can be below /proc's 10 ms clock: its CPU
# figures' ratios to the floor may be missing, with the reason.)
AGAINST_PEER_AND_FLOOR = tuple(key for key in ROUND_FIGURES[:18]
                               if key not in ("burst_engine_cpu_ms", "large_burst_cpu_growth"))
PLANNER_FIGURES = ("planner_random_10k_s", "planner_random_100k_s", "planner_worst_ratio_to_lb",
                   "planner_reference_worst_ratio_to_lb", "planner_vs_list_scheduler")
RATIOS = ("to_peer", "to_peer_tuned", "to_peer_best", "to_floor", "to_baseline")


def test_the_quick_bench_writes_every_figure_with_its_ratios_and_target(tmp_path):
    out = tmp_path / "bench.json"
    finished = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--no-planner",
                               "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]
    results = json.loads(out.read_text())
    figures = results["figures"]

    assert set(ROUND_FIGURES + PLANNER_FIGURES) <= set(figures), set(ROUND_FIGURES + PLANNER_FIGURES) - set(figures)
    for key in ROUND_FIGURES:
        entry = figures[key]
        hrwsi = entry["values"]["hrwsi"]
        assert hrwsi is not None, f"{key} was not measured: {json.dumps(results['raw_rounds'])[:3000]}"
        assert {"median", "min", "max", "rounds"} <= set(hrwsi)
        for ratio in RATIOS:
            assert entry["ratios"][ratio] is not None or entry["ratio_notes"].get(ratio), \
                f"{key}: {ratio} neither measured nor explained"
        assert "target" in entry and "target_met" in entry
    for key in AGAINST_PEER_AND_FLOOR:
        ratios = figures[key]["ratios"]
        assert ratios["to_peer"] is not None and ratios["to_floor"] is not None, f"{key}: {ratios}"
        assert {"median", "min", "max"} <= set(ratios["to_peer"])
    for key in ("backfill_tiles_s", "backfill_one_tile_s", "aged_latency_p50_ms"):
        assert figures[key]["ratios"]["to_baseline"] is not None, f"{key}: no ratio to hrwsi's own baseline"
    for key in PLANNER_FIGURES:
        assert figures[key].get("missing"), f"{key}: the planner was skipped, and the figure must say so"
    assert {"cpus", "python", "postgresql", "pgqueuer"} <= set(results["machine"])
    # The bursts come from one phase in which every system ran at once: each system's small burst,
    # then each one's large burst, with the machine's probe as the phase started.
    service = results["raw_rounds"][0]["service"]
    assert set(service) == {"hrwsi", "pgqueuer", "pgqueuer_b100", "floor"}, service
    for system, phase in service.items():
        probe = phase["machine"]
        assert probe["commit_ms"] > 0 and probe["python_ms"] > 0, (system, probe)
        assert "failed" not in phase and phase["small"]["seconds"] > 0 and phase["large"]["seconds"] > 0, phase
    assert max(phase["small"]["started_at"] for phase in service.values()) \
        < min(phase["large"]["started_at"] for phase in service.values()), service
    # The latencies come from one phase in which every system ran at once, their inputs interleaved:
    # each system measured every one of its inputs, none missed, each system idle before the next input.
    latency = results["raw_rounds"][0]["latency"]
    assert set(latency["systems"]) == {"hrwsi", "pgqueuer", "pgqueuer_b100", "floor", "hrwsi_aged"}, latency
    for system, measured in latency["systems"].items():
        assert measured["samples"] == results["sizes"]["samples"] and measured["missed"] == 0, (system, measured)
        assert measured["not_quiet"] == 0 and "failed" not in measured, (system, measured)
    assert latency["machine"]["commit_ms"] > 0 and "failed" not in latency
    assert results["date"]
    assert results["aged_database"]["history"] == 4 * results["aged_database"]["tasks"]
    assert results["raw_rounds"][0]["chain"]["hrwsi"]["check"]["duplicate_jobs"] == 0
    assert "targets not met" in finished.stdout
