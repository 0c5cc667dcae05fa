"""A harvest source's `config` (jsonb) as the harvester and `hrwsi sources` read it.

The database takes any JSON a data engineer writes, nested as deep as they like; Python's JSON
decoder stops at about a thousand levels with a RecursionError. A config nested 5,000 deep made
`hrwsi sources` exit with that error for every source, and the harvester log a traceback and
never run the source, last_error left empty (found by exploratory testing). Read here, such a
config is a ValueError with its reason: the source is set aside and says why, the others go on."""

from __future__ import annotations

import json
from typing import Any


class ConfigUnreadable(ValueError):
    """A source's config that cannot be read as a JSON object; the message says why."""


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
