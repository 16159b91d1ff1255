"""What every section of the report reads: the run, the run it compares with, what contributed to it, its
recorded parameters, and one pass over the book into a temporary table (``loans_table``) with its cells
and totals. ``close()`` drops the temporary table and puts SQLite's page cache back.

"Non-performing" means what it means in the checks: the run's computed class where the run classified the
loan, else the recorded class (substandard, doubtful, loss); written-off loans are off the books and count
neither as loans nor as non-performing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from loanrules.errors import UsageError
from loanrules.privacy import Masker
from loanrules.report.model import Column, Table, drop_blank
from loanrules.results import ClassMigrations, class_migrations, previous_run
from loanrules.schema import NON_PERFORMING_CLASSES
from loanrules.sqltext import current_class, non_performing, on_book

DISPLAY_LIMIT = 15  # rows a long table shows in the report; the exports have all of them
CHART_LIMIT = 12  # bars a chart shows

Outcome = tuple[str, str, "str | None"]  # a contribution's (kind, status, reason)


def prefix_sql(column: str, prefix: str) -> str:
    """SQL: ``column`` starts with ``prefix.`` — as a range, so the (run_id, check_id) index serves it."""
    return f"({column} >= '{prefix}.' AND {column} < '{prefix}/')"


def recorded_limit(run: Mapping, check_id: str, param: str, default: str) -> tuple[Decimal, str]:
    """A limit from the run's recorded parameters of ``check_id``, else the default; and where it came from."""
    recorded = json.loads(run["params"] or "{}").get(check_id, {}).get("params", {})
    if param in recorded:
        try:
            return Decimal(str(recorded[param])), f"{check_id} {param} as this run recorded it"
        except InvalidOperation:
            pass
    return Decimal(default), f"default ({check_id} did not run)"


class Book:
    """The run and its book, read once for every section."""

    # The one pass over the book: every loan of the snapshot, its class, its amounts, and for a
    # non-performing loan the facts the breakdowns need, into a temporary table keyed by loan_id. Every
    # section reads it instead of the snapshot: looking up the assessment of a million loans is the
    # expensive part, done once. (The class migration is ``loanrules.results.class_migrations``'s.)
    LOANS = "temp.report_loans"

    def __init__(self, conn: sqlite3.Connection, run: Mapping, masker: Masker, titles: Mapping[str, str],
                 display_limit: int | None):
        self.conn = conn
        self.run = run
        self.masker = masker
        self.titles = titles
        self.display_limit = display_limit
        # the run of the previous as-of, or the re-run that superseded it (whose results are the ones kept)
        self.previous = previous_run(conn, run)
        self.contributions: dict[str, Outcome] = {row[0]: (row[1], row[2], row[3]) for row in conn.execute(
            "SELECT contribution_id, kind, status, reason FROM run_contributions WHERE run_id = ?",
            (run["run_id"],))}
        snapshot = conn.execute("SELECT row_counts FROM snapshots WHERE snapshot_id = ?",
                                (run["snapshot_id"],)).fetchone()
        self.row_counts = json.loads(snapshot[0] or "{}") if snapshot else {}
        self.params = {"run_id": run["run_id"], "snapshot_id": run["snapshot_id"], "as_of": run["as_of"]}
        self.classified = conn.execute("SELECT 1 FROM assessments WHERE run_id = ? LIMIT 1",
                                       (run["run_id"],)).fetchone() is not None
        self._loans_ready = False
        self._by_class: list[tuple] | None = None
        self._migrations: ClassMigrations | str | None = None
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

    def outcome_of(self, prefix_or_ids: Sequence[str] | str) -> dict[str, Outcome]:
        """This run's contributions with these ids, or whose ids start with ``prefix.``: id -> (kind, status,
        reason)."""
        if isinstance(prefix_or_ids, str):
            return {cid: v for cid, v in self.contributions.items() if cid.startswith(prefix_or_ids + ".")}
        return {cid: self.contributions[cid] for cid in prefix_or_ids if cid in self.contributions}

    @staticmethod
    def why_not(outcomes: Mapping[str, Outcome], what: str, pack: str) -> str:
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

    def limit(self, check_id: str, param: str, default: str) -> tuple[Decimal, str]:
        return recorded_limit(self.run, check_id, param, default)

    def finding_counts(self, prefix: str) -> Table:
        """Findings of this run's checks ``prefix.*``: every such check that ran, with its status."""
        counts = {r[0]: r[1:] for r in self.q(f"""
            SELECT check_id, count(*), sum(status = 'new'), sum(severity = 'critical')
            FROM findings WHERE run_id = :run_id AND {prefix_sql('check_id', prefix)} GROUP BY check_id
        """)}
        checks = sorted(set(counts) | {cid for cid, (kind, _, _) in self.outcome_of(prefix).items() if kind == "check"})
        rows = [(cid, self.title_of(cid), self.contributions.get(cid, ("", "ok", None))[1],
                 *(counts.get(cid) or (0, 0, 0))) for cid in checks]
        return drop_blank(Table(f"{prefix}_findings", f"Findings of the {prefix}.* checks", (
            Column("check_id", "check"), Column("title", "title"), Column("status", "ran"),
            Column("findings", "findings", "count"), Column("new", "new", "count"),
            Column("critical", "critical", "count"),
        ), rows))

    # -------------------------------------------------------- the book

    def loans_table(self) -> str:
        """The temporary table of the book's loans (made on first use)."""
        if not self._loans_ready:
            npl = f"({on_book()} AND {non_performing()})"
            only_npl = "CASE WHEN npl THEN {} END"
            self.conn.execute(f"DROP TABLE IF EXISTS {self.LOANS}")
            self.conn.execute(f"""
                CREATE TABLE {self.LOANS} (
                    loan_id TEXT PRIMARY KEY, written_off INTEGER, risk_class TEXT, npl INTEGER,
                    outstanding INTEGER, provision INTEGER, required INTEGER, assessed INTEGER,
                    borrower_id TEXT, branch TEXT, product TEXT, guarantee_type TEXT, origination_year TEXT,
                    lending_officer TEXT) WITHOUT ROWID""")
            self.conn.execute(f"""
                INSERT INTO {self.LOANS}
                SELECT loan_id, written_off, risk_class, npl, outstanding, provision, required, assessed,
                       {only_npl.format('borrower_id')}, {only_npl.format('branch_id')},
                       {only_npl.format('product')}, {only_npl.format('guarantee_type')},
                       {only_npl.format('substr(origination_date, 1, 4)')},
                       {only_npl.format('lending_officer_id')}
                FROM (SELECT l.loan_id, coalesce(l.written_off, 0) != 0 AS written_off,
                             {current_class()} AS risk_class,
                             {npl} AS npl, l.outstanding_principal AS outstanding,
                             coalesce(l.provision, 0) AS provision, a.required_provision AS required,
                             a.loan_id IS NOT NULL AS assessed, l.borrower_id, l.branch_id, l.product,
                             l.guarantee_type, l.origination_date, l.lending_officer_id
                      FROM loans l
                      LEFT JOIN assessments a ON a.run_id = :run_id AND a.loan_id = l.loan_id
                      WHERE l.snapshot_id = :snapshot_id
                      ORDER BY l.loan_id)
            """, self.params)
            self._loans_ready = True
        return self.LOANS

    def close(self) -> None:
        if self._loans_ready:
            self.conn.execute(f"DROP TABLE IF EXISTS {self.LOANS}")
            self._loans_ready = False
        self.conn.execute(f"PRAGMA cache_size = {self._cache_size}")

    def previous_snapshot(self):
        """The previous run, when its snapshot is still stored (a re-load of its as-of replaces it)."""
        if self.previous is None:
            return None
        there = self.conn.execute("SELECT 1 FROM snapshots WHERE snapshot_id = ?",
                                  (self.previous["snapshot_id"],)).fetchone()
        return self.previous if there else None

    @property
    def by_class(self) -> list[tuple]:
        """(written_off, class, loans, outstanding, provision held, required provision, assessed) per class
        found in the book (class None: no computed and no recorded class)."""
        if self._by_class is None:
            rows = self.q(f"""
                SELECT written_off, risk_class, count(*), coalesce(sum(outstanding), 0),
                       coalesce(sum(provision), 0), sum(required), sum(assessed)
                FROM {self.loans_table()} GROUP BY 1, 2
            """)
            self._by_class = sorted(rows, key=lambda row: repr(row[:2]))
        return self._by_class

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

    def migrations(self) -> ClassMigrations | str:
        """The class migration from the previous run to this one, as ``loanrules diff`` computes it
        (``results.class_migrations``); or why there is none."""
        if self._migrations is None:
            previous = self.previous
            if previous is None:
                self._migrations = ("This is the cooperative's first run: there is no previous as-of to compare "
                                    "classes with.")
            elif self.previous_snapshot() is None:
                self._migrations = (f"The snapshot of the previous run ({previous['run_id']}, {previous['as_of']}) "
                                    "is no longer stored, so the migration cannot be shown.")
            else:
                try:
                    self._migrations = class_migrations(self.conn, previous, self.run)
                except UsageError as error:
                    self._migrations = f"The migration cannot be shown: {error}."
        return self._migrations

