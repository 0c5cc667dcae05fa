"""What ops see while a launcher stops: its state, and log lines that say what is true of its jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import psycopg

from hrwsi import app as app_module
from hrwsi.app import App
from hrwsi.backends import make_backend
from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until, wait_until_true


def said(caplog, part: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if part in r.getMessage()]


async def test_a_stopping_launcher_does_not_say_jobs_that_ended_are_still_running_nor_that_their_tasks_are_retried(
        db, database_url, settings, configure, caplog):
    """Two jobs end within the grace while the database does not take their outcomes (a lock held elsewhere, as
    a database that does not answer): "stopping 2 job(s) still running; their tasks will be retried" was said
    of jobs that had ended and were then recorded processed, neither stopped nor retried."""
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(1)"]))
    patient = dataclasses.replace(settings, shutdown_grace_s=3.0, lease_timeout_s=30.0, heartbeat_s=1.0)
    async with App(database_url, ["orchestrator", "launcher"], patient, backend="local", pool_size=10) as app:
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'running'")
        with psycopg.connect(database_url) as locker:  # (a transaction, committed as the block ends)
            locker.execute("SELECT id FROM hrwsi.job FOR UPDATE")
            app.request_stop()
            await wait_until_true(lambda: said(caplog, "still running") or said(caplog, "job(s) ended"), 20)
        await asyncio.gather(*app._tasks)
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 2
    assert said(caplog, "still running") == []
    (ended,) = said(caplog, "job(s) ended")
    assert ended.startswith("2 job(s) ended and their outcome is not recorded yet")


async def test_a_stop_that_ends_the_pool_at_its_bound_says_what_it_left_once_and_no_retry_after(
        db, database_url, settings, configure, caplog, monkeypatch):
    """The database does not take the last outcomes (a lock held elsewhere) until past the stop's bound, which
    ends the pool's connections and says what it leaves to the next launcher: then the outcome writer said
    "could not record the outcome of 1 job(s) (pool is closed); retrying in 0.1 s" again and again until it was
    cancelled, lines that read like a new fault. Nothing is lost: the next launcher records them."""
    monkeypatch.setattr(app_module, "STOP_DATABASE_S", 0.5)
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(0.5)"]))
    patient = dataclasses.replace(settings, shutdown_grace_s=0.5, lease_timeout_s=30.0, heartbeat_s=1.0)
    backend = make_backend("local", patient)
    backend.grace_s = 0.5  # (the bound, 0.5 + 0.5 + 0.5 + 5 s, comes before the lock's timeout, 10 s)
    async with App(database_url, ["orchestrator", "launcher"], patient, backend=backend, pool_size=10) as app:
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'running'")
        with psycopg.connect(database_url) as locker:
            locker.execute("SELECT id FROM hrwsi.job FOR UPDATE")
            app.request_stop()
            await asyncio.gather(*app._tasks, return_exceptions=True)
            await app._stop_bound
            locker.rollback()
    (bound,) = said(caplog, "closing its connections without waiting")
    assert "the outcomes of 2 job(s)" in bound and "the next launcher adopts" in bound
    after = [r.getMessage() for r in caplog.records[[r.getMessage() for r in caplog.records].index(bound) + 1:]
             if r.levelname in ("WARNING", "ERROR")]
    assert after == []
    quick = dataclasses.replace(patient, lease_timeout_s=2.0)
    db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 minute'")  # (their leases lapse)
    async with running(database_url, ["orchestrator", "launcher"], quick, backend="local"):
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'processed'")
