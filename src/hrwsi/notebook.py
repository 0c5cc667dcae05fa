"""Using hrwsi from a notebook (Jupyter), where an event loop already runs.

This is the only module that uses nest_asyncio: it lets `run` drive a coroutine to its end from
code that is itself running inside an event loop. The services never use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import nest_asyncio


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
    """Run the services for a while from a notebook cell; returns task counts per state afterwards."""
    from hrwsi.app import App
    from hrwsi.settings import Settings
    from hrwsi.sql_files import query

    async def session() -> dict[str, int]:
        async with App(url, kinds, Settings.from_env(), backend=backend) as app:
            await asyncio.sleep(seconds)
            app.request_stop()
            await app.wait()
            async with app.pool.acquire() as conn:
                rows = await conn.fetch(query("report_task_counts"))
        return {r["state"]: r["n"] for r in rows}

    return run(session())
