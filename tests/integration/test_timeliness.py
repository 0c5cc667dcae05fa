"""Timeliness of products (the views and `hrwsi.timeliness.report`) and deadline alerts, raised by
the orchestrator before a task is late when its plan already says so, and once it is late (ADR 0010)."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from hrwsi import orchestrator, timeliness
from hrwsi.cli.common import to_json
from tests.integration.conftest import running, single_routine_configuration, wait_until

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def world(db):
    db.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES
                  ('snow', 1, 100, 10, '1 min', ARRAY['true'], 'L2A', 'FSC')""")
    db.execute("""INSERT INTO hrwsi.processing_condition (name, routine, deadline, deadline_from, lane) VALUES
                  ('nrt', 'snow', '1 hour', 'measurement', 'nrt'), ('backfill', 'snow', NULL, 'measurement', 'archive')""")
    return db


def product(db, condition, path, measured, published, registered, tile="32TLR"):
    """A processed task whose product was registered at `registered`."""
    input_id = db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at,
                             published_at) VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                          (condition, path, tile, measured, published)).fetchone()[0]
    task = db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (input_id,)).fetchone()[0]
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
               "WHERE id = %s", (task,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (task,))
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type, created_at) VALUES (%s, %s, 'FSC', %s)",
               (task, path + ".fsc", registered))


def test_every_product_records_its_delays_from_sensing_and_publication_and_whether_it_was_on_time(world):
    measured = NOW - timedelta(hours=3)
    product(world, "nrt", "/a", measured, measured + timedelta(minutes=20), measured + timedelta(minutes=50))
    product(world, "nrt", "/b", measured, measured + timedelta(minutes=20), measured + timedelta(minutes=70))
    product(world, "backfill", "/c", measured - timedelta(days=400), measured, NOW)
    rows = world.execute("""SELECT path, lane, from_sensing_s, from_publication_s, on_time
                            FROM hrwsi.product_timeliness ORDER BY path""").fetchall()
    assert rows == [("/a.fsc", "nrt", 3000.0, 1800.0, True), ("/b.fsc", "nrt", 4200.0, 3000.0, False),
                    ("/c.fsc", "archive", 400 * 86400.0 + 3 * 3600, 3 * 3600.0, None)]


def test_the_report_gives_count_percentiles_and_share_on_time_per_routine_lane_tile_and_day(world):
    measured = NOW - timedelta(hours=2)
    for minutes in (10, 20, 30, 90):  # three on time (1 h deadline), one late
        product(world, "nrt", f"/n{minutes}", measured, measured, measured + timedelta(minutes=minutes))
    product(world, "nrt", "/other-tile", measured, measured, measured + timedelta(minutes=5), tile="31TGL")
    product(world, "backfill", "/old", measured - timedelta(days=30), measured, measured + timedelta(minutes=5))
    data = timeliness.report(world, timeliness.Filters(routine="snow", tile="32TLR", days=7))
    by_lane = {row["lane"]: row for row in data["summary"]}
    nrt = by_lane["nrt"]
    assert (nrt["products"], nrt["with_deadline"], nrt["on_time"], nrt["share_on_time"]) == (4, 4, 3, 0.75)
    # percentile_cont over 10, 20, 30 and 90 minutes: linear between ranks
    assert nrt["p50_from_sensing_s"] == pytest.approx(25 * 60)
    assert nrt["p95_from_sensing_s"] == pytest.approx((30 + 0.85 * 60) * 60)
    assert (by_lane["archive"]["with_deadline"], by_lane["archive"]["share_on_time"]) == (0, None)
    assert {(r["lane"], r["tile"]) for r in data["per_day"]} == {("nrt", "32TLR"), ("archive", "32TLR")}
    assert timeliness.share_text(nrt["on_time"], nrt["with_deadline"]) == "75.0 % (3/4)"
    only_archive = timeliness.report(world, timeliness.Filters(lane="archive"))
    assert [r["lane"] for r in only_archive["summary"]] == ["archive"]
    assert '"products": 1' in to_json(only_archive)


def test_each_deadline_alert_is_raised_once_per_task(world):
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at)
                     VALUES ('nrt', '/late', %s), ('nrt', '/fine', %s), ('backfill', '/no-deadline', %s)""",
                  (NOW - timedelta(hours=2), NOW, NOW - timedelta(days=9)))
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 1)
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 0)
    [(kind, subject, body)] = world.execute("SELECT kind, subject, body FROM hrwsi.alert").fetchall()
    assert kind == "deadline_missed" and "missed its deadline" in subject
    assert "/late" in body and "is still pending" in body


def test_a_task_processed_after_its_deadline_between_two_checks_is_told_once(world):
    """It ended late before the periodic check saw it open: no alert of any kind came (found by
    exploratory testing)."""
    now = datetime.now(UTC).replace(microsecond=0)  # (not the module's NOW: processed now, by the database)
    measured = now - timedelta(hours=2)  # due an hour ago
    product(world, "nrt", "/ended-late", measured, measured, now)
    product(world, "nrt", "/on-time", now - timedelta(minutes=10), now - timedelta(minutes=5), now)
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 1)
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 0)
    [(kind, body)] = world.execute("SELECT kind, body FROM hrwsi.alert").fetchall()
    assert kind == "deadline_missed" and "/ended-late" in body
    assert f"was due at {measured + timedelta(hours=1):%Y-%m-%d %H:%M:%S}Z and was processed at " in body
    assert re.search(r"Z, (59 min \d+ s|1 h 0 min) late\.", body), body


@pytest.fixture
def quick_deadline_checks(monkeypatch):
    """The orchestrator checks deadlines every 0.2 s instead of every 10 s."""
    monkeypatch.setattr(orchestrator, "DEADLINE_CHECK_EVERY_S", 0.2)


async def test_the_orchestrator_alerts_a_task_its_plan_ends_after_its_deadline_before_it_is_late(
        db, database_url, settings, configure, quick_deadline_checks, caplog):
    caplog.set_level(logging.WARNING, "hrwsi.orchestrator")
    document = single_routine_configuration(["true"], workers=1)
    document["routine"][0]["expected_duration_s"] = 3600  # the plan ends it an hour after it starts
    document["condition"][0].update({"deadline_hours": 0.5, "deadline_from": "measurement"})
    configure(document)
    async with running(database_url, ["orchestrator"], settings):  # no launcher: the task stays planned
        db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, measured_at) VALUES ('in', '/x', now())")
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.alert WHERE kind = 'deadline_at_risk'")
    row = db.execute("""SELECT a.created_at < t.deadline_at, t.state, t.planned_end > t.deadline_at, a.body
                        FROM hrwsi.alert a JOIN hrwsi.processing_task t ON t.id = a.task_id""").fetchone()
    assert row[:3] == (True, "planned", True), "alerted before it is late, because of its plan"
    assert "but its plan ends it at" in row[3] and "late)" in row[3]
    assert db.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'deadline_missed'").fetchone()[0] == 0
    # the lateness as people read it (a back-fill's said "60331739 s late")
    said = [r.getMessage() for r in caplog.records if "after their deadline" in r.getMessage()]
    assert said and re.search(r"e\.g\. task \d+, (29|30)\.\d min late \(", said[0]), said


async def test_the_orchestrator_alerts_a_task_past_its_deadline_once(db, database_url, settings, configure,
                                                                    quick_deadline_checks):
    document = single_routine_configuration(["true"], workers=1)
    document["condition"][0].update({"deadline_hours": 1})
    configure(document)
    db.execute("UPDATE hrwsi.processing_routine SET on_hold = true, hold_reason = 'held for the test'")
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, measured_at) "
               "VALUES ('in', '/x', now() - interval '2 hours')")
    async with running(database_url, ["orchestrator"], settings):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.alert WHERE kind = 'deadline_missed'")
        await asyncio.sleep(1.0)  # a few more checks run meanwhile
    kinds = [r[0] for r in db.execute("SELECT kind FROM hrwsi.alert ORDER BY id")]
    assert kinds == ["routine_on_hold", "deadline_missed"]
    body = db.execute("SELECT body FROM hrwsi.alert WHERE kind = 'deadline_missed'").fetchone()[0]
    assert "is still on_hold (routine on hold: held for the test)" in body


def test_an_input_back_filled_into_a_less_urgent_lane_has_no_deadline_and_raises_no_alert(world):
    # README's back-fill recipe: the nrt condition's input, named into the archive lane.
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at, lane)
                     VALUES ('nrt', '/old-scene', %s, 'archive'), ('nrt', '/fresh-scene', %s, NULL),
                            ('nrt', '/old-in-nrt', %s, 'nrt')""",
                  (NOW - timedelta(days=300), NOW, NOW - timedelta(days=300)))
    deadlines = dict(world.execute("""SELECT i.input_path, t.deadline_at IS NOT NULL FROM hrwsi.processing_task t
                                      JOIN hrwsi.input i ON i.id = t.input_id""").fetchall())
    # An old scene inserted into its condition's own lane is late, and said to be.
    assert deadlines == {"/old-scene": False, "/fresh-scene": True, "/old-in-nrt": True}
    world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()")
    assert world.execute("SELECT count(*) FROM hrwsi.alert WHERE body LIKE '%/old-scene%'").fetchone()[0] == 0
    assert world.execute("SELECT count(*) FROM hrwsi.alert WHERE body LIKE '%/old-in-nrt%'").fetchone()[0] == 1


def test_an_input_more_than_a_day_past_its_deadline_when_it_arrives_is_back_fill_unless_given_its_lane(world):
    # Found by exploratory testing (2026-12-06): 3,000 scenes of 2019 inserted without lane 'archive'
    # got deadlines from 2019 and, earliest deadline first, went before every fresh scene (held back 50-97 s
    # each behind 8 workers) and raised 3,000 deadline_missed alerts at once.
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at)
                     VALUES ('nrt', '/2019', '2019-01-01T02:00Z'), ('nrt', '/fresh', %s), ('nrt', '/late-by-hours', %s),
                            ('nrt', '/late-by-two-days', %s)""",
                  (NOW - timedelta(minutes=10), NOW - timedelta(hours=5), NOW - timedelta(days=2)))
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at, lane)
                     VALUES ('nrt', '/2019-as-nrt', '2019-01-01T02:00Z', 'nrt')""")  # the data engineer's choice
    rows = {r[0]: r[1:] for r in world.execute("""
        SELECT i.input_path, t.lane, t.priority, t.deadline_at IS NOT NULL, t.state, t.state_reason
        FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id""")}
    assert rows["/fresh"][:4] == ("nrt", 0, True, "pending")
    assert rows["/late-by-hours"][:3] == ("nrt", 0, True), "a late delivery is still near-real-time work"
    assert rows["/2019-as-nrt"][:3] == ("nrt", 0, True), "a lane given is kept"
    for path in ("/2019", "/late-by-two-days"):
        assert rows[path][:4] == ("archive", 1, False, "pending"), (path, rows[path])
    assert rows["/2019"][4].startswith("arrived ") and rows["/2019"][4].endswith(
        " after its deadline (2019-01-01 03:00:00Z): served as back-fill, in lane archive without a deadline; an "
        "input given lane nrt is served as near-real-time"), rows["/2019"][4]
    assert not world.execute("SELECT bool_or(hrwsi.cannot_be_planned(state, state_reason, NULL)) "
                             "FROM hrwsi.processing_task").fetchone()[0]
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 2)  # late-by-hours, as-nrt


def test_the_insert_trigger_calls_no_function_for_each_input(world):
    """A burst's INSERT pays its trigger's statements once, not a function call per row: the back-fill
    test (hrwsi.arrives_as_back_fill) was an immutable SQL function whose body was only stable, so
    PostgreSQL never inlined it and called it twice for each input (10,000 inputs took 20-30 % more of
    the server's CPU; found by measuring migration 0075 against the code before it)."""
    world.execute("SET track_functions = 'all'")  # (SQL functions counted when they are called, not inlined)
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at)
                     SELECT 'nrt', '/burst/' || g, now() - g * interval '1 minute' FROM generate_series(1, 300) g""")
    calls = world.execute("SELECT schemaname || '.' || funcname, calls FROM pg_stat_xact_user_functions "
                          "WHERE calls >= 300").fetchall()
    assert calls == [], calls


def test_alert_texts_say_times_in_utc_and_lateness_as_people_read_it_whatever_the_sessions_zone(world):
    """Alert texts carried times in the session's zone and PostgreSQL's format ("2026-12-05
    23:18:42.74337+00", "+01" on a server whose zone followed the shell's TZ), and 17 ms past a
    deadline read "00:00:00 late" (found by exploratory testing)."""
    # (from now, not the module's NOW: in a long run this test came more than 10 minutes after it)
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    world.execute("INSERT INTO hrwsi.input (processing_condition, input_path, measured_at) VALUES ('nrt', '/x', %s)",
                  (deadline - timedelta(hours=1),))
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now(), "
                  "planned_end = %s", (deadline + timedelta(minutes=8, seconds=41),))
    world.execute("SET TIME ZONE 'Europe/Paris'")
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (1, 0)
    body = world.execute("SELECT body FROM hrwsi.alert WHERE kind = 'deadline_at_risk'").fetchone()[0]
    assert f"is due at {deadline:%Y-%m-%d %H:%M:%S}Z, but its plan ends it at " \
           f"{deadline + timedelta(minutes=8, seconds=41):%Y-%m-%d %H:%M:%S}Z (8 min 41 s late)" in body


def test_a_task_alerted_at_risk_names_the_work_in_flight_it_waits_behind_on_its_planned_worker(world):
    """The alert said the plan ends the task late and "Add capacity, or hold less urgent work", not what held it: ops
    looked for the archive tasks running on its worker (found by exploratory testing)."""
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    for index in range(5):
        world.execute("INSERT INTO hrwsi.input (processing_condition, input_path, measured_at) VALUES "
                      "('backfill', %s, '2019-01-01')", (f"/old/{index}",))
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "planned_end = %s + (id * interval '1 minute')", (deadline,))
    world.execute("INSERT INTO hrwsi.input (processing_condition, input_path, measured_at) VALUES ('nrt', '/x', %s)",
                  (deadline - timedelta(hours=1),))
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = %s, "
                  "planned_end = %s WHERE state = 'pending'", (deadline + timedelta(minutes=6),
                                                               deadline + timedelta(minutes=7)))
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (1, 0)
    body = world.execute("SELECT body FROM hrwsi.alert WHERE kind = 'deadline_at_risk'").fetchone()[0]
    first = deadline + timedelta(minutes=1)
    assert (f"It starts at {deadline + timedelta(minutes=6):%Y-%m-%d %H:%M:%S}Z on worker w1, after the 5 tasks in "
            f"flight there: task 1 (routine snow, lane archive, expected to end at {first:%Y-%m-%d %H:%M:%S}Z), "
            "task 2 (routine snow, lane archive, expected to end at ") in body, body
    assert "task 4 (" not in body and ") and 2 more. Add capacity, or hold less urgent work." in body, body


@pytest.mark.parametrize(("span", "said"), [
    ("17 milliseconds", "less than a second"), ("59.9 seconds", "59 s"), ("8 minutes 41 seconds", "8 min 41 s"),
    ("3 hours 5 minutes 59 seconds", "3 h 5 min"), ("700 days 5 hours", "700 d 5 h"), ("-90 seconds", "1 min 30 s"),
])
def test_a_duration_in_the_databases_sentences_reads_as_people_say_it(db, span, said):
    assert db.execute("SELECT hrwsi.duration_text(%s::interval)", (span,)).fetchone()[0] == said


def test_the_deadline_missed_alert_is_written_by_one_insert(world):
    """Two INSERTs (a task still not done, one processed late) kept the alert's subject, its body's task
    line and the rule of one alert per task in step by hand."""
    (source,) = world.execute("SELECT prosrc FROM pg_proc WHERE oid = 'hrwsi.raise_deadline_alerts()'::regprocedure"
                              ).fetchone()
    assert source.count("INSERT INTO alert") == 2 and source.count("'deadline_missed', format(") == 1


def test_archive_tasks_that_took_a_late_fresh_scenes_deadline_are_not_counted_or_alerted_late(world):
    """Found by exploratory testing: every archive task before a late fresh scene in its time series took
    that scene's deadline (to be served first, migration 0081), so one late scene raised a deadline_missed
    alert for each of them, and `hrwsi timeliness` counted their products late. They are served by it still,
    but counted against their own deadline (none); the scene's alert names the task it waits for."""
    from hrwsi.sql_files import query

    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    for day in (3, 2, 1):
        world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane)
                         VALUES ('nrt', %s, '32TLR', %s, 'archive')""", (f"/old-{day}", NOW - timedelta(days=day)))
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                     VALUES ('nrt', '/fresh', '32TLR', %s)""", (NOW - timedelta(hours=2),))
    by_path = dict(world.execute("""SELECT i.input_path, t.id FROM hrwsi.processing_task t
                                    JOIN hrwsi.input i ON i.id = t.input_id""").fetchall())
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 1), "one alert, not four"
    [(task_id, body)] = world.execute("SELECT task_id, body FROM hrwsi.alert").fetchall()
    assert task_id == by_path["/fresh"]
    assert f"It waits for task {by_path['/old-1']} (routine snow, pending), before it in its time series" in body
    tasks = dict(world.execute("""SELECT t.id, (t.deadline_at, t.deadline_inherited_from, t.own_deadline_at)::text
                                  FROM hrwsi.processing_task t""").fetchall())
    fresh = by_path["/fresh"]
    assert {tasks[by_path[f"/old-{d}"]] for d in (3, 2, 1)} == {tasks[fresh].replace(",,)", f",{fresh},)")}, \
        "served by the fresh scene's deadline, said whose, no deadline of their own"
    assert world.execute(query("report_open_deadlines"), timeliness.Filters().params()).fetchone() == (1, 0)
    assert world.execute(query("report_deadlines_now")).fetchone()[:2] == (1, 1), "open with a deadline, past it"
    for day in (3, 2, 1):  # the archive tasks end, after the deadline they took
        task = by_path[f"/old-{day}"]
        world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                      "WHERE id = %s", (task,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (task,))
        world.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, %s, 'FSC')",
                      (task, f"/old-{day}.fsc"))
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 0)
    counted = world.execute("SELECT deadline_at, on_time FROM hrwsi.product_timeliness").fetchall()
    assert counted == [(None, None)] * 3, "no deadline of their own: not counted late"
    [archive] = timeliness.report(world, timeliness.Filters())["summary"]
    assert (archive["products"], archive["with_deadline"]) == (3, 0)


@pytest.mark.parametrize("how", ["cancelled", "corrected"])
def test_archive_tasks_give_back_the_deadline_they_took_when_the_fresh_scene_is_cancelled_or_corrected(world, how):
    """Found by review: when the fresh scene whose deadline and priority the archive tasks before it took was
    cancelled, or corrected to another tile, they kept them and were served ahead of real near-real-time work.
    They are served by their own deadline (none) at their lane's priority again; a planned one is planned again."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    for day in (2, 1):
        world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane)
                         VALUES ('nrt', %s, '32TLR', %s, 'archive')""", (f"/old-{day}", NOW - timedelta(days=day)))
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                     VALUES ('nrt', '/fresh', '32TLR', %s)""", (NOW - timedelta(hours=2),))
    by_path = dict(world.execute("""SELECT i.input_path, t.id FROM hrwsi.processing_task t
                                    JOIN hrwsi.input i ON i.id = t.input_id""").fetchall())
    old = [by_path["/old-2"], by_path["/old-1"]]
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (old[0],))
    took = world.execute("SELECT deadline_at IS NOT NULL, deadline_inherited_from, priority FROM hrwsi.processing_task "
                         "WHERE id = ANY (%s) ORDER BY id", (old,)).fetchall()
    assert took == [(True, by_path["/fresh"], 0)] * 2
    if how == "cancelled":
        world.execute("SELECT hrwsi.cancel_task(%s)", (by_path["/fresh"],))
    else:
        world.execute("SELECT hrwsi.correct_input(input_id, tile => '31TCH') FROM hrwsi.processing_task WHERE id = %s",
                      (by_path["/fresh"],))
    given = world.execute("""SELECT deadline_at, deadline_inherited_from, own_deadline_at, priority, state, worker
                             FROM hrwsi.processing_task WHERE id = ANY (%s) ORDER BY id""", (old,)).fetchall()
    assert given == [(None, None, None, 1, "pending", None)] * 2



@pytest.mark.parametrize("how", ["cancelled", "corrected"])
def test_a_later_fresh_scene_passes_its_deadline_down_at_once_when_the_one_before_it_gives_its_back(world, how):
    """Found by review: after the archive tasks gave back a cancelled fresh scene's deadline, a later fresh scene
    of the series, which waits for them now, passed its own down only when the series was next linked: meanwhile
    they were served at the archive lane's priority without a deadline, and it after them."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    for path, measured in (("/old-2", NOW - timedelta(days=2)), ("/old-1", NOW - timedelta(days=1))):
        world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane)
                         VALUES ('nrt', %s, '32TLR', %s, 'archive')""", (path, measured))
    for path, minutes in (("/fresh", 30), ("/fresher", 10)):
        world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                         VALUES ('nrt', %s, '32TLR', %s)""", (path, NOW - timedelta(minutes=minutes)))
    by_path = dict(world.execute("""SELECT i.input_path, t.id FROM hrwsi.processing_task t
                                    JOIN hrwsi.input i ON i.id = t.input_id""").fetchall())
    old = [by_path["/old-2"], by_path["/old-1"]]
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (old[0],))

    def taken():
        return world.execute("SELECT deadline_inherited_from, priority, state FROM hrwsi.processing_task "
                             "WHERE id = ANY (%s) ORDER BY id", (old,)).fetchall()

    assert taken() == [(by_path["/fresh"], 0, "planned"), (by_path["/fresh"], 0, "pending")]
    if how == "cancelled":
        world.execute("SELECT hrwsi.cancel_task(%s)", (by_path["/fresh"],))
    else:
        world.execute("SELECT hrwsi.correct_input(input_id, tile => '31TCH') FROM hrwsi.processing_task WHERE id = %s",
                      (by_path["/fresh"],))
    later = by_path["/fresher"]
    assert world.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (later,)).fetchone()[0] == old[1]
    assert taken() == [(later, 0, "pending")] * 2, "the later scene's deadline and priority, at once"
    deadlines = world.execute("""SELECT t.deadline_at = l.deadline_at, t.own_deadline_at FROM hrwsi.processing_task t,
                                 hrwsi.processing_task l WHERE l.id = %s AND t.id = ANY (%s)""", (later, old)).fetchall()
    assert deadlines == [(True, None)] * 2
    [(reason, history)] = world.execute("""SELECT t.state_reason, (SELECT e.reason FROM hrwsi.task_event e
                                           WHERE e.task_id = t.id ORDER BY e.id DESC LIMIT 1)
                                           FROM hrwsi.processing_task t WHERE t.id = %s""", (old[0],)).fetchall()
    assert reason == history == f"task {by_path['/fresh']}, whose deadline it took, was cancelled: it gave it back, " \
                                "planned again"


def test_a_task_names_the_task_whose_deadline_it_took_when_one_between_has_an_earlier_one(world):
    """Found by review: a task took the earliest deadline of the tasks after it that wait for it, but named the
    fresh scene that raised them all, not the one between whose deadline it was. The fresh scene's cancel gave
    back a deadline that was not its own, and the cancel of the task whose it was left it taken."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    # An archive-lane condition with a deadline of its own: served after near-real-time work, due before it.
    world.execute("""INSERT INTO hrwsi.processing_condition (name, routine, deadline, deadline_from, lane)
                     VALUES ('slow', 'snow', '1 day 10 minutes', 'measurement', 'archive')""")

    def insert(condition, path, measured):
        world.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) "
                      "VALUES (%s, %s, '32TLR', %s)", (condition, path, measured))
        return world.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                             "WHERE i.input_path = %s", (path,)).fetchone()[0]

    def deadline_of(task):
        return world.execute("SELECT deadline_at, deadline_inherited_from, priority FROM hrwsi.processing_task "
                             "WHERE id = %s", (task,)).fetchone()

    now = datetime.now(UTC)
    first = insert("backfill", "/old", now - timedelta(days=3))
    # Under way when the scene after it came (so it took nothing), then lost: pending again, without a deadline.
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (first,))
    middle = insert("slow", "/slow", now - timedelta(days=1))
    world.execute("UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL, planned_start = NULL "
                  "WHERE id = %s", (first,))
    fresh = insert("nrt", "/fresh", now - timedelta(minutes=10))
    middle_due = deadline_of(middle)[0]
    assert middle_due < deadline_of(fresh)[0]
    assert deadline_of(first) == (middle_due, middle, 0), "the middle task's deadline, under its name"
    world.execute("SELECT hrwsi.cancel_task(%s)", (fresh,))
    # (the priority 0 was the fresh scene's, the middle task's own is the archive lane's: migration 0086)
    assert deadline_of(first) == (middle_due, middle, 1), \
        "the fresh scene's cancel gives back its priority, and no deadline it did not give"
    world.execute("SELECT hrwsi.cancel_task(%s)", (middle,))
    assert deadline_of(first) == (None, None, 1), "the middle task's cancel gives its deadline back"


def test_a_task_that_took_an_earlier_deadline_is_alerted_at_risk_by_its_own_as_status_counts_it(world):
    """Found by review: the at-risk alert skipped every task that took another's deadline, those with one of their
    own too, while report_open_deadlines counted them at risk: `hrwsi status` said at risk, and no alert came."""
    from hrwsi.sql_files import query

    for path, hours in (("/a", 2), ("/b", 1)):
        world.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) "
                      "VALUES ('nrt', %s, '32TLR', %s)", (path, NOW - timedelta(minutes=30 * hours)))
    [(took, other)] = world.execute("SELECT min(id), max(id) FROM hrwsi.processing_task").fetchall()
    world.execute("""UPDATE hrwsi.processing_task SET deadline_at = now() + interval '10 minutes',
                     deadline_inherited_from = %s, own_deadline_at = now() + interval '20 minutes',
                     state = 'planned', worker = 'w1', planned_start = now() + interval '25 minutes',
                     planned_end = now() + interval '30 minutes' WHERE id = %s""", (other, took))
    assert world.execute(query("report_open_deadlines"), timeliness.Filters().params()).fetchone() == (0, 1)
    assert world.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (1, 0)
    [(task_id, body)] = world.execute("SELECT task_id, body FROM hrwsi.alert").fetchall()
    assert task_id == took and "(10 min 0 s late)" in body, "late against its own deadline, not the one it took"


def scene(db, condition, path, measured, lane=None):
    """The task of a scene of tile 32TLR inserted now (in its condition's lane, or `lane`)."""
    input_id = db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane)
                             VALUES (%s, %s, '32TLR', %s, %s) RETURNING id""", (condition, path, measured, lane)).fetchone()[0]
    return db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (input_id,)).fetchone()[0]


def urgency(db, task):
    """What a task is served by: its priority, its deadline and whose it is, and what it waits for."""
    return db.execute("SELECT priority, deadline_at, deadline_inherited_from, depends_on, state FROM hrwsi.processing_task "
                      "WHERE id = %s", (task,)).fetchone()


@pytest.mark.parametrize("ended", ["terminated", "cancelled"])
def test_a_fresh_scene_passes_its_deadline_down_at_once_to_an_archive_task_retried_before_it(world, ended):
    """Found by review: a retried task of a time series, which the scene after it waits for again, took nothing
    from that near-real-time scene until the series' next INSERT: the scene waited behind archive work served at
    the archive lane's priority, and missed its deadline."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(world, "nrt", "/old", NOW - timedelta(days=2), lane="archive")
    if ended == "terminated":
        world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                      "WHERE id = %s", (old,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (old,))
    else:
        world.execute("SELECT hrwsi.cancel_task(%s)", (old,))
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    due = urgency(world, fresh)[1]
    assert due is not None and urgency(world, old)[0] == 1, "nothing to pass down to a task that ended"
    world.execute("SELECT hrwsi.retry_task(%s)", (old,))
    assert urgency(world, fresh)[3:] == (old, "pending"), "it waits for the retried task"
    assert urgency(world, old) == (0, due, fresh, None, "pending"), "its priority and deadline, at once"


def test_a_fresh_scene_linked_past_a_cancelled_task_passes_its_deadline_down_when_nothing_was_given_back(world):
    """Found by review: the scene after a cancelled task of its time series waits for the task before that one
    (hrwsi.skip_cancelled_tasks), but passed its priority and deadline down to it only when the cancel gave one
    back: behind a held task, which took nothing, the archive task before it stayed at the archive lane's
    priority, without a deadline, until the series' next INSERT."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(world, "nrt", "/old-2", NOW - timedelta(days=2), lane="archive")
    held = scene(world, "nrt", "/old-1", NOW - timedelta(days=1), lane="archive")
    world.execute("SELECT hrwsi.hold_task(%s)", (held,))
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    due = urgency(world, fresh)[1]
    assert urgency(world, old)[:3] == (1, None, None), "a held task passes nothing on"
    world.execute("SELECT hrwsi.cancel_task(%s)", (held,))
    assert urgency(world, fresh)[3:] == (old, "pending")
    assert urgency(world, old) == (0, due, fresh, None, "pending"), "the fresh scene's priority and deadline, at once"


def test_a_fresh_scene_a_correction_relinks_passes_its_deadline_down_at_once(world):
    """Found by review: when the processed task a fresh scene waited for was corrected to another tile, the scene
    waited for the archive task before it, but passed its priority and deadline down to it only at the series'
    next INSERT, and was served after it meanwhile, at the archive lane's priority."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(world, "nrt", "/old-2", NOW - timedelta(days=2), lane="archive")
    done = scene(world, "nrt", "/old-1", NOW - timedelta(days=1), lane="archive")
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (done,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (done,))
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    due = urgency(world, fresh)[1]
    assert urgency(world, old)[0] == 1 and urgency(world, fresh)[3] == done
    world.execute("SELECT hrwsi.correct_input(input_id, tile => '31TCH') FROM hrwsi.processing_task WHERE id = %s",
                  (done,))
    assert urgency(world, fresh)[3:] == (old, "pending")
    assert urgency(world, old) == (0, due, fresh, None, "pending"), "the fresh scene's priority and deadline, at once"


def test_a_task_raised_for_its_priority_alone_gives_it_back_when_no_fresh_scene_waits_for_it_any_more(world):
    """Found by review: a task with a deadline of its own earlier than the fresh scene's after it took only that
    scene's priority, and the give-back, which followed the deadlines taken, left it raised for good when the scene
    was cancelled: served ahead of near-real-time work. It gives its priority back, unless another fresh scene
    still waits for it, whose priority it takes at once."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    # An archive-lane condition with a deadline of its own: served after near-real-time work, due before it.
    world.execute("""INSERT INTO hrwsi.processing_condition (name, routine, deadline, deadline_from, lane)
                     VALUES ('slow', 'snow', '1 day 10 minutes', 'measurement', 'archive')""")
    now = datetime.now(UTC)
    slow = scene(world, "slow", "/slow", now - timedelta(days=1))
    own = urgency(world, slow)[1]
    fresh = [scene(world, "nrt", f"/fresh-{minutes}", now - timedelta(minutes=minutes)) for minutes in (20, 10)]
    assert own < urgency(world, fresh[0])[1]
    assert urgency(world, slow) == (0, own, None, None, "pending"), "raised for its priority alone"
    world.execute("SELECT hrwsi.cancel_task(%s)", (fresh[0],))
    assert urgency(world, fresh[1])[3] == slow
    assert urgency(world, slow) == (0, own, None, None, "pending"), "the other fresh scene's priority, still"
    world.execute("SELECT hrwsi.cancel_task(%s)", (fresh[1],))
    assert urgency(world, slow) == (1, own, None, None, "pending"), "its lane's priority again"
    assert world.execute("SELECT priority_inherited_from FROM hrwsi.processing_task WHERE id = %s",
                         (slow,)).fetchone() == (None,)


def test_a_task_names_the_task_whose_priority_it_took(world):
    """A task records whose priority it took (migration 0086), as it records whose deadline: the one whose
    cancel gives it back, not that of the task whose deadline it took."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    world.execute("""INSERT INTO hrwsi.processing_condition (name, routine, deadline, deadline_from, lane)
                     VALUES ('slow', 'snow', '1 day 10 minutes', 'measurement', 'archive')""")
    now = datetime.now(UTC)
    first = scene(world, "backfill", "/old", now - timedelta(days=3))
    middle = scene(world, "slow", "/slow", now - timedelta(days=1))
    fresh = scene(world, "nrt", "/fresh", now - timedelta(minutes=10))
    names = dict((t, (d, p)) for t, d, p in world.execute(
        "SELECT id, deadline_inherited_from, priority_inherited_from FROM hrwsi.processing_task").fetchall())
    assert names == {first: (middle, fresh), middle: (None, fresh), fresh: (None, None)}


@pytest.mark.parametrize("how", ["task held", "routine held", "task blocked"])
def test_a_fresh_scene_passes_its_deadline_down_at_once_to_an_archive_task_released_before_it(world, how):
    """Found by review: a held or blocked task of a time series took nothing from the near-real-time scene
    after it (only a pending or planned task takes a priority), and its release, one by one, of its routine, or
    of a task blocked, passed nothing down until the series' next INSERT: the scene waited behind archive work
    served at the archive lane's priority, without a deadline."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    if how == "task blocked":
        ended = scene(world, "nrt", "/old-3", NOW - timedelta(days=3), lane="archive")
        world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                      "WHERE id = %s", (ended,))
        world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (ended,))
    elif how == "routine held":
        world.execute("SELECT hrwsi.hold_routine('snow')")
    old = scene(world, "nrt", "/old", NOW - timedelta(days=2), lane="archive")
    if how == "task held":
        world.execute("SELECT hrwsi.hold_task(%s)", (old,))
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    due = urgency(world, fresh)[1]
    assert urgency(world, old)[:3] == (1, None, None), f"{how}: nothing taken"
    if how == "routine held":
        world.execute("SELECT hrwsi.release_routine('snow')")
    else:
        world.execute("SELECT hrwsi.release_task(%s)", (old,))
    assert urgency(world, fresh)[3:] == (old, "pending"), "it waits for the released task"
    assert urgency(world, old)[:3] == (0, due, fresh), "the fresh scene's priority and deadline, at once"
    assert urgency(world, old)[4] == "pending"


@pytest.mark.parametrize("fresh_cancelled", [1, 2])
def test_a_task_gives_back_the_priority_it_took_whoever_cancels_the_task_it_took_it_from(world, fresh_cancelled):
    """Found by review: only hrwsi.cancel_task and hrwsi.correct_input gave back a priority and a deadline taken
    from the task they cancelled; a cancel of many tasks in one statement (a campaign's), or an UPDATE setting a
    task cancelled by hand, left the tasks before it raised for good, served ahead of near-real-time work."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(world, "backfill", "/old", NOW - timedelta(days=2))
    fresh = [scene(world, "nrt", f"/fresh-{minutes}", NOW - timedelta(minutes=minutes)) for minutes in (20, 10)]
    assert urgency(world, old)[:3] == (0, urgency(world, fresh[0])[1], fresh[0])
    cancelled = fresh[:fresh_cancelled]
    world.execute("UPDATE hrwsi.processing_task SET state = 'cancelled', state_reason = 'by hand' WHERE id = ANY (%s)",
                  (cancelled,))
    names = world.execute("SELECT priority_inherited_from, deadline_inherited_from FROM hrwsi.processing_task "
                          "WHERE id = %s", (old,)).fetchone()
    if fresh_cancelled == 1:
        assert urgency(world, fresh[1])[3] == old
        assert urgency(world, old)[:3] == (0, urgency(world, fresh[1])[1], fresh[1]), "the other fresh scene's, at once"
        assert names == (fresh[1], fresh[1])
    else:
        assert urgency(world, old)[:3] == (1, None, None), "its own again: its lane's priority, no deadline"
        assert names == (None, None)


def test_a_task_released_to_run_without_the_task_before_it_passes_nothing_down_to_it(world):
    """A fresh scene an operator released from blocked runs without the task it waited for: that task, released
    in its turn, is not raised to the fresh scene's priority and deadline, which no longer waits for it."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    ended = scene(world, "nrt", "/old-3", NOW - timedelta(days=3), lane="archive")
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (ended,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (ended,))
    old = scene(world, "nrt", "/old", NOW - timedelta(days=2), lane="archive")
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    assert urgency(world, fresh)[4] == urgency(world, old)[4] == "blocked"
    world.execute("SELECT hrwsi.release_task(%s)", (fresh,))
    world.execute("SELECT hrwsi.release_task(%s)", (old,))
    assert urgency(world, old)[:3] == (1, None, None) and urgency(world, old)[4] == "pending"


def test_a_task_released_to_run_without_the_task_before_it_lends_nothing_to_it_when_that_one_is_retried(world):
    """Found by review: only the trigger's step for tasks pending again left out a task released to run without
    the task it waited for (dependency_waived); the retry's own pass, and the walk down a series, raised that task
    to the fresh scene's priority and deadline, though the scene no longer waited for it."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(world, "nrt", "/old", NOW - timedelta(days=2), lane="archive")
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (old,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (old,))
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    assert urgency(world, fresh)[3:] == (old, "blocked")
    world.execute("SELECT hrwsi.release_task(%s)", (fresh,))
    world.execute("SELECT hrwsi.retry_task(%s)", (old,))
    assert urgency(world, old) == (1, None, None, None, "pending"), "the fresh scene runs without it: nothing lent"


def test_a_retried_task_gives_back_what_it_took_from_a_task_released_since_to_run_without_it(world):
    """Found by review: a task that took a fresh scene's priority and deadline, then ended terminated, kept them once
    the scene was released to run without it (dependency_waived), and a retry planned it at the scene's urgency: a
    retry starts from what it is owed now, its own, and takes again only from the tasks that still wait for it."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(world, "nrt", "/old", NOW - timedelta(days=2), lane="archive")
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    assert urgency(world, old)[:3] == (0, urgency(world, fresh)[1], fresh), "it took the fresh scene's urgency"
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (old,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (old,))
    assert urgency(world, fresh)[3:] == (old, "blocked")
    world.execute("SELECT hrwsi.release_task(%s)", (fresh,))
    world.execute("SELECT hrwsi.retry_task(%s)", (old,))
    assert urgency(world, old) == (1, None, None, None, "pending"), "the fresh scene runs without it: nothing lent"
    assert world.execute("SELECT priority_inherited_from, own_deadline_at FROM hrwsi.processing_task WHERE id = %s",
                         (old,)).fetchone() == (None, None)


def test_a_fresh_scene_lends_nothing_through_a_task_released_to_run_without_the_one_before_it(world):
    """The walk down a series stops at a task released to run without the task it waited for: the fresh scene
    after it waits for that task alone, and the task before it, which no one waits for, is not raised."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    first = scene(world, "nrt", "/first", NOW - timedelta(days=3), lane="archive")
    world.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                  "WHERE id = %s", (first,))
    world.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (first,))
    middle = scene(world, "nrt", "/middle", NOW - timedelta(days=2), lane="archive")
    world.execute("SELECT hrwsi.release_task(%s)", (middle,))
    world.execute("SELECT hrwsi.retry_task(%s)", (first,))
    assert urgency(world, middle)[3:] == (first, "pending")
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    due = urgency(world, fresh)[1]
    assert urgency(world, middle)[:3] == (0, due, fresh), "the task it waits for is served as urgently"
    assert urgency(world, first) == (1, None, None, None, "pending"), "not the one the middle task runs without"


def test_cancel_and_correct_give_back_the_urgency_taken_from_their_tasks_once(world):
    """hrwsi.cancel_task and hrwsi.correct_input called the give-back after their UPDATE, whose trigger had given
    everything back already (migration 0089): two more probes of the indexes, for nothing. The urgency taken is
    given back all the same."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    world.execute("SET track_functions = 'all'")
    calls = "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'give_back_taken_deadlines'"
    for how in ("cancel", "correct"):
        old = scene(world, "backfill", f"/old-{how}", NOW - timedelta(days=2))
        fresh = scene(world, "nrt", f"/fresh-{how}", NOW - timedelta(minutes=10))
        assert urgency(world, old)[:3] == (0, urgency(world, fresh)[1], fresh)
        with world.transaction():
            before = world.execute(calls).fetchone()[0]
            if how == "cancel":
                world.execute("SELECT hrwsi.cancel_task(%s)", (fresh,))
            else:
                world.execute("SELECT hrwsi.correct_input(input_id, tile => '31TCH') FROM hrwsi.processing_task "
                              "WHERE id = %s", (fresh,))
            assert world.execute(calls).fetchone()[0] - before == 1, f"{how}: given back by the trigger alone"
        assert urgency(world, old)[:3] == (1, None, None), f"{how}: its own again"
        world.execute("SELECT hrwsi.cancel_task(%s)", (old,))


@pytest.mark.parametrize("how", ["task", "routine"])
def test_a_held_fresh_scene_lends_nothing_until_it_is_released(world, how):
    """Found by review: an operator who held the urgent scene of a series left the archive tasks before it
    raised to its priority and deadline, served ahead of near-real-time work that could run, while a cancel gave
    them back. Held, it gives them back (a planned one is planned again, saying so); released, it lends them
    again at once."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(world, "backfill", "/old", NOW - timedelta(days=2))
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    due = urgency(world, fresh)[1]
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now(), "
                  "planned_end = now() + interval '1 minute' WHERE id = %s", (old,))
    assert urgency(world, old) == (0, due, fresh, None, "planned")
    world.execute("SELECT hrwsi.hold_task(%s)" if how == "task" else "SELECT hrwsi.hold_routine('snow') WHERE %s > 0",
                  (fresh,))
    if how == "routine":
        assert urgency(world, old)[4] == "on_hold"
    else:
        assert urgency(world, old) == (1, None, None, None, "pending"), "given back, planned again"
        reason = world.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (old,)).fetchone()[0]
        assert reason == f"task {fresh}, whose deadline it took, was held: it gave it back, planned again"
    assert urgency(world, old)[:3] == (1, None, None)
    world.execute("SELECT hrwsi.release_task(%s)" if how == "task" else "SELECT hrwsi.release_routine('snow') WHERE %s > 0",
                  (fresh,))
    assert urgency(world, old) == (0, due, fresh, None, "pending"), "lent again at once"


def test_a_task_held_in_the_middle_of_a_chain_takes_back_the_urgency_that_passed_through_it(world):
    """Found by review: the tasks before a held task kept the urgency a fresh scene after it had passed through it
    (they record only whose it was), served ahead of near-real-time work, though the scene could not run before the
    held task was released. Taken back from them; released, the held task lets it pass again at once."""
    world.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    first = scene(world, "backfill", "/first", NOW - timedelta(days=3))
    middle = scene(world, "backfill", "/middle", NOW - timedelta(days=2))
    fresh = scene(world, "nrt", "/fresh", NOW - timedelta(minutes=10))
    due = urgency(world, fresh)[1]
    world.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now(), "
                  "planned_end = now() + interval '1 minute' WHERE id = %s", (first,))
    assert urgency(world, first) == (0, due, fresh, None, "planned")
    world.execute("SELECT hrwsi.hold_task(%s)", (middle,))
    assert urgency(world, first) == (1, None, None, None, "pending"), "given back, planned again"
    reason = world.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (first,)).fetchone()[0]
    assert reason == (f"task {fresh}, whose deadline it took, was held up by a held task, or moved: it gave it back, "
                      "planned again")
    world.execute("SELECT hrwsi.release_task(%s)", (middle,))
    assert urgency(world, middle)[:3] == (0, due, fresh) and urgency(world, first)[:3] == (0, due, fresh), "again"
