"""What the collection strategies share: the loans a plan covers, who is assigned, and the priority.

Every piece here is SQL text over the run's views (``loans``, ``collection_loans``, ``key_households``); the
parameters it names are declared with it, so each strategy lists them among its own and a value in a config
means the same thing in both strategies.
"""

from loanrules import Derivation, Param, ParamType
from loanrules.sqltext import RECOVERY_CATEGORIES, current_class, non_performing, on_book, rank_case, unrank_case

PRACTICE = "Rural credit cooperative management guidance, collection (REFERENCE.md §4)"


def recovery_rank(expression: str) -> str:
    """SQL: a recovery category's rank, 1 (recoverable) .. 3 (unrecoverable for now); NULL when unknown."""
    return rank_case(expression, RECOVERY_CATEGORIES)


def recovery_word(rank: str) -> str:
    """SQL: the inverse of ``recovery_rank``; NULL stays NULL."""
    return unrank_case(rank, RECOVERY_CATEGORIES)


# The loans a plan covers, built once per run for every strategy and the key households: a scan of the book
# with a look-up of each loan's assessment, a quarter of the plan's time (0.6 s of 2.3 s at 1M loans); each
# contribution then reads the ~12% of the book that is overdue or non-performing.
PLAN_LOANS = Derivation(
    id="collection.plan_loans",
    table="collection_loans",
    columns=("loan_id", "borrower_id", "days_past_due", "at_risk", "npl", "early", "risk_class",
             "recovery_category", "guarantee_type", "officer"),
    title="The loans a collection plan covers",
    tables=("loans", "assessments"),
    reference=f"{PRACTICE}: investigate each NPL and sort it into recoverable, recoverable through effort, or "
              "temporarily unrecoverable; a collection plan for each household",
    description="Table `collection_loans`, one row per loan on the books (not written off) that is overdue "
                "(days_past_due > 0) or non-performing: `npl` 1 when its class is substandard, doubtful or loss "
                "(`risk_class`: this run's class when classification ran, else the recorded class), `early` 1 "
                "when it is special-mention and overdue; `at_risk` its outstanding principal plus interest in "
                "arrears (fen); `recovery_category` this run's (assessments; empty without classification); "
                "`officer` its collection_officer_id, else its lending_officer_id. The collection strategies "
                "and the key households read it.",
    sql=f"""
        SELECT l.loan_id, l.borrower_id, l.days_past_due,
               l.outstanding_principal + coalesce(l.interest_arrears, 0) AS at_risk,
               {non_performing()} AS npl,
               {current_class()} = 'special_mention' AND l.days_past_due > 0 AS early,
               {current_class()} AS risk_class, a.recovery_category, l.guarantee_type,
               coalesce(l.collection_officer_id, l.lending_officer_id) AS officer
        FROM loans l LEFT JOIN assessments a ON a.loan_id = l.loan_id
        WHERE {on_book()} AND (l.days_past_due > 0 OR {non_performing()})
    """,
)


def per_borrower(source: str, more: str = "", keep: str = "1") -> str:
    """SQL: one row per borrower of ``source`` (rows of ``collection_loans``, aliased ``p``) that ``keep`` holds
    for: its ``loan_ids`` (a JSON array), ``at_risk`` (their sum), ``has_npl``, ``has_early``,
    ``days_past_due`` (the most), ``recovery_rank`` (the worst), ``officer`` (of its worst loan: most days past
    due, then the largest amount at risk, then the smallest loan_id), and ``more`` (aggregates over ``p``).

    One GROUP BY: the worst loan is the least of a key that sorts that way (days and amount turned around,
    then the loan_id), its officer looked up by that loan_id. A window over the loans for it, joined back,
    took half as long again; one window for everything twice as long.
    """
    return f"""
        SELECT x.*, o.officer FROM (
            SELECT p.borrower_id, json_group_array(p.loan_id) AS loan_ids, sum(p.at_risk) AS at_risk,
                   max(p.npl) AS has_npl, max(p.early) AS has_early, max(p.days_past_due) AS days_past_due,
                   max({recovery_rank('p.recovery_category')}) AS recovery_rank,
                   min(printf('%06d%015d', 999999 - p.days_past_due, 999999999999999 - p.at_risk) || p.loan_id)
                       AS worst_key {more}
            FROM (SELECT * FROM {source} ORDER BY borrower_id, loan_id) p
            GROUP BY p.borrower_id
            HAVING {keep}) x
        LEFT JOIN collection_loans o ON o.loan_id = substr(x.worst_key, 22)
    """


KEY_LEVELS = Param(
    "key_household_levels", "leadership, risk_asset_department", ParamType.TEXT_LIST,
    "key_households.level values (collection.key_household_ranking) whose borrowers' tasks go to the level "
    "itself rather than to an officer",
)

ASSIGNEE_DOC = ("Assignee: the borrower's level in `key_households` (collection.key_household_ranking) when "
                "it is one of `key_household_levels` (leadership, risk_asset_department); else the "
                "collection_officer_id of its worst loan (most days past due, then the largest amount at risk, then "
                "the smallest loan_id), else that loan's lending_officer_id, else `unassigned`. Without the key "
                "households in the run, always the officer.")


def assignee(key_alias: str, officer: str) -> str:
    return f"coalesce({key_alias}.level, {officer}, 'unassigned')"


def key_level_join(key_alias: str, borrower: str) -> str:
    return (f"LEFT JOIN key_households {key_alias} ON {key_alias}.borrower_id = {borrower} "
            f"AND {key_alias}.level IN (SELECT value FROM json_each(:key_household_levels))")


PRIORITY_PARAMS = (
    Param("weight_recoverable", 3, ParamType.INTEGER,
          "priority weight of a borrower whose worst recovery category is recoverable"),
    Param("weight_recoverable_with_effort", 2, ParamType.INTEGER,
          "priority weight of a borrower whose worst recovery category is recoverable_with_effort"),
    Param("weight_unrecoverable_for_now", 1, ParamType.INTEGER,
          "priority weight of a borrower whose worst recovery category is unrecoverable_for_now"),
    Param("weight_unknown", 2, ParamType.INTEGER,
          "priority weight of a borrower without a recovery category (no classification in the run, or only "
          "loans that are not non-performing)"),
)

PRIORITY_DOC = ("Priority (larger first): the amount at risk in whole yuan (outstanding principal plus interest in "
                "arrears of the plan's loans, in fen, divided by 100 and rounded down) times the weight of the "
                "borrower's worst recovery category among those loans (this run's assessments.recovery_category): "
                "`weight_recoverable` 3, `weight_recoverable_with_effort` 2, `weight_unrecoverable_for_now` 1, "
                "`weight_unknown` 2 when none is known. E.g. 500,000.00 yuan recoverable with effort: 1,000,000.")


def priority(at_risk: str, rank: str) -> str:
    return (f"({at_risk}) / 100 * CASE {rank} WHEN 1 THEN :weight_recoverable "
            f"WHEN 2 THEN :weight_recoverable_with_effort WHEN 3 THEN :weight_unrecoverable_for_now "
            f"ELSE :weight_unknown END")
