"""Confinement of landing sources, on real directories and links: the roots ops set decide where a
source may move files, not the row a data engineer inserts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hrwsi.harvest.confinement import LandingRoots, SourceDirectories, SourceRefused, check_pattern, confine
from hrwsi.settings import Settings

EARLIER = datetime(2026, 1, 1, tzinfo=UTC)
LATER = EARLIER + timedelta(days=1)


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def directories(name, directory, work, created_at=LATER) -> SourceDirectories:
    return SourceDirectories(name, str(directory), str(work), created_at)


def test_a_source_inside_the_roots_gets_its_resolved_directories(root):
    (root / "in").mkdir()
    (root / "alias").symlink_to(root / "in")
    confined = confine(directories("a", root / "alias", root / "work"), "*.zip", LandingRoots.validated([root]), [])
    assert (confined.directory, confined.work_directory) == (root / "in", root / "work")


@pytest.mark.parametrize("pattern", ["../x/*", "*/../../etc/*", "/etc/*", "..", "", "a\nb"])
def test_a_pattern_that_can_leave_the_landing_directory_is_refused(pattern):
    with pytest.raises(SourceRefused, match="could reach outside the landing directory"):
        check_pattern(pattern)


def test_directories_outside_the_roots_are_refused_even_through_a_link(root, tmp_path):
    roots = LandingRoots.validated([root])
    with pytest.raises(SourceRefused, match=r"directory /etc is outside the landing roots ops allow"):
        confine(directories("a", "/etc", root / "work"), "*", roots, [])
    (root / "escape").symlink_to("/var")
    with pytest.raises(SourceRefused, match=r"work_directory .*/escape/x \(through a symbolic link: /var/x\) is "
                                            "outside the landing roots"):
        confine(directories("a", root, root / "escape" / "x"), "*", roots, [])
    with pytest.raises(SourceRefused, match="outside the landing roots"):
        confine(directories("a", root / ".." / "elsewhere", root / "work"), "*", roots, [])


def test_a_landing_directory_inside_its_own_work_directory_is_refused(root):
    with pytest.raises(SourceRefused, match="is \\(inside\\) its own work directory"):
        confine(directories("a", root / "work" / "in", root / "work"), "*", LandingRoots.validated([root]), [])


def test_two_sources_cannot_share_or_nest_a_work_directory_and_the_older_one_keeps_it(root):
    roots = LandingRoots.validated([root])
    (root / "shared").mkdir()
    (root / "same-place").symlink_to(root / "shared")  # the same directory under another name
    older = directories("older", root / "in-a", root / "shared", EARLIER)
    newer = directories("newer", root / "in-b", root / "same-place", LATER)
    with pytest.raises(SourceRefused, match="work directory .* of source older, which is older and keeps it: give "
                                            "newer a work directory of its own"):
        confine(newer, "*", roots, [older, newer])
    assert confine(older, "*", roots, [older, newer]).work_directory == root / "shared"
    nested = directories("nested", root / "in-c", root / "shared" / "sub", LATER)
    with pytest.raises(SourceRefused, match="of source older"):
        confine(nested, "*", roots, [older, nested])


def test_a_work_directory_in_another_sources_landing_directory_is_refused(root):
    roots = LandingRoots.validated([root])
    older = directories("older", root / "in", root / "work-a", EARLIER)
    with pytest.raises(SourceRefused, match="overlaps the landing directory .* of source older"):
        confine(directories("newer", root / "in-b", root / "in" / "work-b"), "*", roots, [older])
    with pytest.raises(SourceRefused, match="its landing directory .* overlaps the work directory"):
        confine(directories("newer", root / "work-a" / "in", root / "work-b"), "*", roots, [older])
    # Two sources reading one landing directory (other patterns) is fine: their work directories differ.
    confine(directories("newer", root / "in", root / "work-b"), "S1*", roots, [older])


def test_roots_are_checked_at_start_up(tmp_path):
    with pytest.raises(ValueError, match="not an absolute path"):
        LandingRoots.validated(["landing"])
    with pytest.raises(ValueError, match="is not an existing directory"):
        LandingRoots.validated([tmp_path / "missing"])
    with pytest.raises(ValueError, match="file system root, which confines nothing"):
        LandingRoots.validated(["/"])
    created = LandingRoots.validated([tmp_path / "home" / "harvest"], create=True)
    assert created.paths == (tmp_path / "home" / "harvest",)


def test_hrwsi_landing_roots_is_a_list_of_absolute_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("HRWSI_LANDING_ROOTS", f"{tmp_path}/a:{tmp_path}/b")
    assert Settings.from_env().landing_roots == (tmp_path / "a", tmp_path / "b")
    monkeypatch.setenv("HRWSI_LANDING_ROOTS", "/data:relative/dir")
    with pytest.raises(ValueError, match="HRWSI_LANDING_ROOTS=.*'relative/dir' is not an absolute path"):
        Settings.from_env()
    monkeypatch.delenv("HRWSI_LANDING_ROOTS")
    assert Settings.from_env().landing_roots is None  # the default: HRWSI_HOME/harvest
