"""The seam the exports read the report's tables through (``loanrules.workbook.REPORT_TABLES_MODULE``), and
the report's value types under their former home. The report itself is built in ``loanrules.report``."""

from loanrules.report import build_report, report_tables
from loanrules.report.formatting import format_value, percent, yuan
from loanrules.report.model import Chart, Column, Highlight, Report, ReportTable, Section, Series, Table

__all__ = ["Chart", "Column", "Highlight", "Report", "ReportTable", "Section", "Series", "Table", "build_report",
           "format_value", "percent", "report_tables", "yuan"]
