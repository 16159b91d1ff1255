"""The SQLite under Python: named by `loanrules --version`, and one too old for this package's SQL refused by name."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import invoke

import loanrules.store
from loanrules.errors import UsageError


def test_the_version_names_the_sqlite_in_use(runner):
    assert f", SQLite {sqlite3.sqlite_version}" in invoke(runner, "--version").output


def test_a_sqlite_too_old_for_the_sql_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(loanrules.store.sqlite3, "sqlite_version_info", (3, 26, 0))
    monkeypatch.setattr(loanrules.store.sqlite3, "sqlite_version", "3.26.0")
    with pytest.raises(UsageError, match=r"SQLite 3\.26\.0 is older than 3\.35\.0, which loanrules needs"):
        loanrules.store.connect(tmp_path / "old.db")
    assert not (tmp_path / "old.db").exists() or (tmp_path / "old.db").stat().st_size == 0
