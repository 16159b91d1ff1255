"""The collateral section of the reports: coverage by type and the appraisal-agency scorecard.

Stored with each run (``loanrules summaries collateral``), so the report of a
past run needs no snapshot. The stale and LTV counts are this run's findings
of the checks that judge them, so a summary and the findings never disagree;
when such a check is not in the run its count is 0.
"""

from loanrules import Summary
from loanrules.sqltext import ratio

from .checks import PRACTICE


def _findings_of(check_id: str) -> str:
    return f"(SELECT DISTINCT collateral_id FROM findings WHERE check_id = '{check_id}')"


# Per collateral securing a loan on the books, from the run's shared collateral facts (built once, read by the
# checks too): the exposure of the loans it secures (a loan secured by two collateral counts under each) and
# whether one of them is non-performing (this run's class when the classification ran, else the recorded one).
_PER_COLLATERAL = f"""
    SELECT f.collateral_id, coalesce(f.collateral_type, 'other') AS collateral_type, f.appraiser_id,
           coalesce(f.appraised_value, 0) AS appraised_value, f.exposure, f.npl_loan_count > 0 AS backs_npl,
           f.registration_status = 'registered' AS registered, coalesce(f.site_verified, 0) AS verified,
           f.collateral_id IN {_findings_of('collateral.appraisal_stale')} AS stale,
           f.collateral_id IN {_findings_of('collateral.ltv_exceeded')} AS over_ltv,
           f.collateral_id IN {_findings_of('collateral.value_dropped')} AS value_dropped
    FROM collateral_facts f
    WHERE f.loan_count > 0
"""


COVERAGE_BY_TYPE = Summary(
    id="collateral.coverage_by_type",
    title="Collateral coverage by type",
    tables=("loans", "collateral", "pledges", "collateral_facts", "findings"),
    columns=("collateral_type", "collateral_count", "appraised_value_fen", "exposure_fen", "coverage_share",
             "registered_share", "site_verified_share", "stale_count", "stale_share", "over_ltv_count",
             "npl_backed_count"),
    reference=f"{PRACTICE}: prudent valuation, registration, site verification, dynamic monitoring",
    description="Per collateral type, over the collateral securing loans on the books, then a row `all`: how "
                "many, their appraised value, the outstanding of the loans they secure (a loan secured by two "
                "collateral counts under each), appraised value over that exposure (`coverage_share`), the "
                "shares registered and verified on site, how many are stale and over their loan-to-value "
                "limit (this run's findings of collateral.appraisal_stale and collateral.ltv_exceeded) and how "
                "many secure a non-performing loan (this run's class when classification ran, else the "
                "recorded class). Money in fen.",
    sql=f"""
        WITH per_collateral AS MATERIALIZED ({_PER_COLLATERAL}),
        per_type AS (
            SELECT collateral_type, count(*) AS n, sum(appraised_value) AS value, sum(exposure) AS exposure,
                   sum(registered) AS registered, sum(verified) AS verified, sum(stale) AS stale,
                   sum(over_ltv) AS over_ltv, sum(backs_npl) AS npl, 0 AS is_total
            FROM per_collateral GROUP BY collateral_type
            UNION ALL
            SELECT 'all', count(*), coalesce(sum(appraised_value), 0), coalesce(sum(exposure), 0),
                   coalesce(sum(registered), 0), coalesce(sum(verified), 0), coalesce(sum(stale), 0),
                   coalesce(sum(over_ltv), 0), coalesce(sum(backs_npl), 0), 1
            FROM per_collateral
        )
        SELECT collateral_type, n AS collateral_count, value AS appraised_value_fen, exposure AS exposure_fen,
               {ratio('value', 'exposure')} AS coverage_share, {ratio('registered', 'n')} AS registered_share,
               {ratio('verified', 'n')} AS site_verified_share, stale AS stale_count,
               {ratio('stale', 'n')} AS stale_share, over_ltv AS over_ltv_count, npl AS npl_backed_count
        FROM per_type ORDER BY is_total, collateral_type
    """,
)

AGENCY_SCORECARD = Summary(
    id="collateral.agency_scorecard",
    title="Appraisal agency scorecard",
    tables=("loans", "collateral", "pledges", "collateral_facts", "findings"),
    columns=("appraiser_id", "appraiser_name", "standing", "collateral_count", "appraised_value_fen", "stale_count",
             "over_ltv_count", "value_dropped_count", "npl_backed_count", "npl_backed_share", "overvalues"),
    reference=f"{PRACTICE}: keep external appraisal agencies on an approved list and drop the ones that "
              "misbehave",
    description="Per appraisal agency, over the collateral it appraised that secures loans on the books "
                "(largest first): its standing on the approved list (`approved`, `suspended`, `not_approved`, "
                "`expired` when approved_until is before the as-of, `not_on_list`; `no_list` when the snapshot "
                "has no appraisers.csv), how many collateral and "
                "their appraised value, how many are stale, over their loan-to-value limit or fell in value "
                "since the previous as-of (this run's findings of the collateral checks), how many secure a "
                "non-performing loan and their share, and `overvalues` = 1 when appraiser.overvaluation "
                "reported it in this run. Collateral with no appraiser is left out. Money in fen.",
    sql=f"""
        WITH per_collateral AS MATERIALIZED ({_PER_COLLATERAL})
        SELECT x.appraiser_id, ap.name AS appraiser_name,  -- not "name": that is a borrower's, masked everywhere
               CASE WHEN NOT EXISTS (SELECT 1 FROM appraisers) THEN 'no_list'
                    WHEN ap.appraiser_id IS NULL THEN 'not_on_list'
                    WHEN ap.suspended = 1 THEN 'suspended'
                    WHEN ap.approved = 0 THEN 'not_approved'
                    WHEN ap.approved_until < :as_of THEN 'expired'
                    ELSE 'approved' END AS standing,
               x.n AS collateral_count, x.value AS appraised_value_fen, x.stale AS stale_count,
               x.over_ltv AS over_ltv_count, x.dropped AS value_dropped_count, x.npl AS npl_backed_count,
               {ratio('x.npl', 'x.n')} AS npl_backed_share,
               EXISTS (SELECT 1 FROM findings f WHERE f.check_id = 'appraiser.overvaluation'
                       AND f.subject_key = 'subject=' || x.appraiser_id) AS overvalues
        FROM (SELECT appraiser_id, count(*) AS n, sum(appraised_value) AS value, sum(stale) AS stale,
                     sum(over_ltv) AS over_ltv, sum(value_dropped) AS dropped, sum(backs_npl) AS npl
              FROM per_collateral WHERE appraiser_id IS NOT NULL GROUP BY appraiser_id) x
        LEFT JOIN appraisers ap ON ap.appraiser_id = x.appraiser_id
        ORDER BY x.value DESC, x.appraiser_id
    """,
)

SUMMARIES = (COVERAGE_BY_TYPE, AGENCY_SCORECARD)
