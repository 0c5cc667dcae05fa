"""Configuration as data: a TOML file of budget, flavours, workers, routines, conditions and the
retention policy, checked against a schema, then loaded into the reference tables in one
transaction (`hrwsi config load FILE`).

The schema is the pydantic models below, and it is the ONE place where every key is declared and
documented: its type, its range, its default and its meaning (`hrwsi config keys` prints them;
README.md's table is generated from them and a test keeps it so). Adding a key is one line in its
model (plus its column in a migration and in the upsert of sql/queries/configuration.sql).

Nothing is written unless the whole file is right: unknown keys (with a suggestion), wrong types,
NaN and infinities, zero or negative resources, durations out of range, duplicates and references
to flavours or routines that neither the file nor the database defines are each reported as one
line with its key path (`routine[2].max_attempt: unknown key (did you mean max_attempts?)`;
entries are counted from 0).

In a routine's command, `{python}` stands for the interpreter running hrwsi, so routines shipped
as Python modules run in the same environment wherever hrwsi is installed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import stat
import sys
import tomllib
import types
import typing
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from hrwsi.harvest.input_checks import REFUSED_CHARACTER
from hrwsi.harvest.schedules import MAX_WINDOW_DAYS  # (a condition's windows: at most 100 years)
from hrwsi.sql_files import query
from hrwsi.terminal import bounded, one_sentence, quoted

# -- value types -------------------------------------------------------------------------------------
MAX_INT4 = 2_147_483_647
MAX_DURATION_S = 30 * 86_400  # a routine's expected duration and timeout: at most 30 days
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)

def unseen_character_problem(value: str) -> str | None:
    """Why a name holding a control or invisible character is refused, naming the first by its code point; None
    when it holds none. (The characters of hrwsi.input's checks and of hrwsi.refuse_names_a_configuration_file_refuses.)"""
    found = REFUSED_CHARACTER.search(value)
    if found is None:
        return None
    character = found.group()
    what = unicodedata.name(character, "").lower() or "a control character"
    # (each such character as its escape, as hrwsi.unseen_characters_escaped shows it: `quoted` leaves a no-break
    # space as it is, and the refusal of "eo2\u00a0large" quoted 'eo2 large')
    shown = REFUSED_CHARACTER.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else
                                  f"\\u{ord(m.group()):04x}" if ord(m.group()) < 0x10000 else
                                  f"\\U{ord(m.group()):08x}", value)
    return (f"{quoted(shown)} holds U+{ord(character):04X} ({what}), which is not seen where a name is shown (or looks "
            "like a space): write the name without it")


def _no_unseen_character(value: str) -> str:
    if (problem := unseen_character_problem(value)) is not None:
        raise ValueError(problem)
    return value


def _kept_as_stored(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    # A name or product type the database stored before it refused what this file refuses (migration 0124) is kept,
    # and a file may give it again as it is: `hrwsi config show` writes it into the file `hrwsi config load` reads
    # back (the database's names of that kind come as known["stored_irregular"]).
    if isinstance(value, str) and value in ((info.context or {}).get("stored_irregular") or ()):
        return value
    return handler(value)


# No white space around it and no control character (an escape sequence in a flavour's name reached
# every terminal that listed it): a name is shown in tables, logs and the dashboard. Nor an invisible one
# (migration 0124): a condition "L1C\u200b" (a zero-width space, pasted) looked like L1C and was another name.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                        pattern=r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"),
                 AfterValidator(_no_unseen_character), WrapValidator(_kept_as_stored)]


def _plain_routine_name(value: str) -> str:
    if ".." in value:
        raise ValueError(f"{quoted(value)} is not a plain routine name like snow_cover: it holds '..'")
    if value.lower() == "alloc":
        # The Nomad backend names a routine's task after it, lower-cased, and Nomad refuses a task named
        # "alloc" (nomad/structs/structs.go Task.Validate: the allocation's shared directory is alloc/):
        # every attempt was refused and charged to the routine (found by exploratory testing).
        raise ValueError(f"{quoted(value)} cannot name a routine (in any case): Nomad refuses a task named 'alloc', "
                         "and a routine's Nomad task is named after it; choose another name")
    return value


# The database's check (routine_name_is_a_plain_name_like_snow_cover): a routine's name becomes
# directory names and Nomad job IDs.
RoutineName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"),
                        AfterValidator(_plain_routine_name)]


def _without_nul(value: str) -> str:
    # No argument, environment value or image name can hold one (C strings end there): such a file was
    # valid, and its load ended in "database error: PostgreSQL text fields cannot contain NUL (0x00)
    # bytes" naming no key (found by exploratory testing).
    if "\x00" in value:
        raise ValueError("holds a NUL character (\\x00), which no program argument, environment value or image "
                         "name can hold")
    return value


Text = Annotated[str, StringConstraints(min_length=1, pattern=r"\S"), AfterValidator(_without_nul)]
EnvValue = Annotated[str, AfterValidator(_without_nul)]
# CPUs: at least a hundredth of a core. 1e-300 was valid: the planner counted such a task as taking
# nothing, so that any number of them fitted a worker at once, while the Nomad job builder reserved
# ceil(cores x HRWSI_NOMAD_MHZ_PER_CORE) MHz, at least 1, for each (found by review). A hundredth (10 MHz
# at the default 1000 MHz a core) is finer than any routine runs in, and leaves a worker of 4096 CPUs at
# most 409,600 tasks to plan. At most 4096: more than any VM has.
MIN_CPU = 0.01
Cpu = Annotated[float, Field(ge=MIN_CPU, le=4096)]
Megabytes = Annotated[int, Field(gt=0, le=MAX_INT4)]
# A routine's RAM: at least 10 MB, Nomad's least (structs.go Resources.Validate: "minimum MemoryMB value
# is 10"); the job builder gives it as MemoryMB as it is, so that ram_mb = 1 was valid and every job of
# the routine was refused by Nomad, charged to it, until it was held (found by review). (A flavour's sizes
# are not sent.)
MIN_ROUTINE_RAM_MB = 10
RoutineRam = Annotated[int, Field(ge=MIN_ROUTINE_RAM_MB, le=MAX_INT4)]
# A routine's storage: at least 10 MB, Nomad's least EphemeralDisk (nomad/structs/structs.go
# EphemeralDisk.Validate: "minimum DiskMB value is 10"; hrwsi.backends.nomad.job_spec.MIN_DISK_MB).
# storage_mb = 1 was valid: the job builder raised it to 10 MB, which Nomad reserved on the worker,
# while the planner counted 1 MB, so that it put more tasks on a worker's disk than Nomad would place
# (found by review). Refused, as ram_mb below 10 is, rather than counted as 10: the file then says what
# the planner counts and what Nomad reserves, both.
MIN_ROUTINE_STORAGE_MB = 10
RoutineStorage = Annotated[int, Field(ge=MIN_ROUTINE_STORAGE_MB, le=MAX_INT4)]


def _at_least_a_microsecond(unit_s: float, unit: str) -> AfterValidator:
    """A duration the database keeps: it stores intervals to the microsecond, and a shorter one is 0 there,
    which its checks refuse. Such a file was valid, and its load ended in "the database refused it: ...
    violates check constraint routine_expected_duration_is_positive", naming no key (found by
    exploratory testing)."""
    def check(value: float | None) -> float | None:
        if value is not None and value * unit_s < 0.5e-6:
            raise ValueError(f"must be at least a microsecond (the database keeps durations to the microsecond: it "
                             f"would be 0 there), not {value!r} {unit}")
        return value
    return AfterValidator(check)


Seconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S), _at_least_a_microsecond(1, "s")]
Days = Annotated[float, Field(gt=0, le=MAX_WINDOW_DAYS), _at_least_a_microsecond(86_400, "days")]
Tile = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}[A-Z]{3}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _forever(value: Any) -> Any:
    """`"forever"` in a retention key means: never delete (stored as NULL)."""
    return None if value == "forever" else value


RetentionDays = Annotated[Days | None, BeforeValidator(_forever)]


class _Entry(BaseModel):
    # strict: TOML is typed, so "4" is not a number and true is not 1; no NaN or infinity anywhere.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Budget(_Entry):
    """[budget]: limits over everything running at one moment; a key left out is unlimited."""

    cpu_max: Cpu | None = Field(None, description="CPUs in use at once, over all workers")
    ram_max_mb: Annotated[int, Field(gt=0)] | None = Field(None, description="RAM in use at once (MB)")
    storage_max_mb: Annotated[int, Field(gt=0)] | None = Field(None, description="storage in use at once (MB)")
    vm_max: Annotated[int, Field(gt=0, le=MAX_INT4)] | None = Field(None, description="workers in use at once")
    plan_mode: Literal["makespan", "deadline"] = Field(
        "makespan", description="makespan: finish soonest, then fewest VMs; deadline: the fewest workers that "
                                "end everything within plan_horizon_hours")
    plan_horizon_hours: Annotated[float, Field(ge=1 / 60, le=720)] | None = Field(
        None, description="the planning horizon of deadline mode (hours)")

    @model_validator(mode="after")
    def _deadline_mode_has_a_horizon(self) -> Budget:
        if self.plan_mode == "deadline" and self.plan_horizon_hours is None:
            raise ValueError("plan_mode = \"deadline\" needs plan_horizon_hours")
        return self


class Flavour(_Entry):
    """[[flavour]]: a VM size."""

    name: Name = Field(description="the flavour's name (e.g. eo2.large)")
    cpu: Cpu = Field(description="CPUs of one VM")
    ram_mb: Megabytes = Field(description="RAM of one VM (MB)")
    disk_mb: Megabytes = Field(description="disk of one VM (MB)")


class Worker(_Entry):
    """[[worker]]: one worker (name) or a numbered series (prefix and count: prefix01, prefix02 ...)."""

    name: Name | None = Field(None, description="the worker's name (or give prefix and count)")
    prefix: Name | None = Field(None, description="names prefix01 ... prefixNN (with count)")
    count: Annotated[int, Field(ge=1, le=10_000)] | None = Field(None, description="how many workers (with prefix)")
    flavour: Name = Field(description="the flavour of its VM")
    active: bool = Field(True, description="false: nothing is planned on it")

    @model_validator(mode="after")
    def _one_way_of_naming(self) -> Worker:
        if self.name is not None and (self.prefix is not None or self.count is not None):
            raise ValueError("give either name, or prefix and count, not both")
        if self.name is None and (self.prefix is None or self.count is None):
            raise ValueError("give name, or prefix and count")
        return self

    def names(self) -> list[str]:
        return [self.name] if self.name else [f"{self.prefix}{i:02d}" for i in range(1, (self.count or 0) + 1)]


class Routine(_Entry):
    """[[routine]]: a processing step."""

    name: RoutineName = Field(description="the routine's name (letters, digits, _ . -; not alloc, a task name Nomad "
                                          "refuses; it names directories and Nomad jobs)")
    cpu: Cpu = Field(description=f"CPUs one task needs (at least {MIN_CPU})")
    ram_mb: RoutineRam = Field(description=f"RAM one task needs (MB, at least {MIN_ROUTINE_RAM_MB}: Nomad's least)")
    storage_mb: RoutineStorage = Field(description=f"storage one task needs (MB, at least {MIN_ROUTINE_STORAGE_MB}: "
                                                   "Nomad's least)")
    expected_duration_s: Seconds = Field(description="how long a task is expected to run, for planning (s)")
    timeout_s: Seconds | None = Field(None, description="a job running longer is stopped and failed (s); none: no limit")
    command: Annotated[list[Text], Field(min_length=1)] | None = Field(
        None, description="the program and its arguments; {python} is hrwsi's interpreter (a command or an image)")
    image: Text | None = Field(None, description="a container image (Nomad docker driver; a command or an image)")
    input_product_type: Name = Field(description="the product type it reads (e.g. L1C)")
    output_product_type: Name = Field(description="the product type of the files it writes (e.g. L2A)")
    max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(3, description="failures before a task is terminated")
    hold_after_failures: Annotated[int, Field(ge=1, le=10_000)] = Field(
        5, description="consecutive failures that put the routine on hold; its back-fill's, counted apart, "
                       "hold its back-fill alone")
    flavour: Name | None = Field(None, description="run only on workers of this flavour; none: any that fits")
    sequential_per_tile: bool = Field(False, description="a tile's tasks run one after the other, in date order")
    env: dict[EnvName, EnvValue] = Field(default_factory=dict,
                                    description="environment variables of its jobs (no secrets: they reach job specs)")

    @model_validator(mode="after")
    def _runnable(self) -> Routine:
        if self.command is None and self.image is None:
            raise ValueError("give a command or an image")
        secrets = sorted(k for k in self.env if SECRET_NAME.search(k))
        if secrets:
            raise ValueError(f"env {', '.join(secrets)} looks like a secret: routine environments are written into "
                             "job specs; give the job the secret through the backend (e.g. Nomad Variables)")
        # Nomad replaces ${...} in a job's environment (client/taskenv), and the Nomad backend refuses to
        # submit such a value: every job of the routine failed, charged to it, until it was held
        # (found by exploratory testing, 2026-12-05). Refused here, where the value is written.
        interpolated = sorted(k for k, v in self.env.items() if "${" in v)
        if interpolated:
            raise ValueError(f"env {', '.join(interpolated)} holds '${{', which Nomad would replace with a node "
                             "attribute or a runtime variable: give the value itself (HRWSI_* variables name the "
                             "attempt's paths)")
        # And in a task's arguments and driver config, the command and the image (helper/args.ReplaceEnv,
        # client/taskenv): `command` with '${' was valid and every job of the routine refused.
        if any("${" in argument for argument in self.command or ()) or "${" in (self.image or ""):
            raise ValueError("command or image holds '${', which Nomad would replace with a node attribute or a "
                             "runtime variable in the job's arguments: give the value itself (HRWSI_* variables "
                             "name the attempt's paths)")
        return self


class MultiInputRequirement(_Entry):
    """[[condition.multi_input.requires]]: members of one product type a group needs."""

    product_type: Name = Field(description="the members' product type")
    min_count: Annotated[int, Field(ge=1, le=10_000)] = Field(1, description="at least this many")


class MultiInput(_Entry):
    """[condition.multi_input]: one input per complete group (a tile and a window of days) instead of one per
    product."""

    window_days: Annotated[int, Field(ge=1, le=366)] = Field(1, description="the group's window (days)")
    every_day_of_window: bool = Field(False, description="the requirements hold on each day of the window")
    wait_for_open_tasks: bool = Field(True, description="wait until no task that would make a member is open")
    requires: Annotated[list[MultiInputRequirement], Field(min_length=1)] = Field(
        description="the members a group needs")


class Condition(_Entry):
    """[[condition]]: when an input deserves a routine."""

    name: Name = Field(description="the condition's name (inputs name it)")
    routine: Name = Field(description="the routine its inputs get")
    publication_window_days: Days | None = Field(None, description="harvest only inputs published this recently")
    measurement_window_days: Days | None = Field(None, description="harvest and chain only inputs measured this "
                                                                   "recently")
    tiles: Annotated[list[Tile], Field(min_length=1)] | None = Field(None, description="allow-list of MGRS tiles; "
                                                                                        "none: every tile")
    active: bool = Field(True, description="false: no new inputs are created for it")
    lane: Name = Field("nrt", description="the lane its tasks are served in: nrt (first) or archive (ADR 0009)")
    deadline_hours: Annotated[float, Field(gt=0, le=MAX_WINDOW_DAYS * 24), _at_least_a_microsecond(3600, "hours")] \
        | None = Field(
        None, description="its products are due this many hours after sensing (or publication); earliest first")
    deadline_from: Literal["measurement", "publication"] = Field("measurement", description="what the deadline "
                                                                                             "counts from")
    multi_input: MultiInput | None = Field(None, description="a multi-input rule (absent: single-input; a rule "
                                                                   "the database had is removed, with a note)")


class Retention(_Entry):
    """[retention]: what `hrwsi prune` and the orchestrator delete (README.md, Retention). Days are
    counted from when a task finished (or a row was written); "forever" keeps everything of a kind."""

    enabled: bool = Field(True, description="false: the orchestrator does not prune (hrwsi prune still does)")
    task_history_days: RetentionDays = Field(7, description="a finished task's history, attempts (jobs) and logs")
    finished_task_days: RetentionDays = Field(30, description="a finished task without products, its input")
    product_days: RetentionDays = Field(None, description="product rows no kept product was made from "
                                                          "(default forever)")
    plan_days: RetentionDays = Field(7, description="stored plans no open task holds")
    alert_days: RetentionDays = Field(30, description="alerts, sent or not")
    landing_file_days: RetentionDays = Field(30, description="landing-file rows (and their work files) of "
                                                             "inputs gone or never made")
    dead_service_hours: Annotated[float, Field(gt=0, le=8760), _at_least_a_microsecond(3600, "hours")] = Field(
        1, description="service_instance rows without a heartbeat for this long")
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = Field(500, description="rows per short transaction")
    interval_s: Annotated[float, Field(ge=10, le=86_400)] = Field(600, description="how often the orchestrator "
                                                                                   "prunes (s)")


class Configuration(_Entry):
    """The whole file."""

    budget: Budget | None = Field(None, description="left as it is when absent")
    flavour: list[Flavour] = Field(default_factory=list)
    worker: list[Worker] = Field(default_factory=list)
    routine: list[Routine] = Field(default_factory=list)
    condition: list[Condition] = Field(default_factory=list)
    retention: Retention | None = Field(None, description="left as it is when absent")


class ConfigurationError(ValueError):
    """The file says something hrwsi cannot use: one line per problem, each with its key path."""

    def __init__(self, problems: list[str], source: str | None = None, *, checked: bool = True):
        self.problems = problems
        source = None if source is None else bounded(source, one_sentence)  # (a file's name may hold a line break)
        if not checked:  # the file could not be read at all
            super().__init__("\n".join(f"{source}: {p}" if source else p for p in problems))
            return
        head = f"{source}: " if source else ""
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        super().__init__("\n".join([f"{head}{count}, nothing written:", *problems]))


# -- checking ----------------------------------------------------------------------------------------
def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for argument in typing.get_args(annotation):
        found += _models_in(argument)
    return found


def _model_at(path: tuple) -> type[BaseModel] | None:
    """The model whose keys live at `path` (list indices skipped), for suggestions."""
    model: type[BaseModel] | None = Configuration
    for part in path:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        models = _models_in(model.model_fields[part].annotation)
        model = models[0] if models else None
    return model


def key_path(loc: tuple) -> str:
    """routine[0].storage_mb: where a value is in the file; a key the file wrote is cut when long (`bounded`)."""
    text = ""
    for part in loc:
        # (one_sentence: a key holding a line break split its problem's line in two, as the refusals did)
        key = bounded(str(part), one_sentence)
        text += f"[{part}]" if isinstance(part, int) else (f".{key}" if text else key)
    return text


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "an array",
               dict: "a table"}
_EXPECTED = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
             "string_type": "text", "list_type": "an array", "dict_type": "a table", "model_type": "a table",
             "int_from_float": "a whole number"}


def _given(value: Any) -> str:
    kind = _TYPE_NAMES.get(type(value), type(value).__name__)
    return f"{kind} ({_shown(value)})" if not isinstance(value, (dict, list)) else kind


def _shown(value: Any) -> str:
    """A value the file gave, in a refusal: text quoted as names are (hrwsi.terminal.quoted), a number as it is."""
    return quoted(value) if isinstance(value, str) else repr(value)


def _message(error: dict) -> str:  # noqa: C901 - one sentence per kind of schema error
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = error["loc"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields) if model else [], n=1, cutoff=0.6)
        return "unknown key" + (f" (did you mean {close[0]}?)" if close else
                                (f" (known: {', '.join(model.model_fields)})" if model else ""))
    if kind == "missing":
        return "missing: this key is required"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {_given(value)}"
    if kind == "finite_number":
        return f"must be a finite number, not {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than",
                 "less_than_equal": "at most"}[kind]
        limit = next(iter(ctx.values()))
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {words} {limit}, not {value!r}" if isinstance(limit, (int, float)) else error["msg"]
    if kind == "string_pattern_mismatch":
        if loc and (loc[-2:-1] == ("tiles",) or "tiles" in loc):
            return f"{quoted(value)} is not an MGRS tile code like 32TLR"
        if "env" in loc:
            return f"{quoted(value)} is not an environment variable name"
        if loc[:1] == ("routine",) and loc[-1:] == ("name",):
            return (f"{quoted(value)} is not a plain routine name like snow_cover: letters, digits, _ . - (at most 100, "
                    "the first a letter or digit); it names directories and Nomad jobs")
        if isinstance(value, str) and (problem := unseen_character_problem(value)) is not None:
            return problem
        return f"{quoted(value)} must not be empty, start or end with spaces, or hold control characters"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, not {_shown(value)}"
    return error["msg"][0].lower() + error["msg"][1:]


def _context(known: dict[str, set[str]] | None) -> dict[str, set[str]]:
    return {"stored_irregular": (known or {}).get("stored_irregular", set())}


def _schema_problems(document: dict, known: dict[str, set[str]] | None = None) -> list[str]:
    try:
        Configuration.model_validate(document, context=_context(known))
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            # A model validator reports at the entry itself; the path then ends at the entry.
            problems.append(f"{key_path(item['loc']) or '(top level)'}: {_message(item)}")
        return problems
    return []


def _names(document: dict, kind: str) -> list[tuple[int, Any]]:
    entries = document.get(kind)
    return [(i, e.get("name")) for i, e in enumerate(entries) if isinstance(e, dict)] if isinstance(entries, list) \
        else []


def _worker_names(document: dict) -> list[tuple[int, str, str]]:
    """(index, key, worker name) for every worker the file names, series expanded."""
    found = []
    for index, entry in enumerate(document.get("worker") or []):
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("name"), str):
            found.append((index, "name", entry["name"]))
        elif isinstance(entry.get("prefix"), str) and type(entry.get("count")) is int and 0 < entry["count"] <= 10_000:
            found += [(index, "prefix", f"{entry['prefix']}{n:02d}") for n in range(1, entry["count"] + 1)]
    return found


def _duplicates(document: dict) -> list[str]:
    problems = []
    for kind in ("flavour", "routine", "condition"):
        first: dict[Any, int] = {}
        for index, name in _names(document, kind):
            if isinstance(name, str) and name in first:
                problems.append(f"{kind}[{index}].name: {quoted(name)} is already defined by {kind}[{first[name]}]")
            elif isinstance(name, str):
                first[name] = index
    seen: dict[str, int] = {}
    for index, key, name in _worker_names(document):
        if name in seen and seen[name] != index:
            problems.append(f"worker[{index}].{key}: worker {quoted(name)} is already defined by worker[{seen[name]}]")
        seen.setdefault(name, index)
    for index, entry in enumerate(document.get("condition") or []):
        requires = ((entry.get("multi_input") or {}).get("requires") if isinstance(entry, dict)
                    and isinstance(entry.get("multi_input"), dict) else None)
        types_seen: set = set()
        for r_index, requirement in enumerate(requires if isinstance(requires, list) else []):
            product_type = requirement.get("product_type") if isinstance(requirement, dict) else None
            if isinstance(product_type, str) and product_type in types_seen:
                problems.append(f"condition[{index}].multi_input.requires[{r_index}].product_type: {quoted(product_type)} "
                                "is listed twice")
            types_seen.add(product_type)
    return problems


def _references(document: dict, known: dict[str, set[str]]) -> list[str]:
    flavours = {n for _, n in _names(document, "flavour") if isinstance(n, str)} | known.get("flavour", set())
    routines = {n for _, n in _names(document, "routine") if isinstance(n, str)} | known.get("routine", set())
    problems = []
    lanes = known.get("lane", {"nrt", "archive"})
    checks = (("worker", "flavour", flavours, "a [[flavour]] entry"), ("routine", "flavour", flavours,
                                                                         "a [[flavour]] entry"),
              ("condition", "routine", routines, "a [[routine]] entry"), ("condition", "lane", lanes, "hrwsi.lane"))
    for kind, key, defined, where in checks:
        for index, entry in enumerate(document.get(kind) or []):
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, str) and value not in defined:
                close = difflib.get_close_matches(value, sorted(defined), n=1)
                problems.append(f"{kind}[{index}].{key}: unknown {key} {quoted(value)}: define it in {where}"
                                + (f" (did you mean {quoted(close[0])}?)" if close else ""))
    return problems


def _chain_cycle(routines: dict[str, tuple[str, str]], consuming: set[str]) -> list[str] | None:
    """The shortest cycle of chaining (routine names, the first again at the end), or None. Routine A
    chains into B when B reads A's output type and has an active condition that is not multi-input
    (`consuming`); sql/queries/configuration.sql, config_chain_cycle, asks the same of the database."""
    edges = {a: sorted(b for b, (b_in, _) in routines.items() if b in consuming and b_in == a_out)
             for a, (_, a_out) in routines.items()}
    best: list[str] | None = None
    for start in sorted(routines):  # breadth first from each routine, while a shorter cycle can be found
        frontier = [[start]]
        while frontier and (best is None or len(frontier[0]) + 1 < len(best)):
            longer = []
            for path in frontier:
                for target in edges[path[-1]]:
                    if target == start and (best is None or len(path) + 1 < len(best)):
                        best = [*path, start]
                    elif target not in path:
                        longer.append([*path, target])
            frontier = longer
    return best


def _chain_cycles(document: dict) -> list[str]:
    """A routine whose products chain back into itself, within the file."""
    routines = {e["name"]: (e["input_product_type"], e["output_product_type"]) for e in document.get("routine") or []
                if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in
                                               ("name", "input_product_type", "output_product_type"))}
    consuming = {e["routine"] for e in document.get("condition") or [] if isinstance(e, dict)
                 and e.get("active", True) is not False and e.get("multi_input") is None and isinstance(e.get("routine"), str)}
    cycle = _chain_cycle(routines, consuming)
    return [] if cycle is None else [chain_cycle_problem(cycle)]


def chain_cycle_problem(cycle: list[str]) -> str:
    """One line naming a cycle of chaining and what to change."""
    turns = " -> ".join(cycle)
    if len(cycle) == 2:
        return (f"routine {quoted(cycle[0])} chains into itself for ever ({turns}): it reads the product type it writes, "
                "so each of its products would make a new input; give it another output_product_type or make its "
                "condition inactive")
    return (f"routines {', '.join(quoted(name) for name in cycle[:-1])} chain into each other for ever ({turns}): each "
            "reads the product type the one before writes, so each product would make a new input; give one of them "
            "another output_product_type or make its condition inactive")


def problems(document: Any, known: dict[str, set[str]] | None = None) -> list[str]:
    """Every problem of a configuration document, one line each; [] when it can be loaded.
    `known` holds the names the database already has ({"flavour": {...}, "routine": {...}})."""
    if not isinstance(document, dict):
        return ["(top level): must be a table of [budget], [[flavour]], [[worker]], [[routine]], [[condition]], "
                "[retention]"]
    found = _schema_problems(document, known) + _duplicates(document) + _references(document, known or {}) + \
        _chain_cycles(document)
    return list(dict.fromkeys(found))


_NAME_QUERIES = {"flavour": "config_flavour_names", "routine": "config_routine_names", "lane": "config_lane_names"}


def known_names(conn: psycopg.Connection) -> dict[str, set[str]]:
    """The flavours, routines and lanes the database has: a file may refer to them. And ("stored_irregular") the
    names and product types stored before the database refused what a file refuses of them, which a file may give."""
    known = {kind: {row[0] for row in conn.execute(query(name))} for kind, name in _NAME_QUERIES.items()}
    known["stored_irregular"] = {row[0] for row in conn.execute(query("config_names_stored_that_a_file_refuses"))}
    return known


# A configuration file is some kilobytes (the demo's: 5 kB); a path given by mistake may be anything.
MAX_FILE_BYTES = 16 * 2**20


def _read_bounded(path: Path) -> str:
    """The file's text: a regular file of at most MAX_FILE_BYTES, UTF-8, a byte order mark left out.
    `config validate /dev/zero` read without end until memory ran out, a fifo waited for a writer for
    ever, and a file a Windows editor saved with a mark was "Invalid statement (at line 1, column 1)"
    (found by exploratory testing)."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):  # (a directory: said as before)
        raise ConfigurationError(["not a regular file (a fifo, a socket or a device): give a configuration file"],
                                 str(path), checked=False)
    too_large = ConfigurationError([f"{max(info.st_size, MAX_FILE_BYTES + 1) / 2**20:.0f} MB, larger than a "
                                    f"configuration file is ({MAX_FILE_BYTES // 2**20} MB at most)"], str(path),
                                   checked=False)
    if info.st_size > MAX_FILE_BYTES:
        raise too_large
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)  # (a file growing meanwhile, or one whose size says nothing)
    if len(data) > MAX_FILE_BYTES:
        raise too_large
    return data.decode("utf-8-sig")


def read_file(path: str | Path) -> dict:
    """The TOML document of a file; a missing file or bad TOML is a ConfigurationError."""
    try:
        text = _read_bounded(Path(path))
    except FileNotFoundError:
        raise ConfigurationError([f"no such file: {bounded(str(path), one_sentence)}"], checked=False) from None
    except OSError as error:
        raise ConfigurationError([f"cannot read {bounded(str(path), one_sentence)}: {error.strerror}"], checked=False) \
            from None
    except UnicodeDecodeError as error:
        raise ConfigurationError([f"not UTF-8 text: byte 0x{error.object[error.start]:02x} at offset {error.start} "
                                  "(TOML files are UTF-8)"], str(path), checked=False) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError([f"not valid TOML: {error}"], str(path), checked=False) from None
    except RecursionError:  # (tomllib reads nested arrays and tables by recursion)
        raise ConfigurationError(["not a configuration: its arrays or tables are nested too deeply"], str(path),
                                 checked=False) from None


def validate(document: Any, known: dict[str, set[str]] | None = None, source: str | None = None) -> Configuration:
    """The checked configuration, or ConfigurationError listing every problem."""
    found = problems(document, known)
    if found:
        raise ConfigurationError(found, source)
    return Configuration.model_validate(document, context=_context(known))


# -- loading -----------------------------------------------------------------------------------------
def _expand(command: list[str] | None) -> list[str] | None:
    if command is None:
        return None
    return [part.replace("{python}", sys.executable) for part in command]


def load_file(conn: psycopg.Connection, path: str | Path) -> dict[str, int]:
    return load(conn, read_file(path), source=str(path))


def load(conn: psycopg.Connection, document: dict, source: str | None = None,
         said: list[str] | None = None) -> dict[str, int]:
    """Check the whole document, then upsert everything in it in one transaction; all or nothing.
    Returns how many entries of each kind were loaded; `said` receives what the load removed (a
    multi-input rule of a condition the file lists without one)."""
    config = validate(document, known_names(conn), source)
    counts = {"flavours": 0, "workers": 0, "routines": 0, "conditions": 0}
    with conn.transaction():
        for index, flavour in enumerate(config.flavour):
            _write(conn, "upsert_flavour", flavour.model_dump(), f"flavour[{index}]", source)
            counts["flavours"] += 1
        for index, worker in enumerate(config.worker):
            for name in worker.names():
                _write(conn, "upsert_worker", {"name": name, "flavour": worker.flavour, "active": worker.active},
                       f"worker[{index}]", source)
                counts["workers"] += 1
        if config.budget is not None:
            _write(conn, "update_budget", config.budget.model_dump(), "budget", source)
            counts["budget"] = 1
        for index, routine in enumerate(config.routine):
            params = routine.model_dump()
            params.update(command=_expand(routine.command), env=json.dumps(routine.env))
            series = conn.execute(query("config_routine_series"), {"name": routine.name}).fetchone()
            _write(conn, "upsert_routine", params, f"routine[{index}]", source)
            _say_series_change(routine.name, routine.sequential_per_tile, series, said)
            counts["routines"] += 1
        for index, condition in enumerate(config.condition):
            was = conn.execute(query("config_condition_active"), {"name": condition.name}).fetchone()
            _write(conn, "upsert_condition", condition.model_dump(exclude={"multi_input"}), f"condition[{index}]",
                   source)
            if condition.multi_input is not None:
                _write_multi_input(conn, condition, f"condition[{index}].multi_input", source)
            else:
                _remove_multi_input(conn, condition.name, said)
                if condition.active and not (was and was[0]):
                    _say_missed_products(conn, condition.name, was is None, said)
            counts["conditions"] += 1
        if config.retention is not None:
            _write(conn, "update_retention_policy", config.retention.model_dump(), "retention", source)
            counts["retention policy"] = 1  # (a file of only [retention] said "0 flavours, ..." and no more)
        # With what the database had: a cycle through a routine of this file and one loaded before.
        cycle = conn.execute(query("config_chain_cycle")).fetchone()
        if cycle is not None:
            raise ConfigurationError([chain_cycle_problem(cycle[0])], source)
    return counts


def notes(conn: psycopg.Connection, document: dict) -> list[str]:
    """What ops should know once the file is loaded: what the database keeps that the file does not
    name (for each kind the file names at least one of: a load adds and updates, never removes; a
    renamed routine stayed beside the new one, and "1 workers" was said while two were active), and
    the routines no active worker can run (found by exploratory testing, 2026-12-05), and those the budget
    cannot hold (a routine above cpu_max was loaded as valid, its tasks then refused by the planner), and the
    time series whose waits do not reach the whole chain that feeds them."""
    config = Configuration.model_validate(document, context=_context(known_names(conn)))
    named = {"flavour": {f.name for f in config.flavour}, "worker": {n for w in config.worker for n in w.names()},
             "routine": {r.name for r in config.routine}, "condition": {c.name for c in config.condition}}
    kept: dict[str, list[str]] = {}
    for kind, name, active in conn.execute(query("config_names_held")):
        if named[kind] and name not in named[kind] and (active or kind != "worker"):
            kept.setdefault(kind, []).append(name if active else f"{name} (inactive)")
    what_to_do = {"flavour": "", "worker": ": still planned on (list it with active = false to stop that)",
                  "routine": ": a routine with no active condition gets no new tasks",
                  "condition": ": set active = false to stop one"}
    said = [f"the database keeps {len(names)} {kind}(s) this file does not name: {', '.join(names)}{what_to_do[kind]}"
            for kind, names in kept.items()]
    said += _open_tasks_of_routines_left_out(conn, [n.removesuffix(" (inactive)") for n in kept.get("routine", [])],
                                             sorted(named["routine"]))
    for name, cpu, ram_mb, storage_mb, flavour in conn.execute(query("config_routines_no_worker_fits")):
        only = f" on flavour {flavour}" if flavour else ""
        said.append(f"routine {name} ({cpu:g} CPU, {ram_mb} MB RAM, {storage_mb} MB storage{only}) fits no active "
                    "worker: its tasks cannot be planned until one fits")
    for name, cpu, ram_mb, storage_mb, cpu_max, ram_max_mb, storage_max_mb in conn.execute(
            query("config_routines_beyond_budget")):
        over = [f"{what} budget is {limit:g}{unit}" for what, limit, unit in
                (("the CPU", cpu_max, ""), ("the RAM", ram_max_mb, " MB"), ("the storage", storage_max_mb, " MB"))
                if limit is not None]
        said.append(f"routine {name} ({cpu:g} CPU, {ram_mb} MB RAM, {storage_mb} MB storage) exceeds the budget "
                    f"({', '.join(over)}): its tasks cannot be planned until the budget or the routine changes")
    for series, upstream, reads, further in conn.execute(query("config_series_fed_from_two_steps_up")):
        said.append(f"routine {series} is a time series fed by a chain of more than one step ({', '.join(further)} -> "
                    f"{upstream} -> {series}): each task waits for the open work of {upstream} on the scenes of its tile "
                    f"sensed before it, not for that of {', '.join(further)} (which makes the {reads} {upstream} "
                    f"reads): a scene late by two steps comes in as a late scene, before the next task of its tile if "
                    f"that one has not started, else after it")
    for condition, product_type in conn.execute(query("config_requirements_nobody_meets")):
        said.append(f"condition {condition} requires product type {product_type}, which no routine with an active "
                    f"condition writes (output_product_type) and no active single-input condition reads (its "
                    f"harvested or inserted inputs would count): none of its groups can complete until one does")
    return said


def _open_tasks_of_routines_left_out(conn: psycopg.Connection, names: list[str], file_routines: list[str]) -> list[str]:
    """A routine the file no longer names (a load never removes one: a routine renamed is a new one
    beside it) whose open tasks still name it: they run on it, its command and resources; and how to
    move those not started to a routine of the file that reads the same type (found by exploratory
    testing: a renamed routine's held tasks stayed on the old one, and nothing said so)."""
    if not names:
        return []
    said = []
    for row in conn.execute(query("config_routines_open_tasks"), {"names": names, "file_routines": file_routines}):
        name, product_type, open_tasks, held, under_way, of_campaigns, moved_to, same_type = row
        same_type = moved_to if len(moved_to) == 1 else same_type  # (its conditions' routine now: a rename's)
        counted = ", ".join(f"{n} {what}" for n, what in ((held, "held"), (under_way, "under way"),
                                                          (of_campaigns, "of campaigns")) if n)
        head = (f"routine {name} is no longer in the file but {open_tasks} open task(s){f' ({counted})' if counted else ''} "
                f"name it: they keep running on {name} (its command and resources)")
        if same_type:
            target = same_type[0] if len(same_type) == 1 else "NEW"
            choice = "" if len(same_type) == 1 else f" (NEW one of {', '.join(same_type)}, which read {product_type} too)"
            said.append(f"{head}; `hrwsi move-tasks {name} {target}`{choice} moves those not started"
                        + (f" to {target}, which reads {product_type} too" if len(same_type) == 1 else "")
                        + " (held by hand stay held; a campaign's stay with it)")
        else:
            said.append(f"{head}; no routine of the file reads {product_type}: `hrwsi hold {name}` holds those not "
                        f"started, `hrwsi cancel ID` cancels one")
    return said


def check_against(conn: psycopg.Connection, document: dict, source: str | None = None,
                  said: list[str] | None = None) -> Configuration:
    """Everything `load` checks, the database's own checks and a cycle of chaining through what it
    already has included, then rolled back: nothing is written (`hrwsi config validate`). `said`
    receives what `notes` says of the database as the file would leave it."""
    try:
        with conn.transaction(force_rollback=True):
            load(conn, document, source, said)
            if said is not None:
                said.extend(notes(conn, document))
    except psycopg.errors.InsufficientPrivilege:
        # A role that may read the configuration but not write it: the checks of the file and its names.
        return validate(document, known_names(conn), source)
    return Configuration.model_validate(document, context=_context(known_names(conn)))


def _write_multi_input(conn: psycopg.Connection, condition: Condition, where: str, source: str | None) -> None:
    rule = condition.multi_input
    assert rule is not None
    _write(conn, "upsert_multi_input_rule", {"condition": condition.name, **rule.model_dump(exclude={"requires"})},
           where, source)
    _write(conn, "replace_multi_input_requirements",
           {"condition": condition.name, "product_types": [r.product_type for r in rule.requires],
            "min_counts": [r.min_count for r in rule.requires]}, f"{where}.requires", source)


def _say_series_change(name: str, sequential: bool, before: tuple | None, said: list[str] | None) -> None:
    """What a routine turned into or out of a time series does to its open tasks (migration 0073: turned
    off, the tasks kept waiting for the task before them, and nothing said so)."""
    if before is None or said is None or before[0] == sequential:
        return
    _, linked, open_tasks = before
    if not sequential:
        said.append(f"routine {name} is no longer a time series (sequential_per_tile = false): its {linked} task(s) "
                    "that had not started no longer wait for the task before them (blocked and planned ones are "
                    "pending again, to be planned; each one's history says so)")
    else:
        said.append(f"routine {name} is a time series now (sequential_per_tile = true): its tasks created from now on "
                    f"run one after the other per tile, in date order; its {open_tasks} open task(s) run as they are "
                    "(those created while it was not one are in no series: no new task waits for them)")


def _say_missed_products(conn: psycopg.Connection, name: str, new: bool, said: list[str] | None) -> None:
    """A condition made active (or added): the products of its type made while it was inactive (or
    before it existed) were chained once, into the conditions active then, and never will be to it
    (found by exploratory testing); how many, and the command that chains them."""
    if said is None:
        return
    missed, too_old = conn.execute(query("config_missed_products"), {"name": name}).fetchone()
    if not missed:
        conn.execute(query("config_close_missed_range"), {"name": name})  # (nothing for `hrwsi status` to count)
    if not missed and not too_old:
        return
    when = "before it existed" if new else "while it was inactive"
    note = f"condition {name} is active: {missed} product(s) of the type it reads were made {when} and are not chained to it"
    if missed:
        note += f"; `hrwsi chain-missed {name}` chains them (at most 10,000 a run; run it again for more)"
    if too_old:
        note += (f"; {too_old} more are older than its measurement window and are not chained by it (`hrwsi reprocess` "
                 f"of the routine that makes them chains new ones within a campaign)")
    said.append(note)


def _remove_multi_input(conn: psycopg.Connection, condition: str, said: list[str] | None) -> None:
    """The file is the truth: a condition it lists without [condition.multi_input] is single-input.
    (A load kept the rule, silently, while the file's cycle check read the condition as single-input.)
    Its open group tasks go on: their members are listed with their inputs, not in the rule."""
    removed = conn.execute(query("config_remove_multi_input_rule"), {"condition": condition}).fetchone()
    if removed is None or said is None:
        return
    window_days, requires, open_tasks = removed
    going_on = f"; its {open_tasks} open group task(s) go on with their members" if open_tasks else ""
    said.append(f"condition {condition}: its multi-input rule ({requires or 'no requirement'} over {window_days} "
                f"day(s)) was removed, as the file has no [condition.multi_input] for it: it is single-input now, "
                f"one input per product of the type its routine reads{going_on}")


def _write(conn: psycopg.Connection, name: str, params: dict, where: str, source: str | None) -> None:
    """One statement; a refusal by the database names the entry (the transaction is rolled back)."""
    try:
        conn.execute(query(name), params)
    except psycopg.errors.IntegrityError as error:
        raise ConfigurationError([f"{where}: the database refused it: {one_sentence(error.diag.message_primary)}"], source) \
            from None


# -- showing -----------------------------------------------------------------------------------------
def _rows(conn: psycopg.Connection, name: str) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(query(name)).fetchall()


def _without_nulls(row: dict) -> dict:
    return {k: v for k, v in row.items() if v is not None}


def current(conn: psycopg.Connection) -> dict:
    """The configuration the database holds, as a document `load` accepts (commands with this
    interpreter shown as {python} again)."""
    document: dict[str, Any] = {}
    budget = _without_nulls(_rows(conn, "config_budget")[0])
    if budget:
        document["budget"] = budget
    document["flavour"] = _rows(conn, "config_flavours")
    document["worker"] = _rows(conn, "config_workers")
    routines = []
    for row in _rows(conn, "config_routines"):
        row = _without_nulls(row)
        if "command" in row:
            row["command"] = [part.replace(sys.executable, "{python}") for part in row["command"]]
        if not row.get("env"):
            row.pop("env", None)
        routines.append(row)
    document["routine"] = routines
    requirements: dict[str, list[dict]] = {}
    for row in _rows(conn, "config_multi_input_requirements"):
        requirements.setdefault(row.pop("condition"), []).append(row)
    rules: dict[str, dict] = {}
    for row in _rows(conn, "config_multi_input_rules"):
        name = row.pop("condition")
        rules[name] = {**row, "requires": requirements.get(name, [])}
    conditions = []
    for row in _rows(conn, "config_conditions"):
        row = _without_nulls(row)
        if row["name"] in rules:
            row["multi_input"] = rules[row["name"]]
        conditions.append(row)
    document["condition"] = conditions
    retention = _rows(conn, "config_retention")
    if retention:
        document["retention"] = {k: ("forever" if v is None else v) for k, v in retention[0].items()}
    return {k: v for k, v in document.items() if v not in ([], {})}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        # (a JSON string is a valid TOML basic string; an invisible character in it, which a name stored before
        # migration 0124 may hold, is written as its escape, which TOML reads back as the character: printed as it
        # is, `hrwsi config show` showed 'L1C\u200b' as L1C, and a right-to-left override reordered the line)
        return REFUSED_CHARACTER.sub(_toml_escape, json.dumps(value, ensure_ascii=False))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_table(lines: list[str], header: str, entry: dict) -> None:
    lines.append(header)
    nested = {k: v for k, v in entry.items() if isinstance(v, dict) and k != "env"}
    for key, value in entry.items():
        if key not in nested:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in nested.items():
        inner = {k: v for k, v in value.items() if k != "requires"}
        _toml_table(lines, f"[{header.strip('[]')}.{key}]", inner)
        for requirement in value.get("requires", []):
            lines.append(f"[[{header.strip('[]')}.{key}.requires]]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in requirement.items()]
    lines.append("")


def to_toml(document: dict) -> str:
    """A configuration document as TOML text that `hrwsi config load` reads back."""
    lines = ["# hrwsi configuration (hrwsi config show); every key: hrwsi config keys", ""]
    for key in ("budget", "retention"):
        if key in document:
            _toml_table(lines, f"[{key}]", document[key])
    for kind in ("flavour", "worker", "routine", "condition"):
        for entry in document.get(kind, []):
            _toml_table(lines, f"[[{kind}]]", entry)
    return "\n".join(lines)


# -- documenting -------------------------------------------------------------------------------------
_SECTIONS = (("budget", "[budget]", Budget), ("flavour", "[[flavour]]", Flavour), ("worker", "[[worker]]", Worker),
             ("routine", "[[routine]]", Routine), ("condition", "[[condition]]", Condition),
             ("condition.multi_input", "[condition.multi_input]", MultiInput),
             ("condition.multi_input.requires", "[[condition.multi_input.requires]]", MultiInputRequirement),
             ("retention", "[retention]", Retention))


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (types.UnionType, typing.Union):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(names)
    if origin is list:
        return f"array of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "table of text"
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return {bool: "boolean", int: "integer", float: "number", str: "text"}.get(annotation, str(annotation))


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "-"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return _toml_value(value) if not isinstance(value, (dict, list)) or value else "-"


def keys() -> list[dict[str, str]]:
    """Every key of the configuration file: section, key, type, default, meaning (from the models)."""
    rows = []
    for _, section, model in _SECTIONS:
        for name, field in model.model_fields.items():
            if _models_in(field.annotation):
                continue  # a nested table: listed as its own section
            kind = _type_name(field.annotation)
            if name.endswith("_days") and model is Retention:
                kind += ' or "forever"'
            default = '"forever"' if model is Retention and field.default is None else _default(field)
            rows.append({"section": section, "key": name, "type": kind, "default": default,
                         "meaning": field.description or ""})
    return rows


def keys_markdown() -> str:
    lines = ["| section | key | type | default | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{r['section']}` | `{r['key']}` | {r['type']} | {r['default']} | {r['meaning']} |" for r in keys()]
    return "\n".join(lines)
