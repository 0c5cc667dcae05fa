"""The `hrwsi` command line, one module per command group:

- `common`: the root `app`, consoles, settings and database URL, JSON output, `--debug`;
- `errors`: every failure as one line saying what to do, with its exit code;
- `db`: db start/stop/url/init/check; `services`: harvester, orchestrator, launcher, up, health;
- `operations`: retry, cancel, hold, release, prune; `configuration`: config load/validate/show/keys;
- `inspection`: status, tasks, task show, lineage, alerts, sources, plan show (each with --json);
  `logs`: an attempt's log; `views`: tables drawn for the terminal;
- `production`: timeliness, reprocess, campaigns (ADR 0010);
- `nomad`: workers sync, nomad-emulator; `demo`: the demo.
"""

from hrwsi.cli import configuration, db, demo, inspection, logs, nomad, operations, production, services  # noqa: F401
from hrwsi.cli.common import app

__all__ = ["app"]
