"""What the CLI prints: status, task lists, one task's story."""

from __future__ import annotations

from datetime import datetime

import psycopg
from rich.console import Console
from rich.table import Table

from hrwsi.sql_files import query


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z" if value else "-"


def state_counts(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute(query("report_task_counts")).fetchall())


def print_status(conn: psycopg.Connection, console: Console, failures: int = 10) -> None:
    tasks = state_counts(conn)
    jobs = dict(conn.execute(query("report_job_counts")).fetchall())
    table = Table(title="tasks and jobs per state")
    table.add_column("state")
    table.add_column("tasks", justify="right")
    table.add_column("jobs", justify="right")
    for state in sorted(set(tasks) | set(jobs)):
        table.add_row(state, str(tasks.get(state, "")), str(jobs.get(state, "")))
    console.print(table)
    unplannable = conn.execute(query("report_unplannable"), {"limit": 10}).fetchall()
    if unplannable:
        console.print("[yellow]tasks that cannot be planned:[/yellow]")
        for task_id, routine, reason in unplannable:
            console.print(f"  task {task_id} ({routine}): {reason}", highlight=False)
    rows = conn.execute(query("report_recent_failures"), {"limit": failures}).fetchall()
    if rows:
        table = Table(title="recent failures")
        for column in ("task", "routine", "attempt", "state", "exit", "message", "finished", "log"):
            table.add_column(column)
        for task_id, routine, attempt, state, exit_code, message, finished, log in rows:
            table.add_row(str(task_id), routine, str(attempt), state, "" if exit_code is None else str(exit_code),
                          (message or "")[:80], _time(finished), log or "")
        console.print(table)


def print_tasks(conn: psycopg.Connection, console: Console, *, state=None, routine=None, tile=None,
                limit: int = 50) -> int:
    rows = conn.execute(query("report_tasks"), {"state": state, "routine": routine, "tile": tile,
                                               "limit": limit}).fetchall()
    table = Table(title=f"tasks ({len(rows)} shown, newest first)")
    for column in ("id", "routine", "state", "tile", "worker", "attempts", "planned start", "input", "reason"):
        table.add_column(column)
    for (task_id, routine_, state_, tile_, worker, attempts, failures, planned_start, _updated, path,
         reason) in rows:
        table.add_row(str(task_id), routine_, state_, tile_ or "", worker or "", f"{attempts} ({failures} failed)",
                      _time(planned_start), path, (reason or "")[:60])
    console.print(table)
    return len(rows)


def print_task(conn: psycopg.Connection, console: Console, task_id: int, ui_link=None) -> bool:
    cursor = conn.execute(query("report_task"), {"task_id": task_id})
    row = cursor.fetchone()
    if row is None:
        console.print(f"[red]no task {task_id}[/red]")
        return False
    task = dict(zip([c.name for c in cursor.description], row))
    console.print(f"[bold]task {task_id}[/bold] ({task['routine']}): {task['state']}"
                  + (f" — {task['state_reason']}" if task["state_reason"] else ""), highlight=False)
    console.print(f"  input {task['input_id']} ({task['processing_condition']}): {task['input_path']}", highlight=False)
    console.print(f"  tile {task['tile'] or '-'}, mission {task['mission'] or '-'}, measured "
                  f"{_time(task['measured_at'])}, published {_time(task['published_at'])}", highlight=False)
    console.print(f"  worker {task['worker'] or '-'}, planned {_time(task['planned_start'])} -> "
                  f"{_time(task['planned_end'])}, depends on {task['depends_on'] or 'nothing'}, "
                  f"attempts {task['attempts']} ({task['failures']} failed)", highlight=False)
    history = Table(title="history")
    for column in ("at", "state", "attempts", "worker", "reason"):
        history.add_column(column)
    for state, reason, attempts, worker, at in conn.execute(query("report_task_history"), {"task_id": task_id}):
        history.add_row(_time(at), state, str(attempts), worker or "", reason or "")
    console.print(history)
    jobs = Table(title="attempts")
    for column in ("attempt", "backend", "job", "state", "exit", "submitted", "started", "finished", "log", "link"):
        jobs.add_column(column)
    for (attempt, backend, backend_job_id, _worker, state, exit_code, message, submitted, started, finished,
         log) in conn.execute(query("report_task_jobs"), {"task_id": task_id}):
        link = ui_link(backend, backend_job_id) if ui_link else None
        jobs.add_row(str(attempt), backend, backend_job_id, state + (f": {message}" if message else ""),
                     "" if exit_code is None else str(exit_code), _time(submitted), _time(started),
                     _time(finished), log or "", link or "")
    console.print(jobs)
    products = conn.execute(query("report_task_products"), {"task_id": task_id}).fetchall()
    for path, product_type, size, _created in products:
        console.print(f"  product {product_type}: {path} ({size} bytes)", highlight=False)
    return True
