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
from loanrules.run import RESOLVED_SQL
from loanrules.store import latest_run_id

EXPORTS = {
    "findings": ("findings", ("run_id", "check_id", "severity", "loan_id", "borrower_id", "collateral_id",
                              "message", "details", "status", "first_seen"), ()),
    "assessments": ("assessments", ("run_id", "loan_id", "borrower_id", "risk_class", "recorded_class",
                                    "recovery_category", "required_provision", "reasons"), ("required_provision",)),
    "tasks": ("collection_tasks", ("run_id", "task_id", "borrower_id", "loan_ids", "step", "assignee", "due_date",
                                   "priority", "status"), ()),
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


def previous_run(conn: sqlite3.Connection, run: sqlite3.Row) -> sqlite3.Row | None:
    run_id = run["previous_run_id"]
    return conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone() if run_id else None


def diff(conn: sqlite3.Connection, older: sqlite3.Row, newer: sqlite3.Row) -> Diff:
    params = {"older": older["run_id"], "newer": newer["run_id"]}
    new = conn.execute(
        "SELECT n.* FROM findings n WHERE n.run_id = :newer AND NOT EXISTS (SELECT 1 FROM findings o "
        "WHERE o.run_id = :older AND o.check_id = n.check_id AND o.subject_key = n.subject_key) "
        "ORDER BY n.check_id, n.rowid", params).fetchall()
    resolved = conn.execute(RESOLVED_SQL + " ORDER BY p.check_id, p.rowid", params).fetchall()
    counts: dict[str, list[int]] = {}
    for row in new:
        counts.setdefault(row["check_id"], [0, 0, 0])[0] += 1
    for row in resolved:
        counts.setdefault(row["check_id"], [0, 0, 0])[1] += 1
    for check_id, persisting in conn.execute(
            "SELECT n.check_id, count(*) FROM findings n WHERE n.run_id = :newer AND EXISTS (SELECT 1 FROM "
            "findings o WHERE o.run_id = :older AND o.check_id = n.check_id AND o.subject_key = n.subject_key) "
            "GROUP BY n.check_id", params):
        counts.setdefault(check_id, [0, 0, 0])[2] = persisting
    per_check = sorted((check_id, *values) for check_id, values in counts.items())
    return Diff(older, newer, new, resolved, per_check)


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


def summaries(conn: sqlite3.Connection, run: sqlite3.Row, selected: Sequence[str] = ()) -> list[StoredSummary]:
    """A run's stored summaries, in id order; ``selected`` ids or prefixes (``collateral``) narrow them."""
    found: dict[str, list[dict]] = {}
    for summary_id, data in conn.execute(
            "SELECT summary_id, data FROM summaries WHERE run_id = ? ORDER BY summary_id, row_no", (run["run_id"],)):
        if not selected or any(summary_id == s or summary_id.startswith(s + ".") for s in selected):
            found.setdefault(summary_id, []).append(json.loads(data))
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
