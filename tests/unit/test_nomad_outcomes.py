"""hrwsi.backends.nomad.outcomes: how an allocation ended, why an evaluation waits."""

from __future__ import annotations

from hrwsi.backends.base import JobSpec
from hrwsi.backends.nomad.outcomes import allocation_outcome, describe_placement_failure, waiting_reason


def test_placement_failures_read_like_nomads():
    metric = {"NodesEvaluated": 2, "NodesExhausted": 2, "DimensionExhausted": {"memory": 2},
              "ConstraintFiltered": {}, "NodesInPool": 2}
    assert describe_placement_failure({"hrwsi": metric}) == "Resources exhausted on 2 nodes: memory"
    filtered = {"NodesEvaluated": 3, "NodesExhausted": 0, "ConstraintFiltered": {"${node.unique.name} = w9": 3}}
    assert describe_placement_failure({"hrwsi": filtered}) == 'Constraint "${node.unique.name} = w9" filtered 3 nodes'
    assert "no ready, eligible node" in describe_placement_failure({"hrwsi": {"NodesEvaluated": 0}})
    assert describe_placement_failure(None) == ""


def spec() -> JobSpec:
    return JobSpec(job_id="hrwsi-r-1-1", task_id=1, attempt=1, routine="r", condition="c", input_path="/in",
                   tile=None, worker="w", command=("/bin/true",), image=None, cpu=1, ram_mb=100, storage_mb=100,
                   output_dir="/out", log_path="/log", timeout_s=60)


def alloc(*events: dict, status: str = "failed") -> dict:
    return {"ID": "0123456789abcdef", "NodeName": "w", "ClientStatus": status, "DesiredStatus": "run",
            "TaskStates": {"r": {"Events": list(events), "StartedAt": "2026-01-01T00:00:00Z",
                                 "FinishedAt": "2026-01-01T00:00:01.5Z"}}}


def outcome(allocation: dict, **flags):
    return allocation_outcome(allocation, spec(), cancelled=flags.get("cancelled", False),
                              timed_out=flags.get("timed_out", False))


def test_exit_codes_are_read_from_details_first_then_from_the_deprecated_fields():
    details_only = outcome(alloc({"Type": "Terminated", "Details": {"exit_code": "210", "signal": "0"}}))
    assert (details_only.state, details_only.exit_code) == ("external_error", 210)
    old_nomad = outcome(alloc({"Type": "Terminated", "ExitCode": 3, "Signal": 0}))
    assert (old_nomad.state, old_nomad.exit_code) == ("internal_error", 3)
    both = outcome(alloc({"Type": "Terminated", "ExitCode": 0, "Details": {"exit_code": "0"}}, status="complete"))
    assert both.state == "processed" and both.finished_at.microsecond == 500000


def test_a_failed_template_is_a_failure_of_the_routine_with_nomads_message():
    # client/allocrunner/taskrunner/template/template.go: Killing, FailsTask, "Template failed: ...".
    failed = outcome(alloc({"Type": "Received"}, {"Type": "Killing", "Details": {"fails_task": "true"},
                                                  "DisplayMessage": "Template failed: nomad.var.block(x): 403"},
                           {"Type": "Killed"}))
    assert failed.state == "internal_error" and "Template failed: nomad.var.block(x): 403" in failed.message
    stopped = outcome(alloc({"Type": "Killing", "DisplayMessage": "Sent interrupt"}, {"Type": "Killed"}))
    assert stopped.state == "lost"  # a plain kill by someone else: retried, not counted
    assert outcome(alloc({"Type": "Killing"}, {"Type": "Killed"}), cancelled=True).state == "cancelled"


def test_failure_events_carry_their_message_from_details():
    validation = outcome(alloc({"Type": "Failed Validation",
                                "Details": {"validation_error": "failed to parse config: Missing command"}}))
    assert validation.state == "internal_error" and "Failed Validation: failed to parse config" in validation.message
    driver = outcome(alloc({"Type": "Driver Failure", "DriverError": "exec format error"}))
    assert "Driver Failure: exec format error" in driver.message


def test_a_template_waiting_for_a_variable_is_a_reason_to_wait():
    pending = alloc({"Type": "Template", "DisplayMessage": "Missing: nomad.var.block(nomad/jobs@default.global)"},
                    status="pending")
    assert "Missing: nomad.var.block(nomad/jobs@default.global)" in waiting_reason(pending, "r")
    assert waiting_reason(alloc({"Type": "Received"}, status="pending"), "r") == ""


def test_a_task_its_client_could_not_restore_is_judged_by_its_run_after_that_and_says_how_often_it_started():
    # client/allocrunner/taskrunner/task_runner.go, Restore: Failed Restoring Task sets the task back
    # to pending; the servers still want it, so it runs again from the start. Not a failure.
    rerun = alloc({"Type": "Received"}, {"Type": "Started"},
                  {"Type": "Failed Restoring Task",
                   "DisplayMessage": "failed to restore task; will not run until server is contacted"},
                  {"Type": "Started"}, {"Type": "Terminated", "Details": {"exit_code": "0"}},
                  {"Type": "Not Restarting"}, status="complete")
    ended = outcome(rerun)
    assert (ended.state, ended.exit_code) == ("processed", 0), ended.message
    assert "restarted 1 time(s) without reattaching" in ended.message and "started 2 time(s)" in ended.message
    # Stopped by the servers before it could run again: lost (retried), not a failure of the routine.
    stopped = outcome(alloc({"Type": "Started"}, {"Type": "Failed Restoring Task"}, {"Type": "Killing"},
                            {"Type": "Killed"}, status="complete"))
    assert stopped.state == "lost" and "started 1 time(s)" in stopped.message, stopped.message


def test_an_exit_code_or_signal_that_is_no_ascii_number_is_a_failure_saying_so_never_another_code():
    """(int() read an exit code '1_0' as 10 and '\u0663' as 3; found by review) One that is no number is no
    success either."""
    for code in ("1_0", "\u0663", " 0x0"):
        ended = outcome(alloc({"Type": "Terminated", "Details": {"exit_code": code, "signal": "0"}}, status="complete"))
        assert (ended.state, ended.exit_code) == ("internal_error", None), ended
        assert f"exit code {code!r}, which is no number" in ended.message
    killed = outcome(alloc({"Type": "Terminated", "Details": {"exit_code": "0", "signal": "٩"}}, status="complete"))
    assert killed.state == "internal_error" and "signal '٩', which is no number" in killed.message
    negative = outcome(alloc({"Type": "Terminated", "Details": {"exit_code": "-1", "signal": "0"}}))
    assert negative.exit_code == -1
