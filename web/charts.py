"""Small charts drawn on the server as SVG geometry (web/templates/web/_chart.html
draws it): a line per series, or grouped bars. No script, no library, no
inline style, so the strict CSP holds; each chart also comes as a table."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log10

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 40, 12, 36  # room for the axis labels
TICKS = 4
MAX_LABELS = 8  # x labels shown at most (every nth one)


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float]


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Drawn:
    name: str
    index: int  # its colour: the .series-<index> class
    points: str  # a polyline's points
    bars: list[Bar]


@dataclass(frozen=True)
class Chart:
    title: str
    kind: str  # "line" | "bars"
    labels: list[str]
    series: list[Series]
    drawn: list[Drawn]
    ticks: list[Tick]
    x_labels: list[XLabel]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM

    @property
    def tick_x(self) -> int:
        return self.left - 6

    @property
    def label_y(self) -> float:
        return self.baseline + 20

    @property
    def rows(self) -> list[tuple[str, list[float]]]:
        """The chart as a table: one row per x label."""
        return [
            (label, [s.values[i] for s in self.series])
            for i, label in enumerate(self.labels)
        ]


def _nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times 10^n at or above `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** int(log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def _ticks(top: float, unit: str) -> list[Tick]:
    plot = HEIGHT - TOP - BOTTOM
    out = []
    for i in range(TICKS + 1):
        label = _format(top * i / TICKS, unit)
        out.append(Tick(y=round(HEIGHT - BOTTOM - plot * i / TICKS, 1), label=label))
    return out


def _format(value: float, unit: str) -> str:
    if unit == "bytes":
        for name, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    return f"{value:g}"


def _x_labels(labels: list[str], xs: list[float]) -> list[XLabel]:
    every = max(1, ceil(len(labels) / MAX_LABELS))
    return [
        XLabel(x, label)
        for i, (x, label) in enumerate(zip(xs, labels, strict=True))
        if i % every == 0
    ]


def _scale(series: list[Series], unit: str = "") -> tuple[float, float]:
    """The top of the y axis (a round number, in KB or MB for bytes) and the
    pixels per unit of value."""
    peak = max((v for s in series for v in s.values), default=0)
    size = 1
    if unit == "bytes":
        size = next((b for b in (1024**3, 1024**2, 1024) if peak >= b), 1)
    top = _nice_max(peak / size) * size
    return top, (HEIGHT - TOP - BOTTOM) / top


def line_chart(
    title: str, labels: list[str], series: list[Series], *, unit: str = ""
) -> Chart:
    """A line per series over evenly spaced x labels."""
    top, per = _scale(series, unit)
    span = WIDTH - LEFT - RIGHT
    n = len(labels)
    xs = [LEFT + (span * i / (n - 1) if n > 1 else span / 2) for i in range(n)]
    drawn = [
        Drawn(
            name=s.name,
            index=k,
            points=" ".join(
                f"{x:.1f},{HEIGHT - BOTTOM - v * per:.1f}"
                for x, v in zip(xs, s.values, strict=True)
            ),
            bars=[],
        )
        for k, s in enumerate(series)
    ]
    return Chart(
        title, "line", labels, series, drawn, _ticks(top, unit), _x_labels(labels, xs)
    )


def bar_chart(title: str, labels: list[str], series: list[Series]) -> Chart:
    """Grouped bars: for each x label, one bar per series side by side."""
    top, per = _scale(series)
    n = max(len(labels), 1)
    group = (WIDTH - LEFT - RIGHT) / n
    bar = group * 0.8 / max(len(series), 1)
    drawn = []
    for k, s in enumerate(series):
        bars = []
        for i, v in enumerate(s.values):
            h = v * per
            x = LEFT + group * i + group * 0.1 + bar * k
            bars.append(
                Bar(
                    x=round(x, 1),
                    y=round(HEIGHT - BOTTOM - h, 1),
                    width=round(bar, 1),
                    height=round(h, 1),
                    title=f"{labels[i]}: {s.name} {v:g}",
                )
            )
        drawn.append(Drawn(name=s.name, index=k, points="", bars=bars))
    xs = [LEFT + group * (i + 0.5) for i in range(len(labels))]
    return Chart(
        title, "bars", labels, series, drawn, _ticks(top, ""), _x_labels(labels, xs)
    )
