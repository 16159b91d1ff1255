"""The SQLite driver (core/driver.py): which SQLite the package runs on, said by `loanrules --version`, and a
clear refusal of one too old for its SQL."""

from __future__ import annotations

import platform

import pytest
from conftest import invoke

import loanrules.store
from loanrules.driver import MINIMUM_SQLITE, sqlite3, sqlite_version
from loanrules.errors import UsageError


def test_the_version_names_the_sqlite_in_use(runner):
    out = invoke(runner, "--version").output
    assert f"SQLite {sqlite3.sqlite_version} (" in out and sqlite_version() in out


@pytest.mark.skipif((platform.system(), platform.machine()) != ("Linux", "x86_64"),
                    reason="pysqlite3-binary is a dependency on Linux x86-64 alone")
def test_on_linux_x86_64_the_bundled_sqlite_is_used_and_so_is_sqlite_utils():
    import sqlite_utils.utils

    assert sqlite3.__name__ == "pysqlite3.dbapi2" and sqlite_version().endswith("(pysqlite3)")
    assert sqlite_utils.utils.dbapi2 is sqlite3  # one driver, one set of exception classes
    assert sqlite3.sqlite_version_info >= MINIMUM_SQLITE


def test_a_sqlite_too_old_for_the_sql_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(loanrules.store.sqlite3, "sqlite_version_info", (3, 26, 0))
    with pytest.raises(UsageError, match=r"SQLite .* is older than 3\.35\.0.*pysqlite3-binary"):
        loanrules.store.connect(tmp_path / "old.db")
