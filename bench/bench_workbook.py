"""workbook: ``loanrules export workbook`` of a run with 1M findings and 1M assessments: peak RSS and time.

Data: a results database of one run of a small demo book (1,000 loans, every pack: the report's tables have
their snapshot) whose findings and assessments are then replaced by ``N`` synthetic findings
(ten check ids, a message with an amount, details JSON holding a borrower's name and ID number, so the
masking walks every row) and ``N`` assessments (a provision in fen, a reasons JSON the explanation is
built from), cached under ``bench/results/workbook-<N>/results.db`` (``complete.json`` written last).
Measured: the workbook ``loanrules export workbook`` writes, sheet by sheet as ``write_run_workbook`` does,
in a fresh process (via RUSAGE_CHILDREN in a wrapper, as in bench_memory): its peak RSS, the peak after the
streamed sheets (findings, assessments, tasks) and after the report's tables are built, wall and CPU
seconds, at N and at a tenth of N. Baseline: the CSV export of the same findings and assessments
(``loanrules export findings|assessments --format csv``), which streams too, for the time; the workbook
at a tenth of N for the memory growth. Targets: peak RSS < 300 MB at N; the peak after the streamed sheets
growing < 1.5x from N/10 to N (flat: rows stream from the cursor to XlsxWriter's constant_memory files).
Time: information (the ratio against the CSV export).
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import AS_OF, RESULTS, BenchError, Measurement, Settings, bench_env, loanrules_command, ratio, say

NAME = "workbook"
SNAPSHOT_LOANS = 1000
TARGET_MB = 300
TARGET_GROWTH = 1.5

_WRAPPER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": done.returncode, "seconds": time.perf_counter() - started,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime, "max_rss_kib": usage.ru_maxrss,
                  "stdout": done.stdout[-4000:], "stderr": done.stderr[-2000:]}))
"""

# The workbook of write_run_workbook, sheet by sheet, with the peak RSS after each stage: the rows of the
# big sheets stream, the report's tables are built whole by loanrules.report (not this module's code).
_STAGES = """
import json, resource, sys, time
from loanrules import results, workbook
from loanrules.privacy import Masker

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

conn = results.open_results(sys.argv[1])
run = results.resolve_run(conn, None)
masker = Masker(frozenset({"name", "id_number"}))
stages = {"start": peak()}
writer = workbook.WorkbookWriter(sys.argv[2])
writer.add_key_values(workbook.RUN_SHEET, workbook.provenance(run, masker))
for what in workbook.EXPORT_SHEETS:
    writer.add(workbook.export_sheet(conn, run, masker, what))
stages["findings, assessments and tasks sheets"] = peak()
for sheet in workbook.summary_sheets(conn, run, masker):
    writer.add(sheet)
report = workbook.report_sheets(conn, run, masker)
stages["report tables built"] = peak()
for sheet in report:
    writer.add(sheet)
writer.close()
stages["closed"] = peak()
print(json.dumps({"stages": stages, "sheets": [[w.name, w.rows] for w in writer.written]}))
"""

CHECKS = ("collateral.ltv_exceeded", "collateral.appraisal_stale", "provision.shortfall",
          "classification.under_classified", "inspection.npl_monthly_missing", "files.original_missing",
          "data.interest_arrears_not_overdue", "collection.task_overdue", "collateral.not_registered",
          "village.large_exposure")


def results_db(rows: int):
    """The cached results database with ``rows`` findings and ``rows`` assessments in run 1."""
    import sqlite3

    base = RESULTS / f"workbook-{rows}"
    db, marker = base / "results.db", base / "complete.json"
    if marker.is_file() and db.is_file():
        from loanrules.store import connect, upgrade_schema

        conn = connect(db)  # a cache made by an earlier version gains the columns this one reads
        try:
            upgrade_schema(conn)
        finally:
            conn.close()
        return db
    base.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    say(f"  workbook: writing a results database with {rows:,} findings and assessments (cached) ...")
    # a real run of a small demo book (so the report's tables have a snapshot to read), whose findings and
    # assessments are then replaced by the synthetic millions
    from loanrules import demo
    from loanrules.config import Config
    from loanrules.manager import PluginManager
    from loanrules.registry import Registry
    from loanrules.run import execute_run

    snapshot = base / "snapshot"
    demo.write_snapshot(snapshot, loans=SNAPSHOT_LOANS)
    execute_run(db, snapshot, as_of=AS_OF, config=Config(cooperative="Bench Cooperative"),
                registry=Registry.from_plugins(PluginManager()))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("DELETE FROM findings WHERE run_id = 1")
    conn.execute("DELETE FROM assessments WHERE run_id = 1")
    checks = json.dumps(CHECKS)
    conn.execute(f"""
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(rows)})
        INSERT INTO findings (run_id, check_id, severity, loan_id, borrower_id, collateral_id, message, details,
                              status, first_seen, subject_key)
        SELECT 1, json_extract(:checks, '$[' || (i % 10) || ']'),
               CASE i % 3 WHEN 0 THEN 'critical' WHEN 1 THEN 'warning' ELSE 'info' END,
               printf('LN%08d', i), printf('CU%08d', i / 2), CASE WHEN i % 4 = 0 THEN printf('CL%08d', i) END,
               printf('outstanding %d.%02d yuan exceeds %d%% of the appraised value', i * 37 % 900000, i % 100,
                      60 + i % 30),
               json_object('name', '张三丰', 'id_number', '11010519491231002X', 'outstanding_fen', i * 3701,
                           'limit', 0.7),
               CASE WHEN i % 5 = 0 THEN 'new' ELSE 'persisting' END, '2026-10-31', 'loan=' || i
        FROM n""", {"checks": checks})
    conn.execute(f"""
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(rows)})
        INSERT INTO assessments (run_id, loan_id, borrower_id, risk_class, recorded_class, recovery_category,
                                 required_provision, reasons)
        SELECT 1, printf('LN%08d', i), printf('CU%08d', i / 2),
               CASE WHEN i % 10 = 0 THEN 'substandard' ELSE 'normal' END, 'normal',
               CASE WHEN i % 10 = 0 THEN 'recoverable' END, i * 1301 % 50000000,
               json_array(json_object('rule', 'days_past_due', 'risk_class', 'substandard',
                                      'details', json_object('days_past_due', 120, 'floor', 'overdue 91-180 days')))
        FROM n""")
    conn.execute("COMMIT")
    conn.close()
    marker.write_text(json.dumps({"findings": rows, "assessments": rows}) + "\n")
    return db


def measure(command: list[str]) -> dict:
    """Wall and CPU seconds, peak RSS (MB) and output of one command, in a fresh wrapper process."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(command)], capture_output=True, text=True,
                          env=bench_env())
    if done.returncode != 0:
        raise BenchError(f"workbook wrapper failed: {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout)
    if report["returncode"] != 0:
        raise BenchError(f"{' '.join(command)} exited {report['returncode']}: {report['stderr']}")
    report["peak_mb"] = report["max_rss_kib"] / 1024
    return report


def run(settings: Settings) -> list[Measurement]:
    sizes = (settings.small, settings.loans)
    found = {}
    for rows in sizes:
        db = results_db(rows)
        out = settings.work / f"workbook-{rows}.xlsx"
        done = measure([sys.executable, "-c", _STAGES, str(db), str(out)])
        stages = json.loads(done["stdout"])["stages"]
        size_mb = out.stat().st_size / 1e6
        out.unlink()
        csv = [measure([*loanrules_command(), "export", what, "--db", str(db), "--format", "csv", "-o",
                        str(settings.work / f"{what}-{rows}.csv")]) for what in ("findings", "assessments")]
        found[rows] = {"peak": done["peak_mb"], "stages": stages, "seconds": done["seconds"],
                       "cpu": done["cpu_seconds"], "csv_seconds": sum(c["seconds"] for c in csv),
                       "csv_cpu": sum(c["cpu_seconds"] for c in csv), "file_mb": size_mb}
        say(f"  workbook: {rows:,} findings + {rows:,} assessments: peak {done['peak_mb']:.0f} MB "
            f"({', '.join(f'{k} {v:.0f}' for k, v in stages.items())}), {done['seconds']:.1f} s wall, "
            f"{done['cpu_seconds']:.1f} s CPU ({size_mb:.0f} MB file); CSV exports {found[rows]['csv_seconds']:.1f} s")
    small, big = (found[size] for size in sizes)
    sheets = "findings, assessments and tasks sheets"
    streamed = ratio(big["stages"][sheets], small["stages"][sheets])
    how = "max RSS of the process writing the workbook (sheet by sheet, as write_run_workbook does)"
    return [
        Measurement(NAME, f"peak RSS, workbook of {sizes[0]:,} findings + {sizes[0]:,} assessments", small["peak"],
                    "MB", baseline=small["peak"], ratio=1.0, target="baseline", extra=small),
        Measurement(NAME, f"peak RSS, workbook of {sizes[1]:,} findings + {sizes[1]:,} assessments", big["peak"],
                    "MB", baseline=small["peak"], ratio=ratio(big["peak"], small["peak"]),
                    target=f"< {TARGET_MB} MB", passed=big["peak"] < TARGET_MB, note=how, extra=big),
        Measurement(NAME, f"peak RSS after the streamed sheets, {sizes[0]:,} -> {sizes[1]:,} rows each",
                    big["stages"][sheets], "MB", baseline=small["stages"][sheets], ratio=streamed,
                    target=f"ratio < {TARGET_GROWTH}", passed=streamed < TARGET_GROWTH,
                    note="the findings and assessments sheets; the report's tables are built after them"),
        Measurement(NAME, f"time, workbook of {sizes[1]:,} findings + {sizes[1]:,} assessments", big["seconds"], "s",
                    baseline=big["csv_seconds"], ratio=ratio(big["seconds"], big["csv_seconds"]), target="info",
                    note=f"CPU {big['cpu']:.0f} s; baseline: CSV export of the same two tables "
                         f"(CPU {big['csv_cpu']:.0f} s)"),
    ]
