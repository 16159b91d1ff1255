"""The sections on what the contributed packs store: collateral coverage and the appraisal-agency
scorecard, village collectives, and post-loan inspection compliance."""

from __future__ import annotations

import json

from loanrules.report.book import CHART_LIMIT, Book, prefix_sql
from loanrules.report.formatting import percent, share, word, yuan
from loanrules.report.model import Chart, Column, Highlight, Section, Series, Table, drop_blank, summary_table
from loanrules.results import summaries
from loanrules.sqltext import current_class, non_performing, on_book, rank_case, unrank_case

# The checks that judge "inspected as required" (REFERENCE.md §4): every non-performing loan inspected
# monthly, and on site quarterly.
NPL_INSPECTION_CHECKS = ("inspection.npl_monthly_missing", "inspection.npl_quarterly_site_missing")


def collateral(book: Book) -> Section:
    section_id, title = "collateral", "Collateral coverage and the appraisal-agency scorecard"

    ids = ("collateral.coverage_by_type", "collateral.agency_scorecard")
    stored = {s.summary_id: s for s in summaries(book.conn, book.run, ids, book.masker)}
    if not stored:
        return Section.without_data(section_id, title, book.why_not(book.outcome_of(ids), "collateral summary",
                                                                      "cooperative-baseline"))
    tables, charts = [], []
    coverage = stored.get("collateral.coverage_by_type")
    if coverage is not None:
        tables.append(summary_table("collateral_coverage", "Coverage by collateral type", coverage))
        by_type = [r for r in coverage.rows if r.get("collateral_type") != "all"]
        if by_type:
            charts.append(Chart("collateral-coverage", "Appraised value over the exposure it secures, by type",
                                "bar", [word(r["collateral_type"]) for r in by_type],
                                [Series("coverage", [r.get("coverage_share") for r in by_type])], unit="share",
                                description="Appraised value of the collateral of each type over the outstanding "
                                            "principal of the loans it secures; below 100% the collateral does "
                                            "not cover the loans.", table="collateral_coverage"))
    scorecard = stored.get("collateral.agency_scorecard")
    if scorecard is not None:
        tables.append(summary_table("agency_scorecard", "Appraisal agency scorecard", scorecard,
                                     display_limit=book.display_limit))
        agencies = list(scorecard.rows)[:CHART_LIMIT]
        if agencies:
            problems = (("stale_count", "stale appraisal"), ("over_ltv_count", "over loan-to-value"),
                        ("value_dropped_count", "value dropped"), ("npl_backed_count", "secures an NPL"))
            charts.append(Chart("agency-scorecard", "Appraisal agencies: problems in the collateral they appraised",
                                "stacked",
                                [" ".join(str(x) for x in (r.get("appraiser_id"), r.get("appraiser_name")) if x)
                                 for r in agencies],
                                [Series(label, [r.get(key) or 0 for r in agencies]) for key, label in problems],
                                description="For each appraisal agency (largest appraised value first), how many "
                                            "of the collateral it appraised are stale, over their loan-to-value "
                                            "limit, fell in value, or secure a non-performing loan (a "
                                            "collateral with two of these counts under each).",
                                table="agency_scorecard"))
    missing = [i for i in ids if i not in stored]
    intro = ("As stored with the run by the collateral summaries (`loanrules summaries collateral`)."
             + (f" Not stored: {', '.join(missing)} "
                f"({book.why_not(book.outcome_of(missing), 'summary', 'cooperative-baseline')})."
                if missing else ""))
    return Section(section_id, title, intro, (), tables, charts)


def villages(book: Book) -> Section:
    section_id, title = "villages", "Village collectives"
    types = json.loads(book.run["params"] or "{}").get("village.large_exposure", {}).get("params", {}).get(
        "collective_types", ["village_collective"])
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    if not book.has_table("borrowers"):
        return Section.without_data(section_id, title, "the snapshot has no borrowers.csv, so village "
                                                       "collectives cannot be told from other borrowers")
    worst = unrank_case(f"max({rank_case(current_class())})")
    rows = book.q(f"""
        SELECT b.borrower_id, b.name, b.village, b.township, count(*), sum(l.outstanding_principal),
               sum(coalesce(l.interest_arrears, 0)),
               sum(CASE WHEN {non_performing()}
                        THEN l.outstanding_principal ELSE 0 END),
               {worst}, max(l.days_past_due), v.land_transfer_expected_date, v.land_compensation_amount
        FROM borrowers b
        CROSS JOIN loans l
        LEFT JOIN assessments a ON a.run_id = :run_id AND a.loan_id = l.loan_id
        LEFT JOIN villages v ON v.snapshot_id = :snapshot_id AND v.village = b.village
        WHERE b.snapshot_id = :snapshot_id AND b.borrower_type IN (SELECT value FROM json_each(:types))
          AND l.snapshot_id = :snapshot_id AND l.borrower_id = b.borrower_id AND {on_book()}
        GROUP BY b.borrower_id
    """, types=json.dumps(list(types)))
    if not rows:
        return Section.without_data(section_id, title, f"no borrower of type {', '.join(types)} has a loan on "
                                                       "the books")
    rows.sort(key=lambda r: (-r[5], r[0]))
    keys = ("borrower_id", "name", "village", "township", "loans", "outstanding_fen", "interest_arrears_fen",
            "npl_outstanding_fen", "worst_class", "max_days_past_due", "land_transfer_expected_date",
            "land_compensation_fen")
    masked = [tuple(book.masker.row(dict(zip(keys, r))).values()) for r in rows]
    table = Table("village_collectives", "Village collectives with loans on the books", (
        Column("borrower_id", "borrower"), Column("name", "name"), Column("village", "village"),
        Column("township", "township"), Column("loans", "loans", "count"),
        Column("outstanding_fen", "outstanding", "money"),
        Column("interest_arrears_fen", "interest arrears", "money"),
        Column("npl_outstanding_fen", "NPL outstanding", "money"), Column("worst_class", "worst class"),
        Column("max_days_past_due", "max days past due", "count"),
        Column("land_transfer_expected_date", "land transfer expected", "date"),
        Column("land_compensation_fen", "land compensation", "money"),
    ), masked, display_limit=book.display_limit, note="Largest outstanding first; land transfer from villages.csv.")
    checks = book.finding_counts("village")
    tables = [table, checks] if checks.rows else [table]
    totals = book.book_totals()
    exposure = sum(r[5] for r in rows)
    npl = sum(r[7] for r in rows)
    highlights = [
        Highlight("Village collectives", f"{len(rows):,}", f"{sum(r[4] for r in rows):,} loans"),
        Highlight("Their outstanding (yuan)", yuan(exposure),
                  f"{percent(share(exposure, totals['outstanding']))} of the book"),
        Highlight("Their non-performing (yuan)", yuan(npl), f"{percent(share(npl, exposure))} of theirs"),
    ]
    shown = rows[:CHART_LIMIT]
    charts = [Chart("village-exposure", "Outstanding of the largest village collectives", "stacked",
                    [f"{r[0]} {r[2] or ''}".strip() for r in shown],
                    [Series("performing", [r[5] - r[7] for r in shown]),
                     Series("non-performing", [r[7] for r in shown])], unit="money",
                    description="Outstanding principal of each village collective, split into performing and "
                                "non-performing, in yuan, largest first.", table="village_collectives")]
    intro = (f"Borrowers of type {', '.join(types)} (the village checks' `collective_types` as this run recorded "
             f"them), their loans on the books and the village checks' findings of this run.")
    return Section(section_id, title, intro, highlights, tables, charts)


def inspections(book: Book) -> Section:
    section_id, title = "inspections", "Post-loan inspection compliance"
    outcomes = {cid: v for cid, v in book.outcome_of("inspection").items() if v[0] == "check"}
    ran = {cid for cid, v in outcomes.items() if v[1] == "ok"}
    if not ran:
        return Section.without_data(section_id, title, book.why_not(outcomes, "inspection check",
                                                                      "cooperative-baseline"))
    book_table = book.loans_table()
    per_check = {r[0]: r[1:] for r in book.q(f"""
        SELECT f.check_id, count(*), count(DISTINCT f.loan_id),
               count(DISTINCT CASE WHEN r.npl THEN f.loan_id END),
               count(DISTINCT CASE WHEN NOT r.npl THEN f.loan_id END)
        FROM findings f LEFT JOIN {book_table} r ON r.loan_id = f.loan_id
        WHERE f.run_id = :run_id AND {prefix_sql('f.check_id', 'inspection')}
        GROUP BY f.check_id
    """)}
    # non-performing loans with a finding of any inspection check, and of the two that judge "as required"
    any_npl, missed = book.q(f"""
        SELECT count(DISTINCT f.loan_id),
               count(DISTINCT CASE WHEN f.check_id IN (SELECT value FROM json_each(:required)) THEN f.loan_id END)
        FROM findings f JOIN {book_table} r ON r.loan_id = f.loan_id
        WHERE f.run_id = :run_id AND {prefix_sql('f.check_id', 'inspection')} AND r.npl
    """, required=json.dumps(NPL_INSPECTION_CHECKS))[0]
    totals = book.book_totals()
    npl_loans = totals["npl_loans"]
    rows = []
    for cid in sorted(set(outcomes) | set(per_check)):
        findings, loans, npl, performing = per_check.get(cid, (0, 0, 0, 0))
        rows.append((cid, book.title_of(cid), outcomes.get(cid, ("", "ok", None))[1], findings, loans, npl,
                     share(npl, npl_loans), performing))
    table = drop_blank(Table("inspection_compliance", "Inspection checks: loans flagged", (
        Column("check_id", "check"), Column("title", "title"), Column("status", "ran"),
        Column("findings", "findings", "count"), Column("loans", "loans", "count"),
        Column("npl_loans", "non-performing loans", "count"),
        Column("npl_share", "share of all NPL loans", "share"), Column("performing_loans", "performing loans",
                                                                        "count"),
    ), rows, note="A check that was skipped (its table missing) judged nothing."))
    charts = [Chart("inspection-flags", "Loans flagged by each inspection check", "stacked",
                    [r[0] for r in rows], [Series("non-performing", [r[5] for r in rows]),
                                           Series("performing", [r[7] for r in rows])],
                    description="Loans with a finding of each inspection check, non-performing and performing.",
                    table="inspection_compliance")]
    highlights = [
        Highlight("Non-performing loans", f"{npl_loans:,}"),
        _as_required(npl_loans, missed, outcomes),
        Highlight("With an inspection finding", f"{any_npl:,}",
                  f"{percent(share(any_npl, npl_loans))} of the non-performing loans" if npl_loans else ""),
    ]
    skipped = sorted(cid for cid in outcomes if cid not in ran)
    intro = ("Non-performing loans must be inspected monthly and on site quarterly (REFERENCE.md §4). The "
             "inspection checks' findings of this run, against the non-performing loans on the books"
             + (f"; skipped: {'; '.join(f'{cid}: {outcomes[cid][2]}' for cid in skipped)}" if skipped else "")
             + ".")
    return Section(section_id, title, intro, highlights, [table], charts)


def _as_required(npl_loans: int, missed: int, outcomes) -> Highlight:
    """Non-performing loans without a finding of the monthly and the quarterly on-site check: judged (ok or
    not) only when both ran cleanly; otherwise the figure says which did not run, with no status."""
    not_run = [cid for cid in NPL_INSPECTION_CHECKS if outcomes.get(cid, ("", None, None))[1] != "ok"]
    if len(not_run) == len(NPL_INSPECTION_CHECKS):
        return Highlight("Inspected as required", "n/a", "not judged, did not run: " + _not_run_text(not_run, outcomes))
    inspected = npl_loans - missed
    note = f"{percent(share(inspected, npl_loans))} of the non-performing loans" if npl_loans else ""
    if not_run:
        ran = [cid for cid in NPL_INSPECTION_CHECKS if cid not in not_run]
        return Highlight("Inspected as required", f"{inspected:,}",
                         "; ".join(x for x in (note, f"by {', '.join(ran)} only; did not run: "
                                                     + _not_run_text(not_run, outcomes)) if x))
    return Highlight("Inspected as required", f"{inspected:,}", note, "ok" if not missed else "breach",
                     "all as required" if not missed else "not all as required")


def _not_run_text(not_run, outcomes) -> str:
    """``id (status: reason)`` of each check that did not run cleanly, or ``id (not in this run)``."""
    parts = []
    for cid in not_run:
        if cid not in outcomes:
            parts.append(f"{cid} (not in this run)")
        else:
            _, status, reason = outcomes[cid]
            parts.append(f"{cid} ({status}: {reason})" if reason else f"{cid} ({status})")
    return "; ".join(parts)
