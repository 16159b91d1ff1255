"""Reading snapshot CSV files: headers, record batches with their line numbers, parts.

Line numbers are physical lines of the file (a record with quoted line breaks
is numbered by its last line, as the csv module counts), so a problem points
at a line an editor shows. A big file can be cut into parts at record
boundaries for several reader processes.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import attrs

from loanrules.config import SnapshotSettings
from loanrules.convert import Layout, convert_batch
from loanrules.errors import InputProblem, UsageError
from loanrules.schema import TableSpec

BATCH_ROWS = 5000

class HashingReader(io.RawIOBase):
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


def open_csv(path: Path, settings: SnapshotSettings):
    raw = open(path, "rb", buffering=0)
    hashing = HashingReader(raw)
    text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 20), encoding=settings.encoding, newline="")
    return hashing, text, csv.reader(text, delimiter=settings.delimiter, strict=True)


def read_header(path: Path, settings: SnapshotSettings) -> tuple[list[str] | None, InputProblem | None]:
    # Only the first line is decoded: a bad byte further down is the data's problem, reported on its line.
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        text = first.decode(settings.encoding)
        header = next(csv.reader([text.rstrip("\r\n")], delimiter=settings.delimiter, strict=True), None)
    except (UnicodeDecodeError, csv.Error) as error:
        return None, reading_problem(path.name, 1, error, settings)
    if not first.strip() or header is None:
        return None, InputProblem(path.name, None, None, None, "empty file: no header row")
    return header, None


def locate_decode_error(path: Path, settings: SnapshotSettings, problem: InputProblem) -> InputProblem:
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def reading_problem(file: str, line: int, error: Exception, settings: SnapshotSettings) -> InputProblem:
    if isinstance(error, UnicodeDecodeError):
        return InputProblem(file, line, None, repr(error.object[error.start:error.end]),
                            f"not valid {settings.encoding} text; set [snapshot] encoding "
                            f"(e.g. \"gb18030\") to the extract's encoding")
    return InputProblem(file, line, None, None, f"malformed CSV: {error}")


@attrs.frozen
class Part:
    """A byte range of a CSV file that starts at a record boundary."""

    start: int = 0
    end: int | None = None  # exclusive; None: to the end of the file
    line_offset: int = 0  # physical lines before ``start``
    has_header: bool = True


def read_events(path: Path, settings: SnapshotSettings, layout: Layout, snapshot_id: int,
                part: Part = Part()) -> Iterator[tuple]:
    """Events for one file or part: ("rows", good, count, bad)..., ("problem", p)?, ("sha256", hex)."""
    raw = open(path, "rb", buffering=0)
    raw.seek(part.start)
    hashing = HashingReader(raw, part.end - part.start if part.end is not None else None)
    text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 20), encoding=settings.encoding, newline="")
    reader = csv.reader(text, delimiter=settings.delimiter, strict=True)
    stopped_early = False
    with text:
        try:
            if part.has_header:
                next(reader)  # already checked by the caller
            for good, count, bad in converted_batches(reader, layout, snapshot_id, part.line_offset):
                yield "rows", good, count, bad
        except (UnicodeDecodeError, csv.Error) as error:
            stopped_early = True
            # a csv.Error is raised after the reader counted the bad line; a decode error before
            line = reader.line_num + (1 if isinstance(error, UnicodeDecodeError) else 0)
            yield "problem", reading_problem(layout.file, part.line_offset + line, error, settings)
    whole = part == Part()
    # the digest is of the whole file, also when reading stopped at a bad byte
    yield "sha256", hashing.sha256.hexdigest() if whole and not stopped_early else None


SPLITTABLE = frozenset({"utf-8", "utf-8-sig", "gb18030", "gbk", "gb2312", "ascii", "latin-1", "iso8859-1"})
SPLIT_CHUNK = 1 << 20


def split(path: Path, parts: int, encoding: str) -> list[Part]:
    """Cut a CSV into ``parts`` byte ranges at record boundaries.

    A newline ends a record when the quotes before it are even in number
    (RFC 4180: quotes inside quoted fields are doubled), so one pass counting
    quote and newline bytes finds the cut without parsing the CSV.
    """
    size = path.stat().st_size
    if parts < 2 or codecs.lookup(encoding).name not in SPLITTABLE:
        return [Part()]
    targets = [size * i // parts for i in range(1, parts)]
    cuts: list[tuple[int, int]] = []  # (byte offset, lines before it)
    quotes = newlines = position = 0
    with open(path, "rb") as handle:
        while targets and (chunk := handle.read(SPLIT_CHUNK)):
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
    return [Part(start, next_start, lines, index == 0)
            for index, ((start, lines), next_start) in
            enumerate(zip(starts, [s for s, _ in starts[1:]] + [None]))]


def read_batches(reader, line_offset: int = 0) -> Iterator[tuple[list[list[str]], list[int] | range]]:
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


def converted_batches(reader, layout: Layout, snapshot_id: int,
                       line_offset: int = 0) -> Iterator[tuple[Iterable[tuple], int, list]]:
    # One thread on purpose: a reader thread feeding this one was measured
    # slower (12.4 s vs 7 s for 1M loans): the two fight over the GIL.
    for rows, lines in read_batches(reader, line_offset):
        yield convert_batch(layout, snapshot_id, rows, lines)


def snapshot_files(directory: Path, tables: Mapping[str, TableSpec],
                   settings: SnapshotSettings) -> dict[str, Path]:
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a snapshot directory")
    found = {}
    for name in tables:
        path = directory / settings.files.get(name, f"{name}.csv")
        if path.is_file():
            found[name] = path
    return found
