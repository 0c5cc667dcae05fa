"""The reading commands: status, tasks, task show, lineage, groups, alerts, sources, plan show. Each has
`--json`, which prints the same data as JSON (times in UTC, ISO 8601)."""

from __future__ import annotations

from pathlib import Path

import typer

import hrwsi.cli.views as views
from hrwsi import reports
from hrwsi.backends.ascii_decimal import is_ascii_decimal
from hrwsi.cli.common import (
    JSON_HELP,
    CliError,
    app,
    console,
    database,
    days_option,
    error_console,
    filter_given,
    id_option,
    print_json,
    settings,
    whole_argument,
    whole_option,
)
from hrwsi.home import moved_data_dir
from hrwsi.sql_files import query
from hrwsi.terminal import quoted, visible

task_app = typer.Typer(help="One task.", no_args_is_help=True)
app.add_typer(task_app, name="task")
plan_app = typer.Typer(help="The current schedule and the plans made by the orchestrator.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")


@app.command()
def status(failures: int = whole_option(10, min=0, max=1_000_000, help="how many recent failures to show"),
           all_services: bool = typer.Option(False, "--all-services",
                                             help="also list the stale instances a newer one replaced (else counted "
                                                  "in one line)"),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Counts per state, held routines (why, and what happens next), tasks that cannot be planned,
    services and their heartbeats, harvest sources needing attention, the alert outbox, recent failures."""
    current = settings()
    with database() as conn:
        data = reports.status(conn, failures, stale_after_s=current.lease_timeout_s)
    data["home_moved"] = moved_data_dir(current.data_dir, record=False)  # (this host's HRWSI_HOME)
    if as_json:
        print_json(data)
    else:
        views.status(console, data, stale_after_s=current.lease_timeout_s, all_services=all_services)


@app.command()
def tasks(state: list[str] | None = typer.Option(None, help="repeat it for several states (any of them)"),
          routine: str | None = typer.Option(None),
          tile: str | None = typer.Option(None, help="an MGRS tile, e.g. 32TLR (any case)"),
          lane: str | None = typer.Option(None, help="nrt, archive, or another lane of hrwsi.lane"),
          limit: int = whole_option(50, min=1, max=1_000_000),
          before: int | None = id_option(None, help="only tasks older than this task id (the next page)"),
          as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List tasks, newest first, filtered by state, routine, tile or lane; a page at a time."""
    filter_given({"--routine": routine, "--tile": tile, "--lane": lane})
    with database() as conn:
        # A filter naming nothing there is refused, not answered with an empty list as if no task matched.
        # (--state given twice kept the last one only: `--state dispatched --state running` listed no running task)
        if state:
            states = [row[0] for row in conn.execute(query("report_task_state_names"))]
            for name in state:
                if name not in states:  # (it listed no task, as if none were in that state)
                    raise CliError(f"no task state {quoted(name)}: one of {', '.join(states)}", 2)
        if routine is not None or lane is not None:
            routines, lanes = conn.execute(query("report_known_names")).fetchone()
            if routine is not None and routine not in routines:
                raise CliError(f"no routine {quoted(routine)}: one of {', '.join(routines) or '(none configured)'}",
                               2)
            if lane is not None and lane not in lanes:
                raise CliError(f"no lane {quoted(lane)}: one of {', '.join(lanes)}", 2)
        # One more than the page: whether older tasks follow (a page of 50 among 30,000 said nothing of them).
        rows = reports.tasks(conn, states=state, routine=routine, tile=tile.upper() if tile else None, lane=lane,
                             limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    if as_json:
        print_json(rows)
    else:
        views.tasks(console, rows, next_before=rows[-1]["id"] if more else None)


def _ui_links():
    """The job's page in its backend's UI (Nomad: at NOMAD_ADDR), as the backend builds it."""
    from hrwsi.backends import make_backend

    current, backends = settings(), {}

    def ui_link(backend: str, backend_job_id: str) -> str | None:
        if backend not in backends:
            try:
                backends[backend] = make_backend(backend, current)
            except ValueError:  # a backend this hrwsi does not know (any more)
                backends[backend] = None
        return backends[backend].ui_link(backend_job_id) if backends[backend] else None

    return ui_link


@task_app.command("show")
def task_show(task_id: int = whole_argument(..., help="a task id"),  # (a plain int read `1_0` as task 10)
              as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """A task's history with times, its attempts with exit codes and log paths, its products."""
    with database() as conn:
        data = reports.task(conn, task_id)
    if data is None:
        raise CliError(f"no task {task_id}: `hrwsi tasks` lists the tasks")
    ui_link = _ui_links()
    for job in data["jobs"]:
        job["ui_link"] = ui_link(job["backend"], job["backend_job_id"])
    if as_json:
        print_json(data)
    else:
        views.task(console, data, ui_link)


@app.command()
def lineage(target: str = typer.Argument(..., help="a task id, or a product's or an input's path or file name"),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The chain through a task or product: the tasks and products it came from, and those made from it."""
    with database() as conn:
        starts = reports.find_lineage_starts(conn, target)
        if not starts:
            what = (f"no task {target}" if is_ascii_decimal(target)
                    else f"no product or input with path or name {quoted(target)}")
            raise CliError(f"{what}: `hrwsi tasks` lists tasks and inputs, `hrwsi task show ID` a task's products")
        more = len(starts) > reports.LINEAGE_MATCHES
        lineages = [reports.lineage(conn, s["task_id"], s["product_id"]) for s in starts[:reports.LINEAGE_MATCHES]]
    # The first lineage stays at the top (a script written for one match reads it as before); every
    # match is in "lineages", by task id.
    data = {**lineages[0], "lineages": lineages, "more_matches": more}
    if as_json:
        print_json(data)
    else:
        views.lineages(console, data, target)


@app.command()
def groups(condition: str | None = typer.Option(None, help="one multi-input condition"),
           tile: str | None = typer.Option(None, help="an MGRS tile, e.g. 32TLR (any case)"),
           limit: int = whole_option(reports.GROUPS_SHOWN, min=1, max=100_000, help="how many to show, newest first"),
           days: int = days_option(reports.LATE_MEMBER_DAYS, help="late members: of the groups sensed in the last days"),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The multi-input groups (a tile and a window) that have members but no input yet: what each has and
    lacks per requirement, and whether it waits for open work upstream or cannot complete now; then the
    groups whose composite was made and that have members that arrived after it, with the command that
    makes a composite with them."""
    filter_given({"--condition": condition, "--tile": tile})
    with database() as conn:
        if condition is not None:
            rules = [row[0] for row in conn.execute(query("report_multi_input_condition_names"))]
            if condition not in rules:
                raise CliError(f"no multi-input condition {quoted(condition)}: one of "
                               f"{', '.join(rules) or '(none configured)'}", 2)
        data = reports.incomplete_groups(conn, condition, tile, limit)
        data["late"] = reports.late_group_members(conn, condition, tile, days, limit)
        data["placeless"] = reports.placeless_group_members(conn, condition, days)
    if as_json:
        print_json(data)
    else:
        views.groups(console, data)


@app.command()
def alerts(status: str | None = typer.Option(None, help="only sent, unsent or failed alerts"),
           limit: int = whole_option(50, min=1, max=1_000_000, help="how many to show, newest first"),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The alert outbox (terminated tasks, held routines): sent, unsent, and failed with their errors."""
    from hrwsi.alerts import AlertSettings

    if status is not None and status not in reports.ALERT_STATUSES:
        raise CliError(f"--status {quoted(status)}: choose sent, unsent or failed", 2)  # (quoted: '' was unseen)
    alert_settings = AlertSettings.from_env()
    with database() as conn:
        data = reports.alerts(conn, status, limit)
    channels = [name for name, on in (("webhook", alert_settings.webhook_url),
                                      ("e-mail", alert_settings.smtp_host and alert_settings.smtp_recipients)) if on]
    delivery = (", ".join(channels) + " (from this shell's environment)" if channels else
                "no channel configured here (HRWSI_ALERT_WEBHOOK_URL, HRWSI_ALERT_SMTP_*): alerts stay unsent "
                "unless the orchestrator has one")
    if as_json:
        print_json({**data, "delivery": delivery})
    else:
        views.alerts(console, data, delivery)


@app.command()
def sources(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Harvest sources: kind, schedule, mode, last and next run, last error."""
    from hrwsi.harvest.sources import list_sources

    with database() as conn:
        rows = list_sources(conn)
    if as_json:
        print_json(rows)
    else:
        views.sources(console, rows)


def _chart_path(plot: Path | None) -> Path | None:
    """Where --plot writes: a file name (`.png` added when it has no suffix, as matplotlib does)."""
    if plot is None:
        return None
    if str(plot) in ("", ".") or plot.is_dir():
        raise CliError("--plot takes a file name, like plan.png" + ("" if str(plot) in ("", ".")
                                                                     else f": {quoted(plot)} is a directory"))
    return plot if plot.suffix else plot.with_name(plot.name + ".png")


@plan_app.command("show")
def plan_show(plan_id: int | None = id_option(None, "--id", help="a stored plan (default: the current schedule)"),
              plot: Path | None = typer.Option(None, help="write a Gantt chart (PNG) here"),
              limit: int = whole_option(200, min=1, max=10_000_000,
                                        help="the schedule's table shows this many tasks (the figures count all)"),
              as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The current schedule (every task planned, dispatched or running, with its worker and times), or a
    stored plan's figures with --id; --plot draws it as a Gantt chart with the resources in use."""
    from hrwsi.plan_chart import render_gantt

    plot = _chart_path(plot)
    with database() as conn:
        if plan_id is None:
            data = reports.schedule(conn)
            chart = reports.schedule_for_chart(conn, data) if plot else None
            title = f"hrwsi schedule at {views.time(data['at'])}"
        else:
            data = reports.stored_plan(conn, plan_id)
            if data is None:
                raise CliError(f"no plan {plan_id}: `hrwsi plan show` shows the current schedule")
            loaded = reports.load_plan(conn, plan_id) if plot else None
            chart = (*loaded[1:], ()) if loaded else None
            title = f"hrwsi plan {plan_id}"
    if as_json:
        print_json(data)
    elif plan_id is None:
        views.schedule(console, data, limit)
    else:
        views.stored_plan(console, data)
    if plot and chart:
        plan, demands, workers, budgets, fixed = chart
        render_gantt(plan, demands, workers, budgets, fixed, path=str(plot), title=title)
        # With --json, stdout holds the JSON only.
        (error_console if as_json else console).print(visible(f"Gantt chart written to {plot}"), markup=False,
                                                      highlight=False)
