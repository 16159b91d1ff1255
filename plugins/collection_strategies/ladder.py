"""The escalation ladder for households, individuals and businesses: call, visit with a written demand,
notify the guarantor, send the special team, sue, and apply to write off while keeping the case.

One plan per borrower with a non-performing loan (and an early reminder for a borrower whose worst loan is
overdue special-mention). The step comes from the borrower's worst days past due, the amount at risk, its
guarantees, its recovery category and the collection actions of the last ``repeat_days`` days: a step whose
action was taken recently without a fen recovered gives way to the next one, and the step of the task still
open from the previous as-of is a floor (an escalation ladder does not flap back down from one month to the
next as old actions age out of the window).
"""

import json

from loanrules import Param, ParamType, Strategy
from loanrules.sqltext import days_after, days_before

from .common import (
    ASSIGNEE_DOC,
    KEY_LEVELS,
    PRACTICE,
    PRIORITY_DOC,
    PRIORITY_PARAMS,
    assignee,
    key_level_join,
    per_borrower,
    priority,
    recovery_word,
)

# (step, the collection actions that complete it, default days to its due date); the rank is the position.
LADDER = (
    ("reminder_call", ("call",), 7),
    ("site_visit", ("visit", "letter"), 15),
    ("guarantor_notice", ("guarantor_notice",), 15),
    ("special_team", ("special_team",), 30),
    ("litigation", ("litigation",), 60),
    ("write_off_application", ("write_off",), 90),
)
RANK = {step: rank for rank, (step, _, _) in enumerate(LADDER, 1)}
# A recent action shows which step was taken: its rank. A guarantor notice on a borrower without a guaranteed
# loan counts as a written demand (site_visit).
_TAKEN = {action: RANK[step] for step, actions, _ in LADDER[:5] for action in actions if action != "guarantor_notice"}


def _case(expression: str, pairs) -> str:
    return f"CASE {expression} " + " ".join(f"WHEN {key} THEN {value}" for key, value in pairs) + " END"


_STEP = _case("s.step_rank", ((rank, f"'{step}'") for step, rank in RANK.items()))
_DONE_WHEN = _case("s.step_rank", ((RANK[step], f"'{json.dumps(list(actions))}'") for step, actions, _ in LADDER))
_DUE_DAYS = _case("s.step_rank", ((RANK[step], f":{step}_due_days") for step, _, _ in LADDER))
_STEP_RANK = _case("t.step", ((f"'{step}'", rank) for step, rank in RANK.items()))
_REACHED_STEP = _case("s.reached", ((rank, f"'{step}'") for step, rank in RANK.items()))
_TAKEN_RANK = _case("c.action", ((f"'{action}'", rank) for action, rank in _TAKEN.items()))

LADDER_SQL = f"""
WITH per_borrower AS MATERIALIZED ({per_borrower(
    "collection_loans",
    more=", max(p.guarantee_type IN (SELECT value FROM json_each(:guaranteed_types))) AS guaranteed, "
         "max(p.recovery_category = 'unrecoverable_for_now' AND p.days_past_due >= :write_off_days) AS write_off",
    keep="has_npl OR (:early_reminders AND has_early)")}),
recent AS MATERIALIZED (
    -- the collection actions of the last repeat_days days on the plan's loans: the furthest step taken, and
    -- whether anything was recovered
    SELECT p.borrower_id, max({_TAKEN_RANK}) AS taken_rank, max(c.action = 'guarantor_notice') AS guarantor_notified,
           sum(coalesce(c.amount_recovered, 0)) AS recovered,
           -- for the task's details: the latest action of the furthest step taken (rank, date, action), and the
           -- latest guarantor notice
           max({_TAKEN_RANK} || c.action_date || c.action) AS taken_key,
           max(CASE WHEN c.action = 'guarantor_notice' THEN c.action_date END) AS notice_date
    -- the actions of the window, then their loan by its key (faster than each loan's actions: 0.18 s against
    -- 0.24 s of 1M actions)
    FROM collections c CROSS JOIN collection_loans p
    WHERE p.loan_id = c.loan_id
      AND c.action_date >= {days_before(':as_of', ':repeat_days')} AND c.action_date <= :as_of
    GROUP BY p.borrower_id
),
reached AS MATERIALIZED (
    -- the step of the borrower's task still open after the previous as-of: the ladder does not step down
    SELECT borrower_id, max({_STEP_RANK}) AS reached_rank
    FROM prev_collection_tasks t
    WHERE t.strategy_id = :check_id AND t.status = 'open'
    GROUP BY borrower_id
),
weighed AS (
    SELECT x.*,
           max(coalesce(r.taken_rank, 0),
               CASE WHEN r.guarantor_notified THEN CASE WHEN x.guaranteed THEN 3 ELSE 2 END ELSE 0 END) AS taken,
           coalesce(r.recovered, 0) AS recovered,
           CASE WHEN r.guarantor_notified AND CASE WHEN x.guaranteed THEN 3 ELSE 2 END >= coalesce(r.taken_rank, 0)
                THEN 'guarantor_notice' ELSE substr(r.taken_key, 12) END AS taken_action,
           CASE WHEN r.guarantor_notified AND CASE WHEN x.guaranteed THEN 3 ELSE 2 END >= coalesce(r.taken_rank, 0)
                THEN r.notice_date ELSE substr(r.taken_key, 2, 10) END AS taken_date,
           CASE WHEN p.reached_rank = 3 AND NOT x.guaranteed THEN 2
                ELSE min(coalesce(p.reached_rank, 0), {RANK['litigation']}) END AS reached
    FROM per_borrower x
    LEFT JOIN borrowers b ON b.borrower_id = x.borrower_id
    LEFT JOIN recent r ON r.borrower_id = x.borrower_id
    LEFT JOIN reached p ON p.borrower_id = x.borrower_id
    WHERE coalesce(b.borrower_type, 'household') IN (SELECT value FROM json_each(:borrower_types))
),
stepped AS MATERIALIZED (  -- its ranks are read several times below: computed once
    SELECT w.*,
           CASE WHEN w.days_past_due >= :litigation_days THEN {RANK['litigation']}
                WHEN w.days_past_due >= :special_team_days OR (w.has_npl AND w.at_risk >= :large_amount)
                    THEN {RANK['special_team']}
                WHEN w.days_past_due >= :guarantor_notice_days AND w.guaranteed THEN {RANK['guarantor_notice']}
                WHEN w.days_past_due >= :site_visit_days THEN {RANK['site_visit']}
                ELSE {RANK['reminder_call']} END AS threshold_rank,
           CASE WHEN w.days_past_due >= :litigation_days THEN 'days_past_due>=' || :litigation_days
                WHEN w.days_past_due >= :special_team_days THEN 'days_past_due>=' || :special_team_days
                WHEN w.has_npl AND w.at_risk >= :large_amount THEN 'large_amount'
                WHEN w.days_past_due >= :guarantor_notice_days AND w.guaranteed
                    THEN 'days_past_due>=' || :guarantor_notice_days
                WHEN w.days_past_due >= :site_visit_days THEN 'days_past_due>=' || :site_visit_days
                ELSE 'days_past_due<' || :site_visit_days END AS threshold_rule,
           CASE WHEN w.taken = 0 THEN 0
                WHEN w.recovered > 0 THEN w.taken
                WHEN w.taken = {RANK['site_visit']} AND NOT w.guaranteed THEN {RANK['special_team']}
                ELSE min(w.taken + 1, {RANK['litigation']}) END AS repeat_rank
    FROM weighed w
),
chosen AS MATERIALIZED (  -- step_rank is read three times below
    -- the step is the highest of the thresholds, the repeat and the floor (write-off overrides all); its details
    -- name the first of those that gives it, the rule, with the facts of that rule
    SELECT s.*,
           CASE WHEN s.write_off THEN {RANK['write_off_application']}
                ELSE max(s.threshold_rank, s.reached, s.repeat_rank) END AS step_rank,
           CASE WHEN s.write_off THEN json_object('rule', 'unrecoverable_for_now_days_past_due>=' || :write_off_days)
                WHEN s.threshold_rank >= s.reached AND s.threshold_rank >= s.repeat_rank
                    THEN json_object('rule', s.threshold_rule)
                WHEN s.repeat_rank >= s.reached AND s.recovered > 0
                    THEN json_object('rule', 'repeat_with_recovery', 'action', s.taken_action,
                                     'action_date', s.taken_date, 'recovered_fen', s.recovered)
                WHEN s.repeat_rank >= s.reached
                    THEN json_object('rule', 'repeat_without_recovery', 'action', s.taken_action,
                                     'action_date', s.taken_date)
                ELSE json_object('rule', 'floor_from_previous_step', 'previous_step', {_REACHED_STEP}) END AS why
    FROM stepped s
)
SELECT s.borrower_id, s.loan_ids, {_STEP} AS step,
       {assignee('k', 's.officer')} AS assignee,
       {days_after(':as_of', _DUE_DAYS)} AS due_date,
       {priority('s.at_risk', 's.recovery_rank')} AS priority,
       {_DONE_WHEN} AS done_when,
       -- why this step, and the borrower's figures (json_patch drops the members that are NULL)
       json_patch(s.why, json_object('days_past_due', s.days_past_due, 'at_risk_fen', s.at_risk,
                                     'recovery_category', {recovery_word('s.recovery_rank')},
                                     'key_household_level', k.level)) AS details
FROM chosen s
{key_level_join('k', 's.borrower_id')}
"""

DEFAULT_TYPES = "household, individual, small_business, enterprise"

ESCALATION_LADDER = Strategy(
    id="collection.escalation_ladder",
    title="Escalation ladder for households, individuals and businesses",
    tables=("loans", "collection_loans"),
    optional_tables=("key_households",),
    params=(
        Param("borrower_types", DEFAULT_TYPES, ParamType.TEXT_LIST,
              "borrowers.borrower_type values this ladder plans for; a borrower without a borrowers row, or "
              "without a type, counts as a household"),
        Param("early_reminders", True, ParamType.BOOLEAN,
              "also plan for borrowers without a non-performing loan whose worst loan is overdue special-mention"),
        Param("site_visit_days", 90, ParamType.INTEGER,
              "worst days past due from which the step is at least site_visit"),
        Param("guarantor_notice_days", 120, ParamType.INTEGER,
              "worst days past due from which a borrower with a guaranteed loan is at least at guarantor_notice"),
        Param("special_team_days", 180, ParamType.INTEGER,
              "worst days past due from which the step is at least special_team"),
        Param("litigation_days", 365, ParamType.INTEGER,
              "worst days past due from which the step is litigation"),
        Param("write_off_days", 1095, ParamType.INTEGER,
              "days past due from which a loan unrecoverable for now goes to write_off_application"),
        Param("large_amount", "1000000", ParamType.MONEY,
              "amount at risk from which a borrower with a non-performing loan goes to special_team at once"),
        Param("repeat_days", 45, ParamType.INTEGER,
              "how many days before the as-of a collection action still counts as its step taken (45: a month "
              "between as-ofs, with slack)"),
        Param("guaranteed_types", "guarantee", ParamType.TEXT_LIST,
              "loans.guarantee_type values of a loan a guarantor stands behind"),
        *(Param(f"{step}_due_days", days, ParamType.INTEGER, f"days from the as-of to the due date of {step}")
          for step, _, days in LADDER),
        *PRIORITY_PARAMS,
        KEY_LEVELS,
    ),
    reference=f"{PRACTICE}: a collection plan and a collection task for each household; special collection teams "
              "for large NPLs; litigation; write-off with the case kept on file",
    description=(
        "One task per borrower of `borrower_types` (household, individual, small_business, enterprise; no "
        "borrowers row or no type counts as household) that has a non-performing loan on the books (this run's "
        "class when classification ran, else the recorded class: substandard, doubtful, loss; written-off loans "
        "are not judged), and, with `early_reminders`, per borrower without one whose loans include an overdue "
        "(days_past_due > 0) special-mention loan. The plan's loans: the borrower's loans on the books that are "
        "non-performing or overdue; its amount at risk: their outstanding principal plus interest in arrears. "
        "The step, with the collection actions that complete it (`done_when`):\n\n"
        "1. `reminder_call` (call): below every threshold below;\n"
        "2. `site_visit` with a written demand (visit, letter): worst days past due ≥ `site_visit_days` (90: "
        "89 calls, 90 visits);\n"
        "3. `guarantor_notice` (guarantor_notice): days ≥ `guarantor_notice_days` (120), only when one of the "
        "plan's loans has a guarantee_type of `guaranteed_types` (guarantee); without one the ladder skips it "
        "(the step stays site_visit until special_team);\n"
        "4. `special_team` (special_team): days ≥ `special_team_days` (180), or, with a non-performing loan, an "
        "amount at risk ≥ `large_amount` (1,000,000.00 yuan: exactly 1,000,000.00 goes to the team, "
        "999,999.99 does not);\n"
        "5. `litigation` (litigation): days ≥ `litigation_days` (365);\n"
        "6. `write_off_application` (write_off), \"write off the account, keep the case\": one of the plan's "
        "loans is `unrecoverable_for_now` (assessments.recovery_category, so only when classification ran) and "
        "its days past due ≥ `write_off_days` (1095). This step overrides all others.\n\n"
        "Past actions escalate: the collection actions on the plan's loans dated from `repeat_days` (45) days "
        "before the as-of to the as-of (45 days before counts, 46 does not) show the furthest step taken (call "
        "1, visit or letter 2, guarantor_notice 3 (2 without a guaranteed loan), special_team 4, litigation 5). "
        "When nothing was recovered in that window (sum of amount_recovered = 0), the step is at least the one "
        "after it (after site_visit: guarantor_notice with a guaranteed loan, else special_team; never past "
        "litigation): a call without recovery brings a visit. When something was recovered, the step is at "
        "least the one taken (what works goes on). And the ladder does not step down: the step is at least the "
        "one of the borrower's task of this strategy still open after the previous as-of (guarantor_notice "
        "counting as site_visit once no loan is guaranteed; write_off_application as litigation once its "
        "condition no longer holds), until the borrower is cured (no plan), which starts it afresh. The step "
        "is the highest of these. Works without collections.csv (no past actions) and without borrowers.csv "
        "(everyone a household). "
        f"{ASSIGNEE_DOC} Due date: the as-of plus `<step>_due_days` (7, 15, 15, 30, 60, 90 in ladder order). "
        f"{PRIORITY_DOC} `details` says why: `rule` (the first of these that gives the step: "
        "`unrecoverable_for_now_days_past_due>=N`, a threshold `days_past_due>=N` or `large_amount` (below "
        "every one: `days_past_due<N`), `repeat_without_recovery` or `repeat_with_recovery` with the `action` "
        "and `action_date`, `floor_from_previous_step` with `previous_step`), `days_past_due`, `at_risk_fen`, "
        "`recovery_category` and `key_household_level` when known."
    ),
    sql=LADDER_SQL,
)
