"""The collection strategies of pack ``cooperative-baseline`` (issue 6; REFERENCE.md §4): key households across
three levels, the escalation ladder, village collectives, overdue tasks and the key-household ledger.

Every test runs the pack over the smallest book that shows one behaviour, one or more nights into one
database, and reads the plan back from ``collection_tasks``. Borrowers ``V...`` are village collectives of
青山村, ``E...`` enterprises, the others households.
"""

from __future__ import annotations

import datetime
import itertools
import json

import pytest
from conftest import borrower, invoke, loan, query, write_snapshot

from loanrules import demo
from loanrules.config import parse_config
from loanrules.plan import Overrides
from loanrules.run import execute_run

PACK = "cooperative-baseline"
CLASSIFICATION = "cn-five-category"
LADDER = "collection.escalation_ladder"
VILLAGE = "collection.village_collective"
RANKING = "collection.key_household_ranking"
OVERDUE = "collection.task_overdue"
LEDGER = "collection.key_households"
OURS = ("collection.plan_loans", RANKING, LADDER, VILLAGE, OVERDUE, LEDGER)
AS_OF = "2026-11-30"


def days(offset: int, as_of: str = AS_OF) -> str:
    return (datetime.date.fromisoformat(as_of) + datetime.timedelta(days=offset)).isoformat()


def npl(loan_id: str, borrower_id: str, days_past_due: int, recorded_class: str = "substandard", **fields):
    """A loan of 50,000.00 outstanding, overdue ``days_past_due`` days, recorded in ``recorded_class``."""
    return loan(loan_id, borrower_id, days_past_due=days_past_due, recorded_class=recorded_class,
                outstanding_principal=fields.pop("outstanding_principal", "50000.00"), **fields)


def action(loan_id: str, action_date: str, kind: str, recovered: str = "0.00") -> dict[str, object]:
    return {"loan_id": loan_id, "action_date": action_date, "officer_id": "OF002", "action": kind,
            "amount_recovered": recovered, "channel": "transfer" if recovered != "0.00" else ""}


def village(expected: str = "", name: str = "青山村") -> dict[str, object]:
    return {"village": name, "township": "青山镇", "land_transfer_expected_date": expected,
            "land_compensation_amount": "3000000.00" if expected else ""}


def borrowers_of(loans, **fields_by_borrower) -> list[dict[str, object]]:
    """A borrowers row for each borrower of ``loans`` (its type from its first letter), with the given fields."""
    columns = {name for fields in fields_by_borrower.values() for name in fields}
    rows = []
    for borrower_id in sorted({row["borrower_id"] for row in loans}):
        kind = {"V": "village_collective", "E": "enterprise"}.get(borrower_id[0], "household")
        fields = {**dict.fromkeys(columns, ""), **fields_by_borrower.get(borrower_id, {})}
        rows.append(borrower(borrower_id, borrower_type=kind, **fields))
    return rows


@pytest.fixture
def night(tmp_path, registry):
    """``night(as_of, loans, collections=..., villages=..., borrowers=..., params=..., packs=...)``: one run into
    the test's database (``night.db``); every call is another night. Borrowers are written from the loans
    unless ``borrowers`` is given ("absent": no borrowers.csv); collections and villages only when given."""
    numbers = itertools.count(1)

    def run(as_of: str = AS_OF, loans=(), *, collections=None, villages=None, borrowers=None, params=None,
            packs=(PACK,), overrides=Overrides()):
        tables = {"loans": list(loans)}
        if borrowers != "absent":
            tables["borrowers"] = borrowers if borrowers is not None else borrowers_of(loans)
        if collections is not None:
            tables["collections"] = collections
        if villages is not None:
            tables["villages"] = villages
        snapshot = write_snapshot(tmp_path / f"night{next(numbers)}", **tables)
        document = {"cooperative": {"name": "c"},
                    "checks": {item: {"params": values} for item, values in (params or {}).items()}}
        result = execute_run(run.db, snapshot, as_of=as_of, config=parse_config(document), registry=registry,
                             packs=packs, overrides=overrides)
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status == "failed"]
        run.run_id = result.run_id
        return result

    run.db = tmp_path / "results.db"
    return run


def tasks(night, strategy: str = LADDER, columns: str = "borrower_id, step, status") -> list[tuple]:
    """The night's tasks of one strategy (open and closed tonight), by borrower and step."""
    return query(night.db, f"SELECT {columns} FROM collection_tasks WHERE run_id = ? AND strategy_id = ? "
                           f"ORDER BY borrower_id, step", (night.run_id, strategy))


def steps(night, strategy: str = LADDER) -> dict[str, str]:
    """borrower -> step of its open task tonight."""
    return {b: s for b, s, status in tasks(night, strategy) if status == "open"}


def rules(night, strategy: str = LADDER) -> dict[str, str]:
    """borrower -> the rule that chose the step of its open task tonight (details.rule)."""
    return {b: json.loads(d)["rule"] for b, d in tasks(night, strategy, "borrower_id, details") if d is not None
            and b in steps(night, strategy)}


def why(night, borrower_id: str, strategy: str = LADDER) -> dict:
    """The details of the borrower's open task tonight."""
    (details,) = [d for b, d, status in tasks(night, strategy, "borrower_id, details, status")
                  if b == borrower_id and status == "open"]
    return json.loads(details)


def overdue(night) -> list[tuple]:
    return query(night.db, "SELECT subject_key, message, details FROM findings WHERE run_id = ? AND check_id = ? "
                           "ORDER BY subject_key", (night.run_id, OVERDUE))


def ledger(night) -> list[dict]:
    return [json.loads(data) for (data,) in query(
        night.db, "SELECT data FROM summaries WHERE run_id = ? AND summary_id = ? ORDER BY row_no",
        (night.run_id, LEDGER))]


def contribution(night, contribution_id: str) -> tuple:
    return query(night.db, "SELECT status, reason FROM run_contributions WHERE run_id = ? AND contribution_id = ?",
                 (night.run_id, contribution_id))[0]


# ------------------------------------------------------------------ across nights


def test_four_nights_create_escalate_close_by_action_and_cure_and_flag_overdue(night):
    columns = "borrower_id, step, status, opened_on, due_date, closed_on"
    # night 1: an overdue special-mention loan gets a reminder call, a non-performing one a visit, a long overdue
    # one the special team; an overdue normal loan gets nothing
    night("2026-09-30", [npl("L1", "B1", 40, "special_mention"), npl("L2", "B2", 95), npl("L3", "B3", 200, "doubtful"),
                         npl("L4", "B4", 10, "normal")])
    assert tasks(night, columns=columns) == [
        ("B1", "reminder_call", "open", "2026-09-30", "2026-10-07", None),
        ("B2", "site_visit", "open", "2026-09-30", "2026-10-15", None),
        ("B3", "special_team", "open", "2026-09-30", "2026-10-30", None),
    ]
    assert overdue(night) == []
    # night 2: B1 was called without a fen recovered: the call is done and a visit follows; B2 is cured;
    # B3's task carries on with its day and due date, one day overdue
    night("2026-10-31", [npl("L1", "B1", 71, "special_mention"), npl("L2", "B2", 0, "normal"),
                         npl("L3", "B3", 231, "doubtful")],
          collections=[action("L1", "2026-10-05", "call")])
    assert tasks(night, columns=columns) == [
        ("B1", "reminder_call", "done", "2026-09-30", "2026-10-07", "2026-10-05"),
        ("B1", "site_visit", "open", "2026-10-31", "2026-11-15", None),
        ("B2", "site_visit", "cured", "2026-09-30", "2026-10-15", "2026-10-31"),
        ("B3", "special_team", "open", "2026-09-30", "2026-10-30", None),
    ]
    ((subject, message, details),) = overdue(night)
    assert subject == "borrower_id=B3|subject=collection.escalation_ladder:B3:special_team"
    # the only non-performing borrower: a key household, its task with the leadership
    assert message == ("collection task special_team for borrower B3, assigned to leadership, was due on 2026-10-30: "
                       "1 day overdue (open since 2026-09-30)")
    assert json.loads(details)["days_overdue"] == 1 and json.loads(details)["loan_ids"] == ["L3"]
    # night 3: B1 was visited and paid something: the visit is done, and no new task tonight (the step it did);
    # the special team went to B3 without result: litigation
    collections = [action("L1", "2026-10-05", "call"), action("L1", "2026-11-10", "visit", "1000.00"),
                   action("L3", "2026-11-05", "special_team")]
    night("2026-11-30", [npl("L1", "B1", 101), npl("L3", "B3", 261, "doubtful")], collections=collections)
    assert tasks(night, columns=columns) == [
        ("B1", "site_visit", "done", "2026-10-31", "2026-11-15", "2026-11-10"),
        ("B3", "litigation", "open", "2026-11-30", "2027-01-29", None),
        ("B3", "special_team", "done", "2026-09-30", "2026-10-30", "2026-11-05"),
    ]
    assert overdue(night) == []
    # night 4: B1's last visit is 51 days old: visit again; B3's litigation carries on (due 2027-01-29, not overdue)
    night("2026-12-31", [npl("L1", "B1", 132), npl("L3", "B3", 292, "doubtful")], collections=collections)
    assert tasks(night, columns=columns) == [
        ("B1", "site_visit", "open", "2026-12-31", "2027-01-15", None),
        ("B3", "litigation", "open", "2026-11-30", "2027-01-29", None),
    ]


def test_the_ladder_does_not_step_down_when_the_action_that_escalated_it_ages(night):
    night("2026-10-31", [npl("L1", "B1", 100)], collections=[action("L1", "2026-10-20", "visit")])
    assert steps(night) == {"B1": "special_team"}  # visited without a fen: the special team (no guarantee)
    assert why(night, "B1")["rule"] == "repeat_without_recovery"
    night("2026-12-31", [npl("L1", "B1", 161)], collections=[action("L1", "2026-10-20", "visit")])
    assert steps(night) == {"B1": "special_team"}  # the visit is 72 days old, the base step a visit: still the team
    assert why(night, "B1") == {"rule": "floor_from_previous_step", "previous_step": "special_team",
                                "days_past_due": 161, "at_risk_fen": 5000000, "key_household_level": "leadership"}


def test_an_open_task_due_today_is_not_overdue_and_grace_days_is_a_parameter(night):
    params = {LADDER: {"site_visit_due_days": 31}}
    night("2026-09-30", [npl("L1", "B1", 95), npl("L2", "B2", 40, "special_mention")], params=params)
    night("2026-10-31", [npl("L1", "B1", 126), npl("L2", "B2", 71, "special_mention")], params=params)
    # B1's visit is due today (2026-10-31): not overdue; B2's call was due 2026-10-07: 24 days overdue
    assert [json.loads(d)["days_overdue"] for _, _, d in overdue(night)] == [24]
    assert overdue(night)[0][0].startswith("borrower_id=B2|")
    night("2026-11-01", [npl("L1", "B1", 127), npl("L2", "B2", 72, "special_mention")],
          params={**params, OVERDUE: {"grace_days": 1}})
    # B1 one day overdue: within the grace of 1 day; B2 25 days: reported
    assert [json.loads(d)["task_id"] for _, _, d in overdue(night)] == ["collection.escalation_ladder:B2:reminder_call"]


# ------------------------------------------------------------------ the ladder's steps and boundaries


def test_days_past_due_thresholds_choose_the_step(night):
    guaranteed = {"guarantee_type": "guarantee"}
    night(AS_OF, [
        npl("L01", "B01", 89), npl("L02", "B02", 90),
        npl("L03", "B03", 119, **guaranteed), npl("L04", "B04", 120, **guaranteed), npl("L05", "B05", 150),
        npl("L06", "B06", 179, **guaranteed), npl("L07", "B07", 180),
        npl("L08", "B08", 364, "doubtful"), npl("L09", "B09", 365, "loss"),
    ])
    assert steps(night) == {
        "B01": "reminder_call", "B02": "site_visit",
        "B03": "site_visit", "B04": "guarantor_notice", "B05": "site_visit",  # no guarantee: no guarantor step
        "B06": "guarantor_notice", "B07": "special_team",
        "B08": "special_team", "B09": "litigation",
    }
    # the rule that chose each step, at its boundary; the details give the figures it saw
    assert rules(night) == {
        "B01": "days_past_due<90", "B02": "days_past_due>=90",
        "B03": "days_past_due>=90", "B04": "days_past_due>=120", "B05": "days_past_due>=90",
        "B06": "days_past_due>=120", "B07": "days_past_due>=180",
        "B08": "days_past_due>=180", "B09": "days_past_due>=365",
    }
    assert why(night, "B07") == {"rule": "days_past_due>=180", "days_past_due": 180, "at_risk_fen": 5000000,
                                 "key_household_level": "leadership"}  # no classification: no recovery category
    done_when = dict(query(night.db, "SELECT step, done_when FROM collection_tasks WHERE run_id = ?",
                           (night.run_id,)))
    assert {step: json.loads(actions) for step, actions in done_when.items()} == {
        "reminder_call": ["call"], "site_visit": ["visit", "letter"], "guarantor_notice": ["guarantor_notice"],
        "special_team": ["special_team"], "litigation": ["litigation"]}


def test_a_large_amount_goes_to_the_special_team_from_exactly_the_limit(night):
    night(AS_OF, [
        npl("L1", "B1", 95, outstanding_principal="990000.00", interest_arrears="10000.00"),  # 1,000,000.00
        npl("L2", "B2", 95, outstanding_principal="990000.00", interest_arrears="9999.99"),  # 999,999.99
        # an overdue special-mention loan of a non-performing borrower counts in its amount at risk
        npl("L3", "B3", 95, outstanding_principal="600000.00"),
        npl("L4", "B3", 20, "special_mention", outstanding_principal="400000.00"),
        # without a non-performing loan the amount does not matter
        npl("L5", "B4", 20, "special_mention", outstanding_principal="2000000.00"),
    ])
    assert steps(night) == {"B1": "special_team", "B2": "site_visit", "B3": "special_team", "B4": "reminder_call"}
    assert rules(night) == {"B1": "large_amount", "B2": "days_past_due>=90", "B3": "large_amount",
                            "B4": "days_past_due<90"}
    assert why(night, "B1")["at_risk_fen"] == 100000000
    # (another borrower: B1's open special_team task would keep it there, the ladder does not step down)
    night(days(1), [npl("L6", "B6", 96, outstanding_principal="990000.00", interest_arrears="10000.00")],
          params={LADDER: {"large_amount": "1000000.01"}})
    assert steps(night) == {"B6": "site_visit"}


def test_past_actions_escalate_within_repeat_days_unless_something_was_recovered(night):
    guaranteed = {"guarantee_type": "guarantee"}
    night(AS_OF, [
        npl("L1", "B1", 40, "special_mention"), npl("L2", "B2", 40, "special_mention"),
        npl("L3", "B3", 95), npl("L4", "B4", 95, **guaranteed), npl("L5", "B5", 95),
        npl("L6", "B6", 95, **guaranteed), npl("L7", "B7", 95), npl("L8", "B8", 400, "loss"),
        npl("L9", "B9", 40, "special_mention"), npl("L10", "B10", 40, "special_mention"),
    ], collections=[
        action("L1", days(-45), "call"),  # 45 days before the as-of: still counts
        action("L2", days(-46), "call"),  # 46: too old, call again
        action("L3", days(-3), "visit"),  # visited without a fen, no guarantee: the special team
        action("L4", days(-3), "letter"),  # a written demand, guaranteed: notify the guarantor
        action("L5", days(-10), "visit"), action("L5", days(-2), "settlement", "500.00"),  # paid something: visit on
        action("L6", days(-3), "guarantor_notice"), action("L7", days(-3), "guarantor_notice"),
        action("L8", days(-3), "litigation"),  # nothing past litigation without the write-off's condition
        action("L9", days(1), "call"),  # after the as-of: not yet
        action("L10", days(-20), "visit"), action("L10", days(-5), "visit", "100.00"),  # what works goes on
    ])
    assert steps(night) == {"B1": "site_visit", "B2": "reminder_call", "B3": "special_team",
                            "B4": "guarantor_notice", "B5": "site_visit", "B6": "special_team",
                            "B7": "special_team",  # a guarantor notice without a guarantee: a written demand
                            "B8": "litigation", "B9": "reminder_call", "B10": "site_visit"}
    # the rule, with the action (the latest of the furthest step taken) and its date; a threshold that gives
    # the same step comes first (B5: 95 days; B8: 400 days)
    assert rules(night) == {
        "B1": "repeat_without_recovery", "B2": "days_past_due<90", "B3": "repeat_without_recovery",
        "B4": "repeat_without_recovery", "B5": "days_past_due>=90", "B6": "repeat_without_recovery",
        "B7": "repeat_without_recovery", "B8": "days_past_due>=365", "B9": "days_past_due<90",
        "B10": "repeat_with_recovery"}
    assert {b: (why(night, b)["action"], why(night, b)["action_date"]) for b in ("B1", "B3", "B4", "B6", "B7")} == {
        "B1": ("call", days(-45)), "B3": ("visit", days(-3)), "B4": ("letter", days(-3)),
        "B6": ("guarantor_notice", days(-3)), "B7": ("guarantor_notice", days(-3))}
    assert why(night, "B10") == {"rule": "repeat_with_recovery", "action": "visit", "action_date": days(-5),
                                 "recovered_fen": 10000, "days_past_due": 40, "at_risk_fen": 5000000}
    night(days(1), [npl("L0", "B0", 41, "special_mention")], collections=[action("L0", days(-44), "call")],
          params={LADDER: {"repeat_days": 44}})  # 44 days before the new as-of is 45 days too old
    assert steps(night) == {"B0": "reminder_call"}


def test_write_off_application_for_long_overdue_loans_unrecoverable_for_now(night):
    gone = {"deceased_or_dissolved": "1"}
    loans = [npl("L1", "B1", 1095, "loss"), npl("L2", "B2", 1094, "loss"), npl("L3", "B3", 1200, "loss")]
    night(AS_OF, loans, borrowers=borrowers_of(loans, B1=gone, B2=gone), packs=(PACK, CLASSIFICATION))
    assert query(night.db, "SELECT loan_id, recovery_category FROM assessments WHERE run_id = ? ORDER BY loan_id",
                 (night.run_id,)) == [("L1", "unrecoverable_for_now"), ("L2", "unrecoverable_for_now"),
                                      ("L3", "recoverable_with_effort")]
    assert steps(night) == {"B1": "write_off_application", "B2": "litigation", "B3": "litigation"}
    assert rules(night) == {"B1": "unrecoverable_for_now_days_past_due>=1095", "B2": "days_past_due>=365",
                            "B3": "days_past_due>=365"}
    assert why(night, "B1")["recovery_category"] == "unrecoverable_for_now"
    (done_when,) = query(night.db, "SELECT done_when FROM collection_tasks WHERE run_id = ? AND borrower_id = 'B1'",
                         (night.run_id,))[0]
    assert json.loads(done_when) == ["write_off"]
    # without classification no recovery category is known: no write-off application
    night(days(1), [npl("L1", "B1", 1096, "loss")], borrowers=borrowers_of([loan("L1", "B1")], B1=gone))
    assert steps(night) == {"B1": "litigation"}


def test_early_reminders_only_for_overdue_special_mention_and_can_be_turned_off(night):
    loans = [npl("L1", "B1", 1, "special_mention"), npl("L2", "B2", 0, "special_mention"),
             npl("L3", "B3", 30, "normal"), npl("L4", "B4", 0, "substandard")]
    night(AS_OF, loans)
    assert steps(night) == {"B1": "reminder_call", "B4": "reminder_call"}
    night(days(1), loans, params={LADDER: {"early_reminders": False}})
    assert steps(night) == {"B4": "reminder_call"}


def test_borrower_types_and_borrowers_without_a_row(night):
    loans = [npl("L1", "H1", 95), npl("L2", "E1", 95), npl("L3", "V1", 95)]
    night(AS_OF, loans)
    assert steps(night) == {"E1": "site_visit", "H1": "site_visit"}  # the village collective has its own plan
    assert steps(night, VILLAGE) == {"V1": "village_cadre_meeting"}
    night(days(1), loans, params={LADDER: {"borrower_types": ["household"]}})
    assert steps(night) == {"H1": "site_visit"}
    # no borrowers.csv: every borrower is a household; the village strategy cannot tell collectives and is skipped
    night(days(2), loans, borrowers="absent")
    assert steps(night) == {"E1": "site_visit", "H1": "site_visit", "V1": "site_visit"}
    assert contribution(night, VILLAGE) == ("skipped", "needs borrowers.csv, which this snapshot does not have")


def test_a_plan_covers_the_overdue_and_non_performing_loans_and_sums_their_amount_at_risk(night):
    night(AS_OF, [npl("L1", "B1", 95, interest_arrears="1234.56"), npl("L2", "B1", 5, "normal"),
                  npl("L3", "B1", 0, "normal"), npl("L4", "B1", 100, "loss", written_off="1")])
    ((loan_ids, priority),) = tasks(night, columns="loan_ids, priority")
    assert json.loads(loan_ids) == ["L1", "L2"]  # not the current loan, not the written-off one
    # 50,000.00 + 1,234.56 + 50,000.00 = 101,234.56 yuan at risk -> 101,234 whole yuan x 2 (recovery unknown)
    assert priority == 202468


def test_priority_weighs_the_recovery_category(night):
    loans = [npl("L1", "B1", 100), npl("L2", "B2", 100)]
    night(AS_OF, loans, borrowers=borrowers_of(loans, B2={"deceased_or_dissolved": "1"}, B1={
        "repayment_willingness": "good", "repayment_capacity": "normal"}), packs=(PACK, CLASSIFICATION))
    assert tasks(night, columns="borrower_id, priority") == [("B1", 150000), ("B2", 50000)]  # x3 and x1
    night(days(1), loans, borrowers=borrowers_of(loans, B2={"deceased_or_dissolved": "1"}),
          packs=(PACK, CLASSIFICATION), params={LADDER: {"weight_unrecoverable_for_now": 5}})
    assert tasks(night, columns="borrower_id, priority") == [("B1", 100000), ("B2", 250000)]


def test_the_assignee_is_the_worst_loans_collection_officer_then_its_lender(night):
    night(AS_OF, [
        npl("L1", "B1", 95, collection_officer_id="OF007"), npl("L2", "B1", 120, collection_officer_id="OF009"),
        npl("L3", "B2", 95, collection_officer_id="", lending_officer_id="OF003"),
        npl("L4", "B3", 95, collection_officer_id="", lending_officer_id=""),
        # two loans equally overdue: the larger amount at risk decides
        npl("L5", "B4", 95, collection_officer_id="OF005"),
        npl("L6", "B4", 95, collection_officer_id="OF006", outstanding_principal="60000.00"),
    ], params={RANKING: {"count": 0}})  # no key households
    assert tasks(night, columns="borrower_id, assignee") == [
        ("B1", "OF009"), ("B2", "OF003"), ("B3", "unassigned"), ("B4", "OF006")]


# ------------------------------------------------------------------ key households across three levels


def test_key_households_split_across_three_levels_and_take_their_tasks(night):
    # non-performing exposure (principal + interest in arrears) of B1..B7: 700k, 600k, 500k, 400k, 300k, 300k, 200k
    loans = [npl(f"L{i}", f"B{i}", 95, outstanding_principal=f"{amount}.00")
             for i, amount in enumerate((690000, 600000, 500000, 400000, 300000, 300000, 200000), 1)]
    loans[0]["interest_arrears"] = "10000.00"
    loans.append(npl("L8", "B1", 0, "normal", outstanding_principal="80000.00", interest_arrears="12.34"))
    params = {RANKING: {"count": 5, "leadership_count": 1, "department_count": 2}}
    night(AS_OF, loans, params=params, collections=[action("L2", days(-3), "visit", "2000.00")])
    assert [(r["rank"], r["borrower_id"], r["level"]) for r in ledger(night)] == [
        (1, "B1", "leadership"), (2, "B2", "risk_asset_department"), (3, "B3", "risk_asset_department"),
        (4, "B4", "credit_officer"), (5, "B5", "credit_officer")]  # B5 and B6 tie: by borrower_id
    assert tasks(night, columns="borrower_id, assignee") == [
        ("B1", "leadership"), ("B2", "risk_asset_department"), ("B3", "risk_asset_department"),
        ("B4", "OF002"), ("B5", "OF002"), ("B6", "OF002"), ("B7", "OF002")]
    assert ledger(night)[0] == {
        "rank": 1, "borrower_id": "B1", "level": "leadership", "exposure_fen": 77000000,
        "interest_arrears_fen": 1001234, "worst_class": "substandard", "recovery_category": None,
        "open_steps": "site_visit", "recovered_fen": 0}
    assert ledger(night)[1]["recovered_fen"] == 200000  # the first night: every date up to the as-of
    # the level names are parameters, and which levels take the task
    night(days(1), loans, params={RANKING: {**params[RANKING], "leadership_level": "board"},
                                  LADDER: {"key_household_levels": ["board"]}})
    assert tasks(night, columns="borrower_id, assignee")[:3] == [("B1", "board"), ("B2", "OF002"), ("B3", "OF002")]


def test_the_ledger_counts_recoveries_since_the_previous_as_of_and_the_open_steps(night):
    loans = [npl("L1", "B1", 95), npl("L2", "B1", 100, "doubtful", written_off="1")]
    night("2026-10-31", loans, collections=[action("L1", "2026-10-20", "visit", "300.00")])
    assert ledger(night)[0]["recovered_fen"] == 30000
    night("2026-11-30", loans, collections=[
        action("L1", "2026-10-20", "visit", "300.00"), action("L1", "2026-10-31", "call", "1.00"),  # not after
        action("L1", "2026-11-01", "visit", "20.00"),
        action("L2", "2026-11-30", "settlement", "5.00"),  # a written-off loan's recovery counts
        action("L1", "2026-12-01", "settlement", "7000.00")])  # after the as-of: not yet
    (row,) = ledger(night)
    assert row["recovered_fen"] == 2500 and row["worst_class"] == "substandard"
    # the visit of 2026-11-01 closed the visit task; tonight's proposal is the step it did: no open step
    assert tasks(night) == [("B1", "site_visit", "done")] and row["open_steps"] is None


def test_the_ledger_shows_the_computed_class_and_recovery_category(night):
    loans = [npl("L1", "B1", 300, "normal")]
    night(AS_OF, loans, packs=(PACK, CLASSIFICATION))
    (row,) = ledger(night)
    assert (row["worst_class"], row["recovery_category"], row["open_steps"]) == (
        "doubtful", "recoverable_with_effort", "special_team")


# ------------------------------------------------------------------ non-performing: computed or recorded


def test_non_performing_by_the_computed_class_with_classification_else_by_the_recorded_class(night):
    # L1 is 100 days overdue but recorded normal; L2 recorded substandard though current
    loans = [npl("L1", "B1", 100, "normal"), npl("L2", "B2", 0, "substandard")]
    night(AS_OF, loans)
    assert steps(night) == {"B2": "reminder_call"}
    assert [r["borrower_id"] for r in ledger(night)] == ["B2"]
    night(days(1), loans, packs=(PACK, CLASSIFICATION))
    assert steps(night) == {"B1": "site_visit"}
    assert [r["borrower_id"] for r in ledger(night)] == ["B1"]
    assert tasks(night) == [("B1", "site_visit", "open"), ("B2", "reminder_call", "cured")]


def test_written_off_loans_are_not_judged(night):
    loans = [npl("L1", "B1", 400, "loss", written_off="1"), npl("L2", "V1", 400, "loss", written_off="1")]
    night(AS_OF, loans)
    assert tasks(night) == [] and tasks(night, VILLAGE) == [] and ledger(night) == []


# ------------------------------------------------------------------ village collectives


def test_village_collective_meeting_then_township_report_when_nothing_came_of_it(night):
    loans = [npl(f"L{i}", f"V{i}", 400, "loss") for i in range(1, 7)] + [npl("L9", "V9", 0, "normal")]
    night(AS_OF, loans, collections=[
        action("L2", days(-30), "visit"),  # met 30 days ago, nothing since: tell the township
        action("L3", days(-29), "visit"),  # 29 days ago: wait
        action("L4", days(-30), "visit"), action("L4", days(-5), "settlement", "100.00"),  # it brought something
        action("L5", days(-40), "visit"), action("L5", days(-10), "letter"),  # reported: meet again
        action("L6", days(-60), "visit"), action("L6", days(-30), "visit"),  # the last meeting counts
    ], villages=[village()])
    assert tasks(night, VILLAGE, "borrower_id, step, due_date, done_when") == [
        ("V1", "village_cadre_meeting", days(15), '["visit"]'),
        ("V2", "township_report", days(7), '["letter"]'),
        ("V3", "village_cadre_meeting", days(15), '["visit"]'),
        ("V4", "village_cadre_meeting", days(15), '["visit"]'),
        ("V5", "village_cadre_meeting", days(15), '["visit"]'),
        ("V6", "township_report", days(7), '["letter"]'),
    ]
    assert rules(night, VILLAGE) == {
        "V1": "no_meeting_yet", "V2": "no_recovery_since_meeting", "V3": "recent_meeting",
        "V4": "recovered_since_meeting", "V5": "reported_since_meeting", "V6": "no_recovery_since_meeting"}
    assert why(night, "V6", VILLAGE) == {"rule": "no_recovery_since_meeting", "last_meeting": days(-30),
                                         "days_past_due": 400, "at_risk_fen": 5000000,
                                         "key_household_level": "leadership"}
    assert tasks(night) == []  # the ladder leaves collectives alone
    night(days(1), loans[:2], collections=[action("L2", days(-30), "visit")], villages=[village()],
          params={VILLAGE: {"report_after_days": 32}})
    assert steps(night, VILLAGE) == {"V1": "village_cadre_meeting", "V2": "village_cadre_meeting"}


@pytest.mark.parametrize(("offset", "expected"), [(90, True), (91, False), (0, True), (-1, False)])
def test_land_transfer_within_the_window_is_the_moment_to_collect(night, offset, expected):
    night(AS_OF, [npl("L1", "V1", 400, "loss")], collections=[action("L1", days(-30), "visit")],
          villages=[village(days(offset))])
    if expected:  # it takes precedence over the township report
        assert tasks(night, VILLAGE, "step, due_date, done_when") == [
            ("land_transfer_collection", days(offset), '["settlement", "visit"]')]
        assert why(night, "V1", VILLAGE) == {
            "rule": "land_transfer_within_window", "land_transfer_expected_date": days(offset),
            "last_meeting": days(-30), "days_past_due": 400, "at_risk_fen": 5000000,
            "key_household_level": "leadership"}
    else:
        assert steps(night, VILLAGE) == {"V1": "township_report"}
        assert "land_transfer_expected_date" not in why(night, "V1", VILLAGE)


def test_land_transfer_window_is_a_parameter_and_the_village_strategy_works_without_villages(night):
    loans = [npl("L1", "V1", 400, "loss")]
    night(AS_OF, loans, villages=[village(days(91))], params={VILLAGE: {"window_days": 91}})
    assert steps(night, VILLAGE) == {"V1": "land_transfer_collection"}
    night(days(1), loans)
    assert steps(night, VILLAGE) == {"V1": "village_cadre_meeting"}
    assert contribution(night, VILLAGE) == ("ok", None)


def test_village_tasks_go_to_the_key_household_level(night):
    loans = [npl("L1", "V1", 400, "loss", outstanding_principal="5000000.00"), npl("L2", "V2", 400, "loss")]
    night(AS_OF, loans, params={RANKING: {"count": 1}})
    assert tasks(night, VILLAGE, "borrower_id, assignee, priority") == [
        ("V1", "leadership", 10000000), ("V2", "OF002", 100000)]


# ------------------------------------------------------------------ running in the pack


def test_the_strategies_run_without_collections_and_parameters_come_from_the_command_line(night):
    loans = [npl("L1", "B1", 60)]
    night(AS_OF, loans, overrides=Overrides.parse(params=[f"{LADDER}.site_visit_days=60"]))
    assert steps(night) == {"B1": "site_visit"}
    for contribution_id in OURS:
        assert contribution(night, contribution_id) == ("ok", None)


def test_without_the_ranking_the_strategies_assign_officers_and_the_ledger_is_skipped(night):
    night(AS_OF, [npl("L1", "B1", 95)], overrides=Overrides.parse(disable=[RANKING]))
    assert contribution(night, LADDER) == ("ok", None)
    assert tasks(night, columns="borrower_id, assignee") == [("B1", "OF002")]
    status, reason = contribution(night, LEDGER)
    assert status == "skipped" and "key_households" in reason


def test_every_strategy_check_and_summary_runs_ok_and_plans_on_the_demo_cooperative(runner, tmp_path):
    dates = [datetime.date(2026, 9, 30), datetime.date(2026, 10, 31), datetime.date(2026, 11, 27)]
    db = tmp_path / "demo.db"
    for snapshot in demo.write_history(tmp_path / "demo", loans=300, as_of_dates=dates):
        result = invoke(runner, "run", snapshot, "--as-of", snapshot.name, "--pack", PACK, "--pack",
                        CLASSIFICATION, "--db", db, "--quiet")
        assert result.exit_code == 0, result.output  # every plugin of both packs ran (no --fail-on given)
    run_id = query(db, "SELECT max(run_id) FROM runs")[0][0]
    outcomes = dict(query(db, "SELECT contribution_id, status FROM run_contributions WHERE run_id = ?", (run_id,)))
    assert {item: outcomes[item] for item in OURS} == dict.fromkeys(OURS, "ok")
    planned = dict(query(db, "SELECT strategy_id, count(*) FROM collection_tasks WHERE run_id = ? AND status = 'open' "
                             "GROUP BY strategy_id", (run_id,)))
    assert planned.get(LADDER, 0) > 0 and planned.get(VILLAGE, 0) > 0, planned
    assert query(db, "SELECT count(*) FROM findings WHERE run_id = ? AND check_id = ?", (run_id, OVERDUE))[0][0] > 0
    assert query(db, "SELECT count(*) FROM summaries WHERE run_id = ? AND summary_id = ?", (run_id, LEDGER))[0][0] > 0
