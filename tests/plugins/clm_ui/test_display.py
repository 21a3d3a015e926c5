from datetime import UTC, datetime, timedelta

import pytest
from clm_ui import display

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "css"),
    [(None, "heat-none"), (0.0, "heat-0"), (9.99, "heat-0"), (10.0, "heat-1"), (89.9, "heat-8"), (100.0, "heat-10"),
     (-3.0, "heat-0"), (104.0, "heat-10")],
)  # fmt: skip
def test_heat_buckets_cover_0_to_100(value, css):
    assert display.heat(value) == css


def test_numbers_read_well():
    assert (display.pct(88.125), display.pct(None)) == ("88.1", "—")
    assert (display.signed(-12.5), display.signed(3.0), display.signed(-0.04), display.signed(None)) == (
        "-12.5", "+3.0", "0.0", "—",
    )  # fmt: skip
    assert display.count(1234567) == "1,234,567"


def test_times_read_well():
    assert display.when(datetime(2026, 11, 24, 9, 5, 59, tzinfo=UTC)) == "2026-11-24 09:05 UTC"
    assert display.ago(NOW - timedelta(seconds=30), NOW) == "just now"
    assert display.ago(NOW - timedelta(minutes=3, seconds=59), NOW) == "3 min ago"
    assert display.ago(NOW - timedelta(days=2, hours=5), NOW) == "2 d ago"
    assert display.duration(NOW, NOW + timedelta(seconds=7)) == "7 s"
    assert display.duration(NOW, NOW + timedelta(minutes=3, seconds=5)) == "3 min 05 s"
    assert display.duration(NOW, NOW + timedelta(hours=2, minutes=1)) == "2 h 01 min"
    assert display.duration(NOW, None) == "—"


def test_deployment_times_read_well():
    assert display.clock(datetime(2026, 11, 24, 9, 5, 59, tzinfo=UTC)) == "09:05:59"
    assert (display.millis(12.4), display.millis(999.6), display.millis(1534.0), display.millis(None)) == (
        "12 ms", "1.0 s", "1.5 s", "—",
    )  # fmt: skip
