"""strategies: the collection plan of the pack ``cooperative-baseline`` over 1M loans and ~1M collection actions.

Data: a dedicated generator (below), not the demo: it writes only what the plan reads (``loans``,
``borrowers``, ``villages``, ``collections``) in one streaming pass (stdlib csv, ``random.Random(seed)``, so
the same files every time), two as-ofs of one cooperative, cached under
``bench/results/strategies-<N>/{previous,current}/`` (``complete.json``, written last, holds the row counts).
The book:

* ``N`` loans of ~770k borrowers (the demo's mix: 75% households, 6% individuals, 12% small businesses, 5%
  enterprises, 2% village collectives with 1-4 loans of 1M-8M yuan); ~85% current, ~9% overdue up to 90 days,
  ~6% more (non-performing: ~5% of the book); a quarter guaranteed; ~0.5% written off. Borrowers with weak
  capacity or poor willingness, a few dissolved (so that some loans are unrecoverable for now).
* ``N / 200`` villages; ~15% expect a land transfer, most within three months.
* Collection actions on every overdue loan since it fell overdue, on the demo's ladder (calls, a visit, letters,
  a guarantor notice, the special team, litigation or a settlement, then a visit every 90 days for two years),
  a quarter of the visits bringing part of the debt: ~1M actions.
* The previous as-of (``PREVIOUS_AS_OF``, 27 days earlier) holds the same loans 27 days less overdue and the
  actions up to its day.

Measured: ``loanrules run <previous> --as-of PREVIOUS_AS_OF`` then ``loanrules run <current> --as-of AS_OF``,
both ``--pack cooperative-baseline --pack cn-five-category --db <db> --json`` (the second night settles
tonight's plan against the first night's open tasks, as every night but the first does); the seconds of the
second run's ``collection.plan_loans`` and ``collection.key_household_ranking`` (the derivations),
``collection.escalation_ladder`` and ``collection.village_collective`` (the strategies: their SQL, then the
core staging, validating and settling their tasks),
``collection.task_overdue`` and the ledger summary ``collection.key_households``, from ``contributions[]``.
The first night's figures (a plan made from scratch: nothing to settle against) are shown too. The
classification that gives the computed classes and recovery categories is not counted (bench
``classification`` measures it).
Baseline, same database right after the run, best of 3: the plain scans
``SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?`` and
``SELECT count(*), sum(amount_recovered) FROM collections WHERE snapshot_id = ?``; the ratio is against their sum.
Target: none in issue 6; the brief aims at < 5 s for the five together.
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

NAME = "strategies"
PACKS = ("cooperative-baseline", "cn-five-category")
MEASURED = ("collection.plan_loans", "collection.key_household_ranking", "collection.escalation_ladder",
            "collection.village_collective", "collection.task_overdue", "collection.key_households")
STRATEGIES = ("collection.escalation_ladder", "collection.village_collective")
TARGET_SECONDS = 5.0
PREVIOUS_AS_OF = "2026-10-31"
SEED = 20261206
LOANS_SCAN_SQL = "SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?"
COLLECTIONS_SCAN_SQL = "SELECT count(*), sum(amount_recovered) FROM collections WHERE snapshot_id = ?"

# ---------------------------------------------------------------- the generator

LOAN_FIELDS = ("loan_id", "borrower_id", "guarantee_type", "principal", "outstanding_principal", "interest_arrears",
               "maturity_date", "days_past_due", "recorded_class", "lending_officer_id", "collection_officer_id",
               "written_off")
BORROWER_FIELDS = ("borrower_id", "borrower_type", "village", "township", "repayment_willingness",
                   "repayment_capacity", "deceased_or_dissolved")
VILLAGE_FIELDS = ("village", "township", "land_transfer_expected_date", "land_compensation_amount")
COLLECTION_FIELDS = ("loan_id", "action_date", "officer_id", "action", "amount_recovered", "channel")
KINDS = (("household", 75), ("individual", 6), ("small_business", 12), ("enterprise", 5), ("village_collective", 2))
PRINCIPAL_YUAN = {"household": (10_000, 300_000), "individual": (10_000, 200_000),
                  "small_business": (50_000, 1_500_000), "enterprise": (300_000, 3_000_000),
                  "village_collective": (1_000_000, 8_000_000)}
DAYS_PAST_DUE = (((0, 0), 850), ((1, 30), 55), ((31, 90), 35), ((91, 270), 30), ((271, 360), 10),
                 ((361, 1095), 20))
DAYS_PAST_DUE_VILLAGE = (((0, 0), 60), ((1, 90), 5), ((91, 360), 5), ((361, 1095), 10), ((1096, 2600), 20))
CLASSES = ((0, "normal"), (1, "special_mention"), (91, "substandard"), (271, "doubtful"), (361, "loss"))
# (days after falling overdue, action): the demo's ladder; then a visit every VISIT_DAYS for HISTORY_DAYS
LADDER = ((3, "call"), (10, "call"), (20, "visit"), (35, "letter"), (50, "guarantor_notice"), (75, "visit"),
          (100, "special_team"), (150, "letter"), (200, "litigation"), (250, "settlement"))
VISIT_DAYS = 90
HISTORY_DAYS = 730
TOWNSHIP_SIZE = 5
OFFICERS = 900


TABLES = (("loans", LOAN_FIELDS), ("borrowers", BORROWER_FIELDS), ("villages", VILLAGE_FIELDS),
          ("collections", COLLECTION_FIELDS))  # the four CSV files of one as-of


def generate(directory: Path, loans: int, seed: int = SEED) -> dict[str, dict[str, int]]:
    """Write ``previous/`` and ``current/`` under ``directory``; return the rows per table of each."""
    rng = random.Random(seed)
    r = rng.random
    as_of = datetime.date.fromisoformat(AS_OF).toordinal()
    previous = datetime.date.fromisoformat(PREVIOUS_AS_OF).toordinal()
    shift = as_of - previous
    day: dict[int, str] = {}

    def iso(ordinal: int) -> str:
        text = day.get(ordinal)
        if text is None:
            text = day[ordinal] = datetime.date.fromordinal(ordinal).isoformat()
        return text

    def recorded(overdue: int) -> str:
        return [name for bound, name in CLASSES if overdue >= bound][-1]

    village_count = max(40, loans // 200)
    villages = [f"V{number:05d}村" for number in range(village_count)]
    townships = [f"T{number // TOWNSHIP_SIZE:04d}镇" for number in range(village_count)]
    kinds, dpd, dpd_village = weighted(KINDS), weighted(DAYS_PAST_DUE), weighted(DAYS_PAST_DUE_VILLAGE)
    now, before = CsvWriters(directory / "current", TABLES), CsvWriters(directory / "previous", TABLES)
    for village, township in zip(villages, townships, strict=True):
        expected, compensation = "", ""
        if r() < 0.15:
            offset = -30 + int(r() * 120) if r() < 0.6 else 90 + int(r() * 300)
            expected = iso(as_of + offset)
            compensation = format_fen(int(math.exp(math.log(500_000) + r() * math.log(40))) // 100 * 10_000)
        for writers in (now, before):
            writers.row("villages", (village, township, expected, compensation))
    borrower, written = 0, 0
    while written < loans:
        borrower += 1
        borrower_id = f"CU{borrower:08d}"
        kind = pick(kinds, r())
        village = int(r() * village_count)
        u = r()
        willingness = "good" if u < 0.6 else "fair" if u < 0.8 else "poor" if u < 0.95 else "refuses"
        capacity = "normal" if r() < 0.7 else "weak" if r() < 0.8 else "none"
        gone = "1" if r() < 0.02 else "0"
        values = (borrower_id, kind, villages[village], townships[village], willingness, capacity, gone)
        now.row("borrowers", values)
        before.row("borrowers", values)
        collective = kind == "village_collective"
        many = 1 + int(r() * 4) if collective else (1 if r() < 0.75 else 2)
        low, high = PRINCIPAL_YUAN[kind]
        officer = f"OF{1 + (borrower * 7) % OFFICERS:03d}"
        collector = f"OF{1 + (borrower * 11) % OFFICERS:03d}"
        for _ in range(min(many, loans - written)):
            written += 1
            loan_id = f"LN{written:08d}"
            principal = int(math.exp(math.log(low) + r() * math.log(high / low))) // 100 * 10_000
            outstanding = principal if r() < 0.5 else max(100, int(principal * (0.3 + 0.7 * r())))
            lowest, highest = pick(dpd_village if collective else dpd, r())
            overdue = lowest + int(r() * (highest - lowest + 1))
            overdue_before = max(0, overdue - shift)
            rate_bp = 435 + int(r() * 450)
            guarantee = "guarantee" if r() < 0.25 else "mortgage" if r() < 0.5 else "credit"
            written_off = "1" if r() < 0.005 else "0"
            maturity = iso(as_of - overdue + (0 if overdue else 30 + int(r() * 700)))
            for writers, days_overdue in ((now, overdue), (before, overdue_before)):
                interest = outstanding * rate_bp * min(days_overdue, 1095) // (10_000 * 365)
                writers.row("loans", (loan_id, borrower_id, guarantee, format_fen(principal), format_fen(outstanding),
                                      format_fen(interest), maturity, days_overdue, recorded(days_overdue), officer,
                                      collector if days_overdue > 90 else officer, written_off))
            if not overdue:
                continue
            default_day = as_of - overdue
            actions = [(default_day + offset, action) for offset, action in LADDER if default_day + offset <= as_of]
            first_visit = default_day + LADDER[-1][0] + VISIT_DAYS
            visit = max(first_visit, as_of - HISTORY_DAYS)
            visit += (first_visit - visit) % VISIT_DAYS
            while visit <= as_of:
                actions.append((visit, "visit"))
                visit += VISIT_DAYS
            for action_day, action in actions:
                if action == "guarantor_notice" and guarantee != "guarantee":
                    action = "letter"
                recovered = 0
                if action == "settlement":
                    recovered = outstanding * (5 + int(r() * 15)) // 100
                elif action in ("visit", "special_team") and r() < 0.25:
                    recovered = outstanding * (1 + int(r() * 9)) // 100
                row = (loan_id, iso(action_day), collector, action, format_fen(recovered),
                       "transfer" if recovered else "")
                now.row("collections", row)
                if action_day <= previous:
                    before.row("collections", row)
    now.close()
    before.close()
    return {"current": now.counts, "previous": before.counts}


def data_dir(loans: int) -> tuple[Path, Path, dict]:
    """The cached two as-ofs for ``loans`` loans (generated once); (previous dir, current dir, row counts)."""
    base, counts = cached_data(NAME, loans, f"{loans:,} loans with their collection actions, two as-ofs",
                               lambda directory: generate(directory, loans))
    return base / "previous", base / "current", counts


# ---------------------------------------------------------------- the measurement


def outcomes_of(report: dict) -> dict[str, dict]:
    """The measured contributions of one night's run; each must run ok."""
    return contribution_outcomes(report, MEASURED, "the collection plan did not run ok")


def run(settings: Settings) -> list[Measurement]:
    previous, current, counts = data_dir(settings.loans)
    db = fresh_db(settings, "strategies")
    env = bench_env()
    try:
        say(f"  strategies: the first night, {PREVIOUS_AS_OF} ...")
        first_wall, first_report = cli_run_json(previous, PREVIOUS_AS_OF, PACKS, db, env=env)
        first = outcomes_of(first_report)
        say(f"  strategies: the second night, {AS_OF} (measured) ...")
        wall, report = cli_run_json(current, AS_OF, PACKS, db, env=env)
        outcomes = outcomes_of(report)
        conn = sqlite3.connect(str(db))
        try:
            snapshot_id = run_snapshot_id(conn, report)
            loans_scan, loan_rows = scan_seconds(conn, LOANS_SCAN_SQL, snapshot_id)
            collections_scan, collection_rows = scan_seconds(conn, COLLECTIONS_SCAN_SQL, snapshot_id)
            plan = dict(conn.execute("SELECT strategy_id || ' ' || status, count(*) FROM collection_tasks "
                                     "WHERE run_id = ? GROUP BY 1", (report["run_id"],)).fetchall())
            npl_loans = conn.execute("SELECT count(*) FROM assessments WHERE run_id = ? "
                                     "AND risk_class IN ('substandard', 'doubtful', 'loss')",
                                     (report["run_id"],)).fetchone()[0]
        finally:
            conn.close()
    finally:
        remove_db(db)

    for strategy in STRATEGIES:
        if not plan.get(f"{strategy} open"):
            raise BenchError(f"{strategy} planned nothing: the data is not as intended ({plan})")
    scans = loans_scan + collections_scan
    total = sum(c["seconds"] for c in outcomes.values())
    each = seconds_each(outcomes, MEASURED)
    tasks = ", ".join(f"{key.split('.', 1)[1]} {count:,}" for key, count in sorted(plan.items()))
    say(f"  strategies: {total:.2f} s ({each}); tasks {tasks}; scans {scans:.3f} s; "
        f"first night {first_wall:.0f} s, second {wall:.0f} s")
    size = f"{loan_rows:,} loans ({npl_loans:,} non-performing), {collection_rows:,} collection actions"
    rows = [
        Measurement(NAME, f"plain scan count+sum(outstanding) over loans ({loan_rows:,}), best of 3", loans_scan,
                    "s", baseline=loans_scan, ratio=1.0, target="baseline",
                    extra={"sql": LOANS_SCAN_SQL, "rows": loan_rows}),
        Measurement(NAME, f"plain scan count+sum(amount_recovered) over collections ({collection_rows:,}), best of 3",
                    collections_scan, "s", baseline=collections_scan, ratio=1.0, target="baseline",
                    extra={"sql": COLLECTIONS_SCAN_SQL, "rows": collection_rows}),
        Measurement(NAME, f"collection plan (plan loans, key households, 2 strategies, overdue check, ledger), "
                          f"second night, sum of run JSON seconds ({size})", total, "s", baseline=scans,
                    ratio=ratio(total, scans), target=f"< {TARGET_SECONDS:g} s (aim)", passed=total < TARGET_SECONDS,
                    note=f"{each}; tasks: {tasks}",
                    extra={"each": {i: {"seconds": c["seconds"], "rows": c["rows"]} for i, c in outcomes.items()},
                           "tasks": plan, "first_night_seconds": first_wall, "second_night_seconds": wall,
                           "rows_loaded": report["rows"], "generated": counts}),
    ]
    first_total = sum(c["seconds"] for c in first.values())
    first_each = seconds_each(first, MEASURED)
    first_figures = {i: {"seconds": c["seconds"], "rows": c["rows"]} for i, c in first.items()}
    rows.append(Measurement(NAME, "the same, first night (no open tasks to settle against)", first_total, "s",
                            baseline=scans, ratio=ratio(first_total, scans), target="info", note=first_each,
                            extra={"each": first_figures}))
    for contribution_id in MEASURED:
        outcome = outcomes[contribution_id]
        rows.append(Measurement(NAME, f"{contribution_id} ({outcome['kind']}), second night, run JSON",
                                outcome["seconds"], "s", baseline=scans, ratio=ratio(outcome["seconds"], scans),
                                target="info"))
    return rows
