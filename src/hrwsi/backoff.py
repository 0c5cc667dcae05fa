"""One way to wait before trying again: exponential backoff with full jitter and a named cap.

Full jitter (a delay drawn uniformly in [0, min(cap, first * 2**n)]) spreads the retries of many
replicas that failed together (a database restart, a Nomad leader election), instead of having
them all knock again at the same instant. The caps are named here so that a reader sees, in one
place, how long each part of hrwsi waits at most.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

# How long each kind of retry waits at most (seconds).
DATABASE_CAP_S = 10.0  # a step, an outcome write, a heartbeat: the database is away for a moment
START_UP_CAP_S = 30.0  # a service starting while its database is away
LISTENER_CAP_S = 60.0  # the LISTEN connection (ADR 0001)
# The dashboard's LISTEN connection: its pages say they are not live until it is back, so it comes back
# within seconds of the database (one connection per dashboard: no herd of replicas to spread).
DASHBOARD_LISTENER_CAP_S = 2.0


@dataclass
class Backoff:
    """Delays for successive attempts: `next()` after a failure, `reset()` after a success."""

    first_s: float = 0.1
    cap_s: float = DATABASE_CAP_S
    failures: int = 0

    def next(self) -> float:
        """The delay before the next attempt (full jitter), counting one more failure."""
        ceiling = min(self.cap_s, self.first_s * 2 ** min(self.failures, 62))
        self.failures += 1
        return random.uniform(0, ceiling)

    def reset(self) -> None:
        self.failures = 0

    @staticmethod
    async def sleep(delay: float, stopping: asyncio.Event | None = None) -> None:
        """Wait `delay` seconds (a value from next()), returning early when `stopping` is set."""
        if stopping is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                pass
