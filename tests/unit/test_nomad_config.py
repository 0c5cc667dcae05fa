"""hrwsi.backends.nomad.config: NomadConfig from Nomad's own environment names and HRWSI_NOMAD_*."""

from __future__ import annotations

import pytest

from hrwsi.backends.nomad.config import NomadConfig


def test_configuration_from_nomads_environment_names():
    config = NomadConfig.from_env({
        "NOMAD_ADDR": "https://nomad.example:4646/", "NOMAD_TOKEN": "tok-123456789", "NOMAD_NAMESPACE": "eo",
        "NOMAD_REGION": "eu-west", "NOMAD_CACERT": "/etc/nomad/ca.pem", "NOMAD_CLIENT_CERT": "/etc/nomad/cli.pem",
        "NOMAD_CLIENT_KEY": "/etc/nomad/cli-key.pem", "NOMAD_SKIP_VERIFY": "true",
        "HRWSI_NOMAD_MHZ_PER_CORE": "2400", "HRWSI_NOMAD_PLACEMENT": "flavour", "HRWSI_NOMAD_PURGE": "false",
        "HRWSI_NOMAD_MAX_CONNECTIONS": "4", "HRWSI_NOMAD_DATACENTERS": "eu-west-1a, eu-west-1b"})
    assert (config.address, config.token, config.namespace, config.region) == \
        ("https://nomad.example:4646", "tok-123456789", "eo", "eu-west")
    assert (config.cacert, config.client_cert, config.client_key, config.skip_verify) == \
        ("/etc/nomad/ca.pem", "/etc/nomad/cli.pem", "/etc/nomad/cli-key.pem", True)
    assert (config.mhz_per_core, config.placement, config.purge, config.max_connections) == (2400, "flavour", False, 4)
    assert config.datacenters == ("eu-west-1a", "eu-west-1b")
    defaults = NomadConfig.from_env({})
    assert (defaults.address, defaults.namespace, defaults.mhz_per_core, defaults.placement, defaults.purge,
            defaults.max_connections) == ("http://127.0.0.1:4646", "default", 1000, "pin", True, 8)
    with pytest.raises(ValueError):
        NomadConfig.from_env({"HRWSI_NOMAD_PLACEMENT": "anywhere"})
    with pytest.raises(ValueError):
        NomadConfig.from_env({"HRWSI_NOMAD_MAX_CONNECTIONS": "500"})


def test_how_long_a_cut_off_client_keeps_an_attempt_is_configured_and_must_be_positive():
    config = NomadConfig.from_env({"HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S": "120", "HRWSI_NOMAD_KILL_TIMEOUT_S": "45"})
    assert (config.stop_after_disconnect_s, config.kill_timeout_s) == (120, 45)
    defaults = NomadConfig.from_env({})
    assert (defaults.stop_after_disconnect_s, defaults.kill_timeout_s) == (60, 30)
    # 0 would be read by Nomad as unset: a cut-off client would keep the attempt running for ever
    with pytest.raises(ValueError, match="HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S must be positive"):
        NomadConfig.from_env({"HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S": "0"})
    with pytest.raises(ValueError, match="HRWSI_NOMAD_KILL_TIMEOUT_S"):
        NomadConfig.from_env({"HRWSI_NOMAD_KILL_TIMEOUT_S": "-1"})
