"""The pack ``cooperative-baseline``: the village collective checks (issue 5; REFERENCE.md §4).

Every test runs the pack over the smallest snapshot that shows one behaviour and reads the findings back
from the ``findings`` table. Borrowers named ``V...`` are village collectives, ``H...`` households.
"""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path

import pytest
from conftest import AS_OF, borrower, invoke, loan, query, write_snapshot

from loanrules import demo
from loanrules.config import parse_config
from loanrules.run import execute_run

PACK = "cooperative-baseline"
CLASSIFICATION = "cn-five-category"
EXPOSURE = "village.large_exposure"
ARREARS = "village.interest_arrears"
OVERDUE = "village.long_overdue"
SHARE = "village.portfolio_share"
LAND = "village.land_transfer_opportunity"
CHECKS = (EXPOSURE, ARREARS, OVERDUE, SHARE, LAND)
VILLAGE = "青山村"


def days_after(days: int, as_of: str = AS_OF) -> str:
    return (datetime.date.fromisoformat(as_of) + datetime.timedelta(days=days)).isoformat()


def village(name: str = VILLAGE, expected: str = "", compensation: str = "") -> dict[str, object]:
    return {"village": name, "township": "青山镇", "land_transfer_expected_date": expected,
            "land_compensation_amount": compensation}


def book(loans, villages=None, **more) -> dict[str, object]:
    """The tables of one snapshot: the loans, their borrowers (``V...`` village collectives of 青山村, the others
    households), and the village 青山村 with no land transfer expected."""
    borrowers = [borrower(b, borrower_type="village_collective" if b.startswith("V") else "household")
                 for b in sorted({row["borrower_id"] for row in loans})]
    tables = {"loans": loans, "borrowers": borrowers, "villages": villages if villages is not None else [village()]}
    tables.update(more)
    return {name: rows for name, rows in tables.items() if not (isinstance(rows, str) and rows == "absent")}


@pytest.fixture
def night(tmp_path, registry):
    """``night(packs=..., params={check: {...}}, **tables)``: one run into the test's database (``night.db``)."""
    numbers = itertools.count(1)

    def run(as_of: str = AS_OF, params: dict | None = None, packs=(PACK,), **tables):
        snapshot = write_snapshot(tmp_path / f"night{next(numbers)}", **tables)
        document = {"cooperative": {"name": "c"},
                    "checks": {check_id: {"params": values} for check_id, values in (params or {}).items()}}
        result = execute_run(run.db, snapshot, as_of=as_of, config=parse_config(document), registry=registry,
                             packs=packs)
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status == "failed"]
        return result

    run.db = tmp_path / "results.db"
    return run


def latest_run(db: Path) -> int:
    return query(db, "SELECT max(run_id) FROM runs")[0][0]


def findings(db: Path, check_id: str) -> list[tuple]:
    """(loan_id, borrower_id, message, details) of one check in the latest run."""
    rows = query(db, "SELECT loan_id, borrower_id, message, details FROM findings "
                     "WHERE run_id = ? AND check_id = ? ORDER BY subject_key", (latest_run(db), check_id))
    return [(*row[:3], json.loads(row[3]) if row[3] else None) for row in rows]


def subjects(db: Path, check_id: str) -> list[str]:
    return [row[0] for row in query(db, "SELECT subject_key FROM findings WHERE run_id = ? AND check_id = ? "
                                        "ORDER BY subject_key", (latest_run(db), check_id))]


def contribution(db: Path, contribution_id: str) -> tuple[str, str | None]:
    return query(db, "SELECT status, reason FROM run_contributions WHERE run_id = ? AND contribution_id = ?",
                 (latest_run(db), contribution_id))[0]


# ------------------------------------------------------------ registration


def test_the_pack_holds_the_five_village_checks_with_their_defaults(registry):
    pack = registry.packs[PACK]
    assert pack.version == "1.1.0"
    assert set(CHECKS) <= set(pack.members)
    defaults = {check_id: {p.name: p.to_display(p.value) for p in registry.contributions[check_id].item.params}
                for check_id in CHECKS}
    assert defaults == {
        EXPOSURE: {"collective_types": ["village_collective"], "max_exposure": "5000000.00"},
        ARREARS: {"collective_types": ["village_collective"], "max_arrears_share": "0.10",
                  "max_arrears": "100000.00"},
        OVERDUE: {"collective_types": ["village_collective"], "max_overdue_days": 1095},
        SHARE: {"collective_types": ["village_collective"], "max_share": "0.20"},
        LAND: {"collective_types": ["village_collective"], "window_days": 90},
    }
    severities = {check_id: str(registry.contributions[check_id].item.severity) for check_id in CHECKS}
    assert severities == {EXPOSURE: "warning", ARREARS: "warning", OVERDUE: "critical", SHARE: "warning",
                          LAND: "critical"}
    for check_id in CHECKS:
        check = registry.contributions[check_id].item
        assert "REFERENCE.md §4" in check.reference and check.description and check.tables[:2] == ("loans",
                                                                                                   "borrowers")
    assert "villages" in registry.contributions[LAND].item.tables


def test_a_clean_village_collective_produces_no_finding(night):
    night(**book([loan("L1", "V1", outstanding_principal="1000000.00"),
                  loan("L2", "H1", outstanding_principal="9000000.00")]))
    assert query(night.db, "SELECT check_id FROM findings WHERE run_id = ? AND check_id LIKE 'village.%'",
                 (latest_run(night.db),)) == []
    for check_id in CHECKS:
        assert contribution(night.db, check_id) == ("ok", None)


# ------------------------------------------------------------ large exposure


def test_large_exposure_exactly_five_million_is_fine_one_fen_more_fires(night):
    night(**book([loan("L1", "V1", outstanding_principal="3000000.00"),
                  loan("L2", "V1", outstanding_principal="2000000.00")]))
    assert findings(night.db, EXPOSURE) == []
    night(**book([loan("L1", "V1", outstanding_principal="3000000.00"),
                  loan("L2", "V1", outstanding_principal="2000000.01")]))
    ((loan_id, borrower_id, message, details),) = findings(night.db, EXPOSURE)
    assert (loan_id, borrower_id) == (None, "V1")
    assert subjects(night.db, EXPOSURE) == ["borrower_id=V1"]
    assert details["exposure_fen"] == 500000001 and details["max_exposure_fen"] == 500000000
    assert [item["loan_id"] for item in details["loans"]] == ["L1", "L2"]
    assert "5000000.01 yuan over 2 loans, above 5000000.00 yuan" in message and VILLAGE in message


def test_large_exposure_leaves_written_off_loans_and_other_borrowers_out(night):
    night(**book([loan("L1", "V1", outstanding_principal="5000000.00"),
                  loan("L2", "V1", outstanding_principal="10.00", written_off=1),
                  loan("L3", "H1", outstanding_principal="9000000.00"),
                  loan("L4", "X1", outstanding_principal="9000000.00")]))  # X1 is not in borrowers.csv
    assert findings(night.db, EXPOSURE) == []


# ------------------------------------------------------------ interest arrears


@pytest.mark.parametrize(("arrears", "reason"), [
    ("10000.00", None),  # exactly 10% of 100,000.00
    ("10000.01", "share"),
])
def test_arrears_share_exactly_ten_percent_is_fine_above_fires(night, arrears, reason):
    night(**book([loan("L1", "V1", outstanding_principal="60000.00", interest_arrears="6000.00"),
                  loan("L2", "V1", outstanding_principal="40000.00",
                       interest_arrears=f"{float(arrears) - 6000:.2f}")]))
    found = findings(night.db, ARREARS)
    if reason is None:
        assert found == []
        return
    ((loan_id, borrower_id, message, details),) = found
    assert (loan_id, borrower_id) == (None, "V1")
    assert details["reason"] == reason and details["reasons"] == [reason]
    assert details["interest_arrears_fen"] == 1000001 and details["exposure_fen"] == 10000000
    assert "above 10.00%" in message and "10000.01 yuan" in message


@pytest.mark.parametrize(("arrears", "reason"), [
    ("100000.00", None),
    ("100000.01", "amount"),
])
def test_arrears_amount_exactly_one_hundred_thousand_is_fine_a_fen_more_fires(night, arrears, reason):
    # 2,000,000.00 outstanding: 100,000.01 is 5%, under the share
    night(**book([loan("L1", "V1", outstanding_principal="2000000.00", interest_arrears=arrears)]))
    found = findings(night.db, ARREARS)
    if reason is None:
        assert found == []
        return
    ((_, _, message, details),) = found
    assert details["reason"] == "amount" and details["reasons"] == ["amount"]
    assert details["max_arrears_fen"] == 10000000 and details["share"] == 0.05
    assert message.endswith("above 100000.00 yuan")


def test_arrears_above_both_says_both_and_written_off_or_household_arrears_do_not_count(night):
    night(**book([loan("L1", "V1", outstanding_principal="500000.00", interest_arrears="200000.00"),
                  loan("L2", "V2", outstanding_principal="500000.00", interest_arrears="10.00"),
                  loan("L3", "V2", outstanding_principal="1.00", interest_arrears="900000.00", written_off=1),
                  loan("L4", "H1", outstanding_principal="500000.00", interest_arrears="400000.00"),
                  # principal repaid, interest still owed: judged by the amount only
                  loan("L5", "V3", outstanding_principal="0.00", interest_arrears="100000.00")]))
    ((_, borrower_id, message, details),) = findings(night.db, ARREARS)
    assert borrower_id == "V1"
    assert details["reason"] == "share_and_amount" and details["reasons"] == ["share", "amount"]
    assert "above 10.00% and above 100000.00 yuan" in message


# ------------------------------------------------------------ long overdue


def test_long_overdue_1095_days_is_fine_1096_fires(night):
    night(**book([loan("L1", "V1", days_past_due=1095, recorded_class="loss"),
                  loan("L2", "V1", days_past_due=1096, recorded_class="loss"),
                  loan("L3", "V1", days_past_due=4000, recorded_class="loss", written_off=1),
                  loan("L4", "H1", days_past_due=4000, recorded_class="loss")]))
    ((loan_id, borrower_id, message, details),) = findings(night.db, OVERDUE)
    assert (loan_id, borrower_id) == ("L2", "V1")
    assert details["days_past_due"] == 1096 and details["max_overdue_days"] == 1095
    assert "overdue 1096 days" in message and "more than 1095 days" in message


# ------------------------------------------------------------ portfolio share


@pytest.mark.parametrize(("collective", "household", "fires"), [
    ("20000.00", "80000.00", False),  # exactly 20%
    ("20000.01", "79999.99", True),
])
def test_portfolio_share_exactly_twenty_percent_is_fine_above_fires(night, collective, household, fires):
    night(**book([loan("L1", "V1", outstanding_principal=collective),
                  loan("L2", "H1", outstanding_principal=household),
                  loan("L3", "V1", outstanding_principal="50000.00", written_off=1),  # out of both sums
                  loan("L4", "H2", outstanding_principal="50000.00", written_off=1)]))
    found = findings(night.db, SHARE)
    if not fires:
        assert found == []
        return
    ((loan_id, borrower_id, message, details),) = found
    assert (loan_id, borrower_id) == (None, None)
    assert subjects(night.db, SHARE) == ["subject=portfolio"]
    assert details["exposure_fen"] == 2000001 and details["book_fen"] == 10000000
    assert details["borrower_count"] == 1 and details["loan_count"] == 1
    assert "above 20.00%" in message


# ------------------------------------------------------------ land transfer


def test_land_transfer_within_ninety_days_fires_ninety_one_or_past_does_not(night):
    villages = [village("甲村", days_after(90), "3000000.00"), village("乙村", days_after(91), "3000000.00"),
                village("丙村", days_after(-1), "3000000.00"), village("丁村", AS_OF, ""),
                village("戊村")]
    borrowers = [borrower(f"V{n}", borrower_type="village_collective", village=name)
                 for n, name in enumerate(("甲村", "乙村", "丙村", "丁村", "戊村"), 1)]
    borrowers.append(borrower("H1", village="甲村"))
    loans = [loan(f"L{n}", f"V{n}", recorded_class="doubtful", days_past_due=400) for n in range(1, 6)]
    loans += [loan("L6", "V1"),  # performing
              loan("L7", "V1", recorded_class="loss", days_past_due=900, written_off=1),
              loan("L8", "H1", recorded_class="loss", days_past_due=900)]  # not a collective
    night(loans=loans, borrowers=borrowers, villages=villages)
    found = findings(night.db, LAND)
    assert [(row[0], row[1]) for row in found] == [("L1", "V1"), ("L4", "V4")]
    (_, _, message, details), (_, _, today_message, today) = found
    assert "甲村 expects land transfer compensation of 3000000.00 yuan on " + days_after(90) in message
    assert "(in 90 days)" in message and "the moment to collect loan L1" in message and "doubtful" in message
    assert details["land_compensation_fen"] == 300000000 and details["days_until_transfer"] == 90
    assert details["class_source"] == "recorded" and details["risk_class"] == "doubtful"
    assert today["days_until_transfer"] == 0 and "an amount not recorded" in today_message


def test_land_transfer_non_performing_is_the_computed_class_when_classification_runs(night):
    villages = [village(expected=days_after(30), compensation="1000000.00")]
    loans = [loan("L1", "V1", recorded_class="normal", days_past_due=400),  # computed: loss
             loan("L2", "V2", recorded_class="substandard", days_past_due=0)]  # computed: better than recorded
    night(**book(loans, villages))
    assert [row[0] for row in findings(night.db, LAND)] == ["L2"]  # the recorded classes
    night(**book(loans, villages), packs=(PACK, CLASSIFICATION))
    computed = dict(query(night.db, "SELECT loan_id, risk_class FROM assessments WHERE run_id = ?",
                          (latest_run(night.db),)))
    assert computed["L1"] == "loss" and computed["L2"] not in ("substandard", "doubtful", "loss")
    ((loan_id, _, message, details),) = findings(night.db, LAND)
    assert loan_id == "L1" and details["class_source"] == "computed" and details["risk_class"] == "loss"
    assert "(loss, outstanding" in message


# ------------------------------------------------------------ missing tables


def test_land_transfer_is_skipped_with_the_reason_without_villages_csv(night):
    night(**book([loan("L1", "V1", days_past_due=1096, recorded_class="loss")], villages="absent"))
    assert contribution(night.db, LAND) == ("skipped", "needs villages.csv, which this snapshot does not have")
    for check_id in (EXPOSURE, ARREARS, OVERDUE, SHARE):
        assert contribution(night.db, check_id) == ("ok", None)
    assert [row[0] for row in findings(night.db, OVERDUE)] == ["L1"]


def test_every_village_check_is_skipped_with_the_reason_without_borrowers_csv(night):
    night(loans=[loan("L1", "V1", days_past_due=1096, outstanding_principal="9000000.00")],
          villages=[village(expected=AS_OF)])
    for check_id in CHECKS:
        assert contribution(night.db, check_id) == ("skipped", "needs borrowers.csv, which this snapshot does not have")
    assert query(night.db, "SELECT count(*) FROM findings WHERE check_id LIKE 'village.%'") == [(0,)]


# ------------------------------------------------------------ parameters


def test_parameters_are_overridable_in_the_config(night):
    loans = [loan("L1", "V1", outstanding_principal="6000000.00", days_past_due=1100, recorded_class="loss"),
             loan("L2", "E1", outstanding_principal="7000000.00")]
    tables = book(loans)
    (enterprise,) = [row for row in tables["borrowers"] if row["borrower_id"] == "E1"]
    enterprise["borrower_type"] = "enterprise"
    night(**tables, params={EXPOSURE: {"max_exposure": "6000000.00"}, OVERDUE: {"max_overdue_days": 1100}})
    assert findings(night.db, EXPOSURE) == [] and findings(night.db, OVERDUE) == []
    night(**tables, params={EXPOSURE: {"collective_types": ["village_collective", "enterprise"]}})
    assert [row[1] for row in findings(night.db, EXPOSURE)] == ["E1", "V1"]
    assert [row[0] for row in findings(night.db, OVERDUE)] == ["L1"]


def test_parameters_are_overridable_on_the_command_line(runner, tmp_path, db_path):
    villages = [village(expected=days_after(120), compensation="500000.00")]
    snapshot = write_snapshot(tmp_path / "s", **book([loan("L1", "V1", recorded_class="loss", days_past_due=500),
                                                      loan("L2", "H1", outstanding_principal="100000.00")],
                                                     villages))
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--pack", PACK, "--db", db_path, "--quiet",
                    "--param", f"{LAND}.window_days=120", "--param", f"{SHARE}.max_share=0.5")
    assert result.exit_code == 0, result.output
    assert [row[0] for row in findings(db_path, LAND)] == ["L1"]
    assert [row[2] for row in findings(db_path, SHARE)] == []  # 80,000.00 of 180,000.00: 44%


# ------------------------------------------------------------ the demo cooperative


def test_every_village_check_runs_ok_and_finds_something_on_the_demo_cooperative(runner, tmp_path, db_path):
    # 500 loans, seed 3: a book whose village collectives have every problem the checks look for (the default
    # seed's small books have no non-performing collective loan in a village expecting land transfer soon)
    snapshot = tmp_path / "demo"
    demo.write_snapshot(snapshot, loans=500, seed=3)
    result = invoke(runner, "run", snapshot, "--as-of", demo.DEMO_AS_OF.isoformat(), "--pack", PACK,
                    "--db", db_path, "--quiet")
    # the whole pack ran: no plugin failed (0: finished; 1 only with --fail-on, not given here)
    assert result.exit_code == 0, result.output
    for check_id in CHECKS:
        assert contribution(db_path, check_id) == ("ok", None)
        assert findings(db_path, check_id), check_id
    ((_, _, message, _),) = findings(db_path, SHARE)
    assert "village collectives owe" in message
