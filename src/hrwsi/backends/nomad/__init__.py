"""The Nomad backend: each attempt of a task is a Nomad batch job with a deterministic ID.

One module per job:
- `config`: NomadConfig, from NOMAD_* and HRWSI_NOMAD_* variables;
- `job_spec`: the job of one attempt (pure) and the no-secret check;
- `client`: the HTTP API from asyncio (python-nomad in a bounded thread pool, retries);
- `event_stream`: one connection to /v1/event/stream;
- `following`: following jobs to their end (the event stream, or blocking queries) and `outcomes`,
  how an allocation ended; `task_logs`: the task's stdout/stderr kept in the attempt's log;
- `workers`: Nomad's nodes as hrwsi workers and flavours (`hrwsi workers sync`);
- `backend`: NomadBackend, the `Backend` the launcher uses.

The Nomad API emulator (a test double) is `hrwsi.testing.nomad_emulator`; docs/adr/0004-nomad-backend.md
says why the backend works the way it does.
"""

from hrwsi.backends.nomad.backend import NomadBackend
from hrwsi.backends.nomad.client import NomadError
from hrwsi.backends.nomad.config import NomadConfig
from hrwsi.backends.nomad.job_spec import build_job

__all__ = ["NomadBackend", "NomadConfig", "NomadError", "build_job"]
