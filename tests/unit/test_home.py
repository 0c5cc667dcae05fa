"""hrwsi.home: a data directory found elsewhere than where its paths were recorded is said, with what to do."""

from __future__ import annotations

import os

from hrwsi.home import DATA_DIR_FILE, moved_data_dir


def test_a_moved_data_directory_is_said_with_both_paths_and_a_link_back_silences_it(tmp_path):
    """Ops moved HRWSI_HOME: every recorded product and log path named the old place, and nothing said
    why logs, chaining and retention failed (found by exploratory testing)."""
    old, new = tmp_path / "old" / "data", tmp_path / "new" / "data"
    assert moved_data_dir(old) is None and (old / DATA_DIR_FILE).read_text() == f"{old}\n", "recorded at first use"
    assert moved_data_dir(old) is None
    new.parent.mkdir()
    os.rename(old.parent, new.parent)  # ops move the home
    said = moved_data_dir(new, record=False)
    assert said is not None and f"was {old} and is {new} now" in said and f"ln -s {new} {old}" in said
    assert "\n" not in said
    old.parent.mkdir()
    os.symlink(new, old)  # what it says to do
    assert moved_data_dir(new) is None


def test_status_records_nothing_where_no_data_directory_was_used(tmp_path):
    assert moved_data_dir(tmp_path / "data", record=False) is None and not (tmp_path / "data").exists()
