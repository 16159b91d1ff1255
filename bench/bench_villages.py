"""villages: the five village collective checks of the pack ``cooperative-baseline`` over 1M loans.

Data: a dedicated generator (below), not the demo: the demo writes ten tables
these checks do not read. This one writes only what they read (``loans``,
``borrowers``, ``villages``; the loans only with the columns the checks use)
in one streaming pass (stdlib csv, ``random.Random(seed)``, so the same files
every time), cached under ``bench/results/villages-<N>/snapshot/``
(``complete.json``, written last, holds the row counts). The book:

* ``N`` loans of ~770k borrowers (1.3 loans each); ~2% of the borrowers are
  village collectives (``village_collective``) with 1-4 loans of 1M-8M yuan
  each, the others households, individuals and businesses with 10k-3M yuan.
* Collective loans: ~60% current, the others overdue, ~20% more than three
  years (as the demo), with interest in arrears growing with the days past
  due; households ~90% current. ~0.5% of all loans written off.
* ``N / 200`` villages (5,000 for 1M loans) in townships of five; ~15% expect
  a land transfer, most of them within the next three months, with a
  compensation amount.

Measured: ``loanrules run <snapshot> --as-of AS_OF --pack cooperative-baseline --db <db> --json`` (the other
plugins' checks in the pack are skipped for want of their tables, or run on the loans alone; they are not
counted); the sum of the five village checks' ``seconds`` from ``contributions[]`` (each check's SELECT, its
findings' keys, the INSERT into ``findings``), and each check's own seconds. Every check must run (status ok)
and find something. No per-borrower facts are used (the checks read the snapshot tables alone), so nothing
shared is left out of the sum.
Baseline, same database right after the run, best of 3: the plain scans
``SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?`` and
``SELECT count(*), count(borrower_type) FROM borrowers WHERE snapshot_id = ?``; the ratio is against their sum.
Target (issue 5): the five checks < 3 s.
"""

from __future__ import annotations

import datetime
import math
import random
import sqlite3
from pathlib import Path

from common import (
    AS_OF,
    BenchError,
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

NAME = "villages"
PACK = "cooperative-baseline"
CHECKS = ("village.large_exposure", "village.interest_arrears", "village.long_overdue", "village.portfolio_share",
          "village.land_transfer_opportunity")
TARGET_SECONDS = 3.0
SEED = 20261205
LOANS_SCAN_SQL = "SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?"
BORROWERS_SCAN_SQL = "SELECT count(*), count(borrower_type) FROM borrowers WHERE snapshot_id = ?"

# ---------------------------------------------------------------- the generator

LOAN_FIELDS = ("loan_id", "borrower_id", "principal", "outstanding_principal", "interest_arrears", "maturity_date",
               "days_past_due", "recorded_class", "written_off")
BORROWER_FIELDS = ("borrower_id", "borrower_type", "village", "township")
VILLAGE_FIELDS = ("village", "township", "land_transfer_expected_date", "land_compensation_amount")
KINDS = (("household", 75), ("individual", 6), ("small_business", 12), ("enterprise", 5), ("village_collective", 2))
PRINCIPAL_YUAN = {"household": (10_000, 300_000), "individual": (10_000, 200_000),
                  "small_business": (50_000, 1_500_000), "enterprise": (300_000, 3_000_000),
                  "village_collective": (1_000_000, 8_000_000)}
# days past due as ((lowest, highest), weight): the demo's buckets
DAYS_PAST_DUE = (((0, 0), 855), ((1, 30), 50), ((31, 90), 35), ((91, 270), 30), ((271, 360), 10),
                 ((361, 1095), 20))
DAYS_PAST_DUE_VILLAGE = (((0, 0), 60), ((1, 90), 5), ((91, 360), 5), ((361, 1095), 10), ((1096, 2600), 20))
CLASSES = ((0, "normal"), (1, "special_mention"), (91, "substandard"), (271, "doubtful"), (361, "loss"))
TOWNSHIP_SIZE = 5


def generate(directory: Path, loans: int, seed: int = SEED) -> dict[str, int]:
    """Write loans.csv, borrowers.csv and villages.csv into ``directory``; return the rows per table."""
    rng = random.Random(seed)
    r = rng.random
    as_of = datetime.date.fromisoformat(AS_OF).toordinal()
    village_count = max(40, loans // 200)
    villages = [f"V{number:05d}村" for number in range(village_count)]
    townships = [f"T{number // TOWNSHIP_SIZE:04d}镇" for number in range(village_count)]
    kinds, dpd, dpd_village = weighted(KINDS), weighted(DAYS_PAST_DUE), weighted(DAYS_PAST_DUE_VILLAGE)
    with CsvWriters(directory, (("loans", LOAN_FIELDS), ("borrowers", BORROWER_FIELDS),
                                ("villages", VILLAGE_FIELDS))) as out:
        for village, township in zip(villages, townships, strict=True):
            expected, compensation = "", ""
            if r() < 0.15:
                offset = -30 + int(r() * 120) if r() < 0.6 else 90 + int(r() * 300)
                expected = datetime.date.fromordinal(as_of + offset).isoformat()
                compensation = format_fen(int(math.exp(math.log(500_000) + r() * math.log(40))) // 100 * 10_000)
            out.row("villages", (village, township, expected, compensation))
        borrower, written = 0, 0
        while written < loans:
            borrower += 1
            borrower_id = f"CU{borrower:08d}"
            kind = pick(kinds, r())
            village = int(r() * village_count)
            out.row("borrowers", (borrower_id, kind, villages[village], townships[village]))
            collective = kind == "village_collective"
            many = 1 + int(r() * 4) if collective else (1 if r() < 0.75 else 2)
            low, high = PRINCIPAL_YUAN[kind]
            for _ in range(min(many, loans - written)):
                written += 1
                principal = int(math.exp(math.log(low) + r() * math.log(high / low))) // 100 * 10_000
                outstanding = principal if r() < 0.5 else max(100, int(principal * (0.3 + 0.7 * r())))
                lowest, highest = pick(dpd_village if collective else dpd, r())
                overdue = lowest + int(r() * (highest - lowest + 1))
                rate_bp = 435 + int(r() * 450)  # a year
                interest = outstanding * rate_bp * min(overdue, 1095) // (10_000 * 365) if overdue else 0
                recorded = [name for bound, name in CLASSES if overdue >= bound][-1]
                maturity = as_of - overdue + (0 if overdue else 30 + int(r() * 700))
                out.row("loans", (f"LN{written:08d}", borrower_id, format_fen(principal), format_fen(outstanding),
                                  format_fen(interest), datetime.date.fromordinal(maturity).isoformat(), overdue,
                                  recorded, "1" if r() < 0.005 else "0"))
    return out.counts


def data_dir(loans: int) -> tuple[Path, dict]:
    """The cached snapshot for ``loans`` loans (generated once); (its directory, row counts)."""
    base, counts = cached_data(NAME, loans, f"{loans:,} loans with their borrowers and villages",
                               lambda directory: generate(directory / "snapshot", loans))
    return base / "snapshot", counts


# ---------------------------------------------------------------- the measurement


def check_outcomes(report: dict) -> dict[str, dict]:
    """The five checks' outcomes: each must run ok and find something."""
    found = contribution_outcomes(report, CHECKS, "the village checks did not all run ok")
    empty = [i for i in CHECKS if not found[i]["rows"]]
    if empty:
        raise BenchError(f"the village checks found nothing, the data is not as intended: {', '.join(empty)}")
    return found


def run(settings: Settings) -> list[Measurement]:
    snapshot, counts = data_dir(settings.loans)
    db = fresh_db(settings, "villages")
    try:
        say(f"  villages: loanrules run --pack {PACK} for {AS_OF} (loads it first) ...")
        wall, report = cli_run_json(snapshot, AS_OF, (PACK,), db, env=bench_env())
        outcomes = check_outcomes(report)
        conn = sqlite3.connect(str(db))
        try:
            snapshot_id = run_snapshot_id(conn, report)
            loans_scan, loan_rows = scan_seconds(conn, LOANS_SCAN_SQL, snapshot_id)
            borrowers_scan, borrower_rows = scan_seconds(conn, BORROWERS_SCAN_SQL, snapshot_id)
        finally:
            conn.close()
    finally:
        remove_db(db)

    scans = loans_scan + borrowers_scan
    total = sum(c["seconds"] for c in outcomes.values())
    findings = sum(c["rows"] for c in outcomes.values())
    per_check = seconds_each(outcomes, CHECKS)
    say(f"  villages: five checks {total:.2f} s ({findings:,} findings): {per_check}; scans {scans:.3f} s; "
        f"whole run {wall:.0f} s")
    size = f"{loan_rows:,} loans, {borrower_rows:,} borrowers, {counts['villages']:,} villages"
    rows = [
        Measurement(NAME, f"plain scan count+sum(outstanding) over loans ({loan_rows:,}), best of 3", loans_scan,
                    "s", baseline=loans_scan, ratio=1.0, target="baseline",
                    extra={"sql": LOANS_SCAN_SQL, "rows": loan_rows}),
        Measurement(NAME, f"plain scan count+count(borrower_type) over borrowers ({borrower_rows:,}), best of 3",
                    borrowers_scan, "s", baseline=borrowers_scan, ratio=1.0, target="baseline",
                    extra={"sql": BORROWERS_SCAN_SQL, "rows": borrower_rows}),
        Measurement(NAME, f"5 village checks, sum of run JSON seconds ({size})", total, "s", baseline=scans,
                    ratio=ratio(total, scans), target=f"< {TARGET_SECONDS:g} s", passed=total < TARGET_SECONDS,
                    note=f"{findings:,} findings; {per_check}",
                    extra={"per_check": {i: {"seconds": c["seconds"], "findings": c["rows"]}
                                         for i, c in outcomes.items()},
                           "whole_run_seconds": wall, "rows_loaded": report["rows"], "generated": counts}),
    ]
    for check_id in CHECKS:
        outcome = outcomes[check_id]
        rows.append(Measurement(NAME, f"{check_id}, run JSON", outcome["seconds"], "s", baseline=scans,
                                ratio=ratio(outcome["seconds"], scans), target="info",
                                note=f"{outcome['rows']:,} findings"))
    return rows
