"""Collection tasks across nights (the core's side of issue 6): a task carries on with the day it opened and
its due date, closes as done on a matching action, replaced by another step, or cured; checks of the plan
run after it."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import loan, query, write_snapshot

from loanrules.config import parse_config
from loanrules.manager import PluginManager
from loanrules.registry import Registry
from loanrules.run import execute_run

PLUGIN = '''
from loanrules import Check, Pack, Strategy, hookimpl

LADDER = Strategy(
    id="local.ladder", title="Call, then visit", tables=("loans",),
    sql="""SELECT borrower_id, json_group_array(loan_id) AS loan_ids,
                  CASE WHEN max(days_past_due) > 90 THEN 'visit' ELSE 'call' END AS step,
                  'officer-' || borrower_id AS assignee, date(:as_of, '+7 days') AS due_date,
                  sum(outstanding_principal) / 100 AS priority,
                  CASE WHEN max(days_past_due) > 90 THEN '["visit", "letter"]' ELSE '["call"]' END AS done_when,
                  json_object('rule', CASE WHEN max(days_past_due) > 90 THEN 'days_past_due>90' ELSE 'overdue' END,
                              'days_past_due', max(days_past_due)) AS details
           FROM loans WHERE days_past_due > 0 GROUP BY borrower_id""")
OVERDUE = Check(
    id="local.task_overdue", title="Open task past its due date", tables=("loans", "collection_tasks"),
    sql="SELECT borrower_id, step AS subject, 'due ' || due_date AS message FROM collection_tasks "
        "WHERE status = 'open' AND due_date < :as_of")


@hookimpl
def register_strategies(register):
    register(LADDER)


@hookimpl
def register_checks(register):
    register(OVERDUE)


@hookimpl
def register_packs(register):
    register(Pack(name="local-collect", version="1.0.0", title="t", members=["local.ladder", "local.task_overdue"]))
'''


@pytest.fixture
def night(tmp_path):
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "local_collect.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    registry = Registry.from_plugins(PluginManager((directory,), builtins=False))
    nights = iter(range(1, 100))

    def run(as_of, loans, collections=None):
        tables = {"loans": loans}
        if collections is not None:
            tables["collections"] = collections
        snapshot = write_snapshot(tmp_path / f"n{next(nights)}", **tables)
        result = execute_run(run.db, snapshot, as_of=as_of, config=parse_config({}), registry=registry,
                             packs=("local-collect",))
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status != "ok"]
        return result

    run.db = tmp_path / "db"
    return run


def tasks(db, run_id):
    return query(db, "SELECT task_id, step, status, opened_on, due_date, closed_on FROM collection_tasks "
                     "WHERE run_id = ? ORDER BY task_id", (run_id,))


def action(loan_id, action_date, action="call"):
    return {"loan_id": loan_id, "action_date": action_date, "officer_id": "O1", "action": action,
            "amount_recovered": "0", "channel": "transfer"}


def test_a_task_carries_on_with_its_opening_day_and_due_date_then_is_flagged_overdue(night):
    first = night("2026-11-01", [loan("L1", days_past_due="10")])
    assert tasks(night.db, first.run_id) == [
        ("local.ladder:B1:call", "call", "open", "2026-11-01", "2026-11-08", None)]
    second = night("2026-11-10", [loan("L1", days_past_due="19")])
    assert tasks(night.db, second.run_id) == [
        ("local.ladder:B1:call", "call", "open", "2026-11-01", "2026-11-08", None)]
    assert query(night.db, "SELECT check_id, message FROM findings WHERE run_id = ?", (second.run_id,)) == [
        ("local.task_overdue", "due 2026-11-08")]
    assert query(night.db, "SELECT count(*) FROM findings WHERE run_id = ?", (first.run_id,)) == [(0,)]


def test_a_matching_action_since_it_opened_closes_it_as_done(night):
    night("2026-11-01", [loan("L1", days_past_due="10")])
    # an action before the task opened does not count; a non-matching one neither
    second = night("2026-11-10", [loan("L1", days_past_due="19")],
                   [action("L1", "2026-10-30"), action("L1", "2026-11-03", "letter"), action("L1", "2026-11-05")])
    (row,) = query(night.db, "SELECT status, closed_on, closed_by FROM collection_tasks WHERE run_id = ?",
                   (second.run_id,))
    assert row[:2] == ("done", "2026-11-05")
    assert json.loads(row[2]) == {"loan_id": "L1", "action": "call", "action_date": "2026-11-05",
                                  "officer_id": "O1", "amount_recovered_fen": 0}
    # done tonight: not reopened tonight, and no overdue finding; the next night opens it afresh
    third = night("2026-11-20", [loan("L1", days_past_due="29")], [action("L1", "2026-11-05")])
    assert tasks(night.db, third.run_id) == [
        ("local.ladder:B1:call", "call", "open", "2026-11-20", "2026-11-27", None)]


def test_another_step_replaces_the_open_one_and_a_cure_closes_it(night):
    night("2026-11-01", [loan("L1", days_past_due="80"), loan("L2", "B2", days_past_due="5")])
    second = night("2026-11-20", [loan("L1", days_past_due="99"), loan("L2", "B2", days_past_due="0")])
    assert tasks(night.db, second.run_id) == [
        ("local.ladder:B1:call", "call", "replaced", "2026-11-01", "2026-11-08", "2026-11-20"),
        ("local.ladder:B1:visit", "visit", "open", "2026-11-20", "2026-11-27", None),
        ("local.ladder:B2:call", "call", "cured", "2026-11-01", "2026-11-08", "2026-11-20"),
    ]
    (ladder,) = [o for o in second.outcomes if o.contribution_id == "local.ladder"]
    assert ladder.rows == 3  # the tasks stored tonight, closed ones included
    third = night("2026-11-30", [loan("L1", days_past_due="109"), loan("L2", "B2", days_past_due="0")])
    assert tasks(night.db, third.run_id) == [  # closed tasks are stored once, on the night they closed
        ("local.ladder:B1:visit", "visit", "open", "2026-11-20", "2026-11-27", None)]


def test_a_strategy_proposing_one_step_twice_for_a_borrower_fails_alone(tmp_path):
    (tmp_path / "twice.py").write_text(textwrap.dedent('''
        from loanrules import Pack, Strategy, hookimpl

        @hookimpl
        def register_strategies(register):
            register(Strategy(id="local.twice", title="t",
                              sql="SELECT borrower_id, json_array(loan_id) AS loan_ids, 'call' AS step FROM loans"))

        @hookimpl
        def register_packs(register):
            register(Pack(name="local-twice", version="1.0.0", title="t", members=["local.twice"]))
    '''), encoding="utf-8")
    registry = Registry.from_plugins(PluginManager((tmp_path,), builtins=False))
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1"), loan("L2")])
    result = execute_run(tmp_path / "db", snapshot, as_of="2026-11-01", config=parse_config({}),
                         registry=registry, packs=("local-twice",))
    (outcome,) = result.outcomes
    assert outcome.status == "failed" and "step 'call' twice" in outcome.reason


def details(db, run_id):
    """task_id -> (status, details) of the night's tasks."""
    return {task: (status, json.loads(text) if text else None) for task, status, text in query(
        db, "SELECT task_id, status, details FROM collection_tasks WHERE run_id = ? ORDER BY task_id", (run_id,))}


def test_details_say_why_tonight_and_closed_tasks_keep_their_last(night):
    first = night("2026-11-01", [loan("L1", days_past_due="10"), loan("L2", "B2", days_past_due="5"),
                                 loan("L3", "B3", days_past_due="30")])
    assert details(night.db, first.run_id) == {
        "local.ladder:B1:call": ("open", {"rule": "overdue", "days_past_due": 10}),
        "local.ladder:B2:call": ("open", {"rule": "overdue", "days_past_due": 5}),
        "local.ladder:B3:call": ("open", {"rule": "overdue", "days_past_due": 30}),
    }
    # carried on: tonight's details (as tonight's assignee and priority), the opening day kept
    second = night("2026-11-10", [loan("L1", days_past_due="19"), loan("L2", "B2", days_past_due="14"),
                                  loan("L3", "B3", days_past_due="39")])
    assert details(night.db, second.run_id) == {
        "local.ladder:B1:call": ("open", {"rule": "overdue", "days_past_due": 19}),
        "local.ladder:B2:call": ("open", {"rule": "overdue", "days_past_due": 14}),
        "local.ladder:B3:call": ("open", {"rule": "overdue", "days_past_due": 39}),
    }
    # closed: each keeps the details it had (B3's call is done though proposed again tonight, with 49 days);
    # the step that replaces B1's has its own
    third = night("2026-11-20", [loan("L1", days_past_due="99"), loan("L2", "B2", days_past_due="0"),
                                 loan("L3", "B3", days_past_due="49")], [action("L3", "2026-11-15")])
    assert details(night.db, third.run_id) == {
        "local.ladder:B1:call": ("replaced", {"rule": "overdue", "days_past_due": 19}),
        "local.ladder:B1:visit": ("open", {"rule": "days_past_due>90", "days_past_due": 99}),
        "local.ladder:B2:call": ("cured", {"rule": "overdue", "days_past_due": 14}),
        "local.ladder:B3:call": ("done", {"rule": "overdue", "days_past_due": 39}),
    }


def test_details_that_are_not_json_are_stored_as_a_json_string_and_python_tasks_give_theirs(tmp_path):
    """Like a finding's details: text that is not JSON is kept, quoted, rather than failing the strategy."""
    (tmp_path / "details.py").write_text(textwrap.dedent('''
        from loanrules import Pack, Strategy, Task, hookimpl

        def plan(ctx):
            yield Task(borrower_id="B2", loan_ids=["L2"], step="call", details={"rule": "by hand", "days": 3})
            yield Task(borrower_id="B3", loan_ids=["L3"], step="call")

        @hookimpl
        def register_strategies(register):
            register(Strategy(id="local.text", title="t",
                              sql="SELECT borrower_id, json_array(loan_id) AS loan_ids, 'call' AS step, "
                                  "CASE loan_id WHEN 'L1' THEN 'over 90 days' ELSE '{\\"rule\\": \\"x\\"}' END "
                                  "AS details FROM loans WHERE loan_id IN ('L1', 'L2')"))
            register(Strategy(id="local.python", title="t", evaluate=plan))

        @hookimpl
        def register_packs(register):
            register(Pack(name="local-details", version="1.0.0", title="t", members=["local.text", "local.python"]))
    '''), encoding="utf-8")
    registry = Registry.from_plugins(PluginManager((tmp_path,), builtins=False))
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1"), loan("L2", "B2"), loan("L3", "B3")])
    result = execute_run(tmp_path / "db", snapshot, as_of="2026-11-01", config=parse_config({}),
                         registry=registry, packs=("local-details",))
    assert result.status == "succeeded", [o.reason for o in result.outcomes]
    assert query(tmp_path / "db", "SELECT task_id, details FROM collection_tasks ORDER BY task_id") == [
        ("local.python:B2:call", '{"days": 3, "rule": "by hand"}'),
        ("local.python:B3:call", None),
        ("local.text:B1:call", '"over 90 days"'),
        ("local.text:B2:call", '{"rule": "x"}'),
    ]
