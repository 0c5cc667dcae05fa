"""Settings, read once from the environment (HRWSI_*), with defaults that suit one machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def port_setting(name: str) -> int | None:
    """A TCP port; unset or empty means None (off), 0 means "let the system pick one"."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return None
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"{name}={raw!r} is not a TCP port (0-65535, 0 picks a free one, empty turns it off)")
    return int(raw)


def default_home() -> Path:
    """Where hrwsi keeps the embedded database, logs and products unless HRWSI_HOME says otherwise."""
    return Path(os.environ.get("HRWSI_HOME") or platformdirs.user_data_dir("hrwsi")).expanduser()


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
    shutdown_grace_s: float = 20.0  # how long a stopping launcher waits for running local jobs
    retry_backoff_s: float = 5.0  # first retry delay; doubles per failure, capped at 10 min
    http_port: int | None = None  # each process's /metrics, /healthz, /readyz (None: off; 0: any free port)
    http_host: str = "127.0.0.1"

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
            max_parallel_jobs=int(_float("HRWSI_MAX_PARALLEL_JOBS", 64)),
            shutdown_grace_s=_float("HRWSI_SHUTDOWN_GRACE_S", 20.0),
            retry_backoff_s=_float("HRWSI_RETRY_BACKOFF_S", 5.0),
            http_port=port_setting("HRWSI_HTTP_PORT"),
            http_host=os.environ.get("HRWSI_HTTP_HOST") or "127.0.0.1",
        )

    @property
    def data_dir(self) -> Path:
        """Logs and products of the local backend."""
        return self.home / "data"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"
