"""Short fault-injection campaigns (make chaos runs the long one): real service processes, two
replicas each, faults at random moments. The Nomad runs use the Nomad API emulator, a test double."""

from hrwsi.testing.chaos import BACKEND_FAULTS, FAULTS, run_campaign


def test_faults_lose_nothing_and_duplicate_nothing(tmp_path):
    report = run_campaign(runs=1, inputs=200, seed=7, faults_per_run=5, timeout_s=120, workdir=tmp_path,
                          backends=("local",), progress=lambda _line: None)
    summary = report.summary()
    assert summary["faults_injected"] == 5
    assert set(summary["faults_by_kind"]) == set(FAULTS), "every kind of fault was injected"
    assert summary["tasks"] == 400, "every input and every chained product became a task"
    assert summary["inputs_lost"] == 0
    assert summary["duplicate_jobs"] == 0
    assert summary["tasks_not_final"] == 0


def test_nomad_errors_timeouts_and_a_lost_node_lose_nothing_and_run_nothing_twice(tmp_path):
    faults = BACKEND_FAULTS + ("kill_9",)
    report = run_campaign(runs=1, inputs=200, seed=11, faults_per_run=len(faults), timeout_s=120,
                          workdir=tmp_path, backends=("nomad-emulator",), faults=faults,
                          progress=lambda _line: None)
    summary = report.summary()
    assert summary["runs_by_backend"] == {"nomad-emulator": 1}
    assert set(summary["faults_by_kind"]) == set(faults), "HTTP 500, 429, timeouts, a node down, kill -9"
    assert summary["tasks"] == 400
    assert summary["inputs_lost"] == 0
    assert summary["duplicate_jobs"] == 0
    assert summary["duplicate_nomad_runs"] == 0, "an attempt's Nomad job ran twice"
    assert summary["tasks_not_final"] == 0
