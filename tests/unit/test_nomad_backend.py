"""hrwsi.backends.nomad.backend: what NomadBackend is without a Nomad to talk to."""

from __future__ import annotations

from hrwsi.backends.nomad import NomadBackend, NomadConfig


def test_ui_link_and_identity():
    backend = NomadBackend(NomadConfig(address="https://nomad.example:4646", namespace="eo"))
    try:
        assert backend.name == "nomad" and backend.resubmit_is_idempotent is True
        assert backend.ui_link("hrwsi-snow_cover-42-2") == "https://nomad.example:4646/ui/jobs/hrwsi-snow_cover-42-2@eo"
        assert backend.ui_link("p/dispatch-1-ab") == "https://nomad.example:4646/ui/jobs/p%2Fdispatch-1-ab@eo"
    finally:
        backend.client.close()
