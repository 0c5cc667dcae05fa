"""Landing directories: files dropped in a directory become inputs (QCDP-style file ingestion).

One scan of a source (a hrwsi.harvest_source row of kind landing_directory):

1. list the entries matching the source's glob pattern (files, and directories such as `.SAFE`),
   in a worker thread;
2. track every version (path, size, mtime) in hrwsi.landing_file, state `seen`; a version is taken
   only once it has settled (unchanged for settle_s: its mtime is that old, or an earlier scan saw
   the same version that long ago), so a file still being written is left alone;
3. read tile, mission and sensing time from the Sentinel product name; a name that cannot be read
   is `failed` with the reason, and the file stays where it is (touch it to retry);
4. mark the file `ready` with the path it will have in the work directory, then unzip it (.zip,
   optional password from an environment variable) or move it there;
5. register one hrwsi.input per matching active condition, in the same transaction that marks the
   file `prepared`. A path already prepared from this source, or a scene already registered, is
   `previously_received` and creates no second input.

A scan stopped half-way (crash, restart) resumes at the next one: `ready` rows are finished from
where they stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import asyncpg
import psycopg

from hrwsi.harvest.product_names import SceneName, UnreadableProductName, parse_product_name, scene_id_of
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

# Names a writer uses for a file it has not finished yet: never taken, whatever the pattern says.
_UNFINISHED_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart")
# Where re-delivered files are moved, under the work directory, so that they are not scanned again.
PREVIOUSLY_RECEIVED_DIRECTORY = "previously_received"
_PARTIAL_PREFIX = ".hrwsi-partial-"


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LandingSource:
    name: str
    directory: str
    work_directory: str
    product_type: str
    settle_s: float = 2.0
    unzip: bool = True
    zip_password: str | None = field(default=None, repr=False)  # from the environment, never stored
    pattern: str = "*"
    zip_password_env: str | None = None    # the variable's name, for messages
    scan_interval_s: float | None = None   # unscheduled sources: rescan after this (default: settle time)

    @classmethod
    def from_row(cls, name: str, product_type: str, config: dict | str) -> LandingSource:
        if isinstance(config, str):
            config = json.loads(config)
        password_env = config.get("zip_password_env")
        return cls(name=name, directory=config["directory"], work_directory=config["work_directory"],
                   product_type=product_type, settle_s=float(config.get("settle_s", 2.0)),
                   unzip=bool(config.get("unzip", True)),
                   zip_password=os.environ.get(password_env) if password_env else None,
                   pattern=config.get("pattern", "*"), zip_password_env=password_env,
                   scan_interval_s=float(config["scan_interval_s"]) if "scan_interval_s" in config else None)

    @property
    def rescan_after_s(self) -> float:
        """How long an unscheduled source waits between scans: its settle time, at least 1 s."""
        return self.scan_interval_s if self.scan_interval_s else max(self.settle_s, 1.0)


async def load_landing_sources(pool: asyncpg.Pool, name: str | None = None) -> list[LandingSource]:
    """The active landing-directory sources (or the one named)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(query("landing_sources"), name)
    return [LandingSource.from_row(r["name"], r["product_type"], r["config"]) for r in rows]


def register_source(conn: psycopg.Connection, *, name: str, directory: Path | str, product_type: str,
                    work_directory: Path | str | None = None, pattern: str = "*", settle_s: float = 1.0,
                    interval_s: float | None = None, unzip: bool = True,
                    zip_password_env: str | None = None) -> None:
    """Add (or update) a landing-directory source scanned continuously (every interval_s seconds)."""
    if work_directory is None:
        raise ValueError(f"landing source {name}: a work directory is needed (prepared files are moved there)")
    config = {"directory": str(Path(directory).resolve()), "work_directory": str(Path(work_directory).resolve()),
              "pattern": pattern, "settle_s": settle_s, "unzip": unzip}
    if interval_s is not None:
        config["scan_interval_s"] = interval_s
    if zip_password_env:
        config["zip_password_env"] = zip_password_env
    conn.execute(query("cli_upsert_landing_source"),
                 {"name": name, "product_type": product_type, "config": json.dumps(config)})


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

@dataclass
class FileOutcome:
    path: str
    state: str               # prepared | previously_received | failed | waiting
    message: str
    prepared_path: str | None = None
    inputs: int = 0


@dataclass
class LandingScanReport:
    source: str
    seen: int = 0            # entries listed
    waiting: int = 0         # not settled yet
    prepared: int = 0
    inputs: int = 0
    previously_received: int = 0
    failed: int = 0
    outcomes: list[FileOutcome] = field(default_factory=list)

    def add(self, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)
        if outcome.state == "prepared":
            self.prepared += 1
            self.inputs += outcome.inputs
        elif outcome.state == "previously_received":
            self.previously_received += 1
        elif outcome.state == "failed":
            self.failed += 1

    def outcome(self, name: str) -> FileOutcome:
        """The outcome of the file with this name (tests and the CLI)."""
        return next(o for o in reversed(self.outcomes) if Path(o.path).name == name)

    def summary(self) -> str:
        return (f"{self.seen} file(s) listed, {self.waiting} still settling, {self.prepared} prepared into "
                f"{self.inputs} input(s), {self.previously_received} received before, {self.failed} failed")


# ---------------------------------------------------------------------------------------------
# File operations (blocking: always run in a worker thread)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListedEntry:
    path: str
    size_bytes: int
    modified_at: datetime


def list_landing_directory(source: LandingSource) -> list[ListedEntry]:
    """Entries of the landing directory matching the pattern; a directory counts as one product
    (size: the sum of its files; time: the newest of them)."""
    root = Path(source.directory)
    if not root.is_dir():
        raise FileNotFoundError(f"landing directory {root} of source {source.name} does not exist")
    work = Path(source.work_directory).resolve()
    entries = []
    for path in sorted(root.glob(source.pattern)):
        name = path.name
        if name.startswith(".") or name.endswith(_UNFINISHED_SUFFIXES) or path.resolve() == work:
            continue
        try:
            info = path.stat()
            if stat.S_ISDIR(info.st_mode):
                size, newest = info.st_size, info.st_mtime
                for child in path.rglob("*"):
                    child_info = child.stat()
                    size += child_info.st_size
                    newest = max(newest, child_info.st_mtime)
            elif stat.S_ISREG(info.st_mode):
                size, newest = info.st_size, info.st_mtime
            else:
                continue
        except FileNotFoundError:
            continue  # removed while listing: the next scan will tell
        entries.append(ListedEntry(str(path), size, datetime.fromtimestamp(newest, UTC)))
    return entries


class PreparationFailed(Exception):
    """A file could not be prepared; the message says why, for the landing_file row."""


def _is_zip(path: str, source: LandingSource) -> bool:
    return source.unzip and path.lower().endswith(".zip")


def planned_target(path: str, source: LandingSource) -> str:
    """Where the prepared product will be in the work directory (read from the archive for a zip)."""
    work = Path(source.work_directory)
    if not _is_zip(path, source):
        return str(work / Path(path).name)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as error:
        raise PreparationFailed(f"not a valid zip archive ({error})") from None
    except OSError as error:
        raise PreparationFailed(f"cannot read the archive: {error}") from None
    tops = set()
    for member in names:
        parts = PurePosixPath(member).parts
        if not parts or PurePosixPath(member).is_absolute() or ".." in parts:
            raise PreparationFailed(f"unsafe member path {member!r} in the archive: refused")
        tops.add(parts[0])
    if not tops:
        raise PreparationFailed("the archive is empty")
    # A Sentinel zip holds one X.SAFE directory: that is the product. Otherwise a directory named after the zip.
    return str(work / (tops.pop() if len(tops) == 1 else scene_id_of(Path(path).name)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_file(path: str, target: str, source: LandingSource, landing_file_id: int) -> str:
    """Unzip or move one landing file into the work directory; returns the prepared path.

    Leftovers of an interrupted attempt at the same target are replaced. An archive is extracted
    into a hidden directory first and renamed into place, so a half-extracted product never looks
    complete. The archive itself is removed once extracted.
    """
    work = Path(source.work_directory)
    work.mkdir(parents=True, exist_ok=True)
    target_path = Path(target)
    if not _is_zip(path, source):
        _remove(target_path)
        try:
            shutil.move(path, target_path)
        except OSError as error:
            raise PreparationFailed(f"cannot move it to {target_path}: {error}") from None
        return str(target_path)
    partial = work / f"{_PARTIAL_PREFIX}{landing_file_id}"
    _remove(partial)
    try:
        with zipfile.ZipFile(path) as archive:
            encrypted = any(info.flag_bits & 0x1 for info in archive.infolist())
            if encrypted and source.zip_password is None:
                variable = source.zip_password_env or "zip_password_env"
                raise PreparationFailed(
                    f"the archive is password-protected and no password is set (set the environment variable "
                    f"{variable} named by the source's config.zip_password_env)")
            if source.zip_password is not None:
                archive.setpassword(source.zip_password.encode())
            archive.extractall(partial)
    except RuntimeError as error:  # zipfile: "Bad password for file ..."
        _remove(partial)
        message = str(error)
        if "password" in message.lower():
            message = f"wrong zip password (from environment variable {source.zip_password_env}): {message}"
        raise PreparationFailed(message) from None
    except (zipfile.BadZipFile, NotImplementedError) as error:
        _remove(partial)
        raise PreparationFailed(f"cannot unzip: {error}") from None
    except OSError as error:
        _remove(partial)
        raise PreparationFailed(f"cannot unzip into {work}: {error}") from None
    extracted = list(partial.iterdir())
    _remove(target_path)
    if len(extracted) == 1 and extracted[0].name == target_path.name:
        extracted[0].rename(target_path)
        partial.rmdir()
    else:
        partial.rename(target_path)
    Path(path).unlink(missing_ok=True)
    return str(target_path)


def move_aside(path: str, source: LandingSource, landing_file_id: int) -> str:
    """A re-delivered file goes to work/previously_received/ so that the next scan does not see it again."""
    aside = Path(source.work_directory) / PREVIOUSLY_RECEIVED_DIRECTORY
    aside.mkdir(parents=True, exist_ok=True)
    target = aside / f"{landing_file_id}_{Path(path).name}"
    _remove(target)
    shutil.move(path, target)
    return str(target)


# ---------------------------------------------------------------------------------------------
# The scan
# ---------------------------------------------------------------------------------------------

@dataclass
class _Pending:
    """A settled file on its way to the work directory."""
    id: int
    path: str
    first_seen_at: datetime
    scene: SceneName
    target: str
    listed: bool        # still in the landing directory (False: an interrupted scan moved it already)


def _settled(row: asyncpg.Record, now: datetime, settle_s: float) -> bool:
    # Unchanged for settle_s: its mtime is that old, or an earlier scan saw this very version
    # (same size and mtime) that long ago; the second covers clocks that disagree (NFS).
    unchanged_since = min(row["modified_at"], row["first_seen_at"])
    return (now - unchanged_since).total_seconds() >= settle_s


async def scan_landing_directory(pool: asyncpg.Pool, source: LandingSource, *,
                                 now: datetime | None = None) -> LandingScanReport:
    """Scan one landing directory once; see the module docstring. Raises FileNotFoundError when the
    directory does not exist (the caller records it as the source's error)."""
    now = now or datetime.now(UTC)
    report = LandingScanReport(source.name)
    listing = await asyncio.to_thread(list_landing_directory, source)
    report.seen = len(listing)
    async with pool.acquire() as conn:
        rows = await conn.fetch(query("landing_track_listing"), source.name, [e.path for e in listing],
                                [e.size_bytes for e in listing], [e.modified_at for e in listing], now)

    outcomes: dict[int, FileOutcome] = {}
    redeliveries: list[tuple[asyncpg.Record, str, str]] = []
    pending: list[_Pending] = []
    for row in rows:
        state, path = row["state"], row["path"]
        if state in ("failed", "previously_received"):
            continue  # recorded before; a failed file waits until it changes (touch it to retry)
        if state == "prepared":
            # The very version prepared before is in the landing directory again.
            redeliveries.append((row, path, f"received again: identical to landing file {row['id']}, "
                                            f"prepared as {row['prepared_path']}"))
            continue
        if state == "seen" and not _settled(row, now, source.settle_s):
            report.waiting += 1
            continue
        if row["prepared_before_id"] is not None:
            redeliveries.append((row, path, f"received before: {Path(path).name} was prepared from this source "
                                            f"(landing file {row['prepared_before_id']}); no new input"))
            continue
        try:
            scene = parse_product_name(Path(path).name)
            if scene.measured_at > row["first_seen_at"]:
                raise UnreadableProductName(
                    f"{Path(path).name}: sensing time {scene.measured_at:%Y-%m-%dT%H:%M:%SZ} is after the file "
                    f"arrived ({row['first_seen_at']:%Y-%m-%dT%H:%M:%SZ}): wrong name or wrong clock")
            target = row["prepared_path"] if state == "ready" and row["prepared_path"] else \
                await asyncio.to_thread(planned_target, path, source)
        except (UnreadableProductName, PreparationFailed) as error:
            outcomes[row["id"]] = FileOutcome(path, "failed", str(error))
            continue
        pending.append(_Pending(row["id"], path, row["first_seen_at"], scene, target, row["listed"]))

    if pending:
        async with pool.acquire() as conn:
            await conn.execute(query("landing_mark_ready"), [p.id for p in pending], [p.target for p in pending],
                               [p.scene.scene_id for p in pending], now)

    prepared: list[_Pending] = []
    for item in pending:
        if not item.listed:
            # An earlier scan stopped after moving it: finish if the product is in the work directory.
            if await asyncio.to_thread(os.path.exists, item.target):
                prepared.append(item)
            else:
                outcomes[item.id] = FileOutcome(item.path, "failed",
                                                f"left the landing directory while being prepared and is not in "
                                                f"{source.work_directory}: nothing to register")
            continue
        try:
            await asyncio.to_thread(prepare_file, item.path, item.target, source, item.id)
        except PreparationFailed as error:
            outcomes[item.id] = FileOutcome(item.path, "failed", str(error))
            continue
        prepared.append(item)

    await _register(pool, source, prepared, outcomes, now)
    await _record_redeliveries(pool, source, redeliveries, report, now)

    for outcome in outcomes.values():
        report.add(outcome)
        if outcome.state == "failed":
            logger.warning("landing %s: %s: %s; marked failed and left where it is (fix the cause and touch "
                           "the file to retry)", source.name, outcome.path, outcome.message)
    return report


async def _register(pool: asyncpg.Pool, source: LandingSource, prepared: list[_Pending],
                    outcomes: dict[int, FileOutcome], now: datetime) -> None:
    """Inputs for the prepared files and the files' outcomes, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        if prepared:
            counts = await conn.fetch(
                query("harvest_register_inputs"), [p.target for p in prepared], [p.scene.tile for p in prepared],
                [p.scene.mission for p in prepared], [p.scene.measured_at for p in prepared],
                [p.first_seen_at for p in prepared], [p.scene.scene_id for p in prepared], source.product_type,
                now, source.name)
            for item, count in zip(prepared, counts):
                if count["created"]:
                    outcomes[item.id] = FileOutcome(item.path, "prepared", f"{count['created']} input(s) registered",
                                                    item.target, count["created"])
                elif count["matching"]:
                    outcomes[item.id] = FileOutcome(
                        item.path, "previously_received",
                        f"scene {item.scene.scene_id} is already registered for all {count['matching']} matching "
                        "condition(s) (from this or another source): no new input", item.target)
                else:
                    outcomes[item.id] = FileOutcome(
                        item.path, "prepared", f"no active condition takes it (product type {source.product_type}, "
                        f"tile {item.scene.tile or '-'}, windows): no input", item.target)
        if outcomes:
            ids = list(outcomes)
            await conn.execute(query("landing_record_outcomes"), ids, [outcomes[i].state for i in ids],
                               [outcomes[i].message for i in ids], [outcomes[i].prepared_path for i in ids],
                               [None] * len(ids), [outcomes[i].inputs for i in ids], now)


async def _record_redeliveries(pool: asyncpg.Pool, source: LandingSource,
                               redeliveries: list[tuple[asyncpg.Record, str, str]],
                               report: LandingScanReport, now: datetime) -> None:
    """Move re-delivered files aside and record them previously_received: a `seen` row becomes so; a
    copy identical to a prepared version gets a row of its own (the prepared one keeps its history)."""
    updated: dict[int, FileOutcome] = {}
    inserted: list[tuple[asyncpg.Record, FileOutcome]] = []
    for row, path, message in redeliveries:
        try:
            aside = await asyncio.to_thread(move_aside, path, source, row["id"])
        except OSError as error:
            # Left in place, it is seen again at the next scan and recorded again: say so once per scan.
            logger.warning("landing %s: %s was received before but cannot be moved aside (%s); it stays in the "
                           "landing directory and is skipped again at the next scan", source.name, path, error)
            continue
        outcome = FileOutcome(path, "previously_received", message, aside)
        report.add(outcome)
        logger.info("landing %s: %s: %s; moved to %s", source.name, path, message, aside)
        if row["state"] == "prepared":
            inserted.append((row, outcome))
        else:
            updated[row["id"]] = outcome
    if not updated and not inserted:
        return
    async with pool.acquire() as conn, conn.transaction():
        if updated:
            ids = list(updated)
            await conn.execute(query("landing_record_outcomes"), ids, [updated[i].state for i in ids],
                               [updated[i].message for i in ids], [updated[i].prepared_path for i in ids],
                               [None] * len(ids), [0] * len(ids), now)
        if inserted:
            await conn.execute(query("landing_record_redeliveries"), source.name,
                               [o.path for _, o in inserted], [r["size_bytes"] for r, _ in inserted],
                               [r["modified_at"] for r, _ in inserted], [o.message for _, o in inserted], now,
                               [o.prepared_path for _, o in inserted])

