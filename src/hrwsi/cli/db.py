"""`hrwsi db ...`: the database: start, stop, URL, install or migrate, check (moved from cli.py)."""

from __future__ import annotations

import psycopg
import typer

from hrwsi import migrations
from hrwsi.cli.common import CliError, app, console, settings, url
from hrwsi.cli.errors import sql_name
from hrwsi.database import connect, embedded_bin_dir, names_embedded_server, redact, start_embedded, stop_embedded
from hrwsi.terminal import bounded, one_sentence, visible

db_app = typer.Typer(help="The database: start, stop, migrate, check.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("start")
def db_start() -> None:
    """Start (or reuse) the embedded PostgreSQL server and print its URL. A server that runs from an
    installation replaced or removed since is restarted from this one."""
    current = settings()
    if current.database_url and not names_embedded_server(current.database_url, current.pgdata):
        console.print(visible(f"HRWSI_DATABASE_URL is set ({redact(current.database_url)}): no embedded server needed"),
                      highlight=False, markup=False)
        return
    started = start_embedded(current.pgdata, restart_stale=True)  # (a restart is logged: a warning)
    console.print(visible(f"embedded PostgreSQL running; data in {current.pgdata}"), style="green", highlight=False,
                  markup=False)
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
        console.print(visible(f"stopped the embedded server in {current.pgdata}"), highlight=False, markup=False)
    else:
        console.print(visible(f"no embedded server runs in {current.pgdata}"), highlight=False, markup=False)


@db_app.command("url")
def db_url() -> None:
    """Print the database URL hrwsi uses (starting the embedded server if needed)."""
    print(url())


@db_app.command("bindir")
def db_bindir() -> None:
    """Print the directory of the embedded server's programs (pg_dump, pg_restore, pg_dumpall, psql, of the
    server's own version): for backups (README.md, Backup and restore). It starts nothing."""
    print(embedded_bin_dir())


# Databases `hrwsi db init` refuses unless forced: every new database of the server is a copy of
# template1 (a schema installed there is given to each), and template0 must stay as initdb made it.
TEMPLATE_DATABASES = ("template0", "template1")


@db_app.command("init")
def db_init(force: bool = typer.Option(False, "--force", help="install into template0 or template1 all the same")) -> None:
    """Install the schema (sql/schema.sql) in an empty database, or apply the pending migrations (idempotent),
    and re-apply hrwsi's roles and grants where some are missing (a restored dump), saying what it repaired.
    It names the server and database it installs into; it refuses template0 and template1 unless --force."""
    target = url()
    with connect(target) as conn:
        # (it installed silently into template1 and postgres, which HRWSI_DATABASE_URL named by mistake:
        # found by exploratory testing)
        # (printed, and in a refusal: a name may hold anything, a line break too; one_sentence as every refusal)
        where = f"database {one_sentence(conn.info.dbname)} ({bounded(redact(target), one_sentence)})"
        if conn.info.dbname in TEMPLATE_DATABASES and not force:
            raise CliError(f"refusing to install hrwsi into {where}: {conn.info.dbname} is a template database (every "
                           "new database of the server would be created with hrwsi's schema); name hrwsi's own "
                           "database in HRWSI_DATABASE_URL, or pass --force", 2)
        if conn.info.dbname == "postgres":
            console.print(f"warning: installing into {where}, the server's maintenance database; hrwsi is meant to "
                          "have a database of its own (CREATE DATABASE hrwsi)", style="yellow", highlight=False,
                          markup=False, soft_wrap=True)
        fresh = not migrations.applied_versions(conn)
        try:
            applied = migrations.migrate(conn)
            # The roles and grants schema.sql gives, again when some are missing (a database restored
            # from a pg_dump onto a server without hrwsi's roles has none of its grants).
            repaired = migrations.repair_privileges(conn) if not fresh else migrations.Repair([], [], [])
            # (said at each init, not only the one that added them: the rows wait for ops until validated)
            # (those a fresh install has NOT VALID too, and that no row breaks, are not news)
            kept = [rule for rule in migrations.rules_not_valid(conn) if rule.breaking_rows] if not fresh else []
        except (migrations.UnrecordedSchema, migrations.NewerSchema) as error:
            raise CliError(one_sentence(error), 2) from None  # (it names migrations the database records)
        except psycopg.errors.InsufficientPrivilege as error:
            raise CliError(_init_refusal(error.diag.message_primary or str(error), conn.info.user), 1) from None
    if repaired:
        _say_repaired(repaired, where)
    if not applied:
        console.print(f"schema up to date in {where}", highlight=False, markup=False, soft_wrap=True)
    elif fresh:  # soft_wrap: a migration's name is not broken over two lines
        console.print(f"installed the current schema (sql/schema.sql) into {where} and recorded as applied "
                      f"{migrations_said(applied)}", soft_wrap=True, highlight=False, markup=False)
    else:
        console.print(f"applied {migrations_said(applied)} to {where}", soft_wrap=True, highlight=False, markup=False)
    for rule in kept:  # (rows already there that break a rule a migration added: it holds for new rows only)
        console.print(rule.said(), style="yellow", soft_wrap=True, highlight=False, markup=False)


def _say_repaired(repaired: migrations.Repair, where: str) -> None:
    """What `hrwsi db init` re-applied of schema.sql's roles and grants: counts, and the first few."""
    parts = [f"created role(s) {', '.join(repaired.roles)}"] if repaired.roles else []
    for verb, items in (("granted", repaired.granted), ("revoked", repaired.revoked)):
        if items:
            shown = "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")
            parts.append(f"{verb} {len(items)} privilege(s) ({shown})")
    console.print(f"repaired hrwsi's roles and grants in {where} (as sql/schema.sql gives them; a pg_dump holds no "
                  f"roles): {', '.join(parts)}", style="yellow", highlight=False, markup=False, soft_wrap=True)


def migrations_said(names: list[str]) -> str:
    """Migrations by name, a few; many as their range: a fresh database named all 78 in one line
    (found by exploratory testing); sql/migrations/ holds them all."""
    if len(names) <= 3:
        return ", ".join(names)
    return f"the {len(names)} migrations {names[0]} to {names[-1]}"


def _init_refusal(primary: str, role: str) -> str:
    """What `hrwsi db init` refused by the database needs, in one line (README.md, Roles: what a schema
    owner that is not a superuser needs)."""
    who = one_sentence(sql_name(role)) if role else "ROLE"
    if primary.startswith("permission denied to set parameter"):
        # (it told the database's owner to "run it as the schema's owner": it was; a function of the
        # schema SETs a custom parameter, which PostgreSQL 15+ lets only a superuser or a grantee do;
        # found by exploratory testing)
        parameter = primary.split('"')[1] if primary.count('"') >= 2 else "hrwsi.in_dispatch_claim"
        return (f"not allowed: {one_sentence(primary)}; a function of the schema sets it: a superuser must run "
                f"GRANT SET ON PARAMETER {one_sentence(parameter)} TO {who}; then run `hrwsi db init` again (README.md, Roles)")
    if primary.startswith("permission denied to create role"):
        return (f"not allowed: {one_sentence(primary)}; the schema creates the roles hrwsi_readonly, hrwsi_data_engineer and "
                f"hrwsi_service when they are missing: give {who} CREATEROLE, or have a superuser create those three "
                "(NOLOGIN); then run `hrwsi db init` again (README.md, Roles)")
    # (the general advice named hrwsi_service, which may run the services but not install them:
    # found by exploratory testing)
    return (f"not allowed: {one_sentence(primary)}; `hrwsi db init` creates and changes the schema: run it as the schema's owner "
            "(for a new database, a role that may create in it and in schema public: README.md, Roles), not as a "
            "role granted hrwsi_service or hrwsi_data_engineer")


@db_app.command("check")
def db_check() -> None:
    """Compare this database's schema with a fresh install of sql/schema.sql."""
    from hrwsi.schema import check_with_fresh_install
    from hrwsi.sql_files import query

    # A database without hrwsi's schema is said in one line, as every command says it: compared, it was some
    # 1,700 lines of "only in a fresh install" (found walking README through: db check before db init).
    with connect(url(start=False)) as conn:
        if not conn.execute(query("hrwsi_schema_exists")).fetchone()[0]:
            raise CliError(f"the database ({bounded(redact(url(start=False)), one_sentence)}) has no hrwsi schema, so "
                           "nothing to compare: run `hrwsi db init` to install it", 2)
    try:
        differences, not_valid = check_with_fresh_install(url(start=False))  # (an inspection: it starts no server)
    except psycopg.errors.InsufficientPrivilege as error:
        primary = error.diag.message_primary or str(error)
        if primary.startswith("permission denied to set parameter"):  # (its scratch install needs the same GRANT)
            raise CliError(_init_refusal(primary, psycopg.conninfo.conninfo_to_dict(url(start=False)).get("user", "")), 1) from None
        if "create database" not in primary:
            raise
        # (it advised a role granted hrwsi_service, which may not either; found by exploratory testing)
        raise CliError(f"not allowed: {one_sentence(primary)}; `hrwsi db check` builds a scratch database from sql/schema.sql on "
                       "the same server to compare with: run it as a role with CREATEDB (ALTER ROLE ... CREATEDB)",
                       1) from None
    kept = []
    if not_valid:
        with connect(url(start=False)) as conn:
            kept = [rule for rule in migrations.rules_not_valid(conn) if (rule.relation, rule.rule) in not_valid]
    for line in differences:  # definitions hold brackets (TG_ARGV[0]) that are not markup
        console.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
    for rule in kept:  # (compare_with_fresh_install leaves out a rule that differs only by NOT VALID)
        console.print(rule.said(), style="yellow", markup=False, highlight=False, soft_wrap=True)
    if differences:
        raise typer.Exit(1)
    # A rule kept NOT VALID alone is not drift: the schema is as the migrations made it, and old rows wait
    # for ops (exit 0, README.md, Upgrading); a monitoring check would otherwise fail for good on them.
    console.print("schema equals a fresh install" + (f", but for {len(kept)} rule(s) kept NOT VALID (above)"
                                                     if kept else ""), highlight=False, markup=False)
