"""hrwsi.testing.chaos_ledger: the figures read from the routines' own execution ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hrwsi.testing.chaos_ledger import Execution, ledger_figures, read_ledger


def test_the_ledger_pairs_each_start_with_its_end_and_keeps_a_killed_run_open(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    lines = [{"event": "start", "task": 1, "attempt": 1, "job": "j-1-1", "pid": 10, "at": 1.0},
             {"event": "start", "task": 2, "attempt": 1, "job": "j-2-1", "pid": 11, "at": 1.5},
             {"event": "end", "task": 1, "attempt": 1, "job": "j-1-1", "pid": 10, "at": 2.0}]
    ledger.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert read_ledger(ledger) == [Execution(1, 1, "j-1-1", 10, 1.0, 2.0), Execution(2, 1, "j-2-1", 11, 1.5)]


def test_routines_running_at_once_write_whole_lines(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    env = {**os.environ, "HRWSI_CHAOS_LEDGER": str(ledger), "HRWSI_CHAOS_WORK_S": "0.05",
           "HRWSI_INPUT_PATH": "/in"}
    routines = []
    for task in range(20):
        out = tmp_path / f"out-{task}"
        out.mkdir()
        routines.append(subprocess.Popen(
            [sys.executable, "-m", "hrwsi.testing.chaos_routine", "MID"],
            env={**env, "HRWSI_TASK_ID": str(task), "HRWSI_ATTEMPT": "1", "HRWSI_JOB_ID": f"j-{task}-1",
                 "HRWSI_OUTPUT_DIR": str(out)}))
    assert all(r.wait(60) == 0 for r in routines)
    executions = read_ledger(ledger)
    assert sorted(e.task for e in executions) == list(range(20))
    assert all(e.ended is not None and e.ended >= e.started for e in executions)


def test_an_attempt_started_twice_and_one_run_after_its_job_was_final_are_counted():
    executions = [Execution(1, 1, "j-1-1", 10, 1.0, 2.0), Execution(1, 1, "j-1-1", 12, 3.0, 4.0),
                  Execution(2, 1, "j-2-1", 11, 6.0, 7.0)]
    jobs = {(1, 1): ("processed", None, 5.0), (2, 1): ("lost", "launcher_gone", 5.5)}
    figures = ledger_figures(executions, jobs, destroyed=set())
    assert (figures.attempts_run_twice, figures.executions_after_final) == (1, 1)


def test_finished_work_redone_counts_only_work_no_fault_destroyed():
    executions = [Execution(1, 1, "j-1-1", 10, 1.0, 2.0), Execution(1, 2, "j-1-2", 11, 3.0, 4.0),
                  Execution(2, 1, "j-2-1", 12, 1.0, 2.0), Execution(2, 2, "j-2-2", 13, 3.0, 4.0),
                  Execution(3, 1, "j-3-1", 14, 1.0), Execution(3, 2, "j-3-2", 15, 3.0, 4.0)]
    jobs = {(1, 1): ("lost", "launcher_gone", 2.5), (2, 1): ("lost", "worker_gone", 2.5),
            (3, 1): ("internal_error", None, 2.5), (1, 2): ("processed", None, 5.0),
            (2, 2): ("processed", None, 5.0), (3, 2): ("processed", None, 5.0)}
    figures = ledger_figures(executions, jobs, destroyed={(2, 1)})
    assert figures.finished_work_redone == 1, "task 1: its first attempt ended and was thrown away"
    assert figures.redone_as == {"lost/launcher_gone": 1}
    assert figures.redone_after_a_fault_destroyed_it == 1, "task 2: its node went down with it"
    # task 3: killed mid-work (no end line): running it again redoes no finished work


def test_an_attempt_a_restarted_nomad_client_ran_again_is_counted_apart_from_attempts_run_twice():
    # Killed by the client's restart (no end line), then run again from the start by Nomad.
    executions = [Execution(1, 1, "j-1-1", 10, 1.0), Execution(1, 1, "j-1-1", 12, 3.0, 4.0),
                  Execution(2, 1, "j-2-1", 11, 1.0, 2.0), Execution(2, 1, "j-2-1", 13, 3.0, 4.0)]
    jobs = {(1, 1): ("processed", None, 5.0), (2, 1): ("processed", None, 5.0)}
    figures = ledger_figures(executions, jobs, destroyed=set(), rerun_by_nomad={(1, 1)})
    assert (figures.attempts_rerun_by_nomad, figures.attempts_run_twice) == (1, 1), "task 2 was not the client's"
