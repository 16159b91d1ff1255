"""inspections: the five post-loan checks of the pack ``cooperative-baseline`` over 1M loans and ~3M inspections.

Data: a dedicated generator (below), not the demo. The demo book keeps ~2.5
inspections per loan of the last year but also writes eight other tables this
benchmark does not read; this one writes only what the five checks read
(loans, borrowers, inspections, collections) for one as-of, in one streaming
pass (stdlib csv, ``random.Random(seed)``, so the same files every time),
cached under ``bench/results/inspections-<N>/snapshot/`` (``complete.json``,
written last, holds the row counts). The book:

* ``N`` loans of ~0.77 N borrowers (75% households, 6% individuals, 12% small
  businesses, 5% enterprises, 2% village collectives), originated over the
  last five years (~20% within the last year); ~10% overdue, ~9% recorded
  non-performing, 0.5% written off.
* Inspections of the last year (older ones are not in the extract), ~3 per
  loan: performing household loans every ~170 days, other borrowers every
  ~90, non-performing loans every ~28 days; a fifth of the visits on site (a
  third for non-performing loans); loans originated within the year get their
  first visit 7-33 days after lending (as in the demo book: a few late); ~4%
  of loans are neglected (their inspections stop 200-300 days before the
  as-of); a few inspections are keyed in ahead (dated after the as-of).
* Collection actions on the overdue loans, a call or visit every ~40 days
  since they fell overdue (at most two years' worth): ~1 per loan of the
  book, about the demo's density; about a quarter recover something, 8% of
  those in cash.

Measured: ``loanrules run <snapshot> --as-of AS_OF --pack cooperative-baseline --db <db> --json``;
the sum of the five checks' ``seconds`` from ``contributions[]`` (each check's SELECT, its findings' keys,
the INSERT into ``findings``) and of the derivation ``inspection.npl_loans`` the two NPL checks read (built
once, apart from them), and each one's own seconds (notes). Only this plugin's checks are counted:
the pack's other checks skip (no collateral, pledges, villages or documents in the snapshot) or run on their
own clock. Baseline, same database right after the run, best of 3: plain scans
``SELECT count(*), max(inspection_date) FROM inspections WHERE snapshot_id = ?``,
``SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?`` and
``SELECT count(*), sum(amount_recovered) FROM collections WHERE snapshot_id = ?``; the ratio is against their
sum. Target (issue 5): the five checks (with the derivation) < 3 s.
"""

from __future__ import annotations

import datetime
import os
import random
import sqlite3
from pathlib import Path

from common import (
    AS_OF,
    CsvWriters,
    Measurement,
    Settings,
    bench_env,
    cached_data,
    cli_run_json,
    contribution_outcomes,
    fresh_db,
    pick,
    ratio,
    remove_db,
    run_snapshot_id,
    say,
    scan_seconds,
    seconds_each,
    weighted,
)

from loanrules.model import format_fen

NAME = "inspections"
PACK = "cooperative-baseline"
CHECKS = ("inspection.npl_monthly_missing", "inspection.npl_quarterly_site_missing",
          "inspection.first_visit_missing", "inspection.performing_overdue", "collection.cash_collected")
DERIVATIONS = ("inspection.npl_loans",)  # read by the two NPL checks, built once: its time counts with theirs
CONTRIBUTIONS = (*CHECKS, *DERIVATIONS)
TARGET_SECONDS = 3.0
SEED = 20261205
SCANS = (
    ("inspections", "SELECT count(*), max(inspection_date) FROM inspections WHERE snapshot_id = ?"),
    ("loans", "SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?"),
    ("collections", "SELECT count(*), sum(amount_recovered) FROM collections WHERE snapshot_id = ?"),
)

# ---------------------------------------------------------------- the generator

FIELDS = {
    "loans": ("loan_id", "borrower_id", "branch_id", "product", "guarantee_type", "principal",
              "outstanding_principal", "interest_arrears", "origination_date", "maturity_date", "days_past_due",
              "restructured_date", "recorded_class", "provision", "lending_officer_id", "collection_officer_id",
              "written_off"),
    "borrowers": ("borrower_id", "name", "borrower_type", "village", "township"),
    "inspections": ("loan_id", "inspection_date", "inspector_id", "kind"),
    "collections": ("loan_id", "action_date", "officer_id", "action", "amount_recovered", "channel"),
}
BORROWER_TYPES = (("household", 75), ("individual", 6), ("small_business", 12), ("enterprise", 5),
                  ("village_collective", 2))
HOUSEHOLDS = ("household", "individual")
CLASSES = ((0, "normal"), (1, "special_mention"), (91, "substandard"), (271, "doubtful"), (361, "loss"))
HISTORY_DAYS = 364  # the extract keeps the inspections of the last year


def generate(directory: Path, loans: int, seed: int = SEED) -> dict[str, int]:
    """Write the four CSVs of one as-of under ``directory``; return the rows per table."""
    rng = random.Random(seed)
    r = rng.random
    as_of = datetime.date.fromisoformat(AS_OF).toordinal()
    days: dict[int, str] = {}

    def iso(ordinal: int) -> str:
        text = days.get(ordinal)
        if text is None:
            text = days[ordinal] = datetime.date.fromordinal(ordinal).isoformat()
        return text

    types = weighted(BORROWER_TYPES)
    out = CsvWriters(directory, FIELDS)
    borrower, kind = 0, "household"
    for index in range(1, loans + 1):
        loan_id = f"LN{index:08d}"
        if index == 1 or r() < 0.77:
            borrower += 1
            kind = pick(types, r())
            out.row("borrowers", (f"CU{borrower:08d}", f"Borrower {borrower}", kind, f"V{borrower % 900:03d}",
                                  f"T{borrower % 60:02d}"))
        borrower_id = f"CU{borrower:08d}"
        origination = as_of - int(r() * 1825)
        maturity = origination + 365 * max(1 + int(r() * 5), (as_of - origination) // 365 + 1)
        principal = max(1000, int(rng.lognormvariate(11.5, 0.9))) * 100
        outstanding = max(100, int(principal * (0.3 + 0.7 * r())))
        u = r()
        dpd = 0 if u < 0.9 else 1 + int(r() * 90) if u < 0.91 else 91 + int(r() * 900)
        dpd = min(dpd, as_of - origination)
        recorded = [name for bound, name in CLASSES if dpd >= bound][-1]
        written_off = "1" if r() < 0.005 else "0"
        officer = f"OF{1 + (borrower * 7) % 900:03d}"
        out.row("loans", (loan_id, borrower_id, f"BR{1 + index % 40:02d}", "farm_operation", "credit",
                          format_fen(principal), format_fen(outstanding), "0.00", iso(origination), iso(maturity),
                          dpd, "", recorded, format_fen(outstanding // 100), officer, officer, written_off))
        # inspections of the last year, on the loan's cadence
        npl = recorded in ("substandard", "doubtful", "loss")
        period = 28 if npl else 165 if kind in HOUSEHOLDS else 85
        stop = as_of - 200 - int(r() * 100) if r() < 0.04 else as_of + 10  # neglected loans: visits stopped
        since = as_of - HISTORY_DAYS
        first = origination + 7 + int(r() * 27)  # one to four weeks after lending, a few later
        day = first if first >= since else first + ((since - first) // period + 1) * period
        while day <= as_of + 2 and day < stop:  # a few are keyed in ahead, dated after the as-of
            u = r()
            site = u < (0.3 if npl else 0.2)
            out.row("inspections", (loan_id, iso(day), officer, "site" if site else
                                    "monthly" if npl else "quarterly" if u < 0.6 else "routine"))
            day += period - 3 + int(r() * 12)
        # collection actions since the loan fell overdue
        if dpd > 0:
            default_day = as_of - dpd
            action_day = max(default_day + 3, as_of - 730)
            while action_day <= as_of:
                u = r()
                recovered = outstanding * (1 + int(u * 40)) // 400 if u < 0.25 else 0
                channel = ""
                if recovered:
                    v = r()
                    channel = "cash" if v < 0.08 else "offset" if v < 0.12 else "other" if v < 0.13 else "transfer"
                out.row("collections", (loan_id, iso(action_day), officer, "visit" if u < 0.5 else "call",
                                        format_fen(recovered), channel))
                action_day += 30 + int(r() * 20)
    out.close()
    return out.counts


def data_dir(loans: int) -> tuple[Path, dict]:
    """The cached snapshot for ``loans`` loans (generated once); (snapshot dir, row counts)."""
    base, counts = cached_data(NAME, loans, f"{loans:,} loans with ~{3 * loans:,} inspections",
                               lambda directory: generate(directory / "snapshot", loans))
    return base / "snapshot", counts


# ---------------------------------------------------------------- the measurement


def run(settings: Settings) -> list[Measurement]:
    snapshot, counts = data_dir(settings.loans)
    db = fresh_db(settings, NAME)
    try:
        say(f"  inspections: loanrules run --pack {PACK} for {AS_OF} (loads it first) ...")
        load_before = os.getloadavg()[0]
        wall, report = cli_run_json(snapshot, AS_OF, (PACK,), db, env=bench_env())
        load_after = os.getloadavg()[0]
        outcomes = contribution_outcomes(report, CONTRIBUTIONS, "the inspection checks did not all run ok")
        conn = sqlite3.connect(str(db))
        try:
            snapshot_id = run_snapshot_id(conn, report)
            scans = {table: scan_seconds(conn, sql, snapshot_id) for table, sql in SCANS}
        finally:
            conn.close()
    finally:
        remove_db(db)

    baseline = sum(seconds for seconds, _ in scans.values())
    total = sum(c["seconds"] for c in outcomes.values())
    findings = sum(outcomes[i]["rows"] for i in CHECKS)
    per_check = seconds_each(outcomes, CONTRIBUTIONS)
    # the machine's load average around the run: on a shared machine the checks' wall seconds grow with it
    busy = f"load average {load_before:.1f} before the run, {load_after:.1f} after, {os.cpu_count()} CPUs"
    say(f"  inspections: five checks and their derivation {total:.2f} s ({findings:,} findings): {per_check}; "
        f"scans {baseline:.3f} s; "
        f"whole run {wall:.0f} s; {busy}")
    size = ", ".join(f"{rows:,} {table}" for table, (_, rows) in scans.items())
    rows = [
        Measurement(NAME, f"plain scan over {table} ({count:,}), best of 3", seconds, "s", baseline=seconds,
                    ratio=1.0, target="baseline", extra={"sql": sql, "rows": count})
        for (table, sql), (seconds, count) in zip(SCANS, scans.values(), strict=True)
    ]
    rows.append(Measurement(
        NAME, f"5 inspection/collection checks + their derivation, sum of run JSON seconds ({size})", total, "s",
        baseline=baseline,
        ratio=ratio(total, baseline), target=f"< {TARGET_SECONDS:g} s", passed=total < TARGET_SECONDS,
        note=f"{findings:,} findings; {per_check}; {busy}",
        extra={"per_check": {i: {"seconds": c["seconds"], "findings": c["rows"]} for i, c in outcomes.items()},
               "whole_run_seconds": wall, "rows_loaded": report["rows"], "generated": counts,
               "load_average": [load_before, load_after]}))
    for contribution_id in CONTRIBUTIONS:
        outcome = outcomes[contribution_id]
        rows.append(Measurement(NAME, f"{contribution_id}, run JSON", outcome["seconds"], "s", baseline=baseline,
                                ratio=ratio(outcome["seconds"], baseline), target="info",
                                note=f"{outcome['rows']:,} " + ("rows" if contribution_id in DERIVATIONS
                                                                else "findings")))
    return rows
