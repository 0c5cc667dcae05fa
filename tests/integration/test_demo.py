"""`hrwsi demo --inputs N`: any number of sample scenes is accepted by the database."""

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from hrwsi import demo, migrations
from hrwsi.configuration import load_file
from hrwsi.database import drop_database, start_embedded, stop_embedded, with_database
from hrwsi.harvest.landing_source import register_source
from hrwsi.settings import Settings
from hrwsi.sql_files import query


def test_the_demo_inserts_any_number_of_sample_scenes_all_in_the_past(db, tmp_path, monkeypatch):
    """Ten rounds of four tiles (the demo adds half a day per round): none is dated in the future, so the
    data engineer's INSERT it shows is not refused, and no scene shares its tile and time with another or
    with the landing directory's."""
    monkeypatch.setattr(demo, "SIZE", 4)  # tiny rasters: the dates are what is tested
    load_file(db, demo.CONFIGURATION)
    now = datetime.now(UTC)
    scenes = demo.write_scenes(tmp_path / "catalogue", 40, now)
    db.execute(demo.INSERT_INPUTS_SQL, {
        "paths": [s["path"] for s in scenes], "tiles": [s["tile"] for s in scenes],
        "missions": [s["mission"] for s in scenes], "measured": [s["measured_at"] for s in scenes],
        "published": [s["published_at"] for s in scenes]})
    assert db.execute("SELECT count(*) FROM hrwsi.input WHERE published_at <= now()").fetchone()[0] == 40
    landing = demo.write_scenes(tmp_path / "landing", 2, now - timedelta(days=1), first_seed=1000)
    every = [(s["tile"], s["measured_at"]) for s in scenes + landing]
    assert len(set(every)) == len(every)


def test_the_summary_of_a_demo_whose_tasks_all_took_the_fast_path_says_it_made_no_plan(db, tmp_path):
    """(it said "plans: 0 (largest: makespan 0.0 s, lower bound 0.0 s, 0 VMs)", figures of no plan)"""
    from rich.console import Console

    load_file(db, demo.CONFIGURATION)
    console = Console(record=True, width=200)
    demo.print_summary(db, console, tmp_path, True, "postgresql://demo@/hrwsi_demo")
    said = console.export_text()
    assert "plans: none (every task started at once on free capacity" in said and "0 VMs" not in said


@pytest.fixture
def demo_database(server_url, tmp_path):
    """The demo's database name on the test server, gone after the test; and the demo's settings there."""
    yield demo.DEMO_DATABASE, Settings(home=tmp_path / "home", database_url=server_url)
    drop_database(server_url, demo.DEMO_DATABASE)


def a_users_database(server_url: str, name: str) -> str:
    """A database of the user's named `name`, holding a table and a row of theirs; its URL. One of that name left on
    the tests' server is dropped first: the demo's own, from a demo test that ran before in the same test process
    (test_cli's whole loop leaves it; CI found this test then failing on CREATE DATABASE)."""
    drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = with_database(server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (42)")
    return url


def test_the_demo_refuses_to_drop_a_database_of_its_name_it_did_not_create(server_url, demo_database):
    """(the demo dropped and recreated `hrwsi_demo` on whatever server HRWSI_DATABASE_URL named: a user's
    database of that name, its tables and rows, was lost)"""
    name, settings = demo_database
    url = a_users_database(server_url, name)
    with pytest.raises(demo.DemoRefused, match="was not created by `hrwsi demo`.*--database <another name>"):
        demo.prepare_database(settings)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id FROM orders").fetchall() == [(42,)]


def test_the_demo_refuses_to_drop_its_database_under_other_sessions_and_names_them(demo_database):
    """(it dropped it WITH (FORCE), ending the sessions of the services a user ran on it)"""
    name, settings = demo_database
    url = demo.prepare_database(settings)
    with psycopg.connect(url, autocommit=True, application_name="their hrwsi up") as theirs:
        pid = theirs.info.backend_pid
        with pytest.raises(demo.DemoRefused, match=rf"in use by 1 other session\(s\) \(pid {pid} .*'their hrwsi up'"):
            demo.prepare_database(settings)
        assert theirs.execute("SELECT 1").fetchone() == (1,)


def test_the_demo_recreates_the_database_it_created_itself(demo_database):
    name, settings = demo_database
    url = demo.prepare_database(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        load_file(conn, demo.CONFIGURATION)
    assert demo.prepare_database(settings) == url
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM hrwsi.processing_routine").fetchone() == (0,)
        assert conn.execute(query("demo_database_marker"), {"name": name}).fetchone() == (demo.DEMO_MARKER,)


def test_the_demo_on_its_embedded_server_recreates_the_database_an_earlier_demo_left_unmarked(monkeypatch):
    """`make demo` after an upgrade: the previous version's demo left `hrwsi_demo` without the marker but with its
    landing source; the demo recreates it as before, and still leaves a user's `hrwsi_demo` alone."""
    monkeypatch.delenv("HRWSI_DATABASE_URL", raising=False)
    home = Path(tempfile.mkdtemp(prefix="h-", dir="/tmp"))  # short: the server's socket path has a length limit
    settings = Settings(home=home)
    try:
        server = start_embedded(settings.pgdata, "postgres")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("CREATE DATABASE hrwsi_demo")
        url = with_database(server, "hrwsi_demo")
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            register_source(conn, name="demo_landing", directory=home / "demo" / "harvest" / "landing",
                            work_directory=home / "demo" / "harvest" / "work", product_type="L1C")
        assert demo.prepare_database(settings) == url
        with psycopg.connect(server) as conn:
            assert conn.execute(query("demo_database_marker"), {"name": "hrwsi_demo"}).fetchone() == (demo.DEMO_MARKER,)
        drop_database(server, "hrwsi_demo")
        a_users_database(server, "hrwsi_demo")
        with pytest.raises(demo.DemoRefused, match="was not created by `hrwsi demo`"):
            demo.prepare_database(settings)
    finally:
        stop_embedded(settings.pgdata)
        shutil.rmtree(home, ignore_errors=True)


def test_after_the_nomad_emulator_demo_the_summary_says_its_cluster_is_gone_and_its_services_hint_runs_local(db, tmp_path):
    """(after `hrwsi demo --backend nomad-emulator`, the hint "run its services again as the demo ran them" started the
    local backend, and `task show` printed Nomad UI links to 127.0.0.1:4646, where nothing listens)"""
    from rich.console import Console

    load_file(db, demo.CONFIGURATION)
    console = Console(record=True, width=400)
    demo.print_summary(db, console, tmp_path, True, "postgresql://demo@/hrwsi_demo", "nomad-emulator")
    said = console.export_text()
    assert "the emulated Nomad cluster ended with the demo, so the Nomad UI links `task show` prints lead nowhere" in said
    assert "run its services again on the local backend (the emulated Nomad cluster ended with the demo)" in said
    assert "as the demo ran them" not in said
    assert said.rstrip().splitlines()[-2].strip().endswith(" up --backend local"), said
