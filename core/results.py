"""Reading results back: findings with filters, diffs between runs, export rows.

Money leaves the database as decimal yuan strings (the export contract);
personal data leaves masked unless the config says otherwise.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from loanrules.errors import UsageError
from loanrules.model import Severity, format_fen
from loanrules.privacy import Masker
from loanrules.run import RESOLVED_SQL
from loanrules.schema import RISK_CLASSES
from loanrules.sqltext import on_book, rank_case
from loanrules.store import COUNTED_STATUSES, latest_run_id, missing_result_columns

EXPORTS = {
    "findings": ("findings", ("run_id", "check_id", "severity", "loan_id", "borrower_id", "collateral_id",
                              "message", "details", "status", "first_seen"), ()),
    "assessments": ("assessments", ("run_id", "loan_id", "borrower_id", "risk_class", "recorded_class",
                                    "recovery_category", "required_provision", "reasons"), ("required_provision",)),
    # the task's lifecycle too: the strategy that planned it, the day it opened, the day it closed and what
    # closed it (JSON: the matching action, or the reason), the actions that mark it done (JSON array), and
    # why the strategy chose the step (JSON: its details)
    "tasks": ("collection_tasks", ("run_id", "task_id", "borrower_id", "loan_ids", "step", "assignee", "due_date",
                                   "priority", "status", "strategy_id", "opened_on", "closed_on", "closed_by",
                                   "done_when", "details"), ()),
}
# Export-only columns for people, derived from a stored one.
EXPLAINED = {"assessments": "reasons"}


def export_columns(what: str) -> tuple[str, ...]:
    columns = EXPORTS[what][1]
    return (*columns, "explanation") if what in EXPLAINED else columns


def explain(reasons: str | None) -> str:
    """The reasons JSON of an assessment as one line a credit officer can read."""
    parts = []
    for reason in json.loads(reasons or "[]"):
        details = dict(reason.get("details") or {})
        rule = details.pop("floor", None) or details.pop("rule", None) or reason.get("rule", "")
        if "required_provision" in reason:
            outcome = f"provision {format_fen(reason['required_provision'])}"
        else:
            outcome = next((str(reason[key]) for key in ("risk_class", "recovery_category") if key in reason), "")
        facts = ", ".join(_fact(key, value) for key, value in details.items() if value is not None)
        parts.append(f"{outcome}: {rule}" + (f" ({facts})" if facts else ""))
    return "; ".join(parts)


def open_results(db_path: str | Path) -> sqlite3.Connection:
    path = Path(db_path)
    if not path.is_file():
        raise UsageError(f"{path}: no such database (run `loanrules run` first, or pass --db)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
        raise UsageError(f"{path}: not a loanrules database (no runs table)")
    missing = missing_result_columns(conn)
    if missing:
        raise UsageError(f"{path}: made by an earlier loanrules, its tables lack {', '.join(missing)}; "
                         f"`loanrules upgrade-db --db {path}` adds them (nothing else changes)")
    return conn


def resolve_run(conn: sqlite3.Connection, run_id: int | None) -> sqlite3.Row:
    if run_id is None:
        run_id = latest_run_id(conn)
        if run_id is None:
            raise UsageError("no finished run in this database yet")
    row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise UsageError(f"no run {run_id} in this database")
    if row["superseded_by"] is not None:
        raise UsageError(f"run {run_id} was superseded by run {row['superseded_by']} (same cooperative and as-of)")
    return row


@attrs.frozen
class FindingFilter:
    check: Sequence[str] = ()
    severity: Severity | None = None  # at least this severity
    status: str | None = None
    branch: str | None = None


def findings(conn: sqlite3.Connection, run: sqlite3.Row, filters: FindingFilter,
             limit: int | None = None) -> list[sqlite3.Row]:
    where, params = ["f.run_id = ?"], [run["run_id"]]
    if filters.check:
        # a prefix selects a family: --check collateral matches collateral.*
        where.append("(" + " OR ".join("f.check_id = ? OR f.check_id LIKE ?" for _ in filters.check) + ")")
        for check in filters.check:
            params += [check, check.rstrip(".") + ".%"]
    if filters.severity is not None:
        allowed = [str(level) for level in Severity if level >= filters.severity]
        where.append(f"f.severity IN ({', '.join('?' * len(allowed))})")
        params += allowed
    if filters.status:
        where.append("f.status = ?")
        params.append(filters.status)
    if filters.branch:
        where.append("l.branch_id = ?")
        params.append(filters.branch)
    sql = (
        "SELECT f.check_id, f.severity, f.status, f.first_seen, f.loan_id, f.borrower_id, f.collateral_id, "
        "l.branch_id, f.message, f.details FROM findings f "
        "LEFT JOIN loans l ON l.snapshot_id = ? AND l.loan_id = f.loan_id "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY CASE f.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, f.check_id, f.rowid"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    if not _has_table(conn, "loans"):
        sql = sql.replace("LEFT JOIN loans l ON l.snapshot_id = ? AND l.loan_id = f.loan_id ", "")
        sql = sql.replace("l.branch_id", "NULL AS branch_id")
        return conn.execute(sql, params).fetchall()
    return conn.execute(sql, [run["snapshot_id"], *params]).fetchall()


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


@attrs.frozen
class Diff:
    older: sqlite3.Row
    newer: sqlite3.Row
    new: list[sqlite3.Row]
    resolved: list[sqlite3.Row]
    per_check: list[tuple[str, int, int, int]]  # check, new, resolved, persisting
    per_severity: list[tuple[str, int, int, int]] = ()  # severity (worst first), new, resolved, persisting
    checks: tuple[str, ...] = ()  # the --check ids or prefixes the findings were narrowed to (none: all)


def previous_run(conn: sqlite3.Connection, run: sqlite3.Row) -> sqlite3.Row | None:
    """The run of the cooperative's previous as-of when ``run`` ran; if that as-of was re-run since, the re-run."""
    run_id = run["previous_run_id"]
    previous = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone() if run_id else None
    seen = set()
    while previous is not None and previous["superseded_by"] is not None and previous["run_id"] not in seen:
        seen.add(previous["run_id"])
        previous = conn.execute("SELECT * FROM runs WHERE run_id = ?", (previous["superseded_by"],)).fetchone()
    return previous


COMPARABLE_STATUSES = COUNTED_STATUSES


def check_comparable(older: sqlite3.Row, newer: sqlite3.Row) -> None:
    """Refuse a comparison that would mislead: one run twice, a run that did not finish, two cooperatives."""
    if older["run_id"] == newer["run_id"]:
        raise UsageError(f"run {older['run_id']} compared with itself: give two different runs")
    for run in (older, newer):
        if run["status"] not in COMPARABLE_STATUSES:
            raise UsageError(f"run {run['run_id']} ({run['as_of']}) is {run['status']}: its results are not "
                             f"complete, so there is nothing to compare")
    if older["cooperative"] != newer["cooperative"]:
        raise UsageError(f"run {older['run_id']} is of {older['cooperative']!r} and run {newer['run_id']} of "
                         f"{newer['cooperative']!r}: a diff compares two runs of the same cooperative")


def _check_filter(alias: str, checks: Sequence[str], params: dict) -> str:
    """SQL narrowing ``alias``'s findings to check ids or prefixes (``collateral`` matches collateral.*)."""
    if not checks:
        return ""
    terms = []
    for index, check in enumerate(checks):
        params[f"check_{index}"] = check
        params[f"prefix_{index}"] = check.rstrip(".") + ".%"
        terms.append(f"{alias}.check_id = :check_{index} OR {alias}.check_id LIKE :prefix_{index}")
    return " AND (" + " OR ".join(terms) + ")"


def diff(conn: sqlite3.Connection, older: sqlite3.Row, newer: sqlite3.Row, checks: Sequence[str] = ()) -> Diff:
    """Findings new in ``newer`` and resolved since ``older`` (RESOLVED_SQL: only by a check that ran cleanly),
    with counts per check and per severity; ``checks`` (ids or prefixes) narrows every part of it."""
    check_comparable(older, newer)
    params: dict = {"older": older["run_id"], "newer": newer["run_id"]}
    on_new, on_old = _check_filter("n", checks, params), _check_filter("p", checks, params)
    new = conn.execute(
        "SELECT n.* FROM findings n WHERE n.run_id = :newer AND NOT EXISTS (SELECT 1 FROM findings o "
        "WHERE o.run_id = :older AND o.check_id = n.check_id AND o.subject_key = n.subject_key)"
        f"{on_new} ORDER BY n.check_id, n.rowid", params).fetchall()
    resolved = conn.execute(RESOLVED_SQL + on_old + " ORDER BY p.check_id, p.rowid", params).fetchall()
    persisting = conn.execute(
        "SELECT n.check_id, n.severity, count(*) FROM findings n WHERE n.run_id = :newer AND EXISTS (SELECT 1 "
        "FROM findings o WHERE o.run_id = :older AND o.check_id = n.check_id AND o.subject_key = n.subject_key)"
        f"{on_new} GROUP BY n.check_id, n.severity", params).fetchall()
    counts: dict[str, list[int]] = {}
    severities: dict[str, list[int]] = {}
    for index, items in ((0, new), (1, resolved)):
        for row in items:
            counts.setdefault(row["check_id"], [0, 0, 0])[index] += 1
            severities.setdefault(row["severity"], [0, 0, 0])[index] += 1
    for check_id, severity, count in persisting:
        counts.setdefault(check_id, [0, 0, 0])[2] += count
        severities.setdefault(severity, [0, 0, 0])[2] += count
    per_check = sorted((check_id, *values) for check_id, values in counts.items())
    per_severity = sorted(((severity, *values) for severity, values in severities.items()),
                          key=lambda row: (-_severity_rank(row[0]), row[0]))
    return Diff(older, newer, new, resolved, per_check, per_severity, tuple(checks))


def _severity_rank(word: str) -> int:
    try:
        return int(Severity.parse(word))
    except (ValueError, KeyError):
        return -1


# ------------------------------------------------------------ class migrations between two runs

NEW, GONE, UNKNOWN = "new", "gone", "unknown"  # the matrix's extra row, extra column, and a loan without class


@attrs.frozen
class ClassMigrations:
    """Loans by class in the older run (rows) against the newer (columns), with the loans new to the book
    (row ``new``) and gone from it (column ``gone``). A loan's class is its run's computed class when that
    run classified it, else its recorded class (``unknown`` when it has none); the book is each snapshot's
    loans not written off. Outstanding: the newer snapshot's, for a gone loan the older one's (fen)."""

    basis: dict[str, str]  # older/newer -> "computed" (the run classified its loans) or "recorded"
    cells: dict[tuple[str, str], tuple[int, int]]  # (from, to) -> (loans, outstanding fen); only non-empty cells
    upgrades: list[dict]  # loan_id, borrower_id, name, branch_id, from_class, to_class, outstanding_fen
    downgrades: list[dict]
    gone_written_off: tuple[int, int]  # of the gone: written off in the newer snapshot (loans, fen)

    @property
    def rows(self) -> list[str]:
        return self._labels(0, NEW)

    @property
    def columns(self) -> list[str]:
        return self._labels(1, GONE)

    def _labels(self, side: int, extra: str) -> list[str]:
        seen = {key[side] for key in self.cells}
        known = [c for c in RISK_CLASSES if c in seen]
        others = sorted(seen - set(RISK_CLASSES) - {extra, UNKNOWN})
        return known + others + [label for label in (UNKNOWN, extra) if label in seen]

    def total(self, label: str, side: int) -> tuple[int, int]:
        chosen = [value for key, value in self.cells.items() if key[side] == label]
        return sum(v[0] for v in chosen), sum(v[1] for v in chosen)


def _moves_sql() -> str:
    """SQL (a CTE ``moved``): each loan on either book with its older and newer class and outstanding, through
    the (snapshot_id, loan_id) and (run_id, loan_id) indexes rather than a join of two materialised books."""
    older_class = f"coalesce(sa.risk_class, l.recorded_class, '{UNKNOWN}')"
    newer_class = f"coalesce(sb.risk_class, m.recorded_class, '{UNKNOWN}')"
    return f"""
        WITH moved AS MATERIALIZED (
            SELECT l.loan_id, coalesce(m.borrower_id, l.borrower_id) AS borrower_id,
                   coalesce(m.branch_id, l.branch_id) AS branch_id, {older_class} AS from_class,
                   CASE WHEN m.loan_id IS NULL THEN '{GONE}' ELSE {newer_class} END AS to_class,
                   coalesce(m.outstanding_principal, l.outstanding_principal) AS fen,
                   m.loan_id IS NULL AND EXISTS (SELECT 1 FROM loans w WHERE w.snapshot_id = :newer_snapshot
                                                 AND w.loan_id = l.loan_id AND w.written_off = 1) AS written_off
            FROM loans l
            LEFT JOIN assessments sa ON sa.run_id = :older AND sa.loan_id = l.loan_id
            LEFT JOIN loans m ON m.snapshot_id = :newer_snapshot AND m.loan_id = l.loan_id AND {on_book('m')}
            LEFT JOIN assessments sb ON sb.run_id = :newer AND sb.loan_id = l.loan_id AND m.loan_id IS NOT NULL
            WHERE l.snapshot_id = :older_snapshot AND {on_book('l')}
            UNION ALL
            SELECT m.loan_id, m.borrower_id, m.branch_id, '{NEW}', {newer_class}, m.outstanding_principal, 0
            FROM loans m
            LEFT JOIN assessments sb ON sb.run_id = :newer AND sb.loan_id = m.loan_id
            WHERE m.snapshot_id = :newer_snapshot AND {on_book('m')}
              AND NOT EXISTS (SELECT 1 FROM loans l WHERE l.snapshot_id = :older_snapshot AND l.loan_id = m.loan_id
                              AND {on_book('l')})
        )
    """


def class_migrations(conn: sqlite3.Connection, older: sqlite3.Row, newer: sqlite3.Row) -> ClassMigrations:
    """The transition matrix of loan classes from ``older`` to ``newer``, by loan; every upgrade (a better
    class) and downgrade (a worse one), largest outstanding first. SQL only: Python sees the matrix's
    cells and the listed moves."""
    check_comparable(older, newer)
    params = {"older": older["run_id"], "newer": newer["run_id"], "older_snapshot": older["snapshot_id"],
              "newer_snapshot": newer["snapshot_id"]}
    basis = {side: "computed" if conn.execute("SELECT 1 FROM assessments WHERE run_id = ? LIMIT 1",
                                              (run["run_id"],)).fetchone() else "recorded"
             for side, run in (("older", older), ("newer", newer))}
    if not _has_table(conn, "loans"):
        return ClassMigrations(basis, {}, [], [], (0, 0))
    from_rank, to_rank = rank_case("m.from_class"), rank_case("m.to_class")
    borrowers = _has_table(conn, "borrowers")
    # one pass over both books: the matrix's cells (part 0), then the loans that changed class (part 1)
    rows = conn.execute(_moves_sql() + f"""
        SELECT 0 AS part, from_class, to_class, count(*) AS loans, coalesce(sum(fen), 0) AS fen,
               sum(written_off) AS off_loans, coalesce(sum(CASE WHEN written_off THEN fen END), 0) AS off_fen,
               NULL AS loan_id, NULL AS borrower_id, NULL AS name, NULL AS branch_id, NULL AS down
        FROM moved GROUP BY from_class, to_class
        UNION ALL
        SELECT 1, m.from_class, m.to_class, 1, m.fen, 0, 0, m.loan_id, m.borrower_id,
               {"w.name" if borrowers else "NULL"}, m.branch_id, {to_rank} > {from_rank}
        FROM moved m
        {"LEFT JOIN borrowers w ON w.snapshot_id = :newer_snapshot AND w.borrower_id = m.borrower_id"
         if borrowers else ""}
        WHERE {from_rank} != {to_rank}
        ORDER BY 1, 5 DESC, 8""", params)
    cells: dict[tuple[str, str], tuple[int, int]] = {}
    written_off = [0, 0]
    upgrades, downgrades = [], []
    for row in rows:
        if row["part"] == 0:
            cells[(row["from_class"], row["to_class"])] = (row["loans"], row["fen"])
            written_off[0] += row["off_loans"]
            written_off[1] += row["off_fen"]
        else:
            record = {"loan_id": row["loan_id"], "borrower_id": row["borrower_id"], "name": row["name"],
                      "branch_id": row["branch_id"], "from_class": row["from_class"], "to_class": row["to_class"],
                      "outstanding_fen": row["fen"]}
            (downgrades if row["down"] else upgrades).append(record)
    return ClassMigrations(basis, cells, upgrades, downgrades, (written_off[0], written_off[1]))


def _fact(key: str, value) -> str:
    if key.endswith("_fen") and isinstance(value, int):  # amounts read in yuan
        return f"{key.removesuffix('_fen')} {format_fen(value)}"
    return f"{key} {value}"


def export_rows(conn: sqlite3.Connection, what: str, run: sqlite3.Row) -> Iterator[dict]:
    table, columns, money = EXPORTS[what]
    cursor = conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE run_id = ? ORDER BY rowid",
                          (run["run_id"],))
    for row in cursor:
        record = dict(zip(columns, row))
        for name in money:
            record[name] = format_fen(record[name])
        if what in EXPLAINED:
            record["explanation"] = explain(record[EXPLAINED[what]])
        yield record


@attrs.frozen
class StoredSummary:
    summary_id: str
    columns: tuple[str, ...]
    rows: tuple[dict, ...]  # as stored: money in integer fen, shares as fractions


def summaries(conn: sqlite3.Connection, run: sqlite3.Row, selected: Sequence[str] = (),
              masker: Masker | None = None) -> list[StoredSummary]:
    """A run's stored summaries, in id order; ``selected`` ids or prefixes (``collateral``) narrow them.
    With a ``masker``, personal columns (a borrower's ``name``, ``id_number``) leave masked as everywhere."""
    found: dict[str, list[dict]] = {}
    for summary_id, data in conn.execute(
            "SELECT summary_id, data FROM summaries WHERE run_id = ? ORDER BY summary_id, row_no", (run["run_id"],)):
        if not selected or any(summary_id == s or summary_id.startswith(s + ".") for s in selected):
            row = json.loads(data)
            found.setdefault(summary_id, []).append(masker.row(row) if masker is not None else row)
    # a summary with no rows stores none: it still has a recorded outcome for the run
    for (summary_id,) in conn.execute(
            "SELECT contribution_id FROM run_contributions WHERE run_id = ? AND kind = 'summary' AND status = 'ok'",
            (run["run_id"],)):
        if not selected or any(summary_id == s or summary_id.startswith(s + ".") for s in selected):
            found.setdefault(summary_id, [])
    return [StoredSummary(sid, tuple(rows[0]) if rows else (), tuple(rows)) for sid, rows in sorted(found.items())]


def readable_summary_row(row: dict, percent: bool = False) -> dict:
    """Money (``*_fen``) as decimal yuan strings under ``*_yuan`` (the export contract); shares
    (``*_share``) stay fractions for files, and become percentages for people with ``percent``."""
    readable = {}
    for name, value in row.items():
        if name.endswith("_fen"):
            readable[name[:-4] + "_yuan"] = format_fen(value)
        elif percent and name.endswith("_share") and value is not None:
            readable[name] = f"{100 * value:.2f}%"
        else:
            readable[name] = value
    return readable
