"""hrwsi.cli.views: what `hrwsi status` prints, from the data reports.status gathers (made by hand here)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

from rich.console import Console

from hrwsi.cli import views


def status_data(**more) -> dict:
    return {"tasks": {}, "jobs": {}, "unplannable": [], "services": [], "alerts": {}, "recent_failures": [],
            "held_routines": [], "held_tasks": [], **more}


def drawn(data: dict, width: int = 80) -> str:
    out = io.StringIO()
    views.status(Console(file=out, width=width, color_system=None), data, 30.0)
    return out.getvalue()


def test_status_says_what_to_do_with_terminated_tasks_where_it_counts_them():
    said = " ".join(drawn(status_data(tasks={"terminated": 3, "processed": 10})).split())
    assert ("3 terminated: `hrwsi tasks --state terminated` lists them, `hrwsi task show ID` says why each ended, "
            "`hrwsi retry ID` (or `hrwsi retry --routine NAME`) plans them again") in said
    assert "terminated:" not in drawn(status_data(tasks={"processed": 10}))


def test_status_says_its_ended_jobs_are_those_of_the_last_day():
    # (session 75: the ended jobs are counted over the last 24 hours, through their index, not over the archive)
    said = drawn(status_data(tasks={"processed": 10}, jobs={"processed": 4, "running": 1}), width=120)
    assert "jobs (ended: last 24 h)" in said


def test_status_says_what_to_do_with_blocked_tasks_where_it_counts_them():
    # Found by exploratory testing: a time series blocked behind a terminated task was a count, said nowhere else.
    said = " ".join(drawn(status_data(tasks={"blocked": 2, "terminated": 1})).split())
    assert ("2 blocked: their dependency ended terminated or cancelled and nothing happens by itself; `hrwsi tasks "
            "--state blocked` lists them, `hrwsi task show ID` names the dependency and the commands that retry it or "
            "run the task without it") in said
    assert "blocked:" not in drawn(status_data(tasks={"processed": 10}))


def test_a_held_routines_reason_of_several_lines_is_indented_under_its_why():
    # Found by exploratory testing: the second line of a hold reason began at the margin, as a line of status's own.
    routine = {"routine": "quicklook", "backfill_only": False, "held_tasks": 2, "held_at": None,
               "reason": "the bucket is full\nsecond line \x1b[31m", "next": "release it"}
    assert "  why: the bucket is full\n       second line \\x1b[31m\n" in drawn(status_data(held_routines=[routine]))


def test_a_recent_failures_message_is_wrapped_whole_in_blocks_and_escaped():
    message = "the routine failed: " + " ".join(f"word{n}" for n in range(40)) + " \x1b[2J the end"
    failure = {"task_id": 7, "routine": "snow_cover", "attempt": 2, "state": "internal_error", "exit_code": 1,
               "message": message, "finished_at": datetime(2026, 12, 6, 12, tzinfo=UTC),
               "log_path": "/data/logs/a-long-path/" + "x" * 60 + ".log", "task_state": "terminated"}
    blocks = drawn(status_data(recent_failures=[failure]), width=80)
    assert "a block per row" in blocks
    said = " ".join(blocks.split())
    assert "word39 \\x1b[2J the end" in said and "…" not in said, "whole, its control characters escaped"
    table = drawn(status_data(recent_failures=[failure]), width=400)
    assert "a block per row" not in table and "…" in table, "a table keeps its first 80 characters"


def test_a_recent_attempt_the_backend_could_not_place_says_its_tasks_next_attempt_goes_elsewhere():
    failure = {"task_id": 7, "routine": "snow_cover", "attempt": 1, "state": "lost", "exit_code": None,
               "message": "Nomad could not place job hrwsi-snow_cover-7-1 for 600 s", "avoids_worker": "node-\x1ba",
               "finished_at": datetime(2026, 12, 6, 12, tzinfo=UTC), "log_path": "/l.log", "task_state": "pending"}
    said = " ".join(drawn(status_data(recent_failures=[failure]), width=400).split())
    assert "pending, its next attempt not on node-\\x1ba" in said


def test_an_alerts_kind_is_printed_as_text_never_obeyed():
    # Found by review: printed as rich markup (its [bold] taken as a style and lost), its control characters obeyed.
    # (The database takes only the kinds it knows, alert_kind_is_known: shown as every other value all the same.)
    alert = {"id": 1, "created_at": datetime(2026, 12, 6, 12, tzinfo=UTC), "kind": "[bold]task_terminated\x1b[2J",
             "status": "unsent", "sent_at": None, "attempts": 0, "subject": "s", "last_error": None}
    out = io.StringIO()
    views.alerts(Console(file=out, width=200, color_system=None), {"counts": {}, "alerts": [alert]}, "none")
    assert "[bold]task_terminated\\x1b[2J" in out.getvalue() and "\x1b" not in out.getvalue()


def test_every_reason_of_several_lines_in_status_is_indented_under_its_first_line():
    # Found by review: only a held routine's reason was; an unplannable task's, a task held one by one's, a held
    # campaign's and a failing source's later lines began at the margin, read as lines of status's own.
    reason = "first line\nsecond line \x1b[31m"
    said = drawn(status_data(
        unplannable=[{"task_id": 7, "routine": "snow_cover", "reason": reason}],
        held_tasks=[{"id": 8, "routine": "quicklook", "reason": reason}],
        held_campaigns=[{"campaign": 3, "routine": "fsc", "held_tasks": 1, "held_at": None, "reason": reason,
                         "next": "release it"}],
        sources=[{"name": "landing", "kind": "landing_directory", "next": "its last run failed: " + reason}]), width=200)
    for head in ("  task 7 (snow_cover): ", "  task 8 (quicklook): "):
        assert f"{head}first line\n{' ' * len(head)}second line \\x1b[31m\n" in said, said
    assert "  why: first line\n       second line \\x1b[31m\n" in said, said
    assert "  its last run failed: first line\n  second line \\x1b[31m\n" in said, said


def test_a_time_is_printed_to_the_second_as_the_dashboard_shows_the_same_event():
    # The tables showed "2026-12-07 09:40:01.654Z" where the dashboard said "2026-12-07 09:40:01Z" of the same
    # attempt's end: seconds are what ops read; --json keeps every digit.
    from hrwsi.web.app import _time  # (the dashboard's)

    ended = datetime(2026, 12, 7, 10, 40, 1, 654321, tzinfo=timezone(timedelta(hours=1)))
    assert views.time(ended) == _time(ended) == "2026-12-07 09:40:01Z"
    assert views.time(datetime(2026, 12, 7, 9, 40, 1, 999999, tzinfo=UTC)) == "2026-12-07 09:40:01Z"


def test_a_tasks_reason_takes_the_room_the_terminal_leaves_and_is_whole_in_blocks():
    # Found by review: cut at 60 characters, a failure's reason ("exit code 3: <the routine's last line>") kept about
    # 20 characters of the routine's line, on a terminal of 200 columns too.
    reason = "exit code 3: " + " ".join(f"word{n}" for n in range(30)) + " the end"
    row = {"id": 7, "routine": "snow_cover", "state": "terminated", "lane": "nrt", "deadline_at": None, "tile": "32TLR",
           "worker": "w01", "attempts": 3, "failures": 3, "planned_start": None, "input_path": "/in/a", "state_reason": reason}

    def printed(width: int) -> str:
        out = io.StringIO()
        views.tasks(Console(file=out, width=width, color_system=None), [row])
        return out.getvalue()

    wide = printed(400)
    assert reason in wide and "…" not in wide, "whole where the line has room"
    row_line = next(line for line in printed(200).splitlines() if "snow_cover" in line)
    shown = row_line.rstrip(" │").rsplit("│ ", 1)[1]
    assert len(row_line) == 200 and shown.endswith("…") and len(shown) > 90, (row_line, "the rest of the line")
    narrow = " ".join(printed(60).split())
    assert "a block per row" in narrow and "word29 the end" in narrow and "…" not in narrow, "whole in blocks"
