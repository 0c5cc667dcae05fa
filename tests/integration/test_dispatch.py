"""hrwsi.dispatch: one call claims the ready tasks that fit now, in serving order (ADR 0009)."""

import functools
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from hrwsi.sql_files import query
from tests.integration.test_schema import drain, listen, removal_waiting_for

LEASE = 30.0
ME = "launcher-test"


@pytest.fixture
def world(db):
    """Three workers (two of 4 CPU, one of 2 CPU), a routine per test's needs, a fresh lease."""
    db.execute("""INSERT INTO hrwsi.flavour VALUES ('big', 4, 16000, 1000), ('small', 2, 4000, 500)""")
    db.execute("""INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'big'), ('w2', 'big'), ('w3', 'small')""")
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid) VALUES (%s, 'launcher', 'here', 1)""",
               (ME,))
    return db


def routine(db, name="work", cpu=1.0, ram_mb=1000, storage_mb=100, lane="nrt", sequential=False, flavour=None):
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type, sequential_per_tile, flavour)
                  VALUES (%s, %s, %s, %s, '1 min', ARRAY['true'], 'IN', 'OUT', %s, %s)""",
               (name, cpu, ram_mb, storage_mb, sequential, flavour))
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine, lane) VALUES (%s, %s, %s)",
               (f"{name}_c", name, lane))


_paths = iter(range(1, 1_000_000))


def add(db, name="work", count=1, tile=None, measured=None, lane=None):
    rows = db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane)
                         SELECT %s, %s || g, %s, %s::timestamptz + g * interval '1 minute', %s
                         FROM generate_series(1, %s) g RETURNING id""",
                      (f"{name}_c", f"/in/{name}/{next(_paths)}/", tile, measured, lane, count)).fetchall()
    ids = [r[0] for r in rows]
    return [r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = ANY(%s) ORDER BY id",
                                     (ids,)).fetchall()]


def plan(db, task_ids, worker, start="now()"):
    db.execute(f"""UPDATE hrwsi.processing_task SET state = 'planned', worker = %s, planned_start = {start},
                   planned_end = {start} + interval '1 min' WHERE id = ANY(%s)""", (worker, task_ids))


def dispatch(db, max_jobs=100, owner=ME):
    rows = db.execute("""SELECT (job).task_id, (job).worker FROM hrwsi.dispatch(%s, 'dry-run', %s, %s, '/data')
                         WHERE (job).job_id IS NOT NULL""", (owner, LEASE, max_jobs)).fetchall()
    return [(task, worker) for task, worker in rows]


def test_a_planned_archive_task_fills_its_worker_up_to_its_flavour_and_no_further(world):
    routine(world, cpu=1.5, lane="archive")
    tasks = add(world, count=4)
    plan(world, tasks, "w1")
    assert dispatch(world) == [(tasks[0], "w1"), (tasks[1], "w1")]
    assert dispatch(world) == []  # w1 is full: the others wait on their planned worker


def test_a_planned_near_real_time_task_takes_another_worker_when_its_own_is_full(world):
    routine(world, cpu=1.5)
    tasks = add(world, count=3)
    plan(world, tasks, "w1")
    assert dispatch(world) == [(tasks[0], "w1"), (tasks[1], "w1"), (tasks[2], "w2")]


def lose_as_not_placed(db, task):
    """The launcher records that the backend could not place the task's attempt on its worker (Nomad's
    HRWSI_NOMAD_UNPLACED_LIMIT_S): lost, fault not_placed."""
    job = db.execute("SELECT max(id) FROM hrwsi.job WHERE task_id = %s", (task,)).fetchone()[0]
    db.execute("""SELECT * FROM hrwsi.record_outcomes(%s, %s, 0, ARRAY[%s]::bigint[], ARRAY['lost'], ARRAY[NULL]::integer[],
                  ARRAY['Nomad could not place job'], ARRAY[NULL]::timestamptz[], ARRAY[NULL]::timestamptz[],
                  ARRAY['not_placed'], '{}', '{}', '{}')""", (ME, LEASE, job))


def reason_of(db, task):
    return db.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (task,)).fetchone()[0]


def test_the_next_attempt_of_a_task_the_backend_could_not_place_goes_to_another_worker_until_one_runs(world):
    """Nomad could not place a job on its worker (another team's job on that node): its attempt was lost and
    the next one went back to the same worker, which hrwsi counts free, 600 s a round (found by review)."""
    routine(world)
    (task,) = add(world)
    assert dispatch(world) == [(task, "w1")]  # (the first idle worker)
    lose_as_not_placed(world, task)
    assert world.execute("SELECT state, worker, avoid_worker FROM hrwsi.processing_task").fetchall() == [
        ("pending", None, "w1")]
    assert reason_of(world, task) == "attempt 1 lost: Nomad could not place job; its next attempt goes to another worker than w1"
    assert dispatch(world) == [(task, "w2")]
    assert reason_of(world, task) == ("dispatched at once: capacity was free; on worker w2, not w1, where its last "
                                      "attempt could not be placed")
    lose_as_not_placed(world, task)  # (not placed there either: back to w1, which it avoids no more)
    assert dispatch(world) == [(task, "w1")]
    job = world.execute("SELECT max(id) FROM hrwsi.job").fetchone()[0]
    world.execute("SELECT hrwsi.mark_jobs_progress(%s::bigint[], %s, %s, ARRAY[now()], %s)",
                  ([job], ["running"], ["running on w1"], [ME]))
    assert world.execute("SELECT avoid_worker FROM hrwsi.processing_task").fetchone()[0] is None, "placed: forgotten"


def store_plan(db, task, worker):
    """The orchestrator stores a plan that puts `task` on `worker` (hrwsi.store_plan)."""
    db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid) VALUES ('orch', 'orchestrator', 'here', 1) "
               "ON CONFLICT DO NOTHING")
    generation = db.execute("SELECT generation FROM hrwsi.plan_generation").fetchone()[0]
    return db.execute("""SELECT stored FROM hrwsi.store_plan('orch', 60, %s, now(), 1, 60, 60, 1, 0.1, 0.01, '{}'::jsonb,
                         ARRAY[%s]::bigint[], ARRAY[%s], ARRAY[0.0]::float8[], ARRAY[60.0]::float8[], '{}'::bigint[],
                         '{}'::text[])""", (generation, task, worker)).fetchone()[0]


@pytest.mark.parametrize("planned_on", ["w2", "w1"])
def test_a_planned_task_says_which_worker_it_avoids_where_its_last_attempt_could_not_be_placed(world, planned_on):
    """Found by review: the plan cleared the reason that said where the next attempt of a task Nomad could not
    place goes, so `hrwsi status`, `hrwsi tasks` and the dashboard said nothing of it while it was planned."""
    routine(world)
    (task,) = add(world)
    assert dispatch(world) == [(task, "w1")]
    lose_as_not_placed(world, task)
    assert store_plan(world, task, planned_on) == 1
    said = {"w2": "its last attempt could not be placed on worker w1: planned on worker w2",
            "w1": "its last attempt could not be placed on worker w1: planned there again, no other active worker "
                  "of a flavour it fits"}
    assert reason_of(world, task) == said[planned_on]
    (other,) = add(world)
    assert store_plan(world, other, "w2") == 1 and reason_of(world, other) is None, "no worker avoided: no reason"


def test_an_operators_retry_forgets_the_worker_a_task_avoided(world):
    """An operator's retry is a fresh start (its failures and losses count from zero): the worker its last attempt
    could not be placed on, minutes or days ago, is avoided no more; a cancelled task that never ran kept it until
    an attempt ran."""
    routine(world)
    (task,) = add(world)
    assert dispatch(world) == [(task, "w1")]
    lose_as_not_placed(world, task)
    world.execute("SELECT hrwsi.cancel_task(%s)", (task,))
    assert world.execute("SELECT avoid_worker FROM hrwsi.processing_task").fetchone()[0] == "w1"
    world.execute("SELECT hrwsi.retry_task(%s)", (task,))
    assert world.execute("SELECT state, avoid_worker FROM hrwsi.processing_task").fetchone() == ("pending", None)
    assert dispatch(world) == [(task, "w1")], "the first idle worker, as any task"


def test_a_task_the_backend_could_not_place_waits_for_another_worker_it_fits_rather_than_go_back(world):
    routine(world, cpu=3)  # (one at a time on a big worker; none on the small one)
    first, second = add(world, count=2)
    assert dispatch(world) == [(first, "w1"), (second, "w2")]
    lose_as_not_placed(world, first)
    assert dispatch(world) == [], "w1 is free, but it waits for w2, where it fits"
    record(world, job_of(world, second), "processed")
    assert dispatch(world) == [(first, "w2")]


def test_a_task_the_backend_could_not_place_goes_back_when_no_other_worker_of_its_flavour_exists(world):
    routine(world, flavour="small")
    (task,) = add(world)
    assert dispatch(world) == [(task, "w3")]
    lose_as_not_placed(world, task)
    assert reason_of(world, task) == ("attempt 1 lost: Nomad could not place job; no other active worker of a "
                                      "flavour it fits: its next attempt may go to w3 again")
    assert dispatch(world) == [(task, "w3")]
    assert reason_of(world, task) == ("dispatched at once: capacity was free; back on worker w3, where its last "
                                      "attempt could not be placed: no other active worker of a flavour it fits")


def test_what_already_runs_counts_and_ram_and_storage_limit_too(world):
    routine(world, name="fat", ram_mb=5000, lane="archive")
    routine(world, name="deep", storage_mb=501, lane="archive")
    fat, deep = add(world, "fat"), add(world, "deep")
    plan(world, fat + deep, "w3")
    assert dispatch(world) == []


def test_a_task_in_flight_holds_what_it_was_dispatched_with_when_its_routine_is_made_smaller_or_larger(world):
    # A routine's size changed while its tasks ran: counted at the new size, 4 CPU made 1 let a
    # second call put four more on a 4-CPU worker that was full (found by exploratory testing).
    routine(world, cpu=4, lane="archive")
    first = add(world, count=1)
    plan(world, first, "w1")
    assert dispatch(world) == [(first[0], "w1")]
    world.execute("UPDATE hrwsi.processing_routine SET cpu = 1 WHERE name = 'work'")
    assert world.execute("""SELECT held_cpu, held_ram_mb, held_storage_mb, held_attempt FROM hrwsi.processing_task
                            WHERE id = %s""", first).fetchone() == (4, 1000, 100, 1)
    more = add(world, count=4)
    plan(world, more, "w1")
    assert dispatch(world) == []  # w1 still runs the 4-CPU attempt
    (spec_cpu,) = world.execute("SELECT cpu FROM hrwsi.job_spec WHERE task_id = %s", first).fetchone()
    assert spec_cpu == 4  # its job, adopted again, asks what it was started with
    world.execute("UPDATE hrwsi.processing_routine SET cpu = 3 WHERE name = 'work'")  # changed again: still 4
    assert world.execute("SELECT held_cpu FROM hrwsi.processing_task WHERE id = %s", first).fetchone() == (4,)
    world.execute("UPDATE hrwsi.processing_routine SET cpu = 1 WHERE name = 'work'")
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", first)
    assert dispatch(world) == [(t, "w1") for t in more]
    world.execute("UPDATE hrwsi.processing_routine SET cpu = 2 WHERE name = 'work'")
    # the four 1-CPU attempts do not grow to 8 CPU with their routine: w1 is full, not over; a 2-CPU
    # task goes to w2, and their jobs ask what they were started with
    later = add(world, count=1)
    assert dispatch(world) == [(later[0], "w2")]
    assert {cpu for (cpu,) in world.execute("SELECT cpu FROM hrwsi.job_spec WHERE task_id = ANY(%s)", (more,))} == {1}


def test_global_budgets_hold_across_workers(world):
    world.execute("UPDATE hrwsi.budget SET cpu_max = 4")
    routine(world, cpu=3, lane="archive")
    tasks = add(world, count=2)
    plan(world, tasks[:1], "w1")
    plan(world, tasks[1:], "w2")
    assert dispatch(world) == [(tasks[0], "w1")]


def test_an_urgent_task_waiting_for_the_budget_holds_less_urgent_work_but_not_one_that_exceeds_the_whole_budget(
        world):
    """An urgent task that needs more than the whole budget can never start: it held every back-fill
    task with it, for ever (found by exploratory testing)."""
    world.execute("UPDATE hrwsi.budget SET cpu_max = 4")
    routine(world, name="big", cpu=3)  # nrt: priority 0
    routine(world, name="back", cpu=1, lane="archive")
    running = add(world, "back", count=2)
    assert sorted(t for t, _ in dispatch(world)) == running  # 2 of the 4 CPU in use
    urgent = add(world, "big")
    waiting = add(world, "back", count=2)
    assert dispatch(world) == [], "the urgent task waits for 3 CPU: nothing less urgent takes the 2 free"
    world.execute("SELECT hrwsi.cancel_task(%s)", (urgent[0],))
    world.execute("UPDATE hrwsi.processing_routine SET cpu = 5 WHERE name = 'big'")  # more than the budget of 4
    never = add(world, "big")
    assert sorted(t for t, _ in dispatch(world)) == waiting, "it never fits the budget: the back-fill goes on"
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", never).fetchone()[0] == "pending"


def test_vm_max_limits_the_workers_in_use(world):
    world.execute("UPDATE hrwsi.budget SET vm_max = 1")
    routine(world, lane="archive")
    tasks = add(world, count=3)
    plan(world, tasks[:2], "w1")
    plan(world, tasks[2:], "w2")
    assert sorted(dispatch(world)) == [(tasks[0], "w1"), (tasks[1], "w1")]


def test_a_pending_task_starts_at_once_where_capacity_is_free_busy_workers_first(world):
    routine(world, cpu=1)
    tasks = add(world, count=5)
    got = dispatch(world)
    assert [t for t, _ in got] == tasks
    assert {w for _, w in got} == {"w1", "w2"}, "fills w1 first, then the next worker: fewest VMs"
    reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                           (tasks[0],)).fetchone()
    assert reason == ("dispatched", "dispatched at once: capacity was free")


def test_a_task_started_alone_takes_a_busy_worker_where_it_fits_else_the_first_idle_one_within_the_vm_budget(world):
    # One task per call: the worker the call chose last does not decide, the scan of the workers does.
    routine(world, name="three", cpu=3)
    routine(world, name="one", cpu=1)
    first = add(world, name="three")
    plan(world, first, "w2")
    assert dispatch(world) == [(first[0], "w2")]  # its planned worker: w2 runs 3 of its 4 CPU
    second = add(world, name="one")
    assert dispatch(world) == [(second[0], "w2")], "a busy worker before the idle w1 before it"
    third = add(world, name="one")
    assert dispatch(world) == [(third[0], "w1")], "w2 is full: the first idle worker"
    fourth = add(world, name="three")
    assert dispatch(world) == [(fourth[0], "w1")], "3 CPU fit on the busy w1, not on the busy w2"
    world.execute("UPDATE hrwsi.budget SET vm_max = 2")
    fifth = add(world, name="one")
    assert dispatch(world) == [], "w1 and w2 are full, and a third VM is over the budget"
    world.execute("UPDATE hrwsi.budget SET vm_max = NULL")
    assert dispatch(world) == [(fifth[0], "w3")]


def test_a_task_waits_until_its_dependency_is_processed(world):
    routine(world, sequential=True)
    tasks = add(world, count=2, tile="32TPR", measured="2026-01-01T00:00Z")
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (tasks[1],)).fetchone()[0] \
        == tasks[0]
    assert dispatch(world) == [(tasks[0], "w1")]


def series_input(db, when: str, tile="32TPR") -> None:
    """One input of the time series on `tile` measured at `when` (its task is created with it)."""
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                  VALUES ('work_c', %s, %s, %s)""", (f"/in/series/{next(_paths)}", tile, when))


def four_scenes_of_one_series(world) -> list[int]:
    """A time series' routine and four scenes of one tile a day apart: their tasks' ids in sensing order."""
    routine(world, sequential=True)
    for day in ("01", "02", "03", "04"):
        series_input(world, f"2026-01-{day}T00:00Z")
    return [r[0] for r in world.execute(
        "SELECT id FROM hrwsi.processing_task WHERE series_tile IS NOT NULL ORDER BY series_at")]


def previous_of(db) -> dict:
    """Each series task's measurement time -> the measurement time of the task it waits for."""
    rows = db.execute("""SELECT to_char(t.series_at, 'DD'), to_char(d.series_at, 'DD')
                         FROM hrwsi.processing_task t LEFT JOIN hrwsi.processing_task d ON d.id = t.depends_on
                         WHERE t.series_tile IS NOT NULL""").fetchall()
    return dict(rows)


def test_new_inputs_of_a_time_series_take_their_place_in_date_order_among_the_tasks_already_there(world):
    routine(world, sequential=True)
    for day in ("01", "03", "04", "09"):
        series_input(world, f"2026-01-{day}T00:00Z")
    cancelled = world.execute("SELECT id FROM hrwsi.processing_task WHERE series_at = '2026-01-04T00:00Z'").fetchone()
    world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", cancelled)
    third = world.execute("SELECT id FROM hrwsi.processing_task WHERE series_at = '2026-01-03T00:00Z'").fetchone()[0]
    assert world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE series_at = '2026-01-09T00:00Z'"
                         ).fetchone() == ("pending", f"task {cancelled[0]} before it in its time series was cancelled: it "
                                                     f"runs after task {third}, sensed before that one")
    # One INSERT: a late input between tasks already there, one before them all, two after them.
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                     SELECT 'work_c', '/in/series/late/' || d, '32TPR', ('2026-01-' || d || 'T00:00Z')::timestamptz
                     FROM unnest(ARRAY['05', '02', '10', '11', '00'::text]) d WHERE d <> '00'
                     UNION ALL SELECT 'work_c', '/in/series/first', '32TPR', '2025-12-31T00:00Z'""")
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE series_at = '2026-01-09T00:00Z'").fetchone() \
        == ("pending",)
    assert previous_of(world) == {
        "31": None,                    # the first of the series
        "01": "31",                    # already there, not started: now after the new first one
        "02": "01",                    # new, after a task already there
        "03": "02",                    # already there, not started: after the late input of the 2nd
        "04": "03",                    # cancelled: left as it was
        "05": "03",                    # new: the cancelled task of the 4th is skipped
        "09": "05",                    # already there, after the 3rd since the 4th was cancelled: after the new 5th
        "10": "09",                    # new, after the last task already there
        "11": "10",                    # new, after another new one
    }


def test_a_late_scene_of_a_time_series_comes_before_the_later_scenes_that_have_not_started(world):
    routine(world, sequential=True)
    for day in ("01", "04", "07"):
        series_input(world, f"2026-01-{day}T00:00Z", tile="32TPR")
    for day in ("01", "04"):
        series_input(world, f"2026-01-{day}T00:00Z", tile="31TGL")
    task_of = dict(world.execute("""SELECT series_tile || '/' || to_char(series_at, 'DD'), id
                                    FROM hrwsi.processing_task""").fetchall())
    # On 32TPR the 1st ran and the 4th is planned; on 31TGL the 4th has started already.
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s",
                  (task_of["32TPR/01"],))
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (task_of["32TPR/01"],))
    plan(world, [task_of["32TPR/04"]], "w1")
    world.execute("UPDATE hrwsi.processing_task SET depends_on = NULL WHERE id = %s", (task_of["31TGL/04"],))
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w2', planned_start = now() "
                  "WHERE id = %s",
                  (task_of["31TGL/04"],))
    series_input(world, "2026-01-03T00:00Z", tile="32TPR")
    series_input(world, "2026-01-02T00:00Z", tile="31TGL")
    late = dict(world.execute("""SELECT series_tile || '/' || to_char(series_at, 'DD'), id
                                 FROM hrwsi.processing_task WHERE id <> ALL (%s)""", (list(task_of.values()),)).fetchall())
    rows = {key: world.execute("SELECT depends_on, state, worker, planned_start, state_reason FROM hrwsi.processing_task "
                               "WHERE id = %s", (task_id,)).fetchone() for key, task_id in task_of.items()}
    # The planned 4th waits for the late 3rd now, and goes back to be planned again, saying why.
    assert rows["32TPR/04"][:4] == (late["32TPR/03"], "pending", None, None)
    assert f"task {late['32TPR/03']}" in rows["32TPR/04"][4] and "arrived late" in rows["32TPR/04"][4]
    assert rows["32TPR/07"][0] == task_of["32TPR/04"]   # the rest of the series is unchanged
    # The 4th of 31TGL started: it keeps what it ran with; the late 2nd still comes after the 1st.
    assert rows["31TGL/04"][:2] == (None, "dispatched")
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s",
                         (late["31TGL/02"],)).fetchone()[0] == task_of["31TGL/01"]
    started = [task for task, _ in dispatch(world)]
    assert late["32TPR/03"] in started and task_of["32TPR/04"] not in started and late["31TGL/02"] not in started


def test_near_real_time_work_goes_before_archive_work(world):
    routine(world, name="backfill", cpu=4, lane="archive")
    routine(world, name="fresh", cpu=4)
    archive = add(world, "backfill", count=3)
    nrt = add(world, "fresh", count=1)
    got = dispatch(world, max_jobs=2)
    assert got[0][0] == nrt[0]
    assert got[1][0] == archive[0]


def test_an_urgent_task_that_fits_nowhere_reserves_a_worker_from_archive_work(world):
    """NRT waits for at most one running task: archive work may not take the capacity it waits for."""
    world.execute("UPDATE hrwsi.worker SET active = false WHERE name IN ('w2', 'w3')")
    routine(world, name="backfill", cpu=2, lane="archive")
    routine(world, name="fresh", cpu=4)
    running = add(world, "backfill", count=2)
    assert [w for _, w in dispatch(world)] == ["w1", "w1"]
    waiting = add(world, "backfill", count=3)
    urgent = add(world, "fresh")
    assert dispatch(world) == []  # w1 is full
    # One archive task ends: 2 CPU free on w1. The urgent task (4 CPU) does not fit yet, and the
    # next archive task (2 CPU) would fit, but must not take what the urgent task waits for.
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (running[0],))
    assert dispatch(world) == []
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (running[1],))
    assert dispatch(world) == [(urgent[0], "w1")]
    assert world.execute("SELECT count(*) FROM hrwsi.processing_task WHERE id = ANY(%s) AND state = 'pending'",
                         (waiting,)).fetchone()[0] == 3


def test_without_urgent_work_waiting_archive_work_takes_the_free_capacity(world):
    world.execute("UPDATE hrwsi.worker SET active = false WHERE name IN ('w2', 'w3')")
    routine(world, name="backfill", cpu=2, lane="archive")
    running = add(world, "backfill", count=2)
    dispatch(world)
    waiting = add(world, "backfill", count=1)
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (running[0],))
    assert dispatch(world) == [(waiting[0], "w1")]


def test_a_launcher_without_a_fresh_lease_claims_nothing(world):
    routine(world)
    add(world)
    world.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '1 hour'")
    with pytest.raises(psycopg.Error, match="no fresh lease") as refused:
        dispatch(world)
    assert refused.value.sqlstate == "HW001"  # the fencing error the services act on
    assert world.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 0


def test_a_second_launcher_does_not_wait_for_one_that_is_dispatching(world, database_url):
    routine(world)
    add(world)
    with psycopg.connect(database_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(7250002)")  # another launcher's dispatch, mid-call
        with pytest.raises(psycopg.errors.LockNotAvailable, match="another launcher is dispatching"):
            dispatch(world)


def test_jobs_get_deterministic_ids_and_paths_unique_to_the_installation(world):
    routine(world)
    task = add(world)[0]
    dispatch(world)
    job_id, log, output = world.execute("SELECT backend_job_id, log_path, output_dir FROM hrwsi.job").fetchone()
    installation = world.execute("SELECT installation_id::text FROM hrwsi.installation").fetchone()[0]
    from hrwsi.backends.base import job_id_for

    assert job_id == job_id_for("work", task, 1)
    assert log == f"/data/logs/{installation}/work/{job_id}.log"
    assert output == f"/data/products/{installation}/work/task-{task}/attempt-1/output"


def test_a_stray_job_row_sets_its_task_aside_with_a_reason_and_the_rest_is_dispatched(world):
    routine(world)
    stray_task, other = add(world, count=2)
    world.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                     VALUES (%s, 1, 'dry-run', 'by-hand')""", (stray_task,))
    assert dispatch(world) == [(other, "w1")]
    reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                           (stray_task,)).fetchone()
    assert reason[0] == "pending" and "a job row for its attempt 1 already exists" in reason[1]
    assert dispatch(world) == [], "still aside, and nothing fails"


def test_a_claim_writes_each_tasks_history_and_one_wake_up_call_per_channel(world, database_url):
    """The claim does its triggers' work itself (migration 0040): the history rows and notifications a
    claim through the triggers gave, each once."""
    routine(world)
    tasks = add(world, count=3)
    plan(world, tasks[:1], "w2")
    listener = listen(database_url, "hrwsi_task")
    for channel in ("hrwsi_job", "hrwsi_task_progress", "hrwsi_job_progress"):
        listener.execute(f"LISTEN {channel}")
    world.execute("SET ROLE hrwsi_service")  # as the launcher runs: the history is the owner's to write
    assert sorted(task for task, _ in dispatch(world)) == tasks
    world.execute("RESET ROLE")
    history = world.execute("""SELECT task_id, state, reason, attempts, worker FROM hrwsi.task_event
                               WHERE state = 'dispatched' ORDER BY task_id""").fetchall()
    assert history == world.execute("""SELECT id, state, state_reason, attempts, worker FROM hrwsi.processing_task
                                        ORDER BY id""").fetchall()
    assert [reason for _, _, reason, _, _ in history] == [None] + ["dispatched at once: capacity was free"] * 2
    # (on the channels of work under way, migration 0043: the launcher, which made the claim, does not hear them)
    assert sorted(drain(listener), key=str) == [("hrwsi_job_progress", {"op": "insert", "counts": {"submitted": 3}}),
                                                ("hrwsi_task_progress", {"op": "update", "counts": {"dispatched": 3}})]
    listener.close()


def test_after_a_dispatch_call_the_triggers_check_and_record_the_transactions_other_changes(world):
    routine(world)
    task = add(world)[0]
    with world.transaction():
        dispatch(world)
        world.execute("UPDATE hrwsi.processing_task SET state = 'running' WHERE id = %s", (task,))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="job_task_must_exist"):
            with world.transaction():
                world.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                                 VALUES (-1, 1, 'dry-run', 'of-no-task')""")
    states = world.execute("SELECT state FROM hrwsi.task_event WHERE task_id = %s ORDER BY id", (task,)).fetchall()
    assert [state for (state,) in states] == ["pending", "dispatched", "running"]


def test_removing_a_worker_waits_for_a_dispatch_call_putting_a_task_on_it_then_is_refused(world, database_url):
    routine(world)
    add(world)
    world.execute("UPDATE hrwsi.worker SET active = false WHERE name <> 'w3'")
    removal = removal_waiting_for(database_url, dispatch,
                                  lambda removing: removing.execute("DELETE FROM hrwsi.worker WHERE name = 'w3'"))
    assert "worker w3 cannot be removed while 1 task(s) name it" in removal
    assert world.execute("SELECT state, worker FROM hrwsi.processing_task").fetchall() == [("dispatched", "w3")]


def test_a_dispatch_call_putting_a_task_on_a_worker_being_removed_waits_then_is_refused_and_claims_nothing(
        world, database_url):
    routine(world)
    add(world)
    world.execute("UPDATE hrwsi.worker SET active = false WHERE name <> 'w3'")
    call = removal_waiting_for(database_url,
                               lambda removing: removing.execute("DELETE FROM hrwsi.worker WHERE name = 'w3'"),
                               dispatch)
    assert "task_worker_must_exist" in call and "Key (worker)=(w3)" in call
    assert world.execute("SELECT state, worker FROM hrwsi.processing_task").fetchall() == [("pending", None)]
    assert world.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 0


def claim(db, max_jobs=100):
    """One call: how many jobs it returned, and whether it says work was left waiting."""
    jobs, waiting, rows, answers = db.execute(
        """SELECT count((job).job_id), bool_and(work_waiting), count(*), count(DISTINCT work_waiting)
           FROM hrwsi.dispatch(%s, 'dry-run', %s, %s, '/data')""", (ME, LEASE, max_jobs)).fetchone()
    assert rows == max(jobs, 1) and answers == 1, "a row per job (or one without), all saying the same"
    return jobs, waiting


def test_a_call_that_starts_every_task_it_sees_says_no_work_waits(world):
    # The launcher then lets the end of a job start nothing: a call for it would find nothing.
    assert claim(world) == (0, False), "nothing pending"
    routine(world)
    add(world, count=2)
    assert claim(world) == (2, False)
    assert claim(world) == (0, False)


def test_a_task_left_for_want_of_capacity_means_work_waits_until_it_starts(world):
    routine(world, cpu=3)
    add(world, count=3)  # one on each big worker; the third fits nowhere now
    assert claim(world) == (2, True)
    assert claim(world) == (0, True), "still waiting: the end of a job may start it"


def test_a_task_waiting_for_its_dependency_means_work_waits(world):
    routine(world, sequential=True)
    add(world, count=2, tile="32TPR", measured="2026-01-01T00:00Z")
    assert claim(world) == (1, True), "the second waits for the first to be processed"


def test_a_full_batch_means_work_waits_and_the_last_of_it_does_not(world):
    routine(world)
    add(world, count=2)
    assert claim(world, max_jobs=1) == (1, True)
    assert claim(world, max_jobs=1) == (1, False)


def test_without_an_active_worker_work_is_said_to_wait(world):
    # Nothing was looked at: the launcher must not conclude that nothing waits.
    world.execute("UPDATE hrwsi.worker SET active = false")
    assert claim(world) == (0, True)


def test_a_task_set_aside_for_a_stray_job_row_means_work_waits(world):
    routine(world)
    stray_task, _ = add(world, count=2)
    world.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                     VALUES (%s, 1, 'dry-run', 'by-hand')""", (stray_task,))
    assert claim(world) == (1, True)
    assert claim(world) == (0, True), "its task alone: no job, and work still waits (for that row to go)"


def record(db, job_id, state, owner=ME):
    db.execute("""SELECT * FROM hrwsi.record_outcomes(%s, %s, 1, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY[1], ARRAY['m'],
                  ARRAY[NULL]::timestamptz[], ARRAY[NULL]::timestamptz[], ARRAY[NULL]::text[], '{}', '{}', '{}')""",
               (owner, LEASE, job_id, state))


def test_the_failure_policy_counts_failures_in_a_row_and_a_success_forgets_them(world):
    routine(world)
    add(world, count=4)
    dispatch(world)
    jobs = [r[0] for r in world.execute("SELECT id FROM hrwsi.job ORDER BY task_id")]
    failures = "SELECT consecutive_failures FROM hrwsi.processing_routine WHERE name = 'work'"
    record(world, jobs[0], "processed")  # nothing to forget: nothing changes
    assert world.execute(failures).fetchone()[0] == 0
    record(world, jobs[1], "internal_error")
    record(world, jobs[2], "external_error")
    assert world.execute(failures).fetchone()[0] == 2
    record(world, jobs[3], "processed")
    assert world.execute(failures).fetchone()[0] == 0, "a success ends the run of failures"


_READS = """SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
            WHERE schemaname = 'hrwsi' AND relname IN ('processing_task', 'job') ORDER BY relname"""


def tasks_and_jobs_read(db, call) -> dict[str, int]:
    """How many task and job rows `call` read (whole scans and index fetches), by table."""
    with db.transaction():  # (the counts not yet reported include earlier transactions': a difference)
        before = dict(db.execute(_READS).fetchall())
        call()
        return {table: count - before[table] for table, count in db.execute(_READS).fetchall()}


@pytest.mark.parametrize("planned_on", [1, 5, 30, 300])
def test_the_launchers_calls_read_only_the_rows_they_name_whatever_the_table_sizes_their_plans_were_made_on(
        world, planned_on):
    """A session makes each statement's plan once and keeps it until the tables are analyzed again:
    made while the tables were small, a join or a sub-query may read a whole table, cheap then and
    not once the tables have grown (a new installation's first burst, before autovacuum comes by).
    The launcher's calls read the lists, tasks and jobs they need through their keys (migrations
    0034, 0035): made on 5 to 300 tasks, a one-task dispatch read up to 60,130 tasks and 40,017
    jobs, recording one outcome up to 80,184 tasks, and marking one job running 20,040 tasks. Made
    on one or two tasks (migration 0038), a one-task dispatch read 60,013 tasks, marking a job
    running 20,004 jobs, recording an outcome 40,004 tasks (the claim's own whole-table read, with
    plans made on a single task: the next test)."""
    routine(world)

    def finished_tasks(count: int) -> None:  # tasks that ran once and are over, as a day of production leaves them
        tasks = add(world, count=count)
        world.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state)
                         SELECT x, 1, 'dry-run', 'old-' || x, 'cancelled' FROM unnest(%s::bigint[]) x""", (tasks,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = ANY (%s)", (tasks,))

    def running(job: int) -> None:  # as the launcher writes what the backend reported
        world.execute("SELECT hrwsi.mark_jobs_progress(%s::bigint[], %s, %s, ARRAY[now()], %s)",
                      ([job], ["running"], ["running on w1"], [ME]))

    finished_tasks(planned_on)
    add(world, count=planned_on)
    world.execute("ANALYZE")
    assert len(dispatch(world, max_jobs=3)) == min(3, planned_on)  # this session's plans are made now
    jobs = [row[0] for row in world.execute("SELECT id FROM hrwsi.job WHERE state = 'submitted' ORDER BY id")]
    running(jobs[0])
    record(world, jobs[0], "processed")
    finished_tasks(20_000)
    add(world, count=20_000)  # a burst waits
    rows_read = functools.partial(tasks_and_jobs_read, world)

    def newest_job() -> int:
        return world.execute("SELECT max(id) FROM hrwsi.job").fetchone()[0]

    claimed = rows_read(lambda: dispatch(world, max_jobs=1))
    assert claimed["processing_task"] <= 20 and claimed["job"] <= 5, claimed  # not 40,000 tasks, nor 20,000 jobs
    progressed = rows_read(lambda: running(newest_job()))
    assert progressed["processing_task"] <= 5 and progressed["job"] <= 5, progressed
    processed = rows_read(lambda: record(world, newest_job(), "processed"))  # the task of the burst just claimed
    assert processed["processing_task"] <= 5 and processed["job"] <= 2, processed
    dispatch(world, max_jobs=1)
    failed = rows_read(lambda: record(world, newest_job(), "internal_error"))  # retried; the failure policy counts it
    assert failed["processing_task"] <= 5 and failed["job"] <= 2, failed
    running = min(3, planned_on) - 1  # the first call's tasks, less the one recorded processed
    assert world.execute("SELECT count(*) FROM hrwsi.processing_task WHERE state = 'dispatched'").fetchone()[0] == \
        running
    assert world.execute("SELECT consecutive_failures FROM hrwsi.processing_routine").fetchone()[0] == 1
    started = []
    batch = rows_read(lambda: started.extend(dispatch(world, max_jobs=50)))  # a call of the burst, as capacity allows
    assert len(started) == 10 - running, started  # three workers of 4, 4 and 2 CPU for tasks of 1 CPU
    # each task started read a few times, and the 200 the call tries before it stops for want of capacity:
    assert batch["processing_task"] <= 300 and batch["job"] <= 20, batch


def test_a_launcher_whose_plans_were_made_on_a_single_task_claims_a_burst_through_the_tasks_keys(world):
    """A new installation: the first task is analyzed alone, the launcher's first call makes its
    plans on it, then a burst arrives. Joined with the batch, the claim was planned as a scan of
    the whole task table for each task claimed (a call of 2,000 against 20,000 tasks took 5.4 s
    until autovacuum analyzed the table again; migration 0038)."""
    routine(world)
    add(world, count=1)
    world.execute("ANALYZE")
    assert len(dispatch(world, max_jobs=2000)) == 1  # this session's plans are made now, on one task
    add(world, count=20_000)
    started = []
    read = tasks_and_jobs_read(world, lambda: started.extend(dispatch(world, max_jobs=2000)))
    assert len(started) == 9, started  # three workers of 4, 4 and 2 CPU for tasks of 1 CPU, one running
    # each task started read a few times, and the 200 the call tries before it stops for want of capacity:
    assert read["processing_task"] <= 300 and read["job"] <= 20, read


@pytest.mark.parametrize("waiting", ["pending", "planned"])
def test_a_launcher_whose_first_call_comes_while_an_unanalyzed_burst_waits_reads_only_what_it_claims(world, waiting):
    """A new installation's first burst arrives before the launcher's first call (or a launcher
    restarts while it waits): the table was analyzed with one task and holds 20,001, so the call's
    plans are made on the statistics of one task while the table has grown. Planned so, the probe
    of which serving lists hold a task read every pending task through the index of all states
    and sorted them, in every call until the next ANALYZE: 40,010 tasks read to claim one
    (migration 0039). A burst the orchestrator planned already is read through its list's index
    (it was before too: this keeps it so)."""
    routine(world)
    add(world, count=1)
    world.execute("ANALYZE")
    burst = add(world, count=20_000)
    if waiting == "planned":
        plan(world, burst, "w1")
    started = []
    read = tasks_and_jobs_read(world, lambda: started.extend(dispatch(world, max_jobs=1)))
    assert len(started) == 1, started
    assert read["processing_task"] <= 20 and read["job"] <= 5, read


def test_a_new_reason_in_the_same_state_is_recorded_for_the_job_and_its_task(world):
    # The Nomad backend says why a running attempt is in doubt ("its node is disconnected ...
    # retried at ..."): before migration 0050 only a change of state was written, and status and
    # the dashboard kept "running on w1" (found by exploratory testing).
    routine(world)
    add(world)
    [(task, _)] = dispatch(world)
    job = world.execute("SELECT id FROM hrwsi.job WHERE task_id = %s", (task,)).fetchone()[0]

    def progress(state: str, reason: str) -> tuple:
        world.execute("SELECT hrwsi.mark_jobs_progress(%s::bigint[], %s, %s, ARRAY[now()], %s)",
                      ([job], [state], [reason], [ME]))
        return world.execute("""SELECT j.state, j.message, t.state, t.state_reason FROM hrwsi.job j
                                JOIN hrwsi.processing_task t ON t.id = j.task_id WHERE j.id = %s""", (job,)).fetchone()

    assert progress("running", "running on w1") == ("running", "running on w1", "running", "running on w1")
    doubt = "its node is disconnected (unknown); if it is not back by 17:42:24 UTC it is retried then"
    assert progress("running", doubt) == ("running", doubt, "running", doubt)
    assert progress("running", "running on w1") == ("running", "running on w1", "running", "running on w1")


def test_the_schedule_counts_every_task_and_shows_as_many_as_asked(world):
    # `hrwsi plan show` printed every planned task: 30,006 lines and 18 s of CPU for 30,000 (found by
    # exploratory testing); its table now shows --limit of them (200), its figures count all.
    from io import StringIO

    from rich.console import Console

    from hrwsi import reports
    from hrwsi.cli import views
    routine(world)
    plan(world, add(world, count=5), "w1")
    data = reports.schedule(world)
    assert data["per_state"] == {"planned": 5} and len(data["tasks"]) == 5
    out = StringIO()
    views.schedule(Console(file=out, width=250), data, limit=2)
    shown = out.getvalue()
    assert "5 planned on 1 worker(s)" in shown and "the first 2 of 5" in shown
    assert "... and 3 more task(s): --limit shows more, --json lists them all" in shown
    assert sum(" w1 " in row for row in shown.splitlines()) == 2


def test_an_urgent_scene_of_a_time_series_makes_the_back_fill_before_it_as_urgent(world):
    # Found by exploratory testing (2026-12-05): a near-real-time scene waited for the archive tasks
    # before it in its series, served after every other near-real-time task (78 s for 8 s of work).
    routine(world, sequential=True)
    add(world, count=3, tile="32TPR", measured="2026-01-01T00:00Z", lane="archive")  # this tile's back-fill
    other = add(world, count=2, tile="31TGL", measured="2026-01-01T00:00Z", lane="archive")
    first, *rest = world.execute("SELECT id FROM hrwsi.processing_task WHERE series_tile = '32TPR' ORDER BY series_at"
                                 ).fetchall()
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", first)  # the first already runs: nothing to raise there
    [fresh] = add(world, count=1, tile="32TPR", measured="2026-06-01T00:00Z")  # a fresh scene, in nrt
    priority = dict(world.execute("SELECT id, priority FROM hrwsi.processing_task").fetchall())
    assert priority[fresh] == 0
    assert [priority[row[0]] for row in rest] == [0, 0], "the archive tasks it waits for: served as urgently"
    assert priority[first[0]] == 1 and [priority[t] for t in other] == [1, 1], "the rest of the back-fill: as it was"
    lanes = {row[0] for row in world.execute("SELECT lane FROM hrwsi.processing_task WHERE id = ANY (%s)",
                                              ([row[0] for row in rest],)).fetchall()}
    assert lanes == {"archive"}  # (they stay back-fill: no deadline, their lane's products)
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", first)
    assert dispatch(world, max_jobs=1) == [(rest[0][0], "w1")], "before the other tile's back-fill"


def a_series_whose_table_order_is_not_its_ids(db):
    """40 archive tasks of one series on 32TPR, ids in sensing order, whose later 20 come first in the table.
    The table's order is not the ids' (rows move as they are updated, space is reused): a statement that
    locks rows as its join reads the table takes them in neither the ids' order nor the series'."""
    routine(db, sequential=True)
    sequence = db.execute("SELECT pg_get_serial_sequence('hrwsi.processing_task', 'id')").fetchone()[0]
    db.execute("SELECT setval(%s, 1000)", (sequence,))
    later = add(db, count=20, tile="32TPR", measured="2026-02-01T00:00Z", lane="archive")
    db.execute("SELECT setval(%s, 1, false)", (sequence,))
    earlier = add(db, count=20, tile="32TPR", measured="2026-01-01T00:00Z", lane="archive")
    places = [r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY ctid")]
    assert places.index(earlier[0]) > places.index(later[-1]), places
    return earlier + later


def in_id_order_beside(world, database_url, tasks, work) -> tuple[Exception | None, dict]:
    """`work(conn)` in a transaction of its own while a writer that locks `tasks` in id order holds the first
    and, once `work` waits for it, takes the others: (the writer's deadlock, if any; what `work` said)."""
    with psycopg.connect(database_url) as writer, psycopg.connect(database_url) as other:
        for conn in (writer, other):
            conn.execute("SET deadlock_timeout = '50ms'")
        writer.execute("SELECT 1 FROM hrwsi.processing_task WHERE id = %s FOR NO KEY UPDATE", (tasks[0],))
        working, worked = in_a_thread(lambda: (work(other), other.commit()))
        waiting_on_a_lock(world, other)
        try:
            writer.execute("SELECT id FROM hrwsi.processing_task WHERE id = ANY (%s) ORDER BY id FOR NO KEY UPDATE",
                           (tasks[1:],))
            wrote = None
        except psycopg.errors.DeadlockDetected as error:
            wrote = error
        writer.commit()
        working.join()
    return wrote, worked


def test_a_fresh_scene_locks_the_back_fill_it_makes_urgent_in_the_order_of_their_ids(world, database_url):
    """The UPDATE that makes the tasks before a fresh scene as urgent as it locked them in its join's order,
    the table's: with another writer locking such rows in id order (the planner storing a plan, the ageing
    of a lane), each held a row the other wanted (found by exploratory testing)."""
    back = a_series_whose_table_order_is_not_its_ids(world)
    wrote, inserted = in_id_order_beside(world, database_url, back,
                                         lambda conn: add(conn, count=1, tile="32TPR", measured="2026-06-01T00:00Z"))
    assert wrote is None and "error" not in inserted, (wrote, inserted)
    assert {r[0] for r in world.execute("SELECT priority FROM hrwsi.processing_task WHERE id = ANY (%s)",
                                        (back,))} == {0}


@pytest.mark.parametrize("change", ["routine held", "back-fill held", "routine resized", "series ended"])
def test_a_change_of_a_routine_locks_its_tasks_in_the_order_of_their_ids(world, database_url, change):
    """A routine held, its back-fill held, resized or no longer a time series updated its tasks in the order
    its plan read them (here an index's, which happens to be the ids': this passed before too); they now
    lock them first in id order, beside a writer that does (an INSERT's priority inheritance, the planner),
    whatever the plan."""
    back = a_series_whose_table_order_is_not_its_ids(world)
    if change == "routine resized":
        plan(world, back, "w1")
    statement = {"routine held": "SELECT hrwsi.hold_routine('work')",
                 "back-fill held": "UPDATE hrwsi.processing_routine SET backfill_hold_reason = 'x' WHERE name = 'work'",
                 "routine resized": "UPDATE hrwsi.processing_routine SET cpu = 2 WHERE name = 'work'",
                 "series ended": "UPDATE hrwsi.processing_routine SET sequential_per_tile = false WHERE name = 'work'"}[change]
    tasks = back[1:] if change == "series ended" else back  # (the series' first task depends on none)
    wrote, changed = in_id_order_beside(world, database_url, tasks, lambda conn: conn.execute(statement))
    assert wrote is None and "error" not in changed, (wrote, changed)


def test_back_fill_made_as_urgent_as_a_fresh_scene_of_its_series_is_planned_again(world):
    # Found by exploratory testing (2026-12-06): the archive tasks a fresh scene waits for kept the plan
    # made for them as back-fill, behind the rest of the archive lane (40 min ahead); the fresh scene was
    # planned after them and alerted deadline_at_risk "40 min 56 s late", and ended on time (4 min).
    routine(world, sequential=True)
    back = add(world, count=3, tile="32TPR", measured="2026-01-01T00:00Z", lane="archive")
    other = add(world, count=2, tile="31TGL", measured="2026-01-01T00:00Z", lane="archive")
    plan(world, back + other, "w1", start="now() + interval '40 minutes'")
    [fresh] = add(world, count=1, tile="32TPR", measured="2026-06-01T00:00Z")
    rows = {r[0]: r[1:] for r in world.execute(
        "SELECT id, state, priority, worker, planned_start, state_reason FROM hrwsi.processing_task")}
    for task in back:
        state, priority, worker, start, reason = rows[task]
        assert (state, priority, worker, start) == ("pending", 0, None, None), rows[task]
        assert reason == (f"near-real-time task {fresh} of its time series waits for it: served as urgently, "
                          "planned again"), reason
    assert [rows[t][:2] for t in other] == [("planned", 1)] * 2, "the rest of the back-fill keeps its plan"
    said = world.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                         (back[0],)).fetchone()[0]
    assert said == rows[back[0]][4], "its history says why it is pending again"
    assert all(not world.execute("SELECT hrwsi.cannot_be_planned(state, state_reason, NULL) FROM "
                                 "hrwsi.processing_task WHERE id = %s", (t,)).fetchone()[0] for t in back)


def test_archive_work_aged_to_near_real_time_is_planned_again(world):
    # Found by exploratory testing (2026-12-06): tasks promoted after their lane's promote_after kept their
    # plan behind the archive lane and were fixed there when the near-real-time work was planned, so a
    # fresh scene was planned after them (36 min late, alerted at risk) and ran within 6 s.
    routine(world, lane="archive")
    old = add(world, count=3)
    young = add(world, count=1)
    plan(world, old + young, "w1", start="now() + interval '40 minutes'")
    world.execute("UPDATE hrwsi.processing_task SET created_at = now() - interval '7 hours' WHERE id = ANY(%s)",
                  (old,))
    assert world.execute(query("promote_aged_tasks")).fetchone()[0] == 3
    rows = {r[0]: r[1:] for r in world.execute(
        "SELECT id, state, priority, planned_start, state_reason FROM hrwsi.processing_task")}
    for task in old:
        assert rows[task] == ("pending", 0, None, "waited longer than lane archive allows (6 h 0 min): served as "
                                                  "near-real-time, planned again"), rows[task]
    assert rows[young[0]][:2] == ("planned", 1)


def terminate(db, task):
    """The task dispatched, then terminated (its attempts spent), as the launcher's outcome leaves it."""
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
               "attempts = 1 WHERE id = %s", (task,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (task,))


@pytest.mark.parametrize("unblocked_by", ["retry", "release"])
def test_the_tasks_after_a_blocked_task_of_a_series_are_blocked_with_it_and_unblocked_with_it(world, unblocked_by):
    """They stayed planned, at a time long past and with no reason, while the task before them was
    blocked: the whole tile stopped and looked planned (found by exploratory testing)."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now() "
                  "WHERE id IN (%s, %s)", (third, fourth))
    terminate(world, first)
    rows = dict((r[0], r[1:]) for r in world.execute(
        "SELECT id, state, state_reason, planned_start FROM hrwsi.processing_task ORDER BY id"))
    assert rows[second][0] == "blocked" and f"its dependency, task {first}, ended terminated" in rows[second][1]
    # Each names the task it waits for directly and the root cause (the chain's first blocked task was
    # named alone, so the fourth named the second, which it does not wait for: found by exploratory testing).
    for later, before in ((third, second), (fourth, third)):
        assert rows[later] == ("blocked", f"waits for task {before}, which waits behind task {first}, which "
                                          f"ended terminated: `hrwsi retry {first}` runs that task again, and the "
                                          "tasks after it then run in order", None)
    alerts = [r[0] for r in world.execute("SELECT task_id FROM hrwsi.alert WHERE kind = 'task_blocked'")]
    assert alerts == [second], "one alert, for the task that needs an operator"
    if unblocked_by == "retry":
        world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    else:
        world.execute("SELECT hrwsi.release_task(%s)", (second,))
    states = dict(world.execute("SELECT id, state FROM hrwsi.processing_task WHERE id IN (%s, %s, %s)",
                                (second, third, fourth)).fetchall())
    assert states == {second: "pending", third: "pending", fourth: "pending"}
    # Each says what happened to the task it waits for, or to the one behind which that one waited.
    reasons = dict(world.execute("SELECT id, state_reason FROM hrwsi.processing_task WHERE id IN (%s, %s)",
                                 (third, fourth)).fetchall())
    if unblocked_by == "retry":
        assert reasons == {third: f"its dependency, task {second}, is no longer blocked: task {first} before it was retried",
                           fourth: f"its dependency, task {third}, is no longer blocked: task {first} before it was retried"}
    else:
        released = "was released by an operator, to run without the task it waited for"
        assert reasons == {third: f"its dependency, task {second}, {released}",
                           fourth: f"its dependency, task {third}, is no longer blocked: task {second} before it {released}"}


def test_the_task_after_a_cancelled_task_of_a_series_runs_after_the_one_before_it_and_waits_for_it_again_if_retried(
        world):
    """Cancelling a series task blocked the tasks after it for ever: they waited for a product that would
    never come, and their reason offered only a retry of what ops had cancelled, or a release that runs
    the next task as the series' first (found by exploratory testing). The next task takes the task
    before the cancelled one as its own, as a scene inserted now would, and says so."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    plan(world, [third], "w1")
    said = world.execute("SELECT hrwsi.cancel_task(%s)", (second,)).fetchone()[0]
    assert said == f"task {second} was pending; it is cancelled; task {third} after it in its time series runs after " \
                   f"task {first} now"
    rows = {r[0]: r[1:] for r in world.execute("SELECT id, state, depends_on, state_reason FROM hrwsi.processing_task")}
    assert rows[third] == ("planned", first, f"task {second} before it in its time series was cancelled: it runs after "
                                             f"task {first}, sensed before that one")
    assert rows[fourth][:2] == ("pending", third), "the tasks after it keep their place"
    assert world.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                         (third,)).fetchone()[0] == rows[third][2], "its history says why"
    assert not world.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'task_blocked'").fetchone()[0]
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 1 WHERE id = %s", (first,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (first,))
    with world.transaction():
        assert [task for task, _ in dispatch(world)] == [third], "it runs once the task before the cancelled one ran"
        raise psycopg.Rollback
    # The cancelled task retried takes its place again: the task after it, not started, waits for it again.
    world.execute("SELECT hrwsi.retry_task(%s)", (second,))
    rows = {r[0]: r[1:] for r in world.execute("SELECT id, state, depends_on, state_reason FROM hrwsi.processing_task")}
    assert rows[second][:2] == ("pending", first)
    assert rows[third] == ("pending", second, f"task {second} before it in its time series was retried: it runs after it")
    assert rows[fourth][:2] == ("pending", third)
    assert [task for task, _ in dispatch(world)] == [second], "not beside the task after it"


def test_the_task_after_a_cancelled_first_task_of_a_series_is_its_first_and_one_behind_a_terminated_task_is_blocked(
        world):
    first, second, third, fourth = four_scenes_of_one_series(world)
    said = world.execute("SELECT hrwsi.cancel_task(%s)", (first,)).fetchone()[0]
    assert said.endswith(f"; task {second} after it in its time series is its first now"), said
    assert world.execute("SELECT state, depends_on, state_reason FROM hrwsi.processing_task WHERE id = %s",
                         (second,)).fetchone() == ("pending", None, f"task {first} before it in its time series was "
                                                                     "cancelled: it is the first of its series now, and runs "
                                                                     "without a previous product")
    terminate(world, second)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (fourth,)).fetchone()[0] == "blocked"
    world.execute("SELECT hrwsi.cancel_task(%s)", (third,))  # (blocked behind the terminated one: cancelled)
    assert world.execute("SELECT state, depends_on, state_reason FROM hrwsi.processing_task WHERE id = %s",
                         (fourth,)).fetchone() == (
        "blocked", second, f"task {third} before it in its time series was cancelled: it waits for task {second}, "
                           f"sensed before that one, which ended terminated; `hrwsi retry {second}` runs that task again, "
                           f"`hrwsi release {fourth}` runs this task without it")
    world.execute("SELECT hrwsi.retry_task(%s)", (second,))
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (fourth,)).fetchone()[0] == "pending"


def test_the_tasks_blocked_behind_a_terminated_task_are_locked_in_the_order_of_their_ids(world, database_url):
    """The statement that blocks the tasks after a task that ended terminated locked them in its join's
    order, the table's, where every other writer of many tasks locks them in id order: each held a task the
    other wanted (found by exploratory testing, with the fix of the priority inheritance's order)."""
    routine(world, sequential=True)
    # (the table's order is not the ids': the series' later scenes come first in it, with higher ids)
    sequence = world.execute("SELECT pg_get_serial_sequence('hrwsi.processing_task', 'id')").fetchone()[0]
    world.execute("SELECT setval(%s, 1000)", (sequence,))
    later = add(world, count=20, tile="32TPR", measured="2026-02-01T00:00Z")
    world.execute("SELECT setval(%s, 1, false)", (sequence,))
    first, second, *rest = add(world, count=20, tile="32TPR", measured="2026-01-01T00:00Z")
    places = [r[0] for r in world.execute("SELECT id FROM hrwsi.processing_task ORDER BY ctid")]
    assert places.index(rest[0]) > places.index(later[-1]), places
    with psycopg.connect(database_url) as writer, psycopg.connect(database_url) as launcher:
        for conn in (writer, launcher):
            conn.execute("SET deadlock_timeout = '50ms'")
        writer.execute("SELECT 1 FROM hrwsi.processing_task WHERE id = %s FOR NO KEY UPDATE", (rest[0],))
        ending, ended = in_a_thread(lambda: (terminate(launcher, first), launcher.commit()))
        waiting_on_a_lock(world, launcher)
        try:
            writer.execute("SELECT id FROM hrwsi.processing_task WHERE id = ANY (%s) ORDER BY id FOR NO KEY UPDATE",
                           (rest[1:] + later,))
            wrote = None
        except psycopg.errors.DeadlockDetected as error:
            wrote = error
        writer.commit()
        ending.join()
    assert wrote is None and "error" not in ended, (wrote, ended)
    assert {r[0] for r in world.execute("SELECT state FROM hrwsi.processing_task WHERE id = ANY (%s)",
                                        ([second] + rest + later,))} == {"blocked"}


def test_a_scene_that_arrives_after_a_blocked_task_of_its_series_is_blocked_with_it(world):
    """A new scene of a tile whose last task is blocked was created pending and waited behind it for
    ever, with no reason (found by exploratory testing)."""
    routine(world, sequential=True)
    for day in ("01", "02", "03"):
        series_input(world, f"2026-01-{day}T00:00Z")
    first, second, third = [r[0] for r in world.execute(
        "SELECT id FROM hrwsi.processing_task WHERE series_tile IS NOT NULL ORDER BY series_at")]
    terminate(world, first)
    series_input(world, "2026-01-04T00:00Z")  # the next scene of the tile
    [(fourth, state, reason)] = world.execute(
        "SELECT id, state, state_reason FROM hrwsi.processing_task WHERE series_at = '2026-01-04T00:00Z'").fetchall()
    assert (state, reason) == ("blocked", f"waits for task {third}, which has to run before it (`hrwsi task show "
                                          f"{third}` says what that task waits for): it runs once that task has run")
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    states = dict(world.execute("SELECT id, state FROM hrwsi.processing_task WHERE id IN (%s, %s, %s)",
                                (second, third, fourth)).fetchall())
    assert states == {second: "pending", third: "pending", fourth: "pending"}


def test_the_task_after_a_task_cancelled_while_its_series_lock_was_busy_takes_the_one_before_it_at_the_next_sweep(
        world, database_url):
    """A cancel by plain SQL (or a campaign's) whose series' lock another transaction held left the task after the
    cancelled one blocked behind it, and the tasks after it with it, until an operator retried it: its reason
    offered a retry of the cancelled task or a release that runs it as the series' first, and the series' next
    INSERT relinked it only if that scene came before it. The orchestrator's sweep links it, as the cancel would
    have, once the lock is free."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    key = world.execute("SELECT hrwsi.series_lock_key('work', '32TPR')").fetchone()[0]
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (second,))
        world.execute(query("recheck_upstream_waits"))
        assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone() == ("blocked",)
        holder.commit()
    world.execute(query("recheck_upstream_waits"))
    rows = dict((r[0], r[1:]) for r in world.execute(
        "SELECT id, state, depends_on, state_reason FROM hrwsi.processing_task WHERE id IN (%s, %s)", (third, fourth)))
    assert rows[third] == ("pending", first, f"task {second} before it in its time series was cancelled: it runs after "
                                             f"task {first}, sensed before that one")
    assert rows[fourth][:2] == ("pending", third)


def test_the_task_after_a_task_cancelled_while_its_series_lock_was_busy_says_the_sweep_links_it_and_alerts_no_one(
        world, database_url):
    """Found by review: until the sweep linked it, the task after a task cancelled while its series' lock was busy
    said "`hrwsi retry` <the cancelled task> runs the dependency again, `hrwsi release` runs this task without it",
    and ops were alerted so: a retry ran the scene the cancel dropped, and a release ran the task out of sensing
    order, while the sweep links it within a minute. Its reason says that, and the tasks after it say so too."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    key = world.execute("SELECT hrwsi.series_lock_key('work', '32TPR')").fetchone()[0]
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (second,))
        rows = dict((r[0], r[1:]) for r in world.execute(
            "SELECT id, state, state_reason FROM hrwsi.processing_task WHERE id IN (%s, %s)", (third, fourth)))
        assert rows[third] == ("blocked", f"task {second} before it in its time series was cancelled while another "
                                          "transaction held the series' lock: the orchestrator's sweep links it to the "
                                          "task before that one within a minute")
        assert rows[fourth] == ("blocked", f"waits for task {third}, which waits behind task {second}, cancelled "
                                           "while its time series' lock was busy: the orchestrator's sweep links it past "
                                           "that task within a minute, and the tasks after it then run in order")
        assert world.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'task_blocked'").fetchone() == (0,)
        holder.commit()
    world.execute(query("recheck_upstream_waits"))
    assert world.execute("SELECT state, depends_on FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone() \
        == ("pending", first)


def test_the_tasks_after_a_blocked_task_linked_to_a_late_scene_say_it_waits_for_that_scene_now(world, database_url):
    """A blocked task that a late scene's link made pending unblocked the tasks after it saying "its dependency
    was retried or released", which it was not (found by review). Its series' lock busy when the task before it
    was cancelled, it was blocked behind the cancelled task, and the tasks after it with it."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    key = world.execute("SELECT hrwsi.series_lock_key('work', '32TPR')").fetchone()[0]
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (second,))
        holder.commit()
    assert dict(world.execute("SELECT id, state FROM hrwsi.processing_task WHERE id IN (%s, %s)", (third, fourth))
                ) == {third: "blocked", fourth: "blocked"}
    series_input(world, "2026-01-02T12:00Z")  # sensed after the cancelled one, arrived late: third waits for it
    [late] = [r[0] for r in world.execute("SELECT id FROM hrwsi.processing_task WHERE series_at = '2026-01-02T12:00Z'")]
    rows = dict((r[0], r[1:]) for r in world.execute(
        "SELECT id, state, depends_on, state_reason FROM hrwsi.processing_task WHERE id IN (%s, %s, %s)",
        (late, third, fourth)))
    assert rows[late][:2] == ("pending", first) and rows[third][:2] == ("pending", late)
    assert rows[fourth] == ("pending", third, f"its dependency, task {third}, waits for task {late} now")
    [history] = world.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                              (fourth,)).fetchone()
    assert history == rows[fourth][2]
    # Linked to no task (the series' first now, as a correction of the scene before it may leave it), it says so.
    terminate(world, late)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (fourth,)).fetchone()[0] == "blocked"
    world.execute("UPDATE hrwsi.processing_task SET depends_on = NULL, state = 'pending' WHERE id = %s", (third,))
    assert world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s", (fourth,)).fetchone() \
        == ("pending", f"its dependency, task {third}, waits for no task now")


def test_a_late_scene_behind_a_terminated_task_is_blocked_and_the_tasks_after_it_stay_blocked(world):
    """A late scene landed just after a terminated task, before the tasks blocked behind it: it was
    created pending behind the terminated one, for ever; now it is blocked, with an alert, and the
    tasks after it (relinked to it) stay blocked until the terminated task is retried."""
    routine(world, sequential=True)
    for day in ("01", "03", "04"):
        series_input(world, f"2026-01-{day}T00:00Z")
    first, third, fourth = [r[0] for r in world.execute(
        "SELECT id FROM hrwsi.processing_task WHERE series_tile IS NOT NULL ORDER BY series_at")]
    terminate(world, first)
    assert dict(world.execute("SELECT id, state FROM hrwsi.processing_task WHERE id IN (%s, %s)", (third, fourth))
                ) == {third: "blocked", fourth: "blocked"}
    series_input(world, "2026-01-02T00:00Z")  # sensed on the 2nd, arrived late
    rows = dict((r[0], r[1:]) for r in world.execute(
        "SELECT id, state, depends_on, state_reason FROM hrwsi.processing_task WHERE series_tile IS NOT NULL"))
    [late] = [task for task in rows if task not in (first, third, fourth)]
    assert rows[late][:2] == ("blocked", first)
    assert rows[late][2].startswith(f"its dependency, task {first}, ended terminated; `hrwsi retry {first}`")
    assert rows[third][:2] == ("blocked", late) and rows[fourth][:2] == ("blocked", third)
    alerts = [r[0] for r in world.execute("SELECT task_id FROM hrwsi.alert WHERE kind = 'task_blocked' ORDER BY id")]
    assert alerts == [third, late], "an alert for each task blocked by the terminated one"
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    states = dict(world.execute("SELECT id, state FROM hrwsi.processing_task WHERE id IN (%s, %s, %s)",
                                (late, third, fourth)).fetchall())
    assert states == {late: "pending", third: "pending", fourth: "pending"}


def test_a_retried_task_of_a_series_runs_after_the_late_scene_processed_meanwhile_or_is_blocked_behind_one_that_cannot(
        world):
    """A terminated task kept the link it ran with: a late scene sensed before it was processed
    meanwhile, yet the retried task ran as the series' first, reading no previous product (found by
    exploratory testing)."""
    routine(world, sequential=True)
    for day in ("02", "03"):
        series_input(world, f"2026-01-{day}T00:00Z")
    second, third = [r[0] for r in world.execute(
        "SELECT id FROM hrwsi.processing_task WHERE series_tile IS NOT NULL ORDER BY series_at")]
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 1 WHERE id = %s", (second,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (second,))
    series_input(world, "2026-01-01T00:00Z")  # sensed before it, arrived late: the series' first now
    [first] = [r[0] for r in world.execute("SELECT id FROM hrwsi.processing_task WHERE series_at = '2026-01-01T00:00Z'")]
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone() == (None,)
    terminate(world, first)
    message = world.execute("SELECT hrwsi.retry_task(%s)", (second,)).fetchone()[0]
    assert message == f"task {second} was terminated; it waits behind task {first} of its series, which is " \
                      "terminated: it is blocked"
    row = world.execute("SELECT state, depends_on, state_reason FROM hrwsi.processing_task WHERE id = %s",
                        (second,)).fetchone()
    assert row[:2] == ("blocked", first) and f"its dependency, task {first}, ended terminated" in row[2]
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone() == ("blocked",)
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))  # the first runs again, and the series after it
    states = dict(world.execute("SELECT id, state FROM hrwsi.processing_task WHERE id IN (%s, %s)", (second, third)))
    assert states == {second: "pending", third: "pending"}
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 2 WHERE id = %s", (first,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (first,))
    assert [task for task, _ in dispatch(world)] == [second], "it runs after the first, with its product"


def test_a_retried_task_of_a_routine_that_is_no_longer_a_time_series_runs_without_the_task_before_it(world):
    """Retry read the task's series from the task alone: a routine no longer a time series linked the
    retried task again behind the task before it, and blocked it behind one that ended terminated (found
    by review)."""
    routine(world, sequential=True)
    for day in ("01", "02"):
        series_input(world, f"2026-01-{day}T00:00Z")
    first, second = [r[0] for r in world.execute(
        "SELECT id FROM hrwsi.processing_task WHERE series_tile IS NOT NULL ORDER BY series_at")]
    terminate(world, first)
    world.execute("SELECT hrwsi.cancel_task(%s)", (second,))  # (blocked behind it)
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = false WHERE name = 'work'")
    assert world.execute("SELECT hrwsi.retry_task(%s)", (second,)).fetchone()[0] == \
        f"task {second} was cancelled; it is pending again and will be replanned"
    state, waived, reason = world.execute("SELECT state, dependency_waived, state_reason FROM hrwsi.processing_task "
                                          "WHERE id = %s", (second,)).fetchone()
    assert (state, waived) == ("pending", True)
    assert reason == (f"retried by an operator; routine work is no longer a time series: it no longer waits for "
                      f"task {first}")
    assert [task for task, _ in dispatch(world)] == [second]


def waiting_on_an_advisory_lock(db, conn) -> None:
    """Returns once the backend of `conn` waits for an advisory lock (a series')."""
    pid = conn.info.backend_pid
    for _ in range(2000):
        if db.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' "
                      "AND NOT granted)", (pid,)).fetchone()[0]:
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"backend {pid} never waited for an advisory lock")


def test_a_task_moved_to_another_series_while_it_is_retried_is_linked_under_the_lock_of_the_series_it_is_in_now(
        world, database_url):
    """Retry read the task's routine before it locked the task: moved to another routine in between, it
    read the task before it in the new series without that series' lock, so a scene being chained there
    meanwhile was not seen and both ran at once (found by review). (The move holds the lock of the series it
    moves tasks into, migration 0090: the chaining of a scene there waits for it, and either the retry or the
    chaining links first once it commits; the task runs after the scene sensed before it either way.)"""
    chained_series(world)
    _, ts_b = scene(world, "ts", "/l2a/direct-B", 12)
    world.execute("SELECT hrwsi.hold_task(%s)", (ts_b,))
    # ts2 is a time series of L2A too; ts takes no new input.
    world.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                     input_product_type, output_product_type, sequential_per_tile)
                     VALUES ('ts2', 1, 100, 10, '1 min', ARRAY['true'], 'L2A', 'TS2', true)""")
    world.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('ts2', 'ts2')")
    world.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'ts'")
    _, prep_a = scene(world, "prep", "/l1c/A", 10)
    assert [task for task, _ in dispatch(world)] == [prep_a]
    outcome(world, prep_a, products=["/l2a/A"])
    with (psycopg.connect(database_url) as mover, psycopg.connect(database_url) as harvester,
          psycopg.connect(database_url, autocommit=True) as operator):
        mover.execute("SELECT hrwsi.move_tasks('ts', 'ts2')")  # not committed: it holds ts(B)'s row
        retry, said = in_a_thread(lambda: operator.execute("SELECT hrwsi.retry_task(%s)", (ts_b,)).fetchone())
        waiting_on_a_lock(world, operator)
        # not committed once done: it holds the series ts2/31TCH, where it made the task of A
        chaining, chained = in_a_thread(lambda: chain(harvester))
        waiting_on_an_advisory_lock(world, harvester)  # the move holds that series' lock
        mover.commit()
        chaining.join()
        harvester.commit()
        retry.join()
    assert "error" not in chained, chained
    assert "error" not in said, said
    ts2_a = world.execute("""SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                             WHERE i.input_path = '/l2a/A' AND t.routine = 'ts2'""").fetchone()[0]
    assert world.execute("SELECT routine, depends_on FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone() \
        == ("ts2", ts2_a), "it runs after the scene sensed before it in its new series, not beside it"


# -- a time series of a chained step (migration 0072) --------------------------------------------

def chained_series(db, prep_attempts=3):
    """prep (L1C -> L2A) and ts (L2A -> TS, a time series of its tile), one condition each."""
    for name, reads, makes, sequential, attempts in (("prep", "L1C", "L2A", False, prep_attempts),
                                                     ("ts", "L2A", "TS", True, 3)):
        db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                      input_product_type, output_product_type, sequential_per_tile, max_attempts)
                      VALUES (%s, 1, 100, 10, '1 min', ARRAY['true'], %s, %s, %s, %s)""",
                   (name, reads, makes, sequential, attempts))
        db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES (%s, %s)", (name, name))


def scene(db, condition, path, hour, tile="31TCH"):
    """An input of `condition` sensed on 2026-01-05 at `hour`: (its input id, its production task id)."""
    input_id = db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                             VALUES (%s, %s, %s, %s) RETURNING id""",
                          (condition, path, tile, f"2026-01-05T{hour:02d}:00Z")).fetchone()[0]
    return input_id, db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s AND campaign_id IS NULL",
                                (input_id,)).fetchone()[0]


def job_of(db, task):
    return db.execute("SELECT max(id) FROM hrwsi.job WHERE task_id = %s", (task,)).fetchone()[0]


def outcome(db, task, state="processed", products=()):
    """The outcome of the task's attempt in flight, as the launcher records it, with its products."""
    job = job_of(db, task)
    db.execute("""SELECT * FROM hrwsi.record_outcomes(%s, %s, 1, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY[%s],
                  ARRAY['m'], ARRAY[NULL]::timestamptz[], ARRAY[NULL]::timestamptz[], ARRAY[NULL]::text[],
                  %s::bigint[], %s::text[], %s::bigint[])""",
               (ME, LEASE, job, state, 0 if state == "processed" else 1, [job] * len(products), list(products),
                [1] * len(products)))


def chain(db):
    return db.execute(query("chain_products").replace("$1", "%(batch)s"), {"batch": 100}).fetchone()


def ts_task(db, l2a_path):
    row = db.execute("""SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                        WHERE i.input_path = %s AND t.routine = 'ts'""", (l2a_path,)).fetchone()
    return row and row[0]


def plannable(db):
    """The tasks the orchestrator's plan query reads now (as old as it wants them)."""
    return {r[0] for r in db.execute(query("tasks_to_plan").replace("$1", "(now() + interval '1 hour')")
                                     .replace("$2", "1000").replace("$3", "0"))}


def test_a_task_moved_first_into_a_time_series_waits_for_the_open_upstream_work_of_a_scene_sensed_before_it(world):
    """Found by review: a moved task kept the upstream wait of its place in the old series. Behind a task sensed
    after an open scene there, it waited for nothing; moved first of its tile into a series, it ran before that
    scene's task. What it waits for is decided again from the task it follows now."""
    chained_series(world)
    world.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                     input_product_type, output_product_type, sequential_per_tile)
                     VALUES ('ts2', 1, 100, 10, '1 min', ARRAY['true'], 'L2A', 'TS2', true)""")
    input_a, prep_a = scene(world, "prep", "/l1c/A", 10)
    _, ts_w = scene(world, "ts", "/l2a/direct-W", 11)
    _, ts_b = scene(world, "ts", "/l2a/direct-B", 12)
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (ts_w,))  # under way: it stays on ts
    row = "SELECT depends_on, waits_for_upstream, state, state_reason FROM hrwsi.processing_task WHERE id = %s"
    assert world.execute(row, (ts_b,)).fetchone()[:3] == (ts_w, None, "pending")
    world.execute("SELECT hrwsi.move_tasks('ts', 'ts2')")
    assert world.execute(row, (ts_b,)).fetchone() == (
        None, prep_a, "pending", f"waits for the scene sensed before it, input {input_a}, whose prep task {prep_a} has "
                                 f"not ended yet (`hrwsi task show {prep_a}` says where it is): it runs after that "
                                 "scene's own task in its series")


def test_a_time_series_of_a_chained_step_runs_in_sensing_order_whatever_order_its_upstream_work_ends(world):
    chained_series(world)
    input_a, prep_a = scene(world, "prep", "/l1c/A", 10)
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    assert {task for task, _ in dispatch(world)} == {prep_a, prep_b}
    # prep(B) ends first: its product is chained, ts(B) is made; prep(A) still runs.
    outcome(world, prep_b, products=["/l2a/B"])
    assert chain(world) == (1, 1)
    ts_b = ts_task(world, "/l2a/B")
    assert dispatch(world) == [] and ts_b not in plannable(world)
    state, reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (ts_b,)).fetchone()
    assert state == "pending"
    assert f"waits for the scene sensed before it, input {input_a}, whose prep task {prep_a} has not ended yet" in reason
    history = [r[0] for r in world.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s", (ts_b,))]
    assert history[-1] == reason
    # prep(A) ends: until its product is chained, ts(B) still waits (no window before the chaining).
    outcome(world, prep_a, products=["/l2a/A"])
    assert dispatch(world) == [] and ts_b not in plannable(world)
    assert "products are not chained yet" in world.execute(
        "SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0]
    # Chained: ts(A) comes before ts(B), which depends on it and runs after it.
    listener = listen(world.info.dsn, "hrwsi_task")
    assert chain(world) == (1, 1)
    ts_a = ts_task(world, "/l2a/A")
    assert world.execute("SELECT depends_on, waits_for_upstream FROM hrwsi.processing_task WHERE id = %s",
                         (ts_b,)).fetchone() == (ts_a, None)
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (ts_a,)).fetchone()[0] is None
    assert any(payload.get("counts", {}).get("pending") for _, payload in drain(listener))
    assert [task for task, _ in dispatch(world)] == [ts_a]
    outcome(world, ts_a, products=["/ts/A"])
    assert [task for task, _ in dispatch(world)] == [ts_b]


def test_a_series_task_waits_no_more_for_a_scene_whose_upstream_task_terminated_and_says_what_it_waited_for(world):
    chained_series(world, prep_attempts=1)
    input_a, prep_a = scene(world, "prep", "/l1c/A", 10)
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    dispatch(world)
    outcome(world, prep_b, products=["/l2a/B"])
    chain(world)
    ts_b = ts_task(world, "/l2a/B")
    assert dispatch(world) == []
    listener = listen(world.info.dsn, "hrwsi_task")
    outcome(world, prep_a, state="internal_error")
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (prep_a,)).fetchone()[0] == "terminated"
    reason = world.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0]
    assert reason == (f"no longer waits for the scene sensed before it, input {input_a}: its prep task {prep_a} "
                      "ended terminated: it runs without that scene")
    history = [r[0] for r in world.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id",
                                           (ts_b,))]
    assert any(f"prep task {prep_a} has not ended yet" in (h or "") for h in history) and history[-1] == reason
    assert any(payload.get("counts", {}).get("pending") for _, payload in drain(listener))
    assert ts_b in plannable(world)
    assert [task for task, _ in dispatch(world)] == [ts_b]
    # Retried, the upstream task is open again: a series task after its scene that has not started waits again.
    _, ts_c = scene(world, "ts", "/l2a/C", 12)
    world.execute("SELECT hrwsi.retry_task(%s)", (prep_a,))
    assert world.execute("SELECT waits_for_upstream FROM hrwsi.processing_task WHERE id = %s", (ts_c,)).fetchone()[0] \
        is None, "ts(C) depends on ts(B), which started: the scene of A comes before ts(B), not before ts(C)"


def test_a_processed_upstream_task_whose_product_is_not_chained_yet_is_waited_for(world):
    chained_series(world)
    input_a, prep_a = scene(world, "prep", "/l1c/A", 10)
    dispatch(world)
    outcome(world, prep_a, products=["/l2a/A"])  # not chained yet
    # A scene sensed after it comes straight as L2A (not from prep): it waits for A's product to be chained.
    _, ts_b = scene(world, "ts", "/l2a/direct-B", 11)
    assert dispatch(world) == [] and ts_b not in plannable(world)
    assert (f"input {input_a}, whose prep task {prep_a} is processed but its products are not chained yet"
            in world.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0])
    chain(world)
    ts_a = ts_task(world, "/l2a/A")
    assert [task for task, _ in dispatch(world)] == [ts_a]


def test_a_late_upstream_scene_makes_the_series_task_after_it_wait_and_a_planned_one_is_planned_again(world):
    chained_series(world)
    _, ts_b = scene(world, "ts", "/l2a/direct-B", 11)
    plan(world, [ts_b], "w1")
    input_a, prep_a = scene(world, "prep", "/l1c/A", 10)
    state, worker, reason = world.execute("SELECT state, worker, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                          (ts_b,)).fetchone()
    assert (state, worker) == ("pending", None)
    assert f"input {input_a}, whose prep task {prep_a} has not ended yet" in reason
    assert [task for task, _ in dispatch(world)] == [prep_a]
    # Released by an operator (a blocked task), a task does not wait.
    world.execute("UPDATE hrwsi.processing_task SET dependency_waived = true WHERE id = %s", (ts_b,))
    assert ts_b in plannable(world)


def test_a_series_whose_routine_has_no_routine_upstream_pays_nothing_for_it(world):
    routine(world, sequential=True)  # reads IN, which no routine makes
    world.execute("SET track_functions = 'all'")
    with world.transaction():
        for day in (3, 1, 2):
            series_input(world, f"2026-01-0{day}T00:00Z")
        dispatch(world)
        calls = world.execute("""SELECT pg_stat_get_xact_function_calls('hrwsi.wait_for_upstream(bigint[])'::regprocedure),
                                        pg_stat_get_xact_function_calls('hrwsi.wait_for_upstream_after(bigint[],boolean)'::regprocedure)
                              """).fetchone()
    assert calls == (None, None)
    assert world.execute("SELECT count(*) FROM hrwsi.processing_task WHERE waits_for_upstream IS NOT NULL").fetchone()[0] == 0
    assert [r[0] for r in world.execute("SELECT state FROM hrwsi.processing_task ORDER BY series_at")] == \
        ["dispatched", "pending", "pending"]


def test_a_campaigns_time_series_waits_for_the_campaigns_upstream_work_and_production_does_not(world):
    chained_series(world)
    input_a, prep_a = scene(world, "prep", "/l1c/A", 10)
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    dispatch(world)
    outcome(world, prep_a, products=["/l2a/A"])
    outcome(world, prep_b, products=["/l2a/B"])
    chain(world)
    campaign = world.execute("""SELECT campaign_id FROM hrwsi.reprocess(routine => 'prep',
                                measured_from => '2026-01-05T00:00Z', measured_to => '2026-01-06T00:00Z')""").fetchone()[0]
    k_a, k_b = [r[0] for r in world.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s ORDER BY id",
                                            (campaign,))]
    # Production's series does not wait for the campaign's upstream work.
    assert {task for task, _ in dispatch(world)} == {ts_task(world, "/l2a/A"), k_a, k_b}
    outcome(world, k_b, products=["/l2a/B-v2"])
    chain(world)
    k_ts_b = world.execute("""SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                              WHERE i.input_path = '/l2a/B-v2'""").fetchone()[0]
    assert world.execute("SELECT campaign_id, waits_for_upstream FROM hrwsi.processing_task WHERE id = %s",
                         (k_ts_b,)).fetchone() == (campaign, k_a)
    assert k_ts_b not in {task for task, _ in dispatch(world)}
def test_a_routine_that_is_no_longer_a_time_series_releases_its_tasks_that_have_not_started(world):
    """Its tasks kept their links: pending and planned ones waited for the task before them, blocked
    ones stayed blocked, for a series that no longer was one (found by exploratory testing)."""
    routine(world, sequential=True)
    for day in ("01", "02", "03"):
        series_input(world, f"2026-01-{day}T00:00Z", tile="32TPR")
        series_input(world, f"2026-01-{day}T00:00Z", tile="31TGL")
    a1, a2, a3 = [r[0] for r in world.execute(
        "SELECT id FROM hrwsi.processing_task WHERE series_tile = '32TPR' ORDER BY series_at")]
    b1, b2, b3 = [r[0] for r in world.execute(
        "SELECT id FROM hrwsi.processing_task WHERE series_tile = '31TGL' ORDER BY series_at")]
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (a1,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w2', planned_start = now() "
                  "WHERE id = %s", (a3,))
    terminate(world, b1)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (b3,)).fetchone()[0] == "blocked"
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = false WHERE name = 'work'")
    rows = dict((r[0], r[1:]) for r in world.execute(
        "SELECT id, state, state_reason, dependency_waived FROM hrwsi.processing_task"))
    for task, before in ((a2, a1), (a3, a2), (b2, b1), (b3, b2)):
        assert rows[task] == ("pending", f"routine work is no longer a time series (sequential_per_tile off): it no "
                                         f"longer waits for task {before}", True), task
        [last] = world.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                               (task,)).fetchall()
        assert last[0] == rows[task][1], "its history says why"
    assert rows[a1][0] == "dispatched", "what started keeps what it runs with"
    assert a2 in [task for task, _ in dispatch(world, max_jobs=4)], "it no longer waits for the task before it"


def test_a_series_task_that_waits_for_upstream_work_runs_once_its_routine_is_no_longer_a_time_series(world):
    chained_series(world)
    _, prep_a = scene(world, "prep", "/l1c/A", 10)
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    dispatch(world)
    outcome(world, prep_b, products=["/l2a/B"])
    chain(world)
    ts_b = ts_task(world, "/l2a/B")  # the series' first task: no dependency, it waits for prep(A)
    assert world.execute("SELECT depends_on, waits_for_upstream FROM hrwsi.processing_task WHERE id = %s",
                         (ts_b,)).fetchone() == (None, prep_a)
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = false WHERE name = 'ts'")
    waits, reason = world.execute("SELECT waits_for_upstream, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (ts_b,)).fetchone()
    assert waits is None and f"no longer a time series (sequential_per_tile off): it no longer waits for task {prep_a}" \
        in reason
    assert [task for task, _ in dispatch(world)] == [ts_b]


def waiting_on_a_lock(db, conn) -> None:
    """Returns once the backend of `conn` waits for a lock (a condition, not a delay)."""
    pid = conn.info.backend_pid
    for _ in range(2000):
        if db.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"backend {pid} never waited for a lock")


def in_a_thread(work) -> tuple[threading.Thread, dict]:
    """`work()` in a thread of its own: its result, or its error, in the dict once joined."""
    outcome = {}

    def run():
        try:
            outcome["result"] = work()
        except psycopg.Error as error:
            outcome["error"] = error
    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def a_series_behind_x_and_b_and_a_late_scene_a(world, x_ends):
    """ts(X) ended `x_ends`, ts(B) after it; A, sensed between them, has its L2A made, not chained yet."""
    chained_series(world, prep_attempts=1)
    world.execute("UPDATE hrwsi.processing_routine SET max_attempts = 1 WHERE name = 'ts'")
    _, prep_x = scene(world, "prep", "/l1c/X", 8)
    _, prep_b = scene(world, "prep", "/l1c/B", 12)
    dispatch(world)
    outcome(world, prep_x, products=["/l2a/X"])
    outcome(world, prep_b, products=["/l2a/B"])
    chain(world)
    ts_x, ts_b = ts_task(world, "/l2a/X"), ts_task(world, "/l2a/B")
    assert [task for task, _ in dispatch(world)] == [ts_x]
    if x_ends == "processed":
        outcome(world, ts_x, products=["/ts/X"])
        assert [task for task, _ in dispatch(world)] == [ts_b]
        outcome(world, ts_b, state="internal_error")  # ts(B) terminated (one attempt)
    else:
        outcome(world, ts_x, state="internal_error")
    _, prep_a = scene(world, "prep", "/l1c/A", 10)
    assert [task for task, _ in dispatch(world)] == [prep_a]
    outcome(world, prep_a, products=["/l2a/A"])
    return ts_x, ts_b


def test_a_retried_series_task_reads_the_task_before_it_under_its_series_lock_so_a_scene_being_chained_comes_first(
        world, database_url):
    """A retry read the task before it, then took the series' lock: while the chaining of an earlier
    scene's product was in flight, it kept the task before that scene, and both ran at once (found by review)."""
    ts_x, ts_b = a_series_behind_x_and_b_and_a_late_scene_a(world, "processed")
    with psycopg.connect(database_url) as harvester, psycopg.connect(database_url, autocommit=True) as operator:
        chain(harvester)  # not committed: it holds the series' lock, ts(A) is not there yet for others
        retry, said = in_a_thread(lambda: operator.execute("SELECT hrwsi.retry_task(%s)", (ts_b,)).fetchone())
        waiting_on_a_lock(world, operator)
        harvester.commit()
        retry.join()
    assert "error" not in said, said
    ts_a = ts_task(world, "/l2a/A")
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0] == ts_a
    assert [task for task, _ in dispatch(world)] == [ts_a], "ts(B) runs after ts(A), not beside it"


def test_a_retry_under_a_stricter_isolation_is_refused_so_a_scene_being_chained_still_comes_first(world, database_url):
    """Under REPEATABLE READ the retry waited for the series' lock, then read the series through its
    snapshot, older than the chaining that held the lock: both ts(A) and ts(B) depended on ts(X) and
    ran side by side (found by review). It is refused, as an INSERT into a time series is."""
    ts_x, ts_b = a_series_behind_x_and_b_and_a_late_scene_a(world, "processed")
    with psycopg.connect(database_url) as harvester, psycopg.connect(database_url) as operator:
        chain(harvester)  # not committed: it holds the series' lock, ts(A) is not there yet for others
        operator.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        retry, said = in_a_thread(lambda: operator.execute("SELECT hrwsi.retry_task(%s)", (ts_b,)).fetchone())
        retry.join(5)  # (refused at once; before the fix it waited for the series' lock, then linked ts(B) behind ts(X))
        harvester.commit()
        retry.join()
        operator.rollback()
    assert "a task of a time series is retried only in a READ COMMITTED transaction (the default), not in a " \
           "REPEATABLE READ one" in str(said.get("error")), said
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0] == "terminated"
    world.execute("SELECT hrwsi.retry_task(%s)", (ts_b,))  # (READ COMMITTED: the default)
    ts_a = ts_task(world, "/l2a/A")
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0] == ts_a
    assert [task for task, _ in dispatch(world)] == [ts_a], "ts(B) runs after ts(A), not beside it"


def test_a_retry_and_the_chaining_of_a_scene_on_its_tile_do_not_deadlock(world, database_url):
    """A retry held its task's row, then wanted the series' lock, which a chaining on the same tile held
    while it wanted the row to link the task behind its new scene (found by review)."""
    ts_x, ts_b = a_series_behind_x_and_b_and_a_late_scene_a(world, "terminated")
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0] == "blocked"
    with (psycopg.connect(database_url) as holder, psycopg.connect(database_url) as harvester,
          psycopg.connect(database_url) as operator):
        holder.execute("SELECT 1 FROM hrwsi.processing_task WHERE id = %s FOR UPDATE", (ts_b,))
        retry, retried = in_a_thread(lambda: (operator.execute("SELECT hrwsi.retry_task(%s)", (ts_b,)),
                                              operator.commit()))
        waiting_on_a_lock(world, operator)
        chaining, chained = in_a_thread(lambda: (chain(harvester), harvester.commit()))
        waiting_on_a_lock(world, harvester)
        holder.commit()
        retry.join()
        chaining.join()
    assert "error" not in retried and "error" not in chained, (retried, chained)
    ts_a = ts_task(world, "/l2a/A")
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0] == ts_a


def test_two_retries_of_upstream_tasks_of_one_tile_in_opposite_orders_do_not_deadlock(world, database_url):
    """A retried upstream task makes the series' next task wait again: the retry took the lock of the series
    it feeds while holding the task's row, where every other holder takes the series' lock first. Two
    transactions retrying two upstream tasks of one tile in opposite orders each held one row and waited for
    the other's (found by exploratory testing). The series' lock is held here by the test, so that both
    retries wait for it at once."""
    chained_series(world, prep_attempts=1)
    _, prep_a = scene(world, "prep", "/l1c/A", 10)
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    dispatch(world)
    outcome(world, prep_a, state="internal_error")
    outcome(world, prep_b, state="internal_error")
    key = world.execute("SELECT hrwsi.series_lock_key('ts', '31TCH')").fetchone()[0]

    def retries(conn, first, second):
        conn.execute("SET deadlock_timeout = '50ms'")
        conn.execute("SELECT hrwsi.retry_task(%s)", (first,))
        conn.execute("SELECT hrwsi.retry_task(%s)", (second,))
        conn.commit()

    with (psycopg.connect(database_url) as holder, psycopg.connect(database_url) as one,
          psycopg.connect(database_url) as other):
        holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
        first, first_said = in_a_thread(lambda: retries(one, prep_a, prep_b))
        waiting_on_a_lock(world, one)
        second, second_said = in_a_thread(lambda: retries(other, prep_b, prep_a))
        waiting_on_a_lock(world, other)
        holder.commit()
        first.join()
        second.join()
        other.rollback()
    errors = [said.get("error") for said in (first_said, second_said)]
    assert not any(isinstance(error, psycopg.errors.DeadlockDetected) for error in errors), errors
    assert errors[0] is None, "the first retries both"
    assert isinstance(errors[1], psycopg.errors.CheckViolation) and f"task {prep_b} is pending" in str(errors[1])
    assert world.execute("SELECT array_agg(state) FROM hrwsi.processing_task WHERE id IN (%s, %s)",
                         (prep_a, prep_b)).fetchone()[0] == ["pending", "pending"]


def test_a_retry_of_a_series_task_feeding_another_series_and_an_insert_into_both_do_not_deadlock(world, database_url):
    """A retry took its own series' lock, then its task's row, then (its task feeding another series) that
    series' lock; an INSERT of the routine's inputs takes both in the order of their keys: with the
    downstream series' key first, each held the lock the other wanted (found by exploratory testing). The
    test holds the task's row, so that the retry waits there holding its first lock."""
    for name, reads, makes in (("a", "L1C", "L2A"), ("b", "L2A", "TS")):
        world.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                         input_product_type, output_product_type, sequential_per_tile, max_attempts)
                         VALUES (%s, 1, 100, 10, '1 min', ARRAY['true'], %s, %s, true, 1)""", (name, reads, makes))
        world.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES (%s, %s)", (name, name))
    tile = next(t for t in (f"{n:02d}TCH" for n in range(1, 61)) if world.execute(
        "SELECT hrwsi.series_lock_key('b', %s) < hrwsi.series_lock_key('a', %s)", (t, t)).fetchone()[0])
    _, task = scene(world, "a", "/l1c/A", 10, tile=tile)
    terminate(world, task)
    with (psycopg.connect(database_url) as holder, psycopg.connect(database_url) as operator,
          psycopg.connect(database_url) as engineer):
        for conn in (operator, engineer):
            conn.execute("SET deadlock_timeout = '50ms'")
        holder.execute("SELECT 1 FROM hrwsi.processing_task WHERE id = %s FOR UPDATE", (task,))
        retry, retried = in_a_thread(lambda: (operator.execute("SELECT hrwsi.retry_task(%s)", (task,)),
                                              operator.commit()))
        waiting_on_a_lock(world, operator)
        insert, inserted = in_a_thread(lambda: (scene(engineer, "a", "/l1c/B", 11, tile=tile), engineer.commit()))
        waiting_on_a_lock(world, engineer)
        holder.commit()
        retry.join()
        insert.join()
    assert "error" not in retried and "error" not in inserted, (retried, inserted)
    assert world.execute("SELECT t.depends_on FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                         "WHERE i.input_path = '/l1c/B'").fetchone()[0] == task


def waits_for(db, task):
    return db.execute("SELECT waits_for_upstream FROM hrwsi.processing_task WHERE id = %s", (task,)).fetchone()[0]


def a_series_task_waiting_for_prep_a(world):
    """ts(B) made (prep(B) processed, chained), waiting for prep(A), dispatched and in flight."""
    chained_series(world, prep_attempts=1)
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    dispatch(world)
    outcome(world, prep_b, products=["/l2a/B"])
    chain(world)
    _, prep_a = scene(world, "prep", "/l1c/A", 10)
    ts_b = ts_task(world, "/l2a/B")
    assert waits_for(world, ts_b) == prep_a
    assert [task for task, _ in dispatch(world)] == [prep_a]
    return prep_a, ts_b


def test_the_outcome_of_an_upstream_task_does_not_wait_for_a_transaction_holding_its_series_and_the_sweep_releases_it(
        world, database_url):
    """The outcome writer waited for the series' lock a data engineer's INSERT of an upstream input held,
    up to its lock timeout, then failed; dispatch paused with it (found by review)."""
    prep_a, ts_b = a_series_task_waiting_for_prep_a(world)
    with psycopg.connect(database_url) as engineer:
        scene(engineer, "prep", "/l1c/C", 12)  # not committed: it holds the series' lock
        world.execute("SET lock_timeout = '3s'")  # (a bound on the failure; the fix waits for nothing)
        outcome(world, prep_a, state="internal_error")  # prep(A) terminated: ts(B) could wait no more
        assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (prep_a,)).fetchone()[0] == \
            "terminated"
        assert waits_for(world, ts_b) == prep_a, "its series' lock was busy: left to the sweep"
        assert world.execute("SELECT hrwsi.recheck_upstream_waits()").fetchone()[0] == 0, "the sweep waits for nothing"
    assert world.execute("SELECT hrwsi.recheck_upstream_waits()").fetchone()[0] == 1
    assert waits_for(world, ts_b) is None
    assert ts_b in [task for task, _ in dispatch(world)]  # (beside prep(C), which the engineer committed)


def test_a_wait_for_an_upstream_task_moved_to_a_routine_that_no_longer_feeds_the_series_is_released_by_the_sweep(world):
    prep_a, ts_b = a_series_task_waiting_for_prep_a(world)
    world.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                     input_product_type, output_product_type) VALUES ('other', 1, 100, 10, '1 min', ARRAY['true'],
                     'L1C', 'QL')""")
    _, prep_c = scene(world, "prep", "/l1c/C", 12)  # not started: it moves
    world.execute("SELECT hrwsi.move_tasks('prep', 'other')")
    dispatch(world)
    outcome(world, prep_c, products=["/ql/C"])
    chain(world)
    _, ts_d = scene(world, "ts", "/l2a/direct-D", 13)
    assert waits_for(world, ts_d) is None
    world.execute("UPDATE hrwsi.processing_task SET routine = 'other' WHERE id = %s", (prep_a,))  # as moved in flight
    outcome(world, prep_a, products=["/ql/A"])
    chain(world)
    assert waits_for(world, ts_b) == prep_a, "its end no longer feeds the series: nothing decided it"
    listener = listen(world.info.dsn, "hrwsi_task")
    assert world.execute("SELECT hrwsi.recheck_upstream_waits()").fetchone()[0] == 1
    assert waits_for(world, ts_b) is None
    assert any(payload.get("counts", {}).get("pending") for _, payload in drain(listener))


def test_a_dispatch_that_claims_a_series_task_while_an_upstream_scene_arrives_leaves_it_dispatched_without_a_wait(
        world, database_url):
    """wait_for_upstream's UPDATE did not look at the row it locked: a task a dispatch claimed meanwhile
    ended dispatched with a wait and a "waits for" reason (found by review)."""
    chained_series(world)
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    dispatch(world)
    outcome(world, prep_b, products=["/l2a/B"])
    chain(world)
    ts_b = ts_task(world, "/l2a/B")
    with psycopg.connect(database_url) as launcher, psycopg.connect(database_url, autocommit=True) as engineer:
        launcher.execute("SELECT 1 FROM hrwsi.processing_task WHERE id = %s FOR UPDATE", (ts_b,))
        late, made = in_a_thread(lambda: scene(engineer, "prep", "/l1c/A", 10))
        waiting_on_a_lock(world, engineer)
        dispatch(launcher)
        launcher.commit()
        late.join()
    assert "error" not in made, made
    state, waits, reason = world.execute("SELECT state, waits_for_upstream, state_reason FROM hrwsi.processing_task "
                                         "WHERE id = %s", (ts_b,)).fetchone()
    assert (state, waits) == ("dispatched", None) and "waits for" not in reason


def test_a_plan_stores_no_task_that_started_to_wait_after_its_snapshot(world):
    """Planned with its wait, it was never dispatched and held its worker in later plans (found by review)."""
    chained_series(world)
    world.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid) VALUES ('orch', 'orchestrator', 'here', 1)")
    _, prep_b = scene(world, "prep", "/l1c/B", 11)
    dispatch(world)
    outcome(world, prep_b, products=["/l2a/B"])
    chain(world)
    ts_b = ts_task(world, "/l2a/B")
    generation = world.execute("SELECT generation FROM hrwsi.plan_generation").fetchone()[0]  # the plan's snapshot
    _, prep_a = scene(world, "prep", "/l1c/A", 10)  # ts(B) waits from now on
    stored = world.execute("""SELECT stored FROM hrwsi.store_plan('orch', 60, %s, now(), 1, 60, 60, 1, 0.1, 0.01,
                              '{}'::jsonb, ARRAY[%s]::bigint[], ARRAY['w1'], ARRAY[0.0]::float8[],
                              ARRAY[60.0]::float8[], '{}'::bigint[], '{}'::text[])""", (generation, ts_b)).fetchone()[0]
    assert stored == 0
    state, waits = world.execute("SELECT state, waits_for_upstream FROM hrwsi.processing_task WHERE id = %s",
                                 (ts_b,)).fetchone()
    assert (state, waits) == ("pending", prep_a)


def test_a_planned_series_task_whose_wait_clears_wakes_the_launchers(world):
    """A planned task that waited (as a plan stored before it could not) was released without a wake-up
    call: it counted pending ones alone (found by review)."""
    prep_a, ts_b = a_series_task_waiting_for_prep_a(world)
    plan(world, [ts_b], "w1")
    world.execute("UPDATE hrwsi.processing_task SET waits_for_upstream = %s WHERE id = %s", (prep_a, ts_b))
    listener = listen(world.info.dsn, "hrwsi_task")
    outcome(world, prep_a, state="internal_error")
    assert waits_for(world, ts_b) is None
    assert any(payload.get("counts", {}).get("planned") for _, payload in drain(listener))


def test_a_routine_that_is_no_longer_a_time_series_wakes_the_planner_for_the_pending_tasks_it_releases(world):
    prep_a, ts_b = a_series_task_waiting_for_prep_a(world)
    listener = listen(world.info.dsn, "hrwsi_task")
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = false WHERE name = 'ts'")
    assert waits_for(world, ts_b) is None
    assert {"op": "update", "counts": {"pending": 1}} in [payload for _, payload in drain(listener)]


def test_a_series_task_that_still_waits_for_upstream_work_says_so_when_it_is_released_moved_or_unblocked(world):
    """A task released, moved or unblocked said only that, and looked ready while it still waited for an
    earlier scene's upstream work (found by review)."""
    prep_a, ts_b = a_series_task_waiting_for_prep_a(world)
    input_a = world.execute("SELECT input_id FROM hrwsi.processing_task WHERE id = %s", (prep_a,)).fetchone()[0]
    waits = (f"waits for the scene sensed before it, input {input_a}, whose prep task {prep_a} has not ended yet "
             f"(`hrwsi task show {prep_a}` says where it is): it runs after that scene's own task in its series")

    def reason():
        return world.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0]

    world.execute("SELECT hrwsi.hold_task(%s)", (ts_b,))
    world.execute("SELECT hrwsi.release_task(%s)", (ts_b,))
    assert reason() == f"released by an operator; {waits}"
    world.execute("SELECT hrwsi.hold_routine('ts')")
    world.execute("SELECT hrwsi.release_routine('ts')")
    assert reason() == f"routine released by an operator; {waits}"
    # Unblocked: a scene sensed before A came straight to ts, ended terminated, and was retried.
    _, ts_x = scene(world, "ts", "/l2a/direct-X", 9)
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0] == ts_x
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 1 WHERE id = %s", (ts_x,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (ts_x,))
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (ts_b,)).fetchone()[0] == "blocked"
    world.execute("SELECT hrwsi.retry_task(%s)", (ts_x,))
    assert reason() == f"its dependency, task {ts_x}, was retried; {waits}"
    world.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                     input_product_type, output_product_type, sequential_per_tile)
                     VALUES ('ts2', 1, 100, 10, '1 min', ARRAY['true'], 'L2A', 'TS', true)""")
    world.execute("SELECT hrwsi.move_tasks('ts', 'ts2')")
    assert reason() == f"moved from routine ts to routine ts2 by an operator; {waits}"
    # (its history says the same: it said the move alone, found by review)
    assert world.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                         (ts_b,)).fetchone()[0] == reason()
    # Released from blocked, it runs without what it waited for, upstream work included.
    world.execute("UPDATE hrwsi.processing_task SET state = 'blocked', state_reason = 'blocked' WHERE id = %s", (ts_b,))
    assert ts_b not in plannable(world)
    world.execute("SELECT hrwsi.release_task(%s)", (ts_b,))
    assert world.execute("SELECT waits_for_upstream, state_reason FROM hrwsi.processing_task WHERE id = %s",
                         (ts_b,)).fetchone() == (None, "released by an operator: runs without its dependency")
    assert ts_b in plannable(world)


def test_a_series_tasks_reason_says_an_upstream_task_that_ended_has_ended(world):
    """A wait an end left to the orchestrator's sweep (the series' lock busy) was said "is still running"
    of a task that had ended terminated or cancelled, and "not chained yet" of one whose products were
    (found by review)."""
    prep_a, ts_b = a_series_task_waiting_for_prep_a(world)

    def said() -> str:
        return world.execute("SELECT hrwsi.upstream_wait_reason(%s)", (prep_a,)).fetchone()[0]

    assert "has not ended yet" in said()
    world.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER USER")  # (the end alone, as a busy lock leaves it)
    try:
        for state in ("terminated", "cancelled"):
            world.execute("UPDATE hrwsi.processing_task SET state = %s WHERE id = %s", (state, prep_a))
            assert f"ended {state}; the orchestrator releases this wait within a minute" in said()
        world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (prep_a,))
        world.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, '/l2a/A', 'L2A')", (prep_a,))
        assert "is processed but its products are not chained yet" in said()
        world.execute("UPDATE hrwsi.product SET chained_at = now() WHERE task_id = %s", (prep_a,))
        assert "ended processed; the orchestrator releases this wait within a minute" in said()
    finally:
        world.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER USER")


@pytest.mark.parametrize("predecessor", ["back-fill", "aged back-fill"])
def test_the_back_fill_a_fresh_scene_waits_for_takes_its_deadline_and_goes_before_aged_back_fill(world, predecessor):
    """Found by exploratory testing: a fresh scene of a series waited behind 20 archive scenes aged to priority 0
    and missed its deadline. The back-fill before it in its series took its priority and no deadline (or,
    aged itself, nothing): served as aged back-fill is, by age, after the 20. It takes the fresh scene's
    deadline (it must run first for the scene to run at all); aged work without a deadline stays behind."""
    routine(world, sequential=True)
    routine(world, name="bulk")  # (other back-fill, not a series: every task of it ready at once)
    world.execute("UPDATE hrwsi.processing_condition SET deadline = interval '3 hours'")
    aged = add(world, "bulk", count=20, measured="2026-01-01T00:00Z", lane="archive")
    before = add(world, count=1, tile="32TPR", measured="2026-01-01T00:00Z", lane="archive")
    world.execute("UPDATE hrwsi.processing_task SET created_at = now() - interval '7 hours' WHERE id = ANY (%s)",
                  (aged + (before if predecessor == "aged back-fill" else []),))
    world.execute(query("promote_aged_tasks"))
    [fresh] = add(world, count=1, tile="32TPR", measured=datetime.now(UTC) - timedelta(minutes=5))
    rows = {r[0]: r[1:] for r in world.execute("SELECT id, priority, deadline_at FROM hrwsi.processing_task")}
    assert rows[before[0]] == rows[fresh], "the fresh scene's priority and deadline"
    assert {rows[t] for t in aged} == {(0, None)}, "aged back-fill: urgent, without a deadline"
    assert dispatch(world, max_jobs=1) == [(before[0], "w1")], "before the aged back-fill"


def test_a_task_dispatch_claims_while_a_fresh_scene_makes_its_series_urgent_stays_claimed_and_runs_once(
        world, database_url):
    """Found by review (migration 0081): the INSERT of a fresh scene makes the back-fill before it in its
    series as urgent as itself, and a task it reads as pending in its snapshot may be claimed by dispatch
    meanwhile. Its UPDATE waited for the claim's lock, then checked the claimed row against its condition
    of priority alone and put it back to pending: dispatch ran a second attempt beside the first."""
    routine(world, sequential=True)
    world.execute("UPDATE hrwsi.processing_condition SET deadline = interval '3 hours'")
    [first] = add(world, count=1, tile="32TPR", measured="2026-01-01T00:00Z", lane="archive")
    add(world, count=1, tile="31TCH", measured="2026-01-01T00:00Z", lane="archive")  # (the row the claim reads next)
    [second] = add(world, count=1, tile="32TPR", measured="2026-01-01T01:00Z", lane="archive")
    with psycopg.connect(database_url) as claiming:
        with claiming.transaction():
            assert dispatch(claiming, max_jobs=1) == [(first, "w1")]  # its claim, not committed yet
            racer = threading.Thread(target=add, args=(world,),
                                     kwargs=dict(count=1, tile="32TPR", measured=datetime.now(UTC) - timedelta(minutes=5)))
            racer.start()
            racer.join(0.5)
            assert racer.is_alive(), "the fresh scene's INSERT waits for the claim's lock on the task it makes urgent"
        racer.join(10)
    assert not racer.is_alive()
    state, attempts = world.execute("SELECT state, attempts FROM hrwsi.processing_task WHERE id = %s", (first,)).fetchone()
    assert (state, attempts) == ("dispatched", 1), "claimed, and left so"
    dispatch(world)
    assert world.execute("SELECT count(*) FROM hrwsi.job WHERE task_id = %s", (first,)).fetchone()[0] == 1
    second_row = world.execute("SELECT state, priority FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone()
    assert second_row == ("pending", 0), "the task still waiting is as urgent as the fresh scene"


def test_a_time_series_back_fill_inserted_again_after_one_rolled_back_reads_a_few_tasks_per_scene(world, database_url):
    # Found by measuring it: after an INSERT of a series' back-fill was rolled back (a data engineer's
    # statement refused for one bad row, then sent again), ANALYZE counted no live task, and plans made on
    # those statistics linked the new tasks (and passed deadlines down) by reading every task once per new
    # task: 400 scenes over 20 tiles took 9 s and read 389 tasks per scene, 2,000 ran past a minute, where
    # 10,000 take a second on a fresh table. Migration 0085 reads them by key whatever the statistics.
    routine(world, sequential=True, lane="archive")
    back_fill = """INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                   SELECT 'work_c', %s || g, (10 + g %% 20)::text || 'TPR', timestamptz '2024-01-01 00:00Z' + g * interval '1 hour'
                   FROM generate_series(1, 400) g"""
    with world.transaction(force_rollback=True):
        world.execute(back_fill, ("/in/refused/",))
    world.execute("ANALYZE hrwsi.processing_task")
    with psycopg.connect(database_url) as session:  # (a new session: plans made on these statistics)
        session.execute("SET statement_timeout = '60s'")
        session.execute(back_fill, ("/in/again/",))
        read = session.execute("""SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
                                  WHERE relname = 'processing_task'""").fetchone()[0]
        session.commit()
    assert read / 400 < 100, f"{read / 400:.0f} tasks read per new scene"
    linked = world.execute("""SELECT count(*) FILTER (WHERE depends_on IS NOT NULL), count(*)
                              FROM hrwsi.processing_task""").fetchone()
    assert linked == (380, 400), "each scene waits for the one before it on its tile, but the first of each tile"


def hold_routine_while_blocked_then_unblock(world, database_url, unblocked_by) -> tuple[int, int, int, int]:
    """The series' second scene blocked (its first terminated, or its previous task cancelled while the series'
    lock was busy), the routine held, then the block undone by `unblocked_by`."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    if unblocked_by == "sweep":
        key = world.execute("SELECT hrwsi.series_lock_key('work', '32TPR')").fetchone()[0]
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
            world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (first,))
            world.execute("SELECT hrwsi.hold_routine('work', 'an operator''s check')")
            holder.commit()
        world.execute(query("recheck_upstream_waits"))
    else:
        terminate(world, first)
        world.execute("SELECT hrwsi.hold_routine('work', 'an operator''s check')")
        if unblocked_by == "retry":
            world.execute("SELECT hrwsi.retry_task(%s)", (first,))
        elif unblocked_by == "series_off":
            world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = false WHERE name = 'work'")
        else:
            world.execute("SELECT hrwsi.release_task(%s)", (second,))
    return first, second, third, fourth


@pytest.mark.parametrize("unblocked_by", ["retry", "release", "sweep", "series_off"])
def test_a_blocked_task_whose_wait_ends_while_its_routine_is_held_is_held_with_it(world, database_url, unblocked_by):
    """Found by review: a blocked task whose wait ended while its routine was on hold became pending (dispatch skips a
    held routine, but `hrwsi status` and the dashboard showed it pending, as no new task of that routine is). It is
    held with its routine, whichever path unblocks it, and planned when the routine is released."""
    first, second, third, fourth = hold_routine_while_blocked_then_unblock(world, database_url, unblocked_by)
    unblocked = [second, third, fourth]  # (the one released too: its release lifts no hold of its routine, 0098)
    rows = dict((r[0], r[1:]) for r in world.execute(
        "SELECT id, state, state_reason FROM hrwsi.processing_task WHERE id = ANY (%s)", (unblocked,)))
    for task in unblocked:
        assert rows[task][0] == "on_hold", (task, rows[task])
        assert rows[task][1].startswith("routine on hold: an operator's check; "), rows[task]
    world.execute("SELECT hrwsi.release_routine('work')")
    assert {r[0] for r in world.execute("SELECT state FROM hrwsi.processing_task WHERE id = ANY (%s)",
                                        (unblocked,))} == {"pending"}


@pytest.mark.parametrize("unblocked_by", ["retry", "sweep"])
def test_a_task_an_operator_held_keeps_its_hold_through_a_block(world, database_url, unblocked_by):
    """Found by review: a task an operator held, blocked then by the end of the task it waits for (held -> blocked),
    was made pending when its wait ended (the orchestrator's sweep, a retry of that task): the hold was lost. It stays
    marked held while blocked (`hrwsi status` lists it with the held tasks) and is held again when its wait ends."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    world.execute("SELECT hrwsi.hold_task(%s)", (second,))
    if unblocked_by == "sweep":
        key = world.execute("SELECT hrwsi.series_lock_key('work', '32TPR')").fetchone()[0]
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
            world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (first,))
            holder.commit()
    else:
        terminate(world, first)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone() == ("blocked",)
    from hrwsi import reports
    held = [(r["id"], r["reason"]) for r in reports.status(world)["held_tasks"]]
    assert [task for task, _ in held] == [second] and held[0][1].startswith("held by an operator, and blocked: "), held
    if unblocked_by == "sweep":
        world.execute(query("recheck_upstream_waits"))
    else:
        world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    state, reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (second,)).fetchone()
    assert state == "on_hold" and reason.startswith("held by an operator, its hold kept while it was blocked: "), (state, reason)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone() == ("pending",)
    world.execute("SELECT hrwsi.release_task(%s)", (second,))
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone() == ("pending",)


def test_a_series_tasks_wait_reason_states_nothing_its_upstream_task_outgrows(world):
    """Found by review: a series task's reason said the state its upstream task was in when the wait was decided
    ("whose prep task 12 has not run yet"), and kept saying it while that task ran, or was held: only its end, its
    retry or its products' chaining decide the wait again. It says what stays true until then, and where to look."""
    chained_series(world)
    _, ts_b = scene(world, "ts", "/l2a/direct-B", 11)
    input_a, prep_a = scene(world, "prep", "/l1c/A", 10)
    waits = (f"waits for the scene sensed before it, input {input_a}, whose prep task {prep_a} has not ended yet "
             f"(`hrwsi task show {prep_a}` says where it is): it runs after that scene's own task in its series")
    row = "SELECT state_reason FROM hrwsi.processing_task WHERE id = %s"
    assert world.execute(row, (ts_b,)).fetchone() == (waits,)
    assert world.execute("SELECT hrwsi.upstream_wait_reason(%s)", (prep_a,)).fetchone() == (waits,)
    assert [task for task, _ in dispatch(world)] == [prep_a]
    world.execute("UPDATE hrwsi.processing_task SET state = 'running' WHERE id = %s", (prep_a,))
    assert world.execute(row, (ts_b,)).fetchone() == (waits,), "still true while it runs"


def test_a_task_made_while_a_move_waits_for_its_series_locks_is_refused_by_the_move_as_one_made_before(
        world, database_url):
    """Found by review: hrwsi.move_tasks refused tasks made outside any series (to a time series) in one statement and
    chose the tasks it moved in another, after waiting for the series' locks: a task made in between, on a routine that
    is no time series, was moved into the series unrefused, and ran beside the tasks of its tile there. The refusal is
    decided on the tasks it moves."""
    routine(world, name="src", sequential=True)
    routine(world, name="dst", sequential=True)
    add(world, name="src", tile="32TPR", measured="2026-01-01T00:00Z")
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = false WHERE name = 'src'")
    key = world.execute("SELECT hrwsi.series_lock_key('dst', '32TPR')").fetchone()[0]
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as mover:
        holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
        moving, moved = in_a_thread(lambda: (mover.execute("SELECT hrwsi.move_tasks('src', 'dst')"), mover.commit()))
        waiting_on_a_lock(world, mover)
        [late] = add(world, name="src", tile="32TQR", measured="2026-01-02T00:00Z")
        holder.commit()
        moving.join()
    assert "is a time series (sequential_per_tile), routine src is not" in str(moved.get("error")), moved
    assert f"task {late} " in str(moved["error"])
    assert world.execute("SELECT routine FROM hrwsi.processing_task WHERE id = %s", (late,)).fetchone() == ("src",)


@pytest.mark.parametrize("to_a_series", [False, True])
def test_a_task_an_operator_held_keeps_its_hold_through_a_block_when_a_move_ends_its_wait(world, to_a_series):
    """A blocked task moved to a routine that is no time series waits for nothing, and one moved first of its tile into
    another series too: they were pending. One an operator held before it was blocked is held again, as every path
    that ends its wait holds it."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    routine(world, name="other", sequential=to_a_series)
    world.execute("SELECT hrwsi.hold_task(%s)", (second,))
    terminate(world, first)
    world.execute("SELECT hrwsi.move_tasks('work', 'other')")
    rows = dict((r[0], r[1:]) for r in world.execute(
        "SELECT id, state, state_reason FROM hrwsi.processing_task WHERE id IN (%s, %s)", (second, third)))
    assert rows[second][0] == "on_hold" and "held by an operator, its hold kept while it was blocked" in rows[second][1], rows
    assert rows[third][0] == "pending", rows


@pytest.mark.parametrize("hold", ["routine", "back-fill"])
@pytest.mark.parametrize("action", ["release", "retry"])
def test_releasing_or_retrying_a_blocked_task_lifts_no_hold_of_its_routine_campaign_or_back_fill(
        world, database_url, action, hold):
    """Found by review: `hrwsi release` or `hrwsi retry` of a task that was itself blocked made it pending while its
    routine (its campaign, its back-fill) was on hold: shown pending, skipped by dispatch. The task's release lifts its
    own hold (and its block) only; it is held with its routine, and the answer says so in one line, and how to lift it."""
    first, second, third, _ = four_scenes_of_one_series(world)
    if hold == "back-fill":
        world.execute("UPDATE hrwsi.processing_task SET lane = (SELECT name FROM hrwsi.lane WHERE priority > 0 LIMIT 1)")
    if action == "retry":  # (the task before it cancelled while the series' lock was busy: its retry links it anew)
        key = world.execute("SELECT hrwsi.series_lock_key('work', '32TPR')").fetchone()[0]
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
            world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (first,))
            holder.commit()
    else:
        terminate(world, first)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone() == ("blocked",)
    lift = {"routine": "routine work is on hold: `hrwsi release work` releases it",
            "back-fill": "the back-fill of routine work is on hold: `hrwsi release work` releases it"}[hold]
    if hold == "routine":
        world.execute("SELECT hrwsi.hold_routine('work', 'an operator''s check')")
    else:
        world.execute("UPDATE hrwsi.processing_routine SET backfill_hold_reason = 'an operator''s check' WHERE name = 'work'")
    said = world.execute(f"SELECT hrwsi.{action}_task(%s)", (second,)).fetchone()[0]
    assert "\n" not in said and said.endswith(f"but it is still held: {lift}"), said
    state, reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (second,)).fetchone()
    assert state == "on_hold" and "on hold: an operator's check; " in reason, (state, reason)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone() == ("on_hold",)
    world.execute("SELECT hrwsi.release_routine('work')")
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone() == ("pending",)


@pytest.mark.parametrize("action", ["release", "retry"])
def test_releasing_or_retrying_a_blocked_task_an_operator_held_lifts_its_own_hold(world, database_url, action):
    """The retry of a blocked task an operator had held lifts that hold with the block: it is pending, not held again
    as when its wait ends by itself. Its release lifts the operator's hold alone (migration 0118): it is blocked still,
    waiting for its dependency, and a second release runs it without it."""
    first, second, _, _ = four_scenes_of_one_series(world)
    world.execute("SELECT hrwsi.hold_task(%s)", (second,))
    if action == "retry":
        key = world.execute("SELECT hrwsi.series_lock_key('work', '32TPR')").fetchone()[0]
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(7250010, %s)", (key,))
            world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (first,))
            holder.commit()
    else:
        terminate(world, first)
    world.execute(f"SELECT hrwsi.{action}_task(%s)", (second,))
    if action == "release":
        assert world.execute("SELECT state, held_while_blocked FROM hrwsi.processing_task WHERE id = %s",
                             (second,)).fetchone() == ("blocked", False)
        world.execute("SELECT hrwsi.release_task(%s)", (second,))
    assert world.execute("SELECT state, held_while_blocked FROM hrwsi.processing_task WHERE id = %s",
                         (second,)).fetchone() == ("pending", False)


@pytest.mark.parametrize("which", ["blocked", "blocked behind it"])
def test_an_operators_hold_of_a_blocked_task_keeps_it_back_and_its_release_gives_it_back_to_its_wait(world, which):
    """Found by exploration: `hrwsi hold` of a blocked task (its dependency ended terminated, or it waits behind one
    that did) was refused, "only a pending or planned task ... can be held", so ops could not keep back a task they did
    not want run once its dependency is retried, and its release then ran it without what it waited for. The hold is
    the operator's, kept while it is blocked: the retry of its dependency holds it, not runs it; its release lifts
    the hold alone, and it waits for its dependency again."""
    from hrwsi import reports
    first, second, third, _ = four_scenes_of_one_series(world)
    terminate(world, first)
    task = second if which == "blocked" else third
    row = "SELECT state, held_while_blocked, dependency_waived, state_reason FROM hrwsi.processing_task WHERE id = %s"
    blocked_reason = world.execute(row, (task,)).fetchone()[3]
    said = world.execute("SELECT hrwsi.hold_task(%s)", (task,)).fetchone()[0]
    assert said.startswith(f"task {task} is on hold") and "blocked" in said and "\n" not in said, said
    assert world.execute(row, (task,)).fetchone() == ("blocked", True, False, blocked_reason)
    held = [(r["id"], r["reason"]) for r in reports.status(world)["held_tasks"]]
    assert held == [(task, "held by an operator, and blocked: " + blocked_reason)], held
    history = world.execute("SELECT state, reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                            (task,)).fetchone()
    assert history == ("blocked", "held by an operator, and blocked: " + blocked_reason), history
    with pytest.raises(psycopg.errors.CheckViolation, match="already held by an operator"):
        world.execute("SELECT hrwsi.hold_task(%s)", (task,))

    said = world.execute("SELECT hrwsi.release_task(%s)", (task,)).fetchone()[0]
    assert said.startswith(f"task {task} released from its operator's hold; it is still blocked") and "\n" not in said
    assert world.execute(row, (task,)).fetchone() == ("blocked", False, False, blocked_reason), "waits again"

    world.execute("SELECT hrwsi.hold_task(%s)", (task,))
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))  # (its wait ends: held, not run)
    state, _, waived, reason = world.execute(row, (task,)).fetchone()
    # (held while it was blocked, not before: it read "held by an operator, as before it was blocked", migration 0119)
    assert (state, waived) == ("on_hold", False), (state, reason)
    assert reason.startswith("held by an operator, its hold kept while it was blocked: "), reason
    world.execute("SELECT hrwsi.release_task(%s)", (task,))
    assert world.execute(row, (task,)).fetchone()[:3] == ("pending", False, False)


@pytest.mark.parametrize("relinked_by", ["cancel", "move"])
def test_a_held_task_relinked_behind_a_task_that_ended_terminated_is_blocked_and_keeps_its_hold(world, relinked_by):
    """Found by review: a held task that a relinking (the task before it cancelled, a move into another series) put
    behind a task that had ended terminated stayed held, its wait never decided again: released, it was pending
    behind a task that could not run. It is blocked, its operator's hold kept, held again once its wait ends."""
    if relinked_by == "cancel":
        first, second, third, _ = four_scenes_of_one_series(world)
        terminate(world, first)
        world.execute("SELECT hrwsi.release_task(%s)", (second,))  # (runs without the first: the third is pending)
        world.execute("SELECT hrwsi.hold_task(%s)", (third,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (second,))
        held = third
    else:
        routine(world, sequential=True)
        routine(world, name="other", sequential=True)
        [first] = add(world, name="other", tile="32TPR", measured="2026-01-01T00:00Z")
        terminate(world, first)
        [held] = add(world, name="work", tile="32TPR", measured="2026-01-02T00:00Z")
        world.execute("SELECT hrwsi.hold_task(%s)", (held,))
        world.execute("SELECT hrwsi.move_tasks('work', 'other')")
    state, waived, held_while_blocked, depends_on, reason = world.execute(
        "SELECT state, dependency_waived, held_while_blocked, depends_on, state_reason FROM hrwsi.processing_task "
        "WHERE id = %s", (held,)).fetchone()
    assert (state, held_while_blocked, depends_on) == ("blocked", True, first), (state, reason)
    assert f"task {first}" in reason and "ended terminated" in reason and f"`hrwsi retry {first}`" in reason, reason
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    state, reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (held,)).fetchone()
    assert state == "on_hold" and reason.startswith("held by an operator, its hold kept while it was blocked: "), (state, reason)


@pytest.mark.parametrize("to_a_series", [False, True])
def test_a_back_fill_task_a_move_unblocks_is_held_with_the_back_fill_of_the_routine_it_moves_to(world, to_a_series):
    """Found by review (migration 0102): a move held the tasks it made pending on a routine on hold, but not those of a
    back-fill lane on a routine whose back-fill was on hold: they were pending, and ran, while the back-fill's other
    tasks waited for its release. Held with it, as a new task of it is."""
    first, second, third, fourth = four_scenes_of_one_series(world)
    world.execute("UPDATE hrwsi.processing_task SET lane = (SELECT name FROM hrwsi.lane WHERE priority > 0 LIMIT 1)")
    routine(world, name="other", sequential=to_a_series)
    world.execute("UPDATE hrwsi.processing_routine SET backfill_hold_reason = 'an operator''s check' WHERE name = 'other'")
    terminate(world, first)
    assert world.execute("SELECT array_agg(DISTINCT state) FROM hrwsi.processing_task WHERE id <> %s",
                         (first,)).fetchone()[0] == ["blocked"]
    world.execute("SELECT hrwsi.move_tasks('work', 'other')")
    rows = world.execute("SELECT id, state, state_reason FROM hrwsi.processing_task WHERE id <> %s ORDER BY id",
                         (first,)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(second, "on_hold"), (third, "on_hold"), (fourth, "on_hold")], rows
    assert all("back-fill of routine other on hold: an operator's check" in r[2] for r in rows), rows


def _correctable_series(world):
    """Four scenes of one series, the second's input to correct: (tasks in sensing order, the second's input)."""
    tasks = four_scenes_of_one_series(world)
    return tasks, world.execute("SELECT input_id FROM hrwsi.processing_task WHERE id = %s", (tasks[1],)).fetchone()[0]


def test_a_task_an_operator_held_keeps_its_hold_when_a_correction_relinks_it_from_the_task_it_cancelled(world):
    """Migration 0098 (untested until 0102): the correction's relinking of a blocked task that waited for a task it
    cancelled is no operator's retry of it: an operator's hold of it is kept, and it is held again once its wait ends."""
    (first, second, third, _), old_input = _correctable_series(world)
    world.execute("SELECT hrwsi.hold_task(%s)", (third,))
    terminate(world, first)  # (the second is blocked, the third with it, its hold kept)
    assert world.execute("SELECT state, held_while_blocked FROM hrwsi.processing_task WHERE id = %s",
                         (third,)).fetchone() == ("blocked", True)
    world.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (old_input,))
    assert world.execute("SELECT state, depends_on, held_while_blocked FROM hrwsi.processing_task WHERE id = %s",
                         (third,)).fetchone() == ("blocked", first, True)
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    state, reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (third,)).fetchone()
    assert state == "on_hold" and reason.startswith("held by an operator, its hold kept while it was blocked: "), (state, reason)


def test_a_task_an_operator_held_keeps_its_hold_when_a_late_scene_relinks_it(world):
    """Migration 0098 (untested until 0102): a held task blocked behind a terminated one, behind which a late scene
    lands, waits for the late scene, blocked, its operator's hold kept; held again once its wait ends."""
    routine(world, sequential=True)
    series_input(world, "2026-01-01T00:00Z")
    series_input(world, "2026-01-03T00:00Z")
    first, held = [r[0] for r in world.execute("SELECT id FROM hrwsi.processing_task ORDER BY series_at")]
    world.execute("SELECT hrwsi.hold_task(%s)", (held,))
    terminate(world, first)
    series_input(world, "2026-01-02T00:00Z")  # (late: between them)
    late = world.execute("SELECT id FROM hrwsi.processing_task WHERE series_at = '2026-01-02T00:00Z'").fetchone()[0]
    assert world.execute("SELECT state, depends_on, held_while_blocked FROM hrwsi.processing_task WHERE id = %s",
                         (held,)).fetchone() == ("blocked", late, True)
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    state, reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (held,)).fetchone()
    assert state == "on_hold" and reason.startswith("held by an operator, its hold kept while it was blocked: "), (state, reason)
    assert world.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (late,)).fetchone() == ("pending",)


def test_a_task_a_correction_relinks_behind_a_terminated_task_is_blocked_and_ops_are_told(world):
    """Found by review (migration 0102): the correction's relinking of a task that waited for a processed task of the
    old input, behind a task that ended terminated, blocked it without the task_blocked alert the other paths write."""
    (first, second, third, _), old_input = _correctable_series(world)
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 1 WHERE id = %s", (second,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (second,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 1, depends_on = NULL, dependency_waived = true WHERE id = %s", (first,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (first,))
    assert world.execute("SELECT state, depends_on FROM hrwsi.processing_task WHERE id = %s",
                         (third,)).fetchone() == ("pending", second)
    world.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (old_input,))
    state, reason = world.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s",
                                  (third,)).fetchone()
    assert state == "blocked" and f"its dependency, task {first}, ended terminated" in reason, (state, reason)
    alerts = world.execute("SELECT subject, body FROM hrwsi.alert WHERE kind = 'task_blocked' AND task_id = %s",
                           (third,)).fetchall()
    assert alerts == [(f"hrwsi: task {third} (work) is blocked", reason)], alerts


def test_a_task_held_with_its_routines_back_fill_is_released_by_a_move_to_a_routine_whose_back_fill_is_not_held(world):
    """Found by review (migration 0102): a move released the tasks held because their old routine was on hold, not
    those held with its back-fill: they stayed held, by the hold of a routine they had left, which its release no
    longer reached."""
    first, second, _, _ = four_scenes_of_one_series(world)
    world.execute("UPDATE hrwsi.processing_task SET lane = (SELECT name FROM hrwsi.lane WHERE priority > 0 LIMIT 1)")
    world.execute("UPDATE hrwsi.processing_routine SET backfill_hold_reason = 'an operator''s check' WHERE name = 'work'")
    assert world.execute("SELECT array_agg(DISTINCT state) FROM hrwsi.processing_task").fetchone()[0] == ["on_hold"]
    routine(world, name="other")
    world.execute("SELECT hrwsi.move_tasks('work', 'other')")
    rows = world.execute("SELECT state, state_reason FROM hrwsi.processing_task ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["pending"] * 4, rows
    assert all("back-fill" not in r[1] for r in rows), rows
