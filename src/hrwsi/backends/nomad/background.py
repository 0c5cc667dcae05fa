"""The Nomad backend's background tasks (refreshes, stops, purges): kept, logged when they fail, cancelled on close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("Nomad backend task %s failed: %r", name, t.exception())
        task.add_done_callback(done)
        return task

    async def cancel_all(self, *extra: asyncio.Task | None) -> None:
        """Cancel every task (and the extra ones) but the caller's own, and wait for them to end."""
        tasks = [t for t in [*extra, *self._tasks] if t is not None and t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
