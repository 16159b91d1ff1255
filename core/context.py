"""What a Python check, classifier or strategy receives: ``evaluate(ctx)``.

Inside a run every table name means *this* snapshot and *this* run:
``loans``, ``borrowers`` ... are views of the snapshot being run,
``prev_loans`` ... of the cooperative's previous as-of (empty without one),
``history_loans`` ... of every earlier as-of (with an ``as_of`` column),
``assessments``, ``findings`` and ``collection_tasks`` of the current run
(``prev_`` and ``history_`` of them likewise), ``borrower_facts`` and
``collateral_facts`` are per-borrower and per-collateral aggregates the core
builds once per run, and a derivation's table (``effective_collateral`` ...)
is there once a contribution that lists it runs. Read in batches (``ctx.batches``) so memory stays
flat: the core never calls a plugin once per loan.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

import attrs


@attrs.frozen
class RunContext:
    db: sqlite3.Connection
    run_id: int
    snapshot_id: int
    as_of: datetime.date
    previous_as_of: datetime.date | None
    params: Mapping[str, Any]  # this contribution's effective parameters (money in fen)
    sql_params: Mapping[str, Any]  # the same, plus as_of etc., ready for named SQL parameters
    net_capital: int | None = None  # fen, from the config

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> sqlite3.Cursor:
        cursor = self.db.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, {**self.sql_params, **(params or {})})

    def batches(self, sql: str, params: Mapping[str, Any] | None = None,
                size: int = 10_000) -> Iterator[list[sqlite3.Row]]:
        """Rows of ``sql`` in lists of ``size``: the way to walk a million loans in Python."""
        cursor = self.query(sql, params)
        while True:
            rows = cursor.fetchmany(size)
            if not rows:
                return
            yield rows
