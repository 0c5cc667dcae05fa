"""`hrwsi demo`: the whole loop on sample data (hrwsi.demo)."""

from __future__ import annotations

from pathlib import Path

import typer

from hrwsi.cli.common import CliError, app, console, seconds_option, settings, whole_option
from hrwsi.terminal import visible


@app.command()
def demo(inputs: int = whole_option(12, min=0, help="how many sample L1C scenes to insert"),
         backend: str = typer.Option("local", help="local, or nomad-emulator (the Nomad path through the "
                                                     "project's Nomad API emulator, a test double)"),
         home: Path | None = typer.Option(None, help="where the demo writes (default: HRWSI_HOME/demo)"),
         timeout: float = seconds_option(300.0, help="give up after this many seconds"),
         database: str = typer.Option("hrwsi_demo", help="the database the demo creates (and drops and recreates "
                                                          "on the next run: only one the demo created itself)"),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="log the services to the terminal too")) -> None:
    """Run the whole loop on sample data: plan, run, chain, retry; then print a summary."""
    from hrwsi.demo import BACKENDS, DemoRefused, run_demo

    # Refused before anything is done: an unknown backend was said after the previous demo's home was removed,
    # the configuration loaded and the INSERT printed (found walking README through).
    if backend not in BACKENDS:
        raise CliError(f"unknown demo backend {visible(backend)!r}: {' or '.join(BACKENDS)}", 2)
    # PostgreSQL cuts a longer name to 63 bytes, so the demo would check one name and use another.
    if not database or "\0" in database or len(database.encode()) > 63:
        raise CliError(f"--database {visible(database)!r}: a database name of 1 to 63 bytes", 2)
    try:
        ok = run_demo(settings(), console, inputs=inputs, backend=backend, home=home, timeout_s=timeout,
                      verbose=verbose, database=database)
    except DemoRefused as refused:
        raise CliError(str(refused)) from None
    raise typer.Exit(0 if ok else 1)
