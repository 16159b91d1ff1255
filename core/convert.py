"""From CSV text to stored values: the header's mapping and each cell's conversion.

Runs once per cell of a snapshot (tens of millions a night). The hot path
converts a batch one column at a time: text is stripped through C-level
``map``, low-cardinality columns (dates, codes, booleans, small integers) hit
a per-column cache, and amounts take a digits-only fast path checked for the
whole batch by one regular expression. Any ValueError sends the column to the
scalar converter, and a value that is really bad sends the batch to the
row-wise path, which names every bad cell. Together ~4x faster than calling a
converter per cell.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping

import attrs

from loanrules.config import SnapshotSettings
from loanrules.errors import InputProblem
from loanrules.parsing import parse_boolean, parse_date, parse_integer, parse_money
from loanrules.schema import Column, ColumnType, TableSpec

BOOKKEEPING_COLUMNS = ("snapshot_id", "source_line")  # added to every stored snapshot table

Converter = Callable[[str], object]
ColumnConverter = Callable[[list], list]
_CACHE_LIMIT = 50_000

# A batch of amounts joined by newlines, each with exactly two decimals (or
# empty): the regular expression checks the whole batch at C speed.
_AMOUNTS_IN_CENTS = re.compile(r"(?:[0-9]+\.[0-9]{2})?(?:\n(?:[0-9]+\.[0-9]{2})?)*")


def scalar_converter(column: Column, codes: Mapping[str, str]) -> Converter:
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


def column_converter(column: Column | None, scalar: Converter) -> ColumnConverter:
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


@attrs.frozen
class Layout:
    """How one file's header maps onto a table."""

    file: str
    spec: TableSpec
    columns: tuple[str, ...]  # stored column names, in the same order
    converters: tuple[Converter, ...]
    column_converters: tuple[ColumnConverter, ...]
    extra_columns: tuple[str, ...]
    width: int


def map_header(file: str, header: list[str], spec: TableSpec,
               settings: SnapshotSettings) -> tuple[Layout | None, list[InputProblem]]:
    """The layout of a file from its header, or every problem with the header."""
    problems: list[InputProblem] = []
    mapping = {k.strip(): v for k, v in settings.columns.get(spec.name, {}).items()}
    names: list[str] = []
    for raw in header:
        name = raw.strip()
        names.append(mapping.get(name, name))
    seen: dict[str, int] = {}
    ok = True
    for index, name in enumerate(names):
        if not name:
            problems.append(InputProblem(file, 1, f"#{index + 1}", header[index], "empty column name"))
            ok = False
        elif name in seen:
            problems.append(InputProblem(file, 1, name, header[index],
                                      f"column appears twice (also field {seen[name] + 1})"))
            ok = False
        elif name in BOOKKEEPING_COLUMNS:
            problems.append(InputProblem(file, 1, name, header[index], "reserved column name: rename or map it in "
                                      "[snapshot.columns]"))
            ok = False
        else:
            seen[name] = index
    for column in spec.columns:
        if column.required and column.name not in seen:
            hint = ""
            if mapping:
                hint = " after [snapshot.columns] mapping"
            problems.append(InputProblem(file, 1, column.name, None, f"required column missing{hint}"))
            ok = False
    if not ok:
        return None, problems
    columns, converters, column_converters, extras = [], [], [], []
    for name in names:
        column = spec.column(name)
        columns.append(name)
        if column is None:
            extras.append(name)  # kept as text for plugins and SQL rules
            converters.append(_text)
        else:
            converters.append(scalar_converter(column, settings.codes.get(f"{spec.name}.{name}", {})))
        column_converters.append(column_converter(column, converters[-1]))
    layout = Layout(file, spec, tuple(columns), tuple(converters), tuple(column_converters), tuple(extras),
                    len(header))
    return layout, problems


def convert_batch(layout: Layout, snapshot_id: int, rows: list[list[str]],
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
            bad.append((line, row, cell_problems(layout, row)))
    return good, len(good), bad


def cell_problems(layout: Layout, row: list[str]) -> list[tuple[str, str, str]]:
    found = []
    for name, convert, field in zip(layout.columns, layout.converters, row):
        try:
            convert(field)
        except ValueError as error:
            found.append((name, field, str(error).strip()))
    return found
