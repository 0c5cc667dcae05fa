"""A local job's outcome survives its launcher (issue 14): a launcher process killed with kill -9
mid-job; the routine finishes on its own; the launcher that adopts the job records the real outcome
and its products, and nothing runs twice."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time

from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until

# Logs each run, waits for `release` beside the task directory, writes a product.
ROUTINE = """
import os, pathlib, time
out = pathlib.Path(os.environ['HRWSI_OUTPUT_DIR'])
flags = pathlib.Path(os.environ['ADOPTION_FLAGS'])
with open(flags / 'runs', 'a') as runs:
    runs.write(os.environ['HRWSI_JOB_ID'] + '\\n')
while not (flags / 'release').exists():
    time.sleep(0.05)
(out / 'product.txt').write_text('made')
"""


def launcher_process(database_url: str, home, flags, lease_s: float = 2) -> subprocess.Popen:
    env = {**os.environ, "HRWSI_DATABASE_URL": database_url, "HRWSI_HOME": str(home), "HRWSI_BACKEND": "local",
           "HRWSI_HEARTBEAT_S": "0.5", "HRWSI_LEASE_TIMEOUT_S": str(lease_s), "HRWSI_BACKSTOP_POLL_S": "0.5",
           "HRWSI_RETRY_BACKOFF_S": "0.05", "ADOPTION_FLAGS": str(flags)}
    log = open(home / "launcher.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "hrwsi", "launcher"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    finally:
        log.close()


async def test_a_job_finished_after_its_launcher_was_killed_is_recorded_processed_with_its_products(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    flags = tmp_path / "flags"
    flags.mkdir()
    home = settings.home  # (restarted with the same HRWSI_HOME: only a launcher sharing its data directory adopts)
    home.mkdir(parents=True, exist_ok=True)
    configure(single_routine_configuration([sys.executable, "-c", ROUTINE]))
    first = launcher_process(database_url, home, flags)
    try:
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'", timeout=60)
        deadline = time.monotonic() + 30
        while not (flags / "runs").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    (flags / "release").touch()  # the routine finishes with no launcher left
    output_dir = db.execute("SELECT output_dir FROM hrwsi.job").fetchone()[0]
    exit_file = os.path.join(os.path.dirname(output_dir), "exit.json")
    deadline = time.monotonic() + 30
    while not os.path.exists(exit_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(exit_file), "the supervisor outlived its launcher and wrote the outcome"

    monkeypatch.setenv("ADOPTION_FLAGS", str(flags))
    # A launcher whose data directory is another (another host's, which cannot see the attempt's
    # files) leaves the job alone: it took it for never started and ran it again (found by
    # exploratory testing).
    owner = db.execute("SELECT owner FROM hrwsi.job").fetchone()[0]
    elsewhere = dataclasses.replace(settings, home=tmp_path / "another-host")
    async with running(database_url, ["launcher"], elsewhere, backend="local"):
        await asyncio.sleep(4 * settings.lease_timeout_s)
        assert db.execute("SELECT owner, state FROM hrwsi.job").fetchone() == (owner, "running")
    async with running(database_url, ["launcher"], settings, backend="local"):
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task", timeout=60)
    assert db.execute("SELECT attempt, state, exit_code, fault FROM hrwsi.job").fetchall() == [
        (1, "processed", 0, None)], "the real outcome, not lost, and no second attempt"
    products = db.execute("SELECT path FROM hrwsi.product").fetchall()
    assert products == [(os.path.join(output_dir, "product.txt"),)]
    assert (flags / "runs").read_text().count("\n") == 1, "the routine ran once"


async def test_an_outcome_queued_under_a_lapsed_identity_is_dropped_not_recorded_by_the_new_one(db, pool, settings):
    """Found by chaos (a PostgreSQL immediate stop): a launcher's lease lapsed while its followers had
    outcomes queued; under its new identity it adopted the same jobs and recorded them again, and the
    stale outcome and the new one, in one batch, made a finished attempt fail on its own products."""
    from hrwsi.backends.base import JobOutcome
    from hrwsi.backends.dry_run import DryRunBackend
    from hrwsi.launcher import Launcher, _Finished, spec_from_row
    from tests.integration.test_leases import LEASE, a_dispatched_job, register

    register(db, "old")
    job = a_dispatched_job(db, "old")
    register(db, "new")
    db.execute("UPDATE hrwsi.job SET owner = 'new' WHERE id = %s", (job,))  # the new identity adopted it
    launcher = Launcher(pool, settings.__class__(**{**settings.__dict__, "lease_timeout_s": LEASE}), DryRunBackend())
    launcher.instance_id = "new"
    async with pool.acquire() as conn:
        spec = spec_from_row(await conn.fetchrow("SELECT * FROM hrwsi.job_spec WHERE job_id = $1", job))
    loop = asyncio.get_running_loop()
    done = JobOutcome("processed", 0, "exit code 0")
    stale, fresh = loop.create_future(), loop.create_future()
    launcher._outcomes.put_nowait(_Finished(job, spec, done, [("/data/p.txt", 1)], stale, "old"))
    launcher._outcomes.put_nowait(_Finished(job, spec, done, [("/data/p.txt", 1)], fresh, "new"))
    await launcher.start()
    try:
        assert await asyncio.wait_for(stale, 30) is None, "the stale outcome is dropped"
        assert (await asyncio.wait_for(fresh, 30))["job_state"] == "processed"
    finally:
        launcher._writer.cancel()
        await asyncio.gather(launcher._writer, return_exceptions=True)
    assert db.execute("SELECT state, owner FROM hrwsi.job").fetchall() == [("processed", "new")]
    assert db.execute("SELECT path FROM hrwsi.product").fetchall() == [("/data/p.txt",)]


async def test_a_launcher_restarted_after_a_kill_takes_the_dead_ones_jobs_without_waiting_for_its_lease(
        db, database_url, settings, configure, tmp_path, monkeypatch, caplog):
    """A launcher killed with kill -9 and restarted at once waited the dead one's lease (30 s) before it
    adopted its jobs, which held their workers' capacity meanwhile: near-real-time inputs waited behind
    them (found by exploratory testing). The dead one's process is gone: its lease is taken over at once,
    its job adopted, and its attempt runs once."""
    flags = tmp_path / "flags"
    flags.mkdir()
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    configure(single_routine_configuration([sys.executable, "-c", ROUTINE]))
    first = launcher_process(database_url, home, flags, lease_s=60)  # (long: waiting for it fails the test)
    try:
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'", timeout=60)
        dead = db.execute("SELECT owner FROM hrwsi.job").fetchone()[0]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    monkeypatch.setenv("ADOPTION_FLAGS", str(flags))
    restarted = dataclasses.replace(settings, lease_timeout_s=60.0, heartbeat_s=5.0)
    started = time.monotonic()
    async with running(database_url, ["launcher"], restarted, backend="local") as (launcher,):
        await wait_until(database_url, "SELECT bool_and(owner = $1) FROM hrwsi.job", launcher.instance_id, timeout=10)
        assert time.monotonic() - started < 10, "taken over at once, not after the 60 s lease"
        (flags / "release").touch()
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task", timeout=30)
    assert db.execute("SELECT attempt, state FROM hrwsi.job").fetchall() == [(1, "processed")]
    assert (flags / "runs").read_text().count("\n") == 1, "the routine ran once"
    said = [r.getMessage() for r in caplog.records if "took over the lease" in r.getMessage()]
    assert len(said) == 1 and dead in said[0] and "no process has its pid" in said[0], said


async def test_an_attempt_that_ended_before_a_reboot_is_never_recorded_as_ending_after_it_was_seen(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """Its end, read from the host's wall clock as it was then (a supervisor on another boot, which the clock that only
    goes forward cannot compare with), was corrected by the offset measured when it was recorded: a clock ten minutes
    fast when it ended, right since, put its end ten minutes after the launcher saw it (found by review). It ended
    before it was seen: that is what is recorded and said."""
    import json
    from datetime import datetime, timedelta

    flags = tmp_path / "flags"
    flags.mkdir()
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    configure(single_routine_configuration([sys.executable, "-c", ROUTINE]))
    first = launcher_process(database_url, home, flags)
    try:
        insert_inputs(db, 1)
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'", timeout=60)
        deadline = time.monotonic() + 30
        while not (flags / "runs").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    (flags / "release").touch()
    output_dir = db.execute("SELECT output_dir FROM hrwsi.job").fetchone()[0]
    exit_file = os.path.join(os.path.dirname(output_dir), "exit.json")
    deadline = time.monotonic() + 30
    while not os.path.exists(exit_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(exit_file) as file:
        found = json.load(file)
    fast = timedelta(minutes=10)  # (its host's clock then; another boot's reading of the clock that only goes forward)
    found |= {"started_at": (datetime.fromisoformat(found["started_at"]) + fast).isoformat(),
              "finished_at": (datetime.fromisoformat(found["finished_at"]) + fast).isoformat(), "clock": "another-boot -"}
    with open(exit_file, "w") as file:
        json.dump(found, file)

    monkeypatch.setenv("ADOPTION_FLAGS", str(flags))
    async with running(database_url, ["launcher"], settings, backend="local"):
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task", timeout=60)
    seen_by, started, finished, message, now = db.execute(
        "SELECT submitted_at, started_at, finished_at, message, now() FROM hrwsi.job").fetchone()
    assert finished <= now and started <= finished and started >= seen_by, (seen_by, started, finished, now)
    assert "; it ended before " in message and "when its launcher saw it" in message, message
