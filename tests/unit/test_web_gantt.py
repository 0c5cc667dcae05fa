"""hrwsi.web.gantt: each worker's parallel tasks on rows of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from hrwsi.web.gantt import assign_rows, layout

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def overlap(a, b) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def test_overlapping_tasks_get_separate_rows_and_a_free_row_is_reused():
    rows = assign_rows([(1, 0, 10), (2, 5, 15), (3, 10, 20), (4, 12, 13)])
    assert rows[1] != rows[2]
    assert rows[3] == rows[1], "task 3 starts when task 1 ends: same row"
    assert rows[4] not in (rows[2], rows[3])
    assert max(rows.values()) == 2, "three tasks at once need three rows, not four"


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(1, 30)), max_size=40))
def test_no_two_tasks_of_a_row_overlap_and_rows_match_the_peak(spans):
    intervals = [(i, float(start), float(start + length)) for i, (start, length) in enumerate(spans)]
    rows = assign_rows(intervals)
    assert set(rows) == {i for i, _, _ in intervals}
    for a in intervals:
        for b in intervals:
            if a[0] < b[0] and overlap(a, b):
                assert rows[a[0]] != rows[b[0]]
    peak = max((sum(1 for j in intervals if j[1] <= t < j[2]) for _, t, _ in intervals), default=0)
    assert max(rows.values(), default=-1) + 1 == peak


def schedule_row(task_id, worker, start_min, minutes, state="planned", cpu=1.0):
    return {"id": task_id, "routine": "maja", "state": state, "worker": worker,
            "start_at": NOW + timedelta(minutes=start_min), "end_at": NOW + timedelta(minutes=start_min + minutes),
            "cpu": cpu, "ram_mb": 1000, "storage_mb": 100}


WORKERS = [{"name": "w1", "flavour": "f", "active": True, "cpu": 4.0, "ram_mb": 16000, "disk_mb": 1},
           {"name": "w2", "flavour": "f", "active": False, "cpu": 4.0, "ram_mb": 16000, "disk_mb": 1}]


def test_the_chart_draws_parallel_tasks_of_a_worker_apart_and_shows_its_peak_use():
    chart = layout([schedule_row(1, "w1", 0, 10, "running", cpu=2), schedule_row(2, "w1", 5, 10, cpu=2),
                    schedule_row(3, "w1", 20, 5)], WORKERS, None, NOW)
    bars = {b.task_id: b for b in chart.bars}
    assert bars[1].y != bars[2].y, "two tasks at once on w1 are on two rows"
    assert bars[3].y == bars[1].y
    w1, w2 = chart.lanes
    assert (w1.worker, w1.rows, w1.tasks, w1.peak_cpu) == ("w1", 2, 3, 4.0)
    assert (w2.worker, w2.active, w2.tasks) == ("w2", False, 0), "an idle or inactive worker still has its lane"
    assert w2.y >= w1.y + w1.h, "lanes do not overlap"
    assert bars[2].x > bars[1].x and bars[1].w > 0
    assert chart.usage_peak["cpu"] == 1.0, "4 CPU in use of the 4 the active workers offer"
    assert chart.plot_x <= chart.now_x <= chart.plot_x + chart.plot_w


def test_the_budget_caps_the_capacity_use_is_measured_against():
    chart = layout([schedule_row(1, "w1", 0, 10, cpu=2)], WORKERS, {"cpu_max": 2, "ram_max_mb": None, "vm_max": None},
                   NOW)
    assert chart.usage_peak["cpu"] == 1.0


def test_an_empty_schedule_still_draws_the_workers_and_the_time_axis():
    chart = layout([], WORKERS, None, NOW)
    assert [lane.worker for lane in chart.lanes] == ["w1", "w2"] and chart.bars == []
    assert chart.ticks and chart.height > 0


def test_the_axis_and_the_titles_are_in_utc_and_say_so_whatever_the_zone_of_the_times_given():
    # (the labels were in the zone of the earliest time given, the titles said UTC: found by exploratory testing)
    auckland = timezone(timedelta(hours=13))
    row = {**schedule_row(1, "w1", 0, 10), "start_at": NOW.astimezone(auckland),
           "end_at": (NOW + timedelta(minutes=10)).astimezone(auckland)}
    chart = layout([row], WORKERS, None, NOW.astimezone(auckland) - timedelta(minutes=1))
    assert chart.zone == "UTC"
    assert "12:00:00 - 12:10:00 UTC" in chart.bars[0].title
    labels = [label for _, label in chart.ticks]
    assert labels[:2] == ["11:55", "12:00"], labels  # (they said 00:55, 01:00: the times given were at +13:00)
