"""Fifteen realistic SQL checks and the pack ``bench-fifteen``: the workload of ``bench/bench_checks.py``.

A plugin like any third-party one (public API only), loaded with
``loanrules --plugins-dir bench/plugins``. Money is integer fen in SQL; the
pack sets the money thresholds, in yuan, and the core converts them to fen.
"""

from loanrules import Check, Pack, Param, ParamType, hookimpl

__version__ = "1"

NPL = "('substandard', 'doubtful', 'loss')"

CHECKS = (
    Check(
        id="bench.overdue_recorded_normal", title="Overdue beyond the limit but recorded normal", severity="critical",
        params=(Param("days", 90, ParamType.INTEGER, "days past due"),),
        sql="""
            SELECT loan_id, borrower_id, 'overdue ' || days_past_due || ' days, recorded normal' AS message,
                   json_object('days_past_due', days_past_due) AS details
            FROM loans WHERE days_past_due > :days AND recorded_class = 'normal'
        """,
    ),
    Check(
        id="bench.outstanding_exceeds_principal", title="Outstanding above the principal lent", severity="critical",
        sql="""
            SELECT loan_id, borrower_id, 'outstanding above principal' AS message
            FROM loans WHERE principal IS NOT NULL AND outstanding_principal > principal
        """,
    ),
    Check(
        id="bench.matured_not_overdue", title="Matured with a balance but not overdue", severity="critical",
        sql="""
            SELECT loan_id, borrower_id, 'matured ' || maturity_date || ', days_past_due 0' AS message
            FROM loans
            WHERE maturity_date < :as_of AND outstanding_principal > 0 AND days_past_due = 0
              AND coalesce(written_off, 0) = 0
        """,
    ),
    Check(
        id="bench.large_credit_loan", title="Large unsecured (credit) loan", severity="warning",
        params=(Param("limit", "300000", ParamType.MONEY, "yuan"),),
        sql="""
            SELECT loan_id, borrower_id, printf('credit loan of %d yuan', outstanding_principal / 100) AS message
            FROM loans WHERE guarantee_type = 'credit' AND outstanding_principal > :limit
        """,
    ),
    Check(
        id="bench.restructured_recorded_performing", title="Restructured in the last year, recorded performing",
        severity="warning",
        sql="""
            SELECT loan_id, borrower_id, 'restructured ' || restructured_date || ', recorded ' || recorded_class
                   AS message
            FROM loans
            WHERE restructured_date >= date(:as_of, '-1 year') AND recorded_class IN ('normal', 'special_mention')
        """,
    ),
    Check(
        id="bench.interest_arrears_high", title="Interest arrears above a share of the outstanding",
        severity="warning", params=(Param("share", "0.10", ParamType.DECIMAL, "of outstanding principal"),),
        sql="""
            SELECT loan_id, borrower_id, 'interest arrears above the share' AS message
            FROM loans WHERE interest_arrears > :share * outstanding_principal
        """,
    ),
    Check(
        id="bench.special_mention_underprovisioned", title="Special-mention loan provisioned below the rate",
        severity="warning", params=(Param("rate", "0.02", ParamType.DECIMAL, "minimum provision rate"),),
        sql="""
            SELECT loan_id, borrower_id, 'provision below the special-mention rate' AS message
            FROM loans
            WHERE recorded_class = 'special_mention' AND coalesce(provision, 0) < :rate * outstanding_principal
        """,
    ),
    Check(
        id="bench.written_off_borrower", title="Live loan of a borrower with a written-off loan", severity="critical",
        sql="""
            SELECT l.loan_id, l.borrower_id, 'borrower has a written-off loan' AS message
            FROM loans l JOIN (SELECT DISTINCT borrower_id FROM loans WHERE written_off = 1) w
                 ON w.borrower_id = l.borrower_id
            WHERE coalesce(l.written_off, 0) = 0
        """,
    ),
    Check(
        id="bench.borrower_exposure", title="Borrower's exposure above the limit", severity="warning",
        tables=("loans", "borrower_facts"), params=(Param("limit", "5000000", ParamType.MONEY, "yuan"),),
        sql="""
            SELECT borrower_id, printf('exposure %d yuan over %d loans', exposure / 100, loan_count) AS message
            FROM borrower_facts WHERE exposure > :limit
        """,
    ),
    Check(
        id="bench.shared_collateral", title="Collateral pledged for several borrowers", severity="warning",
        tables=("collateral", "pledges", "loans", "collateral_facts"),
        sql="""
            SELECT collateral_id, 'pledged for ' || borrower_count || ' borrowers' AS message
            FROM collateral_facts WHERE borrower_count > 1
        """,
    ),
    Check(
        id="bench.collateral_over_pledged", title="Secured amounts above the appraised value", severity="warning",
        tables=("collateral", "pledges", "loans", "collateral_facts"),
        params=(Param("max_ltv", "1.0", ParamType.DECIMAL, "secured / appraised"),),
        sql="""
            SELECT collateral_id, 'secured amounts above the appraised value' AS message
            FROM collateral_facts WHERE secured_amount > :max_ltv * appraised_value
        """,
    ),
    Check(
        id="bench.performing_loan_of_npl_borrower", title="Loan recorded normal while the borrower has an NPL",
        severity="critical", tables=("loans", "borrower_facts"),
        sql=f"""
            SELECT l.loan_id, l.borrower_id, 'recorded normal; borrower worst class ' || f.worst_recorded_class
                   AS message
            FROM loans l JOIN borrower_facts f ON f.borrower_id = l.borrower_id
            WHERE l.recorded_class = 'normal' AND f.worst_recorded_class IN {NPL}
        """,
    ),
    Check(
        id="bench.maturity_before_origination", title="Maturity before origination", severity="warning",
        sql="""
            SELECT loan_id, borrower_id, 'matures before it was granted' AS message
            FROM loans WHERE maturity_date < origination_date
        """,
    ),
    Check(
        id="bench.npl_without_recent_collection", title="Non-performing loan with no recent collection action",
        severity="warning", tables=("loans", "collections"),
        params=(Param("days", 90, ParamType.INTEGER, "days without a collection action"),),
        sql="""
            SELECT l.loan_id, l.borrower_id, 'no collection action in ' || :days || ' days' AS message
            FROM loans l
            WHERE l.days_past_due > 90 AND coalesce(l.written_off, 0) = 0
              AND NOT EXISTS (SELECT 1 FROM collections c WHERE c.loan_id = l.loan_id
                              AND c.action_date >= date(:as_of, '-' || :days || ' days'))
        """,
    ),
    Check(
        id="bench.top_ten_exposure", title="The ten largest borrowers' share of the book", severity="info",
        tables=("loans", "borrower_facts"),
        sql="""
            SELECT borrower_id, printf('exposure %d yuan, %.2f%% of the book', exposure / 100,
                   100.0 * exposure / (SELECT sum(exposure) FROM borrower_facts)) AS message
            FROM borrower_facts ORDER BY exposure DESC LIMIT 10
        """,
    ),
)

# The pack's own thresholds (yuan; the core converts money parameters to fen).
PACK_PARAMS = {
    "bench.large_credit_loan": {"limit": "500000"},
    "bench.borrower_exposure": {"limit": "5000000"},
}


@hookimpl
def register_checks(register):
    for check in CHECKS:
        register(check)


@hookimpl
def register_packs(register):
    register(Pack(
        name="bench-fifteen", version="1", title="Benchmark: fifteen SQL checks",
        members={check.id: {"params": PACK_PARAMS.get(check.id, {})} for check in CHECKS},
    ))
