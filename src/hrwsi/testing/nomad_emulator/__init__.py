"""An emulator (test double) of the HashiCorp Nomad HTTP API subset hrwsi uses.

No Nomad agent can be installed where hrwsi is developed and tested, so this package stands in
for one: an aiohttp server on 127.0.0.1 that implements, from Nomad's documented semantics (see
docs/adr/0004-nomad-backend.md), job registration with server-side defaults and validation
errors, job/allocation/evaluation/node reads, blocking queries, the event stream, dispatch of
parameterized jobs, ACL token checks, scheduling with real capacity checks and blocked
evaluations, a raw_exec-like driver that really runs the task's command, lost nodes, and garbage
collection. It is a test double, not Nomad: the contract tests run the same suite against a real
agent when NOMAD_ADDR is set.

    async with NomadEmulator(nodes=[EmulatedNode("worker-1", cpu_mhz=4000, memory_mb=8192)]) as emu:
        NomadBackend(NomadConfig(address=emu.address))

Command line: `python -m hrwsi.testing.nomad_emulator --port 4646 --nodes 2`.
"""

from hrwsi.testing.nomad_emulator.cluster import EmulatedNode
from hrwsi.testing.nomad_emulator.server import NomadEmulator

__all__ = ["EmulatedNode", "NomadEmulator"]
