"""A worker that vanishes: its planned tasks and the jobs still waiting for it go to the workers that
remain. The Nomad tests run against the Nomad API emulator, the project's one test double."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import asyncpg
import pytest

from hrwsi.app import App
from hrwsi.backends.base import JobOutcome
from hrwsi.backends.dry_run import DryRunBackend
from hrwsi.sql_files import query
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from tests.integration.conftest import insert_inputs, running, single_routine_configuration, wait_until


async def execute(url: str, sql: str, *args) -> None:
    """Change data while services run, without blocking their event loop (psycopg would)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def worker_names(db) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM hrwsi.worker ORDER BY name")]


@pytest.fixture
async def emulated_nomad(db, configure, tmp_path, monkeypatch):
    """Two workers, one emulated Nomad node for each (same names), NOMAD_ADDR pointing at them."""
    configure(single_routine_configuration(["true"], workers=2))
    nodes = [EmulatedNode(name, cpu_mhz=4000, memory_mb=16000, disk_mb=50000) for name in worker_names(db)]
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        monkeypatch.setenv("HRWSI_NOMAD_MHZ_PER_CORE", "1000")
        monkeypatch.delenv("NOMAD_TOKEN", raising=False)
        yield emulator


async def test_planned_tasks_of_a_deactivated_worker_are_planned_again(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    first, second = worker_names(db)
    db.execute("UPDATE hrwsi.worker SET active = (name = %s)", (first,))
    insert_inputs(db, 3)
    async with running(database_url, ["orchestrator"], settings):
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task "
                                       "WHERE state = 'planned' AND worker = $1", first)
        await execute(database_url, "UPDATE hrwsi.worker SET active = false WHERE name = $1", first)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.task_event WHERE state = 'pending' "
                         "AND reason = $1", f"its worker {first} is no longer active; planned again")
        # (then another worker comes: a worker added or back plans every planned task again itself)
        await execute(database_url, "UPDATE hrwsi.worker SET active = true WHERE name = $1", second)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task "
                                       "WHERE state = 'planned' AND worker = $1", second)


async def test_every_planned_task_is_planned_again_when_a_worker_is_added_or_the_budget_changes(
        db, database_url, settings, configure):
    """A worker added to catch up stayed idle while the planned work waited on the old ones, and a
    smaller budget left a plan made for the larger one, which missed its deadlines with no at-risk
    alert (found by exploratory testing)."""
    configure(single_routine_configuration(["true"], workers=2))
    first, second = worker_names(db)
    db.execute("UPDATE hrwsi.worker SET active = (name = %s)", (first,))
    insert_inputs(db, 4)
    db.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = %s, planned_start = now(), "
               "planned_end = now() + interval '1 min'", (first,))
    db.execute("UPDATE hrwsi.budget SET cpu_max = cpu_max")  # unchanged: nothing is planned again
    db.execute("INSERT INTO hrwsi.worker (name, flavour, active) SELECT 'idle', flavour, false FROM hrwsi.worker "
               "LIMIT 1")  # added inactive: nothing either
    assert db.execute("SELECT count(*) FROM hrwsi.processing_task WHERE state = 'planned'").fetchone()[0] == 4
    db.execute("UPDATE hrwsi.worker SET active = true WHERE name = %s", (second,))
    assert db.execute("SELECT DISTINCT state, worker, state_reason FROM hrwsi.processing_task").fetchall() == [
        ("pending", None, f"worker {second} was added: planned again")]
    db.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = %s, planned_start = now(), "
               "planned_end = now() + interval '1 min'", (first,))
    db.execute("UPDATE hrwsi.budget SET cpu_max = 1")
    assert db.execute("SELECT DISTINCT state, worker, state_reason FROM hrwsi.processing_task").fetchall() == [
        ("pending", None, "the budget changed: planned again")]
    assert db.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 4


async def test_a_nomad_job_waiting_for_a_deactivated_worker_runs_elsewhere(db, database_url, settings,
                                                                        emulated_nomad):
    first, second = worker_names(db)
    emulated_nomad.set_eligibility(first, False)  # a job pinned there stays blocked: queued
    db.execute("UPDATE hrwsi.worker SET active = (name = %s)", (first,))
    insert_inputs(db, 1)
    # Node status is not followed here (its interval is lease_timeout_s / 2): an operator, or
    # `hrwsi workers sync`, deactivates the worker.
    unfollowed = dataclasses.replace(settings, lease_timeout_s=600)
    async with running(database_url, ["orchestrator", "launcher"], unfollowed, backend="nomad"):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'queued'")
        # away for longer than the launcher's grace (STRANDED_AFTER_S)
        await execute(database_url, "UPDATE hrwsi.worker SET active = (name = $1), "
                                    "updated_at = now() - interval '1 minute'", second)
        await wait_until(database_url, "SELECT state = 'processed' FROM hrwsi.processing_task", timeout=30)
    jobs = db.execute("SELECT attempt, worker, state, message FROM hrwsi.job ORDER BY attempt").fetchall()
    assert [(j[0], j[1], j[2]) for j in jobs] == [(1, first, "lost"), (2, second, "processed")]
    assert jobs[0][3] == f"its worker {first} was no longer active before the job started; planned again"
    failures = db.execute("SELECT failures FROM hrwsi.processing_task").fetchone()[0]
    assert failures == 0, "a vanished worker is not the routine's failure"


async def test_workers_follow_their_nomad_nodes_status(db, database_url, settings, emulated_nomad):
    first, second = worker_names(db)
    follow_fast = dataclasses.replace(settings, lease_timeout_s=1.0)
    async with running(database_url, ["launcher"], follow_fast, backend="nomad"):
        emulated_nomad.node_down(first)
        await wait_until(database_url, "SELECT NOT active FROM hrwsi.worker WHERE name = $1", first, timeout=15)
        emulated_nomad.node_up(first)
        await wait_until(database_url, "SELECT active FROM hrwsi.worker WHERE name = $1", first, timeout=15)
        emulated_nomad.set_eligibility(second, False)
        await wait_until(database_url, "SELECT NOT active FROM hrwsi.worker WHERE name = $1", second, timeout=15)
        # an admin's `nomad node drain -enable` (POST /v1/node/:id/drain), then `-disable -keep-ineligible=false`
        emulated_nomad.drain(first, deadline_s=3600)
        await wait_until(database_url, "SELECT NOT active FROM hrwsi.worker WHERE name = $1", first, timeout=15)
        emulated_nomad.drain(first, None, mark_eligible=True)
        await wait_until(database_url, "SELECT active FROM hrwsi.worker WHERE name = $1", first, timeout=15)


class WaitingBackend(DryRunBackend):
    """The dry-run backend, except that its jobs wait until they are stopped, and the first stop
    brings the worker back (a node that was down for a moment returns while the launcher stops the
    jobs that waited for it, one request each)."""

    def __init__(self, url: str, worker: str):
        super().__init__()
        self.url, self.worker = url, worker
        self.stopped: list[str] = []
        self.waiting: dict[str, asyncio.Event] = {}

    async def wait(self, spec, backend_job_id, on_progress):
        self.waiting[backend_job_id] = asyncio.Event()
        await self.waiting[backend_job_id].wait()
        now = datetime.now(UTC)
        return JobOutcome("cancelled", None, "stopped", now, now)

    async def cancel(self, spec, backend_job_id):
        if not self.stopped:
            await execute(self.url, "UPDATE hrwsi.worker SET active = true, updated_at = now() WHERE name = $1",
                          self.worker)
        self.stopped.append(backend_job_id)
        self.waiting[backend_job_id].set()


async def test_jobs_are_not_stopped_once_their_worker_is_back(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    first, second = worker_names(db)
    db.execute("UPDATE hrwsi.worker SET active = (name = %s)", (first,))
    insert_inputs(db, 3)
    backend = WaitingBackend(database_url, first)
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5) as app:
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.job WHERE state = 'submitted' "
                                       "AND worker = $1", first)
        await execute(database_url, "UPDATE hrwsi.worker SET active = false, updated_at = now() - interval '1 minute' "
                                    "WHERE name = $1", first)  # away for longer than STRANDED_AFTER_S
        # The service's own sweep: its steps run one at a time, as in production. (Called directly,
        # the sweep could overlap the backstop's, which checked a job before the first stop brought
        # the worker back: two jobs stopped, seen once in CI on 2026-12-02.)
        app.services[0].wake("release_stranded")
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'lost'")
        await asyncio.sleep(4 * settings.backstop_poll_s)  # the backstop's sweeps find the worker back
        assert len(backend.stopped) == 1, "after the first stop the worker was back: the other jobs go on"
        waiting = db.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'submitted' AND worker = %s "
                             "AND attempt = 1", (first,)).fetchone()[0]
        assert waiting == 2  # (the stopped one's task may have its next attempt there by now)
        for job_id in list(backend.waiting):
            backend.waiting[job_id].set()


async def test_jobs_wait_for_a_worker_that_is_away_for_a_moment(db, database_url, settings, configure):
    configure(single_routine_configuration(["true"], workers=2))
    first, _second = worker_names(db)
    db.execute("UPDATE hrwsi.worker SET active = (name = %s)", (first,))
    insert_inputs(db, 2)
    backend = WaitingBackend(database_url, first)
    async with App(database_url, ["launcher"], settings, backend=backend, pool_size=5) as app:
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.job WHERE state = 'submitted' "
                                       "AND worker = $1", first)
        await execute(database_url, "UPDATE hrwsi.worker SET active = false, updated_at = now() WHERE name = $1",
                      first)  # its node just went down: it may be back in a moment (Nomad's heartbeat grace)
        await app.services[0].release_stranded_jobs()
        assert backend.stopped == []
        for event in backend.waiting.values():
            event.set()


async def test_planned_tasks_a_changed_configuration_no_longer_fits_are_planned_again_or_named(
        db, database_url, settings, configure):
    # Found by exploratory testing (2026-12-05): a routine's CPU raised beyond every flavour left its
    # planned tasks planned for ever, without a reason, and status did not list them (migration 0054).
    configure(single_routine_configuration(["true"], workers=2))
    insert_inputs(db, 3)
    all_three = "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE "
    async with running(database_url, ["orchestrator"], settings):
        await wait_until(database_url, all_three + "state = 'planned'")
        await execute(database_url, "UPDATE hrwsi.processing_routine SET cpu = 8 WHERE name = 'work'")
        await wait_until(database_url, all_three + "state = 'pending' AND state_reason LIKE '%needs 8 CPU but the "
                                                   "largest flavour has 4 CPU%'")
        await execute(database_url, "UPDATE hrwsi.processing_routine SET cpu = 1 WHERE name = 'work'")
        await wait_until(database_url, all_three + "state = 'planned'")
        await execute(database_url, "UPDATE hrwsi.flavour SET cpu = 0.5")
        await wait_until(database_url, all_three + "state = 'pending' AND state_reason LIKE '%needs 1 CPU%'")
    said = dict(db.execute("SELECT reason, count(*) FROM hrwsi.task_event WHERE state = 'pending' GROUP BY reason"))
    assert said["routine work changed (CPU, RAM, storage or flavour): planned again"] == 3
    assert sum(n for reason, n in said.items() if reason and reason.startswith("the flavour f of its worker w")) == 3


def test_a_task_sent_back_to_pending_from_a_deactivated_worker_names_no_worker_and_no_planned_time(db, configure):
    """As every other way back to pending (a pending task showed `pending | L02`; found by exploratory testing)."""
    configure(single_routine_configuration(["true"], workers=2))
    first, _second = worker_names(db)
    insert_inputs(db, 2)
    db.execute("""UPDATE hrwsi.processing_task SET state = 'planned', worker = %s, planned_start = now(),
                  planned_end = now() + interval '1 s'""", (first,))
    db.execute("UPDATE hrwsi.worker SET active = false WHERE name = %s", (first,))
    released = db.execute(query("release_tasks_of_inactive_workers")).fetchall()
    assert sorted(w for _id, w in released) == [first, first], "the worker it left is still said"
    assert db.execute("""SELECT DISTINCT state, worker, planned_start, planned_end, state_reason
                         FROM hrwsi.processing_task""").fetchall() == \
        [("pending", None, None, None, f"its worker {first} is no longer active; planned again")]


async def test_a_task_nomad_could_not_place_on_its_worker_runs_its_next_attempt_on_another(
        db, database_url, settings, configure, tmp_path, monkeypatch):
    """Nomad could not place a job on the worker hrwsi pinned it to (another team's job had taken that
    node's memory): after HRWSI_NOMAD_UNPLACED_LIMIT_S it was purged and its attempt lost, and the next
    attempt went back to the same worker, which hrwsi counts free, a round of 600 s after another while
    the other worker was idle (found by review)."""
    configure(single_routine_configuration(["true"], workers=2))
    first, second = worker_names(db)
    # (the first node has less memory left than the routine's 1000 MB: what hrwsi's flavour cannot see)
    nodes = [EmulatedNode(first, cpu_mhz=4000, memory_mb=500, disk_mb=50000),
             EmulatedNode(second, cpu_mhz=4000, memory_mb=16000, disk_mb=50000)]
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        monkeypatch.setenv("HRWSI_NOMAD_MHZ_PER_CORE", "1000")
        monkeypatch.setenv("HRWSI_NOMAD_UNPLACED_LIMIT_S", "1")
        monkeypatch.delenv("NOMAD_TOKEN", raising=False)
        insert_inputs(db, 1)
        async with running(database_url, ["orchestrator", "launcher"], settings, backend="nomad"):
            await wait_until(database_url, "SELECT count(*) >= 2 FROM hrwsi.job", timeout=30)
            await wait_until(database_url, "SELECT bool_or(state NOT IN ('submitted', 'queued')) FROM hrwsi.job "
                                           "WHERE attempt = 2", timeout=30)
    jobs = db.execute("SELECT attempt, worker, state, fault FROM hrwsi.job ORDER BY attempt").fetchall()
    assert jobs[:2] == [(1, first, "lost", "not_placed"), (2, second, "processed", None)], jobs
    task, failures, avoided = db.execute("SELECT id, failures, avoid_worker FROM hrwsi.processing_task").fetchone()
    assert failures == 0 and avoided is None, "not the routine's fault; forgotten once an attempt ran"
    reasons = [r[0] for r in db.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id", (task,))]
    lost = next(r for r in reasons if r and r.startswith("attempt 1 lost: Nomad could not place job"))
    assert lost.endswith(f"; its next attempt goes to another worker than {first}"), lost
    # (`hrwsi task show` lists these: why the next attempt went elsewhere)
    assert any(f"on worker {second}, not {first}, where its last attempt could not be placed" in (r or "")
               for r in reasons), reasons
