"""Unzipping a landing file, within limits that ops set (blocking: run it in a worker thread).

A zip archive says what it holds before anything is written: the members, their paths and their
uncompressed sizes. An archive is refused before extraction when a member path would leave the
target directory (absolute, `..`), when it holds more members than `max_members`, more bytes
than `max_bytes`, or expands more than `max_ratio` times its own size (a zip bomb: 0.5 MB
that becomes 512 MB). Extraction then writes member by member and counts what it writes, so an
archive whose sizes lie is stopped at the same limits. On any failure the target directory is
removed: nothing half-extracted is left. The caller extracts into a hidden directory and renames
it into place, so a product never looks complete before it is.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_CHUNK = 1 << 20


class UnsafeArchive(Exception):
    """The archive cannot be extracted safely or at all; the message says why, for people."""


@dataclass(frozen=True)
class UnzipLimits:
    max_bytes: int        # all members together, uncompressed
    max_ratio: float      # uncompressed bytes per byte of the archive
    max_members: int      # files and directories in the archive


def _member_parts(name: str) -> tuple[str, ...]:
    path = PurePosixPath(name)
    if not path.parts or path.is_absolute() or ".." in path.parts or "\\" in name or "\0" in name:
        raise UnsafeArchive(f"unsafe member path {name!r} in the archive: refused")
    return path.parts


def top_level_names(path: str) -> set[str]:
    """The first path component of every member: one X.SAFE directory for a Sentinel zip."""
    with _open_archive(path) as archive:
        return {_member_parts(info.filename)[0] for info in archive.infolist()}


def _open_archive(path: str) -> zipfile.ZipFile:
    # O_NOFOLLOW: a symbolic link put in place of the archive is not followed to a file elsewhere.
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise UnsafeArchive(f"cannot read the archive: {error.strerror or error}") from None
    # Until a file object owns the descriptor, it is ours to close: os.fdopen refusing a directory
    # (IsADirectoryError) left it open, one descriptor leaked per scan of a directory named X.zip.
    try:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise UnsafeArchive("is a directory named like an archive: refused (rename it, or drop the archive "
                                "itself)")
        handle = os.fdopen(descriptor, "rb")
    except UnsafeArchive:
        os.close(descriptor)
        raise
    except OSError as error:
        os.close(descriptor)
        raise UnsafeArchive(f"cannot read the archive: {error.strerror or error}") from None
    try:
        return zipfile.ZipFile(handle)
    except zipfile.BadZipFile as error:
        handle.close()
        raise UnsafeArchive(f"not a valid zip archive ({error})") from None
    except OSError as error:
        handle.close()
        raise UnsafeArchive(f"cannot read the archive: {error}") from None
    except ValueError as error:  # e.g. member names flagged UTF-8 that are not
        handle.close()
        raise UnsafeArchive(f"not a readable zip archive ({error})") from None


# How deep a member may lie (as a landing directory's product: hrwsi.harvest.landing_files). Deeper, its
# extraction ran out of Python's recursion in mkdir ("maximum recursion depth exceeded while calling a
# Python object"), and so could the removal of what was half-extracted (found by exploratory testing).
MAX_MEMBER_DEPTH = 100


def check_limits(archive: zipfile.ZipFile, archive_bytes: int, limits: UnzipLimits) -> None:
    """Refuse the archive, before extraction, if what it declares is beyond the limits."""
    members = archive.infolist()
    if not members:
        raise UnsafeArchive("the archive is empty")
    if len(members) > limits.max_members:
        raise UnsafeArchive(f"the archive holds {len(members)} members, more than the limit of "
                            f"{limits.max_members} (HRWSI_UNZIP_MAX_MEMBERS): refused")
    _refuse_duplicates(members)
    total = sum(info.file_size for info in members)
    if total > limits.max_bytes:
        raise UnsafeArchive(f"the archive would expand to {total} bytes, more than the limit of {limits.max_bytes} "
                            "(HRWSI_UNZIP_MAX_BYTES): refused")
    ratio = total / max(archive_bytes, 1)
    if ratio > limits.max_ratio:
        raise UnsafeArchive(f"the archive would expand {ratio:.0f} times its size of {archive_bytes} bytes, more than "
                            f"the limit of {limits.max_ratio:g} (HRWSI_UNZIP_MAX_RATIO): a zip bomb? refused")


def _refuse_duplicates(members: list[zipfile.ZipInfo]) -> None:
    """Every member path is safe and names one thing: two members with one path, or a path that is
    a file in one member and a directory in another, cannot both be extracted (they failed half-way
    with "cannot unzip into <work directory>: File exists", blaming the work directory)."""
    files: dict[tuple[str, ...], str] = {}
    directories: dict[tuple[str, ...], str] = {}
    for info in members:
        parts = _member_parts(info.filename)
        if len(parts) > MAX_MEMBER_DEPTH + 1:
            raise UnsafeArchive(f"the archive holds {info.filename[:200]!r}..., nested more than {MAX_MEMBER_DEPTH} "
                                "directories deep: refused, nothing extracted (a product is not that deep)")
        if not info.is_dir():
            if parts in files:
                raise UnsafeArchive(f"the archive holds {info.filename!r} twice: refused, nothing extracted")
            files[parts] = info.filename
        else:
            directories.setdefault(parts, info.filename)
        for depth in range(1, len(parts)):
            directories.setdefault(parts[:depth], info.filename)
    for parts, name in files.items():
        if parts in directories:
            raise UnsafeArchive(f"the archive holds {name!r} both as a file and as a directory "
                                f"({directories[parts]!r}): refused, nothing extracted")


# What a storage says when it is full or read-only: no fault of the file being written there, which is
# prepared again once the storage takes writes again (landing_files.StorageUnavailable).
STORAGE_FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def extract(path: str, into: Path, limits: UnzipLimits, *, password: bytes | None = None,
            password_hint: str = "zip_password_env", stopped: Callable[[], bool] = lambda: False) -> None:
    """Extract the archive at `path` into the new directory `into`, within `limits`.

    Raises UnsafeArchive (and leaves no `into`) when the archive is refused or cannot be extracted;
    `stopped` is asked between chunks: a scan that timed out stops its extraction too.
    """
    try:
        _extract(path, into, limits, password, password_hint, stopped)
    except BaseException:
        remove_path(into, ignore_errors=True)  # nothing half-extracted is left, whatever stopped it
        raise


def _extract(path: str, into: Path, limits: UnzipLimits, password: bytes | None, password_hint: str,
             stopped: Callable[[], bool]) -> None:
    encrypted = False
    try:
        with _open_archive(path) as archive:
            check_limits(archive, os.fstat(archive.fp.fileno()).st_size, limits)
            encrypted = any(info.flag_bits & 0x1 for info in archive.infolist())
            if encrypted and password is None:
                raise UnsafeArchive(f"the archive is password-protected and no password is set (set the environment "
                                    f"variable {password_hint} named by the source's config.zip_password_env)")
            into.mkdir()
            budget = [limits.max_bytes]
            for info in archive.infolist():
                _extract_member(archive, info, into, password, budget, stopped)
    except RuntimeError as error:  # zipfile: "Bad password for file ..."
        message = str(error)
        if "password" in message.lower():
            message = f"wrong zip password (from environment variable {password_hint}): {message}"
        raise UnsafeArchive(message) from None
    except (zipfile.BadZipFile, NotImplementedError, EOFError) as error:
        if encrypted and password is not None and "CRC" in str(error):
            # Traditional PKWARE encryption checks a password against one byte of a random header:
            # one wrong password in 256 passes the check, and the member then fails its CRC.
            raise UnsafeArchive(f"wrong zip password (from environment variable {password_hint}) or a damaged "
                                f"archive: {error}") from None
        raise UnsafeArchive(f"cannot unzip: {error}") from None
    except OSError as error:
        if error.errno in STORAGE_FULL_OR_READ_ONLY:
            raise  # (the work directory's storage, not the archive: prepare_file says so and it is retried)
        raise UnsafeArchive(f"cannot unzip into {into.parent}: {error}") from None


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, into: Path, password: bytes | None,
                    budget: list[int], stopped: Callable[[], bool]) -> None:
    target = into.joinpath(*_member_parts(info.filename))
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    # "xb": a member never replaces what another member (or a link) put there.
    with archive.open(info, pwd=password) as member, open(target, "xb") as out:
        while chunk := member.read(_CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > info.file_size or budget[0] < 0:
                raise UnsafeArchive(f"member {info.filename!r} expands beyond the size the archive declares: "
                                    "refused")
            if stopped():
                raise UnsafeArchive("extraction stopped: the scan ran out of time")
            out.write(chunk)


def remove_path(path: Path, *, ignore_errors: bool = False) -> None:
    """Remove a file, a link (not what it points to) or a directory tree, if there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=ignore_errors)
    elif ignore_errors:
        path.unlink(missing_ok=True)
    else:
        path.unlink()
