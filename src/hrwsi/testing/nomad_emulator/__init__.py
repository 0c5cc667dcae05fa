"""An emulator (test double) of the HashiCorp Nomad HTTP API subset hrwsi uses.

No Nomad agent can be installed where hrwsi is developed and tested, so this package stands in
for one: an aiohttp server on 127.0.0.1 that implements, from Nomad's documented semantics (see
docs/adr/0004-nomad-backend.md), job registration with server-side defaults and validation
errors, job/allocation/evaluation/node reads, blocking queries, the event stream (in the framing of
Nomad >= 1.11.3 by default, or of 1.11.2 or 1.10-1.11.1: event_stream.py), dispatch of
parameterized jobs, ACL tokens and policies (acl.py), Variables and templates read through
workload identities (templates.py), scheduling with real capacity checks, node pools, host volumes
and blocked evaluations, clients that really run the task's command (alloc_runner.py: raw_exec,
exec's chroot, docker's volume setting), lost and unknown allocations, and garbage collection.
Each Nomad rule cites the hashicorp/nomad source file it follows. It is a test double, not Nomad:
the contract tests run the same suite against a real agent when NOMAD_ADDR is set, and against
real agents' recorded answers (hrwsi.testing.nomad_recorder).

    async with NomadEmulator(nodes=[EmulatedNode("worker-1", cpu_mhz=4000, memory_mb=8192)]) as emu:
        NomadBackend(NomadConfig(address=emu.address))

Command line: `python -m hrwsi.testing.nomad_emulator --port 4646 --nodes 2`.
"""

from hrwsi.testing.nomad_emulator.cluster import EmulatedNode
from hrwsi.testing.nomad_emulator.server import NomadEmulator

__all__ = ["EmulatedNode", "NomadEmulator"]
