"""hrwsi.web.live: notifications merged and pushed to open pages, at a bounded rate."""

from __future__ import annotations

import json

from hrwsi.listener import Notification
from hrwsi.web.live import CHANNELS, MIN_INTERVAL_S, TICK_S, LiveHub, Subscriber


def sent(subscriber: Subscriber) -> dict:
    change = subscriber.take()
    assert change is not None
    event = change.event().decode()
    assert event.startswith("event: change\ndata: ") and event.endswith("\n\n")
    return json.loads(event.split("data: ", 1)[1])


def test_a_burst_of_notifications_is_one_event_naming_every_channel_and_count():
    hub = LiveHub()
    page = Subscriber()
    hub.subscribers.add(page)
    hub.collect(Notification("hrwsi_task", "update", 3, {"planned": 3}))
    hub.collect(Notification("hrwsi_task", "update", 2, {"planned": 1, "running": 1}))
    hub.collect(Notification("hrwsi_job", "insert", 1, {"submitted": 1}))
    assert hub.flush(now=100.0) is not None
    assert sent(page) == {"channels": ["hrwsi_job", "hrwsi_task"],
                          "counts": {"planned": 4, "running": 1, "submitted": 1}, "tick": True}
    assert page.take() is None, "nothing twice"


def test_events_are_spaced_by_the_minimum_interval_and_nothing_is_lost_meanwhile():
    hub = LiveHub()
    page = Subscriber()
    hub.subscribers.add(page)
    hub.collect(Notification("hrwsi_input", "insert", 1))
    hub.flush(now=100.0)
    sent(page)
    hub.collect(Notification("hrwsi_product", "insert", 1))
    assert hub.due_in(now=100.1) > 0
    assert hub.due_in(now=100.0 + MIN_INTERVAL_S) == 0
    hub.flush(now=100.0 + MIN_INTERVAL_S)
    assert sent(page)["channels"] == ["hrwsi_product"]


def test_a_quiet_hub_sends_only_a_tick_every_tick_period():
    hub = LiveHub()
    page = Subscriber()
    hub.subscribers.add(page)
    hub.flush(now=1000.0)
    assert sent(page) == {"channels": [], "counts": {}, "tick": True}
    assert hub.flush(now=1000.0 + TICK_S / 2) is None
    assert hub.flush(now=1000.0 + TICK_S) is not None


def test_after_a_reconnect_pages_hear_that_everything_may_have_changed():
    hub = LiveHub()
    page = Subscriber()
    hub.subscribers.add(page)
    hub.collect_everything()
    hub.flush(now=50.0)
    assert sent(page)["channels"] == ["hrwsi_input", "hrwsi_job", "hrwsi_product", "hrwsi_task"]


def test_work_under_way_told_on_its_own_channels_is_a_change_of_its_table_to_a_page():
    # (migration 0043: dispatched, submitted, queued and running are told on hrwsi_task_progress and
    # hrwsi_job_progress, which no service listens to; a page that shows tasks must still refresh)
    assert {"hrwsi_task_progress", "hrwsi_job_progress"} <= set(CHANNELS), "the dashboard listens to them"
    hub = LiveHub()
    page = Subscriber()
    hub.subscribers.add(page)
    hub.collect(Notification("hrwsi_task_progress", "update", 2, {"dispatched": 2}))
    hub.collect(Notification("hrwsi_job_progress", "insert", 2, {"submitted": 2}))
    hub.flush(now=70.0)
    assert sent(page) == {"channels": ["hrwsi_job", "hrwsi_task"], "counts": {"dispatched": 2, "submitted": 2},
                          "tick": True}


def test_a_slow_page_gets_the_merge_of_what_it_missed():
    page = Subscriber()
    hub = LiveHub()
    hub.subscribers.add(page)
    for n, channel in enumerate(("hrwsi_input", "hrwsi_task", "hrwsi_job")):
        hub.collect(Notification(channel, "insert", 1, {"pending": 1}))
        hub.flush(now=10.0 + n)
    assert page.ready.is_set()
    assert sent(page)["channels"] == ["hrwsi_input", "hrwsi_job", "hrwsi_task"]
