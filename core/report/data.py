"""The report's content as plain data: sections of highlights, tables and chart data, read from a results
database for one run.

Everything is aggregated inside SQLite, a few statements per section, so a book of a million loans reports
in seconds: no loan ever becomes a Python object. Tables keep raw values (money in integer fen, shares as
fractions) and say each column's kind, so the HTML and Markdown writers format them one way and the
exports (``report_tables``) write them as they are.

"Non-performing" means what it means in the checks: the run's computed class where the run classified the
loan, else the recorded class (substandard, doubtful, loss); written-off loans are off the books and count
neither as loans nor as non-performing. Borrowers' names and ID numbers pass through the ``Masker``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import attrs

from loanrules.model import format_fen
from loanrules.privacy import Masker
from loanrules.schema import NON_PERFORMING_CLASSES, RECOVERY_CATEGORIES, RISK_CLASSES
from loanrules.sqltext import NON_PERFORMING, rank_case, unrank_case

KINDS = ("text", "code", "count", "money", "share", "date")  # code: a word of a vocabulary (special_mention)
# Columns whose values are vocabulary words: shown to people with spaces for underscores.
CODE_COLUMNS = frozenset({"risk_class", "from_class", "recovery_category", "step", "level", "worst_class",
                          "product", "borrower_type", "guarantee_type", "collateral_type", "standing", "open_steps"})
UNCLASSIFIED = "unclassified"  # a loan with no computed and no recorded class
NOT_RECORDED = "(not recorded)"
SEVERITIES = ("critical", "warning", "info")

# Limits of the book at a glance: (check whose recorded parameter gives the limit, its parameter, default).
NPL_RATIO_LIMIT = ("portfolio.npl_ratio", "max_ratio", "0.05")
PROVISION_COVERAGE_LIMIT = ("portfolio.provision_coverage", "min_ratio", "1.50")
LOAN_PROVISION_LIMIT = ("portfolio.loan_provision_ratio", "min_ratio", "0.025")

# Collection steps in the order a plan climbs them (the escalation ladder, then the village collective
# steps); a step not listed here follows, alphabetically.
STEP_ORDER = ("reminder_call", "site_visit", "guarantor_notice", "special_team", "litigation",
              "write_off_application", "village_cadre_meeting", "township_report", "land_transfer_collection")

DISPLAY_LIMIT = 15  # rows a long table shows in the report; the exports have all of them
CHART_LIMIT = 12  # bars a chart shows


# ------------------------------------------------------------ the values


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


# ------------------------------------------------------------ formatting for people


def yuan(fen: int | None) -> str:
    """Integer fen as yuan with thousands separators, exact: 123456789 -> '1,234,567.89'."""
    text = format_fen(fen)
    if text is None:
        return ""
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, cents = text.split(".")
    return f"{sign}{int(whole):,}.{cents}"


def percent(share: float | Fraction | None, places: int = 2) -> str:
    return "" if share is None else f"{100 * float(share):.{places}f}%"


def format_value(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "money":
        return yuan(value)
    if kind == "share":
        return percent(value)
    if kind == "count" and isinstance(value, int):
        return f"{value:,}"
    if kind == "code":
        return str(value).replace("_", " ")
    return str(value)


def _share(part: int | None, whole: int | None) -> float | None:
    return part / whole if part is not None and whole else None


def _prefix(column: str, prefix: str) -> str:
    """SQL: ``column`` starts with ``prefix.`` — as a range, so the (run_id, check_id) index serves it."""
    return f"({column} >= '{prefix}.' AND {column} < '{prefix}/')"


def _label(value: Any) -> str:
    return NOT_RECORDED if value is None or value == "" else str(value)


def _word(code: Any) -> str:
    """A vocabulary word for people: special_mention -> special mention."""
    return str(code).replace("_", " ")


def _humanize(key: str) -> str:
    for suffix, unit in (("_fen", " (yuan)"), ("_share", " (%)"), ("_count", "")):
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " ") + unit
    return key.replace("_", " ")


def _kind_of(key: str, value: Any = None) -> str:
    if key.endswith("_fen"):
        return "money"
    if key.endswith("_share"):
        return "share"
    if key.endswith(("_count", "rank")) or isinstance(value, int):
        return "count"
    return "code" if key in CODE_COLUMNS else "text"


# ------------------------------------------------------------ building


def build_report(conn: sqlite3.Connection, run: Mapping, masker: Masker, *,
                 titles: Mapping[str, str] | None = None, display_limit: int | None = DISPLAY_LIMIT) -> Report:
    """The report of ``run`` (a row of ``runs``): ordered sections, each with its data or why it has none.

    ``titles`` names the checks (from the registry; the ids stand alone without it); ``display_limit`` is
    how many rows a long table shows (None: all).
    """
    builder = _Builder(conn, run, masker, titles or {}, display_limit)
    try:
        sections = (builder.glance(), builder.classes(), builder.npl_sources(), builder.recovery(),
                    builder.collateral(), builder.villages(), builder.inspections(), builder.collection(),
                    builder.findings(), builder.provenance())
    finally:
        builder.close()
    subtitle = (f"{run['cooperative']} · as of {run['as_of']} · run {run['run_id']} ({run['status']})"
                + (f" · compared with run {builder.previous['run_id']} as of {builder.previous['as_of']}"
                   if builder.previous is not None else " · no previous as-of"))
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


def _limit(run: Mapping, check_id: str, param: str, default: str) -> tuple[Decimal, str]:
    """A limit from the run's recorded parameters of ``check_id``, else the default; and where it came from."""
    recorded = json.loads(run["params"] or "{}").get(check_id, {}).get("params", {})
    if param in recorded:
        try:
            return Decimal(str(recorded[param])), f"{check_id} {param} as this run recorded it"
        except InvalidOperation:
            pass
    return Decimal(default), f"default ({check_id} did not run)"


class _Builder:
    def __init__(self, conn: sqlite3.Connection, run: Mapping, masker: Masker, titles: Mapping[str, str],
                 display_limit: int | None):
        self.conn = conn
        self.run = run
        self.masker = masker
        self.titles = titles
        self.display_limit = display_limit
        self.previous = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run["previous_run_id"],)).fetchone() \
            if run["previous_run_id"] else None
        self.contributions = {row[0]: (row[1], row[2], row[3]) for row in conn.execute(
            "SELECT contribution_id, kind, status, reason FROM run_contributions WHERE run_id = ?",
            (run["run_id"],))}
        snapshot = conn.execute("SELECT row_counts FROM snapshots WHERE snapshot_id = ?",
                                (run["snapshot_id"],)).fetchone()
        self.row_counts = json.loads(snapshot[0] or "{}") if snapshot else {}
        self.params = {"run_id": run["run_id"], "snapshot_id": run["snapshot_id"], "as_of": run["as_of"]}
        self.classified = conn.execute("SELECT 1 FROM assessments WHERE run_id = ? LIMIT 1",
                                       (run["run_id"],)).fetchone() is not None
        self._book_ready = False
        self._cells = None
        # The pass over the book and its temporary table want more than SQLite's default 2 MB page cache
        # (measured over 1M loans: 14 s for the whole report with it, 6 s with 64 MB); put back in close().
        self._cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size = {min(self._cache_size, -65536)}")

    # -------------------------------------------------------- helpers

    def q(self, sql: str, **params) -> list[tuple]:
        return [tuple(row) for row in self.conn.execute(sql, {**self.params, **params})]

    def title_of(self, check_id: str) -> str:
        return self.titles.get(check_id, "")

    def has_table(self, name: str) -> bool:
        return bool(self.row_counts.get(name))

    def outcome_of(self, prefix_or_ids: Sequence[str] | str) -> dict[str, tuple[str, str, str | None]]:
        """This run's contributions with these ids, or whose ids start with ``prefix.``: id -> (kind, status,
        reason)."""
        if isinstance(prefix_or_ids, str):
            return {cid: v for cid, v in self.contributions.items() if cid.startswith(prefix_or_ids + ".")}
        return {cid: self.contributions[cid] for cid in prefix_or_ids if cid in self.contributions}

    @staticmethod
    def why_not(outcomes: Mapping[str, tuple[str, str, str | None]], what: str, pack: str) -> str:
        """Why contributions gave nothing: their skip or failure reasons, or that none was in the run."""
        if not outcomes:
            return f"no {what} ran in this run: run a pack with one (e.g. `--pack {pack}`)"
        reasons = sorted({f"{cid} {status}: {reason}" for cid, (_, status, reason) in outcomes.items()
                          if status != "ok"})
        return f"no {what} gave results in this run (" + "; ".join(reasons) + ")" if reasons else \
            f"the {what} ran and found nothing to show"

    @property
    def class_source(self) -> str:
        if self.classified:
            return "this run's computed class"
        return "the recorded class (no classification ran in this run)"

    # The one pass over the book: every loan of the snapshot, its class now (and at the previous as-of), its
    # amounts, and for a non-performing loan the facts the breakdowns need, into a temporary table keyed by
    # loan_id. Every section reads it instead of the snapshot: looking up the assessment (and the previous
    # snapshot's loan and assessment) of a million loans is the expensive part, done once.
    BOOK = "temp.report_loans"

    def _book(self) -> str:
        if not self._book_ready:
            previous = self.previous_snapshot()
            if previous is not None:
                before = f"""CASE WHEN p.loan_id IS NULL THEN 'new'
                                  WHEN coalesce(p.written_off, 0) != 0 THEN 'written_off'
                                  ELSE coalesce(pa.risk_class, p.recorded_class, '{UNCLASSIFIED}') END"""
                joins = """LEFT JOIN loans p ON p.snapshot_id = :previous_snapshot AND p.loan_id = l.loan_id
                           LEFT JOIN assessments pa ON pa.run_id = :previous_run AND pa.loan_id = p.loan_id"""
            else:
                before, joins = "NULL", ""
            npl = f"(coalesce(l.written_off, 0) = 0 AND coalesce(a.risk_class, l.recorded_class) IN {NON_PERFORMING})"
            only_npl = "CASE WHEN npl THEN {} END"
            self.conn.execute(f"DROP TABLE IF EXISTS {self.BOOK}")
            self.conn.execute(f"""
                CREATE TABLE {self.BOOK} (
                    loan_id TEXT PRIMARY KEY, written_off INTEGER, risk_class TEXT, before TEXT, npl INTEGER,
                    outstanding INTEGER, provision INTEGER, required INTEGER, assessed INTEGER,
                    borrower_id TEXT, branch TEXT, product TEXT, guarantee_type TEXT, origination_year TEXT,
                    lending_officer TEXT) WITHOUT ROWID""")
            self.conn.execute(f"""
                INSERT INTO {self.BOOK}
                SELECT loan_id, written_off, risk_class, before, npl, outstanding, provision, required, assessed,
                       {only_npl.format('borrower_id')}, {only_npl.format('branch_id')},
                       {only_npl.format('product')}, {only_npl.format('guarantee_type')},
                       {only_npl.format('substr(origination_date, 1, 4)')},
                       {only_npl.format('lending_officer_id')}
                FROM (SELECT l.loan_id, coalesce(l.written_off, 0) != 0 AS written_off,
                             coalesce(a.risk_class, l.recorded_class) AS risk_class, {before} AS before,
                             {npl} AS npl, l.outstanding_principal AS outstanding,
                             coalesce(l.provision, 0) AS provision, a.required_provision AS required,
                             a.loan_id IS NOT NULL AS assessed, l.borrower_id, l.branch_id, l.product,
                             l.guarantee_type, l.origination_date, l.lending_officer_id
                      FROM loans l
                      LEFT JOIN assessments a ON a.run_id = :run_id AND a.loan_id = l.loan_id
                      {joins}
                      WHERE l.snapshot_id = :snapshot_id
                      ORDER BY l.loan_id)
            """, {**self.params, "previous_snapshot": previous["snapshot_id"] if previous else None,
                  "previous_run": previous["run_id"] if previous else None})
            self._book_ready = True
        return self.BOOK

    def close(self) -> None:
        if self._book_ready:
            self.conn.execute(f"DROP TABLE IF EXISTS {self.BOOK}")
            self._book_ready = False
        self.conn.execute(f"PRAGMA cache_size = {self._cache_size}")

    def previous_snapshot(self):
        """The previous run, when its snapshot is still stored (a re-load of its as-of replaces it)."""
        if self.previous is None:
            return None
        there = self.conn.execute("SELECT 1 FROM snapshots WHERE snapshot_id = ?",
                                  (self.previous["snapshot_id"],)).fetchone()
        return self.previous if there else None

    @property
    def cells(self) -> list[tuple]:
        """(written_off, class, class before, loans, outstanding, provision held, required provision, assessed)
        for each combination found in the book."""
        if self._cells is None:
            self._cells = self.q(f"""
                SELECT written_off, risk_class, before, count(*), coalesce(sum(outstanding), 0),
                       coalesce(sum(provision), 0), sum(required), sum(assessed)
                FROM {self._book()} GROUP BY 1, 2, 3
            """)
        return self._cells

    @property
    def by_class(self) -> list[tuple]:
        """(written_off, class, loans, outstanding, provision held, required provision, assessed) per class."""
        merged: dict[tuple, list] = {}
        for written_off, risk_class, _, *figures in self.cells:
            entry = merged.setdefault((written_off, risk_class), [0, 0, 0, None, 0])
            for i, value in enumerate(figures):
                if value is not None:
                    entry[i] = (entry[i] or 0) + value
        return [(*key, *figures) for key, figures in sorted(merged.items(), key=lambda item: repr(item[0]))]

    def book_totals(self) -> dict[str, Any]:
        on_book = [row for row in self.by_class if not row[0]]
        npl = [row for row in on_book if row[1] in NON_PERFORMING_CLASSES]
        written_off = [row for row in self.by_class if row[0]]
        assessed = sum(row[6] for row in on_book)
        return {
            "loans": sum(row[2] for row in on_book), "outstanding": sum(row[3] for row in on_book),
            "npl_loans": sum(row[2] for row in npl), "npl_outstanding": sum(row[3] for row in npl),
            "provision": sum(row[4] for row in on_book),
            "required": sum(row[5] or 0 for row in on_book) if assessed else None, "assessed": assessed,
            "written_off_loans": sum(row[2] for row in written_off),
            "written_off_outstanding": sum(row[3] for row in written_off),
        }

    # -------------------------------------------------------- 1. the book at a glance

    def glance(self) -> Section:
        section_id, title = "glance", "The book at a glance"
        if not self.has_table("loans") and not self.by_class:
            return Section.without_data(section_id, title, "the run's snapshot has no loans")
        book = self.book_totals()
        indicators = []
        highlights = [
            Highlight("Loans on the books", f"{book['loans']:,}",
                      f"{book['written_off_loans']:,} written off, not counted" if book["written_off_loans"] else ""),
            Highlight("Outstanding principal (yuan)", yuan(book["outstanding"])),
            Highlight("Non-performing loans", f"{book['npl_loans']:,}", f"{yuan(book['npl_outstanding'])} yuan"),
        ]

        def indicator(name, part, whole, limit, rule, why_none):
            limit_value, source = limit
            if not whole:
                indicators.append((name, None, float(limit_value), rule, "n/a", source, why_none))
                highlights.append(Highlight(name, "n/a", why_none))
                return
            value = Fraction(part, whole)
            within = value <= Fraction(limit_value) if rule == "at most" else value >= Fraction(limit_value)
            indicators.append((name, float(value), float(limit_value), rule, "yes" if within else "no",
                               source, ""))
            highlights.append(Highlight(name, percent(value), f"limit: {rule} {percent(limit_value)}",
                                        "ok" if within else "breach"))

        indicator("NPL ratio", book["npl_outstanding"], book["outstanding"], _limit(self.run, *NPL_RATIO_LIMIT),
                  "at most", "no loan on the books")
        indicator("Provision coverage", book["provision"], book["npl_outstanding"],
                  _limit(self.run, *PROVISION_COVERAGE_LIMIT), "at least", "no non-performing loan")
        indicator("Loan provision ratio", book["provision"], book["outstanding"],
                  _limit(self.run, *LOAN_PROVISION_LIMIT), "at least", "no loan on the books")
        if book["required"] is not None:
            indicator("Provisions held / required", book["provision"], book["required"],
                      (Decimal(1), "the provisions the classification requires"), "at least",
                      "the classification requires no provision")
        tables = [
            Table("book", "The book", (
                Column("loans", "loans", "count"), Column("outstanding_fen", "outstanding", "money"),
                Column("npl_loans", "non-performing loans", "count"),
                Column("npl_outstanding_fen", "non-performing outstanding", "money"),
                Column("provision_fen", "provisions held", "money"),
                Column("required_provision_fen", "provision required", "money"),
                Column("written_off_loans", "written-off loans", "count"),
                Column("written_off_fen", "written-off outstanding", "money"),
            ), [(book["loans"], book["outstanding"], book["npl_loans"], book["npl_outstanding"], book["provision"],
                 book["required"], book["written_off_loans"], book["written_off_outstanding"])]),
            Table("indicators", "Indicators against their limits", (
                Column("indicator", "indicator"), Column("value", "value", "share"),
                Column("limit", "limit", "share"), Column("rule", "rule"), Column("within_limit", "within"),
                Column("limit_source", "limit from"), Column("note", "note"),
            ), indicators,
                note="NPL ratio = non-performing outstanding / outstanding. Provision coverage = provisions held "
                     "(loans.provision) / non-performing outstanding, the regulator's ratio that "
                     "portfolio.provision_coverage judges. Loan provision ratio = provisions held / outstanding. "
                     "Provisions held / required compares with the provision the classification requires."),
        ]
        intro = (f"Loans on the books at {self.run['as_of']}, written-off loans excluded. Non-performing "
                 f"(substandard, doubtful, loss) by {self.class_source}"
                 + (" (the recorded class for a loan the classification did not judge)." if self.classified else "."))
        return Section(section_id, title, intro, highlights, tables)

    # -------------------------------------------------------- 2. classes and migration

    def classes(self) -> Section:
        section_id, title = "classes", "Risk classes and their migration"
        on_book = [row for row in self.by_class if not row[0]]
        if not on_book:
            return Section.without_data(section_id, title, "no loan on the books in this run's snapshot")
        per_class = {(row[1] or UNCLASSIFIED): row for row in on_book}
        order = [c for c in (*RISK_CLASSES, UNCLASSIFIED) if c in per_class or c in RISK_CLASSES]
        total = sum(row[3] for row in on_book)
        rows = []
        for risk_class in order:
            row = per_class.get(risk_class)
            loans, outstanding, provision, required = (row[2], row[3], row[4], row[5]) if row else (0, 0, 0, None)
            rows.append((risk_class, loans, outstanding, _share(outstanding, total), provision, required))
        tables = [Table("classes", "Loans by risk class", (
            Column("risk_class", "class"), Column("loans", "loans", "count"),
            Column("outstanding_fen", "outstanding", "money"), Column("outstanding_share", "share", "share"),
            Column("provision_fen", "provisions held", "money"),
            Column("required_provision_fen", "provision required", "money"),
        ), rows)]
        charts = [Chart("classes-outstanding", "Outstanding principal by risk class", "bar", map(_word, order),
                        [Series("outstanding", [row[2] for row in rows])], unit="money",
                        description="Outstanding principal of the loans on the books in each class, in yuan.",
                        table="classes")]
        intro = f"Classes are {self.class_source}."
        highlights = []
        previous = self.previous
        snapshot_there = self.previous_snapshot() is not None
        if previous is None:
            intro += " This is the cooperative's first run: there is no previous as-of to compare classes with."
        elif not snapshot_there:
            intro += (f" The snapshot of the previous run ({previous['run_id']}, {previous['as_of']}) is no longer "
                      "stored, so the migration cannot be shown.")
        else:
            matrix_tables, chart, highlights = self._migration(previous)
            tables += matrix_tables
            charts.append(chart)
            intro += (f" The migration compares each loan's class at the previous as-of, {previous['as_of']} "
                      f"(run {previous['run_id']}, its computed class where it classified, else recorded), with "
                      f"its class now; `new` loans were not in the previous snapshot, `left the book` ones are "
                      f"no longer in this one (repaid or transferred).")
        return Section(section_id, title, intro, highlights, tables, charts)

    def _migration(self, previous) -> tuple[list[Table], Chart, list[Highlight]]:
        cells = [(before, "written_off" if written_off else (risk_class or UNCLASSIFIED), loans, outstanding)
                 for written_off, risk_class, before, loans, outstanding, *_ in self.cells]
        cells += self.q(f"""
            SELECT CASE WHEN coalesce(p.written_off, 0) != 0 THEN 'written_off'
                        ELSE coalesce(pa.risk_class, p.recorded_class, '{UNCLASSIFIED}') END,
                   'left the book', count(*), coalesce(sum(p.outstanding_principal), 0)
            FROM loans p
            LEFT JOIN assessments pa ON pa.run_id = :previous_run AND pa.loan_id = p.loan_id
            WHERE p.snapshot_id = :previous_snapshot
              AND NOT EXISTS (SELECT 1 FROM {self._book()} l WHERE l.loan_id = p.loan_id)
            GROUP BY 1
        """, previous_snapshot=previous["snapshot_id"], previous_run=previous["run_id"])
        merged: dict[tuple, list[int]] = {}
        for before_class, after_class, loans, outstanding in cells:
            entry = merged.setdefault((before_class, after_class), [0, 0])
            entry[0] += loans
            entry[1] += outstanding
        cells = [(*key, *figures) for key, figures in merged.items()]
        found_before = {c[0] for c in cells}
        found_after = {c[1] for c in cells}
        extra = (UNCLASSIFIED, "written_off")
        before = [*RISK_CLASSES, *(x for x in extra if x in found_before), *(["new"] if "new" in found_before else [])]
        after = [*RISK_CLASSES, *(x for x in extra if x in found_after),
                 *(["left the book"] if "left the book" in found_after else [])]
        counts = {(c[0], c[1]): c[2] for c in cells}
        amounts = {(c[0], c[1]): c[3] for c in cells}

        def matrix(table_id, title, values, kind, note):
            columns = [Column("from_class", "from \\ to")] + [
                Column(f"to_{name.replace(' ', '_')}", name, kind) for name in after] + [Column("total", "total", kind)]
            rows = [(b, *(values.get((b, a), 0) for a in after), sum(values.get((b, a), 0) for a in after))
                    for b in before]
            rows.append(("total", *(sum(values.get((b, a), 0) for b in before) for a in after),
                         sum(values.values())))
            return Table(table_id, title, columns, rows, note=note)

        tables = [
            matrix("migration_count", f"Loans from their class at {previous['as_of']} (rows) to now (columns)",
                   counts, "count", ""),
            matrix("migration_outstanding", "The same, outstanding principal", amounts, "money",
                   "Outstanding now; for loans that left the book, their outstanding at the previous as-of."),
        ]
        chart = Chart("migration", f"Class migration since {previous['as_of']}, loans", "matrix", before,
                      [Series(a, [counts.get((b, a), 0) for b in before]) for a in after], unit="count",
                      description="Rows: the class at the previous as-of; columns: the class now. Each cell counts "
                                  "loans; the diagonal stayed in their class.",
                      row_axis=f"class at {previous['as_of']}", column_axis=f"class at {self.run['as_of']}",
                      table="migration_count")
        rank = {name: i for i, name in enumerate(RISK_CLASSES)}
        npl = set(NON_PERFORMING_CLASSES)
        into = [(k, v) for k, v in counts.items() if k[0] in rank and k[1] in npl and k[0] not in npl]
        out_of = [(k, v) for k, v in counts.items() if k[0] in npl and k[1] in rank and k[1] not in npl]
        worse = sum(v for k, v in counts.items() if k[0] in rank and k[1] in rank and rank[k[1]] > rank[k[0]])
        better = sum(v for k, v in counts.items() if k[0] in rank and k[1] in rank and rank[k[1]] < rank[k[0]])
        highlights = [
            Highlight("Became non-performing", f"{sum(v for _, v in into):,} loans",
                      f"{yuan(sum(amounts[k] for k, _ in into))} yuan"),
            Highlight("Left non-performing", f"{sum(v for _, v in out_of):,} loans",
                      f"{yuan(sum(amounts[k] for k, _ in out_of))} yuan (still on the books)"),
            Highlight("Downgraded / upgraded", f"{worse:,} / {better:,}", "loans whose class got worse / better"),
        ]
        return tables, chart, highlights

    # -------------------------------------------------------- 3. where the NPLs come from

    DIMENSIONS = (
        ("branch", "branch", "r.branch"),
        ("product", "product", "r.product"),
        ("borrower_type", "borrower type", "b.borrower_type"),
        ("guarantee_type", "guarantee type", "r.guarantee_type"),
        ("origination_year", "origination year", "r.origination_year"),
        ("lending_officer", "lending officer", "r.lending_officer"),
    )

    def npl_sources(self) -> Section:
        section_id, title = "npl-sources", "Where the non-performing loans come from"
        book = self.book_totals()
        if not book["npl_loans"]:
            return Section.without_data(section_id, title, "no non-performing loan on the books "
                                                           f"(by {self.class_source})")
        # The non-performing loans into a cube of every combination of the six dimensions, then each
        # dimension is a small GROUP BY over the cube: one sort of the non-performing loans, not six.
        dims = ", ".join(f"{expression} AS {name}" for name, _, expression in self.DIMENSIONS)
        cube = f"""
            SELECT {dims}, count(*) AS loans, sum(r.outstanding) AS outstanding
            FROM {self._book()} r
            LEFT JOIN borrowers b ON b.snapshot_id = :snapshot_id AND b.borrower_id = r.borrower_id
            WHERE r.npl
            GROUP BY {", ".join(str(i) for i in range(1, len(self.DIMENSIONS) + 1))}
        """
        parts = " UNION ALL ".join(f"SELECT '{name}', {name}, sum(loans), sum(outstanding) FROM cube GROUP BY {name}"
                                   for name, _, _ in self.DIMENSIONS)
        rows = self.q(f"WITH cube AS MATERIALIZED ({cube}) {parts}")
        tables, charts = [], []
        for name, heading, _ in self.DIMENSIONS:
            if name == "origination_year":  # a vintage reads in time order
                mine = sorted((r[1:] for r in rows if r[0] == name), key=lambda r: (r[0] is None, r[0] or ""))
            else:
                mine = sorted((r[1:] for r in rows if r[0] == name), key=lambda r: (-r[2], -r[1], _label(r[0])))
            table_rows = [(value, loans, outstanding, _share(loans, book["npl_loans"]),
                           _share(outstanding, book["npl_outstanding"])) for value, loans, outstanding in mine]
            tables.append(Table(f"npl_by_{name}", f"By {heading}", (
                Column(name, heading), Column("npl_loans", "NPL loans", "count"),
                Column("npl_outstanding_fen", "NPL outstanding", "money"),
                Column("loans_share", "share of NPL loans", "share"),
                Column("outstanding_share", "share of NPL outstanding", "share"),
            ), table_rows, display_limit=self.display_limit,
                note="" if name != "borrower_type" or self.has_table("borrowers") else
                "The snapshot has no borrowers.csv: borrower types are not recorded."))
            if name == "origination_year" and len(table_rows) > CHART_LIMIT:  # the latest vintages, older together
                shown, rest = table_rows[-CHART_LIMIT:], table_rows[:-CHART_LIMIT]
            else:
                shown, rest = table_rows[:CHART_LIMIT], table_rows[CHART_LIMIT:]
            labels = [_word(_label(r[0])) if name in CODE_COLUMNS else _label(r[0]) for r in shown]
            values = [r[2] for r in shown]
            if rest:
                where = 0 if name == "origination_year" else len(labels)
                labels.insert(where, f"{len(rest)} more")
                values.insert(where, sum(r[2] for r in rest))
            charts.append(Chart(f"npl-by-{name.replace('_', '-')}", f"NPL outstanding by {heading}", "bar", labels,
                                [Series("NPL outstanding", values)], unit="money",
                                description=f"Non-performing outstanding principal by {heading}, in yuan"
                                            + (", oldest first." if name == "origination_year" else ", largest first."),
                                table=f"npl_by_{name}"))
        intro = (f"{book['npl_loans']:,} non-performing loans, {yuan(book['npl_outstanding'])} yuan outstanding "
                 f"(by {self.class_source}), by branch, product, borrower type, guarantee type, origination year "
                 "and lending officer: how many, how much, and their share of all non-performing loans.")
        return Section(section_id, title, intro, (), tables, charts)

    # -------------------------------------------------------- 4. recovery categories and plans

    def recovery(self) -> Section:
        section_id, title = "recovery", "Recovery categories and plans"
        categories = self.q(f"""
            SELECT a.recovery_category, count(*), coalesce(sum(l.outstanding_principal), 0),
                   sum(a.required_provision)
            FROM assessments a JOIN loans l ON l.snapshot_id = :snapshot_id AND l.loan_id = a.loan_id
            WHERE a.run_id = :run_id AND (a.recovery_category IS NOT NULL OR a.risk_class IN {NON_PERFORMING})
              AND coalesce(l.written_off, 0) = 0
            GROUP BY 1
        """)
        steps = self.q("""
            SELECT step, count(*), count(DISTINCT borrower_id), sum(due_date < :as_of), min(due_date)
            FROM collection_tasks WHERE run_id = :run_id AND status = 'open' GROUP BY step
        """)
        if not categories and not steps:
            classifiers = {cid: v for cid, v in self.contributions.items() if v[0] == "classifier"}
            if not self.classified:
                why = (self.why_not(classifiers, "classification", "cn-five-category") if classifiers else
                       "no classification ran in this run, so no loan has a recovery category, and no collection "
                       "plan was made: run the packs cn-five-category and cooperative-baseline")
            else:
                why = "no non-performing loan on the books, so no recovery category and no open collection task"
            return Section.without_data(section_id, title, why)
        tables, charts, highlights = [], [], []
        if categories:
            order = {name: i for i, name in enumerate(RECOVERY_CATEGORIES)}
            categories.sort(key=lambda r: (order.get(r[0], len(order)), _label(r[0])))
            total = sum(r[2] for r in categories)
            rows = [(r[0] or "(none)", r[1], r[2], _share(r[2], total), r[3]) for r in categories]
            tables.append(Table("recovery_categories", "Non-performing loans by recovery category", (
                Column("recovery_category", "recovery category"), Column("loans", "loans", "count"),
                Column("outstanding_fen", "outstanding", "money"), Column("outstanding_share", "share", "share"),
                Column("required_provision_fen", "provision required", "money"),
            ), rows, note="Computed by this run's classification for its non-performing loans on the books; "
                          "(none): non-performing without a category."))
            charts.append(Chart("recovery-categories", "Non-performing outstanding by recovery category", "bar",
                                [_word(r[0]) for r in rows], [Series("outstanding", [r[2] for r in rows])],
                                unit="money",
                                description="Outstanding principal of the non-performing loans in each recovery "
                                            "category, in yuan.", table="recovery_categories"))
            for row in rows:
                highlights.append(Highlight(_word(row[0]), f"{row[1]:,} loans", f"{yuan(row[2])} yuan"))
        else:
            tables.append(Table("recovery_categories", "Non-performing loans by recovery category", (
                Column("recovery_category", "recovery category"),), [],
                note="No recovery category: no classification ran in this run (run the pack cn-five-category)."
                if not self.classified else "No non-performing loan on the books: no recovery category."))
        if steps:
            steps.sort(key=lambda r: _step_key(r[0]))
            tables.append(Table("open_tasks_by_step", "Open collection tasks by step (the plans)", (
                Column("step", "step"), Column("open_tasks", "open tasks", "count"),
                Column("households", "borrowers", "count"), Column("overdue", "overdue", "count"),
                Column("earliest_due", "earliest due", "date"),
            ), steps))
            cross = self.q(f"""
                WITH worst AS MATERIALIZED (
                    SELECT borrower_id, max({rank_case('recovery_category', RECOVERY_CATEGORIES)}) AS rank
                    FROM assessments WHERE run_id = :run_id AND recovery_category IS NOT NULL
                    GROUP BY borrower_id)
                SELECT coalesce({unrank_case('w.rank', RECOVERY_CATEGORIES)}, '(none)'), t.step, count(*)
                FROM collection_tasks t LEFT JOIN worst w ON w.borrower_id = t.borrower_id
                WHERE t.run_id = :run_id AND t.status = 'open'
                GROUP BY 1, 2
            """)
            cats = sorted({c[0] for c in cross}, key=lambda c: (c not in RECOVERY_CATEGORIES,
                                                                RECOVERY_CATEGORIES.index(c)
                                                                if c in RECOVERY_CATEGORIES else 0, c))
            step_names = sorted({c[1] for c in cross}, key=_step_key)
            counts = {(c[0], c[1]): c[2] for c in cross}
            tables.append(Table("plans_by_category", "Open tasks by the borrower's worst recovery category and step", (
                Column("recovery_category", "recovery category"),
                *(Column(step, _word(step), "count") for step in step_names),
            ), [(cat, *(counts.get((cat, step), 0) for step in step_names)) for cat in cats],
                note="(none): the borrower has no loan with a recovery category (e.g. an early reminder)."))
            charts.append(Chart("plans-by-category", "Open collection tasks by recovery category and step", "stacked",
                                map(_word, cats), [Series(_word(step), [counts.get((cat, step), 0) for cat in cats])
                                       for step in step_names],
                                description="For each recovery category (the borrower's worst), its open "
                                            "collection tasks by step.", table="plans_by_category"))
        else:
            tables.append(Table("open_tasks_by_step", "Open collection tasks by step (the plans)", (
                Column("step", "step"),), [], note=self.why_not(self.outcome_of("collection"), "collection strategy",
                                                                 "cooperative-baseline")))
        intro = ("The classification sorts each non-performing loan into a recovery category; the collection "
                 "strategies turn them into plans, a task per borrower and step.")
        return Section(section_id, title, intro, highlights, tables, charts)

    # -------------------------------------------------------- 5. collateral

    def collateral(self) -> Section:
        section_id, title = "collateral", "Collateral coverage and the appraisal-agency scorecard"
        from loanrules.results import summaries

        ids = ("collateral.coverage_by_type", "collateral.agency_scorecard")
        stored = {s.summary_id: s for s in summaries(self.conn, self.run, ids)}
        if not stored:
            return Section.without_data(section_id, title, self.why_not(self.outcome_of(ids), "collateral summary",
                                                                          "cooperative-baseline"))
        tables, charts = [], []
        coverage = stored.get("collateral.coverage_by_type")
        if coverage is not None:
            tables.append(_summary_table("collateral_coverage", "Coverage by collateral type", coverage))
            by_type = [r for r in coverage.rows if r.get("collateral_type") != "all"]
            if by_type:
                charts.append(Chart("collateral-coverage", "Appraised value over the exposure it secures, by type",
                                    "bar", [_word(r["collateral_type"]) for r in by_type],
                                    [Series("coverage", [r.get("coverage_share") for r in by_type])], unit="share",
                                    description="Appraised value of the collateral of each type over the outstanding "
                                                "principal of the loans it secures; below 100% the collateral does "
                                                "not cover the loans.", table="collateral_coverage"))
        scorecard = stored.get("collateral.agency_scorecard")
        if scorecard is not None:
            tables.append(_summary_table("agency_scorecard", "Appraisal agency scorecard", scorecard,
                                         display_limit=self.display_limit))
            agencies = list(scorecard.rows)[:CHART_LIMIT]
            if agencies:
                problems = (("stale_count", "stale appraisal"), ("over_ltv_count", "over loan-to-value"),
                            ("value_dropped_count", "value dropped"), ("npl_backed_count", "secures an NPL"))
                charts.append(Chart("agency-scorecard", "Appraisal agencies: problems in the collateral they appraised",
                                    "stacked",
                                    [" ".join(str(x) for x in (r.get("appraiser_id"), r.get("name")) if x)
                                     for r in agencies],
                                    [Series(label, [r.get(key) or 0 for r in agencies]) for key, label in problems],
                                    description="For each appraisal agency (largest appraised value first), how many "
                                                "of the collateral it appraised are stale, over their loan-to-value "
                                                "limit, fell in value, or secure a non-performing loan (a "
                                                "collateral with two of these counts under each).",
                                    table="agency_scorecard"))
        missing = [i for i in ids if i not in stored]
        intro = ("As stored with the run by the collateral summaries (`loanrules summaries collateral`)."
                 + (f" Not stored: {', '.join(missing)} "
                    f"({self.why_not(self.outcome_of(missing), 'summary', 'cooperative-baseline')})."
                    if missing else ""))
        return Section(section_id, title, intro, (), tables, charts)

    # -------------------------------------------------------- 6. village collectives

    def villages(self) -> Section:
        section_id, title = "villages", "Village collectives"
        types = json.loads(self.run["params"] or "{}").get("village.large_exposure", {}).get("params", {}).get(
            "collective_types", ["village_collective"])
        if isinstance(types, str):
            types = [t.strip() for t in types.split(",") if t.strip()]
        if not self.has_table("borrowers"):
            return Section.without_data(section_id, title, "the snapshot has no borrowers.csv, so village "
                                                           "collectives cannot be told from other borrowers")
        worst = unrank_case(f"max({rank_case('coalesce(a.risk_class, l.recorded_class)')})")
        rows = self.q(f"""
            SELECT b.borrower_id, b.name, b.village, b.township, count(*), sum(l.outstanding_principal),
                   sum(coalesce(l.interest_arrears, 0)),
                   sum(CASE WHEN coalesce(a.risk_class, l.recorded_class) IN {NON_PERFORMING}
                            THEN l.outstanding_principal ELSE 0 END),
                   {worst}, max(l.days_past_due), v.land_transfer_expected_date, v.land_compensation_amount
            FROM borrowers b
            CROSS JOIN loans l
            LEFT JOIN assessments a ON a.run_id = :run_id AND a.loan_id = l.loan_id
            LEFT JOIN villages v ON v.snapshot_id = :snapshot_id AND v.village = b.village
            WHERE b.snapshot_id = :snapshot_id AND b.borrower_type IN (SELECT value FROM json_each(:types))
              AND l.snapshot_id = :snapshot_id AND l.borrower_id = b.borrower_id AND coalesce(l.written_off, 0) = 0
            GROUP BY b.borrower_id
        """, types=json.dumps(list(types)))
        if not rows:
            return Section.without_data(section_id, title, f"no borrower of type {', '.join(types)} has a loan on "
                                                           "the books")
        rows.sort(key=lambda r: (-r[5], r[0]))
        keys = ("borrower_id", "name", "village", "township", "loans", "outstanding_fen", "interest_arrears_fen",
                "npl_outstanding_fen", "worst_class", "max_days_past_due", "land_transfer_expected_date",
                "land_compensation_fen")
        masked = [tuple(self.masker.row(dict(zip(keys, r))).values()) for r in rows]
        table = Table("village_collectives", "Village collectives with loans on the books", (
            Column("borrower_id", "borrower"), Column("name", "name"), Column("village", "village"),
            Column("township", "township"), Column("loans", "loans", "count"),
            Column("outstanding_fen", "outstanding", "money"),
            Column("interest_arrears_fen", "interest arrears", "money"),
            Column("npl_outstanding_fen", "NPL outstanding", "money"), Column("worst_class", "worst class"),
            Column("max_days_past_due", "max days past due", "count"),
            Column("land_transfer_expected_date", "land transfer expected", "date"),
            Column("land_compensation_fen", "land compensation", "money"),
        ), masked, display_limit=self.display_limit, note="Largest outstanding first; land transfer from villages.csv.")
        checks = self._finding_counts("village")
        tables = [table, checks] if checks.rows else [table]
        book = self.book_totals()
        exposure = sum(r[5] for r in rows)
        npl = sum(r[7] for r in rows)
        highlights = [
            Highlight("Village collectives", f"{len(rows):,}", f"{sum(r[4] for r in rows):,} loans"),
            Highlight("Their outstanding (yuan)", yuan(exposure),
                      f"{percent(_share(exposure, book['outstanding']))} of the book"),
            Highlight("Their non-performing (yuan)", yuan(npl), f"{percent(_share(npl, exposure))} of theirs"),
        ]
        shown = rows[:CHART_LIMIT]
        charts = [Chart("village-exposure", "Outstanding of the largest village collectives", "stacked",
                        [f"{r[0]} {r[2] or ''}".strip() for r in shown],
                        [Series("performing", [r[5] - r[7] for r in shown]),
                         Series("non-performing", [r[7] for r in shown])], unit="money",
                        description="Outstanding principal of each village collective, split into performing and "
                                    "non-performing, in yuan, largest first.", table="village_collectives")]
        intro = (f"Borrowers of type {', '.join(types)} (the village checks' `collective_types` as this run recorded "
                 f"them), their loans on the books and the village checks' findings of this run.")
        return Section(section_id, title, intro, highlights, tables, charts)

    def _finding_counts(self, prefix: str) -> Table:
        """Findings of this run's checks ``prefix.*``: every such check that ran, with its status."""
        counts = {r[0]: r[1:] for r in self.q(f"""
            SELECT check_id, count(*), sum(status = 'new'), sum(severity = 'critical')
            FROM findings WHERE run_id = :run_id AND {_prefix('check_id', prefix)} GROUP BY check_id
        """)}
        checks = sorted(set(counts) | {cid for cid, (kind, _, _) in self.outcome_of(prefix).items() if kind == "check"})
        rows = [(cid, self.title_of(cid), self.contributions.get(cid, ("", "ok", None))[1],
                 *(counts.get(cid) or (0, 0, 0))) for cid in checks]
        return _drop_blank(Table(f"{prefix}_findings", f"Findings of the {prefix}.* checks", (
            Column("check_id", "check"), Column("title", "title"), Column("status", "ran"),
            Column("findings", "findings", "count"), Column("new", "new", "count"),
            Column("critical", "critical", "count"),
        ), rows))

    # -------------------------------------------------------- 7. inspection compliance

    def inspections(self) -> Section:
        section_id, title = "inspections", "Post-loan inspection compliance"
        outcomes = {cid: v for cid, v in self.outcome_of("inspection").items() if v[0] == "check"}
        ran = {cid for cid, v in outcomes.items() if v[1] == "ok"}
        if not ran:
            return Section.without_data(section_id, title, self.why_not(outcomes, "inspection check",
                                                                          "cooperative-baseline"))
        book_table = self._book()
        per_check = {r[0]: r[1:] for r in self.q(f"""
            SELECT f.check_id, count(*), count(DISTINCT f.loan_id),
                   count(DISTINCT CASE WHEN r.npl THEN f.loan_id END),
                   count(DISTINCT CASE WHEN NOT r.npl THEN f.loan_id END)
            FROM findings f LEFT JOIN {book_table} r ON r.loan_id = f.loan_id
            WHERE f.run_id = :run_id AND {_prefix('f.check_id', 'inspection')}
            GROUP BY f.check_id
        """)}
        any_npl = self.q(f"""
            SELECT count(DISTINCT f.loan_id) FROM findings f JOIN {book_table} r ON r.loan_id = f.loan_id
            WHERE f.run_id = :run_id AND {_prefix('f.check_id', 'inspection')} AND r.npl
        """)[0][0]
        book = self.book_totals()
        npl_loans = book["npl_loans"]
        rows = []
        for cid in sorted(set(outcomes) | set(per_check)):
            findings, loans, npl, performing = per_check.get(cid, (0, 0, 0, 0))
            rows.append((cid, self.title_of(cid), outcomes.get(cid, ("", "ok", None))[1], findings, loans, npl,
                         _share(npl, npl_loans), performing))
        table = _drop_blank(Table("inspection_compliance", "Inspection checks: loans flagged", (
            Column("check_id", "check"), Column("title", "title"), Column("status", "ran"),
            Column("findings", "findings", "count"), Column("loans", "loans", "count"),
            Column("npl_loans", "non-performing loans", "count"),
            Column("npl_share", "share of all NPL loans", "share"), Column("performing_loans", "performing loans",
                                                                            "count"),
        ), rows, note="A check that was skipped (its table missing) judged nothing."))
        charts = [Chart("inspection-flags", "Loans flagged by each inspection check", "stacked",
                        [r[0] for r in rows], [Series("non-performing", [r[5] for r in rows]),
                                               Series("performing", [r[7] for r in rows])],
                        description="Loans with a finding of each inspection check, non-performing and performing.",
                        table="inspection_compliance")]
        highlights = [
            Highlight("Non-performing loans", f"{npl_loans:,}"),
            Highlight("Inspected as required", f"{npl_loans - any_npl:,}",
                      f"{percent(_share(npl_loans - any_npl, npl_loans))} of the non-performing loans"
                      if npl_loans else "", "ok" if npl_loans == any_npl else "breach",
                      "all as required" if npl_loans == any_npl else "not all as required"),
            Highlight("With an inspection finding", f"{any_npl:,}",
                      f"{percent(_share(any_npl, npl_loans))} of the non-performing loans" if npl_loans else ""),
        ]
        skipped = sorted(cid for cid in outcomes if cid not in ran)
        intro = ("Non-performing loans must be inspected monthly and on site quarterly (REFERENCE.md §4). The "
                 "inspection checks' findings of this run, against the non-performing loans on the books"
                 + (f"; skipped: {'; '.join(f'{cid}: {outcomes[cid][2]}' for cid in skipped)}" if skipped else "")
                 + ".")
        return Section(section_id, title, intro, highlights, [table], charts)

    # -------------------------------------------------------- 8. collection progress, key households

    def collection(self) -> Section:
        section_id, title = "collection", "Collection progress and the key-household ledger"
        progress = self.q("""
            SELECT step,
                   sum(status = 'open' AND (due_date IS NULL OR due_date >= :as_of)),
                   sum(status = 'open' AND due_date < :as_of),
                   sum(status = 'done' AND (due_date IS NULL OR closed_on <= due_date)),
                   sum(status = 'done' AND closed_on > due_date),
                   sum(status = 'replaced'), sum(status = 'cured'), count(*)
            FROM collection_tasks WHERE run_id = :run_id GROUP BY step
        """)
        from loanrules.results import summaries

        key = summaries(self.conn, self.run, ("collection.key_households",))
        strategies = {cid: v for cid, v in self.contributions.items() if v[0] == "strategy"}
        if not progress and not key:
            if any(v[1] == "ok" for v in strategies.values()):
                why = "the collection strategies ran and planned nothing: no borrower needs collecting"
            elif strategies:
                why = self.why_not(strategies, "collection strategy", "cooperative-baseline")
            else:
                why = ("no collection strategy ran: run a pack with collection_tasks "
                       "(e.g. `--pack cooperative-baseline`)")
            return Section.without_data(section_id, title, why)
        tables, charts, highlights = [], [], []
        if progress:
            progress.sort(key=lambda r: _step_key(r[0]))
            heads = ("open, not yet due", "open, overdue", "done on time", "done late", "replaced", "cured")
            tables.append(Table("collection_progress", "Collection tasks by step and status", (
                Column("step", "step"), Column("open_not_due", heads[0], "count"),
                Column("open_overdue", heads[1], "count"), Column("done_on_time", heads[2], "count"),
                Column("done_late", heads[3], "count"), Column("replaced", heads[4], "count"),
                Column("cured", heads[5], "count"), Column("total", "total", "count"),
            ), progress, note="Open tasks as of the run; closed ones closed in this run's period (done: the action "
                              "it asks for was recorded; replaced by another step; cured: no plan needed any more)."))
            charts.append(Chart("collection-progress", "Collection tasks by step and status", "stacked",
                                [_word(r[0]) for r in progress],
                                [Series(head, [r[i + 1] for r in progress]) for i, head in enumerate(heads)],
                                description="For each step of the plans, its tasks open (not yet due, overdue) and "
                                            "closed in this run's period (done on time, done late, replaced, cured).",
                                table="collection_progress"))
            totals = [sum(r[i] for r in progress) for i in range(1, 8)]
            highlights += [
                Highlight("Open tasks", f"{totals[0] + totals[1]:,}", f"{totals[1]:,} overdue",
                          "breach" if totals[1] else "ok", "some overdue" if totals[1] else "none overdue"),
                Highlight("Done this period", f"{totals[2] + totals[3]:,}",
                          f"{totals[2]:,} on time, {totals[3]:,} late"),
            ]
        else:
            tables.append(Table("collection_progress", "Collection tasks by step and status", (Column("step", "step"),),
                                [], note="No collection task in this run."))
        if key:
            ledger = key[0]
            ids = [r.get("borrower_id") for r in ledger.rows]
            people = {r[0]: r[1:] for r in self.q(
                "SELECT borrower_id, name, id_number FROM borrowers WHERE snapshot_id = :snapshot_id "
                "AND borrower_id IN (SELECT value FROM json_each(:ids))", ids=json.dumps(ids))}
            keys = ("rank", "level", "borrower_id", "name", "id_number", "exposure_fen", "interest_arrears_fen",
                    "worst_class", "recovery_category", "open_steps", "recovered_fen")
            rows = []
            for r in ledger.rows:
                name, id_number = people.get(r.get("borrower_id"), (None, None))
                record = {"rank": r.get("rank"), "level": r.get("level"), "borrower_id": r.get("borrower_id"),
                          "name": name, "id_number": id_number, **{k: r.get(k) for k in keys[5:]}}
                rows.append(tuple(self.masker.row(record).values()))
            tables.append(Table("key_households", "Key-household ledger", tuple(
                Column(k, {"exposure_fen": "outstanding", "interest_arrears_fen": "interest arrears",
                           "recovered_fen": "recovered this period", "id_number": "ID number",
                           "open_steps": "open steps"}.get(k, k.replace("_", " ")),
                       _kind_of(k) if k != "rank" else "count") for k in keys),
                rows, display_limit=self.display_limit,
                note="Ranked by non-performing principal and interest; levels of \"three levels, a hundred "
                     "households\". Names and ID numbers " + ("shown" if self.masker.show else
                                                              "masked ([privacy] show_personal_data shows them)")
                     + "."))
            by_level: dict[str, list[int]] = {}
            for r in ledger.rows:
                entry = by_level.setdefault(str(r.get("level")), [0, 0])
                entry[0] += 1
                entry[1] += r.get("exposure_fen") or 0
            levels = list(by_level)
            charts.append(Chart("key-households", "Key households: outstanding by level", "bar",
                                [f"{_word(level)} ({by_level[level][0]})" for level in levels],
                                [Series("outstanding", [by_level[level][1] for level in levels])], unit="money",
                                description="Outstanding principal of the key households at each level (their count "
                                            "in brackets), in yuan.", table="key_households"))
            highlights.append(Highlight("Key households", f"{len(ledger.rows):,}",
                                        f"{yuan(sum(r.get('exposure_fen') or 0 for r in ledger.rows))} yuan"))
        checks = self._finding_counts("collection")
        if checks.rows:
            tables.append(checks)
        intro = ("The collection strategies' tasks in this run: a task stays open from night to night until the "
                 "action it asks for is recorded, another step replaces it or the borrower is cured.")
        return Section(section_id, title, intro, highlights, tables, charts)

    # -------------------------------------------------------- 9. findings

    def findings(self) -> Section:
        section_id, title = "findings", "Findings by check and severity"
        counts = self.q("SELECT check_id, severity, status, count(*) FROM findings WHERE run_id = :run_id "
                        "GROUP BY 1, 2, 3")
        resolved = {}
        if self.previous is not None:
            # RESOLVED_SQL (loanrules.run), counted per check; the checks that ran cleanly tonight as a list
            # rather than a lookup per finding: 1.0 s instead of 5.4 s over a million findings
            resolved = dict(self.q("""
                SELECT p.check_id, count(*) FROM findings p
                WHERE p.run_id = :older
                  AND p.check_id IN (SELECT contribution_id FROM run_contributions
                                     WHERE run_id = :newer AND status = 'ok')
                  AND NOT EXISTS (SELECT 1 FROM findings c WHERE c.run_id = :newer
                                  AND c.check_id = p.check_id AND c.subject_key = p.subject_key)
                GROUP BY p.check_id
            """, older=self.previous["run_id"], newer=self.run["run_id"]))
        checks_ran = [cid for cid, v in self.contributions.items() if v[0] == "check"]
        if not counts and not resolved:
            if not checks_ran:
                return Section.without_data(section_id, title, "no check ran in this run")
            return Section.without_data(section_id, title, f"the {len(checks_ran)} checks of this run found "
                                                           "nothing" + (", and nothing was resolved" if
                                                                        self.previous is not None else ""))
        per_check: dict[str, dict[str, int]] = {}
        for check_id, severity, status, n in counts:
            entry = per_check.setdefault(check_id, {})
            entry[severity] = entry.get(severity, 0) + n
            entry[status] = entry.get(status, 0) + n
        for check_id, n in resolved.items():
            per_check.setdefault(check_id, {})["resolved"] = n
        rows = []
        for check_id, entry in per_check.items():
            total = sum(entry.get(s, 0) for s in SEVERITIES)
            rows.append((check_id, self.title_of(check_id), *(entry.get(s, 0) for s in SEVERITIES), total,
                         entry.get("new", 0), entry.get("persisting", 0), entry.get("resolved", 0)))
        rows.sort(key=lambda r: (-r[2], -r[3], -r[4], r[0]))
        table = _drop_blank(Table("findings_by_check", "Findings by check", (
            Column("check_id", "check"), Column("title", "title"),
            *(Column(s, s, "count") for s in SEVERITIES), Column("total", "total", "count"),
            Column("new", "new", "count"), Column("persisting", "persisting", "count"),
            Column("resolved", "resolved", "count"),
        ), rows, note="New: not found by the previous run; resolved: found by the previous run, and its check ran "
                      "cleanly in this one without finding it again." if self.previous is not None else
                      "No previous run: every finding is new."))
        with_findings = sorted((r for r in rows if r[5]), key=lambda r: (-r[5], r[0]))[:40]
        charts = [Chart("findings-by-severity", "Findings by check and severity", "stacked",
                        [r[0] for r in with_findings],
                        [Series(s, [r[2 + i] for r in with_findings]) for i, s in enumerate(SEVERITIES)],
                        description="This run's findings of each check, by severity, most first"
                                    + (" (the 40 checks with the most)." if len([r for r in rows if r[5]]) > 40
                                       else "."), table="findings_by_check")]
        changed = sorted((r for r in rows if r[6] or r[8]), key=lambda r: (-(r[6] + r[8]), r[0]))[:40]
        if self.previous is not None and changed:
            charts.append(Chart("findings-new-resolved", f"New and resolved since {self.previous['as_of']}",
                                "stacked", [r[0] for r in changed],
                                [Series("new", [r[6] for r in changed]), Series("resolved", [r[8] for r in changed])],
                                description="Findings new in this run, and findings of the previous run resolved in "
                                            "this one, by check.", table="findings_by_check", show_total=False))
        new_critical = self.q("""
            SELECT check_id, loan_id, borrower_id, collateral_id, message FROM findings
            WHERE run_id = :run_id AND severity = 'critical' AND status = 'new'
            ORDER BY check_id, rowid LIMIT :limit
        """, limit=self.display_limit or -1)
        n_new_critical = sum(n for cid, severity, status, n in counts if severity == "critical" and status == "new")
        tables = [table, Table("new_critical", "New critical findings", (
            Column("check_id", "check"), Column("loan_id", "loan"), Column("borrower_id", "borrower"),
            Column("collateral_id", "collateral"), Column("message", "message"),
        ), new_critical, export=False, note=(f"The first {len(new_critical)} of {n_new_critical}: "
                                             "`loanrules findings --severity critical --status new` lists them all."
                                             if n_new_critical > len(new_critical) else ""))]
        totals = {s: sum(r[2 + i] for r in rows) for i, s in enumerate(SEVERITIES)}
        highlights = [
            Highlight("Critical", f"{totals['critical']:,}", status="breach" if totals["critical"] else "ok",
                      status_text="critical findings to act on" if totals["critical"] else "none"),
            Highlight("Warning", f"{totals['warning']:,}"),
            Highlight("Info", f"{totals['info']:,}"),
            Highlight("New / persisting / resolved",
                      f"{sum(r[6] for r in rows):,} / {sum(r[7] for r in rows):,} / {sum(r[8] for r in rows):,}",
                      f"since run {self.previous['run_id']} ({self.previous['as_of']})" if self.previous is not None
                      else "no previous run"),
        ]
        intro = f"Every finding of this run, by check ({len(checks_ran)} checks ran)."
        return Section(section_id, title, intro, highlights, tables, charts)

    # -------------------------------------------------------- 10. provenance

    def provenance(self) -> Section:
        section_id, title = "provenance", "Provenance of this run"
        run = self.run
        snapshot = self.conn.execute("SELECT sha256, source, loaded_at, quarantined FROM snapshots "
                                     "WHERE snapshot_id = ?", (run["snapshot_id"],)).fetchone()
        options = json.loads(run["options"] or "{}")
        overrides = "; ".join(f"{check}.{name}={value}" for check, values in (options.get("params") or {}).items()
                              for name, value in values.items()) if isinstance(options.get("params"), dict) else ""
        facts = [
            ("cooperative", run["cooperative"]), ("as of", run["as_of"]), ("run", str(run["run_id"])),
            ("status", run["status"]), ("started", run["started_at"]), ("finished", run["finished_at"]),
            ("previous run", f"{self.previous['run_id']} (as of {self.previous['as_of']})" if self.previous is not None
             else "none: the cooperative's first run"),
            ("snapshot", str(run["snapshot_id"])),
            ("snapshot sha256", run["snapshot_sha256"]),
            ("snapshot loaded from", snapshot[1] if snapshot else "(no longer stored)"),
            ("snapshot loaded at", snapshot[2] if snapshot else None),
            ("rows quarantined", str(snapshot[3] or 0) if snapshot else None),
            ("config sha256", run["config_sha256"] or "none: no config file (built-in defaults)"),
            ("command-line parameters", overrides or "none"),
            ("loanrules version", run["loanrules_version"]),
        ]
        packs = []
        for entry in json.loads(run["packs"] or "[]"):
            name, _, version = str(entry).partition("@")
            packs.append((name, version))
        kinds: dict[str, list[int]] = {}
        for kind, status, _ in self.contributions.values():
            entry = kinds.setdefault(kind, [0, 0, 0])
            entry[("ok", "skipped", "failed").index(status) if status in ("ok", "skipped", "failed") else 2] += 1
        not_ok = sorted((cid, v[0], v[1], v[2]) for cid, v in self.contributions.items() if v[1] != "ok")
        tables = [
            Table("provenance", "The run", (Column("field", "field"), Column("value", "value")), facts),
            Table("packs", "Packs and versions", (Column("pack", "pack"), Column("version", "version")), packs),
            Table("snapshot_rows", "Rows of the snapshot", (Column("table", "table"), Column("rows", "rows", "count")),
                  sorted(self.row_counts.items())),
            Table("contributions", "What ran", (
                Column("kind", "kind"), Column("ok", "ok", "count"), Column("skipped", "skipped", "count"),
                Column("failed", "failed", "count"),
            ), [(kind, *values) for kind, values in sorted(kinds.items())]),
        ]
        if not_ok:
            tables.append(Table("not_run", "Skipped or failed", (
                Column("contribution_id", "contribution"), Column("kind", "kind"), Column("status", "status"),
                Column("reason", "reason"),
            ), not_ok))
        intro = ("Enough to reproduce the run: the snapshot's hash, the packs and their versions, the config's "
                 "hash and the version of loanrules (the effective parameters are in the database, runs.params).")
        return Section(section_id, title, intro, (), tables)


def _drop_blank(table: Table, key: str = "title") -> Table:
    """The table without column ``key`` when no row has a value in it (check titles need the registry)."""
    if key not in table.keys:
        return table
    index = table.keys.index(key)
    if any(row[index] for row in table.rows):
        return table
    return attrs.evolve(table, columns=table.columns[:index] + table.columns[index + 1:],
                        rows=[row[:index] + row[index + 1:] for row in table.rows])


def _step_key(step: str | None) -> tuple:
    return (STEP_ORDER.index(step), "") if step in STEP_ORDER else (len(STEP_ORDER), step or "")


def _summary_table(table_id: str, title: str, stored, display_limit: int | None = None) -> Table:
    """A stored summary as a table: its columns as stored (money in fen, shares as fractions)."""
    rows = list(stored.rows)
    keys = list(stored.columns)
    first = rows[0] if rows else {}
    columns = [Column(k, _humanize(k), _kind_of(k, first.get(k))) for k in keys]
    return Table(table_id, title, columns, [tuple(r.get(k) for k in keys) for r in rows], display_limit=display_limit)
