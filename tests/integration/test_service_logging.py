"""The services' records as ops' log collector reads them (hrwsi.service_logging): the launcher's lines
name their task, job, routine, attempt and outcome in fields of their own (a landing file's hostile
name in a line: tests/integration/harvest/test_landing.py)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from hrwsi.app import App
from hrwsi.backends.base import JobOutcome
from hrwsi.backends.dry_run import DryRunBackend
from hrwsi.service_logging import JsonLineFormatter
from tests.integration.conftest import insert_inputs, single_routine_configuration, wait_until


class FailingOneBackend(DryRunBackend):
    """Dry run, except that the attempts of one task fail with exit code 3."""

    def __init__(self, failing_task: int):
        super().__init__()
        self.failing_task = failing_task

    async def wait(self, spec, backend_job_id, on_progress):
        if spec.task_id == self.failing_task:
            return JobOutcome("external_error", 3, "exit code 3", datetime.now(UTC), datetime.now(UTC))
        return await super().wait(spec, backend_job_id, on_progress)


def json_records(caplog, logger: str) -> list[dict]:
    formatter = JsonLineFormatter({"service": "launcher"})
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == logger]


async def test_the_launcher_s_lines_carry_the_task_job_routine_attempt_and_outcome(db, database_url, settings,
                                                                                    configure, caplog):
    caplog.set_level(logging.INFO, logger="hrwsi")
    configure(single_routine_configuration(["true"], max_attempts=1))
    insert_inputs(db, 2)
    processed_task, failing_task = (row[0] for row in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY id"))
    async with App(database_url, ["launcher"], settings, backend=FailingOneBackend(failing_task), pool_size=5):
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.processing_task WHERE state IN "
                                       "('processed', 'terminated')")
    by_task = {r["task_id"]: r for r in json_records(caplog, "hrwsi.launcher") if "outcome" in r}
    assert by_task[processed_task] | {"time": None, "pid": None, "message": None} == {
        "time": None, "level": "INFO", "logger": "hrwsi.launcher", "message": None, "pid": None,
        "service": "launcher", "task_id": processed_task, "job_id": f"hrwsi-work-{processed_task}-1",
        "routine": "work", "attempt": 1, "outcome": "processed", "products": 0}
    failed = by_task[failing_task]
    assert (failed["level"], failed["job_id"], failed["outcome"], failed["task_state"]) == (
        "WARNING", f"hrwsi-work-{failing_task}-1", "external_error", "terminated")
    assert failed["message"].startswith(f"task {failing_task} (work) attempt 1 external_error: exit code 3; terminated after")



async def test_connections_closed_as_they_open_are_said_in_hrwsis_words_and_asyncpgs_pool_retries_only_in_debug(
        database_url):
    """The server behind a proxy goes (a failover, or connections gone half-open and ended): the proxy accepts each new
    connection and closes it. asyncpg's pool said each retry of its spare connection as a warning, "Failed to restore
    the pool connection floor; retrying (ConnectionError: unexpected connection_lost() call)", and hrwsi's own lines
    said asyncpg's "unexpected connection_lost() call", both read as a fault of their own; the services' lines say
    that the database cannot be reached and what they do."""
    import io
    import socket

    import pytest

    from hrwsi import service_logging
    from hrwsi.database import create_pool
    from hrwsi.database_trouble import describe
    from tests.integration.conftest import wait_until_true
    from tests.integration.database_door import DatabaseDoor

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    seen: list[logging.LogRecord] = []
    catch = logging.Handler()
    catch.emit = seen.append
    pool_logger = logging.getLogger("asyncpg.pool")
    door = DatabaseDoor(database_url)
    pool = await create_pool(door.url, min_size=1, max_size=2)
    try:
        service_logging.configure("INFO", "text", stream=stream)
        pool_logger.addHandler(catch)
        door.family, door.address = socket.AF_UNIX, "/nonexistent/.s.PGSQL.5432"  # (no server behind it any more)
        door.close()
        door.open()
        await wait_until_true(lambda: any("pool connection floor" in r.getMessage() for r in seen), 15)
        with pytest.raises(ConnectionError) as caught:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    finally:
        pool_logger.removeHandler(catch)
        root.handlers, _ = saved
        root.setLevel(saved[1])
        pool.terminate()
        door.close()
    assert "pool connection floor" not in stream.getvalue(), stream.getvalue()
    # (the proxy's close reaches asyncpg as an end of the stream, or, when the startup message was sent before it, as
    # a reset: "[Errno 104] Connection reset by peer", its own plain words; which one is the machine's timing: CI saw
    # the reset)
    if not isinstance(caught.value, ConnectionResetError):
        assert describe(caught.value) == ("the connection was closed as it opened, before the server answered (a "
                                          "proxy, pooler or load balancer in front of a server that is down or "
                                          "restarting?)")
    assert describe(ConnectionError("unexpected connection_lost() call")) == (
        "the connection was closed as it opened, before the server answered (a proxy, pooler or load balancer in front "
        "of a server that is down or restarting?)")
