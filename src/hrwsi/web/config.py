"""The dashboard's own settings (HRWSI_WEB_*); the shared ones are in hrwsi.settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hrwsi.settings import port_setting
from hrwsi.web.auth import Authenticator

DEFAULT_PORT = 8470


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: any free port (logged)
    auth: Authenticator = field(default_factory=Authenticator, repr=False)
    pool_size: int = 4  # the dashboard's own connections: its reads never take the services' connections

    @classmethod
    def from_env(cls) -> WebSettings:
        port = port_setting("HRWSI_WEB_PORT")
        return cls(host=os.environ.get("HRWSI_WEB_HOST") or "127.0.0.1",
                   port=DEFAULT_PORT if port is None else port,
                   auth=Authenticator.from_env())
