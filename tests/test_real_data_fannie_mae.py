"""Real data: two years of the Fannie Mae 2007 Q3 sample, month by month, through cn-five-category.

``examples/fannie_mae_snapshots.py`` turns the sample into monthly snapshots;
the months 2009-06 .. 2011-05 run in order into one database, and every
loan-month's computed class is compared with the class the delinquency and
modification history gives, computed here straight from the raw performance
file (not from the generated CSVs):

* overdue floor, days_past_due = delinquency status x 30: more than 360 days
  loss, more than 270 doubtful, more than 90 substandard, more than 0 special
  mention, else normal;
* restructured floor: substandard while fewer than 365 days have passed since
  the first month the loan was flagged modified;
* the worst floor wins. Borrowers are households (retail): the non-retail
  spread never applies.

The window was chosen from the data: it holds cures, re-defaults, loans more
than a year overdue, seven first modifications, and three observation periods
that end exactly 365 days after the modification (the boundary, on an as-of).

The data lives outside the repository (``../shared/data`` beside the clone, or
``$LOANRULES_SHARED_DATA``); without it the module is skipped.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import sys
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from conftest import query

from loanrules.config import parse_config
from loanrules.manager import PluginManager
from loanrules.registry import Registry
from loanrules.run import execute_run

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LOANRULES_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
FANNIE_MAE = SHARED_DATA / "fannie_mae_2007q3"
PERFORMANCE = FANNIE_MAE / "Performance_2007Q3.txt_0"

if not PERFORMANCE.is_file() or not (FANNIE_MAE / "Acquisition_2007Q3.txt").is_file():
    pytest.skip(f"real data absent: no Fannie Mae sample at {FANNIE_MAE} (put shared/ beside the clone or set "
                f"LOANRULES_SHARED_DATA)", allow_module_level=True)

FIRST_MONTH, MONTHS = "2009-06", 24
PACK = "cn-five-category"
CLASSES = ("normal", "special_mention", "substandard", "doubtful", "loss")
PROVISION_RATES = {"normal": Decimal("0"), "special_mention": Decimal("0.02"), "substandard": Decimal("0.25"),
                   "doubtful": Decimal("0.50"), "loss": Decimal("1.00")}


# ---------------------------------------------------------------- the history, from the raw file


def overdue_class(days: int) -> str:
    if days > 360:
        return "loss"
    if days > 270:
        return "doubtful"
    if days > 90:
        return "substandard"
    return "special_mention" if days > 0 else "normal"


def expected_class(days: int, restructured: datetime.date | None, as_of: datetime.date) -> str:
    floors = [overdue_class(days)]
    if restructured is not None and (as_of - restructured).days < 365:
        floors.append("substandard")
    return max(floors, key=CLASSES.index)


def raw_history() -> dict[tuple[str, str], dict]:
    """(loan_id, as_of ISO) -> days, restructured date, outstanding fen, expected class: every loan-month on the
    book (no zero-balance code) in the window, from the pipe-delimited performance file and its README."""
    first = datetime.date.fromisoformat(f"{FIRST_MONTH}-01")
    months = [datetime.date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1)
              for i in range(MONTHS)]
    orig_upb = {}
    with open(FANNIE_MAE / "Acquisition_2007Q3.txt", encoding="ascii") as handle:
        for line in handle:
            fields = line.split("|")
            orig_upb[fields[0]] = fields[4]
    rows = []
    with open(PERFORMANCE, encoding="ascii") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("|")
            month, day, year = fields[1].split("/")
            rows.append((fields[0], datetime.date(int(year), int(month), int(day)), fields))
    rows.sort(key=lambda row: (row[0], row[1]))
    history, first_modified = {}, {}
    for loan_id, as_of, fields in rows:
        status, mod_flag, zero_balance_code = fields[10].strip(), fields[11].strip(), fields[12].strip()
        if mod_flag == "Y":
            first_modified.setdefault(loan_id, as_of)
        if zero_balance_code or as_of not in months:
            continue
        days = int(status) * 30 if status.lstrip("-").isdigit() and int(status) > 0 else 0
        restructured = first_modified.get(loan_id)
        risk_class = expected_class(days, restructured, as_of)
        outstanding = Decimal(fields[4] or orig_upb[loan_id])
        history[loan_id, as_of.isoformat()] = {
            "days": days, "restructured": restructured, "risk_class": risk_class,
            "required_provision": int((outstanding * PROVISION_RATES[risk_class] * 100)
                                      .quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        }
    return history


def by_loan(history: dict) -> dict[str, list[tuple[str, dict]]]:
    result: dict[str, list[tuple[str, dict]]] = {}
    for (loan_id, as_of), facts in sorted(history.items()):
        result.setdefault(loan_id, []).append((as_of, facts))
    return result


def months_apart(earlier: str, later: str) -> int:
    a, b = datetime.date.fromisoformat(earlier), datetime.date.fromisoformat(later)
    return (b.year - a.year) * 12 + b.month - a.month


# ---------------------------------------------------------------- the run


def load_example():
    path = REPO / "examples" / "fannie_mae_snapshots.py"
    spec = importlib.util.spec_from_file_location("fannie_mae_snapshots", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def history():
    return raw_history()


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """The window's snapshots written by the example, then run in order into one database."""
    base = tmp_path_factory.mktemp("fannie_mae")
    folders = load_example().write_snapshots(base / "snapshots", FANNIE_MAE, first=FIRST_MONTH, months=MONTHS)
    db = base / "fm.db"
    config = parse_config({"cooperative": {"name": "fannie-mae-sample"}})
    with pytest.MonkeyPatch.context() as patch:  # built-in plugins only, as conftest does per test
        patch.setenv("LOANRULES_LOAD_PLUGINS", "")
        patch.delenv("LOANRULES_BLOCK_PLUGINS", raising=False)
        registry = Registry.from_plugins(PluginManager())
        results = [execute_run(db, folder, as_of=folder.name, config=config, registry=registry, packs=(PACK,))
                   for folder in folders]
    return db, folders, results


def assessments(db) -> dict[tuple[str, str], tuple]:
    rows = query(db, "SELECT a.loan_id, r.as_of, a.risk_class, a.required_provision, a.reasons, a.borrower_id "
                     "FROM assessments a JOIN runs r ON r.run_id = a.run_id")
    return {(loan_id, as_of): (risk_class, provision, json.loads(reasons), borrower_id)
            for loan_id, as_of, risk_class, provision, reasons, borrower_id in rows}


def names(reason: dict, word: str) -> bool:
    """The reason's rule or its details (not its reference, which cites every floor) mention ``word``."""
    return word in reason.get("rule", "") or word in json.dumps(reason.get("details") or {})


# ---------------------------------------------------------------- the window keeps its teeth


def test_the_window_holds_cures_long_arrears_and_modifications(history):
    loans = by_loan(history)
    cures = [(loan_id, later) for loan_id, months in loans.items()
             for (earlier, a), (later, b) in zip(months, months[1:])
             if a["days"] > 0 and b["days"] == 0 and months_apart(earlier, later) == 1]
    redefaults = [(loan_id, as_of) for loan_id, months in loans.items()
                  for i, (as_of, facts) in enumerate(months)
                  if facts["days"] > 0 and i and months[i - 1][1]["days"] == 0
                  and any(f["days"] > 0 for _, f in months[:i - 1])]
    first_modified_inside = {loan_id for loan_id, months in loans.items()
                             if any(f["restructured"] and f["restructured"].isoformat() == m for m, f in months)}
    observation_ended = [(loan_id, as_of) for loan_id, months in loans.items() for as_of, f in months
                         if f["restructured"] and (datetime.date.fromisoformat(as_of) - f["restructured"]).days == 365]
    assert len(cures) >= 10
    assert len(redefaults) >= 5
    assert any(f["days"] > 90 for f in history.values())
    assert any(f["days"] > 360 for f in history.values())
    assert len(first_modified_inside) >= 5
    assert observation_ended  # the restructured floor lapses, exactly at 365 days, on an as-of inside the window
    assert set(f["risk_class"] for f in history.values()) == set(CLASSES)


# ---------------------------------------------------------------- the runs


def test_each_month_is_one_succeeded_run_in_order(book):
    db, folders, results = book
    assert [r.status for r in results] == ["succeeded"] * MONTHS
    runs = query(db, "SELECT run_id, as_of, status, previous_run_id, packs FROM runs ORDER BY run_id")
    assert [as_of for _, as_of, _, _, _ in runs] == [folder.name for folder in folders]
    assert all(status == "succeeded" and PACK in packs for _, _, status, _, packs in runs)
    assert [previous for _, _, _, previous, _ in runs] == [None] + [run_id for run_id, *_ in runs[:-1]]


def test_one_assessment_per_loan_on_the_book_each_month(book, history):
    db, folders, _ = book
    assessed = Counter(as_of for _, as_of in assessments(db))
    on_book = Counter(as_of for _, as_of in history)
    assert sorted(on_book) == [folder.name for folder in folders]
    assert assessed == on_book
    assert set(assessments(db)) == set(history)


def test_every_loan_month_has_the_class_its_history_gives(book, history):
    db, _, _ = book
    computed = assessments(db)
    wrong = {key: (computed[key][0], facts["risk_class"], facts["days"], str(facts["restructured"]))
             for key, facts in history.items() if computed[key][0] != facts["risk_class"]}
    assert not wrong, f"(loan, as-of): (computed, expected, days past due, restructured) {wrong}"
    assert all(borrower_id == f"B{loan_id}" for (loan_id, _), (*_, borrower_id) in computed.items())


def test_required_provision_follows_the_class_to_the_fen(book, history):
    db, _, _ = book
    computed = assessments(db)
    wrong = {key: (computed[key][1], facts["required_provision"], facts["risk_class"])
             for key, facts in history.items() if computed[key][1] != facts["required_provision"]}
    assert not wrong, f"(loan, as-of): (computed fen, expected fen, class) {wrong}"


def test_overdue_reasons_name_the_rule_and_the_observed_days(book, history):
    db, _, _ = book
    computed = assessments(db)
    overdue = {key: facts for key, facts in history.items() if facts["days"] > 90}
    assert overdue
    for key, facts in overdue.items():
        reasons = computed[key][2]
        assert any(reason.get("risk_class") == overdue_class(facts["days"]) and names(reason, "overdue")
                   and facts["days"] in reason["details"].values() and reason.get("reference")
                   for reason in reasons), (key, facts["days"], reasons)


def test_restructured_reasons_name_the_first_modified_month(book, history):
    db, _, _ = book
    computed = assessments(db)
    inside = {key: facts for key, facts in history.items()
              if facts["restructured"] and (datetime.date.fromisoformat(key[1]) - facts["restructured"]).days < 365}
    assert inside
    for key, facts in inside.items():
        reasons = computed[key][2]
        assert any(reason.get("risk_class") == "substandard" and names(reason, "restructur")
                   and facts["restructured"].isoformat() in reason["details"].values()
                   for reason in reasons), (key, reasons)
    lapsed = [key for key, facts in history.items()
              if facts["restructured"] and (datetime.date.fromisoformat(key[1]) - facts["restructured"]).days >= 365]
    assert lapsed
    assert not any(names(reason, "restructur") for key in lapsed for reason in computed[key][2]
                   if reason.get("risk_class"))


def test_findings_are_new_or_persisting_against_the_previous_month(book):
    db, _, _ = book
    runs = [run_id for (run_id,) in query(db, "SELECT run_id FROM runs ORDER BY as_of")]
    findings = {run_id: {(check_id, key): (status, first_seen) for check_id, key, status, first_seen in query(
        db, "SELECT check_id, subject_key, status, first_seen FROM findings WHERE run_id = ?", (run_id,))}
        for run_id in runs}
    as_of = dict(query(db, "SELECT run_id, as_of FROM runs"))
    persisting = 0
    for previous, run_id in zip([None] + runs, runs):
        for subject, (status, first_seen) in findings[run_id].items():
            before = findings.get(previous, {}).get(subject)
            if before is None:
                assert (status, first_seen) == ("new", as_of[run_id]), (run_id, subject)
            else:
                assert (status, first_seen) == ("persisting", before[1]), (run_id, subject)
                persisting += 1
    assert persisting
