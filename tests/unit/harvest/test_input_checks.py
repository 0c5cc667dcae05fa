"""What the database refuses of an input's path, asked before the harvester's INSERTs."""

from hrwsi.harvest import input_checks


def test_a_relative_path_is_refused_as_the_database_does():
    name = "S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456.SAFE"
    assert input_checks.path_problem(name) == "its path is not absolute"
    assert input_checks.path_problem("") == "its path is not absolute"
    assert input_checks.path_problem(f"/eodata/{name}") is None


def test_a_file_name_is_checked_for_its_characters_only():
    assert input_checks.name_problem("S2A.SAFE") is None  # relative, as a name in a directory is
    assert input_checks.name_problem("a\tb.SAFE").startswith("its name holds a control character")
    assert input_checks.path_problem("/eodata/a.SAFE ") == "its name begins or ends with white space"
