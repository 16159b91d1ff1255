"""The analysis report of a run (issue 7): what the guidance calls "a complete and informative analysis
report" — the base of non-performing loans, their causes, the risk status and the recovery plans.

Three layers, each with one job:

* ``data``: the report's content as plain values (sections, tables with raw figures, chart data), read
  from a results database with the aggregation inside SQLite; ``report_tables`` gives the same tables to
  the exports;
* ``svg``: inline SVG charts (bar, stacked bar, transition-matrix heat map), no library, no network;
* ``html`` and ``markdown``: one self-contained HTML file, and the same content as Markdown.
"""

from loanrules.report.data import Report, build_report, report_tables

__all__ = ["Report", "build_report", "report_tables"]
