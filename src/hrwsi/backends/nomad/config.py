"""The Nomad backend's configuration: where Nomad is and how hrwsi uses it.

Environment names are Nomad's own (NOMAD_ADDR, NOMAD_TOKEN, ...) plus HRWSI_NOMAD_*; the token is
never shown (repr) and never goes into a job spec.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from hrwsi.backends.ascii_decimal import ascii_decimal, ascii_number
from hrwsi.terminal import shown

# What the exec driver's chroot holds on a client without chroot_env (client/config/config.go DefaultChrootEnv).
DEFAULT_EXEC_CHROOT = ("/bin", "/etc", "/lib", "/lib32", "/lib64", "/run/resolvconf", "/sbin", "/usr",
                       "/run/systemd/resolve")


def _env_flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={shown(raw)}: expected true or false")


# Nomad's namespace names (nomad/structs/structs.go, validNamespaceName).
NAMESPACE_NAME = re.compile(r"[a-zA-Z0-9-]{1,128}")
# The longest duration a setting may give: Nomad reads durations as int64 nanoseconds (292 years);
# a year is more than any of them needs.
LONGEST_S = 366 * 86400.0


def _env_number(environ: Mapping[str, str], name: str, default: float, *, whole: bool = False,
                positive: bool = False) -> float:
    """A number setting, refused in one line naming its variable (not "could not convert string to
    float: 'abc'", which named nothing), and refused if infinite, not a number or negative: `inf`
    reached a job spec as "cannot convert float infinity to integer", charged to the routine."""
    raw = environ.get(name) or ""
    if not raw.strip():
        return default
    # (ASCII decimal notation: int() and float() read '1_0' as 10 and other scripts' digits; found by review)
    text = raw.strip()
    value = (ascii_decimal(text.removeprefix("-")) if whole else ascii_number(text)) if text.lower().lstrip("+-") not in \
        ("inf", "infinity", "nan") else math.inf
    if value is None:
        raise ValueError(f"{name}={shown(raw)}: expected {'a whole number' if whole else 'a number'}")
    if whole and text.startswith("-"):
        value = -value
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > LONGEST_S:
        raise ValueError(f"{name}={shown(raw)}: expected a {'positive' if positive else 'non-negative'} number, "
                         f"at most {LONGEST_S:.0f}")
    return value


def public_address(address: str) -> str:
    """The address without the user and password a URL may carry, for messages, logs and UI links."""
    parts = urlsplit(address)
    if parts.username is None and parts.password is None:
        return address
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, netloc + (f":{parts.port}" if parts.port else ""), parts.path, parts.query,
                       parts.fragment))


def _refuse_an_unsendable_token(token: str | None) -> None:
    """Refuse (never saying it) a token that cannot be sent as a header: white space around it or a
    control character in it, as a token read from a file with its newline has. requests refused it
    at every call with a message that quoted it, and that message went to the logs."""
    if token is not None and (token != token.strip() or any(ord(c) < 32 or ord(c) == 127 for c in token)):
        raise ValueError("NOMAD_TOKEN has white space around it or a control character in it (a newline read "
                         "from a file?): give the token alone")


@dataclass(frozen=True)
class NomadConfig:
    """Where Nomad is and how hrwsi uses it. Environment names are Nomad's own (NOMAD_*) plus HRWSI_NOMAD_*."""

    address: str = "http://127.0.0.1:4646"          # NOMAD_ADDR
    token: str | None = field(default=None, repr=False)  # NOMAD_TOKEN (never logged, never in a spec)
    namespace: str = "default"                       # NOMAD_NAMESPACE
    region: str | None = None                        # NOMAD_REGION
    cacert: str | None = None                        # NOMAD_CACERT
    client_cert: str | None = None                   # NOMAD_CLIENT_CERT
    client_key: str | None = None                    # NOMAD_CLIENT_KEY
    skip_verify: bool = False                        # NOMAD_SKIP_VERIFY
    mhz_per_core: float = 1000.0                     # HRWSI_NOMAD_MHZ_PER_CORE: Nomad counts CPU in MHz
    placement: str = "pin"                           # HRWSI_NOMAD_PLACEMENT: pin (node name) | flavour (node class)
    purge: bool = True                               # HRWSI_NOMAD_PURGE: purge a job once its outcome is stored
    purge_delay_s: float = 60.0                      # HRWSI_NOMAD_PURGE_DELAY_S: ... this long after (see forget)
    max_connections: int = 8                         # HRWSI_NOMAD_MAX_CONNECTIONS: thread pool size
    exec_driver: str = "raw_exec"                    # HRWSI_NOMAD_EXEC_DRIVER: raw_exec | exec (routines without image)
    datacenters: tuple[str, ...] = ("*",)            # HRWSI_NOMAD_DATACENTERS (comma-separated)
    node_pool: str = "default"                       # HRWSI_NOMAD_NODE_POOL: where jobs run; "all": every pool
    host_volume: str | None = None                   # HRWSI_NOMAD_HOST_VOLUME: NAME:/path, the data as a host volume
    exec_chroot: tuple[str, ...] = DEFAULT_EXEC_CHROOT  # HRWSI_NOMAD_EXEC_CHROOT: the clients' chroot_env paths
    secrets_variable: str | None = None              # HRWSI_NOMAD_SECRETS_VARIABLE: a Variable path -> env
    event_stream: bool = True                        # HRWSI_NOMAD_EVENT_STREAM: false -> blocking queries only
    # A client cut off from the servers stops an attempt's job after this long (the job's
    # disconnect.stop_on_client_after); hrwsi retries an attempt whose node is away only then.
    stop_after_disconnect_s: float = 60.0            # HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S
    kill_timeout_s: float = 30.0                     # HRWSI_NOMAD_KILL_TIMEOUT_S: stop signal -> SIGKILL (kill_timeout)
    # A job Nomad has not placed this long (a blocked evaluation: no node fits it, e.g. another team's job
    # took the CPU of the node it is pinned to) is purged and its attempt lost (not charged), so that the
    # task is planned again; 0: wait for ever.
    unplaced_limit_s: float = 600.0                  # HRWSI_NOMAD_UNPLACED_LIMIT_S
    job_prefix: str = "hrwsi-"
    request_timeout_s: float = 15.0                  # HRWSI_NOMAD_REQUEST_TIMEOUT_S: one HTTP call (not a blocking query)
    blocking_wait_s: float = 30.0
    stream_read_timeout_s: float = 75.0              # > 2 heartbeats (Nomad sends one every 30 s at most)
    retry_for_s: float = 120.0                       # how long a transient Nomad error is retried per call

    def __post_init__(self) -> None:
        _refuse_an_unsendable_token(self.token)
        address = urlsplit(self.address)
        if address.scheme not in ("http", "https") or not address.netloc:
            raise ValueError(f"NOMAD_ADDR={shown(public_address(self.address))}: expected http://host:port or "
                             "https://host:port")
        if not NAMESPACE_NAME.fullmatch(self.namespace):
            raise ValueError(f"NOMAD_NAMESPACE={shown(self.namespace)}: a Nomad namespace is 1-128 letters, digits "
                             "and hyphens")
        if self.placement not in ("pin", "flavour"):
            raise ValueError(f"HRWSI_NOMAD_PLACEMENT={shown(self.placement)}: choose pin or flavour")
        if self.exec_driver not in ("raw_exec", "exec"):
            raise ValueError(f"HRWSI_NOMAD_EXEC_DRIVER={shown(self.exec_driver)}: choose raw_exec or exec")
        if not self.mhz_per_core > 0:
            raise ValueError("HRWSI_NOMAD_MHZ_PER_CORE must be positive")
        if not self.stop_after_disconnect_s > 0:
            # (0 would mean "never stop": Nomad reads a zero stop_on_client_after as unset, alloc.go ShouldClientStop)
            raise ValueError("HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S must be positive")
        if not self.kill_timeout_s >= 0:
            raise ValueError("HRWSI_NOMAD_KILL_TIMEOUT_S must not be negative")
        if not 1 <= self.max_connections <= 90:
            raise ValueError("HRWSI_NOMAD_MAX_CONNECTIONS must be between 1 and 90 (Nomad allows 100 per client)")
        if self.host_volume is not None and not self.host_volume_mount()[1].startswith("/"):
            raise ValueError(f"HRWSI_NOMAD_HOST_VOLUME={shown(self.host_volume)}: expected NAME:/absolute/path")
        if self.exec_driver == "exec" and self.host_volume is None:
            # exec chroots the task into copies of the client's chroot_env: products written there never
            # reach the filesystem the launcher reads. Only a host volume mounts the data into the chroot.
            raise ValueError("HRWSI_NOMAD_EXEC_DRIVER=exec needs HRWSI_NOMAD_HOST_VOLUME=NAME:/data/path (a client "
                             "host_volume holding hrwsi's data): exec chroots the task, so its products would "
                             "not reach the shared filesystem; or use raw_exec")

    def host_volume_mount(self) -> tuple[str, str]:
        """(volume name, where it is mounted: the data directory's path on the clients)."""
        name, _, path = (self.host_volume or "").partition(":")
        return name, path.rstrip("/") or "/"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NomadConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        datacenters = tuple(d.strip() for d in (get("HRWSI_NOMAD_DATACENTERS") or "*").split(",") if d.strip())
        return cls(
            address=(get("NOMAD_ADDR") or "http://127.0.0.1:4646").rstrip("/"),
            token=get("NOMAD_TOKEN"),
            namespace=get("NOMAD_NAMESPACE") or "default",
            region=get("NOMAD_REGION"),
            cacert=get("NOMAD_CACERT"),
            client_cert=get("NOMAD_CLIENT_CERT"),
            client_key=get("NOMAD_CLIENT_KEY"),
            skip_verify=_env_flag(env, "NOMAD_SKIP_VERIFY", False),
            mhz_per_core=_env_number(env, "HRWSI_NOMAD_MHZ_PER_CORE", 1000, positive=True),
            placement=get("HRWSI_NOMAD_PLACEMENT") or "pin",
            purge=_env_flag(env, "HRWSI_NOMAD_PURGE", True),
            purge_delay_s=_env_number(env, "HRWSI_NOMAD_PURGE_DELAY_S", 60),
            max_connections=int(_env_number(env, "HRWSI_NOMAD_MAX_CONNECTIONS", 8, whole=True, positive=True)),
            exec_driver=get("HRWSI_NOMAD_EXEC_DRIVER") or "raw_exec",
            datacenters=datacenters or ("*",),
            node_pool=get("HRWSI_NOMAD_NODE_POOL") or "default",
            host_volume=get("HRWSI_NOMAD_HOST_VOLUME"),
            exec_chroot=tuple(p.strip() for p in (get("HRWSI_NOMAD_EXEC_CHROOT") or "").split(",") if p.strip())
            or DEFAULT_EXEC_CHROOT,
            secrets_variable=get("HRWSI_NOMAD_SECRETS_VARIABLE"),
            event_stream=_env_flag(env, "HRWSI_NOMAD_EVENT_STREAM", True),
            stop_after_disconnect_s=_env_number(env, "HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S", 60, positive=True),
            kill_timeout_s=_env_number(env, "HRWSI_NOMAD_KILL_TIMEOUT_S", 30),
            unplaced_limit_s=_env_number(env, "HRWSI_NOMAD_UNPLACED_LIMIT_S", 600),
            request_timeout_s=_env_number(env, "HRWSI_NOMAD_REQUEST_TIMEOUT_S", 15, positive=True),
        )
