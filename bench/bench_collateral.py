"""collateral: the nine checks of the pack ``cooperative-baseline`` over 1M loans and ~1M collateral records.

Data: a dedicated generator (below), not the demo. The demo book has ~0.39
collateral per loan (most of its loans are credit or guaranteed) and a demo
of 2.6M collateral records would mean ~6.5M loans, ten other tables and
minutes of generation for nothing these checks read. This one writes only
what they read (loans, collateral, pledges, appraisers), two as-ofs of the
same cooperative in one streaming pass (stdlib csv, ``random.Random(seed)``,
so the same files every time), cached under
``bench/results/collateral-<N>/{previous,current}/`` (``complete.json``,
written last, holds the row counts). The book:

* ``N`` loans; ~76% mortgage and ~5% pledge loans (the rest credit or
  guaranteed), so that ~1M collateral records secure them: one per secured
  loan mostly, 2 for ~13%, 3 for ~5%; ~1% of secured loans with none entered.
* ~1.2% of real-estate collateral also secures the next secured loan of
  another borrower (half at the same lien rank); ~0.05% of registration
  numbers keyed in twice; a few percent pending/unregistered, late, not
  verified, appraised by one of the twelve appraisers (two not approved, one
  suspended, one expired), appraised low (over LTV), stale, non-performing
  or written-off loans.
* The previous as-of (``PREVIOUS_AS_OF``) holds the loans originated by then
  and their collateral; between the two as-ofs ~3% of the collateral is
  revalued, a part of it 20% or more lower, and the collateral ``AP07``
  valued is revalued lower by the other agencies (an agency that overvalues).

Measured: a night after a night, as the nightly job runs. ``loanrules run <previous> --as-of PREVIOUS_AS_OF
--pack cooperative-baseline --db <db>`` first (not measured: the night before, whose findings tonight's are
matched with), then ``loanrules run <current> --as-of AS_OF --pack cooperative-baseline --db <db> --json``
``NIGHTS`` times, each on its own copy of the database as the night before left it (a re-run of the same
as-of in one database would first delete the run and snapshot it replaces, and load into the pages that
freed: slower, and not what a night does). For each night, the sum of the nine checks' ``seconds`` from
``contributions[]`` (each check's SELECT, its findings' keys and their match with last night's, the INSERT
into ``findings``) plus the seconds of every shared facts table the run built (``contributions[]`` of kind
``facts``, e.g. ``loanrules.facts.collateral``): the core builds ``collateral_facts`` once, for the first check
that reads it, and times that build apart from the check, so leaving it out would hide the join most of these
checks used to make; and of the derivation ``collateral.changes`` (the collateral revalued or new since the
previous as-of), which the two history checks read and which likewise runs apart from them; and each one's
own seconds (notes). The history checks must run (not be skipped), and most findings must be matched with
last night's (``persisting``). The median night counts: on this shared machine one run differs from the next
by up to 25%, more than a single night can settle against a target. A first night (a loaded previous as-of
but no run: nothing to match) costs less per finding; earlier versions of this bench measured that one.
Baseline, same database right after the last night, best of 3: the plain scans
``SELECT count(*), sum(appraised_value) FROM collateral WHERE snapshot_id = ?``
and ``SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?``;
the ratio is against their sum.
Target (issue 4): the nine checks, with the facts they read, < 5 s. The two summaries of the report's collateral
section (``SUMMARIES``), which the same run computes after the checks, are reported beside it for information.
"""

from __future__ import annotations

import datetime
import random
import shutil
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

NAME = "collateral"
PACK = "cooperative-baseline"
CHECKS = ("collateral.ltv_exceeded", "collateral.appraisal_stale", "collateral.appraiser_not_approved",
          "collateral.not_registered", "collateral.not_site_verified", "collateral.missing",
          "collateral.repeated_mortgage", "collateral.value_dropped", "appraiser.overvaluation")
# read by value_dropped and overvaluation, built once for both: its time counts with theirs, like the facts
DERIVATIONS = ("collateral.changes",)
# the report's collateral section, computed in the same run after the checks: measured for information (no target)
SUMMARIES = ("collateral.coverage_by_type", "collateral.agency_scorecard")
TARGET_SECONDS = 5.0
NIGHTS = 3  # measured nights of the current as-of; the median one counts
PREVIOUS_AS_OF = "2026-10-31"
SEED = 20261127
COLLATERAL_SCAN_SQL = "SELECT count(*), sum(appraised_value) FROM collateral WHERE snapshot_id = ?"
LOANS_SCAN_SQL = "SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?"

# ---------------------------------------------------------------- the generator

LOAN_FIELDS = ("loan_id", "borrower_id", "branch_id", "product", "guarantee_type", "principal",
               "outstanding_principal", "interest_arrears", "origination_date", "maturity_date", "days_past_due",
               "restructured_date", "recorded_class", "provision", "lending_officer_id", "collection_officer_id",
               "written_off")
COLLATERAL_FIELDS = ("collateral_id", "collateral_type", "owner_id", "appraised_value", "appraisal_date",
                     "appraiser_id", "registration_status", "registration_no", "registration_date", "site_verified")
PLEDGE_FIELDS = ("loan_id", "collateral_id", "lien_rank", "secured_amount")
APPRAISER_FIELDS = ("appraiser_id", "name", "approved", "approved_until", "suspended")
APPRAISERS = (  # id, approved, approved_until, suspended; weight of the collateral each values
    ("AP01", "1", "2028-10-27", "0", 14), ("AP02", "1", "2028-01-01", "0", 13), ("AP03", "1", "2029-05-15", "0", 12),
    ("AP04", "1", "2027-09-23", "0", 11), ("AP05", "1", "2028-04-10", "0", 10), ("AP06", "1", "2028-09-07", "0", 10),
    ("AP07", "1", "2029-02-04", "0", 9), ("AP08", "1", "2027-08-04", "0", 9), ("AP09", "0", "", "0", 1),
    ("AP10", "0", "", "0", 1), ("AP11", "1", "2028-07-19", "1", 1), ("AP12", "1", "2026-06-30", "0", 1),
)
OVERVALUER = "AP07"
REAL_ESTATE = ("house", "commercial_property", "land_use_right", "forest_right")
MORTGAGE_TYPES = (("house", 50), ("land_use_right", 15), ("commercial_property", 12), ("forest_right", 5),
                  ("equipment", 10), ("vehicle", 8))
PLEDGE_TYPES = (("deposit", 75), ("bond", 25))
LTV_LIMITS = {"house": 0.7, "commercial_property": 0.6, "deposit": 0.9, "bond": 0.9}  # else 0.5
CLASSES = ((0, "normal"), (30, "special_mention"), (90, "substandard"), (180, "doubtful"), (360, "loss"))
TABLES = (("loans", LOAN_FIELDS), ("collateral", COLLATERAL_FIELDS), ("pledges", PLEDGE_FIELDS),
          ("appraisers", APPRAISER_FIELDS))  # the four CSV files of one as-of


def generate(directory: Path, loans: int, seed: int = SEED) -> dict[str, dict[str, int]]:
    """Write ``previous/`` and ``current/`` under ``directory``; return the rows per table of each."""
    rng = random.Random(seed)
    r = rng.random
    as_of = datetime.date.fromisoformat(AS_OF).toordinal()
    previous = datetime.date.fromisoformat(PREVIOUS_AS_OF).toordinal()
    day = {}

    def iso(ordinal: int) -> str:
        text = day.get(ordinal)
        if text is None:
            text = day[ordinal] = datetime.date.fromordinal(ordinal).isoformat()
        return text

    appraiser_table = weighted([(a[0], a[4]) for a in APPRAISERS])
    mortgage_types, pledge_types = weighted(MORTGAGE_TYPES), weighted(PLEDGE_TYPES)
    now, before = CsvWriters(directory / "current", TABLES), CsvWriters(directory / "previous", TABLES)
    for appraiser_id, approved, until, suspended, _ in APPRAISERS:
        for writers in (now, before):
            writers.row("appraisers", (appraiser_id, f"Appraisal agency {appraiser_id}", approved, until, suspended))
    borrower, collateral_no, registration_no, last_registration = 0, 0, 0, ""
    shareable = None  # (collateral_id, owner borrower, lien rank, in previous) waiting for another borrower's loan
    for index in range(1, loans + 1):
        loan_id = f"LN{index:08d}"
        if index == 1 or r() < 0.75:
            borrower += 1
        borrower_id = f"CU{borrower:08d}"
        u = r()
        guarantee = "mortgage" if u < 0.76 else "pledge" if u < 0.81 else "credit" if u < 0.93 else "guarantee"
        origination = as_of - int(r() * 1825)
        in_previous = origination <= previous
        term_years = max(1 + int(r() * 5), (as_of - origination) // 365 + 1)
        maturity = origination + 365 * term_years
        principal = max(1000, int(rng.lognormvariate(12.0, 0.8))) * 100
        paid = min(0.95, (as_of - origination) / (maturity - origination))
        outstanding = int(principal * (1 - paid * 0.8)) // 100 * 100
        outstanding_before = min(principal, outstanding + principal // 60 // 100 * 100)
        u = r()
        dpd = 0 if u < 0.9 else int(r() * 60) if u < 0.95 else 60 + int(r() * 900)
        recorded = [name for bound, name in CLASSES if dpd >= bound][-1]
        written_off = "1" if r() < 0.005 else "0"
        branch, officer = f"BR{1 + index % 40:02d}", f"OF{1 + (borrower * 7) % 900}"
        common = (loan_id, borrower_id, branch, "farm_operation", guarantee, format_fen(principal))
        tail = (iso(origination), iso(maturity))
        now.row("loans", (*common, format_fen(outstanding), "0.00", *tail, dpd, "", recorded,
                          format_fen(outstanding // 100), officer, officer, written_off))
        if in_previous:
            dpd_before = max(0, dpd - 27)
            recorded_before = [name for bound, name in CLASSES if dpd_before >= bound][-1]
            before.row("loans", (*common, format_fen(outstanding_before), "0.00", *tail, dpd_before, "",
                                 recorded_before, format_fen(outstanding_before // 100), officer, officer,
                                 written_off))
        if guarantee not in ("mortgage", "pledge"):
            continue
        if shareable is not None and shareable[1] != borrower_id:  # another borrower's loan takes it too
            shared_id, _, lien_rank, shared_before = shareable
            shareable = None
            values = (loan_id, shared_id, lien_rank, format_fen(principal // 2))
            now.row("pledges", values)
            if shared_before and in_previous:
                before.row("pledges", values)
        if r() < 0.01:
            continue  # the mortgage was never entered in the collateral system
        u = r()
        count = 1 if u < 0.82 else 2 if u < 0.95 else 3
        u = r()
        cover = 0.75 + r() * 0.3 if u < 0.03 else 1.05 + r() * 0.8  # value over the loan at the LTV limit: a few over
        for share in range(count):
            collateral_no += 1
            collateral_id = f"CL{collateral_no:08d}"
            kind = pick(pledge_types if guarantee == "pledge" else mortgage_types, r())
            financial = kind in ("deposit", "bond")
            limit = LTV_LIMITS.get(kind, 0.5)
            value = max(10000, int(principal * cover / limit) // 10000 * 10000)  # each covers the loan
            secured = principal // count if share < count - 1 else principal - principal // count * (count - 1)
            if financial:
                appraiser_id, appraised = "", origination
            else:
                appraiser_id = pick(appraiser_table, r())
                appraised = origination - 5 - int(r() * 55)
                if as_of - origination > 150 and r() < 0.9:  # revalued within the maximum age; the rest stale
                    appraised = as_of - 30 - int(r() * (140 if kind in ("equipment", "vehicle") else 320))
            u = r()
            if u < 0.03:
                status, number, registered = ("pending" if u < 0.025 else "none"), "", ""
            else:
                status = "registered"
                registered_day = origination + (31 + int(r() * 90) if r() < 0.02 else int(r() * 21))
                registered = iso(registered_day)
                if last_registration and r() < 0.0005:
                    number = last_registration  # keyed in twice by mistake
                else:
                    registration_no += 1
                    number = f"BDC{iso(registered_day)[:4]}{registration_no:07d}"
                last_registration = number
            u = r()
            verified = "1" if u < 0.94 else "0" if u < 0.99 else ""
            # revalued between the two as-ofs: today's row differs from the previous one
            value_now, appraised_now, appraiser_now = value, appraised, appraiser_id
            if in_previous and not financial and r() < 0.03:
                appraised_now = previous + 1 + int(r() * (as_of - previous - 1))
                if r() < 0.4:
                    appraiser_now = pick(appraiser_table, r())
                u = r()
                if appraiser_id == OVERVALUER and appraiser_now != OVERVALUER:
                    change = 0.65 + 0.13 * u  # the overvaluer's collateral, valued again by another agency
                else:
                    change = 0.6 + 0.15 * u if u < 0.15 else 0.9 + 0.2 * u
                value_now = max(10000, int(value * change) // 100 * 100)
            tail = (status, number, registered, verified)
            if registered and registered > AS_OF:  # not registered yet
                tail = ("pending", "", "", verified)
            now.row("collateral", (collateral_id, kind, borrower_id, format_fen(value_now), iso(appraised_now),
                                   appraiser_now, *tail))
            now.row("pledges", (loan_id, collateral_id, 1, format_fen(secured)))
            if in_previous:
                if registered and registered > PREVIOUS_AS_OF:
                    tail = ("pending", "", "", verified)
                before.row("collateral", (collateral_id, kind, borrower_id, format_fen(value), iso(appraised),
                                          appraiser_id, *tail))
                before.row("pledges", (loan_id, collateral_id, 1, format_fen(secured)))
            if kind in REAL_ESTATE and shareable is None and r() < 0.012:
                shareable = (collateral_id, borrower_id, 1 if r() < 0.5 else 2, in_previous)
    now.close()
    before.close()
    return {"current": now.counts, "previous": before.counts}


def data_dir(loans: int) -> tuple[Path, Path, dict]:
    """The cached two as-ofs for ``loans`` loans (generated once); (previous dir, current dir, row counts)."""
    base, counts = cached_data(NAME, loans, f"{loans:,} loans with ~{loans:,} collateral, two as-ofs",
                               lambda directory: generate(directory, loans))
    return base / "previous", base / "current", counts


# ---------------------------------------------------------------- the measurement


def facts_outcomes(report: dict) -> dict[str, dict]:
    """The shared facts the run built (kind ``facts``): part of what the checks cost."""
    found = {c["id"]: c for c in report["contributions"] if c.get("kind") == "facts"}
    broken = [f"{i}: {c['status']} {c['reason'] or ''}" for i, c in found.items() if c["status"] != "ok"]
    if broken:
        raise BenchError(f"the shared facts were not built: {'; '.join(broken)}")
    return found


def night_seconds(report: dict) -> tuple[float, dict, dict]:
    """One night's (nine checks with the facts and derivation they read, the checks, the facts and
    derivations), from its run report."""
    outcomes = contribution_outcomes(report, CHECKS, "the collateral checks did not all run ok")
    facts = {**facts_outcomes(report),
             **contribution_outcomes(report, DERIVATIONS, "the collateral derivations did not run ok")}
    total = sum(c["seconds"] for c in outcomes.values()) + sum(c["seconds"] for c in facts.values())
    return total, outcomes, facts


def run(settings: Settings) -> list[Measurement]:
    previous, current, counts = data_dir(settings.loans)
    before = fresh_db(settings, "collateral-before")
    db = fresh_db(settings, "collateral")
    env = bench_env()
    nights = []
    try:
        say(f"  collateral: the night of the previous as-of {PREVIOUS_AS_OF} (loanrules run, not measured) ...")
        previous_wall, _ = cli_run_json(previous, PREVIOUS_AS_OF, (PACK,), before, env=env)
        for night in range(1, NIGHTS + 1):
            say(f"  collateral: night {night} of {NIGHTS}, loanrules run --pack {PACK} for {AS_OF} "
                "(loads it first), on a copy of the database the night before left ...")
            remove_db(db)
            shutil.copyfile(before, db)
            wall, report = cli_run_json(current, AS_OF, (PACK,), db, env=env)
            if report["persisting"] <= report["new"]:
                raise BenchError(f"night {night} matched {report['persisting']:,} findings with the previous "
                                 f"night's and found {report['new']:,} new: not a night after a night")
            nights.append((*night_seconds(report), wall, report))
        conn = sqlite3.connect(str(db))
        try:
            snapshot_id = run_snapshot_id(conn, report)
            collateral_scan, collateral_rows = scan_seconds(conn, COLLATERAL_SCAN_SQL, snapshot_id)
            loans_scan, loan_rows = scan_seconds(conn, LOANS_SCAN_SQL, snapshot_id)
            pledge_rows = conn.execute("SELECT count(*) FROM pledges WHERE snapshot_id = ?",
                                       (snapshot_id,)).fetchone()[0]
        finally:
            conn.close()
    finally:
        remove_db(db)
        remove_db(before)

    totals = sorted(night[0] for night in nights)
    total, outcomes, facts, wall, report = sorted(nights, key=lambda night: night[0])[len(nights) // 2]
    scans = collateral_scan + loans_scan
    findings = sum(c["rows"] for c in outcomes.values())
    matched = f"{report['persisting']:,} of the run's findings matched with the previous night's, {report['new']:,} new"
    per_check = ", ".join([*(f"{i} {c['seconds']:.2f}" for i, c in facts.items()),
                           seconds_each(outcomes, CHECKS)])
    say(f"  collateral: nine checks with their facts, median of {NIGHTS} nights {total:.2f} s "
        f"(nights {', '.join(f'{t:.2f}' for t in totals)}; {findings:,} findings; {matched}): {per_check}; "
        f"scans {scans:.3f} s; the previous night {previous_wall:.0f} s, this one {wall:.0f} s")
    size = f"{loan_rows:,} loans, {collateral_rows:,} collateral, {pledge_rows:,} pledges"
    rows = [
        Measurement(NAME, f"plain scan count+sum(appraised_value) over collateral ({collateral_rows:,}), best of 3",
                    collateral_scan, "s", baseline=collateral_scan, ratio=1.0, target="baseline",
                    extra={"sql": COLLATERAL_SCAN_SQL, "rows": collateral_rows}),
        Measurement(NAME, f"plain scan count+sum(outstanding) over loans ({loan_rows:,}), best of 3", loans_scan,
                    "s", baseline=loans_scan, ratio=1.0, target="baseline",
                    extra={"sql": LOANS_SCAN_SQL, "rows": loan_rows}),
        Measurement(NAME, f"9 collateral checks + the facts they read, sum of run JSON seconds, median of "
                          f"{NIGHTS} nights after a night ({size})", total,
                    "s", baseline=scans,
                    ratio=ratio(total, scans), target=f"< {TARGET_SECONDS:g} s", passed=total < TARGET_SECONDS,
                    note=f"nights {', '.join(f'{t:.2f}' for t in totals)} s; {findings:,} findings, {matched}; "
                         f"{per_check}",
                    extra={"nights": totals, "persisting": report["persisting"], "new": report["new"],
                           "per_check": {i: {"seconds": c["seconds"], "findings": c["rows"]}
                                         for i, c in outcomes.items()},
                           "facts": {i: {"seconds": c["seconds"], "rows": c["rows"]} for i, c in facts.items()},
                           "whole_run_seconds": wall, "previous_night_seconds": previous_wall,
                           "rows_loaded": report["rows"], "generated": counts}),
    ]
    for facts_id, outcome in facts.items():
        rows.append(Measurement(NAME, f"{facts_id} (shared, built once for the checks), run JSON, median night",
                                outcome["seconds"], "s", baseline=scans, ratio=ratio(outcome["seconds"], scans),
                                target="info", note=f"{outcome['rows']:,} rows"))
    for check_id in CHECKS:
        outcome = outcomes[check_id]
        rows.append(Measurement(NAME, f"{check_id}, run JSON, median night", outcome["seconds"], "s", baseline=scans,
                                ratio=ratio(outcome["seconds"], scans), target="info",
                                note=f"{outcome['rows']:,} findings"))
    for summary_id, outcome in contribution_outcomes(report, SUMMARIES,
                                                     "the collateral summaries did not run ok").items():
        rows.append(Measurement(NAME, f"{summary_id} (report section, not a check), run JSON, median night",
                                outcome["seconds"], "s", baseline=scans, ratio=ratio(outcome["seconds"], scans),
                                target="info", note=f"{outcome['rows']:,} rows"))
    return rows
