"""hrwsi: a PostgreSQL LISTEN/NOTIFY reactive engine for Earth-observation production."""

__version__ = "0.1.0"
