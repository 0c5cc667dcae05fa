"""A short fault-injection campaign (make chaos runs the long one): real service processes, two
replicas each, kill -9, connection kills and PostgreSQL restarts at random moments."""

from hrwsi.chaos import run_campaign


def test_faults_lose_nothing_and_duplicate_nothing(tmp_path):
    report = run_campaign(runs=1, inputs=200, seed=7, faults_per_run=5, timeout_s=120, workdir=tmp_path,
                          progress=lambda _line: None)
    summary = report.summary()
    assert summary["faults_injected"] == 5
    assert summary["tasks"] == 400, "every input and every chained product became a task"
    assert summary["inputs_lost"] == 0
    assert summary["duplicate_jobs"] == 0
    assert summary["tasks_not_final"] == 0
