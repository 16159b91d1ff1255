"""One XLSX workbook of a run, for regulators: provenance, findings, assessments, tasks, the run's stored
summaries and the report's tables (but those that repeat a summary), a sheet each.

Written with XlsxWriter in ``constant_memory`` mode: each row goes to a temporary file as soon as the next
one starts, so a million assessments take no more memory than ten (rows stream from the database cursor).
Cell types are real: money is a number of yuan with the format ``#,##0.00`` (written from the exact
decimal text of the integer fen, never through a float sum: the cell's XML holds ``1234.56`` exactly as
``format_fen`` gives it), dates are dates (``yyyy-mm-dd``), shares are percentages. The header row is bold
and frozen, with an autofilter. Every string goes in as a string (``write_string``): a message that starts
with ``=`` stays text, never a formula. Personal data is masked by the caller's ``Masker`` as in the CSV
and JSON exports. A sheet longer than Excel's 1,048,576 rows goes on in ``<name> (2)``, ``(3)``...
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import json
import os
import re
import shutil
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import xlsxwriter
import xlsxwriter.exceptions

import loanrules
from loanrules import results
from loanrules.errors import UsageError
from loanrules.model import format_fen
from loanrules.privacy import Masker
from loanrules.store import utcnow

MAX_ROWS = 1_048_576  # Excel's rows per sheet, the header included
MAX_CELL_TEXT = 32_767  # Excel's characters per cell
MAX_SHEET_NAME = 31
WIDTH_SAMPLE = 200  # rows read ahead to size the columns
MAX_WIDTH = 60

# Column kinds: how a value is written and formatted.
TEXT, YUAN, FEN, DATE, SHARE, INTEGER, NUMBER = "text", "yuan", "fen", "date", "share", "integer", "number"
# the dated columns without a ``*_date`` name: findings, tasks and the run sheet
DATE_COLUMNS = frozenset({"first_seen", "as_of", "opened_on", "closed_on"})
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
BAD_SHEET_CHARACTERS = re.compile(r"[\[\]:*?/\\]")


def column_kind(name: str) -> str | None:
    """The kind a column's name implies (None: from its values): ``*_fen`` integer fen, ``*_yuan`` decimal
    yuan, ``*_date`` and the dated columns of the contract tables, ``*_share`` a fraction 0..1."""
    if name.endswith("_fen"):
        return FEN
    if name.endswith("_yuan"):
        return YUAN
    if name.endswith("_date") or name in DATE_COLUMNS:
        return DATE
    if name.endswith("_share"):
        return SHARE
    return None


def heading(name: str, kind: str | None) -> str:
    """Money leaves in yuan, so a ``*_fen`` column is headed ``*_yuan`` (as in the CSV exports)."""
    return name[:-4] + "_yuan" if kind == FEN and name.endswith("_fen") else name


@attrs.frozen
class Sheet:
    """A generic sheet: ``rows`` (mappings by column name, or sequences in column order) are read once,
    lazily, when the sheet is written. ``kinds`` overrides the kinds ``column_kind`` infers."""

    name: str
    columns: tuple[str, ...] = attrs.field(converter=tuple)
    rows: Iterable[Mapping[str, Any] | Sequence[Any]]
    kinds: Mapping[str, str] = attrs.field(factory=dict)
    source: str = ""  # what the sheet holds, for the contents on the run sheet


@attrs.frozen
class Written:
    name: str
    rows: int
    source: str


class _Formats:
    def __init__(self, workbook: xlsxwriter.Workbook):
        self.header = workbook.add_format({"bold": True, "bottom": 1})
        self.yuan = workbook.add_format({"num_format": "#,##0.00"})
        self.date = workbook.add_format({"num_format": "yyyy-mm-dd"})
        self.share = workbook.add_format({"num_format": "0.00%"})
        self.integer = workbook.add_format({"num_format": "0"})
        self.title = workbook.add_format({"bold": True, "font_size": 13})


class WorkbookWriter:
    """Writes sheets one after the other into one workbook, streaming their rows."""

    def __init__(self, path: str | Path, max_rows: int = MAX_ROWS):
        self.path = Path(path)
        # written beside the target and renamed when complete: a failed export leaves no half workbook
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        # XlsxWriter's row files (about the size of the sheets' XML) go beside the target too, not to a
        # /tmp that may be a RAM disk; a run killed midway leaves them there, and the next one removes them
        self.scratch = self.path.with_name(f".{self.path.name}.tmp")
        if not self.path.parent.is_dir():
            raise UsageError(f"{self.path}: no such directory {self.path.parent}")
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir()
        self.max_rows = max_rows
        self.workbook = xlsxwriter.Workbook(str(self.partial), {
            "constant_memory": True,  # rows go to disk as they are written: memory stays flat
            "tmpdir": str(self.scratch),
            "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False,
            "default_date_format": "yyyy-mm-dd", "nan_inf_to_errors": True,
        })
        self.formats = _Formats(self.workbook)
        self.names: set[str] = set()
        self.written: list[Written] = []
        self._next_row: dict[str, int] = {}  # key-value sheets: the row a table appended below starts after

    # ------------------------------------------------------------ names

    def sheet_name(self, wanted: str) -> str:
        """A valid, unique sheet name: no ``[]:*?/\\``, at most 31 characters, unique without regard to case."""
        base = BAD_SHEET_CHARACTERS.sub("_", wanted).strip("'").strip() or "sheet"
        if base.lower() == "history":  # reserved by Excel
            base = "history_"
        name = base[:MAX_SHEET_NAME]
        for number in itertools.count(2):
            if name.lower() not in self.names:
                break
            suffix = f"~{number}"
            name = base[:MAX_SHEET_NAME - len(suffix)] + suffix
        self.names.add(name.lower())
        return name

    # ------------------------------------------------------------ sheets

    def add_key_values(self, name: str, pairs: Sequence[tuple[str, Any]]) -> Any:
        """A two-column sheet of fields and values (the run sheet); returns the worksheet to append to."""
        sheet = self.workbook.add_worksheet(self.sheet_name(name))
        sheet.set_column(0, 0, 22)
        sheet.set_column(1, 1, 70)
        sheet.write_string(0, 0, "field", self.formats.header)
        sheet.write_string(0, 1, "value", self.formats.header)
        sheet.freeze_panes(1, 0)
        for row, (field, value) in enumerate(pairs, 1):
            sheet.write_string(row, 0, field)
            self._write(sheet, row, 1, value, DATE if field in DATE_COLUMNS else None)
        self._next_row[sheet.name] = len(pairs) + 1
        return sheet

    def append_table(self, sheet: Any, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A titled small table below what a key-value sheet already holds (rows in order: constant_memory)."""
        row = self._next_row[sheet.name] + 1
        sheet.write_string(row, 0, title, self.formats.title)
        row += 1
        for col, name in enumerate(columns):
            sheet.write_string(row, col, name, self.formats.header)
        for values in rows:
            row += 1
            for col, value in enumerate(values):
                self._write(sheet, row, col, value, None)
        self._next_row[sheet.name] = row + 1

    def add(self, spec: Sheet) -> list[Written]:
        """Write one generic sheet (continued on further sheets past Excel's row limit)."""
        kinds = [spec.kinds.get(name) or column_kind(name) for name in spec.columns]
        rows = (self._ordered(row, spec.columns) for row in spec.rows)
        sample = list(itertools.islice(rows, WIDTH_SAMPLE))
        kinds = [kind or _kind_of_values(sample, index) for index, kind in enumerate(kinds)]
        headings = [heading(name, kind) for name, kind in zip(spec.columns, kinds)]
        widths = _widths(headings, kinds, sample)
        stream = _Peekable(itertools.chain(sample, rows))
        out = []
        for part in itertools.count(1):
            name = self.sheet_name(spec.name if part == 1 else f"{spec.name[:MAX_SHEET_NAME - 6]} ({part})")
            count, more = self._fill(name, headings, kinds, widths, stream)
            out.append(Written(name, count, spec.source + (f" (part {part})" if part > 1 else "")))
            if not more:
                break
        self.written += out
        return out

    def _fill(self, name: str, headings: list[str], kinds: list[str], widths: list[float],
              stream: _Peekable) -> tuple[int, bool]:
        sheet = self.workbook.add_worksheet(name)
        for col, width in enumerate(widths):
            sheet.set_column(col, col, width)
        for col, text in enumerate(headings):
            sheet.write_string(0, col, text, self.formats.header)
        sheet.freeze_panes(1, 0)
        row = 0
        writers = [self._writer(kind) for kind in kinds]
        for values in stream:
            row += 1
            for col, value in enumerate(values):
                if value is not None:
                    writers[col](sheet, row, col, value)
            if row == self.max_rows - 1:
                break
        if headings:
            sheet.autofilter(0, 0, max(row, 1), len(headings) - 1)
        else:  # a summary that stored no rows this run has no columns to head either
            sheet.write_string(0, 0, "(no rows)")
        more = row == self.max_rows - 1 and stream.has_more()
        return row, more

    @staticmethod
    def _ordered(row: Mapping[str, Any] | Sequence[Any], columns: Sequence[str]) -> Sequence[Any]:
        return [row.get(name) for name in columns] if isinstance(row, Mapping) else row

    def _write(self, sheet: Any, row: int, col: int, value: Any, kind: str | None) -> None:
        if value is not None:
            self._writer(kind)(sheet, row, col, value)

    def _writer(self, kind: str | None) -> Callable[[Any, int, int, Any], None]:
        """The function that writes a value of a column of ``kind`` (chosen once per column: the inner loop)."""
        formats = self.formats

        def other(sheet: Any, row: int, col: int, value: Any) -> None:
            if isinstance(value, str):
                if len(value) > MAX_CELL_TEXT:
                    value = value[:MAX_CELL_TEXT - 14] + " …(truncated)"
                sheet.write_string(row, col, value)
            elif isinstance(value, bool):
                sheet.write_boolean(row, col, value)
            elif isinstance(value, int):
                sheet.write_number(row, col, value, formats.integer if abs(value) < 10**15 else None)
            elif isinstance(value, float | Decimal | Fraction):
                value = float(value) if isinstance(value, Fraction) else value  # a share: a float is exact enough
                sheet.write_number(row, col, value, formats.share if kind == SHARE else None)
            elif isinstance(value, datetime.date):
                sheet.write_datetime(row, col, value, formats.date)
            else:
                other(sheet, row, col, json.dumps(value, ensure_ascii=False, default=str))

        if kind in (FEN, YUAN):
            def money(sheet: Any, row: int, col: int, value: Any) -> None:
                amount = _yuan(value, kind)
                if amount is None:
                    other(sheet, row, col, value)
                else:
                    sheet.write_number(row, col, amount, formats.yuan)
            return money
        if kind == DATE:
            def date(sheet: Any, row: int, col: int, value: Any) -> None:
                serial = _excel_date(value) if isinstance(value, str) else None
                if serial is None:
                    other(sheet, row, col, value)
                else:
                    sheet.write_number(row, col, serial, formats.date)
            return date
        return other

    def close(self) -> None:
        """Finish the file and put it in place."""
        try:
            self.workbook.close()
            os.replace(self.partial, self.path)
        except (OSError, xlsxwriter.exceptions.XlsxFileError) as error:
            self.partial.unlink(missing_ok=True)
            raise UsageError(f"cannot write {self.path}: {getattr(error, 'strerror', None) or error}") from None
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def abandon(self) -> None:
        """Give up after an error: no file at the target, no partial file left behind."""
        with contextlib.suppress(Exception):
            self.workbook.close()
        self.partial.unlink(missing_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


def _yuan(value: Any, kind: str) -> Decimal | None:
    """Money as the exact decimal of yuan: integer fen through ``format_fen`` (1234 -> 12.34), yuan text
    (``'12.34'``) or a Decimal as it is. Anything else (text that is no number) is left to be written as text."""
    if kind == FEN and isinstance(value, int):
        return Decimal(format_fen(value))
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            amount = Decimal(value)
        except ArithmeticError:
            return None
        return amount if amount.is_finite() else None
    return None


EXCEL_EPOCH = datetime.date(1899, 12, 30).toordinal()  # day 0 of Excel's 1900 date system


@functools.lru_cache(maxsize=4096)  # a column of dates repeats a few thousand days at most
def _excel_date(text: str) -> int | None:
    """An ISO date as the day number Excel stores (the cell's date format shows it as a date); None when the
    text is no date, or a day before 1900-03-01 (where Excel's 1900 calendar is off by one)."""
    if not ISO_DATE.match(text):
        return None
    try:
        serial = datetime.date.fromisoformat(text).toordinal() - EXCEL_EPOCH
    except ValueError:
        return None
    return serial if serial >= 61 else None


def _kind_of_values(sample: list[Sequence[Any]], index: int) -> str:
    values = [row[index] for row in sample if index < len(row) and row[index] is not None]
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return INTEGER
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return NUMBER
    return TEXT


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _widths(headings: list[str], kinds: list[str], sample: list[Sequence[Any]]) -> list[float]:
    widths = []
    for index, (name, kind) in enumerate(zip(headings, kinds)):
        if kind in (FEN, YUAN):
            longest = max((len(f"{_yuan(row[index], kind) or 0:,.2f}") for row in sample
                           if index < len(row) and row[index] is not None), default=10)
        elif kind == DATE:
            longest = 10
        else:
            longest = max((_display_width(str(row[index])) for row in sample
                           if index < len(row) and row[index] is not None), default=6)
        widths.append(min(max(longest, _display_width(name)) + 2, MAX_WIDTH))
    return widths


class _Peekable:
    """An iterator that can tell whether it goes on without losing the row it looked at."""

    def __init__(self, iterable: Iterable[Sequence[Any]]):
        self._iterator = iter(iterable)
        self._buffer: list[Sequence[Any]] = []

    def __iter__(self) -> _Peekable:
        return self

    def __next__(self) -> Sequence[Any]:
        return self._buffer.pop() if self._buffer else next(self._iterator)

    def has_more(self) -> bool:
        if not self._buffer:
            try:
                self._buffer.append(next(self._iterator))
            except StopIteration:
                return False
        return True


# ------------------------------------------------------------ a run's workbook

RUN_SHEET = "run"
EXPORT_SHEETS = ("findings", "assessments", "tasks")


def provenance(run: sqlite3.Row, masker: Masker, generated_at: str | None = None) -> list[tuple[str, Any]]:
    """The run sheet's fields: where every figure in the workbook comes from."""
    try:
        packs = ", ".join(json.loads(run["packs"] or "[]"))
    except ValueError:
        packs = run["packs"]
    return [
        ("run_id", run["run_id"]),
        ("cooperative", run["cooperative"]),
        ("as_of", run["as_of"]),
        ("status", run["status"]),
        ("packs", packs),
        ("config_sha256", run["config_sha256"] or "(no config file: the built-in defaults)"),
        ("snapshot_sha256", run["snapshot_sha256"]),
        ("snapshot_id", run["snapshot_id"]),
        ("started_at", run["started_at"]),
        ("finished_at", run["finished_at"]),
        ("loanrules_version", run["loanrules_version"]),
        ("generated_at", generated_at or utcnow()),
        ("generated_by", f"loanrules {loanrules.__version__}"),
        ("personal_data", "shown in full ([privacy] show_personal_data = true)" if masker.show
         else "names and ID numbers masked"),
        ("money", "yuan, exact to the fen"),
    ]


def export_sheet(conn: sqlite3.Connection, run: sqlite3.Row, masker: Masker, what: str) -> Sheet:
    """Findings, assessments or tasks as in ``loanrules export WHAT`` (same columns, same masking), money
    written as numbers of yuan from the exact decimal text of the CSV export."""
    money = results.EXPORTS[what][2]
    return Sheet(what, results.export_columns(what),
                 (masker.row(row) for row in results.export_rows(conn, what, run)),
                 kinds={name: YUAN for name in money}, source=f"{results.EXPORTS[what][0]} of run {run['run_id']}")


def summary_sheets(conn: sqlite3.Connection, run: sqlite3.Row, masker: Masker,
                   titles: Mapping[str, str] | None = None) -> list[Sheet]:
    """The run's stored summaries, one sheet each (money ``*_fen`` as yuan, shares as percentages).

    A summary declares no personal columns, so ID numbers are masked wherever they appear, and a ``name``
    only when the row is a borrower's (it has ``borrower_id``): an appraisal agency's name stays."""
    sheets = []
    for summary in results.summaries(conn, run, masker=masker):
        title = (titles or {}).get(summary.summary_id, "")
        rows = iter(summary.rows)
        sheets.append(Sheet(summary.summary_id, summary.columns, rows,
                            source=f"summary {summary.summary_id}" + (f": {title}" if title else "")))
    return sheets


REPORT_KINDS = {"money": FEN, "share": SHARE, "date": DATE, "count": INTEGER, "text": TEXT}
# The report's tables that show a stored summary again: the workbook has the summary's own sheet with the same
# figures, so it leaves these out (``ReportTable`` does not say where a table comes from: hence this list).
SUMMARY_REPORT_TABLES = frozenset({
    "collateral_coverage",  # collateral.coverage_by_type
    "agency_scorecard",  # collateral.agency_scorecard
    "key_households",  # collection.key_households
})


def report_sheets(conn: sqlite3.Connection, run: sqlite3.Row, masker: Masker,
                  check_titles: Mapping[str, str] | None = None) -> list[Sheet]:
    """The report's tables (``loanrules.report.data.report_tables``: whole, already masked), a sheet each."""
    from loanrules.report.data import report_tables  # the report's code is loaded only when asked for

    sheets = []
    for table in report_tables(conn, run, masker, titles=check_titles):
        columns = tuple(table.columns)
        kinds = {column: REPORT_KINDS.get(kind, TEXT) for column, kind in zip(columns, table.kinds)}
        sheets.append(Sheet(table.sheet_name, columns, table.rows, kinds=kinds,
                            source=f"report table {table.sheet_name}" + (f": {table.title}" if table.title else "")))
    return sheets


def plain_table(sheet: Sheet) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """A sheet for CSV and JSON files (the export contract): ``*_fen`` money as decimal yuan strings under
    ``*_yuan``, shares as fractions, dates as ISO text; returns the headings and the rows."""
    kinds = [sheet.kinds.get(name) or column_kind(name) for name in sheet.columns]
    headings = [heading(name, kind) for name, kind in zip(sheet.columns, kinds)]

    def rows() -> Iterator[dict[str, Any]]:
        for row in sheet.rows:
            values = WorkbookWriter._ordered(row, sheet.columns)
            yield {name: format_fen(value) if kind == FEN and isinstance(value, int) else
                   float(value) if isinstance(value, Fraction) else value
                   for name, kind, value in zip(headings, kinds, values)}

    return headings, rows()


def _run_sheets(conn: sqlite3.Connection, run: sqlite3.Row, masker: Masker, titles: Mapping[str, str] | None,
                extra: Iterable[Sheet]) -> Iterator[Sheet]:
    """The sheets after the run sheet, each built only when the one before is written."""
    for what in EXPORT_SHEETS:
        yield export_sheet(conn, run, masker, what)
    yield from summary_sheets(conn, run, masker, titles)
    # a report table built from a summary would repeat the summary's sheet
    yield from (sheet for sheet in report_sheets(conn, run, masker, titles) if sheet.name not in SUMMARY_REPORT_TABLES)
    yield from extra


def write_run_workbook(conn: sqlite3.Connection, run: sqlite3.Row, masker: Masker, path: str | Path,
                       titles: Mapping[str, str] | None = None, extra: Iterable[Sheet] = (),
                       max_rows: int = MAX_ROWS) -> list[Written]:
    """The run's workbook at ``path``: the run sheet first (provenance, then the contents), then findings,
    assessments, tasks, the summaries, the report's tables (but those built from a summary:
    ``SUMMARY_REPORT_TABLES``) and any ``extra`` sheets. ``titles``: the titles of the contributions
    (summaries, checks) by id, from the registry."""
    writer = WorkbookWriter(path, max_rows)
    try:
        run_sheet = writer.add_key_values(RUN_SHEET, provenance(run, masker))
        for sheet in _run_sheets(conn, run, masker, titles, extra):
            writer.add(sheet)
        writer.append_table(run_sheet, "contents", ("sheet", "rows", "holds"),
                            [(w.name, w.rows, w.source) for w in writer.written])
    except BaseException:
        writer.abandon()
        raise
    writer.close()
    return writer.written
