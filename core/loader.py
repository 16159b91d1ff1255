"""Snapshot loading: CSV files into the results database, every cell validated.

Two passes, so memory stays flat however large the extract:

1. per cell, while streaming (``convert``): header mapping, types, codes,
   required values, negative amounts; big files are read by several reader
   processes into scratch databases first (``staging``) and copied in by SQLite;
2. across rows, in SQL once the rows are in: duplicate keys and references to
   rows that do not exist.

Every problem is collected with file, line, column, value and reason. The
caller owns the transaction: on a rejected snapshot it rolls back, so nothing
is stored. With ``quarantine=True`` bad rows are left out and recorded in the
``quarantine`` table instead.
"""

from __future__ import annotations

import gc
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import attrs

from loanrules.config import SnapshotSettings
from loanrules.convert import BOOKKEEPING_COLUMNS, Layout, map_header
from loanrules.errors import ConfigError, InputProblem, SnapshotRejected
from loanrules.reading import file_sha256, locate_decode_error, open_csv, read_events, read_header, snapshot_files
from loanrules.schema import ColumnType, TableSpec
from loanrules.staging import StagedFile
from loanrules.store import ensure_snapshot_table, json_dumps, quote_identifier, savepoint, utcnow

REQUIRED_TABLE = "loans"


@attrs.define
class Problems:
    """Every problem found, keeping the first ``limit`` in full and counting the rest."""

    limit: int = 200
    shown: list[InputProblem] = attrs.field(factory=list)
    total: int = 0
    # duplicate keys are found while copying, but reported with the other cross-row problems
    later: dict[str, list[InputProblem]] = attrs.field(factory=dict)

    def add(self, problem: InputProblem) -> None:
        self.total += 1
        if len(self.shown) < self.limit:
            self.shown.append(problem)


@attrs.frozen
class LoadedSnapshot:
    snapshot_id: int
    cooperative: str
    as_of: str
    sha256: str
    row_counts: Mapping[str, int]
    tables: tuple[str, ...]  # the tables present in this snapshot
    quarantined: int
    problems: tuple[InputProblem, ...]
    problem_total: int


# ---------------------------------------------------------------- one file


def _load_file(conn: sqlite3.Connection, path: Path, spec: TableSpec, snapshot_id: int, settings: SnapshotSettings,
               problems: Problems, quarantine: bool, staged: StagedFile | None,
               progress: Callable[[str], None] | None) -> tuple[int, str, bool]:
    """Store one file's good rows; return (rows stored, file sha256, whether the file was usable)."""
    header, header_problem = read_header(path, settings)
    if header_problem is not None:
        problems.add(header_problem)
    layout, header_problems = map_header(path.name, header, spec, settings) if header else (None, [])
    for problem in header_problems:
        problems.add(problem)
    if layout is None:
        return 0, file_sha256(path), False
    ensure_snapshot_table(conn, spec, layout.extra_columns)
    load = _copy_staged if staged is not None else _stream
    return load(conn, path, layout, snapshot_id, settings, problems, quarantine, staged, progress)


def _stream(conn, path, layout: Layout, snapshot_id, settings, problems, quarantine, staged, progress):
    """A small file: read and convert here, into a temporary table, then copy like a staged file."""
    columns = ", ".join(map(quote_identifier, (*BOOKKEEPING_COLUMNS, *layout.columns)))
    conn.execute("DROP TABLE IF EXISTS temp.stage_rows")
    conn.execute(f"CREATE TEMP TABLE stage_rows ({columns})")
    insert = f"INSERT INTO temp.stage_rows VALUES ({', '.join('?' * (len(layout.columns) + 2))})"
    digest, readable, shown, count = "", True, time.monotonic(), 0
    for event in read_events(path, settings, layout, snapshot_id):
        if event[0] == "rows":
            _, good, batch_count, bad = event
            conn.executemany(insert, good)
            count += batch_count
            if progress and time.monotonic() - shown >= 1:
                progress(f"loading {path.name}: {count:,} rows")
                shown = time.monotonic()
            for line, row, cells in bad:
                _bad_row(conn, problems, quarantine, snapshot_id, layout, line, row, cells)
        elif event[0] == "problem":
            # the reader could not get past this point: the file is unusable, even with quarantine
            problems.add(locate_decode_error(path, settings, event[1]))
            readable = False
        else:
            digest = event[1]
    stored = _copy_rows(conn, path, layout, [("temp", "stage_rows")], snapshot_id, settings, problems, quarantine)
    conn.execute("DROP TABLE temp.stage_rows")
    return stored, digest or file_sha256(path), readable


def _copy_staged(conn, path, layout: Layout, snapshot_id, settings, problems, quarantine, staged: StagedFile,
                 progress):
    """A big file the readers staged: copied in by SQLite, part by part, in file order."""
    readable = True
    for part in staged.parts:
        bad_rows = conn.cursor()
        bad_rows.execute(f"SELECT line, row, cells FROM {part.schema}.{staged.bad_table} ORDER BY rowid")
        while batch := bad_rows.fetchmany(1000):
            for line, row, cells in batch:
                _bad_row(conn, problems, quarantine, snapshot_id, layout, line, json.loads(row), json.loads(cells))
        if part.unreadable is not None:
            problems.add(locate_decode_error(path, settings, part.unreadable))
            readable = False
    if progress:
        progress(f"storing {path.name}")
    sources = [(part.schema, staged.rows_table) for part in staged.parts]
    stored = _copy_rows(conn, path, layout, sources, snapshot_id, settings, problems, quarantine)
    return stored, staged.digest.result(), readable


def _copy_rows(conn, path: Path, layout: Layout, sources: list[tuple[str, str]], snapshot_id: int,
               settings: SnapshotSettings, problems: Problems, quarantine: bool) -> int:
    """``INSERT ... SELECT`` the converted rows into the snapshot table, in file order.

    The table's unique key index refuses a duplicate key; only then are the
    duplicates looked for, every occurrence reported, and the other rows copied.
    """
    spec = layout.spec
    columns = ", ".join(map(quote_identifier, layout.columns))
    target = (f"main.{quote_identifier(spec.name)} "
              f"({', '.join(map(quote_identifier, BOOKKEEPING_COLUMNS))}, {columns})")

    def copy(where: str = "") -> int:
        return sum(conn.execute(f"INSERT INTO {target} SELECT ?, source_line, {columns} FROM {schema}.{table} s "
                                f"{where} ORDER BY s.rowid", (snapshot_id,)).rowcount
                   for schema, table in sources)

    try:
        with savepoint(conn, "copy_rows"):
            return copy()
    except sqlite3.IntegrityError:
        if not spec.key:
            raise
    key = ", ".join(map(quote_identifier, spec.key))
    union = " UNION ALL ".join(f"SELECT source_line, {key} FROM {schema}.{table}" for schema, table in sources)
    conn.execute("DROP TABLE IF EXISTS temp.duplicate_keys")
    conn.execute(f"CREATE TEMP TABLE duplicate_keys AS SELECT {key}, min(source_line) AS first_line FROM ({union}) "
                 f"GROUP BY {key} HAVING count(*) > 1")
    duplicates = conn.execute(f"SELECT u.source_line, {', '.join('u.' + quote_identifier(c) for c in spec.key)}, "
                              f"d.first_line FROM ({union}) u JOIN temp.duplicate_keys d USING ({key}) "
                              f"ORDER BY u.source_line").fetchall()
    matches = " AND ".join(f"d.{quote_identifier(c)} = s.{quote_identifier(c)}" for c in spec.key)
    found = []
    for line, *values, first_line in duplicates:
        where = "appears more than once" if line == first_line else f"duplicate of line {first_line}"
        found.append(InputProblem(path.name, line, spec.key[0], "/".join(map(str, values)),
                                  f"duplicate {'+'.join(spec.key)}: {where}"))
    problems.later[spec.name] = found
    # the duplicates' other columns are still checked against the tables they name
    every_column = ", ".join(map(quote_identifier, (*BOOKKEEPING_COLUMNS, *layout.columns)))
    conn.execute(f"DROP TABLE IF EXISTS temp.{quote_identifier('duplicates_' + spec.name)}")
    conn.execute(f"CREATE TEMP TABLE {quote_identifier('duplicates_' + spec.name)} AS "
                 + " UNION ALL ".join(f"SELECT {every_column} FROM {schema}.{table} s WHERE EXISTS "
                                      f"(SELECT 1 FROM temp.duplicate_keys d WHERE {matches})"
                                      for schema, table in sources))
    if quarantine:
        raw = _raw_records(path, settings, {problem.line for problem in found})
        for problem in found:
            _quarantine(conn, snapshot_id, problem, raw.get(problem.line, []))
    stored = copy(f"WHERE NOT EXISTS (SELECT 1 FROM temp.duplicate_keys d WHERE {matches})")
    conn.executemany("INSERT INTO temp.rejected_keys VALUES (?, ?)",
                     [(spec.name, "\x1f".join(map(str, values))) for values in
                      conn.execute(f"SELECT {key} FROM temp.duplicate_keys").fetchall()])
    conn.execute("DROP TABLE temp.duplicate_keys")
    return stored


def _raw_key(layout: Layout, row: list[str]) -> str | None:
    key = layout.spec.key
    if not key or not all(column in layout.columns for column in key) or len(row) != layout.width:
        return None
    return "\x1f".join(row[layout.columns.index(column)].strip() for column in key)


def _bad_row(conn, problems: Problems, quarantine: bool, snapshot_id: int, layout: Layout, line: int,
             row: list[str], cells: list) -> None:
    for column, value, reason in cells:
        problem = InputProblem(layout.file, line, column, value, reason)
        problems.add(problem)
        if quarantine:
            _quarantine(conn, snapshot_id, problem, row)
    _remember_rejected(conn, layout.spec, _raw_key(layout, row))


def _quarantine(conn, snapshot_id: int, problem: InputProblem, row: list) -> None:
    conn.execute(
        'INSERT INTO quarantine (snapshot_id, file, line, "column", value, reason, row) VALUES (?, ?, ?, ?, ?, ?, ?)',
        (snapshot_id, problem.file, problem.line, problem.column, problem.value, problem.reason, json_dumps(row)),
    )


# ---------------------------------------------------------------- cross-row checks


def _dependency_order(specs: Iterable[TableSpec]) -> list[TableSpec]:
    """Referenced tables first, so a row quarantined in one is seen by the tables that point at it."""
    specs = {spec.name: spec for spec in specs}
    ordered: list[TableSpec] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name not in specs or any(s.name == name for s in ordered) or name in path:
            return
        for reference in specs[name].references:
            visit(reference.table, path + (name,))
        ordered.append(specs[name])

    for name in specs:
        visit(name, ())
    return ordered


def _cross_row_checks(conn, spec: TableSpec, present: Mapping[str, Path], snapshot_id: int,
                      problems: Problems, quarantine: bool, settings: SnapshotSettings) -> None:
    file = present[spec.name].name
    for problem in problems.later.pop(spec.name, []):
        problems.add(problem)
    duplicates = quote_identifier(f"duplicates_{spec.name}")
    has_duplicates = conn.execute("SELECT 1 FROM temp.sqlite_master WHERE name = ?",
                                  (f"duplicates_{spec.name}",)).fetchone() is not None
    # the stored rows, and the rows left out as duplicates (already reported, already out of the snapshot)
    sources = [(f"main.{quote_identifier(spec.name)}", "t.snapshot_id = :snapshot_id", True)]
    if has_duplicates:
        sources.append((f"temp.{duplicates}", "1", False))
    found: list[tuple[int | None, InputProblem]] = []  # (rowid to quarantine, problem)
    for reference in spec.references:
        if reference.table not in present:
            continue  # the referenced file is optional and absent: nothing to check against
        target = f"main.{quote_identifier(reference.table)}"
        on = " AND ".join(f"t.{quote_identifier(c)} = r.{quote_identifier(tc)}"
                          for c, tc in zip(reference.columns, reference.target_columns))
        not_null = " AND ".join(f"t.{quote_identifier(c)} IS NOT NULL" for c in reference.columns)
        key_text = " || char(31) || ".join(f"t.{quote_identifier(c)}" for c in reference.columns)
        target_file = present[reference.table].name
        for source, in_snapshot, stored in sources:
            orphans = conn.execute(
                f"SELECT t.rowid, t.source_line, {', '.join('t.' + quote_identifier(c) for c in reference.columns)}, "
                f"EXISTS (SELECT 1 FROM temp.rejected_keys k WHERE k.table_name = :target AND k.key = {key_text}) "
                f"FROM {source} t WHERE {in_snapshot} AND {not_null} AND NOT EXISTS "
                f"(SELECT 1 FROM {target} r WHERE r.snapshot_id = :snapshot_id AND {on}) ORDER BY t.source_line",
                {"target": reference.table, "snapshot_id": snapshot_id},
            ).fetchall()
            for rowid, line, *values, target_was_rejected in orphans:
                shown = "/".join(map(str, values))
                names = f"names {'+'.join(reference.target_columns)} {shown!r}"
                if target_was_rejected and not quarantine:
                    continue  # that row's own problem is already reported; this one follows from it
                reason = (f"{names}, whose row in {target_file} was quarantined" if target_was_rejected
                          else f"{names}, which is not in {target_file}")
                found.append((rowid if stored else None, InputProblem(file, line, reference.columns[0], shown,
                                                                      reason)))
    found.sort(key=lambda item: item[1].line or 0)
    for _, problem in found:
        problems.add(problem)
    to_quarantine = [(rowid, problem) for rowid, problem in found if rowid is not None]
    if quarantine and to_quarantine:
        _quarantine_stored_rows(conn, spec, present[spec.name], settings, snapshot_id, to_quarantine)
    if has_duplicates:
        conn.execute(f"DROP TABLE temp.{duplicates}")


def _quarantine_stored_rows(conn, spec: TableSpec, path: Path, settings: SnapshotSettings, snapshot_id: int,
                            found: list[tuple[int, InputProblem]]) -> None:
    """Move rows found bad across rows to the quarantine, with their raw CSV fields re-read from the file."""
    raw = _raw_records(path, settings, {problem.line for _, problem in found})
    for rowid, problem in found:
        _quarantine(conn, snapshot_id, problem, raw.get(problem.line, []))
        _remember_rejected(conn, spec, _stored_key(conn, spec, rowid))
    conn.executemany(f"DELETE FROM main.{quote_identifier(spec.name)} WHERE rowid = ?",
                     [(rowid,) for rowid, _ in found])


def _raw_records(path: Path, settings: SnapshotSettings, lines: set[int]) -> dict[int, list[str]]:
    """The CSV records ending on the given physical lines (one more pass over the file, quarantine only)."""
    _, text, reader = open_csv(path, settings)
    wanted = {}
    with text:
        for record in reader:
            if reader.line_num in lines:
                wanted[reader.line_num] = record
    return wanted


def _stored_key(conn, spec: TableSpec, rowid: int) -> str | None:
    if not spec.key:
        return None
    columns = ", ".join(map(quote_identifier, spec.key))
    values = conn.execute(f"SELECT {columns} FROM main.{quote_identifier(spec.name)} WHERE rowid = ?",
                          (rowid,)).fetchone()
    return "\x1f".join("" if v is None else str(v) for v in values)


def _remember_rejected(conn, spec: TableSpec, key: str | None) -> None:
    """A row left out of the snapshot: rows of other tables naming it are not 'unknown'."""
    if key is not None:
        conn.execute("INSERT INTO temp.rejected_keys VALUES (?, ?)", (spec.name, key))


# ---------------------------------------------------------------- the load


def check_snapshot_settings(settings: SnapshotSettings, tables: Mapping[str, TableSpec],
                            source: str | None) -> None:
    """The config's [snapshot] maps, against the tables the plugins define: before anything is read."""
    where = f"{source}: " if source else ""
    for section, mapping in (("files", settings.files), ("columns", settings.columns)):
        for table in mapping:
            if table not in tables:
                raise ConfigError(f'{where}snapshot.{section}."{table}": no such table '
                                  f"(known: {', '.join(tables)})")
    for target, codes in settings.codes.items():
        table, _, column_name = target.partition(".")
        column = tables[table].column(column_name) if table in tables else None
        if column is None or column.type is not ColumnType.CODE:
            raise ConfigError(f'{where}snapshot.codes."{target}": not a code column of the snapshot tables')
        for local, canonical in codes.items():
            if canonical not in column.codes:
                raise ConfigError(f'{where}snapshot.codes."{target}"."{local}": maps to {canonical!r}, which is '
                                  f"not one of {', '.join(column.codes)}")


def load_snapshot(conn: sqlite3.Connection, directory: str | Path, *, as_of: str, cooperative: str,
                  tables: Mapping[str, TableSpec], settings: SnapshotSettings, quarantine: bool = False,
                  max_problems: int = 200, progress: Callable[[str], None] | None = None,
                  staged: Mapping[str, StagedFile] | None = None) -> LoadedSnapshot:
    """Load a snapshot inside the caller's open transaction.

    Raises ``SnapshotRejected`` with every problem when the snapshot breaks the
    contract (the caller rolls back); in quarantine mode returns what was kept.
    """
    directory = Path(directory)
    files = snapshot_files(directory, tables, settings)
    problems = Problems(limit=max_problems)
    if REQUIRED_TABLE not in files:
        expected = settings.files.get(REQUIRED_TABLE, f"{REQUIRED_TABLE}.csv")
        problems.add(InputProblem(expected, None, None, None, f"required file missing from {directory}"))
        raise SnapshotRejected(problems.shown, problems.total)

    cursor = conn.execute(
        "INSERT INTO snapshots (cooperative, as_of, source, loaded_at, quarantined) VALUES (?, ?, ?, ?, 0)",
        (cooperative, as_of, str(directory.resolve()), utcnow()),
    )
    snapshot_id = cursor.lastrowid
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    present: dict[str, Path] = {}
    conn.execute("DROP TABLE IF EXISTS temp.rejected_keys")
    conn.execute("CREATE TEMP TABLE rejected_keys (table_name TEXT, key TEXT)")
    header_broken = False  # quarantine takes bad rows, never a file whose header is unusable
    for name, path in files.items():
        if progress:
            progress(f"loading {path.name}")
        # Millions of short-lived row lists would trigger the cyclic garbage
        # collector thousands of times for nothing (measured: ~6% of the load).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            counts[name], digests[path.name], usable = _load_file(
                conn, path, tables[name], snapshot_id, settings, problems, quarantine,
                (staged or {}).get(name), progress)
        finally:
            if gc_was_enabled:
                gc.enable()
        if usable:
            present[name] = path
        else:
            header_broken = True
    for spec in _dependency_order(tables[name] for name in present):
        _cross_row_checks(conn, spec, present, snapshot_id, problems, quarantine, settings)
    conn.execute("DROP TABLE temp.rejected_keys")

    if problems.total and (header_broken or not quarantine):
        raise SnapshotRejected(problems.shown, problems.total)
    if quarantine:
        for name in present:  # rows quarantined by the cross-row checks
            counts[name] = conn.execute(f"SELECT count(*) FROM main.{quote_identifier(name)} WHERE snapshot_id = ?",
                                        (snapshot_id,)).fetchone()[0]
    # The snapshot's identity: every file's digest, by name, in a fixed order
    combined = hashlib.sha256(json_dumps(sorted(digests.items())).encode()).hexdigest()
    quarantined = conn.execute("SELECT count(DISTINCT file || ':' || line) FROM quarantine WHERE snapshot_id = ?",
                               (snapshot_id,)).fetchone()[0]
    conn.execute(
        "UPDATE snapshots SET sha256 = ?, row_counts = ?, quarantined = ? WHERE snapshot_id = ?",
        (combined, json_dumps(counts), quarantined, snapshot_id),
    )
    planner_statistics(conn, [tables[name] for name in present], snapshot_id)
    return LoadedSnapshot(snapshot_id, cooperative, as_of, combined, counts, tuple(present), quarantined,
                          tuple(problems.shown), problems.total)


def planner_statistics(conn: sqlite3.Connection, specs: Iterable[TableSpec], snapshot_id: int) -> None:
    """Statistics for the query planner: sampled, with the two figures sampling gets wrong made exact.

    Without statistics the planner may read a whole snapshot through the key
    index where another index finds a handful of rows (a per-collateral lookup
    took minutes on 1M loans). A full ANALYZE reads every row; a sampled one
    (milliseconds) sees one snapshot in its 400 rows and estimates ~400 rows
    per snapshot_id, so a check reading a whole snapshot was planned as a
    short index walk (0.71 s against 0.21 s for a scan of 4.3M document rows).
    The rows per table and per snapshot are known exactly from ``snapshots``;
    an index with a condition of its own (``schema.Index.where``) holds fewer:
    this snapshot's are counted through it, a short walk.
    """
    conn.execute("PRAGMA analysis_limit = 400")
    specs = list(specs)
    for spec in specs:
        conn.execute(f"ANALYZE main.{quote_identifier(spec.name)}")
    stored: dict[str, tuple[int, int]] = {}  # table -> (rows, snapshots holding rows)
    for (counts,) in conn.execute("SELECT row_counts FROM snapshots WHERE row_counts IS NOT NULL"):
        for name, rows in json.loads(counts).items():
            if rows:
                total, snapshots = stored.get(name, (0, 0))
                stored[name] = (total + rows, snapshots + 1)
    for spec in specs:
        total, snapshots = stored.get(spec.name, (0, 0))
        if not total:
            continue
        conditions = {index.index_name(spec.name): index.where for index in spec.indexes if index.where}
        for index, stat in conn.execute("SELECT idx, stat FROM main.sqlite_stat1 WHERE tbl = ? AND idx IS NOT NULL",
                                        (spec.name,)).fetchall():
            first = conn.execute("SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (index,)).fetchone()
            figures = stat.split()
            if not first or first[0] != "snapshot_id" or len(figures) < 2 or not figures[1].isdigit():
                continue
            per_snapshot = total // snapshots
            if index in conditions:
                per_snapshot = conn.execute(
                    f"SELECT count(*) FROM main.{quote_identifier(spec.name)} INDEXED BY {quote_identifier(index)} "
                    f"WHERE snapshot_id = ? AND ({conditions[index]})", (snapshot_id,)).fetchone()[0]
            figures[0], figures[1] = str(max(1, per_snapshot * snapshots)), str(max(1, per_snapshot))
            conn.execute("UPDATE main.sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx = ?",
                         (" ".join(figures), spec.name, index))
    conn.execute("ANALYZE main.sqlite_schema")  # the planner reads the statistics again


def replace_earlier_snapshots(conn: sqlite3.Connection, loaded: LoadedSnapshot,
                              tables: Iterable[str]) -> list[int]:
    """Loading a cooperative's as-of again replaces the earlier load: no duplicate history."""
    earlier = [row[0] for row in conn.execute(
        "SELECT snapshot_id FROM snapshots WHERE cooperative = ? AND as_of = ? AND snapshot_id != ?",
        (loaded.cooperative, loaded.as_of, loaded.snapshot_id))]
    existing = {row[0] for row in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")}
    for snapshot_id in earlier:
        for name in tables:
            if name in existing:
                conn.execute(f"DELETE FROM main.{quote_identifier(name)} WHERE snapshot_id = ?", (snapshot_id,))
        conn.execute("DELETE FROM quarantine WHERE snapshot_id = ?", (snapshot_id,))
        conn.execute("DELETE FROM snapshots WHERE snapshot_id = ?", (snapshot_id,))
    return earlier
