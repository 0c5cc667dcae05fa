"""How the launcher's outcome lines name many tasks at once (a burst's processed outcomes)."""

from hrwsi.launcher import common_directory, task_ranges


def test_task_ids_are_written_as_sorted_runs():
    assert task_ranges([8, 1, 2, 3, 5, 7]) == "1-3, 5, 7-8"


def test_a_task_id_given_twice_is_written_once():
    assert task_ranges([4, 4, 5]) == "4-5"


def test_a_lone_task_id_is_written_alone():
    assert task_ranges([42]) == "42"


def test_logs_of_one_routine_are_in_its_directory():
    assert common_directory(["/d/logs/i/snow/a.log", "/d/logs/i/snow/b.log"]) == "/d/logs/i/snow"


def test_logs_of_several_directories_are_in_the_one_that_holds_them_all():
    assert common_directory(["/d/logs/i/snow/a.log", "/d/logs/i/ice/b.log"]) == "/d/logs/i"
