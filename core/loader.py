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

import codecs
import csv
import gc
import hashlib
import io
import itertools
import multiprocessing
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import attrs

from loanrules.config import SnapshotSettings
from loanrules.errors import ConfigError, InputProblem, SnapshotRejected, UsageError
from loanrules.parsing import parse_boolean, parse_date, parse_integer, parse_money
from loanrules.schema import Column, ColumnType, TableSpec
from loanrules.store import ensure_snapshot_table, json_dumps, utcnow

BATCH_ROWS = 5000
BOOKKEEPING_COLUMNS = ("snapshot_id", "source_line")  # added to every stored snapshot table
CHILD_PROCESS_MIN_BYTES = 4 << 20  # below this a second process costs more than it saves
TWO_READERS_MIN_BYTES = 32 << 20
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


# ---------------------------------------------------------------- column-wise fast paths
#
# The hot loop converts a batch one column at a time: text is stripped in a
# list comprehension, low-cardinality columns (dates, codes, booleans, small
# integers) hit a per-column cache through C-level ``map``, and amounts take a
# digits-only fast path. Any ValueError sends the column to the scalar
# converter, and a value that is really bad sends the batch to the row-wise
# path, which names every bad cell. Together ~4x faster than per-cell calls.

ColumnConverter = Callable[[list], list]
_CACHE_LIMIT = 50_000


# A batch of amounts joined by newlines, each with exactly two decimals (or
# empty): the regular expression checks the whole batch at C speed.
_AMOUNTS_IN_CENTS = re.compile(r"(?:[0-9]+\.[0-9]{2})?(?:\n(?:[0-9]+\.[0-9]{2})?)*")


def _column_converter(column: Column | None, scalar: Converter) -> ColumnConverter:
    if column is None or column.type is ColumnType.TEXT:
        not_null = column is not None and column.not_null

        def text_column(values: list) -> list:
            stripped = list(map(str.strip, values))
            if all(stripped):
                return stripped
            if not_null:
                raise ValueError("missing value")
            return [v or None for v in stripped]

        return text_column
    if column.type is ColumnType.MONEY and column.non_negative:
        not_null = column.not_null

        def money_column(values: list) -> list:
            joined = "\n".join(values)
            if _AMOUNTS_IN_CENTS.fullmatch(joined):
                fen = joined.replace(".", "").split("\n")
                if len(fen) == len(values):  # else a cell held a line break: the scalar parser refuses it
                    if "" not in fen:
                        return list(map(int, fen))
                    if not not_null:
                        return [int(amount) if amount else None for amount in fen]
            return [scalar(v) for v in values]  # other spellings: '12.5', '1,000', ' 3 '

        return money_column
    cache: dict[str, object] = {}
    get = cache.__getitem__

    def cached_column(values: list) -> list:
        try:
            return list(map(get, values))
        except KeyError:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            for value in values:
                if value not in cache:
                    cache[value] = scalar(value)
            return list(map(get, values))

    return cached_column


# ---------------------------------------------------------------- reading


class _HashingReader(io.RawIOBase):
    """Hashes the bytes as the CSV reader pulls them (one read of the file, not two),
    and stops after ``limit`` bytes when reading one part of a file."""

    def __init__(self, raw, limit: int | None = None):
        self.raw = raw
        self.remaining = limit
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)
        if self.remaining is not None:
            view = view[:self.remaining]
        count = self.raw.readinto(view)
        if count:
            self.sha256.update(view[:count])
            if self.remaining is not None:
                self.remaining -= count
        return count

    def close(self) -> None:
        self.raw.close()
        super().close()


@attrs.frozen
class _Layout:
    """How one file's header maps onto a table."""

    file: str
    spec: TableSpec
    positions: tuple[int, ...]  # CSV field index of each stored column
    columns: tuple[str, ...]  # stored column names, in the same order
    converters: tuple[Converter, ...]
    column_converters: tuple[ColumnConverter, ...]
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
        elif name in BOOKKEEPING_COLUMNS:
            problems.add(InputProblem(file, 1, name, header[index], "reserved column name: rename or map it in "
                                      "[snapshot.columns]"))
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
    positions, columns, converters, column_converters, extras = [], [], [], [], []
    for index, name in enumerate(names):
        column = spec.column(name)
        positions.append(index)
        columns.append(name)
        if column is None:
            extras.append(name)  # kept as text for plugins and SQL rules
            converters.append(_text)
        else:
            converters.append(_converter(column, settings.codes.get(f"{spec.name}.{name}", {})))
        column_converters.append(_column_converter(column, converters[-1]))
    return _Layout(file, spec, tuple(positions), tuple(columns), tuple(converters), tuple(column_converters),
                   tuple(extras), len(header))


def _open_csv(path: Path, settings: SnapshotSettings):
    raw = open(path, "rb", buffering=0)
    hashing = _HashingReader(raw)
    text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 20), encoding=settings.encoding, newline="")
    return hashing, text, csv.reader(text, delimiter=settings.delimiter, strict=True)


def _stream_table(conn: sqlite3.Connection, path: Path, spec: TableSpec, snapshot_id: int,
                  settings: SnapshotSettings, problems: Problems, quarantine: bool,
                  progress: Callable[[str], None] | None = None) -> tuple[int, str, bool]:
    """Insert one file's good rows; return (rows stored, file sha256, whether the header was usable)."""
    file = path.name
    header, header_problem = _read_header(path, settings)
    if header_problem is not None:
        problems.add(header_problem)
    layout = _layout(file, header, spec, settings, problems) if header else None
    if layout is None:
        return 0, _sha256(path), False
    ensure_snapshot_table(conn, spec, layout.extra_columns)
    column_list = ", ".join(map(_quote, (*BOOKKEEPING_COLUMNS, *layout.columns)))
    placeholders = ", ".join("?" * (len(layout.columns) + 2))
    insert = f"INSERT INTO main.{_quote(spec.name)} ({column_list}) VALUES ({placeholders})"
    size = path.stat().st_size
    if size >= CHILD_PROCESS_MIN_BYTES:
        readers = 2 if size >= TWO_READERS_MIN_BYTES and (os.cpu_count() or 1) >= 2 else 1
        events = _read_in_children(path, settings, layout, snapshot_id, readers)
    else:
        events = _read_here(path, settings, layout, snapshot_id)
    stored, digest, readable = 0, "", True
    shown = time.monotonic()
    for event in events:
        kind = event[0]
        if kind == "rows":
            _, good, count, bad = event
            conn.executemany(insert, good)
            stored += count
            if progress and time.monotonic() - shown >= 1:
                progress(f"loading {file}: {stored:,} rows")
                shown = time.monotonic()
            for line, row, cells in bad:
                _bad_row(conn, problems, quarantine, snapshot_id, file, line, row, cells)
                _remember_rejected(conn, spec, _raw_key(layout, row))
        elif kind == "problem":
            # the reader could not get past this point: the file is unusable, even with quarantine
            problems.add(_locate_decode_error(path, settings, event[1]))
            readable = False
        else:
            digest = event[1]
    return stored, digest or _sha256(path), readable


def _raw_key(layout: _Layout, row: list[str]) -> str | None:
    key = layout.spec.key
    if not key or not all(column in layout.columns for column in key) or len(row) != layout.width:
        return None
    return "\x1f".join(row[layout.columns.index(column)].strip() for column in key)


def _read_header(path: Path, settings: SnapshotSettings) -> tuple[list[str] | None, InputProblem | None]:
    # Only the first line is decoded: a bad byte further down is the data's problem, reported on its line.
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        text = first.decode(settings.encoding)
        header = next(csv.reader([text.rstrip("\r\n")], delimiter=settings.delimiter, strict=True), None)
    except (UnicodeDecodeError, csv.Error) as error:
        return None, _reading_problem(path.name, 1, error, settings)
    if not first.strip() or header is None:
        return None, InputProblem(path.name, None, None, None, "empty file: no header row")
    return header, None


def _locate_decode_error(path: Path, settings: SnapshotSettings, problem: InputProblem) -> InputProblem:
    """A text decoder fails on a whole chunk; find the physical line that holds the bad bytes.

    Safe line by line: in the supported encodings no character's bytes contain a newline byte.
    """
    if not problem.reason.startswith("not valid"):
        return problem
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if number == 1 and settings.encoding == "utf-8-sig":
                line = line.removeprefix(codecs.BOM_UTF8)
            try:
                line.decode(settings.encoding)
            except UnicodeDecodeError as error:
                return attrs.evolve(problem, line=number, value=repr(error.object[error.start:error.end]))
    return problem


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _reading_problem(file: str, line: int, error: Exception, settings: SnapshotSettings) -> InputProblem:
    if isinstance(error, UnicodeDecodeError):
        return InputProblem(file, line, None, repr(error.object[error.start:error.end]),
                            f"not valid {settings.encoding} text; set [snapshot] encoding "
                            f"(e.g. \"gb18030\") to the extract's encoding")
    return InputProblem(file, line, None, None, f"malformed CSV: {error}")


@attrs.frozen
class _Part:
    """A byte range of a CSV file that starts at a record boundary."""

    start: int = 0
    end: int | None = None  # exclusive; None: to the end of the file
    line_offset: int = 0  # physical lines before ``start``
    has_header: bool = True


def _read_here(path: Path, settings: SnapshotSettings, layout: _Layout, snapshot_id: int,
               part: _Part = _Part()) -> Iterator[tuple]:
    """Events for one file or part: ("rows", good, count, bad)..., ("problem", p)?, ("sha256", hex)."""
    raw = open(path, "rb", buffering=0)
    raw.seek(part.start)
    hashing = _HashingReader(raw, part.end - part.start if part.end is not None else None)
    text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 20), encoding=settings.encoding, newline="")
    reader = csv.reader(text, delimiter=settings.delimiter, strict=True)
    stopped_early = False
    with text:
        try:
            if part.has_header:
                next(reader)  # already checked by the caller
            for good, count, bad in _converted_batches(reader, layout, snapshot_id, part.line_offset):
                yield "rows", good, count, bad
        except (UnicodeDecodeError, csv.Error) as error:
            stopped_early = True
            # a csv.Error is raised after the reader counted the bad line; a decode error before
            line = reader.line_num + (1 if isinstance(error, UnicodeDecodeError) else 0)
            yield "problem", _reading_problem(layout.file, part.line_offset + line, error, settings)
    whole = part == _Part()
    # the digest is of the whole file, also when reading stopped at a bad byte
    yield "sha256", hashing.sha256.hexdigest() if whole and not stopped_early else None


def _read_in_children(path: Path, settings: SnapshotSettings, layout: _Layout, snapshot_id: int,
                      readers: int) -> Iterator[tuple]:
    """The same events, read and converted in forked child processes, one per part of the file.

    Binding rows into SQLite costs this process as much as reading and
    converting them, so other cores do the latter and pickled batches cross
    pipes (bounded, so memory stays flat). Batches are taken from the
    readers in turn, so the rows' order in the table is the same every time.
    """
    context = multiprocessing.get_context("fork")  # children inherit the converters (closures)
    parts = _split(path, readers, settings.encoding)
    children = []
    for index, part in enumerate(parts):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_produce, args=(sender, receiver, path, settings, layout, snapshot_id, part),
                                name=f"loanrules-read-{layout.file}-{index}", daemon=True)
        child.start()
        sender.close()
        children.append((receiver, child))
    digest = _BackgroundDigest(path)
    try:
        active = list(children)
        while active:
            for receiver, child in list(active):
                event = _receive(receiver, child, layout.file)
                while event[0] == "problem":
                    yield event
                    event = _receive(receiver, child, layout.file)
                if event[0] == "rows":
                    yield event
                else:
                    active.remove((receiver, child))
        yield "sha256", digest.result()
    finally:
        for receiver, child in children:
            receiver.close()
            if child.is_alive():
                child.kill()
            child.join()


def _produce(sender, receiver, path, settings, layout, snapshot_id, part) -> None:
    receiver.close()
    try:
        for event in _read_here(path, settings, layout, snapshot_id, part):
            if event[0] == "rows":
                event = ("rows", list(event[1]), event[2], event[3])
            sender.send(event)
    except BaseException as error:  # an internal error in the child: hand it over, never hang
        sender.send(("crash", f"{type(error).__name__}: {error}"))
    finally:
        sender.close()


def _receive(receiver, child, file: str) -> tuple:
    try:
        event = receiver.recv()
    except EOFError:
        raise RuntimeError(f"the reader of {file} died (exit code {child.exitcode})") from None
    if event[0] == "crash":
        raise RuntimeError(f"reading {file} failed: {event[1]}")
    return event


class _BackgroundDigest:
    """sha256 of a file on a thread: hashlib releases the GIL, so it costs no wall time."""

    def __init__(self, path: Path):
        self._digest: str | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        self._digest = _sha256(path)

    def result(self) -> str:
        self._thread.join()
        return self._digest


# Encodings in which the bytes of '"' and '\n' never occur inside another
# character, so counting them in raw bytes finds record boundaries.
_SPLITTABLE = frozenset({"utf-8", "utf-8-sig", "gb18030", "gbk", "gb2312", "ascii", "latin-1", "iso8859-1"})
_SPLIT_CHUNK = 1 << 20


def _split(path: Path, parts: int, encoding: str) -> list[_Part]:
    """Cut a CSV into ``parts`` byte ranges at record boundaries.

    A newline ends a record when the quotes before it are even in number
    (RFC 4180: quotes inside quoted fields are doubled), so one pass counting
    quote and newline bytes finds the cut without parsing the CSV.
    """
    size = path.stat().st_size
    if parts < 2 or codecs.lookup(encoding).name not in _SPLITTABLE:
        return [_Part()]
    targets = [size * i // parts for i in range(1, parts)]
    cuts: list[tuple[int, int]] = []  # (byte offset, lines before it)
    quotes = newlines = position = 0
    with open(path, "rb") as handle:
        while targets and (chunk := handle.read(_SPLIT_CHUNK)):
            end = position + len(chunk)
            search = max(targets[0] - position, 0)
            while targets and targets[0] < end:
                newline = chunk.find(b"\n", search)
                if newline < 0:
                    break  # the boundary lies in a later chunk
                if (quotes + chunk.count(b'"', 0, newline)) % 2 == 0:
                    cuts.append((position + newline + 1, newlines + chunk.count(b"\n", 0, newline + 1)))
                    targets.pop(0)
                    search = max(targets[0] - position, newline + 1) if targets else newline + 1
                else:
                    search = newline + 1
            quotes += chunk.count(b'"')
            newlines += chunk.count(b"\n")
            position = end
    starts = [(0, 0)] + [cut for cut in cuts if cut[0] < size]
    return [_Part(start, next_start, lines, index == 0)
            for index, ((start, lines), next_start) in
            enumerate(zip(starts, [s for s, _ in starts[1:]] + [None]))]


def _read_batches(reader, line_offset: int = 0) -> Iterator[tuple[list[list[str]], list[int] | range]]:
    """Batches of records with the physical line each ends on.

    ``islice`` pulls a batch at C speed; line numbers come from the reader's
    line count, and only a batch with quoted line breaks needs counting them.
    """
    line = reader.line_num + line_offset
    while True:
        rows = list(itertools.islice(reader, BATCH_ROWS))
        if not rows:
            return
        end = reader.line_num + line_offset
        if end - line == len(rows):
            yield rows, range(line + 1, end + 1)
        else:
            lines = []
            for row in rows:
                line += 1 + sum(field.count("\n") for field in row)
                lines.append(line)
            yield rows, lines
        line = end


def _convert_batch(layout: _Layout, snapshot_id: int, rows: list[list[str]],
                   lines) -> tuple[Iterable[tuple], int, list[tuple]]:
    """Typed rows ready to insert, their count, and the bad rows with their problem cells."""
    if set(map(len, rows)) == {layout.width}:
        try:
            columns = [convert(values) for convert, values in zip(layout.column_converters, zip(*rows))]
        except ValueError:
            pass  # some cell is bad: the row-wise path below finds each one
        else:
            # a lazy zip: executemany binds straight from it, no million-tuple list
            return zip(itertools.repeat(snapshot_id), lines, *columns), len(rows), []
    good, bad = [], []
    for row, line in zip(rows, lines):
        if len(row) != layout.width:
            if any(field.strip() for field in row):  # blank lines are common at the end of exports
                bad.append((line, row, [(None, None, f"expected {layout.width} fields, found {len(row)}")]))
            continue
        try:
            good.append((snapshot_id, line, *[convert(field) for convert, field in zip(layout.converters, row)]))
        except ValueError:
            bad.append((line, row, _cell_problems(layout, row)))
    return good, len(good), bad


def _converted_batches(reader, layout: _Layout, snapshot_id: int,
                       line_offset: int = 0) -> Iterator[tuple[Iterable[tuple], int, list]]:
    # One thread on purpose: a reader thread feeding this one was measured
    # slower (12.4 s vs 7 s for 1M loans): the two fight over the GIL.
    for rows, lines in _read_batches(reader, line_offset):
        yield _convert_batch(layout, snapshot_id, rows, lines)


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
        problem = InputProblem(file, line, column, value, reason)
        problems.add(problem)
        if quarantine:
            _quarantine(conn, snapshot_id, problem, row)


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
    table = f"main.{_quote(spec.name)}"
    found: list[tuple[int, InputProblem]] = []  # (rowid, problem)
    if spec.key:
        key = ", ".join(map(_quote, spec.key))
        duplicates = conn.execute(
            f"SELECT t.rowid, t.source_line, {', '.join('t.' + _quote(c) for c in spec.key)}, d.first_line "
            f"FROM {table} t JOIN (SELECT {key}, min(source_line) AS first_line FROM {table} "
            f"WHERE snapshot_id = ? GROUP BY {key} HAVING count(*) > 1) d USING ({key}) "
            f"WHERE t.snapshot_id = ? ORDER BY t.source_line",
            (snapshot_id, snapshot_id),
        ).fetchall()
        for rowid, line, *values, first_line in duplicates:
            where = "appears more than once" if line == first_line else f"duplicate of line {first_line}"
            found.append((rowid, InputProblem(file, line, spec.key[0], "/".join(map(str, values)),
                                              f"duplicate {'+'.join(spec.key)}: {where}")))
    for reference in spec.references:
        if reference.table not in present:
            continue  # the referenced file is optional and absent: nothing to check against
        target = f"main.{_quote(reference.table)}"
        on = " AND ".join(f"t.{_quote(c)} = r.{_quote(tc)}"
                          for c, tc in zip(reference.columns, reference.target_columns))
        not_null = " AND ".join(f"t.{_quote(c)} IS NOT NULL" for c in reference.columns)
        key_text = " || char(31) || ".join(f"t.{_quote(c)}" for c in reference.columns)
        orphans = conn.execute(
            f"SELECT t.rowid, t.source_line, {', '.join('t.' + _quote(c) for c in reference.columns)}, "
            f"EXISTS (SELECT 1 FROM temp.rejected_keys k WHERE k.table_name = ? AND k.key = {key_text}) "
            f"FROM {table} t WHERE t.snapshot_id = ? AND {not_null} AND NOT EXISTS "
            f"(SELECT 1 FROM {target} r WHERE r.snapshot_id = t.snapshot_id AND {on}) ORDER BY t.source_line",
            (reference.table, snapshot_id),
        ).fetchall()
        target_file = present[reference.table].name
        for rowid, line, *values, target_was_rejected in orphans:
            shown = "/".join(map(str, values))
            names = f"names {'+'.join(reference.target_columns)} {shown!r}"
            if target_was_rejected and not quarantine:
                continue  # that row's own problem is already reported; this one follows from it
            reason = (f"{names}, whose row in {target_file} was quarantined" if target_was_rejected
                      else f"{names}, which is not in {target_file}")
            found.append((rowid, InputProblem(file, line, reference.columns[0], shown, reason)))
    for _, problem in found:
        problems.add(problem)
    if quarantine and found:
        _quarantine_stored_rows(conn, spec, present[spec.name], settings, snapshot_id, found)


def _quarantine_stored_rows(conn, spec: TableSpec, path: Path, settings: SnapshotSettings, snapshot_id: int,
                            found: list[tuple[int, InputProblem]]) -> None:
    """Move rows found bad across rows to the quarantine, with their raw CSV fields re-read from the file."""
    raw = _raw_records(path, settings, {problem.line for _, problem in found})
    for rowid, problem in found:
        _quarantine(conn, snapshot_id, problem, raw.get(problem.line, []))
        _remember_rejected(conn, spec, _stored_key(conn, spec, rowid))
    conn.executemany(f"DELETE FROM main.{_quote(spec.name)} WHERE rowid = ?", [(rowid,) for rowid, _ in found])


def _raw_records(path: Path, settings: SnapshotSettings, lines: set[int]) -> dict[int, list[str]]:
    """The CSV records ending on the given physical lines (one more pass over the file, quarantine only)."""
    _, text, reader = _open_csv(path, settings)
    wanted = {}
    with text:
        for record in reader:
            if reader.line_num in lines:
                wanted[reader.line_num] = record
    return wanted


def _stored_key(conn, spec: TableSpec, rowid: int) -> str | None:
    if not spec.key:
        return None
    columns = ", ".join(map(_quote, spec.key))
    values = conn.execute(f"SELECT {columns} FROM main.{_quote(spec.name)} WHERE rowid = ?", (rowid,)).fetchone()
    return "\x1f".join("" if v is None else str(v) for v in values)


def _remember_rejected(conn, spec: TableSpec, key: str | None) -> None:
    """A row left out of the snapshot: rows of other tables naming it are not 'unknown'."""
    if key is not None:
        conn.execute("INSERT INTO temp.rejected_keys VALUES (?, ?)", (spec.name, key))


def _quote(name: str) -> str:
    """An SQL identifier, whatever characters a column name in the extract holds."""
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- the load


def check_snapshot_settings(settings: SnapshotSettings, tables: Mapping[str, TableSpec], source: str | None) -> None:
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
            counts[name], digests[path.name], usable = _stream_table(
                conn, path, tables[name], snapshot_id, settings, problems, quarantine, progress
            )
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
            counts[name] = conn.execute(f'SELECT count(*) FROM main."{name}" WHERE snapshot_id = ?',
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
    existing = {row[0] for row in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")}
    for snapshot_id in earlier:
        for name in tables:
            if name in existing:
                conn.execute(f'DELETE FROM main."{name}" WHERE snapshot_id = ?', (snapshot_id,))
        conn.execute("DELETE FROM quarantine WHERE snapshot_id = ?", (snapshot_id,))
        conn.execute("DELETE FROM snapshots WHERE snapshot_id = ?", (snapshot_id,))
    return earlier
