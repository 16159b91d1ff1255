"""The report as one self-contained HTML file: inline CSS and inline SVG, no script, no font or image to
fetch, no URL at all — it opens offline, from a USB stick or an e-mail, and prints on A4."""

from __future__ import annotations

from html import escape

from loanrules import __version__
from loanrules.report import svg
from loanrules.report.model import Chart, Highlight, Report, Section, Table

NUMERIC = ("count", "money", "share")

CSS = """
:root { --ink: #1a202c; --muted: #4a5568; --line: #e2e8f0; --ok: #1b7f5a; --breach: #b2182b; --band: #f7fafc; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45; font-size: 14px;
       font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
                    "Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif; }
.page { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; }
header h1 { font-size: 24px; margin: 0 0 4px; }
header .subtitle { color: var(--muted); margin: 0 0 8px; }
.privacy { font-size: 12px; color: var(--muted); border-left: 3px solid var(--line); padding-left: 8px; margin: 8px 0; }
.privacy.shown { border-color: var(--breach); color: var(--breach); }
nav ol { columns: 2; margin: 12px 0 0; padding-left: 20px; font-size: 13px; }
nav a { color: var(--ink); }
section.report-section { border-top: 2px solid var(--ink); margin-top: 28px; padding-top: 4px; }
h2 { font-size: 19px; margin: 6px 0 6px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.intro { color: var(--muted); margin: 0 0 10px; max-width: 80ch; }
p.absent { background: var(--band); border: 1px dashed #a0aec0; padding: 10px 12px; margin: 8px 0; }
.highlights { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px;
              margin: 10px 0 14px; }
.highlight { border: 1px solid var(--line); border-left: 4px solid #a0aec0; padding: 8px 10px; break-inside: avoid; }
.highlight.ok { border-left-color: var(--ok); }
.highlight.breach { border-left-color: var(--breach); }
.highlight .label { font-size: 12px; color: var(--muted); }
.highlight .value { font-size: 20px; font-weight: 650; font-variant-numeric: tabular-nums; }
.highlight .note { font-size: 12px; color: var(--muted); }
.highlight .status { font-size: 12px; font-weight: 600; }
.highlight.ok .status { color: var(--ok); }
.highlight.breach .status { color: var(--breach); }
figure.chart { margin: 12px 0 6px; break-inside: avoid; }
figure.chart figcaption { font-weight: 600; font-size: 13px; margin-bottom: 4px; }
figure.chart svg { max-width: 100%; height: auto; display: block; }
.table-block { margin: 8px 0 16px; break-inside: auto; }
.table-scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; font-size: 13px; padding: 4px 0; white-space: nowrap; }
table.wide { font-size: 11.5px; }
table.wide th, table.wide td { padding: 3px 5px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; vertical-align: top; }
th { text-align: left; background: var(--band); font-weight: 600; }
th.num { text-align: right; }
td.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td.text, td.code { word-break: keep-all; }
td.long { min-width: 24ch; max-width: 60ch; }
td.short { white-space: nowrap; }
p.note { font-size: 12px; color: var(--muted); margin: 4px 0 0; max-width: 100ch; }
footer { margin-top: 36px; font-size: 12px; color: var(--muted); border-top: 1px solid var(--line); padding-top: 8px; }
@page { size: A4; margin: 12mm; }
@media print {
  body { font-size: 10pt; }
  .page { max-width: none; padding: 0; }
  nav { break-after: page; }
  section.report-section { break-before: page; border-top: none; }
  .table-scroll { overflow: visible; }
  table { font-size: 8.5pt; }
  thead { display: table-header-group; }
  tr, .highlight, figure.chart { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        '<div class="page">',
        "<header>",
        f"<h1>{escape(report.title)}</h1>",
        f'<p class="subtitle">{escape(report.subtitle)}</p>',
        _privacy(report),
        "</header>",
        '<nav aria-label="Contents"><ol>',
        *(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a>'
          + (" <small>(no data)</small>" if s.absent else "") + "</li>" for s in report.sections),
        "</ol></nav>",
        "<main>",
        *(_section(number, section) for number, section in enumerate(report.sections, 1)),
        "</main>",
        f"<footer>Written by loanrules {escape(__version__)} from run {report.run_id} of the results database. "
        "Amounts in yuan; shares in per cent. Self-contained: no script, no network.</footer>",
        "</div>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def section_heading(number: int, section: Section) -> str:
    """The heading both writers give a section."""
    return f"{number}. {section.title}"


def _privacy(report: Report) -> str:
    if report.personal_data_shown:
        return ('<p class="privacy shown">This report shows borrowers\' names and ID numbers '
                "([privacy] show_personal_data = true): handle it as personal data.</p>")
    return ('<p class="privacy">Borrowers\' names and ID numbers are masked. A cooperative\'s config shows them '
            "with [privacy] show_personal_data = true.</p>")


def _section(number: int, section: Section) -> str:
    out = [f'<section id="{escape(section.id)}" class="report-section{" absent" if section.absent else ""}">',
           f"<h2>{escape(section_heading(number, section))}</h2>"]
    if section.absent:
        out.append(f'<p class="absent"><strong>No data:</strong> {escape(section.absent)}.</p>')
        out.append("</section>")
        return "\n".join(out)
    if section.intro:
        out.append(f'<p class="intro">{escape(section.intro)}</p>')
    if section.highlights:
        out.append('<div class="highlights">' + "".join(_highlight(h) for h in section.highlights) + "</div>")
    table_ids = {t.id for t in section.tables}
    for chart in section.charts:
        if chart.table not in table_ids:
            out.append(_chart(chart))
    for table in section.tables:
        for chart in section.charts:
            if chart.table == table.id:
                out.append(_chart(chart))
        out.append(_table(table))
    out.append("</section>")
    return "\n".join(out)


def _highlight(highlight: Highlight) -> str:
    status = highlight.status_text or {"ok": "within the limit", "breach": "outside the limit"}.get(
        highlight.status or "", "")
    mark = {"ok": "✓ ", "breach": "✗ "}.get(highlight.status or "", "")
    return (f'<div class="highlight{" " + highlight.status if highlight.status else ""}">'
            f'<div class="label">{escape(highlight.label)}</div>'
            f'<div class="value">{escape(highlight.value)}</div>'
            + (f'<div class="note">{escape(highlight.note)}</div>' if highlight.note else "")
            + (f'<div class="status">{mark}{status}</div>' if status else "")
            + "</div>")


def _chart(chart: Chart) -> str:
    return (f'<figure class="chart" id="figure-{escape(chart.id)}">'
            f"<figcaption>{escape(chart.title)}</figcaption>\n{svg.render(chart)}\n</figure>")


def heading(column) -> str:
    if column.kind == "money" and "yuan" not in column.heading:
        return f"{column.heading} (yuan)"
    return column.heading


def _cell_classes(table: Table, rows: list[list[str]]) -> list[str]:
    """Numbers to the right; a text column of short values (ids, dates, codes) never wraps, a long one does."""
    classes = []
    for index, column in enumerate(table.columns):
        if column.kind in NUMERIC:
            classes.append("num")
            continue
        if column.kind == "code":  # words: wrap between them, never inside one
            classes.append("code")
            continue
        longest = max((len(row[index]) for row in rows), default=0)
        classes.append(f"text {'long' if longest > 30 else 'short'}")
    return classes


def _table(table: Table) -> str:
    rows = table.display_rows()
    classes = _cell_classes(table, rows)
    head = "".join(f'<th scope="col" class="{"num" if c.kind in NUMERIC else "text"}">{escape(heading(c))}</th>'
                   for c in table.columns)
    body = []
    for row in rows:
        cells = "".join(f'<td class="{kind}">{escape(value)}</td>' for value, kind in zip(row, classes))
        body.append(f"<tr>{cells}</tr>")
    if not table.rows:
        body.append(f'<tr><td colspan="{len(table.columns)}">(none)</td></tr>')
    notes = []
    if table.hidden_rows:
        notes.append(f"The first {len(table.shown_rows):,} of {len(table.rows):,} rows; the exports have all of them.")
    if table.note:
        notes.append(table.note)
    wide = ' class="wide"' if len(table.columns) > 9 else ""
    return (f'<div class="table-block" id="table-{escape(table.id)}"><div class="table-scroll"><table{wide}>'
            f"<caption>{escape(table.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>"
            + "".join(f'<p class="note">{escape(note)}</p>' for note in notes) + "</div>")
