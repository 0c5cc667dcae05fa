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
         verbose: bool = typer.Option(False, "--verbose", "-v", help="log the services to the terminal too")) -> None:
    """Run the whole loop on sample data: plan, run, chain, retry; then print a summary."""
    from hrwsi.demo import BACKENDS, run_demo

    # Refused before anything is done: an unknown backend was said after the previous demo's home was removed,
    # the configuration loaded and the INSERT printed (found walking README through).
    if backend not in BACKENDS:
        raise CliError(f"unknown demo backend {visible(backend)!r}: {' or '.join(BACKENDS)}", 2)
    ok = run_demo(settings(), console, inputs=inputs, backend=backend, home=home, timeout_s=timeout, verbose=verbose)
    raise typer.Exit(0 if ok else 1)
