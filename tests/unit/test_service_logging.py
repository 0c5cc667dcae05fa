"""How a process logs (hrwsi.service_logging): one line per record whatever its message holds, its time
in UTC with its zone, as text or as JSON lines with the process's and the record's own fields."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time

import pytest

from hrwsi import service_logging
from hrwsi.service_logging import JsonLineFormatter, OutageLines, TextFormatter, task_fields, utc_time
from hrwsi.terminal import one_line

# 2026-12-05 15:10:34.022 UTC
CREATED = 1796483434.022


def record(message: str = "task %d processed", *args, level: int = logging.INFO, exc_info=None, **extra):
    made = logging.LogRecord("hrwsi.launcher", level, __file__, 1, message, args or (42,), exc_info)
    made.created, made.msecs = CREATED, 22.0
    made.__dict__.update(extra)
    return made


def raised() -> tuple:
    try:
        raise RuntimeError("boom\x1b[2J in /landing/a\nb")
    except RuntimeError:
        return sys.exc_info()


def test_times_are_utc_to_the_millisecond_with_their_zone_whatever_the_machine_s_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        assert utc_time(CREATED) == "2026-12-05T15:10:34.022Z"
        assert TextFormatter().format(record()) == "2026-12-05T15:10:34.022Z INFO hrwsi.launcher: task 42 processed"
        assert json.loads(JsonLineFormatter().format(record()))["time"] == "2026-12-05T15:10:34.022Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_text_message_stays_on_one_line_and_its_control_characters_are_shown_not_obeyed():
    forged = "a.jpg\n2026-12-05T15:10:34.022Z ERROR hrwsi.launcher: task 1 terminated\x1b[31m\r\u2028"
    line = TextFormatter().format(record("landing in: %s: not a product name", forged))
    assert "\n" not in line and "\x1b" not in line and "\r" not in line and "\u2028" not in line
    assert line == ("2026-12-05T15:10:34.022Z INFO hrwsi.launcher: landing in: a.jpg\\x0a2026-12-05T15:10:34.022Z "
                    "ERROR hrwsi.launcher: task 1 terminated\\x1b[31m\\x0d\\u2028: not a product name")


def test_a_text_traceback_keeps_its_lines_and_loses_its_escape_sequences():
    text = TextFormatter().format(record("following job %s failed", "j", level=logging.ERROR, exc_info=raised()))
    first, *rest = text.split("\n")
    assert first == "2026-12-05T15:10:34.022Z ERROR hrwsi.launcher: following job j failed"
    assert rest[0] == "Traceback (most recent call last):" and "\x1b" not in text
    assert "RuntimeError: boom\\x1b[2J in /landing/a" in text


def test_a_json_record_is_one_line_with_the_process_s_fields_and_its_own():
    formatter = JsonLineFormatter({"service": "launcher", "hrwsi_version": "9.9"})
    text = formatter.format(record("task %d (%s) processed\nsecond line", 42, "snow_cover",
                                   **task_fields(42, "hrwsi-snow_cover-42-1", "snow_cover", attempt=1,
                                                 outcome="processed", worker=None)))
    assert "\n" not in text
    fields = json.loads(text)
    assert fields == {"time": "2026-12-05T15:10:34.022Z", "level": "INFO", "logger": "hrwsi.launcher",
                      "message": "task 42 (snow_cover) processed\nsecond line", "pid": os.getpid(),
                      "service": "launcher", "hrwsi_version": "9.9", "task_id": 42,
                      "job_id": "hrwsi-snow_cover-42-1", "routine": "snow_cover", "attempt": 1, "outcome": "processed"}


def test_a_json_record_carries_its_traceback_and_escapes_every_control_character():
    text = JsonLineFormatter().format(record("following job %s failed", "j", level=logging.ERROR, exc_info=raised()))
    assert "\n" not in text and "\x1b" not in text
    fields = json.loads(text)
    assert fields["level"] == "ERROR" and fields["exc_info"].startswith("Traceback (most recent call last):")
    assert fields["exc_info"].endswith("RuntimeError: boom\x1b[2J in /landing/a\nb")


def test_configure_sends_every_record_of_the_level_and_above_one_way_and_replaces_what_was_there():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        service_logging.configure("WARNING", "json", {"service": "harvester"}, stream=stream)
        assert len(root.handlers) == 1
        logging.getLogger("hrwsi.harvester").info("not written")
        logging.getLogger("hrwsi.harvester").warning("source %s failed", "s2", extra=task_fields(source="s2"))
        logging.getLogger("asyncio").warning("asyncio's warnings are kept")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["logger"], line["message"], line.get("source")) for line in lines] == [
            ("hrwsi.harvester", "source s2 failed", "s2"), ("asyncio", "asyncio's warnings are kept", None)]
        assert all(line["service"] == "harvester" for line in lines)
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="'xml' is not one of text, json"):
        service_logging.formatter("xml")


def test_a_record_s_fields_leave_out_what_it_does_not_know():
    assert task_fields(7) == {"task_id": 7}
    assert task_fields(routine="r", source=None, path="/p") == {"routine": "r", "path": "/p"}


def test_one_line_escapes_line_breaks_and_keeps_tabs_and_text():
    assert one_line("a\tb\nc\r\x85é\u2029") == "a\tb\\x0ac\\x0d\\x85é\\u2029"
    assert one_line(None) == ""


def test_lines_an_outage_repeats_at_every_retry_are_said_once_every_30_s_with_how_many_were_left_out():
    # Found by exploratory testing (2026-12-05): 30 s without the database, one orchestrator wrote
    # about 260 lines, asyncpg's pool a 20-line traceback at each of its retries.
    now = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(OutageLines(clock=lambda: now[0]))
    pool, listener, service, nomad = (logging.getLogger(name) for name in ("asyncpg.pool", "hrwsi.listener",
                                                                         "hrwsi.service", "hrwsi.backends.nomad.client"))
    for logger in (pool, listener, service, nomad):
        logger.addHandler(handler)
        logger.propagate = False
    try:
        for second in range(0, 61, 2):  # a retry every 2 s for a minute, of each
            now[0] = float(second)
            try:
                raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
            except ConnectionRefusedError:
                pool.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
            listener.warning("%s: cannot connect to %s (%s); retrying in %.1f s", "orchestrator listener", "db", "refused",
                             2.0)
            service.warning("%s: %s could not reach the database (%s); trying again in %.1f s", "launcher",
                            "heartbeat", "refused", 5.0)
            service.warning("%s: %s could not reach the database (%s); trying again in %.1f s", "launcher",
                            "raise_deadline_alerts", "refused", 10.0)
            service.warning("statement %s took %.1f s", "dispatch", 6.0)  # not an outage line: every one kept
            nomad.warning("could not %s (%s); retrying in %.1f s", "list Nomad nodes", "cannot reach Nomad", 2.0)
    finally:
        for logger in (pool, listener, service, nomad):
            logger.removeHandler(handler)
            logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert sum("statement dispatch took" in line for line in lines) == 31
    for what in ("pool connection floor", "listener: cannot connect", "heartbeat could not", "raise_deadline_alerts",
                 "could not list Nomad nodes"):
        said = [line for line in lines if what in line]
        assert len(said) == 3, said  # at 0, 30 and 60 s
        assert "(said 14 more time(s) in the last 30 s)" in said[1]
    assert not any(line.startswith(("Traceback", "  File")) for line in lines)
    assert "(ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432))" in lines[0]


def test_the_launchers_outcome_writer_retrying_while_the_database_is_away_is_said_once_every_30_s_per_write():
    # Found pausing the server (SIGSTOP) for 70 s during a burst: "could not record the outcome of 2 job(s) (...);
    # retrying in 0.7 s" was written at each of the writer's retries, where the steps and side tasks say it once
    # every 30 s.
    now = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(OutageLines(clock=lambda: now[0]))
    launcher = logging.getLogger("hrwsi.launcher")
    launcher.addHandler(handler)
    launcher.propagate = False
    try:
        for second in range(0, 61, 2):
            now[0] = float(second)
            for what in ("record the outcome of 2 job(s)", "record how 3 job(s) progressed"):
                launcher.warning("could not %s (%s); retrying in %.1f s", what, "no answer within the client's timeout",
                                 2.0)
    finally:
        launcher.removeHandler(handler)
        launcher.propagate = True
    lines = stream.getvalue().splitlines()
    for what in ("could not record the outcome of 2 job(s)", "could not record how 3 job(s) progressed"):
        said = [line for line in lines if what in line]
        assert len(said) == 3, said  # at 0, 30 and 60 s
        assert "(said 14 more time(s) in the last 30 s)" in said[1]


async def test_a_side_task_that_cannot_reach_the_database_is_said_once_every_30_s_as_the_service_says_it(tmp_path):
    # Found stopping the server behind a proxy: "harvester: harvest_sources could not reach the database (...); trying
    # again in 5.0 s" every 5 s, and the orchestrator's raise_deadline_alerts every 10 s: the service's words had
    # changed ("trying again in 5.0 s" or "every 1.0 s"), and the outage lines' template no longer matched them.
    import asyncio

    from hrwsi.service import Service, SideTask
    from hrwsi.settings import Settings

    service = Service(None, Settings(home=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/hrwsi"))
    runs = 0

    async def unreachable() -> None:
        nonlocal runs
        runs += 1
        if runs == 20:
            service.stopping.set()
        raise ConnectionRefusedError(111, "Connect call failed")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(OutageLines(clock=lambda: 0.0))
    logger = logging.getLogger("hrwsi.service")
    logger.addHandler(handler)
    try:
        await asyncio.wait_for(service._every(SideTask("harvest_sources", unreachable, 0.001)), 10)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "harvest_sources could not reach the database" in lines[0], lines
