"""No step livelocks on a statement timeout: the statement is named in the log, the batch shrinks,
the step goes on."""

import asyncio
import logging
import time

import psycopg

from hrwsi.database import create_pool
from hrwsi.harvester import Harvester
from hrwsi.sql_files import query
from tests.integration.conftest import chain_configuration


async def test_a_step_whose_statement_times_out_shrinks_its_batch_and_finishes(db, database_url, settings,
                                                                             configure, caplog):
    configure(chain_configuration())
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('l1c', '/l1c/1')""")
    db.execute("""INSERT INTO hrwsi.product (task_id, path, product_type)
                  SELECT t.id, '/l2a/' || g, 'L2A' FROM hrwsi.processing_task t, generate_series(1, 40) g""")
    # Chaining more than 8 products in one statement takes longer than the statement timeout.
    db.execute("""CREATE FUNCTION public.slow_big_statements() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN
                      IF (SELECT count(*) FROM new_rows) > 8 THEN PERFORM pg_sleep(2); END IF;
                      RETURN NULL;
                  END $$""")
    db.execute("""CREATE TRIGGER slow AFTER INSERT ON hrwsi.input REFERENCING NEW TABLE AS new_rows
                  FOR EACH STATEMENT EXECUTE FUNCTION public.slow_big_statements()""")
    pool = await create_pool(database_url, server_settings={"statement_timeout": "500"})
    try:
        harvester = Harvester(pool, settings)
        caplog.set_level(logging.ERROR, "hrwsi.service")
        for _ in range(30):
            more = await harvester.run_step("chain")
            if not more and db.execute("SELECT count(*) FROM hrwsi.product WHERE chained_at IS NULL").fetchone()[0] == 0:
                break
    finally:
        await pool.close()
    assert db.execute("SELECT count(*) FROM hrwsi.input WHERE source = 'chaining'").fetchone()[0] == 40
    messages = [r.getMessage() for r in caplog.records]
    assert any("statement chain_products was cancelled after" in m and "product(s) at a time" in m
               for m in messages), messages


async def test_a_transaction_left_open_on_a_time_series_holds_only_its_series_chaining_and_is_named(
        db, database_url, settings, configure, caplog):
    # Found by exploratory testing (2026-12-05): a data engineer's INSERT on a time series, left
    # uncommitted in a SQL client, holds the series' lock; the harvester's chaining of every tile
    # waited behind it, retried every lock_timeout without a word, and `hrwsi status` said nothing.
    # Then (2026-12-06) it was said, but the products of every other tile and routine still waited
    # for as long as that transaction stayed open: chaining took products in id order, the first
    # of the busy series first. Now it goes around the busy series.
    from hrwsi import reports
    configure(chain_configuration())
    db.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true WHERE name = 'snow_cover'")
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                  VALUES ('l1c', '/l1c/a', '32TLR', '2026-11-01T10:00Z'), ('l1c', '/l1c/b', '33UUP', '2026-11-01T10:00Z')""")
    db.execute("""INSERT INTO hrwsi.product (task_id, path, product_type)
                  SELECT t.id, replace(i.input_path, 'l1c', 'l2a'), 'L2A' FROM hrwsi.processing_task t
                  JOIN hrwsi.input i ON i.id = t.input_id ORDER BY i.input_path""")
    forgotten = psycopg.connect(database_url)  # the data engineer's session: an INSERT, and no COMMIT yet
    forgotten.execute("SET application_name = 'psql'")
    forgotten.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                         VALUES ('l2a', '/manual/m2.dat', '32TLR', '2026-11-02T10:00Z')""")
    pool = await create_pool(database_url, application_name="hrwsi-harvester-pool",
                             server_settings={"lock_timeout": "300"})
    try:
        harvester = Harvester(pool, settings)
        caplog.set_level(logging.INFO, "hrwsi")
        assert not await harvester.run_step("chain")
        chained = db.execute("SELECT input_path FROM hrwsi.input WHERE source = 'chaining'").fetchall()
        assert chained == [("/l2a/b",)], "the other tile's product is chained; the busy series' waits"
        await asyncio.sleep(2.1)  # (a transaction open this long is named: an INSERT under way is not)
        blocking = reports.status(db)["blocking_sessions"]
        assert [(s["application"], s["state"], s["waiting"]) for s in blocking] == [
            ("psql", "idle in transaction",
             ["hrwsi-harvester (the chaining of 1 product(s) of the time series of snow_cover on 32TLR)"])]
        assert f"pg_terminate_backend({blocking[0]['pid']})" in blocking[0]["next"]
        forgotten.commit()
        await harvester.run_step("chain")
        assert reports.status(db)["blocking_sessions"] == []
    finally:
        forgotten.close()
        await pool.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("harvester: 1 product(s) wait to be chained: another transaction holds the time series" in m
               and "hrwsi status" in m and "the other products are chained meanwhile" in m
               for m in messages), messages
    assert any("harvester: no product waits for a time series any more" in m for m in messages), messages
    assert db.execute("SELECT count(*) FROM hrwsi.input WHERE input_path = '/l2a/a'").fetchone()[0] == 1


async def test_chaining_that_waits_for_a_correction_says_so_naming_its_session_not_a_busy_time_series(
        db, database_url, settings, configure, caplog):
    """Found by review (migration 0102): a wait for the lock of a correction under way (hrwsi.correct_input, migration
    0097) that ran out was taken for a busy time series, and once the correction ended the harvester said "no product
    waits for a time series any more". It says that chaining waits for a correction, and which session corrects."""
    configure(chain_configuration())
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                  VALUES ('l1c', '/l1c/a', '32TLR', '2026-11-01T10:00Z')""")
    corrected, task = db.execute("SELECT input_id, id FROM hrwsi.processing_task").fetchone()
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) VALUES (%s, '/l2a/a', 'L2A')", (task,))
    correcting = psycopg.connect(database_url)  # a data engineer's correction, not committed yet
    correcting.execute("SET application_name = 'psql'")
    correcting.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (corrected,))
    pool = await create_pool(database_url, application_name="hrwsi-harvester-pool",
                             server_settings={"lock_timeout": "300"})
    try:
        harvester = Harvester(pool, settings)
        caplog.set_level(logging.INFO, "hrwsi")
        assert not await harvester.run_step("chain")
        assert harvester.busy_series_since is None
        correcting.rollback()  # (the correction given up: the product is chained as it was)
        await harvester.run_step("chain")
    finally:
        pid = correcting.info.backend_pid
        correcting.close()
        await pool.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("harvester: chaining waits for the correction of an input under way (hrwsi.correct_input in session "
               f"{pid}, " in m and "application 'psql'" in m for m in messages), messages
    assert not any("time series" in m for m in messages), messages
    assert any("harvester: chaining goes on: the correction of an input it waited for ended" in m for m in messages)
    assert db.execute("SELECT count(*) FROM hrwsi.input WHERE input_path = '/l2a/a'").fetchone()[0] == 1


def _series_configuration(configure, db, tiles):
    """snow_cover a time series (sequential_per_tile); one L1C input of l1c per tile given (in that
    order), each with its task: products of these tasks chain into snow_cover's series of the tile."""
    configure(chain_configuration())
    db.execute("UPDATE hrwsi.processing_routine SET sequential_per_tile = true WHERE name = 'snow_cover'")
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                  SELECT 'l1c', '/l1c/' || g.n, g.tile, '2026-11-01T10:00Z'
                  FROM unnest(%s::text[]) WITH ORDINALITY g(tile, n)""", (tiles,))


def _make_products(db, paths):
    """One L2A product per /l1c/N path given, of that input's task (ids in the order given)."""
    for path in paths:
        db.execute("""INSERT INTO hrwsi.product (task_id, path, product_type)
                      SELECT t.id, replace(i.input_path, 'l1c', 'l2a'), 'L2A' FROM hrwsi.processing_task t
                      JOIN hrwsi.input i ON i.id = t.input_id WHERE i.input_path = %s""", (path,))


def _hold_series_of(database_url, tile):
    """A data engineer's session: an INSERT into snow_cover's series of `tile`, not committed."""
    forgotten = psycopg.connect(database_url)
    forgotten.execute("SET application_name = 'psql'")
    forgotten.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at)
                         VALUES ('l2a', '/manual/' || %s, %s, '2026-11-02T10:00Z')""", (tile, tile))
    return forgotten


def _around_busy_series(database_url, batch):
    """chain_products_around_busy_series on `batch` products, in a transaction left open: its row,
    and the series locks (7250010) its session holds at its end."""
    conn = psycopg.connect(database_url)
    row = conn.execute(query("chain_products_around_busy_series").replace("$1", "%(batch)s"), {"batch": batch}).fetchone()
    locks = conn.execute("""SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7250010
                            AND pid = pg_backend_pid()""").fetchone()[0]
    return conn, row, locks


def test_chaining_around_a_busy_series_counts_as_waiting_only_the_products_of_a_busy_series(db, database_url, configure):
    # Found by review: `waiting` was every unchained product not claimed by the call, those past its
    # batch and those another harvester replica held (SKIP LOCKED) too, so the harvester said they
    # waited for a time series and stayed in its around-busy mode while a replica simply chained.
    _series_configuration(configure, db, ["32TLR", "33UUP", "33UUQ", "33UUR"])
    _make_products(db, ["/l1c/1", "/l1c/2", "/l1c/3", "/l1c/4"])
    replica = psycopg.connect(database_url)  # another harvester, chaining /l2a/4 right now
    replica.execute("SELECT id FROM hrwsi.product WHERE path = '/l2a/4' FOR UPDATE")
    forgotten = _hold_series_of(database_url, "32TLR")
    try:
        conn, row, _ = _around_busy_series(database_url, 1)
        conn.commit()
        assert row == (1, 1, 1), "/l2a/2 chained; /l2a/1 waits for its series; /l2a/3 (past the batch) and /l2a/4 do not"
        conn, row, _ = _around_busy_series(database_url, 1)
        conn.commit()
        assert row == (1, 1, 1), "/l2a/3 chained; /l2a/1 still waits; /l2a/4 is the replica's"
        forgotten.commit()
        conn, row, _ = _around_busy_series(database_url, 5)
        conn.commit()
        assert row == (1, 1, 0), "/l2a/1 chained; /l2a/4, the replica's, waits for no series"
    finally:
        forgotten.close()
        replica.close()


def test_chaining_around_a_busy_series_takes_series_locks_only_for_its_batch(db, database_url, configure):
    # Found by review: the series' try-locks were in the candidates' WHERE clause, so they were taken
    # for as many products as the plan read (a hash join and a Sort over every unchained product,
    # with small statistics), each held to the transaction's end and blocking a data engineer's
    # INSERT into that series meanwhile. Now at most one per series of each product of the batch.
    tiles = [f"3{n // 26}T{chr(65 + n % 26)}A" for n in range(40)]
    _series_configuration(configure, db, ["32TLR"] * 5 + tiles)
    _make_products(db, [f"/l1c/{n}" for n in range(1, 46)])
    forgotten = _hold_series_of(database_url, "32TLR")
    try:
        for analysed in (False, True):
            if analysed:
                db.execute("ANALYZE hrwsi.product, hrwsi.processing_task, hrwsi.input")
            conn, row, locks = _around_busy_series(database_url, 2)
            conn.rollback()
            conn.close()
            assert row[:2] == (2, 2), f"the busy series' 5 products come first; 2 others are chained ({analysed=})"
            assert locks <= 2, f"{locks} series locks taken for a batch of 2 ({analysed=})"
    finally:
        forgotten.close()


def test_status_names_a_session_holding_a_series_lock_only_while_products_of_that_series_wait(
        db, database_url, configure):
    # Found by review: any session of no service holding any series lock over 2 s was named as
    # holding up the chaining whenever any product was unchained, of whatever series.
    from hrwsi import reports
    _series_configuration(configure, db, ["32TLR", "33UUP"])
    _make_products(db, ["/l1c/2"])  # (33UUP's series, which nobody holds)
    forgotten = _hold_series_of(database_url, "32TLR")
    try:
        time.sleep(2.1)  # (a transaction open this long is named: an INSERT under way is not)
        assert reports.status(db)["blocking_sessions"] == [], "no product waits for 32TLR's series"
        _make_products(db, ["/l1c/1"])  # 32TLR's
        blocking = reports.status(db)["blocking_sessions"]
        assert [(s["application"], s["waiting"]) for s in blocking] == [
            ("psql", ["hrwsi-harvester (the chaining of 1 product(s) of the time series of snow_cover on 32TLR)"])]
    finally:
        forgotten.close()
