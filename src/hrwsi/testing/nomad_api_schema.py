"""Nomad's API schema, pinned: the struct field names of hashicorp/nomad's `api/` package, for checking hrwsi.

Nomad decodes JSON keys case-insensitively and drops unknown ones silently (and its HCL job parser
knows only the `hcl` tags), so a misspelled key in a job spec, or a field read from an answer that
Nomad does not have, never fails: it is just ignored, or reads as missing. This module checks
what hrwsi writes and reads against the field names of Nomad's own API package.

The pinned files (nomad_api_fields/<version>.json) hold only field names, their JSON keys, HCL
names and type shapes, taken from the `api/` package of hashicorp/nomad, which is MPL-2.0 (its
LICENSE file says so; the rest of Nomad since 1.7 is BUSL-1.1 and nothing of it is used here).
One file per supported version at each end of the range; a field must exist in every one.

Pin a version (reads the Go source with git, writes JSON on stdout):

    python -m hrwsi.testing.nomad_api_schema --git-dir /path/to/nomad/.git --tag v2.0.5 \\
        > src/hrwsi/testing/nomad_api_fields/v2.0.5.json
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

FIELDS_DIR = Path(__file__).parent / "nomad_api_fields"
PINNED_VERSIONS = ("v1.10.5", "v2.0.5")  # the oldest and the newest Nomad hrwsi supports

_STRUCT = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
_FIELD = re.compile(r"^(?P<names>\w+(?:\s*,\s*\w+)*)\s+(?P<type>[^`/]+?)\s*(?:`(?P<tags>[^`]*)`)?\s*(?://.*)?$")
_EMBEDDED = re.compile(r"^\*?(?P<type>[A-Z]\w*)\s*(?:`[^`]*`)?\s*(?://.*)?$")
_TAG = re.compile(r'(\w+):"([^"]*)"')
_SCALARS = {"string", "bool", "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64",
            "float32", "float64", "byte", "rune", "time.Duration", "time.Time", "[]byte"}


# -- pinning: Go source -> field names -------------------------------------------------------------
def _struct_bodies(source: str) -> Iterator[tuple[str, list[str]]]:
    """(struct name, its field lines) of every top-level struct type; nested struct literals are skipped."""
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        match = _STRUCT.match(lines[i])
        i += 1
        if not match:
            continue
        body, depth = [], 1
        while i < len(lines) and depth:
            line = lines[i].strip()
            i += 1
            depth += line.count("{") - line.count("}")
            if depth == 1 and line and not line.startswith("//") and line != "}":
                body.append(line)
            elif depth == 2 and line.endswith("{"):
                body.append(line.rstrip("{").strip() + " any")  # an inline struct: its content is not checked
        yield match.group(1), body


def _type_shape(go_type: str, structs: set[str]) -> str:
    go_type = go_type.strip().lstrip("*")
    if go_type in _SCALARS:
        return "scalar"
    if go_type.startswith("[]"):
        return "list:" + _type_shape(go_type[2:], structs)
    if go_type.startswith("map["):
        return "map:" + _type_shape(go_type[go_type.index("]") + 1:], structs)
    if go_type in ("interface{}", "any") or go_type.endswith(" any"):
        return "any"
    return f"struct:{go_type}" if go_type in structs else "scalar"


def parse_api(sources: Mapping[str, str]) -> dict[str, dict[str, dict[str, str]]]:
    """{struct: {JSON key: {"hcl": name or "", "type": shape}}}; embedded structs are flattened, as
    encoding/json does, unless they carry a JSON name."""
    bodies = dict(body for source in sources.values() for body in _struct_bodies(source))
    names = set(bodies)
    raw: dict[str, list[tuple[str, str, str, str, bool]]] = {}
    for struct, lines in bodies.items():
        fields = raw.setdefault(struct, [])
        for line in lines:
            embedded = _EMBEDDED.match(line)
            if embedded and embedded.group("type") in names:
                fields.append(("", "", "", embedded.group("type"), False))
                continue
            match = _FIELD.match(line)
            if not match:
                continue
            tags = dict(_TAG.findall(match.group("tags") or ""))
            json_name = tags.get("json", "").split(",")[0]
            hcl_name, *hcl_options = tags.get("hcl", "").split(",")
            for name in re.split(r"\s*,\s*", match.group("names")):
                if json_name == "-" or not name[0].isupper():
                    continue
                fields.append((json_name or name, "" if hcl_name == "-" else hcl_name,
                               _type_shape(match.group("type"), names), "", "label" in hcl_options))

    @cache
    def flat(struct: str) -> tuple[tuple[str, str, str, bool], ...]:
        out = []
        for key, hcl, shape, embedded, label in raw.get(struct, []):
            out.extend(flat(embedded) if embedded else [(key, hcl, shape, label)])
        return tuple(out)

    def field(hcl: str, shape: str, label: bool) -> dict[str, Any]:
        return {"hcl": hcl, "type": shape, **({"label": True} if label else {})}

    return {struct: {key: field(hcl, shape, label) for key, hcl, shape, label in flat(struct)}
            for struct in sorted(raw)}


def pin_from_git(git_dir: str, tag: str) -> dict[str, Any]:
    """The pinned schema of hashicorp/nomad's api/ package at tag, read with git (no checkout needed)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True,
                              text=True).stdout
    license_text = git("show", f"{tag}:api/LICENSE")
    if "Mozilla Public License" not in license_text:
        raise SystemExit(f"api/ at {tag} is not MPL-2.0: not pinning it")
    files = [f for f in git("ls-tree", "--name-only", tag, "api/").split()
             if f.endswith(".go") and not f.endswith("_test.go")]
    sources = {f: git("show", f"{tag}:{f}") for f in files}
    return {"nomad_version": tag, "license": "MPL-2.0 (hashicorp/nomad api/LICENSE)",
            "note": "field names, JSON keys, HCL names and type shapes of hashicorp/nomad's api/ package only",
            "structs": parse_api(sources)}


# -- checking ------------------------------------------------------------------------------------------
@cache
def pinned(version: str) -> dict[str, dict[str, dict[str, str]]]:
    return json.loads((FIELDS_DIR / f"{version}.json").read_text())["structs"]


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1) or [k for k in known if k.lower() == key.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_json(doc: Any, struct: str, version: str, where: str = "") -> list[str]:
    """Every key of doc (as struct) that the pinned API of version does not have, exactly as spelled."""
    fields = pinned(version)[struct]
    if not isinstance(doc, Mapping):
        return [f"{where or struct}: expected an object ({struct})"]
    problems = []
    for key, value in doc.items():
        path = f"{where or struct}.{key}"
        if key not in fields:
            problems.append(f"{path}: {struct} has no field {key!r} in Nomad {version}{_suggest(key, fields)}")
            continue
        problems.extend(_check_value(value, fields[key]["type"], version, path))
    return problems


def _check_value(value: Any, shape: str, version: str, path: str) -> list[str]:
    if value is None or shape in ("scalar", "any"):
        return []
    kind, _, inner = shape.partition(":")
    if kind == "struct":
        return check_json(value, inner, version, path)
    if kind == "list" and isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _check_value(item, inner, version, f"{path}[{i}]")]
    if kind == "map" and isinstance(value, Mapping):
        return [p for k, item in value.items() for p in _check_value(item, inner, version, f"{path}[{k}]")]
    return []


def check_read(struct: str, path: str, version: str) -> str | None:
    """A field path read from an answer, e.g. ("AllocationListStub", "TaskStates.*.Events.*.Details"):
    None if every step exists in the pinned API of version, else what is wrong. `*` steps into a list
    or map."""
    shape = f"struct:{struct}"
    for step in path.split("."):
        kind, _, inner = shape.partition(":")
        if step == "*" and kind in ("list", "map"):
            shape = inner
            continue
        if kind != "struct":
            return f"{struct}.{path}: {step!r} is read inside {shape}, which has no fields"
        fields = pinned(version)[inner]
        if step not in fields:
            return f"{struct}.{path}: {inner} has no field {step!r} in Nomad {version}{_suggest(step, fields)}"
        shape = fields[step]["type"]
    return None


def _hcl_fields(struct: str, version: str) -> dict[str, dict[str, Any]]:
    """The struct's HCL attributes and blocks; a label (`group "name" {}`) is not one of them."""
    return {f["hcl"]: f for f in pinned(version)[struct].values() if f["hcl"] and not f.get("label")}


def _labelled(struct: str, version: str) -> bool:
    return any(f.get("label") for f in pinned(version)[struct].values())


def check_hcl(body: Mapping[str, Any], struct: str, version: str, where: str = "") -> list[str]:
    """Every attribute or block of a parsed HCL body (python-hcl2) that struct has no `hcl` name for."""
    fields = _hcl_fields(struct, version)
    problems = []
    for key, value in body.items():
        if key.startswith("__"):
            continue
        path = f"{where or struct}.{key}"
        if key not in fields:
            problems.append(f"{path}: no {key!r} in Nomad {version}'s {struct}{_suggest(key, fields)}")
            continue
        problems.extend(_check_hcl_value(value, fields[key]["type"], version, path))
    return problems


def _check_hcl_value(value: Any, shape: str, version: str, path: str) -> list[str]:
    """Blocks of a struct type are checked; attributes, maps of scalars and `config` (any) are free."""
    kind, _, inner = shape.partition(":")
    target = inner if kind == "struct" else inner.removeprefix("struct:") if inner.startswith("struct:") else ""
    if not target:
        return []
    problems = []
    for block in value if isinstance(value, list) else [value]:
        if not isinstance(block, Mapping):
            continue
        if kind == "map" or _labelled(target, version):  # `volume "data" {}`, `group "name" {}`: one label
            for label, labelled_body in block.items():
                if isinstance(labelled_body, Mapping):
                    problems.extend(check_hcl(labelled_body, target, version, f"{path}[{label}]"))
        else:
            problems.extend(check_hcl(block, target, version, path))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hrwsi.testing.nomad_api_schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--git-dir", required=True, help="a clone of hashicorp/nomad (its .git directory)")
    parser.add_argument("--tag", required=True, help="the Nomad version to pin, e.g. v2.0.5")
    args = parser.parse_args(argv)
    json.dump(pin_from_git(args.git_dir, args.tag), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
