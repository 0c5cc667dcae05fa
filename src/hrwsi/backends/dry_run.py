"""The dry-run backend: every attempt succeeds at once and runs nothing.

For rehearsing a configuration (do the plans and dispatches look right?) and for benchmarks that
measure hrwsi itself rather than the routines.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hrwsi.backends.base import Backend, JobOutcome, JobSpec, ProgressCallback


class DryRunBackend(Backend):
    name = "dry-run"
    resubmit_is_idempotent = True
    jobs_outlive_launcher = True  # nothing runs: a stopping launcher has nothing to wait for
    runs_routines = False  # nothing runs: the launcher prepares no attempt directory
    times_from_this_host = True

    # It keeps nothing per job: a launcher runs for months, and a list of every job submitted held
    # 100,000 ids after one burst, never freed.
    async def submit(self, spec: JobSpec, *, first_start: bool = False) -> str:
        return spec.job_id

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        now = datetime.now(UTC)
        return JobOutcome("processed", 0, "dry run: nothing was executed", now, now)

    async def cancel(self, spec: JobSpec, backend_job_id: str) -> None:
        return None
