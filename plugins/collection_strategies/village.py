"""Village collectives: worked through the village cadres and the township, and collected when the land
transfer compensation comes (REFERENCE.md §4: large amounts, large arrears, long time spans, hard to collect)."""

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

VILLAGE_SQL = f"""
WITH plan AS MATERIALIZED (
    SELECT p.*, b.village FROM collection_loans p CROSS JOIN borrowers b
    WHERE b.borrower_id = p.borrower_id AND b.borrower_type IN (SELECT value FROM json_each(:collective_types))
),
per_collective AS MATERIALIZED ({per_borrower("plan", more=", max(p.village) AS village", keep="has_npl")}),
meetings AS MATERIALIZED (
    SELECT p.borrower_id, max(c.action_date) AS last_meeting
    FROM plan p CROSS JOIN collections c
    WHERE c.loan_id = p.loan_id AND c.action = 'visit' AND c.action_date <= :as_of
    GROUP BY p.borrower_id
),
since AS MATERIALIZED (
    -- since the last meeting: anything recovered (from its day on), a letter (after it). CROSS JOIN keeps
    -- SQLite to this order, the collections looked up by loan: else it scanned them all for each meeting
    SELECT m.borrower_id, m.last_meeting, sum(coalesce(c.amount_recovered, 0)) AS recovered,
           max(c.action = 'letter' AND c.action_date > m.last_meeting) AS reported
    FROM meetings m CROSS JOIN plan p CROSS JOIN collections c
    WHERE p.borrower_id = m.borrower_id AND c.loan_id = p.loan_id
      AND c.action_date >= m.last_meeting AND c.action_date <= :as_of
    GROUP BY m.borrower_id
),
stepped AS (
    SELECT x.*, v.land_transfer_expected_date AS transfer_date, s.last_meeting, s.recovered, s.reported,
           CASE WHEN v.land_transfer_expected_date >= :as_of
                     AND v.land_transfer_expected_date <= {days_after(':as_of', ':window_days')}
                    THEN 'land_transfer_collection'
                WHEN s.last_meeting <= {days_before(':as_of', ':report_after_days')} AND s.recovered = 0
                     AND NOT s.reported
                    THEN 'township_report'
                ELSE 'village_cadre_meeting' END AS step
    FROM per_collective x
    LEFT JOIN villages v ON v.village = x.village
    LEFT JOIN since s ON s.borrower_id = x.borrower_id
)
SELECT s.borrower_id, s.loan_ids, s.step, {assignee('k', 's.officer')} AS assignee,
       CASE s.step WHEN 'land_transfer_collection' THEN s.transfer_date
                   WHEN 'township_report' THEN {days_after(':as_of', ':report_due_days')}
                   ELSE {days_after(':as_of', ':meeting_due_days')} END AS due_date,
       {priority('s.at_risk', 's.recovery_rank')} AS priority,
       CASE s.step WHEN 'land_transfer_collection' THEN '["settlement", "visit"]'
                   WHEN 'township_report' THEN '["letter"]'
                   ELSE '["visit"]' END AS done_when,
       -- why this step (json_patch drops the members that are NULL)
       json_patch('{{}}', json_object(
           'rule', CASE s.step WHEN 'land_transfer_collection' THEN 'land_transfer_within_window'
                               WHEN 'township_report' THEN 'no_recovery_since_meeting'
                               ELSE CASE WHEN s.last_meeting IS NULL THEN 'no_meeting_yet'
                                         WHEN s.recovered > 0 THEN 'recovered_since_meeting'
                                         WHEN s.reported THEN 'reported_since_meeting'
                                         ELSE 'recent_meeting' END END,
           'days_past_due', s.days_past_due, 'at_risk_fen', s.at_risk,
           'recovery_category', {recovery_word('s.recovery_rank')}, 'key_household_level', k.level,
           'land_transfer_expected_date',
               CASE WHEN s.step = 'land_transfer_collection' THEN s.transfer_date END,
           'last_meeting', s.last_meeting)) AS details
FROM stepped s
{key_level_join('k', 's.borrower_id')}
"""

VILLAGE_COLLECTIVE = Strategy(
    id="collection.village_collective",
    title="Village collectives: village cadres, the township, the land transfer",
    tables=("loans", "borrowers", "collection_loans"),
    optional_tables=("key_households",),
    params=(
        Param("collective_types", "village_collective", ParamType.TEXT_LIST,
              "borrowers.borrower_type values that count as village collectives"),
        Param("report_after_days", 30, ParamType.INTEGER,
              "days after a village cadre meeting without anything recovered from which the township is told"),
        Param("window_days", 90, ParamType.INTEGER,
              "how many days after the as-of an expected land transfer makes it the moment to collect"),
        Param("meeting_due_days", 15, ParamType.INTEGER,
              "days from the as-of to the due date of village_cadre_meeting"),
        Param("report_due_days", 7, ParamType.INTEGER,
              "days from the as-of to the due date of township_report"),
        *PRIORITY_PARAMS,
        KEY_LEVELS,
    ),
    reference=f"{PRACTICE}: village collective loans: work with village cadres and local government, and use land "
              "transfer and the development of suburban villages as the moment to collect",
    description=(
        "One task per village collective (borrowers.borrower_type one of `collective_types`, village_collective) "
        "with a non-performing loan on the books (this run's class when classification ran, else the recorded "
        "class: substandard, doubtful, loss; written-off loans are not judged). The plan's loans: its loans on "
        "the books that are non-performing or overdue. The step, first that applies:\n\n"
        "1. `land_transfer_collection` (done by a settlement or a visit), due on the expected date: the "
        "collective's village (borrowers.village, matched by name with villages.village) expects its land "
        "transfer (villages.land_transfer_expected_date) from the as-of itself to `window_days` (90) days after "
        "it: expected on the as-of + 90 days counts, + 91 does not, nor does a date already past;\n"
        "2. `township_report` to the township leadership (done by a letter), due `report_due_days` (7) days "
        "after the as-of: the last village cadre meeting (the latest visit on the plan's loans, on or before the "
        "as-of) was `report_after_days` (30) days or more before the as-of (30 reports, 29 waits), nothing was "
        "recovered on those loans from that day to the as-of, and no letter was sent after it (after a report, "
        "the cadres are met again);\n"
        "3. `village_cadre_meeting` (done by a visit), due `meeting_due_days` (15) days after the as-of: "
        "otherwise.\n\n"
        "Needs borrowers.csv (to tell the collectives); without villages.csv there is no land transfer step, "
        f"without collections.csv no meeting has happened. {ASSIGNEE_DOC} {PRIORITY_DOC} `details` says why: "
        "`rule` (`land_transfer_within_window` with `land_transfer_expected_date`, `no_recovery_since_meeting`, "
        "or for a meeting `no_meeting_yet`, `recent_meeting`, `recovered_since_meeting`, "
        "`reported_since_meeting`), `last_meeting`, `days_past_due`, `at_risk_fen`, `recovery_category` and "
        "`key_household_level` when known."
    ),
    sql=VILLAGE_SQL,
)
