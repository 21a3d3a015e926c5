"""Server-side chart geometry: scales, gaps, threshold steps and labels."""

import pytest

from clm_lib.reporting.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    MAX_DECADES,
    RIGHT,
    TOP,
    WIDTH,
    LinearScale,
    LogPScale,
    Point,
    compact,
    p_label,
    series_chart,
    strip_chart,
)


def _pt(slot, value, threshold=0.05, classes="pt pt-ok"):
    return Point(slot, value, threshold, classes, f"check {slot}")


def test_log_p_scale_puts_small_p_values_up_and_caps_the_depth():
    scale = LogPScale.fitting([0.5, 0.003, None, 0.05])
    assert scale.decades == 3  # 0.003 is 2.5 decades down, rounded up to a whole decade
    assert scale.unit(1.0) == 0 and scale.unit(0.001) == 1 and scale.unit(0.01) == pytest.approx(2 / 3)
    assert not scale.off_scale(0.001) and scale.off_scale(1e-4)
    assert [label for _, label in scale.ticks()] == ["1", "0.1", "0.01", "0.001"]

    deep = LogPScale.fitting([1e-300, 0.0])  # chi-square underflow must not flatten every other point
    assert deep.decades == MAX_DECADES and deep.off_scale(0.0) and deep.unit(0.0) == 1
    assert [label for _, label in deep.ticks()][-1] == "1e-10" and len(deep.ticks()) == 6  # every other decade


def test_linear_scale_tops_at_a_round_number_above_every_value():
    scale = LinearScale.fitting([300, 2300, None, 2000])
    assert scale.top == 3000 and scale.unit(1500) == 0.5 and scale.unit(-5) == 0
    assert [label for _, label in scale.ticks()] == ["0", "1.5k", "3k"]
    assert LinearScale.fitting([None]).top == 1.0


def test_series_chart_breaks_its_line_where_nothing_was_measured():
    points = [_pt(0, 0.5), _pt(1, 0.2), _pt(2, None, classes="pt pt-na"), _pt(3, 0.01), _pt(4, 0.002), _pt(6, 0.3)]
    chart = series_chart(points, 7, [(0, "first"), (6, "last")], LogPScale.fitting([0.002, 0.05]))

    assert [len(line.split()) for line in chart.lines] == [2, 2]  # slot 6 stands alone: slot 5 has no point
    assert len(chart.marks) == 6 and chart.marks[2].classes == "pt pt-na"
    xs = [float(m.d[1:].split(",")[0]) for m in chart.marks]
    assert xs == sorted(xs) and xs[0] > LEFT and xs[-1] < WIDTH - RIGHT
    assert [t.label for t in chart.x_ticks] == ["first", "last"]
    assert chart.height == HEIGHT and TOP <= chart.threshold_label_y <= HEIGHT - BOTTOM


def test_threshold_is_a_step_line_when_it_changed():
    points = [_pt(0, 300, threshold=200), _pt(1, 400, threshold=2000), _pt(2, 900, threshold=2000)]
    chart = series_chart(points, 3, [], LinearScale.fitting([300, 400, 900, 200, 2000]))

    coords = [tuple(map(float, xy.split(","))) for xy in chart.threshold.split()]
    assert coords[0][0] == LEFT and coords[-1][0] == WIDTH - RIGHT  # spans the whole plot
    assert len({y for _, y in coords}) == 2 and coords[0][1] > coords[-1][1]  # 200 drawn below 2000
    assert chart.threshold_label == "≥ 2k"


def test_strip_lines_up_with_series_and_carries_notes():
    points = [_pt(0, None), Point(1, None, None, "pt pt-drift", "retrained", halo=True)]
    strip = strip_chart(points, 2, {1: "v2"})
    series = series_chart([_pt(0, 0.5), _pt(1, 0.5)], 2, [(1, "slot 1")], LogPScale(2))

    assert [m.d.split(",")[0] for m in strip.marks] == [m.d.split(",")[0] for m in series.marks]
    assert strip.marks[1].halo and strip.marks[0].halo is None
    assert [(n.text, n.x) for n in strip.notes] == [("v2", series.x_ticks[0].at)]


@pytest.mark.parametrize(
    ("p", "text"),
    [(1.0, "1"), (0.05, "0.05"), (0.00498, "0.00498"), (4.4e-6, "4e-6"), (1e-20, "1e-20"), (0, "< 1e-300")],
)
def test_p_labels(p, text):
    assert p_label(p) == text


def test_compact_counts():
    assert [compact(v) for v in (0, 950, 2000, 2500, 1_250_000)] == ["0", "950", "2k", "2.5k", "1.25M"]
