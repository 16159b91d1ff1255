"""The report's values: sections of highlights, tables with raw figures (money in integer fen, shares as
fractions, each column saying its kind) and chart data; and the tables the exports get."""

from __future__ import annotations

from typing import Any

import attrs

from loanrules.report.formatting import CODE_COLUMNS, KINDS, format_value, humanize, kind_of


@attrs.frozen
class Column:
    key: str  # the name in exports: money columns end in ``_fen`` and hold integer fen
    heading: str  # for people
    kind: str = attrs.field()  # one of KINDS

    @kind.default
    def _kind_from_key(self) -> str:
        return "code" if self.key in CODE_COLUMNS else "text"

    def __attrs_post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.key}: kind {self.kind!r} is not one of {KINDS}")


def _rows(rows) -> tuple[tuple, ...]:
    return tuple(tuple(row) for row in rows)


@attrs.frozen
class Table:
    id: str  # unique in the report; also the sheet name of the exports
    title: str
    columns: tuple[Column, ...] = attrs.field(converter=tuple)
    rows: tuple[tuple, ...] = attrs.field(converter=_rows)  # raw values, in the columns' order
    note: str = ""
    display_limit: int | None = None  # the report shows the first rows only; exports write all
    export: bool = True  # False: a listing for people (the exports have the full findings already)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(column.key for column in self.columns)

    @property
    def money_columns(self) -> tuple[str, ...]:
        return tuple(column.key for column in self.columns if column.kind == "money")

    @property
    def shown_rows(self) -> tuple[tuple, ...]:
        return self.rows[:self.display_limit] if self.display_limit else self.rows

    @property
    def hidden_rows(self) -> int:
        return len(self.rows) - len(self.shown_rows)

    def display_rows(self) -> list[list[str]]:
        """The shown rows as text for people: money in yuan with separators, shares as percentages."""
        return [[format_value(value, column.kind) for value, column in zip(row, self.columns)]
                for row in self.shown_rows]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, row)) for row in self.rows]


@attrs.frozen
class Series:
    name: str
    values: tuple = attrs.field(converter=tuple)  # one per label; None where there is no value


@attrs.frozen
class Chart:
    """Data for one chart. ``bar``: one series, a bar per label. ``stacked``: a bar per label, a segment
    per series. ``matrix``: rows are the labels, columns the series (cell = series[j].values[i])."""

    id: str
    title: str
    kind: str  # bar | stacked | matrix
    labels: tuple[str, ...] = attrs.field(converter=tuple)
    series: tuple[Series, ...] = attrs.field(converter=tuple)
    unit: str = "count"  # count | money (values in fen) | share (fractions)
    description: str = ""
    row_axis: str = ""  # matrix: what the rows are
    column_axis: str = ""  # matrix: what the columns are
    table: str = ""  # the id of the table in the same section whose figures it draws
    show_total: bool = True  # stacked: write each bar's total (not when its parts do not add up to a whole)

    def __attrs_post_init__(self):
        if self.kind not in ("bar", "stacked", "matrix"):
            raise ValueError(f"chart {self.id}: kind {self.kind!r}")
        for series in self.series:
            if len(series.values) != len(self.labels):
                raise ValueError(f"chart {self.id}: series {series.name} has {len(series.values)} values "
                                 f"for {len(self.labels)} labels")


@attrs.frozen
class Highlight:
    label: str
    value: str
    note: str = ""
    status: str | None = None  # "ok" (within its limit), "breach", or None (no limit)
    status_text: str = ""  # what the status means here; default "within the limit" / "outside the limit"


@attrs.frozen
class Section:
    id: str
    title: str
    intro: str = ""
    highlights: tuple[Highlight, ...] = attrs.field(default=(), converter=tuple)
    tables: tuple[Table, ...] = attrs.field(default=(), converter=tuple)
    charts: tuple[Chart, ...] = attrs.field(default=(), converter=tuple)
    absent: str | None = None  # why the section has no data, when it has none

    @classmethod
    def without_data(cls, id: str, title: str, why: str) -> Section:
        return cls(id=id, title=title, absent=why)


@attrs.frozen
class Report:
    title: str
    cooperative: str
    as_of: str
    run_id: int
    status: str
    subtitle: str
    sections: tuple[Section, ...] = attrs.field(converter=tuple)
    personal_data_shown: bool = False

    def section(self, section_id: str) -> Section:
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(section_id)

    def table(self, table_id: str) -> Table:
        for section in self.sections:
            for table in section.tables:
                if table.id == table_id:
                    return table
        raise KeyError(table_id)


@attrs.frozen
class ReportTable:
    """One of the report's tables for the exports: raw values, money in integer fen."""

    sheet_name: str  # at most 31 characters, unique: a worksheet name
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    money_columns: tuple[str, ...]  # these columns hold integer fen
    kinds: tuple[str, ...]  # each column's kind (KINDS): shares are fractions


def drop_blank(table: Table, key: str = "title") -> Table:
    """The table without column ``key`` when no row has a value in it (check titles need the registry)."""
    if key not in table.keys:
        return table
    index = table.keys.index(key)
    if any(row[index] for row in table.rows):
        return table
    return attrs.evolve(table, columns=table.columns[:index] + table.columns[index + 1:],
                        rows=[row[:index] + row[index + 1:] for row in table.rows])


def summary_table(table_id: str, title: str, stored, display_limit: int | None = None) -> Table:
    """A stored summary as a table: its columns as stored (money in fen, shares as fractions)."""
    rows = list(stored.rows)
    keys = list(stored.columns)
    first = rows[0] if rows else {}
    columns = [Column(k, humanize(k), kind_of(k, first.get(k))) for k in keys]
    return Table(table_id, title, columns, [tuple(r.get(k) for k in keys) for r in rows], display_limit=display_limit)
