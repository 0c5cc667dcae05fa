"""A harvest source's `config` (jsonb) as the harvester and `hrwsi sources` read it.

The database takes any JSON a data engineer writes, nested as deep as they like; Python's JSON
decoder stops at about a thousand levels with a RecursionError. A config nested 5,000 deep made
`hrwsi sources` exit with that error for every source, and the harvester log a traceback and
never run the source, last_error left empty (found by exploratory testing). Read here, such a
config is a ValueError with its reason: the source is set aside and says why, the others go on."""

from __future__ import annotations

import fnmatch
import json
import os
from typing import Any


class ConfigUnreadable(ValueError):
    """A source's config that cannot be read as a JSON object; the message says why."""


def json_number(value: Any) -> float:
    """A config value as the number it writes: NaN when it is no JSON number (text, a boolean, null...), infinity
    for an integer too large for a float (float() of it raised OverflowError), so that a bounds check refuses it."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return float("nan")
    return float(value) if isinstance(value, float) or abs(value) < 2**1000 else float("inf")


def config_of(config: Any) -> dict:
    """The config as a dict, from the dict or the JSON text the database drivers give."""
    if isinstance(config, dict):
        return config
    try:
        value = json.loads(config)
    except RecursionError:
        raise ConfigUnreadable("its config is nested too deeply to be read (more than about a thousand levels "
                               "of arrays or objects): fix or remove the source") from None
    except (TypeError, ValueError) as error:
        raise ConfigUnreadable(f"its config is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ConfigUnreadable(f"its config is a JSON {type(value).__name__}, not an object")
    return value


# The environment variables a source's config may name (auth.*_env): ops' HRWSI_SOURCE_SECRETS,
# names or shell patterns separated by commas, by default CDSE_* (the Copernicus Data Space
# credentials). The harvester's environment also holds hrwsi's own secrets (the database URL with
# its password, the dashboard's token, NOMAD_TOKEN...), and the data engineer who writes the row is
# not who may read them: a source naming HRWSI_DATABASE_URL as its password had it sent to its url
# and written in last_error (found by exploratory testing). Names of hrwsi's own settings and of the
# tools it talks to are refused even when a pattern matches them (HRWSI_SOURCE_SECRETS=*).
SOURCE_SECRETS_SETTING = "HRWSI_SOURCE_SECRETS"
DEFAULT_SOURCE_SECRETS = "CDSE_*"
NEVER_SOURCE_SECRETS = ("HRWSI_*", "NOMAD_*", "PG*", "DATABASE_URL", "VAULT_*", "CONSUL_*", "AWS_*",
                        "GOOGLE_*", "AZURE_*")


def source_secret_patterns(environ: dict[str, str] | None = None) -> list[str]:
    raw = (environ if environ is not None else os.environ).get(SOURCE_SECRETS_SETTING)
    raw = DEFAULT_SOURCE_SECRETS if raw is None or not raw.strip() else raw
    return [part.strip() for part in raw.split(",") if part.strip()]


def source_may_read(variable: str, environ: dict[str, str] | None = None) -> str | None:
    """None when a source's config may name this environment variable; else why not."""
    if any(fnmatch.fnmatchcase(variable, pattern) for pattern in NEVER_SOURCE_SECRETS):
        return (f"{variable} is hrwsi's own setting or another tool's, never a source's (sources may not name "
                f"{', '.join(NEVER_SOURCE_SECRETS)})")
    patterns = source_secret_patterns(environ)
    if not any(fnmatch.fnmatchcase(variable, pattern) for pattern in patterns):
        return (f"{variable} is not among the variables sources may read ({SOURCE_SECRETS_SETTING}="
                f"{','.join(patterns)}; ops add names or patterns there)")
    return None
