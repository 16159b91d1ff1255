"""Post-loan inspections and cash collections (REFERENCE.md §4: "inspect every NPL monthly and quarterly;
never collect loans in cash").

Every check is one SELECT run inside SQLite. A loan's inspections are found through the stored index on
(snapshot_id, loan_id, inspection_date, kind) (core/schema.py, INSPECTIONS): a correlated ``NOT EXISTS`` or
``max()`` reads that loan's few index entries, dates and kinds included, which is faster than grouping the
whole inspections table (measured: bench/bench_inspections.py). Each check first narrows the loans to the
ones that can fire (non-performing, originated in the window, not inspected lately) and looks up the dates
its message shows for those alone.

Conventions shared by the checks below:

* a loan is judged only while on the books (``written_off`` not 1);
* "non-performing" is the class computed in the same run when a classifier ran (``assessments``), else the
  recorded class: substandard, doubtful or loss; the details say which (``class_source``);
* inspections dated after the as-of do not count (a visit planned, or keyed in ahead, is not a visit made);
* "N days before the as-of" counts calendar days: an inspection on the as-of minus N days is within N days.
"""

from loanrules import Check, Derivation, Param, ParamType, Severity
from loanrules.sqltext import (
    NON_PERFORMING,
    current_class,
    days_after,
    days_before,
    days_between,
    non_performing,
    on_book,
    yuan,
)

PRACTICE = "Rural credit cooperative management guidance, post-loan management (REFERENCE.md §4)"
_CLASS_SOURCE = "CASE WHEN a.risk_class IS NOT NULL THEN 'computed' ELSE 'recorded' END"


def _before(days: str) -> str:
    """SQL: the ISO date ``days`` (an SQL integer expression) days before the as-of."""
    return days_before(":as_of", days)


def _days_since(date: str) -> str:
    return days_between(date, ":as_of")


# The non-performing loans on the books, with the class that made them so: the loans the two NPL checks judge,
# found once for both (a pass over every loan: 0.15 s at 1M). Their inspections are then looked up for them
# alone (left to itself, SQLite looked up every loan's before it joined the class).
NPL_LOANS = Derivation(
    id="inspection.npl_loans",
    table="npl_loans",
    columns=("loan_id", "borrower_id", "outstanding_principal", "risk_class", "class_source"),
    title="The non-performing loans on the books, with the class that made them so",
    tables=("loans", "assessments"),
    reference=f"{PRACTICE}: inspect every NPL monthly and quarterly",
    description="One row per loan on the books (not written off) that is non-performing (table `npl_loans`): "
                "its class (`risk_class`: the class computed in the same run when a classifier ran, else the "
                "recorded one: substandard, doubtful or loss) and where that class comes from (`class_source`: "
                "computed or recorded). Read by inspection.npl_monthly_missing and "
                "inspection.npl_quarterly_site_missing; it has no parameters of its own.",
    sql=f"""
        SELECT l.loan_id, l.borrower_id, l.outstanding_principal, {current_class()} AS risk_class,
               {_CLASS_SOURCE} AS class_source
        FROM loans l LEFT JOIN assessments a ON a.loan_id = l.loan_id
        WHERE {on_book()} AND {non_performing()}
    """,
)


def _npl_message(last: str, what: str, every: str) -> str:
    return (f"""'non-performing loan (' || risk_class || ', ' || class_source || ' class) of ' ||
               {yuan('outstanding_principal')} || ' yuan outstanding: ' ||
               CASE WHEN {last} IS NULL THEN 'no {what} on record'
                    ELSE 'last {what} on ' || {last} || ', ' || {_days_since(last)} || ' days ago' END ||
               ' (at least one every ' || {every} || ' days)'""")


NPL_MONTHLY_MISSING = Check(
    id="inspection.npl_monthly_missing",
    title="Non-performing loan not inspected in the last month",
    severity=Severity.WARNING,
    tables=("loans", "inspections", "assessments", NPL_LOANS.table),
    params=(Param("max_days", 31, ParamType.INTEGER,
                  "days within which a non-performing loan must have been inspected (any kind)"),),
    reference=f"{PRACTICE}: inspect every NPL monthly and quarterly",
    description="A non-performing loan on the books (computed class substandard, doubtful or loss when a "
                "classifier ran in the same run, else the recorded class; written-off loans are not judged) "
                "with no inspection of any kind dated within `max_days` (31) days before the as-of. The last "
                "inspection exactly 31 days before the as-of is fine, 32 days fires; so does a loan never "
                "inspected. Inspections dated after the as-of do not count. The message gives the last "
                "inspection date (or none).",
    sql=f"""
        WITH npl AS (SELECT * FROM npl_loans),
        late AS MATERIALIZED (
            SELECT n.* FROM npl n
            WHERE NOT EXISTS (SELECT 1 FROM inspections i
                              WHERE i.loan_id = n.loan_id AND i.inspection_date >= {_before(':max_days')}
                                AND i.inspection_date <= :as_of)
        ),
        dated AS MATERIALIZED (
            SELECT k.*, (SELECT max(i.inspection_date) FROM inspections i
                         WHERE i.loan_id = k.loan_id AND i.inspection_date <= :as_of) AS last_inspection
            FROM late k
        )
        SELECT loan_id, borrower_id,
               {_npl_message('last_inspection', 'inspection', ':max_days')} AS message,
               json_object('risk_class', risk_class, 'class_source', class_source,
                           'outstanding_fen', outstanding_principal, 'last_inspection_date', last_inspection,
                           'days_since', {_days_since('last_inspection')}, 'max_days', :max_days) AS details
        FROM dated
    """,
)

_SITE_KINDS = "(SELECT value FROM json_each(:site_kinds))"

NPL_QUARTERLY_SITE_MISSING = Check(
    id="inspection.npl_quarterly_site_missing",
    title="Non-performing loan without an on-site inspection in the last quarter",
    severity=Severity.WARNING,
    tables=("loans", "inspections", "assessments", NPL_LOANS.table),
    params=(
        Param("max_days", 92, ParamType.INTEGER,
              "days within which a non-performing loan must have had an on-site inspection"),
        Param("site_kinds", "site", ParamType.TEXT_LIST,
              "inspection kinds that count as on site"),
    ),
    reference=f"{PRACTICE}: inspect every NPL monthly and quarterly",
    description="A non-performing loan on the books (computed class when a classifier ran in the same run, "
                "else the recorded class; written-off loans are not judged) with no on-site inspection (kind "
                "in `site_kinds`, default `site`) dated within `max_days` (92) days before the as-of. The last "
                "site inspection exactly 92 days before the as-of is fine, 93 days fires; so does a loan never "
                "inspected on site. Inspections dated after the as-of do not count. The message gives the last "
                "site inspection date (or none).",
    # A loan's inspections are read newest first, through the index on (loan, date, kind), up to the first on
    # site (max() read every one of the loan's to filter them).
    sql=f"""
        WITH npl AS (SELECT * FROM npl_loans),
        dated AS MATERIALIZED (
            SELECT n.*, (SELECT i.inspection_date FROM inspections i
                         WHERE i.loan_id = n.loan_id AND i.inspection_date <= :as_of
                           AND i.kind IN {_SITE_KINDS}
                         ORDER BY i.inspection_date DESC LIMIT 1) AS last_site
            FROM npl n
        )
        SELECT loan_id, borrower_id,
               {_npl_message('last_site', 'site inspection', ':max_days')} AS message,
               json_object('risk_class', risk_class, 'class_source', class_source,
                           'outstanding_fen', outstanding_principal, 'last_site_inspection_date', last_site,
                           'days_since', {_days_since('last_site')}, 'max_days', :max_days,
                           'site_kinds', json(:site_kinds)) AS details
        FROM dated
        WHERE last_site IS NULL OR last_site < {_before(':max_days')}
    """,
)

FIRST_VISIT_MISSING = Check(
    id="inspection.first_visit_missing",
    title="No inspection within the first month after lending",
    severity=Severity.WARNING,
    tables=("loans", "inspections"),
    params=(
        Param("within_days", 30, ParamType.INTEGER,
              "days after origination by which the first inspection must have been made"),
        Param("lookback_days", 365, ParamType.INTEGER,
              "only loans originated at most this many days before the as-of are judged (extracts usually keep "
              "only the recent inspections); 0 judges every loan"),
    ),
    reference=f"{PRACTICE}: post-loan management (the first post-loan inspection); 30 days is typical policy, "
              "a parameter",
    description="A loan on the books (not written off) with no inspection of any kind dated from its "
                "origination_date to origination_date + `within_days` (30) days, both inclusive. A loan is "
                "judged only once that window is over, when the as-of is later than origination + 30 days: a "
                "loan originated 30 days before the as-of is not judged yet, 31 days before fires if nothing "
                "was inspected in the window (an inspection on day 30 is in time, day 31 is late). Only loans "
                "originated at most `lookback_days` (365) days before the as-of are judged, since extracts keep "
                "only the recent inspection history (0: every loan). Loans without an origination date are not "
                "judged. The details give the first inspection after the window, if any.",
    # The loans whose window passed without an inspection first (an index lookup each, stopping at the first
    # inspection found); their first inspection since is looked up for those few only.
    sql=f"""
        WITH missed AS MATERIALIZED (
            SELECT l.loan_id, l.borrower_id, l.origination_date, l.outstanding_principal,
                   {days_after('l.origination_date', ':within_days')} AS window_end
            FROM loans l
            WHERE {on_book()} AND l.origination_date IS NOT NULL
              AND l.origination_date < {_before(':within_days')}
              AND (:lookback_days <= 0 OR l.origination_date >= {_before(':lookback_days')})
              AND NOT EXISTS (SELECT 1 FROM inspections i
                              WHERE i.loan_id = l.loan_id AND i.inspection_date >= l.origination_date
                                AND i.inspection_date <= {days_after('l.origination_date', ':within_days')})
        ),
        dated AS MATERIALIZED (
            SELECT m.*, (SELECT min(i.inspection_date) FROM inspections i
                         WHERE i.loan_id = m.loan_id AND i.inspection_date > m.window_end
                           AND i.inspection_date <= :as_of) AS first_later
            FROM missed m
        )
        SELECT loan_id, borrower_id,
               'originated on ' || origination_date || ' with no inspection within ' || :within_days ||
               ' days (by ' || window_end || '): ' ||
               CASE WHEN first_later IS NULL THEN 'not inspected since'
                    ELSE 'first inspected on ' || first_later || ', ' ||
                         {days_between('origination_date', 'first_later')} ||
                         ' days after origination' END AS message,
               json_object('origination_date', origination_date, 'window_end', window_end,
                           'within_days', :within_days, 'first_inspection_date', first_later,
                           'days_to_first_inspection',
                           {days_between('origination_date', 'first_later')},
                           'outstanding_fen', outstanding_principal) AS details
        FROM dated
    """,
)

_HOUSEHOLD = "b.borrower_type IN (SELECT value FROM json_each(:household_types))"
_SHORTER = "min(:household_interval_days, :other_interval_days)"
_INTERVAL = f"CASE WHEN {_HOUSEHOLD} THEN :household_interval_days ELSE :other_interval_days END"
_CUTOFF = (f"CASE WHEN {_HOUSEHOLD} THEN {_before(':household_interval_days')} "
           f"ELSE {_before(':other_interval_days')} END")

PERFORMING_OVERDUE = Check(
    id="inspection.performing_overdue",
    title="Performing loan not inspected within the interval for its borrower type",
    severity=Severity.INFO,
    tables=("loans", "inspections", "assessments"),
    params=(
        Param("household_types", "household, individual", ParamType.TEXT_LIST,
              "borrower types inspected every `household_interval_days`"),
        Param("household_interval_days", 180, ParamType.INTEGER,
              "largest gap, in days, between inspections of a performing loan to a household or individual"),
        Param("other_interval_days", 90, ParamType.INTEGER,
              "largest gap, in days, for every other borrower (businesses, enterprises, village collectives, "
              "and borrowers whose type is unknown)"),
    ),
    reference=f"{PRACTICE}: post-loan management; intervals per borrower type are typical policy, parameters",
    description="A performing loan on the books (not non-performing by the computed class when a classifier "
                "ran in the same run, else by the recorded class; written-off loans are not judged) whose last "
                "inspection, or its origination if that is later or there is no inspection, is more than the "
                "interval for its borrower type before the as-of: `household_interval_days` (180) for the "
                "`household_types` (household, individual), `other_interval_days` (90) for the others. Exactly "
                "180 days is fine for a household, 181 fires; 90 is fine for an enterprise, 91 fires. The type "
                "comes from borrowers.csv; a borrower missing from it (or the file itself), or one with no type, "
                "gets the other interval and the details say `borrower_type_known: false`. Inspections dated "
                "after the as-of do not count. A loan with neither an inspection nor an origination date is not "
                "judged.",
    # In three steps, each on fewer loans. First the performing loans not inspected within the shorter of the
    # two intervals: an index probe per loan, which finds the dates in the index (a set of the loans inspected
    # in that period, read from every inspection, cost 0.13 s more at 1M loans; so did max() per loan, and
    # its message's date, for every loan). Then, for those, the borrower's type and interval; a loan with the
    # longer interval is probed once more for an inspection within it. Last, the last inspection of the loans
    # that fire, for the message.
    sql=f"""
        WITH stale AS MATERIALIZED (
            SELECT l.loan_id, l.borrower_id, l.origination_date, l.outstanding_principal
            FROM loans l LEFT JOIN assessments a ON a.loan_id = l.loan_id
            WHERE {on_book()} AND coalesce({current_class()}, 'normal') NOT IN {NON_PERFORMING}
              AND (l.origination_date IS NULL OR l.origination_date < {_before(_SHORTER)})
              AND NOT EXISTS (SELECT 1 FROM inspections i
                              WHERE i.loan_id = l.loan_id AND i.inspection_date >= {_before(_SHORTER)}
                                AND i.inspection_date <= :as_of)
        ),
        overdue AS MATERIALIZED (
            SELECT s.*, b.borrower_type, b.borrower_id IS NOT NULL AS borrower_known, {_INTERVAL} AS interval_days,
                   (SELECT max(i.inspection_date) FROM inspections i
                    WHERE i.loan_id = s.loan_id AND i.inspection_date <= :as_of) AS last_inspection
            FROM stale s LEFT JOIN borrowers b ON b.borrower_id = s.borrower_id
            WHERE {_INTERVAL} <= {_SHORTER}
               OR ((s.origination_date IS NULL OR s.origination_date < {_CUTOFF})
                   AND NOT EXISTS (SELECT 1 FROM inspections i
                                   WHERE i.loan_id = s.loan_id AND i.inspection_date >= {_CUTOFF}
                                     AND i.inspection_date <= :as_of))
        ),
        dated AS (
            SELECT o.*, CASE WHEN last_inspection IS NULL OR origination_date > last_inspection
                             THEN origination_date ELSE last_inspection END AS since
            FROM overdue o
            WHERE coalesce(last_inspection, origination_date) IS NOT NULL
        )
        SELECT loan_id, borrower_id,
               'performing loan ' ||
               CASE WHEN last_inspection IS NULL THEN 'never inspected since origination on ' || origination_date
                    WHEN since = last_inspection THEN 'last inspected on ' || last_inspection
                    ELSE 'originated on ' || origination_date || ' after its last inspection on ' ||
                         last_inspection END ||
               ', ' || {_days_since('since')} || ' days ago (at most ' || interval_days || ' days for ' ||
               CASE WHEN borrower_type IS NULL THEN 'a borrower of unknown type'
                    ELSE 'a ' || replace(borrower_type, '_', ' ') || ' borrower' END || ')' AS message,
               json_object('last_inspection_date', last_inspection, 'origination_date', origination_date,
                           'since', since, 'days_since', {_days_since('since')}, 'interval_days', interval_days,
                           'borrower_type', borrower_type,
                           'borrower_type_known', json(CASE WHEN borrower_type IS NULL THEN 'false'
                                                            ELSE 'true' END),
                           'borrower_known', json(CASE WHEN borrower_known THEN 'true' ELSE 'false' END),
                           'outstanding_fen', outstanding_principal) AS details
        FROM dated
    """,
)

CASH_COLLECTED = Check(
    id="collection.cash_collected",
    title="Collection recovered in cash",
    severity=Severity.CRITICAL,
    tables=("loans", "collections"),
    params=(
        Param("cash_channels", "cash", ParamType.TEXT_LIST, "collection channels that count as cash"),
        Param("since_days", 0, ParamType.INTEGER,
              "0: every collection action in the snapshot; N > 0: only actions dated within N days before the "
              "as-of (from the as-of minus N days to the as-of, inclusive)"),
    ),
    reference=f"{PRACTICE}: never collect loans in cash",
    description="A collection action on a loan on the books (not written off) recorded with a channel in "
                "`cash_channels` (default `cash`): one finding per action, transfers, offsets and other channels "
                "are fine. By default (`since_days` 0) every action in the snapshot is judged; with `since_days` "
                "N > 0, only actions dated from the as-of minus N days to the as-of. The subject names the "
                "action (channel, date, action, officer and amount in fen), so two cash actions of one loan on "
                "one day are two findings with their own subjects; two rows alike in all of these (a row "
                "repeated in the extract) are two findings with the same subject.",
    # One pass over the collections (no index serves the channel); the few cash rows are joined to their loan.
    sql=f"""
        SELECT l.loan_id, l.borrower_id,
               c.channel || ':' || c.action_date || ':' || coalesce(c.action, '') || ':' ||
               coalesce(c.officer_id, '') || ':' || coalesce(c.amount_recovered, '') AS subject,
               coalesce(c.action, 'collection') || ' on ' || c.action_date ||
               coalesce(' by ' || c.officer_id, '') || ' recovered ' ||
               {yuan('coalesce(c.amount_recovered, 0)')} || ' yuan in ' || c.channel ||
               ': loans must never be collected in cash' AS message,
               json_object('action_date', c.action_date, 'action', c.action, 'officer_id', c.officer_id,
                           'amount_recovered_fen', c.amount_recovered, 'channel', c.channel,
                           'collection_officer_id', l.collection_officer_id,
                           'lending_officer_id', l.lending_officer_id) AS details
        FROM collections c JOIN loans l ON l.loan_id = c.loan_id
        WHERE c.channel IN (SELECT value FROM json_each(:cash_channels))
          AND (:since_days <= 0 OR (c.action_date >= {_before(':since_days')} AND c.action_date <= :as_of))
          AND {on_book()}
    """,
)

CHECKS = (NPL_MONTHLY_MISSING, NPL_QUARTERLY_SITE_MISSING, FIRST_VISIT_MISSING, PERFORMING_OVERDUE, CASH_COLLECTED)
