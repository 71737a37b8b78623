"""The Metrics screen (/insights) through Django's test client, on real
meditation runs: storage per tier and the meditation history as SVG charts
with their tables, the last meditation and its duration; bob sees none of
alice's. And the chart geometry itself."""

from __future__ import annotations

import re

import pytest

from memory import meditation, selectors
from memory.models import MemoryItem
from memory.tests.factories import ctx_for, memory_for
from web.charts import Series, _nice_max, bar_chart, line_chart

pytestmark = pytest.mark.django_db


def _meditate(user, *, dry_run: bool = False):
    return meditation.meditation_run(ctx=ctx_for(user), user=user, dry_run=dry_run)


def test_before_any_meditation_the_page_says_so(alice_web):
    page = alice_web.get("/insights").content.decode()
    assert "No meditation yet" in page
    assert "<svg" not in page
    assert 'id="quotas"' in page  # storage per tier now


def test_the_history_counts_each_finished_run_and_the_bytes_per_tier(alice):
    memory_for(alice, "Alice's garden has three apple trees")
    memory_for(alice, "call the bank", tier="short-term")
    first = _meditate(alice)
    memory_for(alice, "Alice's brother is called Tom", tier="permanent")
    _meditate(alice, dry_run=True)  # a dry run is not history
    second = _meditate(alice)
    nights = selectors.meditation_history(user=alice)
    assert [n.run_id for n in nights] == [first.pk, second.pk]  # oldest first
    assert nights[1].processed == second.processed == 3
    sizes: dict[str, int] = {}
    for item in MemoryItem.objects.filter(user=alice):
        sizes[item.tier] = sizes.get(item.tier, 0) + item.size_bytes
    assert nights[1].storage == sizes
    assert "permanent" not in nights[0].storage
    assert selectors.meditation_history(user=alice, limit=1)[0].run_id == second.pk


def test_the_page_draws_both_charts_with_their_tables(alice, alice_web):
    memory_for(alice, "Alice's garden has three apple trees")
    memory_for(alice, "call the bank", tier="short-term")
    _meditate(alice)
    run = _meditate(alice)
    page = alice_web.get("/insights").content.decode()
    assert page.count('<svg class="chart-svg') == 2
    assert page.count("<polyline") == 3  # a line per tier
    assert len(re.findall(r"<rect ", page)) == 2 * 4  # 2 nights x 4 counts
    assert f"{run.duration_ms} ms" in page
    assert '<th scope="col">processed</th>' in page
    assert '<th scope="col">long-term</th>' in page
    assert 'style="' not in page  # the strict CSP allows no inline style


def test_bob_sees_none_of_alices_meditations(alice, bob_web):
    memory_for(alice, "Alice's garden has three apple trees")
    _meditate(alice)
    page = bob_web.get("/insights").content.decode()
    assert "No meditation yet" in page and "<svg" not in page
    assert selectors.meditation_history(user=alice)  # alice's is there


def test_the_chart_scale_and_geometry():
    assert [_nice_max(v) for v in (0, 1, 3, 7, 24, 1000, 1001)] == [
        1,
        1,
        5,
        10,
        25,
        1000,
        2000,
    ]
    bars = bar_chart("t", ["a", "b"], [Series("x", [10, 5]), Series("y", [0, 10])])
    (x, y) = bars.drawn
    assert x.bars[0].height == y.bars[1].height > 0  # 10 and 10, one scale
    assert x.bars[1].height == pytest.approx(x.bars[0].height / 2, abs=0.1)
    assert y.bars[0].height == 0
    assert x.bars[0].y + x.bars[0].height == bars.baseline
    assert [t.label for t in bars.ticks] == ["0", "2.5", "5", "7.5", "10"]
    line = line_chart(
        "t", ["a", "b", "c"], [Series("s", [0, 2048, 1024])], unit="bytes"
    )
    points = [p.split(",") for p in line.drawn[0].points.split()]
    assert float(points[0][1]) == line.baseline  # 0 on the baseline
    assert float(points[1][1]) < float(points[2][1]) < line.baseline
    assert line.ticks[-1].label == "2.0 KB"
    assert line.rows == [("a", [0]), ("b", [2048]), ("c", [1024])]
    single = line_chart("t", ["a"], [Series("s", [5])])
    assert single.x_labels[0].label == "a"
