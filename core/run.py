"""A night's run, end to end: lock, load, stages, supersede, record.

Atomicity: the run's row is committed as ``running`` first (so a run killed
with kill -9 leaves a trace the next run marks ``failed``); everything else,
the snapshot included, is written in one transaction committed at the end. A
crash at any moment before that commit leaves the database as it was.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

import loanrules
from loanrules.config import Config
from loanrules.engine import Engine, Outcome, RunScope
from loanrules.errors import UsageError
from loanrules.loader import LoadedSnapshot, check_snapshot_settings, load_snapshot, replace_earlier_snapshots
from loanrules.model import Severity
from loanrules.plan import Overrides, Planned, build_plan, selected_packs
from loanrules.registry import Registry
from loanrules.staging import staged_snapshot
from loanrules.store import (
    connect,
    counted,
    database_lock,
    ensure_schema,
    ensure_snapshot_table,
    json_dumps,
    recover_dead_runs,
    transaction,
    utcnow,
)

Progress = Callable[[str], None]


@attrs.frozen
class RunResult:
    run_id: int
    status: str
    cooperative: str
    as_of: str
    snapshot: LoadedSnapshot
    outcomes: tuple[Outcome, ...]
    findings_by_severity: dict[str, int]
    new: int
    persisting: int
    resolved: int
    recovered_runs: tuple[int, ...]
    traces: dict[str, str]

    def exit_code(self, fail_on: Severity | None) -> int:
        """3 when a contribution failed; 1 when a finding is at or above ``fail_on``; else 0."""
        if self.status != "succeeded":
            return 3
        if fail_on is not None and any(
            count and Severity.parse(level) >= fail_on for level, count in self.findings_by_severity.items()
        ):
            return 1
        return 0


def _require_directory(snapshot_dir: str | Path) -> None:
    if not Path(snapshot_dir).is_dir():
        raise UsageError(f"{snapshot_dir}: not a snapshot directory")


def _parse_as_of(as_of: str) -> str:
    from loanrules.parsing import parse_date

    try:
        return parse_date(as_of)
    except ValueError as error:
        raise UsageError(f"--as-of {as_of!r}: {error}") from None


def _prepare_tables(conn: sqlite3.Connection, registry: Registry) -> None:
    # every registered table exists (empty if never loaded), so every run view exists
    for spec in registry.tables.values():
        ensure_snapshot_table(conn, spec, ())


def _previous(conn: sqlite3.Connection, cooperative: str, as_of: str) -> tuple[int | None, int | None, str | None]:
    snapshot = conn.execute(
        "SELECT snapshot_id, as_of FROM snapshots WHERE cooperative = ? AND as_of < ? "
        "ORDER BY as_of DESC, snapshot_id DESC LIMIT 1", (cooperative, as_of)).fetchone()
    run = conn.execute(
        f"SELECT run_id FROM runs WHERE cooperative = ? AND as_of < ? AND {counted()} "
        "ORDER BY as_of DESC, run_id DESC LIMIT 1", (cooperative, as_of)).fetchone()
    return (snapshot[0] if snapshot else None, run[0] if run else None, snapshot[1] if snapshot else None)


def execute_run(db_path: str | Path, snapshot_dir: str | Path, *, as_of: str, config: Config, registry: Registry,
                packs: Sequence[str] = (), overrides: Overrides = Overrides(), quarantine: bool = False,
                wait_seconds: float = 0, max_problems: int = 200, progress: Progress | None = None) -> RunResult:
    as_of = _parse_as_of(as_of)
    _require_directory(snapshot_dir)
    check_snapshot_settings(config.snapshot, registry.tables, config.path)
    pack_names = selected_packs(registry, config, packs)
    plan = build_plan(registry, config, pack_names, overrides)  # config errors: before the database is touched
    with database_lock(db_path, wait_seconds):
        conn = connect(db_path)
        try:
            return _run_locked(conn, db_path, snapshot_dir, as_of, config, registry, pack_names, plan, overrides,
                               quarantine, max_problems, progress)
        finally:
            conn.close()


def _run_locked(conn, db_path, snapshot_dir, as_of, config, registry, pack_names, plan, overrides, quarantine,
                max_problems, progress) -> RunResult:
    ensure_schema(conn)
    recovered = tuple(recover_dead_runs(conn))
    packs_recorded = [f"{name}@{registry.packs[name].version}" for name in pack_names]
    options = {"quarantine": quarantine, "params": overrides.params, "severities": overrides.severities,
               "enable": list(overrides.enable), "disable": list(overrides.disable), "snapshot_dir": str(snapshot_dir)}
    run_id = conn.execute(
        "INSERT INTO runs (cooperative, as_of, started_at, status, packs, config_sha256, loanrules_version, "
        "params, options, pid, host) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
        (config.cooperative, as_of, utcnow(), json_dumps(packs_recorded), config.sha256, loanrules.__version__,
         json_dumps(_recorded_params(plan)), json_dumps(options), os.getpid(), socket.gethostname()),
    ).lastrowid
    try:
        with staged_snapshot(conn, db_path, snapshot_dir, registry.tables, config.snapshot, progress) as staged, \
                transaction(conn):
            _prepare_tables(conn, registry)
            snapshot = load_snapshot(conn, snapshot_dir, as_of=as_of, cooperative=config.cooperative,
                                     tables=registry.tables, settings=config.snapshot, quarantine=quarantine,
                                     max_problems=max_problems, progress=progress, staged=staged)
            previous_snapshot, previous_run, previous_as_of = _previous(conn, config.cooperative, as_of)
            scope = RunScope(run_id=run_id, snapshot_id=snapshot.snapshot_id, as_of=as_of,
                             present_tables=snapshot.tables, all_tables=tuple(registry.tables),
                             previous_snapshot_id=previous_snapshot, previous_run_id=previous_run,
                             previous_as_of=previous_as_of, net_capital=config.net_capital,
                             cooperative=config.cooperative, derived_columns=registry.derived_columns())
            engine = Engine(conn, plan, scope, progress)
            try:
                outcomes = engine.run()
            finally:
                engine.close()
            _record_outcomes(conn, run_id, outcomes)
            replace_earlier_snapshots(conn, snapshot, registry.tables)
            _supersede_earlier_runs(conn, run_id, config.cooperative, as_of)
            failed = sum(o.status == "failed" for o in outcomes)
            status = "succeeded" if not failed else ("partial" if failed < len(outcomes) else "failed")
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, snapshot_sha256 = ?, snapshot_id = ?, "
                "previous_run_id = ? WHERE run_id = ?",
                (status, utcnow(), snapshot.sha256, snapshot.snapshot_id, previous_run, run_id),
            )
    except UsageError:
        # bad input or config: the run never happened, nothing is stored
        conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        raise
    except BaseException as error:
        conn.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE run_id = ?",
                     (utcnow(), f"{type(error).__name__}: {error}", run_id))
        raise
    summary = finding_summary(conn, run_id, previous_run)
    return RunResult(run_id, status, config.cooperative, as_of, snapshot, tuple(outcomes), **summary,
                     recovered_runs=recovered, traces=engine.traces)


def _recorded_params(plan: Sequence[Planned]) -> dict:
    return {
        planned.item.id: {"plugin": planned.plugin, "params": planned.display_params(),
                          **({"severity": str(planned.severity)} if planned.severity else {})}
        for planned in plan
    }


def _record_outcomes(conn: sqlite3.Connection, run_id: int, outcomes: Sequence[Outcome]) -> None:
    conn.executemany(
        "INSERT INTO run_contributions (run_id, contribution_id, kind, plugin, status, reason, rows, seconds, "
        "severity, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, o.contribution_id, o.kind, o.plugin, o.status, o.reason, o.rows, o.seconds, o.severity,
          json_dumps(o.params)) for o in outcomes],
    )


def _supersede_earlier_runs(conn: sqlite3.Connection, run_id: int, cooperative: str, as_of: str) -> None:
    """Re-running a cooperative's as-of replaces the earlier run's results; its row stays, marked."""
    earlier = [row[0] for row in conn.execute(
        "SELECT run_id FROM runs WHERE cooperative = ? AND as_of = ? AND run_id != ? AND superseded_by IS NULL "
        "AND status != 'running'", (cooperative, as_of, run_id))]
    for old in earlier:
        for table in ("findings", "assessments", "collection_tasks", "run_contributions", "summaries"):
            conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (old,))
        conn.execute("UPDATE runs SET superseded_by = ? WHERE run_id = ?", (run_id, old))


def finding_summary(conn: sqlite3.Connection, run_id: int, previous_run_id: int | None) -> dict:
    by_severity = {str(level): 0 for level in Severity}
    by_status = {"new": 0, "persisting": 0}
    for severity, status, count in conn.execute(
            "SELECT severity, status, count(*) FROM findings WHERE run_id = ? GROUP BY 1, 2", (run_id,)):
        by_severity[severity] = by_severity.get(severity, 0) + count
        by_status[status] = by_status.get(status, 0) + count
    return {"findings_by_severity": by_severity, "new": by_status["new"], "persisting": by_status["persisting"],
            "resolved": count_resolved(conn, previous_run_id, run_id)}


def count_resolved(conn: sqlite3.Connection, older: int | None, newer: int) -> int:
    if older is None:
        return 0
    return conn.execute(RESOLVED_SQL.replace("SELECT p.*", "SELECT count(*)"), {"older": older, "newer": newer}
                        ).fetchone()[0]


# A finding is resolved when its check ran cleanly in the newer run and no
# longer reports that subject; a check skipped or failed tonight resolves nothing.
# The checks that ran cleanly as a list, found once (a lookup per finding took 5.4 s at 1M findings, 1.0 s so).
RESOLVED_SQL = """
    SELECT p.* FROM findings p
    WHERE p.run_id = :older
      AND p.check_id IN (SELECT rc.contribution_id FROM run_contributions rc
                         WHERE rc.run_id = :newer AND rc.status = 'ok')
      AND NOT EXISTS (SELECT 1 FROM findings c WHERE c.run_id = :newer
                      AND c.check_id = p.check_id AND c.subject_key = p.subject_key)
"""


def load_only(db_path: str | Path, snapshot_dir: str | Path, *, as_of: str, config: Config, registry: Registry,
              quarantine: bool = False, wait_seconds: float = 0, max_problems: int = 200,
              progress: Progress | None = None) -> LoadedSnapshot:
    """Store a snapshot, run nothing (``loanrules load``)."""
    as_of = _parse_as_of(as_of)
    _require_directory(snapshot_dir)
    check_snapshot_settings(config.snapshot, registry.tables, config.path)
    with database_lock(db_path, wait_seconds):
        conn = connect(db_path)
        try:
            ensure_schema(conn)
            with staged_snapshot(conn, db_path, snapshot_dir, registry.tables, config.snapshot,
                                 progress) as staged, transaction(conn):
                _prepare_tables(conn, registry)
                snapshot = load_snapshot(conn, snapshot_dir, as_of=as_of, cooperative=config.cooperative,
                                         tables=registry.tables, settings=config.snapshot, quarantine=quarantine,
                                         max_problems=max_problems, progress=progress, staged=staged)
                replace_earlier_snapshots(conn, snapshot, registry.tables)
            return snapshot
        finally:
            conn.close()


def validate_snapshot(snapshot_dir: str | Path, *, config: Config, registry: Registry, as_of: str | None = None,
                      packs: Sequence[str] = (), max_problems: int = 200,
                      progress: Progress | None = None) -> LoadedSnapshot:
    """Check a snapshot and the config's SQL rules in a throwaway database; change nothing."""
    import datetime

    as_of = _parse_as_of(as_of) if as_of else datetime.date.today().isoformat()
    check_snapshot_settings(config.snapshot, registry.tables, config.path)
    plan = build_plan(registry, config, selected_packs(registry, config, packs), Overrides())
    with tempfile.TemporaryDirectory(prefix="loanrules-validate-") as scratch:
        db_path = Path(scratch) / "validate.db"
        conn = connect(db_path)
        try:
            ensure_schema(conn)
            with staged_snapshot(conn, db_path, snapshot_dir, registry.tables, config.snapshot,
                                 progress) as staged, transaction(conn):
                _prepare_tables(conn, registry)
                snapshot = load_snapshot(conn, snapshot_dir, as_of=as_of, cooperative=config.cooperative,
                                         tables=registry.tables, settings=config.snapshot,
                                         max_problems=max_problems, progress=progress, staged=staged)
                scope = RunScope(run_id=0, snapshot_id=snapshot.snapshot_id, as_of=as_of,
                                 present_tables=snapshot.tables, all_tables=tuple(registry.tables),
                                 net_capital=config.net_capital, cooperative=config.cooperative)
                engine = Engine(conn, plan, scope)
                engine.prepare()  # compiles the config's SQL rules
                engine.close()
            return snapshot
        finally:
            conn.close()
