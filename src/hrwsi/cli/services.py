"""`hrwsi harvester|orchestrator|launcher|up|web|health`: running the services (moved from cli.py)."""

from __future__ import annotations

import logging

import typer

from hrwsi import event_loop
from hrwsi.cli.common import CliError, app, console, seconds_option, settings, setup_logging, url
from hrwsi.database import connect
from hrwsi.migrations import build_version
from hrwsi.sql_files import query
from hrwsi.terminal import quoted

logger = logging.getLogger(__name__)

_BACKEND_HELP = "local (default, HRWSI_BACKEND), nomad or dry-run"


def _run_services(kinds: list[str], backend: str | None, verbose: bool) -> None:
    from hrwsi.app import App, SchemaNotReady

    current = settings()
    _check_service_settings(kinds, backend or current.backend)
    try:
        loop = event_loop.choose(current.event_loop, kinds, backend or current.backend)
    except event_loop.EventLoopError as error:
        raise CliError(str(error), 2) from None
    setup_logging(current, kinds, verbose)
    database_url = url()

    async def serve() -> None:
        logger.info("%s (hrwsi %s) on the %s event loop (HRWSI_EVENT_LOOP=%s)", ", ".join(kinds), build_version(),
                    loop, current.event_loop)
        async with App(database_url, kinds, current, backend=backend, migrate=True, handle_signals=True,
                       freeze_startup_objects=True) as running:
            await running.wait()

    try:
        event_loop.runner(loop)(serve())
    except SchemaNotReady as error:
        raise CliError(str(error), 2) from None


def _check_service_settings(kinds: list[str], backend: str) -> None:
    """The settings the services read as they are built, read before the log says anything: a refused one is the
    only line. `hrwsi launcher --backend foo` (or a bad NOMAD_ADDR) and `hrwsi orchestrator` with a bad
    HRWSI_ALERT_SMTP_PORT logged the services' start and applied migrations, then refused it (found by review)."""
    from hrwsi.alerts import AlertSettings
    from hrwsi.backends import check_backend_settings

    try:
        if "launcher" in kinds:
            check_backend_settings(backend)
        if "orchestrator" in kinds:
            AlertSettings.from_env()
    except ValueError as error:
        raise CliError(str(error), 2) from None


@app.command()
def harvester(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the harvester: chaining, multi-input rules, landing directories and catalogues."""
    _run_services(["harvester"], None, verbose)


@app.command()
def orchestrator(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the orchestrator: create tasks for new inputs, plan them onto workers, send alerts, prune."""
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


# -- web dashboard (issue 13; moved from cli.py) ---------------------------------------------------
def _check_web_settings() -> None:
    """HRWSI_WEB_* are read before anything starts: a bad one is one line, not a traceback."""
    from hrwsi.web.auth import TokenSettingError
    from hrwsi.web.config import WebSettings

    try:
        WebSettings.from_env()
    except (TokenSettingError, ValueError) as error:
        raise CliError(str(error), 2) from None


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
        raise CliError(str(error), 2) from None


@app.command()
def health(service: str = typer.Argument(..., help="harvester, orchestrator, launcher or web"),
           fresh_s: float = seconds_option(30.0, help="a heartbeat older than this is stale")) -> None:
    """Exit 0 when an instance of SERVICE has a fresh heartbeat (for Nomad script checks)."""
    from hrwsi.app import SERVICE_KINDS

    if service not in SERVICE_KINDS:  # (a misspelt name read as an outage: a check that failed for ever)
        raise typer.BadParameter(f"{quoted(service)} is no service: choose from {', '.join(SERVICE_KINDS)}",
                                 param_hint="SERVICE")
    with connect(url(start=False)) as conn:
        rows = conn.execute(query("report_service_health"), {"kind": service, "fresh_s": fresh_s}).fetchall()
    if not any(r[5] for r in rows):
        console.print(f"no {service} with a heartbeat in the last {fresh_s:.0f} s")
        raise typer.Exit(1)
    console.print(f"{service} healthy")
