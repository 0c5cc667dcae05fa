"""Running due sources against a real database: claims, schedules, errors recorded, `hrwsi sources`."""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import UTC, datetime, timedelta

from hrwsi.database import create_pool
from hrwsi.harvest import landing, sources

NOW = datetime.now(UTC).replace(microsecond=0)
STAMP = (NOW - timedelta(days=1)).strftime("%Y%m%dT%H%M%S")


def landing_source(db, tmp_path, name, **columns):
    directory = tmp_path / name
    directory.mkdir()
    config = {"directory": str(directory), "work_directory": str(tmp_path / f"{name}-work"), "settle_s": 0}
    db.execute("INSERT INTO hrwsi.harvest_source (name, kind, product_type, config) "
               "VALUES (%s, 'landing_directory', 'L1C', %s::jsonb)", (name, json.dumps(config)))
    for column, value in columns.items():
        db.execute(f"UPDATE hrwsi.harvest_source SET {column} = %s WHERE name = %s", (value, name))
    return directory


def drop(directory, tile="32TPR"):
    path = directory / f"S2A_L1C_{STAMP}_T{tile}.json"
    path.write_text("{}")
    os.utime(path, ((NOW - timedelta(hours=1)).timestamp(),) * 2)


def source_row(db, name):
    return db.execute("SELECT last_run_at, next_run_at, last_error, last_success_at FROM hrwsi.harvest_source "
                      "WHERE name = %s", (name,)).fetchone()


async def test_due_sources_run_once_and_get_their_next_run(routine, tmp_path, pool):
    drop(landing_source(routine, tmp_path, "continuous"))
    drop(landing_source(routine, tmp_path, "hourly", frequency="hourly", frequency_interval=2), "31TCH")
    landing_source(routine, tmp_path, "later", next_run_at=NOW + timedelta(minutes=5))
    landing_source(routine, tmp_path, "off", active=False)
    runs = await sources.run_due_sources(pool, now=NOW)
    assert sorted((r.source, r.ok) for r in runs) == [("continuous", True), ("hourly", True)]
    assert sum(r.report.inputs for r in runs) == 2
    last_run, next_run, error, success = source_row(routine, "continuous")
    assert (last_run, next_run, error, success) == (NOW, NOW + timedelta(seconds=1), None, NOW)
    next_hourly = source_row(routine, "hourly")[1]
    assert next_hourly > NOW and next_hourly.minute == 0 and next_hourly.hour % 2 == 0
    # Nothing is due again at the same moment.
    assert await sources.run_due_sources(pool, now=NOW) == []


async def test_a_failing_source_records_its_error_and_the_others_go_on(routine, tmp_path, pool):
    broken = landing_source(routine, tmp_path, "broken")
    broken.rmdir()
    drop(landing_source(routine, tmp_path, "working"))
    runs = {r.source: r for r in await sources.run_due_sources(pool, now=NOW)}
    assert not runs["broken"].ok and "does not exist" in runs["broken"].error
    assert runs["working"].ok and runs["working"].report.inputs == 1
    _, next_run, error, success = source_row(routine, "broken")
    assert "does not exist" in error and success is None and next_run == NOW + timedelta(seconds=30)
    assert "failed: FileNotFoundError" in runs["broken"].summary()


async def test_two_harvesters_never_run_the_same_source_at_once(routine, tmp_path, pool, database_url):
    for index in range(6):
        drop(landing_source(routine, tmp_path, f"source{index}"), f"3{index}TPR")  # six scenes
    other = await create_pool(database_url, max_size=4)
    try:
        first, second = await asyncio.gather(sources.run_due_sources(pool, now=NOW),
                                             sources.run_due_sources(other, now=NOW))
    finally:
        await other.close()
    names = [r.source for r in first + second]
    assert sorted(names) == [f"source{i}" for i in range(6)]  # each exactly once
    assert routine.execute("SELECT count(*) FROM hrwsi.input").fetchone()[0] == 6


async def test_a_due_landing_directory_is_scanned_at_the_current_time_by_default(routine, tmp_path, pool):
    drop(landing_source(routine, tmp_path, "demo"))
    runs = await sources.run_due_sources(pool)
    assert [(r.source, r.report.inputs) for r in runs] == [("demo", 1)]
    assert runs[0].next_run_at > NOW


def test_register_source_and_list_sources_in_words(db, tmp_path):
    landing.register_source(db, name="drop", directory=tmp_path / "in", work_directory=tmp_path / "work",
                            product_type="L1C", settle_s=0.5, interval_s=1.0)
    db.execute("""INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, frequency, frequency_interval,
                  mode, backfill_from, backfill_to, backfill_cursor)
                  VALUES ('cdse', 'catalogue', 'L1C', '{"url": "https://catalogue.dataspace.copernicus.eu/odata/v1",
                          "collection": "SENTINEL-2"}', 'hourly', 3, 'backfill', '2024-01-01', '2024-01-31',
                          '2024-01-10')""")
    db.execute("""INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, cron)
                  VALUES ('nightly', 'catalogue', 'L1C', '{"url": "http://localhost/odata/v1",
                          "collection": "SENTINEL-2"}', '30 2 * * *')""")
    listed = {s["name"]: s for s in sources.list_sources(db)}
    assert listed["drop"]["schedule"] == "continuously (every 1 s)"
    assert listed["cdse"]["schedule"] == "every 3rd hour"
    assert listed["cdse"]["mode"] == "backfill 2024-01-01 to 2024-01-31 (next day 2024-01-10)"
    assert listed["nightly"]["schedule"] == "cron 30 2 * * * (UTC)"
    assert listed["nightly"]["mode"] == "near_real_time"
    assert listed["drop"]["next_run_at"] is not None and listed["drop"]["kind"] == "landing_directory"


def test_every_source_kind_the_database_allows_has_a_way_to_run(db):
    definition = db.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                            "WHERE conname = 'harvest_source_kind_is_catalogue_or_landing_directory'").fetchone()[0]
    assert set(re.findall(r"'(\w+)'::text", definition)) == set(sources.SOURCE_KINDS)
