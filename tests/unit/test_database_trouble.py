"""The line `hrwsi status` and the dashboard start with while the database refuses writes."""

from datetime import UTC, datetime

from hrwsi.database_trouble import READ_ONLY_MEANWHILE, READ_ONLY_NEXT, refusing_writes_said

NEWEST = datetime(2026, 12, 7, 9, 40, 1, 654321, tzinfo=UTC)


def found(in_recovery=False, read_only=False, newest=NEWEST, age_s=300.0) -> dict:
    return {"in_recovery": in_recovery, "read_only": read_only, "newest_heartbeat": newest,
            "newest_heartbeat_age_s": age_s}


def test_a_standby_is_said_with_the_newest_heartbeat_what_the_services_do_and_what_to_do():
    said = refusing_writes_said(found(in_recovery=True, age_s=1.0), 30.0)
    assert said == ("the database refuses hrwsi's writes (the server is a standby, in recovery: pg_is_in_recovery() is "
                    "true) since 2026-12-07 09:40:01Z at the latest (the newest heartbeat): the services wait and retry, "
                    f"and the heartbeats below are stale for it; {READ_ONLY_MEANWHILE}; {READ_ONLY_NEXT}")


def test_a_read_only_default_is_said_only_while_no_service_writes_its_heartbeat():
    assert refusing_writes_said(found(read_only=True), 30.0).startswith(
        "the database refuses hrwsi's writes (default_transaction_read_only is on for this role or database) since ")
    # (a reader given a read-only role of its own, a monitoring role, while the services write)
    assert refusing_writes_said(found(read_only=True, age_s=2.0), 30.0) is None
    assert "since" not in refusing_writes_said(found(read_only=True, newest=None, age_s=None), 30.0)


def test_a_database_that_takes_writes_is_not_said():
    assert refusing_writes_said(found(), 30.0) is None
    assert refusing_writes_said(None, 30.0) is None


def test_the_setting_on_for_the_services_role_or_database_is_said_at_once_whatever_the_readers_role():
    said = refusing_writes_said(found(age_s=1.0) | {"services_read_only": True}, 30.0)
    assert said.startswith("the database refuses hrwsi's writes (default_transaction_read_only is on for the services' "
                           "role or this database) since 2026-12-07 09:40:01Z at the latest"), said
    assert refusing_writes_said(found(age_s=1.0) | {"services_read_only": False}, 30.0) is None


def test_a_connection_to_a_server_that_is_not_there_is_said_as_a_server_that_takes_no_connection():
    # Found restarting the server (pg_ctl restart -m immediate) during a burst: "could not record the outcome of 5
    # job(s) ([Errno 2] No such file or directory)", its unix socket gone for a moment, said nothing of the server.
    import errno

    from hrwsi.database_trouble import describe

    gone = FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert describe(gone) == "[Errno 2] No such file or directory: the server takes no connection (stopped, or restarting?)"
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 5432)")
    assert describe(refused).endswith("Connect call failed ('127.0.0.1', 5432): the server takes no connection "
                                      "(stopped, or restarting?)")
    a_file = FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x")
    assert describe(a_file) == "[Errno 2] No such file or directory: '/data/x'"


def test_a_statement_sent_on_a_session_the_server_was_ending_is_said_as_such_not_as_asyncpgs_protocol_state():
    """The first line ops read of a server restart during a burst was "step dispatch could not reach the database
    (cannot switch to state 12; another operation (2) is in progress)" (found by fault injection)."""
    import asyncpg

    from hrwsi.database_trouble import describe

    said = describe(asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"))
    assert said == ("the server ended this session in the middle of an operation (a restart, pg_terminate_backend, a "
                    "session timeout?): cannot switch to state 12; another operation (2) is in progress")
    assert describe(asyncpg.InternalClientError("something else")) == "something else"
