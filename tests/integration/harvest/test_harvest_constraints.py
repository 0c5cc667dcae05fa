"""Every bad row of the harvest tables is refused, by a constraint whose name says what must be true."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_operations import login_role  # noqa: F401 - a fixture

NOW = datetime.now(UTC)
LANDING = {"directory": "/data/landing", "work_directory": "/data/work", "settle_s": 5}
CATALOGUE = {"url": "https://catalogue.dataspace.copernicus.eu/odata/v1", "collection": "SENTINEL-2"}


def insert_source(db, **overrides):
    values = {"name": "src", "kind": "landing_directory", "product_type": "L1C", "config": LANDING}
    values.update(overrides)
    values["config"] = json.dumps(values["config"]) if isinstance(values["config"], dict) else values["config"]
    columns = ", ".join(values)
    placeholders = ", ".join(f"%({k})s" for k in values)
    db.execute(f"INSERT INTO hrwsi.harvest_source ({columns}) VALUES ({placeholders})", values)


def refused(db, constraint, action):
    with pytest.raises(psycopg.errors.IntegrityError) as caught:
        action()
    assert caught.value.diag.constraint_name == constraint, str(caught.value)
    return str(caught.value)


def test_good_sources_are_accepted(db):
    insert_source(db)
    insert_source(db, name="cdse", kind="catalogue", config={**CATALOGUE, "tiles": ["32TPR"],
                                                             "auth": {"type": "oauth2_password",
                                                                      "password_env": "CDSE_PASSWORD"}},
                  frequency="hourly", frequency_interval=2)
    insert_source(db, name="backfill", kind="catalogue", config=CATALOGUE, cron="0 3 * * *", mode="backfill",
                  backfill_from="2024-01-01", backfill_to="2024-01-31", backfill_cursor="2024-02-01")
    assert db.execute("SELECT count(*) FROM hrwsi.harvest_source").fetchone()[0] == 3


BAD_SOURCES = [
    ({"name": " "}, "harvest_source_name_is_not_empty"),
    ({"kind": "ftp"}, "harvest_source_kind_is_catalogue_or_landing_directory"),
    ({"product_type": ""}, "harvest_source_product_type_is_not_empty"),
    # (migration 0116: a name's line break forged a line of `hrwsi sources`; "L1C\n" looked like L1C and was another type)
    ({"name": "src\nharvest source needs attention: fake"}, "harvest_source_name_has_no_control_or_invisible_characters"),
    ({"name": "src\u202e"}, "harvest_source_name_has_no_control_or_invisible_characters"),
    ({"product_type": "L1C\n"}, "source_product_type_has_no_control_or_invisible_characters"),
    ({"product_type": "L1C\u200b"}, "source_product_type_has_no_control_or_invisible_characters"),
    ({"config": "[]"}, "harvest_source_config_is_a_json_object"),
    ({"frequency": "monthly"}, "harvest_source_frequency_is_hourly_daily_or_weekly"),
    ({"frequency": "hourly", "frequency_interval": 0}, "harvest_source_frequency_interval_is_at_least_1"),
    ({"cron": "every day"}, "harvest_source_cron_has_five_fields"),
    ({"frequency": "daily", "cron": "0 3 * * *"}, "harvest_source_has_a_frequency_or_a_cron_expression_not_both"),
    ({"mode": "sometimes"}, "harvest_source_mode_is_near_real_time_or_backfill"),
    ({"mode": "backfill", "backfill_from": "2024-01-01", "backfill_to": "2024-01-02"},
     "landing_directory_source_is_near_real_time"),
    ({"overlap": "-1 hour"}, "harvest_source_overlap_is_not_negative"),
    ({"first_lookback": "0"}, "harvest_source_first_lookback_is_positive"),
    ({"config": {**LANDING, "zip_password": "s3cret"}}, "harvest_source_config_names_environment_variables_not_secrets"),
    ({"config": {"directory": "landing", "work_directory": "/data/work"}},
     "landing_config_has_absolute_directory_and_work_directory"),
    ({"config": {"directory": "/data/landing"}}, "landing_config_has_absolute_directory_and_work_directory"),
    ({"config": {"directory": "/data/x/", "work_directory": "/data/x"}},
     "landing_directory_work_directory_differs_from_directory"),
    ({"config": {**LANDING, "settle_s": -1}}, "landing_directory_settle_s_is_a_number_of_at_least_0"),
    ({"config": {**LANDING, "settle_s": "5"}}, "landing_directory_settle_s_is_a_number_of_at_least_0"),
    ({"config": {**LANDING, "settle_s": "soon"}}, "landing_directory_settle_s_is_a_number_of_at_least_0"),
    ({"config": {**LANDING, "scan_interval_s": 0}}, "landing_directory_scan_interval_s_is_a_positive_number"),
    ({"config": {**LANDING, "unzip": "yes"}}, "landing_directory_unzip_is_true_or_false"),
    ({"config": {**LANDING, "pattern": ["*.zip"]}}, "landing_directory_pattern_and_zip_password_env_are_text"),
    ({"config": {**LANDING, "pattern": "../x/*"}}, "landing_pattern_is_relative_without_dot_dot"),
    ({"config": {**LANDING, "pattern": "*/../../*"}}, "landing_pattern_is_relative_without_dot_dot"),
    ({"config": {**LANDING, "pattern": "/etc/*"}}, "landing_pattern_is_relative_without_dot_dot"),
    ({"config": {**LANDING, "directory": "/data/landing/../../etc"}},
     "landing_directories_have_no_dot_dot_and_no_control_characters"),
    ({"config": {**LANDING, "work_directory": "/data/work/.."}},
     "landing_directories_have_no_dot_dot_and_no_control_characters"),
    ({"config": {**LANDING, "work_directory": "/data/work\n"}},
     "landing_directories_have_no_dot_dot_and_no_control_characters"),
    ({"kind": "catalogue", "config": CATALOGUE}, "catalogue_source_has_a_schedule"),
    ({"kind": "catalogue", "config": {"url": "ftp://x", "collection": "SENTINEL-2"}, "frequency": "daily"},
     "catalogue_config_has_an_http_url_and_a_collection"),
    ({"kind": "catalogue", "config": {"url": "https://x"}, "frequency": "daily"},
     "catalogue_config_has_an_http_url_and_a_collection"),
    ({"kind": "catalogue", "config": {**CATALOGUE, "auth": {"type": "kerberos"}}, "frequency": "daily"},
     "catalogue_auth_type_is_none_basic_or_an_oauth2_grant"),
    ({"kind": "catalogue", "config": {**CATALOGUE, "auth": {"type": "basic", "password": "x"}}, "frequency": "daily"},
     "harvest_source_config_names_environment_variables_not_secrets"),
    ({"kind": "catalogue", "config": {**CATALOGUE, "tiles": ["32tpr"]}, "frequency": "daily"},
     "catalogue_config_tiles_is_a_list_of_mgrs_codes"),
    ({"kind": "catalogue", "config": {**CATALOGUE, "tiles": "32TPR"}, "frequency": "daily"},
     "catalogue_config_tiles_is_a_list_of_mgrs_codes"),
    ({"kind": "catalogue", "config": CATALOGUE, "frequency": "daily", "mode": "backfill"},
     "backfill_source_has_backfill_from_and_backfill_to"),
    ({"kind": "catalogue", "config": CATALOGUE, "frequency": "daily", "mode": "backfill",
      "backfill_from": "2024-02-01", "backfill_to": "2024-01-01"}, "backfill_from_is_not_after_backfill_to"),
    ({"kind": "catalogue", "config": CATALOGUE, "frequency": "daily", "mode": "backfill",
      "backfill_from": "2024-01-01", "backfill_to": "2024-01-31", "backfill_cursor": "2024-03-01"},
     "backfill_cursor_is_within_backfill_from_and_backfill_to_plus_1"),
]


def test_every_bad_source_is_refused_by_the_constraint_that_says_why(db):
    # One database for all the cases (a refused INSERT changes nothing): fast, and each case is named.
    for overrides, constraint in BAD_SOURCES:
        with pytest.raises(psycopg.errors.IntegrityError) as caught:
            insert_source(db, **overrides)
        assert caught.value.diag.constraint_name == constraint, f"{overrides}: {caught.value}"
        assert constraint in str(caught.value)  # what a data engineer reads
    assert db.execute("SELECT count(*) FROM hrwsi.harvest_source").fetchone()[0] == 0


def test_landing_file_rows_are_checked(db):
    insert_source(db)

    def landing_file(**overrides):
        values = {"source": "src", "path": "/data/landing/a.zip", "size_bytes": 10, "modified_at": NOW}
        values.update(overrides)
        columns = ", ".join(values)
        placeholders = ", ".join(f"%({k})s" for k in values)
        db.execute(f"INSERT INTO hrwsi.landing_file ({columns}) VALUES ({placeholders})", values)

    refused(db, "landing_file_source_must_exist", lambda: landing_file(source="nowhere"))
    refused(db, "landing_file_path_is_not_empty", lambda: landing_file(path=""))
    refused(db, "landing_file_size_bytes_is_not_negative", lambda: landing_file(size_bytes=-1))
    refused(db, "file_state_is_seen_ready_prepared_previously_received_or_failed",
            lambda: landing_file(state="done"))
    refused(db, "landing_file_failed_has_a_message", lambda: landing_file(state="failed"))
    refused(db, "landing_file_prepared_has_a_prepared_path", lambda: landing_file(state="prepared"))
    refused(db, "landing_file_checksum_is_not_empty", lambda: landing_file(checksum=" "))
    refused(db, "landing_file_last_seen_at_is_not_before_first_seen_at",
            lambda: landing_file(first_seen_at=NOW, last_seen_at=NOW - timedelta(hours=1)))
    landing_file()
    # The same version of a file is one row; a re-delivery recorded as previously received is another.
    refused(db, "landing_file_is_tracked_once_per_source_path_size_and_mtime", landing_file)
    landing_file(state="previously_received")
    # A source with tracked files cannot be renamed away from them or lose them silently.
    db.execute("UPDATE hrwsi.harvest_source SET name = 'renamed'")
    assert db.execute("SELECT DISTINCT source FROM hrwsi.landing_file").fetchall() == [("renamed",)]


def test_two_landing_sources_cannot_share_or_nest_their_work_directories(db):
    insert_source(db, name="first")  # landing /data/landing, work /data/work
    clashes = [{"directory": "/data/b", "work_directory": "/data/work"},            # the same work directory
               {"directory": "/data/b", "work_directory": "/data/work/b"},          # inside it
               {"directory": "/data/b", "work_directory": "/data"},                 # around it
               {"directory": "/data/b", "work_directory": "/data/landing/work"},    # in its landing directory
               {"directory": "/data/work/in", "work_directory": "/data/b-work"}]    # landing in its work
    for config in clashes:
        message = refused(db, "landing_source_work_directory_is_its_own", lambda c=config: insert_source(
            db, name="second", config=c))
        assert "overlap those of source first" in message and "a work directory of its own" in message
    # The same landing directory taking the same files (every file, the default pattern): refused, since
    # which source took a file was a race (migration 0055; found by exploratory testing) ...
    same = {"directory": "/data/landing/", "work_directory": "/data/work-b"}
    message = refused(db, "landing_source_work_directory_is_its_own",
                      lambda: insert_source(db, name="second", config=same | {"pattern": "S1*.zip"}))
    assert "is the landing directory of source first, and their patterns take the same files" in message
    # ... each with a pattern of its own, accepted.
    db.execute("UPDATE hrwsi.harvest_source SET config = config || '{\"pattern\": \"S2*.zip\"}' WHERE name = 'first'")
    refused(db, "landing_source_work_directory_is_its_own", lambda: insert_source(db, name="second", config=same))
    insert_source(db, name="second", config=same | {"pattern": "S1*.zip"})
    # Changing a source into a clash is refused too; an inactive source clashes with nobody.
    refused(db, "landing_source_work_directory_is_its_own", lambda: db.execute(
        "UPDATE hrwsi.harvest_source SET config = config || '{\"work_directory\": \"/data/work/\"}' "
        "WHERE name = 'second'"))
    db.execute("UPDATE hrwsi.harvest_source SET active = false WHERE name = 'first'")
    db.execute("UPDATE hrwsi.harvest_source SET config = config || '{\"work_directory\": \"/data/work\"}' "
               "WHERE name = 'second'")


def test_a_claim_has_a_token_a_harvester_and_an_end(db):
    insert_source(db)
    refused(db, "harvest_source_claim_has_a_token_a_harvester_and_an_end",
            lambda: db.execute("UPDATE hrwsi.harvest_source SET claim_token = gen_random_uuid()"))


@pytest.fixture
def routine(routine):
    """The integration conftest's routine maja and condition l1c, and a second condition l1c_b."""
    routine.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l1c_b', 'maja')")
    return routine


def test_the_same_scene_is_one_input_per_condition(routine):
    insert = "INSERT INTO hrwsi.input (processing_condition, input_path, scene_id) VALUES (%s, %s, %s)"
    routine.execute(insert, ("l1c", "/catalogue/S2A_X.SAFE", "S2A_X"))
    message = refused(routine, "input_scene_is_registered_once_per_condition",
                      lambda: routine.execute(insert, ("l1c", "/landing/work/S2A_X.SAFE", "S2A_X")))
    assert "S2A_X" in message
    routine.execute(insert, ("l1c_b", "/landing/work/S2A_X.SAFE", "S2A_X"))   # another condition: fine
    routine.execute(insert, ("l1c", "/other/path", None))                      # no scene id: path rules only
    refused(routine, "input_scene_id_is_not_empty", lambda: routine.execute(insert, ("l1c", "/p", " ")))


def test_multi_input_rules_are_checked(routine):
    refused(routine, "multi_input_rule_condition_must_exist",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition) VALUES ('nope')"))
    refused(routine, "multi_input_rule_window_days_between_1_and_366",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_rule VALUES ('l1c', 0)"))
    routine.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition) VALUES ('l1c')")
    refused(routine, "multi_input_requirement_rule_must_exist",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('l1c_b', 'FSC', 1)"))
    refused(routine, "multi_input_requirement_min_count_is_at_least_1",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('l1c', 'FSC', 0)"))
    refused(routine, "multi_input_requirement_product_type_is_not_empty",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('l1c', '', 1)"))
    # (what the configuration file allows: the database took these, and `hrwsi config show` wrote them into a file
    # `hrwsi config load` refused; found by exploratory testing, migration 0115; since migration 0124 a trigger, before
    # the check, refuses them saying why, as it refuses the configuration's other names)
    for product_type in ("SWS\nmulti-input groups that cannot complete: fake", "FSC\x1b[2J", " FSC", "F" * 201):
        refused(routine, "multi_input_requirement_product_type_is_a_configuration_name",
                lambda value=product_type: routine.execute(
                    "INSERT INTO hrwsi.multi_input_requirement VALUES ('l1c', %s, 1)", (value,)))
    refused(routine, "multi_input_requirement_min_count_is_at_most_10000",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('l1c', 'FSC', 10001)"))
    routine.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('l1c', 'FSC', 1)")
    refused(routine, "multi_input_requirement_is_unique_per_condition_and_type",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('l1c', 'FSC', 2)"))
    refused(routine, "multi_input_member_input_must_exist",
            lambda: routine.execute("INSERT INTO hrwsi.multi_input_member VALUES (999, '/p', 'FSC')"))


def test_a_source_name_or_product_type_over_200_characters_is_refused_saying_so_and_one_stored_before_is_kept(db):
    """A name of 6,400 characters was refused by PostgreSQL's own "index row size 6416 exceeds btree version 4 maximum
    2704", whose hint tells of an MD5 index, and one of 100,000 characters that compress was taken (found by
    exploratory testing): a configuration file's names and product types are at most 200 characters."""
    import hashlib

    long_name = "".join(hashlib.md5(str(n).encode()).hexdigest() for n in range(200))
    with pytest.raises(psycopg.errors.CheckViolation, match=r"harvest source name '[0-9a-f]+'\.\.\. \(6,400 characters\) "
                                                           r"is longer than the 200 characters a name may have"):
        insert_source(db, name=long_name)
    with pytest.raises(psycopg.errors.CheckViolation, match=r"harvest source 'src' product_type 'TTT.*\(300 characters\) "
                                                           r"is longer than the 200 characters a product type may have"):
        insert_source(db, product_type="T" * 300)
    insert_source(db, name="n" * 200)
    db.execute("ALTER TABLE hrwsi.harvest_source DISABLE TRIGGER harvest_source_name_and_product_type_are_at_most_200_chars")
    db.execute("UPDATE hrwsi.harvest_source SET name = repeat('n', 100000)")
    db.execute("ALTER TABLE hrwsi.harvest_source ENABLE TRIGGER harvest_source_name_and_product_type_are_at_most_200_chars")
    db.execute("UPDATE hrwsi.harvest_source SET next_run_at = now(), product_type = 'L2A'")  # (as a claim updates it)
    with pytest.raises(psycopg.errors.CheckViolation, match="is longer than the 200 characters"):
        db.execute("UPDATE hrwsi.harvest_source SET name = repeat('m', 201)")


def test_the_readmes_harvest_sources_a_data_engineer_adds_are_taken_as_written(db, login_role):  # noqa: F811
    # (found by exploratory testing: README named the table and the config keys, but showed no row, and a data
    # engineer guessed the columns; the column product_type and the config's are two things)
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    block = re.search(r"A data engineer adds one with an INSERT.*?```sql\n(.*?)```", readme, re.S).group(1)
    with psycopg.connect(login_role("hrwsi_data_engineer"), autocommit=True) as engineer:
        engineer.execute(block)
    rows = db.execute("SELECT name, kind, product_type, config->>'product_type', active FROM hrwsi.harvest_source "
                      "ORDER BY name").fetchall()
    assert rows == [("cdse_l1c", "catalogue", "L1C", "S2MSI1C", True), ("s2_landing", "landing_directory", "L1C", None,
                                                                         False)]
