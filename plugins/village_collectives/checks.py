"""Village collective checks: large exposure, interest arrears, long overdue loans, the book's share, and land
transfer as the moment to collect (REFERENCE.md §4, the cooperatives' own practice)."""

from loanrules import Check, Param, ParamType, Severity
from loanrules.sqltext import (
    basis_points,
    current_class,
    days_after,
    days_between,
    non_performing,
    on_book,
    percent_text,
    ratio,
    yuan,
)

PRACTICE = "Rural credit cooperative management guidance, village collective loans (REFERENCE.md §4)"

# Every check names the village collectives with the same parameter, so one value in a config means one thing.
COLLECTIVE_TYPES = Param(
    "collective_types", "village_collective", ParamType.TEXT_LIST,
    "borrowers.borrower_type values that count as village collectives",
)


def _collective_loans(joins: str = "") -> str:
    """SQL: FROM ... WHERE ... over the collectives (``b``) and their loans on the books (``l``), ``joins`` after
    them; the caller may add ``AND`` conditions.

    The borrowers (borrowers.csv) whose borrower_type is one of ``collective_types``, then their loans through
    the (snapshot, borrower) index; written-off loans are not judged. A loan whose borrower is missing from
    borrowers.csv, or has no type, is not a collective's. CROSS JOIN keeps SQLite to that order (one pass over
    the borrowers, a few index lookups of loans) instead of looking up the borrower of every loan of the book:
    0.12 s instead of 0.55 s over 1M loans. It stays plain SQL elsewhere (the join condition is in the WHERE).
    """
    return f"""
        borrowers b CROSS JOIN loans l {joins}
        WHERE l.borrower_id = b.borrower_id AND b.borrower_type IN (SELECT value FROM json_each(:collective_types))
          AND {on_book()}
    """


_COLLECTIVE_LOANS = _collective_loans()
_COLLECTIVES_DOC = ("A village collective is a borrower whose borrowers.borrower_type is one of `collective_types` "
                    "(village_collective); its loans on the books are the ones not written off.")


def _collective(alias: str) -> str:
    """SQL text naming a collective in a message: 'village collective CU1 (青山村)'."""
    return f"'village collective ' || {alias}.borrower_id || coalesce(' (' || {alias}.village || ')', '')"


def _loans_json(alias: str) -> str:
    """SQL: the loans on the books of the borrower ``{alias}.borrower_id``, as a JSON array (built only for the
    findings' rows, through the (snapshot, borrower) index)."""
    return f"""
        (SELECT json_group_array(json_object('loan_id', loan_id, 'outstanding_fen', outstanding_principal,
                                             'interest_arrears_fen', interest_arrears,
                                             'days_past_due', days_past_due))
         FROM (SELECT loan_id, outstanding_principal, interest_arrears, days_past_due FROM loans
               WHERE borrower_id = {alias}.borrower_id AND {on_book('')} ORDER BY loan_id))
    """

# One row per village collective with loans on the books: its exposure and interest in arrears.
_PER_COLLECTIVE = f"""
    SELECT b.borrower_id, b.village, count(*) AS loan_count, sum(l.outstanding_principal) AS exposure,
           sum(coalesce(l.interest_arrears, 0)) AS arrears
    FROM {_COLLECTIVE_LOANS}
    GROUP BY b.borrower_id
"""

LARGE_EXPOSURE = Check(
    id="village.large_exposure",
    title="Village collective with a large outstanding principal",
    severity=Severity.WARNING,
    tables=("loans", "borrowers"),
    params=(
        COLLECTIVE_TYPES,
        Param("max_exposure", "5000000.00", ParamType.MONEY,
              "largest outstanding principal of one village collective, all its loans on the books together"),
    ),
    reference=f"{PRACTICE}: village collective loans are large amounts, hard to collect; watch concentration",
    description=f"{_COLLECTIVES_DOC} One finding per village collective (subject: the borrower) whose outstanding "
                "principal, all its loans on the books together, is strictly above `max_exposure` "
                "(5,000,000.00 yuan): exactly 5,000,000.00 is fine, 5,000,000.01 fires. The details list its "
                "loans.",
    sql=f"""
        SELECT x.borrower_id,
               {_collective('x')} || ': outstanding principal ' || {yuan('x.exposure')} || ' yuan over ' ||
               x.loan_count || CASE x.loan_count WHEN 1 THEN ' loan' ELSE ' loans' END || ', above ' ||
               {yuan(':max_exposure')} || ' yuan' AS message,
               json_object('borrower_id', x.borrower_id, 'village', x.village, 'exposure_fen', x.exposure,
                           'max_exposure_fen', :max_exposure, 'loan_count', x.loan_count,
                           'loans', json({_loans_json('x')})) AS details
        FROM ({_PER_COLLECTIVE}) x
        WHERE x.exposure > :max_exposure
    """,
)

INTEREST_ARREARS = Check(
    id="village.interest_arrears",
    title="Village collective with large interest arrears",
    severity=Severity.WARNING,
    tables=("loans", "borrowers"),
    params=(
        COLLECTIVE_TYPES,
        Param("max_arrears_share", "0.10", ParamType.DECIMAL,
              "largest interest in arrears of one village collective as a share of its outstanding principal"),
        Param("max_arrears", "100000.00", ParamType.MONEY,
              "largest interest in arrears of one village collective, in yuan"),
    ),
    reference=f"{PRACTICE}: village collective loans carry large interest arrears",
    description=f"{_COLLECTIVES_DOC} Judged per village collective (subject: the borrower), over all its loans on "
                "the books together: its interest in arrears (loans.interest_arrears, blank counts as 0) strictly "
                "above `max_arrears_share` (10%) of its outstanding principal, or strictly above `max_arrears` "
                "(100,000.00 yuan). Exactly 10% is fine, above it fires (compared exactly, the share in basis "
                "points); 100,000.00 is fine, 100,000.01 fires. `details.reason` says which: `share`, `amount` "
                "or `share_and_amount` (and `details.reasons` lists them). A collective with no outstanding "
                "principal left is judged by the amount only.",
    sql=f"""
        SELECT borrower_id,
               {_collective('y')} || ': interest in arrears ' || {yuan('y.arrears')} || ' yuan, ' ||
               {percent_text('y.arrears', 'y.exposure')} || ' of its outstanding principal ' ||
               {yuan('y.exposure')} || ' yuan: above ' ||
               CASE WHEN y.over_share AND y.over_amount
                    THEN printf('%.2f%%', :max_arrears_share * 100) || ' and above ' || {yuan(':max_arrears')} ||
                         ' yuan'
                    WHEN y.over_share THEN printf('%.2f%%', :max_arrears_share * 100)
                    ELSE {yuan(':max_arrears')} || ' yuan' END AS message,
               json_object('borrower_id', y.borrower_id, 'village', y.village,
                           'reason', CASE WHEN y.over_share AND y.over_amount THEN 'share_and_amount'
                                          WHEN y.over_share THEN 'share' ELSE 'amount' END,
                           'reasons', json(CASE WHEN y.over_share AND y.over_amount THEN '["share","amount"]'
                                                WHEN y.over_share THEN '["share"]' ELSE '["amount"]' END),
                           'interest_arrears_fen', y.arrears, 'exposure_fen', y.exposure,
                           'share', {ratio('y.arrears', 'y.exposure')}, 'max_arrears_share', :max_arrears_share,
                           'max_arrears_fen', :max_arrears, 'loan_count', y.loan_count,
                           'loans', json({_loans_json('y')})) AS details
        FROM (SELECT x.*,
                     x.exposure > 0 AND x.arrears * 10000 > x.exposure * {basis_points(':max_arrears_share')}
                     AS over_share,
                     x.arrears > :max_arrears AS over_amount
              FROM ({_PER_COLLECTIVE}) x) y
        WHERE y.over_share OR y.over_amount
    """,
)

LONG_OVERDUE = Check(
    id="village.long_overdue",
    title="Village collective loan overdue more than three years",
    severity=Severity.CRITICAL,
    tables=("loans", "borrowers"),
    params=(
        COLLECTIVE_TYPES,
        Param("max_overdue_days", 1095, ParamType.INTEGER,
              "most days past due of a village collective loan (three years counted as 3 x 365 = 1095 days)"),
    ),
    reference=f"{PRACTICE}: village collective loans span long times and are hard to collect",
    description=f"{_COLLECTIVES_DOC} One finding per loan (subject: the loan and its borrower) whose "
                "days_past_due is strictly above `max_overdue_days` (1095): three years are counted as "
                "3 x 365 = 1095 days from the recorded days past due, leap days ignored, so 1095 days is fine "
                "and 1096 fires.",
    sql=f"""
        SELECT l.loan_id, l.borrower_id,
               {_collective('b')} || ': loan ' || l.loan_id || ' overdue ' || l.days_past_due || ' days (' ||
               printf('%.1f', l.days_past_due / 365.0) || ' years), more than ' || :max_overdue_days ||
               ' days; outstanding ' || {yuan('l.outstanding_principal')} || ' yuan, interest in arrears ' ||
               {yuan('coalesce(l.interest_arrears, 0)')} || ' yuan' AS message,
               json_object('village', b.village, 'days_past_due', l.days_past_due,
                           'max_overdue_days', :max_overdue_days, 'outstanding_fen', l.outstanding_principal,
                           'interest_arrears_fen', l.interest_arrears, 'recorded_class', l.recorded_class,
                           'maturity_date', l.maturity_date) AS details
        FROM {_COLLECTIVE_LOANS}
          AND l.days_past_due > :max_overdue_days
    """,
)

PORTFOLIO_SHARE = Check(
    id="village.portfolio_share",
    title="Village collectives' share of the book above its limit",
    severity=Severity.WARNING,
    tables=("loans", "borrowers"),
    params=(
        COLLECTIVE_TYPES,
        Param("max_share", "0.20", ParamType.DECIMAL,
              "largest share of the book's outstanding principal lent to village collectives"),
    ),
    reference=f"{PRACTICE}: village collective loans are large amounts; watch concentration",
    description=f"{_COLLECTIVES_DOC} One finding for the whole book (no loan or borrower: the subject is "
                "`portfolio`) when the village collectives' outstanding principal is strictly above `max_share` "
                "(20%) of the outstanding principal of every loan on the books (written-off loans left out of "
                "both): exactly 20% is fine, above it fires (compared exactly, the share in basis points).",
    # The book's total is one plain scan of the loans; the collectives' part goes through their borrowers.
    sql=f"""
        SELECT 'portfolio' AS subject,
               'village collectives owe ' || {yuan('v.exposure')} || ' yuan (' || v.borrower_count ||
               ' collectives, ' || v.loan_count || ' loans), ' || {percent_text('v.exposure', 't.total')} ||
               ' of the book''s outstanding principal ' || {yuan('t.total')} || ' yuan, above ' ||
               printf('%.2f%%', :max_share * 100) AS message,
               json_object('exposure_fen', v.exposure, 'book_fen', t.total,
                           'share', {ratio('v.exposure', 't.total')}, 'max_share', :max_share,
                           'borrower_count', v.borrower_count, 'loan_count', v.loan_count) AS details
        FROM (SELECT coalesce(sum(l.outstanding_principal), 0) AS exposure, count(*) AS loan_count,
                     count(DISTINCT l.borrower_id) AS borrower_count
              FROM {_COLLECTIVE_LOANS}) v
        CROSS JOIN (SELECT coalesce(sum(outstanding_principal), 0) AS total FROM loans
                    WHERE {on_book('')}) t
        WHERE v.exposure * 10000 > t.total * {basis_points(':max_share')}
    """,
)

LAND_TRANSFER = Check(
    id="village.land_transfer_opportunity",
    title="Non-performing village collective loan in a village expecting land transfer compensation",
    severity=Severity.CRITICAL,
    tables=("loans", "borrowers", "villages", "assessments"),
    params=(
        COLLECTIVE_TYPES,
        Param("window_days", 90, ParamType.INTEGER,
              "how many days after the as-of an expected land transfer counts as coming"),
    ),
    reference=f"{PRACTICE}: use land transfer and the development of suburban villages as the moment to collect",
    description=f"{_COLLECTIVES_DOC} One finding per non-performing village collective loan (subject: the loan "
                "and its borrower) whose borrower's village (borrowers.village, matched by name with "
                "villages.village) expects its land transfer on a day from the as-of itself to `window_days` (90) "
                "days after it: expected on the as-of + 90 days fires, + 91 does not; a date already past (before "
                "the as-of) does not fire (the compensation has presumably been paid, or the date is stale), nor "
                "does a village with no expected date. Non-performing: the computed risk class when the "
                "classification pack (cn-five-category) runs in the same run, else the recorded class "
                "(substandard, doubtful, loss). The message gives the expected compensation "
                "(villages.land_compensation_amount) beside the loan's outstanding principal and interest in "
                "arrears.",
    sql=f"""
        SELECT l.loan_id, l.borrower_id,
               v.village || ' expects land transfer compensation of ' ||
               CASE WHEN v.land_compensation_amount IS NULL THEN 'an amount not recorded'
                    ELSE {yuan('v.land_compensation_amount')} || ' yuan' END || ' on ' ||
               v.land_transfer_expected_date || ' (in ' ||
               {days_between(':as_of', 'v.land_transfer_expected_date')} || ' days): ' ||
               'the moment to collect loan ' || l.loan_id || ' of village collective ' || l.borrower_id ||
               ' (' || {current_class()} || ', outstanding ' ||
               {yuan('l.outstanding_principal')} || ' yuan, interest in arrears ' ||
               {yuan('coalesce(l.interest_arrears, 0)')} || ' yuan)' AS message,
               json_object('village', v.village, 'township', v.township,
                           'land_transfer_expected_date', v.land_transfer_expected_date,
                           'days_until_transfer',
                           {days_between(':as_of', 'v.land_transfer_expected_date')},
                           'land_compensation_fen', v.land_compensation_amount, 'window_days', :window_days,
                           'risk_class', {current_class()},
                           'class_source', CASE WHEN a.risk_class IS NOT NULL THEN 'computed' ELSE 'recorded' END,
                           'outstanding_fen', l.outstanding_principal, 'interest_arrears_fen', l.interest_arrears,
                           'days_past_due', l.days_past_due) AS details
        FROM {_collective_loans("JOIN villages v ON v.village = b.village "
                                "LEFT JOIN assessments a ON a.loan_id = l.loan_id")}
          AND v.land_transfer_expected_date >= :as_of
          AND v.land_transfer_expected_date <= {days_after(':as_of', ':window_days')}
          AND {non_performing()}
    """,
)

CHECKS = (LARGE_EXPOSURE, INTEREST_ARREARS, LONG_OVERDUE, PORTFOLIO_SHARE, LAND_TRANSFER)
