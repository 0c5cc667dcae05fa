"""No step livelocks on a statement timeout: the statement is named in the log, the batch shrinks,
the step goes on."""

import logging

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
