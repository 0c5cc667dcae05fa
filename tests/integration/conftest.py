"""Running the real services in-process against the test's real database."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg
import pytest

from hrwsi.app import App
from hrwsi.configuration import load
from hrwsi.database import create_pool
from hrwsi.settings import Settings
from tests.integration.standby import standby  # noqa: F401 - a fixture (a hot standby and its primary)


@pytest.fixture
async def pool(database_url):
    """A small asyncpg pool on the test's database, for code that takes a pool."""
    pool = await create_pool(database_url, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def routine(db):
    """Routine maja (L1C -> L2A) and its condition l1c."""
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type)
                  VALUES ('maja', 2, 4000, 1000, '5 min', ARRAY['true'], 'L1C', 'L2A')""")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l1c', 'maja')")
    return db


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", backstop_poll_s=0.5, heartbeat_s=0.5, lease_timeout_s=2.0,
                    landing_scan_s=0.3, retry_backoff_s=0.05, shutdown_grace_s=5.0)


@asynccontextmanager
async def running(url: str, kinds: list[str], settings: Settings, backend: str = "dry-run"):
    """Start the given services; stop them gracefully on exit and fail if one died on its own."""
    async with App(url, kinds, settings, backend=backend, pool_size=10) as app:
        yield app.services
        died = app.died()
        if died:
            raise died[0]  # a service ended on its own: the test fails on it


async def wait_until(url: str, sql: str, *args, timeout: float = 30.0, interval: float = 0.05):
    """Poll `sql` (returning one value) until it is truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(url)
    try:
        value = None
        while time.monotonic() < deadline:
            value = await conn.fetchval(sql, *args)
            if value:
                return value
            await asyncio.sleep(interval)
        tasks = await conn.fetch("SELECT state, count(*) FROM hrwsi.processing_task GROUP BY 1")
        jobs = await conn.fetch("SELECT state, count(*) FROM hrwsi.job GROUP BY 1")
        raise AssertionError(f"timed out after {timeout} s waiting for: {sql} (last value {value!r}); "
                             f"tasks {dict(map(tuple, tasks))}, jobs {dict(map(tuple, jobs))}")
    finally:
        await conn.close()


async def wait_until_true(condition, timeout_s: float = 10.0) -> None:
    """Poll `condition()` (in this process) until it is true; fail after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


def waits_for_a_wake_up(service) -> bool:
    """Whether a service's loop waits for a wake-up, no step due: it runs none now (Service.run's loop awaits its
    one event, `_wake`, and nothing else does)."""
    return not service._dirty and not service._wake.is_set() and bool(service._wake._waiters)


async def wait_until_listening(service, timeout_s: float = 30.0) -> None:
    """Wait until a service's listener listens, and its catch-up run of every step that follows (after the start's
    own run) is over: wake-ups counted from then on come from notifications. (On its first connection the listener
    wakes every step in the same turn of the event loop as it becomes connected.) Why not a pause: it waited 0.3 s
    after the listener's connection showed in pg_stat_activity, and on a loaded machine its LISTENs took longer: the
    test's first input was heard before the catch-up run, and a dispatch that started nothing was counted last
    (seen 1 in 8 runs beside two busy loops; every run with the listener's last LISTEN 0.5 s slow)."""
    await wait_until_true(lambda: service.listener is not None and service.listener.connected
                          and waits_for_a_wake_up(service), timeout_s)


def chain_configuration(command_prefix=None, *, max_attempts=3, sequential=False, timeout_s=60):
    """Three chained routines running the shipped demo programs (or a given command)."""
    def command(module):
        return command_prefix or [sys.executable, "-m", f"hrwsi.routines.{module}"]

    return {
        "budget": {"cpu_max": 8, "ram_max_mb": 32000, "storage_max_mb": 100000, "vm_max": 3},
        "flavour": [{"name": "large", "cpu": 4, "ram_mb": 16000, "disk_mb": 50000}],
        "worker": [{"prefix": "w", "count": 3, "flavour": "large"}],
        "routine": [
            {"name": "atmospheric_correction", "cpu": 2, "ram_mb": 4000, "storage_mb": 1000,
             "expected_duration_s": 2, "timeout_s": timeout_s, "command": command("atmospheric_correction"),
             "input_product_type": "L1C", "output_product_type": "L2A", "max_attempts": max_attempts,
             "sequential_per_tile": sequential},
            {"name": "snow_cover", "cpu": 1, "ram_mb": 2000, "storage_mb": 500, "expected_duration_s": 1,
             "timeout_s": timeout_s, "command": command("snow_cover"), "input_product_type": "L2A",
             "output_product_type": "FSC", "max_attempts": max_attempts},
            {"name": "quicklook", "cpu": 0.5, "ram_mb": 500, "storage_mb": 100, "expected_duration_s": 1,
             "timeout_s": timeout_s, "command": command("quicklook"), "input_product_type": "FSC",
             "output_product_type": "QUICKLOOK", "max_attempts": max_attempts},
        ],
        "condition": [{"name": "l1c", "routine": "atmospheric_correction"},
                      {"name": "l2a", "routine": "snow_cover"},
                      {"name": "fsc", "routine": "quicklook"}],
    }


def single_routine_configuration(command, *, max_attempts=3, cpu=1, workers=2, timeout_s=None,
                                 output_type="OUT", budget=True):
    routine = {"name": "work", "cpu": cpu, "ram_mb": 1000, "storage_mb": 100, "expected_duration_s": 1,
               "command": command, "input_product_type": "IN", "output_product_type": output_type,
               "max_attempts": max_attempts}
    if timeout_s:
        routine["timeout_s"] = timeout_s
    document = {
        "flavour": [{"name": "f", "cpu": 4, "ram_mb": 16000, "disk_mb": 50000}],
        "worker": [{"prefix": "w", "count": workers, "flavour": "f"}],
        "routine": [routine],
        "condition": [{"name": "in", "routine": "work"}],
    }
    if budget:
        document["budget"] = {"cpu_max": 4 * workers, "ram_max_mb": 16000 * workers,
                              "storage_max_mb": 50000 * workers, "vm_max": workers}
    return document


@pytest.fixture
def configure(db):
    def apply(document):
        load(db, document)
    return apply


def insert_inputs(db, count, condition="in", prefix="/in/scene", start=0):
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                  SELECT %s, %s || g FROM generate_series(%s::int, %s::int) g""", (condition, prefix, start, start + count - 1))


def skew_the_host_clock(monkeypatch, by: timedelta, *modules) -> None:
    """The host's clock `by` off the database's, as each of `modules` reads it (datetime.now): what a
    host without NTP does to a service (hrwsi.database_clock)."""
    class Skewed(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + by

    for module in modules:
        monkeypatch.setattr(module, "datetime", Skewed)
