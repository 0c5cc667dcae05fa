"""Describing a database's hrwsi schema, to prove that migrating equals a fresh install.

SQLAlchemy's inspector reflects tables, columns, keys, constraints and indexes; triggers and
functions, which it does not reflect, are read from pg_catalog.
"""

from __future__ import annotations

import uuid

import psycopg
import sqlalchemy

from hrwsi import migrations
from hrwsi.database import create_database, drop_database

SCHEMAS = ("hrwsi",)


def _sqlalchemy_url(url: str) -> sqlalchemy.URL:
    info = psycopg.conninfo.conninfo_to_dict(url)
    query = {"host": info["host"]} if str(info.get("host", "")).startswith("/") else {}
    return sqlalchemy.URL.create(
        "postgresql+psycopg", username=info.get("user"), password=info.get("password"),
        host=None if query else info.get("host"), port=int(info["port"]) if info.get("port") else None,
        database=info.get("dbname"), query=query)


def describe(url: str) -> dict[str, object]:
    """A comparable description of every object in the hrwsi schema."""
    engine = sqlalchemy.create_engine(_sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool)
    description: dict[str, object] = {}
    try:
        inspector = sqlalchemy.inspect(engine)
        for schema in SCHEMAS:
            for table in sorted(inspector.get_table_names(schema=schema)):
                key = f"{schema}.{table}"
                description[f"{key} columns"] = [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in
                    inspector.get_columns(table, schema=schema)]
                description[f"{key} primary key"] = inspector.get_pk_constraint(table, schema=schema)
                description[f"{key} foreign keys"] = sorted(
                    (f["name"], tuple(f["constrained_columns"]), f["referred_table"]) for f in
                    inspector.get_foreign_keys(table, schema=schema))
                description[f"{key} unique"] = sorted(
                    (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table, schema=schema))
                description[f"{key} checks"] = sorted(
                    (c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table, schema=schema))
                description[f"{key} indexes"] = sorted(
                    (i["name"], tuple(str(c) for c in i["column_names"]), i["unique"]) for i in
                    inspector.get_indexes(table, schema=schema))
        with engine.connect() as conn:
            description["triggers"] = sorted(tuple(r) for r in conn.execute(sqlalchemy.text(
                "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ANY(:schemas) AND NOT t.tgisinternal"), {"schemas": list(SCHEMAS)}))
            description["functions"] = sorted(tuple(r) for r in conn.execute(sqlalchemy.text(
                "SELECT p.proname, md5(pg_get_functiondef(p.oid)) FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(:schemas)"),
                {"schemas": list(SCHEMAS)}))
            description["roles"] = sorted(r[0] for r in conn.execute(sqlalchemy.text(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'hrwsi%'")))
    finally:
        engine.dispose()
    return description


def differences(left: dict, right: dict, left_name: str = "this database",
                right_name: str = "a fresh install") -> list[str]:
    found = []
    for key in sorted(set(left) | set(right)):
        if key not in left:
            found.append(f"{key}: missing in {left_name}")
        elif key not in right:
            found.append(f"{key}: only in {left_name}, not in {right_name}")
        elif left[key] != right[key]:
            found.append(f"{key}: {left_name} has {left[key]!r}, {right_name} has {right[key]!r}")
    return found


def compare_with_fresh_install(url: str) -> list[str]:
    """Install the migrations into a scratch database on the same server and compare."""
    scratch = f"hrwsi_schema_check_{uuid.uuid4().hex[:8]}"
    scratch_url = create_database(url, scratch)
    try:
        with psycopg.connect(scratch_url) as conn:
            migrations.migrate(conn)
        return differences(describe(url), describe(scratch_url))
    finally:
        drop_database(url, scratch)
