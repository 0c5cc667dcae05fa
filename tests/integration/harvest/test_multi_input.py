"""Multi-input triggering rules, as data, against a real database: groups made once, when complete."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from hrwsi.app import App
from hrwsi.database import create_pool
from hrwsi.harvest.multi_input import evaluate_multi_input_conditions
from hrwsi.harvester import Harvester
from tests.integration.conftest import wait_until, wait_until_listening, wait_until_true

DAY = (datetime.now(UTC) - timedelta(days=10)).replace(hour=10, minute=30, second=0, microsecond=0)


@pytest.fixture
def chain(db):
    """fsc: L2A -> FSC, sws: SIG0 -> SWS, sig0: GRD -> SIG0; gfsc and a weekly composite read FSC."""
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES
                  ('fsc', 1, 1000, 100, '1 min', ARRAY['true'], 'L2A', 'FSC'),
                  ('sws', 1, 1000, 100, '1 min', ARRAY['true'], 'SIG0', 'SWS'),
                  ('sig0', 1, 1000, 100, '1 min', ARRAY['true'], 'GRD', 'SIG0'),
                  ('gfsc', 1, 1000, 100, '1 min', ARRAY['true'], 'FSC', 'GFSC'),
                  ('composite', 1, 1000, 100, '1 min', ARRAY['true'], 'FSC', 'FSC7'),
                  ('pair', 1, 1000, 100, '1 min', ARRAY['true'], 'GRD', 'PAIR')""")
    db.execute("""INSERT INTO hrwsi.processing_condition (name, routine) VALUES
                  ('l2a', 'fsc'), ('sig0', 'sws'), ('grd', 'sig0'), ('gfsc_daily', 'gfsc'),
                  ('fsc_weekly', 'composite'), ('grd_pairs', 'pair')""")
    return db


def gfsc_rule(db, **options):
    columns = {"processing_condition": "gfsc_daily", **options}
    db.execute(f"INSERT INTO hrwsi.multi_input_rule ({', '.join(columns)}) "
               f"VALUES ({', '.join(['%s'] * len(columns))})", list(columns.values()))
    db.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('gfsc_daily', 'FSC', 1), ('gfsc_daily', 'SWS', 1)")


_counter = iter(range(1, 10_000))


def member(db, product_type, tile="32TPR", measured=DAY, state="processed", lane=None):
    """A task of the routine that makes product_type, for an input of that tile and time (in `lane`: None, its
    condition's), in `state`; a processed task has its product."""
    n = next(_counter)
    condition = {"FSC": "l2a", "SWS": "sig0"}[product_type]
    input_id = db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at,
                                                      lane)
                             VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
                          (condition, f"/in/{n}", tile, measured, measured + timedelta(hours=1), lane)).fetchone()[0]
    # The task is created with the input; move it to the state the test needs.
    task = db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (input_id,)).fetchone()[0]
    if state != "pending":
        db.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (task,))
        if state == "processed":
            db.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER processing_task_enforce_transition")
            db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (task,))
            db.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER processing_task_enforce_transition")
    if state == "processed":
        db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, %s, %s)",
                   (task, f"/products/{product_type}_{n}.tif", product_type))
    return task


def group_inputs(db):
    return db.execute("""SELECT i.processing_condition, i.input_path, i.tile, i.source,
                                (SELECT count(*) FROM hrwsi.multi_input_member m WHERE m.input_id = i.id)
                         FROM hrwsi.input i WHERE i.source = 'multi_input' ORDER BY i.id""").fetchall()


async def test_a_file_a_data_engineer_inserts_into_a_multi_input_condition_is_refused_saying_where_its_scenes_go(chain, pool):
    # (found by exploratory testing: taken, its task ran the composite's routine without members and failed each
    # attempt, and two such inputs put the routine on hold, production's composites with it; migration 0128)
    gfsc_rule(chain)
    with pytest.raises(psycopg.errors.CheckViolation,
                       match="condition 'gfsc_daily' is a multi-input condition: the harvester makes its inputs") as refused:
        chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                         VALUES ('l2a', '/in/ok.SAFE', '32TPR', %s, %s),
                                ('gfsc_daily', '/in/FSC_32TPR.tif', '32TPR', %s, %s)""", (DAY, DAY, DAY, DAY))
    assert "The first row naming it has input_path /in/FSC_32TPR.tif (1 row(s)" in refused.value.diag.message_detail
    assert "insert the scenes into the conditions that make its members" in refused.value.diag.message_hint
    assert chain.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 0  # nothing of the statement kept
    # The harvester's group inputs are taken as before.
    member(chain, "FSC")
    member(chain, "SWS")
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1
    assert [(c, s) for c, _, _, s, _ in group_inputs(chain)] == [("gfsc_daily", "multi_input")]


def test_an_input_without_a_tile_or_sensing_time_is_taken_with_a_warning_naming_the_series_and_groups_it_misses(chain):
    # (found by exploratory testing: processed, its products too, but the composite down its chain was never made,
    # nor did it join its tile's time series, and nothing said so; migration 0128)
    gfsc_rule(chain)
    chain.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true WHERE name = 'fsc'")
    said = []  # (a notice's fields are read in its handler: they are gone after it)
    chain.add_notice_handler(lambda n: said.append((n.severity_nonlocalized, n.message_primary, n.message_detail,
                                                    n.message_hint)))
    chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                     VALUES ('l2a', '/in/placed.SAFE', '32TPR', %s, %s)""", (DAY, DAY))
    assert [n for n in said if n[0] == "WARNING"] == []  # an input with both says nothing
    chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile)
                     VALUES ('l2a', '/in/no_time.SAFE', '32TPR'), ('l2a', '/in/no_tile_nor_time.SAFE', NULL)""")
    warnings = [n for n in said if n[0] == "WARNING"]
    assert len(warnings) == 1, said
    _, message, detail, hint = warnings[0]
    assert message == (
        "2 input(s) of condition 'l2a' have no tile or no sensing time (measured_at): they are processed, but join no "
        "time series of routine 'fsc' (sequential_per_tile), and neither they nor the products chained from them join "
        "a group of the multi-input condition(s) 'gfsc_daily', whose composites are never made of them")
    assert detail == "The first such row has input_path /in/no_time.SAFE."
    assert "hrwsi.correct_input(ID, tile => ..., measured_at => ...)" in hint
    assert chain.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 3  # all taken


async def test_a_group_of_the_same_tile_and_day_is_made_once_when_complete(chain, pool):
    gfsc_rule(chain)
    member(chain, "FSC")
    member(chain, "SWS", measured=DAY - timedelta(days=1))   # another day
    member(chain, "SWS", tile="31TCH")                        # another tile
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0
    member(chain, "SWS", measured=DAY + timedelta(hours=2))  # same tile, same day
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1
    assert group_inputs(chain) == [("gfsc_daily", f"multi_input/gfsc_daily/32TPR/{DAY:%Y-%m-%d}", "32TPR",
                                    "multi_input", 2)]
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0  # idempotent
    # The group's input gets its task like any other.
    assert chain.execute("SELECT count(*) FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                         "WHERE i.source = 'multi_input'").fetchone()[0] == 1


async def test_a_back_fills_group_stays_in_its_lane_without_a_deadline_and_one_with_a_fresh_member_does_not(
        chain, pool):
    # Found by exploratory testing (2026-12-07): a month of archive back-fill made a composite per tile and day in
    # the condition's near-real-time lane, each with a deadline an hour after it was made: they went before the
    # fresh scenes' composites, and timeliness counted them on time as near-real-time.
    chain.execute("UPDATE hrwsi.processing_condition SET deadline = '1 hour', deadline_from = 'publication' "
                  "WHERE name = 'gfsc_daily'")
    gfsc_rule(chain)
    member(chain, "FSC", lane="archive")
    member(chain, "SWS", lane="archive")                 # 32TPR: a back-fill's members alone
    member(chain, "FSC", tile="31TCH", lane="archive")
    member(chain, "SWS", tile="31TCH")                   # 31TCH: one member near-real-time
    assert (await evaluate_multi_input_conditions(pool)).inputs == 2
    assert chain.execute("""SELECT i.tile, i.lane, t.lane, t.deadline_at IS NOT NULL
                            FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id
                            WHERE i.source = 'multi_input' ORDER BY i.tile""").fetchall() == [
        ("31TCH", None, "nrt", True), ("32TPR", "archive", "archive", False)]


async def test_a_group_waits_until_every_task_that_would_add_a_member_is_done(chain, pool):
    gfsc_rule(chain)
    member(chain, "FSC")
    member(chain, "SWS")
    running = member(chain, "FSC", measured=DAY + timedelta(minutes=5), state="pending")
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0
    chain.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (running,))
    # A task still pending for a new input is open work too.
    chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                     VALUES ('l2a', '/in/late', '32TPR', %s, %s)""", (DAY, DAY + timedelta(hours=1)))
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0
    chain.execute("""UPDATE hrwsi.processing_task SET state = 'cancelled'
                     WHERE input_id = (SELECT id FROM hrwsi.input WHERE input_path = '/in/late')""")
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1


async def test_a_group_waits_for_a_task_upstream_whose_product_would_chain_into_a_member(chain, pool):
    # Found by exploratory testing (2026-12-05): a daily group was made from a tile's first scene
    # while the L2A of its second scene ran; the FSC and SWS it then made never joined a group.
    gfsc_rule(chain)
    member(chain, "FSC")
    member(chain, "SWS")
    # A GRD of the same tile and day: its sig0 task (GRD -> SIG0) makes what sws (SIG0 -> SWS) reads.
    grd = chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                           VALUES ('grd', '/in/grd-second', '32TPR', %s, %s) RETURNING id""",
                        (DAY + timedelta(minutes=5), DAY + timedelta(hours=1))).fetchone()[0]
    upstream = chain.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (grd,)).fetchone()[0]
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0, "its task is open"
    # Processed, its SIG0 not chained yet (the harvester's chaining runs as a step of its own): still open.
    chain.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER processing_task_enforce_transition")
    chain.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (upstream,))
    chain.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER processing_task_enforce_transition")
    chain.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, '/products/SIG0_2.tif', 'SIG0')",
                  (upstream,))
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0, "its product is not chained yet"
    # Chained: the sws input it made is the open work now (pending), then done.
    chain.execute("UPDATE hrwsi.product SET chained_at = now() WHERE task_id = %s", (upstream,))
    sws = member(chain, "SWS", measured=DAY + timedelta(minutes=5), state="pending")
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0
    chain.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (sws,))
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1


async def test_without_waiting_a_group_is_made_as_soon_as_the_counts_are_met(chain, pool):
    gfsc_rule(chain, wait_for_open_tasks=False)
    member(chain, "FSC")
    member(chain, "SWS")
    member(chain, "FSC", state="pending")
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1


async def test_a_7_day_composite_is_made_once_every_day_has_its_product(chain, pool):
    chain.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition, window_days, every_day_of_window) "
                  "VALUES ('fsc_weekly', 7, true)")
    chain.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('fsc_weekly', 'FSC', 1)")
    for back in (6, 5, 4, 2, 1, 0):  # day 3 is missing
        member(chain, "FSC", measured=DAY - timedelta(days=back))
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0
    member(chain, "FSC", measured=DAY - timedelta(days=3))
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1
    [(condition, path, _tile, _source, members)] = group_inputs(chain)
    assert (condition, path, members) == ("fsc_weekly", f"multi_input/fsc_weekly/32TPR/{DAY:%Y-%m-%d}", 7)


async def test_n_harvested_inputs_of_the_same_tile_and_day(chain, pool):
    chain.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition, wait_for_open_tasks) "
                  "VALUES ('grd_pairs', false)")
    chain.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('grd_pairs', 'GRD', 2)")
    chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                     VALUES ('grd', '/grd/a', '32TPR', %s, %s)""", (DAY, DAY + timedelta(hours=1)))
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0
    chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                     VALUES ('grd', '/grd/b', '32TPR', %s, %s)""", (DAY + timedelta(minutes=1), DAY + timedelta(hours=1)))
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1
    members = chain.execute("SELECT member_path FROM hrwsi.multi_input_member ORDER BY 1").fetchall()
    assert members == [("/grd/a",), ("/grd/b",)]


async def test_tiles_windows_and_inactive_conditions_are_honoured(chain, pool):
    gfsc_rule(chain, wait_for_open_tasks=False)
    chain.execute("UPDATE hrwsi.processing_condition SET tiles = ARRAY['31TCH'], measurement_window = '30 days' "
                  "WHERE name = 'gfsc_daily'")
    for tile in ("32TPR", "31TCH"):
        member(chain, "FSC", tile=tile)
        member(chain, "SWS", tile=tile)
    member(chain, "FSC", tile="31TCH", measured=DAY - timedelta(days=60))
    member(chain, "SWS", tile="31TCH", measured=DAY - timedelta(days=60))
    chain.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'gfsc_daily'")
    assert (await evaluate_multi_input_conditions(pool)).inputs == 0
    chain.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'gfsc_daily'")
    assert (await evaluate_multi_input_conditions(pool)).inputs == 1
    assert [r[2] for r in group_inputs(chain)] == ["31TCH"]


async def test_two_harvesters_evaluating_at_once_make_each_group_once(chain, pool, database_url):
    gfsc_rule(chain)
    for tile in ("32TPR", "31TCH", "30TYN"):
        member(chain, "FSC", tile=tile)
        member(chain, "SWS", tile=tile)
    other = await create_pool(database_url, max_size=2)
    try:
        created = await asyncio.gather(evaluate_multi_input_conditions(pool), evaluate_multi_input_conditions(other))
    finally:
        await other.close()
    assert sum(c.inputs for c in created) == 3 and len(group_inputs(chain)) == 3


async def test_sources_register_no_single_inputs_for_multi_input_conditions(chain, pool):
    gfsc_rule(chain)
    async with pool.acquire() as conn:
        from hrwsi.sql_files import query
        counts = await conn.fetch(query("harvest_register_inputs"), ["/landing/fsc.tif"], ["32TPR"], ["S2A"],
                                  [DAY], [DAY + timedelta(hours=1)], ["fsc"], "FSC", datetime.now(UTC),
                                  "test", False)
    # fsc_weekly (no rule here) takes it as a single input; gfsc_daily (a rule) does not.
    assert [(r["matching"], r["created"]) for r in counts] == [(1, 1)]
    assert chain.execute("SELECT processing_condition FROM hrwsi.input").fetchall() == [("fsc_weekly",)]


def multi_input_runs_counted(monkeypatch) -> list[int]:
    """One entry per run of the harvester's multi_input step."""
    runs: list[int] = []
    original = Harvester.multi_input

    async def counted(self):
        try:
            return await original(self)
        finally:
            runs.append(1)

    monkeypatch.setattr(Harvester, "multi_input", counted)
    return runs


async def test_without_an_active_rule_new_inputs_products_and_ended_tasks_do_not_run_the_step(
        chain, database_url, settings, monkeypatch):
    # It would find nothing. No backstop poll within the test: only notifications run steps.
    runs = multi_input_runs_counted(monkeypatch)
    async with App(database_url, ["harvester"], dataclasses.replace(settings, backstop_poll_s=60.0),
                   pool_size=3) as app:
        await wait_until_listening(app.services[0])
        before = len(runs)
        assert before >= 1
        # (not even listened to: only the products' channel, which the chain step needs)
        assert app.services[0].listener.quiet == {"hrwsi_input", "hrwsi_task"}
        member(chain, "FSC", state="pending")  # a new input and its task
        chain.execute("UPDATE hrwsi.processing_task SET state = 'cancelled'")  # an ended task
        member(chain, "SWS")  # a product, chained by the harvester
        await wait_until(database_url, "SELECT count(*) = 0 FROM hrwsi.product WHERE chained_at IS NULL")
        await asyncio.sleep(0.3)  # the notifications have arrived by now
        assert len(runs) == before


async def test_once_a_rule_is_active_the_harvester_listens_to_new_inputs_and_ended_tasks_again(
        chain, database_url, settings, monkeypatch):
    runs = multi_input_runs_counted(monkeypatch)
    async with App(database_url, ["harvester"], dataclasses.replace(settings, backstop_poll_s=60.0),
                   pool_size=3) as app:
        harvester = app.services[0]
        await wait_until_listening(harvester)
        assert harvester.listener.quiet == {"hrwsi_input", "hrwsi_task"}
        gfsc_rule(chain)
        harvester.wake("multi_input")  # as the backstop poll does (here a minute away)
        await wait_until_true(lambda: not harvester.listener.quiet, 5)
        await asyncio.sleep(0.3)  # its runs after the LISTEN are over
        before = len(runs)
        member(chain, "FSC", state="pending")  # a new input: its notification runs the step
        await wait_until_true(lambda: len(runs) > before, 5)


async def test_a_rule_added_while_the_harvester_runs_is_found_by_the_backstop_poll(chain, database_url, settings):
    async with App(database_url, ["harvester"], settings, pool_size=3):
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.service_instance")
        await asyncio.sleep(0.2)  # after its first runs (start, listener), most likely: the backstop finds the rule
        gfsc_rule(chain)
        member(chain, "FSC")
        member(chain, "SWS")
        await wait_until(database_url, "SELECT count(*) = 1 FROM hrwsi.input WHERE source = 'multi_input'",
                         timeout=10.0)
