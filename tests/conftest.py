"""Shared fixtures: tiny snapshots written from Python literals, the CLI runner, the registry."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from loanrules.cli import cli
from loanrules.manager import PluginManager
from loanrules.registry import Registry

AS_OF = "2026-11-27"


@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch):
    """Third-party plugins installed on the machine must not change test results."""
    monkeypatch.setenv("LOANRULES_LOAD_PLUGINS", "")
    monkeypatch.delenv("LOANRULES_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("LOANRULES_DB", raising=False)
    monkeypatch.delenv("LOANRULES_PLUGINS_DIR", raising=False)
    monkeypatch.delenv("LOANRULES_DEBUG", raising=False)


def write_table(path: Path, rows: Sequence[Mapping[str, object]] | str, encoding: str = "utf-8") -> Path:
    """Write one CSV: from a list of dicts (header = keys of the first row) or from raw text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(rows, str):
        path.write_bytes(rows.encode(encoding))
        return path
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_snapshot(directory: Path, **tables: Sequence[Mapping[str, object]] | str) -> Path:
    """``write_snapshot(tmp_path / "s", loans=[...], borrowers=[...])`` -> the snapshot directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        write_table(directory / f"{name}.csv", rows)
    return directory


def loan(loan_id: str, borrower_id: str = "B1", **fields) -> dict[str, object]:
    """A performing loan with every canonical column; override what the test is about."""
    row = {
        "loan_id": loan_id, "borrower_id": borrower_id, "branch_id": "BR01", "product": "farm_operation",
        "guarantee_type": "credit", "principal": "100000.00", "outstanding_principal": "80000.00",
        "interest_arrears": "0.00", "origination_date": "2025-03-01", "maturity_date": "2027-03-01",
        "days_past_due": "0", "restructured_date": "", "recorded_class": "normal", "provision": "1600.00",
        "lending_officer_id": "OF001", "collection_officer_id": "OF002", "written_off": "0",
    }
    row.update({key: str(value) for key, value in fields.items()})
    return row


def borrower(borrower_id: str, **fields) -> dict[str, object]:
    row = {"borrower_id": borrower_id, "name": "张三", "id_number": "11010519491231002X",
           "borrower_type": "household", "village": "青山村", "township": "青山镇"}
    row.update(fields)
    return row


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, **kwargs):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)


@pytest.fixture
def registry() -> Registry:
    return Registry.from_plugins(PluginManager())


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "results.db"


def query(db: Path, sql: str, params: Sequence = ()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def table_snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table: to assert that a refused run changed nothing."""
    conn = sqlite3.connect(db)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr) for name in names}
    finally:
        conn.close()
