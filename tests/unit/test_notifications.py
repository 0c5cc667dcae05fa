"""Notification payloads and routing."""

from hrwsi.listener import Notification
from hrwsi.service import Router
from hrwsi.sql_files import parse_named_blocks, queries


def test_parse_counts_payload():
    n = Notification.parse("hrwsi_task", '{"op": "update", "counts": {"planned": 3, "processed": 1}}')
    assert (n.op, n.count, n.counts) == ("update", 4, {"planned": 3, "processed": 1})


def test_unreadable_payload_still_wakes():
    n = Notification.parse("hrwsi_input", "not json")
    assert n.channel == "hrwsi_input" and n.count == 0


def test_router_wakes_only_matching_steps_with_their_debounce():
    router = Router()
    router.on("hrwsi_input", "multi_input")
    router.on("hrwsi_task", "plan", when=lambda n: "pending" in n.counts, debounce_s=0.03)
    router.on("hrwsi_task", "dispatch", when=lambda n: "pending" in n.counts)
    assert router.steps_for(Notification("hrwsi_input", count=1)) == {"multi_input": 0.0}
    assert router.steps_for(Notification("hrwsi_task", counts={"pending": 2})) == {"plan": 0.03, "dispatch": 0.0}
    assert router.steps_for(Notification("hrwsi_task", counts={"running": 2})) == {}
    assert router.channels == ("hrwsi_input", "hrwsi_task")


def test_a_debounce_that_follows_a_setting_is_read_at_each_notification():
    setting = {"plan_after_s": 2.0}
    router = Router()
    router.on("hrwsi_task", "plan", debounce_s=lambda: setting["plan_after_s"] + 0.03)
    assert router.steps_for(Notification("hrwsi_task", counts={"pending": 1})) == {"plan": 2.03}
    setting["plan_after_s"] = 0.0
    assert router.steps_for(Notification("hrwsi_task", counts={"pending": 1})) == {"plan": 0.03}


def test_named_blocks():
    blocks = parse_named_blocks("-- name: a\nSELECT 1;\n\n-- name: b\n-- why\nSELECT 2;\n")
    assert blocks == {"a": "SELECT 1;", "b": "-- why\nSELECT 2;"}


def test_every_shipped_query_is_loadable():
    assert {"dispatch", "record_outcomes", "store_plan", "chain_products"} <= set(queries())


def test_unreadable_payloads_are_said_once_a_minute_with_how_many_came(caplog, monkeypatch):
    """Any role may NOTIFY on hrwsi's channels: a read-only one's 1,000 pg_notify calls wrote 4,000
    warnings (found by exploratory testing)."""
    import logging

    from hrwsi import listener
    monkeypatch.setattr(listener, "_unreadable", {"said_at": None, "since": 0})
    caplog.set_level(logging.WARNING, logger="hrwsi.listener")
    for n in range(1000):
        assert Notification.parse("hrwsi_task", f"junk {n}").count == 0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("ignoring 1 unreadable payload(s)") and "'junk 0'" in said[0]
    monkeypatch.setattr(listener, "UNREADABLE_SAID_EVERY_S", 0.0)
    Notification.parse("hrwsi_job", "junk again")
    assert caplog.records[-1].getMessage().startswith("ignoring 1000 unreadable payload(s)")
