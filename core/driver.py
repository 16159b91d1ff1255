"""The SQLite driver: ``pysqlite3`` when it is installed, else the standard library's ``sqlite3``.

Python's own module uses the SQLite of the operating system, whatever its age: Debian 12 has
3.40, older enterprise distributions 3.26 or less, and the SQL of this package needs 3.35
(``AS MATERIALIZED``). ``pysqlite3-binary`` carries a current SQLite (3.51 here), a
dependency on Linux x86-64, the platform of its wheels: the collateral checks over 1M loans
ran in 3.95 s with it against 4.96 s with Debian's 3.40 (same database, same run;
bench/bench_collateral.py). sqlite-utils makes the same choice, so both use one driver and
one set of exception classes. Everything here imports ``sqlite3`` from this module.
"""

from __future__ import annotations

try:
    from pysqlite3 import dbapi2 as sqlite3
except ImportError:  # another platform, or installed without it: the operating system's SQLite
    import sqlite3

MINIMUM_SQLITE = (3, 35, 0)


def sqlite_version() -> str:
    """The SQLite in use and where it comes from, e.g. ``3.51.1 (pysqlite3)``."""
    origin = "pysqlite3" if sqlite3.__name__.startswith("pysqlite3") else "the operating system's"
    return f"{sqlite3.sqlite_version} ({origin})"


__all__ = ["MINIMUM_SQLITE", "sqlite3", "sqlite_version"]
