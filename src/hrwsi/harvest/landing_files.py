"""What a landing scan does to files (blocking: always run in a worker thread).

Listing never fails for one entry: an entry that cannot be taken (a symbolic link, a path that
leaves the landing directory through one, a name that is not UTF-8, a file that cannot be read,
a fifo or a device, a directory nested more than MAX_PRODUCT_DEPTH deep) is listed with the
reason, and the scan records it `failed` while the rest of the directory is taken. Only the
landing directory itself missing or unreadable fails the whole scan (the source's error).
Preparing moves a file, or extracts an archive within the ops' limits (hrwsi.harvest.unzip),
into the work directory; a file that vanished or changed into a link meanwhile fails with that
reason.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hrwsi.harvest import input_checks, unzip
from hrwsi.harvest.confinement import is_within
from hrwsi.harvest.landing_source import LandingSource
from hrwsi.harvest.product_names import UnreadableProductName, parse_product_name, scene_id_of

# Names a writer uses for a file it has not finished yet: never taken, whatever the pattern says.
_UNFINISHED_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart")
# Where re-delivered files are moved, under the work directory, so that they are not scanned again.
PREVIOUSLY_RECEIVED_DIRECTORY = "previously_received"
_PARTIAL_PREFIX = ".hrwsi-partial-"


class PreparationFailed(Exception):
    """A file could not be prepared; the message says why, for the landing_file row."""


class StorageUnavailable(PreparationFailed):
    """The work directory's storage is full or read-only (ENOSPC, EDQUOT, EROFS): no fault of the file, which
    stays `ready` and is prepared again at the next scan. Why: it was failed for good, like a file that is
    not a product, and a full disk for a minute left every file of a burst failed until someone touched
    each one (found by exploratory testing)."""


@dataclass(frozen=True, slots=True)  # (one per entry of the directory: 100,000 in a burst)
class ListedEntry:
    path: str
    size_bytes: int
    modified_at: datetime
    problem: str | None = None   # why it cannot be taken: recorded `failed` at once, the others go on
    empty: bool = False          # no byte in it (a file, or a directory whose files are all empty)
    # Device, inode and change time (ns) of the entry itself: another file put in its place differs by its inode, and
    # one rewritten in place with its size kept and its mtime set back (`rsync --inplace -t`, os.utime) by its change
    # time, which every write, rename, chmod and utime sets and no call sets back. (Fields, not a tuple: one object
    # less per entry of a listing of 100,000.)
    device: int = 0
    inode: int = 0
    changed_ns: int = 0

    @property
    def version(self) -> tuple[int, datetime, tuple[int, int, int]]:
        """What says the entry is unchanged since a scan saw it: size, mtime, inode and change time (a file replaced
        by one of the same size and mtime, `cp -p`, is another inode; one rewritten in place, another ctime)."""
        return self.size_bytes, self.modified_at, (self.device, self.inode, self.changed_ns)


class _Changing(Exception):
    """The entry changed while it was listed (a file vanished): it is looked at again next scan."""


def _printable(path: Path | str) -> tuple[str, bool]:
    """The path as text the database can store, and whether it had to be escaped: a name that is
    not UTF-8 is shown with \\x escapes (the same every scan, so it is recorded once)."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace"), True


def _shown(path: Path | str) -> str:
    return _printable(path)[0]


# How deep a directory product may nest. A .SAFE is some six levels deep; os.walk recursed once a
# level, and a tree 1,100 levels deep raised RecursionError out of the listing: every scan of the
# source failed and none of its other files was taken (found by exploratory testing). The walk
# below keeps its own stack, and a product deeper than this is refused with its reason.
MAX_PRODUCT_DEPTH = 100


def _walk_product_directory(path: Path) -> tuple[int, float, int]:
    """Size (sum of its entries), newest mtime and bytes of its files of a directory product, without
    following links. Raises PreparationFailed for a link or unreadable part inside, or a tree nested
    more than MAX_PRODUCT_DEPTH deep, _Changing if a part vanished."""
    info = os.lstat(path)
    size, newest, content = info.st_size, info.st_mtime, 0
    stack: list[tuple[Path, int]] = [(path, 0)]
    while stack:
        folder, depth = stack.pop()
        if depth > MAX_PRODUCT_DEPTH:
            raise PreparationFailed(f"nested more than {MAX_PRODUCT_DEPTH} directories deep (at "
                                    f"{_shown(folder.relative_to(path))[:200]}...): refused, a product is not that deep")
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            raise _Changing from None
        except OSError as error:
            raise PreparationFailed(f"cannot read {_shown(folder)}: {error.strerror or error}") from None
        for name in names:
            child = folder / name
            try:
                child_info = os.lstat(child)
            except FileNotFoundError:
                raise _Changing from None
            if stat.S_ISLNK(child_info.st_mode):
                raise PreparationFailed(f"contains a symbolic link ({_shown(child.relative_to(path))}): refused, only "
                                        "regular files and directories are taken")
            if stat.S_ISREG(child_info.st_mode) and not os.access(child, os.R_OK):
                raise PreparationFailed(f"{_shown(child.relative_to(path))} inside it cannot be read (permission denied)")
            size += child_info.st_size
            newest = max(newest, child_info.st_mtime)
            if stat.S_ISREG(child_info.st_mode):
                content += child_info.st_size
            elif stat.S_ISDIR(child_info.st_mode):
                stack.append((child, depth + 1))
    return size, newest, content


def _describe(path: Path, directory: Path, resolved: Path) -> tuple[int, float, str | None, bool, tuple[int, int, int]]:
    """(size, mtime, problem, empty, (device, inode, ctime in ns)) of one entry the pattern matched (`resolved`: the
    directory, its links resolved); _Changing when it vanished."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise _Changing from None
    return (*_described(path, info, directory, resolved), (info.st_dev, info.st_ino, info.st_ctime_ns))


def _described(path: Path, info: os.stat_result, directory: Path, resolved: Path) -> tuple[int, float, str | None, bool]:
    size, newest, content = info.st_size, info.st_mtime, info.st_size
    if stat.S_ISLNK(info.st_mode):
        return size, newest, ("a symbolic link: refused, only regular files and directories inside the landing "
                              "directory are taken (drop the file itself)"), False
    # An entry of the directory itself, not a link, is where the directory is: resolved once for the listing,
    # not for each entry (realpath looked at every component of every path, a quarter of the listing's time).
    real = resolved / path.name if path.parent == directory else Path(os.path.realpath(path))
    if not is_within(real, directory):
        return size, newest, "reached through a symbolic link to outside the landing directory: refused", False
    try:
        if stat.S_ISDIR(info.st_mode):
            size, newest, content = _walk_product_directory(path)
        elif not stat.S_ISREG(info.st_mode):
            return size, newest, "not a regular file or a directory (a fifo, socket or device): refused", False
        elif not os.access(path, os.R_OK):
            return size, newest, "cannot be read by the harvester (permission denied)", False
    except PreparationFailed as problem:
        return size, newest, str(problem), False
    except OSError as error:
        return size, newest, f"cannot be read: {error.strerror or type(error).__name__}", False
    except Exception as error:  # noqa: BLE001 - one entry never fails the listing of the others
        return size, newest, f"cannot be listed: unexpected {type(error).__name__}: {error or 'no detail given'}", False
    return size, newest, None, content == 0


def _matching(root: Path, pattern: str) -> list[str]:
    """The paths (as text, in order) the pattern matches in the landing directory. A pattern of one component
    (`*`, `S2*.zip`: every configured source's) is matched against the directory's names (os.scandir,
    fnmatchcase: as Path.glob matches on POSIX): glob made a Path of each entry, and a listing of 100,000 held
    them all at once, sorted, a third of its memory (found by measuring, session 75). Others go by glob."""
    if "/" in pattern or "**" in pattern or pattern in (".", ""):
        return sorted(map(str, root.glob(pattern)))
    with os.scandir(root) as entries:
        names = [entry.name for entry in entries if fnmatch.fnmatchcase(entry.name, pattern)]
    names.sort()
    prefix = os.path.join(root, "")
    return [prefix + name for name in names]


def list_landing_directory(source: LandingSource) -> list[ListedEntry]:
    """Entries of the landing directory matching the pattern; a directory counts as one product
    (size: the sum of its files; time: the newest of them). The source's directories are the
    confined, resolved ones (hrwsi.harvest.confinement)."""
    root, work = Path(source.directory), Path(source.work_directory)
    if not root.is_dir():
        raise FileNotFoundError(f"landing directory {root} of source {source.name} does not exist")
    if not os.access(root, os.R_OK | os.X_OK):
        raise PermissionError(f"landing directory {root} of source {source.name} cannot be read by the harvester")
    listing: list[ListedEntry] = []
    printed_alike: set[tuple[str, int, float]] = set()  # the entries whose text another's could equal
    resolved = Path(os.path.realpath(root))
    paths = _matching(root, source.pattern)
    for index, text_path in enumerate(paths):
        paths[index] = ""  # (its text lives on in the entry alone)
        path = Path(text_path)
        name = path.name
        if path == root or name.startswith(".") or name.endswith(_UNFINISHED_SUFFIXES) or is_within(path, work):
            continue
        try:
            size, newest, problem, empty, (device, inode, changed_ns) = _describe(path, root, resolved)
        except _Changing:
            continue  # removed while listing: the next scan will tell
        text, escaped = _printable(path)
        if escaped:
            problem = ("its name is not valid UTF-8 (shown here with \\x escapes): refused, rename it with a "
                       "UTF-8 name")
        elif (unstorable := input_checks.name_problem(name)) is not None:
            text, problem = str(path.parent / input_checks.escaped(name)), f"{unstorable}: refused, rename it"
        # Two entries can print the same (an escaped name and a name with a backslash): one row. Only a text with a
        # backslash can (an escape writes one), so only those are remembered.
        if "\\" in text:
            if (text, size, newest) in printed_alike:
                continue
            printed_alike.add((text, size, newest))
        listing.append(ListedEntry(text, size, datetime.fromtimestamp(newest, UTC), problem, empty and not problem,
                                   device, inode, changed_ns))
    return listing


def _is_zip(path: str, source: LandingSource) -> bool:
    return source.unzip and path.lower().endswith(".zip")


def planned_target(path: str, source: LandingSource) -> str:
    """Where the prepared product will be in the work directory (read from the archive for a zip)."""
    work = Path(source.work_directory)
    if not _is_zip(path, source):
        target = str(work / Path(path).name)
        if (unstorable := input_checks.path_problem(target)) is not None:
            raise PreparationFailed(f"in the work directory: {unstorable}")
        return target
    try:
        tops = unzip.top_level_names(path)
    except unzip.UnsafeArchive as error:
        raise PreparationFailed(str(error)) from None
    if not tops:
        raise PreparationFailed("the archive is empty")
    product = _archive_product(Path(path).name, tops)
    target = str(work / product)
    if (unstorable := input_checks.path_problem(target)) is not None:
        raise PreparationFailed(f"the archive's product {input_checks.escaped(product)!r}: {unstorable}")
    return target


def _archive_product(archive_name: str, tops: set[str]) -> str:
    """The name the archive's product gets in the work directory, or PreparationFailed.

    The input is registered under the scene the archive's name says (tile, sensing time, scene
    id): a zip holding another scene is refused, never registered under the wrong name (a T32TLR
    zip holding a T30TXN .SAFE became an input whose path was the T30TXN product and whose tile,
    time and scene were T32TLR's, and the real T30TXN delivery then failed on the path taken).
    - One top-level entry that is the scene (`X.SAFE/` in `X.SAFE.zip`, `X.json` in `X.json.zip`):
      that is the product.
    - A top-level entry named as another product: refused with the reason.
    - Otherwise the members are the product's content (`manifest.safe`, `GRANULE/`, a lone
      `payload.bin`): extracted into a directory named after the archive's scene, so that two such
      archives never share a path.
    """
    scene = scene_id_of(archive_name)
    if len(tops) == 1 and scene_id_of(next(iter(tops))) == scene:
        return next(iter(tops))
    for top in sorted(tops):
        try:
            other = parse_product_name(top).scene_id
        except UnreadableProductName:
            continue  # not a product name: part of the content
        if other != scene and not other.startswith(f"{scene}_"):  # X_QUICKLOOK.tif is a part of X
            raise PreparationFailed(f"the archive holds {input_checks.escaped(top)!r}, another product than the scene "
                                    f"its name says ({scene}): refused, nothing extracted (rename the archive after "
                                    "what it holds, or fix its content, and drop it again)")
    return scene


def _still_there(path: str) -> None:
    """The entry is still the one listed: there, and not swapped for a symbolic link since."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise PreparationFailed("vanished from the landing directory before it could be prepared") from None
    if stat.S_ISLNK(mode):
        raise PreparationFailed("became a symbolic link before it could be prepared: refused")


def _clear_target(target: Path, resume: bool) -> None:
    """Leftovers of this file's own interrupted attempt are replaced; anybody else's product is not."""
    if resume:
        unzip.remove_path(target)
    elif os.path.lexists(target):
        raise PreparationFailed(f"{target} is already in the work directory (prepared from another file?): "
                                "not overwritten")


def prepare_file(path: str, target: str, source: LandingSource, landing_file_id: int, limits: unzip.UnzipLimits, *,
                 resume: bool = False, stopped: Callable[[], bool] = lambda: False) -> str:
    """Unzip or move one landing file into the work directory; returns the prepared path.

    `resume`: an earlier attempt at this very file was interrupted, its leftovers at the target are
    replaced. An archive is extracted into a hidden directory first and renamed into place, so a
    half-extracted product never looks complete; the archive is removed once extracted. A storage
    full or read-only raises StorageUnavailable (what a move between file systems copied is left for
    the retry, which replaces it).
    """
    try:
        return _prepare_file(path, target, source, landing_file_id, limits, resume=resume, stopped=stopped)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM) and (refusing := _directory_refusing(path, source)):
            raise StorageUnavailable(refusing) from None
        if error.errno not in unzip.STORAGE_FULL_OR_READ_ONLY:
            raise
        raise StorageUnavailable(f"cannot be prepared in {source.work_directory}: {error.strerror} (a storage full "
                                 "or read-only); tried again at the next scan") from None
    except PreparationFailed as error:
        # (a move or an unzip refused, said as the file's failure: a directory's permissions are every file's)
        if _refused_permission(error) and (refusing := _directory_refusing(path, source)):
            raise StorageUnavailable(refusing) from None
        raise


def _refused_permission(error: BaseException) -> bool:
    """Whether a PermissionError (EACCES, EPERM) is what `error` was raised on (its context, a few levels down)."""
    for _ in range(4):
        error = error.__context__
        if error is None:
            return False
        if isinstance(error, PermissionError):
            return True
    return False


def _directory_refusing(path: str, source: LandingSource) -> str | None:
    """After a refusal for want of permission (EACCES, EPERM): the directory this process may not write in, the
    work directory or the landing directory the file is moved out of, said as a wait for the storage; None when
    both may be written (the refusal is the file's own: one another user keeps unreadable). Why: the work
    directory made unwritable by ops (a chmod, a volume mounted for another user) failed every file of the
    scan for good, as files that are not products, until someone touched each (found by rehearsal)."""
    for directory in (source.work_directory, os.path.dirname(path)):
        if not _writable(directory):
            return (f"cannot be prepared: the harvester (uid {os.geteuid()}) may not write in {directory} (its "
                    "permissions or its owner); tried again at the next scan")
    return None


def _writable(directory: str) -> bool:
    """Whether this process may create and remove entries in `directory` (a missing one: its parent)."""
    while directory and not os.path.isdir(directory):
        parent = os.path.dirname(directory.rstrip("/"))
        if parent == directory:
            break
        directory = parent
    return os.access(directory, os.W_OK | os.X_OK)


def _prepare_file(path: str, target: str, source: LandingSource, landing_file_id: int, limits: unzip.UnzipLimits, *,
                  resume: bool, stopped: Callable[[], bool]) -> str:
    work = Path(source.work_directory)
    work.mkdir(parents=True, exist_ok=True)
    target_path = Path(target)
    _still_there(path)
    if not _is_zip(path, source):
        _clear_target(target_path, resume)
        try:
            _move(path, target_path)
        except FileNotFoundError:
            raise PreparationFailed("vanished from the landing directory before it could be prepared") from None
        except OSError as error:
            if error.errno in unzip.STORAGE_FULL_OR_READ_ONLY:
                raise
            raise PreparationFailed(f"cannot move it to {target_path}: {error}") from None
        return str(target_path)
    partial = work / f"{_PARTIAL_PREFIX}{landing_file_id}"
    unzip.remove_path(partial)
    extracted_from = _identity(path)
    password = source.zip_password.encode() if source.zip_password is not None else None
    try:
        unzip.extract(path, partial, limits, password=password,
                      password_hint=source.zip_password_env or "zip_password_env", stopped=stopped)
        _clear_target(target_path, resume)
    except unzip.UnsafeArchive as error:
        raise PreparationFailed(str(error)) from None
    except PreparationFailed:
        unzip.remove_path(partial)
        raise
    extracted = list(partial.iterdir())
    if len(extracted) == 1 and extracted[0].name == target_path.name:
        extracted[0].rename(target_path)
        partial.rmdir()
    else:
        partial.rename(target_path)
    _remove_if_still(path, extracted_from)
    return str(target_path)


def _identity(path: str) -> tuple[int, int] | None:
    """Which file a name is now (device and inode), None if nothing is there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _remove_if_still(path: str, identity: tuple[int, int] | None) -> None:
    """Remove the landing file once its product is in the work directory, unless another file took its name
    meanwhile: that one was delivered after, and is the next scan's (a re-delivery, recorded and moved aside).
    Why: the name was removed whatever it was, and a file delivered in place while the first was unzipped, or
    copied to another file system, was deleted unseen (found by exploratory testing)."""
    if identity is not None and _identity(path) == identity:
        unzip.remove_path(Path(path))


def _move(path: str, target: Path) -> None:
    """shutil.move, but removing the landing file after a copy to another file system only if it is still
    the file copied (_remove_if_still)."""
    identity = _identity(path)
    try:
        os.rename(path, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.copytree(path, target, symlinks=True)
    else:
        shutil.copy2(path, target)
    _remove_if_still(path, identity)


def move_aside(path: str, source: LandingSource, landing_file_id: int) -> str:
    """A re-delivered file goes to work/previously_received/ so that the next scan does not see it again."""
    aside = Path(source.work_directory) / PREVIOUSLY_RECEIVED_DIRECTORY
    aside.mkdir(parents=True, exist_ok=True)
    target = aside / f"{landing_file_id}_{Path(path).name}"
    unzip.remove_path(target)
    _still_there(path)
    _move(path, target)
    return str(target)
