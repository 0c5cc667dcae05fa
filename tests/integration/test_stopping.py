"""What ops see while a launcher stops: its state, and log lines that say what is true of its jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import sys

import psycopg
from rich.console import Console

from hrwsi import app as app_module
from hrwsi import reports
from hrwsi.app import App
from hrwsi.backends import make_backend
from hrwsi.cli import views
from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until, wait_until_true
from tests.integration.test_web import dashboard, text_of, visible


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


async def test_status_and_the_dashboard_say_a_launcher_waiting_for_its_jobs_is_stopping_and_when_it_stops_them(
        db, database_url, settings, configure):
    """During its shutdown grace a launcher showed as any running one, its heartbeat fresh: ops could not tell it
    was stopping, nor when the jobs it waits for would be stopped and their tasks retried."""
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(3)"]))
    patient = dataclasses.replace(settings, shutdown_grace_s=20.0)
    async with App(database_url, ["orchestrator", "launcher"], patient, backend="local", pool_size=10) as app:
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'running'")
        app.request_stop()
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.service_instance WHERE stopping IS NOT NULL")
        out = io.StringIO()
        views.status(Console(file=out, width=200), reports.status(db), stale_after_s=30)
        async with dashboard(database_url, settings.home / "data") as client:
            page = visible(await text_of(client, "/"))
        launcher = app.service("launcher").instance_id
        await asyncio.gather(*app._tasks)
    said = re.search(rf"launcher stopping \({launcher}, since [0-9: -]+Z\): waits for 2 running job\(s\) to end; at "
                     r"(\d\d:\d\d:\d\d) UTC it stops the jobs still running \(their tasks are retried\)", out.getvalue())
    assert said, out.getvalue()
    assert "(stopping since" in out.getvalue()
    assert re.search(rf"Stopping since [^:]+:[^:]+:[^:]+: waits for 2 running job\(s\) to end; at {said[1]} UTC it "
                     r"stops the jobs still running \(their tasks are retried\)", page), page
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 2


async def test_a_launcher_whose_grace_outlasts_its_lease_keeps_its_lease_and_records_its_jobs_itself(
        db, database_url, settings, configure, caplog):
    """A service's heartbeat ends with its loop: a launcher's grace longer than its lease lapsed the lease while it
    waited, and its jobs were dropped for another launcher to adopt ("its lease lapsed ... drops what it held")."""
    configure(single_routine_configuration([sys.executable, "-c", "import time; time.sleep(4)"]))
    patient = dataclasses.replace(settings, shutdown_grace_s=10.0)  # (the tests' lease: 2 s)
    async with running(database_url, ["orchestrator", "launcher"], patient, backend="local"):
        insert_inputs(db, 2)
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'running'")
    assert said(caplog, "lease lapsed") == []
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 2
