"""A routine's own variables as the launcher hands them to a backend."""

from hrwsi.launcher import routine_env


def test_a_routines_variables_are_strings():
    assert routine_env('{"THREADS": 4, "MODE": "fast"}') == {"THREADS": "4", "MODE": "fast"}


def test_a_routine_without_variables_has_an_empty_environment_of_its_own():
    first, second = routine_env("{}"), routine_env(None)
    assert first == second == {}
    first["X"] = "1"
    assert routine_env("{}") == {} and second == {}, "never one dict shared between jobs"
