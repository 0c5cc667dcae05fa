"""Only regular files physically inside an attempt's output directory become products."""

import os
import shutil

from hrwsi.backends.base import discover_products


def test_regular_files_in_the_output_directory_and_below_are_products(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"12345")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text("{}")
    found, refused = discover_products(str(tmp_path))
    assert found == [(str(tmp_path / "a.tif"), 5), (str(tmp_path / "sub" / "b.json"), 2)]
    assert refused == []


def test_a_symbolic_link_to_a_file_outside_is_refused_not_registered(tmp_path):
    os.symlink("/etc/passwd", tmp_path / "passwd")
    (tmp_path / "real.tif").write_text("x")
    found, refused = discover_products(str(tmp_path))
    assert [path for path, _ in found] == [str(tmp_path / "real.tif")]
    assert any("passwd" in r and "not a regular file" in r for r in refused)


def test_a_symbolic_link_to_a_directory_is_not_followed(tmp_path):
    os.symlink("/etc", tmp_path / "etc")
    found, refused = discover_products(str(tmp_path))
    assert found == [] and any("symbolic link" in r for r in refused)


def test_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    found, refused = discover_products(str(tmp_path))
    assert found == [] and "not a regular file" in refused[0]


def test_a_missing_or_symlinked_output_directory_has_no_products(tmp_path):
    assert discover_products(str(tmp_path / "missing")) == ([], [])
    os.symlink("/etc", tmp_path / "linked")
    assert discover_products(str(tmp_path / "linked")) == ([], [])


def test_a_file_whose_name_holds_a_control_character_is_refused_with_its_name_escaped(tmp_path):
    """The database refuses such a product's path (product_path_is_absolute_without_control_characters);
    registered, its outcome was refused at every try and the task stalled (found by exploratory testing)."""
    (tmp_path / "prod\n2026-12-06T00:00:00.000Z ERROR forged\x1b[2J.tif").write_text("x")
    (tmp_path / "good.tif").write_text("x")
    found, refused = discover_products(str(tmp_path))
    assert [path for path, _ in found] == [str(tmp_path / "good.tif")]
    assert len(refused) == 1 and "control character" in refused[0]
    assert "\\n2026-12-06" in refused[0] and "\\x1b[2J" in refused[0] and "\n" not in refused[0]


def test_a_file_whose_name_holds_a_dollar_brace_is_refused_as_the_database_refuses_its_path(tmp_path):
    """product_path_has_no_dollar_brace: a product becomes the next step's input, and Nomad reads
    `${...}` in a job's arguments as its own variable."""
    (tmp_path / "out_${attr.unique.hostname}.tif").write_text("x")
    found, refused = discover_products(str(tmp_path))
    assert found == [] and len(refused) == 1 and "'${'" in refused[0]


def test_a_file_whose_name_is_not_utf8_is_refused(tmp_path):
    with open(os.path.join(os.fsencode(tmp_path), b"latin-\xe9.tif"), "w") as file:
        file.write("x")
    found, refused = discover_products(str(tmp_path))
    assert found == [] and "not valid UTF-8" in refused[0]


def test_a_file_whose_name_holds_an_invisible_character_is_refused_as_the_database_refuses_its_path(tmp_path):
    """Migration 0079: a product's path with U+2028 or U+200B is refused by the database (and would be the
    next step's input path, refused there too); registered, its outcome would be refused at every try."""
    (tmp_path / "prod\u2028x.tif").write_text("x")
    (tmp_path / "prod\u200b.tif").write_text("x")
    (tmp_path / "good.tif").write_text("x")
    found, refused = discover_products(str(tmp_path))
    assert [path for path, _ in found] == [str(tmp_path / "good.tif")]
    assert len(refused) == 2 and all("invisible" in line for line in refused)
    assert not any("\u2028" in line or "\u200b" in line for line in refused)


def test_a_hard_link_to_a_file_outside_the_output_directory_is_refused(tmp_path):
    """Found by exploratory testing: a routine that hard-linked its input into its output directory made a
    product of the input's own bytes: chained, the same data was a second input, and the product row was
    counted and retained as the attempt's own file. It is not the attempt's own data: refused, as a
    symbolic link is; and the input keeps its data whatever becomes of the attempt's directory."""
    outside = tmp_path / "eodata" / "S2A.tif"
    outside.parent.mkdir()
    outside.write_bytes(b"scene")
    output = tmp_path / "task-1" / "attempt-1" / "output"  # (the attempt directory, outside which the input is)
    output.mkdir(parents=True)
    os.link(outside, output / "S2A.tif")
    (output / "own.tif").write_bytes(b"own")
    found, refused = discover_products(str(output))
    assert found == [(str(output / "own.tif"), 3)]
    assert refused == [f"'{output / 'S2A.tif'}' is a hard link to a file outside the attempt directory (2 names): "
                       "a product is a file of its own; copy it"]
    shutil.rmtree(output)  # (retention's removal of the failed attempt's directory)
    assert outside.read_bytes() == b"scene", "the input's data stays"


def test_a_file_with_two_names_in_the_output_directory_is_one_product(tmp_path):
    """Two names of one file (a hard link inside the attempt's own directory) are one product, under the first
    name in path order: chained as two, the same bytes were processed twice downstream."""
    (tmp_path / "b.tif").write_bytes(b"12345")
    (tmp_path / "sub").mkdir()
    os.link(tmp_path / "b.tif", tmp_path / "a.tif")
    os.link(tmp_path / "b.tif", tmp_path / "sub" / "c.tif")
    found, refused = discover_products(str(tmp_path))
    assert found == [(str(tmp_path / "a.tif"), 5)] and refused == []


def test_a_product_hard_linked_from_the_routines_scratch_in_its_attempt_directory_is_its_own(tmp_path):
    """Found by review: a routine that wrote its product in its own scratch directory in the attempt directory
    and hard-linked it into the output directory had it refused as "a file outside the output directory"."""
    output = tmp_path / "attempt-1" / "output"
    output.mkdir(parents=True)
    (tmp_path / "attempt-1" / "scratch").mkdir()
    (tmp_path / "attempt-1" / "scratch" / "fsc.tif").write_bytes(b"own")
    os.link(tmp_path / "attempt-1" / "scratch" / "fsc.tif", output / "fsc.tif")
    assert discover_products(str(output)) == ([(str(output / "fsc.tif"), 3)], [])


def test_files_with_one_name_each_are_products_whatever_their_inode_numbers(tmp_path, monkeypatch):
    """Found by review: files were matched as names of one by (device, inode) even with one name each: on a
    filesystem whose inode numbers are not unique (or 0), distinct products were dropped silently."""
    from hrwsi.backends import base

    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"x")
    real_lstat = os.lstat

    def same_inode(path, *args, **kwargs):
        info = real_lstat(path, *args, **kwargs)
        return os.stat_result((info.st_mode, 0, info.st_dev, info.st_nlink, info.st_uid, info.st_gid, info.st_size,
                               info.st_atime, info.st_mtime, info.st_ctime))

    monkeypatch.setattr(base.os, "lstat", same_inode)
    found, refused = discover_products(str(tmp_path))
    assert found == [(str(tmp_path / "a.tif"), 1), (str(tmp_path / "b.tif"), 1)] and refused == []
