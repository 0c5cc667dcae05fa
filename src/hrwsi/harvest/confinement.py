"""Where a landing source may move files: inside the roots ops configure, and nowhere another
source works (blocking path resolution: run it in a worker thread).

The harvester runs with the rights to move files between directories; the directories come from
a row a data engineer inserts. So the row does not decide alone: ops set the roots
(HRWSI_LANDING_ROOTS, validated at start-up), and a source is refused, with its reason, when

- its landing directory or work directory, symbolic links resolved, is not inside a root;
- its pattern could leave the landing directory (absolute, or a `..` component);
- its work directory is, contains, or lies inside the landing or work directory of another
  active landing source configured before it (two sources would take or overwrite each other's
  files); the older source keeps its directories, the newer one is refused.

Entries the pattern finds are checked again one by one when listed (hrwsi.harvest.landing_files):
a symbolic link, or a path that leaves the landing directory through one, is never taken.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from hrwsi.terminal import shown


class SourceRefused(ValueError):
    """A source's configuration reaches where ops do not allow; the message says why and what to do."""


def _real(path: str | Path) -> Path:
    # realpath, not Path.resolve: a symbolic link loop gives a path (refused below), not an exception.
    return Path(os.path.realpath(path))


def is_within(path: Path, directory: Path) -> bool:
    """path is directory or lies under it (both already resolved). Compared as text: `directory in
    path.parents` built a Path per parent, 40 % of listing a landing directory of 30,000 files."""
    inner, outer = str(path), str(directory)
    return inner == outer or inner.startswith(outer if outer.endswith(os.sep) else outer + os.sep)


def _overlap(first: Path, second: Path) -> bool:
    return is_within(first, second) or is_within(second, first)


def _has_control_character(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


@dataclass(frozen=True)
class LandingRoots:
    """The directories landing sources may use (resolved), as ops configured them."""
    paths: tuple[Path, ...]

    @classmethod
    def validated(cls, roots: Iterable[str | Path], *, create: bool = False) -> LandingRoots:
        """Start-up check: each root is absolute, is not `/`, and is an existing directory (created
        when `create`, for the default root under HRWSI_HOME). Raises ValueError saying which."""
        resolved = []
        for root in roots:
            path = Path(root)
            if not path.is_absolute():
                raise ValueError(f"HRWSI_LANDING_ROOTS: {shown(str(root))} is not an absolute path")
            if create:
                path.mkdir(parents=True, exist_ok=True)
            if not path.is_dir():
                raise ValueError(f"HRWSI_LANDING_ROOTS: {path} is not an existing directory")
            real = _real(path)
            if real == Path(real.anchor):
                raise ValueError(f"HRWSI_LANDING_ROOTS: {path} is the file system root, which confines nothing")
            resolved.append(real)
        if not resolved:
            raise ValueError("HRWSI_LANDING_ROOTS names no directory")
        return cls(tuple(resolved))

    def holding(self, path: Path) -> Path | None:
        return next((root for root in self.paths if is_within(path, root)), None)

    def describe(self) -> str:
        return os.pathsep.join(str(p) for p in self.paths)


@dataclass(frozen=True)
class SourceDirectories:
    """A landing source's directories as written in its config, and when it was configured."""
    name: str
    directory: str
    work_directory: str
    created_at: datetime

    def came_before(self, other: SourceDirectories) -> bool:
        return (self.created_at, self.name) < (other.created_at, other.name)


@dataclass(frozen=True)
class ConfinedDirectories:
    directory: Path        # resolved
    work_directory: Path   # resolved (it may not exist yet)


def check_pattern(pattern: str) -> None:
    """A glob pattern stays inside the landing directory: relative, no `..`, no control character."""
    if not pattern or pattern.startswith("/") or ".." in PurePosixPath(pattern).parts \
            or _has_control_character(pattern):
        raise SourceRefused(f"pattern {shown(pattern)} could reach outside the landing directory: give a relative "
                            "pattern without '..' (e.g. '*.zip' or 'S2*/*.zip')")


def confine(source: SourceDirectories, pattern: str, roots: LandingRoots,
            others: Iterable[SourceDirectories]) -> ConfinedDirectories:
    """The source's resolved directories, or SourceRefused saying what reaches too far."""
    check_pattern(pattern)
    resolved = {}
    for key in ("directory", "work_directory"):
        written = getattr(source, key)
        if _has_control_character(written):
            raise SourceRefused(f"{key} {shown(written)} contains control characters")
        real = _real(written)
        if roots.holding(real) is None:
            through = f" (through a symbolic link: {real})" if str(real) != written.rstrip("/") else ""
            raise SourceRefused(f"{key} {written}{through} is outside the landing roots ops allow "
                                f"({roots.describe()}; HRWSI_LANDING_ROOTS)")
        resolved[key] = real
    directory, work = resolved["directory"], resolved["work_directory"]
    if is_within(directory, work):
        raise SourceRefused(f"the landing directory {source.directory} is (inside) its own work directory "
                            f"{source.work_directory}")
    for other in others:
        if other.name == source.name or not other.came_before(source):
            continue
        _refuse_shared(source, work, directory, other)
    return ConfinedDirectories(directory, work)


def _refuse_shared(source: SourceDirectories, work: Path, directory: Path, other: SourceDirectories) -> None:
    other_work, other_directory = _real(other.work_directory), _real(other.directory)
    if _overlap(work, other_work):
        raise SourceRefused(f"its work directory {source.work_directory} is, contains or is inside the work directory "
                            f"{other.work_directory} of source {other.name}, which is older and keeps it: give "
                            f"{source.name} a work directory of its own")
    if _overlap(work, other_directory):
        raise SourceRefused(f"its work directory {source.work_directory} overlaps the landing directory "
                            f"{other.directory} of source {other.name} (older), which would take its prepared files")
    if _overlap(directory, other_work):
        raise SourceRefused(f"its landing directory {source.directory} overlaps the work directory "
                            f"{other.work_directory} of source {other.name} (older): it would take that "
                            "source's prepared files")
