"""The results database: connection, schema of the contract tables, the run lock.

One SQLite file holds the loaded snapshots, the runs and their results.
sqlite-utils creates and introspects the schema; bulk rows go through
``executemany`` inside one transaction, which is ~10x faster than
``insert_all``'s small committed batches (DESIGN.md, Performance).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from loanrules.errors import DatabaseBusy, UsageError
from loanrules.schema import Reference, TableSpec

SCHEMA_VERSION = 1
# Python's sqlite3 uses the operating system's SQLite: the SQL here needs 3.35 (a CTE AS MATERIALIZED)
MINIMUM_SQLITE = (3, 35, 0)

# The contract tables of DESIGN.md ("Results store and exports"): names are
# stable, columns may be added. Extra columns here: runs.snapshot_id and the
# bookkeeping after it; findings.subject_key (the stable key of a finding).
RESULT_TABLES: dict[str, dict] = {
    "snapshots": dict(
        columns={"snapshot_id": int, "cooperative": str, "as_of": str, "sha256": str, "source": str,
                 "loaded_at": str, "row_counts": str, "quarantined": int},
        pk="snapshot_id",
    ),
    "runs": dict(
        columns={"run_id": int, "cooperative": str, "as_of": str, "started_at": str, "finished_at": str,
                 "status": str, "packs": str, "config_sha256": str, "snapshot_sha256": str,
                 "loanrules_version": str, "snapshot_id": int, "previous_run_id": int, "params": str,
                 "options": str, "pid": int, "host": str, "superseded_by": int, "error": str},
        pk="run_id",
    ),
    "run_contributions": dict(
        columns={"run_id": int, "contribution_id": str, "kind": str, "plugin": str, "status": str,
                 "reason": str, "rows": int, "seconds": float, "severity": str, "params": str},
    ),
    "findings": dict(
        columns={"run_id": int, "check_id": str, "severity": str, "loan_id": str, "borrower_id": str,
                 "collateral_id": str, "message": str, "details": str, "status": str, "first_seen": str,
                 "subject_key": str},
    ),
    "assessments": dict(
        columns={"run_id": int, "loan_id": str, "borrower_id": str, "risk_class": str, "recorded_class": str,
                 "recovery_category": str, "required_provision": int, "reasons": str},
    ),
    # status: open, done (a matching action), replaced (another step), cured (no plan needed any more);
    # a closed task is stored on the night it closed, an open one every night until then
    "collection_tasks": dict(
        columns={"run_id": int, "task_id": str, "borrower_id": str, "loan_ids": str, "step": str,
                 "assignee": str, "due_date": str, "priority": int, "status": str, "strategy_id": str,
                 "opened_on": str, "closed_on": str, "closed_by": str, "done_when": str, "details": str},
    ),
    # A run's report figures (loanrules.Summary): one row per figure row, its columns as a JSON object in order.
    "summaries": dict(
        columns={"run_id": int, "summary_id": str, "row_no": int, "data": str},
    ),
    "quarantine": dict(
        columns={"snapshot_id": int, "file": str, "line": int, "column": str, "value": str, "reason": str,
                 "row": str},
    ),
}

RESULT_INDEXES = (
    ("snapshots", ("cooperative", "as_of")),
    ("runs", ("cooperative", "as_of")),
    ("findings", ("run_id", "check_id", "subject_key")),
    ("assessments", ("run_id", "loan_id")),
    ("collection_tasks", ("run_id", "borrower_id")),
    ("run_contributions", ("run_id",)),
    ("summaries", ("run_id", "summary_id", "row_no")),
)


def utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the database in autocommit mode: the run issues BEGIN/COMMIT itself."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        # A rollback journal, not WAL: a night's load appends pages past the end of
        # the file, which a rollback journal need not copy, while WAL writes every
        # page twice (measured: commit of 1M loans 0.15 s vs 0.4-0.9 s). Readers
        # wait for the commit; a killed run's hot journal is rolled back on next open.
        conn.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as error:
        raise UsageError(f"{path}: cannot open database: {error}") from None
    if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
        conn.close()
        raise UsageError(f"SQLite {sqlite3.sqlite_version} is older than {'.'.join(map(str, MINIMUM_SQLITE))}, "
                         f"which loanrules needs: Python uses the operating system's SQLite; upgrade it")
    conn.execute("PRAGMA synchronous = FULL")  # the journal is synced before the database is changed
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MB: enough for index builds, keeps RSS flat
    conn.execute("PRAGMA temp_store = FILE")
    # Before the first temp table: a run's facts and derivations (1M rows and more) are written once and read
    # by several checks, and 16 KiB pages made that 0.1 s cheaper per 1M collateral than 4 KiB ones.
    conn.execute("PRAGMA temp.page_size = 16384")
    return conn


def missing_result_columns(conn: sqlite3.Connection) -> list[str]:
    """The result tables' columns this version has that an earlier database's tables lack (``table.column``);
    a table not there at all is not counted (a run creates it)."""
    missing = []
    for table, spec in RESULT_TABLES.items():
        present = {row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))}
        if present:
            missing += [f"{table}.{column}" for column in spec["columns"] if column not in present]
    return missing


def upgrade_schema(conn: sqlite3.Connection) -> list[str]:
    """``ensure_schema``, returning the result columns it added (``table.column``) to an earlier database."""
    missing = missing_result_columns(conn)
    ensure_schema(conn)
    return missing


def ensure_schema(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    for name, spec in RESULT_TABLES.items():
        if not db[name].exists():
            db[name].create(spec["columns"], pk=spec.get("pk"))
        else:
            db[name].add_missing_columns([{c: None for c in spec["columns"]}])  # older databases
    for table, columns in RESULT_INDEXES:
        db[table].create_index(columns, if_not_exists=True)


def snapshot_table_columns(spec: TableSpec) -> dict[str, type]:
    columns: dict[str, type] = {"snapshot_id": int, "source_line": int}
    for column in spec.columns:
        columns[column.name] = int if column.type.sql_type == "INTEGER" else str
    return columns


def not_null_columns(spec: TableSpec) -> set[str]:
    """The stored table's columns declared NOT NULL: snapshot_id and every column the loader requires a value
    in. The declaration tells SQLite that a key is unique (a UNIQUE index allows many NULLs), so that it can
    compare two snapshots by merging their key-ordered rows instead of sorting them (collateral.changes)."""
    return {"snapshot_id", *(column.name for column in spec.columns if column.not_null)}


def ensure_snapshot_table(conn: sqlite3.Connection, spec: TableSpec, extra_columns: tuple[str, ...]) -> None:
    """Create or widen the stored table for one snapshot table, and its indexes."""
    db = sqlite_utils.Database(conn)
    table = db[spec.name]
    columns = snapshot_table_columns(spec)
    columns.update({name: str for name in extra_columns if name not in columns})
    if not table.exists():
        table.create(columns, not_null=not_null_columns(spec))
    else:
        missing = {name: kind for name, kind in columns.items() if name not in table.columns_dict}
        for name, kind in missing.items():
            table.add_column(name, kind)
    # The key is unique within a snapshot: SQLite then finds duplicates while it
    # inserts, at no extra cost (a separate GROUP BY took 0.4 s per 1M loans).
    # Other indexes serve the joins on references; few on purpose, since each
    # costs time on every nightly insert.
    if spec.key:
        table.create_index(("snapshot_id", *spec.key), index_name=f"{spec.name}_key", unique=True,
                           if_not_exists=True)
    index_sets = [("snapshot_id", *reference.columns) for reference in spec.references
                  if tuple(reference.columns) != spec.key[:len(reference.columns)] and not _covered(spec, reference)]
    if not spec.key and not index_sets and not any(index.complete for index in spec.indexes):
        index_sets.append(("snapshot_id",))
    for columns_ in dict.fromkeys(index_sets):
        table.create_index(columns_, if_not_exists=True)
    # The spec's own ``indexes`` serve a check's lookups by value (registration numbers), or find the few rows
    # a check looks for: partial, see schema.Index.
    for index in dict.fromkeys(spec.indexes):
        condition = index.condition()
        conn.execute(f"CREATE INDEX IF NOT EXISTS {quote_identifier(index.index_name(spec.name))} "
                     f"ON {quote_identifier(spec.name)} "
                     f"(snapshot_id, {', '.join(map(quote_identifier, index.columns))})"
                     + (f" WHERE {condition}" if condition else ""))
    # A database made before a complete index took over a reference's lookups keeps the reference's own
    # index no more: one index fewer to fill on every load.
    for reference in spec.references:
        if _covered(spec, reference):
            conn.execute("DROP INDEX IF EXISTS "
                         + quote_identifier("_".join(("idx", spec.name, "snapshot_id", *reference.columns))))


def _covered(spec: TableSpec, reference: Reference) -> bool:
    """One of the spec's complete indexes serves the reference's lookups (its columns start with the reference's)."""
    columns = tuple(reference.columns)
    return any(index.complete and index.columns[:len(columns)] == columns for index in spec.indexes)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def savepoint(conn: sqlite3.Connection, name: str) -> Iterator[None]:
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


@contextlib.contextmanager
def database_lock(db_path: str | Path, wait_seconds: float = 0) -> Iterator[None]:
    """One writer per database: an advisory lock on ``<db>.lock``.

    The kernel releases the lock when the holder dies, even by kill -9, so a
    dead run never blocks the next one; the next run then marks the dead
    run failed (``recover_dead_runs``).
    """
    lock_path = Path(f"{db_path}.lock")
    handle = open(lock_path, "a+")
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise DatabaseBusy(
                        f"{db_path} is in use by {holder}; wait for it to finish, or pass --wait SECONDS"
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"loanrules pid {os.getpid()} on {socket.gethostname()} since {utcnow()}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock


def recover_dead_runs(conn: sqlite3.Connection) -> list[int]:
    """Runs still 'running' while we hold the lock belong to dead processes: mark them failed."""
    dead = [row[0] for row in conn.execute("SELECT run_id FROM runs WHERE status = 'running'")]
    if dead:
        conn.execute(
            "UPDATE runs SET status = 'failed', finished_at = ?, "
            "error = 'the process died before the run finished; its results were rolled back' "
            "WHERE status = 'running'",
            (utcnow(),),
        )
    return dead


# A run whose results count (for "the latest", "the previous as-of", history and ledgers): it finished,
# cleanly or partly, and no re-run of its cooperative's as-of replaced it.
COUNTED_STATUSES = ("succeeded", "partial")


def counted(runs: str = "runs") -> str:
    """SQL: the rows of ``runs`` (a table name or alias) whose results count."""
    return f"{runs}.superseded_by IS NULL AND {runs}.status IN ('succeeded', 'partial')"


def latest_run_id(conn: sqlite3.Connection, cooperative: str | None = None) -> int | None:
    sql = f"SELECT run_id FROM runs WHERE {counted()}"
    params: tuple = ()
    if cooperative is not None:
        sql += " AND cooperative = ?"
        params = (cooperative,)
    row = conn.execute(sql + " ORDER BY as_of DESC, run_id DESC LIMIT 1", params).fetchone()
    return row[0] if row else None


def quote_identifier(name: str) -> str:
    """An SQL identifier, whatever characters a column name in an extract holds."""
    return '"' + name.replace('"', '""') + '"'


def json_dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
