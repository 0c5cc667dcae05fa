"""hrwsi.backends.nomad.config: NomadConfig from Nomad's own environment names and HRWSI_NOMAD_*."""

from __future__ import annotations

import uuid

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
    with pytest.raises(ValueError, match="HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S='0': expected a positive number"):
        NomadConfig.from_env({"HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S": "0"})
    with pytest.raises(ValueError, match="HRWSI_NOMAD_KILL_TIMEOUT_S"):
        NomadConfig.from_env({"HRWSI_NOMAD_KILL_TIMEOUT_S": "-1"})


@pytest.mark.parametrize("name, value, says", [
    ("HRWSI_NOMAD_MHZ_PER_CORE", "abc", "expected a number"),         # was "could not convert string to float"
    ("HRWSI_NOMAD_MHZ_PER_CORE", "inf", "positive number"),           # was a job spec refused as the routine's failure
    ("HRWSI_NOMAD_MAX_CONNECTIONS", "2.5", "expected a whole number"),  # was "invalid literal for int()"
    ("HRWSI_NOMAD_PURGE_DELAY_S", "nan", "non-negative number"),
    ("HRWSI_NOMAD_PURGE_DELAY_S", "-5", "non-negative number"),
    ("HRWSI_NOMAD_REQUEST_TIMEOUT_S", "0", "positive number"),
    ("HRWSI_NOMAD_KILL_TIMEOUT_S", "inf", "non-negative number"),
    ("HRWSI_NOMAD_STOP_AFTER_DISCONNECT_S", "1e300", "at most"),
    ("NOMAD_ADDR", "127.0.0.1:4646", "expected http://host:port"),      # was retried as unreachable for 2 minutes
    ("NOMAD_NAMESPACE", "bad/ns", "1-128 letters, digits and hyphens"),
    ("HRWSI_NOMAD_MAX_CONNECTIONS", "1_0", "expected a whole number"),  # int() read 10 (found by review)
    ("HRWSI_NOMAD_MAX_CONNECTIONS", "\u0663", "expected a whole number"),  # and 3
    ("HRWSI_NOMAD_MHZ_PER_CORE", "2_000", "expected a number"),         # float() read 2000.0
    ("HRWSI_NOMAD_MHZ_PER_CORE", "\u0663", "expected a number"),
])
def test_a_setting_that_cannot_work_is_refused_in_one_line_naming_its_variable(name, value, says):
    with pytest.raises(ValueError, match=says) as refused:
        NomadConfig.from_env({name: value})
    assert str(refused.value).startswith(name) and "\n" not in str(refused.value)


@pytest.mark.parametrize("token", [" leading-secret-XYZ", "trailing-secret-XYZ\n", "in\nside-secret-XYZ"])
def test_a_token_that_cannot_be_sent_is_refused_without_being_said(token):
    # requests refused it at every call, quoting it, and the launcher logged that (exploratory testing).
    with pytest.raises(ValueError, match="NOMAD_TOKEN has white space") as refused:
        NomadConfig.from_env({"NOMAD_TOKEN": token})
    assert "secret" not in str(refused.value)


def test_an_address_with_a_password_is_never_said_with_it():
    from hrwsi.backends.nomad import NomadBackend
    from hrwsi.backends.nomad.client import NomadClient
    password, token = uuid.uuid4().hex, str(uuid.uuid4())
    config = NomadConfig.from_env({"NOMAD_ADDR": f"http://user:{password}@127.0.0.1:9", "NOMAD_TOKEN": token})
    client = NomadClient(config)
    said = client.unreachable(f"Failed to connect to http://user:{password}@127.0.0.1:9 with header {token}")
    assert password not in said and token not in said and "127.0.0.1:9" in said
    backend = NomadBackend(config)
    try:
        assert backend.ui_link("hrwsi-a-1-1") == "http://127.0.0.1:9/ui/jobs/hrwsi-a-1-1@default"
    finally:
        backend.client.close()
        client.close()


@pytest.mark.parametrize("name", ["HRWSI_NOMAD_MHZ_PER_CORE", "NOMAD_NAMESPACE", "HRWSI_NOMAD_PLACEMENT"])
def test_a_long_value_is_cut_in_its_error_line_saying_how_long_it_was(name):
    with pytest.raises(ValueError) as refused:
        NomadConfig.from_env({name: "z" * 5000})
    assert len(str(refused.value)) < 400 and "... (5,000 characters)" in str(refused.value)
