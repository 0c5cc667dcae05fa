"""`hrwsi db ...`: the database: start, stop, URL, install or migrate, check (moved from cli.py)."""

from __future__ import annotations

import psycopg
import typer

from hrwsi import migrations
from hrwsi.cli.common import CliError, app, console, settings, url
from hrwsi.database import connect, names_embedded_server, redact, start_embedded, stop_embedded

db_app = typer.Typer(help="The database: start, stop, migrate, check.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("start")
def db_start() -> None:
    """Start (or reuse) the embedded PostgreSQL server and print its URL. A server that runs from an
    installation replaced or removed since is restarted from this one."""
    current = settings()
    if current.database_url and not names_embedded_server(current.database_url, current.pgdata):
        console.print(f"HRWSI_DATABASE_URL is set ({redact(current.database_url)}): no embedded server needed")
        return
    started = start_embedded(current.pgdata, restart_stale=True)  # (a restart is logged: a warning)
    console.print(f"embedded PostgreSQL running; data in {current.pgdata}", style="green", highlight=False, markup=False)
    print(started)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server."""
    current = settings()
    if current.database_url and not names_embedded_server(current.database_url, current.pgdata):
        # (it stopped the embedded server under services that used it, while the URL named another)
        console.print(f"HRWSI_DATABASE_URL is set ({redact(current.database_url)}), and it is not the embedded "
                      f"server of {current.pgdata}: hrwsi does not stop it; nothing stopped", highlight=False,
                      markup=False)
        return
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
    """Install the schema (sql/schema.sql) in an empty database, or apply the pending migrations (idempotent)."""
    with connect(url()) as conn:
        fresh = not migrations.applied_versions(conn)
        try:
            applied = migrations.migrate(conn)
        except (migrations.UnrecordedSchema, migrations.NewerSchema) as error:
            raise CliError(str(error), 2) from None
        except psycopg.errors.InsufficientPrivilege as error:
            # (the general advice named hrwsi_service, which may run the services but not install them:
            # found by exploratory testing)
            raise CliError(f"not allowed: {error.diag.message_primary or error}; `hrwsi db init` creates and changes "
                           "the schema: run it as the schema's owner (for a new database, a role that may create "
                           "in it), not as a role granted hrwsi_service or hrwsi_data_engineer", 1) from None
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

    differences = compare_with_fresh_install(url())
    if differences:
        for line in differences:  # definitions hold brackets (TG_ARGV[0]) that are not markup
            console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print("schema equals a fresh install")
