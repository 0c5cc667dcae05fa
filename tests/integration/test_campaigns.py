"""Reprocessing campaigns in the database: hrwsi.reprocess, what it refuses, the tasks it makes,
the program they run, chaining within the campaign, cancelling, and the progress view (ADR 0010)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from hrwsi import campaigns
from hrwsi.cli.common import to_json
from hrwsi.sql_files import query
from tests.integration.test_operations import login_role  # noqa: F401 - a fixture

DAY = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
OWNER = "launcher-campaign-test"


@pytest.fixture
def chain(db):
    """l2a (L2A -> FSC, by snow), fsc (FSC -> QL, by quicklook), maja (L1C -> L2A, a time series)."""
    db.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type, sequential_per_tile) VALUES
                  ('snow', 1, 100, 10, '1 min', ARRAY['python', '-m', 'snow'], 'L2A', 'FSC', false),
                  ('quicklook', 1, 100, 10, '1 min', ARRAY['ql'], 'FSC', 'QL', false),
                  ('maja', 1, 100, 10, '1 min', ARRAY['maja'], 'L1C', 'L2A', true)""")
    db.execute("""INSERT INTO hrwsi.processing_condition (name, routine, deadline, measurement_window) VALUES
                  ('l2a', 'snow', '3 hours', NULL), ('fsc', 'quicklook', '1 hour', '30 days'),
                  ('l1c', 'maja', NULL, NULL)""")
    db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid) VALUES (%s, 'launcher', 'here', 1)",
               (OWNER,))
    return db


def add_input(db, condition, path, tile="32TLR", measured=DAY):
    row = db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                        VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                     (condition, path, tile, measured, measured + timedelta(hours=1))).fetchone()
    return db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s AND campaign_id IS NULL",
                      (row[0],)).fetchone()[0]


def finish(db, task_id, products=()):
    """Take a task through the state machine to processed, with its products."""
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
               "attempts = attempts + 1 WHERE id = %s", (task_id,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (task_id,))
    for path, product_type in products:
        db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, %s, %s)",
                   (task_id, path, product_type))


def reprocess(db, **arguments):
    defaults = {"routine": None, "condition": None, "measured_from": DAY - timedelta(days=1),
                "measured_to": DAY + timedelta(days=1), "tiles": None, "command": None, "image": None,
                "chain": True, "name": None, "again": False}
    return db.execute(query("reprocess"), {**defaults, **arguments}).fetchone()


def campaign_tasks(db, campaign_id):
    return db.execute("""SELECT t.routine, i.input_path, t.lane, t.priority, t.deadline_at, t.state
                         FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                         WHERE t.campaign_id = %s ORDER BY t.id""", (campaign_id,)).fetchall()


def test_a_campaign_makes_one_archive_task_per_processed_input_in_its_range_and_tiles(chain):
    done = add_input(chain, "l2a", "/l2a/a")
    finish(chain, done, [("/fsc/a", "FSC")])
    finish(chain, add_input(chain, "l2a", "/l2a/other-tile", tile="31TGL"))
    finish(chain, add_input(chain, "l2a", "/l2a/too-old", measured=DAY - timedelta(days=5)))
    add_input(chain, "l2a", "/l2a/not-processed-yet")
    campaign_id, tasks, summary = reprocess(chain, routine="snow", tiles=["32TLR"], name="fix NDSI")
    assert tasks == 1 and f"campaign {campaign_id}: 1 task(s) of routine snow" in summary
    [(routine, path, lane, priority, deadline, state)] = campaign_tasks(chain, campaign_id)
    assert (routine, path, lane, priority, deadline, state) == ("snow", "/l2a/a", "archive", 1, None, "pending")
    # The production task and its product are untouched; a second campaign may take the same input again.
    assert chain.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (done,)).fetchone()[0] == "processed"
    assert chain.execute("SELECT count(*) FROM hrwsi.product").fetchone()[0] == 1
    second, _, _ = reprocess(chain, condition="l2a", tiles=["32TLR"])
    assert campaign_tasks(chain, second)[0][1] == "/l2a/a"
    with pytest.raises(psycopg.errors.UniqueViolation, match="task_is_unique_per_input_and_campaign"):
        chain.execute("INSERT INTO hrwsi.processing_task (input_id, routine, campaign_id) "
                      "SELECT input_id, routine, campaign_id FROM hrwsi.processing_task WHERE campaign_id = %s",
                      (second,))


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({}, psycopg.errors.CheckViolation, "give the routine or the condition"),
    ({"routine": "snow", "condition": "l2a"}, psycopg.errors.CheckViolation, "give the routine or the condition"),
    ({"routine": "nope"}, psycopg.errors.NoDataFound, "no routine 'nope'"),
    ({"condition": "nope"}, psycopg.errors.NoDataFound, "no condition 'nope'"),
    ({"routine": "snow", "measured_from": DAY, "measured_to": DAY},
     psycopg.errors.CheckViolation, "campaign_measured_from_is_before_measured_to"),
    ({"routine": "snow", "tiles": ["31TGL"]}, psycopg.errors.NoDataFound,
     "nothing to reprocess: no input of routine snow sensed from .* was processed \\(tiles '31TGL'\\)"),
    # (psycopg reads years 1 to 9999 alone: a campaign to 12000-01-01 made `hrwsi campaigns` fail on every call)
    ({"routine": "snow", "measured_to": datetime(9000, 1, 1, 0, 0, 1, tzinfo=UTC)},
     psycopg.errors.CheckViolation, "campaign_sensing_range_is_between_1950_and_9000"),
    # (Nomad reads `${...}` in a job's arguments and driver config as its own: every job of such a campaign ran
    # another command or was refused, charged to the campaign; the configuration file refuses it in a routine's)
    ({"routine": "snow", "command": ["sh", "-c", "echo ${attr.unique.hostname}"]}, psycopg.errors.CheckViolation,
     "the campaign's command or image holds '\\$\\{', which Nomad would replace"),
    ({"routine": "snow", "image": "registry/snow:${NOMAD_ALLOC_ID}"}, psycopg.errors.CheckViolation,
     "the campaign's command or image holds '\\$\\{'"),
])
def test_a_campaign_that_makes_no_sense_is_refused_and_leaves_nothing(chain, arguments, error, message):
    finish(chain, add_input(chain, "l2a", "/l2a/a"))
    with pytest.raises(error, match=message):
        reprocess(chain, **arguments)
    assert chain.execute("SELECT count(*) FROM hrwsi.campaign").fetchone()[0] == 0


def test_nothing_to_reprocess_says_the_sensing_range_in_utc_whatever_the_sessions_zone(chain):
    """README (Clocks): the database's sentences say times in UTC with a Z; this refusal said the session's zone
    in PostgreSQL's format ("sensed from 2026-03-01 11:00:00+01 to ..."; migration 0103)."""
    chain.execute("SET TIME ZONE 'Europe/Paris'")
    with pytest.raises(psycopg.errors.NoDataFound) as refused:
        reprocess(chain, routine="snow", measured_from=DAY, measured_to=DAY + timedelta(days=1, microseconds=5))
    assert refused.value.diag.message_primary == ("nothing to reprocess: no input of routine snow sensed from "
                                                 "2026-03-01 10:00:00Z to 2026-03-02 10:00:00Z was processed")


def test_a_time_series_campaign_chains_its_own_tasks_and_production_never_waits_for_them(chain):
    first = add_input(chain, "l1c", "/l1c/1", measured=DAY)
    second = add_input(chain, "l1c", "/l1c/2", measured=DAY + timedelta(hours=5))
    finish(chain, first)
    finish(chain, second)
    campaign_id, tasks, _ = reprocess(chain, routine="maja")
    assert tasks == 2
    links = chain.execute("""SELECT i.input_path, d_i.input_path, d.campaign_id FROM hrwsi.processing_task t
                             JOIN hrwsi.input i ON i.id = t.input_id
                             LEFT JOIN hrwsi.processing_task d ON d.id = t.depends_on
                             LEFT JOIN hrwsi.input d_i ON d_i.id = d.input_id
                             WHERE t.campaign_id = %s ORDER BY t.id""", (campaign_id,)).fetchall()
    assert [(path, depends is None, campaign) for path, depends, campaign in links] == [
        ("/l1c/1", True, None), ("/l1c/2", False, campaign_id)]
    # A new production scene of that tile follows the production series, not the campaign's.
    third = add_input(chain, "l1c", "/l1c/3", measured=DAY + timedelta(hours=10))
    assert chain.execute("SELECT depends_on FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone()[0] == second


def test_a_campaign_task_runs_the_campaign_version_and_its_job_records_it(chain):
    finish(chain, add_input(chain, "l2a", "/l2a/a"))
    campaign_id, _, _ = reprocess(chain, routine="snow", command=["python", "-m", "snow_v2"])
    jobs = chain.execute("""SELECT (job).job_id, (job).command, (job).image, (job).manifest
                            FROM hrwsi.dispatch(%s, 'dry-run', 30, 10, '/d') WHERE (job).job_id IS NOT NULL""",
                         (OWNER,)).fetchall()
    [(job_id, command, image, manifest)] = jobs
    assert (command, image) == (["python", "-m", "snow_v2"], None)
    assert chain.execute("SELECT routine_version FROM hrwsi.job WHERE id = %s", (job_id,)).fetchone()[0] == \
        "python -m snow_v2"
    written = json.loads(manifest)
    assert (written["campaign"], written["routine_version"]) == (campaign_id, "python -m snow_v2")
    # Production tasks of the routine still run the routine's own version.
    add_input(chain, "l2a", "/l2a/b")
    [(command,)] = chain.execute("""SELECT (job).command FROM hrwsi.dispatch(%s, 'dry-run', 30, 10, '/d')
                                    WHERE (job).job_id IS NOT NULL""", (OWNER,))
    assert command == ["python", "-m", "snow"]


def chain_products(db):
    """The harvester's chaining statement, as it runs it (asyncpg's $1 in psycopg's dialect)."""
    return db.execute(query("chain_products").replace("$1", "%(batch)s"), {"batch": 100}).fetchone()


@pytest.mark.parametrize("chains", [True, False])
def test_a_campaign_product_chains_within_the_campaign_when_it_says_so(chain, chains):
    old = DAY - timedelta(days=365)  # far outside condition fsc's 30-day measurement window
    finish(chain, add_input(chain, "l2a", "/l2a/old", measured=old))
    campaign_id, _, _ = reprocess(chain, routine="snow", measured_from=old - timedelta(days=1),
                                  measured_to=old + timedelta(days=1), chain=chains)
    [task] = [r[0] for r in chain.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s",
                                           (campaign_id,))]
    finish(chain, task, [("/fsc/old-v2", "FSC")])
    chain_products(chain)
    chained = chain.execute("""SELECT i.processing_condition, i.lane, i.campaign_id, t.lane, t.deadline_at,
                                      t.campaign_id, t.routine
                               FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id
                               WHERE i.input_path = '/fsc/old-v2'""").fetchall()
    if chains:
        assert chained == [("fsc", "archive", campaign_id, "archive", None, campaign_id, "quicklook")]
    else:
        assert chained == []
    assert chain.execute("SELECT chained_at IS NOT NULL FROM hrwsi.product WHERE path = '/fsc/old-v2'").fetchone()[0]


def test_a_production_product_still_chains_into_production_with_its_deadline(chain):
    finish(chain, add_input(chain, "l2a", "/l2a/new", measured=datetime.now(UTC) - timedelta(hours=1)),
           [("/fsc/new", "FSC")])
    chain_products(chain)
    row = chain.execute("""SELECT i.lane, i.campaign_id, t.lane, t.deadline_at IS NOT NULL, t.campaign_id
                           FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id
                           WHERE i.input_path = '/fsc/new'""").fetchone()
    assert row == (None, None, "nrt", True, None)


def test_a_back_fill_product_chains_in_its_back_fill_lane_without_deadline_or_window(chain):
    # A scene a year old, back-filled into the archive lane (README's recipe) by its nrt condition l2a.
    old = DAY - timedelta(days=365)  # far outside condition fsc's 30-day measurement window
    row = chain.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane)
                           VALUES ('l2a', '/l2a/backfill', '32TLR', %s, 'archive') RETURNING id""", (old,)).fetchone()
    task, deadline = chain.execute("SELECT id, deadline_at FROM hrwsi.processing_task WHERE input_id = %s",
                                   row).fetchone()
    assert deadline is None
    finish(chain, task, [("/fsc/backfill", "FSC")])
    chain_products(chain)
    chained = chain.execute("""SELECT i.lane, t.lane, t.priority, t.deadline_at FROM hrwsi.input i
                               JOIN hrwsi.processing_task t ON t.input_id = i.id
                               WHERE i.input_path = '/fsc/backfill'""").fetchall()
    # In condition fsc's own lane (nrt) it was overdue from the start (its 1-hour deadline counted
    # from a year ago) and was served before fresh scenes; before that, fsc's window dropped it.
    assert chained == [("archive", "archive", 1, None)]


def test_cancelling_a_campaign_cancels_its_open_tasks_and_keeps_its_products(chain):
    for n in range(3):
        finish(chain, add_input(chain, "l2a", f"/l2a/{n}", measured=DAY + timedelta(minutes=n)))
    campaign_id, _, _ = reprocess(chain, routine="snow")
    first = chain.execute("SELECT min(id) FROM hrwsi.processing_task WHERE campaign_id = %s",
                          (campaign_id,)).fetchone()[0]
    finish(chain, first, [("/fsc/0-v2", "FSC")])
    message = campaigns.cancel(chain, campaign_id)
    assert message == f"campaign {campaign_id}: 2 open task(s) cancelled, 0 running job(s) being stopped; " \
                      "its products are kept"
    states = [r[0] for r in chain.execute("SELECT state FROM hrwsi.processing_task WHERE campaign_id = %s "
                                           "ORDER BY id", (campaign_id,))]
    assert states == ["processed", "cancelled", "cancelled"]
    with pytest.raises(psycopg.errors.NoDataFound, match="no campaign 999"):
        campaigns.cancel(chain, 999)


def test_campaign_progress_counts_tasks_per_state_products_and_says_when_it_finished(chain):
    for n in range(2):
        finish(chain, add_input(chain, "l2a", f"/l2a/{n}", measured=DAY + timedelta(minutes=n)))
    campaign_id, _, _ = reprocess(chain, routine="snow", name="v2")
    [shown] = campaigns.load(chain, campaign_id)
    assert shown.status == "waiting" and shown.totals["waiting"] == 2 and shown.totals["finished_at"] is None
    tasks = [r[0] for r in chain.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s ORDER BY id",
                                          (campaign_id,))]
    for n, task in enumerate(tasks):
        finish(chain, task, [(f"/fsc/{n}-v2", "FSC")])
    [shown] = campaigns.load(chain, campaign_id)
    assert shown.totals["processed"] == 2 and shown.totals["products"] == 2
    assert shown.totals["finished_at"] is None, "its products are not chained yet: downstream work may follow"
    chain_products(chain)
    [shown] = campaigns.load(chain, campaign_id)
    assert [r["routine"] for r in shown.routines] == ["snow", "quicklook"]
    assert shown.routines[1]["waiting"] == 2 and shown.status == "waiting"
    chain.execute("SELECT hrwsi.cancel_campaign(%s)", (campaign_id,))
    [shown] = campaigns.load(chain, campaign_id)
    assert shown.status == "cancelled" and shown.totals["finished_at"] is not None
    assert shown.header["name"] == "v2" and shown.header["lane"] == "archive"


def finished_campaign(db, inputs):
    """A campaign of routine snow over `inputs` processed inputs that does not chain; its task ids."""
    for n in range(inputs):
        finish(db, add_input(db, "l2a", f"/l2a/{n}", measured=DAY + timedelta(minutes=n)))
    campaign_id, _, _ = reprocess(db, routine="snow", chain=False)
    tasks = [r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s ORDER BY id",
                                      (campaign_id,))]
    return campaign_id, tasks


def test_a_campaign_with_a_task_cancelled_by_hand_finished_and_says_how_many(chain):
    campaign_id, tasks = finished_campaign(chain, 4)
    chain.execute("SELECT hrwsi.cancel_task(%s)", (tasks[0],))  # `hrwsi cancel`: that task, not the campaign
    for task in tasks[1:]:
        finish(chain, task)
    [shown] = campaigns.load(chain, campaign_id)
    assert shown.totals["finished_at"] is not None
    assert shown.status == "finished with 1 cancelled"  # it said "cancelled", as if the campaign had been
    assert json.loads(to_json(campaigns.as_json([shown])))[0]["status"] == "finished with 1 cancelled"
    second, _, _ = reprocess(chain, routine="snow", chain=False)
    failing, cancelled, *done = [r[0] for r in chain.execute(
        "SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s ORDER BY id", (second,))]
    chain.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 1 WHERE id = %s", (failing,))
    chain.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (failing,))
    chain.execute("SELECT hrwsi.cancel_task(%s)", (cancelled,))
    for task in done:
        finish(chain, task)
    [shown] = campaigns.load(chain, second)
    assert shown.status == "finished with 1 terminated, 1 cancelled"


def test_a_campaign_cancelled_as_a_whole_says_cancelled_even_with_tasks_processed_before(chain):
    campaign_id, tasks = finished_campaign(chain, 3)
    finish(chain, tasks[0])
    campaigns.cancel(chain, campaign_id)
    [shown] = campaigns.load(chain, campaign_id)
    assert (shown.status, shown.header["campaign_cancelled"]) == ("cancelled", True)


def test_cancelling_a_finished_campaign_is_refused_and_cancels_nothing(chain):
    campaign_id, tasks = finished_campaign(chain, 2)
    chain.execute("SELECT hrwsi.cancel_task(%s)", (tasks[0],))
    finish(chain, tasks[1])
    with pytest.raises(campaigns.NothingToCancel) as refused:  # it said "0 open task(s) cancelled"
        campaigns.cancel(chain, campaign_id)
    assert str(refused.value) == (f"campaign {campaign_id} had already finished (finished with 1 cancelled): "
                                  "nothing was cancelled")
    [shown] = campaigns.load(chain, campaign_id)
    assert shown.status == "finished with 1 cancelled"
    other, _, _ = reprocess(chain, routine="snow", chain=False)  # the same inputs again: cancelled, then again
    campaigns.cancel(chain, other)
    with pytest.raises(campaigns.NothingToCancel, match=f"^campaign {other} was already cancelled: nothing was cancelled$"):
        campaigns.cancel(chain, other)


def request(**changes):
    """What `hrwsi reprocess --routine snow --from ... --to ... --tile 32TLR --tile 31TCH` asks."""
    return campaigns.CampaignRequest(**{"measured_from": DAY - timedelta(days=1), "measured_to": DAY + timedelta(days=1),
                                        "routine": "snow", "tiles": ("32TLR", "31TCH"), **changes})


def campaign_count(db):
    return db.execute("SELECT count(*) FROM hrwsi.campaign").fetchone()[0]


def test_starting_the_same_campaign_again_while_it_is_open_is_refused_naming_it(chain):
    for n, tile in enumerate(["32TLR", "31TCH"]):
        finish(chain, add_input(chain, "l2a", f"/l2a/{n}", tile=tile))
    first = campaigns.start(chain, request(name="NDSI fix"))["campaign_id"]
    with pytest.raises(campaigns.SameCampaignOpen) as refused:  # it made a second campaign: the work twice
        campaigns.start(chain, request(tiles=("31TCH", "32TLR", "31TCH"), name="again", chain=False))
    assert str(refused.value) == (f"campaign {first} ('NDSI fix') already reprocesses these inputs with this version and "
                                  f"is waiting: `hrwsi campaigns --id {first}` shows it; add --again to start another one "
                                  "anyway (both run)")
    assert campaign_count(chain) == 1
    second = campaigns.start(chain, request(), again=True)["campaign_id"]
    assert second != first and campaign_count(chain) == 2


@pytest.mark.parametrize("other", [
    {"tiles": ("32TLR",)}, {"tiles": ()}, {"measured_to": DAY + timedelta(days=2)}, {"command": ("snow-v3",)},
    {"image": "registry/snow:2.1"}, {"routine": None, "condition": "l2a"},
])
def test_a_campaign_of_other_inputs_or_another_version_starts_beside_an_open_one(chain, other):
    for n, tile in enumerate(["32TLR", "31TCH"]):
        finish(chain, add_input(chain, "l2a", f"/l2a/{n}", tile=tile))
    campaigns.start(chain, request())
    campaigns.start(chain, request(**other))
    assert campaign_count(chain) == 2


def test_the_same_campaign_starts_again_once_the_first_finished_or_was_cancelled(chain):
    for n, tile in enumerate(["32TLR", "31TCH"]):
        finish(chain, add_input(chain, "l2a", f"/l2a/{n}", tile=tile))
    first = campaigns.start(chain, request(chain=False))["campaign_id"]
    for [task] in chain.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s", (first,)).fetchall():
        finish(chain, task)
    chain_products(chain)
    assert campaigns.load(chain, first)[0].status == "finished"
    second = campaigns.start(chain, request())["campaign_id"]
    campaigns.cancel(chain, second)
    campaigns.start(chain, request())
    assert campaign_count(chain) == 3


def test_a_campaign_started_twice_in_sql_is_refused_by_the_database_naming_it(chain):
    """README shows data engineers hrwsi.reprocess in SQL: the refusal was `hrwsi reprocess`'s alone,
    and the same call made twice started two campaigns, both of which ran."""
    for n, tile in enumerate(["32TLR", "31TCH"]):
        finish(chain, add_input(chain, "l2a", f"/l2a/{n}", tile=tile))
    first, _, _ = reprocess(chain, routine="snow", tiles=["32TLR", "31TCH"])
    with pytest.raises(psycopg.errors.UniqueViolation) as refused:
        reprocess(chain, routine="snow", tiles=["31TCH", "32TLR"], name="again")
    assert refused.value.diag.message_primary == (f"campaign {first} already reprocesses these inputs with this version "
                                                  "and has not finished")
    assert refused.value.diag.constraint_name == campaigns.TWIN_REFUSED
    assert "again => true" in refused.value.diag.message_hint
    assert campaign_count(chain) == 1
    assert reprocess(chain, routine="snow", tiles=["31TCH", "32TLR"], again=True)[0] != first
    assert campaign_count(chain) == 2


@pytest.mark.parametrize("locked_by", ["a correction", "another start", "an input's lock"])
def test_a_campaign_started_in_sql_that_waited_out_its_lock_timeout_says_what_is_locked_by_whom_and_what_to_do(
        chain, database_url, locked_by):
    """Found by exploration: hrwsi.reprocess in plain SQL (README shows data engineers the call) whose wait ran out said
    PostgreSQL's "canceling statement due to lock timeout", at an advisory lock or an input's row, which only the CLI
    worded. The database says what it waited for, the session that holds it, and what to do, and starts nothing."""
    finish(chain, add_input(chain, "l2a", "/l2a/0"))
    [input_id] = chain.execute("SELECT id FROM hrwsi.input").fetchone()
    with psycopg.connect(database_url) as other:
        other.execute("SET application_name = 'psql'")
        if locked_by == "a correction":
            other.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (input_id,))
        elif locked_by == "another start":
            reprocess(other, routine="snow", command=["other"])
        else:  # (a data engineer's, or a DELETE: what an UPDATE of its key takes)
            other.execute("SELECT 1 FROM hrwsi.input WHERE id = %s FOR UPDATE", (input_id,))
        with psycopg.connect(database_url) as engineer:
            engineer.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable) as waited:
                reprocess(engineer, routine="snow")
        pid = other.info.backend_pid
        other.rollback()
    said, hint = waited.value.diag.message_primary, waited.value.diag.message_hint
    assert said.startswith("hrwsi.reprocess waited lock_timeout (300ms) for "), said
    assert {"a correction": "the correction of an input under way (hrwsi.correct_input in session ",
            "another start": "another start of a campaign under way (hrwsi.reprocess in session ",
            "an input's lock": "an input of the range that another transaction changes or locks (in session "}[locked_by] \
        + f"{pid}, role " in said, said
    assert "application 'psql'" in said and said.endswith("and started no campaign"), said
    assert hint.startswith("run it again once that transaction commits or rolls back"), hint
    assert campaign_count(chain) == 0


def test_a_cancelled_campaign_says_who_cancelled_it_and_when_and_its_products_chain_no_further(chain):
    """A product the campaign made before its cancel, not chained yet, made a task of the cancelled
    campaign downstream, which then ran; and the cancel was recorded only in its tasks' reasons."""
    finish(chain, add_input(chain, "l2a", "/l2a/a"))
    campaign_id, _, _ = reprocess(chain, routine="snow")
    [task] = [r[0] for r in chain.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s",
                                           (campaign_id,))]
    finish(chain, task, [("/fsc/a-v2", "FSC")])
    message = campaigns.cancel(chain, campaign_id)
    assert message.startswith(f"campaign {campaign_id}: 0 open task(s) cancelled")
    [shown] = campaigns.load(chain, campaign_id)
    assert shown.status == "cancelled", "not 'running' until its products are set aside"
    assert shown.header["cancelled_by"] == chain.execute("SELECT session_user").fetchone()[0]
    cancelled_at = shown.header["cancelled_at"]
    assert cancelled_at is not None
    assert chain_products(chain) == (1, 0)
    assert campaign_tasks(chain, campaign_id) == [("snow", "/l2a/a", "archive", 1, None, "processed")]
    with pytest.raises(campaigns.NothingToCancel, match="was already cancelled"):
        campaigns.cancel(chain, campaign_id)
    chain.execute("SELECT hrwsi.cancel_campaign(%s)", (campaign_id,))  # in SQL: the first cancel is kept
    assert campaigns.load(chain, campaign_id)[0].header["cancelled_at"] == cancelled_at


def test_multi_input_groups_take_no_member_from_a_campaign(chain):
    chain.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                     input_product_type, output_product_type) VALUES ('gfsc', 1, 100, 10, '1 min', ARRAY['g'], 'FSC',
                     'GFSC')""")
    chain.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('gfsc_daily', 'gfsc')")
    chain.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition) VALUES ('gfsc_daily')")
    chain.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('gfsc_daily', 'FSC', 2)")
    finish(chain, add_input(chain, "l2a", "/l2a/a"), [("/fsc/a", "FSC")])
    campaign_id, _, _ = reprocess(chain, routine="snow")
    [task] = [r[0] for r in chain.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s",
                                           (campaign_id,))]
    finish(chain, task, [("/fsc/a-v2", "FSC")])
    made = chain.execute(query("multi_input_create_complete_groups").replace("$1", "%(now)s"),
                         {"now": datetime.now(UTC)}).fetchone()
    assert made == (0, 0, 1), "one production FSC and one campaign FSC are not two members"


def test_an_operator_with_the_service_role_starts_a_campaign_under_their_own_name(chain, login_role):  # noqa: F811
    finish(chain, add_input(chain, "l2a", "/l2a/a"))
    service_url = login_role("hrwsi_service")
    operator = service_url.split("://")[1].split("@")[0]
    with psycopg.connect(service_url, autocommit=True) as conn:
        campaign_id, _, _ = reprocess(conn, routine="snow")
        assert conn.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM hrwsi.campaign_progress").fetchone()[0] == 1
        with pytest.raises(campaigns.SameCampaignOpen):  # (it may read what the check reads, and take its lock)
            campaigns.start(conn, campaigns.CampaignRequest(DAY - timedelta(days=1), DAY + timedelta(days=1), "snow"))
    assert chain.execute("SELECT created_by FROM hrwsi.campaign WHERE id = %s", (campaign_id,)).fetchone()[0] == operator
    with psycopg.connect(login_role("hrwsi_data_engineer"), autocommit=True) as engineer:
        assert engineer.execute("SELECT count(*) FROM hrwsi.product_timeliness").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reprocess(engineer, routine="snow")


def test_a_campaigns_summary_says_its_range_in_utc_whatever_the_sessions_zone(chain):
    finish(chain, add_input(chain, "l2a", "/l2a/a"))
    chain.execute("SET TIME ZONE 'Europe/Paris'")  # (it said "2026-02-28 11:00:00+01")
    _, _, summary = reprocess(chain, routine="snow")
    assert "sensed from 2026-02-28 10:00:00Z to 2026-03-02 10:00:00Z" in summary


def test_a_campaign_none_of_whose_tasks_can_run_says_what_holds_it_not_running(chain):
    # Found by exploratory testing: a campaign whose tasks waited behind a terminated one, and one
    # whose routine was on hold, both said "running".
    for hour in range(4):
        finish(chain, add_input(chain, "l1c", f"/l1c/{hour}", measured=DAY + timedelta(hours=hour)))
    series, _, _ = reprocess(chain, routine="maja")
    first = chain.execute("SELECT min(id) FROM hrwsi.processing_task WHERE campaign_id = %s", (series,)).fetchone()[0]
    chain.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                  "attempts = 1 WHERE id = %s", (first,))
    assert campaigns.load(chain, series)[0].status == "waiting", "its first task runs: the others wait for it"
    chain.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (first,))
    shown = campaigns.load(chain, series)[0]
    assert shown.totals["waiting"] == 3 and shown.totals["terminated"] == 1
    assert shown.status == f"stalled (3 blocked behind task {first} (terminated: `hrwsi retry {first}` runs it again))"
    finish(chain, add_input(chain, "l2a", "/l2a/a"))
    held, _, _ = reprocess(chain, routine="snow")
    assert campaigns.load(chain, held)[0].status == "waiting"
    chain.execute("SELECT hrwsi.hold_routine('snow', 'a bad version')")
    assert campaigns.load(chain, held)[0].status == "stalled (1 held by routine snow (on hold: `hrwsi release snow`))"


def gfsc_daily(db):
    """gfsc (FSC -> GFSC), one composite per tile and day of at least one FSC."""
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES ('gfsc', 1, 100, 10, '1 min', ARRAY['g'], 'FSC',
                  'GFSC')""")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('gfsc_daily', 'gfsc')")
    db.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition) VALUES ('gfsc_daily')")
    db.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('gfsc_daily', 'FSC', 1)")


def make_groups(db):
    return db.execute(query("multi_input_create_complete_groups").replace("$1", "%(now)s"),
                      {"now": datetime.now(UTC)}).fetchone()


def test_a_reprocessed_composite_reads_the_members_its_group_has_now_and_production_keeps_its_own(chain):
    # Found by exploratory testing: daily(32TLR) ran with the first FSC of the day; an FSC of the same
    # day made after it was in no composite, and a campaign on the condition reran the composite from
    # production's record, without it.
    gfsc_daily(chain)
    finish(chain, add_input(chain, "l2a", "/l2a/a"), [("/fsc/a", "FSC")])
    assert make_groups(chain)[:2] == (1, 1)
    [(group_task,)] = chain.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                                    "WHERE i.source = 'multi_input'").fetchall()
    finish(chain, group_task, [("/gfsc/a", "GFSC")])
    finish(chain, add_input(chain, "l2a", "/l2a/b", measured=DAY + timedelta(hours=2)), [("/fsc/b", "FSC")])
    assert make_groups(chain)[:2] == (0, 0), "a group is made once"
    campaign_id, tasks, _ = reprocess(chain, condition="gfsc_daily")
    assert tasks == 1
    [(manifest,)] = chain.execute("""SELECT (job).manifest FROM hrwsi.dispatch(%s, 'dry-run', 30, 10, '/d')
                                     WHERE (job).job_id IS NOT NULL""", (OWNER,)).fetchall()
    written = json.loads(manifest)
    assert written["campaign"] == campaign_id
    assert [m["path"] for m in written["members"]] == ["/fsc/a", "/fsc/b"]
    # Production's record of what its composite read stays true.
    assert chain.execute("SELECT member_path FROM hrwsi.multi_input_member").fetchall() == [("/fsc/a",)]
