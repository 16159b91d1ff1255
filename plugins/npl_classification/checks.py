"""Checks around the classification: mis-recorded classes, early upgrades, provisions,
portfolio indicators and concentration against net capital."""

from loanrules import Check, Param, ParamType, Severity
from loanrules.sqltext import NON_PERFORMING, rank_case, yuan

from .classify import MEASURES_2023

_NPL = NON_PERFORMING


def _percent(numerator: str, denominator: str) -> str:
    return f"printf('%.2f%%', 100.0 * ({numerator}) / ({denominator}))"


UNDER_CLASSIFIED = Check(
    id="classification.under_classified",
    title="Recorded class better than the computed class",
    severity=Severity.CRITICAL,
    tables=("loans", "assessments"),
    reference=f"{MEASURES_2023}: under-classification is what examiners look for first",
    description="The cooperative's recorded_class is better than the class the five-category rules give; "
                "the finding's details carry the computed class and the reasons.",
    sql=f"""
        SELECT a.loan_id, a.borrower_id,
               'recorded ' || a.recorded_class || ', computed ' || a.risk_class AS message,
               json_object('recorded_class', a.recorded_class, 'risk_class', a.risk_class,
                           'reasons', json(a.reasons)) AS details
        FROM assessments a
        WHERE a.recorded_class IS NOT NULL
          AND {rank_case('a.recorded_class')} < {rank_case('a.risk_class')}
    """,
)

OVER_CLASSIFIED = Check(
    id="classification.over_classified",
    title="Recorded class worse than the computed class",
    severity=Severity.INFO,
    tables=("loans", "assessments"),
    reference=MEASURES_2023,
    description="Prudent, but worth knowing: the recorded class is worse than the rules require (for example "
                "a loan classified on the borrower's credit rating, as the 2007 Guidelines allowed).",
    sql=f"""
        SELECT a.loan_id, a.borrower_id,
               'recorded ' || a.recorded_class || ', computed ' || a.risk_class AS message,
               json_object('recorded_class', a.recorded_class, 'risk_class', a.risk_class) AS details
        FROM assessments a
        WHERE a.recorded_class IS NOT NULL
          AND {rank_case('a.recorded_class')} > {rank_case('a.risk_class')}
    """,
)

# "N months before" the as-of, never past a month's end: SQLite's own
# date('2026-08-31', '-6 months') rolls over to 2026-03-03.
_MONTHS_BEFORE = ("min(date(:as_of, '-' || {n} || ' months'), "
                  "date(:as_of, 'start of month', '-' || {n} || ' months', '+1 month', '-1 day'))")

EARLY_UPGRADE = Check(
    id="classification.early_upgrade",
    title="Non-performing loan upgraded before the upgrade conditions hold",
    severity=Severity.CRITICAL,
    tables=("loans",),
    needs_history=True,
    params=(Param("months", 6, ParamType.INTEGER,
                  "months of normal repayment after the loan was last non-performing"),
            Param("history_months", 24, ParamType.INTEGER,
                  "how far back the stored history is read for a loan's last non-performing as-of")),
    reference=f"{MEASURES_2023}: upgrade out of non-performing only once arrears are cleared and then 2 periods "
              "or 6 months of normal repayment (REFERENCE.md §1)",
    description="A loan recorded or computed non-performing at an earlier as-of of this cooperative (within "
                "`history_months`) is now recorded performing (normal or special mention) while principal or "
                "interest is still overdue, or before `months` full months have passed since that as-of (a "
                "loan last non-performing exactly six months ago may be upgraded). A loan the rules still make "
                "non-performing today is left to classification.under_classified.",
    sql=f"""
        WITH last_npl AS (
            SELECT loan_id, max(as_of) AS as_of FROM (
                SELECT loan_id, as_of FROM history_loans
                WHERE recorded_class IN {_NPL} AND as_of > {_MONTHS_BEFORE.format(n=':history_months')}
                UNION ALL
                SELECT loan_id, as_of FROM history_assessments
                WHERE risk_class IN {_NPL} AND as_of > {_MONTHS_BEFORE.format(n=':history_months')}
            ) GROUP BY loan_id
        )
        SELECT l.loan_id, l.borrower_id,
               'recorded ' || l.recorded_class || ' although non-performing on ' || n.as_of ||
               CASE WHEN l.days_past_due > 0 OR coalesce(l.interest_arrears, 0) > 0
                    THEN ', with arrears not cleared' ELSE ', less than ' || :months || ' months ago' END
               AS message,
               json_object('last_non_performing', n.as_of, 'days_past_due', l.days_past_due,
                           'interest_arrears_fen', l.interest_arrears, 'months_required', :months) AS details
        FROM loans l JOIN last_npl n ON n.loan_id = l.loan_id
        LEFT JOIN assessments a ON a.loan_id = l.loan_id
        WHERE l.recorded_class IN ('normal', 'special_mention') AND coalesce(l.written_off, 0) = 0
          -- still non-performing by the rules today: under_classified reports it, not this check
          AND coalesce(a.risk_class, 'normal') NOT IN {_NPL}
          AND (l.days_past_due > 0 OR coalesce(l.interest_arrears, 0) > 0
               OR n.as_of > {_MONTHS_BEFORE.format(n=':months')})
    """,
)

PROVISION_SHORTFALL = Check(
    id="provision.shortfall",
    title="Recorded provision below the required provision",
    severity=Severity.WARNING,
    tables=("loans", "assessments"),
    reference="PBoC Guidelines on Loan Loss Provisioning (2002) (REFERENCE.md §2)",
    description="The loan's recorded provision is below required_provision (outstanding principal × the rate of "
                "its computed class). Loans with no recorded provision are not judged.",
    sql=f"""
        SELECT a.loan_id, a.borrower_id,
               'provision ' || {yuan('l.provision')} || ' yuan, required ' || {yuan('a.required_provision')}
               || ' yuan (' || a.risk_class || ')' AS message,
               json_object('provision_fen', l.provision, 'required_provision_fen', a.required_provision,
                           'shortfall_fen', a.required_provision - l.provision, 'risk_class', a.risk_class)
               AS details
        FROM assessments a JOIN loans l ON l.loan_id = a.loan_id
        WHERE l.provision IS NOT NULL AND l.provision < a.required_provision
    """,
)

_BOOK = f"""
    SELECT sum(l.outstanding_principal) AS outstanding,
           sum(CASE WHEN a.risk_class IN {_NPL} THEN l.outstanding_principal ELSE 0 END) AS npl,
           sum(coalesce(l.provision, 0)) AS provision
    FROM loans l JOIN assessments a ON a.loan_id = l.loan_id
"""

NPL_RATIO = Check(
    id="portfolio.npl_ratio",
    title="Non-performing loan ratio above the limit",
    severity=Severity.WARNING,
    tables=("loans", "assessments"),
    params=(Param("max_ratio", "0.05", ParamType.DECIMAL, "largest NPL ratio (computed classes)"),),
    reference="CBRC core indicators for risk supervision: NPL ratio at most 5% (REFERENCE.md §2)",
    sql=f"""
        SELECT 'NPL ratio ' || {_percent('npl', 'outstanding')} || ' above ' ||
               printf('%.2f%%', 100.0 * :max_ratio) AS message,
               json_object('npl_fen', npl, 'outstanding_fen', outstanding, 'max_ratio', :max_ratio) AS details
        FROM ({_BOOK}) WHERE outstanding > 0
          AND npl * 10000 > outstanding * CAST(round(:max_ratio * 10000) AS INTEGER)
    """,
)

LOAN_PROVISION_RATIO = Check(
    id="portfolio.loan_provision_ratio",
    title="Loan provision ratio below the requirement",
    severity=Severity.WARNING,
    tables=("loans", "assessments"),
    params=(Param("min_ratio", "0.025", ParamType.DECIMAL, "provisions / loans, at least"),),
    reference="CBRC 2011 No. 4 (2.5%; since 2018 No. 7 set per bank within 1.5–2.5%) (REFERENCE.md §2)",
    sql=f"""
        SELECT 'loan provision ratio ' || {_percent('provision', 'outstanding')} || ' below ' ||
               printf('%.2f%%', 100.0 * :min_ratio) AS message,
               json_object('provision_fen', provision, 'outstanding_fen', outstanding, 'min_ratio', :min_ratio)
               AS details
        FROM ({_BOOK}) WHERE outstanding > 0
          AND provision * 100000 < outstanding * CAST(round(:min_ratio * 100000) AS INTEGER)
    """,
)

PROVISION_COVERAGE = Check(
    id="portfolio.provision_coverage",
    title="Provision coverage ratio below the requirement",
    severity=Severity.WARNING,
    tables=("loans", "assessments"),
    params=(Param("min_ratio", "1.50", ParamType.DECIMAL, "provisions / non-performing loans, at least"),),
    reference="CBRC 2011 No. 4 (150%; since 2018 No. 7 set per bank within 120–150%) (REFERENCE.md §2)",
    description="Judged only when the book has non-performing loans.",
    sql=f"""
        SELECT 'provision coverage ' || {_percent('provision', 'npl')} || ' below ' ||
               printf('%.0f%%', 100.0 * :min_ratio) AS message,
               json_object('provision_fen', provision, 'npl_fen', npl, 'min_ratio', :min_ratio) AS details
        FROM ({_BOOK}) WHERE npl > 0
          AND provision * 10000 < npl * CAST(round(:min_ratio * 10000) AS INTEGER)
    """,
)

SINGLE_BORROWER = Check(
    id="concentration.single_borrower",
    title="Single borrower above its share of net capital",
    severity=Severity.CRITICAL,
    tables=("loans", "borrower_facts"),
    needs_net_capital=True,
    params=(Param("max_share", "0.10", ParamType.DECIMAL, "one borrower's outstanding / net capital, at most"),),
    reference="Commercial Banking Law of the PRC, Art. 39: loans to one borrower at most 10% of net capital",
    sql=f"""
        SELECT borrower_id,
               'exposure ' || {yuan('exposure')} || ' yuan is ' || {_percent('exposure', ':net_capital')} ||
               ' of net capital' AS message,
               json_object('exposure_fen', exposure, 'net_capital_fen', :net_capital, 'max_share', :max_share)
               AS details
        FROM borrower_facts
        WHERE exposure * 10000 > :net_capital * CAST(round(:max_share * 10000) AS INTEGER)
    """,
)

SINGLE_GROUP = Check(
    id="concentration.single_group",
    title="Group of related borrowers above its share of net capital",
    severity=Severity.CRITICAL,
    tables=("loans", "borrowers", "borrower_facts"),
    needs_net_capital=True,
    params=(Param("max_share", "0.15", ParamType.DECIMAL, "one group's outstanding / net capital, at most"),),
    reference="Single group of related borrowers at most 15% of net capital (REFERENCE.md §2 [S])",
    description="Groups are the borrowers sharing a group_id in borrowers.csv.",
    sql=f"""
        SELECT 'group ' || group_id || ': exposure ' || {yuan('exposure')} || ' yuan is ' ||
               {_percent('exposure', ':net_capital')} || ' of net capital' AS message,
               group_id AS subject,
               json_object('group_id', group_id, 'members', members, 'exposure_fen', exposure,
                           'net_capital_fen', :net_capital, 'max_share', :max_share) AS details
        FROM (SELECT group_id, count(*) AS members, sum(exposure) AS exposure
              FROM borrower_facts WHERE group_id IS NOT NULL GROUP BY group_id)
        WHERE exposure * 10000 > :net_capital * CAST(round(:max_share * 10000) AS INTEGER)
    """,
)

TOP_TEN = Check(
    id="concentration.top_ten",
    title="Ten largest borrowers above their share of net capital",
    severity=Severity.WARNING,
    tables=("loans", "borrower_facts"),
    needs_net_capital=True,
    params=(Param("max_share", "0.50", ParamType.DECIMAL,
                  "the ten largest borrowers' outstanding / net capital, at most (older rule [U])"),),
    reference="Top ten borrowers at most 50% of net capital (REFERENCE.md §2 [U]: an older rule, a parameter)",
    sql=f"""
        SELECT 'ten largest borrowers: ' || {yuan('total')} || ' yuan, ' ||
               {_percent('total', ':net_capital')} || ' of net capital' AS message,
               json_object('exposure_fen', total, 'borrowers', borrowers, 'net_capital_fen', :net_capital,
                           'max_share', :max_share) AS details
        FROM (SELECT sum(exposure) AS total, json_group_array(borrower_id) AS borrowers
              FROM (SELECT borrower_id, exposure FROM borrower_facts
                    ORDER BY exposure DESC, borrower_id LIMIT 10))
        WHERE total * 10000 > :net_capital * CAST(round(:max_share * 10000) AS INTEGER)
    """,
)

CHECKS = (UNDER_CLASSIFIED, OVER_CLASSIFIED, EARLY_UPGRADE, PROVISION_SHORTFALL, NPL_RATIO, LOAN_PROVISION_RATIO,
          PROVISION_COVERAGE, SINGLE_BORROWER, SINGLE_GROUP, TOP_TEN)
