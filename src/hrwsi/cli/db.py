"""`hrwsi db ...`: the database: start, stop, URL, migrate, check (moved from cli.py unchanged)."""

from __future__ import annotations

import typer

from hrwsi import migrations
from hrwsi.cli.common import app, console, settings, url
from hrwsi.database import connect, redact, start_embedded, stop_embedded

db_app = typer.Typer(help="The database: start, stop, migrate, check.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("start")
def db_start() -> None:
    """Start (or reuse) the embedded PostgreSQL server and print its URL."""
    current = settings()
    if current.database_url:
        console.print(f"HRWSI_DATABASE_URL is set ({redact(current.database_url)}): no embedded server needed")
        return
    started = start_embedded(current.pgdata)
    console.print(f"embedded PostgreSQL running; data in {current.pgdata}", style="green", highlight=False)
    print(started)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server."""
    current = settings()
    if stop_embedded(current.pgdata):
        console.print(f"stopped the embedded server in {current.pgdata}")
    else:
        console.print(f"no embedded server runs in {current.pgdata}")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL hrwsi uses (starting the embedded server if needed)."""
    print(url())


@db_app.command("init")
def db_init() -> None:
    """Apply the versioned migrations in sql/migrations (idempotent)."""
    with connect(url()) as conn:
        applied = migrations.migrate(conn)
    console.print(f"applied {', '.join(applied)}" if applied else "schema up to date")


@db_app.command("check")
def db_check() -> None:
    """Compare this database's schema with a fresh install of the migrations."""
    from hrwsi.schema import compare_with_fresh_install

    differences = compare_with_fresh_install(url())
    if differences:
        for line in differences:
            console.print(f"[red]{line}[/red]")
        raise typer.Exit(1)
    console.print("schema equals a fresh install")
