"""The demo's emulated cluster (test double): one emulated Nomad node per worker of the demo configuration.

`hrwsi demo --backend nomad-emulator` runs the launcher's Nomad backend against this emulator:
node names equal the demo's worker names (pin placement) and node classes equal their flavours
(flavour placement); NOMAD_ADDR points at the emulator for the duration of the context.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from hrwsi.testing.nomad_emulator.cluster import EmulatedNode
from hrwsi.testing.nomad_emulator.server import NomadEmulator

MHZ_PER_CORE = 2600  # a realistic clock: Nomad's CpuShares is cores x MHz (client/fingerprint/cpu.go)

# (worker, flavour, cores, ram_mb, disk_mb): as in hrwsi/demo_data/configuration.toml.
DEMO_WORKERS = (
    ("worker-large-01", "eo2.large", 4, 16000, 100_000),
    ("worker-large-02", "eo2.large", 4, 16000, 100_000),
    ("worker-small-01", "eo1.small", 2, 7400, 40_000),
    ("worker-small-02", "eo1.small", 2, 7400, 40_000),
)


def demo_nodes() -> list[EmulatedNode]:
    return [EmulatedNode(name, cpu_mhz=cores * MHZ_PER_CORE, cpu_cores=cores, memory_mb=ram, disk_mb=disk,
                         node_class=flavour)
            for name, flavour, cores, ram, disk in DEMO_WORKERS]


@contextlib.asynccontextmanager
async def emulated_cluster(nodes: list[EmulatedNode] | None = None, **options) -> AsyncIterator[NomadEmulator]:
    """Start the emulator and point NOMAD_ADDR (and HRWSI_NOMAD_MHZ_PER_CORE) at it until the block ends."""
    saved = {k: os.environ.get(k) for k in ("NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_NAMESPACE",
                                            "HRWSI_NOMAD_MHZ_PER_CORE")}
    async with NomadEmulator(nodes if nodes is not None else demo_nodes(), **options) as emulator:
        os.environ["NOMAD_ADDR"] = emulator.address
        os.environ["HRWSI_NOMAD_MHZ_PER_CORE"] = str(MHZ_PER_CORE)
        os.environ.pop("NOMAD_TOKEN", None)
        os.environ.pop("NOMAD_NAMESPACE", None)
        try:
            yield emulator
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
