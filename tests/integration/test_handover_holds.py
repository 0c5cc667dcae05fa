"""Hand-over holds (hrwsi.handover_hold, migration 0117; ADR 0009): when an urgent task ends, its room on its worker is
kept from back-fill for a short window, so that the next step of its near-real-time chain, or its own retry, gets the
slot instead of waiting behind an archive task that took it meanwhile."""

import pytest

LEASE = 30.0
ME = "launcher-test"
HOLD_S = 60.0


@pytest.fixture
def world(db):
    return make_world(db)


def make_world(db):
    """One worker with room for one task at a time; a 2-step near-real-time chain (step1 makes L2A, which step2
    reads); an archive routine with back-fill waiting; a fresh lease."""
    db.execute("INSERT INTO hrwsi.flavour VALUES ('one', 1, 1000, 100), ('big', 4, 4000, 400)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'one')")
    db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid) VALUES (%s, 'launcher', 'here', 1)", (ME,))
    for name, reads, makes, lane in (("step1", "L1C", "L2A", "nrt"), ("step2", "L2A", "L3", "nrt"),
                                     ("other", "S1", "S1X", "nrt"), ("old", "ARC", "ARCX", "archive")):
        db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                      input_product_type, output_product_type) VALUES (%s, 1, 500, 50, '1 min', ARRAY['true'], %s, %s)""",
                   (name, reads, makes))
        db.execute("INSERT INTO hrwsi.processing_condition (name, routine, lane) VALUES (%s, %s, %s)",
                   (f"{name}_c", name, lane))
    return db


def add(db, routine, path):
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) "
               "VALUES (%s, %s, '32TPR', now() - interval '1 hour')", (f"{routine}_c", path))
    return db.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                      "WHERE i.input_path = %s", (path,)).fetchone()[0]


def chain(db, routine, product_path):
    """The next step's input, as the harvester's chaining inserts it: chained from the product (input.product_id)."""
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, source, product_id) "
               "SELECT %s, p.path, '32TPR', now() - interval '1 hour', 'chaining', p.id FROM hrwsi.product p "
               "WHERE p.path = %s", (f"{routine}_c", product_path))
    return db.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                      "WHERE i.input_path = %s", (product_path,)).fetchone()[0]


def dispatch(db):
    return db.execute("""SELECT (job).task_id, (job).worker FROM hrwsi.dispatch(%s, 'dry-run', %s, 100, '/data')
                         WHERE (job).job_id IS NOT NULL""", (ME, LEASE)).fetchall()


def end(db, task, state="processed", products=(), hold_s=HOLD_S):
    """The launcher records how the task's attempt ended (hrwsi.record_outcomes, HRWSI_HANDOVER_HOLD_S = hold_s)."""
    job = db.execute("SELECT max(id) FROM hrwsi.job WHERE task_id = %s", (task,)).fetchone()[0]
    return db.execute(
        """SELECT task_state FROM hrwsi.record_outcomes(%s, %s, 5, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY[0], ARRAY['m'],
           ARRAY[NULL]::timestamptz[], ARRAY[NULL]::timestamptz[], ARRAY[NULL]::text[], %s::bigint[], %s::text[],
           %s::bigint[], %s)""",
        (ME, LEASE, job, state, [job] * len(products), list(products), [1] * len(products), hold_s)).fetchone()[0]


def holds(db):
    return db.execute("SELECT task_id, worker, cpu, kind FROM hrwsi.handover_hold ORDER BY task_id").fetchall()


@pytest.fixture
def back_fill(world):
    """Two archive tasks waiting for the worker."""
    return [add(world, "old", f"/arc/{n}") for n in (1, 2)]


def test_the_next_step_of_a_near_real_time_chain_gets_its_workers_slot_before_waiting_back_fill(world, back_fill):
    step1 = add(world, "step1", "/in/scene")
    assert dispatch(world) == [(step1, "w1")]  # (urgent first; the back-fill waits for the one slot)
    assert end(world, step1, products=["/p/scene.L2A"]) == "processed"
    assert holds(world) == [(step1, "w1", 1.0, "next_step")]
    # Before the harvester chains its product and the orchestrator makes step 2's task: the slot went to back-fill,
    # and step 2 waited for an archive run.
    assert dispatch(world) == [], "back-fill must not take the slot kept for the next step"
    step2 = add(world, "step2", "/p/scene.L2A")  # (what the harvester's chaining inserts)
    assert dispatch(world) == [(step2, "w1")]
    assert holds(world) == [], "the next step's claim ends the hold"


def test_back_fill_takes_the_slot_once_the_hold_has_expired(world, back_fill):
    step1 = add(world, "step1", "/in/scene")
    dispatch(world)
    end(world, step1, products=["/p/scene.L2A"])
    assert dispatch(world) == []
    world.execute("UPDATE hrwsi.handover_hold SET until = now() - interval '1 second'")  # (its window has passed)
    assert dispatch(world) == [(back_fill[0], "w1")]
    assert holds(world) == [], "an expired hold is deleted"


def test_a_failed_urgent_tasks_retry_gets_its_slot_back_after_its_back_off(world, back_fill):
    step1 = add(world, "step1", "/in/scene")
    dispatch(world)
    assert end(world, step1, state="internal_error") == "pending"
    assert holds(world) == [(step1, "w1", 1.0, "retry")]
    hold_until, not_before = world.execute(
        "SELECT h.until, t.not_before FROM hrwsi.handover_hold h JOIN hrwsi.processing_task t ON t.id = h.task_id"
    ).fetchone()
    assert hold_until > not_before, "kept until its back-off ends, and the window after"
    assert dispatch(world) == [], "back-fill must not take the slot during the back-off"
    world.execute("UPDATE hrwsi.processing_task SET not_before = now() WHERE id = %s", (step1,))  # (back-off over)
    assert dispatch(world) == [(step1, "w1")]
    assert holds(world) == []


def test_urgent_work_takes_held_room_and_ends_the_hold(world, back_fill):
    step1 = add(world, "step1", "/in/scene")
    dispatch(world)
    end(world, step1, products=["/p/scene.L2A"])
    assert holds(world) == [(step1, "w1", 1.0, "next_step")]
    other = add(world, "other", "/in/s1-scene")  # (urgent, of another chain)
    assert dispatch(world) == [(other, "w1")]
    assert holds(world) == [], "room is not counted twice"


def test_a_hold_ends_when_its_task_is_cancelled_or_its_worker_goes_inactive(world, back_fill):
    world.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w2', 'one')")
    first, second = add(world, "step1", "/in/a"), add(world, "step1", "/in/b")
    assert sorted(dispatch(world)) == [(first, "w1"), (second, "w2")]
    end(world, first, state="internal_error")
    end(world, second, products=["/p/b.L2A"])
    assert [h[:2] for h in holds(world)] == [(first, "w1"), (second, "w2")]
    assert dispatch(world) == []
    world.execute("SELECT hrwsi.cancel_task(%s)", (first,))
    world.execute("UPDATE hrwsi.worker SET active = false WHERE name = 'w2'")
    assert dispatch(world) == [(back_fill[0], "w1")]
    assert holds(world) == []


def test_a_hold_keeps_room_on_a_bigger_worker_for_the_next_step_alone(world, back_fill):
    """The hold keeps the room the task had, not its whole worker: back-fill takes what is left."""
    world.execute("UPDATE hrwsi.worker SET flavour = 'big' WHERE name = 'w1'")
    step1 = add(world, "step1", "/in/scene")
    more = [add(world, "old", f"/arc/{n}") for n in (3, 4)]
    assert dispatch(world) == [(step1, "w1"), (back_fill[0], "w1"), (back_fill[1], "w1"), (more[0], "w1")]
    end(world, step1, products=["/p/scene.L2A"])
    assert dispatch(world) == [], "three archive tasks run and one CPU is held"
    end(world, back_fill[0])
    assert dispatch(world) == [(more[1], "w1")], "back-fill takes the room an archive task freed"


def test_a_next_step_placed_on_another_worker_ends_its_steps_hold_and_back_fill_takes_that_room(world):
    """Found in session 78: a next step that went elsewhere (here its routine needs the other flavour) left its step's
    room held from back-fill until the hold's end, for nothing."""
    world.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w2', 'big')")
    world.execute("UPDATE hrwsi.processing_routine SET flavour = 'big' WHERE name = 'step2'")
    world.execute("UPDATE hrwsi.processing_routine SET flavour = 'one' WHERE name = 'old'")
    back_fill = [add(world, "old", f"/arc/{n}") for n in (1, 2)]
    step1 = add(world, "step1", "/in/scene")
    assert dispatch(world) == [(step1, "w1")]
    end(world, step1, products=["/p/scene.L2A"])
    assert holds(world) == [(step1, "w1", 1.0, "next_step")]
    assert dispatch(world) == []
    step2 = chain(world, "step2", "/p/scene.L2A")
    assert dispatch(world) == [(step2, "w2"), (back_fill[0], "w1")], "step 2 runs elsewhere: w1's room is free again"
    assert holds(world) == []


def test_an_urgent_task_that_fits_beside_a_hold_leaves_it_to_the_next_step_it_was_kept_for(world):
    """Found in session 78: an urgent task of another chain ended a hold of the worker it went to whatever room it
    took, and back-fill took the held room before the next step came."""
    world.execute("UPDATE hrwsi.worker SET flavour = 'big' WHERE name = 'w1'")
    step1 = add(world, "step1", "/in/scene")
    back_fill = [add(world, "old", f"/arc/{n}") for n in range(1, 6)]
    assert dispatch(world) == [(step1, "w1")] + [(task, "w1") for task in back_fill[:3]]
    end(world, step1, products=["/p/scene.L2A"])
    end(world, back_fill[0])  # (one CPU free beside the one held)
    other = add(world, "other", "/in/s1-scene")
    assert dispatch(world) == [(other, "w1")], "back-fill must not take the room kept for step 2"
    assert [h[0] for h in holds(world)] == [step1]
    step2 = chain(world, "step2", "/p/scene.L2A")
    assert dispatch(world) == [(step2, "w1")]
    assert holds(world) == []


async def test_back_fill_starts_when_a_hold_ends_without_waiting_for_the_backstop_poll(world, database_url, settings):
    """Found in session 78: nothing woke dispatch when a hold ended; back-fill waited for the launcher's backstop poll
    (1.0-1.7 s after the hold's end, HRWSI_BACKSTOP_POLL_S = 2 s). Here that poll would come in an hour."""
    import dataclasses

    from tests.integration.conftest import running, wait_until
    back_fill = add(world, "old", "/arc/1")
    step1 = add(world, "step1", "/in/scene")
    assert dispatch(world) == [(step1, "w1")]
    end(world, step1, products=["/p/scene.L2A"], hold_s=3.0)
    async with running(database_url, ["launcher"], dataclasses.replace(settings, backstop_poll_s=3600.0)):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.job WHERE task_id = $1", back_fill, timeout=30)
    started, hold_ended = world.execute(
        "SELECT j.submitted_at, t.finished_at + interval '3 seconds' FROM hrwsi.job j, hrwsi.processing_task t "
        "WHERE j.task_id = %s AND t.id = %s", (back_fill, step1)).fetchone()
    assert started >= hold_ended, "not before the hold's end"


async def test_back_fill_is_planned_after_the_hold_that_keeps_its_workers_room_as_dispatch_will_start_it(
        world, pool, settings):
    """Found in session 78: planning waited for the fast path, which had room for the back-fill but for the hold, then
    planned it to start at once in the held room (started only once the hold ended): a plan dispatch did not follow."""
    from hrwsi.orchestrator import Orchestrator
    from hrwsi.sql_files import query

    world.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w2', 'one')")
    step1 = add(world, "step1", "/in/scene")
    back_fill = [add(world, "old", f"/arc/{n}") for n in (1, 2)]
    assert dispatch(world) == [(step1, "w1"), (back_fill[0], "w2")]
    end(world, step1, products=["/p/scene.L2A"])
    assert dispatch(world) == []
    orchestrator = Orchestrator(pool, settings)
    orchestrator.plan_after_s = 0.0
    await pool.execute(query("register_instance"), orchestrator.instance_id, "orchestrator", "here", 1, "test",
                       None, None, None, None)
    world.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() WHERE id = %s", (ME,))  # (a launcher runs)
    await orchestrator.plan()
    state, worker, start, hold_until = world.execute(
        "SELECT t.state, t.worker, t.planned_start, (SELECT until FROM hrwsi.handover_hold) "
        "FROM hrwsi.processing_task t WHERE t.id = %s", (back_fill[1],)).fetchone()
    assert state == "planned", "planned, not left to a fast path that has no room for it"
    assert worker == "w2" or start >= hold_until, f"planned on {worker} at {start}, in the room held until {hold_until}"


def test_no_hold_is_kept_without_waiting_back_fill_or_products_that_chain_on_or_a_window(world):
    step1 = add(world, "step1", "/in/scene")
    dispatch(world)
    end(world, step1, products=["/p/scene.L2A"])
    assert holds(world) == [], "no back-fill waits: nothing to keep the room from"
    add(world, "old", "/arc/1")
    step2 = add(world, "step2", "/p/scene.L2A")
    assert dispatch(world) == [(step2, "w1")]
    end(world, step2, products=["/p/scene.L3"])
    assert holds(world) == [], "L3 chains nowhere"
    third = add(world, "step1", "/in/scene2")
    dispatch(world)
    end(world, third, products=["/p/scene2.L2A"], hold_s=0)
    assert holds(world) == [], "HRWSI_HANDOVER_HOLD_S=0: no hold"


@pytest.mark.parametrize("back_fill_step", ["next condition in the archive lane", "an aged archive task"])
def test_no_hold_is_kept_for_a_next_step_that_is_back_fill_itself(world, back_fill, back_fill_step):
    """A hold for a next step served as back-fill would keep that very step, and all back-fill, off the worker."""
    if back_fill_step == "an aged archive task":
        world.execute("UPDATE hrwsi.processing_condition SET lane = 'archive' WHERE name = 'step1_c'")
        step1 = add(world, "step1", "/in/scene")
        world.execute("UPDATE hrwsi.processing_task SET priority = 0 WHERE id = %s", (step1,))  # (as ageing raises it)
    else:
        world.execute("UPDATE hrwsi.processing_condition SET lane = 'archive' WHERE name = 'step2_c'")
        step1 = add(world, "step1", "/in/scene")
    assert dispatch(world) == [(step1, "w1")]
    end(world, step1, products=["/p/scene.L2A"])
    assert holds(world) == []


def test_status_and_task_show_say_that_back_fill_waits_for_a_hand_over_hold_on_which_worker_until_when(world, back_fill):
    from io import StringIO

    from rich.console import Console

    from hrwsi import reports
    from hrwsi.cli import views
    step1 = add(world, "step1", "/in/scene")
    dispatch(world)
    end(world, step1, products=["/p/scene.L2A"])
    until = world.execute("SELECT until FROM hrwsi.handover_hold").fetchone()[0]
    said = (f"worker w1 keeps 1 CPU, 500 MB RAM, 50 MB storage of task {step1} (step1) for its next step until "
            f"{until:%Y-%m-%d %H:%M:%S}Z")
    out = StringIO()
    views.status(Console(file=out, width=1000), reports.status(world), stale_after_s=30)
    assert "back-fill waits for hand-over holds (2 less urgent task(s) waiting;" in out.getvalue()
    assert f"  {said}\n" in out.getvalue()
    out = StringIO()
    views.task(Console(file=out, width=1000), reports.task(world, back_fill[0]))
    assert f"  waits for a hand-over hold: {said}\n" in out.getvalue()
    world.execute("UPDATE hrwsi.handover_hold SET until = now() - interval '1 second'")
    assert reports.status(world)["handover_holds"] == [] and reports.task(world, back_fill[0])["handover_holds"] == []


def nrt_chain_beside_back_fill() -> dict:
    """The demo's 3-step chain (L1C -> L2A -> FSC -> QUICKLOOK) on one worker with room for one task at a time, and an
    archive routine of the same size whose back-fill waits."""
    from tests.integration.conftest import chain_configuration

    document = chain_configuration()
    document.pop("budget")
    document["flavour"] = [{"name": "one", "cpu": 2, "ram_mb": 4000, "disk_mb": 1000}]
    document["worker"] = [{"prefix": "w", "count": 1, "flavour": "one"}]
    for routine in document["routine"]:
        routine.update(cpu=2, ram_mb=4000, storage_mb=1000)
    document["routine"].append({"name": "old", "cpu": 2, "ram_mb": 4000, "storage_mb": 1000, "expected_duration_s": 1,
                                "command": ["sh", "-c", "exec sleep 1"], "input_product_type": "ARC",
                                "output_product_type": "ARCX"})
    document["condition"].append({"name": "arc", "routine": "old", "lane": "archive"})
    return document


async def test_each_step_of_a_near_real_time_chain_runs_before_the_back_fill_waiting_on_its_worker(
        db, database_url, settings, configure, tmp_path):
    """Measured in session 77: when a step ended, the launcher gave its slot to waiting back-fill before the
    harvester had chained its products and the orchestrator made the next step's task, so each step of the chain
    waited for an archive run (an hour in production)."""
    from datetime import UTC, datetime

    from hrwsi.app import App
    from hrwsi.demo import write_scenes
    from tests.integration.conftest import wait_until

    configure(nrt_chain_beside_back_fill())
    scene = write_scenes(tmp_path / "l1c", 1, datetime.now(UTC))[0]
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at)
                  VALUES ('l1c', %(path)s, %(tile)s, %(mission)s, %(measured_at)s, %(published_at)s)""", scene)
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, lane) "
               "SELECT 'arc', '/arc/' || g, 'archive' FROM generate_series(1, 3) g")
    async with App(database_url, ["harvester", "orchestrator", "launcher"], settings, backend="local", pool_size=10):
        await wait_until(database_url, "SELECT count(*) = 6 FROM hrwsi.processing_task WHERE state = 'processed'",
                         timeout=60)
    order = [routine for (routine,) in db.execute(
        "SELECT t.routine FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id ORDER BY j.id")]
    assert order == ["atmospheric_correction", "snow_cover", "quicklook", "old", "old", "old"]
