"""What hrwsi.reports reads from a real database for people: the multi-input groups that wait or
cannot complete (`hrwsi groups`, and the line of `hrwsi status`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from rich.console import Console

from hrwsi import reports
from hrwsi.cli import views
from hrwsi.sql_files import query
from tests.integration.conftest import single_routine_configuration
from tests.integration.harvest.test_multi_input import DAY, chain, gfsc_rule, member  # noqa: F401 - a fixture


def by_tile(data: dict) -> dict[str, dict]:
    return {g["tile"]: g for g in data["groups"]}


def drawn(draw, *args) -> str:
    console = Console(record=True, width=200)
    draw(console, *args)
    return console.export_text()


def test_a_group_that_never_completes_is_listed_with_what_it_lacks_and_said_in_status(chain):  # noqa: F811
    # Found by exploratory testing: the snow step of a scene ended terminated, so 31TCH had an SWS
    # and never an FSC; status said "terminated 1", the dashboard "waiting 0", and nothing listed it.
    gfsc_rule(chain)
    member(chain, "SWS", tile="31TCH")
    member(chain, "FSC", tile="31TCH", state="cancelled")   # (ended: nothing open upstream)
    member(chain, "SWS", tile="32TPR")
    member(chain, "FSC", tile="32TPR", state="pending")     # (its FSC is still to come)
    data = reports.incomplete_groups(chain)
    assert data["total"] == 2
    stuck, waiting = by_tile(data)["31TCH"], by_tile(data)["32TPR"]
    assert (stuck["condition"], stuck["day"], stuck["open_upstream"]) == ("gfsc_daily", DAY.date(), 0)
    assert stuck["state"] == "cannot complete now: nothing open upstream"
    assert [(r["product_type"], r["have"], r["min_count"], r["met"]) for r in stuck["requirements"]] == [
        ("FSC", 0, 1, False), ("SWS", 1, 1, True)]
    assert stuck["requirements"][0]["made_by"] == ["fsc"]
    assert (waiting["state"], waiting["open_upstream"]) == ("waits for open work upstream", 1)
    assert reports.incomplete_groups(chain, tile="32tpr")["total"] == 1
    assert reports.incomplete_groups(chain, condition="fsc_weekly")["total"] == 0
    shown = drawn(views.groups, data)
    assert "lacks FSC: 0 of 1" in shown and "cannot complete now: nothing open upstream" in shown
    status = reports.status(chain)
    assert status["stale_groups"]["total"] == 1 and status["stale_groups"]["groups"][0]["tile"] == "31TCH"
    assert "multi-input groups that cannot complete: 1 past their window" in drawn(views.status, status, 30.0)
    # A condition made inactive while its upstream ran: its groups cannot complete.
    chain.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'gfsc_daily'")
    assert {g["state"] for g in reports.incomplete_groups(chain)["groups"]} == {
        "cannot complete: its condition is inactive"}


def test_a_complete_group_and_one_made_already_are_not_said_to_wait(chain):  # noqa: F811
    gfsc_rule(chain)
    member(chain, "SWS", tile="31TCH")
    member(chain, "FSC", tile="31TCH")
    [group] = reports.incomplete_groups(chain)["groups"]
    assert group["state"] == "complete: the harvester makes its input at its next pass"
    chain.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at, source) "
                  "VALUES ('gfsc_daily', %s, '31TCH', %s, %s, 'multi_input')",
                  (f"multi_input/gfsc_daily/31TCH/{DAY.date()}", DAY, DAY + timedelta(hours=1)))
    assert reports.incomplete_groups(chain) == {"groups": [], "total": 0}
    assert reports.status(chain)["stale_groups"]["total"] == 0


def make_groups(db):
    return db.execute(query("multi_input_create_complete_groups").replace("$1", "%(now)s"),
                      {"now": datetime.now(UTC)}).fetchone()


def test_a_member_that_arrived_after_its_groups_composite_is_listed_with_the_command_that_adds_it(chain):  # noqa: F811
    # Found by exploratory testing: daily(31TCH) ran with an FSC and an SWS; a second SWS of that day
    # arrived after it: it was in no composite, `hrwsi groups` did not list it, nobody was told.
    recent = (datetime.now(UTC) - timedelta(days=1)).replace(hour=10, minute=30, second=0, microsecond=0)
    day = recent.date()
    gfsc_rule(chain)
    member(chain, "FSC", tile="31TCH", measured=recent)
    member(chain, "SWS", tile="31TCH", measured=recent)
    assert make_groups(chain)[:2] == (1, 2)
    assert reports.late_group_members(chain)["total"] == 0
    [(composite,)] = chain.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                                   "WHERE i.source = 'multi_input'").fetchall()
    member(chain, "SWS", tile="31TCH", measured=recent + timedelta(hours=1))      # (arrives late)
    late = reports.late_group_members(chain)
    assert late["total"] == 1
    [group] = late["groups"]
    assert (group["condition"], group["tile"], group["day"], group["task_id"], group["members"]) == (
        "gfsc_daily", "31TCH", day, composite, 2)
    assert [m["product_type"] for m in group["late_members"]] == ["SWS"]
    command = f"`hrwsi reprocess --condition gfsc_daily --tile 31TCH --from {day} --to {day + timedelta(days=1)}`"
    assert group["next"].startswith(f"its composite task {composite} is pending with the members it was made with: "
                                    f"once processed, {command}")
    chain.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (composite,))
    chain.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER processing_task_enforce_transition")
    chain.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (composite,))
    chain.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER processing_task_enforce_transition")
    [group] = reports.late_group_members(chain)["groups"]
    assert group["next"] == f"{command} makes a composite with every member it has now (beside the old one)"
    shown = drawn(views.groups, {**reports.incomplete_groups(chain), "late": reports.late_group_members(chain)})
    assert "members that arrived after their group's composite (1 groups" in shown and "SWS /products/SWS_" in shown
    status = reports.status(chain)
    assert status["late_groups"]["total"] == 1
    assert "multi-input groups with members their composite lacks: 1 sensed in the last 7 days" in drawn(
        views.status, status, 30.0)
    assert reports.late_group_members(chain, condition="fsc_weekly")["total"] == 0
    assert reports.late_group_members(chain, tile="32tpr")["total"] == 0
    # The command's campaign makes a composite with every member there is: none is late any more.
    chain.execute("SELECT * FROM hrwsi.reprocess(condition => 'gfsc_daily', measured_from => %s, measured_to => %s, "
                  "tiles => ARRAY['31TCH'])", (day, day + timedelta(days=1)))
    assert reports.late_group_members(chain)["total"] == 0
    assert chain.execute("SELECT count(*) FROM hrwsi.multi_input_campaign_member").fetchone()[0] == 3


def test_status_names_a_condition_made_active_by_plain_sql_that_missed_products_with_the_command_to_chain_them(db):
    """A data engineer's `UPDATE ... SET active = true` got no note of the products the condition missed
    while it was inactive, where `hrwsi config load` counts them (found by review)."""
    from hrwsi import configuration
    from tests.integration.test_configuration import demo_document

    document = demo_document()
    next(c for c in document["condition"] if c["name"] == "fsc_quicklook")["active"] = False
    configuration.load(db, document)
    assert reports.status(db)["missed_products"] == [], "added by config load, with nothing to chain: closed"
    for n in (1, 2):
        db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES "
                   "('l2a_for_snow', %s, '32TLR', now() - interval '1 day')", (f"/in/{n}.SAFE",))
    db.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER processing_task_enforce_transition")
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE routine = 'snow_cover'")
    db.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER processing_task_enforce_transition")
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) SELECT id, '/p/fsc_' || id, 'FSC' "
               "FROM hrwsi.processing_task WHERE routine = 'snow_cover'")
    db.execute(query("chain_products").replace("$1", "100"))  # (inactive: no input for it)
    db.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'fsc_quicklook'")
    status = reports.status(db)
    assert [(c["condition"], c["product_type"], c["missed"]) for c in status["missed_products"]] == \
        [("fsc_quicklook", "FSC", 2)]
    shown = " ".join(drawn(views.status, status, 30.0).split())
    assert ("condition missed products: fsc_quicklook: 2 product(s) of type FSC made while it was inactive (or "
            "before it existed) are not chained to it next: `hrwsi chain-missed fsc_quicklook` chains them (at "
            "most 10,000 a run; run it again until it says 0)") in shown
    db.execute("SELECT * FROM hrwsi.chain_missed_products('fsc_quicklook')")
    assert reports.status(db)["missed_products"] == []


def test_status_counts_a_conditions_missed_products_only_reading_and_at_most_past_10_000(db):
    """status ran a full dry run of chain_missed_products per condition, a count of every missed product
    at every call and a zero-row INSERT (found by review): a read-only count that stops at 10,001."""
    from tests.integration.test_configuration import missed_fsc_products

    missed_fsc_products(db, 10_002)
    db.execute("SET default_transaction_read_only = on")  # (a standby's session: an INSERT is refused)
    try:
        status = reports.status(db)
    finally:
        db.execute("SET default_transaction_read_only = off")
    assert [(c["condition"], c["missed"]) for c in status["missed_products"]] == [("fsc_quicklook", 10_001)]
    shown = " ".join(drawn(views.status, status, 30.0).split())
    assert "fsc_quicklook: more than 10,000 product(s) of type FSC made while it was inactive" in shown
def deadline_world(db) -> None:
    """A near-real-time routine with a 3-hour deadline on one worker."""
    db.execute("INSERT INTO hrwsi.flavour VALUES ('f', 4, 8000, 1000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES ('fsc', 1, 1000, 10, '1 min', ARRAY['true'], 'L1C', 'FSC')""")
    db.execute("""INSERT INTO hrwsi.processing_condition (name, routine, deadline) VALUES ('fsc_nrt', 'fsc', '3 hours')""")


def scene(db, path: str, sensed: str, lane: str | None = None) -> int:
    db.execute(f"""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at, lane)
                   VALUES ('fsc_nrt', %s, '32TLR', {sensed}, {sensed} + interval '1 minute', %s)""", (path, lane))
    return db.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                      "WHERE i.input_path = %s", (path,)).fetchone()[0]


def test_status_says_which_deadlines_are_missed_at_risk_or_held_and_what_arrived_over_a_day_late(db):
    # Found by exploratory testing (2026-12-06): neither `hrwsi status` nor the dashboard said anything
    # of deadlines; 3,000 scenes of 2019 inserted without lane 'archive' had deadlines from 2019 and went
    # before every fresh scene (earliest deadline first), and all status said was "alerts: 3000 unsent".
    deadline_world(db)
    assert reports.status(db)["deadlines"]["open"] == 0 and "deadlines:" not in drawn(views.status, reports.status(db),
                                                                                         30.0)
    fresh = scene(db, "/eodata/fresh.SAFE", "now() - interval '10 minutes'")
    shown = drawn(views.status, reports.status(db), 30.0)
    assert (f"deadlines: 1 open task(s) with a deadline, none past it, planned to end after it, held or blocked; the "
            f"next due in 2.8 h (task {fresh} (fsc))") in shown
    for year in range(3):  # a back-fill of 2019 given the near-real-time lane (without a lane, it is back-fill)
        scene(db, f"/eodata/2019-{year}.SAFE", f"timestamptz '2019-0{year + 1}-01Z'", lane="nrt")
    late = scene(db, "/eodata/late.SAFE", "now() - interval '3 hours 5 minutes'")  # a scene late by 5 minutes
    risky = scene(db, "/eodata/risky.SAFE", "now() - interval '2 hours 50 minutes'")
    db.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now() + interval "
               "'1 hour', planned_end = now() + interval '1 hour 1 minute' WHERE id = %s", (risky,))
    held = scene(db, "/eodata/held.SAFE", "now() - interval '1 hour'")
    db.execute("SELECT hrwsi.hold_task(%s)", (held,))
    data = reports.status(db)["deadlines"]
    assert (data["open"], data["past"], data["arrived_over_a_day_late"], data["at_risk"], data["stuck"]) == (7, 4, 3, 1, 1)
    assert (data["past_task"], data["risk_task"], data["stuck_task"]) == (late, risky, held)
    shown = " ".join(drawn(views.status, reports.status(db), 30.0).split())
    assert (f"deadlines: 4 open task(s) past their deadline, not processed (the latest: task {late} (fsc), due 5.0 "
            "min ago); 3 of them were more than a day past it when their input arrived: a back-fill inserted in "
            "a near-real-time lane?") in shown
    assert "back-fill goes in with lane 'archive'" in shown
    assert (f"deadlines: 1 open task(s) planned to end after their deadline, still ahead (the first: task {risky} "
            "(fsc), due in 10.0 min, planned to end 51.0 min late)") in shown
    assert f"deadlines: 1 open task(s) held or blocked before their deadline (the first: task {held} (fsc)" in shown
    assert "none past it" not in shown


def test_task_show_says_how_many_back_fill_scenes_of_its_series_a_fresh_scene_waits_behind(db):
    # Found by exploratory testing (2026-12-06): a fresh scene behind the 200 archive scenes of its tile's
    # time series (4 minutes of work, one after the other) said only "depends on 24014", no reason.
    deadline_world(db)
    db.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane)
                  SELECT 'fsc_nrt', '/eodata/old-' || g, '32TLR', timestamptz '2020-01-01Z' + g * interval '1 day',
                         'archive' FROM generate_series(1, 3) g""")
    fresh = scene(db, "/eodata/fresh.SAFE", "now() - interval '1 hour'")
    data = reports.task(db, fresh)
    assert data["series_ahead"] == {"open": 3, "back_fill": 3}
    assert ("waits in its time series behind 3 open task(s) of its tile sensed before it, 3 of them back-fill "
            "(served as urgently as the near-real-time task after them, one after the other)") in " ".join(
        drawn(views.task, data).split())
    first = db.execute("SELECT min(id) FROM hrwsi.processing_task").fetchone()[0]
    assert reports.task(db, first)["series_ahead"] == {"open": 0, "back_fill": 0}
    assert "waits in its time series" not in drawn(views.task, reports.task(db, first))
    # (migration 0083) a back-fill task says whose deadline it serves, and that it is counted against its own
    assert (f"(task {fresh}'s, which waits for it: served by it, counted late against its own, none)"
            in " ".join(drawn(views.task, reports.task(db, first)).split()))
    assert "which waits for it" not in drawn(views.task, data)


def test_task_show_says_whose_priority_a_task_took_beside_whose_deadline(db):
    """Found by review: an archive task served at a fresh scene's priority said whose deadline it took (migration
    0083), not whose priority (named since migration 0086), which it gives back when that task is cancelled."""
    deadline_world(db)
    db.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    old = scene(db, "/eodata/old.SAFE", "timestamptz '2020-01-01Z'", lane="archive")
    fresh = scene(db, "/eodata/fresh.SAFE", "now() - interval '1 hour'")
    shown = " ".join(drawn(views.task, reports.task(db, old)).split())
    assert (f"(task {fresh}'s, which waits for it: served by it, counted late against its own, none); priority 0 "
            f"inherited from task {fresh}, which waits for it (given back if that task is cancelled)") in shown
    assert "inherited from" not in drawn(views.task, reports.task(db, fresh))


def test_task_show_says_a_reason_in_its_history_once_where_it_changed_not_on_every_row(db, tmp_path):
    # Found by review: a task keeps its reason from state to state (pending, planned, dispatched, running), so a task
    # retried ten times printed its failure's reason on forty rows of `hrwsi task show`.
    from tests.integration.dashboard_scenario import build

    terminated = build(db, tmp_path / "data").terminated
    shown = drawn(views.task, reports.task(db, terminated))
    history = shown[shown.index(" history "):shown.index("attempt 1 log")]  # (and the attempts table)
    assert history.count("attempt 1 external_error: exit code 210: the input cannot be read") == 1, history
    assert history.count("attempt 2 external_error") == 1 and history.count("(same as above)") == 6, history
    rows = [row for row in history.splitlines() if "(same as above)" in row]
    assert [row.split()[4] for row in rows] == ["planned", "dispatched", "running"] * 2, rows


def test_task_show_indents_a_reason_of_several_lines_under_its_first(db, tmp_path):
    # Found by review: a traceback's later lines began at the margin, read as lines of task show's own.
    from tests.integration.dashboard_scenario import build

    terminated = build(db, tmp_path / "data").terminated
    db.execute("UPDATE hrwsi.processing_task SET state_reason = %s WHERE id = %s",
               ("attempt 3 internal_error: exit code 1:\nTraceback (most recent call last):\nKeyError: 'B11'", terminated))
    shown = drawn(views.task, reports.task(db, terminated))
    head = f"task {terminated} (atmospheric_correction): terminated — "
    indent = " " * len(head)
    assert (f"{head}attempt 3 internal_error: exit code 1:\n{indent}Traceback (most recent call last):\n"
            f"{indent}KeyError: 'B11'\n") in shown, shown


def test_plan_show_says_a_running_tasks_expected_end_passed_and_by_how_long_not_an_end_in_the_past(db, tmp_path):
    # Found by review: a task running past its routine's expected duration was "expected end" at a time already
    # past, as if it had ended.
    from tests.integration.dashboard_scenario import build

    running = build(db, tmp_path / "data").running  # (its routine is expected to take 2 s)
    db.execute("UPDATE hrwsi.job SET started_at = now() - interval '30 minutes' WHERE task_id = %s", (running,))
    data = reports.schedule(db)
    row = next(t for t in data["tasks"] if t["task_id"] == running)
    assert 1790 < row["overdue_s"] < 1810, row
    assert all(t["overdue_s"] is None for t in data["tasks"] if t["expected_end"] > data["at"])
    shown = drawn(views.schedule, data)
    lines = shown.splitlines()
    at = next(n for n, one in enumerate(lines) if f"│ {running} " in one)
    assert "passed, overdue by 30 min" in lines[at + 1] and "passed" not in shown.replace(lines[at + 1], ""), shown
    db.execute("UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL WHERE state = 'planned'")
    assert "its expected end passed at " in drawn(views.schedule, reports.schedule(db))
    assert ", overdue by 30 min" in drawn(views.schedule, reports.schedule(db))


def test_plan_show_says_a_planned_task_past_its_planned_start_waits_not_that_it_is_overdue(db, tmp_path):
    # Found by exploratory testing (2026-12-07): jobs that ran 40 s where their routine expected 1 s kept the tasks
    # planned behind them waiting; each read "passed, overdue by 23 s", as if it ran late, and the schedule's end
    # was in the past.
    from tests.integration.dashboard_scenario import build

    scenario = build(db, tmp_path / "data")
    db.execute("UPDATE hrwsi.job SET started_at = now() - interval '30 minutes' WHERE task_id = %s", (scenario.running,))
    waiting = scenario.planned[0]
    db.execute("UPDATE hrwsi.processing_task SET planned_start = now() - interval '10 minutes', "
               "planned_end = now() - interval '9 minutes' WHERE id = %s", (waiting,))
    data = reports.schedule(db)
    row = next(t for t in data["tasks"] if t["task_id"] == waiting)
    assert row["overdue_s"] is None and 590 < row["start_late_s"] < 610 and row["expected_end"] > data["at"], row
    shown = drawn(views.schedule, data)
    lines = shown.splitlines()
    at = next(n for n, one in enumerate(lines) if f"│ {waiting} " in one)
    assert "not started, its planned start passed 10 min ago" in lines[at + 1], shown
    assert shown.count("overdue") == 1, "the running task alone"
    assert ("at the earliest: 1 task(s) run past their expected end (the longest by 30 min), and the tasks not "
            "started wait for what they hold") in " ".join(shown.split()), shown


SNEAKY = "[bold red]x[/bold red]\x1b[2J\x1b]0;owned\x07"  # (rich markup, an escape that clears the screen, a title)
SHOWN = "[bold red]x[/bold red]\\x1b[2J\\x1b]0;owned\\x07"


def test_a_services_kind_and_a_jobs_backend_are_printed_as_text_never_obeyed(db, tmp_path):
    # Found by review: written by services only, they were printed as rich markup (its [bold red] taken as a style
    # and lost) and their control characters reached the terminal, where every other value is shown as text. (An
    # alert's kind is too, tests/unit/test_cli_views.py: the database takes only the kinds it knows.)
    from tests.integration.dashboard_scenario import build

    terminated = build(db, tmp_path / "data").terminated
    db.execute("UPDATE hrwsi.service_instance SET kind = %s, problem = 'no Nomad', problem_since = now() "
               "WHERE kind = 'orchestrator'", (SNEAKY,))
    db.execute("UPDATE hrwsi.job SET backend = %s WHERE task_id = %s", (SNEAKY, terminated))
    status = drawn(lambda console: views.status(console, reports.status(db), 30.0))
    task = drawn(views.task, reports.task(db, terminated))
    for said in (status, task):
        assert "\x1b" not in said and "\x07" not in said, said
    assert f"│ {SHOWN} │ orchestrator-ops1-100-aaaaaa" in status, status
    assert "│ [bold red]x[/bold " in task, task  # (a table's cell, wrapped)
    assert f"{SHOWN} cannot work as it should" in status


def test_a_transaction_left_open_is_named_in_status_with_its_age_what_it_holds_back_and_what_to_do(db, database_url):
    """A session idle in transaction (a SQL client left open) holds its snapshot: VACUUM keeps every row version
    it might see, and hrwsi's busy tables bloat; status said nothing of it (found by exploratory testing)."""
    import psycopg

    with psycopg.connect(database_url, application_name="forgotten-psql") as other:
        other.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        other.execute("SELECT count(*) FROM hrwsi.processing_task")  # (its snapshot is kept until it ends)
        pid = other.info.backend_pid
        assert [s["pid"] for s in reports.status(db)["long_transactions"]] == [], "younger than the threshold"
        data = reports.status(db, long_transaction_after_s=0.0)
        [session] = [s for s in data["long_transactions"] if s["pid"] == pid]
        assert (session["application"], session["state"], session["holds_back_vacuum"]) == (
            "forgotten-psql", "idle in transaction", True)
        assert session["transaction_s"] >= 0
        assert f"SELECT pg_terminate_backend({pid})" in session["next"]
        assert "VACUUM keeps every row version it might see" in session["next"]
        shown = " ".join(drawn(views.status, data, 30.0).split())
        assert f"a transaction has been open long: pid {pid} (role " in shown and "forgotten-psql, idle in transaction" \
            in shown, shown
    assert [s for s in reports.status(db, long_transaction_after_s=0.0)["long_transactions"] if s["pid"] == pid] == []



def test_a_role_without_pg_read_all_stats_counts_every_session_and_is_told_what_it_cannot_see(db, database_url):
    """Found by review: for a role without pg_read_all_stats, other roles' sessions show backend_type, state and
    xact_start as NULL: status counted only the caller's own sessions as the slots taken, and named only its own
    long transactions, saying nothing of the rest."""
    import uuid

    import psycopg
    from psycopg import sql

    role = f"hrwsi_test_no_stats_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE hrwsi_readonly").format(sql.Identifier(role)))
    try:
        with psycopg.connect(database_url, application_name="hrwsi-other") as other, \
                psycopg.connect(database_url.replace("postgresql://postgres@", f"postgresql://{role}@"),
                                autocommit=True) as mine:
            other.execute("SELECT 1")  # (another role's session, in a transaction)
            data = reports.status(mine, connections_said_at=0.0)
            everyone = db.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
            assert data["connections"]["in_use"] >= everyone.fetchone()[0] >= 3, data["connections"]
            assert data["connections"]["hrwsi"] >= 1, "application_name is seen for every session"
            said = data["sessions_not_seen"]
            assert said is not None and f"cannot be seen by role {role}" in said
            assert f"GRANT pg_read_all_stats TO {role}" in said
            assert said in " ".join(drawn(views.status, data, 30.0).split())
        assert reports.status(db)["sessions_not_seen"] is None, "a superuser sees every session"
    finally:
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

def test_a_server_short_of_connections_is_said_in_status_with_the_settings_that_free_some(db):
    """A server out of slots refuses hrwsi's new connections ("too many clients already"); status says how many
    are taken, hrwsi's among them, and names max_connections and hrwsi's pool sizes (found by exploratory
    testing). (Said from CONNECTIONS_SAID_AT of the slots; here from none, the test server having many free.)"""
    assert reports.status(db)["connections"] is None
    slots = reports.status(db, connections_said_at=0.0)["connections"]
    assert slots["in_use"] >= 1 and slots["slots"] > slots["in_use"] and slots["hrwsi"] >= 0
    for setting in ("max_connections", "CONNECTION LIMIT", "HRWSI_POOL_SIZE", "HRWSI_WEB_POOL_SIZE", "pg_stat_activity"):
        assert setting in slots["next"]
    shown = " ".join(drawn(views.status, reports.status(db, connections_said_at=0.0), 30.0).split())
    assert f"the database server is short of connections: {slots['in_use']} of its {slots['slots']} slots are taken" \
        in shown, shown



def test_a_dead_sibling_instance_that_nothing_replaced_is_listed_not_folded_away(db):
    """Found by review: two instances of one kind on one host, the earlier-started one died holding no job: it was
    folded into "replaced instance(s) not listed", though the newer one ran beside it and replaced nothing."""
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, started_at, heartbeat_at) VALUES
                  ('orchestrator-h-1', 'orchestrator', 'h', 1, now() - interval '2 hours', now() - interval '10 minutes'),
                  ('orchestrator-h-2', 'orchestrator', 'h', 2, now() - interval '1 hour', now())""")
    data = reports.status(db, stale_after_s=30.0)
    assert {s["id"]: s["replaced_by"] for s in data["services"]}["orchestrator-h-1"] is None
    shown = " ".join(drawn(views.status, data, 30.0).split())
    assert "orchestrator-h-1" in shown and "(stale: dead or hung?)" in shown and "not listed" not in shown, shown

def test_instances_a_newer_live_one_replaced_are_counted_in_one_line_of_status_and_listed_on_demand(db):
    """After a database restart every lease lapsed and each service went on under a new identity; restarted
    services leave their old rows too: each was a row of `hrwsi status` until dead_service_hours (found by
    exploratory testing). Those a newer live instance of their kind on their host replaced are one line; a
    stale instance nothing replaced is still listed as such (a real problem is never folded)."""
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, started_at, heartbeat_at) VALUES
                  ('orchestrator-h-10-now', 'orchestrator', 'h', 10, now() - interval '1 minute', now()),
                  ('orchestrator-h-10-lapsed', 'orchestrator', 'h', 10, now() - interval '2 hours',
                   now() - interval '3 minutes'),
                  ('orchestrator-h-9-restarted', 'orchestrator', 'h', 9, now() - interval '3 hours',
                   now() - interval '2 hours'),
                  ('harvester-h-10-now', 'harvester', 'h', 10, now() - interval '1 minute', now()),
                  ('harvester-h-10-lapsed', 'harvester', 'h', 10, now() - interval '2 hours',
                   now() - interval '3 minutes'),
                  ('orchestrator-elsewhere-5', 'orchestrator', 'elsewhere', 5, now() - interval '3 hours',
                   now() - interval '10 minutes'),
                  ('launcher-h-7', 'launcher', 'h', 7, now() - interval '3 hours', now() - interval '10 minutes')""")
    data = reports.status(db, stale_after_s=30.0)
    replaced = {s["id"]: s["replaced_by"] for s in data["services"]}
    assert replaced["orchestrator-h-9-restarted"] == replaced["orchestrator-h-10-lapsed"] == "orchestrator-h-10-now"
    assert replaced["orchestrator-elsewhere-5"] is None and replaced["launcher-h-7"] is None
    shown = " ".join(drawn(views.status, data, 30.0).split())
    for folded in ("orchestrator-h-10-lapsed", "orchestrator-h-9-restarted", "harvester-h-10-lapsed"):
        assert folded not in shown, shown
    assert ("and 3 replaced instance(s) not listed (1 harvester, 2 orchestrator): stale rows of a kind and host where "
            "a newer instance is alive") in shown, shown
    assert "`hrwsi status --all-services` lists them" in shown
    for listed in ("orchestrator-h-10-now", "harvester-h-10-now", "orchestrator-elsewhere-5", "launcher-h-7"):
        assert listed in shown
    assert shown.count("(stale: dead or hung?)") == 2, "the two nothing replaced"
    everything = " ".join(drawn(views.status, data, 30.0, True).split())
    assert "orchestrator-h-9-restarted" in everything and "replaced by orchestrator-h-10-now, a newer instance on its " \
        "host" in everything and "not listed" not in everything
    assert "orchestrator-h-10-lapsed" in everything and "replaced by orchestrator-h-10-now: the same process" in everything


async def test_status_says_at_once_that_the_services_role_or_database_is_set_read_only_whatever_the_readers_role(
        db, database_url, settings):
    """default_transaction_read_only turned on for the services' database (or login role), not a standby: status said
    so only once no heartbeat had been written for a lease, as a read-only role of the reader's own must not read as
    an outage (found by review). The setting of the services' own role or database, read from the catalog, is said at
    once, to any reader; the reader's own read-only role alone still says nothing while the services write."""
    import uuid

    import psycopg
    from psycopg import sql

    from tests.integration.conftest import running, wait_until

    monitor = f"hrwsi_test_monitor_{uuid.uuid4().hex[:8]}"
    name = db.execute("SELECT current_database()").fetchone()[0]
    db.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE hrwsi_readonly").format(sql.Identifier(monitor)))
    db.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(monitor)))
    as_monitor = database_url.replace("postgresql://postgres@", f"postgresql://{monitor}@")

    def writes_refused() -> str | None:
        with psycopg.connect(as_monitor) as conn:
            return reports.status(conn, stale_after_s=30.0)["writes_refused"]

    try:
        async with running(database_url, ["orchestrator"], settings):
            await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.service_instance")
            assert writes_refused() is None, "the reader's own read-only role: the services write"
            db.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(sql.Identifier(name)))
            said = writes_refused()
            assert said is not None and said.startswith(
                "the database refuses hrwsi's writes (default_transaction_read_only is on for the services' role or this "
                "database) since "), said
            db.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(sql.Identifier(name)))
            assert writes_refused() is None
    finally:
        db.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(sql.Identifier(name)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(monitor)))


def an_archive(db, tasks: int) -> None:
    """`tasks` processed tasks (one in 100 terminated), each with its job, written directly in their end states (so without
    the trigger that creates pending tasks): one ended every 10 minutes, the newest now."""
    db.execute("ALTER TABLE hrwsi.input DISABLE TRIGGER input_create_tasks")
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile)
                  SELECT 'in', '/eodata/S2A_MSIL1C_' || g || '_T32TLR.SAFE', '32TLR' FROM generate_series(1, %s) g""",
               (tasks,))
    db.execute("""INSERT INTO hrwsi.processing_task (input_id, routine, state, attempts, finished_at)
                  SELECT id, 'work', CASE WHEN id % 100 = 0 THEN 'terminated' ELSE 'processed' END, 1,
                         now() - (id - 1) * interval '10 minutes'
                  FROM hrwsi.input""")
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, started_at, finished_at)
                  SELECT id, 1, 'dry-run', 'hrwsi-work-' || id || '-1',
                         CASE WHEN state = 'terminated' THEN 'external_error' ELSE 'processed' END, finished_at, finished_at
                  FROM hrwsi.processing_task""")


def explained(db, text: str, params=None) -> str:
    cursor = psycopg.ClientCursor(db)
    cursor.execute("EXPLAIN (FORMAT JSON) " + text, params)
    return json.dumps(cursor.fetchone()[0])


def test_status_counts_the_open_jobs_and_those_ended_in_the_last_day_through_their_indexes_and_exactly(db, configure):
    """`hrwsi status`'s jobs per state read every job ever run on each call, an ops screen refreshing it all day (69 ms
    and 5,800 buffers at 300,000 jobs, growing with the archive). The open jobs are counted through job_active_idx, the
    ended ones of the last 24 hours through job_finished_at_idx: the figures stay exactly those counts through jobs
    submitted, started, ended and deleted (session 75)."""
    configure(single_routine_configuration(["true"]))
    an_archive(db, 30000)
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state)
                  SELECT g, 2, 'dry-run', 'hrwsi-work-' || g || '-2',
                         (ARRAY['running', 'running', 'running', 'queued', 'queued', 'submitted'])[g]
                  FROM generate_series(1, 6) g""")
    db.execute("ANALYZE hrwsi.job")
    plan = explained(db, query("report_job_counts"))
    assert "job_finished_at_idx" in plan and "Seq Scan" not in plan, plan

    def plain() -> dict:
        return dict(db.execute("""SELECT state, count(*) FROM hrwsi.job
                                  WHERE state IN ('submitted', 'queued', 'running') OR finished_at > now() - interval '1 day'
                                  GROUP BY state""").fetchall())

    def shown() -> dict:
        return dict(db.execute(query("report_job_counts")).fetchall())

    assert shown() == plain() == {"running": 3, "queued": 2, "submitted": 1, "processed": 143, "external_error": 1}
    db.execute("UPDATE hrwsi.job SET state = 'processed', finished_at = now() WHERE task_id = 1 AND attempt = 2")
    db.execute("UPDATE hrwsi.job SET state = 'running', started_at = now() WHERE task_id = 4 AND attempt = 2")
    db.execute("UPDATE hrwsi.job SET state = 'internal_error', finished_at = now() - interval '2 days' "
               "WHERE task_id = 6 AND attempt = 2")  # (ended, by the backend's time, two days ago)
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                  VALUES (7, 2, 'dry-run', 'hrwsi-work-7-2')""")
    db.execute("DELETE FROM hrwsi.job WHERE (task_id, attempt) IN ((2, 1), (20000, 1))")
    assert shown() == plain() == {"running": 3, "queued": 1, "submitted": 1, "processed": 143, "external_error": 1}


def test_a_held_campaigns_held_tasks_are_counted_from_its_waiting_tasks_alone_and_exactly(db, configure):
    """A held campaign's held tasks (`hrwsi status`, the overview) were counted through the campaign's index, every task
    it ever ran (1,722 buffers for 5 held of a campaign of 100,005 tasks), or the state's, every task held anywhere (a held
    routine's backlog). Its waiting tasks alone are read (session 75), and the count follows holds and releases."""
    configure(single_routine_configuration(["true"]))
    an_archive(db, 30000)
    db.execute("""INSERT INTO hrwsi.campaign (routine, measured_from, measured_to, on_hold, hold_reason)
                  VALUES ('work', '2020-01-01', '2021-01-01', true, 'its failures')""")
    db.execute("""INSERT INTO hrwsi.processing_task (input_id, routine, state, attempts, lane, campaign_id, finished_at)
                  SELECT id, 'work', CASE WHEN id <= 5 THEN 'on_hold' ELSE 'processed' END, 1, 'archive',
                         (SELECT max(id) FROM hrwsi.campaign), CASE WHEN id > 5 THEN now() END
                  FROM hrwsi.input WHERE id <= 20000""")
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile)
                  SELECT 'in', '/eodata/held/' || g, '32TLR' FROM generate_series(1, 10000) g""")
    db.execute("""INSERT INTO hrwsi.processing_task (input_id, routine, state, state_reason)
                  SELECT id, 'work', 'on_hold', 'routine work is on hold' FROM hrwsi.input
                  WHERE input_path LIKE '/eodata/held/%'""")  # (a held routine's backlog)
    db.execute("VACUUM ANALYZE hrwsi.processing_task")  # (as autovacuum does: a new index's size is known)
    for name, text, params in (("report_held_campaigns", query("report_held_campaigns"), None),
                               ("web_held_campaigns", query("web_held_campaigns").replace("$1", "%(limit)s"),
                                {"limit": 20})):
        plan = explained(db, text, params)
        assert "processing_task_campaign_held_idx" in plan, (name, plan)
        assert "processing_task_campaign_idx" not in plan and "processing_task_state_id_idx" not in plan, (name, plan)

    def held() -> list:
        return [(row[0], row[3]) for row in db.execute(query("report_held_campaigns")).fetchall()]

    def plain() -> list:
        return db.execute("""SELECT k.id, count(t.id) FROM hrwsi.campaign k
                             LEFT JOIN hrwsi.processing_task t ON t.campaign_id = k.id AND t.state = 'on_hold'
                             WHERE k.on_hold GROUP BY k.id ORDER BY k.id""").fetchall()

    assert held() == plain() and held()[0][1] == 5
    db.execute("UPDATE hrwsi.processing_task SET state = 'pending' WHERE campaign_id IS NOT NULL AND id IN "
               "(SELECT id FROM hrwsi.processing_task WHERE campaign_id IS NOT NULL AND state = 'on_hold' LIMIT 2)")
    db.execute("UPDATE hrwsi.processing_task SET state = 'on_hold' WHERE campaign_id IS NOT NULL AND state = 'pending' "
               "AND id = (SELECT min(id) FROM hrwsi.processing_task WHERE campaign_id IS NOT NULL AND state = 'pending')")
    assert held() == plain() and held()[0][1] == 4


def test_the_retry_list_finds_the_inputs_a_correction_superseded_through_their_index_not_a_scan(db, configure):
    """`hrwsi retry --routine R --state S` listed its tasks after reading every input for the few a correction
    superseded (8,167 pages at 350,000 inputs for 7): they are indexed (session 75)."""
    configure(single_routine_configuration(["true"]))
    an_archive(db, 30000)
    db.execute("UPDATE hrwsi.input SET superseded_by = id + 1 WHERE id % 10000 = 0")
    db.execute("ANALYZE hrwsi.input")
    db.execute("ANALYZE hrwsi.processing_task")
    plan = explained(db, query("report_tasks_to_retry"), {"routine": "work", "state": "terminated", "limit": 50})

    def nodes(node: dict):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    superseded = [n for n in nodes(json.loads(plan)[0]["Plan"]) if n.get("Alias") == "s"]
    assert [n.get("Index Name") for n in superseded] == ["input_superseded_by_idx"], plan
    listed = [row[0] for row in db.execute(query("report_tasks_to_retry"),
                                           {"routine": "work", "state": "terminated", "limit": 500}).fetchall()]
    assert len(listed) == 297 and 10000 not in listed and 100 in listed


def test_status_says_alerts_no_orchestrator_ever_tried_wait_for_one_with_a_channel(db):
    # Found by exploratory testing (2026-12-08): with no HRWSI_ALERT_WEBHOOK_URL nor HRWSI_ALERT_SMTP_* the orchestrator
    # never runs the outbox; status said "alerts: 10 unsent, 0 failed, 0 sent" for hours, as if they were late.
    db.execute("""INSERT INTO hrwsi.alert (kind, subject, body, created_at)
                  VALUES ('routine_on_hold', 'hrwsi: routine x is on hold', 'x', now() - interval '10 seconds')""")
    assert "none tried" not in drawn(views.status, reports.status(db), 30.0), "an orchestrator tries every 2 s"
    db.execute("UPDATE hrwsi.alert SET created_at = now() - interval '5 minutes'")
    shown = " ".join(drawn(views.status, reports.status(db), 30.0).split())
    assert ("alerts: 1 unsent, 0 failed, 0 sent: `hrwsi alerts` lists them none tried in 5 min: no orchestrator "
            "running has a channel (HRWSI_ALERT_WEBHOOK_URL, or HRWSI_ALERT_SMTP_HOST with HRWSI_ALERT_SMTP_TO), or "
            "none runs, or its sending hangs (its log says); they wait in the outbox until an orchestrator sends "
            "them") in shown
    db.execute("UPDATE hrwsi.alert SET attempts = 1, last_error = 'HTTP 502'")
    assert "none tried" not in drawn(views.status, reports.status(db), 30.0), "tried: a channel failed, said apart"
