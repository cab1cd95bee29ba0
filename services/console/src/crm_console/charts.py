"""Charts as inline SVG, drawn on the server: no chart library, no JavaScript."""

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 360
LABEL = 130
ROW = 26


def bars(rows: Sequence[tuple[str, float]], *, title: str, fmt: str = "{:,.0f}") -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest; `title` names the chart
    for screen readers."""
    if not rows:
        return Markup("")
    top = max((value for _, value in rows), default=0) or 1
    span = WIDTH - LABEL - 50
    height = ROW * len(rows) + 4
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, value) in enumerate(rows):
        y = index * ROW + 2
        length = max(1.0, span * value / top) if value > 0 else 0
        parts.append(
            f'<text x="{LABEL - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL}" y="{y + 3}" width="{length:.1f}" height="{ROW - 8}" rx="2"/>'
            f'<text x="{LABEL + length + 6:.1f}" y="{y + 16}">{escape(fmt.format(value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


FULL = 1.5
"""A period's bar is drawn up to 150% of its minimum; the minimum is a line at two thirds."""


def fulfilment(rows: Sequence[tuple[str, float, float, str]], *, title: str) -> Markup:
    """One bar per period (label, fulfilled, minimum, state), its length the share of the minimum
    fulfilled (a line marks 100%); `state` (met, short, at_risk, open) is the bar's class, so the
    stylesheet colours it."""
    if not rows:
        return Markup("")
    span = WIDTH - LABEL - 60
    mark = LABEL + span / FULL
    height = ROW * len(rows) + 4
    parts = [
        f'<svg class="chart fulfilment" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, fulfilled, minimum, state) in enumerate(rows):
        y = index * ROW + 2
        share = fulfilled / minimum if minimum > 0 else 1.0
        length = span * min(share, FULL) / FULL
        parts.append(
            f'<text x="{LABEL - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="track" x="{LABEL}" y="{y + 3}" width="{span}" height="{ROW - 8}"/>'
            f'<rect class="{escape(state)}" x="{LABEL}" y="{y + 3}" width="{length:.1f}" '
            f'height="{ROW - 8}" rx="2"/>'
            f'<text x="{LABEL + length + 6:.1f}" y="{y + 16}">{share:.0%}</text>'
        )
    parts.append(
        f'<line class="minimum" x1="{mark:.1f}" y1="0" x2="{mark:.1f}" y2="{height}"/></svg>'
    )
    return Markup("".join(parts))


TREND_HEIGHT = 150
TREND_LABELS = 8
"""At most this many period labels under a trend (every n-th period's), so they never overlap."""


def trend(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    low: float,
    high: float,
    fmt: str = "{:.1f}",
    baseline: float | None = None,
) -> Markup:
    """A line over periods (label, value), on a fixed scale `low`..`high` (its ends labelled); a
    period without a value (None) breaks the line; each value is written by its point;
    `baseline` draws a dashed line (NPS 0)."""
    if not any(value is not None for _, value in points):
        return Markup("")
    left, right, top, bottom = 40, 16, 16, 26
    span_x, span_y = WIDTH - left - right, TREND_HEIGHT - top - bottom
    step = span_x / max(len(points) - 1, 1)

    def x(index: int) -> float:
        return left + (index * step if len(points) > 1 else span_x / 2)

    def y(value: float) -> float:
        return top + span_y * (high - min(max(value, low), high)) / (high - low)

    parts = [
        f'<svg class="chart trend" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {TREND_HEIGHT}" width="{WIDTH}" height="{TREND_HEIGHT}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + span_y}"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{escape(fmt.format(high))}</text>',
        f'<text x="{left - 4}" y="{top + span_y + 4}" text-anchor="end">'
        f"{escape(fmt.format(low))}</text>",
    ]
    if baseline is not None:
        parts.append(
            f'<line class="baseline" x1="{left}" y1="{y(baseline):.1f}" '
            f'x2="{left + span_x}" y2="{y(baseline):.1f}"/>'
        )
    run: list[str] = []
    for index, (_, value) in enumerate([*points, ("", None)]):
        if value is not None:
            run.append(f"{x(index):.1f},{y(value):.1f}")
        elif run:
            parts.append(f'<polyline points="{" ".join(run)}"/>')
            run = []
    every = -(-len(points) // TREND_LABELS)
    for index, (label, value) in enumerate(points):
        if value is not None:
            parts.append(
                f'<circle cx="{x(index):.1f}" cy="{y(value):.1f}" r="3"/>'
                f'<text class="value" x="{x(index):.1f}" y="{y(value) - 6:.1f}" '
                f'text-anchor="middle">{escape(fmt.format(value))}</text>'
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x(index):.1f}" y="{TREND_HEIGHT - 6}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
