"""Bringing a database made by an earlier version up to this one (``loanrules upgrade-db``).

Runs and loads add what they need as they go: result columns, indexes. Two
things are left to this command. The reading commands open a database
read-only, so they ask for the result columns instead of adding them. And a
stored snapshot table made before its required columns were declared NOT NULL
is rebuilt with them declared: every row is copied, which takes time in
proportion to the whole history, so it is done once, when asked, never in
the middle of a night. Until then the checks give the same results; the ones
that compare two snapshots by merging them (collateral.changes) are slower.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from loanrules.loader import planner_statistics
from loanrules.schema import TableSpec
from loanrules.store import not_null_columns, quote_identifier, transaction, upgrade_schema


def undeclared_not_null(conn: sqlite3.Connection, specs: Iterable[TableSpec]) -> dict[str, list[str]]:
    """Stored snapshot tables with columns this version declares NOT NULL and an earlier one did not:
    table -> those columns. Tables not stored yet are not listed."""
    found = {}
    for spec in specs:
        declared = {row[1]: row[3] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (spec.name,))}
        missing = sorted(column for column in not_null_columns(spec) if column in declared and not declared[column])
        if missing:
            found[spec.name] = missing
    return found


def upgrade_database(conn: sqlite3.Connection, specs: Iterable[TableSpec]) -> list[str]:
    """Add the result columns and declare the NOT NULL columns an earlier version left out, in one transaction;
    what was done, one line per change (none: already up to date)."""
    specs = {spec.name: spec for spec in specs}
    done = []
    with transaction(conn):
        added = upgrade_schema(conn)
        if added:
            done.append(f"added {', '.join(added)}")
        analyzed = _analyzed_tables(conn)
        rebuilt = []
        for table, columns in undeclared_not_null(conn, specs.values()).items():
            kept_nullable = _declare_not_null(conn, table, columns)
            if table in analyzed:
                rebuilt.append(specs[table])
            declared = [c for c in columns if c not in kept_nullable]
            done.append(f"{table}: declared {', '.join(declared)} NOT NULL" if declared else
                        f"{table}: nothing declared")
            done += [f"{table}.{column}: left nullable, {rows} row(s) have no value"
                     for column, rows in kept_nullable.items()]
        latest = conn.execute("SELECT max(snapshot_id) FROM snapshots").fetchone()[0]
        if rebuilt and latest is not None:
            planner_statistics(conn, rebuilt, latest)  # dropped with the old table: made again, as a load makes them
    return done


def _analyzed_tables(conn: sqlite3.Connection) -> set[str]:
    """The tables the planner has statistics of (a load makes them for the tables it loads)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        return set()
    return {table for (table,) in conn.execute("SELECT DISTINCT tbl FROM sqlite_stat1")}


def _declare_not_null(conn: sqlite3.Connection, table: str, columns: list[str]) -> dict[str, int]:
    """Rebuild ``table`` with ``columns`` declared NOT NULL: the same columns and types, the same rows under
    the same rowids, its indexes made again from their own SQL (partial ones included). A column some row has
    no value in stays nullable: {column: rows without a value}."""
    name = quote_identifier(table)
    nulls = {column: conn.execute(f"SELECT count(*) FROM {name} WHERE {quote_identifier(column)} IS NULL")
             .fetchone()[0] for column in columns}
    kept_nullable = {column: rows for column, rows in nulls.items() if rows}
    info = conn.execute("SELECT name, type, \"notnull\" FROM pragma_table_info(?) ORDER BY cid", (table,)).fetchall()
    not_null = {column for column, _, declared in info if declared} | (set(columns) - set(kept_nullable))
    indexes = [sql for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                              "AND sql IS NOT NULL ORDER BY name", (table,))]
    rebuilt = f"{table}__rebuilt"
    conn.execute(f"CREATE TABLE {quote_identifier(rebuilt)} (" + ", ".join(
        f"{quote_identifier(column)} {kind}{' NOT NULL' if column in not_null else ''}".rstrip()
        for column, kind, _ in info) + ")")
    listed = ", ".join(quote_identifier(column) for column, _, _ in info)
    conn.execute(f"INSERT INTO {quote_identifier(rebuilt)} (rowid, {listed}) SELECT rowid, {listed} FROM {name}")
    conn.execute(f"DROP TABLE {name}")
    conn.execute(f"ALTER TABLE {quote_identifier(rebuilt)} RENAME TO {name}")
    for sql in indexes:
        conn.execute(sql)
    return kept_nullable
