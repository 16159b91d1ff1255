"""Each loan's effective collateral value: what its collateral can be counted on for.

Only collateral the guidance lets a cooperative rely on counts (REFERENCE.md
§4): registered, verified on site, with an appraised value. It counts at its
lending value, the appraised value times the largest loan-to-value of its
type (the same ``max_ltv_*`` parameters as ``collateral.ltv_exceeded``), less
a haircut. A collateral securing several loans serves them by lien rank:
first ranks first, loans of one rank share what is left in proportion to
their claims (outstanding principal and interest in arrears).

The recovery categories of ``cn-five-category`` read this table when it is in
the run (``optional_tables``), and registered collateral alone when not.
"""

from loanrules import Derivation, Param, ParamType
from loanrules.sqltext import basis_points, on_book

from .checks import LTV_PARAMS, LTV_SOURCE, PRACTICE, _ltv_limit_bp

# Integer fen throughout, rounded down (prudent). A product too large for 64-bit integers (amounts above
# about 30 million yuan multiplied together) becomes a float in SQLite and is truncated back: exact to the
# fen for any realistic loan, never more than a fen off beyond that.
EFFECTIVE_VALUE_SQL = f"""
WITH claims AS MATERIALIZED (
    SELECT p.collateral_id, coalesce(p.lien_rank, 1) AS lien_rank, l.loan_id,
           l.outstanding_principal + coalesce(l.interest_arrears, 0) AS claim
    FROM pledges p JOIN loans l ON l.loan_id = p.loan_id
    WHERE {on_book('l')}
),
lendable AS MATERIALIZED (
    SELECT c.collateral_id,
           CASE WHEN coalesce(c.registration_status, 'none') != 'registered' THEN 'not_registered'
                WHEN :require_site_verified AND coalesce(c.site_verified, 0) = 0 THEN 'not_site_verified'
                WHEN coalesce(c.appraised_value, 0) <= 0 THEN 'no_appraised_value' END AS excluded,
           c.appraised_value * {_ltv_limit_bp('c.collateral_type')} / 10000
               * (10000 - {basis_points(':haircut')}) / 10000 AS lending_value
    FROM collateral c
    WHERE c.collateral_id IN (SELECT collateral_id FROM claims)
),
ranked AS (
    SELECT k.loan_id, k.collateral_id, k.claim, v.excluded, v.lending_value,
           sum(k.claim) OVER (PARTITION BY k.collateral_id, k.lien_rank) AS rank_claims,
           sum(k.claim) OVER (PARTITION BY k.collateral_id ORDER BY k.lien_rank
                              RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS through_rank
    FROM claims k JOIN lendable v ON v.collateral_id = k.collateral_id
),
shares AS (
    SELECT loan_id, collateral_id, claim, excluded,
           CASE WHEN excluded IS NOT NULL THEN 0
                -- what the senior ranks leave: all of it covers this rank, or a share in proportion to claims
                WHEN lending_value - (through_rank - rank_claims) >= rank_claims THEN claim
                WHEN lending_value - (through_rank - rank_claims) <= 0 THEN 0
                ELSE CAST(claim * (lending_value - (through_rank - rank_claims)) / rank_claims AS INTEGER)
           END AS share
    FROM ranked
)
SELECT loan_id,
       min(claim, sum(share)) AS effective_value,
       claim,
       count(*) AS collateral_count,
       sum(excluded IS NULL) AS counted_count,
       json_group_array(json_object('collateral_id', collateral_id, 'share_fen', share, 'excluded', excluded))
           AS details
FROM shares
GROUP BY loan_id
"""

EFFECTIVE_VALUE = Derivation(
    id="collateral.effective_value",
    table="effective_collateral",
    columns=("loan_id", "effective_value", "claim", "collateral_count", "counted_count", "details"),
    title="Each loan's effective collateral value",
    tables=("loans", "collateral", "pledges"),
    params=(
        Param("haircut", "0.00", ParamType.DECIMAL,
              "share taken off a collateral's lending value (appraised value times its type's largest "
              "loan-to-value) before it counts"),
        Param("require_site_verified", True, ParamType.BOOLEAN,
              "only collateral verified on site counts"),
        *LTV_PARAMS,
    ),
    reference=f"{PRACTICE}: register every mortgage, verify on site, value prudently; {LTV_SOURCE}",
    description="One row per loan on the books with collateral (table `effective_collateral`): "
                "`effective_value` in fen, the part of the loan's `claim` (outstanding principal plus interest "
                "in arrears) its collateral covers. A collateral counts only when registered, verified on site "
                "(`require_site_verified`) and appraised; it counts at its lending value, the appraised value "
                "times the largest loan-to-value of its type (`max_ltv_*`, as collateral.ltv_exceeded), less "
                "`haircut`, rounded down to the fen. A collateral securing several loans serves the first lien "
                "rank first (a blank rank is the first); loans of one rank share what is left in proportion to "
                "their claims. A loan's value is at most its claim. `details` lists each collateral's share "
                "and why one did not count (`not_registered`, `not_site_verified`, `no_appraised_value`). "
                "The recovery categories of cn-five-category use it when both run.",
    sql=EFFECTIVE_VALUE_SQL,
)
