"""Settings, read once from the environment (HRWSI_*), with defaults that suit one machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
import psycopg
from psycopg.conninfo import conninfo_to_dict

from hrwsi.backends.ascii_decimal import MAX_DIGITS, ascii_decimal, ascii_number
from hrwsi.event_loop import CHOICES as EVENT_LOOPS
from hrwsi.service_logging import FORMATS as LOG_FORMATS
from hrwsi.service_logging import LEVELS as LOG_LEVELS
from hrwsi.terminal import shown

# A job log's cap below this would keep too little of a routine's start and end to explain it.
SMALLEST_JOB_LOG_CAP = 2**20


class SettingsError(ValueError):
    """A setting that cannot work; the message names it and says what is expected (one line)."""


def _float(name: str, default: float) -> float:
    """A number in ASCII decimal notation (2, 0.5, 1e-3), perhaps between spaces as `_count` takes one; unset or
    empty gives `default`. float() read '1_0' as 10 and other scripts' digits ('\u0663' as 3): refused, as
    'inf' and 'nan' are (found by review)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = ascii_number(raw.strip())
    if value is None:
        finite = raw.strip().lower().lstrip("+-") in ("inf", "infinity", "nan")
        raise SettingsError(f"{name}={shown(raw)} is not a {'finite ' if finite else ''}number"
                            f"{'' if finite else ' (ASCII decimal notation: 2, 0.5, 1e-3)'}")
    return value


def _count(name: str, default: int | None) -> int | None:
    """A whole number (of jobs, bytes, members...) in ASCII digits, perhaps after a minus (which the
    setting's own check then refuses, saying its least); unset or empty gives `default`. A fraction is
    refused, not cut: HRWSI_MAX_PARALLEL_JOBS=2.5 ran 2 routines at once, silently. So are other
    scripts' digits, which int() read: HRWSI_JOB_LOG_MAX_BYTES=١١١١١١١
    (Arabic-Indic) capped job logs at 1111111 bytes (found by review); and '1_000' and 4,301 digits."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    value = ascii_decimal(text.removeprefix("-"))
    if value is None:
        raise SettingsError(f"{name}={shown(raw)} is not a whole number (ASCII digits 0-9, at most {MAX_DIGITS})")
    return -value if text.startswith("-") else value


def _paths(name: str) -> tuple[Path, ...] | None:
    """Absolute directories separated by os.pathsep (':'), or None when the variable is unset."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    paths = tuple(Path(part) for part in raw.split(os.pathsep) if part.strip())
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        more = f" (nor are {len(relative) - 1} more)" if len(relative) > 1 else ""
        raise SettingsError(f"{name}={shown(raw)}: {shown(relative[0])} is not an absolute path{more}")
    return paths


def port_setting(name: str) -> int | None:
    """A TCP port; unset or empty means None (off), 0 means "let the system pick one"."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return None
    port = ascii_decimal(raw, max_digits=5)
    if port is None or port > 65535:
        raise SettingsError(f"{name}={shown(raw)} is not a TCP port (0-65535, 0 picks a free one, empty turns it off)")
    return port


def default_home() -> Path:
    """Where hrwsi keeps the embedded database, logs and products unless HRWSI_HOME says otherwise; a relative
    HRWSI_HOME is read from the directory hrwsi starts in. Why absolute: a launcher of HRWSI_HOME=relhome recorded
    its jobs' output and log paths relative (relhome/data/...), which `hrwsi logs`, the dashboard and a launcher
    adopting its jobs read from other directories; its routines' HRWSI_MANIFEST was relative, which the same
    relative HRWSI_HOME of another installation on the machine shares (orphans are found by it, with HRWSI_JOB_ID);
    and `hrwsi up` refused to start, saying "HRWSI_LANDING_ROOTS: 'relhome/harvest' is not an absolute path", a
    setting the user had not set (found by a CI hardening audit, 2026-12-07)."""
    return Path(os.environ.get("HRWSI_HOME") or platformdirs.user_data_dir("hrwsi")).expanduser().absolute()


def _is_postgresql_url(url: str) -> bool:
    """A postgresql:// (or postgres://) URL both drivers read: asyncpg, which the services use, reads
    no key=value connection string."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        return parts.scheme in ("postgresql", "postgres") and bool(conninfo_to_dict(url))
    except (ValueError, psycopg.Error):
        return False


def check_database_url(url: str, name: str = "HRWSI_DATABASE_URL") -> None:
    """Refuse a URL that is not a postgresql:// one, in one sentence naming where it came from
    (`name`): the environment, or an argument (hrwsi.notebook). The value is not repeated: it may
    hold a password."""
    if not isinstance(url, str) or not _is_postgresql_url(url):
        raise SettingsError(f"{name} is not a PostgreSQL URL: it must read "
                            "postgresql://user[:password]@host[:port]/database[?option=value...]")


# The largest pool a setting may ask (HRWSI_POOL_SIZE, HRWSI_WEB_POOL_SIZE): asyncpg makes an entry for each
# connection a pool may open, all at its start, holding the event loop: HRWSI_POOL_SIZE=100000000 took minutes of CPU
# and GBs of memory (1,000,000: 1.8 s and 163 MB), and the service did not stop on SIGTERM meanwhile (found by
# exploratory testing). A process opens some 11 at its busiest (README.md, Connections).
MAX_POOL_SIZE = 1000


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    database_url: str | None = None  # None: the embedded server under home/pgdata
    backend: str = "local"
    backstop_poll_s: float = 2.0  # catch-up scan even when no notification came
    heartbeat_s: float = 5.0  # service lease refresh and listener liveness check
    lease_timeout_s: float = 30.0  # a launcher silent this long is dead: its jobs are adopted
    landing_scan_s: float = 5.0
    max_parallel_jobs: int = 64  # local backend: subprocesses at once per launcher
    # Jobs a launcher claims beyond a slot-limited backend's free slots (the local one), each started
    # the moment a slot frees; None: as many as the backend has slots. 0: claim only what starts now.
    claim_ahead: int | None = None
    shutdown_grace_s: float = 20.0  # how long a stopping launcher waits for running local jobs
    # Local backend: the most one attempt's log keeps (its start and its most recent output; 0: no cap).
    job_log_max_bytes: int = 100 * 2**20
    retry_backoff_s: float = 5.0  # first retry delay; doubles per failure, capped at 10 min
    # How long an urgent task's room on its worker is kept from back-fill once it is processed and its products chain
    # on (or after its retry's back-off): its next step gets the slot (hrwsi.handover_hold, ADR 0009). 0: never.
    handover_hold_s: float = 60.0
    # Harvest: where landing sources may move files (None: home/harvest), unzip limits, source runs.
    landing_roots: tuple[Path, ...] | None = None
    unzip_max_bytes: int = 32 * 2**30  # all members of one archive, uncompressed (32 GiB)
    unzip_max_ratio: float = 100.0  # uncompressed bytes per archive byte (zip bombs reach 1,000)
    unzip_max_members: int = 100_000
    source_timeout_s: float = 900.0  # one run of one harvest source
    harvest_concurrency: int = 4  # harvest sources run at once per harvester

    # The most connections one process's pool opens (its services' steps and side tasks; each listener has its
    # own); None: 4 per service it runs plus 2. Lowered where max_connections is short (README.md, Connections).
    pool_size: int | None = None
    http_port: int | None = None  # each process's /metrics, /healthz, /readyz (None: off; 0: any free port)
    http_host: str = "127.0.0.1"
    # The services' event loop (hrwsi.event_loop): auto (uvloop, except where a launcher starts local
    # jobs), asyncio or uvloop.
    event_loop: str = "auto"
    # How the services log (hrwsi.service_logging): the least level written, and text or JSON lines.
    log_level: str = "INFO"
    log_format: str = "text"

    def __post_init__(self) -> None:
        """Refuse settings that cannot work (a zero poll is a busy loop, no parallel job stalls every
        task), naming the environment variable to fix."""
        positive = {"HRWSI_BACKSTOP_POLL_S": self.backstop_poll_s, "HRWSI_HEARTBEAT_S": self.heartbeat_s,
                    "HRWSI_LEASE_TIMEOUT_S": self.lease_timeout_s, "HRWSI_LANDING_SCAN_S": self.landing_scan_s,
                    "HRWSI_RETRY_BACKOFF_S": self.retry_backoff_s}
        for name, value in positive.items():
            if not value > 0:
                raise SettingsError(f"{name}={value} must be a number of seconds > 0")
        self._refuse_negative_times()
        if self.max_parallel_jobs < 1:
            raise SettingsError(f"HRWSI_MAX_PARALLEL_JOBS={self.max_parallel_jobs} must be at least 1: "
                                "with no job at a time, no task would ever run")
        if self.job_log_max_bytes != 0 and self.job_log_max_bytes < SMALLEST_JOB_LOG_CAP:
            raise SettingsError(f"HRWSI_JOB_LOG_MAX_BYTES={self.job_log_max_bytes} must be 0 (no cap) or at least "
                                f"{SMALLEST_JOB_LOG_CAP} bytes (1 MiB)")
        if self.claim_ahead is not None and self.claim_ahead < 0:
            raise SettingsError(f"HRWSI_CLAIM_AHEAD={self.claim_ahead} must be a number of jobs >= 0 "
                                "(0: claim only jobs that start at once)")
        if self.pool_size is not None and not 2 <= self.pool_size <= MAX_POOL_SIZE:
            raise SettingsError(f"HRWSI_POOL_SIZE={self.pool_size} must be at least 2 (a heartbeat and a step at once) "
                                f"and at most {MAX_POOL_SIZE:,} connections (a process opens some 11 at its busiest), or "
                                "unset for 4 per service plus 2")
        if self.event_loop not in EVENT_LOOPS:
            raise SettingsError(f"HRWSI_EVENT_LOOP={shown(self.event_loop)} must be {', '.join(EVENT_LOOPS[:-1])} "
                                f"or {EVENT_LOOPS[-1]}")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"HRWSI_LOG_LEVEL={shown(self.log_level)} must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"HRWSI_LOG_FORMAT={shown(self.log_format)} must be {' or '.join(LOG_FORMATS)}")
        if self.database_url is not None:
            check_database_url(self.database_url)
        try:
            not_a_directory = self.home.exists() and not self.home.is_dir()
        except OSError as error:  # (a name too long: "File name too long" and a traceback; found by review)
            raise SettingsError(f"HRWSI_HOME={shown(str(self.home))} cannot be used: {error.strerror}") from None
        if not_a_directory:
            raise SettingsError(f"HRWSI_HOME={shown(str(self.home))} is not a directory")
        if self.lease_timeout_s < 2 * self.heartbeat_s:
            raise SettingsError(f"HRWSI_LEASE_TIMEOUT_S={self.lease_timeout_s} must be at least twice "
                                f"HRWSI_HEARTBEAT_S={self.heartbeat_s}: one late heartbeat must not lose the lease")

    def _refuse_negative_times(self) -> None:
        """The settings of seconds that may be 0, not below (nor, a hand-over hold, past an hour: back-fill would
        lose its worker for that long at each near-real-time task's end)."""
        if not 0 <= self.handover_hold_s <= 3600:
            raise SettingsError(f"HRWSI_HANDOVER_HOLD_S={self.handover_hold_s} must be a number of seconds from 0 (no "
                                "hand-over hold) to 3600")
        if self.shutdown_grace_s < 0:
            raise SettingsError(f"HRWSI_SHUTDOWN_GRACE_S={self.shutdown_grace_s} must be >= 0")

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            home=default_home(),
            database_url=os.environ.get("HRWSI_DATABASE_URL") or None,
            backend=os.environ.get("HRWSI_BACKEND", "local"),
            backstop_poll_s=_float("HRWSI_BACKSTOP_POLL_S", 2.0),
            heartbeat_s=_float("HRWSI_HEARTBEAT_S", 5.0),
            lease_timeout_s=_float("HRWSI_LEASE_TIMEOUT_S", 30.0),
            landing_scan_s=_float("HRWSI_LANDING_SCAN_S", 5.0),
            max_parallel_jobs=_count("HRWSI_MAX_PARALLEL_JOBS", 64),
            claim_ahead=_count("HRWSI_CLAIM_AHEAD", None),
            shutdown_grace_s=_float("HRWSI_SHUTDOWN_GRACE_S", 20.0),
            job_log_max_bytes=_count("HRWSI_JOB_LOG_MAX_BYTES", 100 * 2**20),
            retry_backoff_s=_float("HRWSI_RETRY_BACKOFF_S", 5.0),
            handover_hold_s=_float("HRWSI_HANDOVER_HOLD_S", 60.0),
            landing_roots=_paths("HRWSI_LANDING_ROOTS"),
            unzip_max_bytes=_count("HRWSI_UNZIP_MAX_BYTES", 32 * 2**30),
            unzip_max_ratio=_float("HRWSI_UNZIP_MAX_RATIO", 100.0),
            unzip_max_members=_count("HRWSI_UNZIP_MAX_MEMBERS", 100_000),
            source_timeout_s=_float("HRWSI_SOURCE_TIMEOUT_S", 900.0),
            harvest_concurrency=_count("HRWSI_HARVEST_CONCURRENCY", 4),
            pool_size=_count("HRWSI_POOL_SIZE", None),
            http_port=port_setting("HRWSI_HTTP_PORT"),
            http_host=os.environ.get("HRWSI_HTTP_HOST") or "127.0.0.1",
            event_loop=os.environ.get("HRWSI_EVENT_LOOP") or "auto",
            log_level=(os.environ.get("HRWSI_LOG_LEVEL") or "INFO").strip().upper(),
            log_format=(os.environ.get("HRWSI_LOG_FORMAT") or "text").strip().lower(),
        )

    @property
    def data_dir(self) -> Path:
        """Logs and products of the local backend."""
        return self.home / "data"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"
