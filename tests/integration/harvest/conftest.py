"""What ops set for the harvest tests: the test's own directory is the one landing root."""

from __future__ import annotations

import pytest

from hrwsi.harvest.sources import HarvestOptions
from hrwsi.settings import Settings


@pytest.fixture
def harvest_options(tmp_path) -> HarvestOptions:
    return HarvestOptions.from_settings(Settings(home=tmp_path / "home", landing_roots=(tmp_path,)))


@pytest.fixture
def policy(harvest_options):
    """The landing policy: roots and unzip limits."""
    return harvest_options.landing
