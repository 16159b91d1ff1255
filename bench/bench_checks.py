"""checks: fifteen SQL checks over the big full demo snapshot, against a plain scan of the loans.

Measured: ``loanrules --plugins-dir bench/plugins run <snapshot> --pack bench-fifteen --json``
on the full demo snapshot (all tables); the sum of the fifteen contributions'
``seconds`` from the JSON (each check's SELECT, its findings' stable keys and
status, and the INSERT into ``findings``).
Baseline: ``SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?``
timed in Python against the same database right after the run (best of 3).
Target (issue 2): the sum < 5 s. Also reported, for information: the time the
core takes to build the shared ``borrower_facts``/``collateral_facts`` tables,
which the run does outside any check's ``seconds`` (re-timed here through the
engine, since the run does not report it).
"""

from __future__ import annotations

import json
import sqlite3
import time

from common import (
    AS_OF,
    BENCH,
    BenchError,
    Measurement,
    Settings,
    bench_env,
    fresh_db,
    loanrules_command,
    ratio,
    remove_db,
    run_snapshot_id,
    say,
    scan_seconds,
    snapshot_dir,
    timed,
)

NAME = "checks"
PLUGIN = "fifteen_checks"
PACK = "bench-fifteen"
EXPECTED_CHECKS = 15
TARGET_SECONDS = 5.0
SCAN_SQL = "SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?"


def run_pack(snapshot, db) -> tuple[dict, float]:
    """Run the pack as a subprocess; return (the run's JSON, wall seconds of the whole command)."""
    command = [*loanrules_command(), "--plugins-dir", str(BENCH / "plugins"), "run", str(snapshot),
               "--as-of", AS_OF, "--pack", PACK, "--db", str(db), "--json", "--quiet"]
    seconds, stdout = timed(command, env=bench_env(PLUGIN))
    return json.loads(stdout), seconds


def loans_scan_seconds(db, report: dict) -> tuple[float, int]:
    """Best wall time of the plain scan of the run's loans; and the number of loans it counted."""
    conn = sqlite3.connect(str(db))
    try:
        return scan_seconds(conn, SCAN_SQL, run_snapshot_id(conn, report))
    finally:
        conn.close()


def facts_seconds(db, run_id: int) -> float | None:
    """Time the core's shared-facts build for the run's snapshot, as the engine does it before the checks.

    Uses the engine's private ``_build_facts``: None (and a note) if that changed.
    """
    try:
        from loanrules.engine import Engine, RunScope
        from loanrules.schema import CANONICAL_TABLES
    except ImportError:
        return None
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        snapshot_id = conn.execute("SELECT snapshot_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        tables = tuple(spec.name for spec in CANONICAL_TABLES)
        scope = RunScope(run_id=run_id, snapshot_id=snapshot_id, as_of=AS_OF, present_tables=tables,
                         all_tables=tables)
        engine = Engine(conn, [], scope)
        engine.prepare()
        started = time.perf_counter()
        engine._build_facts()
        return time.perf_counter() - started
    except (AttributeError, TypeError, sqlite3.Error) as error:
        say(f"  checks: could not time the shared facts: {error}")
        return None
    finally:
        conn.close()


def check_outcomes(report: dict) -> list[dict]:
    """The pack's contributions from the run's JSON; each must have run ("ok")."""
    outcomes = [c for c in report["contributions"] if c["id"].startswith("bench.")]
    broken = [f"{c['id']}: {c['status']} {c['reason'] or ''}" for c in outcomes if c["status"] != "ok"]
    if len(outcomes) != EXPECTED_CHECKS or broken:
        raise BenchError(f"expected {EXPECTED_CHECKS} checks to run ok, got {len(outcomes)}; {'; '.join(broken)}")
    return outcomes


def run(settings: Settings) -> list[Measurement]:
    snapshot = snapshot_dir(settings.loans)
    db = fresh_db(settings, "checks")
    try:
        report, wall = run_pack(snapshot, db)
        outcomes = check_outcomes(report)
        scan, counted = loans_scan_seconds(db, report)
        facts = facts_seconds(db, report["run_id"])
    finally:
        remove_db(db)
    total = sum(c["seconds"] for c in outcomes)
    slowest = max(outcomes, key=lambda c: c["seconds"])
    findings = sum(c["rows"] for c in outcomes)
    say(f"  checks: {EXPECTED_CHECKS} checks {total:.2f} s ({findings:,} findings), scan {scan:.3f} s, "
        f"whole run {wall:.1f} s")
    size = f"{counted:,} loans"
    rows = [
        Measurement(NAME, f"plain scan count+sum(outstanding) ({size})", scan, "s", baseline=scan, ratio=1.0,
                    target="baseline", extra={"loans": counted}),
        Measurement(NAME, f"{EXPECTED_CHECKS} SQL checks, sum of check seconds ({size})", total, "s",
                    baseline=scan, ratio=ratio(total, scan), target=f"< {TARGET_SECONDS:g} s",
                    passed=total < TARGET_SECONDS,
                    note=f"{findings:,} findings; slowest {slowest['id']} {slowest['seconds']:.2f} s",
                    extra={"per_check": {c["id"]: {"seconds": c["seconds"], "findings": c["rows"]} for c in outcomes},
                           "whole_run_seconds": wall, "rows_loaded": report["rows"]}),
    ]
    if facts is not None:
        rows.append(Measurement(NAME, f"shared facts build, outside the check seconds ({size})", facts, "s",
                                baseline=scan, ratio=ratio(facts, scan), target="info",
                                note=f"checks + facts = {total + facts:.2f} s"))
    return rows
