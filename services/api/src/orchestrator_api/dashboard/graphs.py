"""Graphs drawn on the server as inline SVG: no chart library, no script, styled by the page's
CSS (classes ``series-<name>``) so they follow light and dark themes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 10, 26


@dataclass(frozen=True)
class Series:
    name: str  #: shown in the legend and the accessible description
    css: str  #: class suffix: series-<css>
    values: Sequence[int]


def _nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 times 10^k at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    tick_every: int,
    width: int = WIDTH,
) -> Markup:
    """A line per series over ``labels`` (x axis, one point each), y from 0 to a round maximum;
    ``width`` in the picture's units (the height is fixed, so a wider graph is flatter).

    The SVG carries ``role="img"`` and a text description with the totals, for screen readers."""
    points = len(labels)
    top = _nice_max(max((max(s.values, default=0) for s in series), default=0))
    plot_w = width - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM

    def x(index: int) -> float:
        return _LEFT + (plot_w * index / (points - 1) if points > 1 else plot_w / 2)

    def y(value: int) -> float:
        return _TOP + plot_h - plot_h * value / top

    totals = ", ".join(f"{s.name} {sum(s.values):,}" for s in series)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {escape(totals)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        value = top * fraction
        level = y(int(value)) if fraction != 0.5 else _TOP + plot_h / 2
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{level:.1f}" '
            f'y2="{level:.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{level + 4:.1f}" text-anchor="end">'
            f"{_short_number(value)}</text>"
        )
    for index, label in enumerate(labels):
        if index % tick_every == 0 or index == points - 1:
            # The first and last labels are anchored inwards so they stay inside the picture.
            anchor = "start" if index == 0 else "end" if index == points - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{x(index):.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="{anchor}">{escape(label)}</text>'
            )
    for s in series:
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(f'<polyline class="line series-{escape(s.css)}" points="{coords}"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch series-{escape(s.css)}" aria-hidden="true"></span>'
        f"{escape(s.name)}: {sum(s.values):,}</li>"
        for s in series
    )
    # Every value in ``parts`` and ``legend`` is a number or went through escape().
    return Markup("".join(parts) + f'<ul class="legend">{legend}</ul>')  # noqa: S704


def _short_number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"
