"""Versioned migrations: apply what is missing, in order, each in its own transaction, recorded.

Concurrent `hrwsi db init` calls are serialised by an advisory lock, so two services starting at
once do not both apply a migration.
"""

from __future__ import annotations

import hashlib
import logging

import psycopg

from hrwsi.sql_files import migrations

logger = logging.getLogger(__name__)

# Any constant shared by every hrwsi process; the value is arbitrary.
MIGRATION_LOCK_KEY = 0x68727773  # "hrws"

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS public.hrwsi_schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    exists = conn.execute("SELECT to_regclass('public.hrwsi_schema_migration') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    return dict(conn.execute("SELECT version, checksum FROM public.hrwsi_schema_migration").fetchall())


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply every migration not applied yet; return the names applied. Idempotent."""
    applied: list[str] = []
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(_BOOKKEEPING)
        done = applied_versions(conn)
        for version, name, path in migrations():
            text = path.read_text()
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if version in done:
                if done[version] != checksum:
                    logger.warning(
                        "migration %04d_%s changed after it was applied; it is not applied again", version, name
                    )
                continue
            with conn.transaction():
                conn.execute(text)
                conn.execute(
                    "INSERT INTO public.hrwsi_schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                    (version, name, checksum),
                )
            logger.info("applied migration %04d_%s", version, name)
            applied.append(f"{version:04d}_{name}")
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied


def pending(conn: psycopg.Connection) -> list[str]:
    done = applied_versions(conn)
    return [f"{v:04d}_{n}" for v, n, _ in migrations() if v not in done]
