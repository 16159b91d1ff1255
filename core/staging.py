"""Loading a big file, step one: reader processes write typed rows into scratch databases.

Handing millions of values from Python to SQLite one by one costs as much as
reading and converting them (measured on 1M loans: 4.75 s of a 6.6 s load).
So for a big file, reader processes (one per part of the file, one per core)
parse, convert and insert into scratch SQLite files of their own, and the
load copies the rows into the results database with one ``INSERT ... SELECT``
inside SQLite (0.6 s for 1M loans). Bad rows go to the scratch files too, so
a huge bad file never sits in memory.

The scratch files live in a directory beside the results database (same disk,
and the caller holds the database's lock) and are removed afterwards. The
results database is only written by the copy, inside the run's transaction:
a run killed while staging leaves it untouched, and the next run removes the
dead run's scratch directory.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs

from loanrules.config import SnapshotSettings
from loanrules.convert import BOOKKEEPING_COLUMNS, Layout, map_header
from loanrules.errors import InputProblem
from loanrules.reading import Part, file_sha256, read_events, read_header, snapshot_files, split
from loanrules.schema import TableSpec
from loanrules.store import quote_identifier

STAGE_MIN_BYTES = 4 << 20  # below this, forking readers costs more than it saves
MAX_READERS = 4  # scratch files are attached to the connection: SQLite allows 10


@attrs.frozen
class StagedPart:
    schema: str  # the scratch file's name when attached
    count: int
    unreadable: InputProblem | None  # the reader could not get past this point


class Digest:
    """sha256 of a file, computed on a thread.

    Started once the readers are done, it overlaps the copy into the results
    database (SQLite and hashlib both release the GIL) instead of competing
    with the readers for a core.
    """

    def __init__(self, path: Path):
        self._value: list[str] = []
        self._thread = threading.Thread(target=lambda: self._value.append(file_sha256(path)), daemon=True)
        self._thread.start()

    def result(self) -> str:
        self._thread.join()
        return self._value[0]


@attrs.frozen
class StagedFile:
    path: Path
    layout: Layout
    parts: tuple[StagedPart, ...]
    digest: Digest

    @property
    def rows_table(self) -> str:
        return quote_identifier(f"rows_{self.layout.spec.name}")

    @property
    def bad_table(self) -> str:
        return quote_identifier(f"bad_{self.layout.spec.name}")


def readers_for_this_machine() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_READERS))


@contextlib.contextmanager
def staged_snapshot(conn: sqlite3.Connection, db_path: str | Path, directory: str | Path,
                    tables: Mapping[str, TableSpec], settings: SnapshotSettings,
                    progress: Callable[[str], None] | None = None,
                    min_bytes: int | None = None) -> Iterator[dict[str, StagedFile]]:
    """Stage the snapshot's big files and attach the scratch databases to ``conn``.

    Call outside a transaction (SQLite cannot ATTACH inside one); load inside
    the ``with`` block. Files whose header is unusable are left to the load,
    which reports them.
    """
    directory = Path(directory)
    threshold = STAGE_MIN_BYTES if min_bytes is None else min_bytes
    files = snapshot_files(directory, tables, settings) if directory.is_dir() else {}
    big = {name: path for name, path in files.items() if path.stat().st_size >= threshold}
    if not big:
        yield {}
        return
    area = _scratch_directory(Path(db_path))
    readers = readers_for_this_machine()
    schemas = [f"loanrules_stage{index}" for index in range(readers)]
    try:
        staged = {}
        for name, path in big.items():
            header, _ = read_header(path, settings)
            layout = map_header(path.name, header, tables[name], settings)[0] if header else None
            if layout is not None:
                staged[name] = _stage_file(path, layout, settings, area, schemas, progress)
        for schema in schemas:
            conn.execute(f"ATTACH DATABASE ? AS {schema}", (str(area / f"{schema}.db"),))
        try:
            yield staged
        finally:
            for schema in schemas:
                conn.execute(f"DETACH DATABASE {schema}")
    finally:
        shutil.rmtree(area, ignore_errors=True)


def _scratch_directory(db_path: Path) -> Path:
    parent = db_path.resolve().parent
    prefix = f".{db_path.name}.staging-"
    for stale in parent.glob(prefix + "*"):  # left by a killed run: we hold the lock, nobody else uses them
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _stage_file(path: Path, layout: Layout, settings: SnapshotSettings, area: Path, schemas: list[str],
                progress: Callable[[str], None] | None) -> StagedFile:
    context = multiprocessing.get_context("fork")  # readers inherit the converters (closures)
    parts = split(path, len(schemas), settings.encoding)
    readers = []
    for part, schema in zip(parts, schemas):
        receiver, sender = context.Pipe(duplex=False)
        reader = context.Process(target=_stage_part, name=f"loanrules-stage-{path.name}",
                                 args=(sender, receiver, path, settings, layout, part, area / f"{schema}.db"),
                                 daemon=True)
        reader.start()
        sender.close()
        readers.append((schema, receiver, reader))
    results: dict[str, tuple[int, InputProblem | None]] = {}
    counts: dict[str, int] = {}
    shown = time.monotonic()
    try:
        while len(results) < len(readers):
            for schema, receiver, reader in readers:
                if schema in results or not receiver.poll(0.05):
                    continue
                message = _receive(receiver, reader, path.name)
                if message[0] == "progress":
                    counts[schema] = message[1]
                else:
                    results[schema] = message[1:]
            if progress and time.monotonic() - shown >= 1:
                progress(f"reading {path.name}: {sum(counts.values()):,} rows")
                shown = time.monotonic()
    finally:
        for _, receiver, reader in readers:
            receiver.close()
            if reader.is_alive():
                reader.kill()
            reader.join()
    staged_parts = tuple(StagedPart(schema, *results[schema]) for schema, _, _ in readers)
    return StagedFile(path, layout, staged_parts, Digest(path))


def _receive(receiver, reader, file: str) -> tuple:
    try:
        message = receiver.recv()
    except EOFError:
        raise RuntimeError(f"the reader of {file} died (exit code {reader.exitcode})") from None
    if message[0] == "crash":
        raise RuntimeError(f"reading {file} failed: {message[1]}")
    return message


def _stage_part(sender, receiver, path: Path, settings: SnapshotSettings, layout: Layout, part: Part,
                scratch: Path) -> None:
    """In a reader process: one part of the file into one scratch database."""
    receiver.close()
    gc.disable()  # millions of short-lived row lists: the cyclic collector would only slow us down
    try:
        conn = sqlite3.connect(scratch, isolation_level=None)
        conn.execute("PRAGMA journal_mode = OFF")  # scratch: a crash just discards the directory
        conn.execute("PRAGMA synchronous = OFF")
        table = layout.spec.name
        columns = ", ".join(map(quote_identifier, (*BOOKKEEPING_COLUMNS, *layout.columns)))
        rows_table, bad_table = quote_identifier(f"rows_{table}"), quote_identifier(f"bad_{table}")
        conn.execute(f"CREATE TABLE {rows_table} ({columns})")
        conn.execute(f"CREATE TABLE {bad_table} (line, row, cells)")
        insert = f"INSERT INTO {rows_table} VALUES ({', '.join('?' * (len(layout.columns) + 2))})"
        count, unreadable, shown = 0, None, time.monotonic()
        conn.execute("BEGIN")
        for event in read_events(path, settings, layout, 0, part):
            if event[0] == "rows":
                _, good, batch_count, bad = event
                conn.executemany(insert, good)
                count += batch_count
                conn.executemany(f"INSERT INTO {bad_table} VALUES (?, ?, ?)",
                                 [(line, json.dumps(row, ensure_ascii=False), json.dumps(cells, ensure_ascii=False))
                                  for line, row, cells in bad])
                if time.monotonic() - shown >= 0.5:
                    sender.send(("progress", count))
                    shown = time.monotonic()
            elif event[0] == "problem":
                unreadable = event[1]
        conn.execute("COMMIT")
        conn.close()
        sender.send(("done", count, unreadable))
    except BaseException as error:  # an internal error in the reader: hand it over, never hang
        sender.send(("crash", f"{type(error).__name__}: {error}"))
    finally:
        sender.close()
