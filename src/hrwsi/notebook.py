"""Using hrwsi from a notebook (Jupyter), where an event loop already runs.

This is the only module that uses nest_asyncio: it lets `run` drive a coroutine to its end from
code that is itself running inside an event loop. The services never use it.

`run_services` is bounded by its `seconds`, start-up included. A service started by the CLI waits
for a database that is away (ADR 0006: it may be restarting); a notebook cell that did the same
never returned when the URL named no running server (found by exploratory testing). So here the
database is waited for only until the time is up, and its schema is checked before any service
starts: a database without it is one error saying to run `hrwsi db init`, not asyncpg's
UndefinedTableError from inside a service.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import nest_asyncio

logger = logging.getLogger(__name__)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end, even inside a running event loop (a notebook cell)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    nest_asyncio.apply(loop)
    return loop.run_until_complete(coroutine)


def run_services(url: str, seconds: float, kinds: tuple[str, ...] = ("harvester", "orchestrator", "launcher"),
                 backend: str = "local") -> dict[str, int]:
    """Run the services for `seconds` from a notebook cell (or a script); returns task counts per state afterwards.

    The database is waited for `seconds` at most: past them, DatabaseUnavailable names the server
    (without its password). A database without hrwsi's schema (or lacking a migration) is
    SchemaNotReady, saying to run `hrwsi db init`. A URL that is not a postgresql:// one, and a
    `seconds` that is not a finite number > 0, are refused at once (SettingsError, ValueError).
    Once the time is up the services stop gracefully, as on SIGTERM: a running local job may hold
    the launcher up to HRWSI_SHUTDOWN_GRACE_S longer.
    """
    from hrwsi.settings import check_database_url

    check_database_url(url, "url")
    # (bool is an int; NaN compares false with everything, so `not seconds > 0` refuses it too)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds={seconds!r} must be a finite number of seconds > 0: how long the services run")
    return run(_session(url, float(seconds), kinds, backend))


async def _session(url: str, seconds: float, kinds: tuple[str, ...], backend: str) -> dict[str, int]:
    from hrwsi.app import App
    from hrwsi.database import DatabaseUnavailable, redact
    from hrwsi.settings import Settings
    from hrwsi.sql_files import query

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    await _check_database(url, seconds, deadline)
    async with AsyncExitStack() as stack:
        app = App(url, kinds, Settings.from_env(), backend=backend)
        try:  # (the database may go away between the check and the pool: App would wait for it for ever)
            await asyncio.wait_for(stack.enter_async_context(app), max(deadline - loop.time(), 0.0))
        except TimeoutError:
            raise DatabaseUnavailable(f"cannot open connections to {redact(url)} within {seconds:g} s; check that the "
                                      "server runs and that the URL names it") from None
        await asyncio.sleep(max(deadline - loop.time(), 0.0))
        app.request_stop()
        await app.wait()
        async with app.pool.acquire() as conn:
            rows = await conn.fetch(query("report_task_counts"))
    return {r["state"]: r["n"] for r in rows}


async def _check_database(url: str, seconds: float, deadline: float) -> None:
    """Wait until `deadline` at most for the database at `url`, then check that it has this installation's
    schema; DatabaseUnavailable or SchemaNotReady (the message says what to do) otherwise."""
    from hrwsi.app import SchemaNotReady
    from hrwsi.backoff import START_UP_CAP_S, Backoff
    from hrwsi.database import TRANSIENT_DATABASE_ERRORS, DatabaseUnavailable, redact

    loop = asyncio.get_running_loop()
    backoff = Backoff(first_s=0.5, cap_s=START_UP_CAP_S)
    cause = f"no answer within {seconds:g} s"
    while (left := deadline - loop.time()) > 0:
        try:
            conn = await asyncpg.connect(url, timeout=left)
            break
        except TRANSIENT_DATABASE_ERRORS as error:
            if not isinstance(error, TimeoutError):  # (the last refusal says more than running out of time)
                cause = " ".join(str(error).split()) or type(error).__name__
            delay = min(backoff.next(), max(deadline - loop.time(), 0.0))
            logger.warning("cannot connect to %s (%s); hrwsi waits %.1f s and tries again", redact(url), cause, delay)
            await asyncio.sleep(delay)
    else:
        raise DatabaseUnavailable(
            f"cannot reach the database {redact(url)} within {seconds:g} s ({cause}); check that the server runs "
            "and that the URL names it, or run `hrwsi db start` for the embedded server")
    try:
        problem = await _schema_problem(conn)
    finally:
        await conn.close()
    if problem:
        raise SchemaNotReady(f"the database ({redact(url)}) {problem}")


async def _schema_problem(conn: asyncpg.Connection) -> str | None:
    """What the database lacks of this installation's schema, with what to do, as `hrwsi` commands say
    it (hrwsi.cli.errors); None when it has every migration this installation ships."""
    from hrwsi import migrations
    from hrwsi.sql_files import query

    if not await conn.fetchval(query("migration_bookkeeping_exists")):
        return "has no hrwsi schema: run `hrwsi db init`"
    recorded = [tuple(row) for row in await conn.fetch(query("applied_migrations"))]
    try:
        missing = migrations.missing_from(recorded)
    except migrations.NewerSchema as error:
        return f"cannot be used by this installation: {error}"
    if missing:
        return (f"lacks {len(missing)} migration(s) of this installation ({', '.join(missing)}): "
                "run `hrwsi db init` as the schema's owner")
    return None
