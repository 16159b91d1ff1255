"""The read-only SQLite authorizer for SQL rules declared in a cooperative's config.

A config is data, not code: its SQL may read the snapshot tables of the
current run and nothing else. SQLite consults the authorizer while compiling
a statement, so a rule that writes, drops, attaches, changes a PRAGMA or reads
another table fails to compile and never runs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator

# Functions with side effects or access outside the database.
_FORBIDDEN_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


class Authorizer:
    def __init__(self, readable: Iterable[str], writable_temp_table: str):
        self.readable = frozenset(readable)
        self.writable = writable_temp_table
        self.denied: list[str] = []

    def __call__(self, action: int, arg1, arg2, database, source) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            # the run's snapshot views live in temp; the rows behind them are read
            # through the view, which SQLite names in ``source``
            if (database == "temp" and arg1 in self.readable) or (database == "main" and source in self.readable):
                return sqlite3.SQLITE_OK
            return self._deny(f"reading {database + '.' if database else ''}{arg1}")
        if action == sqlite3.SQLITE_FUNCTION:
            if arg2 and arg2.lower() in _FORBIDDEN_FUNCTIONS:
                return self._deny(f"calling {arg2}()")
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_INSERT and database == "temp" and arg1 == self.writable:
            return sqlite3.SQLITE_OK  # the core's own staging insert around the rule
        return self._deny(_ACTION_NAMES.get(action, f"action {action}") + (f" {arg1}" if arg1 else ""))

    def _deny(self, what: str) -> int:
        self.denied.append(what)
        return sqlite3.SQLITE_DENY


_ACTION_NAMES = {
    sqlite3.SQLITE_INSERT: "writing (INSERT into)",
    sqlite3.SQLITE_UPDATE: "writing (UPDATE of)",
    sqlite3.SQLITE_DELETE: "writing (DELETE from)",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW",
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_ATTACH: "ATTACH",
    sqlite3.SQLITE_DETACH: "DETACH",
    sqlite3.SQLITE_PRAGMA: "PRAGMA",
    sqlite3.SQLITE_TRANSACTION: "transaction control",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT",
}


@contextlib.contextmanager
def read_only(conn: sqlite3.Connection, readable: Iterable[str], writable_temp_table: str) -> Iterator[Authorizer]:
    authorizer = Authorizer(readable, writable_temp_table)
    conn.set_authorizer(authorizer)
    try:
        yield authorizer
    finally:
        conn.set_authorizer(None)
