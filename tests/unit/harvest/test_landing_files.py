"""What a landing scan does to files, on real files (no database): listing never fails for one
entry, and preparing a file that changed since it was listed fails that file with the reason."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from hrwsi.harvest import landing_files
from hrwsi.harvest.landing_files import PreparationFailed, list_landing_directory, prepare_file
from hrwsi.harvest.landing_source import LandingSource
from hrwsi.harvest.unzip import UnzipLimits

LIMITS = UnzipLimits(max_bytes=2**30, max_ratio=100, max_members=1000)
NAME = "S2A_L1C_20240105T103421_T32TPR"
OTHER = "S2B_L1C_20240105T103421_T31TCH"


def source(base: Path, **options) -> LandingSource:
    (base / "in").mkdir(exist_ok=True)
    return LandingSource(name="landing", directory=str(base / "in"), work_directory=str(base / "work"),
                         product_type="L1C", **options)


def _landing(directory: str) -> LandingSource:
    return LandingSource(name="landing", directory=directory, work_directory=directory + "-work", product_type="L1C")


def _list_as_nobody(send, directory: str) -> None:
    """In a child process: drop root's rights (as a root-squashed NFS mount would), then list."""
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    try:
        send.send(("listed", [(Path(e.path).name, e.problem) for e in list_landing_directory(_landing(directory))]))
    except PermissionError as error:
        send.send(("refused", str(error)))


def listed_without_root_rights(directory: Path) -> dict[str, str | None]:
    """List the directory as a user without root's rights (root reads every file, whatever its mode)."""
    if os.geteuid() != 0:
        return {Path(e.path).name: e.problem for e in list_landing_directory(_landing(str(directory)))}
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_list_as_nobody, args=(send, str(directory)))
    child.start()
    child.join(30)
    assert child.exitcode == 0, "the unprivileged listing failed"
    outcome, value = receive.recv()
    if outcome == "refused":
        raise PermissionError(value)
    return dict(value)


@pytest.fixture
def world_readable_base():
    """A directory an unprivileged user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="hrwsi-landing-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_an_unreadable_file_is_listed_with_its_reason_and_the_rest_of_the_directory_is_listed(world_readable_base):
    directory = world_readable_base / "in"
    directory.mkdir(mode=0o755)
    (directory / f"{NAME}.json").write_text("{}")
    (directory / f"{NAME}.json").chmod(0o000)
    (directory / f"{OTHER}.json").write_text("{}")
    (directory / f"{OTHER}.json").chmod(0o644)
    safe = directory / f"{NAME}.SAFE"
    (safe / "GRANULE").mkdir(parents=True)
    safe.chmod(0o755)
    (safe / "GRANULE").chmod(0o700)  # a part of the product nobody but its owner may read
    listed = listed_without_root_rights(directory)
    assert listed[f"{OTHER}.json"] is None
    assert "cannot be read" in listed[f"{NAME}.json"] and "permission denied" in listed[f"{NAME}.json"]
    assert "cannot read" in listed[f"{NAME}.SAFE"]


def test_an_unreadable_landing_directory_is_the_sources_error_not_an_empty_listing(world_readable_base):
    directory = world_readable_base / "in"
    directory.mkdir(mode=0o700)
    (directory / f"{NAME}.json").write_text("{}")
    with pytest.raises(PermissionError, match="cannot be read by the harvester"):
        listed_without_root_rights(directory)


def test_a_file_that_vanished_after_the_listing_fails_with_that_reason_and_overwrites_nothing(tmp_path):
    landing = source(tmp_path)
    path = Path(landing.directory) / f"{NAME}.json"
    path.write_text("{}")
    [entry] = list_landing_directory(landing)
    path.unlink()  # taken away (by its writer, another tool) between the listing and the preparation
    work = Path(landing.work_directory)
    work.mkdir()
    (work / f"{NAME}.json").write_text('{"prepared": "before"}')  # a product of the same name, registered
    with pytest.raises(PreparationFailed, match="vanished from the landing directory"):
        prepare_file(entry.path, str(work / f"{NAME}.json"), landing, 1, LIMITS)
    assert json.loads((work / f"{NAME}.json").read_text()) == {"prepared": "before"}


def test_a_file_swapped_for_a_link_after_the_listing_is_refused(tmp_path):
    landing = source(tmp_path)
    path = Path(landing.directory) / f"{NAME}.json"
    path.write_text("{}")
    [entry] = list_landing_directory(landing)
    path.unlink()
    path.symlink_to("/etc/passwd")
    with pytest.raises(PreparationFailed, match="became a symbolic link"):
        prepare_file(entry.path, str(Path(landing.work_directory) / path.name), landing, 1, LIMITS)
    assert not (Path(landing.work_directory) / path.name).exists()


def test_an_existing_product_is_replaced_only_when_resuming_this_files_own_attempt(tmp_path):
    landing = source(tmp_path)
    work = Path(landing.work_directory)
    work.mkdir()
    (work / f"{NAME}.json").write_text("leftover")
    (Path(landing.directory) / f"{NAME}.json").write_text("new")
    with pytest.raises(PreparationFailed, match="already in the work directory"):
        prepare_file(str(Path(landing.directory) / f"{NAME}.json"), str(work / f"{NAME}.json"), landing, 1, LIMITS)
    prepare_file(str(Path(landing.directory) / f"{NAME}.json"), str(work / f"{NAME}.json"), landing, 1, LIMITS,
                 resume=True)
    assert (work / f"{NAME}.json").read_text() == "new"


def test_the_landing_directory_itself_and_the_work_directory_inside_it_are_never_products(tmp_path):
    directory = tmp_path / "in"
    (directory / "work").mkdir(parents=True)
    (directory / "work" / f"{NAME}.json").write_text("{}")
    (directory / f"{OTHER}.json").write_text("{}")
    landing = LandingSource(name="landing", directory=str(directory), work_directory=str(directory / "work"),
                            product_type="L1C", pattern="**/*")
    assert [Path(e.path).name for e in list_landing_directory(landing)] == [f"{OTHER}.json"]
    landing_all = LandingSource(name="landing", directory=str(directory), work_directory=str(directory / "work"),
                                product_type="L1C", pattern="**")
    assert list_landing_directory(landing_all) == []


def test_move_aside_of_a_vanished_file_says_so(tmp_path):
    landing = source(tmp_path)
    with pytest.raises(PreparationFailed, match="vanished"):
        landing_files.move_aside(str(Path(landing.directory) / f"{NAME}.json"), landing, 1)


def test_an_empty_file_or_a_directory_with_no_byte_in_it_is_listed_as_empty(tmp_path):
    landing = source(tmp_path)
    directory = Path(landing.directory)
    (directory / f"{NAME}.SAFE").write_bytes(b"")
    (directory / f"{OTHER}.SAFE" / "GRANULE").mkdir(parents=True)
    (directory / f"{OTHER}.SAFE" / "MTD.xml").write_bytes(b"")
    (directory / f"{NAME}.json").write_bytes(b"{}")
    (directory / f"{OTHER}.json").mkdir()
    (directory / f"{OTHER}.json" / "x").write_bytes(b"x")
    listed = {Path(e.path).name: (e.empty, e.problem) for e in list_landing_directory(landing)}
    assert listed == {f"{NAME}.SAFE": (True, None), f"{OTHER}.SAFE": (True, None),
                      f"{NAME}.json": (False, None), f"{OTHER}.json": (False, None)}


def test_a_listing_resolves_the_landing_directory_once_not_each_entry_of_it(tmp_path, monkeypatch):
    """Resolving every entry's path (realpath looks at each component), comparing paths as Path objects
    and sorting them as such made listing 30,000 files take 1.5 s of CPU, at every scan of a directory
    where failed files wait (found by exploratory testing): 0.6 s now. An entry in a subdirectory may
    lead elsewhere through a linked directory, and is still resolved."""
    landing = source(tmp_path, pattern="*")
    for index in range(50):
        (tmp_path / "in" / f"file-{index}.json").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "outside.json").write_bytes(b"x")
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "elsewhere")
    resolved: list[str] = []
    realpath = os.path.realpath

    def counted(path, *args, **kwargs):
        resolved.append(str(path))
        return realpath(path, *args, **kwargs)

    monkeypatch.setattr(landing_files.os.path, "realpath", counted)
    entries = list_landing_directory(landing)
    assert len(entries) == 51 and len(resolved) == 1
    resolved.clear()
    nested = list_landing_directory(dataclasses.replace(landing, pattern="*/*.json"))
    assert [Path(e.path).name for e in nested] == ["outside.json"] and len(resolved) == 2
    assert "outside the landing directory" in nested[0].problem


def test_a_listing_holds_one_entry_a_file_not_a_path_object_besides(tmp_path):
    """The listing made a Path of every entry (glob) and held them all, sorted, beside the entries it made: 920 bytes a
    file at its peak, 20,000 and 100,000 files alike, a third of a scan's peak (measured with tracemalloc in session
    75). A pattern of one component is matched against the directory's names: 440 bytes a file now, in order."""
    import tracemalloc
    landing = source(tmp_path, pattern="S2*.json")
    names = [f"S2A_MSIL1C_20241105T{n:06d}_N0510_R108_T32TPR_20241105T123456.json" for n in range(3_000)]
    for name in reversed(names):
        (landing_path := Path(landing.directory) / name).write_bytes(b"x")
    (Path(landing.directory) / "S1A_other.json").write_bytes(b"x")  # (not matching)
    tracemalloc.start()
    try:
        listing = list_landing_directory(landing)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [Path(e.path).name for e in listing] == names and str(landing_path.parent) in listing[0].path
    assert peak / len(names) < 650, f"the listing's peak was {peak / len(names):.0f} bytes a file"
