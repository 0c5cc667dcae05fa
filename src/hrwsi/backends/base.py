"""The contract between the launcher and whatever runs a job (local subprocess, Nomad, dry run).

The launcher owns the database and retries; a backend only runs one attempt of one task and reports
how it ended. Every I/O method is a coroutine: a backend built on a synchronous client runs it in a
bounded thread pool so the launcher's event loop never blocks.

`Backend` declares everything the launcher uses, so the launcher never has to ask a backend what it
can do (no getattr): what a backend has nothing to do for has a default here (check_settings, forget,
stop_all, worker_activity, ui_link, problem, out_of_reach, submissions_refused, probe,
close), and a backend inherits it by
subclassing `Backend` explicitly.
tests/contract/test_backends.py checks every backend against this contract.

It also holds what a backend that runs routines does with an attempt's directory: `prepare_attempt`
before its first start (in `submit`), `discover_products` after its end (the launcher calls it for an
outcome that carries no products).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

from hrwsi.backends.local_supervisor import TOMBSTONE_FILE
from hrwsi.harvest.input_checks import REFUSED_CHARACTER
from hrwsi.terminal import one_sentence

logger = logging.getLogger(__name__)

# Final states of one attempt, as stored in hrwsi.job.state.
OutcomeState = Literal["processed", "internal_error", "external_error", "lost", "cancelled"]
# Intermediate states a backend may report while following a job.
ProgressState = Literal["queued", "running"]

# HR-WSI's exit-code convention: 210 means the input or an external service was at fault.
EXTERNAL_ERROR_EXIT_CODE = 210

# Environment variable names that carry credentials: never passed to a routine, never in a job spec.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
MAX_PRODUCT_PATH_BYTES = 2000  # hrwsi.product's product_path_is_at_most_2000_bytes
# A product path with a character hrwsi.product's product_path_is_absolute_without_control_characters
# refuses (input_checks.REFUSED_CHARACTER, the harvester's list: control characters, and since migration 0079
# invisible ones, as an input's path: the product becomes the next step's input) was refused by the database
# at every try of its outcome's write, and the attempt stalled (found by exploratory testing).


def shown_path(path: str) -> str:
    """A path as a refusal shows it: quoted, its control characters and undecodable bytes escaped."""
    return ascii(path) if REFUSED_CHARACTER.search(path) or not _is_utf8(path) else repr(path)


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a name's bytes that are not UTF-8 (os.fsdecode's surrogate escapes)
        return False
    return True


def product_path_problem(path: str) -> str | None:
    """Why the database would refuse `path` (absolute) as a product's path (sql/schema.sql, hrwsi.product's
    CHECKs), or None."""
    if not _is_utf8(path):
        return "its name is not valid UTF-8"
    if REFUSED_CHARACTER.search(path):
        return "its name holds a control character or an invisible one (shown escaped)"
    if len(path.encode()) > MAX_PRODUCT_PATH_BYTES:
        return f"its path is longer than {MAX_PRODUCT_PATH_BYTES} bytes"
    if "${" in path:  # (the next step's input path: Nomad would read it as its own variable)
        return "its name holds '${', which Nomad would read as its own variable"
    return None


def job_id_for(routine: str, task_id: int, attempt: int) -> str:
    """The deterministic backend job ID of one attempt: resubmitting after a crash is idempotent."""
    safe_routine = re.sub(r"[^A-Za-z0-9_.-]", "-", routine).lower()
    return f"hrwsi-{safe_routine}-{task_id}-{attempt}"


def claims_own_job_id(job_id: str, claim: str) -> str:
    """The job ID an attempt runs under when a job this database does not know holds its deterministic
    one (a restore from an older backup, another installation on the same Nomad namespace): that ID
    followed by "-c" and the first 8 hex digits of the attempt's claim token (hrwsi.job.claim_token),
    as deterministic as the first, so that a launcher adopting the attempt after a crash finds it
    again from the job row alone (ADR 0002). The ID of a job ID that is already its claim's own is itself (a
    row that recorded it): `spec.job_id == claims_own_job_id(spec.job_id, spec.claim)` says the attempt has no
    other ID to go to."""
    suffix = f"-c{claim.replace('-', '')[:8]}"
    return job_id if job_id.endswith(suffix) else f"{job_id}{suffix}"


# The name of an attempt directory hrwsi.dispatch lays out (attempt-<n>), or of the one an attempt run under
# its claim's own job ID has (attempt-<n>-c<8 hex>, claims_own_spec): group 1 is the attempt's number.
ATTEMPT_DIRECTORY = re.compile(r"attempt-([0-9]+)(?:-c[0-9a-f]{8})?")


def claims_own_spec(spec: JobSpec) -> JobSpec:
    """The attempt under its claim's own job ID (claims_own_job_id), with paths of its own: its attempt
    directory and log named after that ID as the first ones are after the first (<...>/attempt-<n>-c<8 hex>/output,
    <...>/<job ID>-c<8 hex>.log). The first paths are those of the job this database does not know that holds the
    first ID: after a restore in the same installation it may still run and write there, and the attempt
    wrote into the same output directory and log (found by exploratory testing). The same suffix as the ID
    (hrwsi logs, the dashboard read the row's paths; retention and products_root know the name). A spec
    already on its claim's own ID is returned as it is."""
    assert spec.claim is not None
    own_id = claims_own_job_id(spec.job_id, spec.claim)
    if own_id == spec.job_id:
        return spec
    suffix = own_id[len(spec.job_id):]
    output = spec.output_dir.rstrip("/")
    attempt_dir, name = os.path.split(output)
    log_root, log_ext = os.path.splitext(spec.log_path)
    return replace(spec, job_id=own_id, output_dir=os.path.join(attempt_dir + suffix, name),
                               log_path=f"{log_root}{suffix}{log_ext}")


@dataclass(frozen=True)
class JobSpec:
    """Everything a backend needs to run one attempt of one task."""

    job_id: str  # deterministic, see job_id_for
    task_id: int
    attempt: int
    routine: str
    condition: str
    input_path: str
    tile: str | None
    worker: str | None  # planned worker name (Nomad: node name)
    command: tuple[str, ...]  # argv; empty when the routine only names an image
    image: str | None
    cpu: float  # cores
    ram_mb: int
    storage_mb: int
    output_dir: str
    log_path: str
    timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The task's manifest (JSON): its input, the members of a multi-input task, the previous
    # product of a time series. Written beside the output directory before the job starts.
    manifest: str | None = None
    lane: str | None = None
    # The task's serving priority (0 most urgent: its lane's, or 0 once aged or raised by a near-real-time task of
    # its time series), as dispatch served it; None: the lane's decides (a spec built without it, a test's).
    priority: int | None = None
    # The job row's claim token (hrwsi.job.claim_token), unique per claim: a backend that finds a job on
    # `job_id` tells its own registration of this very attempt by it. None: a row claimed before 0080.
    claim: str | None = None

    @property
    def attempt_dir(self) -> str:
        """The attempt's own directory: its output directory, manifest and bookkeeping files."""
        return os.path.dirname(self.output_dir.rstrip("/"))

    @property
    def installation(self) -> str | None:
        """The id of the installation that dispatched the attempt (hrwsi.installation), read from where
        hrwsi.dispatch placed its outputs: <data>/products/<installation>/<routine>/task-<id>/attempt-<n>/output.
        None for an output directory laid out otherwise (a test's)."""
        parts = self.output_dir.rstrip("/").split("/")
        attempt = ATTEMPT_DIRECTORY.fullmatch(parts[-2]) if len(parts) >= 6 else None
        if attempt is not None and attempt[1] == str(self.attempt) and parts[-6] == "products" \
                and (parts[-4], parts[-3], parts[-1]) == (self.routine, f"task-{self.task_id}", "output"):
            return parts[-5] or None
        return None

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.attempt_dir, "manifest.json")

    def environment(self) -> dict[str, str]:
        """The task's metadata as the routine sees it, plus the routine's own variables."""
        return {
            **self.env,
            "HRWSI_JOB_ID": self.job_id,
            "HRWSI_TASK_ID": str(self.task_id),
            "HRWSI_ATTEMPT": str(self.attempt),
            "HRWSI_ROUTINE": self.routine,
            "HRWSI_CONDITION": self.condition,
            "HRWSI_INPUT_PATH": self.input_path,
            "HRWSI_OUTPUT_DIR": self.output_dir,
            "HRWSI_TILE": self.tile or "",
            "HRWSI_MANIFEST": self.manifest_path,
        }

    def argv(self) -> list[str]:
        """The routine's command with the task's input and output directory appended."""
        return [*self.command, "--input", self.input_path, "--output-dir", self.output_dir,
                "--manifest", self.manifest_path]

    def prepare_paths(self) -> None:
        """Create the output directory and the log file's directory (blocking: call it in a thread).
        Raises OSError when they cannot be created."""
        for directory in (Path(self.output_dir), Path(self.log_path).parent):
            directory.mkdir(parents=True, exist_ok=True)


def prepare_attempt(spec: JobSpec) -> None:
    """Before an attempt first starts: an EMPTY output directory of its own, its log directory, and
    its manifest beside the output directory. A non-empty output directory is never reused: only
    files an attempt writes itself may become its products. What another timeline left on this
    attempt's paths (set_aside_another_timelines_files) is moved aside first, never deleted."""
    try:
        set_aside_another_timelines_files(spec)
        Path(spec.output_dir).mkdir(parents=True, exist_ok=True)
        Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
        if spec.manifest is not None:
            temporary = Path(spec.manifest_path + ".tmp")
            temporary.write_text(json.dumps(json.loads(spec.manifest), indent=2, sort_keys=True))
            os.replace(temporary, spec.manifest_path)  # whole or not at all
    except OSError as error:
        # A full or read-only disk is no fault of the routine, which has not run: every attempt failed
        # so, its tasks were terminated and the routine held (found by exploratory testing, 2026-12-05).
        raise AttemptLost("storage_unavailable", f"could not prepare the attempt's directory "
                          f"{spec.attempt_dir}: {error.strerror or error} ({error.filename or 'its files'}); "
                          "nothing ran, not the routine's fault: it is retried") from None


def products_root(spec: JobSpec) -> str | None:
    """The `products` directory hrwsi.dispatch placed the attempt's output under (<data>/products/...),
    where this installation's product files are; None for an output directory laid out otherwise."""
    if spec.installation is None:
        return None
    return spec.output_dir.rstrip("/").rsplit("/", 5)[0] + "/"


def missing_product_inputs(spec: JobSpec) -> list[str]:
    """The paths of the task's own data (its input, a multi-input task's members, a time series'
    previous products) that are product files under this attempt's products directory and are not
    there (blocking: stats them). Ops own the product files and may delete or move one (a disk
    cleanup): the routine then failed on a missing file, charged to it, and enough such tasks put it
    on hold (found by exploratory testing). Only these paths are checked: they are hrwsi's own,
    where the attempt runs; any other path (a landing file, a remote URL, a path of a routine's own
    convention) is the routine's to read."""
    root = products_root(spec)
    if root is None:
        return []
    paths = [spec.input_path]
    if spec.manifest is not None:
        manifest = json.loads(spec.manifest)
        paths += [m.get("path") for m in manifest.get("members") or ()]
        paths += [p.get("path") for p in (manifest.get("series") or {}).get("previous_products") or ()]
    return [path for path in dict.fromkeys(paths)
            if isinstance(path, str) and path.startswith(root) and not os.path.lexists(path)]


def refuse_missing_product_inputs(spec: JobSpec) -> None:
    """TaskRefused naming the task's product files that are gone (missing_product_inputs), if any:
    the task is terminated with the reason, charged to no routine, and alerted; nothing runs."""
    missing = missing_product_inputs(spec)
    if missing:
        shown = ", ".join(shown_path(path) for path in missing[:3]) + (f" and {len(missing) - 3} more"
                                                                        if len(missing) > 3 else "")
        what = (f"its input product file {shown} is missing (deleted or moved after it was made)" if len(missing) == 1
                else f"its input product files {shown} are missing (deleted or moved after they were made)")
        raise TaskRefused(f"job {spec.job_id}: {what}; put it back and `hrwsi retry {spec.task_id}`")


def _holds_anything(directory: Path, output: Path) -> bool:
    """Whether an attempt directory holds more than an empty output directory (blocking)."""
    for entry in directory.iterdir():
        if entry.name != output.name or entry.is_symlink() or not entry.is_dir() or any(entry.iterdir()):
            return True
    return False


def attempt_paths_in_use(spec: JobSpec) -> list[Path]:
    """The attempt's paths something is on already (its attempt directory holding more than an empty output
    directory, a log that is not empty): what set_aside_another_timelines_files moves aside (blocking)."""
    attempt_dir, log = Path(spec.attempt_dir), Path(spec.log_path)
    return [path for path, in_use in ((attempt_dir, attempt_dir.is_dir() and _holds_anything(attempt_dir,
                                                                                          Path(spec.output_dir))),
                                      (log, log.is_file() and log.stat().st_size > 0)) if in_use]


def set_aside_another_timelines_files(spec: JobSpec) -> list[tuple[str, str]]:
    """Rename what is already on a new attempt's paths (its attempt directory holding files, its log)
    to `<path>.moved-<UTC time>`, with a warning naming both paths; [(path, moved to)].

    A new attempt (claimed now) has paths no attempt of this database used: what is there was left
    by another timeline of the installation, whose task ids and attempts this one reuses (a database
    restored from an older dump into the same HRWSI_HOME, a copy of HRWSI_HOME with its data
    directory). Refusing to run there was charged to the routine, which every such task then put on
    hold (found by exploratory testing); deleting it would lose that timeline's products. The files
    are kept for the operator, and the attempt runs in a directory of its own."""
    moved: list[tuple[str, str]] = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    attempt_dir = Path(spec.attempt_dir)
    # A tombstone is this attempt's own: another launcher settled it while its launcher was paused
    # between the claim and this start, and the supervisor must find it and refuse (local_supervisor).
    # Moved aside as another timeline's, the attempt ran after it was recorded lost, beside its retry
    # (chaos, a paused launcher: found 2026-12-06). Another timeline's tombstone costs one lost attempt.
    if (attempt_dir / TOMBSTONE_FILE).exists():
        return moved
    for path in attempt_paths_in_use(spec):
        aside = f"{path}.moved-{stamp}"
        os.rename(path, aside)
        moved.append((str(path), aside))
        logger.warning("job %s: %s was left by another timeline of this installation (a database restored from an "
                       "older dump, or a copy of HRWSI_HOME, reuses task ids and attempts): moved aside to %s, kept "
                       "for you to look at or remove; the new attempt starts with paths of its own",
                       spec.job_id, path, aside)
    return moved


def lost_with_its_directory(outcome: JobOutcome, problem: str) -> JobOutcome:
    """A routine that ran, whose output directory is gone or unwritable now: the attempt is lost
    (storage_unavailable, retried, not the routine's fault), as one whose directory could not be
    made. A routine that could not write its products and exited 0 was recorded "processed: 0
    product(s)" at INFO, and the chain stopped there without a word (found by exploratory testing)."""
    return JobOutcome("lost", outcome.exit_code, f"the routine ended ({outcome.message}) but {problem}: what it "
                      "wrote there is lost; not the routine's fault: it is retried", outcome.started_at,
                      outcome.finished_at, fault="storage_unavailable")


# Below this much free space (or with no free inode) a storage is full: a routine that failed there
# most likely failed to write its products or its log.
FULL_STORAGE_BYTES = 1024 * 1024


def output_directory_problem(output_dir: str, failed_log_path: str | None = None) -> str | None:
    """Why the output directory an attempt was given cannot be where it left its products (gone:
    moved, deleted, a mount taken away; or no longer writable: a read-only mount), or None. Blocking.
    For an attempt whose routine failed (`failed_log_path`, its log), also a full storage under its
    output directory or its log: a routine whose writes failed for want of space was charged with the
    failure, and three such put its routine on hold, where the storage is ops' to free (found by
    exploratory testing)."""
    if not os.path.isdir(output_dir):
        return f"its output directory {output_dir} is gone (moved, deleted or unmounted while it ran)"
    if not os.access(output_dir, os.W_OK | os.X_OK):
        return f"its output directory {output_dir} is no longer writable (a read-only or full storage?)"
    if failed_log_path is not None:
        for path in dict.fromkeys((output_dir, os.path.dirname(failed_log_path) or ".")):
            full = full_storage(path)
            if full is not None:
                return f"the storage of {path} is full ({full}), which most likely failed it"
    return None


# A failed attempt's last line of output, stored at the end of its message, after its exit code (log_last_line):
# `hrwsi status` and the dashboard's overview said only "exit code 3", the routine's own words being in
# `hrwsi logs` and on the task's page only. Read once, as the outcome is recorded (never in a page
# request or a status query), from the end of the log only (a log of gigabytes costs one read).
LAST_LINE_READ_BYTES = 8192
LAST_LINE_CHARACTERS = 200
# Lines of hrwsi's own in a log, not the routine's words: the Nomad backend's headers of the stdout and
# stderr it appends (`=== Nomad job ...: stderr ===`, nomad/task_logs.py), and the local supervisor's
# lines (`[hrwsi supervisor ...]`: its log's cap, a stop).
_HRWSI_LOG_LINE = re.compile(r"===.*===|\[hrwsi supervisor .*")


def log_last_line(path: str | None) -> str | None:
    """The last meaningful line of an attempt's log: not blank, not one of hrwsi's own, as a terminal
    shows a line that carriage returns rewrote (its last part), at most LAST_LINE_CHARACTERS with its
    control and invisible characters as escapes (terminal.one_sentence; a byte that is not UTF-8 as `\\xe9`);
    None when the log is missing, unreadable or empty, or ends in binary data (a NUL byte in what is read: a
    line there is no sentence). Blocking: run it in a thread."""
    if not path:
        return None
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - LAST_LINE_READ_BYTES))
            data = log.read(LAST_LINE_READ_BYTES)
    except (OSError, ValueError):
        return None
    if b"\0" in data:
        return None
    lines = data.decode("utf-8", errors="backslashreplace").split("\n")
    for index in range(len(lines) - 1, -1, -1):
        shown = next((part.strip() for part in reversed(lines[index].split("\r")) if part.strip()), "")
        if not shown or _HRWSI_LOG_LINE.fullmatch(shown):
            continue
        cut_at_start = index == 0 and size > LAST_LINE_READ_BYTES  # (its start is before what was read)
        shown = one_sentence(shown)
        if cut_at_start:
            return "\u2026" + shown[-(LAST_LINE_CHARACTERS - 1):]
        return shown if len(shown) <= LAST_LINE_CHARACTERS else shown[: LAST_LINE_CHARACTERS - 1] + "\u2026"
    return None


def with_last_line(outcome: JobOutcome, last_line: str | None) -> JobOutcome:
    """`outcome` with its log's last line at the end of its message, the routine's words last (to the message's
    end: no quotes needed): "exit code 3: KeyError: 'B11'" for a message that says only its exit code (the
    local backend's), else "...; its log ends: KeyError: 'B11'" (Nomad's "exit code 3 (allocation ...)", a signal,
    a timeout). As it was without a line."""
    if not last_line:
        return outcome
    if outcome.message == f"exit code {outcome.exit_code}":
        return replace(outcome, message=f"{outcome.message}: {last_line}")
    return replace(outcome, message=f"{outcome.message}; its log ends: {last_line}")


def full_storage(path: str) -> str | None:
    """How full the storage under `path` (or its nearest existing parent: a log not written yet) is,
    if it is full, else None (also when it cannot be read)."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        found = os.statvfs(path)
    except OSError:
        return None
    free = found.f_bavail * found.f_frsize
    if free < FULL_STORAGE_BYTES:
        return f"{free} bytes free"
    if found.f_files and found.f_favail == 0:
        return "no free inode"
    return None


# How deep an attempt's output tree may nest. os.walk recursed once a level: a routine that left a
# tree 1,100 directories deep raised RecursionError out of the listing of its products, its outcome
# was never recorded, and the attempt was recorded lost and run again, without end (found by
# exploratory testing). The walk below keeps its own stack and says where it stopped.
MAX_OUTPUT_DEPTH = 100


def _walk(root: str | Path, too_deep: list[str] | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(root, followlinks=False) without recursion: (folder, subdirectories, other names) top
    down; a symbolic link to a directory is among the subdirectories and not entered; an unreadable
    folder is skipped, as os.walk does. A folder more than MAX_OUTPUT_DEPTH below root is not entered:
    its path goes to `too_deep`."""
    stack: list[tuple[str, int]] = [(str(root), 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listed = [(entry.name, entry.is_dir(), entry.is_symlink()) for entry in entries]
        except OSError:
            continue
        subdirectories = [name for name, is_dir, _ in listed if is_dir]
        yield folder, subdirectories, [name for name, is_dir, _ in listed if not is_dir]
        for name, is_dir, is_link in reversed(listed):
            if not is_dir or is_link:
                continue
            if depth + 1 > MAX_OUTPUT_DEPTH:
                if too_deep is not None:
                    too_deep.append(os.path.join(folder, name))
                continue
            stack.append((os.path.join(folder, name), depth + 1))


def _files_under(root: Path) -> tuple[list[tuple[str, os.stat_result]], list[str]]:
    """The regular files under root with their lstat, and what is refused there (a symbolic link, what is
    not a regular file, what cannot be read, a tree nested too deep)."""
    files: list[tuple[str, os.stat_result]] = []
    refused: list[str] = []
    too_deep: list[str] = []
    for directory, subdirectories, names in _walk(root, too_deep):
        for name in subdirectories:
            if os.path.islink(os.path.join(directory, name)):
                refused.append(f"{shown_path(os.path.join(directory, name))} is a symbolic link")
        for name in names:
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError as error:
                refused.append(f"{shown_path(path)} cannot be read: {error.strerror}")
                continue
            if not stat.S_ISREG(info.st_mode):
                refused.append(f"{shown_path(path)} is not a regular file")
            else:
                files.append((path, info))
    if too_deep:
        refused.append(f"{shown_path(too_deep[0][:200])}... cannot be a product: nested more than {MAX_OUTPUT_DEPTH} "
                       "directories deep in the output directory (nothing below that depth is looked at)")
    return files, refused


def discover_products(output_dir: str) -> tuple[list[tuple[str, int]], list[str]]:
    """The products of an attempt: every REGULAR file physically inside its output directory, as
    (absolute path, size). Symbolic links (to a file or a directory), devices, sockets, anything
    whose real path leaves the directory and any path the database would refuse as a product's
    (a control character, bytes that are not UTF-8, too long) are refused and listed with the reason.

    A file with more than one name (hard links) is one product, under the first of its names in path
    order (its other names there are not products, and stay on disk until the attempt directory goes);
    one that has a name outside the attempt's own directory too (its link count is higher than its names
    inside: an input, another attempt's product, any file linked in) is refused. It is not the attempt's
    own data: chained, it was a second input of the same bytes, and its product row, counted, retained and
    handed to operators as the attempt's own, named data an input or another product names (found by
    exploratory testing). Names elsewhere in the attempt directory (output_dir's parent: a routine's scratch
    directory there) are its own, and counted as inside; a file with one name is never matched with
    another by its inode (a filesystem whose inode numbers are not unique, or 0, had distinct files
    dropped as names of one; found by review)."""
    root = Path(output_dir)
    if not root.is_dir() or root.is_symlink():
        return [], []
    real_root = os.path.realpath(root)
    files, refused = _files_under(root)
    names_inside = Counter((info.st_dev, info.st_ino) for _, info in files if info.st_nlink > 1)
    in_attempt: Counter | None = None  # (the linked names in the whole attempt directory, read if needed)
    first_name: set[tuple[int, int]] = set()
    found: list[tuple[str, int]] = []
    for path, info in sorted(files, key=lambda item: item[0]):
        file = (info.st_dev, info.st_ino) if info.st_nlink > 1 else None
        if file is not None and info.st_nlink > names_inside[file] and in_attempt is None:
            in_attempt = _linked_names_under(os.path.dirname(os.path.abspath(output_dir.rstrip("/"))))
        if file is not None and in_attempt is not None and info.st_nlink > max(names_inside[file], in_attempt[file]):
            refused.append(f"{shown_path(path)} is a hard link to a file outside the attempt directory ({info.st_nlink} "
                           "names): a product is a file of its own; copy it")
        elif os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            refused.append(f"{shown_path(path)} lies outside the output directory")
        elif (problem := product_path_problem(os.path.abspath(path))) is not None:
            refused.append(f"{shown_path(path[:200])}{'...' if len(path) > 200 else ''} cannot be a product: {problem}")
        elif file is None or file not in first_name:  # (another name of a file registered already: one product)
            if file is not None:
                first_name.add(file)
            found.append((os.path.abspath(path), info.st_size))
    return sorted(found), refused


def _linked_names_under(directory: str) -> Counter:
    """How many names each file with more than one name has under `directory` (symbolic links not followed):
    the attempt directory, whose files outside the output directory are the routine's own."""
    names: Counter = Counter()
    for folder, _, files in _walk(directory):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                names[(info.st_dev, info.st_ino)] += 1
    return names


class BackendSettingError(ValueError):
    """A backend's setting names what the backend does not have (a Nomad namespace, node pool or region
    that does not exist there): the launcher stops at start with this one line (what to do included)."""


class TaskRefused(ValueError):
    """Raised by `submit` when the backend cannot run the task whatever the attempt, because of the
    task's own data (an input path, a member's or a previous product's path), not its routine's: the
    launcher ends the attempt and terminates the task with the reason, charged to no routine (a data
    engineer's five such inputs put a routine on hold and held a legitimate task with it)."""


class AttemptLost(Exception):
    """Raised by `submit` when the backend cannot tell whether the attempt already ran, and starting
    it again might run it twice (a registration whose answer was lost with the backend's state), or
    could not take it for a cause that is not the routine's (out of reach, refusing the launcher's
    credentials): the attempt is recorded lost with `fault`, and the task retried as a new attempt."""

    def __init__(self, fault: str, message: str):
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt ended."""

    state: OutcomeState
    exit_code: int | None
    message: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Why a 'lost' attempt was lost (hrwsi.job.fault): launcher_gone, worker_gone, backend_lost_track,
    # stopped_by_hrwsi, backend_unavailable, storage_unavailable, not_placed (the backend could not place it on its worker:
    # the task's next attempt avoids that worker). Lost attempts are infrastructure faults: retried, never a
    # failure of the routine.
    fault: str | None = None
    # A processed attempt's products and what was refused as one (discover_products), when the backend
    # found them itself in a thread it uses anyway; None: not looked for (the launcher looks).
    products: tuple[list[tuple[str, int]], list[str]] | None = None

    @classmethod
    def from_exit_code(
        cls, exit_code: int, *, started_at: datetime | None, finished_at: datetime | None, detail: str = ""
    ) -> JobOutcome:
        if exit_code == 0:
            return cls("processed", 0, detail or "exit code 0", started_at, finished_at)
        state: OutcomeState = "external_error" if exit_code == EXTERNAL_ERROR_EXIT_CODE else "internal_error"
        return cls(state, exit_code, detail or f"exit code {exit_code}", started_at, finished_at)


# Called by a backend while it follows a job: (state, reason), e.g. ("queued", "no node has 8 free CPUs").
ProgressCallback = Callable[[ProgressState, str], Awaitable[None]]


@runtime_checkable
class Backend(Protocol):
    """What the launcher needs from a place that runs jobs.

    Subclass it (class MyBackend(Backend)) to inherit the defaults of the optional parts.
    """

    name: ClassVar[str]
    # True when submit() may safely be repeated for a job that may or may not have reached the
    # backend (Nomad: same deterministic ID, same spec). False for local attempts: an adopter
    # follows the attempt's supervisor instead of starting it again (backends/local.py).
    resubmit_is_idempotent: ClassVar[bool]
    # True when a job keeps running after its launcher stops (Nomad): a stopping launcher leaves
    # its jobs to the backend and another launcher adopts them. False (local processes): a
    # stopping launcher waits for its jobs, then stop_all() stops the ones still running.
    jobs_outlive_launcher: ClassVar[bool]
    # True when worker_activity() follows the backend's own nodes (Nomad): the launcher then keeps
    # each worker's `active` flag in step with its node.
    reports_worker_activity: ClassVar[bool] = False
    # False when nothing runs (dry run): the launcher then prepares no attempt directory.
    runs_routines: ClassVar[bool] = True
    # True when its outcome of a routine that ran already says whether the output directory was
    # still there and writable (the local backend, in the thread that reads it); else the launcher
    # checks it (output_directory_problem).
    checks_its_output_directory: ClassVar[bool] = False
    # True when the times of its outcomes come from the launcher's own host (local processes, dry
    # run): the launcher then corrects them by its clock's offset to the database's
    # (hrwsi.database_clock). Nomad's come from its clients' clocks, left as they are.
    times_from_this_host: ClassVar[bool] = False
    # How many jobs one launcher may run at once here (None: no limit of the backend's own); the
    # launcher claims no more than that, so no claimed job ever waits inside the backend.
    max_concurrent_jobs: int | None = None
    # How long an attempt asked to stop is given before it is killed (the local supervisor's grace, Nomad's
    # kill_timeout): the launcher says when it will be, meanwhile (None: not known).
    stop_grace_s: float | None = None

    # Set by the launcher: records that the attempt runs under the spec it is given (another job ID and paths
    # of its own: claims_own_spec) before the backend registers that ID, raising AttemptLost when it could not
    # (its lease lapsed). Recorded only after, a launcher that crashed or lost its lease in between left the
    # row on the first ID, and an adopter that found the claim's own job gone (Nomad's GC) registered the first
    # ID again: the attempt ran under two IDs (found by exploratory testing). None: nothing is recorded.
    record_runs_under: Callable[[JobSpec], Awaitable[None]] | None = None

    async def submit(self, spec: JobSpec, *, first_start: bool = False) -> str:
        """Start the attempt; return the backend's job ID. Idempotent per spec.job_id. On its
        `first_start` (claimed now, not adopted), a backend that runs routines prepares the attempt's
        directory first (prepare_attempt: an empty output directory, the manifest); never after,
        since the attempt may have run and written there. The ID returned is spec.job_id unless a job
        this database does not know holds it (Nomad: claims_own_job_id); the launcher then records it."""
        ...

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        """Follow the attempt to its end. A job the backend no longer knows ends as 'lost'."""
        ...

    def runs_as(self, spec: JobSpec, backend_job_id: str) -> JobSpec:
        """The attempt's spec once it is known to run under backend_job_id, another ID than spec.job_id (submit or
        adopted_job_id said so): its claim's own ID comes with its paths (claims_own_spec)."""
        if spec.claim and backend_job_id == claims_own_job_id(spec.job_id, spec.claim):
            return claims_own_spec(spec)
        return replace(spec, job_id=backend_job_id)

    async def adopted_job_id(self, spec: JobSpec) -> str:
        """The backend job ID an adopted attempt that is not submitted again (it was seen running) runs under:
        spec.job_id, the row's, unless the backend ran it under another that its launcher may not have
        recorded (Nomad: the claim's own ID, claims_own_job_id); the launcher then records it."""
        return spec.job_id

    async def cancel(self, spec: JobSpec, backend_job_id: str) -> None:
        """Stop the attempt if it still runs; no error if it is already gone."""
        ...

    async def check_settings(self) -> None:
        """At the launcher's start, before it claims anything: raise BackendSettingError when a setting
        names what the backend does not have, so that every attempt would be refused. What cannot be
        told now (the backend out of reach, a token not allowed to look) is let through."""
        return None

    async def forget(self, backend_job_id: str) -> None:
        """The launcher stored the attempt's outcome: the backend may clean the job up."""
        return None

    async def stop_all(self) -> None:
        """Stop every job this backend still runs (a stopping launcher whose jobs do not outlive it)."""
        return None

    @property
    def stop_all_allowance_s(self) -> float:
        """The longest stop_all may take (a bounded stop counts it before it gives up on the database)."""
        return 0.0

    async def worker_activity(self) -> dict[str, bool]:
        """{worker name: active} as the backend sees its nodes (ready and eligible); {} without nodes."""
        return {}

    def ui_link(self, backend_job_id: str) -> str | None:
        """Where an admin sees this job (Nomad UI), if anywhere."""
        return None

    # Whether every launcher of an installation must have the same site (Nomad: its jobs are in one
    # namespace, where every launcher looks for them), taken at start (migration 0070).
    one_site_per_installation: ClassVar[bool] = False

    async def site(self) -> str | None:
        """Where this backend's jobs are when only a launcher there can follow them (the local
        backend: the data directory its attempts' files are in; Nomad: the namespace its jobs are
        registered in), as an id recorded with the launcher's lease: a launcher adopts
        only the jobs of its own site. None: anywhere."""
        return None

    def problem(self) -> tuple[str, datetime] | None:
        """What keeps the backend from serving the launcher now (out of reach, refusing its
        credentials), and since when; None: nothing known. `hrwsi status` shows it."""
        return None

    def out_of_reach(self) -> bool:
        """Whether the backend is known out of reach now: its latest calls got no answer (Nomad: a
        connection refused or timed out, a gateway that cannot reach it). The launcher then claims no
        new work, which launchers that reach their backend take instead (a launcher out of reach
        claimed task after task, each waiting for its registration's retries to run out and then
        lost, while another launcher had free slots: found by exploratory testing), and calls `probe`
        every few seconds until this is False. A backend on this machine is never out of reach."""
        return False

    def submissions_refused(self) -> bool:
        """Whether the backend refuses every job of the launcher's now, whatever the job (Nomad: a token
        that may not submit jobs). The launcher then claims no new work and calls `probe` every few seconds
        until this is False, which `probe` must tell without running anything (each claimed task was
        refused and lost, and retried only after its own back-off once the token was mended: found by
        exploratory testing). A backend on this machine never refuses them."""
        return False

    async def probe(self) -> None:
        """One cheap call that tells whether the backend answers again (out_of_reach() says it after),
        bounded by a short timeout of its own; raises nothing."""
        return None

    async def close(self) -> None:
        """Release connections and threads; running jobs are not touched. Safe to call twice."""
        return None
