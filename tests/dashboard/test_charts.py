"""The SVG charts: well-formed, escaped, honest about missing values, self-contained."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from decimal import Decimal

import pytest

from meshagent.dashboard.charts import bar_chart, line_chart, nice_scale
from meshagent.ledger.render import money

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ElementTree.Element:
    return ElementTree.fromstring(str(markup))


@pytest.mark.parametrize(
    "top, scale",
    [
        (0, (1.0, 0.25)),
        (7, (8, 2)),
        (10, (10, 2.5)),
        (0.0084, (0.01, 0.0025)),
        (12500, (20000, 5000)),
    ],
)
def test_nice_scale_rounds_the_axis_up(top, scale):
    maximum, step = nice_scale(top)
    assert maximum == pytest.approx(scale[0]) and step == pytest.approx(scale[1])
    assert maximum >= top


def test_bars_are_proportional_and_labelled():
    chart = _parse(
        bar_chart([("big", Decimal("0.30")), ("mid", Decimal("0.15"))], title="Cost", fmt=money)
    )
    widths = [float(rect.get("width")) for rect in chart.iter(f"{SVG}rect")]
    assert widths[0] == pytest.approx(2 * widths[1])
    texts = [text.text for text in chart.iter(f"{SVG}text")]
    assert "$0.30" in texts and "$0.15" in texts
    assert chart.find(f"{SVG}title").text == "Cost"
    assert chart.get("role") == "img"


def test_a_missing_value_draws_no_bar_and_says_why():
    chart = _parse(bar_chart([("a", 3), ("b", None)], title="t", missing="unknown"))
    assert len(list(chart.iter(f"{SVG}rect"))) == 1
    assert "unknown" in [text.text for text in chart.iter(f"{SVG}text")]


def test_labels_are_escaped():
    markup = str(bar_chart([("<script>alert(1)</script>", 1)], title="a & b"))
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    _parse(markup)


def test_lines_break_at_gaps_and_mark_every_known_point():
    chart = _parse(
        line_chart(
            ["w1", "w2", "w3", "w4", "w5"],
            [("cost", [1, 2, None, 3, 4]), ("runs", [None] * 5)],
            title="Trend",
        )
    )
    lines = list(chart.iter(f"{SVG}polyline"))
    assert len(lines) == 2  # w1-w2 and w4-w5, nothing across the withheld week
    assert len(list(chart.iter(f"{SVG}circle"))) == 4
    legend = [text.text for text in chart.iter(f"{SVG}text") if text.get("class") == "legend"]
    assert legend == ["cost", "runs"]


def test_many_labels_are_thinned_but_the_latest_is_kept():
    labels = [f"d{i}" for i in range(31)]
    chart = _parse(line_chart(labels, [("x", list(range(31)))], title="t"))
    ticks = [t.text for t in chart.iter(f"{SVG}text") if t.get("class") == "tick"]
    shown = [t for t in ticks if t.startswith("d")]
    assert shown[-1] == "d30" and len(shown) <= 8


def test_no_data_says_so():
    chart = _parse(line_chart(["a"], [("x", [None])], title="t"))
    assert "no data to show" in [t.text for t in chart.iter(f"{SVG}text")]
    assert "no data" in [t.text for t in _parse(bar_chart([], title="t")).iter(f"{SVG}text")]


def test_charts_reference_nothing_outside():
    markup = str(line_chart(["a", "b"], [("x", [1, 2])], title="t")) + str(
        bar_chart([("a", 1)], title="t")
    )
    assert "href" not in markup and "url(" not in markup and "<image" not in markup
