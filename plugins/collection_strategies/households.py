"""Key households: "three levels, a hundred households" (REFERENCE.md §4). The largest non-performing
borrowers, assigned across three levels of the cooperative, and their ledger for the night."""

from loanrules import Derivation, Param, ParamType, Summary
from loanrules.sqltext import current_class, on_book, rank_case, unrank_case

from .common import PRACTICE, recovery_rank, recovery_word

KEY_HOUSEHOLDS_SQL = f"""
WITH npl AS MATERIALIZED (
    SELECT borrower_id, sum(at_risk) AS npl_exposure FROM collection_loans WHERE npl GROUP BY borrower_id
),
ranked AS (
    SELECT borrower_id, npl_exposure, row_number() OVER (ORDER BY npl_exposure DESC, borrower_id) AS rank
    FROM npl
)
SELECT r.borrower_id, r.rank,
       CASE WHEN r.rank <= :leadership_count THEN :leadership_level
            WHEN r.rank <= :leadership_count + :department_count THEN :department_level
            ELSE :officer_level END AS level,
       -- the few key households' loans, through the (snapshot, borrower) index
       (SELECT sum(l.outstanding_principal) FROM loans l
        WHERE l.borrower_id = r.borrower_id AND {on_book()}) AS exposure,
       (SELECT sum(coalesce(l.interest_arrears, 0)) FROM loans l
        WHERE l.borrower_id = r.borrower_id AND {on_book()}) AS interest_arrears,
       r.npl_exposure
FROM ranked r
WHERE r.rank <= :count
ORDER BY r.rank
"""

KEY_HOUSEHOLDS = Derivation(
    id="collection.key_household_ranking",
    table="key_households",
    columns=("borrower_id", "rank", "level", "exposure", "interest_arrears", "npl_exposure"),
    title="Key households: the largest non-performing borrowers across three levels",
    tables=("loans", "collection_loans"),
    params=(
        Param("count", 100, ParamType.INTEGER, "how many of the largest non-performing borrowers are key households"),
        Param("leadership_count", 10, ParamType.INTEGER,
              "how many of them, from the largest, the cooperative's leadership takes"),
        Param("department_count", 30, ParamType.INTEGER,
              "how many after those the risk asset department takes; the rest go to credit officers"),
        Param("leadership_level", "leadership", ParamType.TEXT, "the name of the first level"),
        Param("department_level", "risk_asset_department", ParamType.TEXT, "the name of the second level"),
        Param("officer_level", "credit_officer", ParamType.TEXT, "the name of the third level"),
    ),
    reference=f"{PRACTICE}: \"three levels, a hundred households\": the largest defaulting households assigned "
              "across three levels of the institution; a collection ledger for key households",
    description="Table `key_households`, one row per key household: the borrowers (of any type) with a "
                "non-performing loan on the books (this run's class when classification ran, else the recorded "
                "class: substandard, doubtful, loss; written-off loans are not judged), ranked by `npl_exposure`, "
                "the outstanding principal plus interest in arrears of those non-performing loans (largest first, "
                "ties by borrower_id), the first `count` (100) of them. `rank` 1.. `leadership_count` (10) are "
                "level `leadership`, the next `department_count` (30) `risk_asset_department` (ranks 11-40), the "
                "rest `credit_officer` (41-100); the level names are parameters. `exposure` and "
                "`interest_arrears`: the borrower's outstanding principal and interest in arrears over all its "
                "loans on the books (fen).",
    sql=KEY_HOUSEHOLDS_SQL,
)

_WORST_CLASS = unrank_case(f"max({rank_case(current_class())})")

KEY_HOUSEHOLD_LEDGER = Summary(
    id="collection.key_households",
    title="Key-household collection ledger",
    tables=("loans", "assessments", "collection_tasks", "key_households"),
    columns=("rank", "borrower_id", "level", "exposure_fen", "interest_arrears_fen", "worst_class",
             "recovery_category", "open_steps", "recovered_fen"),
    reference=f"{PRACTICE}: a collection ledger for key households",
    description="One row per key household of the night (table `key_households` of "
                "collection.key_household_ranking), by rank: its level, its outstanding principal and interest in "
                "arrears on the books (fen), its worst risk class on the books (this run's class when "
                "classification ran, else the recorded class), its worst recovery category (empty without "
                "classification), `open_steps`: the steps of its open collection tasks after tonight's plan "
                "(every strategy's, by due date, comma-separated; empty when none), and `recovered_fen`: the "
                "amounts recovered (collections.amount_recovered) on any of its loans, written off or not, dated "
                "after the previous as-of of the cooperative up to the as-of (every date up to the as-of on the "
                "first night).",
    sql=f"""
        SELECT k.rank, k.borrower_id, k.level, k.exposure AS exposure_fen, k.interest_arrears AS interest_arrears_fen,
               (SELECT {_WORST_CLASS} FROM loans l LEFT JOIN assessments a ON a.loan_id = l.loan_id
                WHERE l.borrower_id = k.borrower_id AND {on_book()}) AS worst_class,
               (SELECT {recovery_word(f"max({recovery_rank('a.recovery_category')})")}
                FROM loans l JOIN assessments a ON a.loan_id = l.loan_id
                WHERE l.borrower_id = k.borrower_id AND {on_book()}) AS recovery_category,
               (SELECT group_concat(step, ', ') FROM (
                    SELECT t.step FROM collection_tasks t WHERE t.borrower_id = k.borrower_id AND t.status = 'open'
                    ORDER BY t.due_date, t.step)) AS open_steps,
               coalesce((SELECT sum(c.amount_recovered) FROM loans l JOIN collections c ON c.loan_id = l.loan_id
                         WHERE l.borrower_id = k.borrower_id AND c.action_date > coalesce(:previous_as_of, '')
                           AND c.action_date <= :as_of), 0) AS recovered_fen
        FROM key_households k
        ORDER BY k.rank
    """,
)
