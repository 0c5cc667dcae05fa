"""Where HRWSI_HOME's data directory was when its paths were recorded.

The database records the absolute paths of products, job logs and attempt directories under the data
directory (`$HRWSI_HOME/data`). Ops who move the directory (a bigger disk) leave those paths naming
the old place: `hrwsi logs` found no log, the next routine no input, retention nothing to remove, and
nothing said why (found by exploratory testing). The directory keeps the path it was first used at
(DATA_DIR_FILE); a service or `hrwsi status` that finds it elsewhere says so in one line, with what
to do. The paths are not rewritten: they are the products' identity, in the lineage and in what ops
and users were given; a link from the old path to the new one makes every recorded path good again
(and stops the warning: the two resolve to one directory).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

DATA_DIR_FILE = ".hrwsi-data-dir"


def moved_data_dir(data_dir: Path, *, record: bool = True) -> str | None:
    """One line saying that the data directory is no longer where its paths were recorded, or None
    (blocking: call it in a thread). With `record`, a data directory that has no record gets one
    (made if missing, as the services make it); without, nothing is written (`hrwsi status`)."""
    current = os.path.abspath(data_dir)
    kept = os.path.join(current, DATA_DIR_FILE)
    try:
        with open(kept, encoding="utf-8") as file:
            recorded = file.read().strip()
    except FileNotFoundError:
        if record:
            _record(current, kept)
        return None
    except (OSError, UnicodeDecodeError):
        return None  # (unreadable: the services' own checks of the directory say what is wrong with it)
    if not recorded or recorded == current or os.path.realpath(recorded) == os.path.realpath(current):
        return None
    return (f"HRWSI_HOME moved or was copied: its data directory was {recorded} and is {current} now, and the "
            f"database's product, log and attempt paths still name {recorded} (their logs, the chaining of "
            f"their products and their retention fail there): link the old path to the new one "
            f"(ln -s {current} {recorded}) or move the directory back, then restart the services")


def _record(current: str, kept: str) -> None:
    os.makedirs(current, exist_ok=True)
    aside = f"{kept}.{os.getpid()}.{uuid.uuid4().hex}"
    with open(aside, "w", encoding="utf-8") as made:
        made.write(current + "\n")
    os.replace(aside, kept)  # whole or not at all
