"""The five-category classifier, the provision it requires, and the recovery categories.

All in SQL inside SQLite: one pass over the loans computes every floor, so
1M loans classify in a few seconds. Each floor that applies is one verdict;
the engine keeps the worst class and every verdict as a reason.
"""

from loanrules import Classifier, Param, ParamType

MEASURES_2023 = ("Measures for the Risk Classification of Financial Assets of Commercial Banks "
                 "(NFRA/PBoC Order 2023 No. 1)")

CLASS_PARAMS = (
    Param("technical_grace_days", 0, ParamType.INTEGER,
          "overdue days still treated as current for a short technical delay (REFERENCE.md §1 [U])"),
    Param("substandard_days", 90, ParamType.INTEGER, "overdue more than this: at least substandard"),
    Param("doubtful_days", 270, ParamType.INTEGER, "overdue more than this: at least doubtful"),
    Param("loss_days", 360, ParamType.INTEGER, "overdue more than this: loss"),
    Param("restructured_observation_days", 365, ParamType.INTEGER,
          "days from restructured_date during which a restructured loan is at least substandard"),
    Param("non_retail_types", ["enterprise", "village_collective"], ParamType.TEXT_LIST,
          "borrower types classified as a whole (non-retail)"),
    Param("non_retail_npl_share", "0.10", ParamType.DECIMAL,
          "a non-retail borrower with more than this share of its outstanding here non-performing has all "
          "its loans at least substandard"),
)

# Ranks 1..5 = normal .. loss. One CTE computes each loan's own floors; the
# borrower-level spread reads them, so the rule needs no second pass.
FIVE_CATEGORY_SQL = """
WITH floors AS MATERIALIZED (
    SELECT l.loan_id, l.borrower_id, l.outstanding_principal, l.days_past_due, l.restructured_date,
           b.borrower_type,
           CASE WHEN l.days_past_due > :loss_days THEN 5
                WHEN l.days_past_due > :doubtful_days THEN 4
                WHEN l.days_past_due > :substandard_days THEN 3
                WHEN l.days_past_due > :technical_grace_days THEN 2
                ELSE 1 END AS overdue_rank,
           CASE WHEN l.restructured_date <= :as_of
                 AND julianday(:as_of) - julianday(l.restructured_date) < :restructured_observation_days
                THEN 3 ELSE 1 END AS restructured_rank
    FROM loans l LEFT JOIN borrowers b ON b.borrower_id = l.borrower_id
    WHERE coalesce(l.written_off, 0) = 0
),
non_retail AS (
    SELECT borrower_id, borrower_type,
           sum(outstanding_principal) AS exposure,
           sum(CASE WHEN max(overdue_rank, restructured_rank) >= 3 THEN outstanding_principal ELSE 0 END)
               AS npl_exposure
    FROM floors
    WHERE borrower_type IN (SELECT value FROM json_each(:non_retail_types))
    GROUP BY borrower_id
)
SELECT loan_id,
       CASE overdue_rank WHEN 2 THEN 'special_mention' WHEN 3 THEN 'substandard'
                         WHEN 4 THEN 'doubtful' ELSE 'loss' END AS risk_class,
       json_object('floor', 'overdue_days', 'days_past_due', days_past_due,
                   'more_than_days', CASE overdue_rank WHEN 2 THEN :technical_grace_days
                                       WHEN 3 THEN :substandard_days WHEN 4 THEN :doubtful_days
                                       ELSE :loss_days END) AS details
FROM floors WHERE overdue_rank > 1
UNION ALL
SELECT loan_id, 'substandard',
       json_object('floor', 'restructured', 'restructured_date', restructured_date,
                   'days_since', CAST(julianday(:as_of) - julianday(restructured_date) AS INTEGER),
                   'observation_days', :restructured_observation_days)
FROM floors WHERE restructured_rank = 3
UNION ALL
SELECT f.loan_id, 'substandard',
       json_object('floor', 'non_retail_spread', 'borrower_type', n.borrower_type,
                   'borrower_npl_share', n.npl_exposure * 1.0 / n.exposure, 'more_than_share', :non_retail_npl_share,
                   'borrower_npl_exposure_fen', n.npl_exposure, 'borrower_exposure_fen', n.exposure)
FROM non_retail n JOIN floors f ON f.borrower_id = n.borrower_id
-- exact: npl/exposure > share, in integers (share in basis points)
WHERE n.npl_exposure * 10000 > n.exposure * CAST(round(:non_retail_npl_share * 10000) AS INTEGER)
  AND max(f.overdue_rank, f.restructured_rank) < 3
UNION ALL
SELECT loan_id, 'normal', json_object('floor', 'borrower_type_unknown', 'treated_as', 'retail')
FROM floors WHERE borrower_type IS NULL
"""

FIVE_CATEGORY = Classifier(
    id="classification.five_category",
    title="Five-category risk classification floors",
    params=CLASS_PARAMS,
    tables=("loans",),
    reference=f"{MEASURES_2023}; overdue floors, restructured assets and non-retail borrowers (REFERENCE.md §1)",
    description=(
        "Each loan not written off gets the worst of its floors: overdue more than technical_grace_days "
        "(default 0) special mention, more than substandard_days (90) substandard, more than doubtful_days "
        "(270) doubtful, more than loss_days (360) loss; a restructured loan is at least substandard for "
        "restructured_observation_days (365) from restructured_date (the observation period: inside while "
        "fewer days than that have passed); a non-retail borrower (non_retail_types) with more than "
        "non_retail_npl_share (10%) of its outstanding here non-performing has all its loans at least "
        "substandard. Retail borrowers (household, individual, small business) are classified loan by loan. "
        "A borrower of unknown type is treated as retail, and the assessment's reasons say so."
    ),
    sql=FIVE_CATEGORY_SQL,
)

PROVISION_PARAMS = (
    Param("special_mention_rate", "0.02", ParamType.DECIMAL, "specific provision, special mention"),
    Param("substandard_rate", "0.25", ParamType.DECIMAL, "specific provision, substandard (may float ±20%)"),
    Param("doubtful_rate", "0.50", ParamType.DECIMAL, "specific provision, doubtful (may float ±20%)"),
    Param("loss_rate", "1.00", ParamType.DECIMAL, "specific provision, loss"),
)

# Integer arithmetic in fen: rate in basis points, rounded half up to the fen.
REQUIRED_PROVISION = Classifier(
    id="classification.required_provision",
    title="Specific provision required by the computed class",
    assigns="required_provision",
    params=PROVISION_PARAMS,
    tables=("loans",),
    reference="PBoC Guidelines on Loan Loss Provisioning (2002): special mention 2%, substandard 25%, "
              "doubtful 50%, loss 100% (REFERENCE.md §2)",
    description="required_provision = outstanding principal × the rate of the loan's computed class, "
                "exact to the fen; normal loans need no specific provision (0).",
    sql="""
        SELECT loan_id, (outstanding_principal * rate_bp + 5000) / 10000 AS required_provision,
               json_object('risk_class', risk_class, 'rate', rate_bp / 10000.0,
                           'outstanding_fen', outstanding_principal) AS details
        FROM (SELECT a.loan_id, a.risk_class, l.outstanding_principal,
                     CAST(round(CASE a.risk_class WHEN 'special_mention' THEN :special_mention_rate
                                                  WHEN 'substandard' THEN :substandard_rate
                                                  WHEN 'doubtful' THEN :doubtful_rate
                                                  WHEN 'loss' THEN :loss_rate END * 10000) AS INTEGER) AS rate_bp
              FROM assessments a JOIN loans l ON l.loan_id = a.loan_id
              WHERE a.risk_class != 'normal')
    """,
)

RECOVERY_PARAMS = (
    Param("full_coverage", "1.00", ParamType.DECIMAL,
          "collateral covering at least this share of principal and interest in arrears: recoverable"),
    Param("weak_coverage", "0.30", ParamType.DECIMAL,
          "below this share, a borrower deceased or dissolved, gone, or without any capacity to repay is "
          "unrecoverable for now"),
    Param("collateral_haircut", "0.00", ParamType.DECIMAL,
          "share taken off appraised values before they count as coverage, when the effective collateral value "
          "is not in the run (collateral.effective_value has its own haircut)"),
)

# Without the effective collateral value, a collateral's value is shared by the
# loans it secures in proportion to their outstanding; only registered collateral counts.
RECOVERY_SQL = """
WITH npl AS (
    SELECT a.loan_id, l.borrower_id, l.outstanding_principal,
           l.outstanding_principal + coalesce(l.interest_arrears, 0) AS exposure
    FROM assessments a JOIN loans l ON l.loan_id = a.loan_id
    WHERE a.risk_class IN ('substandard', 'doubtful', 'loss')
),
covered AS MATERIALIZED (
    -- the effective collateral value when collateral.effective_value is in the run (an empty table when not);
    -- else correlated lookups through the pledges indexes: a join of materialized
    -- aggregates here made SQLite scan them once per loan (minutes at 1M loans)
    SELECT n.*, CASE WHEN (SELECT 1 FROM effective_collateral LIMIT 1) THEN 'effective' ELSE 'registered' END
               AS basis,
           CASE WHEN (SELECT 1 FROM effective_collateral LIMIT 1) THEN coalesce(e.effective_value, 0)
           ELSE coalesce((
               SELECT CAST(round(sum(c.appraised_value * (1 - :collateral_haircut) * n.outstanding_principal
                                     / (SELECT sum(l2.outstanding_principal) FROM pledges p2
                                        JOIN loans l2 ON l2.loan_id = p2.loan_id AND coalesce(l2.written_off, 0) = 0
                                        WHERE p2.collateral_id = p.collateral_id))) AS INTEGER)
               FROM pledges p
               JOIN collateral c ON c.collateral_id = p.collateral_id AND c.registration_status = 'registered'
               WHERE p.loan_id = n.loan_id), 0) END AS covered
    FROM npl n LEFT JOIN effective_collateral e ON e.loan_id = n.loan_id
),
facts AS (
    -- whole fen, so the comparisons are exact integer arithmetic
    SELECT v.loan_id, v.exposure, v.covered, v.basis,
           CASE WHEN v.exposure > 0 THEN v.covered * 1.0 / v.exposure ELSE 1 END AS ratio,
           v.covered * 10000 >= v.exposure * CAST(round(:full_coverage * 10000) AS INTEGER) AS fully_covered,
           v.covered * 10000 < v.exposure * CAST(round(:weak_coverage * 10000) AS INTEGER) AS weakly_covered,
           b.repayment_willingness, b.repayment_capacity, b.whereabouts_known, b.deceased_or_dissolved,
           b.in_litigation
    FROM covered v LEFT JOIN borrowers b ON b.borrower_id = v.borrower_id
),
decided AS (
    SELECT *,
           CASE
               WHEN fully_covered THEN 'registered_collateral_covers_exposure'
               WHEN weakly_covered AND deceased_or_dissolved = 1 THEN 'deceased_or_dissolved'
               WHEN weakly_covered AND whereabouts_known = 0 THEN 'whereabouts_unknown'
               WHEN weakly_covered AND repayment_capacity = 'none' THEN 'no_capacity_to_repay'
               WHEN repayment_willingness IN ('good', 'fair') AND repayment_capacity = 'normal'
                    AND coalesce(in_litigation, 0) = 0 AND coalesce(whereabouts_known, 1) = 1
                    AND coalesce(deceased_or_dissolved, 0) = 0 THEN 'willing_and_able'
               ELSE 'needs_effort'
           END AS rule
    FROM facts
)
SELECT loan_id,
       CASE rule WHEN 'registered_collateral_covers_exposure' THEN 'recoverable'
                 WHEN 'willing_and_able' THEN 'recoverable'
                 WHEN 'needs_effort' THEN 'recoverable_with_effort'
                 ELSE 'unrecoverable_for_now' END AS recovery_category,
       json_object('rule', rule, 'coverage', round(ratio, 4), 'covered_fen', covered, 'collateral_basis', basis,
                   'exposure_fen', exposure, 'repayment_willingness', repayment_willingness,
                   'repayment_capacity', repayment_capacity, 'whereabouts_known', whereabouts_known,
                   'deceased_or_dissolved', deceased_or_dissolved, 'in_litigation', in_litigation) AS details
FROM decided
"""

RECOVERY = Classifier(
    id="classification.recovery_category",
    title="Recovery category of each non-performing loan",
    assigns="recovery_category",
    params=RECOVERY_PARAMS,
    tables=("loans",),
    optional_tables=("effective_collateral",),
    reference="The cooperatives' NPL investigation practice (REFERENCE.md §4): creditor-debtor relationship, "
              "willingness and ability to repay, effective assets, feasibility of disposal",
    description=(
        "For every non-performing loan (computed class substandard, doubtful or loss), in order: "
        "recoverable when collateral covers at least full_coverage (100%) of principal and interest in arrears. "
        "The collateral counted is the loan's effective collateral value (registered, verified on site, at its "
        "lending value within the loan-to-value limits, after a haircut; details.collateral_basis `effective`) "
        "when collateral.effective_value (pack cooperative-baseline) runs too; otherwise registered collateral "
        "at its appraised value less collateral_haircut, shared among the loans it secures in proportion to "
        "their outstanding (`registered`). Then: unrecoverable for now when coverage is below weak_coverage (30%) "
        "and the borrower is deceased or dissolved, gone (whereabouts unknown) or without any capacity to "
        "repay; recoverable when the borrower is willing (good or fair) and able (normal capacity), not in "
        "litigation and reachable; otherwise recoverable with effort (partial collateral, weak capacity, "
        "poor willingness, litigation, or facts unknown because borrowers.csv lacks them)."
    ),
    sql=RECOVERY_SQL,
)

CLASSIFIERS = (FIVE_CATEGORY, REQUIRED_PROVISION, RECOVERY)
