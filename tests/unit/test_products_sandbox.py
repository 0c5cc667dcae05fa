"""Only regular files physically inside an attempt's output directory become products."""

import os

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
