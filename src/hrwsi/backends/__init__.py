"""Where jobs run: the backend contract (`base`) and its adapters (local, dry-run, nomad).

`make_backend` is the one registry of backends by name (HRWSI_BACKEND, `--backend`); each adapter
is imported only when chosen, so a launcher with the local backend never loads the Nomad client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hrwsi.backends.base import Backend
    from hrwsi.settings import Settings

BACKEND_NAMES = ("local", "nomad", "dry-run")


def check_backend_settings(name: str) -> None:
    """Raise ValueError, in one sentence, for a backend `make_backend` would refuse: an unknown name, or the Nomad
    backend's settings (NOMAD_ADDR, HRWSI_NOMAD_*) that are not what they should be. Read before a launcher starts
    anything: the refusal came after the process had logged its start and applied migrations (found by review)."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}: choose {', '.join(BACKEND_NAMES)} (HRWSI_BACKEND)")
    if name == "nomad":
        from hrwsi.backends.nomad import NomadConfig

        NomadConfig.from_env()


def make_backend(name: str, settings: Settings) -> Backend:
    """The backend called `name`, configured from settings (and, for Nomad, its NOMAD_* environment)."""
    if name == "local":
        from hrwsi.backends.local import LocalBackend

        return LocalBackend(settings.max_parallel_jobs, site_dir=settings.data_dir,
                            log_cap=settings.job_log_max_bytes)
    if name == "dry-run":
        from hrwsi.backends.dry_run import DryRunBackend

        return DryRunBackend()
    if name == "nomad":
        from hrwsi.backends.nomad import NomadBackend, NomadConfig

        return NomadBackend(NomadConfig.from_env())
    raise ValueError(f"unknown backend {name!r}: choose {', '.join(BACKEND_NAMES)} (HRWSI_BACKEND)")
