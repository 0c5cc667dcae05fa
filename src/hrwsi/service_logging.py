"""How hrwsi's processes log: one line per record, its time in UTC, as text or as JSON lines.

`HRWSI_LOG_FORMAT=text` (the default) is for a terminal and `journalctl`; `json` is for a log
collector (Loki, Elasticsearch, Nomad's log shippers): one JSON object per line, written by
python-json-logger, with the process's services and hrwsi version in every record, and the task,
job, routine or source of a record in fields of their own where the code names them
(`extra=task_fields(...)`), so that a task's lines are found by a query, not by a regex.

Why UTC with its zone: a log line is read beside the database's `timestamptz` columns, `hrwsi status`
and Nomad's events, all in UTC; Python's default formatter writes the machine's local time with no
zone, which on an operator's machine outside UTC was off by hours and did not say so.

Why every message is kept to one line: paths, file names and messages in records come from landing
directories, catalogues, routines and remote services. A newline in a landing file's name started a
line that a reader (or a collector splitting on newlines) took for hrwsi's own, and an escape
sequence in a product's name reached the terminal of whoever tailed the log. In text, the message's
control characters are written as their escapes (`\\n`, `\\x1b`); a traceback keeps its line breaks
and loses its other control characters. JSON escapes them all by itself.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from hrwsi.terminal import one_line, shown, visible

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_LINE = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def utc_time(created: float) -> str:
    """ISO 8601 in UTC to the millisecond, with its zone: 2026-12-05T15:10:34.022Z."""
    whole = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((created - whole) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """`<UTC time> <level> <logger>: <message>`, the message on one line."""

    def __init__(self) -> None:
        super().__init__(TEXT_LINE)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return visible(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return visible(super().formatStack(stack_info))


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: time (UTC), level, logger, message, pid, the process's fields
    (`service`, `hrwsi_version`), the record's own (`task_id`, `job_id`, `routine`, `source`...),
    and `exc_info` (the traceback) when there is one."""

    def __init__(self, static_fields: dict[str, Any] | None = None) -> None:
        super().__init__("{asctime}{levelname}{name}{message}{process}", style="{",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
                         static_fields=static_fields or {})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record.created)


def formatter(log_format: str, static_fields: dict[str, Any] | None = None) -> logging.Formatter:
    """The formatter of HRWSI_LOG_FORMAT; `static_fields` go in every JSON record (text leaves them out)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {shown(log_format)} is not one of {', '.join(FORMATS)}")
    return JsonLineFormatter(static_fields) if log_format == "json" else TextFormatter()


# The lines said again at every retry while the database is away, whose repeats say nothing new:
# (logger, message template) -> how many of their arguments tell one from another.
OUTAGE_LINES = {
    ("asyncpg.pool", "Failed to restore the pool connection floor; retrying"): 0,
    ("hrwsi.listener", "%s: cannot connect to %s (%s); retrying in %.1f s"): 2,  # (which listener, where)
    ("hrwsi.service", "%s: %s could not reach the database (%s); trying again in %.1f s"): 2,
    # (its words since a side task that retries sooner says "every 1.0 s": the template above no longer matched, and a
    # side task without a retry of its own said it at each run, harvest_sources every 5 s: found by exploratory testing)
    ("hrwsi.service", "%s: %s could not reach the database (%s); trying again %s"): 2,
    ("hrwsi.service", "%s: %s was refused a connection: %s; trying again %s"): 2,  # (max_connections reached)
    # (Nomad away: each call's retries, 0.2 s apart at first; told apart by the call, a job's registration say)
    ("hrwsi.backends.nomad.client", "could not %s (%s); retrying in %.1f s"): 1,
    # (the launcher's outcome and progress writers, told apart by what they write: a server paused for 70 s
    # had the outcome writer say it 6 times, every few seconds at its 10 s cap for as long as it lasts)
    ("hrwsi.launcher", "could not %s (%s); retrying in %.1f s"): 1,
}
OUTAGE_LINE_EVERY_S = 30.0


class OutageLines(logging.Filter):
    """While the database (or Nomad) is away, each retry of the pool, the listener and the side tasks said so
    again, asyncpg's pool with a traceback of about 20 lines at each: 260 lines in 30 s of one
    orchestrator (found by exploratory testing, 2026-12-05), where the steps say it once, then once
    every 30 s. These lines now do the same: the first is written, the next within
    OUTAGE_LINE_EVERY_S are counted, and the one after says how many were left out; asyncpg's
    traceback becomes the exception's one line."""

    def __init__(self, every_s: float = OUTAGE_LINE_EVERY_S, clock=time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self._said: dict[tuple, tuple[float, int]] = {}  # what -> (when last written, left out since)

    def filter(self, record: logging.LogRecord) -> bool:
        told_apart = OUTAGE_LINES.get((record.name, record.msg))
        if told_apart is None:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        what = (record.name, record.msg, *map(str, args[:told_apart]))
        now = self.clock()
        last, left_out = self._said.get(what, (None, 0))
        if last is not None and now - last < self.every_s:
            self._said[what] = (last, left_out + 1)
            return False
        self._said[what] = (now, 0)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message} ({type(error).__name__}: {error})"
            record.exc_info, record.exc_text = None, None
        if left_out:
            message += f" (said {left_out} more time(s) in the last {now - last:.0f} s)"
        record.msg, record.args = message, ()
        return True


class PoolFloorRetries(logging.Filter):
    """asyncpg's "Failed to restore the pool connection floor; retrying", with its error, as a debug line. Why: the pool
    opens its one spare connection again whenever one closes, and says each failure as a warning, where the services'
    own lines say once that the database cannot be reached, what they do meanwhile and when it is reached again; after
    connections went half-open and were ended, its "ConnectionError: unexpected connection_lost() call" read as a
    fault of its own (found by exploratory testing). Nothing waits for that connection: a step opens its own. Written
    at HRWSI_LOG_LEVEL=DEBUG only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "asyncpg.pool" or not (
                isinstance(record.msg, str) and record.msg.startswith("Failed to restore the pool connection floor")):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        # (the logger's level was checked as a warning's: written only where debug lines are)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def configure(level: str, log_format: str, static_fields: dict[str, Any] | None = None,
              stream: IO[str] | None = None) -> logging.Handler:
    """Every record of the process, at `level` and above, to `stream` (stderr) in `log_format`; asyncio's
    own debug and info chatter left out, and the lines an outage repeats at every retry said once every
    30 s (OutageLines). Replaces the root logger's handlers: a process logs one way."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format, static_fields))
    handler.addFilter(PoolFloorRetries())
    handler.addFilter(OutageLines())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    return handler


def task_fields(task_id: int | None = None, job_id: str | None = None, routine: str | None = None,
                **more: Any) -> dict[str, Any]:
    """A record's own fields (`extra=`): what a collector indexes the line by. None values are left out."""
    fields = {"task_id": task_id, "job_id": job_id, "routine": routine, **more}
    return {key: value for key, value in fields.items() if value is not None}
