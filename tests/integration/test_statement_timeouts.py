"""No step livelocks on a statement timeout: the statement is named in the log, the batch shrinks,
the step goes on."""

import asyncio
import logging

import psycopg

from hrwsi.database import create_pool
from hrwsi.harvester import Harvester
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
            ("psql", "idle in transaction", ["hrwsi-harvester (the chaining of its time series' products)"])]
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
