"""hrwsi.timeliness: delays and shares as people read them."""

import pytest

from hrwsi.timeliness import duration_text, share_text


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0, "0 s"), (59.4, "59 s"), (60, "1.0 min"), (754, "12.6 min"), (3600, "1.0 h"),
    (12_600, "3.5 h"), (2 * 86400 - 1, "48.0 h"), (2 * 86400, "2.0 d"), (-90, "-1.5 min"),
    (364 * 86400, "364.0 d"), (365.25 * 86400, "1.0 years"),
    (2_052_466_560, "65.0 years"),  # a scene sensed in 1950 (it was "23755.4 d")
    (-3 * 365.25 * 86400, "-3.0 years"),
])
def test_a_delay_is_written_in_the_unit_that_reads_best(seconds, text):
    assert duration_text(seconds) == text


def test_the_share_on_time_counts_only_products_that_had_a_deadline():
    assert share_text(97, 100) == "97.0 % (97/100)"
    assert share_text(0, 3) == "0.0 % (0/3)"
    assert share_text(0, 0) == "-"
