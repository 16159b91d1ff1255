"""The analysis report of a run (issue 7): what the guidance calls "a complete and informative analysis
report" — the base of non-performing loans, their causes, the risk status and the recovery plans.

Layers, each with one job:

* ``model``: the report's values (sections, tables with raw figures, chart data); ``formatting``: how
  figures read for people (yuan, percentages, vocabulary words);
* ``book``: the run, the run it compares with, what contributed, and one pass over the book that every
  section reads;
* ``sections_portfolio``, ``sections_collection``, ``sections_contributed``, ``sections_run``: the ten
  sections, each a function ``section(book) -> Section``, aggregated inside SQLite — no loan ever becomes
  a Python object;
* ``svg``: inline SVG charts (bar, stacked bar, transition-matrix heat map), no library, no network;
* ``html`` and ``markdown``: one self-contained HTML file, and the same content as Markdown.

``build_report`` gives the report; ``report_tables`` gives its tables whole to the exports (also importable
as ``loanrules.report.data.report_tables``, the workbook's seam). Borrowers' names and ID numbers pass
through the ``Masker``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from loanrules.privacy import Masker
from loanrules.report import sections_collection, sections_contributed, sections_portfolio, sections_run
from loanrules.report.book import DISPLAY_LIMIT, Book
from loanrules.report.model import Report, ReportTable, Section

# The report's sections, in order.
SECTIONS: tuple[Callable[[Book], Section], ...] = (
    sections_portfolio.glance, sections_portfolio.classes, sections_portfolio.npl_sources,
    sections_collection.recovery, sections_contributed.collateral, sections_contributed.villages,
    sections_contributed.inspections, sections_collection.collection, sections_run.findings,
    sections_run.provenance,
)


def build_report(conn: sqlite3.Connection, run: Mapping, masker: Masker, *,
                 titles: Mapping[str, str] | None = None, display_limit: int | None = DISPLAY_LIMIT) -> Report:
    """The report of ``run`` (a row of ``runs``): ordered sections, each with its data or why it has none.

    ``titles`` names the checks (from the registry; the ids stand alone without it); ``display_limit`` is
    how many rows a long table shows (None: all).
    """
    book = Book(conn, run, masker, titles or {}, display_limit)
    try:
        sections = tuple(section(book) for section in SECTIONS)
    finally:
        book.close()
    previous = book.previous
    subtitle = (f"{run['cooperative']} · as of {run['as_of']} · run {run['run_id']} ({run['status']})"
                + (f" · compared with run {previous['run_id']} as of {previous['as_of']}"
                   if previous is not None else " · no previous as-of"))
    return Report(title=f"Non-performing loan analysis: {run['cooperative']}, {run['as_of']}",
                  cooperative=run["cooperative"], as_of=run["as_of"], run_id=run["run_id"], status=run["status"],
                  subtitle=subtitle, sections=sections, personal_data_shown=masker.show)


def report_tables(conn: sqlite3.Connection, run: Mapping, masker: Masker,
                  titles: Mapping[str, str] | None = None) -> list[ReportTable]:
    """Every table of the report, whole, for the exports (a sheet each): raw values, money in integer fen
    (``money_columns``), shares as fractions, names and ID numbers as the masker leaves them."""
    report = build_report(conn, run, masker, titles=titles, display_limit=None)
    tables = []
    for section in report.sections:
        for table in section.tables:
            if table.export:
                tables.append(ReportTable(sheet_name=table.id[:31], title=f"{section.title}: {table.title}",
                                          columns=table.keys, rows=table.rows, money_columns=table.money_columns,
                                          kinds=tuple(column.kind for column in table.columns)))
    return tables


__all__ = ["SECTIONS", "Report", "build_report", "report_tables"]
