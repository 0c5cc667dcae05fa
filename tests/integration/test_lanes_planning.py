"""Lanes in planning (ADR 0009): near-real-time work takes the queue position of archive work that
waits, and is planned with its deadline; the planner's mode and horizon come from configuration."""

from hrwsi.configuration import load
from hrwsi.orchestrator import Orchestrator
from hrwsi.sql_files import query
from tests.integration.conftest import running, wait_until


def lanes_configuration(**budget):
    return {
        "budget": {"vm_max": 1, **budget},
        "flavour": [{"name": "f", "cpu": 4, "ram_mb": 8000, "disk_mb": 10000}],
        "worker": [{"name": "w1", "flavour": "f"}],
        "routine": [{"name": name, "cpu": 4, "ram_mb": 1000, "storage_mb": 100, "expected_duration_s": 60,
                     "command": ["true"], "input_product_type": kind, "output_product_type": "OUT"}
                    for name, kind in (("backfill", "OLD"), ("fresh", "NEW"))],
        "condition": [{"name": "old", "routine": "backfill", "lane": "archive"},
                      {"name": "new", "routine": "fresh", "deadline_hours": 3}],
    }


def busy_worker(db):
    """One archive task runs on the only worker (it holds it for its expected 60 s from its start)."""
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('old', '/old/running')")
    db.execute("""UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(),
                  attempts = 1""")
    db.execute("UPDATE hrwsi.processing_task SET state = 'running'")
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, started_at)
                  SELECT id, 1, 'dry-run', 'hrwsi-backfill-' || id || '-1', 'w1', 'running', now()
                  FROM hrwsi.processing_task""")


async def test_near_real_time_work_is_planned_ahead_of_archive_work_that_waits(db, database_url, settings):
    load(db, lanes_configuration())
    busy_worker(db)
    async with running(database_url, ["orchestrator"], settings) as (orchestrator,):
        orchestrator.plan_after_s = 0.0
        db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                      SELECT 'old', '/old/' || g FROM generate_series(1, 3) g""")
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'planned'")
        db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at)
                      VALUES ('new', '/new/1', now() - interval '10 minutes')""")
        await wait_until(database_url, "SELECT count(*) = 4 FROM hrwsi.processing_task WHERE state = 'planned'")
    fresh_start, first_archive_start = db.execute("""
        SELECT min(planned_start) FILTER (WHERE lane = 'nrt'), min(planned_start) FILTER (WHERE lane = 'archive')
        FROM hrwsi.processing_task WHERE state = 'planned'""").fetchone()
    assert fresh_start <= first_archive_start, "the near-real-time task takes the first queue position"
    running_end = db.execute("""SELECT planned_start + interval '60 s' FROM hrwsi.processing_task
                                WHERE state = 'running'""").fetchone()[0]
    assert abs((fresh_start - running_end).total_seconds()) < 5, "it waits for the running task only"
    assert db.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'deadline_at_risk'").fetchone()[0] == 0


async def test_deadline_mode_from_configuration_plans_within_the_horizon(db, database_url, settings):
    load(db, lanes_configuration(plan_mode="deadline", plan_horizon_hours=1))
    assert db.execute("SELECT plan_mode, extract(epoch FROM plan_horizon) FROM hrwsi.budget").fetchone() == \
        ("deadline", 3600)
    async with running(database_url, ["orchestrator"], settings) as (orchestrator,):
        orchestrator.plan_after_s = 0.0
        db.execute("UPDATE hrwsi.worker SET active = false")  # nothing dispatches: the plan is what is seen
        db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                      SELECT 'old', '/old/' || g FROM generate_series(1, 3) g""")
        db.execute("UPDATE hrwsi.worker SET active = true")
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'planned'")
    figures = db.execute("SELECT figures FROM hrwsi.plan ORDER BY id DESC LIMIT 1").fetchone()[0]["figures"]
    assert figures["horizon_s"] == 3600 and not figures["horizon_missed_by_s"]


async def test_a_level_whose_tasks_cannot_be_planned_is_set_aside_and_the_next_level_planned_in_the_same_round(
        db, pool, settings):
    """A near-real-time routine above the CPU budget made every round plan its level only, set nothing
    aside that changed, and ask to run again at once: ~350 rounds a second, the archive work never
    planned (found by exploratory testing)."""
    document = lanes_configuration(cpu_max=2)
    document["routine"][0]["cpu"] = 1  # backfill, archive lane: fits the budget; fresh (4 CPU) does not
    load(db, document)
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('new', '/new/1')")
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                  SELECT 'old', '/old/' || g FROM generate_series(1, 50) g""")
    orchestrator = Orchestrator(pool, settings)
    orchestrator.plan_after_s = 0.0
    await pool.execute(query("register_instance"), orchestrator.instance_id, "orchestrator", "here", 1, "test",
                       None, None, None, None)
    rounds = 1
    while await orchestrator.plan():
        rounds += 1
        assert rounds < 5, "the round that sets a level aside plans the next one"
    assert db.execute("""SELECT count(*) FROM hrwsi.processing_task
                         WHERE routine = 'backfill' AND state = 'planned'""").fetchone()[0] == 50
    reason = db.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE routine = 'fresh'").fetchone()
    assert reason[0] == "pending" and "needs 4 CPU but the CPU budget is 2" in reason[1]
    # Nothing left to plan: a further round stores nothing and does not ask to run again.
    assert await orchestrator.plan() is False
