"""The TOML configuration sets lanes, deadlines, hold_after_failures and multi-input rules (ADR 0010)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hrwsi.configuration import ConfigurationError, load, load_file
from hrwsi.demo import CONFIGURATION
from tests.integration.conftest import single_routine_configuration


def test_a_condition_sets_its_lane_and_deadline_and_a_routine_its_hold_limit(db):
    document = single_routine_configuration(["true"])
    document["routine"][0]["hold_after_failures"] = 2
    document["condition"][0].update({"lane": "archive", "deadline_hours": 1.5, "deadline_from": "publication"})
    load(db, document)
    assert db.execute("SELECT lane, deadline, deadline_from FROM hrwsi.processing_condition").fetchone() == \
        ("archive", timedelta(hours=1.5), "publication")
    assert db.execute("SELECT hold_after_failures FROM hrwsi.processing_routine").fetchone()[0] == 2
    # (published recently: one more than a day past its deadline when it arrives is back-fill, without one)
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, published_at) "
               "VALUES ('in', '/a', now() - interval '10 minutes')")
    assert db.execute("SELECT t.lane, t.priority, t.deadline_at - i.published_at FROM hrwsi.processing_task t "
                      "JOIN hrwsi.input i ON i.id = t.input_id").fetchone() == ("archive", 1, timedelta(hours=1.5))
    # Left out, they go back to their defaults.
    load(db, single_routine_configuration(["true"]))
    assert db.execute("SELECT lane, deadline, deadline_from FROM hrwsi.processing_condition").fetchone() == \
        ("nrt", None, "measurement")


def test_a_condition_with_a_multi_input_rule_gets_exactly_the_listed_requirements(db):
    document = single_routine_configuration(["true"])
    document["condition"][0]["multi_input"] = {"window_days": 7, "every_day_of_window": True,
                                               "requires": [{"product_type": "FSC"}, {"product_type": "SWS",
                                                                                      "min_count": 2}]}
    load(db, document)
    assert db.execute("SELECT window_days, every_day_of_window, wait_for_open_tasks FROM hrwsi.multi_input_rule"
                      ).fetchone() == (7, True, True)
    document["condition"][0]["multi_input"]["requires"] = [{"product_type": "SWS", "min_count": 3}]
    load(db, document)
    assert db.execute("SELECT product_type, min_count FROM hrwsi.multi_input_requirement").fetchall() == [("SWS", 3)]


@pytest.mark.parametrize(("change", "message"), [
    ({"deadline_from": "sensing"}, r"condition\[0\].deadline_from: must be 'measurement' or 'publication', not 'sensing'"),
    ({"multi_input": {"requires": []}}, r"condition\[0\].multi_input.requires: must not be empty"),
    ({"multi_input": {"requires": [{"min_count": 1}]}},
     r"condition\[0\].multi_input.requires\[0\].product_type: missing: this key is required"),
])
def test_a_bad_deadline_or_rule_is_refused_with_the_entry_named_and_nothing_written(db, change, message):
    document = single_routine_configuration(["true"])
    document["condition"][0].update(change)
    with pytest.raises(ConfigurationError, match=message):
        load(db, document)
    assert db.execute("SELECT count(*) FROM hrwsi.processing_routine").fetchone()[0] == 0


def test_the_sample_configuration_has_a_composite_of_fsc_and_sws(db):
    load_file(db, CONFIGURATION)
    assert db.execute("SELECT processing_condition, product_type, min_count FROM hrwsi.multi_input_requirement "
                      "ORDER BY product_type").fetchall() == [("gfsc_daily", "FSC", 1), ("gfsc_daily", "SWS", 1)]
    assert db.execute("SELECT deadline, deadline_from FROM hrwsi.processing_condition WHERE name = 'l2a_for_snow'"
                      ).fetchone() == (timedelta(hours=1), "publication")
