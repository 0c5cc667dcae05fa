"""Where jobs run: the backend registry. The contract every backend fulfils is `hrwsi.backends.base.Backend`."""

from __future__ import annotations

from hrwsi.backends.base import Backend
from hrwsi.settings import Settings

BACKENDS = ("local", "nomad", "dry-run")


def make_backend(name: str, settings: Settings) -> Backend:
    """The backend called `name` (HRWSI_BACKEND), configured from `settings` and the environment."""
    if name == "local":
        from hrwsi.backends.local import LocalBackend

        return LocalBackend(settings.max_parallel_jobs)
    if name == "dry-run":
        from hrwsi.backends.dry_run import DryRunBackend

        return DryRunBackend()
    if name == "nomad":
        from hrwsi.backends.nomad import NomadBackend, NomadConfig

        return NomadBackend(NomadConfig.from_env())
    raise ValueError(f"unknown backend {name!r}: choose local, nomad or dry-run (HRWSI_BACKEND)")

