"""The dashboard's own settings (HRWSI_WEB_*); the shared ones are in hrwsi.settings."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from hrwsi.backends.ascii_decimal import ascii_decimal, is_ascii_decimal
from hrwsi.settings import MAX_POOL_SIZE, SettingsError, port_setting
from hrwsi.terminal import bounded, shown
from hrwsi.web.auth import Authenticator

DEFAULT_PORT = 8470
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostPolicy:
    """The names a request's Host may give the dashboard (DNS rebinding: a page of evil.example,
    whose name is made to resolve to 127.0.0.1, would otherwise read the dashboard from an
    operator's browser as its own origin; the read pages need no token). Allowed: the local names
    (localhost, *.localhost, 127.0.0.1, ::1), the address it listens on, any IP address when it
    listens on all of them (0.0.0.0, ::; an address is no rebinding: no one else's page has it as
    its origin), and what ops add in HRWSI_WEB_ALLOWED_HOSTS: names, `.example.org` for it and its
    subdomains, `*` for any. The port is not compared: a proxy in front may serve another."""
    bind_host: str = "127.0.0.1"
    allowed: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, bind_host: str) -> HostPolicy:
        raw = os.environ.get("HRWSI_WEB_ALLOWED_HOSTS") or ""
        names = tuple(part.strip().lower().rstrip(".") for part in raw.split(",") if part.strip())
        bad = [name for name in names if any(c in name for c in "/:@ ") and _ip(name.strip("[]")) is None]
        if bad:
            raise SettingsError(f"HRWSI_WEB_ALLOWED_HOSTS: {bounded(', '.join(bad), str)} is not a host name (names separated by "
                                "commas, .example.org for a domain and its subdomains, * for any)")
        return cls(bind_host, names)

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return True  # (a browser always sends one: no page can make it send none)
        host = _hostname(host_header)
        if host is None:
            return False
        if host in LOCAL_NAMES or host.endswith(".localhost") or host == self.bind_host.lower().strip("[]"):
            return True
        if _ip(host) is not None and (self.bind_host in ("0.0.0.0", "::", "") or _ip(host).is_loopback):
            return True
        return any(name == "*" or host == name or (name.startswith(".") and (host.endswith(name) or host == name[1:]))
                   for name in self.allowed)


def _hostname(host_header: str) -> str | None:
    """The name in a Host header (`name`, `name:port`, `[::1]:port`), lower case; None if unreadable."""
    text = host_header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else None
    name, _, port = text.partition(":")
    if port and not is_ascii_decimal(port):
        return None
    return name.rstrip(".") or None


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: any free port (logged)
    auth: Authenticator = field(default_factory=Authenticator, repr=False)
    hosts: HostPolicy = field(default_factory=HostPolicy)
    pool_size: int = 4  # the dashboard's own connections: its reads never take the services' connections

    @classmethod
    def from_env(cls) -> WebSettings:
        port = port_setting("HRWSI_WEB_PORT")
        host = os.environ.get("HRWSI_WEB_HOST") or "127.0.0.1"
        return cls(host=host, port=DEFAULT_PORT if port is None else port, auth=Authenticator.from_env(),
                   hosts=HostPolicy.from_env(host), pool_size=_pool_size())


def _pool_size() -> int:
    """HRWSI_WEB_POOL_SIZE: the dashboard's own connections (default 4), lowered where max_connections is short."""
    raw = (os.environ.get("HRWSI_WEB_POOL_SIZE") or "").strip()
    if not raw:
        return WebSettings.pool_size
    size = ascii_decimal(raw)
    if size is None or not 1 <= size <= MAX_POOL_SIZE:
        raise SettingsError(f"HRWSI_WEB_POOL_SIZE={shown(raw)} must be a whole number of connections from 1 to "
                            f"{MAX_POOL_SIZE:,} (default 4)")
    return size
