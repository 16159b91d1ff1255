"""The report as Markdown: the same sections and headings as the HTML, tables as pipe tables, and each chart
as the table of its numbers."""

from __future__ import annotations

from loanrules.report.formatting import format_value
from loanrules.report.html import NUMERIC, heading, section_heading
from loanrules.report.model import Chart, Report, Section, Table


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", report.subtitle, ""]
    if report.personal_data_shown:
        lines += ["> This report shows borrowers' names and ID numbers ([privacy] show_personal_data = true): "
                  "handle it as personal data.", ""]
    else:
        lines += ["> Borrowers' names and ID numbers are masked. A cooperative's config shows them with "
                  "[privacy] show_personal_data = true.", ""]
    for number, section in enumerate(report.sections, 1):
        lines += _section(number, section)
    lines.append("Amounts in yuan; shares in per cent.")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _pipe_table(headings: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in headings) + " |",
           "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def _section(number: int, section: Section) -> list[str]:
    lines = [f"## {section_heading(number, section)}", ""]
    if section.absent:
        return lines + [f"_No data: {section.absent}._", ""]
    if section.intro:
        lines += [section.intro, ""]
    for highlight in section.highlights:
        words = highlight.status_text or {"ok": "within the limit", "breach": "outside the limit"}.get(
            highlight.status or "", "")
        status = (f" (**{words}**)" if highlight.status == "breach" else f" ({words})") if words else ""
        note = f" — {highlight.note}" if highlight.note else ""
        lines.append(f"- **{highlight.label}**: {highlight.value}{note}{status}")
    if section.highlights:
        lines.append("")
    table_ids = {t.id for t in section.tables}
    for chart in section.charts:
        if chart.table not in table_ids:
            lines += _chart(chart)
    for table in section.tables:
        for chart in section.charts:
            if chart.table == table.id:
                lines += _chart(chart)
        lines += _table(table)
    return lines


def _chart(chart: Chart) -> list[str]:
    kind = {"money": "money", "share": "share"}.get(chart.unit, "count")
    if chart.kind == "matrix":
        headings = [f"{chart.row_axis} \\ {chart.column_axis}".strip(" \\") or "", *(s.name for s in chart.series)]
    else:
        headings = ["", *(s.name for s in chart.series)]
    rows = [[label, *(format_value(s.values[i], kind) for s in chart.series)] for i, label in enumerate(chart.labels)]
    lines = [f"**Chart: {chart.title}**" + (f" — {chart.description}" if chart.description else ""), ""]
    return lines + _pipe_table(headings, rows, [False] + [True] * len(chart.series)) + [""]


def _table(table: Table) -> list[str]:
    lines = [f"**{table.title}**", ""]
    if table.rows:
        lines += _pipe_table([heading(c) for c in table.columns], table.display_rows(),
                             [c.kind in NUMERIC for c in table.columns])
    else:
        lines.append("(none)")
    lines.append("")
    if table.hidden_rows:
        lines += [f"_The first {len(table.shown_rows):,} of {len(table.rows):,} rows; the exports have all of "
                  "them._", ""]
    if table.note:
        lines += [f"_{table.note}_", ""]
    return lines
