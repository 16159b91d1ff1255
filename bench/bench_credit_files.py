"""credit_files: the three credit-file checks of the pack ``cooperative-baseline`` over 1M loans, two books.

Data: a dedicated generator (below), not the demo: it writes only what these
checks read (``loans.csv`` and ``documents.csv``) in one streaming pass
(stdlib csv, ``random.Random(seed)``, so the same files every time), cached
under ``bench/results/credit_files[-issue-scale]-<N>/snapshot/``
(``complete.json``, written last, holds the row counts). Two books of ``N``
loans, ~0.3% with a blank guarantee type and ~0.5% written off:

* the issue's scale, which carries the verdict: ~3.2M document rows at 1M
  loans (the issue asks for 1M loans and 3M document rows), the book of a
  cooperative lending mostly on credit: ~88% credit, ~8% guarantee, ~3.5%
  mortgage, ~0.4% pledge loans;
* the demo's mix, reported beside it: ~40% credit, ~25% guarantee, ~30%
  mortgage, ~5% pledge, so ~4.3M document rows (more than the issue's, on
  purpose: a heavier book).

Each loan's credit file holds the documents the checks' default lists
require (3 for credit loans, 4 for guarantee loans, 6 for mortgage and
pledge loans). Nine files in ten are
  complete; in the rest each document is missing with chance 15%, its
  original with 30% and its scan with 30% (the demo's rates); ~0.2% of the present documents have
  a blank original or scan flag; ~5% of the loans also hold a document no
  list requires (``credit_report``).

Measured: ``loanrules run <snapshot> --as-of AS_OF --pack cooperative-baseline --db <db> --json``;
the sum of the ``seconds`` from ``contributions[]`` of the three checks (each
check's SELECT, its findings' keys, the INSERT into ``findings``), and each
one's own seconds. (Until pack 1.1.0 a derivation, ``files.document_flags``,
found the documents without an original or a scan for the two flag checks and
was counted here; they now read them through the partial index
``documents_unfinished``, which the load fills.) The other checks of the pack
are skipped (their tables are not in the snapshot) or do not count. Baseline, same database right after the run,
best of 3: the plain scans ``SELECT count(*), sum(electronic_copy) FROM documents
WHERE snapshot_id = ?`` and ``SELECT count(*), sum(outstanding_principal) FROM
loans WHERE snapshot_id = ?``; the ratio is against their sum.
Target (issue 5): the three checks < 3 s.
"""

from __future__ import annotations

import datetime
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
    ratio,
    remove_db,
    run_snapshot_id,
    say,
    scan_seconds,
    seconds_each,
)

from loanrules.model import format_fen

NAME = "credit_files"
PACK = "cooperative-baseline"
CHECKS = ("files.required_document_missing", "files.original_missing", "files.not_digitized")
CONTRIBUTIONS = CHECKS
TARGET_SECONDS = 3.0
SEED = 20261205
DOCUMENTS_SCAN_SQL = "SELECT count(*), sum(electronic_copy) FROM documents WHERE snapshot_id = ?"
LOANS_SCAN_SQL = "SELECT count(*), sum(outstanding_principal) FROM loans WHERE snapshot_id = ?"

LOAN_FIELDS = ("loan_id", "borrower_id", "branch_id", "product", "guarantee_type", "principal",
               "outstanding_principal", "interest_arrears", "origination_date", "maturity_date", "days_past_due",
               "restructured_date", "recorded_class", "provision", "lending_officer_id", "collection_officer_id",
               "written_off")
DOCUMENT_FIELDS = ("loan_id", "doc_type", "original_on_file", "electronic_copy")
ALWAYS = ("loan_contract", "application", "borrower_id_copy")
SECURED = ("collateral_contract", "registration_certificate", "appraisal_report")
GUARANTEED = ("guarantee_contract",)
EXTRA = "credit_report"  # a document no default list requires
CLASSES = ((0, "normal"), (30, "special_mention"), (90, "substandard"), (180, "doubtful"), (360, "loss"))


def _flag(u: float, missing_below: float) -> str:
    """"0" with chance ``missing_below``, blank with chance 0.2%, else "1" (u uniform in [0, 1))."""
    return "0" if u < missing_below else "" if u >= 0.998 else "1"


# Cumulative shares of the guarantee types credit, guarantee, mortgage and pledge (the rest blank). The
# demo's mix gives ~4.3 documents per loan; the issue's scale (1M loans, ~3M document rows) is the book of
# a cooperative lending mostly on credit (unsecured household loans), ~3.2 per loan.
DEMO_MIX = (0.40, 0.65, 0.95, 0.997)
ISSUE_MIX = (0.88, 0.96, 0.995, 0.999)


def generate(directory: Path, loans: int, seed: int = SEED, mix: tuple[float, ...] = DEMO_MIX) -> dict[str, int]:
    """Write ``loans.csv`` and ``documents.csv`` into ``directory``; return the rows per table."""
    rng = random.Random(seed)
    r = rng.random
    as_of = datetime.date.fromisoformat(AS_OF).toordinal()
    with CsvWriters(directory, (("loans", LOAN_FIELDS), ("documents", DOCUMENT_FIELDS))) as out:
        borrower = 0
        for index in range(1, loans + 1):
            loan_id = f"LN{index:08d}"
            if index == 1 or r() < 0.75:
                borrower += 1
            u = r()
            guarantee = ("credit" if u < mix[0] else "guarantee" if u < mix[1] else "mortgage" if u < mix[2]
                         else "pledge" if u < mix[3] else "")
            origination = as_of - int(r() * 1825)
            maturity = origination + 365 * max(1 + int(r() * 5), (as_of - origination) // 365 + 1)
            principal = max(1000, int(rng.lognormvariate(12.0, 0.8))) * 100
            outstanding = int(principal * (1 - min(0.95, (as_of - origination) / (maturity - origination)) * 0.8))
            outstanding = outstanding // 100 * 100
            u = r()
            dpd = 0 if u < 0.9 else int(r() * 60) if u < 0.95 else 60 + int(r() * 900)
            recorded = [name for bound, name in CLASSES if dpd >= bound][-1]
            officer = f"OF{1 + (borrower * 7) % 900}"
            out.row("loans", (loan_id, f"CU{borrower:08d}", f"BR{1 + index % 40:02d}", "farm_operation", guarantee,
                              format_fen(principal), format_fen(outstanding), "0.00",
                              datetime.date.fromordinal(origination).isoformat(),
                              datetime.date.fromordinal(maturity).isoformat(), dpd, "", recorded,
                              format_fen(outstanding // 100), officer, officer, "1" if r() < 0.005 else "0"))
            doc_types = ALWAYS + (SECURED if guarantee in ("mortgage", "pledge") else
                                  GUARANTEED if guarantee == "guarantee" else ())
            if r() < 0.05:
                doc_types += (EXTRA,)
            complete = r() < 0.9
            for doc_type in doc_types:
                if complete:
                    original, copy = _flag(r(), 0.0), _flag(r(), 0.0)
                else:
                    if r() < 0.15:
                        continue
                    original, copy = _flag(r(), 0.3), _flag(r(), 0.3)
                out.row("documents", (loan_id, doc_type, original, copy))
    return out.counts


def data_dir(loans: int, mix: tuple[float, ...] = DEMO_MIX) -> tuple[Path, dict]:
    """The cached snapshot for ``loans`` loans of this guarantee ``mix`` (generated once); (directory, row
    counts)."""
    name = NAME if mix == DEMO_MIX else f"{NAME}-issue-scale"
    base, counts = cached_data(name, loans, f"{loans:,} loans with their credit files",
                               lambda directory: generate(directory / "snapshot", loans, mix=mix))
    return base / "snapshot", counts


# ---------------------------------------------------------------- the measurement


def run(settings: Settings) -> list[Measurement]:
    rows = _measure(settings, ISSUE_MIX, "at the issue's scale", target=True)
    return rows + _measure(settings, DEMO_MIX, "at the demo's mix", target=False)


def _measure(settings: Settings, mix: tuple[float, ...], scale: str, *, target: bool) -> list[Measurement]:
    """One run over the book of this ``mix``; ``target``: its total carries the issue's verdict."""
    snapshot, counts = data_dir(settings.loans, mix)
    db = fresh_db(settings, "credit_files")
    try:
        say(f"  credit_files ({scale}): loanrules run --pack {PACK} for {AS_OF} (loads it first) ...")
        wall, report = cli_run_json(snapshot, AS_OF, (PACK,), db, env=bench_env())
        outcomes = contribution_outcomes(report, CONTRIBUTIONS, "the credit-file checks did not all run ok")
        conn = sqlite3.connect(str(db))
        try:
            snapshot_id = run_snapshot_id(conn, report)
            documents_scan, document_rows = scan_seconds(conn, DOCUMENTS_SCAN_SQL, snapshot_id)
            loans_scan, loan_rows = scan_seconds(conn, LOANS_SCAN_SQL, snapshot_id)
        finally:
            conn.close()
    finally:
        remove_db(db)

    scans = documents_scan + loans_scan
    total = sum(c["seconds"] for c in outcomes.values())
    findings = sum(outcomes[i]["rows"] for i in CHECKS)
    per_check = seconds_each(outcomes, CONTRIBUTIONS)
    say(f"  credit_files ({scale}): three checks {total:.2f} s ({findings:,} findings): {per_check}; "
        f"scans {scans:.3f} s; whole run {wall:.0f} s")
    size = f"{loan_rows:,} loans, {document_rows:,} documents"
    rows = [
        Measurement(NAME, f"plain scan count+sum(electronic_copy) over documents ({document_rows:,}), best of 3",
                    documents_scan, "s", baseline=documents_scan, ratio=1.0, target="baseline",
                    extra={"sql": DOCUMENTS_SCAN_SQL, "rows": document_rows}),
        Measurement(NAME, f"plain scan count+sum(outstanding) over loans ({loan_rows:,}), best of 3", loans_scan,
                    "s", baseline=loans_scan, ratio=1.0, target="baseline",
                    extra={"sql": LOANS_SCAN_SQL, "rows": loan_rows}),
        Measurement(NAME, f"3 credit-file checks {scale}, sum of run JSON seconds ({size})", total,
                    "s", baseline=scans, ratio=ratio(total, scans),
                    target=f"< {TARGET_SECONDS:g} s" if target else "info",
                    passed=total < TARGET_SECONDS if target else None,
                    note=f"{findings:,} findings; {per_check}",
                    extra={"per_check": {i: {"seconds": c["seconds"], "findings": c["rows"]}
                                         for i, c in outcomes.items()},
                           "whole_run_seconds": wall, "rows_loaded": report["rows"], "generated": counts}),
    ]
    for contribution_id in CONTRIBUTIONS:
        outcome = outcomes[contribution_id]
        rows.append(Measurement(NAME, f"{contribution_id} {scale}, run JSON", outcome["seconds"], "s",
                                baseline=scans, ratio=ratio(outcome["seconds"], scans), target="info",
                                note=f"{outcome['rows']:,} findings"))
    return rows
