"""What a failed database call means, in words for a log line: a connection pooler hrwsi cannot
work through, a transaction that conflicted with another, a timeout that says nothing by itself.

Why: the services said "could not reach the database" of all of these. A serialization failure
(the role's default_transaction_isolation = serializable) read as an outage; a timeout read as
"could not reach the database ()"; behind pgbouncer in transaction mode every step failed every
2 s on "prepared statement __asyncpg_stmt_1c__ does not exist", and with pgbouncer's default
settings the connection was refused ("unsupported startup parameter") and retried for ever, and
nothing said that hrwsi cannot work there (found by exploratory testing).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import asyncpg

from hrwsi.database import COMMAND_TIMEOUT_S, CONNECTIONS_FULL, DatabaseUnavailable

# What hrwsi needs of its connections, for the lines that say a pooler does not give it.
SESSION_NEEDS = "hrwsi needs session-level connections (LISTEN, prepared statements, session settings)"

# The errors that mean this transaction and another could not both commit: retried, not an outage.
CONFLICTS = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


class UnusablePooler(DatabaseUnavailable):
    """A connection pooler between hrwsi and PostgreSQL refuses what hrwsi needs; the message says what to do."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def pooler_refusal(error: BaseException) -> str | None:
    """The one line that says a connection pooler stands between hrwsi and PostgreSQL in a way hrwsi
    cannot work through, naming what to do; None for any other error."""
    message = _one_line(getattr(error, "message", None) or error)
    hint = str(getattr(error, "hint", None) or "")
    if "unsupported startup parameter" in message:  # (pgbouncer's refusal of a setting given at connect)
        return (f"a connection pooler refused the connection ({message}): {SESSION_NEEDS}; connect to PostgreSQL "
                "directly, or run pgbouncer in session mode (pool_mode = session) with the parameter in its "
                "ignore_startup_parameters and the session timeouts set for the role instead "
                "(README.md, Connection poolers)")
    if "pgbouncer" in hint or "pgbouncer" in message:  # (asyncpg's note on a prepared statement gone)
        return (f"a connection pooler in transaction or statement mode stands before the database ({message}): "
                f"{SESSION_NEEDS}; set pool_mode = session for hrwsi's database, or connect to PostgreSQL "
                "directly (README.md, Connection poolers)")
    return None


# The words for a database that refuses hrwsi's writes, shared by the services' log line (read_only_refusal,
# Service._tell_read_only) and the line `hrwsi status` and the dashboard start with (refusing_writes_said).
READ_ONLY_CAUSE = ("the server is a standby (a failover left HRWSI_DATABASE_URL on a replica?) or "
                   "default_transaction_read_only is on for hrwsi's role or database")
READ_ONLY_NEXT = ("point HRWSI_DATABASE_URL at the primary, or ALTER ROLE (or DATABASE) ... SET "
                  "default_transaction_read_only = off")
READ_ONLY_MEANWHILE = ("nothing is written meanwhile, and the leases lapse: each service goes on where it stopped once "
                       "the database takes writes again")


def read_only_refusal(error: BaseException) -> str | None:
    """The one line that says the database refuses hrwsi's writes (SQLSTATE 25006: a standby, or
    default_transaction_read_only on for the role or database), naming what to do; None for any other
    error. Why: a failover that left the services on a replica (or the setting turned on while they
    ran) made every step log "failed in the database: cannot execute UPDATE in a read-only
    transaction" every 2 s, and every heartbeat a traceback, 600 lines in 20 s, none saying why nor
    what to do (found by exploratory testing)."""
    if not isinstance(error, asyncpg.ReadOnlySQLTransactionError):
        return None
    return (f"the database refuses hrwsi's writes ({_one_line(getattr(error, 'message', None) or error)}): "
            f"{READ_ONLY_CAUSE}; {READ_ONLY_NEXT}; {READ_ONLY_MEANWHILE}")


def refusing_writes_said(found: Mapping[str, Any] | None, stale_after_s: float, refused_here: bool = False) -> str | None:
    """The line `hrwsi status` and the dashboard start with while the database refuses writes, from
    report_writes_refused (a standby in recovery, or default_transaction_read_only on for the reader's role or
    database); None while it takes them. Why: after a failover onto a standby, both showed stale heartbeats
    and little else, while they could still read (found by review). The setting is said only while no service
    has written a heartbeat within stale_after_s: a reader given a read-only role of its own (a monitoring
    role) must not read as an outage while the services write. `refused_here`: a service of the reader's own
    process (the dashboard's) had a write refused and has had none go through since: said at once, not a lease
    later (the dashboard said it about 30 s late; found by review); so is the setting on for the login role of the
    services' pool sessions, or their database (`services_read_only`), whatever the reader's own role."""
    if not found:
        return None
    newest, age = found["newest_heartbeat"], found["newest_heartbeat_age_s"]
    if found["in_recovery"]:
        why = "the server is a standby, in recovery: pg_is_in_recovery() is true"
    elif found.get("services_read_only"):  # (at once: the services' sessions opened since refuse writes)
        why = "default_transaction_read_only is on for the services' role or this database"
    elif (found["read_only"] and (age is None or age > stale_after_s)) or refused_here:
        why = "default_transaction_read_only is on for this role or database"
    else:
        return None
    since = f" since {newest.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z at the latest (the newest heartbeat)" if newest else ""
    return (f"the database refuses hrwsi's writes ({why}){since}: the services wait and retry, and the heartbeats "
            f"below are stale for it; {READ_ONLY_MEANWHILE}; {READ_ONLY_NEXT}")


# What to do when the server refuses hrwsi a connection for want of a slot (SQLSTATE 53300).
CONNECTIONS_REFUSED_NEXT = (
    "raise max_connections (postgresql.conf; a server restart) or the role's or database's CONNECTION LIMIT, or "
    "lower hrwsi's pools: HRWSI_POOL_SIZE (each service process's; default 4 per service it runs plus 2) and "
    "HRWSI_WEB_POOL_SIZE (the dashboard's; default 4); SELECT application_name, usename, count(*) FROM "
    "pg_stat_activity GROUP BY 1, 2 says who holds them (README.md, Connections)")


def connections_refused(error: BaseException) -> str | None:
    """The words for a connection the server refused because max_connections (or a role's or database's
    CONNECTION LIMIT) is reached, naming what to do; None for any other error. Why: the services said "step
    plan could not reach the database (sorry, too many clients already)": the server was there and answered,
    and nothing said which limit, nor which settings of hrwsi's hold connections (found by exploratory
    testing)."""
    message = _one_line(getattr(error, "message", None) or error)
    if not (isinstance(error, asyncpg.TooManyConnectionsError) or any(full in message for full in CONNECTIONS_FULL)):
        return None
    return (f"the database server refuses new connections ({message}): it runs, but max_connections or a "
            f"CONNECTION LIMIT is reached; {CONNECTIONS_REFUSED_NEXT}")


def is_conflict(error: BaseException) -> bool:
    return isinstance(error, CONFLICTS)


def describe(error: BaseException) -> str:
    """The error in a few words for a log line: its message, or, when it has none (a timeout), what it is; a
    connection refused for want of a slot, said as such with what to do (connections_refused)."""
    if (refused := connections_refused(error)) is not None:
        return refused
    text = _one_line(error)
    if isinstance(error, asyncpg.InternalClientError) and "another operation" in text:
        # asyncpg's words for a statement sent on a session still taking in an earlier statement's error, an end the
        # server sends before it closes the session: "cannot switch to state 12; another operation (2) is in
        # progress" was the first line ops read of a server restart during a burst, and of a role's
        # transaction_timeout, and named neither (found by fault injection).
        return (f"the server ended this session in the middle of an operation (a restart, pg_terminate_backend, a "
                f"session timeout?): {text}")
    if type(error) is ConnectionError and text == "unexpected connection_lost() call":
        # (asyncpg's words for a connection closed by the other end as it opened, before the server's first answer: a
        # proxy, pooler or load balancer that accepts it and has no server behind it, as in a failover; read as a fault
        # of asyncpg's, found by exploratory testing)
        return ("the connection was closed as it opened, before the server answered (a proxy, pooler or load balancer "
                "in front of a server that is down or restarting?)")
    if isinstance(error, (FileNotFoundError, ConnectionRefusedError)) and error.filename is None:
        # (a connection's: a file's names its file. The server's socket gone or refusing while it restarts was said
        # "[Errno 2] No such file or directory" alone; found restarting the server during a burst)
        return f"{text}: the server takes no connection (stopped, or restarting?)"
    if text:
        return text
    if isinstance(error, TimeoutError):
        return (f"no answer within the client's timeout ({type(error).__name__}: {COMMAND_TIMEOUT_S:g} s for a "
                "statement, 10 s for a new connection)")
    return type(error).__name__
