"""Describing a database's hrwsi schema, and comparing two: a fresh install from sql/schema.sql
with one built from the migrations (the schema test), or a live database with a fresh install
(`hrwsi db check`).

The description is read from pg_catalog (sql/queries/schema_description.sql): relations,
columns in order, constraints with their names, indexes, triggers, functions' whole definitions,
privileges, roles, sequences, types, comments, the state machines' rows and the recorded
migrations. Each object is under its own key, so a difference names what differs.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import groupby

import psycopg

from hrwsi import migrations
from hrwsi.database import connect, create_database, drop_database
from hrwsi.sql_files import query

Description = dict[str, object]

# (query, the key each object is described under, or None for one key per query)
_PER_OBJECT = (
    ("describe_columns", "{} columns"),
    ("describe_constraints", "{} constraints"),
    ("describe_indexes", "{} indexes"),
    ("describe_triggers", "{} triggers"),
    ("describe_privileges", "privileges on {}"),
)
_WHOLE = (
    ("describe_relations", "relations in schema hrwsi"),
    ("describe_roles", "roles granted schema hrwsi"),
    ("describe_sequences", "sequences"),
    ("describe_types", "types"),
    ("describe_comments", "comments"),
)


def _rows(conn: psycopg.Connection, name: str) -> list[tuple]:
    return [tuple(row) for row in conn.execute(query(name)).fetchall()]


def describe(url: str) -> Description:
    """A comparable description of every object of the hrwsi schema in the database at `url`."""
    description: Description = {}
    # (Its settings make definitions read alike whatever a database sets: a database's TimeZone or
    # IntervalStyle made `hrwsi db check` report drift that was not there.)
    with connect(url, autocommit=True) as conn:
        for name, key in _PER_OBJECT:
            # Rows come ordered by object; within one, in the query's order (columns: column order).
            for obj, rows in groupby(_rows(conn, name), key=lambda row: row[0]):
                description[key.format(obj)] = [row[1:] for row in rows]
        for signature, definition, comment in _rows(conn, "describe_functions"):
            description[f"function {signature}"] = definition
            if comment is not None:
                description[f"comment on function {signature}"] = comment
        for name, key in _WHOLE:
            description[key] = _rows(conn, name)
        if conn.execute(query("describe_state_machines_exist")).fetchone()[0]:
            description["state machines (task_state, task_transition, job_state, job_transition)"] = _rows(
                conn, "describe_state_machines")
        if conn.execute(query("migration_bookkeeping_exists")).fetchone()[0]:
            description["recorded migrations"] = _rows(conn, "describe_recorded_migrations")
    return description


def differences(left: Description, right: Description, left_name: str = "this database",
                right_name: str = "a fresh install") -> list[str]:
    """What differs between two descriptions, one readable entry per object."""
    found = []
    for key in sorted(set(left) | set(right)):
        if isinstance(left.get(key, []), list) and isinstance(right.get(key, []), list):
            # An object with no rows left (its last trigger dropped) is an empty list: name the rows.
            if left.get(key, []) != right.get(key, []):
                found.append(_explain(key, left.get(key, []), right.get(key, []), left_name, right_name))
        elif key not in left:
            found.append(f"{key}: missing in {left_name}")
        elif key not in right:
            found.append(f"{key}: only in {left_name}, not in {right_name}")
        elif left[key] != right[key]:
            found.append(_explain(key, left[key], right[key], left_name, right_name))
    return found


def _explain(key: str, left: object, right: object, left_name: str, right_name: str) -> str:
    if isinstance(left, str) and isinstance(right, str):
        diff = difflib.unified_diff(right.splitlines(), left.splitlines(), right_name, left_name, lineterm="")
        return f"{key} differs:\n" + "\n".join(f"  {line}" for line in diff)
    if isinstance(left, list) and isinstance(right, list):
        only_left = [item for item in left if item not in right]
        only_right = [item for item in right if item not in left]
        if not only_left and not only_right:
            return f"{key}: the same in another order: {left_name} {left!r}, {right_name} {right!r}"
        return f"{key}:" + _listed(f"only in {left_name}", only_left) + _listed(f"only in {right_name}", only_right)
    return f"{key}: {left_name} has {left!r}, {right_name} has {right!r}"


def _listed(label: str, items: Iterable[object]) -> str:
    return "".join(f"\n  {label}: {item!r}" for item in items)


@contextmanager
def fresh_install(url: str, *, replay: bool = False) -> Iterator[str]:
    """A scratch database on the server of `url`, installed from schema.sql (or, with `replay`,
    from the migrations one by one); its URL. Dropped on exit."""
    scratch = f"hrwsi_fresh_install_{uuid.uuid4().hex[:8]}"
    scratch_url = create_database(url, scratch)
    try:
        with connect(scratch_url) as conn:
            migrations.migrate(conn, replay=replay)
        yield scratch_url
    finally:
        drop_database(url, scratch)


def compare_with_fresh_install(url: str) -> list[str]:
    """How the database at `url` differs from a fresh install of schema.sql on the same server, but for
    a rule that differs only by NOT VALID (check_with_fresh_install names those)."""
    return check_with_fresh_install(url)[0]


def check_with_fresh_install(url: str) -> tuple[list[str], set[tuple[str, str]]]:
    """(the differences, the rules (relation, name) kept NOT VALID here that a fresh install has valid).

    Why apart: migration 0066 keeps a rule NOT VALID where rows already there break it, and `hrwsi db
    check` printed it as two raw tuples among the differences, as drift (found by exploratory testing):
    it is the schema the migrations made, with old rows waiting for ops (migrations.rules_not_valid)."""
    with fresh_install(url) as fresh_url:
        here, fresh = describe(url), describe(fresh_url)
    kept = _kept_not_valid(here, fresh)
    return differences(_as_if_valid(here, kept), fresh), kept


def _kept_not_valid(here: Description, fresh: Description) -> set[tuple[str, str]]:
    found = set()
    for key, rows in here.items():
        if key.endswith(" constraints") and isinstance(rows, list):
            theirs = dict(fresh.get(key, []))
            found.update((key.removesuffix(" constraints"), name) for name, definition in rows
                         if definition.endswith(" NOT VALID") and theirs.get(name) == definition.removesuffix(" NOT VALID"))
    return found


def _as_if_valid(description: Description, rules: set[tuple[str, str]]) -> Description:
    """The description with those rules' trailing NOT VALID left out."""
    return {key: [(name, definition.removesuffix(" NOT VALID")) if (key.removesuffix(" constraints"), name) in rules
                  else (name, definition) for name, definition in rows] if key.endswith(" constraints") else rows
            for key, rows in description.items()}


def compare_schema_sql_with_migrations(url: str) -> list[str]:
    """How a database built from schema.sql differs from one built from the migrations, both made
    on the server of `url`. Empty when schema.sql and the migrations agree."""
    with fresh_install(url) as from_schema, fresh_install(url, replay=True) as from_migrations:
        return differences(describe(from_schema), describe(from_migrations), "schema.sql", "the migrations")
