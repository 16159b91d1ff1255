"""Snapshot loading: stream CSV files into SQLite, validating every cell.

Two passes, so memory stays flat however large the extract:

1. per cell, in Python while streaming: header mapping, types, codes, required
   values, negative amounts;
2. across rows, in SQL once the rows are in: duplicate keys and references to
   rows that do not exist.

Every problem is collected with file, line, column, value and reason. The
caller owns the transaction: on a rejected snapshot it rolls back, so nothing
is stored. With ``quarantine=True`` bad rows are left out and recorded in the
``quarantine`` table instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import attrs

from loanrules.config import SnapshotSettings
from loanrules.errors import InputProblem, SnapshotRejected, UsageError
from loanrules.parsing import parse_boolean, parse_date, parse_integer, parse_money
from loanrules.schema import Column, ColumnType, TableSpec
from loanrules.store import ensure_snapshot_table, json_dumps, utcnow

BATCH_ROWS = 5000
REQUIRED_TABLE = "loans"

Converter = Callable[[str], object]


@attrs.define
class Problems:
    """Every problem found, keeping the first ``limit`` in full and counting the rest."""

    limit: int = 200
    shown: list[InputProblem] = attrs.field(factory=list)
    total: int = 0

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


# ---------------------------------------------------------------- converters


def _converter(column: Column, codes: Mapping[str, str]) -> Converter:
    """A function from the raw CSV text to the stored value; raises ValueError with the reason."""
    kind = column.type
    if kind is ColumnType.CODE:
        # canonical codes in any case, plus the config's local codes
        known = {code.lower(): code for code in column.codes}
        known.update({local.strip().lower(): canonical for local, canonical in codes.items()})
        allowed = ", ".join(column.codes)

        def parse(text: str) -> str:
            try:
                return known[text.lower()]
            except KeyError:
                raise ValueError(f"unknown code (expected one of: {allowed}; map local codes in "
                                 f"[snapshot.codes]) ") from None
    else:
        parse = {
            ColumnType.TEXT: None,
            ColumnType.INTEGER: parse_integer,
            ColumnType.MONEY: parse_money,
            ColumnType.DATE: parse_date,
            ColumnType.BOOLEAN: parse_boolean,
        }[kind]
    not_null, non_negative = column.not_null, column.non_negative

    def convert(raw: str):
        text = raw.strip()
        if not text:
            if not_null:
                raise ValueError("missing value")
            return None
        if parse is None:
            return text
        value = parse(text)
        if non_negative and value < 0:
            raise ValueError("negative value")
        return value

    return convert


def _text(raw: str):
    return raw.strip() or None


# ---------------------------------------------------------------- reading


class _HashingReader(io.RawIOBase):
    """Hashes the bytes as the CSV reader pulls them: one read of the file, not two."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        if count:
            self.sha256.update(memoryview(buffer)[:count])
        return count


@attrs.frozen
class _Layout:
    """How one file's header maps onto a table."""

    file: str
    spec: TableSpec
    positions: tuple[int, ...]  # CSV field index of each stored column
    columns: tuple[str, ...]  # stored column names, in the same order
    converters: tuple[Converter, ...]
    extra_columns: tuple[str, ...]
    width: int


def _layout(file: str, header: list[str], spec: TableSpec, settings: SnapshotSettings,
            problems: Problems) -> _Layout | None:
    mapping = {k.strip(): v for k, v in settings.columns.get(spec.name, {}).items()}
    names: list[str] = []
    for raw in header:
        name = raw.strip()
        names.append(mapping.get(name, name))
    seen: dict[str, int] = {}
    ok = True
    for index, name in enumerate(names):
        if not name:
            problems.add(InputProblem(file, 1, f"#{index + 1}", header[index], "empty column name"))
            ok = False
        elif name in seen:
            problems.add(InputProblem(file, 1, name, header[index],
                                      f"column appears twice (also field {seen[name] + 1})"))
            ok = False
        else:
            seen[name] = index
    for column in spec.columns:
        if column.required and column.name not in seen:
            hint = ""
            if mapping:
                hint = " after [snapshot.columns] mapping"
            problems.add(InputProblem(file, 1, column.name, None, f"required column missing{hint}"))
            ok = False
    if not ok:
        return None
    positions, columns, converters, extras = [], [], [], []
    for index, name in enumerate(names):
        column = spec.column(name)
        positions.append(index)
        columns.append(name)
        if column is None:
            extras.append(name)  # kept as text for plugins and SQL rules
            converters.append(_text)
        else:
            converters.append(_converter(column, settings.codes.get(f"{spec.name}.{name}", {})))
    return _Layout(file, spec, tuple(positions), tuple(columns), tuple(converters), tuple(extras), len(header))


def _open_csv(path: Path, settings: SnapshotSettings):
    raw = open(path, "rb", buffering=0)
    hashing = _HashingReader(raw)
    text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 20), encoding=settings.encoding, newline="")
    return hashing, text, csv.reader(text, delimiter=settings.delimiter, strict=True)


def _stream_table(conn: sqlite3.Connection, path: Path, spec: TableSpec, snapshot_id: int,
                  settings: SnapshotSettings, problems: Problems, quarantine: bool) -> tuple[int, str, bool]:
    """Insert one file's good rows; return (rows stored, file sha256, whether the header was usable)."""
    file = path.name
    hashing, text, reader = _open_csv(path, settings)
    stored = 0
    layout = None
    with text:
        try:
            header = next(reader, None)
            if header is None:
                problems.add(InputProblem(file, None, None, None, "empty file: no header row"))
                return 0, hashing.sha256.hexdigest(), False
            layout = _layout(file, header, spec, settings, problems)
            if layout is None:
                return 0, hashing.sha256.hexdigest(), False
            ensure_snapshot_table(conn, spec, layout.extra_columns)
            column_list = ", ".join(f'"{c}"' for c in ("snapshot_id", "source_line", *layout.columns))
            placeholders = ", ".join("?" * (len(layout.columns) + 2))
            insert = f'INSERT INTO "{spec.name}" ({column_list}) VALUES ({placeholders})'
            converters, width = layout.converters, layout.width
            batch: list[tuple] = []
            for row in reader:
                line = reader.line_num
                if len(row) != width:
                    if not any(field.strip() for field in row):
                        continue  # a blank line, common at the end of exports
                    _bad_row(conn, problems, quarantine, snapshot_id, file, line, row,
                             [(None, None, f"expected {width} fields, found {len(row)}")])
                    continue
                try:
                    values = [convert(field) for convert, field in zip(converters, row)]
                except ValueError:
                    _bad_row(conn, problems, quarantine, snapshot_id, file, line, row,
                             _cell_problems(layout, row))
                    continue
                batch.append((snapshot_id, line, *values))
                if len(batch) >= BATCH_ROWS:
                    conn.executemany(insert, batch)
                    stored += len(batch)
                    batch.clear()
            if batch:
                conn.executemany(insert, batch)
                stored += len(batch)
        except UnicodeDecodeError as error:
            problems.add(InputProblem(file, reader.line_num + 1, None, repr(error.object[error.start:error.end]),
                                      f"not valid {settings.encoding} text; set [snapshot] encoding "
                                      f"(e.g. \"gb18030\") to the extract's encoding"))
        except csv.Error as error:
            problems.add(InputProblem(file, reader.line_num, None, None, f"malformed CSV: {error}"))
        return stored, hashing.sha256.hexdigest(), layout is not None


def _cell_problems(layout: _Layout, row: list[str]) -> list[tuple[str, str, str]]:
    found = []
    for name, convert, field in zip(layout.columns, layout.converters, row):
        try:
            convert(field)
        except ValueError as error:
            found.append((name, field, str(error).strip()))
    return found


def _bad_row(conn, problems: Problems, quarantine: bool, snapshot_id: int, file: str, line: int,
             row: list[str], cells: list[tuple]) -> None:
    for column, value, reason in cells:
        problems.add(InputProblem(file, line, column, value, reason))
        if quarantine:
            conn.execute(
                "INSERT INTO quarantine (snapshot_id, file, line, \"column\", value, reason, row) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (snapshot_id, file, line, column, value, reason, json.dumps(row, ensure_ascii=False)),
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


def _cross_row_checks(conn, spec: TableSpec, present: Mapping[str, str], snapshot_id: int,
                      problems: Problems, quarantine: bool) -> None:
    file = present[spec.name]
    table = f'"{spec.name}"'
    if spec.key:
        key = ", ".join(f'"{c}"' for c in spec.key)
        duplicates = conn.execute(
            f"SELECT t.rowid, t.source_line, {', '.join('t.' + repr_col(c) for c in spec.key)}, d.first_line "
            f"FROM {table} t JOIN (SELECT {key}, min(source_line) AS first_line FROM {table} "
            f"WHERE snapshot_id = ? GROUP BY {key} HAVING count(*) > 1) d USING ({key}) "
            f"WHERE t.snapshot_id = ? ORDER BY t.source_line",
            (snapshot_id, snapshot_id),
        ).fetchall()
        for rowid, line, *values, first_line in duplicates:
            shown = "/".join(str(v) for v in values)
            where = "appears more than once" if line == first_line else f"duplicate of line {first_line}"
            reason = f"duplicate {'+'.join(spec.key)}: {where}"
            _cross_row_problem(conn, problems, quarantine, snapshot_id, file, spec, rowid, line,
                               spec.key[0], shown, reason)
    for reference in spec.references:
        if reference.table not in present:
            continue  # the referenced file is optional and absent: nothing to check against
        target = f'"{reference.table}"'
        on = " AND ".join(f't."{c}" = r."{tc}"' for c, tc in zip(reference.columns, reference.target_columns))
        not_null = " AND ".join(f't."{c}" IS NOT NULL' for c in reference.columns)
        orphans = conn.execute(
            f"SELECT t.rowid, t.source_line, {', '.join('t.' + repr_col(c) for c in reference.columns)} "
            f"FROM {table} t WHERE t.snapshot_id = ? AND {not_null} AND NOT EXISTS "
            f"(SELECT 1 FROM {target} r WHERE r.snapshot_id = t.snapshot_id AND {on}) ORDER BY t.source_line",
            (snapshot_id,),
        ).fetchall()
        for rowid, line, *values in orphans:
            shown = "/".join(str(v) for v in values)
            reason = f"names {'+'.join(reference.target_columns)} {shown!r}, which is not in {present[reference.table]}"
            _cross_row_problem(conn, problems, quarantine, snapshot_id, file, spec, rowid, line,
                               reference.columns[0], shown, reason)


def repr_col(name: str) -> str:
    return f'"{name}"'


def _cross_row_problem(conn, problems, quarantine, snapshot_id, file, spec, rowid, line, column, value, reason):
    problems.add(InputProblem(file, line, column, value, reason))
    if quarantine:
        row = conn.execute(f'SELECT * FROM "{spec.name}" WHERE rowid = ?', (rowid,)).fetchone()
        conn.execute(
            "INSERT INTO quarantine (snapshot_id, file, line, \"column\", value, reason, row) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (snapshot_id, file, line, column, value, reason, json_dumps(list(row[2:]))),
        )
        conn.execute(f'DELETE FROM "{spec.name}" WHERE rowid = ?', (rowid,))


# ---------------------------------------------------------------- the load


def snapshot_files(directory: Path, tables: Mapping[str, TableSpec], settings: SnapshotSettings) -> dict[str, Path]:
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a snapshot directory")
    found = {}
    for name in tables:
        path = directory / settings.files.get(name, f"{name}.csv")
        if path.is_file():
            found[name] = path
    return found


def load_snapshot(conn: sqlite3.Connection, directory: str | Path, *, as_of: str, cooperative: str,
                  tables: Mapping[str, TableSpec], settings: SnapshotSettings, quarantine: bool = False,
                  max_problems: int = 200, progress: Callable[[str], None] | None = None) -> LoadedSnapshot:
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
    present: dict[str, str] = {}
    header_broken = False  # quarantine takes bad rows, never a file whose header is unusable
    for name, path in files.items():
        if progress:
            progress(f"loading {path.name}")
        counts[name], digests[path.name], usable = _stream_table(
            conn, path, tables[name], snapshot_id, settings, problems, quarantine
        )
        if usable:
            present[name] = path.name
        else:
            header_broken = True
    for spec in _dependency_order(tables[name] for name in present):
        _cross_row_checks(conn, spec, present, snapshot_id, problems, quarantine)

    if problems.total and (header_broken or not quarantine):
        raise SnapshotRejected(problems.shown, problems.total)
    if quarantine:
        for name in present:  # rows quarantined by the cross-row checks
            counts[name] = conn.execute(f'SELECT count(*) FROM "{name}" WHERE snapshot_id = ?',
                                        (snapshot_id,)).fetchone()[0]
    # The snapshot's identity: every file's digest, by name, in a fixed order
    combined = hashlib.sha256(json_dumps(sorted(digests.items())).encode()).hexdigest()
    quarantined = conn.execute("SELECT count(DISTINCT file || ':' || line) FROM quarantine WHERE snapshot_id = ?",
                               (snapshot_id,)).fetchone()[0]
    conn.execute(
        "UPDATE snapshots SET sha256 = ?, row_counts = ?, quarantined = ? WHERE snapshot_id = ?",
        (combined, json_dumps(counts), quarantined, snapshot_id),
    )
    return LoadedSnapshot(snapshot_id, cooperative, as_of, combined, counts, tuple(present), quarantined,
                          tuple(problems.shown), problems.total)


def replace_earlier_snapshots(conn: sqlite3.Connection, loaded: LoadedSnapshot,
                              tables: Iterable[str]) -> list[int]:
    """Loading a cooperative's as-of again replaces the earlier load: no duplicate history."""
    earlier = [row[0] for row in conn.execute(
        "SELECT snapshot_id FROM snapshots WHERE cooperative = ? AND as_of = ? AND snapshot_id != ?",
        (loaded.cooperative, loaded.as_of, loaded.snapshot_id))]
    existing = set(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    for snapshot_id in earlier:
        for name in tables:
            if name in existing:
                conn.execute(f'DELETE FROM "{name}" WHERE snapshot_id = ?', (snapshot_id,))
        conn.execute("DELETE FROM quarantine WHERE snapshot_id = ?", (snapshot_id,))
        conn.execute("DELETE FROM snapshots WHERE snapshot_id = ?", (snapshot_id,))
    return earlier
