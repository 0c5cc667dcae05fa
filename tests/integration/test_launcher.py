"""The launcher's own bookkeeping around the database calls (ADR 0009): how a job progresses (queued,
running) is written for every job seen in one period at once, not at all for a job whose end came
first, never over a final state or another launcher's job, and on the way out when it stops;
outcomes that come one at a time are written together unless work waits for what they free; the
followers of a dispatched batch start in the next turn of the event loop, and until then its jobs
count as followed (the backend's limit, adoption)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psycopg
import pytest
import requests

from hrwsi import launcher as launcher_module
from hrwsi.app import App
from hrwsi.backends.base import AttemptLost, JobOutcome
from hrwsi.backends.dry_run import DryRunBackend
from hrwsi.backends.nomad import NomadBackend, NomadConfig
from hrwsi.launcher import Launcher
from hrwsi.listener import Notification
from hrwsi.service import AdaptiveBatch
from hrwsi.sql_files import query
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from tests.integration.conftest import (
    insert_inputs,
    running,
    single_routine_configuration,
    wait_until,
    wait_until_listening,
    wait_until_true,
)

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class ReportingBackend(DryRunBackend):
    """The dry-run backend, except that each job is reported running as it starts; it then ends at
    once (`hold` unset) or when the test releases it."""

    def __init__(self, hold: bool):
        super().__init__()
        self.hold = hold
        self.release = asyncio.Event()

    async def wait(self, spec, backend_job_id, on_progress):
        await on_progress("running", "seen running by the test's backend")
        if self.hold:
            await self.release.wait()
        return JobOutcome("processed", 0, "done", STARTED, datetime.now(UTC))


def history(db) -> dict[int, list[str]]:
    rows = db.execute("SELECT task_id, state FROM hrwsi.task_event ORDER BY id").fetchall()
    out: dict[int, list[str]] = {}
    for task_id, state in rows:
        out.setdefault(task_id, []).append(state)
    return out


async def test_jobs_seen_running_together_are_marked_running_in_one_write(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, 6)
    backend = ReportingBackend(hold=True)
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5):
        await wait_until(database_url, "SELECT count(*) = 6 FROM hrwsi.job WHERE state = 'running'")
        writes = db.execute("SELECT count(DISTINCT xmin::text) FROM hrwsi.task_event WHERE state = 'running'")
        assert writes.fetchone()[0] == 1, "six jobs seen running at once: one statement marks them all"
        # started_at is when each was seen, not when the batch was written (PROGRESS_BATCH_S later)
        gap = db.execute("""SELECT (SELECT min(at) FROM hrwsi.task_event WHERE state = 'running')
                                   - (SELECT max(started_at) FROM hrwsi.job)""").fetchone()[0]
        assert gap >= timedelta(seconds=launcher_module.PROGRESS_BATCH_S * 0.75)
        backend.release.set()
        await wait_until(database_url, "SELECT count(*) = 6 FROM hrwsi.processing_task WHERE state = 'processed'")
    assert all(states == ["pending", "dispatched", "running", "processed"] for states in history(db).values())


async def test_a_launcher_does_not_hear_its_own_claims_and_progress_marks(db, database_url, settings, configure):
    """Its claims (dispatched, submitted) and progress marks (running) are told on the channels of
    work under way, which it does not listen to (migration 0043): each claim's two notifications
    came back to it as it handed the job to its backend. It still hears the work it must start."""
    configure(single_routine_configuration(["true"], workers=2))
    backend = ReportingBackend(hold=True)
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5) as app:
        launcher = app.service("launcher")
        await wait_until_listening(launcher)
        heard: list[Notification] = []
        steps_for = launcher.router.steps_for
        launcher.router.steps_for = lambda n: heard.append(n) or steps_for(n)
        for index in range(4):
            insert_inputs(db, 1, start=index)
            await wait_until(database_url, f"SELECT count(*) = {index + 1} FROM hrwsi.job WHERE state = 'running'")
        backend.release.set()
        await wait_until(database_url, "SELECT count(*) = 4 FROM hrwsi.processing_task WHERE state = 'processed'")
        await wait_until_true(lambda: sum(n.counts.get("processed", 0) for n in heard) >= 8, 5)  # the tasks' and jobs'
    assert sorted(launcher.listener.channels) == ["hrwsi_job", "hrwsi_task"]
    assert [n.counts for n in heard if n.counts.get("pending")] == [{"pending": 1}] * 4, "each input's task"
    under_way = [n for n in heard if {"dispatched", "submitted", "queued", "running"} & set(n.counts)]
    assert under_way == [], "its own claims and progress marks"


async def test_a_job_that_ends_before_its_progress_is_written_goes_from_dispatched_to_its_end(
        db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, 3)
    async with App(database_url, ["launcher"], settings, backend=ReportingBackend(hold=False), pool_size=5):
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'processed'")
        await asyncio.sleep(launcher_module.PROGRESS_BATCH_S * 2)  # a late mark would have landed by now
    assert all(states == ["pending", "dispatched", "processed"] for states in history(db).values())
    jobs = db.execute("SELECT state, started_at FROM hrwsi.job").fetchall()
    assert jobs == [("processed", STARTED)] * 3, "the outcome says when each started"


class StaggeredBackend(DryRunBackend):
    """The dry-run backend, except that its jobs end one after another, `gap_s` apart."""

    def __init__(self, gap_s: float):
        super().__init__()
        self.gap_s = gap_s
        self.started = 0

    async def wait(self, spec, backend_job_id, on_progress):
        self.started += 1
        await asyncio.sleep(self.gap_s * self.started)
        return JobOutcome("processed", 0, "done", STARTED, datetime.now(UTC))


def calls_that_recorded_processed(db) -> int:
    """How many transactions (record_outcomes calls) wrote the tasks' `processed` events."""
    return db.execute("SELECT count(DISTINCT xmin::text) FROM hrwsi.task_event WHERE state = 'processed'").fetchone()[0]


async def test_outcomes_that_come_one_after_another_while_no_work_waits_are_written_in_one_call(
        db, database_url, settings, configure, monkeypatch):
    # Jobs ending 0.1 s apart: on their own, three calls; the writer waits for the others instead.
    # (A wait of 2 s, not 0.1, so that a slow machine's turns do not split the batch.)
    monkeypatch.setattr(launcher_module, "OUTCOME_BATCH_S", 2.0)
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, 3)
    async with App(database_url, ["launcher"], settings, backend=StaggeredBackend(0.1), pool_size=5):
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'processed'")
    assert calls_that_recorded_processed(db) == 1


async def test_an_outcome_is_written_at_once_when_work_waits_for_the_capacity_it_frees(
        db, database_url, settings, configure, monkeypatch):
    # Far longer than the test: an outcome that waited for others would never free the worker.
    monkeypatch.setattr(launcher_module, "OUTCOME_BATCH_S", 600.0)
    configure(single_routine_configuration(["true"], cpu=4, workers=1))  # one task at a time
    insert_inputs(db, 3)
    async with App(database_url, ["launcher"], settings, backend=ReportingBackend(hold=False), pool_size=5):
        # The first two outcomes each free the worker for a task that waits; the last frees it for
        # nothing, and may wait for others.
        await wait_until(database_url, "SELECT count(*) >= 2 FROM hrwsi.processing_task WHERE state = 'processed'")
    assert calls_that_recorded_processed(db) >= 2


async def mark(url: str, jobs: list[int], state: str, owner: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC)
        await conn.execute(query("mark_jobs_progress"), jobs, [state] * len(jobs), ["late"] * len(jobs),
                           [now] * len(jobs), [owner] * len(jobs))
    finally:
        await conn.close()


async def test_a_progress_mark_never_moves_a_final_job_nor_one_another_launcher_owns(
        db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, 2)
    backend = ReportingBackend(hold=True)
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5) as app:
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'running'")
        jobs = [row[0] for row in db.execute("SELECT id FROM hrwsi.job ORDER BY id")]
        await mark(database_url, jobs, "queued", "launcher-someone-else")
        assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'running'").fetchone()[0] == 2
        backend.release.set()
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.processing_task WHERE state = 'processed'")
        await mark(database_url, jobs, "running", app.services[0].instance_id)
    assert db.execute("SELECT state, message FROM hrwsi.job").fetchall() == [("processed", "done")] * 2
    assert db.execute("SELECT count(*) FROM hrwsi.processing_task WHERE state = 'processed'").fetchone()[0] == 2


async def test_progress_not_written_yet_is_written_when_the_launcher_stops(db, database_url, settings, configure,
                                                                            monkeypatch):
    # A period far longer than the test: only the launcher's stop can write the marks.
    monkeypatch.setattr(launcher_module, "PROGRESS_BATCH_S", 600.0)
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, 2)
    backend = ReportingBackend(hold=True)  # dry-run jobs outlive the launcher: they are left as they are
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5) as app:
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job")
        await wait_until_true(lambda: len(app.services[0]._progress) == 2)
        assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'running'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'running'").fetchone()[0] == 2


async def test_progress_a_lock_held_elsewhere_kept_from_being_written_is_written_once_the_lock_is_let_go(
        db, database_url, settings, configure, monkeypatch, caplog):
    # Found by exploratory testing (2026-12-06): with a DBA's lock on hrwsi.job for a few seconds, the
    # launcher logged "could not record how 1 job(s) progressed (canceling statement due to lock
    # timeout)" and dropped the mark: the job, running for minutes, showed `dispatched` / `submitted`.
    from hrwsi import app as app_module
    from hrwsi.database import service_session_settings

    caplog.set_level("INFO", logger="hrwsi.launcher")
    monkeypatch.setattr(app_module, "service_session_settings",
                        lambda lease_s: service_session_settings(lease_s) | {"lock_timeout": "300"})
    configure(single_routine_configuration(["true"], workers=1))
    insert_inputs(db, 1)
    report = asyncio.Event()

    class ReportingWhenTold(ReportingBackend):
        async def wait(self, spec, backend_job_id, on_progress):
            await report.wait()
            return await super().wait(spec, backend_job_id, on_progress)

    backend = ReportingWhenTold(hold=True)
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'submitted'")
        with psycopg.connect(database_url) as dba:  # (a transaction left open, holding the job's row)
            dba.execute("SELECT * FROM hrwsi.job FOR UPDATE")
            report.set()
            await wait_until_true(lambda: "could not record how 1 job(s) progressed" in caplog.text)
            await asyncio.sleep(1.0)  # (several writes run out meanwhile: said once)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'")
        backend.release.set()
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.processing_task WHERE state = 'processed'")
    assert caplog.text.count("could not record how 1 job(s) progressed") == 1, caplog.text
    assert "recorded how 1 job(s) progressed (after" in caplog.text
    assert list(history(db).values()) == [["pending", "dispatched", "running", "processed"]]


async def test_an_outcome_write_the_database_does_not_answer_in_time_says_so_and_is_recorded_once_it_answers(
        db, database_url, settings, configure, monkeypatch, caplog):
    # Found pausing the server (SIGSTOP) during a burst: the writer's line was "could not record the outcome of
    # 1 job(s) (); retrying in 0.1 s", a client's timeout having no text of its own. Here the statement waits for
    # a row a transaction left open holds, past the pool's client timeout (not the service's lock_timeout, 10 s).
    from hrwsi import database

    caplog.set_level("INFO", logger="hrwsi.launcher")
    monkeypatch.setattr(database, "COMMAND_TIMEOUT_S", 0.5)
    configure(single_routine_configuration(["true"], workers=1))
    insert_inputs(db, 1)
    backend = ReportingBackend(hold=True)
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'")
        with psycopg.connect(database_url) as dba:
            dba.execute("SELECT * FROM hrwsi.job FOR UPDATE")
            backend.release.set()
            await wait_until_true(lambda: "could not record the outcome of 1 job(s)" in caplog.text)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.processing_task WHERE state = 'processed'")
    said = [r.getMessage() for r in caplog.records if "could not record the outcome of 1 job(s)" in r.getMessage()]
    assert said[0].startswith("could not record the outcome of 1 job(s) (no answer within the client's timeout "
                              "(TimeoutError"), said
    assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 1


async def test_an_outcome_not_taken_whose_record_cannot_be_read_at_once_is_read_again_until_the_database_answers(
        db, database_url, settings, configure, monkeypatch, caplog):
    # Found restarting the server (pg_ctl restart -m immediate) during a burst: the last outcomes written before it
    # committed, their answers were lost, and the read that tells why came while the server recovered: each was said
    # "was not recorded: the database could not be read to say why", recorded all along. Here the read waits, past
    # the pool's client timeout, behind a lock on hrwsi.job held for a moment.
    from hrwsi import database
    from hrwsi.backends.base import JobSpec
    from hrwsi.database import create_pool

    caplog.set_level(logging.INFO, "hrwsi.launcher")
    monkeypatch.setattr(database, "COMMAND_TIMEOUT_S", 0.3)
    configure(single_routine_configuration(["true"], workers=1, budget=False))
    insert_inputs(db, 1)
    pool = await create_pool(database_url, max_size=4)
    try:
        launcher = await a_registered_launcher(pool, settings, DryRunBackend())
        db.execute("SELECT hrwsi.dispatch(%s, 'dry-run', 30, 10, '/data')", (launcher.instance_id,))
        job_id, task_id = db.execute("SELECT id, task_id FROM hrwsi.job").fetchone()
        spec = JobSpec(job_id="hrwsi-work-1-1", task_id=task_id, attempt=1, routine="work", condition="in",
                       input_path="/in", tile=None, worker="w01", command=("true",), image=None, cpu=1, ram_mb=1,
                       storage_mb=1, output_dir="/tmp/out", log_path="/tmp/log", timeout_s=60)
        db.execute("UPDATE hrwsi.job SET state = 'processed', exit_code = 0 WHERE id = %s", (job_id,))
        with psycopg.connect(database_url) as dba:
            dba.execute("LOCK TABLE hrwsi.job IN ACCESS EXCLUSIVE MODE")
            read = asyncio.create_task(launcher._recorded_already(job_id, spec, JobOutcome("processed", 0, "done")))
            await asyncio.sleep(1.0)  # (several reads time out meanwhile)
        assert await asyncio.wait_for(read, 30) is True
    finally:
        await pool.close()
    said = [r.getMessage() for r in caplog.records if "the outcome of job hrwsi-work-1-1" in r.getMessage()]
    assert said == ["task 1 (work): the outcome of job hrwsi-work-1-1 (processed) was recorded already (the "
                    "database's answer to its write was lost)"], said


class HoldingBackend(DryRunBackend):
    """Runs at most `limit` jobs at once; each is held until the test releases them; counts its
    submissions."""

    def __init__(self, limit: int):
        super().__init__()
        self.max_concurrent_jobs = limit
        self.submitted: list[str] = []
        self.release = asyncio.Event()

    async def submit(self, spec, *, first_start=False):
        self.submitted.append(spec.job_id)
        return spec.job_id

    async def wait(self, spec, backend_job_id, on_progress):
        await self.release.wait()
        return JobOutcome("processed", 0, "done", STARTED, datetime.now(UTC))


async def a_registered_launcher(pool, settings, backend) -> Launcher:
    """A launcher that dispatches 3 tasks a call: a full batch, whose followers start in the next turn
    of the event loop (a smaller one's start at once)."""
    launcher = Launcher(pool, settings, backend)
    launcher.dispatch_batch = AdaptiveBatch(3)
    await launcher._register_once()
    return launcher


@contextlib.asynccontextmanager
async def a_launcher_with_inputs(db, pool, settings, configure, *, inputs: int, limit: int, claim_ahead: int = 0):
    """`inputs` pending tasks and a registered launcher (not running) whose backend holds `limit` jobs
    and that claims `claim_ahead` more (0 here unless a test says otherwise: these tests are about
    the slots themselves)."""
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, inputs)
    backend = HoldingBackend(limit=limit)
    launcher = await a_registered_launcher(pool, dataclasses.replace(settings, claim_ahead=claim_ahead), backend)
    try:
        yield launcher, backend
    finally:
        await launcher.drop_claims()


async def test_the_backends_limit_counts_the_jobs_whose_followers_have_not_started_yet(
        db, pool, settings, configure):
    async with a_launcher_with_inputs(db, pool, settings, configure, inputs=10, limit=3) as (launcher, backend):
        assert await launcher.dispatch(), "a full batch: more may wait"
        assert launcher._starting and not launcher._following
        await launcher.dispatch()  # at once: the first batch's followers have not started
        assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 3
        await asyncio.sleep(0.05)
        assert len(launcher._following) == 3 and len(backend.submitted) == 3


async def test_adoption_never_takes_a_job_whose_follower_has_not_started_yet(db, pool, settings, configure):
    async with a_launcher_with_inputs(db, pool, settings, configure, inputs=3, limit=10) as (launcher, backend):
        assert await launcher.dispatch(), "a full batch: more may wait"
        assert launcher._starting and not launcher._following
        await launcher.adopt()  # at once: the dispatched jobs' followers have not started
        await asyncio.sleep(0.05)
        assert len(backend.submitted) == len(set(backend.submitted)) == 3, "each job submitted once"
        assert len(launcher._following) == 3


async def test_the_backends_limit_and_the_jobs_claimed_ahead_bound_what_a_launcher_claims(
        db, pool, settings, configure):
    async with a_launcher_with_inputs(db, pool, settings, configure, inputs=10, limit=2,
                                      claim_ahead=2) as (launcher, backend):
        assert await launcher.dispatch(), "a full batch: more may wait"
        await launcher.dispatch()
        assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 4, "2 slots and 2 ahead"
        await asyncio.sleep(0.05)
        assert len(backend.submitted) == 2, "the backend never gets more than its slots"
        assert not await launcher.dispatch() and launcher.free_slots() == 0


async def test_a_batch_that_is_not_full_is_followed_at_once(db, pool, settings, configure):
    # No next call to overlap with: its jobs are submitted without waiting for a turn of the loop.
    async with a_launcher_with_inputs(db, pool, settings, configure, inputs=2, limit=10) as (launcher, _):
        assert not await launcher.dispatch(), "2 of 3: nothing more waits"
        assert len(launcher._following) == 2 and not launcher._starting


async def test_a_lone_tasks_job_is_submitted_before_the_dispatch_call_gives_its_connection_back(
        db, pool, settings, configure):
    # The release of a pooled connection takes turns of the event loop: the job is submitted in
    # them, not after them (reaction latency, issue 15).
    async with a_launcher_with_inputs(db, pool, settings, configure, inputs=1, limit=10) as (launcher, backend):
        in_use_at_submit: list[int] = []
        submit = backend.submit

        async def counting_submit(spec, *, first_start=False):
            in_use_at_submit.append(pool.get_size() - pool.get_idle_size())
            return await submit(spec, first_start=first_start)

        backend.submit = counting_submit
        assert not await launcher.dispatch(), "1 of 3: nothing more waits"
        assert in_use_at_submit == [1], "submitted while the dispatch call's connection was out"
        assert pool.get_size() - pool.get_idle_size() == 0


async def test_a_running_launchers_dispatch_calls_use_one_session_whatever_its_pool_lends_meanwhile(
        db, database_url, settings, configure):
    # A session plans the call and its triggers at its first call: an input whose call came on a
    # pooled connection that had not run it waited 16-32 ms, where the others took 2-5 ms (issue 15).
    configure(single_routine_configuration(["true"], workers=2))
    db.execute("""CREATE TABLE public.job_inserted_by (pid integer);
                  CREATE FUNCTION public.note_the_session() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO public.job_inserted_by VALUES (pg_backend_pid()); RETURN NULL; END $$;
                  CREATE TRIGGER note_the_session AFTER INSERT ON hrwsi.job
                      FOR EACH ROW EXECUTE FUNCTION public.note_the_session()""")
    async with App(database_url, ["launcher"], settings, backend="dry-run", pool_size=5) as app:
        await wait_until_listening(app.service("launcher"))
        for index in range(4):
            # What another step (the outcome writer, the heartbeat) may hold when an input comes: the
            # connection the pool would lend next.
            async with app.pool.acquire():
                insert_inputs(db, 1, start=index)
                await wait_until(database_url, "SELECT count(*) = $1 FROM hrwsi.processing_task WHERE state = 'processed'",
                                 index + 1)
    assert db.execute("SELECT count(*), count(DISTINCT pid) FROM public.job_inserted_by").fetchone() == (4, 1)


async def test_a_slot_the_backend_frees_wakes_dispatch_whatever_the_notifications_do(db, pool, settings, configure):
    # The job's end also wakes dispatch through its notification, which may come before the job's
    # follower has let go of its slot: that dispatch finds no room, and the slot would stay idle.
    async with a_launcher_with_inputs(db, pool, settings, configure, inputs=2, limit=1) as (launcher, backend):
        await launcher.start()  # its writers; no listener, so no notification wakes anything
        try:
            await launcher.dispatch()
            assert len(launcher._following) == 1 and not launcher._dirty
            backend.release.set()
            await wait_until_true(lambda: not launcher._following)
            assert "dispatch" in launcher._dirty
            await launcher.dispatch()
            assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 2
        finally:
            await launcher.stop()


async def test_a_job_that_ended_frees_its_backend_slot_before_its_outcome_is_stored(db, pool, settings, configure):
    # The next job starts while the outcome is written: in the chain (16 routines at once on the
    # local backend), every refill of a slot had waited for the outcome's write (issue 15).
    async with a_launcher_with_inputs(db, pool, settings, configure, inputs=2, limit=1) as (launcher, backend):
        await launcher.start()  # its writers; no listener, so no notification wakes anything
        try:
            await launcher.dispatch()
            assert launcher.free_slots() == 0
            async with launcher._writing:  # the outcome writer waits for this
                backend.release.set()
                await wait_until_true(lambda: "dispatch" in launcher._dirty)
                assert launcher.free_slots() == 1
                await launcher.dispatch()
                assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 2
                assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 0
            await wait_until_true(lambda: not launcher._following)
            assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 2
            assert launcher.free_slots() == 1 and not launcher._ended
        finally:
            await launcher.stop()


@contextlib.asynccontextmanager
async def dispatch_calls_counted(monkeypatch):
    """Every run of the launcher's dispatch step, as how many tasks it started."""
    calls: list[int] = []
    original = Launcher.dispatch

    async def counted(self):
        before = self.dispatched
        try:
            return await original(self)
        finally:
            calls.append(self.dispatched - before)

    monkeypatch.setattr(Launcher, "dispatch", counted)
    yield calls


async def test_the_end_of_a_job_wakes_dispatch_only_when_the_last_call_left_work_waiting(
        db, database_url, settings, configure, monkeypatch):
    # No backstop poll within the test: only notifications (and the start) run the step.
    settings = dataclasses.replace(settings, backstop_poll_s=60.0)
    configure(single_routine_configuration(["true"], cpu=4, workers=1))  # one task at a time
    async with dispatch_calls_counted(monkeypatch) as calls, \
            App(database_url, ["launcher"], settings, backend=EndingBackend(set()), pool_size=5) as app:
        await wait_until_listening(app.service("launcher"))
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.processing_task WHERE state = 'processed'")
        await asyncio.sleep(0.5)  # the job's end is recorded and notified by now
        assert calls[-1] == 1, ("the call that started the task was the last: nothing waited after it", calls)
        started = len(calls)
        # Two tasks for one slot: the first call leaves one waiting, and the first job's end starts it.
        insert_inputs(db, 2, start=1)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'processed'",
                         timeout=10.0)
        await asyncio.sleep(0.5)
        assert calls[started:] == [1, 1], "one call per task: the second woken by the first one's end"


class EndingBackend(DryRunBackend):
    """Every job ends at once: processed, or failed for the tasks listed in `failing`."""

    def __init__(self, failing: set[int]):
        super().__init__()
        self.failing = failing

    async def wait(self, spec, backend_job_id, on_progress):
        if spec.task_id in self.failing:
            return JobOutcome("external_error", 1, "exit code 1", STARTED, datetime.now(UTC))
        return JobOutcome("processed", 0, "done", STARTED, datetime.now(UTC))


def outcome_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "hrwsi.launcher" and ("processed" in r.getMessage() or "attempt" in r.getMessage())]


async def test_many_jobs_recorded_at_once_are_logged_in_one_line_with_their_task_ids_and_failures_each_in_one(
        db, pool, settings, configure, caplog):
    caplog.set_level("INFO", logger="hrwsi.launcher")
    configure(single_routine_configuration(["true"], workers=8))  # room for all 30 at once
    insert_inputs(db, 30)
    task_ids = [row[0] for row in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY id")]
    failing = {task_ids[3], task_ids[17]}
    launcher = Launcher(pool, settings, EndingBackend(failing))
    await launcher._register_once()
    await launcher.start()  # its writers
    try:
        await launcher.dispatch()  # 30 jobs end at once: the writer records them in one call
        await wait_until_true(lambda: not launcher._following)
    finally:
        await launcher.stop()
    lines = outcome_lines(caplog)
    processed = [line for line in lines if "processed" in line]
    assert len(processed) == 1, lines
    assert task_ids == list(range(task_ids[0], task_ids[0] + 30))
    # the 28 ids as runs, around the two that failed
    expected = (f"{task_ids[0]}-{task_ids[2]}, {task_ids[4]}-{task_ids[16]}, {task_ids[18]}-{task_ids[29]}")
    assert processed[0].startswith("28 task(s) of routine work processed: 0 product(s); tasks ")
    assert f"; tasks {expected}; logs in " in processed[0]
    for task in failing:
        assert sum(line.startswith(f"task {task} (work) attempt 1 external_error: exit code 1") for line in lines) == 1


async def test_a_few_jobs_recorded_at_once_are_logged_in_a_line_each(db, pool, settings, configure, caplog):
    caplog.set_level("INFO", logger="hrwsi.launcher")
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, 3)
    launcher = Launcher(pool, settings, EndingBackend(set()))
    await launcher._register_once()
    await launcher.start()
    try:
        await launcher.dispatch()
        await wait_until_true(lambda: not launcher._following)
    finally:
        await launcher.stop()
    task_ids = [row[0] for row in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY id")]
    lines = outcome_lines(caplog)
    assert sorted(lines) == sorted(f"task {task} (work) processed: 0 product(s); log "
                                   + db.execute("SELECT log_path FROM hrwsi.job WHERE task_id = %s", (task,)).fetchone()[0]
                                   for task in task_ids)


class LosingBackend(DryRunBackend):
    """The dry-run backend, except that a first attempt's submission is lost with `fault`: it cannot
    tell whether it ran (as the Nomad backend after a registration whose answer was lost with Nomad's
    state), or could not be taken (Nomad out of reach, or refusing the launcher's token)."""

    def __init__(self, fault="backend_lost_track", message="the test's backend cannot tell whether it ran"):
        super().__init__()
        self.fault, self.message = fault, message

    async def submit(self, spec, *, first_start=False):
        if spec.attempt == 1:
            raise AttemptLost(self.fault, self.message)
        return await super().submit(spec, first_start=first_start)


@pytest.mark.parametrize("fault, message", [
    ("backend_lost_track", "the test's backend cannot tell whether it ran"),
    ("backend_unavailable", "could not register Nomad job: cannot reach Nomad; not the routine's fault"),
    ("storage_unavailable", "could not prepare the attempt's directory /p: No space left on device"),
])
async def test_an_attempt_the_backend_cannot_tell_ran_or_could_not_take_is_lost_and_retried_as_a_new_attempt(
        db, database_url, settings, configure, fault, message, caplog):
    caplog.set_level(logging.INFO, "hrwsi.launcher")
    configure(single_routine_configuration(["true"], max_attempts=1))  # a lost attempt is no failure of it
    insert_inputs(db, 1)
    async with App(database_url, ["launcher"], settings, backend=LosingBackend(fault, message), pool_size=5):
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
    jobs = db.execute("SELECT attempt, state, fault, message FROM hrwsi.job ORDER BY attempt").fetchall()
    assert [(attempt, state, fault) for attempt, state, fault, _ in jobs] == [
        (1, "lost", fault), (2, "processed", None)]
    assert message in jobs[0][3]
    said = [r for r in caplog.records if message in r.getMessage()]
    assert [(r.levelname, "attempt 1 lost (" in r.getMessage()) for r in said] == [("WARNING", True)], \
        "a lost attempt is logged once"
    assert db.execute("SELECT failures, lost_count FROM hrwsi.processing_task").fetchone() == (0, 1)
    assert db.execute("SELECT consecutive_failures, on_hold FROM hrwsi.processing_routine").fetchone() == (0, False)


class SlotBackend(DryRunBackend):
    """Runs at most `limit` jobs at once, each until the test ends it; lists them in the order they
    were handed over. Its jobs end with their launcher (as the local backend's)."""

    jobs_outlive_launcher = False

    def __init__(self, limit: int):
        super().__init__()
        self.max_concurrent_jobs = limit
        self.submitted: list[str] = []
        self.ends: dict[str, asyncio.Event] = {}

    async def submit(self, spec, *, first_start=False):
        assert len(self.submitted) - sum(e.is_set() for e in self.ends.values()) < self.max_concurrent_jobs
        self.submitted.append(spec.input_path)
        self.ends[spec.input_path] = asyncio.Event()
        return spec.job_id

    async def wait(self, spec, backend_job_id, on_progress):
        await self.ends[spec.input_path].wait()
        return JobOutcome("processed", 0, "done", STARTED, datetime.now(UTC))

    def end(self, input_path: str) -> None:
        self.ends[input_path].set()

    async def stop_all(self):
        for event in self.ends.values():
            event.set()


@contextlib.asynccontextmanager
async def a_launcher_claiming_ahead(db, pool, settings, configure, *, limit: int, claim_ahead: int):
    configure(single_routine_configuration(["true"], workers=2))
    backend = SlotBackend(limit)
    launcher = Launcher(pool, dataclasses.replace(settings, claim_ahead=claim_ahead, shutdown_grace_s=0.2), backend)
    await launcher._register_once()
    await launcher.start()  # its writers; no listener, so no notification wakes anything
    try:
        yield launcher, backend
    finally:
        await launcher.stop()


def insert_input_in_lane(db, path: str, lane: str) -> None:
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, lane) VALUES ('in', %s, %s)", (path, lane))


async def test_a_job_claimed_ahead_starts_the_moment_a_slot_frees_without_a_call_to_the_database(
        db, database_url, pool, settings, configure):
    async with a_launcher_claiming_ahead(db, pool, settings, configure, limit=1, claim_ahead=1) as (launcher, backend):
        for index in range(2):
            insert_input_in_lane(db, f"/in/{index}", "archive")
        await launcher.dispatch()
        await wait_until_true(lambda: backend.submitted == ["/in/0"])
        async with launcher._writing:  # the outcome writer waits for this
            backend.end("/in/0")
            await wait_until_true(lambda: backend.submitted == ["/in/0", "/in/1"])
            assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'processed'").fetchone()[0] == 0, \
                "the held job started before the first one's outcome was written, without a dispatch call"
        backend.end("/in/1")
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'processed'")


async def test_jobs_that_end_while_a_dispatch_call_runs_ask_for_the_next_call_once_it_returns(
        db, database_url, pool, settings, configure):
    # Half of what may be held ahead free (2 of 4) asks dispatch for more. Jobs that end while a call
    # runs count as free until its claims come back: when those left exactly half free, the count
    # never reached half again, and with no new work to announce every slot sat idle until the
    # backstop poll (the three-step chain's last step, 2026-12-05).
    async with a_launcher_claiming_ahead(db, pool, settings, configure, limit=2, claim_ahead=4) as (launcher, backend):
        for index in range(12):
            insert_input_in_lane(db, f"/in/{index:02d}", "archive")
        await launcher.dispatch()  # 2 in the backend, 4 held
        await wait_until_true(lambda: len(backend.submitted) == 2)
        assert "dispatch" not in launcher._dirty, "nothing free: nothing to ask"
        for path in list(backend.submitted):
            backend.end(path)  # two held jobs take their slots: 2 free
        await wait_until_true(lambda: len(backend.submitted) == 4)
        assert "dispatch" in launcher._dirty, "half of what may be held ahead is free"
        launcher._dirty.clear()
        blocker = await asyncpg.connect(database_url)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE hrwsi.job IN EXCLUSIVE MODE")  # the call's claim waits for it
                call = asyncio.create_task(launcher.dispatch())
                await wait_until(database_url, "SELECT count(*) > 0 FROM pg_locks WHERE NOT granted")
                for path in backend.submitted[2:4]:
                    backend.end(path)  # the last two held jobs take these slots
                await wait_until_true(lambda: len(backend.submitted) == 6)
                assert "dispatch" not in launcher._dirty, "asked once until the call returns"
            await call
        finally:
            await blocker.close()
        assert launcher.free_slots() == 2, "the call claimed 2, and 2 more ended while it ran"
        assert "dispatch" in launcher._dirty, "the call returned with half free: the next one is asked for"
        for path in backend.submitted[4:6]:
            backend.end(path)


async def test_an_urgent_job_claimed_later_takes_the_next_slot_before_the_jobs_held_before_it(
        db, pool, settings, configure):
    async with a_launcher_claiming_ahead(db, pool, settings, configure, limit=1, claim_ahead=2) as (launcher, backend):
        for index in range(3):
            insert_input_in_lane(db, f"/archive/{index}", "archive")
        await launcher.dispatch()
        await wait_until_true(lambda: len(backend.submitted) == 1)
        insert_input_in_lane(db, "/nrt/0", "nrt")
        backend.end(backend.submitted[0])  # a held archive job takes the slot; room for one more claim
        await wait_until_true(lambda: len(backend.submitted) == 2)
        await launcher.dispatch()  # claims the urgent one, held behind nothing less urgent
        backend.end(backend.submitted[1])
        await wait_until_true(lambda: len(backend.submitted) == 3)
        assert backend.submitted[2] == "/nrt/0", backend.submitted
        backend.end("/nrt/0")
        await wait_until_true(lambda: len(backend.submitted) == 4)
        backend.end(backend.submitted[3])
        assert sorted(backend.submitted) == ["/archive/0", "/archive/1", "/archive/2", "/nrt/0"]


async def test_an_archive_job_aged_to_urgent_takes_the_next_slot_before_the_archive_jobs_held_before_it(
        db, pool, settings, configure):
    # Dispatch serves the task's priority (ageing raises an archive task to 0, and so does a near-real-time scene of
    # its time series that waits for it); the held jobs were ordered by their lane's, so the aged one waited behind
    # every archive job claimed before it.
    async with a_launcher_claiming_ahead(db, pool, settings, configure, limit=1, claim_ahead=2) as (launcher, backend):
        for index in range(3):
            insert_input_in_lane(db, f"/archive/{index}", "archive")
        await launcher.dispatch()
        await wait_until_true(lambda: len(backend.submitted) == 1)
        insert_input_in_lane(db, "/archive/aged", "archive")
        db.execute("UPDATE hrwsi.lane SET promote_after = interval '1 microsecond' WHERE name = 'archive'")
        db.execute("SELECT hrwsi.promote_aged_tasks()")
        assert db.execute("""SELECT t.priority FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                             WHERE i.input_path = '/archive/aged'""").fetchone()[0] == 0
        backend.end(backend.submitted[0])  # a held archive job takes the slot; room for one more claim
        await wait_until_true(lambda: len(backend.submitted) == 2)
        await launcher.dispatch()  # claims the aged one
        backend.end(backend.submitted[1])
        await wait_until_true(lambda: len(backend.submitted) == 3)
        assert backend.submitted[2] == "/archive/aged", backend.submitted
        for _ in range(2):
            backend.end(backend.submitted[-1])
        await wait_until_true(lambda: len(backend.submitted) == 4)
        backend.end(backend.submitted[3])


async def test_a_job_held_for_a_slot_is_shown_queued_with_why(db, database_url, pool, settings, configure, monkeypatch):
    monkeypatch.setattr(launcher_module, "SHOW_HELD_AS_QUEUED_AFTER_S", 0.05)
    monkeypatch.setattr(launcher_module, "PROGRESS_BATCH_S", 0.05)
    async with a_launcher_claiming_ahead(db, pool, settings, configure, limit=1, claim_ahead=1) as (launcher, backend):
        for index in range(2):
            insert_input_in_lane(db, f"/in/{index}", "archive")
        await launcher.dispatch()
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'queued'")
        reason = db.execute("SELECT message FROM hrwsi.job WHERE state = 'queued'").fetchone()[0]
        assert "waits for one of the dry-run backend's 1 slots" in reason, reason
        backend.end("/in/0")
        await wait_until_true(lambda: len(backend.submitted) == 2)
        backend.end("/in/1")
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'processed'")


async def test_a_job_held_for_a_slot_that_an_operator_cancels_never_starts(db, database_url, pool, settings, configure):
    async with a_launcher_claiming_ahead(db, pool, settings, configure, limit=1, claim_ahead=1) as (launcher, backend):
        for index in range(2):
            insert_input_in_lane(db, f"/in/{index}", "archive")
        await launcher.dispatch()
        await wait_until_true(lambda: len(backend.submitted) == 1)
        held = db.execute("""SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                             WHERE i.input_path = '/in/1'""").fetchone()[0]
        db.execute("SELECT hrwsi.cancel_task(%s)", (held,))
        await launcher.cancel_requested_jobs()
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'cancelled'")
        backend.end("/in/0")
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'processed'")
        assert backend.submitted == ["/in/0"], "the cancelled job was never handed to the backend"


async def test_a_stopping_launcher_starts_no_held_job_and_its_task_is_retried(db, pool, settings, configure):
    async with a_launcher_claiming_ahead(db, pool, settings, configure, limit=1, claim_ahead=1) as (launcher, backend):
        for index in range(2):
            insert_input_in_lane(db, f"/in/{index}", "archive")
        await launcher.dispatch()
        await wait_until_true(lambda: len(backend.submitted) == 1)
    assert backend.submitted == ["/in/0"], "stopping, the launcher handed nothing more to the backend"
    held = db.execute("""SELECT j.state, j.fault, t.state, t.failures FROM hrwsi.job j
                         JOIN hrwsi.processing_task t ON t.id = j.task_id JOIN hrwsi.input i ON i.id = t.input_id
                         WHERE i.input_path = '/in/1'""").fetchall()
    assert held == [("lost", "stopped_by_hrwsi", "pending", 0)], "retried, and not counted as a failure"


def test_with_jobs_claimed_ahead_an_end_wakes_dispatch_only_for_work_waiting_in_the_database(settings):
    # Work waiting for the launcher's own slots is claimed as they free; a call for every outcome's
    # write claimed a few jobs at a time (the three-step chain: a call for every four jobs).
    ahead = Launcher(None, dataclasses.replace(settings, claim_ahead=2), SlotBackend(2))
    without = Launcher(None, dataclasses.replace(settings, claim_ahead=0), SlotBackend(2))
    ended = [Notification("hrwsi_job", "update", counts={"processed": 3}),
             Notification("hrwsi_task", "update", counts={"processed": 3})]
    for launcher in (ahead, without):
        launcher.work_waiting, launcher.work_waits_for_outcomes = True, False
    assert not any("dispatch" in ahead.router.steps_for(n) for n in ended), "the slots wake it, not the write"
    assert all("dispatch" in without.router.steps_for(n) for n in ended)
    ahead.work_waits_for_outcomes = True  # what waits is in the database: an outcome may free it
    assert all("dispatch" in ahead.router.steps_for(n) for n in ended)
    assert "dispatch" in ahead.router.steps_for(Notification("hrwsi_task", "insert", counts={"pending": 1}))


async def test_an_outcome_not_taken_says_whether_the_database_has_it_already_or_what_it_has(
        db, pool, settings, configure, caplog):
    """A launcher whose outcome write committed but whose answer was lost (the server restarted)
    said its own outcome "was not recorded: the job is final already or owned by another launcher
    now" (found by exploratory testing)."""
    from hrwsi.backends.base import JobSpec

    caplog.set_level(logging.INFO, "hrwsi.launcher")
    configure(single_routine_configuration(["true"], workers=1, budget=False))
    insert_inputs(db, 1)
    launcher = await a_registered_launcher(pool, settings, DryRunBackend())
    db.execute("SELECT hrwsi.dispatch(%s, 'dry-run', 30, 10, '/data')", (launcher.instance_id,))
    job_id, task_id = db.execute("SELECT id, task_id FROM hrwsi.job").fetchone()
    spec = JobSpec(job_id="hrwsi-work-1-1", task_id=task_id, attempt=1, routine="work", condition="in",
                   input_path="/in", tile=None, worker="w01", command=("true",), image=None, cpu=1, ram_mb=1,
                   storage_mb=1, output_dir="/tmp/out", log_path="/tmp/log", timeout_s=60)
    db.execute("UPDATE hrwsi.job SET state = 'processed', exit_code = 0 WHERE id = %s", (job_id,))
    assert await launcher._recorded_already(job_id, spec, JobOutcome("processed", 0, "done")) is True
    assert await launcher._recorded_already(job_id, spec, JobOutcome("failed", 3, "exit 3")) is False
    said = [r.getMessage() for r in caplog.records if "the outcome of job hrwsi-work-1-1" in r.getMessage()]
    assert said[0].endswith("(processed) was recorded already (the database's answer to its write was lost)")
    assert said[1].endswith("(failed) was not recorded: the database has it processed, followed by "
                            f"{db.execute('SELECT owner FROM hrwsi.job').fetchone()[0] or 'no launcher'}")


class ForgingBackend(DryRunBackend):
    """Runs routines (as the local and Nomad backends): each job ends processed with `products` as
    the products it found itself, which the launcher does not look at again."""

    runs_routines = True

    def __init__(self, products):
        super().__init__()
        self.products = products

    async def submit(self, spec, *, first_start=False):
        os.makedirs(spec.output_dir, exist_ok=True)
        return await super().submit(spec, first_start=first_start)

    async def wait(self, spec, backend_job_id, on_progress):
        return JobOutcome("processed", 0, "done", STARTED, datetime.now(UTC), products=(self.products, []))


class VanishingBackend(ForgingBackend):
    """Its routines end processed after their output directory was taken away (`mv` of the products)."""

    async def wait(self, spec, backend_job_id, on_progress):
        if spec.attempt == 1:
            shutil.rmtree(spec.attempt_dir)
        return JobOutcome("processed", 0, "done", STARTED, datetime.now(UTC))


async def test_an_attempt_whose_output_directory_vanished_while_it_ran_is_lost_to_the_storage_and_retried(
        db, database_url, settings, configure):
    """It was recorded "processed: 0 product(s)" at INFO and the chain stopped without a word (found by
    exploratory testing)."""
    configure(single_routine_configuration(["true"], max_attempts=1))
    insert_inputs(db, 1)
    async with App(database_url, ["launcher"], settings, backend=VanishingBackend([]), pool_size=5):
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
    jobs = db.execute("SELECT attempt, state, fault, message FROM hrwsi.job ORDER BY attempt").fetchall()
    assert [job[:3] for job in jobs] == [(1, "lost", "storage_unavailable"), (2, "processed", None)]
    assert "its output directory" in jobs[0][3] and "is gone" in jobs[0][3]
    assert db.execute("SELECT failures, lost_count FROM hrwsi.processing_task").fetchone() == (0, 1)


class FailingOverBackend(ForgingBackend):
    """Its first job ends while the database refuses writes: the launcher's pool is cut and comes back on a
    server that is read-only (a failover onto a standby) for `for_s`, then writable again."""

    def __init__(self, database_url: str, for_s: float):
        super().__init__([])
        self.database_url, self.for_s, self.done = database_url, for_s, False

    def _read_only(self, on: bool) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            name = conn.execute("SELECT current_database()").fetchone()[0]
            conn.execute("SET default_transaction_read_only = off")  # (this session may write, whatever it was given)
            conn.execute(psycopg.sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.SQL("on" if on else "off")))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name LIKE 'hrwsi-launcher-pool%' AND pid <> pg_backend_pid()")

    async def wait(self, spec, backend_job_id, on_progress):
        if not self.done:
            self.done = True
            await asyncio.to_thread(self._read_only, True)
            loop = asyncio.get_running_loop()
            loop.call_later(self.for_s, lambda: loop.run_in_executor(None, self._read_only, False))
        return await super().wait(spec, backend_job_id, on_progress)


async def test_an_outcome_that_ends_while_the_database_refuses_writes_is_recorded_once_it_takes_them(
        db, database_url, settings, configure, caplog):
    """A failover onto a standby as jobs end: their outcomes were refused, the batch then each one, two lines per
    job ("could not be recorded ... will be adopted", "was not recorded: the database has it running"), and
    left for adoption to read again from the backend (found by exploratory testing). Now the writer waits for
    writes, as for an outage, and records each outcome once, as this launcher, when the database takes them."""
    configure(single_routine_configuration(["true"], max_attempts=1))
    insert_inputs(db, 1)
    backend = FailingOverBackend(database_url, for_s=0.6)
    caplog.set_level(logging.INFO)
    try:
        async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5):
            await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
    finally:
        await asyncio.to_thread(backend._read_only, False)
    assert db.execute("SELECT attempt, state FROM hrwsi.job").fetchall() == [(1, "processed")]
    assert "the database refuses hrwsi's writes" in caplog.text
    for never in ("could not be recorded", "was not recorded", "recording 1 outcome(s) at once failed", "adopting"):
        assert never not in caplog.text, never


class FailingOnAFullStorageBackend(ForgingBackend):
    """Its routines fail (exit code 1) on the first attempt."""

    async def wait(self, spec, backend_job_id, on_progress):
        if spec.attempt == 1:
            return JobOutcome("internal_error", 1, "exit code 1", STARTED, datetime.now(UTC))
        return await super().wait(spec, backend_job_id, on_progress)


async def test_a_routine_that_failed_on_a_full_storage_is_lost_to_the_storage_and_retried_uncharged(
        db, database_url, settings, configure, monkeypatch):
    """A backend that does not check the storage itself (Nomad): the launcher does, for a failed attempt."""
    real, full = os.statvfs, str(settings.data_dir)

    def statvfs(path):
        found = real(path)
        if str(path).startswith(full):
            return os.statvfs_result((*found[:3], 0, 0, *found[5:]))
        return found

    monkeypatch.setattr(os, "statvfs", statvfs)
    configure(single_routine_configuration(["true"], max_attempts=1))
    insert_inputs(db, 1)
    async with App(database_url, ["launcher"], settings, backend=FailingOnAFullStorageBackend([]), pool_size=5):
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
    jobs = db.execute("SELECT attempt, state, fault, message FROM hrwsi.job ORDER BY attempt").fetchall()
    assert [job[:3] for job in jobs] == [(1, "lost", "storage_unavailable"), (2, "processed", None)]
    assert "is full (0 bytes free), which most likely failed it" in jobs[0][3]
    assert db.execute("SELECT failures, lost_count FROM hrwsi.processing_task").fetchone() == (0, 1)


async def test_an_outcome_the_database_refuses_for_good_fails_the_attempt_with_the_refusal_and_never_loops(
        db, database_url, settings, configure):
    """A product path the database's CHECK refuses: the outcome was refused at every write, the job
    left active, adopted by its own launcher, refused again, every 2 s for ever (found by exploratory
    testing)."""
    configure(single_routine_configuration(["true"], max_attempts=1))
    insert_inputs(db, 1)
    backend = ForgingBackend([("/data/out/prod\n2026 ERROR forged\x1b[2J.tif", 1)])
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5):
        await wait_until(database_url, "SELECT state = 'terminated' FROM hrwsi.processing_task")
    jobs = db.execute("SELECT state, message FROM hrwsi.job").fetchall()
    assert len(jobs) == 1 and jobs[0][0] == "internal_error"
    assert "product_path_is_absolute_without_control_characters" in jobs[0][1] and "\x1b" not in jobs[0][1]
    assert db.execute("SELECT count(*) FROM hrwsi.product").fetchone()[0] == 0


class DataRefusingBackend(DryRunBackend):
    """Refuses every job for the task's own data, as the Nomad backend an input path with '${'."""

    async def submit(self, spec, *, first_start=False):
        from hrwsi.backends.base import TaskRefused

        raise TaskRefused(f"job {spec.job_id}: the task's data path {spec.input_path!r} contains '${{'")


async def test_a_job_refused_for_the_tasks_own_data_terminates_the_task_and_is_no_failure_of_the_routine(
        db, database_url, settings, configure):
    """Five inputs with '${' put their routine on hold, a legitimate waiting task held with it (found by
    exploratory testing)."""
    configure(single_routine_configuration(["true"], max_attempts=3, workers=8))
    insert_inputs(db, 6)
    async with App(database_url, ["launcher"], settings, backend=DataRefusingBackend(), pool_size=5):
        await wait_until(database_url, "SELECT bool_and(state = 'terminated') FROM hrwsi.processing_task")
    assert db.execute("SELECT consecutive_failures, on_hold FROM hrwsi.processing_routine").fetchone() == (0, False)
    assert db.execute("SELECT DISTINCT attempts, failures FROM hrwsi.processing_task").fetchall() == [(1, 0)]
    jobs = db.execute("SELECT state, fault, message FROM hrwsi.job").fetchall()
    assert len(jobs) == 6 and {(state, fault) for state, fault, _ in jobs} == {("internal_error", "stopped_by_hrwsi")}
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task LIMIT 1").fetchone()[0]
    assert reason.startswith("attempt 1 refused by the backend: the dry-run backend refused it for the task's own data")




@dataclasses.dataclass
class FailedOver:
    """A launcher whose lease lapsed while it followed a dispatched job, on a database that fails over onto a
    standby (refusing writes) as the launcher asks for a new lease."""
    launcher: Launcher
    job: int
    spec: object  # (a JobSpec of the job's task)


@pytest.fixture
async def failed_over(db, database_url, settings, configure, caplog):
    from hrwsi.backends.base import JobSpec
    from hrwsi.database import create_pool

    writable = await create_pool(database_url, min_size=0, max_size=2)
    read_only = await create_pool(database_url, min_size=0, max_size=2,
                                  server_settings={"default_transaction_read_only": "on"})

    class FailingOverLauncher(Launcher):
        async def lease_lost(self) -> None:  # the failover comes between the fenced call and the new lease
            self.pool = read_only
            await super().lease_lost()

    launcher = FailingOverLauncher(writable, settings, DataRefusingBackend())
    caplog.set_level(logging.INFO)
    try:
        configure(single_routine_configuration(["true"]))
        insert_inputs(db, 1)
        await launcher._register()
        job, task = db.execute("""SELECT (job).job_id, (job).task_id FROM hrwsi.dispatch(%s, 'dry-run', 30, 10, '/data')
                                  WHERE (job).job_id IS NOT NULL""", (launcher.instance_id,)).fetchone()
        db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                   (launcher.instance_id,))
        yield FailedOver(launcher, job, JobSpec(f"hrwsi-work-{task}-1", task, 1, "work", "work_c", "/in/x", None, None,
                                                ("true",), None, 1, 100, 10, "/data/out", "/data/out/log"))
    finally:
        launcher.pool = writable
        await launcher.unregister()
        await read_only.close()
        await writable.close()


async def test_a_lease_found_lapsed_ending_a_task_refused_for_its_data_on_a_database_refusing_writes_is_said_once(
        failed_over, caplog):
    """The statement that ends a task the backend refused for its own data reads the lease before it writes: on a
    standby after a failover, once the lease had lapsed, the new lease asked for was refused for being a write, and
    that refusal escaped the job's follower (a traceback, "Task exception was never retrieved"), where every other
    path says once that the database refuses writes and lets the heartbeat take a new lease when it takes them."""
    from hrwsi.backends.base import TaskRefused

    await failed_over.launcher._end_task_refused(failed_over.job, failed_over.spec,
                                                 TaskRefused("the data path contains '${'"))
    assert "the database refuses hrwsi's writes" in caplog.text


async def test_a_lease_found_lapsed_recording_outcomes_on_a_database_refusing_writes_is_said_once_and_records_nothing(
        failed_over, db, caplog):
    """The outcome writer's statement reads the lease before it writes, as the end of a refused task does: on a
    standby after a failover, once the lease had lapsed, the new lease asked for was refused for being a write,
    and the refusal escaped the writer's batch (found by review). It is said once, as on every other path; the
    batch is not the old identity's to record any more, and the heartbeat takes a new lease when writes go through."""
    from hrwsi.launcher import _Finished

    launcher, owner, now = failed_over.launcher, failed_over.launcher.instance_id, datetime.now(UTC)
    finished = _Finished(failed_over.job, failed_over.spec, JobOutcome("processed", 0, "", now, now), [],
                         asyncio.get_running_loop().create_future(), owner)
    assert await launcher._store_fenced([finished], owner) == {}
    assert "the database refuses hrwsi's writes" in caplog.text
    assert db.execute("SELECT state FROM hrwsi.job WHERE id = %s", (failed_over.job,)).fetchone()[0] != "processed"

class StorageLosingBackend(ForgingBackend):
    """Its attempts' directories cannot be prepared while `full` (a full or read-only products storage),
    as prepare_attempt says it; then they run and end processed."""

    def __init__(self):
        super().__init__([])
        self.full = True

    async def submit(self, spec, *, first_start=False):
        if self.full:
            raise AttemptLost("storage_unavailable", f"could not prepare the attempt's directory {spec.attempt_dir}: "
                              "No space left on device (its files); nothing ran, not the routine's fault: it is retried")
        return await super().submit(spec, first_start=first_start)


async def test_attempts_losing_their_storage_are_the_launchers_problem_until_one_gets_it_again(
        db, database_url, settings, configure):
    """Attempts were lost (storage_unavailable) and retried, but `hrwsi status`, /api/overview and
    hrwsi_service_problem said nothing was wrong with the launcher (found by exploratory testing)."""
    configure(single_routine_configuration(["true"], max_attempts=1))
    insert_inputs(db, 1)
    backend = StorageLosingBackend()
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5) as app:
        launcher = app.services[0]
        await wait_until(database_url, "SELECT lost_count >= 2 FROM hrwsi.processing_task")
        await wait_until(database_url, "SELECT problem IS NOT NULL FROM hrwsi.service_instance WHERE id = $1",
                         launcher.instance_id)
        problem, since = db.execute("SELECT problem, problem_since FROM hrwsi.service_instance WHERE id = %s",
                                    (launcher.instance_id,)).fetchone()
        assert problem.startswith("attempts lose their storage: ") and "lost (storage_unavailable)" in problem
        assert "the last: could not prepare the attempt's directory" in problem and "No space left on device" in problem
        assert "retried as a new attempt, not charged to the routine" in problem
        first_lost = db.execute("SELECT min(finished_at) FROM hrwsi.job").fetchone()[0]
        assert abs((since - first_lost).total_seconds()) < 1
        count = int(launcher.problem()[0].split(": ")[1].split(" ")[0])
        assert count >= 2
        backend.full = False  # room again: the next attempt gets its storage, and the problem is over
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
        assert launcher.problem() is None
        await wait_until(database_url, "SELECT problem IS NULL FROM hrwsi.service_instance WHERE id = $1",
                         launcher.instance_id)
    assert db.execute("SELECT failures FROM hrwsi.processing_task").fetchone()[0] == 0


def test_attempts_lost_to_the_storage_long_ago_are_no_longer_the_launchers_problem(settings, monkeypatch):
    launcher = Launcher(None, settings, DryRunBackend())
    launcher._lost_to_the_storage("could not prepare the attempt's directory /p: Read-only file system")
    assert "Read-only file system" in launcher.problem()[0]
    monkeypatch.setattr(launcher_module, "STORAGE_PROBLEM_FORGOTTEN_S", 0.0)
    assert launcher.problem() is None


class BlackholingProxy:
    """A TCP proxy to `upstream` which, while `blackholed`, takes connections and forwards nothing: a
    client waits for its answers until its own timeout (the exploratory tester's cut-off Nomad)."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname, parts.port
        self.blackholed = True
        self._handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> BlackholingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        self._handlers.add(handler)
        try:
            if self.blackholed:
                while await reader.read(65536):
                    pass
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                try:
                    while data := await source.read(65536):
                        sink.write(data)
                        await sink.drain()
                finally:
                    sink.close()

            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)
        finally:
            writer.close()
            self._handlers.discard(handler)


async def test_a_launcher_whose_nomad_is_out_of_reach_claims_nothing_and_claims_again_once_it_answers(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """A launcher that could not reach Nomad kept claiming tasks, each waiting for its registration's
    retries and then lost, while another launcher that reached Nomad had free slots (found by
    exploratory testing)."""
    configure(single_routine_configuration(["true"], workers=2))
    names = [row[0] for row in db.execute("SELECT name FROM hrwsi.worker ORDER BY name")]
    nodes = [EmulatedNode(name, cpu_mhz=4000, memory_mb=16000, disk_mb=50000) for name in names]
    monkeypatch.setenv("HRWSI_NOMAD_MHZ_PER_CORE", "1000")
    monkeypatch.delenv("NOMAD_TOKEN", raising=False)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator, \
            BlackholingProxy(emulator.address) as proxy:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        cut_off = NomadBackend(dataclasses.replace(NomadConfig.from_env(), address=proxy.address,
                                                   request_timeout_s=0.3, retry_for_s=0.5))
        async with App(database_url, ["launcher"], settings, backend=cut_off, pool_size=5) as cut_off_app:
            launcher = cut_off_app.services[0]
            # (its start's look at its settings got no answer; its heartbeat says so)
            await wait_until(database_url, "SELECT problem LIKE 'cannot reach Nomad at %' FROM hrwsi.service_instance "
                             "WHERE id = $1", launcher.instance_id)
            insert_inputs(db, 3)
            await asyncio.sleep(1.5)  # (its dispatch woken by the inputs, then by three backstop polls)
            assert launcher.dispatched == 0
            assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 0
            await wait_until(database_url, "SELECT problem LIKE '%this launcher claims no new work%' "
                             "FROM hrwsi.service_instance WHERE id = $1", launcher.instance_id)
            async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
                await wait_until(database_url, "SELECT bool_and(state = 'processed') FROM hrwsi.processing_task")
            # another launcher took the work at once: no attempt lost to the one out of reach
            assert db.execute("SELECT DISTINCT state, attempt FROM hrwsi.job").fetchall() == [("processed", 1)]
            insert_inputs(db, 2, start=3)
            await asyncio.sleep(0.5)
            assert launcher.dispatched == 0
            proxy.blackholed = False  # Nomad answers again: its probe finds it, and it claims at once
            await wait_until(database_url, "SELECT count(*) = 5 FROM hrwsi.processing_task WHERE state = 'processed'")
            assert launcher.dispatched == 2
            await wait_until(database_url, "SELECT problem IS NULL FROM hrwsi.service_instance WHERE id = $1",
                             launcher.instance_id)


async def test_a_launcher_whose_nomad_token_may_not_submit_gives_back_what_it_claimed_claims_nothing_more_and_runs_all_once_it_may(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """A token that may not submit jobs (a rotated token with the wrong policy): each claimed task was registered,
    refused and recorded lost, and retried after its own back-off (up to 600 s), so that once the admin mended
    the token, work came back only as each back-off ended (found by exploratory testing). Now the first refusal
    stops the claims, the attempts claimed (one batch at most) are given back once, unregistered, and a plan of
    the refused job, which registers nothing, tells when the token may submit."""
    from hrwsi.testing.nomad_emulator.acl import READ, WRITE, AclPolicy

    configure(single_routine_configuration(["true"], workers=2))
    names = [row[0] for row in db.execute("SELECT name FROM hrwsi.worker ORDER BY name")]
    nodes = [EmulatedNode(name, cpu_mhz=4000, memory_mb=16000, disk_mb=50000) for name in names]
    management, launcher_token = str(uuid.uuid4()), str(uuid.uuid4())  # (made here: no token is committed)
    monkeypatch.setenv("HRWSI_NOMAD_MHZ_PER_CORE", "1000")
    monkeypatch.setenv("NOMAD_TOKEN", launcher_token)
    read_only = AclPolicy(capabilities=READ | {"read-logs"}, node="read")
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad", acl_token=management,
                             acl_policies={launcher_token: read_only}) as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5) as app:
            launcher = app.services[0]
            insert_inputs(db, 20)
            await wait_until(database_url, "SELECT problem LIKE '%this launcher claims no new work%' "
                             "FROM hrwsi.service_instance WHERE id = $1", launcher.instance_id)
            await asyncio.sleep(1.0)  # (dispatch woken by the lost attempt's retry, and by backstop polls)
            problem = db.execute("SELECT problem FROM hrwsi.service_instance WHERE id = %s",
                                 (launcher.instance_id,)).fetchone()[0]
            assert "needs submit-job" in problem and launcher_token not in problem, problem
            # (the first batch claimed, at most, each given back once, lost and retried: nothing more is claimed)
            claimed = db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'lost'").fetchone()[0]
            assert emulator.requests[("POST", "/v1/jobs")] <= claimed <= 8
            assert not emulator.cluster.jobs  # (the plans registered nothing)
            emulator.acl_policies[launcher_token] = AclPolicy(capabilities=WRITE, node="read")  # the admin mends it
            await wait_until(database_url, "SELECT count(*) = 20 FROM hrwsi.processing_task WHERE state = 'processed'",
                             timeout=3 * launcher_module.REACH_PROBE_S + 10)
            assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'lost'").fetchone()[0] == claimed
            await wait_until(database_url, "SELECT problem IS NULL FROM hrwsi.service_instance WHERE id = $1",
                             launcher.instance_id)


async def test_an_operators_cancel_while_nomad_refuses_the_launchers_token_takes_effect_at_once_and_registers_nothing(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """An operator cancelled tasks whose attempts the launcher had claimed when Nomad began to refuse its token: the
    attempts waited for the token, unregistered, the cancel held with them; once the admin mended the token each
    was registered in Nomad and stopped at once (found by exploratory testing). Now the attempts claimed are given
    back as the refusal is found (lost, not charged), so the cancel ends the tasks at once and nothing of them is
    ever registered."""
    from hrwsi.testing.nomad_emulator.acl import READ, WRITE, AclPolicy

    configure(single_routine_configuration(["true"], workers=2))
    names = [row[0] for row in db.execute("SELECT name FROM hrwsi.worker ORDER BY name")]
    nodes = [EmulatedNode(name, cpu_mhz=4000, memory_mb=16000, disk_mb=50000) for name in names]
    management, launcher_token = str(uuid.uuid4()), str(uuid.uuid4())  # (made here: no token is committed)
    monkeypatch.setenv("HRWSI_NOMAD_MHZ_PER_CORE", "1000")
    monkeypatch.setenv("NOMAD_TOKEN", launcher_token)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad", acl_token=management,
                             acl_policies={launcher_token: AclPolicy(capabilities=READ, node="read")}) as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5) as app:
            launcher = app.services[0]
            insert_inputs(db, 6)
            await wait_until(database_url, "SELECT problem LIKE '%this launcher claims no new work%' "
                             "FROM hrwsi.service_instance WHERE id = $1", launcher.instance_id)
            claimed = emulator.requests[("POST", "/v1/jobs")]
            assert claimed >= 2, "the test needs attempts claimed beside the first refused"
            for (task,) in db.execute("SELECT id FROM hrwsi.processing_task").fetchall():
                db.execute("SELECT hrwsi.cancel_task(%s)", (task,))
            # (the token still refused: a cancel that waits for it would never end here)
            await wait_until(database_url, "SELECT count(*) = 6 FROM hrwsi.processing_task WHERE state = 'cancelled'")
            await wait_until(database_url, "SELECT count(*) = 0 FROM hrwsi.job WHERE state IN "
                             "('dispatched', 'queued', 'running')")
            emulator.acl_policies[launcher_token] = AclPolicy(capabilities=WRITE, node="read")  # the admin mends it
            await wait_until(database_url, "SELECT problem IS NULL FROM hrwsi.service_instance WHERE id = $1",
                             launcher.instance_id, timeout=3 * launcher_module.REACH_PROBE_S + 10)
            await launcher.cancel_requested_jobs()
            assert not emulator.cluster.jobs and emulator.requests[("POST", "/v1/jobs")] == claimed


async def test_a_chained_input_whose_product_file_was_deleted_terminates_its_task_charging_no_routine(
        db, database_url, settings, configure, tmp_path):
    """Ops deleted a product file (they own them): the next routine failed on the missing file, every
    such task was charged to it, and enough of them put it on hold (found by exploratory testing)."""
    from hrwsi.demo import write_scenes
    from tests.integration.conftest import chain_configuration

    configure(chain_configuration())
    db.execute("SELECT hrwsi.hold_routine('snow_cover')")
    scene = write_scenes(tmp_path / "l1c", 1, datetime.now(UTC))[0]
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at)
                  VALUES ('l1c', %(path)s, %(tile)s, %(mission)s, %(measured_at)s, %(published_at)s)""", scene)
    async with App(database_url, ["harvester", "orchestrator", "launcher"], settings, backend="local", pool_size=10):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.input WHERE source = 'chaining'")
        (product,) = db.execute("SELECT path FROM hrwsi.product").fetchone()
        os.remove(product)  # ops (or a disk cleanup) removed it
        db.execute("SELECT hrwsi.release_routine('snow_cover')")
        await wait_until(database_url, "SELECT state IN ('terminated', 'processed') FROM hrwsi.processing_task "
                                       "WHERE routine = 'snow_cover'")
    state, failures, reason = db.execute("SELECT state, failures, state_reason FROM hrwsi.processing_task "
                                         "WHERE routine = 'snow_cover'").fetchone()
    assert (state, failures) == ("terminated", 0), reason
    assert product in reason and "is missing" in reason and "hrwsi retry" in reason
    assert db.execute("SELECT consecutive_failures, on_hold FROM hrwsi.processing_routine "
                      "WHERE name = 'snow_cover'").fetchone() == (0, False)
    assert db.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'task_terminated'").fetchone()[0] == 1


@functools.cache
def _bin_dir_of_postgresql(major: int) -> Path | None:
    """Where this machine has the pg_dump of that major version (asked once a session): the embedded
    server's programs, or Debian's (/usr/lib/postgresql/<major>/bin); None: nowhere."""
    from hrwsi.database import embedded_bin_dir

    for candidate in (embedded_bin_dir(), Path(f"/usr/lib/postgresql/{major}/bin")):
        version = subprocess.run([str(candidate / "pg_dump"), "--version"], capture_output=True, text=True,
                                 check=False).stdout if (candidate / "pg_dump").exists() else ""
        if re.search(rf"\b{major}\.", version):
            return candidate
    return None


def server_bin_dir(url: str) -> Path:
    """The programs of the server's own version, as README.md's "Backup and restore" says: the embedded
    server's, or, against another server (HRWSI_DATABASE_URL), Debian's of its major version (the embedded
    pg_restore, 18, restoring into a PostgreSQL 15 server stopped at a setting 15 does not know)."""
    with psycopg.connect(url) as conn:
        major = conn.info.server_version // 10000
    found = _bin_dir_of_postgresql(major)
    if found is None:
        pytest.skip(f"no pg_dump of PostgreSQL {major} on this machine")
    return found


def dump_database(url: str, path) -> None:
    """A backup as README.md's "Backup and restore" takes it (pg_dump -Fc of the server's own version)."""
    subprocess.run([str(server_bin_dir(url) / "pg_dump"), "-Fc", "-d", url, "-f", str(path)], check=True)


def restore_database(url: str, path) -> None:
    """README.md's restore over the same database, the services stopped."""
    subprocess.run([str(server_bin_dir(url) / "pg_restore"), "--clean", "--if-exists", "--single-transaction",
                    "-d", url, str(path)], check=True, capture_output=True)


def nomad_nodes(db, monkeypatch) -> list[EmulatedNode]:
    names = [row[0] for row in db.execute("SELECT name FROM hrwsi.worker ORDER BY name")]
    monkeypatch.setenv("HRWSI_NOMAD_MHZ_PER_CORE", "1000")
    monkeypatch.setenv("HRWSI_NOMAD_PURGE", "0")  # (the later work's dead jobs stay in Nomad, as for a while they do)
    monkeypatch.delenv("NOMAD_TOKEN", raising=False)
    return [EmulatedNode(name, cpu_mhz=4000, memory_mb=16000, disk_mb=50000) for name in names]


async def restored_from_a_backup_older_than_work_on_nomad(db, database_url, settings, tmp_path, emulator,
                                                          inputs: int) -> dict[str, dict]:
    """The database restored from a backup taken before `inputs` inputs were processed on Nomad (tasks 1...):
    the Nomad jobs of that later work, {job ID: the job as Nomad has it}."""
    backup = tmp_path / "hrwsi.dump"
    dump_database(database_url, backup)
    async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
        insert_inputs(db, inputs, prefix="/in/later-work-")
        await wait_until(database_url, "SELECT count(*) = $1 FROM hrwsi.processing_task WHERE state = 'processed'",
                         inputs)
    taken = {job_id: emulator.cluster.jobs[("default", job_id)].copy()
             for (job_id,) in db.execute("SELECT backend_job_id FROM hrwsi.job")}
    assert len(taken) == inputs
    restore_database(database_url, backup)
    assert db.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 0
    return taken


def untouched(emulator, taken: dict[str, dict]) -> bool:
    """Whether the jobs `taken` are as they were: not registered again, stopped nor purged."""
    fields = ("JobModifyIndex", "Version", "Stop", "Status")
    return all(tuple(emulator.cluster.jobs[("default", job_id)][f] for f in fields) == tuple(before[f] for f in fields)
               for job_id, before in taken.items())


async def test_a_nomad_job_id_taken_after_a_restore_runs_the_attempt_under_an_id_of_its_own_leaving_that_job_alone(
        db, database_url, settings, configure, tmp_path, monkeypatch, caplog):
    """After a restore from a backup older than some work, new attempts reuse the task ids and attempts
    of that work, and so its Nomad job IDs: each such attempt was lost (not charged) and the next tried,
    lost alike while the later work's jobs held the IDs (found by exploratory testing). Now the attempt
    runs under an ID of its own, the job that held the ID is neither followed, stopped nor purged, and
    one line says which job ID was taken and why."""
    configure(single_routine_configuration(["true"], workers=1))
    nodes = nomad_nodes(db, monkeypatch)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        taken = await restored_from_a_backup_older_than_work_on_nomad(db, database_url, settings, tmp_path, emulator, 2)
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
            insert_inputs(db, 2, prefix="/in/after-the-restore-")
            await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.processing_task WHERE state = 'processed'")
        jobs = db.execute("SELECT task_id, attempt, state, backend_job_id, claim_token::text FROM hrwsi.job "
                          "ORDER BY task_id").fetchall()
        # each task's first attempt ran, under an ID of its own (that of its claim), charged to nothing
        assert [(attempt, state) for _, attempt, state, _, _ in jobs] == [(1, "processed"), (1, "processed")]
        for task_id, _, _, backend_job_id, claim in jobs:
            assert backend_job_id == f"hrwsi-work-{task_id}-1-c{claim.replace('-', '')[:8]}"
            assert f"hrwsi-work-{task_id}-1" in taken
            assert emulator.cluster.jobs[("default", backend_job_id)]["Meta"]["hrwsi_claim"] == claim
        assert untouched(emulator, taken)
    said = [r.getMessage() for r in caplog.records if "was already taken" in r.getMessage()]
    assert len(said) == 2, said
    assert all("\n" not in line and "restored from a backup older than that job" in line
               and "namespace 'default'" in line for line in said), said
    assert db.execute("SELECT consecutive_failures FROM hrwsi.processing_routine").fetchone()[0] == 0


async def record_nothing_first(self, spec) -> None:
    """Launcher._record_runs_under as a launcher before it did: the ID registered is recorded after (_runs_under)."""


async def adopted_on_its_claims_own_id(db, database_url, settings, emulator, monkeypatch, left_as: str, taken) -> None:
    """A launcher started after the one that registered the attempt under its claim's own ID and could not
    record it (the row left `left_as`, naming the first ID): it follows the job carrying the row's claim
    token, records its ID, registers nothing again, and leaves the later work's jobs alone."""
    monkeypatch.setenv("NOMAD_ADDR", emulator.address)
    nomad_nodes(db, monkeypatch)
    state, backend_job_id, claim = db.execute("SELECT state, backend_job_id, claim_token::text FROM hrwsi.job").fetchone()
    assert (state, backend_job_id) == (left_as, "hrwsi-work-1-1")
    own = f"hrwsi-work-1-1-c{claim.replace('-', '')[:8]}"
    before = emulator.cluster.jobs[("default", own)]["JobModifyIndex"]
    async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
    assert db.execute("SELECT attempt, state, backend_job_id FROM hrwsi.job").fetchall() == [(1, "processed", own)]
    assert emulator.cluster.jobs[("default", own)]["JobModifyIndex"] == before  # followed, not registered again
    output_dir, log_path = db.execute("SELECT output_dir, log_path FROM hrwsi.job").fetchone()
    assert output_dir.endswith(f"/task-1/attempt-1-{own.rsplit('-', 1)[1]}/output") and log_path.endswith(f"/{own}.log")
    assert untouched(emulator, taken)


async def test_an_attempt_whose_launcher_crashed_before_recording_the_id_it_runs_under_is_adopted_from_its_claim(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """ADR 0002 after a restore: the launcher registered the attempt under its claim's own ID (its first
    one taken) and stopped before recording that ID (as a launcher before the ID was recorded ahead of its
    registration did); the adopter, from the job row (the first ID, the claim token), follows that job: not
    registered again, the attempt not run twice."""
    configure(single_routine_configuration(["true"], workers=1))
    nodes = nomad_nodes(db, monkeypatch)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        taken = await restored_from_a_backup_older_than_work_on_nomad(db, database_url, settings, tmp_path, emulator, 1)
        registered = asyncio.Event()

        async def crash(self, job_id, spec, backend_job_id):  # the launcher stops before it records the ID
            registered.set()
            await asyncio.Event().wait()

        monkeypatch.setattr(Launcher, "_record_runs_under", record_nothing_first)
        monkeypatch.setattr(Launcher, "_runs_under", crash)
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
            insert_inputs(db, 1, prefix="/in/after-the-restore-")
            await asyncio.wait_for(registered.wait(), 30)
        monkeypatch.undo()
        await adopted_on_its_claims_own_id(db, database_url, settings, emulator, monkeypatch, "submitted", taken)


async def test_an_attempt_adopted_as_it_runs_under_an_id_its_launcher_did_not_record_is_followed_and_recorded_there(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """Found by review: the launcher registered the attempt under its claim's own ID (its first one taken by
    the later work's job) and could not record that ID, and the attempt was seen running. Adopted without a
    new registration, it was followed on the row's first ID: the later work's job, whose outcome was recorded
    as this attempt's. Now the adopter follows the job carrying the row's claim token and records its ID."""
    configure(single_routine_configuration(["/bin/sh", "-c", "sleep 1", "routine"], workers=1))
    nodes = nomad_nodes(db, monkeypatch)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        taken = await restored_from_a_backup_older_than_work_on_nomad(db, database_url, settings, tmp_path, emulator, 1)

        async def not_recorded(self, job_id, spec, backend_job_id):  # (the record refused: the row keeps the first ID)
            spec = dataclasses.replace(spec, job_id=backend_job_id)
            self._specs[job_id] = spec
            return spec

        monkeypatch.setattr(Launcher, "_record_runs_under", record_nothing_first)
        monkeypatch.setattr(Launcher, "_runs_under", not_recorded)
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
            insert_inputs(db, 1, prefix="/in/after-the-restore-")
            await wait_until(database_url, "SELECT state = 'running' FROM hrwsi.job")
        monkeypatch.undo()
        await adopted_on_its_claims_own_id(db, database_url, settings, emulator, monkeypatch, "running", taken)


async def test_after_a_restore_an_attempt_under_its_claims_own_id_has_a_directory_and_log_of_its_own(
        db, database_url, settings, configure, tmp_path, monkeypatch, caplog):
    """Found by exploratory testing: after a restore in the same installation, the attempt that ran under its
    claim's own ID had the attempt directory and log of the later work's job on the first ID (which may still
    run): its first start moved that job's directory aside, and both would write one output directory and log.
    Now the row records paths of its own, named after that ID (hrwsi logs, the dashboard, the chaining read
    them there), and the later work's directory and log are neither moved, used nor removed."""
    script = 'echo made > "$HRWSI_OUTPUT_DIR/product.dat"; echo "its log line $HRWSI_JOB_ID"'
    configure(single_routine_configuration(["/bin/sh", "-c", script, "routine"], workers=1))
    nodes = nomad_nodes(db, monkeypatch)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        taken = await restored_from_a_backup_older_than_work_on_nomad(db, database_url, settings, tmp_path, emulator, 1)
        later_output = Path(taken["hrwsi-work-1-1"]["TaskGroups"][0]["Tasks"][0]["Env"]["HRWSI_OUTPUT_DIR"])
        [later_log] = settings.home.rglob("hrwsi-work-1-1.log")
        later = {p: p.read_bytes() for p in [*later_output.parent.rglob("*"), later_log] if p.is_file()}
        assert later_output / "product.dat" in later
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
            insert_inputs(db, 1, prefix="/in/after-the-restore-")
            await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
        backend_job_id, output_dir, log_path = db.execute(
            "SELECT backend_job_id, output_dir, log_path FROM hrwsi.job").fetchone()
        suffix = backend_job_id.removeprefix("hrwsi-work-1-1")
        assert suffix.startswith("-c") and len(suffix) == 10
        assert output_dir == f"{later_output.parent}{suffix}/output"
        assert log_path == str(later_log.with_name(f"{backend_job_id}.log"))
        assert f"its log line {backend_job_id}" in Path(log_path).read_text()
        assert db.execute("SELECT path FROM hrwsi.product").fetchall() == [(f"{output_dir}/product.dat",)]
        assert {p: p.read_bytes() for p in later} == later, "the later work's files changed"
        assert not [p for p in later_output.parent.parent.iterdir() if ".moved-" in p.name]
        assert untouched(emulator, taken)
    assert not [r for r in caplog.records if "moved aside" in r.getMessage()]


async def test_an_attempt_recorded_under_its_claims_own_id_never_registers_the_first_once_nomad_collected_its_job(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """Found by exploratory testing: the launcher recorded the claim's own ID after registering it; stopped in
    between, it left the row `submitted` on the first ID, and once Nomad had collected the attempt's job and the
    job on the first ID was gone too, the adopter registered the first ID: the attempt ran under two IDs. Now the
    row names the claim's own ID (and its paths) before that ID is registered, and the first is never registered
    for it."""
    configure(single_routine_configuration(["true"], workers=1))
    nodes = nomad_nodes(db, monkeypatch)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        await restored_from_a_backup_older_than_work_on_nomad(db, database_url, settings, tmp_path, emulator, 1)
        registered, seen = asyncio.Event(), []
        register_as = NomadBackend._register_as

        async def stops_once_its_own_id_is_registered(self, spec, claim, flavour):
            found = await register_as(self, spec, claim, flavour)
            if spec.job_id != "hrwsi-work-1-1":  # the claim's own ID: the launcher stops here
                seen.append(db.execute("SELECT backend_job_id FROM hrwsi.job").fetchone()[0])
                registered.set()
                await asyncio.Event().wait()
            return found

        monkeypatch.setattr(NomadBackend, "_register_as", stops_once_its_own_id_is_registered)
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
            insert_inputs(db, 1, prefix="/in/after-the-restore-")
            await asyncio.wait_for(registered.wait(), 30)
        monkeypatch.setattr(NomadBackend, "_register_as", register_as)
        claim = db.execute("SELECT claim_token::text FROM hrwsi.job").fetchone()[0]
        own = f"hrwsi-work-1-1-c{claim.replace('-', '')[:8]}"
        assert seen == [own], "the row did not name the ID registered"
        for job_id in (own, "hrwsi-work-1-1"):  # Nomad's GC collects the attempt's job, the later work's goes too
            await asyncio.to_thread(requests.delete, f"{emulator.address}/v1/job/{job_id}", params={"purge": "true"})
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
            await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
        assert ("default", "hrwsi-work-1-1") not in emulator.cluster.jobs, "the first ID was registered again"
        assert db.execute("SELECT attempt, state, backend_job_id FROM hrwsi.job").fetchall() == [(1, "processed", own)]


async def test_a_cancel_that_comes_while_the_attempt_goes_to_its_claims_own_id_stops_it_and_records_it_cancelled(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """Found by exploratory testing: `hrwsi cancel` after the first ID was found taken and before the attempt's
    own was registered stopped nothing (the stop named the first ID, a job this database does not know, or the
    claim's own before anything held it), and the attempt ran to its end. Now a cancel that comes while the job
    is being registered stops it once it is, under whichever ID, and the attempt is recorded cancelled."""
    # (the later work's attempt ends at once, this one runs until it is stopped: exec, as Nomad sends the stop
    # signal to the task's process only, and a shell waiting for its sleep would defer it for the kill timeout)
    script = 'case "$HRWSI_INPUT_PATH" in *after-the-restore*) exec sleep 30;; esac'
    configure(single_routine_configuration(["/bin/sh", "-c", script, "routine"], workers=1))
    nodes = nomad_nodes(db, monkeypatch)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        monkeypatch.setattr(Launcher, "__init__", remembered(Launcher.__init__, launchers := []))
        taken = await restored_from_a_backup_older_than_work_on_nomad(db, database_url, settings, tmp_path, emulator, 1)
        register_as = NomadBackend._register_as

        async def cancelled_before_its_own_id_is_registered(self, spec, claim, flavour):
            if spec.job_id != "hrwsi-work-1-1":
                db.execute("SELECT hrwsi.cancel_task(1)")
                await launchers[-1].cancel_requested_jobs()  # (what the notification wakes)
            return await register_as(self, spec, claim, flavour)

        monkeypatch.setattr(NomadBackend, "_register_as", cancelled_before_its_own_id_is_registered)
        # (no backstop poll during the test: a later run of the cancel step would stop the job, 2 s later by
        # default, and the test is of the cancel that came)
        quiet = dataclasses.replace(settings, backstop_poll_s=600.0)
        async with App(database_url, ["launcher"], quiet, backend=NomadBackend(), pool_size=5):
            insert_inputs(db, 1, prefix="/in/after-the-restore-")
            await wait_until(database_url, "SELECT state = 'cancelled' FROM hrwsi.job", timeout=20)
        assert db.execute("SELECT state FROM hrwsi.processing_task").fetchone()[0] == "cancelled"
        backend_job_id = db.execute("SELECT backend_job_id FROM hrwsi.job").fetchone()[0]
        assert backend_job_id != "hrwsi-work-1-1"
        assert emulator.cluster.jobs[("default", backend_job_id)]["Stop"] is True
        assert untouched(emulator, taken)


def remembered(init, instances: list):
    """`init` (an __init__) that also appends each instance it makes to `instances`."""
    def remembering(self, *args, **kwargs):
        init(self, *args, **kwargs)
        instances.append(self)
    return remembering


async def test_a_nomad_namespace_another_installation_registers_in_is_said_by_status_while_it_does(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """Found by exploratory testing: since an attempt whose ID another installation's job holds runs under an ID
    of its own, nothing was refused any more, and `hrwsi status` (the launcher's problem, which the dashboard shows
    too) no longer said that the namespace was shared: only each such attempt's warning did. Now the launcher's
    problem says it, what it means and what to do, while that installation's jobs are in the namespace."""
    from hrwsi.backends.nomad import backend as backend_module

    monkeypatch.setattr(backend_module, "SHARED_NAMESPACE_CHECK_S", 0.1)
    configure(single_routine_configuration(["true"], workers=1))
    nodes = nomad_nodes(db, monkeypatch)
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        theirs = {"ID": "hrwsi-work-1-1", "Type": "batch", "Meta": {"hrwsi_installation": "staging-0001"},
                  "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec",
                                                          "Config": {"command": "/bin/true"}}]}]}
        response = await asyncio.to_thread(requests.post, f"{emulator.address}/v1/jobs", json={"Job": theirs})
        assert response.status_code == 200, response.text
        async with App(database_url, ["launcher"], settings, backend=NomadBackend(), pool_size=5):
            insert_inputs(db, 1)
            await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task")
            await wait_until(database_url, "SELECT problem LIKE '%another hrwsi installation (staging-0001) registers "
                             "its jobs in Nomad namespace ''default'' too%' FROM hrwsi.service_instance")
            problem = db.execute("SELECT problem FROM hrwsi.service_instance").fetchone()[0]
            assert "give each installation a namespace of its own" in problem and "NOMAD_NAMESPACE" in problem
            await asyncio.to_thread(requests.delete, f"{emulator.address}/v1/job/hrwsi-work-1-1",
                                    params={"purge": "true"})
            await wait_until(database_url, "SELECT problem IS NULL FROM hrwsi.service_instance")


async def test_a_cancelled_attempt_whose_routine_ignores_the_stop_is_said_stopping_then_killed(
        db, database_url, settings, configure, tmp_path):
    """A routine that ignores the stop signal showed "running" until it was killed (Nomad's kill_timeout, the local
    supervisor's grace), as if nothing had been asked, and its outcome said "cancelled" alone (found by review).
    Meanwhile its attempt says it is stopping, since when and when it is killed; its outcome, that it was."""
    import sys

    runs = tmp_path / "runs"
    routine = ("import pathlib, signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               f"pathlib.Path({str(runs)!r}).touch()\nwhile True:\n    time.sleep(0.05)\n")
    configure(single_routine_configuration([sys.executable, "-c", routine]))
    async with running(database_url, ["launcher"], settings, backend="local"):
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'", timeout=60)
        await wait_until_true(runs.exists, 30)
        db.execute("SELECT hrwsi.cancel_task(id) FROM hrwsi.processing_task")
        await wait_until(database_url, "SELECT message LIKE 'stopping: %' FROM hrwsi.job", timeout=10)
        state, message = db.execute("SELECT state, message FROM hrwsi.job").fetchone()
        assert state == "running", state
        said = re.fullmatch(r"stopping: an operator cancelled it, asked to stop at (\d\d:\d\d:\d\d) UTC; killed at "
                            r"(\d\d:\d\d:\d\d) UTC if it has not ended by then", message)
        assert said, message
        asked, killed = (datetime.strptime(t, "%H:%M:%S") for t in said.groups())
        assert (killed - asked).total_seconds() % 86_400 == 5, message  # (the local supervisor's grace)
        await wait_until(database_url, "SELECT state = 'cancelled' FROM hrwsi.job", timeout=30)
    message = db.execute("SELECT message FROM hrwsi.job").fetchone()[0]
    assert message == ("cancelled by an operator: cancelled; it ignored the stop (SIGTERM) and was killed (SIGKILL) 5 s "
                       "after it was asked to stop"), message


async def test_twenty_cancelled_local_attempts_whose_routine_ignores_the_stop_all_end_within_the_grace_not_one_after_another(
        db, database_url, settings, configure, tmp_path):
    """Found by rehearsal: the cancel step stopped the local jobs one at a time, each stop waiting for its attempt's
    end (the supervisor's grace, then its kill): 20 cancelled attempts whose routine ignores SIGTERM took 20 graces,
    minutes, the step held all along. They are stopped together: all end within about one grace."""
    import sys

    runs = tmp_path / "runs"
    runs.mkdir()
    routine = ("import os, pathlib, signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               f"pathlib.Path({str(runs)!r}, str(os.getpid())).touch()\nwhile True:\n    time.sleep(0.2)\n")
    configure(single_routine_configuration([sys.executable, "-c", routine], workers=5))
    async with running(database_url, ["launcher"], settings, backend="local"):
        insert_inputs(db, 20)
        await wait_until(database_url, "SELECT count(*) = 20 FROM hrwsi.job WHERE state = 'running'", timeout=90)
        await wait_until_true(lambda: len(list(runs.iterdir())) == 20, 60)
        asked = time.monotonic()
        db.execute("SELECT hrwsi.cancel_task(id) FROM hrwsi.processing_task")
        await wait_until(database_url, "SELECT count(*) = 20 FROM hrwsi.job WHERE state = 'cancelled'", timeout=60)
        took = time.monotonic() - asked
    assert took < 5 + 6, f"20 cancelled attempts ended {took:.1f} s after they were cancelled (grace 5 s)"
