"""The configuration schema: every problem of a file is found, one line each with its key path,
before anything is written (the database side is in tests/integration/test_configuration.py)."""

from __future__ import annotations

import copy
import math
import os
import re
import tomllib
from pathlib import Path

import pytest

from hrwsi import configuration
from hrwsi.demo import CONFIGURATION

README = Path(__file__).resolve().parents[2] / "README.md"


def demo_document() -> dict:
    return tomllib.loads(CONFIGURATION.read_text())


def problems_of(change) -> list[str]:
    document = demo_document()
    change(document)
    return configuration.problems(document)


def test_the_demo_configuration_has_no_problem():
    assert configuration.problems(demo_document()) == []


def test_a_misspelt_key_is_named_with_its_path_and_a_suggestion():
    def misspell(d):
        d["routine"][2]["max_attempt"] = d["routine"][2].pop("max_attempts")

    assert problems_of(misspell) == ["routine[2].max_attempt: unknown key (did you mean max_attempts?)"]


def test_an_unknown_section_is_named_with_a_suggestion():
    assert problems_of(lambda d: d.update(routines=[])) == ["routines: unknown key (did you mean routine?)"]


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("flavour", 0, "ram_mb"), "16000", "flavour[0].ram_mb: must be a whole number, not text ('16000')"),
    (("flavour", 0, "cpu"), math.nan, "flavour[0].cpu: must be a finite number, not nan"),
    (("flavour", 0, "disk_mb"), math.inf, "flavour[0].disk_mb: must be a whole number, not a number (inf)"),
    (("budget", "cpu_max"), -math.inf, "budget.cpu_max: must be a finite number, not -inf"),
    (("routine", 0, "cpu"), 0, "routine[0].cpu: must be at least 0.01, not 0"),
    (("routine", 0, "ram_mb"), -1, "routine[0].ram_mb: must be at least 10, not -1"),
    (("routine", 0, "sequential_per_tile"), 1, "routine[0].sequential_per_tile: must be true or false, not a whole "
                                               "number (1)"),
    (("routine", 0, "expected_duration_s"), 1e9, "routine[0].expected_duration_s: must be at most 2592000, "
                                                 "not 1000000000.0"),
    (("routine", 0, "max_attempts"), 0, "routine[0].max_attempts: must be at least 1, not 0"),
    (("condition", 0, "measurement_window_days"), 0, "condition[0].measurement_window_days: must be greater than 0, "
                                                     "not 0"),
    (("condition", 0, "tiles"), ["32tlr"], "condition[0].tiles[0]: '32tlr' is not an MGRS tile code like 32TLR"),
    (("worker", 0, "count"), 0, "worker[0].count: must be at least 1, not 0"),
])
def test_a_wrong_value_is_one_line_with_its_key_path(path, value, expected):
    def change(d):
        target = d
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    assert problems_of(change) == [expected]


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("routine", 0, "cpu"), 1e-300, "routine[0].cpu: must be at least 0.01, not 1e-300"),
    (("routine", 0, "cpu"), 0.009, "routine[0].cpu: must be at least 0.01, not 0.009"),
    (("routine", 0, "cpu"), 1e300, "routine[0].cpu: must be at most 4096, not 1e+300"),
    (("flavour", 0, "cpu"), 1e-300, "flavour[0].cpu: must be at least 0.01, not 1e-300"),
    (("budget", "cpu_max"), 1e-300, "budget.cpu_max: must be at least 0.01, not 1e-300"),
    (("routine", 0, "ram_mb"), 1, "routine[0].ram_mb: must be at least 10, not 1"),
    (("routine", 0, "ram_mb"), 10**12, "routine[0].ram_mb: must be at most 2147483647, not 1000000000000"),
    (("routine", 0, "storage_mb"), 10**12, "routine[0].storage_mb: must be at most 2147483647, not 1000000000000"),
    (("routine", 0, "storage_mb"), 1e-300, "routine[0].storage_mb: must be a whole number, not a number (1e-300)"),
    (("routine", 0, "storage_mb"), 1, "routine[0].storage_mb: must be at least 10, not 1"),
    (("routine", 0, "storage_mb"), 9, "routine[0].storage_mb: must be at least 10, not 9"),
])
def test_an_absurdly_small_or_large_cpu_or_ram_is_refused_with_its_key_path(path, value, expected):
    """(cpu = 1e-300 was valid: the planner counted such a task as taking nothing, any number of them fitting a
    worker, and Nomad was given 1 MHz; ram_mb = 1 was valid, and Nomad refuses a job below 10 MB, every job of
    the routine failing until it was held; storage_mb = 1 was valid, and the Nomad job builder reserved Nomad's
    least EphemeralDisk, 10 MB, while the planner counted 1 MB; found by review)"""
    def change(d):
        d.setdefault("budget", {})
        target = d
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    assert problems_of(change) == [expected]


def test_every_problem_of_a_file_is_reported_at_once():
    def break_many(d):
        d["flavour"][0]["cpu"] = -1
        d["routine"][0]["ram_mb"] = "lots"
        d["routine"][1]["max_attempt"] = 3
        d["condition"][0]["routine"] = "nobody"

    found = problems_of(break_many)
    assert len(found) == 4, found
    assert {line.split(":")[0] for line in found} == {"flavour[0].cpu", "routine[0].ram_mb", "routine[1].max_attempt",
                                                      "condition[0].routine"}


def test_duplicates_are_named_with_the_entry_they_repeat():
    def duplicate(d):
        d["flavour"].append(copy.deepcopy(d["flavour"][0]))
        d["routine"].append(copy.deepcopy(d["routine"][1]))
        d["worker"].append({"name": "worker-large-02", "flavour": "eo2.large"})

    assert problems_of(duplicate) == [
        "flavour[2].name: 'eo2.large' is already defined by flavour[0]",
        f"routine[{len(demo_document()['routine'])}].name: 'snow_cover' is already defined by routine[1]",
        "worker[2].name: worker 'worker-large-02' is already defined by worker[0]",
    ]


def test_references_to_unknown_flavours_and_routines_are_problems_unless_the_database_has_them():
    def refer(d):
        d["worker"][0]["flavour"] = "eo3.huge"
        d["routine"][0]["flavour"] = "eo2.larg"
        d["condition"][0]["routine"] = "maja"

    document = demo_document()
    refer(document)
    assert configuration.problems(document) == [
        "worker[0].flavour: unknown flavour 'eo3.huge': define it in a [[flavour]] entry",
        "routine[0].flavour: unknown flavour 'eo2.larg': define it in a [[flavour]] entry (did you mean 'eo2.large'?)",
        "condition[0].routine: unknown routine 'maja': define it in a [[routine]] entry",
    ]
    known = {"flavour": {"eo3.huge", "eo2.larg"}, "routine": {"maja"}}
    assert configuration.problems(document, known) == []


def test_a_routine_needs_a_command_or_an_image_and_no_secret_in_its_environment():
    def change(d):
        del d["routine"][0]["command"]
        d["routine"][1]["env"] = {"CDSE_PASSWORD": "x", "LEVEL": "2"}

    found = problems_of(change)
    assert found[0] == "routine[0]: give a command or an image"
    assert found[1].startswith("routine[1]: env CDSE_PASSWORD looks like a secret")


def test_a_routine_environment_value_nomad_would_interpolate_is_refused_naming_the_variable():
    # It passed validation and load, then the Nomad backend refused every job of the routine, each
    # charged to it, until it was held (found by exploratory testing).
    def change(d):
        d["routine"][1]["env"] = {"SNOW_HOME": "${HOME}/snow", "LEVEL": "2", "PRICE": "$5"}

    [found] = problems_of(change)
    assert found.startswith("routine[1]: env SNOW_HOME holds '${', which Nomad would replace"), found


@pytest.mark.parametrize("name", ["alloc", "Alloc", "ALLOC"])
def test_a_routine_named_alloc_in_any_case_is_refused_saying_nomad_would_refuse_its_task(name):
    # Found by exploratory testing: the Nomad backend lower-cases a routine into its task's name, and
    # Nomad refuses a task named "alloc", so every attempt of the routine was refused and charged to it.
    def change(d):
        d["routine"][0]["name"] = name

    found = problems_of(change)
    assert f"routine[0].name: {name!r} cannot name a routine (in any case): Nomad refuses a task named " \
           "'alloc'" in "\n".join(found), found


def test_a_worker_is_named_one_way():
    assert problems_of(lambda d: d["worker"][0].update(name="w")) == [
        "worker[0]: give either name, or prefix and count, not both"]


def test_retention_days_accept_forever_and_refuse_other_words():
    def retention(d):
        d["retention"] = {"product_days": "forever", "task_history_days": 0.5}

    assert problems_of(retention) == []
    assert configuration.validate({"retention": {"product_days": "forever"}}).retention.product_days is None
    assert problems_of(lambda d: d.update(retention={"plan_days": "never"})) == [
        "retention.plan_days: must be a number, not text ('never')"]


def test_a_file_that_is_not_toml_or_not_there_is_one_clear_error(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[[routine]\nname = 1\n")
    with pytest.raises(configuration.ConfigurationError, match="broken.toml: not valid TOML"):
        configuration.read_file(broken)
    with pytest.raises(configuration.ConfigurationError, match="no such file: .*absent.toml"):
        configuration.read_file(tmp_path / "absent.toml")
    # A file of another encoding named no file, and a deeply nested one crashed the command.
    latin = tmp_path / "latin.toml"
    latin.write_bytes('name = "Bâle"\n'.encode("latin-1"))
    with pytest.raises(configuration.ConfigurationError, match=r"latin.toml: not UTF-8 text: byte 0xe2 at offset 9"):
        configuration.read_file(latin)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(configuration.ConfigurationError, match="deep.toml: not a configuration: .* nested too deeply"):
        configuration.read_file(deep)


def test_a_file_saved_with_a_byte_order_mark_loads_as_without_one(tmp_path):
    """(a Windows editor's UTF-8 with BOM was "not valid TOML: Invalid statement (at line 1, column 1)", the
    mark unseen in any editor; found by exploratory testing)"""
    marked = tmp_path / "marked.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + CONFIGURATION.read_bytes())
    assert configuration.read_file(marked) == demo_document()


def test_a_fifo_a_device_or_an_outsized_file_is_refused_before_it_is_read(tmp_path):
    """(`config validate /dev/zero` read without end, growing until memory ran out, and a fifo waited for
    a writer for ever; found by exploratory testing)"""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(configuration.ConfigurationError, match="not a regular file .*: give a configuration file"):
            configuration.read_file(path)
    huge = tmp_path / "huge.toml"
    with open(huge, "wb") as handle:
        handle.truncate(17 * 2**20)
    with pytest.raises(configuration.ConfigurationError, match="huge.toml: 17 MB, larger than a configuration file "
                                                               "is \\(16 MB at most\\)"):
        configuration.read_file(huge)


def test_the_error_lists_every_problem_and_says_nothing_was_written():
    error = configuration.ConfigurationError(["a: one", "b: two"], "prod.toml")
    assert str(error).splitlines() == ["prod.toml: 2 problems, nothing written:", "a: one", "b: two"]


def test_to_toml_writes_what_load_reads_back():
    document = demo_document()
    document["condition"][1]["multi_input"] = {"window_days": 7, "requires": [{"product_type": "L2A", "min_count": 2}]}
    document["routine"][0]["env"] = {"MAJA_MODE": "nominal", "QUOTE": 'say "hi"'}
    text = configuration.to_toml(document)
    again = tomllib.loads(text)
    assert configuration.problems(again) == []
    assert configuration.validate(again) == configuration.validate(document)


def test_every_key_has_a_meaning_and_readme_lists_every_key_as_the_schema_says():
    assert all(row["meaning"] for row in configuration.keys()
               if row["section"] not in ("[[flavour]]",) or row["key"] != "name"), "every key is documented"
    table = configuration.keys_markdown()
    readme = README.read_text()
    assert table in readme, ("README.md's configuration table differs from the schema: paste the output of "
                             "`hrwsi config keys --markdown` into it")
    assert re.search(r"`\[\[routine\]\]` \| `max_attempts` \| integer \| 3 \|", table)


def test_a_routine_command_argument_nomad_would_interpolate_is_refused():
    # env was refused, command accepted: Nomad replaces ${...} in a task's args too (helper/args.ReplaceEnv),
    # and the Nomad backend refused every job of the routine (found by exploratory testing).
    def change(d):
        d["routine"][1]["command"] = ["snow", "--home", "${HOME}/snow"]

    [found] = problems_of(change)
    assert found.startswith("routine[1]: command or image holds '${', which Nomad would replace"), found


@pytest.mark.parametrize(("key", "value", "path"), [
    ("command", ["snow", "--tile\x00"], "routine[1].command[1]"),
    ("image", "registry/snow\x00:1", "routine[1].image"),
    ("env", {"SNOW_MODE": "fast\x00"}, "routine[1].env.SNOW_MODE"),
])
def test_a_nul_character_in_a_command_image_or_environment_value_is_named_with_its_key(key, value, path):
    """(no argument, environment value or image name can hold one: the file was valid, and the load ended
    in "database error: PostgreSQL text fields cannot contain NUL (0x00) bytes", or "unsupported Unicode
    escape sequence" for env, naming no key; found by exploratory testing)"""
    def change(d):
        d["routine"][1][key] = value

    assert problems_of(change) == [f"{path}: holds a NUL character (\\x00), which no program argument, environment "
                                   "value or image name can hold"]


@pytest.mark.parametrize(("path", "value", "unit"), [
    (("routine", 0, "expected_duration_s"), 1e-9, "s"),
    (("routine", 0, "timeout_s"), 1e-9, "s"),
    (("condition", 0, "measurement_window_days"), 1e-12, "days"),
    (("condition", 0, "deadline_hours"), 1e-12, "hours"),
    (("retention", "task_history_days"), 1e-12, "days"),
])
def test_a_duration_shorter_than_the_database_keeps_is_named_with_its_key(path, value, unit):
    """(the file was valid, and the load ended in "routine[0]: the database refused it: new row for relation
    "processing_routine" violates check constraint "routine_expected_duration_is_positive"": the database keeps
    durations to the microsecond, and such a value is 0 there; found by exploratory testing)"""
    def change(d):
        d.setdefault(path[0], {})
        target = d[path[0]] if len(path) == 2 else d[path[0]][path[1]]
        target[path[-1]] = value

    shown = ".".join(str(p) for p in path).replace(".0.", "[0].")
    assert problems_of(change) == [f"{shown}: must be at least a microsecond (the database keeps durations to the "
                                   f"microsecond: it would be 0 there), not {value!r} {unit}"]


def test_a_long_value_or_key_of_the_file_is_cut_in_its_refusal_saying_how_long_it_was():
    """(a 5,000-character tile code or key made a 5,000-character line; found by review)"""
    def long_ones(d):
        d["condition"][0]["tiles"] = ["T" * 5000]
        d["routine"][0]["k" * 5000] = 1

    said = problems_of(long_ones)
    assert len(said) == 2 and all(len(line) < 400 and "... (5,000 characters)" in line for line in said), said


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("condition", 0, "name"), "L1C\u200b", "condition[0].name: 'L1C\\u200b' holds U+200B (zero width space)"),
    (("routine", 0, "input_product_type"), "L1C\u202e", "routine[0].input_product_type: 'L1C\\u202e' holds U+202E "
                                                        "(right-to-left override)"),
    (("routine", 0, "output_product_type"), "L2A\u2060", "routine[0].output_product_type: 'L2A\\u2060' holds "
                                                         "U+2060 (word joiner)"),
    (("flavour", 0, "name"), "eo2\u00a0large", "flavour[0].name: 'eo2\\xa0large' holds U+00A0 (no-break space)"),
    (("worker", 0, "prefix"), "node\ufeff", "worker[0].prefix: 'node\\ufeff' holds U+FEFF (zero width no-break "
                                            "space)"),
])
def test_a_name_or_product_type_holding_an_invisible_character_is_refused_naming_it_by_its_code_point(
        path, value, expected):
    """`hrwsi config load` took a condition named "L1C\\u200b" (a zero-width space, pasted), which looked like L1C
    and was another name, and a product type with a right-to-left override or a no-break space inside (found by
    exploratory testing)."""
    def change(d):
        target = d
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    said = problems_of(change)
    assert any(p.startswith(expected) and p.endswith("write the name without it") for p in said), said


def test_a_name_the_database_stored_before_invisible_characters_were_refused_is_taken_again_as_it_is():
    """`hrwsi config show` writes a name stored before migration 0124 refused them; `hrwsi config load` reads that
    file back (the database's names it already holds are given to problems() as known)."""
    def change(d):
        d["condition"][0]["name"] = "L1C\u200b"

    assert problems_of(change) != []
    document = demo_document()
    change(document)
    assert configuration.problems(document, {"stored_irregular": {"L1C\u200b"}}) == []


def test_config_show_writes_an_invisible_character_as_its_escape_which_load_reads_back_as_it():
    """Printed as it was, a name stored before migration 0124 with a zero-width space in it showed as L1C, and a
    right-to-left override reordered the line it was on."""
    document = demo_document()
    document["condition"][0]["name"] = "L1C\u200b\u202e\U000e0041\u00a0x"
    text = configuration.to_toml(document)
    assert 'name = "L1C\\u200b\\u202e\\U000e0041\\u00a0x"' in text
    assert tomllib.loads(text)["condition"][0]["name"] == "L1C\u200b\u202e\U000e0041\u00a0x"
