"""`hrwsi demo --inputs N`: any number of sample scenes is accepted by the database."""

from datetime import UTC, datetime, timedelta

from hrwsi import demo
from hrwsi.configuration import load_file


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
