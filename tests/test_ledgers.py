"""The morning's lists (issue 6): `loanrules tasks` and the household and officer ledgers, over a small book
walked across three nights by a test strategy (not the built-in collection strategies)."""

from __future__ import annotations

import csv
import datetime
import io
import json
import textwrap

import openpyxl
import pytest
from conftest import borrower, invoke, loan, write_snapshot

from loanrules import ledgers, results
from loanrules.config import parse_config
from loanrules.errors import UsageError
from loanrules.manager import PluginManager
from loanrules.registry import Registry
from loanrules.run import execute_run
from loanrules.store import connect, ensure_schema

# A borrower with an overdue loan gets one step: a call, or a visit past 90 days; a household owing
# 100,000 yuan or more goes to the leadership (a level, not an officer), the rest to their collection
# officer. Key households: the largest non-performing one is the leadership's, the others the risk department's.
PLUGIN = '''
from loanrules import Classifier, Pack, Strategy, Summary, hookimpl

NPL = "('substandard', 'doubtful', 'loss')"

LADDER = Strategy(
    id="local.ladder", title="Call, then visit", tables=("loans",),
    sql="""SELECT borrower_id, json_group_array(loan_id) AS loan_ids,
                  CASE WHEN max(days_past_due) > 90 THEN 'visit' ELSE 'call' END AS step,
                  CASE WHEN sum(outstanding_principal) >= 10000000 THEN 'leadership'
                       ELSE max(collection_officer_id) END AS assignee,
                  date(:as_of, '+7 days') AS due_date, sum(outstanding_principal) / 100 AS priority,
                  CASE WHEN max(days_past_due) > 90 THEN '["visit"]' ELSE '["call"]' END AS done_when,
                  json_object('rule', CASE WHEN max(days_past_due) > 90 THEN 'days_past_due>=91'
                                           ELSE 'days_past_due<91' END,
                              'days_past_due', max(days_past_due)) AS details
           FROM loans WHERE days_past_due > 0 AND coalesce(written_off, 0) = 0 GROUP BY borrower_id""")
KEY = Summary(
    id="collection.key_households", title="Key households", tables=("loans", "assessments"),
    columns=("borrower_id", "level", "npl_fen"),
    sql=f"""SELECT l.borrower_id,
                   CASE WHEN row_number() OVER (ORDER BY sum(l.outstanding_principal) DESC, l.borrower_id) = 1
                        THEN 'leadership' ELSE 'risk_department' END AS level,
                   sum(l.outstanding_principal) AS npl_fen
            FROM loans l LEFT JOIN assessments a ON a.loan_id = l.loan_id
            WHERE coalesce(l.written_off, 0) = 0 AND coalesce(a.risk_class, l.recorded_class) IN {NPL}
            GROUP BY l.borrower_id""")
DAYS = Classifier(id="local.days", title="Past 90 days is substandard",
                  sql="SELECT loan_id, 'substandard' AS risk_class FROM loans WHERE days_past_due > 90")
RECOVERY = Classifier(
    id="local.recovery", title="Recovery", assigns="recovery_category", tables=("loans", "assessments"),
    sql=f"SELECT loan_id, 'recoverable_with_effort' AS recovery_category FROM assessments WHERE risk_class IN {NPL}")


@hookimpl
def register_strategies(register):
    register(LADDER)


@hookimpl
def register_summaries(register):
    register(KEY)


@hookimpl
def register_classifiers(register):
    register(DAYS)
    register(RECOVERY)


@hookimpl
def register_packs(register):
    register(Pack(name="local-plan", version="1.0.0", title="t", members=["local.ladder", "collection.key_households"]))
    register(Pack(name="local-classify", version="1.0.0", title="t", members=["local.days", "local.recovery"]))
'''


def make_night(directory, db):
    plugins = directory / "plugins"
    plugins.mkdir()
    (plugins / "local_ledger.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: conftest's autouse fixture is not yet in force
        patch.setenv("LOANRULES_LOAD_PLUGINS", "")
        registry = Registry.from_plugins(PluginManager((plugins,), builtins=False))
    nights = iter(range(1, 100))

    def night(as_of, loans, collections=None, packs=("local-plan",)):
        tables = {"loans": loans, "borrowers": [borrower(b, name=n) for b, n in NAMES.items()]}
        if collections is not None:
            tables["collections"] = collections
        snapshot = write_snapshot(directory / f"n{next(nights)}", **tables)
        result = execute_run(db, snapshot, as_of=as_of, config=parse_config({}), registry=registry, packs=packs)
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status != "ok"]
        return result

    return night


NAMES = {"B1": "张三", "B2": "李四", "B3": "王五", "B5": "赵六"}


def book_loan(loan_id, borrower_id, outstanding, days, recorded, lender, collector, **fields):
    return loan(loan_id, borrower_id, outstanding_principal=outstanding, principal="200000.00",
                days_past_due=days, recorded_class=recorded, lending_officer_id=lender,
                collection_officer_id=collector, **fields)


def action(loan_id, action_date, officer, kind, recovered):
    return {"loan_id": loan_id, "action_date": action_date, "officer_id": officer, "action": kind,
            "amount_recovered": recovered, "channel": "transfer"}


# Collection actions as the extract lists them (the full history each night).
OLD_CALL = action("L1", "2026-10-20", "OF2", "call", "0.00")
B1_VISIT = action("L1", "2026-11-05", "OF2", "visit", "5000.00")  # closes B1's visit on time (due 11-08)
LATE_ENTRY = action("L6", "2026-11-10", "OF1", "call", "100.00")  # dated night 2's as-of, listed only on night 3
B2_CALL = action("L2", "2026-11-12", "OF3", "call", "3000.00")  # closes B2's call late (due 11-08)
B3_CALL = action("L3", "2026-11-17", "OF1", "call", "0.00")  # closes B3's call on its due date: on time
WRITTEN_OFF_LETTER = action("L4", "2026-11-18", "OF2", "letter", "300.00")  # on a written-off loan
AS_OF_CALL = action("L6", "2026-11-20", "OF1", "call", "200.00")  # on night 3's as-of: in its period


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Officers OF1, OF2, OF3; households B1 (two loans, one written off on night 3), B2, B3, B5.

    Night 1 (11-01): B1 visit (leadership: owes 120,000), B2 call (OF3), B5 visit (OF1); all due 11-08.
    Night 2 (11-10): B1's visit done 11-05; B2's call and B5's visit overdue; B3 call opens (OF1, due 11-17).
    Night 3 (11-20): B2's call done 11-12 (late), B3's done 11-17, its due date (on time); B5's visit still
    open, 12 days overdue; B1's visit opens again, now OF2's (95,000 on the books: L4 written off).
    """
    directory = tmp_path_factory.mktemp("book")
    db = directory / "results.db"
    night = make_night(directory, db)
    night("2026-11-01", [
        book_loan("L1", "B1", "100000.00", 120, "substandard", "OF1", "OF2"),
        book_loan("L4", "B1", "20000.00", 200, "doubtful", "OF3", "OF2", interest_arrears="1500.50"),
        book_loan("L2", "B2", "50000.00", 10, "special_mention", "OF1", "OF3"),
        book_loan("L3", "B3", "80000.00", 0, "normal", "OF2", "OF1"),
        book_loan("L6", "B5", "60000.00", 400, "loss", "OF3", "OF1"),
    ], [OLD_CALL])
    night("2026-11-10", [
        book_loan("L1", "B1", "95000.00", 129, "substandard", "OF1", "OF2"),
        book_loan("L4", "B1", "20000.00", 209, "doubtful", "OF3", "OF2", interest_arrears="1500.50"),
        book_loan("L2", "B2", "50000.00", 19, "special_mention", "OF1", "OF3"),
        book_loan("L3", "B3", "80000.00", 15, "normal", "OF2", "OF1"),
        book_loan("L6", "B5", "60000.00", 409, "loss", "OF3", "OF1"),
    ], [OLD_CALL, B1_VISIT])
    night("2026-11-20", [
        book_loan("L1", "B1", "95000.00", 139, "substandard", "OF1", "OF2"),
        book_loan("L4", "B1", "20000.00", 219, "loss", "OF3", "OF2", interest_arrears="1500.50", written_off=1),
        book_loan("L2", "B2", "47000.00", 0, "normal", "OF1", "OF3"),
        book_loan("L3", "B3", "80000.00", 25, "normal", "OF2", "OF1"),
        book_loan("L6", "B5", "60000.00", 419, "loss", "OF3", "OF1"),
    ], [OLD_CALL, B1_VISIT, LATE_ENTRY, B2_CALL, B3_CALL, WRITTEN_OFF_LETTER, AS_OF_CALL])
    return db


def reading(db, run_id=None):
    conn = results.open_results(db)
    return conn, results.resolve_run(conn, run_id)


def officers(db, run_id=None, since=None):
    conn, run = reading(db, run_id)
    ledger = ledgers.officer_ledger(conn, run, since)
    return ledger, {row["officer_id"]: tuple(row[c] for c in ledgers.OFFICER_COLUMNS[1:11]) for row in ledger.rows}


# ------------------------------------------------------------ officer ledger

def test_officer_ledger_figures_by_hand(book):
    ledger, rows = officers(book)
    assert (ledger.as_of, ledger.period_from) == ("2026-11-20", "2026-11-11")  # the day after night 2's as-of
    # columns: npl lent (count, fen), npl collecting (count, fen), recovered fen, actions,
    #          tasks open, overdue, done on time, done late
    assert rows == {
        # lent L1 (substandard, 95,000; L2 it lent is not non-performing); collects L6 (loss, 60,000);
        # acted on L3 11-17 (0) and L6 11-20 (200, the as-of day counts; the 11-10 call is night 2's period);
        # B5's visit is open and past its 11-08 due date; B3's call closed on its due date, 11-17: on time
        "OF1": (1, 95000_00, 1, 60000_00, 200_00, 2, 1, 1, 1, 0),
        # lent only L3 (normal); collects L1 (95,000; L4 is written off, off the books); wrote a letter on
        # written-off L4 (300 recovered still counts); B1's new visit is its own, due 11-27: not overdue
        "OF2": (0, 0, 1, 95000_00, 300_00, 1, 1, 0, 0, 0),
        # lent L6 (60,000; L4 written off); collects only L2 (cured to normal); B2's call closed 11-12,
        # due 11-08: late
        "OF3": (1, 60000_00, 0, 0, 3000_00, 1, 0, 0, 0, 1),
    }  # "leadership" (B1's night-1 assignee) is a level, not an officer: no row


def test_since_widens_the_period(book):
    ledger, rows = officers(book, since="2026-11-01")
    assert ledger.period_from == "2026-11-01"
    # OF1: + the 11-10 call (100); OF2: + the 11-05 visit (5,000); B1's visit done 11-05 was the leadership's
    assert rows["OF1"][4:6] == (300_00, 3)
    assert rows["OF2"][4:6] == (5300_00, 2)
    assert rows["OF2"][8:] == (0, 0)


def test_an_earlier_night_has_its_own_period_and_tasks(book):
    ledger, rows = officers(book, run_id=2)
    assert ledger.period_from == "2026-11-02"
    # night 2: OF1 has B5's visit (overdue) and B3's call (due 11-17) open; OF3 has B2's call, overdue
    assert {officer: row[6:8] for officer, row in rows.items()} == {"OF1": (2, 1), "OF2": (0, 0), "OF3": (1, 1)}
    assert rows["OF2"][4:6] == (5000_00, 1)  # the 11-05 visit
    _, first = officers(book, run_id=1)
    assert first["OF2"][4:6] == (0, 1)  # the first night's period has no start: the 10-20 call counts


@pytest.fixture
def fresh(tmp_path):
    db = tmp_path / "results.db"
    return make_night(tmp_path, db), db


def test_non_performing_by_the_computed_class_when_the_run_classified(fresh):
    night, db = fresh
    loans = [book_loan("L1", "B1", "10000.00", 0, "substandard", "OF1", "OF1"),  # computed normal
             book_loan("L3", "B3", "30000.00", 100, "normal", "OF2", "OF2")]  # computed substandard
    night("2026-11-01", loans, packs=("local-plan",))
    _, recorded = officers(db)
    assert (recorded["OF1"][:2], recorded["OF2"][:2]) == ((1, 10000_00), (0, 0))
    night("2026-11-02", loans, packs=("local-plan", "local-classify"))
    _, computed = officers(db)
    assert (computed["OF1"][:2], computed["OF2"][:2]) == ((0, 0), (1, 30000_00))
    conn, run = reading(db)
    (b3,) = [r for r in ledgers.household_ledger(conn, run) if r["borrower_id"] == "B3" and r["run_id"] == 2]
    assert (b3["worst_class"], b3["worst_recovery_category"]) == ("substandard", "recoverable_with_effort")
    (b1,) = ledgers.household_ledger(conn, results.resolve_run(conn, 1), "B1")
    assert (b1["worst_class"], b1["worst_recovery_category"]) == ("substandard", None)  # recorded, unassessed


def test_a_task_due_on_the_as_of_is_not_yet_overdue(fresh, runner):
    night, db = fresh
    night("2026-11-01", [book_loan("L2", "B2", "50000.00", 10, "special_mention", "OF1", "OF3")])  # due 11-08
    for as_of, days in (("2026-11-08", 0), ("2026-11-09", 1)):
        night(as_of, [book_loan("L2", "B2", "50000.00", 10, "special_mention", "OF1", "OF3")])
        (task,) = csv_rows(invoke(runner, "tasks", "--db", db, "--format", "csv").stdout)
        assert task["days_overdue"] == str(days)
        assert officers(db)[1]["OF3"][6:8] == (1, days)  # open, overdue


# ------------------------------------------------------------ household ledger

HOUSEHOLD = ("as_of", "period_from", "loans", "outstanding_fen", "interest_arrears_fen", "worst_class",
             "key_household_level", "plan", "closed_tonight", "actions", "action_kinds", "recovered_fen")


def households(db, run_id=None, borrower=None, last=None):
    conn, run = reading(db, run_id)
    return ledgers.household_ledger(conn, run, borrower, last)


def test_household_ledger_over_time(book):
    rows = [tuple(r[c] for c in HOUSEHOLD) for r in households(book, borrower="B1")]
    assert rows == [
        # two loans, the worst recorded doubtful; the first period has no start (the 10-20 call)
        ("2026-11-01", None, 2, 120000_00, 1500_50, "doubtful", "leadership",
         "visit (leadership, due 2026-11-08)", None, 1, "1 call", 0),
        # the visit of 11-05 closed the step; nothing open tonight
        ("2026-11-10", "2026-11-02", 2, 115000_00, 1500_50, "doubtful", "leadership",
         None, "visit: done", 1, "1 visit", 5000_00),
        # L4 written off: off the books, but its letter and recovery count for the household
        ("2026-11-20", "2026-11-11", 1, 95000_00, 0, "substandard", "leadership",
         "visit (OF2, due 2026-11-27)", None, 1, "1 letter", 300_00),
    ]


def test_household_ledger_covers_non_performing_or_tasked_households(book):
    rows = households(book)
    # B2 and B3 never had a non-performing loan: they are in for their tasks; B5 for both
    assert sorted({r["borrower_id"] for r in rows}) == ["B1", "B2", "B3", "B5"]
    b2 = [(r["as_of"], r["worst_class"], r["key_household_level"], r["plan"], r["closed_tonight"], r["action_kinds"],
           r["recovered_fen"]) for r in rows if r["borrower_id"] == "B2"]
    assert b2 == [
        ("2026-11-01", "special_mention", None, "call (OF3, due 2026-11-08)", None, None, 0),
        ("2026-11-10", "special_mention", None, "call (OF3, due 2026-11-08)", None, None, 0),
        ("2026-11-20", "normal", None, None, "call: done", "1 call", 3000_00),
    ]
    b5 = [(r["as_of"], r["key_household_level"], r["action_kinds"]) for r in rows if r["borrower_id"] == "B5"]
    assert b5 == [("2026-11-01", "risk_department", None), ("2026-11-10", "risk_department", None),
                  ("2026-11-20", "risk_department", "1 call")]  # the 11-10 call belongs to night 2's period


def test_last_n_runs_keep_their_periods(book):
    rows = households(book, borrower="B1", last=2)
    assert [(r["as_of"], r["period_from"]) for r in rows] == [("2026-11-10", "2026-11-02"),
                                                              ("2026-11-20", "2026-11-11")]
    assert [r["as_of"] for r in households(book, run_id=2, borrower="B1", last=1)] == ["2026-11-10"]


def test_an_unknown_borrower_is_refused(book):
    with pytest.raises(UsageError, match="no borrower 'NOPE'"):
        households(book, borrower="NOPE")


# ------------------------------------------------------------ the command line

def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_tasks_are_grouped_by_assignee_overdue_first(runner, book):
    result = invoke(runner, "tasks", "--db", book, "--run", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "run 2: default as of 2026-11-10: 3 open task(s), 2 overdue"
    headings = [line for line in lines if line.startswith("OF")]
    assert headings == ["OF1: 2 open, 1 overdue", "OF3: 1 open, 1 overdue"]
    rows = [line for line in lines if line.startswith("B")]
    # OF1: B5's visit is overdue, so before B3's call though B3's priority (80,000) is higher than B5's (60,000)
    assert [line.split()[:3] for line in rows] == [["B5", "赵*", "visit"], ["B3", "王*", "call"], ["B2", "李*", "call"]]
    # why the step: from the task's details
    assert [line.split()[3:6] for line in rows] == [["91+", "days", "2026-11-08"], ["under", "91", "days"],
                                                   ["under", "91", "days"]]
    assert any(line.split()[:4] == ["borrower", "name", "step", "why"] for line in lines)
    assert "赵六" not in result.stdout


@pytest.mark.parametrize(("args", "expected"), [
    ((), ["local.ladder:B5:visit", "local.ladder:B3:call", "local.ladder:B2:call"]),
    (("--assignee", "OF1"), ["local.ladder:B5:visit", "local.ladder:B3:call"]),
    (("--overdue",), ["local.ladder:B5:visit", "local.ladder:B2:call"]),
    (("--assignee", "OF3", "--overdue"), ["local.ladder:B2:call"]),
    (("--assignee", "OF2"), []),
])
def test_tasks_filters(runner, book, args, expected):
    result = invoke(runner, "tasks", "--db", book, "--run", "2", "--format", "csv", *args)
    assert [row["task_id"] for row in csv_rows(result.stdout)] == expected


def test_tasks_export_as_csv_and_json(runner, book, tmp_path):
    rows = csv_rows(invoke(runner, "tasks", "--db", book, "--format", "csv").stdout)
    assert rows == [
        {"task_id": "local.ladder:B5:visit", "assignee": "OF1", "borrower_id": "B5", "name": "赵*", "step": "visit",
         "due_date": "2026-11-08", "days_overdue": "12", "priority": "60000", "loan_ids": '["L6"]',
         "opened_on": "2026-11-01", "details": '{"days_past_due": 419, "rule": "days_past_due>=91"}'},
        {"task_id": "local.ladder:B1:visit", "assignee": "OF2", "borrower_id": "B1", "name": "张*", "step": "visit",
         "due_date": "2026-11-27", "days_overdue": "0", "priority": "95000", "loan_ids": '["L1"]',
         "opened_on": "2026-11-20", "details": '{"days_past_due": 139, "rule": "days_past_due>=91"}'},
    ]
    config = tmp_path / "coop.toml"
    config.write_text("[privacy]\nshow_personal_data = true\n", encoding="utf-8")
    shown = json.loads(invoke(runner, "tasks", "--db", book, "--format", "json", "--config", config).stdout)
    assert [(r["name"], r["loan_ids"], r["days_overdue"]) for r in shown] == [("赵六", ["L6"], 12),
                                                                              ("张三", ["L1"], 0)]
    assert shown[0]["details"] == {"rule": "days_past_due>=91", "days_past_due": 419}  # JSON, not text


@pytest.mark.parametrize(("details", "expected"), [
    ({"rule": "days_past_due>=180", "days_past_due": 200}, "180+ days"),
    ({"rule": "days_past_due<90", "days_past_due": 40}, "under 90 days"),
    ({"rule": "unrecoverable_for_now_days_past_due>=1095"}, "unrecoverable, 1095+ days"),
    ({"rule": "large_amount", "at_risk_fen": 100000000}, "large amount 1000000.00"),
    ({"rule": "repeat_without_recovery", "action": "visit", "action_date": "2026-11-02"},
     "repeat: visit 2026-11-02, nothing recovered"),
    ({"rule": "repeat_with_recovery", "action": "visit", "action_date": "2026-11-02", "recovered_fen": 10050},
     "repeat: visit 2026-11-02, recovered 100.50"),
    ({"rule": "floor_from_previous_step", "previous_step": "special_team"}, "no step down from special_team"),
    ({"rule": "land_transfer_within_window", "land_transfer_expected_date": "2026-12-20"}, "land transfer 2026-12-20"),
    ({"rule": "no_recovery_since_meeting", "last_meeting": "2026-10-31"}, "meeting 2026-10-31, nothing recovered"),
    ({"rule": "no_meeting_yet"}, "no meeting yet"),
    ({"rule": "repeat_without_recovery"}, "repeat without recovery"),  # facts missing: the rule alone
    ({"rule": "a_rule_of_another_plugin", "x": 1}, "a rule of another plugin"),
    ("over 90 days", "over 90 days"),  # a strategy's text, stored as a JSON string
    ({"days_past_due": 3}, ""),
    (None, ""),
])
def test_why_says_in_a_few_words_which_rule_chose_the_step(details, expected):
    assert ledgers.why(None if details is None else json.dumps(details)) == expected


def test_ledger_households_exports_yuan_and_masks_names(runner, book, tmp_path):
    rows = csv_rows(invoke(runner, "ledger", "households", "--db", book, "--borrower", "B1",
                           "--format", "csv").stdout)
    assert [(r["name"], r["as_of"], r["outstanding_yuan"], r["interest_arrears_yuan"], r["recovered_yuan"])
            for r in rows] == [("张*", "2026-11-01", "120000.00", "1500.50", "0.00"),
                               ("张*", "2026-11-10", "115000.00", "1500.50", "5000.00"),
                               ("张*", "2026-11-20", "95000.00", "0.00", "300.00")]
    config = tmp_path / "coop.toml"
    config.write_text("[privacy]\nshow_personal_data = true\n", encoding="utf-8")
    records = json.loads(invoke(runner, "ledger", "households", "--db", book, "--last", "1", "--format", "json",
                                "--config", config).stdout)
    assert [(r["borrower_id"], r["name"], r["outstanding_yuan"]) for r in records] == [
        ("B1", "张三", "95000.00"), ("B2", "李四", "47000.00"), ("B3", "王五", "80000.00"), ("B5", "赵六", "60000.00")]
    table = invoke(runner, "ledger", "households", "--db", book, "--borrower", "B1").stdout
    assert "B1 张*" in table and "visit (OF2, due 2026-11-27)" in table and "120000.00" in table


def test_ledger_officers_exports_yuan(runner, book):
    records = json.loads(invoke(runner, "ledger", "officers", "--db", book, "--format", "json").stdout)
    assert records[0] == {
        "officer_id": "OF1", "npl_lent_count": 1, "npl_lent_yuan": "95000.00", "npl_collecting_count": 1,
        "npl_collecting_yuan": "60000.00", "recovered_yuan": "200.00", "actions": 2, "tasks_open": 1,
        "tasks_overdue": 1, "tasks_done_on_time": 1, "tasks_done_late": 0, "period_from": "2026-11-11",
        "as_of": "2026-11-20"}
    rows = csv_rows(invoke(runner, "ledger", "officers", "--db", book, "--since", "2026-11-01",
                           "--format", "csv").stdout)
    assert [(r["officer_id"], r["recovered_yuan"], r["period_from"]) for r in rows] == [
        ("OF1", "300.00", "2026-11-01"), ("OF2", "5300.00", "2026-11-01"), ("OF3", "3000.00", "2026-11-01")]
    table = invoke(runner, "ledger", "officers", "--db", book).stdout
    assert "period 2026-11-11 to 2026-11-20" in table and "95000.00" in table


# ------------------------------------------------------------ errors

def test_errors_are_one_line(runner, book, fresh, tmp_path):
    def error(*args):
        result = invoke(runner, *args)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.splitlines()
        return line

    assert "no run 9" in error("tasks", "--db", book, "--run", "9")
    assert "no borrower 'NOPE'" in error("ledger", "households", "--db", book, "--borrower", "NOPE")
    assert "not a date" in error("ledger", "officers", "--db", book, "--since", "20261301")
    assert "after run 3's as-of" in error("ledger", "officers", "--db", book, "--since", "2026-12-01")
    assert "no such database" in error("tasks", "--db", tmp_path / "missing.db")
    empty = tmp_path / "empty.db"
    conn = connect(empty)
    ensure_schema(conn)
    conn.close()
    assert "no finished run" in error("ledger", "officers", "--db", empty)
    night, db = fresh
    night("2026-11-01", [loan("L1", days_past_due="100")], packs=("local-classify",))
    assert error("tasks", "--db", db) == ("Error: run 1 (2026-11-01) made no collection plan: "
                                          "run a pack with a collection strategy")
    # the ledgers still read the book, and say why the task columns are empty
    result = invoke(runner, "ledger", "officers", "--db", db, "--format", "csv")
    assert result.exit_code == 0 and "run a pack with a collection strategy" in result.stderr
    assert csv_rows(result.stdout)[0]["npl_lent_count"] == "1"


def test_a_plan_with_nobody_to_collect_is_not_an_error(runner, fresh):
    night, db = fresh
    night("2026-11-01", [loan("L1")])
    result = invoke(runner, "tasks", "--db", db)
    assert result.exit_code == 0 and "0 open task(s)" in result.stdout and "(none)" in result.stdout


def test_export_tasks_has_each_task_lifecycle(runner, book, tmp_path):
    """`export tasks`: the strategy, the day a task opened, the day it closed and what closed it (JSON: the
    action, or the reason), and the actions that mark it done (JSON), as stored; dates in the workbook."""
    result = invoke(runner, "export", "tasks", "--db", book, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = {row["task_id"]: row for row in csv_rows(result.stdout)}
    assert tuple(next(csv.reader(io.StringIO(result.stdout)))) == results.export_columns("tasks")
    lifecycle = ("status", "strategy_id", "opened_on", "closed_on", "done_when")
    assert {task: tuple(row[k] for k in lifecycle) for task, row in rows.items()} == {
        "local.ladder:B2:call": ("done", "local.ladder", "2026-11-01", "2026-11-12", '["call"]'),
        "local.ladder:B3:call": ("done", "local.ladder", "2026-11-10", "2026-11-17", '["call"]'),
        "local.ladder:B5:visit": ("open", "local.ladder", "2026-11-01", "", '["visit"]'),
        "local.ladder:B1:visit": ("open", "local.ladder", "2026-11-20", "", '["visit"]'),
    }
    # why: a closed task keeps the details it had (B2's call, proposed 19 days past due on night 2)
    assert json.loads(rows["local.ladder:B2:call"]["details"]) == {"rule": "days_past_due<91", "days_past_due": 19}
    closed_by = json.loads(rows["local.ladder:B2:call"]["closed_by"])
    assert (closed_by["action"], closed_by["action_date"], closed_by["loan_id"]) == ("call", "2026-11-12", "L2")
    assert rows["local.ladder:B5:visit"]["closed_by"] == ""
    # in the workbook the days a task opened and closed are dates
    path = tmp_path / "tasks.xlsx"
    assert invoke(runner, "export", "workbook", "--db", book, "-o", path).exit_code == 0
    sheet = openpyxl.load_workbook(path)["tasks"]
    headings = [cell.value for cell in sheet[1]]
    assert headings[-1] == "details"  # the workbook's tasks sheet has the export's columns
    done = next(row for row in sheet.iter_rows(min_row=2) if row[headings.index("task_id")].value.endswith("B2:call"))
    for name, day in (("opened_on", 1), ("closed_on", 12)):
        cell = done[headings.index(name)]
        assert cell.value == datetime.datetime(2026, 11, day) and cell.number_format == "yyyy-mm-dd"
