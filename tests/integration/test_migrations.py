"""hrwsi.migrations: a fresh install runs schema.sql and records every migration; an installed
database gets the pending migrations only; concurrent inits are serialised."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from hrwsi import migrations
from hrwsi.database import with_database
from hrwsi.sql_files import migrations as migration_files


def recorded(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, name, checksum FROM public.hrwsi_schema_migration ORDER BY 1").fetchall()


def every_migration_with_its_checksum() -> list[tuple[int, str, str]]:
    return [(version, name, migrations.checksum(path)) for version, name, path in migration_files()]


def test_a_fresh_install_runs_schema_sql_and_records_every_migration_with_its_checksum(empty_database_url):
    with psycopg.connect(empty_database_url) as conn:
        recorded_now = migrations.migrate(conn)
        assert migrations.pending(conn) == []
        assert conn.execute("SELECT to_regclass('hrwsi.processing_task') IS NOT NULL").fetchone()[0]
    assert recorded_now == [f"{version:04d}_{name}" for version, name, _ in migration_files()]
    assert recorded(empty_database_url) == every_migration_with_its_checksum()


def test_asking_what_is_pending_then_migrating_works_on_one_connection(empty_database_url):
    """What a service does on start (cli._ensure_schema). pending() used to leave the connection in
    a transaction, and migrate() then failed setting autocommit."""
    with psycopg.connect(empty_database_url) as conn:
        assert migrations.pending(conn) == [f"{version:04d}_{name}" for version, name, _ in migration_files()]
        migrations.migrate(conn)
        assert migrations.pending(conn) == []


def test_an_installed_database_is_left_as_it_is(database_url):
    with psycopg.connect(database_url) as conn:
        assert migrations.migrate(conn) == []
        assert migrations.pending(conn) == []
    assert recorded(database_url) == every_migration_with_its_checksum()


def test_replaying_the_migrations_records_the_same_checksums(empty_database_url):
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
    assert recorded(empty_database_url) == every_migration_with_its_checksum()


def test_an_installed_database_gets_only_the_pending_migration(database_url, tmp_path, monkeypatch):
    """A new migration applies to a database installed before it; schema.sql is not run again (it
    would fail on the tables that exist)."""
    new = tmp_path / "9999_test_addition.sql"
    new.write_text("CREATE TABLE hrwsi.added_by_a_test (id integer PRIMARY KEY);")
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [*shipped, (9999, "test_addition", new)])
    with psycopg.connect(database_url) as conn:
        assert migrations.pending(conn) == ["9999_test_addition"]
        assert migrations.migrate(conn) == ["9999_test_addition"]
        assert migrations.migrate(conn) == []
        assert conn.execute("SELECT to_regclass('hrwsi.added_by_a_test') IS NOT NULL").fetchone()[0]
    assert recorded(database_url)[-1] == (9999, "test_addition", migrations.checksum(new))


def test_a_failing_migration_leaves_nothing_behind(database_url, tmp_path, monkeypatch):
    new = tmp_path / "9999_half_done.sql"
    new.write_text("CREATE TABLE hrwsi.half_done (id integer); SELECT 1 / 0;")
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [*shipped, (9999, "half_done", new)])
    with psycopg.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrations.migrate(conn)
        assert conn.execute("SELECT to_regclass('hrwsi.half_done') IS NULL").fetchone()[0]
        assert migrations.pending(conn) == ["9999_half_done"]


def test_a_schema_not_installed_by_hrwsi_is_not_installed_over(empty_database_url):
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA hrwsi")
        conn.execute("CREATE TABLE hrwsi.input (id integer)")
    with psycopg.connect(empty_database_url) as conn:
        with pytest.raises(migrations.UnrecordedSchema, match="records no migration"):
            migrations.migrate(conn)
        assert conn.execute("SELECT count(*) FROM public.hrwsi_schema_migration").fetchone()[0] == 0


def test_concurrent_inits_install_once(empty_database_url):
    errors = []
    recorded_by = []

    def run():
        try:
            with psycopg.connect(empty_database_url) as conn:
                recorded_by.append(migrations.migrate(conn))
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(names) for names in recorded_by) == [0, 0, len(migration_files())]
    assert recorded(empty_database_url) == every_migration_with_its_checksum()


def record_a_migration_from_a_newer_hrwsi(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO public.hrwsi_schema_migration (version, name, checksum, applied_at) "
                     "VALUES (9999, 'from_a_newer_hrwsi', 'x', '2026-12-05 13:40:00+00')")


def test_a_database_a_newer_hrwsi_upgraded_is_refused_and_left_as_it_is(database_url, tmp_path, monkeypatch):
    """An older installation would apply its own pending migrations on top of a schema it does not
    know, and its services would run their calls against it: both are refused, naming what is newer."""
    record_a_migration_from_a_newer_hrwsi(database_url)
    missing_here = tmp_path / "9998_shipped_here_only.sql"
    missing_here.write_text("CREATE TABLE hrwsi.shipped_here_only (id integer);")
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [*shipped, (9998, "shipped_here_only", missing_here)])
    newer = r"upgraded by a newer hrwsi: .*9999_from_a_newer_hrwsi \(applied 2026-12-05 13:40 UTC\)"
    with psycopg.connect(database_url) as conn:
        with pytest.raises(migrations.NewerSchema, match=newer):
            migrations.pending(conn)
        with pytest.raises(migrations.NewerSchema, match=newer):
            migrations.migrate(conn)
        assert conn.execute("SELECT to_regclass('hrwsi.shipped_here_only') IS NULL").fetchone()[0]
    assert [version for version, _, _ in recorded(database_url)][-1] == 9999


def test_a_service_does_not_start_on_a_database_a_newer_hrwsi_upgraded(database_url):
    from hrwsi.app import SchemaNotReady, ensure_schema

    record_a_migration_from_a_newer_hrwsi(database_url)
    with pytest.raises(SchemaNotReady, match="9999_from_a_newer_hrwsi"):
        ensure_schema(database_url)


def test_a_campaign_cancelled_before_migration_0058_is_recorded_as_cancelled(empty_database_url, monkeypatch):
    """Migration 0058 records a campaign's cancel on the campaign (it was only in the reason its tasks
    were given): one cancelled before it says "cancelled" after it, one open stays open."""
    from hrwsi import campaigns

    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 58])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
        conn.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
        conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                        input_product_type, output_product_type) VALUES ('snow', 1, 100, 10, '1 min', ARRAY['s'],
                        'L2A', 'FSC')""")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l2a', 'snow')")
        conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                        VALUES ('l2a', '/l2a/a', '32TLR', '2026-03-01T10:00Z')""")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                     "attempts = 1")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'processed'")
        reprocess = """SELECT campaign_id FROM hrwsi.reprocess(routine => 'snow', measured_from => '2026-03-01',
                       measured_to => '2026-03-02', name => %s)"""
        cancelled = conn.execute(reprocess, ("cancelled",)).fetchone()[0]
        still_open = conn.execute(reprocess, ("open",)).fetchone()[0]  # (0057: no refusal in SQL)
        conn.execute("SELECT hrwsi.cancel_campaign(%s)", (cancelled,))
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert migrations.migrate(conn)[0].startswith("0058_")
        shown = {c.header["campaign_id"]: c for c in campaigns.load(conn)}
    assert shown[cancelled].status == "cancelled" and shown[cancelled].header["cancelled_at"] is not None
    assert shown[still_open].status == "waiting" and shown[still_open].header["cancelled_at"] is None


def test_tasks_left_waiting_behind_a_task_that_cannot_run_before_migration_0060_are_blocked_by_the_upgrade(
        empty_database_url, monkeypatch):
    """An upgrade from 0056: a series' later scenes stayed planned, long past and without a reason, behind
    a blocked task, and new scenes of the tile queued behind them (found by exploratory testing)."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 60])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
        conn.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
        conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                        input_product_type, output_product_type, sequential_per_tile)
                        VALUES ('series', 1, 100, 10, '1 min', ARRAY['s'], 'L2A', 'FSC', true)""")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l2a', 'series')")
        conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                        SELECT 'l2a', '/l2a/' || g, '31TAA', '2026-12-01T10:00Z'::timestamptz + g * interval '1 day'
                        FROM generate_series(1, 4) g""")
        first, second, third, fourth = [r[0] for r in conn.execute("SELECT id FROM hrwsi.processing_task ORDER BY id")]
        conn.execute("""UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w1',
                        planned_start = now() - interval '1 hour'""")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (first,))
        conn.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE id = %s", (first,))
        # as 0059 left it: the first's dependent blocked, the rest planned long ago without a reason
        assert conn.execute("SELECT state FROM hrwsi.processing_task WHERE id = %s", (second,)).fetchone() == \
            ("blocked",)
        assert conn.execute("SELECT count(*) FROM hrwsi.processing_task WHERE state = 'planned'").fetchone() == (2,)
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        migrations.migrate(conn)
        rows = conn.execute("SELECT id, state, state_reason FROM hrwsi.processing_task ORDER BY id").fetchall()
        assert [state for _, state, _ in rows] == ["terminated", "blocked", "blocked", "blocked"]
        assert rows[2][2].startswith(f"waits for task {second}, which is blocked")
        assert rows[3][2].startswith(f"waits for task {third}, which is blocked")
        # a new scene of the tile is blocked at once behind them
        conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                        VALUES ('l2a', '/l2a/5', '31TAA', '2026-12-05T10:00Z')""")
        assert conn.execute("SELECT state, depends_on FROM hrwsi.processing_task ORDER BY id DESC LIMIT 1").fetchone() \
            == ("blocked", fourth)


# What a pg_restore onto a server without hrwsi's roles leaves: no grant to the three roles, and each
# function's EXECUTE for PUBLIC (its REVOKE went with the failed GRANTs of the same ACL entry).
LOST_GRANTS = """
REVOKE ALL ON SCHEMA hrwsi FROM hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
REVOKE ALL ON ALL TABLES IN SCHEMA hrwsi FROM hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
REVOKE ALL ON public.hrwsi_schema_migration FROM hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA hrwsi FROM hrwsi_readonly, hrwsi_data_engineer, hrwsi_service;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA hrwsi TO PUBLIC;
"""


def test_grants_a_restore_lost_are_re_applied_and_said_and_nothing_when_none_is_missing(database_url):
    """`hrwsi db init` said "schema up to date" and repaired nothing after a pg_restore without the roles
    (381 privileges missing in `hrwsi db check`; found by exploratory testing)."""
    from hrwsi.schema import compare_with_fresh_install

    with psycopg.connect(database_url, autocommit=True) as conn:
        assert not migrations.repair_privileges(conn), "a fresh install lacks nothing"
        conn.execute(LOST_GRANTS)
    assert any(line.startswith("privileges on") for line in compare_with_fresh_install(database_url))
    with psycopg.connect(database_url, autocommit=True) as conn:
        repair = migrations.repair_privileges(conn)
        assert repair.roles == []  # (they exist on this server: roles belong to the server)
        assert "table hrwsi.processing_task: UPDATE to hrwsi_service" in repair.granted
        assert "schema hrwsi: USAGE to hrwsi_data_engineer" in repair.granted
        assert "function hrwsi.dispatch(text,text,double precision,integer,text): EXECUTE to PUBLIC" in repair.revoked
        assert migrations.migrate(conn) == [] and not migrations.repair_privileges(conn)
    assert compare_with_fresh_install(database_url) == []


def test_the_privilege_statements_are_schema_sqls_roles_grants_and_revokes():
    statements = migrations.privilege_statements()
    assert statements.startswith("DO $$") and "CREATE ROLE hrwsi_service NOLOGIN;" in statements
    assert "GRANT UPDATE ON hrwsi.processing_task TO hrwsi_service;" in statements
    assert "CREATE TABLE" not in statements and "CREATE FUNCTION" not in statements


def test_products_made_before_migration_0079_that_break_its_rules_do_not_stop_the_chaining(
        empty_database_url, monkeypatch):
    """Found by review: migration 0079's new rules of products are kept NOT VALID where old rows break
    them, yet the chaining's UPDATE of chained_at checks every rule of the row: one old product with a
    negative size, or an invisible character in its path, failed every batch of the chaining it was in."""
    from hrwsi.sql_files import query

    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 79])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
        conn.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
        for name, reads, makes in (("l2a", "L1C", "L2A"), ("snow", "L2A", "FSC")):
            conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration,
                            command, input_product_type, output_product_type) VALUES (%s, 1, 100, 10, '1 min',
                            ARRAY['s'], %s, %s)""", (name, reads, makes))
            conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES (%s, %s)", (reads.lower(), name))
        conn.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('l1c', '/l1c/a')")
        task = conn.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
        conn.execute("""INSERT INTO hrwsi.product (task_id, path, product_type, size_bytes) VALUES
                        (%s, '/out/negative', 'L2A', -1), (%s, '/out/in\u2028visible', 'L2A', 10),
                        (%s, '/out/good', 'L2A', 10)""", (task, task, task))
        conn.commit()
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert migrations.migrate(conn)[0].startswith("0079_")
        conn.commit()
        conn.execute(query("chain_products").replace("$1", "1000")).fetchone()
        conn.commit()
        inputs = {row[0] for row in conn.execute("SELECT input_path FROM hrwsi.input WHERE processing_condition = 'l2a'")}
        products = dict(conn.execute("SELECT path, size_bytes FROM hrwsi.product").fetchall())
    assert inputs == {"/out/negative", "/out/good"}, "chained; the invisible one set aside"
    assert products["/out/negative"] is None, "a negative size is unknown"


def test_a_database_that_is_not_utf8_is_refused_with_what_to_do(server_url, tmp_path):
    """Found by review: migration 0079's rule of invisible characters names Unicode's code points; in a
    SQL_ASCII or single-byte database they are bytes of other characters, and valid paths (Straße, Łódź)
    were refused. hrwsi needs UTF8, and says so, whether it installs or upgrades."""
    from psycopg import sql

    name = f"hrwsi_ascii_{tmp_path.name[-8:].lower()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                     .format(sql.Identifier(name)))
    try:
        with psycopg.connect(with_database(server_url, name)) as conn:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="is encoded SQL_ASCII: hrwsi needs a UTF8"):
                migrations.migrate(conn)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))



def test_migration_0083_and_readme_say_that_older_harvesters_are_stopped_first(empty_database_url, monkeypatch):
    """Found by review: an older harvester's chaining, ON CONFLICT (processing_condition, input_path) DO NOTHING,
    matches no index once the unique rule is a partial index, and fails while two versions run: the migration
    and README's upgrade section say to stop older harvesters first."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 83])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.commit()
        notices = []
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert migrations.migrate(conn)[0].startswith("0083_")
        conn.commit()
    assert any("stop the older harvesters" in n for n in notices), notices
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    upgrading = readme[readme.index("### Upgrading"):][:1500]
    assert "every harvester of an older version stopped first" in upgrading


def _a_time_series_routine_with_an_hours_deadline(conn) -> None:
    """Routine `snow` (sequential per tile) and its condition `nrt`, whose inputs are due within the hour."""
    conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                    input_product_type, output_product_type, sequential_per_tile) VALUES
                    ('snow', 1, 100, 10, '1 min', ARRAY['s'], 'L2A', 'FSC', true)""")
    conn.execute("INSERT INTO hrwsi.processing_condition (name, routine, deadline) VALUES ('nrt', 'snow', '1 hour')")


def test_back_fill_that_took_a_fresh_scenes_deadline_before_migration_0083_is_counted_against_its_own(
        empty_database_url, monkeypatch):
    """Migration 0083 marks the back-fill tasks that took the deadline of the fresh scene after them in their
    series under migration 0081 (a back-fill has none of its own): they are alerted and counted no more."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 83])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        _a_time_series_routine_with_an_hours_deadline(conn)
        conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane) VALUES
                        ('nrt', '/old', '32TLR', now() - interval '3 days', 'archive')""")
        conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES
                        ('nrt', '/fresh', '32TLR', now() - interval '2 hours')""")
        conn.commit()
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert migrations.migrate(conn)[0].startswith("0083_")
        conn.commit()
        rows = {r[0]: r[1:] for r in conn.execute("""SELECT i.input_path, t.deadline_at IS NOT NULL,
                                                         t.deadline_inherited_from, t.own_deadline_at
                                                         FROM hrwsi.processing_task t
                                                         JOIN hrwsi.input i ON i.id = t.input_id""")}
        fresh = conn.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                             "WHERE i.input_path = '/fresh'").fetchone()[0]
        assert rows == {"/old": (True, fresh, None), "/fresh": (True, None, None)}
        assert conn.execute("SELECT * FROM hrwsi.raise_deadline_alerts()").fetchone() == (0, 1)


def test_migration_0083_marks_back_fill_that_took_a_deadline_from_further_down_its_series(empty_database_url,
                                                                                         monkeypatch):
    """Found by review: the backfill marked only a task whose current dependent had the same deadline; one whose
    dependent's deadline differed by then (relinked, changed) kept counting the deadline it took as its own."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 83])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        _a_time_series_routine_with_an_hours_deadline(conn)
        for path, age in (("/old-2", "3 days"), ("/old-1", "2 days")):
            conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane) VALUES
                            ('nrt', %s, '32TLR', now() - %s::interval, 'archive')""", (path, age))
        conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) VALUES
                        ('nrt', '/fresh', '32TLR', now() - interval '2 hours')""")
        conn.execute("""UPDATE hrwsi.processing_task t SET deadline_at = NULL FROM hrwsi.input i
                        WHERE i.id = t.input_id AND i.input_path = '/old-1'""")  # (its dependent's differs now)
        conn.commit()
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert migrations.migrate(conn)[0].startswith("0083_")
        conn.commit()
        rows = dict(conn.execute("""SELECT i.input_path, t.deadline_inherited_from FROM hrwsi.processing_task t
                                    JOIN hrwsi.input i ON i.id = t.input_id""").fetchall())
        fresh = conn.execute("SELECT t.id FROM hrwsi.processing_task t JOIN hrwsi.input i ON i.id = t.input_id "
                             "WHERE i.input_path = '/fresh'").fetchone()[0]
        assert rows == {"/old-2": fresh, "/old-1": None, "/fresh": None}


def test_a_task_that_took_a_fresh_scenes_deadline_before_migration_0086_gives_its_priority_back_with_it(
        empty_database_url, monkeypatch):
    """Before migration 0086 a task named whose deadline it took, not whose priority: a task raised then gives
    both back when that fresh scene is cancelled, as it did (it keeps no priority for good)."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 86])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        _a_time_series_routine_with_an_hours_deadline(conn)
        for path, measured, lane in (("/old", "3 days", "archive"), ("/fresh", "2 hours", None)):
            conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, lane) VALUES
                            ('nrt', %s, '32TLR', now() - %s::interval, %s)""", (path, measured, lane))
        conn.commit()
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert migrations.migrate(conn)[0].startswith("0086_")
        conn.commit()
        old, fresh = (r[0] for r in conn.execute("SELECT id FROM hrwsi.processing_task ORDER BY id"))
        assert conn.execute("SELECT priority, deadline_inherited_from, priority_inherited_from FROM hrwsi.processing_task "
                            "WHERE id = %s", (old,)).fetchone() == (0, fresh, None)
        conn.execute("SELECT hrwsi.cancel_task(%s)", (fresh,))
        assert conn.execute("SELECT priority, deadline_at, deadline_inherited_from FROM hrwsi.processing_task "
                            "WHERE id = %s", (old,)).fetchone() == (1, None, None)


def test_the_finished_tasks_of_a_database_before_migration_0105_are_counted_by_the_upgrade(empty_database_url,
                                                                                          monkeypatch):
    """Migration 0105 keeps the finished tasks' counts as they change; those that ended before it are counted once by
    the upgrade, so that the dashboard, /metrics and `hrwsi status` show them from the first read after it."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 105])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
        conn.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
        conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                        input_product_type, output_product_type) VALUES ('snow', 1, 100, 10, '1 min', ARRAY['s'],
                        'L2A', 'FSC')""")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l2a', 'snow')")
        conn.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                        SELECT 'l2a', '/l2a/' || g, '32TLR', '2026-03-01T10:00Z' FROM generate_series(1, 6) g""")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                     "attempts = 1 WHERE id IN (SELECT id FROM hrwsi.processing_task ORDER BY id LIMIT 4)")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE state = 'dispatched' AND id % 2 = 0")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'terminated' WHERE state = 'dispatched'")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE state = 'pending' AND id % 2 = 0")
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        # (0105 among the migrations applied, not the last: later ones follow it)
        assert any(m.startswith("0105_") for m in migrations.migrate(conn))
        kept = {(r[0], r[1]): r[2] for r in conn.execute("SELECT routine, state, n FROM hrwsi.finished_task_counts()")}
        truth = {(r[0], r[1]): r[2] for r in conn.execute("""SELECT routine, state, count(*) FROM hrwsi.processing_task
                                                             WHERE state IN ('processed', 'terminated', 'cancelled')
                                                             GROUP BY routine, state""")}
    assert kept == truth and sum(truth.values()) == 5, (kept, truth)


def test_a_routine_stored_with_less_storage_than_nomads_least_disk_is_given_it_by_the_upgrade_and_refused_after(
        empty_database_url, monkeypatch):
    """storage_mb below 10 was refused by the configuration file only: a routine stored with 1 MB before (or by a
    data engineer's UPDATE) kept it, its Nomad jobs asked for 10 MB while the planner counted 1 MB on the worker's
    disk until the next `hrwsi config load` (found by review). The upgrade (migration 0108) gives it 10 MB, with
    what its attempts in flight hold, and the database refuses less from then on, whoever writes it."""
    from hrwsi import configuration
    from hrwsi.backends.nomad.job_spec import MIN_DISK_MB

    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 108])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
        conn.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
        conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                        input_product_type, output_product_type) VALUES ('snow', 1, 100, 1, '1 min', ARRAY['s'],
                        'L2A', 'FSC'), ('big', 1, 100, 500, '1 min', ARRAY['b'], 'FSC', 'QL')""")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l2a', 'snow')")
        conn.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) "
                     "VALUES ('l2a', '/l2a/1', '32TLR', '2026-03-01T10:00Z')")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                     "attempts = 1, held_cpu = 1, held_ram_mb = 100, held_storage_mb = 2, held_attempt = 1")
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert any(m.startswith("0108_") for m in migrations.migrate(conn))
        stored = dict(conn.execute("SELECT name, storage_mb FROM hrwsi.processing_routine").fetchall())
        assert stored == {"snow": MIN_DISK_MB, "big": 500}, stored
        assert conn.execute("SELECT held_storage_mb FROM hrwsi.processing_task").fetchone()[0] == MIN_DISK_MB
        assert configuration.MIN_ROUTINE_STORAGE_MB == MIN_DISK_MB == 10
        conn.commit()
        with pytest.raises(psycopg.errors.CheckViolation, match="routine_storage_mb_is_at_least_nomads_least_disk"):
            conn.execute("UPDATE hrwsi.processing_routine SET storage_mb = 9 WHERE name = 'big'")


def test_a_routine_stored_with_less_ram_than_nomads_least_memory_is_given_it_by_the_upgrade_and_refused_after(
        empty_database_url, monkeypatch):
    """ram_mb below 10 (Nomad's least MemoryMB) and cpu below 0.01 were refused by the configuration file only: a
    routine stored with 1 MB before (or by a data engineer's UPDATE) kept it, and Nomad refused every job of it, charged
    to it until it was held; a CPU of 1e-300 was counted as nothing by the planner while Nomad reserved 1 MHz (found
    by review). The upgrade (migration 0111) gives such a routine 10 MB and 0.01 CPU, with the RAM its attempts in
    flight hold, and the database refuses less from then on, whoever writes it."""
    from hrwsi import configuration

    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 111])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
        conn.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
        conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                        input_product_type, output_product_type) VALUES ('snow', 1e-300, 1, 10, '1 min', ARRAY['s'],
                        'L2A', 'FSC'), ('big', 2.5, 500, 500, '1 min', ARRAY['b'], 'FSC', 'QL')""")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l2a', 'snow')")
        conn.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) "
                     "VALUES ('l2a', '/l2a/1', '32TLR', '2026-03-01T10:00Z')")
        conn.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w1', planned_start = now(), "
                     "attempts = 1, held_cpu = 0.5, held_ram_mb = 2, held_storage_mb = 10, held_attempt = 1")
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert any(m.startswith("0111_") for m in migrations.migrate(conn))
        stored = {name: (float(cpu), ram) for name, cpu, ram in conn.execute(
            "SELECT name, cpu, ram_mb FROM hrwsi.processing_routine")}
        assert stored == {"snow": (configuration.MIN_CPU, configuration.MIN_ROUTINE_RAM_MB), "big": (2.5, 500)}, stored
        assert conn.execute("SELECT held_cpu, held_ram_mb FROM hrwsi.processing_task").fetchone() == (0.5, 10)
        assert configuration.MIN_ROUTINE_RAM_MB == 10 and configuration.MIN_CPU == 0.01
        conn.commit()
        with pytest.raises(psycopg.errors.CheckViolation, match="routine_ram_mb_is_at_least_nomads_least_memory"):
            conn.execute("UPDATE hrwsi.processing_routine SET ram_mb = 9 WHERE name = 'big'")
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation, match="routine_cpu_is_at_least_a_hundredth"):
            conn.execute("UPDATE hrwsi.processing_routine SET cpu = 0.009 WHERE name = 'big'")


def test_a_source_stored_with_an_infinite_time_or_a_window_or_period_of_ages_is_mended_by_the_upgrade_and_refused_after(
        empty_database_url, monkeypatch):
    """A data engineer writes a harvest source's next_run_at, last_success_at, back-fill dates, overlap, first_lookback
    and schedule. next_run_at '-infinity' or backfill_to 12000-01-01 made `hrwsi status` and `hrwsi sources` fail on
    every call (psycopg reads years 1 to 9999 alone), and such a back-fill date the harvester's round; an overlap of
    '5000000 years' made the harvester's round run none of the sources it claimed with it; an hourly frequency_interval
    of 2147483647 made a run whose failure was recorded nowhere (found by exploratory testing). The upgrade (migration
    0115) mends such rows, and the database refuses them from then on."""
    from hrwsi.harvest import sources

    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 114])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        landing = '{"directory": "/data/landing/%s", "work_directory": "/data/work/%s"}'
        for name, column, value in [("due", "next_run_at", "-infinity"), ("never", "next_run_at", "infinity"),
                                    ("succeeded", "last_success_at", "infinity"), ("overlap", "overlap", "5000000 years"),
                                    ("lookback", "first_lookback", "36526 days"), ("ok", "overlap", "2 hours"),
                                    ("later", "next_run_at", "12000-01-01T00:00Z")]:
            conn.execute(f"INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, {column}) "
                         "VALUES (%s, 'landing_directory', 'L1C', %s, %s)", (name, landing % (name, name), value))
        conn.execute("INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, frequency, frequency_interval) "
                     "VALUES ('ages', 'landing_directory', 'L1C', %s, 'weekly', 2147483647)", (landing % ("a", "a"),))
        conn.execute("INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, frequency, mode, backfill_from, "
                     "backfill_to, backfill_cursor) VALUES ('back', 'catalogue', 'L1C', "
                     "'{\"url\": \"https://c.example\", \"collection\": \"S2\"}', 'daily', 'backfill', '0001-01-01 BC', "
                     "'12000-01-01', '11000-01-01')")
        with pytest.raises(psycopg.DataError, match="before year 1|after year 10K"):
            sources.list_sources(conn)
        conn.rollback()
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert any(m.startswith("0115_") for m in migrations.migrate(conn))
        listed = {s["name"]: s for s in sources.list_sources(conn)}  # (what `hrwsi status` and `sources` read)
        assert (listed["due"]["next_run_at"], listed["due"]["active"]) == (None, True), "due now, as it said"
        assert (listed["never"]["next_run_at"], listed["never"]["active"]) == (None, False)
        assert "next_run_at was infinity (never)" in listed["never"]["last_error"]
        stored = dict(conn.execute("SELECT name, (last_success_at, overlap, first_lookback, frequency_interval)::text "
                                   "FROM hrwsi.harvest_source"))
        assert stored == {"due": "(,01:00:00,\"1 day\",1)", "never": "(,01:00:00,\"1 day\",1)",
                          "succeeded": "(,01:00:00,\"1 day\",1)", "overlap": "(,\"36525 days\",\"1 day\",1)",
                          "lookback": "(,01:00:00,\"36525 days\",1)", "ok": "(,02:00:00,\"1 day\",1)",
                          "ages": "(,01:00:00,\"1 day\",5217)", "later": "(,01:00:00,\"1 day\",1)",
                          "back": "(,01:00:00,\"1 day\",1)"}, stored
        assert listed["ages"]["schedule"] == "every 5217th week (Mondays at 00:00 UTC)"
        assert (listed["later"]["next_run_at"], listed["later"]["active"]) == (None, False)
        assert "next_run_at was in the year 9000 or later (never)" in listed["later"]["last_error"]
        assert listed["back"]["mode"] == "backfill 1950-01-01 to 8999-12-31 (complete)"
        conn.commit()
        for column, value, constraint in [("next_run_at", "-infinity",
                                           "harvest_source_next_run_at_is_between_1950_and_9000"),
                                          ("next_run_at", "9000-01-01T00:00Z",
                                           "harvest_source_next_run_at_is_between_1950_and_9000"),
                                          ("last_success_at", "infinity",
                                           "harvest_source_last_success_at_is_between_1950_and_9000"),
                                          ("backfill_to", "12000-01-01",
                                           "harvest_source_backfill_dates_are_between_1950_and_9000"),
                                          ("overlap", "36526 days", "harvest_source_overlap_is_at_most_36525_days"),
                                          ("first_lookback", "5000000 years",
                                           "harvest_source_first_lookback_is_at_most_36525_days"),
                                          ("frequency_interval", 5218, "harvest_source_frequency_is_under_every_100_years")]:
            with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
                conn.execute(f"UPDATE hrwsi.harvest_source SET {column} = %s WHERE name = 'ages'", (value,))
            conn.rollback()


def test_an_inputs_mission_or_scene_id_stored_with_a_control_or_invisible_character_is_mended_by_the_upgrade(
        empty_database_url, monkeypatch):
    """Migration 0115 refuses a control or invisible character in an input's mission and scene_id, as in its path: a
    mission's line break began a line of `hrwsi task show`'s own, and a scene_id "X\\u200b" was a scene of its own.
    One stored before keeps its input and task: its mission loses those characters, its scene_id (which matched no
    harvester's scene) is dropped, and the upgrade does not stop on it."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 114])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                        input_product_type, output_product_type) VALUES ('maja', 1, 100, 100, '1 min', ARRAY['m'],
                        'L1C', 'L2A')""")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l1c', 'maja')")
        conn.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, scene_id) VALUES "
                     "('l1c', '/a', '32TLR', %s, %s), ('l1c', '/b', '32TLR', %s, 'B'), ('l1c', '/c', '32TLR', 'S2A', 'C')",
                     ("S2A\n\x1b[2J", "A\u200b", "\u202e"))
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert any(m.startswith("0115_") for m in migrations.migrate(conn))
        stored = conn.execute("SELECT input_path, mission, scene_id FROM hrwsi.input ORDER BY input_path").fetchall()
        assert stored == [("/a", "S2A[2J", None), ("/b", None, "B"), ("/c", "S2A", "C")], stored
        assert conn.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 3


def test_a_harvest_sources_name_or_product_type_stored_with_a_control_or_invisible_character_is_mended_by_the_upgrade(
        empty_database_url, monkeypatch, caplog):
    """Migration 0116 refuses a control or invisible character in a harvest source's name and product type: a name
    "cat\\nS2B  catalogue  fake" printed a line of `hrwsi sources` that was none of its own, and a product type "L1C\\n"
    looked like L1C and was another type. A source stored before keeps running (the harvester claims it, where a rule
    kept NOT VALID would have failed the claim of every due source at once), under the name and type meant: the
    characters taken out (a line break as a space), a name taken already numbered, its landing files with it, what was
    done in its last_error and said by the migration; a type of invisible characters alone sets the source aside."""
    from hrwsi.harvest import sources

    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 116])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        landing = '{"directory": "/data/landing/%s", "work_directory": "/data/work/%s"}'
        for n, (name, product_type) in enumerate([("cat\nS2B  catalogue  fake", "L1C\n"), ("evil\u202e", "L1C\u200b"),
                                                  ("evil", "L1C"), ("blank", "\u200b")]):
            conn.execute("INSERT INTO hrwsi.harvest_source (name, kind, product_type, config) "
                         "VALUES (%s, 'landing_directory', %s, %s)", (name, product_type, landing % (n, n)))
        conn.execute("INSERT INTO hrwsi.landing_file (source, path, size_bytes, modified_at, state) "
                     "VALUES ('evil\u202e', '/data/landing/1/x.zip', 1, now(), 'seen')")
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        with caplog.at_level("WARNING", logger="hrwsi.migrations"):
            assert any(m.startswith("0116_") for m in migrations.migrate(conn))
        listed = {s["name"]: s for s in sources.list_sources(conn)}
        assert {name: (s["product_type"], s["active"]) for name, s in listed.items()} == {
            "cat S2B  catalogue  fake": ("L1C", True), "evil (2)": ("L1C", True), "evil": ("L1C", True),
            "blank": ("unknown", False)}, listed
        assert listed["cat S2B  catalogue  fake"]["last_error"] == (
            "the upgrade to schema 116 renamed from 'cat\\x0aS2B  catalogue  fake', its name holding a control or "
            "invisible character (shown escaped here), which printed as it came forged lines of `hrwsi sources`; its "
            "product type 'L1C\\x0a' became 'L1C', without its control or invisible characters (it looked like the "
            "latter and was another type)")
        assert "its product type '\\u200b' was invisible characters alone" in listed["blank"]["last_error"]
        assert listed["evil"]["last_error"] is None
        assert conn.execute("SELECT source FROM hrwsi.landing_file").fetchall() == [("evil (2)",)]
        said = [r.getMessage() for r in caplog.records if r.name == "hrwsi.migrations" and "0116_" in r.getMessage()]
        assert len(said) == 3 and any("harvest source 'evil (2)': renamed from 'evil\\u202e'" in s for s in said), said
        assert conn.execute("SELECT bool_and(convalidated) FROM pg_constraint WHERE conname IN "
                            "('harvest_source_name_has_no_control_or_invisible_characters', "
                            "'source_product_type_has_no_control_or_invisible_characters')").fetchone()[0]
        conn.execute("UPDATE hrwsi.harvest_source SET next_run_at = now()")  # (as the harvester's claim updates them)
        conn.commit()
        for column, value, constraint in [
                ("name", "a\nb", "harvest_source_name_has_no_control_or_invisible_characters"),
                ("name", "a\u2028b", "harvest_source_name_has_no_control_or_invisible_characters"),
                ("product_type", "L1C\x1b[2J", "source_product_type_has_no_control_or_invisible_characters"),
                ("product_type", "L1C\u200b", "source_product_type_has_no_control_or_invisible_characters")]:
            with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
                conn.execute(f"UPDATE hrwsi.harvest_source SET {column} = %s WHERE name = 'evil'", (value,))
            conn.rollback()


def test_a_campaigns_sensing_range_beyond_9000_is_brought_within_it_by_the_upgrade_and_refused_after(
        empty_database_url, monkeypatch):
    """hrwsi.reprocess took measured_to '12000-01-01', and then `hrwsi campaigns` (and the dashboard's campaigns)
    failed on every call: "timestamp too large (after year 10K)" (found by exploratory testing). Migration 0116 brings
    a range stored before within 1950 and 9000 (the same inputs: none lies outside) and refuses one beyond it."""
    from hrwsi import campaigns

    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 116])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                        input_product_type, output_product_type) VALUES ('maja', 1, 100, 100, '1 min', ARRAY['m'],
                        'L1C', 'L2A')""")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l1c', 'maja')")
        conn.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at) "
                     "VALUES ('l1c', '/a', '32TLR', '2024-05-01T00:00Z')")
        conn.execute("SET session_replication_role = replica")  # (processed, as the launcher would record it)
        conn.execute("UPDATE hrwsi.processing_task SET state = 'processed'")
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute("SELECT * FROM hrwsi.reprocess(routine => 'maja', measured_from => '1000-01-01T00:00Z', "
                     "measured_to => '12000-01-01T00:00Z')")
        with pytest.raises(psycopg.DataError, match="after year 10K"):
            campaigns.load(conn)
        conn.rollback()
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        assert any(m.startswith("0116_") for m in migrations.migrate(conn))
        assert conn.execute("SELECT hrwsi.utc_text(measured_from), hrwsi.utc_text(measured_to) FROM hrwsi.campaign"
                            ).fetchall() == [("1950-01-01 00:00:00Z", "9000-01-01 00:00:00Z")]
        assert len(campaigns.load(conn)) == 1
        with pytest.raises(psycopg.errors.CheckViolation, match="campaign_sensing_range_is_between_1950_and_9000"):
            conn.execute("SELECT * FROM hrwsi.reprocess(routine => 'maja', measured_from => '2024-01-01T00:00Z', "
                         "measured_to => '9000-01-01T00:00:01Z', again => true)")


def test_a_name_of_the_configuration_stored_with_an_invisible_character_is_kept_and_said_by_the_upgrade(
        empty_database_url, monkeypatch, caplog):
    """Migration 0124 refuses a control or invisible character in a flavour's, worker's or condition's name and in a
    product type. One stored before is kept (inputs, tasks and plans name it: a rename would leave them naming
    nothing), said with its code point and its escape, and may be written again as it is; a new one is refused."""
    shipped = migration_files()
    monkeypatch.setattr(migrations, "migrations", lambda: [m for m in shipped if m[0] < 121])
    with psycopg.connect(empty_database_url) as conn:
        migrations.migrate(conn, replay=True)
        conn.execute("INSERT INTO hrwsi.flavour (name, cpu, ram_mb, disk_mb) VALUES ('f', 1, 100, 100)")
        conn.execute("INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command, "
                     "input_product_type, output_product_type) "
                     "VALUES ('r', 1, 100, 100, '1 minute', '{true}', 'L1C\u202e', 'L2A')")
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('L1C\u200b', 'r')")
        monkeypatch.setattr(migrations, "migrations", lambda: shipped)
        with caplog.at_level("WARNING", logger="hrwsi.migrations"):
            assert any(m.startswith("0124_") for m in migrations.migrate(conn))
        said = [r.getMessage() for r in caplog.records if r.name == "hrwsi.migrations" and "0124_" in r.getMessage()]
        assert len(said) == 2, said
        assert any("condition 'L1C\\u200b' holds U+200B" in s and "kept as it is" in s for s in said), said
        assert any("product type 'L1C\\u202e' holds U+202E" in s for s in said), said
        assert conn.execute("SELECT name FROM hrwsi.processing_condition").fetchall() == [("L1C\u200b",)]
        conn.execute("UPDATE hrwsi.processing_condition SET active = false")  # (an update of what it does)
        conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('L1C\u200b', 'r') "
                     "ON CONFLICT (name) DO UPDATE SET active = true")  # (as `hrwsi config load` writes it again)
        conn.commit()
        with pytest.raises(psycopg.errors.CheckViolation, match=r"'L2A\\u200b' holds U\+200B"):
            conn.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('L2A\u200b', 'r')")
        conn.rollback()
