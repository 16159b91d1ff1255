"""Collateral checks: loan-to-value, valuation, appraisers, registration, site verification,
repeated mortgages and dynamic monitoring (REFERENCE.md §4, the cooperatives' own practice).

What the loans on the books add up to per collateral (exposure, loan and borrower counts, secured
amounts, non-performing loans, the earliest origination of its mortgage and pledge loans) comes from the
core's ``collateral_facts``, built once per run: each check used to join pledges to loans over the whole
book itself, and that join was most of their time (bench/bench_collateral.py). A check that reads the
facts lists them in ``tables``, so the run builds them (and times the build) only when such a check runs;
the loans and pledges are read directly only for the few collateral that make a finding.
"""

from loanrules import Check, Derivation, Param, ParamType, Severity
from loanrules.sqltext import basis_points, days_before, days_between, on_book, percent_text, yuan

PRACTICE = "Rural credit cooperative management guidance, collateral (REFERENCE.md §4)"
# A loan on the book (sqltext.on_book): not written off. Written-off loans keep their rows in some extracts but
# no longer count against the collateral that secured them.
_SECURED = "('mortgage', 'pledge')"

# Largest loan-to-value per collateral type: typical policy, not a regulation; every one a parameter.
LTV_DEFAULTS = (
    ("house", "0.70"),
    ("commercial_property", "0.60"),
    ("land_use_right", "0.50"),
    ("forest_right", "0.50"),
    ("equipment", "0.50"),
    ("vehicle", "0.50"),
    ("deposit", "0.90"),
    ("bond", "0.90"),
    ("other", "0.50"),
)
LTV_PARAMS = tuple(
    Param(f"max_ltv_{kind}", default, ParamType.DECIMAL,
          f"largest loan-to-value for {kind.replace('_', ' ')} collateral (typical policy)"
          + ("; also collateral with no type" if kind == "other" else ""))
    for kind, default in LTV_DEFAULTS
)
LTV_SOURCE = "LTV limits per collateral type: typical policy of rural credit cooperatives, parameters"


def _ltv_limit_bp(collateral_type: str) -> str:
    """SQL: the type's largest loan-to-value in basis points (integer); no type counts as `other`."""
    whens = " ".join(f"WHEN '{kind}' THEN {basis_points(f':max_ltv_{kind}')}"
                     for kind, _ in LTV_DEFAULTS if kind != "other")
    return f"CASE {collateral_type} {whens} ELSE {basis_points(':max_ltv_other')} END"


_LIMIT_BP = _ltv_limit_bp("f.collateral_type")  # over collateral_facts f


# The loans on the books a collateral secures, as a JSON array: built only for the findings' rows.
_LOANS_JSON = f"""
    (SELECT json_group_array(json_object('loan_id', loan_id, 'borrower_id', borrower_id, 'lien_rank', lien_rank,
                                         'outstanding_fen', outstanding_principal, 'secured_fen', secured_amount))
     FROM (SELECT l.loan_id, l.borrower_id, p.lien_rank, l.outstanding_principal, p.secured_amount
           FROM pledges p JOIN loans l ON l.loan_id = p.loan_id
           WHERE p.collateral_id = x.collateral_id AND {on_book('l')}
           ORDER BY coalesce(p.lien_rank, 1), l.loan_id))
"""

LTV_EXCEEDED = Check(
    id="collateral.ltv_exceeded",
    title="Loans secured by a collateral above its loan-to-value limit",
    severity=Severity.WARNING,
    tables=("loans", "collateral", "pledges", "collateral_facts"),
    params=LTV_PARAMS,
    reference=f"{PRACTICE}: review values prudently, no overestimation; {LTV_SOURCE}",
    description="For each collateral, the outstanding principal of every loan on the books it secures (all lien "
                "ranks together; written-off loans left out) divided by its appraised value, against the largest "
                "loan-to-value of its type (`max_ltv_house` ...; a collateral with no type counts as `other`). "
                "Strictly above the limit is a finding; exactly at it is not. The details list the loans with "
                "their lien ranks. Collateral with no appraised value is not judged here.",
    # The exposure per collateral from the facts; the loans' JSON is built for the findings alone.
    sql=f"""
        SELECT collateral_id,
               coalesce(collateral_type, 'collateral') || ' appraised at ' || {yuan('appraised_value')} ||
               ' yuan secures ' || {yuan('exposure')} || ' yuan: loan-to-value ' ||
               {percent_text('exposure', 'appraised_value')} || ' above ' || printf('%.2f%%', limit_bp / 100.0)
               AS message,
               json_object('exposure_fen', exposure, 'value_fen', appraised_value,
                           'ratio', CASE WHEN appraised_value > 0 THEN round(1.0 * exposure / appraised_value, 4)
                                    END,
                           'limit', limit_bp / 10000.0, 'collateral_type', collateral_type,
                           'loans', json({_LOANS_JSON})) AS details
        FROM (SELECT f.collateral_id, f.collateral_type, f.appraised_value, {_LIMIT_BP} AS limit_bp, f.exposure
              FROM collateral_facts f
              WHERE f.loan_count > 0 AND f.appraised_value IS NOT NULL) x
        WHERE exposure * 10000 > appraised_value * limit_bp
    """,
)

APPRAISAL_STALE = Check(
    id="collateral.appraisal_stale",
    title="Collateral appraisal older than the maximum age for its type",
    severity=Severity.WARNING,
    tables=("loans", "collateral", "pledges", "collateral_facts"),
    params=(
        Param("max_age_days", 365, ParamType.INTEGER,
              "largest age of an appraisal, in days, for real estate and rights (house, commercial property, "
              "land use right, forest right) and other collateral"),
        Param("movables_max_age_days", 180, ParamType.INTEGER,
              "largest age of an appraisal, in days, for the `movable_types`"),
        Param("movable_types", "equipment, vehicle", ParamType.TEXT_LIST,
              "collateral types whose value moves faster, judged against `movables_max_age_days`"),
        Param("exempt_types", "deposit, bond", ParamType.TEXT_LIST,
              "collateral types held at face value, never stale"),
    ),
    reference=f"{PRACTICE}: monitor collateral dynamically (revaluation, value changes); maximum ages are "
              "typical policy, parameters",
    description="A collateral that secures a loan on the books (not written off) whose appraisal_date is more "
                "than `max_age_days` (365) days before the as-of, or `movables_max_age_days` (180) for equipment "
                "and vehicles; an appraisal exactly at the maximum age is not stale. A collateral with no "
                "appraisal date is reported as never appraised. Deposits and bonds (`exempt_types`) are valued "
                "at face and never stale.",
    # One pass over the facts: stale is a string comparison with two cut-off dates computed once (an appraisal
    # is more than N days old exactly when its date is before the as-of minus N days), and whether a loan on
    # the books is behind the collateral is its loan_count; the days are counted only for the findings.
    sql=f"""
        SELECT collateral_id,
               CASE WHEN appraisal_date IS NULL THEN coalesce(collateral_type, 'collateral') ||
                         ' has no appraisal date'
                    ELSE coalesce(collateral_type, 'collateral') || ' appraised on ' || appraisal_date || ', ' ||
                         age_days || ' days ago (at most ' || max_age_days || ')' END AS message,
               json_object('collateral_type', collateral_type, 'appraisal_date', appraisal_date,
                           'age_days', age_days, 'max_age_days', max_age_days, 'appraiser_id', appraiser_id)
               AS details
        FROM (SELECT f.collateral_id, f.collateral_type, f.appraisal_date, f.appraiser_id,
                     {days_between('f.appraisal_date', ':as_of')} AS age_days,
                     CASE WHEN f.collateral_type IN (SELECT value FROM json_each(:movable_types))
                          THEN :movables_max_age_days ELSE :max_age_days END AS max_age_days
              FROM collateral_facts f
              WHERE f.loan_count > 0
                AND (f.appraisal_date IS NULL
                     OR f.appraisal_date < CASE WHEN f.collateral_type IN (SELECT value FROM json_each(:movable_types))
                                                THEN {days_before(':as_of', ':movables_max_age_days')}
                                                ELSE {days_before(':as_of', ':max_age_days')} END)
                AND coalesce(f.collateral_type, 'other') NOT IN (SELECT value FROM json_each(:exempt_types)))
    """,
)

_APPRAISER_REASON = """
    CASE WHEN a.appraiser_id IS NULL THEN 'not_on_list'
         WHEN a.suspended = 1 THEN 'suspended'
         WHEN a.approved = 0 THEN 'not_approved'
         WHEN a.approved_until < c.appraisal_date THEN 'approval_expired' END
"""

APPRAISER_NOT_APPROVED = Check(
    id="collateral.appraiser_not_approved",
    title="Collateral appraised by an agency not on the approved list",
    severity=Severity.WARNING,
    tables=("collateral", "appraisers"),
    reference=f"{PRACTICE}: keep external appraisal agencies on an approved list and drop the ones that misbehave",
    description="A collateral whose appraiser_id is absent from appraisers.csv (`not_on_list`), suspended "
                "(suspended = 1), not approved (approved = 0), or whose approval ran out before the appraisal "
                "(approved_until earlier than appraisal_date: `approval_expired`). The first of these that holds "
                "is the reason. A blank approved or suspended is not held against the agency; a blank "
                "approved_until means no expiry. Collateral with no appraiser (deposits, bonds at face value) "
                "is not judged.",
    # The dozen agencies are copied once (MATERIALIZED) and looked up through a temporary index: cheaper per
    # collateral than the stored table's index and row.
    sql=f"""
        WITH a AS MATERIALIZED (SELECT appraiser_id, approved, suspended, approved_until FROM appraisers)
        SELECT collateral_id,
               'appraised by ' || appraiser_id || ': ' ||
               CASE reason WHEN 'not_on_list' THEN 'not on the approved list'
                           WHEN 'suspended' THEN 'suspended'
                           WHEN 'not_approved' THEN 'not approved'
                           ELSE 'approval expired on ' || approved_until || ', before the appraisal on ' ||
                                appraisal_date END AS message,
               json_object('reason', reason, 'appraiser_id', appraiser_id, 'appraisal_date', appraisal_date,
                           'approved', approved, 'suspended', suspended, 'approved_until', approved_until)
               AS details
        FROM (SELECT c.collateral_id, c.appraiser_id, c.appraisal_date, a.approved, a.suspended,
                     a.approved_until, {_APPRAISER_REASON} AS reason
              FROM collateral c LEFT JOIN a ON a.appraiser_id = c.appraiser_id
              WHERE +c.appraiser_id IS NOT NULL)  -- +: in key order, not through the agencies' partial index
        WHERE reason IS NOT NULL
    """,
)


def _secured_loans(collateral_filter: str) -> str:
    """SQL: each collateral f (of collateral_facts) that passes ``collateral_filter`` and a mortgage or pledge
    loan l on the books it secures. The facts pick the few collateral that can make a finding (they know
    whether a mortgage or pledge loan is behind one, and the earliest origination of those); the pledges
    and loans are read for those alone."""
    return f"""
        FROM collateral_facts f CROSS JOIN pledges p ON p.collateral_id = f.collateral_id
             CROSS JOIN loans l ON l.loan_id = p.loan_id
        WHERE f.secured_loan_count > 0 AND ({collateral_filter})
          AND l.guarantee_type IN {_SECURED} AND {on_book('l')}
    """


def _unregistered(origination_date: str) -> str:
    """SQL: collateral f is not registered, or registered more than :registration_days days after
    ``origination_date`` (a NULL date judges nothing late)."""
    return (f"coalesce(f.registration_status, 'none') != 'registered' "
            f"OR f.registration_date > date({origination_date}, '+' || :registration_days || ' days')")


NOT_REGISTERED = Check(
    id="collateral.not_registered",
    title="Collateral of a mortgage or pledge loan not registered, or registered late",
    severity=Severity.CRITICAL,
    tables=("loans", "collateral", "pledges", "collateral_facts"),
    params=(Param("registration_days", 30, ParamType.INTEGER,
                  "days after the loan's origination by which the collateral must be registered"),),
    reference=f"{PRACTICE}: register every mortgage; 30 days is typical policy, a parameter",
    description="For each mortgage or pledge loan on the books (not written off) and each collateral it "
                "pledges: registration_status other than `registered` (pending, none or blank), or a "
                "registration_date more than `registration_days` (30) days after the loan's origination_date "
                "(registered on day 30 is on time, day 31 is late). A registered collateral with no "
                "registration date, or a loan with no origination date, is not judged for lateness. One "
                "finding per loan and collateral.",
    sql=f"""
        SELECT l.loan_id, l.borrower_id, f.collateral_id,
               CASE WHEN f.registration_status = 'registered'
                    THEN 'collateral ' || f.collateral_id || ' registered on ' || f.registration_date || ', ' ||
                         {days_between('l.origination_date', 'f.registration_date')} ||
                         ' days after origination (at most ' || :registration_days || ')'
                    ELSE 'collateral ' || f.collateral_id || ' not registered (' ||
                         coalesce(f.registration_status, 'no status') || ')' END AS message,
               json_object('reason', CASE WHEN f.registration_status = 'registered' THEN 'registered_late'
                                          ELSE 'not_registered' END,
                           'registration_status', f.registration_status, 'registration_date', f.registration_date,
                           'origination_date', l.origination_date,
                           'days_after_origination', {days_between('l.origination_date', 'f.registration_date')},
                           'registration_days', :registration_days) AS details
        {_secured_loans(_unregistered('f.first_secured_origination'))}
          AND ({_unregistered('l.origination_date')})
    """,
)

NOT_SITE_VERIFIED = Check(
    id="collateral.not_site_verified",
    title="Collateral of a mortgage or pledge loan not verified on site",
    severity=Severity.WARNING,
    tables=("loans", "collateral", "pledges", "collateral_facts"),
    reference=f"{PRACTICE}: the officer verifies the collateral on site and takes part in the whole mortgage "
              "process",
    description="For each mortgage or pledge loan on the books (not written off) and each collateral it "
                "pledges: site_verified is 0 or blank. One finding per loan and collateral.",
    sql=f"""
        SELECT l.loan_id, l.borrower_id, f.collateral_id,
               'collateral ' || f.collateral_id || ' not verified on site' ||
               CASE WHEN f.site_verified IS NULL THEN ' (not recorded)' ELSE '' END AS message,
               json_object('collateral_type', f.collateral_type, 'site_verified', f.site_verified,
                           'lending_officer_id', l.lending_officer_id) AS details
        {_secured_loans('coalesce(f.site_verified, 0) = 0')}
    """,
)

MISSING = Check(
    id="collateral.missing",
    title="Mortgage or pledge loan with no collateral",
    severity=Severity.CRITICAL,
    tables=("loans", "pledges"),
    reference=f"{PRACTICE}: control what enters as collateral",
    description="A loan whose guarantee_type is mortgage or pledge, not written off, with outstanding principal, "
                "and no row in pledges.csv: the loan is recorded as secured but nothing secures it.",
    # The secured loans on the books EXCEPT the loans of pledges, both in loan order: SQLite merges the two
    # ordered index scans (MERGE (EXCEPT)) rather than looking each loan up in the pledges (0.22 s against
    # 0.41 s at 1M loans); the few loans left are read again for their columns. The LIMIT -1 (no limit)
    # keeps the ORDER BY, which SQLite otherwise drops from a subquery, falling back to a temporary b-tree.
    sql=f"""
        SELECT l.loan_id, l.borrower_id,
               l.guarantee_type || ' loan with ' || {yuan('l.outstanding_principal')} ||
               ' yuan outstanding has no collateral' AS message,
               json_object('guarantee_type', l.guarantee_type, 'outstanding_fen', l.outstanding_principal,
                           'origination_date', l.origination_date) AS details
        FROM (SELECT loan_id FROM loans
              WHERE guarantee_type IN {_SECURED} AND {on_book('loans')} AND outstanding_principal > 0
              EXCEPT SELECT loan_id FROM pledges ORDER BY 1 LIMIT -1) m
        CROSS JOIN loans l ON l.loan_id = m.loan_id
    """,
)

REPEATED_MORTGAGE = Check(
    id="collateral.repeated_mortgage",
    title="Collateral mortgaged twice",
    severity=Severity.CRITICAL,
    tables=("loans", "collateral", "pledges", "collateral_facts"),
    params=LTV_PARAMS,
    reference=f"{PRACTICE}: find defects and repeated mortgages (the same asset pledged twice); {LTV_SOURCE}",
    description="Three kinds, told apart by `details.reason` and the finding's subject: "
                "`same_lien_rank` — one collateral secures loans on the books of two or more borrowers at the "
                "same lien rank (a blank lien rank counts as first); "
                "`over_lending_limit` — the amounts the pledges secure (pledges.secured_amount) add up to more "
                "than the collateral's lending limit, its appraised value times the largest loan-to-value of its "
                "type (the same `max_ltv_*` parameters as collateral.ltv_exceeded; strictly above); "
                "`registration_no_shared` — one registration number on two or more collateral records (one "
                "finding per record, naming the others). Written-off loans are left out of the first two.",
    # The facts say which collateral can fire: loans on the books of two or more borrowers (two borrowers at
    # one rank), or an on-book secured total above the lending limit; both kinds come from one pass over the
    # facts (two passes cost 0.05 s more at 1M collateral), and the pledges and loans are read for those few
    # only. Registration numbers: the repeated ones from one ordered pass over the index on
    # (snapshot_id, registration_no), then their records by index lookups.
    sql=f"""
        WITH candidates AS MATERIALIZED (
            SELECT f.collateral_id, f.collateral_type, f.appraised_value, f.borrower_count, {_LIMIT_BP} AS limit_bp,
                   f.secured_amount AS secured
            FROM collateral_facts f
            WHERE f.borrower_count > 1
               OR (f.appraised_value IS NOT NULL AND f.secured_amount * 10000 > f.appraised_value * {_LIMIT_BP})
        ),
        on_book AS (
            SELECT p.collateral_id, coalesce(p.lien_rank, 1) AS lien_rank, l.loan_id, l.borrower_id
            FROM pledges p CROSS JOIN loans l ON l.loan_id = p.loan_id
            -- an IN list: joined from the facts, SQLite first built a Bloom filter over every pledge
            WHERE p.collateral_id IN (SELECT collateral_id FROM candidates WHERE borrower_count > 1)
              AND {on_book('l')}
            ORDER BY p.collateral_id, coalesce(p.lien_rank, 1), l.loan_id
        ),
        shared AS MATERIALIZED (
            SELECT collateral_id, registration_no FROM collateral
            WHERE registration_no IN (SELECT registration_no FROM collateral
                                      WHERE registration_no IS NOT NULL AND registration_no != ''
                                      GROUP BY registration_no HAVING count(*) > 1)
        ),
        shared_numbers AS MATERIALIZED (
            SELECT registration_no, json_group_array(collateral_id) AS records
            FROM (SELECT * FROM shared ORDER BY registration_no, collateral_id)
            GROUP BY registration_no
        )
        SELECT collateral_id, 'same_lien_rank:' || lien_rank AS subject,
               'secures loans of ' || count(DISTINCT borrower_id) || ' borrowers at lien rank ' || lien_rank
               AS message,
               json_object('reason', 'same_lien_rank', 'lien_rank', lien_rank,
                           'loans', json_group_array(json_object('loan_id', loan_id, 'borrower_id', borrower_id)))
               AS details
        FROM on_book GROUP BY collateral_id, lien_rank HAVING count(DISTINCT borrower_id) > 1
        UNION ALL
        SELECT collateral_id, 'over_lending_limit' AS subject,
               'pledges secure ' || {yuan('secured')} || ' yuan, above the lending limit of ' ||
               {yuan('appraised_value * limit_bp / 10000')} || ' yuan (' || printf('%.2f%%', limit_bp / 100.0) ||
               ' of ' || {yuan('appraised_value')} || ' yuan)' AS message,
               json_object('reason', 'over_lending_limit', 'secured_fen', secured, 'value_fen', appraised_value,
                           'limit', limit_bp / 10000.0, 'collateral_type', collateral_type,
                           'loans', json({_LOANS_JSON})) AS details
        FROM candidates x
        WHERE secured * 10000 > appraised_value * limit_bp
        UNION ALL
        SELECT n.collateral_id, 'registration_no:' || n.registration_no AS subject,
               'registration number ' || n.registration_no || ' is on ' || json_array_length(s.records) ||
               ' collateral records' AS message,
               json_object('reason', 'registration_no_shared', 'registration_no', n.registration_no,
                           'collateral', json(s.records)) AS details
        FROM shared n JOIN shared_numbers s ON s.registration_no = n.registration_no
    """,
)


_MIN_DROP = Param("min_drop", "0.20", ParamType.DECIMAL,
                  "a fall in appraised value of at least this share is reported")

# Dynamic monitoring compares today's collateral with the previous as-of's. Both history checks need only
# the collateral whose value, appraiser or appraisal date changed, or that is new since then (a few percent):
# the derivation finds them once for both (each check's own pass cost 0.45 s at 1M collateral), by merging the
# two snapshots' rows in key order (EXCEPT), then looks up the previous row of those few alone. The merge needs
# no sort because collateral_id is declared NOT NULL, which makes the key unique to SQLite (0.36 s against
# 0.52 s for a lookup per collateral, at 1M); in a database made before that declaration SQLite sorts each
# side's other columns (0.85 s) until `loanrules upgrade-db` rebuilds the table.
CHANGES = Derivation(
    id="collateral.changes",
    table="collateral_changes",
    columns=("collateral_id", "appraiser_id", "appraised_value", "appraisal_date", "in_previous",
             "previous_appraiser_id", "previous_value", "previous_appraisal_date"),
    title="Collateral revalued, or new, since the previous as-of",
    tables=("collateral",),
    needs_history=True,
    reference=f"{PRACTICE}: monitor collateral dynamically (revaluation, value changes)",
    description="One row per collateral of today's snapshot (table `collateral_changes`) whose appraised_value, "
                "appraiser_id or appraisal_date differs from its row at the cooperative's previous as-of, or "
                "that has no row then (`in_previous` 0, the `previous_*` columns NULL): today's values and the "
                "previous ones. Read by collateral.value_dropped and appraiser.overvaluation; it has no "
                "parameters of its own.",
    sql="""
        SELECT c.collateral_id, c.appraiser_id, c.appraised_value, c.appraisal_date,
               p.collateral_id IS NOT NULL AS in_previous, p.appraiser_id AS previous_appraiser_id,
               p.appraised_value AS previous_value, p.appraisal_date AS previous_appraisal_date
        FROM (SELECT collateral_id, appraiser_id, appraised_value, appraisal_date FROM collateral
              EXCEPT
              SELECT collateral_id, appraiser_id, appraised_value, appraisal_date FROM prev_collateral
              ORDER BY 1 LIMIT -1) c
        LEFT JOIN prev_collateral p ON p.collateral_id = c.collateral_id
    """,
)

VALUE_DROPPED = Check(
    id="collateral.value_dropped",
    title="Collateral value fell since the previous as-of",
    severity=Severity.WARNING,
    tables=("collateral", CHANGES.table),
    needs_history=True,
    params=(_MIN_DROP,),
    reference=f"{PRACTICE}: monitor collateral dynamically (revaluation, value changes)",
    description="A collateral whose appraised value fell by `min_drop` (20%) or more since the cooperative's "
                "previous as-of (exactly 20% is reported). Compared with the previous snapshot of the same "
                "collateral_id; collateral new since then, or without a value either time, is not judged.",
    # A value that fell changed: the derivation collateral.changes holds every candidate.
    sql=f"""
        SELECT c.collateral_id,
               'appraised value fell from ' || {yuan('c.previous_value')} || ' to ' ||
               {yuan('c.appraised_value')} || ' yuan (' ||
               {percent_text('c.previous_value - c.appraised_value', 'c.previous_value')} || ') since ' ||
               :previous_as_of AS message,
               json_object('previous_as_of', :previous_as_of, 'previous_value_fen', c.previous_value,
                           'value_fen', c.appraised_value,
                           'drop', round(1.0 * (c.previous_value - c.appraised_value) / c.previous_value, 4),
                           'min_drop', :min_drop, 'previous_appraisal_date', c.previous_appraisal_date,
                           'appraisal_date', c.appraisal_date, 'previous_appraiser_id', c.previous_appraiser_id,
                           'appraiser_id', c.appraiser_id) AS details
        FROM collateral_changes c
        WHERE c.in_previous AND c.previous_value > 0 AND c.appraised_value IS NOT NULL
          AND (c.previous_value - c.appraised_value) * 10000 >=
              c.previous_value * CAST(round(:min_drop * 10000) AS INTEGER)
    """,
)

OVERVALUATION = Check(
    id="appraiser.overvaluation",
    title="Appraisal agency that overvalues",
    severity=Severity.WARNING,
    # the bad-loan rates read the collateral facts, built from the pledges: without pledges.csv, skipped
    tables=("collateral", "pledges", "appraisers", "collateral_facts", CHANGES.table),
    needs_history=True,
    params=(
        _MIN_DROP,
        Param("min_collateral", 5, ParamType.INTEGER,
              "an agency is judged only over at least this many collateral"),
        Param("rate_multiple", "2.0", ParamType.DECIMAL,
              "an agency's share of collateral behind bad loans, at least this multiple of the book's, "
              "is reported"),
        *LTV_PARAMS,
    ),
    reference=f"{PRACTICE}: review values prudently, no overestimation; keep external appraisal agencies on an "
              f"approved list and drop the ones that misbehave; {LTV_SOURCE}",
    description="One finding per agency (the subject is its appraiser_id), for either of two reasons. "
                "`revalued_lower`: over the stored history (every earlier as-of and today), each time a "
                "collateral's appraiser changes, the last value this agency gave is compared with the first value "
                "the next agency gave; averaged over its collateral (the latest such change of each), the value "
                "fell by `min_drop` (20%) or more, over at least `min_collateral` (5) collateral. "
                "`bad_loan_rate`: today, of the agency's collateral securing loans on the books (at least "
                "`min_collateral`), the share that secures a non-performing loan (substandard, doubtful or "
                "loss: the class this run computed when the run classifies loans, else the recorded class) or "
                "breaches its loan-to-value limit (as collateral.ltv_exceeded) is `rate_multiple` (2) times the "
                "same share over the whole book or more. These are the agencies the guidance says to drop from "
                "the approved list.",
    # Each row of the history is compared with the same collateral's row at its latest earlier as-of (a key
    # lookup, no sort of the whole history): today's with the previous as-of's, from the derivation
    # collateral.changes (the rows whose appraiser can have changed; a new collateral's earlier row, if any, is
    # looked up), earlier rows with theirs (the earliest as-of has nothing before it and is not read). Only
    # the few rows whose appraiser changed go on. The bad-loan rates: each agency's collateral are counted
    # through the stored index on (snapshot_id, appraiser_id), in its order; one pass over the collateral facts
    # picks the few that are bad or behind no loan on the books (those are taken off the count), grouped by
    # agency. Grouping every collateral by agency instead sorted 1M rows (0.63 s against 0.24 s in all).
    sql=f"""
        WITH stepped AS MATERIALIZED (
            SELECT collateral_id, as_of, appraiser_id, appraised_value, before_appraiser
            FROM (SELECT c.collateral_id, :as_of AS as_of, c.appraiser_id, c.appraised_value,
                         CASE WHEN c.in_previous THEN c.previous_appraiser_id
                              ELSE (SELECT h.appraiser_id FROM history_collateral h
                                    WHERE h.collateral_id = c.collateral_id AND h.as_of < :previous_as_of
                                    ORDER BY h.as_of DESC LIMIT 1) END AS before_appraiser
                  FROM collateral_changes c
                  WHERE c.appraiser_id IS NOT NULL
                  UNION ALL
                  SELECT t.collateral_id, t.as_of, t.appraiser_id, t.appraised_value,
                         (SELECT h.appraiser_id FROM history_collateral h
                          WHERE h.collateral_id = t.collateral_id AND h.as_of < t.as_of
                          ORDER BY h.as_of DESC LIMIT 1) AS before_appraiser
                  FROM history_collateral t
                  -- in key order: the + and the LIMIT (no condition pushed down from outside) keep SQLite off
                  -- the agencies' partial index, whose order would scatter the lookups of the rows before
                  WHERE +t.appraiser_id IS NOT NULL
                    AND t.as_of > (SELECT as_of FROM history_collateral ORDER BY as_of LIMIT 1)
                  LIMIT -1)
            WHERE appraiser_id != before_appraiser
        ),
        changes AS (
            SELECT before_appraiser AS appraiser_id, collateral_id, before_value, appraised_value AS after_value,
                   row_number() OVER (PARTITION BY before_appraiser, collateral_id ORDER BY as_of DESC) AS latest
            FROM (SELECT x.*, (SELECT h.appraised_value FROM history_collateral h
                               WHERE h.collateral_id = x.collateral_id AND h.as_of < x.as_of
                               ORDER BY h.as_of DESC LIMIT 1) AS before_value
                  FROM stepped x)
            WHERE before_value > 0 AND appraised_value IS NOT NULL
        ),
        revalued AS MATERIALIZED (
            SELECT appraiser_id, count(*) AS collateral_count,
                   avg(1.0 * (before_value - after_value) / before_value) AS average_drop
            FROM changes WHERE latest = 1 GROUP BY appraiser_id
            HAVING count(*) >= :min_collateral
               -- a mean of ratios: compared to a millionth of a basis point
               AND avg(1.0 * (before_value - after_value) / before_value) * 10000 + 0.000001 >=
                   CAST(round(:min_drop * 10000) AS INTEGER)
        ),
        -- the collateral behind no loan on the books, and the bad ones: a few percent, from one pass over the facts
        unusual AS MATERIALIZED (
            SELECT f.appraiser_id, f.loan_count > 0 AS on_book
            FROM collateral_facts f
            WHERE f.loan_count = 0 OR f.npl_loan_count > 0
               OR (f.appraised_value IS NOT NULL AND f.exposure * 10000 > f.appraised_value * {_LIMIT_BP})
        ),
        per_agency AS MATERIALIZED (
            SELECT v.appraiser_id, v.valued - coalesce(u.idle, 0) AS collateral_count, coalesce(u.bad, 0) AS bad
            FROM (SELECT appraiser_id, count(*) AS valued FROM collateral WHERE appraiser_id IS NOT NULL
                  GROUP BY appraiser_id) v
            LEFT JOIN (SELECT appraiser_id, sum(on_book) AS bad, sum(NOT on_book) AS idle FROM unusual
                       WHERE appraiser_id IS NOT NULL GROUP BY appraiser_id) u ON u.appraiser_id = v.appraiser_id
        ),
        rates AS MATERIALIZED (
            SELECT f.appraiser_id, f.collateral_count, f.bad, b.total AS book_total, b.bad AS book_bad
            FROM per_agency f
            CROSS JOIN (SELECT (SELECT count(*) FROM collateral_facts) - count(*) + coalesce(sum(on_book), 0) AS total,
                               coalesce(sum(on_book), 0) AS bad
                        FROM unusual) b
            WHERE f.collateral_count >= :min_collateral AND f.bad > 0
              AND f.bad * b.total * 10000 >= b.bad * f.collateral_count * CAST(round(:rate_multiple * 10000) AS INTEGER)
        ),
        -- one row per agency with both reasons side by side (no join against the materialized results: the
        -- engine's column probe, LIMIT 0, would compute them once more)
        agencies AS (
            SELECT appraiser_id, max(r_count) AS r_count, max(average_drop) AS average_drop, max(t_count) AS t_count,
                   max(bad) AS bad, max(book_total) AS book_total, max(book_bad) AS book_bad
            FROM (SELECT appraiser_id, collateral_count AS r_count, average_drop, NULL AS t_count, NULL AS bad,
                         NULL AS book_total, NULL AS book_bad FROM revalued
                  UNION ALL
                  SELECT appraiser_id, NULL, NULL, collateral_count, bad, book_total, book_bad FROM rates)
            GROUP BY appraiser_id
        )
        SELECT x.appraiser_id AS subject,
               'appraiser ' || x.appraiser_id || coalesce(' (' || x.name || ')', '') || ': ' ||
               CASE WHEN x.r_count IS NOT NULL
                    THEN 'values fell ' || printf('%.2f%%', 100.0 * x.average_drop) ||
                         ' on average when next appraised by another agency (' || x.r_count ||
                         ' collateral)' ELSE '' END ||
               CASE WHEN x.r_count IS NOT NULL AND x.t_count IS NOT NULL THEN '; ' ELSE '' END ||
               CASE WHEN x.t_count IS NOT NULL
                    THEN x.bad || ' of ' || x.t_count ||
                         ' collateral behind non-performing or over-LTV loans (' ||
                         {percent_text('x.bad', 'x.t_count')} || ', the book ' ||
                         {percent_text('x.book_bad', 'x.book_total')} || ')' ELSE '' END AS message,
               json_object(
                   'appraiser_id', x.appraiser_id, 'name', x.name,
                   'reasons', json(CASE WHEN x.r_count IS NOT NULL AND x.t_count IS NOT NULL
                                        THEN json_array('revalued_lower', 'bad_loan_rate')
                                        WHEN x.r_count IS NOT NULL THEN json_array('revalued_lower')
                                        ELSE json_array('bad_loan_rate') END),
                   'revalued_lower', json(CASE WHEN x.r_count IS NOT NULL
                       THEN json_object('collateral', x.r_count,
                                        'average_drop', round(x.average_drop, 4), 'min_drop', :min_drop) END),
                   'bad_loan_rate', json(CASE WHEN x.t_count IS NOT NULL
                       THEN json_object('collateral', x.t_count, 'bad', x.bad,
                                        'book_collateral', x.book_total, 'book_bad', x.book_bad,
                                        'rate_multiple', :rate_multiple) END)) AS details
        FROM (SELECT a.*, (SELECT ap.name FROM appraisers ap WHERE ap.appraiser_id = a.appraiser_id) AS name
              FROM agencies a) x
    """,
)

CHECKS = (LTV_EXCEEDED, APPRAISAL_STALE, APPRAISER_NOT_APPROVED, NOT_REGISTERED, NOT_SITE_VERIFIED, MISSING,
          REPEATED_MORTGAGE, VALUE_DROPPED, OVERVALUATION)
