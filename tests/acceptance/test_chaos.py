"""Short fault-injection campaigns (make chaos runs the long one): real service processes, two
replicas each, faults at random moments, the figures counted from the database and from the
routines' own execution ledger. The Nomad runs use the Nomad API emulator, a test double.

They work under /tmp, not under pytest's tmp_path: a pytest session that starts meanwhile (another
checkout's) deletes older numbered base directories, and the embedded server's with them. A failed
run keeps its directory and prints where."""

from hrwsi.testing.chaos import ZERO_FIGURES, run_campaign
from hrwsi.testing.chaos_faults import FAULTS, NOMAD_FAULTS


def assert_nothing_went_wrong(summary: dict) -> None:
    assert summary["tasks"] == 2 * summary["inputs"], "every input and every chained product became a task"
    assert summary["executions"] >= summary["tasks"], "the routines wrote the ledger"
    wrong = {name: summary[name] for name in ZERO_FIGURES if summary[name]}
    assert wrong == {}, f"figures that must be 0: {wrong}"


def test_service_and_database_faults_lose_nothing_and_run_nothing_twice():
    report = run_campaign(runs=1, inputs=150, seed=7, faults_per_run=len(FAULTS), timeout_s=300, stall_s=60,
                          backends=("local",), progress=print)
    summary = report.summary()
    assert set(summary["faults_by_kind"]) == set(FAULTS), "every kind of fault was injected"
    assert summary["routines_killed_on_purpose"] >= 1
    assert_nothing_went_wrong(summary)


def test_nomad_errors_timeouts_node_faults_restarted_clients_a_fresh_state_and_a_paused_launcher_lose_nothing():
    faults = (*NOMAD_FAULTS, "kill_9", "pause_launcher")
    report = run_campaign(runs=1, inputs=150, seed=11, faults_per_run=len(faults), timeout_s=300, stall_s=60,
                          backends=("nomad-emulator",), faults=faults, progress=print)
    summary = report.summary()
    assert summary["runs_by_backend"] == {"nomad-emulator": 1}
    assert set(summary["faults_by_kind"]) == set(faults)
    # Nomad's own reruns (a restarted client that could not reattach), counted apart and none a failure
    assert summary["attempts_rerun_by_nomad"] >= 1
    assert_nothing_went_wrong(summary)
