"""Inline SVG charts, written by hand: a horizontal bar chart, a stacked bar chart and a heat map of a
transition matrix. No library and no network; the same data always gives the same bytes.

Each chart is accessible: ``role="img"`` with a ``<title>`` and a ``<desc>``, its numbers written next to
the bars or in the cells (not only as lengths and colours), and a ``<title>`` per bar for a pointer. Text
widths are estimated (CJK characters are about one em wide, Latin about 0.6 em) to keep labels from running
into bars; a label too long for its column is shortened with an ellipsis and kept whole in the tooltip.
"""

from __future__ import annotations

import html
import math
import unicodedata

from loanrules.report.model import Chart

WIDTH = 760
FONT = 12
FONT_FAMILY = ("system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'Source Han Sans SC', 'PingFang SC', "
               "'Microsoft YaHei', 'WenQuanYi Micro Hei', sans-serif")
LABEL_WIDTH = (110, 290)  # the column of bar labels: as wide as the longest label, within these
ROW = 24
BAR = 16
TEXT = "#1a202c"
MUTED = "#718096"
GRID = "#e2e8f0"
BAR_COLOUR = "#2b6cb0"
# Okabe-Ito: tells apart for the colour-blind, and prints
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999", "#000000")
# Series whose names carry meaning keep their colour in every chart.
MEANING = {
    "critical": "#b2182b", "warning": "#e08214", "info": "#4393c3",
    "non-performing": "#b2182b", "performing": "#4393c3",
    "open, overdue": "#b2182b", "open, not yet due": "#4393c3", "done on time": "#1b9e77", "done late": "#e08214",
    "replaced": "#999999", "cured": "#7fbf7b",
    "new": "#d6604d", "resolved": "#1b9e77",
}


def render(chart: Chart) -> str:
    if not chart.labels or not chart.series:
        return _frame(chart, 40, [f'<text x="0" y="24" fill="{MUTED}" font-size="{FONT}">no data</text>'])
    if chart.kind == "bar":
        return bar_chart(chart)
    if chart.kind == "stacked":
        return stacked_chart(chart)
    return matrix_chart(chart)


# ------------------------------------------------------------ text


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def text_width(text: str, size: float = FONT) -> float:
    return sum(size * (1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.6) for ch in str(text))


def fit(text: str, width: float, size: float = FONT) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    text = str(text)
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def value_text(value: float | int | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "money":  # fen -> whole yuan, half up
        return f"{(int(value) + 50) // 100:,}"
    if unit == "share":
        return f"{100 * value:.1f}%"
    return f"{value:,}"


def _unit_note(unit: str) -> str:
    return {"money": "yuan", "share": "per cent"}.get(unit, "")


def _ink(fill: str) -> str:
    """Black or white text, whichever reads on ``fill``."""
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _frame(chart: Chart, height: int, body: list[str]) -> str:
    ident = f"chart-{chart.id}"
    unit = _unit_note(chart.unit)
    description = chart.description + (f" Figures in {unit}." if unit and unit not in chart.description else "")
    return "\n".join([
        # no xmlns: inline in HTML5 it is implied, and the report holds no URL at all
        f'<svg class="chart chart-{chart.kind}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{esc(FONT_FAMILY)}" font-size="{FONT}">',
        f'<title id="{ident}-title">{esc(chart.title)}</title>',
        f'<desc id="{ident}-desc">{esc(description)}</desc>',
        *body,
        "</svg>",
    ])


# ------------------------------------------------------------ bars


def _legend(names: list[str], colours: list[str], top: float) -> tuple[list[str], float]:
    """Swatches and names in rows across the width; returns the elements and the height used."""
    parts, x, y = [], 0.0, top
    for name, colour in zip(names, colours):
        width = 14 + 6 + text_width(name) + 18
        if x and x + width > WIDTH:
            x, y = 0.0, y + 18
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 18:.1f}" y="{y + 10.5:.1f}" fill="{TEXT}">{esc(name)}</text>')
        x += width
    return parts, y - top + 22


def _colours(chart: Chart) -> list[str]:
    colours, spare = [], iter(PALETTE * 4)
    for series in chart.series:
        colours.append(MEANING.get(series.name) or next(spare))
    return colours


def _label_width(labels) -> float:
    return min(max(max(text_width(label) for label in labels) + 8, LABEL_WIDTH[0]), LABEL_WIDTH[1])


def bar_chart(chart: Chart) -> str:
    label_width = _label_width(chart.labels)
    values = [v or 0 for v in chart.series[0].values]
    texts = [value_text(v, chart.unit) for v in chart.series[0].values]
    value_room = max(text_width(t) for t in texts) + 10
    plot = WIDTH - label_width - 8 - value_room
    top = max(max(values), 0) or 1
    body = []
    for i, (label, value, text) in enumerate(zip(chart.labels, values, texts)):
        y = 4 + i * ROW
        length = max(value, 0) / top * plot
        x0 = label_width + 8
        body.append(
            f'<g><title>{esc(label)}: {esc(text)}{" " + _unit_note(chart.unit) if _unit_note(chart.unit) else ""}'
            f'</title>'
            f'<text x="{label_width:.1f}" y="{y + BAR / 2 + 4:.1f}" text-anchor="end" fill="{TEXT}">'
            f'{esc(fit(label, label_width - 4))}</text>'
            f'<rect x="{x0}" y="{y}" width="{length:.1f}" height="{BAR}" fill="{BAR_COLOUR}"/>'
            f'<text x="{x0 + length + 5:.1f}" y="{y + BAR / 2 + 4:.1f}" fill="{TEXT}">{esc(text)}</text></g>')
    height = 4 + len(values) * ROW + 4
    body.insert(0, f'<line x1="{label_width + 8:.1f}" y1="0" x2="{label_width + 8:.1f}" y2="{height - 4}" '
                   f'stroke="{MUTED}" stroke-width="1"/>')
    return _frame(chart, height, body)


def stacked_chart(chart: Chart) -> str:
    label_width = _label_width(chart.labels)
    colours = _colours(chart)
    legend, legend_height = _legend([s.name for s in chart.series], colours, 2)
    totals = [sum((s.values[i] or 0) for s in chart.series) for i in range(len(chart.labels))]
    total_texts = [value_text(t, chart.unit) if chart.show_total else "" for t in totals]
    if chart.show_total:
        value_room = max(text_width(t) for t in total_texts) + 10
    else:  # room for the numbers of segments too narrow to hold them, written after the bar
        value_room = max(text_width(", ".join(f"{s.name} {value_text(s.values[i], chart.unit)}" for s in chart.series
                                              if s.values[i]), FONT - 1) for i in range(len(chart.labels))) + 10
    plot = WIDTH - label_width - 8 - value_room
    top = max(max(totals), 0) or 1
    body = list(legend)
    first = legend_height + 4
    x0 = label_width + 8
    for i, label in enumerate(chart.labels):
        y = first + i * ROW
        parts = [f'<text x="{label_width:.1f}" y="{y + BAR / 2 + 4:.1f}" text-anchor="end" fill="{TEXT}">'
                 f'<title>{esc(label)}</title>{esc(fit(label, label_width - 4))}</text>']
        x = float(x0)
        for series, colour in zip(chart.series, colours):
            value = max(series.values[i] or 0, 0)
            if not value:
                continue
            length = value / top * plot
            text = value_text(value, chart.unit)
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{BAR}" fill="{colour}">'
                         f'<title>{esc(label)}, {esc(series.name)}: {esc(text)}</title></rect>')
            if text_width(text, FONT - 1) + 4 <= length:
                parts.append(f'<text x="{x + length / 2:.1f}" y="{y + BAR / 2 + 4:.1f}" text-anchor="middle" '
                             f'font-size="{FONT - 1}" fill="{_ink(colour)}">{esc(text)}</text>')
            x += length
        if chart.show_total:
            parts.append(f'<text x="{x + 5:.1f}" y="{y + BAR / 2 + 4:.1f}" fill="{TEXT}" font-weight="600">'
                         f'{esc(total_texts[i])}</text>')
        else:  # segments too narrow for their number: the numbers after the bar, in series order
            hidden = [f"{s.name} {value_text(s.values[i], chart.unit)}" for s in chart.series
                      if (s.values[i] or 0) and text_width(value_text(s.values[i], chart.unit), FONT - 1) + 4
                      > max(s.values[i], 0) / top * plot]
            if hidden:
                parts.append(f'<text x="{x + 5:.1f}" y="{y + BAR / 2 + 4:.1f}" fill="{MUTED}" '
                             f'font-size="{FONT - 1}">{esc(", ".join(hidden))}</text>')
        body.append("<g>" + "".join(parts) + "</g>")
    height = int(first + len(chart.labels) * ROW + 4)
    body.insert(len(legend), f'<line x1="{x0}" y1="{first - 2}" x2="{x0}" y2="{height - 4}" stroke="{MUTED}" '
                             f'stroke-width="1"/>')
    return _frame(chart, height, body)


# ------------------------------------------------------------ matrix


def _wrap(text: str, width: float, size: float = FONT) -> list[str]:
    """Words of ``text`` (underscores read as spaces) in lines of at most ``width`` pixels, two lines at most."""
    words, lines = str(text).replace("_", " ").split(), []
    for word in words:
        if lines and text_width(lines[-1] + " " + word, size) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > 2:
        lines = [lines[0], " ".join(lines[1:])]
    return [fit(line, width, size) for line in lines] or [""]


def _heat(value: float, top: float) -> str:
    """White to dark blue on a log scale: a few loans next to a thousand still show."""
    if value <= 0 or top <= 0:
        return "#ffffff"
    t = math.log1p(value) / math.log1p(top)
    low, high = (247, 251, 255), (8, 48, 107)
    return "#" + "".join(f"{round(a + (b - a) * (0.15 + 0.85 * t)):02x}" for a, b in zip(low, high))


def matrix_chart(chart: Chart) -> str:
    rows, columns = list(chart.labels), [s.name for s in chart.series]
    row_label_width = min(max(text_width(r.replace("_", " ")) for r in rows) + 16, 170)
    cell_width = min((WIDTH - row_label_width) / len(columns), 110)
    cell_height = 30
    header_lines = max(len(_wrap(c, cell_width - 6)) for c in columns)
    axis_top = 14
    grid_top = axis_top + 8 + header_lines * 14 + 6
    values = [[chart.series[j].values[i] or 0 for j in range(len(columns))] for i in range(len(rows))]
    top = max((v for row in values for v in row), default=0)
    grid_width = cell_width * len(columns)
    body = [
        f'<text x="{row_label_width + grid_width / 2:.1f}" y="{axis_top}" text-anchor="middle" fill="{MUTED}" '
        f'font-style="italic">{esc(chart.column_axis)} →</text>',
    ]
    row_axis = _wrap(chart.row_axis + " ↓", row_label_width - 8)
    body.append(f'<text x="0" y="{grid_top - 8 - (len(row_axis) - 1) * 14:.1f}" fill="{MUTED}" font-style="italic">'
                + "".join(f'<tspan x="0" dy="{0 if k == 0 else 14}">{esc(line)}</tspan>'
                          for k, line in enumerate(row_axis)) + "</text>")
    for j, column in enumerate(columns):
        cx = row_label_width + (j + 0.5) * cell_width
        lines = _wrap(column, cell_width - 6)
        spans = "".join(f'<tspan x="{cx:.1f}" dy="{0 if k == 0 else 14}">{esc(line)}</tspan>'
                        for k, line in enumerate(lines))
        body.append(f'<text x="{cx:.1f}" y="{grid_top - 8 - (len(lines) - 1) * 14:.1f}" text-anchor="middle" '
                    f'fill="{TEXT}" font-weight="600">{spans}</text>')
    for i, row in enumerate(rows):
        y = grid_top + i * cell_height
        body.append(f'<text x="{row_label_width - 8:.1f}" y="{y + cell_height / 2 + 4:.1f}" text-anchor="end" '
                    f'fill="{TEXT}" font-weight="600">{esc(fit(row.replace("_", " "), row_label_width - 12))}</text>')
        for j, column in enumerate(columns):
            value = values[i][j]
            x = row_label_width + j * cell_width
            fill = _heat(value, top)
            same = row == column
            text = value_text(value, chart.unit)
            body.append(
                f'<g><title>{esc(row)} → {esc(column)}: {esc(text)}</title>'
                f'<rect x="{x:.1f}" y="{y}" width="{cell_width:.1f}" height="{cell_height}" fill="{fill}" '
                f'stroke="{"#1a202c" if same else GRID}" stroke-width="{2 if same else 1}"/>'
                f'<text x="{x + cell_width / 2:.1f}" y="{y + cell_height / 2 + 4:.1f}" text-anchor="middle" '
                f'fill="{_ink(fill) if value else MUTED}">{esc(text)}</text></g>')
    height = int(grid_top + len(rows) * cell_height + 20)
    body.append(f'<text x="{row_label_width:.1f}" y="{height - 4}" fill="{MUTED}" font-size="{FONT - 1}">'
                f'Outlined: the same class (no migration). Darker: more.</text>')
    return _frame(chart, height, body)
