"""Configuration as data: a TOML file of flavours, workers, budget, routines (with
`hold_after_failures`) and conditions (with `lane`, `deadline_hours`, `deadline_from` and a
`multi_input` rule), loaded into the reference tables in one transaction (`hrwsi config load FILE`).

In a routine's command, `{python}` stands for the interpreter running hrwsi, so routines shipped
as Python modules run in the same environment wherever hrwsi is installed.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import psycopg

from hrwsi.sql_files import query


class ConfigurationError(ValueError):
    """The file says something hrwsi cannot use; the message names the entry and the field."""


def _require(entry: dict, key: str, where: str):
    if key not in entry:
        raise ConfigurationError(f"{where}: missing '{key}'")
    return entry[key]


def _expand(command: list[str] | None) -> list[str] | None:
    if command is None:
        return None
    return [part.replace("{python}", sys.executable) for part in command]


def load_file(conn: psycopg.Connection, path: str | Path) -> dict[str, int]:
    try:
        document = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path}: not valid TOML: {error}") from error
    return load(conn, document)


def load(conn: psycopg.Connection, document: dict) -> dict[str, int]:
    """Upsert everything in the document; all or nothing. Returns how many entries of each kind."""
    counts = {"flavours": 0, "workers": 0, "routines": 0, "conditions": 0}
    with conn.transaction():
        for entry in document.get("flavour", []):
            where = f"flavour {entry.get('name', '?')}"
            conn.execute(query("upsert_flavour"), {k: _require(entry, k, where)
                                                   for k in ("name", "cpu", "ram_mb", "disk_mb")})
            counts["flavours"] += 1
        for entry in document.get("worker", []):
            where = f"worker {entry.get('name', '?')}"
            names = [entry["name"]] if "name" in entry else [
                f"{_require(entry, 'prefix', where)}{i:02d}" for i in range(1, int(_require(entry, 'count', where)) + 1)]
            for name in names:
                conn.execute(query("upsert_worker"), {"name": name, "flavour": _require(entry, "flavour", where),
                                                      "active": entry.get("active", True)})
                counts["workers"] += 1
        if "budget" in document:
            budget = document["budget"]
            conn.execute(query("update_budget"), {k: budget.get(k) for k in
                                                  ("cpu_max", "ram_max_mb", "storage_max_mb", "vm_max")})
        for entry in document.get("routine", []):
            _load_routine(conn, entry)
            counts["routines"] += 1
        for entry in document.get("condition", []):
            _load_condition(conn, entry)
            counts["conditions"] += 1
    return counts


def _load_routine(conn: psycopg.Connection, entry: dict) -> None:
    where = f"routine {entry.get('name', '?')}"
    conn.execute(query("upsert_routine"), {
        "name": _require(entry, "name", where), "cpu": _require(entry, "cpu", where),
        "ram_mb": _require(entry, "ram_mb", where), "storage_mb": _require(entry, "storage_mb", where),
        "expected_duration_s": _require(entry, "expected_duration_s", where),
        "timeout_s": entry.get("timeout_s"), "image": entry.get("image"),
        "command": _expand(entry.get("command")),
        "input_product_type": _require(entry, "input_product_type", where),
        "output_product_type": _require(entry, "output_product_type", where),
        "max_attempts": entry.get("max_attempts", 3), "flavour": entry.get("flavour"),
        "sequential_per_tile": entry.get("sequential_per_tile", False),
        "env": json.dumps(entry.get("env", {})),
        "hold_after_failures": entry.get("hold_after_failures", 5)})


def _load_condition(conn: psycopg.Connection, entry: dict) -> None:
    """A condition, with its lane and deadline (ADR 0009; they apply to tasks created from now on)
    and, when it has one, its multi-input rule."""
    where = f"condition {entry.get('name', '?')}"
    deadline_from = entry.get("deadline_from", "measurement")
    if deadline_from not in ("measurement", "publication"):
        raise ConfigurationError(f"{where}: deadline_from is {deadline_from!r}; give measurement or publication")
    conn.execute(query("upsert_condition"), {
        "name": _require(entry, "name", where), "routine": _require(entry, "routine", where),
        "publication_window_days": entry.get("publication_window_days"),
        "measurement_window_days": entry.get("measurement_window_days"),
        "tiles": entry.get("tiles"), "active": entry.get("active", True),
        "lane": entry.get("lane", "nrt"), "deadline_hours": entry.get("deadline_hours"),
        "deadline_from": deadline_from})
    rule = entry.get("multi_input")
    if rule is None:
        return
    requires = rule.get("requires") or []
    if not requires:
        raise ConfigurationError(f"{where}: multi_input needs requires = [{{product_type = ..., min_count = 1}}, ...]")
    conn.execute(query("upsert_multi_input_rule"), {
        "condition": entry["name"], "window_days": rule.get("window_days", 1),
        "every_day_of_window": rule.get("every_day_of_window", False),
        "wait_for_open_tasks": rule.get("wait_for_open_tasks", True)})
    conn.execute(query("replace_multi_input_requirements"), {
        "condition": entry["name"],
        "product_types": [_require(r, "product_type", f"{where}: multi_input.requires") for r in requires],
        "min_counts": [r.get("min_count", 1) for r in requires]})
