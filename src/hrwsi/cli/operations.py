"""Operator actions: `hrwsi retry|cancel|hold|release|move-tasks|chain-missed` (SQL functions, moved from cli.py; `retry --routine`
for many at once) and `hrwsi prune` (the retention policy, hrwsi.retention)."""

from __future__ import annotations

import psycopg
import typer
from rich.text import Text

from hrwsi.backends.ascii_decimal import ascii_decimal, is_ascii_decimal
from hrwsi.cli.common import ID_MAX, CliError, app, console, database, interrupted, whole_argument, whole_option
from hrwsi.sql_files import query
from hrwsi.terminal import one_sentence, quoted, visible

_WHERE_TO_LOOK = {"task": "`hrwsi tasks` lists the tasks", "routine": "`hrwsi config show` lists the routines"}


def _operator_action(sql_text: str, argument, kind: str) -> None:
    if kind == "task" and not 0 < argument <= ID_MAX:  # (beyond a bigint, the SQL function was not even found)
        raise CliError(f"no task {argument}: {_WHERE_TO_LOOK[kind]}")
    with database(autocommit=True) as conn:
        try:
            console.print(visible(conn.execute(sql_text, (argument,)).fetchone()[0]), highlight=False, markup=False)
        except psycopg.errors.NoDataFound as error:  # (its name as given: one_sentence)
            raise CliError(f"{one_sentence(error.diag.message_primary)}: {_WHERE_TO_LOOK[kind]}") from None
        except psycopg.errors.CheckViolation as error:
            raise CliError(one_sentence(error.diag.message_primary)) from None


def _task_id_of(target: str) -> int | None:
    """The task id TARGET writes in ASCII digits, perhaps after a minus, or None when it writes none (a
    routine's name). str.isdigit is true of '\u00b2', which int() refuses (`hrwsi hold \u00b2` ended in "invalid
    literal for int()"), and of other scripts' digits, which int() reads as another task's id (found by
    exploratory testing); routine names are ASCII, so such a target names no routine. An id of more digits
    than a bigint holds is no task (int() of 5,000 digits said "Exceeds the limit (4300 digits) for integer
    string conversion"; found by review)."""
    digits = target.removeprefix("-")
    if not is_ascii_decimal(digits):
        return None
    number = ascii_decimal(digits, max_digits=len(str(ID_MAX)))
    if number is None:
        raise CliError(f"no task {target}: {_WHERE_TO_LOOK['task']}")
    return -number if digits != target else number


RETRY_STATES = ("terminated", "cancelled", "on_hold", "blocked")  # (what hrwsi.retry_task takes)


@app.command()
def retry(task_id: int | None = whole_argument(None, help="a task id; or --routine for all of a routine's"),
          routine: str | None = typer.Option(None, help="retry the routine's tasks in --state (oldest first)"),
          state: str = typer.Option("terminated", help=f"with --routine: {', '.join(RETRY_STATES)}"),
          limit: int = whole_option(100, min=1, max=100_000, help="with --routine: at most this many")) -> None:
    """Plan a terminated, cancelled, held or blocked task again (its failure count starts afresh); with
    --routine, each of a routine's tasks in --state, one by one through hrwsi.retry_task."""
    if (task_id is None) == (routine is None):
        raise CliError("give a task id, or --routine (with --state, terminated by default): `hrwsi retry 42`, "
                       "`hrwsi retry --routine snow_cover --state terminated`", 2)
    if task_id is not None:
        _operator_action("SELECT hrwsi.retry_task(%s)", task_id, "task")
        return
    _retry_routine(routine, state, limit)


def _retry_routine(routine: str, state: str, limit: int) -> None:
    """Each task through hrwsi.retry_task in its own transaction, so that its rules and its audit hold
    (restarting a middle step's terminated tasks took SQL: found by exploratory testing); one that
    is refused (it changed state meanwhile) is said, and the others go on."""
    if state not in RETRY_STATES:
        raise CliError(f"--state {quoted(state)} cannot be retried: one of {', '.join(RETRY_STATES)}", 2)
    with database(autocommit=True) as conn:
        routines = conn.execute(query("report_known_names")).fetchone()[0]
        if routine not in routines:
            raise CliError(f"no routine {quoted(routine)}: one of {', '.join(routines) or '(none configured)'}", 2)
        rows = conn.execute(query("report_tasks_to_retry"), {"routine": routine, "state": state, "limit": limit}).fetchall()
        total = rows[0][1] if rows else 0
        retried, refused = 0, 0
        try:
            for task, _ in rows:
                try:
                    said = conn.execute("SELECT hrwsi.retry_task(%s)", (task,)).fetchone()[0]
                    retried += 1
                except (psycopg.errors.CheckViolation, psycopg.errors.NoDataFound) as error:
                    said, refused = f"refused: {one_sentence(error.diag.message_primary)}", refused + 1
                console.print(Text(visible(said)), soft_wrap=True)
        except Exception as error:  # noqa: BLE001 - said with how far it got, then as every error is
            # Safe to run again: each retry commits alone (autocommit) and the next run lists only the tasks still
            # in --state; the one cut off was rolled back, or committed and is no longer listed.
            raise interrupted(error, f"stopped after {_retried(retried, refused, total, state, routine)}: each is "
                                     "retried in a transaction of its own, so running the same command again is safe "
                                     f"(it retries the tasks still {state})") from error
    left = f"; {total - len(rows)} more remain (--limit)" if total > len(rows) else ""
    console.print(_retried(retried, refused, total, state, routine) + left, highlight=False, markup=False)
    if refused:
        raise typer.Exit(1)


def _retried(retried: int, refused: int, total: int, state: str, routine: str) -> str:
    return (f"{retried} of {total} {state} task(s) of routine {visible(routine)} retried"
            + (f", {refused} refused" if refused else ""))


@app.command()
def cancel(task_id: int = whole_argument(..., help="a task id")) -> None:  # (a plain int cancelled task 10 for `1_0`)
    """Cancel a task; a running job of it is stopped."""
    _operator_action("SELECT hrwsi.cancel_task(%s)", task_id, "task")


@app.command()
def hold(target: str = typer.Argument(..., help="a task id, or a routine name")) -> None:
    """Hold a task, or a routine (its new and waiting tasks), until released."""
    task_id = _task_id_of(target)
    if task_id is not None:  # (a negative number is no task, not a routine named "-1")
        _operator_action("SELECT hrwsi.hold_task(%s)", task_id, "task")
    else:
        _operator_action("SELECT hrwsi.hold_routine(%s)", target, "routine")


@app.command()
def release(target: str = typer.Argument(..., help="a task id, or a routine name")) -> None:
    """Release a held task, or a held routine and its tasks."""
    task_id = _task_id_of(target)
    if task_id is not None:  # (a negative number is no task, not a routine named "-1")
        _operator_action("SELECT hrwsi.release_task(%s)", task_id, "task")
    else:
        _operator_action("SELECT hrwsi.release_routine(%s)", target, "routine")


@app.command("move-tasks")
def move_tasks(from_routine: str = typer.Argument(..., help="the routine whose tasks move (e.g. one renamed in the file)"),
               to_routine: str = typer.Argument(..., help="the routine they move to: it reads the same input type")) -> None:
    """Move a routine's production tasks that have not started (pending, planned, blocked, held) to
    another routine that reads the same input type; those under way end where they started."""
    with database(autocommit=True) as conn:
        try:
            said = conn.execute("SELECT hrwsi.move_tasks(%s, %s)", (from_routine, to_routine)).fetchone()[0]
        except psycopg.errors.NoDataFound as error:
            raise CliError(f"{one_sentence(error.diag.message_primary)}: {_WHERE_TO_LOOK['routine']}") from None
        except psycopg.errors.CheckViolation as error:
            raise CliError(one_sentence(error.diag.message_primary)) from None
    console.print(Text(visible(said)), soft_wrap=True)


@app.command("chain-missed")
def chain_missed(condition: str = typer.Argument(..., help="an active single-input condition"),
                 since: str | None = typer.Option(None, help="only products made from then on (2026-11-01, UTC)"),
                 limit: int = whole_option(10_000, min=1, max=1_000_000, help="at most this many inputs a run"),
                 dry_run: bool = typer.Option(False, "--dry-run", help="count them; chain nothing")) -> None:
    """Chain to a condition the products of the type it reads that were made while it was inactive (or
    before it existed): the harvester chains a product once, into the conditions active then. Its
    rules (tiles, measurement window, lanes); idempotent: a product chained to it already is skipped."""
    from hrwsi import campaigns

    try:
        made_since = campaigns.parse_time(since) if since is not None else None
    except ValueError as error:
        raise CliError(str(error), 2) from None
    with database(autocommit=True) as conn:
        try:
            said = conn.execute("SELECT summary FROM hrwsi.chain_missed_products(%s, %s, %s, %s)",
                                (condition, made_since, limit, dry_run)).fetchone()[0]
        except psycopg.errors.NoDataFound as error:
            raise CliError(f"{one_sentence(error.diag.message_primary)}: `hrwsi config show` lists the conditions") from None
        except psycopg.errors.CheckViolation as error:
            raise CliError(one_sentence(error.diag.message_primary)) from None
        except psycopg.errors.LockNotAvailable as error:  # (hrwsi.chain_missed_products waits for a correction too)
            from hrwsi.harvest.corrections import correction_waited_for

            waited = correction_waited_for(conn, error)
            if waited is None:
                raise
            raise CliError(f"hrwsi chain-missed {waited}, and chained nothing: run it again once that correction commits "
                           "or rolls back (`hrwsi status` names a session left open)", 2) from None
    console.print(Text(visible(said)), soft_wrap=True)


@app.command()
def prune(dry_run: bool = typer.Option(False, "--dry-run", help="count what would be deleted; delete nothing"),
          as_json: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
    """Delete old finished work now under the retention policy (`hrwsi config show` shows it;
    README.md, Retention), in small batches that do not block running services."""
    import asyncio

    from hrwsi import retention
    from hrwsi.cli.common import print_json, settings, url
    from hrwsi.database import connect_once

    current = settings()
    database_url = url(start=False)

    async def run():
        conn = await connect_once(database_url, application_name="hrwsi-prune")  # (READ COMMITTED, UTC: hrwsi's)
        try:
            if dry_run:
                return await retention.preview(conn)
            return (await retention.prune(conn, current.data_dir)).as_json()
        finally:
            await conn.close()

    result = asyncio.run(run())
    if as_json:
        print_json(result)
    elif dry_run:
        console.print("would delete: " + ", ".join(f"{n} {rule.replace('_', ' ')}" for rule, n in result.items())
                      + " (files are counted when they are removed)", highlight=False)
    else:
        rows = ", ".join(f"{n} {rule.replace('_', ' ')}" for rule, n in sorted(result["rows"].items()))
        console.print(f"deleted {rows or 'nothing'}; {result['files_removed']} file(s) removed in "
                      f"{result['seconds']:.1f} s", highlight=False)
        for error in result["file_errors"]:
            console.print(visible(f"could not remove {error}"), style="yellow", markup=False)
        for rule, error in result["rule_errors"].items():
            console.print(visible(f"rule {rule} failed: {error}; the other rules ran"), style="red", markup=False)
    if not dry_run and result["rule_errors"]:
        raise typer.Exit(1)
