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
    for column in ("attempt", "backend", "job", "state", "exit", "submitted", "started", "finished"):
        jobs.add_column(column)
    where = []
    for (attempt, backend, backend_job_id, _worker, state, exit_code, message, submitted, started, finished,
         log) in conn.execute(query("report_task_jobs"), {"task_id": task_id}):
        jobs.add_row(str(attempt), backend, backend_job_id, state + (f": {message}" if message else ""),
                     "" if exit_code is None else str(exit_code), _time(submitted), _time(started),
                     _time(finished))
        link = ui_link(backend, backend_job_id) if ui_link else None
        where.append(f"  attempt {attempt} log: {log or '-'}" + (f"\n  attempt {attempt} in the Nomad UI: {link}"
                                                                 if link else ""))
    console.print(jobs)
    for line in where:
        console.print(line, highlight=False, soft_wrap=True)
    products = conn.execute(query("report_task_products"), {"task_id": task_id}).fetchall()
    for path, product_type, size, _created in products:
        console.print(f"  product {product_type}: {path} ({size} bytes)", highlight=False)
    return True


def load_plan(conn: psycopg.Connection, plan_id: int | None = None):
    """A stored plan as the planner's objects: (plan row, Plan, tasks, workers, budgets), or None."""
    from hrwsi import planner

    row = conn.execute(query("report_plan"), {"plan_id": plan_id}).fetchone()
    if row is None:
        return None
    plan_id, created, task_count, makespan, lower_bound, vms, vm_hours, planning_s = row
    flavours = {name: planner.Flavour(name, float(cpu), ram, disk)
                for name, cpu, ram, disk in conn.execute("SELECT name, cpu, ram_mb, disk_mb FROM hrwsi.flavour")}
    workers = [planner.Worker(name, flavours[flavour])
               for name, flavour in conn.execute("SELECT name, flavour FROM hrwsi.worker ORDER BY name")]
    cpu_max, ram_max, storage_max, vm_max = conn.execute(
        "SELECT cpu_max::float8, ram_max_mb, storage_max_mb, vm_max FROM hrwsi.budget").fetchone()
    budgets = planner.Budgets(cpu_max, ram_max, storage_max, vm_max)
    tasks, assignments = [], {}
    for (task_id, routine, cpu, ram, storage, duration, depends_on, worker, start, end) in conn.execute(
            query("report_plan_tasks"), {"plan_id": plan_id}):
        tasks.append(planner.TaskDemand(task_id, routine, cpu, ram, storage, duration,
                                        (depends_on,) if depends_on else ()))
        assignments[task_id] = planner.Assignment(task_id, worker, max(0.0, start), max(0.0, end))
    figures = planner.PlanFigures(task_count=task_count, makespan_s=makespan, lower_bound_s=lower_bound,
                                  vms=vms, vm_hours=vm_hours, peak_use={}, mean_use={}, planning_s=planning_s)
    return row, planner.Plan(assignments, [], figures), tasks, workers, budgets


def print_plan(conn: psycopg.Connection, console: Console, plan_id: int | None = None,
               plot: str | None = None) -> bool:
    loaded = load_plan(conn, plan_id)
    if loaded is None:
        console.print("[red]no plan stored yet[/red]" if plan_id is None else f"[red]no plan {plan_id}[/red]")
        return False
    row, plan, tasks, workers, budgets = loaded
    plan_id, created, task_count, makespan, lower_bound, vms, vm_hours, planning_s = row
    console.print(f"plan {plan_id} made {_time(created)}: {task_count} task(s) on {vms} VM(s), makespan "
                  f"{makespan:.1f} s, lower bound {lower_bound:.1f} s ({makespan / lower_bound if lower_bound else 1:.3f}"
                  f" x), {vm_hours:.3f} VM-hours, planned in {planning_s * 1000:.0f} ms", highlight=False)
    table = Table(title=f"plan {plan_id}: tasks per worker (still holding this plan)")
    for column in ("worker", "tasks", "first start", "last end"):
        table.add_column(column)
    per_worker: dict[str, list] = {}
    for assignment in plan.assignments.values():
        per_worker.setdefault(assignment.worker, []).append(assignment)
    for worker, items in sorted(per_worker.items()):
        table.add_row(worker, str(len(items)), f"{min(a.start_s for a in items):.1f} s",
                      f"{max(a.end_s for a in items):.1f} s")
    console.print(table)
    if plot:
        from hrwsi.plan_chart import render_gantt

        render_gantt(plan, tasks, workers, budgets, path=plot, title=f"hrwsi plan {plan_id}")
        console.print(f"Gantt chart written to {plot}", highlight=False)
    return True
