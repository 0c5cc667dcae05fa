"""The `hrwsi` command line: database, services, reports, demo."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from hrwsi import migrations
from hrwsi.database import DatabaseUnavailable, connect, redact, resolve_url, start_embedded, stop_embedded
from hrwsi.settings import Settings
from hrwsi.sql_files import query

app = typer.Typer(help="hrwsi: a PostgreSQL LISTEN/NOTIFY reactive engine for Earth-observation production.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="The database: start, stop, migrate, check.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration as data: routines, conditions, flavours, workers, budget.",
                         no_args_is_help=True)
task_app = typer.Typer(help="One task.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(task_app, name="task")

console = Console()
logger = logging.getLogger("hrwsi")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else os.environ.get("HRWSI_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def _settings() -> Settings:
    return Settings.from_env()


def _url(start: bool = True) -> str:
    try:
        return resolve_url(_settings(), start=start)
    except DatabaseUnavailable as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


# -- database -----------------------------------------------------------------------------------
@db_app.command("start")
def db_start() -> None:
    """Start (or reuse) the embedded PostgreSQL server and print its URL."""
    settings = _settings()
    if settings.database_url:
        console.print(f"HRWSI_DATABASE_URL is set ({redact(settings.database_url)}): no embedded server needed")
        return
    url = start_embedded(settings.pgdata)
    console.print(f"embedded PostgreSQL running; data in {settings.pgdata}", style="green", highlight=False)
    print(url)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server."""
    settings = _settings()
    if stop_embedded(settings.pgdata):
        console.print(f"stopped the embedded server in {settings.pgdata}")
    else:
        console.print(f"no embedded server runs in {settings.pgdata}")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL hrwsi uses (starting the embedded server if needed)."""
    print(_url())


@db_app.command("init")
def db_init() -> None:
    """Install the schema (sql/schema.sql) in an empty database, or apply the pending migrations (idempotent)."""
    with connect(_url()) as conn:
        fresh = not migrations.applied_versions(conn)
        try:
            applied = migrations.migrate(conn)
        except migrations.UnrecordedSchema as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(2) from None
    if not applied:
        console.print("schema up to date")
    elif fresh:  # soft_wrap: a migration's name is not broken over two lines
        console.print(f"installed the current schema (sql/schema.sql) and recorded as applied {', '.join(applied)}",
                      soft_wrap=True)
    else:
        console.print(f"applied {', '.join(applied)}", soft_wrap=True)


@db_app.command("check")
def db_check() -> None:
    """Compare this database's schema with a fresh install of sql/schema.sql."""
    from hrwsi.schema import compare_with_fresh_install

    differences = compare_with_fresh_install(_url())
    if differences:
        for line in differences:  # definitions hold brackets (TG_ARGV[0]) that are not markup
            console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print("schema equals a fresh install")


# -- configuration ---------------------------------------------------------------------------------
@config_app.command("load")
def config_load(path: Path) -> None:
    """Load routines, conditions, flavours, workers and budget from a TOML file (upsert)."""
    from hrwsi.configuration import ConfigurationError, load_file

    with connect(_url()) as conn:
        try:
            counts = load_file(conn, path)
        except ConfigurationError as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(2) from None
    console.print(", ".join(f"{n} {kind}" for kind, n in counts.items()))


# -- services --------------------------------------------------------------------------------
def _run_services(kinds: list[str], backend: str | None, verbose: bool) -> None:
    from hrwsi.app import App, SchemaNotReady

    setup_logging(verbose)
    settings = _settings()
    url = _url()

    async def serve() -> None:
        async with App(url, kinds, settings, backend=backend, migrate=True, handle_signals=True) as app:
            await app.wait()

    try:
        asyncio.run(serve())
    except SchemaNotReady as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


_BACKEND_HELP = "local (default, HRWSI_BACKEND), nomad or dry-run"


@app.command()
def harvester(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the harvester: chaining, multi-input rules, landing directories and catalogues."""
    _run_services(["harvester"], None, verbose)


@app.command()
def orchestrator(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the orchestrator: create tasks for new inputs and plan them onto workers."""
    _run_services(["orchestrator"], None, verbose)


@app.command()
def launcher(backend: str | None = typer.Option(None, help=_BACKEND_HELP),
             verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the launcher: dispatch ready tasks, follow their jobs, record outcomes."""
    _run_services(["launcher"], backend, verbose)


@app.command()
def up(backend: str | None = typer.Option(None, help=_BACKEND_HELP),
       web: bool = typer.Option(True, "--web/--no-web", help="also serve the web dashboard (HRWSI_WEB_PORT)"),
       verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run harvester, orchestrator and launcher (and the web dashboard) in one process."""
    if web:  # web dashboard (issue 13)
        _check_web_settings()
    _run_services(["harvester", "orchestrator", "launcher", *(["web"] if web else [])], backend, verbose)


# -- web dashboard (issue 13) ------------------------------------------------------------------
def _check_web_settings() -> None:
    """HRWSI_WEB_* are read before anything starts: a bad one is one line, not a traceback."""
    from hrwsi.web.auth import TokenSettingError
    from hrwsi.web.config import WebSettings

    try:
        WebSettings.from_env()
    except (TokenSettingError, ValueError) as error:
        console.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(2) from None


@app.command("web")
def web_dashboard(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Serve the live web dashboard on HRWSI_WEB_HOST:HRWSI_WEB_PORT (default 127.0.0.1:8470).

    Operator actions need HRWSI_WEB_TOKEN (one token, or name:token,name:token); without it the
    dashboard is read-only. It also serves /metrics, /healthz and /readyz."""
    from hrwsi.web.service import DashboardUnavailable

    _check_web_settings()
    try:
        _run_services(["web"], None, verbose)
    except DashboardUnavailable as error:
        console.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def health(service: str = typer.Argument(..., help="harvester, orchestrator or launcher"),
           fresh_s: float = typer.Option(30.0, help="a heartbeat older than this is stale")) -> None:
    """Exit 0 when an instance of SERVICE has a fresh heartbeat (for Nomad script checks)."""
    with connect(_url(start=False)) as conn:
        rows = conn.execute(query("report_service_health"), {"kind": service, "fresh_s": fresh_s}).fetchall()
    if not any(r[5] for r in rows):
        console.print(f"no {service} with a heartbeat in the last {fresh_s:.0f} s")
        raise typer.Exit(1)
    console.print(f"{service} healthy")


# -- operator actions ------------------------------------------------------------------------
def _operator_action(sql_text: str, argument) -> None:
    import psycopg

    with connect(_url(start=False), autocommit=True) as conn:
        try:
            console.print(conn.execute(sql_text, (argument,)).fetchone()[0], highlight=False)
        except (psycopg.errors.CheckViolation, psycopg.errors.NoDataFound) as error:
            console.print(f"[red]{error.diag.message_primary}[/red]")
            raise typer.Exit(1) from None


@app.command()
def retry(task_id: int) -> None:
    """Plan a terminated, cancelled or held task again (its failure count starts afresh)."""
    _operator_action("SELECT hrwsi.retry_task(%s)", task_id)


@app.command()
def cancel(task_id: int) -> None:
    """Cancel a task; a running job of it is stopped."""
    _operator_action("SELECT hrwsi.cancel_task(%s)", task_id)


@app.command()
def hold(target: str = typer.Argument(..., help="a task id, or a routine name")) -> None:
    """Hold a task, or a routine (its new and waiting tasks), until released."""
    if target.isdigit():
        _operator_action("SELECT hrwsi.hold_task(%s)", int(target))
    else:
        _operator_action("SELECT hrwsi.hold_routine(%s)", target)


@app.command()
def release(target: str = typer.Argument(..., help="a task id, or a routine name")) -> None:
    """Release a held task, or a held routine and its tasks."""
    if target.isdigit():
        _operator_action("SELECT hrwsi.release_task(%s)", int(target))
    else:
        _operator_action("SELECT hrwsi.release_routine(%s)", target)


# -- plans and sources -----------------------------------------------------------------------
plan_app = typer.Typer(help="Plans made by the orchestrator.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")


@plan_app.command("show")
def plan_show(plan_id: int | None = typer.Option(None, "--id", help="a plan id (default: the latest)"),
              plot: Path | None = typer.Option(None, help="write a Gantt chart (PNG) here")) -> None:
    """A stored plan's figures (makespan vs lower bound, VMs, VM-hours) and, with --plot, its Gantt chart."""
    from hrwsi.reports import print_plan

    with connect(_url(start=False)) as conn:
        if not print_plan(conn, console, plan_id, str(plot) if plot else None):
            raise typer.Exit(1)


@app.command()
def sources() -> None:
    """Harvest sources: kind, schedule, mode, last and next run, last error."""
    from rich.table import Table

    from hrwsi.harvest.sources import list_sources

    with connect(_url(start=False)) as conn:
        rows = list_sources(conn)
    table = Table(title=f"{len(rows)} source(s)")
    columns = ("name", "kind", "product_type", "schedule", "mode", "last_run_at", "next_run_at", "last_error")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


# -- Nomad -----------------------------------------------------------------------------------
workers_app = typer.Typer(help="Workers and flavours.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")


@workers_app.command("sync")
def workers_sync() -> None:
    """Fill flavours and workers from Nomad's nodes (NOMAD_ADDR, NOMAD_TOKEN, ...)."""
    from hrwsi.backends.nomad.workers import sync_from_nomad

    with connect(_url()) as conn:
        console.print(sync_from_nomad(conn).summary(), highlight=False)


@app.command("nomad-emulator", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def nomad_emulator(ctx: typer.Context) -> None:
    """Run the Nomad API emulator (a test double, for machines without Nomad); --help for its options."""
    from hrwsi.testing.nomad_emulator.__main__ import main

    raise typer.Exit(main(ctx.args))


# -- reports ---------------------------------------------------------------------------------
@app.command()
def status(failures: int = typer.Option(10, help="how many recent failures to show")) -> None:
    """Counts per state and recent failures."""
    from hrwsi.reports import print_status

    with connect(_url(start=False)) as conn:
        print_status(conn, console, failures)


@app.command()
def tasks(state: str | None = typer.Option(None), routine: str | None = typer.Option(None),
          tile: str | None = typer.Option(None), limit: int = typer.Option(50)) -> None:
    """List tasks, newest first, filtered by state, routine or tile."""
    from hrwsi.reports import print_tasks

    with connect(_url(start=False)) as conn:
        print_tasks(conn, console, state=state, routine=routine, tile=tile, limit=limit)


@task_app.command("show")
def task_show(task_id: int) -> None:
    """A task's history with times, its attempts with exit codes and log paths, its products."""
    from hrwsi.backends import make_backend
    from hrwsi.reports import print_task

    settings, backends = _settings(), {}

    def ui_link(backend: str, backend_job_id: str):
        """The job's page in its backend's UI (Nomad: at NOMAD_ADDR), as the backend builds it."""
        if backend not in backends:
            try:
                backends[backend] = make_backend(backend, settings)
            except ValueError:  # a backend this hrwsi does not know (any more)
                backends[backend] = None
        return backends[backend].ui_link(backend_job_id) if backends[backend] else None

    with connect(_url(start=False)) as conn:
        if not print_task(conn, console, task_id, ui_link):
            raise typer.Exit(1)


# -- timeliness and reprocessing (ADR 0010) -----------------------------------------------------
@app.command()
def timeliness(routine: str | None = typer.Option(None), lane: str | None = typer.Option(None, help="nrt or archive"),
               tile: str | None = typer.Option(None), days: int = typer.Option(7, min=1, help="the last N days"),
               as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables")) -> None:
    """Products' delays from sensing and from publication (p50, p95) and share on time, per routine,
    lane, tile and day; open tasks late or planned to end after their deadline."""
    from hrwsi import timeliness as report

    with connect(_url(start=False)) as conn:
        data = report.report(conn, report.Filters(routine, lane, tile, days))
    if as_json:
        print(report.to_json(data))
    else:
        report.print_report(console, data)


@app.command()
def reprocess(measured_from: str = typer.Option(..., "--from", help="sensing time from (2026-01-01, UTC)"),
              measured_to: str = typer.Option(..., "--to", help="sensing time to, excluded"),
              routine: str | None = typer.Option(None, help="reprocess this routine's inputs ..."),
              condition: str | None = typer.Option(None, help="... or those of one condition"),
              tile: list[str] = typer.Option([], help="only these tiles (repeat it); default: every tile"),
              command: str | None = typer.Option(None, help="run this version of the routine ({python}: hrwsi's)"),
              image: str | None = typer.Option(None, help="run this image of the routine"),
              chain: bool = typer.Option(True, help="its products chain downstream within the campaign"),
              name: str | None = typer.Option(None, help="a label")) -> None:
    """Start a reprocessing campaign: a new task (archive lane) per input already processed; old
    products are kept, new ones are written beside them."""
    import psycopg

    from hrwsi import campaigns

    try:
        request = campaigns.CampaignRequest(
            campaigns.parse_time(measured_from), campaigns.parse_time(measured_to), routine, condition, tuple(tile),
            campaigns.split_command(command), image, chain, name)
    except ValueError as error:
        console.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(2) from None
    with connect(_url(start=False), autocommit=True) as conn:
        try:
            started = campaigns.start(conn, request)
        except (psycopg.errors.CheckViolation, psycopg.errors.NoDataFound, psycopg.errors.ForeignKeyViolation) as error:
            console.print(f"[red]{error.diag.message_primary}[/red]", highlight=False)
            raise typer.Exit(1) from None
    console.print(started["summary"], highlight=False, markup=False, soft_wrap=True)


@app.command("campaigns")
def campaigns_command(campaign: int | None = typer.Option(None, "--id", help="one campaign"),
                      cancel: int | None = typer.Option(None, help="cancel this campaign's open tasks first"),
                      as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables")) -> None:
    """Reprocessing campaigns: tasks per state and products, per routine, started and finished."""
    import psycopg

    from hrwsi import campaigns

    with connect(_url(start=False), autocommit=True) as conn:
        if cancel is not None:
            try:
                console.print(campaigns.cancel(conn, cancel), highlight=False, markup=False)
            except psycopg.errors.NoDataFound as error:
                console.print(f"[red]{error.diag.message_primary}[/red]", highlight=False)
                raise typer.Exit(1) from None
        shown = campaigns.load(conn, campaign)
    if as_json:
        print(campaigns.to_json(shown))
    else:
        campaigns.print_campaigns(console, shown)


# -- demo ------------------------------------------------------------------------------------
@app.command()
def demo(inputs: int = typer.Option(12, help="how many sample L1C scenes to insert"),
         backend: str = typer.Option("local", help="local, or nomad-emulator (the Nomad path through the "
                                                     "project's Nomad API emulator, a test double)"),
         home: Path | None = typer.Option(None, help="where the demo writes (default: HRWSI_HOME/demo)"),
         timeout: float = typer.Option(300.0, help="give up after this many seconds"),
         verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the whole loop on sample data: plan, run, chain, retry; then print a summary."""
    from hrwsi.demo import run_demo

    setup_logging(verbose)
    if not verbose:
        logging.getLogger("hrwsi").setLevel(logging.WARNING)
    settings = _settings()
    ok = run_demo(settings, console, inputs=inputs, backend=backend, home=home, timeout_s=timeout)
    raise typer.Exit(0 if ok else 1)

