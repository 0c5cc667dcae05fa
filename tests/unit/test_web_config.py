"""The dashboard's settings: which Host names it answers (DNS rebinding)."""

from __future__ import annotations

import pytest

from hrwsi.settings import SettingsError
from hrwsi.web.config import HostPolicy, WebSettings


def test_the_dashboard_answers_its_local_names_and_its_address_only_unless_ops_allow_more(monkeypatch):
    local = HostPolicy("127.0.0.1")
    assert all(local.allows(h) for h in ("127.0.0.1:8470", "localhost", "app.localhost:1", "[::1]:8470", None))
    assert not any(local.allows(h) for h in ("evil.example:8470", "10.0.0.5:8470", "localhost.evil.example",
                                              "127.0.0.1:notaport"))
    everywhere = HostPolicy("0.0.0.0")
    assert everywhere.allows("10.0.0.5:8470") and not everywhere.allows("evil.example")
    assert HostPolicy("dash.internal").allows("DASH.internal:8470")
    monkeypatch.setenv("HRWSI_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("HRWSI_WEB_ALLOWED_HOSTS", "hrwsi.example.org, .corp.example")
    hosts = WebSettings.from_env().hosts
    assert hosts.allows("hrwsi.example.org") and hosts.allows("a.corp.example") and hosts.allows("corp.example")
    assert not hosts.allows("evil.example") and not hosts.allows("example.org")
    monkeypatch.setenv("HRWSI_WEB_ALLOWED_HOSTS", "*")
    assert WebSettings.from_env().hosts.allows("anything.example")


def test_an_allowed_host_that_is_not_a_name_stops_the_dashboard_at_start(monkeypatch):
    monkeypatch.setenv("HRWSI_WEB_ALLOWED_HOSTS", "https://hrwsi.example.org/")
    with pytest.raises(SettingsError, match="HRWSI_WEB_ALLOWED_HOSTS: https://hrwsi.example.org/ is not a host name"):
        WebSettings.from_env()


def test_the_dashboards_pool_is_4_connections_unless_hrwsi_web_pool_size_says_otherwise(monkeypatch):
    monkeypatch.delenv("HRWSI_WEB_POOL_SIZE", raising=False)
    assert WebSettings.from_env().pool_size == 4
    monkeypatch.setenv("HRWSI_WEB_POOL_SIZE", "2")
    assert WebSettings.from_env().pool_size == 2
    monkeypatch.setenv("HRWSI_WEB_POOL_SIZE", "0")
    with pytest.raises(SettingsError, match=r"HRWSI_WEB_POOL_SIZE='0' must be a whole number of connections from 1"):
        WebSettings.from_env()
    monkeypatch.setenv("HRWSI_WEB_POOL_SIZE", "100000000")  # (asyncpg makes an entry per connection at its start)
    with pytest.raises(SettingsError, match=r"HRWSI_WEB_POOL_SIZE='100000000' must be a whole number of connections "
                                            r"from 1 to 1,000"):
        WebSettings.from_env()
