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
