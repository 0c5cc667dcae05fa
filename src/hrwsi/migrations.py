"""Bringing a database to the current schema, and recording how.

A fresh install runs sql/schema.sql (the current schema) in one transaction and records every
migration in sql/migrations/ as applied, with its checksum; a database that already has
migrations gets the pending ones only, each in its own transaction. tests/integration/test_schema.py
proves that the two paths build the same schema (docs/adr/0008-schema-sql-and-migrations.md).

Concurrent `hrwsi db init` calls are serialised by an advisory lock, so two services starting at
once do not both install the schema or apply a migration.

A database that records a migration this installation does not ship was upgraded by a newer hrwsi:
nothing is applied to it and no service of this installation starts on it (NewerSchema), since its
SQL calls were written for the schema it knows.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import psycopg.sql

import hrwsi
from hrwsi.sql_files import migrations, query, schema_sql
from hrwsi.terminal import one_sentence

logger = logging.getLogger(__name__)

# Any constant shared by every hrwsi process; the value is arbitrary.
MIGRATION_LOCK_KEY = 0x68727773  # "hrws"


class UnrecordedSchema(RuntimeError):
    """Schema hrwsi has objects but no migration is recorded: hrwsi did not install it."""


class NewerSchema(RuntimeError):
    """The database records migrations this installation does not ship: a newer hrwsi upgraded it."""


@functools.cache
def newest_shipped() -> tuple[int, str]:
    """(version, name) of the last migration this installation ships: what `hrwsi --version` names
    and what a running service compares the database's newest migration with."""
    version, name, _ = migrations()[-1]
    return version, name


@functools.cache
def build_version() -> str:
    """hrwsi's version with the last migration it ships, `0.1.0+schema0050` (PEP 440's local part):
    what a service records, logs, exports as hrwsi_build_info and puts in its Nomad jobs' Meta. The
    release number alone named 47 migrations alike: during an upgrade, services of two schemas side
    by side all said "0.1.0", and status saw no difference (found by exploratory testing)."""
    return f"{hrwsi.__version__}+schema{newest_shipped()[0]:04d}"


# The schema part of what a service records as its version (build_version): `0.1.0+schema0056`.
_SCHEMA_PART = re.compile(r"\+schema(\d+)$")
NOT_RECORDED = "not recorded"


def schema_of(version: str | None) -> int | None:
    """The last migration the hrwsi that recorded `version` shipped (build_version); None when it is
    not recorded, or recorded by an hrwsi older than the schema part (`0.1.0`)."""
    found = _SCHEMA_PART.search(version or "")
    return int(found.group(1)) if found else None


def _version_order(version: str) -> tuple:
    """Oldest first: the release's numbers, then the schema; what is not recorded last."""
    if version == NOT_RECORDED:
        return (1,)
    release = version.split("+", 1)[0]
    return (0, tuple(int(n) for n in re.findall(r"\d+", release)), schema_of(version) or -1, version)


def service_versions(alive: list[dict], database_migration: int | None, database_migration_name: str | None = None) -> dict:
    """What the versions of the services alive say against each other and against the database's
    schema (its newest migration recorded): for `hrwsi status`, its --json and the dashboard.

    Why: a service of an older hrwsi left running while a newer one migrated the database logs it
    once (Service._tell_a_newer_schema), but status listed it with a fresh heartbeat and no warning,
    and "services run different hrwsi versions: A, B" did not say which side was out of date (found
    by exploratory testing). Returns {"database_migration", "older_than_database" (each {id, kind,
    version}), "versions" (oldest first), "newest" (when they differ), "said" (lines to print)}."""
    older = [{"id": s["id"], "kind": s["kind"], "version": s["version"]} for s in alive
             if database_migration is not None and (schema := schema_of(s["version"])) is not None
             and schema < database_migration]
    versions = sorted({s["version"] or NOT_RECORDED for s in alive}, key=_version_order)
    recorded = [v for v in versions if v != NOT_RECORDED]
    newest = recorded[-1] if len(versions) > 1 and recorded else None
    said = []
    if older:
        migration = f"{database_migration:04d}" + (f"_{database_migration_name}" if database_migration_name else "")
        names = ", ".join(f"{s['kind']} {s['id']} ({s['version']})" for s in older)
        said.append(f"{len(older)} service(s) run an hrwsi older than the database's schema (it records migration "
                    f"{migration}): {names}; their SQL was written for the schema they know: stop them and start the "
                    "new version (README.md, Upgrading)")
    if len(versions) > 1:  # (an upgrade under way, or one left half done)
        said.append(f"services run different hrwsi versions: {', '.join(versions)}"
                    + (f"; the newest is {newest}" if newest else "") + " (an upgrade under way, or one left half done)")
    return {"database_migration": database_migration, "older_than_database": older, "versions": versions,
            "newest": newest, "said": said}


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_text().encode()).hexdigest()


def _recorded(conn: psycopg.Connection) -> list[tuple[int, str, str, datetime]]:
    """(version, name, checksum, applied_at) of every migration recorded as applied, in order."""
    # In a transaction of its own, so that a caller may ask, then migrate on the same connection
    # (migrate needs autocommit, which cannot be set while a transaction is open).
    with conn.transaction():
        if not conn.execute(query("migration_bookkeeping_exists")).fetchone()[0]:
            return []
        return conn.execute(query("applied_migrations")).fetchall()


def _refuse_a_newer_schema(recorded: list[tuple[int, str, str, datetime]]) -> None:
    shipped = {version for version, _, _ in migrations()}
    newer = [f"{version:04d}_{name} (applied {applied_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
             for version, name, _, applied_at in recorded if version not in shipped]
    if newer:
        raise NewerSchema(
            f"the database was upgraded by a newer hrwsi: it records migration(s) this installation does not ship "
            f"({', '.join(newer)}); upgrade this installation to that version, or run it against another database")


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    """{version: checksum} of the migrations recorded as applied."""
    return {version: digest for version, _, digest, _ in _recorded(conn)}


def migrate(conn: psycopg.Connection, *, replay: bool = False) -> list[str]:
    """Bring the database to the current schema; return the migrations recorded by this call. Idempotent.

    An empty database gets sql/schema.sql, and every migration is recorded as applied. With
    `replay`, an empty database gets every migration in turn instead: the path a database installed
    long ago took, which the schema test compares with schema.sql.
    """
    conn.autocommit = True
    # A time without a zone in the schema (a CHECK's '1950-01-01') is read in the session's zone: an
    # install in a session in Europe/Paris made another constraint than one in UTC, and `hrwsi db
    # check` told them apart. Installed in UTC, whatever the server's or the client's zone.
    conn.execute(query("session_settings"))
    conn.execute(query("lock_migrations"), {"key": MIGRATION_LOCK_KEY})
    try:
        conn.execute(query("create_migration_bookkeeping"))
        recorded = _recorded(conn)
        _refuse_a_newer_schema(recorded)
        done = {version: digest for version, _, digest, _ in recorded}
        if not done:
            if conn.execute(query("hrwsi_schema_relations")).fetchone()[0]:
                raise UnrecordedSchema(
                    "schema hrwsi already has tables but public.hrwsi_schema_migration records no migration: it "
                    "was not installed by `hrwsi db init`; install into an empty database, or drop schema hrwsi")
            if not replay:
                return _install_schema(conn)
        return _apply_pending(conn, done)
    finally:
        conn.execute(query("unlock_migrations"), {"key": MIGRATION_LOCK_KEY})


def _install_schema(conn: psycopg.Connection) -> list[str]:
    recorded = []
    with conn.transaction():
        conn.execute(schema_sql())
        for version, name, path in migrations():
            conn.execute(query("record_migration"), {"version": version, "name": name, "checksum": checksum(path)})
            recorded.append(f"{version:04d}_{name}")
    logger.info("installed sql/schema.sql; recorded migrations %s as applied", ", ".join(recorded))
    return recorded


def _apply_pending(conn: psycopg.Connection, done: dict[int, str]) -> list[str]:
    applied = []
    for version, name, path in migrations():
        text = path.read_text()
        if version in done:
            if done[version] != checksum(path):
                logger.warning("migration %04d_%s changed after it was applied; it is not applied again", version, name)
            continue
        said = functools.partial(_say_notice, f"{version:04d}_{name}")
        conn.add_notice_handler(said)
        try:
            with conn.transaction():
                conn.execute(text)
                conn.execute(query("record_migration"), {"version": version, "name": name, "checksum": checksum(path)})
        finally:
            conn.remove_notice_handler(said)
        logger.info("applied migration %04d_%s", version, name)
        applied.append(f"{version:04d}_{name}")
    return applied


def _say_notice(migration: str, notice: psycopg.errors.Diagnostic) -> None:
    """What a migration's own code (RAISE NOTICE in a DO block) says of the rows it mended or left, as a warning of
    the log: `hrwsi db init` prints it, a service that applies the migration logs it. Why: psycopg drops a notice
    unless asked, so that migration 0116's "harvest source 'cat S2B': renamed from ..." reached nobody. The server's
    own notices ("constraint ... does not exist, skipping") are not the migration's and stay unsaid."""
    if "PL/pgSQL" in (notice.context or ""):
        logger.warning("migration %s: %s", migration, one_sentence(notice.message_primary))


@dataclass(frozen=True)
class RuleNotValid:
    """A rule (CHECK constraint) of schema hrwsi kept NOT VALID: rows already there when a migration
    added it break it; it holds for new rows only."""

    relation: str
    rule: str
    condition: str
    breaking_rows: int

    def said(self) -> str:
        """The rule, how many rows break it, how to find them and what makes it whole, in a sentence
        (`hrwsi db init` and `hrwsi db check` say it alike)."""
        rows = ("no row breaks it now" if not self.breaking_rows else
                f"{self.breaking_rows} row(s) break it, listed by SELECT * FROM {self.relation} WHERE NOT {self.condition}")
        return (f"rule {self.rule} on {self.relation} is kept NOT VALID, {self.condition} holds for new rows only "
                f"({rows}): {'fix or delete them, then ' if self.breaking_rows else ''}run ALTER TABLE {self.relation} "
                f"VALIDATE CONSTRAINT {self.rule} as the schema's owner (README.md, Upgrading)")


def rules_not_valid(conn: psycopg.Connection) -> list[RuleNotValid]:
    """The rules of schema hrwsi kept NOT VALID, with the rows that break each now (one scan of its table
    per such rule). Why: migration 0066 kept four rules NOT VALID where old rows broke them, and `hrwsi db
    init` said nothing of it while `hrwsi db check` printed them as raw tuples (found by exploratory testing)."""
    found = []
    with conn.transaction():
        for schema, relation, rule, condition in conn.execute(query("rules_not_valid")).fetchall():
            # (a statement per rule, composed from the catalog: the rule's condition is SQL the database
            # printed, and no parameter can stand for a condition)
            count = psycopg.sql.SQL(query("rows_breaking_a_rule")).format(
                relation=psycopg.sql.Identifier(schema, relation), condition=psycopg.sql.SQL(condition))
            found.append(RuleNotValid(f"{schema}.{relation}", rule, condition, conn.execute(count).fetchone()[0]))
    return found


@dataclass(frozen=True)
class Repair:
    """What `repair_privileges` re-applied: roles it created, privileges it granted and revoked
    (each `object: privilege to grantee`)."""

    roles: list[str]
    granted: list[str]
    revoked: list[str]

    def __bool__(self) -> bool:
        return bool(self.roles or self.granted or self.revoked)


@functools.cache
def privilege_statements() -> str:
    """The roles and privileges sql/schema.sql gives, as it gives them: its DO block that creates the
    three roles when they are missing, then every GRANT and REVOKE statement in its order (each starts a
    line and ends with the first line ending in `;`). All are idempotent; run on an installed schema
    they give it a fresh install's privileges, and change nothing else."""
    text = schema_sql()
    start = text.index("DO $$\nBEGIN\n    IF NOT EXISTS (SELECT 1 FROM pg_roles")
    statements = [text[start:text.index("END $$;", start) + len("END $$;")]]
    current: list[str] = []
    for line in text.splitlines():
        if current or re.match(r"(GRANT|REVOKE)\s", line):
            current.append(line)
            if line.rstrip().endswith(";"):
                statements.append("\n".join(current))
                current = []
    return "\n".join(statements)


def _privileges(conn: psycopg.Connection) -> set[tuple]:
    return {tuple(row) for row in conn.execute(query("describe_privileges")).fetchall()}


def repair_privileges(conn: psycopg.Connection) -> Repair:
    """Re-apply the roles and privileges of sql/schema.sql on an installed schema and say what that
    changed (nothing changed: nothing is kept, the transaction is rolled back).

    Why: a pg_dump holds a database's objects and their grants, but not the roles, which belong to
    the server: restored on a server without them, every grant to hrwsi_service, hrwsi_data_engineer
    and hrwsi_readonly was dropped (pg_restore: 'role "hrwsi_service" does not exist', 99 errors),
    `hrwsi db check` listed 381 missing privileges, and `hrwsi db init` said "schema up to date" and
    repaired nothing (found by exploratory testing)."""
    conn.autocommit = True
    with conn.transaction() as transaction:
        roles = {row[0] for row in conn.execute(query("hrwsi_roles_present")).fetchall()}
        before = _privileges(conn)
        conn.execute(privilege_statements())
        after = _privileges(conn)
        created = sorted({row[0] for row in conn.execute(query("hrwsi_roles_present")).fetchall()} - roles)
        repair = Repair(created, [_privilege(row) for row in sorted(after - before)],
                        [_privilege(row) for row in sorted(before - after)])
        if not repair:
            raise psycopg.Rollback(transaction)  # (nothing to keep: no catalog row rewritten)
    if not repair:
        return repair
    logger.info("re-applied the privileges of sql/schema.sql: roles created %s; %d granted, %d revoked",
                ", ".join(repair.roles) or "none", len(repair.granted), len(repair.revoked))
    return repair


def _privilege(row: tuple) -> str:
    obj, grantee, privilege, grantable = row
    return f"{obj}: {privilege} to {grantee}" + (" WITH GRANT OPTION" if grantable else "")


def pending(conn: psycopg.Connection) -> list[str]:
    """The migrations this installation would apply; NewerSchema if the database is ahead of it."""
    return missing_from(_recorded(conn))


def missing_from(recorded: list[tuple[int, str, str, datetime]]) -> list[str]:
    """The migrations this installation ships that are not in `recorded` (rows of applied_migrations,
    read by either driver: hrwsi.notebook checks with asyncpg); NewerSchema if it records one it does
    not ship."""
    _refuse_a_newer_schema(recorded)
    done = {version for version, _, _, _ in recorded}
    return [f"{v:04d}_{n}" for v, n, _ in migrations() if v not in done]
