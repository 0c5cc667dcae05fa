"""`hrwsi workers sync` and `hrwsi nomad-emulator` (moved from cli.py unchanged)."""

from __future__ import annotations

import typer

from hrwsi.cli.common import app, console, url
from hrwsi.database import connect
from hrwsi.terminal import visible

workers_app = typer.Typer(help="Workers and flavours.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")


@workers_app.command("sync")
def workers_sync() -> None:
    """Fill flavours and workers from Nomad's nodes (NOMAD_ADDR, NOMAD_TOKEN, ...)."""
    from hrwsi.backends.nomad.workers import sync_from_nomad

    with connect(url()) as conn:
        report = sync_from_nomad(conn)
    for line in report.lines():
        console.print(visible(line), highlight=False, markup=False)  # (node names are Nomad's)


@app.command("nomad-emulator", add_help_option=False,  # (its --help is the emulator's own, with its options)
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def nomad_emulator(ctx: typer.Context) -> None:
    """Run the Nomad API emulator (a test double, for machines without Nomad); --help for its options."""
    from hrwsi.testing.nomad_emulator.__main__ import main

    raise typer.Exit(main(ctx.args, prog="hrwsi nomad-emulator"))
