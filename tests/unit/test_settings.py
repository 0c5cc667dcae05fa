"""Settings are refused at start-up, in one line naming the variable, when they cannot work."""

import re
from pathlib import Path

import pytest

from hrwsi.settings import Settings, SettingsError


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("HRWSI_BACKSTOP_POLL_S", "0", "HRWSI_BACKSTOP_POLL_S=0.0 must be a number of seconds > 0"),
    ("HRWSI_HEARTBEAT_S", "-1", "HRWSI_HEARTBEAT_S=-1.0 must be a number of seconds > 0"),
    ("HRWSI_MAX_PARALLEL_JOBS", "0", "HRWSI_MAX_PARALLEL_JOBS=0 must be at least 1"),
    ("HRWSI_LEASE_TIMEOUT_S", "6", "must be at least twice HRWSI_HEARTBEAT_S"),
    ("HRWSI_RETRY_BACKOFF_S", "nan", "is not a finite number"),
    ("HRWSI_HANDOVER_HOLD_S", "-1", r"HRWSI_HANDOVER_HOLD_S=-1.0 must be a number of seconds from 0 \(no hand-over"),
    ("HRWSI_HANDOVER_HOLD_S", "86400", "HRWSI_HANDOVER_HOLD_S=86400.0 must be a number of seconds from 0"),
    ("HRWSI_LANDING_SCAN_S", "soon", "is not a number"),
    # (float() read '1_0' as 10.0 and other scripts' digits: '\u0663' as 3.0; found by review)
    ("HRWSI_LANDING_SCAN_S", "1_0", r"HRWSI_LANDING_SCAN_S='1_0' is not a number \(ASCII decimal notation"),
    ("HRWSI_SOURCE_TIMEOUT_S", "\u0663", "HRWSI_SOURCE_TIMEOUT_S='\u0663' is not a number"),
    ("HRWSI_HEARTBEAT_S", "Infinity", "HRWSI_HEARTBEAT_S='Infinity' is not a finite number"),
    ("HRWSI_CLAIM_AHEAD", "-1", "HRWSI_CLAIM_AHEAD=-1 must be a number of jobs >= 0"),
    ("HRWSI_MAX_PARALLEL_JOBS", "2.5", "HRWSI_MAX_PARALLEL_JOBS='2.5' is not a whole number"),
    ("HRWSI_CLAIM_AHEAD", "two", "HRWSI_CLAIM_AHEAD='two' is not a whole number"),
    ("HRWSI_UNZIP_MAX_MEMBERS", "1e5", "HRWSI_UNZIP_MAX_MEMBERS='1e5' is not a whole number"),
    ("HRWSI_EVENT_LOOP", "tokio", "HRWSI_EVENT_LOOP='tokio' must be auto, asyncio or uvloop"),
    ("HRWSI_DATABASE_URL", "host=db password=hunter2", "HRWSI_DATABASE_URL is not a PostgreSQL URL: it must read"),
    ("HRWSI_DATABASE_URL", "mysql://me:hunter2@db/x", "HRWSI_DATABASE_URL is not a PostgreSQL URL"),
    ("HRWSI_DATABASE_URL", "postgresql://me:hunter2@db:port/x", "HRWSI_DATABASE_URL is not a PostgreSQL URL"),
    ("HRWSI_HOME", "/dev/null", "HRWSI_HOME='/dev/null' is not a directory"),
    ("HRWSI_JOB_LOG_MAX_BYTES", "4096", r"HRWSI_JOB_LOG_MAX_BYTES=4096 must be 0 \(no cap\) or at least 1048576 bytes"),
    ("HRWSI_JOB_LOG_MAX_BYTES", "100MB", "HRWSI_JOB_LOG_MAX_BYTES='100MB' is not a whole number"),
    ("HRWSI_POOL_SIZE", "1", r"HRWSI_POOL_SIZE=1 must be at least 2 \(a heartbeat and a step at once\)"),
    # (asyncpg makes an entry per connection a pool may open, all at its start, the event loop held: 100000000 took
    # minutes of CPU and GBs, and the service did not stop on SIGTERM; found by exploratory testing)
    ("HRWSI_POOL_SIZE", "100000000", r"HRWSI_POOL_SIZE=100000000 must be at least 2 .* and at most 1,000 connections"),
    # (int() read other scripts' digits: \u0661 x 7 capped job logs at 1111111 bytes; found by review)
    ("HRWSI_JOB_LOG_MAX_BYTES", "\u0661" * 7, "HRWSI_JOB_LOG_MAX_BYTES='\u0661+' is not a whole number \\(ASCII digits"),
    ("HRWSI_JOB_LOG_MAX_BYTES", "\u00b2", "HRWSI_JOB_LOG_MAX_BYTES='\u00b2' is not a whole number \\(ASCII digits"),
    ("HRWSI_JOB_LOG_MAX_BYTES", "1_048_576", "HRWSI_JOB_LOG_MAX_BYTES='1_048_576' is not a whole number \\(ASCII"),
    ("HRWSI_JOB_LOG_MAX_BYTES", "9" * 5000, "HRWSI_JOB_LOG_MAX_BYTES='9+'\\.\\.\\. \\(5,000 characters\\) is not a whole"),
])
def test_a_setting_that_cannot_work_is_refused_naming_it(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_env()
    assert "\n" not in str(refused.value)
    assert "hunter2" not in str(refused.value), "a URL's password is never repeated"


@pytest.mark.parametrize("url", ["postgresql://hrwsi@db.example.org/hrwsi", "postgres://u:fake-pw@127.0.0.1:5433/x?sslmode=require",
                                 "postgresql://postgres@/hrwsi?host=/tmp/socket%20dir"])
def test_a_postgresql_url_is_accepted(monkeypatch, url):
    monkeypatch.setenv("HRWSI_DATABASE_URL", url)
    assert Settings.from_env().database_url == url


def test_the_defaults_are_valid(monkeypatch):
    for name in ("HRWSI_BACKSTOP_POLL_S", "HRWSI_HEARTBEAT_S", "HRWSI_LEASE_TIMEOUT_S", "HRWSI_MAX_PARALLEL_JOBS"):
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().max_parallel_jobs >= 1


def test_a_local_attempts_log_is_capped_at_100_mib_unless_told(monkeypatch):
    monkeypatch.delenv("HRWSI_JOB_LOG_MAX_BYTES", raising=False)
    assert Settings.from_env().job_log_max_bytes == 100 * 2**20
    monkeypatch.setenv("HRWSI_JOB_LOG_MAX_BYTES", "0")
    assert Settings.from_env().job_log_max_bytes == 0


def test_jobs_are_claimed_ahead_as_many_as_the_backends_slots_unless_told(monkeypatch):
    monkeypatch.delenv("HRWSI_CLAIM_AHEAD", raising=False)
    assert Settings.from_env().claim_ahead is None  # the launcher takes the backend's slots
    monkeypatch.setenv("HRWSI_CLAIM_AHEAD", "0")
    assert Settings.from_env().claim_ahead == 0


# Read in src/ but set by hrwsi itself for its own chaos routine (benchmarks/chaos), never by a person.
SET_BY_HRWSI_ITSELF = {"HRWSI_CHAOS_LEDGER", "HRWSI_CHAOS_WORK_S"}


def _setting_names_in_src() -> set[str]:
    import ast

    source = Path(__file__).resolve().parents[2] / "src" / "hrwsi"
    names = set()
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.update(re.findall(r"\bHRWSI_[A-Z0-9_]*[A-Z0-9]\b", node.value))
    return names - SET_BY_HRWSI_ITSELF


def test_every_setting_read_in_src_is_in_readme_and_every_one_readme_names_is_read():
    # Found by exploratory testing: HRWSI_NOMAD_DATACENTERS, _EXEC_DRIVER, _SECRETS_VARIABLE (only in
    # nomad-jobs/README.md) and the emulator's HRWSI_NOMAD_EMULATOR_ACL_TOKEN were read but not in README.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    in_readme = set(re.findall(r"\bHRWSI_[A-Z0-9_]*[A-Z0-9]\b", readme))
    in_src = _setting_names_in_src()
    assert sorted(in_src - in_readme) == [], "read in src/ but not in README.md"
    assert sorted(in_readme - in_src) == [], "in README.md but read nowhere in src/"


def test_the_versions_readme_shows_are_this_installations():
    # README showed `hrwsi --version  # ... (schema 0057_...)` while the text said 0.1.0+schema0066.
    from hrwsi.migrations import build_version

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert set(re.findall(r"\d+\.\d+\.\d+\+schema\d{4}", readme)) <= {build_version()}
    shown = re.findall(r"hrwsi --version .*# .*", readme)
    assert shown and all(not re.search(r"schema \d{4}", line) for line in shown), shown


def test_a_process_pool_is_4_connections_per_service_plus_2_unless_hrwsi_pool_size_says_fewer(monkeypatch):
    """What ops lower where max_connections is short: the steps named no setting to lower (found by
    exploratory testing)."""
    from hrwsi.app import App

    monkeypatch.delenv("HRWSI_POOL_SIZE", raising=False)
    assert App("postgresql:///x", ["harvester", "launcher"], Settings.from_env()).pool_size == 10
    monkeypatch.setenv("HRWSI_POOL_SIZE", "5")
    assert App("postgresql:///x", ["harvester", "launcher"], Settings.from_env()).pool_size == 5


@pytest.mark.parametrize("variable", ["HRWSI_LANDING_SCAN_S", "HRWSI_MAX_PARALLEL_JOBS", "HRWSI_HTTP_PORT", "HRWSI_EVENT_LOOP",
                                      "HRWSI_LOG_FORMAT", "HRWSI_LANDING_ROOTS", "HRWSI_HOME"])
def test_a_setting_s_long_value_is_cut_in_its_error_line_saying_how_long_it_was(monkeypatch, variable):
    """A 5,000-character value made a 5,000-character error line, what to do lost at its end (found by review)."""
    monkeypatch.setenv(variable, "x\x1b" * 2500 if variable != "HRWSI_HOME" else "/dev/null/" + "x" * 4990)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    said = str(refused.value)
    assert len(said) < 400 and "... (5,000 characters)" in said and "\n" not in said and "\x1b" not in said


def test_a_number_setting_may_have_spaces_around_it_and_decimal_notation(monkeypatch):
    monkeypatch.setenv("HRWSI_LANDING_SCAN_S", " 2.5 ")
    monkeypatch.setenv("HRWSI_SOURCE_TIMEOUT_S", "1e3")
    assert (Settings.from_env().landing_scan_s, Settings.from_env().source_timeout_s) == (2.5, 1000.0)


@pytest.mark.parametrize("value", ["2_5", "\u0662\u0665", "abc", "0", "70000"])
def test_an_alert_smtp_port_that_is_no_tcp_port_is_refused_in_one_line(monkeypatch, value):
    """(int() read '2_5' as port 25 and other scripts' digits; 'abc' ended the orchestrator in a traceback)"""
    from hrwsi.alerts import AlertSettings

    monkeypatch.setenv("HRWSI_ALERT_SMTP_PORT", value)
    with pytest.raises(SettingsError, match="HRWSI_ALERT_SMTP_PORT=.* is not a TCP port"):
        AlertSettings.from_env()
    monkeypatch.setenv("HRWSI_ALERT_SMTP_PORT", "587")
    assert AlertSettings.from_env().smtp_port == 587


@pytest.mark.parametrize(("value", "starttls"), [("True", True), ("ON", True), (" yes ", True), ("1", True),
                                                 ("False", False), ("off", False), ("0", False), ("", False)])
def test_alert_smtp_starttls_reads_true_and_false_in_any_case(monkeypatch, value, starttls):
    """(only '1', 'true' and 'yes' turned it on: 'True' left it off, silently, and the password went without TLS)"""
    from hrwsi.alerts import AlertSettings

    monkeypatch.setenv("HRWSI_ALERT_SMTP_STARTTLS", value)
    assert AlertSettings.from_env().smtp_starttls is starttls


def test_an_alert_smtp_starttls_that_is_neither_true_nor_false_is_refused_in_one_line(monkeypatch):
    from hrwsi.alerts import AlertSettings

    monkeypatch.setenv("HRWSI_ALERT_SMTP_STARTTLS", "tls")
    with pytest.raises(SettingsError, match="HRWSI_ALERT_SMTP_STARTTLS='?tls'? is neither true nor false"):
        AlertSettings.from_env()
