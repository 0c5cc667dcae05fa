"""The services' event loop: uvloop, except in a process that starts the routines' processes.

`hrwsi harvester|orchestrator|launcher|up|web` run their services on uvloop (HRWSI_EVENT_LOOP=auto,
the default) when it is installed: a service's reaction is mostly the event loop's work between
the database's replies (a notification read, a step woken, a call sent, its rows read), and
uvloop does it in C. Measured (2026-12-05, the bench's latency phase with all five systems, two
alternated pairs): hrwsi's p50 1.83 and 1.85 ms on uvloop against 1.94 and 1.96 ms on asyncio,
1.12x pgqueuer's against 1.16-1.17x, on both hrwsi databases of the phase.

A launcher with the local backend stays on asyncio: that backend starts and watches the routines'
supervisors, and was built and measured on asyncio's loop (uvloop started subprocesses 3-6x
slower on this machine, benchmarks/bench_process.py). HRWSI_EVENT_LOOP=asyncio or =uvloop
overrides the choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from hrwsi.terminal import shown

T = TypeVar("T")

CHOICES = ("auto", "asyncio", "uvloop")


class EventLoopError(RuntimeError):
    """HRWSI_EVENT_LOOP asks for a loop this installation does not have."""


def starts_processes(kinds: Iterable[str], backend: str) -> bool:
    """Whether a process running these services starts the routines' processes itself."""
    return "launcher" in kinds and backend == "local"


def choose(setting: str, kinds: Iterable[str], backend: str) -> str:
    """The event loop ("uvloop" or "asyncio") for a process running `kinds` with `backend`."""
    if setting not in CHOICES:
        raise EventLoopError(f"HRWSI_EVENT_LOOP={shown(setting)}: choose {', '.join(CHOICES)}")
    if setting == "asyncio" or (setting == "auto" and starts_processes(kinds, backend)):
        return "asyncio"
    try:
        import uvloop  # noqa: F401  (installed with hrwsi, except where it has no wheel)
    except ImportError:
        if setting == "uvloop":
            raise EventLoopError("HRWSI_EVENT_LOOP=uvloop, but uvloop is not installed "
                                 "(pip install uvloop, or HRWSI_EVENT_LOOP=auto)") from None
        return "asyncio"
    return "uvloop"


def runner(loop: str) -> Callable[[Coroutine[Any, Any, T]], T]:
    """asyncio.run, or uvloop.run: the coroutine to its end on a new loop of that kind."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run
