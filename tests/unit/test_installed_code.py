"""Which code a service runs: the fingerprint of its package's files, and what a reader says of it."""

from __future__ import annotations

import os

from hrwsi.installed_code import CANNOT_TELL, changed_since_start, fingerprint


def _package(root):
    (root / "src" / "hrwsi" / "__pycache__").mkdir(parents=True)
    (root / "src" / "hrwsi" / "launcher.py").write_text("A = 1\n")
    (root / "src" / "hrwsi" / "installed_code.py").write_text("B = 1\n")
    (root / "sql" / "queries").mkdir(parents=True)
    (root / "sql" / "queries" / "core.sql").write_text("SELECT 1;\n")
    return root / "src" / "hrwsi"


def test_the_fingerprint_changes_with_a_file_of_the_package_or_of_its_sql_and_not_with_compiled_files(tmp_path):
    package = _package(tmp_path)
    first = fingerprint(package)
    assert first == fingerprint(package) and len(first) == 16
    (package / "__pycache__" / "launcher.cpython-311.pyc").write_bytes(b"compiled")
    assert fingerprint(package) == first  # (an import compiling it changes nothing)
    os.utime(package / "launcher.py", ns=(1, 1))  # (a checkout: same size, another time)
    assert fingerprint(package) != first
    touched = fingerprint(package)
    (tmp_path / "sql" / "queries" / "core.sql").write_text("SELECT 22;\n")
    assert fingerprint(package) != touched
    assert fingerprint(tmp_path / "gone") is None


def test_a_reader_says_a_service_of_its_host_runs_older_code_and_leaves_other_hosts_and_old_rows_alone(tmp_path):
    package = _package(tmp_path)
    row = {"kind": "launcher", "id": "launcher-1", "host": "h1", "code_dir": str(package),
           "code_fingerprint": fingerprint(package)}
    assert changed_since_start(row, here="h1") is None
    (package / "launcher.py").write_text("A = 2  # pulled\n")
    assert changed_since_start(row, here="h1") == (
        f"code on disk changed since launcher launcher-1 started: restart it to run the new code ({package})")
    assert changed_since_start(row, here="h2") is None  # (its files are not on this host)
    assert changed_since_start(row | {"code_fingerprint": None}, here="h1") is None  # (before migration 0074)
    gone = changed_since_start(row | {"code_dir": str(tmp_path / "moved")}, here="h1")
    assert gone is not None and "started (its directory is gone): restart it" in gone


def test_a_directory_that_is_no_hrwsi_package_or_that_the_reader_cannot_read_whole_is_not_said_changed(
        tmp_path, monkeypatch):
    """A service row naming `/` made every status page walk the whole file system, and a reader without
    the services' permissions hashed less and said "restart it" of code that had not changed (found by
    review): neither is walked to the end nor said."""
    from hrwsi import installed_code

    package = _package(tmp_path)
    row = {"kind": "launcher", "id": "launcher-1", "host": "h1", "code_dir": str(package),
           "code_fingerprint": fingerprint(package)}
    assert fingerprint(tmp_path) == CANNOT_TELL  # (no hrwsi package there: not walked)
    assert changed_since_start(row | {"code_dir": str(tmp_path)}, here="h1") is None
    walk = os.walk

    def walk_without_permission(top, onerror=None, **kwargs):  # (as a reader without the modes meets it)
        onerror(PermissionError(13, "Permission denied", os.path.join(top, "__pycache__")))
        yield from walk(top, onerror=onerror, **kwargs)

    monkeypatch.setattr(installed_code.os, "walk", walk_without_permission)
    assert fingerprint(package) == CANNOT_TELL
    assert changed_since_start(row, here="h1") is None
