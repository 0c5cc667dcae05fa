"""Loading configuration into a real database: checked first, all or nothing, every key reaches its
column, and what `config show` prints loads back to the same configuration."""

from __future__ import annotations

import re
import tomllib

import psycopg
import pytest

from hrwsi import configuration
from hrwsi.demo import CONFIGURATION
from tests.integration.test_dispatch import in_a_thread, waiting_on_an_advisory_lock
from tests.integration.test_operations import login_role  # noqa: F401 - a fixture


def demo_document() -> dict:
    return tomllib.loads(CONFIGURATION.read_text())


def table_counts(db) -> dict[str, int]:
    row = db.execute("SELECT (SELECT count(*) FROM hrwsi.flavour), (SELECT count(*) FROM hrwsi.worker), "
                     "(SELECT count(*) FROM hrwsi.processing_routine), "
                     "(SELECT count(*) FROM hrwsi.processing_condition)").fetchone()
    return dict(zip(("flavour", "worker", "processing_routine", "processing_condition"), row))


def test_nothing_is_written_when_any_entry_has_a_problem(db):
    document = demo_document()
    document["condition"][2]["tiles"] = ["T32TLR"]
    with pytest.raises(configuration.ConfigurationError, match=r"condition\[2\].tiles\[0\]"):
        configuration.load(db, document)
    assert table_counts(db) == {"flavour": 0, "worker": 0, "processing_routine": 0, "processing_condition": 0}
    budget = db.execute("SELECT cpu_max FROM hrwsi.budget").fetchone()[0]
    assert budget is None


def test_a_condition_names_a_lane_the_database_has(db):
    document = demo_document()
    document["condition"][0]["lane"] = "nearline"
    with pytest.raises(configuration.ConfigurationError, match=r"condition\[0\].lane: unknown lane 'nearline'"):
        configuration.load(db, document)


def test_a_routine_that_chains_into_itself_is_refused_and_nothing_is_written(db):
    """It reads the type it writes: each product would be a new input, for ever (600 tasks in 15 s)."""
    document = demo_document()
    document["routine"][4]["output_product_type"] = "FSC"  # quicklook reads FSC
    assert configuration.problems(document) == [
        "routine 'quicklook' chains into itself for ever (quicklook -> quicklook): it reads the product type it "
        "writes, so each of its products would make a new input; give it another output_product_type or make its "
        "condition inactive"]
    with pytest.raises(configuration.ConfigurationError, match="chains into itself"):
        configuration.load(db, document)
    assert table_counts(db)["processing_routine"] == 0
    document["condition"][4]["active"] = False  # its condition inactive: no product becomes its input
    assert configuration.problems(document) == []


def test_a_cycle_through_routines_loaded_before_is_refused_by_the_database_s_check(db):
    """The file alone has no cycle; with what the database has, L2A -> FSC -> L2A would chain for ever.
    A multi-input condition makes one input per complete group, not per product: no cycle through it."""
    configuration.load(db, demo_document())
    back = {"routine": [{"name": "fsc_to_l2a", "cpu": 1, "ram_mb": 100, "storage_mb": 10, "expected_duration_s": 1,
                         "command": ["true"], "input_product_type": "FSC", "output_product_type": "L2A"}],
            "condition": [{"name": "fsc_back", "routine": "fsc_to_l2a"}]}
    assert configuration.problems(back) == []
    with pytest.raises(configuration.ConfigurationError, match=r"routines 'fsc_to_l2a', 'snow_cover' chain into each "
                                                                r"other for ever \(fsc_to_l2a -> snow_cover -> fsc_to_l2a\)"):
        configuration.load(db, back)
    assert db.execute("SELECT count(*) FROM hrwsi.processing_routine WHERE name = 'fsc_to_l2a'").fetchone()[0] == 0
    gfsc_back = {**back, "condition": [{"name": "fsc_back", "routine": "fsc_to_l2a", "multi_input": {
        "requires": [{"product_type": "FSC"}]}}]}
    assert configuration.load(db, gfsc_back)["routines"] == 1


BACK = {"name": "fsc_to_l2a", "cpu": 1, "ram_mb": 100, "storage_mb": 10, "expected_duration_s": 1,
        "command": ["true"], "input_product_type": "FSC", "output_product_type": "L2A"}
TWO_ROUTINES = ["fsc_to_l2a", "snow_cover", "fsc_to_l2a"]
GFSC_BACK = {**BACK, "name": "gfsc_to_fsc", "input_product_type": "GFSC", "output_product_type": "FSC"}

# Each statement a data engineer may send that closes a cycle of chaining: (what the database has
# first, the statement, the cycle it closes, the same change as a file for `config load`).
CYCLE_SHAPES = {
    "a condition activated": (
        {"routine": [BACK], "condition": [{"name": "fsc_back", "routine": "fsc_to_l2a", "active": False}]},
        "UPDATE hrwsi.processing_condition SET active = true WHERE name = 'fsc_back'", TWO_ROUTINES,
        {"routine": [BACK], "condition": [{"name": "fsc_back", "routine": "fsc_to_l2a"}]}),
    "a condition inserted": (
        {"routine": [BACK]},
        "INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('fsc_back', 'fsc_to_l2a')", TWO_ROUTINES,
        {"condition": [{"name": "fsc_back", "routine": "fsc_to_l2a"}]}),
    "a condition moved to another routine": (
        {"routine": [BACK]},
        "UPDATE hrwsi.processing_condition SET routine = 'fsc_to_l2a' WHERE name = 'fsc_quicklook'", TWO_ROUTINES,
        {"condition": [{"name": "fsc_quicklook", "routine": "fsc_to_l2a"}]}),
    "a routine's output type changed": (
        {},
        "UPDATE hrwsi.processing_routine SET output_product_type = 'FSC' WHERE name = 'quicklook'",
        ["quicklook", "quicklook"],
        {"routine": [{**demo_document()["routine"][4], "output_product_type": "FSC"}]}),
    "a routine's input type changed": (
        {"routine": [{**BACK, "input_product_type": "S1_GRD"}], "condition": [{"name": "back", "routine": "fsc_to_l2a"}]},
        "UPDATE hrwsi.processing_routine SET input_product_type = 'FSC' WHERE name = 'fsc_to_l2a'", TWO_ROUTINES,
        {"routine": [BACK]}),
    "a multi-input rule removed": (
        {"routine": [GFSC_BACK], "condition": [{"name": "back", "routine": "gfsc_to_fsc"}]},
        "DELETE FROM hrwsi.multi_input_rule WHERE processing_condition = 'gfsc_daily'",
        ["gfsc", "gfsc_to_fsc", "gfsc"],
        {"condition": [{k: v for k, v in demo_document()["condition"][3].items() if k != "multi_input"}]}),
}


@pytest.mark.parametrize("shape", CYCLE_SHAPES)
def test_a_statement_that_closes_a_cycle_of_chaining_is_refused_by_the_database_as_config_load_refuses_it(db, shape):
    """`config load` refused a cycle; plain SQL closed one, and each product chained into a new input for
    ever (found by exploratory testing). The database refuses it with the sentence config load says."""
    before, statement, cycle, as_file = CYCLE_SHAPES[shape]
    configuration.load(db, demo_document())
    if before:
        configuration.load(db, before)
    said = configuration.chain_cycle_problem(cycle)
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        db.execute(statement)
    assert refused.value.diag.message_primary == said
    assert refused.value.diag.constraint_name == "routines_do_not_chain_for_ever"
    assert db.execute("SELECT hrwsi.chain_cycle()").fetchone()[0] is None, "nothing of the statement was kept"
    with pytest.raises(configuration.ConfigurationError) as file_refused:
        configuration.load(db, as_file)
    assert said in str(file_refused.value)


def test_a_data_engineer_cannot_skip_the_cycle_guard_by_setting_what_it_once_read(db, login_role):  # noqa: F811 - the fixture
    """The guard checked once per statement, remembering it in a setting anyone may set: a data engineer
    who set it in the statement that removed a multi-input rule closed a cycle (found by review)."""
    before, _, cycle, _ = CYCLE_SHAPES["a multi-input rule removed"]
    configuration.load(db, demo_document())
    configuration.load(db, before)
    with psycopg.connect(login_role("hrwsi_data_engineer"), autocommit=True) as engineer:
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            # (one message: statement_timestamp() is the same for all of them)
            engineer.execute("BEGIN; DELETE FROM hrwsi.multi_input_rule WHERE processing_condition = 'gfsc_daily'; "
                             "SELECT set_config('hrwsi.chain_checked_at', statement_timestamp()::text, true); COMMIT;")
    assert refused.value.diag.message_primary == configuration.chain_cycle_problem(cycle)
    assert db.execute("SELECT hrwsi.chain_cycle()").fetchone()[0] is None


def test_a_transaction_may_pass_through_a_cycle_that_it_leaves_before_it_commits(db):
    """The guard reads the state at commit: swapping what two conditions do is one transaction's business."""
    configuration.load(db, demo_document())
    configuration.load(db, {"routine": [BACK], "condition": [{"name": "fsc_back", "routine": "fsc_to_l2a",
                                                               "active": False}]})
    with db.transaction():
        db.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'fsc_back'")
        db.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'l2a_for_snow'")
    assert db.execute("SELECT active FROM hrwsi.processing_condition WHERE name = 'fsc_back'").fetchone()[0]


def test_config_load_says_what_turning_a_routine_s_series_off_and_on_does_to_its_open_tasks(db):
    """Turned off, its tasks kept waiting for the task before them, and the load said nothing (found by
    exploratory testing): they no longer wait, and the load says how many."""
    document = demo_document()
    configuration.load(db, document)
    for day in ("01", "02", "03"):
        db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES "
                   "('l1c_recent', %s, '32TLR', %s)", (f"/in/{day}.SAFE", f"2026-11-{day}T10:00Z"))
    routine = next(r for r in document["routine"] if r["name"] == "atmospheric_correction")
    routine["sequential_per_tile"] = False
    said: list[str] = []
    configuration.load(db, {"routine": [routine]}, said=said)
    assert said == ["routine atmospheric_correction is no longer a time series (sequential_per_tile = false): its 2 "
                    "task(s) that had not started no longer wait for the task before them (blocked and planned ones "
                    "are pending again, to be planned; each one's history says so)"]
    waiting = db.execute("SELECT count(*) FROM hrwsi.processing_task WHERE depends_on IS NOT NULL AND NOT "
                         "dependency_waived").fetchone()[0]
    assert waiting == 0
    routine["sequential_per_tile"] = True
    said = []
    configuration.load(db, {"routine": [routine]}, said=said)
    assert said == ["routine atmospheric_correction is a time series now (sequential_per_tile = true): its tasks "
                    "created from now on run one after the other per tile, in date order; its 3 open task(s) run as they "
                    "are (those created while it was not one are in no series: no new task waits for them)"]


def test_validating_writes_nothing_and_a_read_only_role_gets_the_file_s_checks(db, login_role):  # noqa: F811
    document = demo_document()
    assert configuration.check_against(db, document).routine[0].name == "atmospheric_correction"
    assert table_counts(db)["processing_routine"] == 0, "checked as load would, in a transaction rolled back"
    with psycopg.connect(login_role("hrwsi_readonly")) as reader:
        assert len(configuration.check_against(reader, document).routine) == 5
        document["routine"][4]["output_product_type"] = "FSC"
        with pytest.raises(configuration.ConfigurationError, match="chains into itself"):
            configuration.check_against(reader, document)


def test_a_condition_listed_without_its_multi_input_block_is_single_input_after_the_load_with_a_note(db):
    """The rule was kept, silently ("6 conditions"), and the file's cycle check read the condition as
    single-input while the database kept it multi-input (found by exploratory testing)."""
    document = demo_document()
    configuration.load(db, document)
    gfsc = next(c for c in document["condition"] if c["name"] == "gfsc_daily")
    del gfsc["multi_input"]
    said: list[str] = []
    configuration.check_against(db, document, said=said)
    assert db.execute("SELECT count(*) FROM hrwsi.multi_input_rule WHERE processing_condition = 'gfsc_daily'"
                      ).fetchone()[0] == 1, "validating removes nothing"
    removed = ("condition gfsc_daily: its multi-input rule (FSC x1, SWS x1 over 1 day(s)) was removed, as the file "
               "has no [condition.multi_input] for it: it is single-input now, one input per product of the type "
               "its routine reads")
    assert said[0] == removed
    said = []
    configuration.load(db, document, said=said)
    assert said == [removed]
    assert db.execute("SELECT count(*) FROM hrwsi.multi_input_requirement").fetchone()[0] == 0
    # The file and the database agree: GFSC -> FSC chains for ever through gfsc, single-input now.
    back = {"routine": [{"name": "back2", "cpu": 1, "ram_mb": 100, "storage_mb": 10, "expected_duration_s": 1,
                         "command": ["true"], "input_product_type": "GFSC", "output_product_type": "FSC"}],
            "condition": [{"name": "back2", "routine": "back2"}]}
    with pytest.raises(configuration.ConfigurationError, match="'back2', 'gfsc' chain into each other for ever"):
        configuration.load(db, back)


def test_a_multi_input_requirement_nothing_can_meet_is_said_as_a_note(db):
    """A requirement "NOPE", or FSC once the routine writing it wrote FSC2, was "valid" without a word,
    and the condition then never completed a group (found by exploratory testing)."""
    document = demo_document()
    gfsc = next(c for c in document["condition"] if c["name"] == "gfsc_daily")
    gfsc["multi_input"]["requires"].append({"product_type": "NOPE"})
    said: list[str] = []
    configuration.check_against(db, document, said=said)
    assert said == ["condition gfsc_daily requires product type NOPE, which no routine with an active condition writes "
                    "(output_product_type) and no active single-input condition reads (its harvested or inserted "
                    "inputs would count): none of its groups can complete until one does"]
    gfsc["multi_input"]["requires"].pop()
    next(r for r in document["routine"] if r["name"] == "snow_cover")["output_product_type"] = "FSC2"
    next(r for r in document["routine"] if r["name"] == "quicklook")["input_product_type"] = "FSC2"
    said = []
    configuration.load(db, document, said=said)
    said += configuration.notes(db, document)
    assert [note.split(",")[0] for note in said] == ["condition gfsc_daily requires product type FSC"]
    document["condition"].append({"name": "fsc_harvested", "routine": "gfsc"})  # (its inputs would be FSC)
    said = []
    configuration.check_against(db, document, said=said)
    assert said == [], "an active single-input condition reading FSC gets FSC inputs from a harvest"


def test_a_file_may_refer_to_what_the_database_already_has(db):
    configuration.load(db, {"flavour": demo_document()["flavour"]})
    counts = configuration.load(db, {"worker": [{"name": "extra", "flavour": "eo1.small"}]})
    assert counts["workers"] == 1
    with pytest.raises(configuration.ConfigurationError, match="unknown flavour 'eo9'"):
        configuration.load(db, {"worker": [{"name": "x", "flavour": "eo9"}]})


def test_every_routine_and_condition_key_reaches_the_database(db):
    document = demo_document()
    document["routine"][1].update(hold_after_failures=2, env={"FSC_MODE": "fast"}, flavour="eo2.large")
    document["condition"][1].update(tiles=["32TLR"], active=False, publication_window_days=1.5, lane="archive",
                                    deadline_hours=3, deadline_from="publication",
                                    multi_input={"window_days": 7, "every_day_of_window": True,
                                                 "requires": [{"product_type": "L2A", "min_count": 2},
                                                              {"product_type": "L1C"}]})
    configuration.load(db, document)
    routine = db.execute("SELECT hold_after_failures, env, flavour, sequential_per_tile FROM hrwsi.processing_routine "
                         "WHERE name = 'snow_cover'").fetchone()
    assert routine == (2, {"FSC_MODE": "fast"}, "eo2.large", False)
    condition = db.execute("SELECT tiles, active, extract(epoch FROM publication_window)::int, lane, "
                           "extract(epoch FROM deadline)::int, deadline_from "
                           "FROM hrwsi.processing_condition WHERE name = 'l2a_for_snow'").fetchone()
    assert condition == (["32TLR"], False, 129600, "archive", 3 * 3600, "publication")
    # (the sample configuration has a multi-input condition of its own: look at this one's)
    assert db.execute("SELECT window_days, every_day_of_window, wait_for_open_tasks FROM hrwsi.multi_input_rule "
                      "WHERE processing_condition = 'l2a_for_snow'").fetchall() == [(7, True, True)]
    assert db.execute("SELECT product_type, min_count FROM hrwsi.multi_input_requirement "
                      "WHERE processing_condition = 'l2a_for_snow' ORDER BY 1").fetchall() == [("L1C", 1), ("L2A", 2)]
    document["condition"][1]["multi_input"]["requires"] = [{"product_type": "L2A", "min_count": 3}]
    configuration.load(db, document)
    assert db.execute("SELECT product_type, min_count FROM hrwsi.multi_input_requirement "
                      "WHERE processing_condition = 'l2a_for_snow'").fetchall() == [("L2A", 3)]


def test_the_retention_section_sets_the_policy(db):
    counts = configuration.load(db, {"retention": {"task_history_days": 2, "product_days": 90, "finished_task_days": "forever",
                                          "batch_size": 50, "interval_s": 60, "enabled": False}})
    row = db.execute("SELECT enabled, extract(epoch FROM task_history)::int, extract(epoch FROM products)::int, "
                     "finished_tasks, batch_size, extract(epoch FROM run_every)::int, "
                     "extract(epoch FROM plans)::int FROM hrwsi.retention_policy").fetchone()
    assert row == (False, 2 * 86400, 90 * 86400, None, 50, 60, 7 * 86400), "a key left out takes its default"
    assert counts["retention policy"] == 1, "`config load` says it set the policy"


def test_config_show_loads_back_to_the_same_configuration(db):
    document = demo_document()
    document["condition"][1]["multi_input"] = {"window_days": 3, "requires": [{"product_type": "L2A"}]}
    document["retention"] = {"product_days": 400}
    configuration.load(db, document)
    shown = configuration.current(db)
    text = configuration.to_toml(shown)
    assert "{python}" in text, "this interpreter is shown as {python} again"
    configuration.load(db, tomllib.loads(text))
    assert configuration.current(db) == shown
    assert table_counts(db) == {"flavour": 2, "worker": 4, "processing_routine": len(document["routine"]),
                                "processing_condition": len(document["condition"])}


def test_validating_a_routine_the_budget_cannot_hold_says_so_as_a_note(db):
    """cpu = 4 against cpu_max = 3 was `valid` without a word; the planner then refused every task of it
    (found by exploratory testing)."""
    document = {
        "budget": {"cpu_max": 3, "ram_max_mb": 2000, "storage_max_mb": 100_000, "vm_max": 2},
        "flavour": [{"name": "f", "cpu": 8, "ram_mb": 16000, "disk_mb": 50000}],
        "worker": [{"prefix": "w", "count": 2, "flavour": "f"}],
        "routine": [{"name": name, "cpu": cpu, "ram_mb": ram_mb, "storage_mb": 100, "expected_duration_s": 1,
                     "command": ["true"], "input_product_type": kind, "output_product_type": kind + "_OUT"}
                    for name, cpu, ram_mb, kind in (("big", 4, 3000, "A"), ("small", 1, 1000, "B"))],
        "condition": [{"name": "a", "routine": "big"}, {"name": "b", "routine": "small"}],
    }
    said: list[str] = []
    configuration.check_against(db, document, said=said)
    assert said == ["routine big (4 CPU, 3000 MB RAM, 100 MB storage) exceeds the budget (the CPU budget is 3, the "
                    "RAM budget is 2000 MB): its tasks cannot be planned until the budget or the routine changes"]


def test_config_load_says_a_renamed_routine_s_open_tasks_stay_on_it_and_move_tasks_moves_them(db):
    """A load never removes a routine: renamed in the file, it is a new routine beside the old one, the
    conditions move to the new one, and the old one's open and held tasks stayed on it, running its
    command, while the load said only that the database keeps it (found by exploratory testing)."""
    document = demo_document()
    configuration.load(db, document)
    for day in ("01", "02", "03"):
        db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES "
                   "('l2a_for_snow', %s, '32TLR', %s)", (f"/in/{day}.SAFE", f"2026-11-{day}T10:00Z"))
    tasks = [row[0] for row in db.execute("SELECT id FROM hrwsi.processing_task WHERE routine = 'snow_cover' "
                                          "ORDER BY id")]
    db.execute("SELECT hrwsi.hold_task(%s)", (tasks[0],))              # held by hand
    db.execute("SELECT hrwsi.hold_routine('snow_cover', 'a bad version')")  # the others held with it
    routine = next(r for r in document["routine"] if r["name"] == "snow_cover")
    routine["name"] = "snow_cover_v2"
    next(c for c in document["condition"] if c["name"] == "l2a_for_snow")["routine"] = "snow_cover_v2"
    configuration.load(db, document)
    said = configuration.notes(db, document)
    assert ("routine snow_cover is no longer in the file but 3 open task(s) (3 held) name it: they keep running on "
            "snow_cover (its command and resources); `hrwsi move-tasks snow_cover snow_cover_v2` moves those not "
            "started to snow_cover_v2, which reads L2A too (held by hand stay held; a campaign's stay with it)") in said
    moved = db.execute("SELECT hrwsi.move_tasks('snow_cover', 'snow_cover_v2')").fetchone()[0]
    assert moved == "3 task(s) of routine snow_cover moved to routine snow_cover_v2"
    states = db.execute("SELECT routine, state FROM hrwsi.processing_task WHERE id = ANY (%s) ORDER BY id",
                        (tasks,)).fetchall()
    assert states == [("snow_cover_v2", "on_hold"), ("snow_cover_v2", "pending"), ("snow_cover_v2", "pending")]
    history = db.execute("SELECT reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                         (tasks[1],)).fetchone()[0]
    assert history.startswith("moved from routine snow_cover to routine snow_cover_v2 by an operator")
    assert not any("routine snow_cover is no longer" in note for note in configuration.notes(db, document))
    with pytest.raises(psycopg.errors.CheckViolation, match="routine snow_cover_v2 reads L2A, routine gfsc reads FSC"):
        db.execute("SELECT hrwsi.move_tasks('snow_cover_v2', 'gfsc')")




def two_routines_of_l2a(db, ts_sequential=True, ts2_sequential=True):
    """Routines ts and ts2, both reading L2A (time series or not), a condition each; a worker w1."""
    db.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
    for name, sequential in (("ts", ts_sequential), ("ts2", ts2_sequential)):
        db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                      input_product_type, output_product_type, sequential_per_tile)
                      VALUES (%s, 1, 100, 10, '1 min', ARRAY['true'], 'L2A', %s, %s)""", (name, name.upper(), sequential))
        db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES (%s, %s)", (name, name))


def series_task(db, condition, day):
    input_id = db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                             VALUES (%s, %s, '31TCH', %s) RETURNING id""",
                          (condition, f"/l2a/{condition}-{day}", f"2026-11-0{day}T10:00Z")).fetchone()[0]
    return db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (input_id,)).fetchone()[0]


def links(db, *tasks):
    return [db.execute("SELECT routine, depends_on, state FROM hrwsi.processing_task WHERE id = %s", (task,)).fetchone()
            for task in tasks]


def test_tasks_moved_into_a_time_series_with_tasks_of_their_tile_are_linked_in_sensing_order(db):
    """Found by review: `hrwsi move-tasks` kept the moved tasks' links, so that moved into a time series with
    tasks of its own on their tile, two chains of one tile ran side by side, out of sensing order. Each task
    that has not started waits for the task sensed just before it in the series it is in now."""
    two_routines_of_l2a(db)
    first, third = series_task(db, "ts", 1), series_task(db, "ts", 3)
    second = series_task(db, "ts2", 2)
    assert links(db, third, second) == [("ts", first, "pending"), ("ts2", None, "pending")]
    said = db.execute("SELECT hrwsi.move_tasks('ts', 'ts2')").fetchone()[0]
    assert said == "2 task(s) of routine ts moved to routine ts2"
    assert links(db, first, second, third) == [("ts2", None, "pending"), ("ts2", first, "pending"),
                                               ("ts2", second, "pending")]
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone()[0]
    assert reason == f"moved from routine ts to routine ts2 by an operator: it runs after task {second}, sensed before it"
    fourth = series_task(db, "ts2", 4)
    assert links(db, fourth) == [("ts2", third, "pending")], "a new scene links behind the last, as before"


def test_tasks_of_a_time_series_moved_to_a_routine_that_is_not_one_wait_for_nothing(db):
    """Found by review: moved to a routine that is not a time series, a series' tasks still waited for each other,
    and one blocked behind a task that ended terminated stayed blocked, as they would not on that routine."""
    two_routines_of_l2a(db, ts2_sequential=False)
    first, second, third = (series_task(db, "ts", day) for day in (1, 2, 3))
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
               "WHERE id = %s", (first,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (first,))
    assert links(db, second, third) == [("ts", first, "blocked"), ("ts", second, "blocked")]
    db.execute("SELECT hrwsi.move_tasks('ts', 'ts2')")
    assert links(db, second, third) == [("ts2", first, "pending"), ("ts2", second, "pending")]
    assert db.execute("SELECT bool_and(dependency_waived AND series_tile IS NULL) FROM hrwsi.processing_task "
                      "WHERE id = ANY (%s)", ([second, third],)).fetchone() == (True,)
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone()[0]
    assert reason == (f"moved from routine ts to routine ts2 by an operator; routine ts2 is not a time series: it no "
                      f"longer waits for task {first}")


def test_tasks_of_a_routine_that_is_not_a_time_series_are_not_moved_into_one(db):
    """Made outside any series, they would run beside the tasks of their tile there: the move says so, and moves
    nothing."""
    two_routines_of_l2a(db, ts_sequential=False)
    task = series_task(db, "ts", 1)
    with pytest.raises(psycopg.errors.CheckViolation,
                       match="routine ts2 is a time series \\(sequential_per_tile\\), routine ts is not: its tasks "
                             f"cannot join the series of ts2 by a move \\(task {task} \\(input \\d+, tile 31TCH\\), made "
                             "outside any series, would run beside the tasks of its tile there, out of sensing order\\); "
                             "let them run on ts, or cancel them"):
        db.execute("SELECT hrwsi.move_tasks('ts', 'ts2')")
    assert links(db, task) == [("ts", None, "pending")]


def test_the_first_task_moved_into_a_time_series_with_none_before_it_on_its_tile_waits_for_no_task(db):
    """Found by review: the first moved task of a tile, with no task before it in the series it joined, kept the
    task it waited for on the old routine, and stayed blocked behind it when that one had ended terminated. It
    waits for nothing, as an INSERT would link it there, and runs."""
    two_routines_of_l2a(db)
    first, second, third = (series_task(db, "ts", day) for day in (1, 2, 3))
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
               "WHERE id = %s", (first,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (first,))
    assert links(db, second, third) == [("ts", first, "blocked"), ("ts", second, "blocked")]
    assert db.execute("SELECT hrwsi.move_tasks('ts', 'ts2')").fetchone()[0] == "2 task(s) of routine ts moved to routine ts2"
    assert links(db, second, third) == [("ts2", None, "pending"), ("ts2", second, "pending")]
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone()[0]
    assert reason == ("moved from routine ts to routine ts2 by an operator: it is the first of its time series now, "
                      "and waits for no task")


def test_a_blocked_task_moved_into_a_routine_on_hold_is_held_with_it(db):
    """Found by review: a blocked task moved into a routine on hold, linked there behind a task that may run, was
    made pending (blocked cannot be held in one step), while the pending tasks moved with it were held with the
    routine. It is held too, and runs when the routine is released."""
    two_routines_of_l2a(db)
    first, third = series_task(db, "ts", 1), series_task(db, "ts", 3)
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
               "WHERE id = %s", (first,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (first,))
    db.execute("SELECT hrwsi.hold_routine('ts2', 'new version under test')")
    second = series_task(db, "ts2", 2)
    db.execute("SELECT hrwsi.move_tasks('ts', 'ts2')")
    assert links(db, second, third) == [("ts2", None, "on_hold"), ("ts2", second, "on_hold")]
    reason = db.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = %s", (third,)).fetchone()[0]
    assert reason == "moved from routine ts to routine ts2 by an operator; routine on hold: new version under test"
    db.execute("SELECT hrwsi.release_routine('ts2')")
    assert links(db, second, third) == [("ts2", None, "pending"), ("ts2", second, "pending")]


def test_a_scene_inserted_into_the_old_routine_s_series_during_a_move_is_moved_with_its_tile(db, database_url):
    """Found by review: the move took the locks of the series it moved tasks into, not of those they left. A scene
    being inserted into the old routine's series meanwhile was linked behind a task the move took away, and stayed
    on the old routine waiting for a task of the new one. The move waits for that INSERT, and moves its task too."""
    two_routines_of_l2a(db)
    first = series_task(db, "ts", 1)
    with psycopg.connect(database_url) as inserter, psycopg.connect(database_url) as mover:
        second = series_task(inserter, "ts", 2)  # not committed: it holds the series ts/31TCH
        moving, said = in_a_thread(lambda: mover.execute("SELECT hrwsi.move_tasks('ts', 'ts2')").fetchone())
        try:
            waiting_on_an_advisory_lock(db, mover)
        finally:
            inserter.commit()
            moving.join()
        mover.commit()
    assert said == {"result": ("2 task(s) of routine ts moved to routine ts2",)}
    assert links(db, first, second) == [("ts2", None, "pending"), ("ts2", first, "pending")]


def test_a_task_that_move_tasks_leaves_where_it_is_gets_no_history_of_a_move(db, database_url):
    """move_tasks wrote the tasks' history in a statement before the one that moved them: a task dispatched
    in between, which the move then left on its routine, had a history row saying it moved (found by
    review). Forced here: a launcher holds the task while the move runs, and dispatches it."""
    import threading

    configuration.load(db, demo_document())
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES "
               "('l2a_for_snow', '/in/01.SAFE', '32TLR', '2026-11-01T10:00Z')")
    task, worker = db.execute("SELECT t.id, w.name FROM hrwsi.processing_task t, hrwsi.worker w "
                              "WHERE t.routine = 'snow_cover' ORDER BY w.name LIMIT 1").fetchone()
    db.execute("INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command, "
               "input_product_type, output_product_type) SELECT 'snow_cover_v2', cpu, ram_mb, storage_mb, "
               "expected_duration, command, input_product_type, output_product_type FROM hrwsi.processing_routine "
               "WHERE name = 'snow_cover'")
    said = {}
    with psycopg.connect(database_url) as launcher, psycopg.connect(database_url, autocommit=True) as operator:
        launcher.execute("SELECT 1 FROM hrwsi.processing_task WHERE id = %s FOR UPDATE", (task,))

        def move():
            said["result"] = operator.execute("SELECT hrwsi.move_tasks('snow_cover', 'snow_cover_v2')").fetchone()[0]
        mover = threading.Thread(target=move)
        mover.start()
        pid = operator.info.backend_pid
        for _ in range(2000):
            if db.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
                break
            threading.Event().wait(0.005)
        launcher.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = %s, planned_start = now() "
                         "WHERE id = %s", (worker, task))
        launcher.commit()
        mover.join()
    assert said["result"] == ("0 task(s) of routine snow_cover moved to routine snow_cover_v2; 1 under way end on "
                              "snow_cover")
    assert db.execute("SELECT routine FROM hrwsi.processing_task WHERE id = %s", (task,)).fetchone() == ("snow_cover",)
    assert db.execute("SELECT count(*) FROM hrwsi.task_event WHERE task_id = %s AND reason LIKE 'moved %%'",
                      (task,)).fetchone() == (0,)

def test_a_condition_made_active_again_is_told_the_products_made_meanwhile_and_chain_missed_chains_them_once(db):
    """The harvester chains a product once, into the conditions active then: a condition made active
    again never got the products made while it was inactive, and nothing said so (found by
    exploratory testing)."""
    from hrwsi.sql_files import query

    document = demo_document()
    quicklook = next(c for c in document["condition"] if c["name"] == "fsc_quicklook")
    quicklook["active"] = False
    configuration.load(db, document)
    for n in (1, 2):
        db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES "
                   "('l2a_for_snow', %s, '32TLR', now() - interval '1 day')", (f"/in/{n}.SAFE",))
    db.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER processing_task_enforce_transition")
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE routine = 'snow_cover'")
    db.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER processing_task_enforce_transition")
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) SELECT id, '/p/fsc_' || id, 'FSC' "
               "FROM hrwsi.processing_task WHERE routine = 'snow_cover'")
    assert db.execute(query("chain_products").replace("$1", "100")).fetchone() == (2, 0)  # (inactive: no input)
    quicklook["active"] = True
    said: list[str] = []
    configuration.load(db, {"condition": [quicklook]}, said=said)
    assert said == ["condition fsc_quicklook is active: 2 product(s) of the type it reads were made while it was "
                    "inactive and are not chained to it; `hrwsi chain-missed fsc_quicklook` chains them (at most "
                    "10,000 a run; run it again for more)"]
    summary = db.execute("SELECT summary FROM hrwsi.chain_missed_products('fsc_quicklook', max_products => 1)")
    assert summary.fetchone()[0] == "condition fsc_quicklook: 1 product(s) of type FSC chained to it; 1 more: run it again"
    summary = db.execute("SELECT summary FROM hrwsi.chain_missed_products('fsc_quicklook')").fetchone()[0]
    assert summary == "condition fsc_quicklook: 1 product(s) of type FSC chained to it"
    summary = db.execute("SELECT summary FROM hrwsi.chain_missed_products('fsc_quicklook')").fetchone()[0]
    assert summary == "condition fsc_quicklook: 0 product(s) of type FSC chained to it"
    assert db.execute("SELECT count(*) FROM hrwsi.processing_task WHERE routine = 'quicklook'").fetchone()[0] == 2
    said = []
    configuration.load(db, {"condition": [quicklook]}, said=said)
    assert said == [], "an active condition loaded again says nothing"
    with pytest.raises(psycopg.errors.CheckViolation, match="condition gfsc_daily is multi-input"):
        db.execute("SELECT hrwsi.chain_missed_products('gfsc_daily')")


def missed_fsc_products(db, count: int) -> None:
    """fsc_quicklook made inactive, `count` FSC products made and chained meanwhile, then made active by a
    plain UPDATE: each is missed."""
    from hrwsi.sql_files import query

    document = demo_document()
    next(c for c in document["condition"] if c["name"] == "fsc_quicklook")["active"] = False
    configuration.load(db, document)
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) SELECT 'l2a_for_snow', "
               "'/in/' || n || '.SAFE', '32TLR', now() - interval '1 day' FROM generate_series(1, %s) n", (count,))
    db.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER processing_task_enforce_transition")
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE routine = 'snow_cover'")
    db.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER processing_task_enforce_transition")
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) SELECT id, '/p/fsc_' || id, 'FSC' "
               "FROM hrwsi.processing_task WHERE routine = 'snow_cover'")
    db.execute(query("chain_products").replace("$1", str(count)))  # (inactive: no input for it)
    db.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'fsc_quicklook'")


def test_status_reads_the_products_recorded_since_a_conditions_range_opened_not_every_product_of_its_type(
        db, database_url):
    """Found by measuring it: `hrwsi status`'s missed products (hrwsi.conditions_missing_products) read every product
    of the type a condition reads while its missed range was open (0.9-1.6 s at 1,000,000 products). It reads those
    recorded since the range opened (migration 0118), one recorded before it but chained after it included."""
    from hrwsi.sql_files import query

    configuration.load(db, demo_document())
    # (the ranges the load opened, of conditions added, are closed: they miss nothing)
    db.execute("SELECT hrwsi.close_a_missed_range(name) FROM hrwsi.processing_condition")
    db.execute("""INSERT INTO hrwsi.product (path, product_type, created_at, chained_at)
                  SELECT '/old/fsc_' || g, 'FSC', now() - interval '10 days', now() - interval '10 days'
                  FROM generate_series(1, 20000) g""")
    # (recorded two days ago, and not chained yet when the condition is made inactive: chained after)
    db.execute("INSERT INTO hrwsi.product (path, product_type, created_at) "
               "VALUES ('/late/fsc_0', 'FSC', now() - interval '2 days')")
    db.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'fsc_quicklook'")
    db.execute("INSERT INTO hrwsi.product (path, product_type) SELECT '/new/fsc_' || g, 'FSC' FROM generate_series(1, 3) g")
    assert db.execute(query("chain_products").replace("$1", "100")).fetchone() == (4, 0)  # (inactive: no input)
    db.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'fsc_quicklook'")
    db.execute("ANALYZE hrwsi.product")  # (as autovacuum would: a scan of all is the plan for a few hundred)
    with psycopg.connect(database_url) as status:
        rows = status.execute(query("report_conditions_missing_products")).fetchall()
        read = status.execute("""SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
                                 WHERE relname = 'product'""").fetchone()[0]
    assert rows == [("fsc_quicklook", "FSC", 4, 0)], rows
    assert read < 1000, f"{read} products read for 4 missed among 20,004"


def test_retention_does_not_remove_a_product_chain_missed_is_chaining(db, database_url):
    """chain_missed_products inserted inputs naming products it had not locked: retention removed one
    meanwhile, and the input named a product that was gone (found by review)."""
    missed_fsc_products(db, 1)
    db.execute("UPDATE hrwsi.retention_policy SET products = '1 hour'")
    db.execute("UPDATE hrwsi.product SET created_at = now() - interval '1 day'")
    with psycopg.connect(database_url) as operator, psycopg.connect(database_url) as retention:
        said = operator.execute("SELECT summary FROM hrwsi.chain_missed_products('fsc_quicklook')").fetchone()[0]
        assert said == "condition fsc_quicklook: 1 product(s) of type FSC chained to it"  # (not committed yet)
        assert retention.execute("SELECT count(*) FROM hrwsi.prune_products(100)").fetchone()[0] == 0, \
            "a product being chained is skipped"
        retention.commit()
        operator.commit()
    orphans = db.execute("""SELECT count(*) FROM hrwsi.input i WHERE i.product_id IS NOT NULL AND NOT EXISTS
                            (SELECT 1 FROM hrwsi.product p WHERE p.id = i.product_id)""").fetchone()[0]
    assert orphans == 0
    assert db.execute("SELECT count(*) FROM hrwsi.prune_products(100)").fetchone()[0] == 0, "an input names it now"


def test_config_load_of_a_condition_with_nothing_missed_chains_nothing_made_meanwhile(db):
    """config load closed a condition's missed range with chain_missed_products(max_products => 1): a
    product made between its count and that call was chained during config load (found by review)."""
    missed_fsc_products(db, 1)
    closed = db.execute("SELECT hrwsi.close_a_missed_range('fsc_quicklook')").fetchone()[0]
    assert closed is False, "a product is missed: the range stays open"
    assert db.execute("SELECT count(*) FROM hrwsi.input WHERE processing_condition = 'fsc_quicklook'").fetchone()[0] == 0
    db.execute("SELECT hrwsi.chain_missed_products('fsc_quicklook')")
    db.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'fsc_quicklook'")
    db.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'fsc_quicklook'")
    assert db.execute("SELECT hrwsi.close_a_missed_range('fsc_quicklook')").fetchone()[0] is True


def test_chain_missed_never_chains_again_a_product_whose_input_retention_pruned(db):
    """chain-missed counted a product missed when no input of the condition had its path: once
    retention pruned a finished task and its input, the product was chained again and its work done
    twice (found by review). It chains what the harvester chained while the condition missed it."""
    from hrwsi.sql_files import query

    document = demo_document()
    configuration.load(db, document)  # fsc_quicklook active: chained as they come
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES "
               "('l2a_for_snow', '/in/1.SAFE', '32TLR', now() - interval '1 day')")
    db.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER processing_task_enforce_transition")
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE routine = 'snow_cover'")
    db.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER processing_task_enforce_transition")
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) SELECT id, '/p/fsc_' || id, 'FSC' "
               "FROM hrwsi.processing_task WHERE routine = 'snow_cover'")
    assert db.execute(query("chain_products").replace("$1", "100")).fetchone() == (1, 1)
    # Retention pruned the quicklook task and its input (as hrwsi.prune_finished_tasks does, long after).
    db.execute("ALTER TABLE hrwsi.processing_task DISABLE TRIGGER USER")
    db.execute("DELETE FROM hrwsi.processing_task WHERE routine = 'quicklook'")
    db.execute("ALTER TABLE hrwsi.processing_task ENABLE TRIGGER USER")
    db.execute("DELETE FROM hrwsi.input WHERE processing_condition = 'fsc_quicklook'")
    summary = db.execute("SELECT summary FROM hrwsi.chain_missed_products('fsc_quicklook')").fetchone()[0]
    assert summary == "condition fsc_quicklook: 0 product(s) of type FSC chained to it"
    assert db.execute("SELECT count(*) FROM hrwsi.input WHERE processing_condition = 'fsc_quicklook'").fetchone()[0] == 0


def test_config_load_says_which_work_a_time_series_fed_by_a_chain_of_two_steps_waits_for_and_which_not(db):
    """A time series waits for the open work of the step just before it only (README), and `config load`
    said nothing when it loaded a series two steps from its harvested inputs (found by review)."""
    from tests.integration.conftest import chain_configuration

    one_step = chain_configuration(sequential=False)
    next(r for r in one_step["routine"] if r["name"] == "snow_cover")["sequential_per_tile"] = True
    configuration.load(db, one_step)
    assert not any("time series fed by a chain" in note for note in configuration.notes(db, one_step)), \
        "snow_cover reads the L2A of atmospheric_correction, which reads harvested L1C: one step"
    two_steps = chain_configuration(sequential=False)
    next(r for r in two_steps["routine"] if r["name"] == "quicklook")["sequential_per_tile"] = True
    configuration.load(db, two_steps)
    notes = [note for note in configuration.notes(db, two_steps) if "time series fed by a chain" in note]
    assert notes == ["routine quicklook is a time series fed by a chain of more than one step (atmospheric_correction "
                     "-> snow_cover -> quicklook): each task waits for the open work of snow_cover on the scenes of "
                     "its tile sensed before it, not for that of atmospheric_correction (which makes the L2A "
                     "snow_cover reads): a scene late by two steps comes in as a late scene, before the next task of "
                     "its tile if that one has not started, else after it"]
    db.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'l1c'")
    assert not any("time series fed by a chain" in note for note in configuration.notes(db, two_steps)), \
        "atmospheric_correction makes nothing now"


def test_a_refused_name_in_the_file_is_quoted_as_it_is_as_the_database_s_refusals_quote_it():
    """repr() doubled a backslash ('a\\\\b') and switched to double quotes for a name holding a quote, while the
    database's refusals show a name as it is between single quotes, a quote doubled (hrwsi.quoted_name): one name
    read two ways (found by review). A control character is still shown as its escape (a tab as \\x09)."""
    document = demo_document()
    document["condition"][0]["routine"] = "snow\\cover's"
    document["routine"][0]["name"] = "snow\tcover"
    document["flavour"].append(dict(document["flavour"][0]))
    document["flavour"][-1]["name"] = document["flavour"][0]["name"] = "it's\\big"
    said = configuration.problems(document)
    assert any("unknown routine 'snow\\cover''s': define it in a [[routine]] entry" in p for p in said), said
    assert any("'snow\\x09cover' is not a plain routine name" in p for p in said), said
    assert any("'it''s\\big' is already defined by flavour[0]" in p for p in said), said


@pytest.mark.parametrize(("statement", "shown"), [
    ("INSERT INTO hrwsi.flavour (name, cpu, ram_mb, disk_mb) VALUES ('eo2\u00a0large', 1, 1, 1)",
     "flavour name 'eo2\\xa0large' holds U+00A0"),
    ("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('L1C\u200b', 'snow_cover')",
     "processing_condition name 'L1C\\u200b' holds U+200B"),
    ("UPDATE hrwsi.processing_routine SET input_product_type = 'L1C\u202e' WHERE name = 'snow_cover'",
     "processing_routine input_product_type 'L1C\\u202e' holds U+202E"),
    ("UPDATE hrwsi.worker SET name = name || '\U000e0041' WHERE name = (SELECT min(name) FROM hrwsi.worker)",
     "holds U+E0041"),
])
def test_the_database_refuses_an_invisible_character_in_a_name_of_the_configuration_naming_its_code_point(
        db, statement, shown):
    """A condition "L1C\\u200b" written with plain SQL looked like L1C and was another name; the refusal shows the
    name with the character as its escape (a psql shows it as nothing), and names it by its code point."""
    configuration.load(db, demo_document())
    db.commit()
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        db.execute(statement)
    db.rollback()
    assert shown in str(refused.value) and "a control or invisible character" in str(refused.value), refused.value


def test_a_name_stored_before_invisible_characters_were_refused_is_kept_and_config_show_loads_back(db):
    """`hrwsi config show` must not write a file `hrwsi config load` refuses: a condition stored before migration 0124
    with a zero-width space in its name is written with its escape, and loads back; a new such name is refused."""
    configuration.load(db, demo_document())
    db.execute("ALTER TABLE hrwsi.processing_condition DISABLE TRIGGER condition_name_is_a_name_a_configuration_file_takes")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('L1C\u200b', 'snow_cover')")
    db.execute("ALTER TABLE hrwsi.processing_condition ENABLE TRIGGER condition_name_is_a_name_a_configuration_file_takes")
    shown = configuration.current(db)
    text = configuration.to_toml(shown)
    assert '"L1C\\u200b"' in text and "\u200b" not in text
    configuration.load(db, tomllib.loads(text))
    assert configuration.current(db) == shown
    document = tomllib.loads(text)
    document["condition"][0]["name"] = "L2A\u200b"
    with pytest.raises(configuration.ConfigurationError, match=r"'L2A\\u200b' holds U\+200B"):
        configuration.load(db, document)


@pytest.mark.parametrize(("name", "said"), [
    (" padded", "processing_condition name ' padded' begins or ends with white space"),
    ("c" * 300, "is longer than the 200 characters a name may have"),
])
def test_a_condition_name_written_with_sql_that_the_file_refuses_is_refused_and_one_stored_before_loads_back(
        db, name, said):
    """A condition named ' padded' or with 300 characters, written with SQL, was taken, and `hrwsi config show` wrote
    it into a file `hrwsi config load` refused ("must not ... start or end with spaces", "at most 200 characters")."""
    configuration.load(db, demo_document())
    with pytest.raises(psycopg.errors.CheckViolation, match=re.escape(said)):
        db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES (%s, 'snow_cover')", (name,))
    db.execute("ALTER TABLE hrwsi.processing_condition DISABLE TRIGGER condition_name_is_a_name_a_configuration_file_takes")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES (%s, 'snow_cover')", (name,))
    db.execute("ALTER TABLE hrwsi.processing_condition ENABLE TRIGGER condition_name_is_a_name_a_configuration_file_takes")
    shown = configuration.current(db)
    configuration.load(db, tomllib.loads(configuration.to_toml(shown)))
    assert configuration.current(db) == shown
