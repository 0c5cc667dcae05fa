"""Which code a service runs, and whether the code on disk is still that code.

`make install` is editable: a `git pull` (or any edit) replaces the files under services that are still
running, and their lazy imports then mix two versions (found by exploratory testing). A service records
at start where its code is (the package's directory) and a fingerprint of it: a hash of every file's path,
size and modification time under the package and its sql/ (about 200 files: one stat each, no read, a
millisecond; computed in a thread all the same). `hrwsi status` and the dashboard compute the fingerprint
of that directory again on their own host and say "code on disk changed since SERVICE started: restart it
to run the new code" when it differs; the service itself checks every CHECK_EVERY_S and logs it once.

The fingerprint, not the git commit: it also changes with an edit not committed, a branch checked out, a
wheel installed over the last one; a commit would not see the first.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import hrwsi

# How often a service compares the code on disk with the code it started with.
CHECK_EVERY_S = 300.0
# The fingerprint of a directory that is not an hrwsi package, or that this reader cannot read whole:
# nothing is said of it.
CANNOT_TELL = "cannot tell"


def code_dir() -> str:
    """The directory of the hrwsi package this process imported (resolved: a link is followed)."""
    return os.fspath(Path(hrwsi.__file__).resolve().parent)


def _roots(package: Path) -> list[Path]:
    """The package and the SQL it reads: inside a wheel, sql/ is in the package; an editable install
    reads the repository's sql/ beside src/ (as hrwsi.sql_files.sql_dir finds it)."""
    beside = package.parents[1] / "sql" if len(package.parents) > 1 else None
    if (package / "sql").is_dir() or beside is None or not beside.is_dir():
        return [package]
    return [package, beside]


def fingerprint(directory: str | os.PathLike | None = None) -> str | None:
    """A hash of the paths, sizes and modification times of the files of the hrwsi package at `directory`
    (this process's by default) and of its sql/; None when the directory is gone. Blocking: call it in a
    thread from the event loop."""
    package = Path(directory).resolve() if directory is not None else Path(code_dir())
    if not package.is_dir():
        return None
    # Only an hrwsi package is walked: a service row naming another directory (`/`) made every status
    # and dashboard page walk it (found by review).
    if not (package / "installed_code.py").is_file():
        return CANNOT_TELL
    entries = []
    unreadable: list[OSError] = []
    for root in _roots(package):
        for parent, dirs, files in os.walk(root, onerror=unreadable.append):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in files:
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(parent, name)
                try:
                    stat = os.stat(path)
                except OSError:  # (removed while walked: the next check sees what is left)
                    continue
                entries.append(f"{os.path.relpath(path, root.parent)}\0{stat.st_size}\0{stat.st_mtime_ns}")
    if unreadable:  # (a reader without the services' permissions: another hash, not another code)
        return CANNOT_TELL
    digest = hashlib.sha256("\n".join(sorted(entries)).encode())
    return digest.hexdigest()[:16]


def changed_since_start(service: dict, on_disk: dict[str, str | None] | None = None, here: str | None = None) -> str | None:
    """What a reader on this host says of one service row (host, kind, code_dir, code_fingerprint): "code
    on disk changed since SERVICE started: restart it to run the new code", or None: the same code, not
    recorded (a version before migration 0074), or a service on another host (its files are not here:
    the service's own periodic check says it in its log). `on_disk` caches the fingerprints computed."""
    recorded, directory = service.get("code_fingerprint"), service.get("code_dir")
    if not recorded or not directory or service.get("host") != (here or socket.gethostname()):
        return None
    cache = on_disk if on_disk is not None else {}
    if directory not in cache:
        cache[directory] = fingerprint(directory)
    now = cache[directory]
    if now == recorded or now == CANNOT_TELL:
        return None
    gone = " (its directory is gone)" if now is None else ""
    who = " ".join(str(part) for part in (service["kind"], service.get("id")) if part)
    return f"code on disk changed since {who} started{gone}: restart it to run the new code ({directory})"


def mark_changed(services: list[dict]) -> None:
    """Sets each service row's "code_changed" (changed_since_start; None: nothing to say), each directory
    fingerprinted once. Blocking: call it in a thread from the event loop."""
    on_disk: dict[str, str | None] = {}
    here = socket.gethostname()
    for service in services:
        service["code_changed"] = changed_since_start(service, on_disk, here)
