"""The regulator's pack ``cn-five-category``: five-category classes with their reasons, required
provisions, recovery categories, and the checks around them (issue 3; REFERENCE.md §1, §2, §4).

Every test runs the whole pack over the smallest snapshot that shows one behaviour and reads
the result back from the ``assessments`` and ``findings`` tables.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import json
import tempfile
from pathlib import Path

import pytest
from conftest import AS_OF, borrower, invoke, loan, query, write_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loanrules.config import parse_config
from loanrules.manager import PluginManager
from loanrules.plan import Overrides
from loanrules.registry import Registry
from loanrules.run import execute_run

PACK = "cn-five-category"
FIVE_CATEGORY = "classification.five_category"
NET_CAPITAL = "1000000"  # yuan: single borrower 100000, group 150000, top ten 500000
UNKNOWN_TYPE = {"floor": "borrower_type_unknown", "treated_as": "retail"}


def days_before(as_of: str, days: int) -> str:
    return (datetime.date.fromisoformat(as_of) - datetime.timedelta(days=days)).isoformat()


def debtor(borrower_id: str, **fields) -> dict[str, object]:
    """A borrower with every investigation column (blank = unknown), so rows of one file share a header."""
    facts = {"borrower_type": "household", "group_id": "", "repayment_willingness": "",
             "repayment_capacity": "", "whereabouts_known": "", "deceased_or_dissolved": "", "in_litigation": ""}
    facts.update({key: str(value) for key, value in fields.items()})
    return borrower(borrower_id, **facts)


def collateral(collateral_id: str, appraised_value: str, registration_status: str = "registered"):
    return {"collateral_id": collateral_id, "collateral_type": "house", "owner_id": "B1",
            "appraised_value": appraised_value, "registration_status": registration_status}


def pledge(loan_id: str, collateral_id: str) -> dict[str, object]:
    return {"loan_id": loan_id, "collateral_id": collateral_id}


@pytest.fixture
def night(tmp_path, registry):
    """``night(loans=[...], borrowers=[...], as_of=..., params={check: {...}}, net_capital=...)``: one run
    of the pack into the test's database (``night.db``); every call is another night."""
    numbers = itertools.count(1)

    def run(as_of: str = AS_OF, params: dict | None = None, net_capital: str | None = None, **tables):
        snapshot = write_snapshot(tmp_path / f"night{next(numbers)}", **tables)
        cooperative = {"name": "c", **({"net_capital": net_capital} if net_capital else {})}
        document = {"cooperative": cooperative,
                    "checks": {check_id: {"params": values} for check_id, values in (params or {}).items()}}
        result = execute_run(run.db, snapshot, as_of=as_of, config=parse_config(document), registry=registry,
                             packs=(PACK,))
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status == "failed"]
        return result

    run.db = tmp_path / "results.db"
    return run


def latest_run(db: Path) -> int:
    return query(db, "SELECT max(run_id) FROM runs")[0][0]


def assessment(db: Path, loan_id: str) -> dict:
    rows = query(db, "SELECT risk_class, recovery_category, required_provision, reasons FROM assessments "
                     "WHERE run_id = ? AND loan_id = ?", (latest_run(db), loan_id))
    assert len(rows) == 1, f"{loan_id}: {len(rows)} assessments"
    risk_class, recovery_category, required_provision, reasons = rows[0]
    return {"risk_class": risk_class, "recovery_category": recovery_category,
            "required_provision": required_provision, "reasons": json.loads(reasons)}


def risk_class(db: Path, loan_id: str) -> str:
    return assessment(db, loan_id)["risk_class"]


def floors(db: Path, loan_id: str) -> list[tuple[str, dict]]:
    """The five-category reasons of a loan: (class of the floor, details), sorted by floor name."""
    reasons = assessment(db, loan_id)["reasons"]
    found = [(r["risk_class"], r["details"]) for r in reasons if r["rule"] == FIVE_CATEGORY]
    return sorted(found, key=lambda item: item[1]["floor"])


def floor(db: Path, loan_id: str, name: str) -> dict:
    (details,) = [d for _, d in floors(db, loan_id) if d["floor"] == name]
    return details


def recovery(db: Path, loan_id: str) -> tuple[str | None, dict]:
    """(recovery category, details of the recovery reason)."""
    found = assessment(db, loan_id)
    details = [r["details"] for r in found["reasons"] if r["rule"] == "classification.recovery_category"]
    return found["recovery_category"], (details[0] if details else {})


def findings(db: Path, check_id: str) -> list[tuple]:
    """(loan_id, borrower_id, severity, message, details) of one check in the latest run."""
    rows = query(db, "SELECT loan_id, borrower_id, severity, message, details FROM findings "
                     "WHERE run_id = ? AND check_id = ? ORDER BY loan_id, borrower_id, message",
                 (latest_run(db), check_id))
    return [(*row[:4], json.loads(row[4]) if row[4] else None) for row in rows]


def contribution(db: Path, contribution_id: str) -> tuple[str, str | None]:
    return query(db, "SELECT status, reason FROM run_contributions WHERE run_id = ? AND contribution_id = ?",
                 (latest_run(db), contribution_id))[0]


# ------------------------------------------------------------ overdue floors


def expected_overdue_class(days_past_due: int) -> str:
    """REFERENCE.md §1: overdue at all, more than 90, 270, 360 days."""
    if days_past_due > 360:
        return "loss"
    if days_past_due > 270:
        return "doubtful"
    if days_past_due > 90:
        return "substandard"
    if days_past_due > 0:
        return "special_mention"
    return "normal"


@pytest.mark.parametrize(("days", "expected", "more_than"), [
    (0, "normal", None),
    (1, "special_mention", 0),
    (90, "special_mention", 0),
    (91, "substandard", 90),
    (270, "substandard", 90),
    (271, "doubtful", 270),
    (360, "doubtful", 270),
    (361, "loss", 360),
])
def test_overdue_days_set_the_class_at_each_boundary(night, days, expected, more_than):
    night(loans=[loan("L1", days_past_due=days)], borrowers=[debtor("B1")])
    assert risk_class(night.db, "L1") == expected
    reason = [] if more_than is None else [
        (expected, {"floor": "overdue_days", "days_past_due": days, "more_than_days": more_than})]
    assert floors(night.db, "L1") == reason


@pytest.mark.parametrize(("days", "expected"), [(7, "normal"), (8, "special_mention")])
def test_technical_grace_treats_short_overdue_as_current(night, days, expected):
    night(loans=[loan("L1", days_past_due=days)], borrowers=[debtor("B1")],
          params={FIVE_CATEGORY: {"technical_grace_days": 7}})
    assert risk_class(night.db, "L1") == expected
    if expected == "special_mention":
        assert floor(night.db, "L1", "overdue_days") == {"floor": "overdue_days", "days_past_due": 8,
                                                         "more_than_days": 7}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=5))
def test_overdue_class_is_the_threshold_function_for_any_days_past_due(days):
    # a fresh registry and database per example: hypothesis does not reset function-scoped fixtures
    registry = Registry.from_plugins(PluginManager())
    loans = [loan(f"L{index}", f"B{index}", days_past_due=value) for index, value in enumerate(days)]
    with tempfile.TemporaryDirectory() as scratch:
        snapshot = write_snapshot(Path(scratch) / "s", loans=loans,
                                  borrowers=[debtor(f"B{index}") for index in range(len(days))])
        db = Path(scratch) / "results.db"
        execute_run(db, snapshot, as_of=AS_OF, config=parse_config({"cooperative": {"name": "c"}}),
                    registry=registry, overrides=Overrides(enable=(FIVE_CATEGORY,)))
        classes = dict(query(db, "SELECT loan_id, risk_class FROM assessments"))
    assert classes == {f"L{index}": expected_overdue_class(value) for index, value in enumerate(days)}


# ------------------------------------------------------------ restructured loans


def test_restructured_loan_inside_the_observation_period_is_at_least_substandard(night):
    restructured = days_before(AS_OF, 364)
    night(loans=[loan("L1", restructured_date=restructured)], borrowers=[debtor("B1")])
    assert risk_class(night.db, "L1") == "substandard"
    assert floors(night.db, "L1") == [("substandard", {"floor": "restructured", "restructured_date": restructured,
                                                       "days_since": 364, "observation_days": 365})]


def test_restructured_loan_after_the_observation_period_is_not_floored(night):
    night(loans=[loan("L1", restructured_date=days_before(AS_OF, 365))], borrowers=[debtor("B1")])
    assert risk_class(night.db, "L1") == "normal"
    assert floors(night.db, "L1") == []


def test_restructuring_dated_after_the_as_of_is_not_floored(night):
    night(loans=[loan("L1", restructured_date=days_before(AS_OF, -1))], borrowers=[debtor("B1")])
    assert risk_class(night.db, "L1") == "normal"
    assert floors(night.db, "L1") == []


@pytest.mark.parametrize(("days_since", "expected"), [(179, "substandard"), (180, "normal")])
def test_observation_period_is_a_parameter(night, days_since, expected):
    night(loans=[loan("L1", restructured_date=days_before(AS_OF, days_since))], borrowers=[debtor("B1")],
          params={FIVE_CATEGORY: {"restructured_observation_days": 180}})
    assert risk_class(night.db, "L1") == expected


# ------------------------------------------------------------ non-retail spread and retail borrowers


def two_loans(npl_outstanding: str, performing_outstanding: str) -> list[dict]:
    """B1's book: L1 non-performing (100 days overdue), L2 performing."""
    return [loan("L1", outstanding_principal=npl_outstanding, days_past_due=100),
            loan("L2", outstanding_principal=performing_outstanding)]


@pytest.mark.parametrize("borrower_type", ["enterprise", "village_collective"])
def test_non_retail_borrower_just_above_ten_percent_npl_has_all_loans_substandard(night, borrower_type):
    # 10000.01 of 100000.00 is non-performing: 10.00001%
    night(loans=two_loans("10000.01", "89999.99"), borrowers=[debtor("B1", borrower_type=borrower_type)])
    assert risk_class(night.db, "L2") == "substandard"
    spread = floor(night.db, "L2", "non_retail_spread")
    assert (spread["borrower_type"], spread["more_than_share"]) == (borrower_type, 0.1)
    # the non-performing loan keeps its own floor and gets no spread reason
    assert [d["floor"] for _, d in floors(night.db, "L1")] == ["overdue_days"]


def test_non_retail_spread_also_lifts_a_special_mention_sibling(night):
    night(loans=[loan("L1", outstanding_principal="20000.00", days_past_due=100),
                 loan("L2", outstanding_principal="80000.00", days_past_due=5)],
          borrowers=[debtor("B1", borrower_type="enterprise")])
    assert risk_class(night.db, "L2") == "substandard"
    assert [d["floor"] for _, d in floors(night.db, "L2")] == ["non_retail_spread", "overdue_days"]


def test_non_retail_spread_reason_shows_a_share_above_its_threshold(night):
    night(loans=two_loans("10000.01", "89999.99"), borrowers=[debtor("B1", borrower_type="enterprise")])
    spread = floor(night.db, "L2", "non_retail_spread")
    assert spread["borrower_npl_share"] > spread["more_than_share"]


@pytest.mark.parametrize(("npl", "performing"), [
    ("10000.00", "90000.00"),  # exactly 10%: the rule says more than
    ("9999.99", "90000.01"),  # just below
])
def test_non_retail_borrower_at_or_below_ten_percent_npl_is_not_spread(night, npl, performing):
    night(loans=two_loans(npl, performing), borrowers=[debtor("B1", borrower_type="enterprise")])
    assert risk_class(night.db, "L2") == "normal"
    assert floors(night.db, "L2") == []


def test_household_loans_are_classified_loan_by_loan(night):
    night(loans=two_loans("10000.01", "89999.99"), borrowers=[debtor("B1", borrower_type="household")])
    assert (risk_class(night.db, "L1"), risk_class(night.db, "L2")) == ("substandard", "normal")
    assert floors(night.db, "L2") == []


def test_borrower_without_borrowers_csv_is_treated_as_retail_and_the_reasons_say_so(night):
    night(loans=two_loans("10000.01", "89999.99"))
    assert risk_class(night.db, "L2") == "normal"
    assert floors(night.db, "L2") == [("normal", UNKNOWN_TYPE)]
    assert ("normal", UNKNOWN_TYPE) in floors(night.db, "L1")


def test_borrower_with_empty_type_is_treated_as_retail_and_the_reasons_say_so(night):
    night(loans=two_loans("10000.01", "89999.99"), borrowers=[debtor("B1", borrower_type="")])
    assert risk_class(night.db, "L2") == "normal"
    assert floors(night.db, "L2") == [("normal", UNKNOWN_TYPE)]


# ------------------------------------------------------------ worst floor, written off


def test_restructured_and_overdue_is_substandard_with_both_reasons(night):
    night(loans=[loan("L1", days_past_due=100, restructured_date=days_before(AS_OF, 30))],
          borrowers=[debtor("B1")])
    assert risk_class(night.db, "L1") == "substandard"
    assert [(c, d["floor"]) for c, d in floors(night.db, "L1")] == [
        ("substandard", "overdue_days"), ("substandard", "restructured")]


def test_the_worst_floor_wins_and_the_milder_one_stays_a_reason(night):
    night(loans=[loan("L1", days_past_due=300, restructured_date=days_before(AS_OF, 30))],
          borrowers=[debtor("B1")])
    assert risk_class(night.db, "L1") == "doubtful"
    assert [(c, d["floor"]) for c, d in floors(night.db, "L1")] == [
        ("doubtful", "overdue_days"), ("substandard", "restructured")]


def test_written_off_loans_get_no_assessment(night):
    night(loans=[loan("L1", days_past_due=400, written_off=1), loan("L2")], borrowers=[debtor("B1")])
    assert query(night.db, "SELECT loan_id FROM assessments") == [("L2",)]


# ------------------------------------------------------------ required provision


@pytest.mark.parametrize(("days", "expected_class", "expected_fen"), [
    (0, "normal", 0),
    (1, "special_mention", 24691),  # 2% of 12345.67 = 246.9134
    (100, "substandard", 308642),  # 25% = 3086.4175
    (300, "doubtful", 617284),  # 50% = 6172.835
    (400, "loss", 1234567),  # 100%
])
def test_required_provision_is_the_class_rate_of_outstanding_to_the_fen(night, days, expected_class, expected_fen):
    night(loans=[loan("L1", outstanding_principal="12345.67", days_past_due=days)], borrowers=[debtor("B1")])
    found = assessment(night.db, "L1")
    assert (found["risk_class"], found["required_provision"]) == (expected_class, expected_fen)


def test_required_provision_rounds_half_a_fen_up(night):
    # 2% of 25.25 yuan is 50.5 fen: half up gives 51 (half even and truncation would give 50)
    night(loans=[loan("L1", outstanding_principal="25.25", days_past_due=1)], borrowers=[debtor("B1")])
    assert assessment(night.db, "L1")["required_provision"] == 51


def test_provision_rate_is_a_parameter(night):
    night(loans=[loan("L1", outstanding_principal="12345.67", days_past_due=100)], borrowers=[debtor("B1")],
          params={"classification.required_provision": {"substandard_rate": "0.30"}})
    assert assessment(night.db, "L1")["required_provision"] == 370370  # 3703.701


# ------------------------------------------------------------ recovery categories

NPL_LOAN = {"outstanding_principal": "80000.00", "days_past_due": 100}  # substandard


def test_registered_collateral_covering_the_exposure_makes_it_recoverable(night):
    night(loans=[loan("L1", **NPL_LOAN)], borrowers=[debtor("B1")],
          collateral=[collateral("C1", "80000.00")], pledges=[pledge("L1", "C1")])
    category, details = recovery(night.db, "L1")
    assert category == "recoverable"
    assert (details["rule"], details["coverage"], details["covered_fen"], details["exposure_fen"]) == (
        "registered_collateral_covers_exposure", 1.0, 8000000, 8000000)


def test_interest_in_arrears_is_part_of_the_exposure_collateral_must_cover(night):
    night(loans=[loan("L1", interest_arrears="0.01", **NPL_LOAN)], borrowers=[debtor("B1")],
          collateral=[collateral("C1", "80000.00")], pledges=[pledge("L1", "C1")])
    category, details = recovery(night.db, "L1")
    assert (category, details["rule"], details["exposure_fen"]) == ("recoverable_with_effort", "needs_effort",
                                                                     8000001)


def test_collateral_not_registered_does_not_count(night):
    night(loans=[loan("L1", **NPL_LOAN)], borrowers=[debtor("B1")],
          collateral=[collateral("C1", "80000.00", registration_status="pending")], pledges=[pledge("L1", "C1")])
    category, details = recovery(night.db, "L1")
    assert (category, details["rule"], details["covered_fen"]) == ("recoverable_with_effort", "needs_effort", 0)


def test_shared_collateral_is_split_in_proportion_to_outstanding(night):
    # C1 (100000) secures L1 (80000, NPL) and L2 (80000): L1's share is half, 50000 of its 80000
    night(loans=[loan("L1", **NPL_LOAN), loan("L2", "B2", outstanding_principal="80000.00")],
          borrowers=[debtor("B1"), debtor("B2")],
          collateral=[collateral("C1", "100000.00")], pledges=[pledge("L1", "C1"), pledge("L2", "C1")])
    category, details = recovery(night.db, "L1")
    assert (category, details["covered_fen"], details["coverage"]) == ("recoverable_with_effort", 5000000, 0.625)


def test_collateral_haircut_is_taken_off_the_appraised_value(night):
    # 100000 less 30% covers 70000 of 80000
    night(loans=[loan("L1", **NPL_LOAN)], borrowers=[debtor("B1")],
          collateral=[collateral("C1", "100000.00")], pledges=[pledge("L1", "C1")],
          params={"classification.recovery_category": {"collateral_haircut": "0.30"}})
    category, details = recovery(night.db, "L1")
    assert (category, details["covered_fen"], details["coverage"]) == ("recoverable_with_effort", 7000000, 0.875)


def test_collateral_covering_exactly_the_exposure_after_the_haircut_is_recoverable(night):
    night(loans=[loan("L1", outstanding_principal="9800.00", days_past_due=100)], borrowers=[debtor("B1")],
          collateral=[collateral("C1", "14000.00")], pledges=[pledge("L1", "C1")],
          params={"classification.recovery_category": {"collateral_haircut": "0.30"}})
    assert recovery(night.db, "L1")[0] == "recoverable"


@pytest.mark.parametrize(("facts", "rule"), [
    ({"deceased_or_dissolved": 1}, "deceased_or_dissolved"),
    ({"whereabouts_known": 0}, "whereabouts_unknown"),
    ({"repayment_capacity": "none"}, "no_capacity_to_repay"),
])
def test_weak_coverage_and_a_lost_debtor_is_unrecoverable_for_now(night, facts, rule):
    # 23999.99 of 80000: just below 30%
    night(loans=[loan("L1", **NPL_LOAN)], borrowers=[debtor("B1", **facts)],
          collateral=[collateral("C1", "23999.99")], pledges=[pledge("L1", "C1")])
    category, details = recovery(night.db, "L1")
    assert (category, details["rule"]) == ("unrecoverable_for_now", rule)


def test_no_capacity_to_repay_with_thirty_percent_coverage_is_recoverable_with_effort(night):
    night(loans=[loan("L1", **NPL_LOAN)], borrowers=[debtor("B1", repayment_capacity="none")],
          collateral=[collateral("C1", "24000.00")], pledges=[pledge("L1", "C1")])
    category, details = recovery(night.db, "L1")
    assert (category, details["rule"], details["coverage"]) == ("recoverable_with_effort", "needs_effort", 0.3)


@pytest.mark.parametrize("willingness", ["good", "fair"])
def test_willing_and_able_debtor_not_in_litigation_is_recoverable(night, willingness):
    night(loans=[loan("L1", **NPL_LOAN)],
          borrowers=[debtor("B1", repayment_willingness=willingness, repayment_capacity="normal",
                            whereabouts_known=1, deceased_or_dissolved=0, in_litigation=0)])
    category, details = recovery(night.db, "L1")
    assert (category, details["rule"]) == ("recoverable", "willing_and_able")


def test_willing_and_able_debtor_in_litigation_is_recoverable_with_effort(night):
    night(loans=[loan("L1", **NPL_LOAN)],
          borrowers=[debtor("B1", repayment_willingness="good", repayment_capacity="normal",
                            whereabouts_known=1, deceased_or_dissolved=0, in_litigation=1)])
    category, details = recovery(night.db, "L1")
    assert (category, details["rule"], details["in_litigation"]) == ("recoverable_with_effort", "needs_effort", 1)


def test_without_borrowers_csv_a_non_performing_loan_is_recoverable_with_effort(night):
    night(loans=[loan("L1", **NPL_LOAN)])
    category, details = recovery(night.db, "L1")
    assert (category, details["rule"]) == ("recoverable_with_effort", "needs_effort")


@pytest.mark.parametrize("days", [0, 30])
def test_performing_loans_get_no_recovery_category(night, days):
    night(loans=[loan("L1", days_past_due=days)], borrowers=[debtor("B1")])
    assert recovery(night.db, "L1") == (None, {})


# ------------------------------------------------------------ recorded class against computed class


def test_recorded_class_better_than_computed_is_a_critical_under_classification(night):
    night(loans=[loan("L1", days_past_due=100, recorded_class="normal")], borrowers=[debtor("B1")])
    ((loan_id, borrower_id, severity, message, details),) = findings(night.db, "classification.under_classified")
    assert (loan_id, borrower_id, severity) == ("L1", "B1", "critical")
    assert message == "recorded normal, computed substandard"
    assert (details["recorded_class"], details["risk_class"]) == ("normal", "substandard")
    assert [r["details"]["floor"] for r in details["reasons"] if r["rule"] == FIVE_CATEGORY] == ["overdue_days"]
    assert findings(night.db, "classification.over_classified") == []


def test_recorded_class_equal_to_computed_is_neither_under_nor_over_classified(night):
    night(loans=[loan("L1", days_past_due=100, recorded_class="substandard")], borrowers=[debtor("B1")])
    assert findings(night.db, "classification.under_classified") == []
    assert findings(night.db, "classification.over_classified") == []


def test_recorded_class_worse_than_computed_is_an_info_over_classification(night):
    night(loans=[loan("L1", recorded_class="doubtful")], borrowers=[debtor("B1")])
    assert findings(night.db, "classification.over_classified") == [
        ("L1", "B1", "info", "recorded doubtful, computed normal",
         {"recorded_class": "doubtful", "risk_class": "normal"})]
    assert findings(night.db, "classification.under_classified") == []


# ------------------------------------------------------------ provision shortfall


def test_recorded_provision_below_required_is_a_shortfall(night):
    night(loans=[loan("L1", days_past_due=100, recorded_class="substandard", provision="19999.99")],
          borrowers=[debtor("B1")])  # required: 25% of 80000.00
    assert findings(night.db, "provision.shortfall") == [
        ("L1", "B1", "warning", "provision 19999.99 yuan, required 20000.00 yuan (substandard)",
         {"provision_fen": 1999999, "required_provision_fen": 2000000, "shortfall_fen": 1,
          "risk_class": "substandard"})]


@pytest.mark.parametrize("provision", ["20000.00", ""])
def test_provision_equal_to_required_or_not_recorded_is_no_shortfall(night, provision):
    night(loans=[loan("L1", days_past_due=100, recorded_class="substandard", provision=provision)],
          borrowers=[debtor("B1")])
    assert findings(night.db, "provision.shortfall") == []


# ------------------------------------------------------------ portfolio indicators


def test_npl_ratio_just_above_five_percent_is_reported(night):
    night(loans=[loan("L1", outstanding_principal="5000.01", days_past_due=100),
                 loan("L2", outstanding_principal="94999.99")], borrowers=[debtor("B1")])
    ((loan_id, _, severity, _, details),) = findings(night.db, "portfolio.npl_ratio")
    assert (loan_id, severity) == (None, "warning")
    assert details == {"npl_fen": 500001, "outstanding_fen": 10000000, "max_ratio": 0.05}


def test_npl_ratio_of_exactly_five_percent_is_not_reported(night):
    night(loans=[loan("L1", outstanding_principal="5000.00", days_past_due=100),
                 loan("L2", outstanding_principal="95000.00")], borrowers=[debtor("B1")])
    assert findings(night.db, "portfolio.npl_ratio") == []


def test_loan_provision_ratio_below_two_and_a_half_percent_is_reported(night):
    night(loans=[loan("L1", outstanding_principal="100000.00", provision="2499.99")], borrowers=[debtor("B1")])
    ((loan_id, _, severity, _, details),) = findings(night.db, "portfolio.loan_provision_ratio")
    assert (loan_id, severity) == (None, "warning")
    assert details == {"provision_fen": 249999, "outstanding_fen": 10000000, "min_ratio": 0.025}


def test_loan_provision_ratio_of_exactly_two_and_a_half_percent_is_not_reported(night):
    night(loans=[loan("L1", outstanding_principal="100000.00", provision="2500.00")], borrowers=[debtor("B1")])
    assert findings(night.db, "portfolio.loan_provision_ratio") == []


def test_provision_coverage_below_150_percent_of_npl_is_reported(night):
    night(loans=[loan("L1", outstanding_principal="10000.00", days_past_due=100, provision="14000.00"),
                 loan("L2", outstanding_principal="90000.00", provision="0")], borrowers=[debtor("B1")])
    assert findings(night.db, "portfolio.provision_coverage") == [
        (None, None, "warning", "provision coverage 140.00% below 150%",
         {"provision_fen": 1400000, "npl_fen": 1000000, "min_ratio": 1.5})]


def test_provision_coverage_one_fen_below_150_percent_is_reported(night):
    night(loans=[loan("L1", outstanding_principal="10000.00", days_past_due=100, provision="14999.99"),
                 loan("L2", outstanding_principal="90000.00", provision="0")], borrowers=[debtor("B1")])
    assert [f[4]["provision_fen"] for f in findings(night.db, "portfolio.provision_coverage")] == [1499999]


def test_provision_coverage_of_exactly_150_percent_is_not_reported(night):
    night(loans=[loan("L1", outstanding_principal="10000.00", days_past_due=100, provision="15000.00"),
                 loan("L2", outstanding_principal="90000.00", provision="0")], borrowers=[debtor("B1")])
    assert findings(night.db, "portfolio.provision_coverage") == []


def test_provision_coverage_is_not_judged_without_npl(night):
    night(loans=[loan("L1", provision="0")], borrowers=[debtor("B1")])
    assert findings(night.db, "portfolio.provision_coverage") == []
    assert contribution(night.db, "portfolio.provision_coverage") == ("ok", None)


# ------------------------------------------------------------ concentration against net capital


def test_single_borrower_above_ten_percent_of_net_capital_is_reported(night):
    night(loans=[loan("L1", outstanding_principal="60000.00"), loan("L2", outstanding_principal="40000.01")],
          borrowers=[debtor("B1")], net_capital=NET_CAPITAL)
    assert findings(night.db, "concentration.single_borrower") == [
        (None, "B1", "critical", "exposure 100000.01 yuan is 10.00% of net capital",
         {"exposure_fen": 10000001, "net_capital_fen": 100000000, "max_share": 0.1})]


def test_single_borrower_at_exactly_ten_percent_is_not_reported(night):
    night(loans=[loan("L1", outstanding_principal="60000.00"), loan("L2", outstanding_principal="40000.00")],
          borrowers=[debtor("B1")], net_capital=NET_CAPITAL)
    assert findings(night.db, "concentration.single_borrower") == []


def group_of_two(second: str) -> dict:
    """B1 (80000.00) and B2 (``second``), both in group G1: each below 10% of net capital."""
    return {"loans": [loan("L1", "B1", outstanding_principal="80000.00"),
                      loan("L2", "B2", outstanding_principal=second)],
            "borrowers": [debtor("B1", group_id="G1"), debtor("B2", group_id="G1")]}


def test_group_of_related_borrowers_above_fifteen_percent_is_reported(night):
    night(net_capital=NET_CAPITAL, **group_of_two("70000.01"))
    ((loan_id, borrower_id, severity, message, details),) = findings(night.db, "concentration.single_group")
    assert (loan_id, borrower_id, severity) == (None, None, "critical")
    assert message == "group G1: exposure 150000.01 yuan is 15.00% of net capital"
    assert (details["group_id"], details["members"], details["exposure_fen"]) == ("G1", 2, 15000001)
    assert findings(night.db, "concentration.single_borrower") == []


def test_group_at_exactly_fifteen_percent_is_not_reported(night):
    night(net_capital=NET_CAPITAL, **group_of_two("70000.00"))
    assert findings(night.db, "concentration.single_group") == []


def eleven_borrowers(largest: str) -> dict:
    """Eleven borrowers of 50000.00 each (550000 in all), the first of ``largest``."""
    amounts = [largest] + ["50000.00"] * 10
    return {"loans": [loan(f"L{i}", f"B{i:02d}", outstanding_principal=a) for i, a in enumerate(amounts)],
            "borrowers": [debtor(f"B{i:02d}") for i in range(11)]}


def test_ten_largest_borrowers_above_half_of_net_capital_are_reported(night):
    night(net_capital=NET_CAPITAL, **eleven_borrowers("50000.01"))
    ((loan_id, borrower_id, severity, message, details),) = findings(night.db, "concentration.top_ten")
    assert (loan_id, borrower_id, severity) == (None, None, "warning")
    assert message == "ten largest borrowers: 500000.01 yuan, 50.00% of net capital"
    assert details["exposure_fen"] == 50000001
    assert json.loads(details["borrowers"])[0] == "B00" and len(json.loads(details["borrowers"])) == 10


def test_only_the_ten_largest_count_and_exactly_half_is_not_reported(night):
    night(net_capital=NET_CAPITAL, **eleven_borrowers("50000.00"))  # all eleven: 55%; the ten largest: 50%
    assert findings(night.db, "concentration.top_ten") == []


@pytest.mark.parametrize("check_id", ["concentration.single_borrower", "concentration.single_group",
                                      "concentration.top_ten"])
def test_concentration_without_net_capital_is_skipped_naming_the_setting(night, check_id):
    night(loans=[loan("L1", outstanding_principal="900000.00")], borrowers=[debtor("B1", group_id="G1")])
    status, reason = contribution(night.db, check_id)
    assert status == "skipped" and "cooperative.net_capital" in reason
    assert findings(night.db, check_id) == []


# ------------------------------------------------------------ early upgrade (history over several runs)

EARLY_UPGRADE = "classification.early_upgrade"


def test_early_upgrade_is_skipped_on_the_first_run_for_want_of_history(night):
    night(loans=[loan("L1", recorded_class="normal")], borrowers=[debtor("B1")])
    assert contribution(night.db, EARLY_UPGRADE) == (
        "skipped", "needs a previous as-of of this cooperative, and this is the first")


def test_npl_recorded_normal_next_month_with_arrears_is_an_early_upgrade(night):
    night(as_of="2026-10-27", loans=[loan("L1", days_past_due=100, recorded_class="substandard")],
          borrowers=[debtor("B1")])
    night(as_of="2026-11-27", loans=[loan("L1", days_past_due=30, recorded_class="normal")],
          borrowers=[debtor("B1")])
    assert findings(night.db, EARLY_UPGRADE) == [
        ("L1", "B1", "critical", "recorded normal although non-performing on 2026-10-27, with arrears not cleared",
         {"last_non_performing": "2026-10-27", "days_past_due": 30, "interest_arrears_fen": 0,
          "months_required": 6})]


def test_npl_recorded_normal_months_later_without_arrears_is_an_early_upgrade(night):
    night(as_of="2026-06-27", loans=[loan("L1", days_past_due=100, recorded_class="substandard")],
          borrowers=[debtor("B1")])
    night(as_of="2026-11-27", loans=[loan("L1", recorded_class="normal")], borrowers=[debtor("B1")])
    assert [f[3] for f in findings(night.db, EARLY_UPGRADE)] == [
        "recorded normal although non-performing on 2026-06-27, less than 6 months ago"]


def test_npl_recorded_normal_seven_months_later_without_arrears_is_no_early_upgrade(night):
    night(as_of="2026-04-27", loans=[loan("L1", days_past_due=100, recorded_class="substandard")],
          borrowers=[debtor("B1")])
    night(as_of="2026-11-27", loans=[loan("L1", recorded_class="normal")], borrowers=[debtor("B1")])
    assert contribution(night.db, EARLY_UPGRADE) == ("ok", None)
    assert findings(night.db, EARLY_UPGRADE) == []


def test_npl_computed_but_recorded_normal_earlier_counts_as_non_performing(night):
    # month 1: recorded normal, but 100 days overdue: computed substandard (and under-classified)
    night(as_of="2026-10-27", loans=[loan("L1", days_past_due=100, recorded_class="normal")],
          borrowers=[debtor("B1")])
    night(as_of="2026-11-27", loans=[loan("L1", recorded_class="normal")], borrowers=[debtor("B1")])
    assert [f[4]["last_non_performing"] for f in findings(night.db, EARLY_UPGRADE)] == ["2026-10-27"]


def test_npl_recorded_normal_exactly_six_months_later_without_arrears_is_no_early_upgrade(night):
    night(as_of="2026-05-27", loans=[loan("L1", days_past_due=100, recorded_class="substandard")],
          borrowers=[debtor("B1")])
    night(as_of="2026-11-27", loans=[loan("L1", recorded_class="normal")], borrowers=[debtor("B1")])
    assert findings(night.db, EARLY_UPGRADE) == []


def test_npl_five_months_before_a_month_end_as_of_is_an_early_upgrade(night):
    night(as_of="2026-03-02", loans=[loan("L1", days_past_due=100, recorded_class="substandard")],
          borrowers=[debtor("B1")])
    night(as_of="2026-08-31", loans=[loan("L1", recorded_class="normal")], borrowers=[debtor("B1")])
    assert [f[4]["last_non_performing"] for f in findings(night.db, EARLY_UPGRADE)] == ["2026-03-02"]


def test_npl_upgraded_long_ago_with_arrears_still_unpaid_is_an_early_upgrade(night):
    night(as_of="2026-03-27", loans=[loan("L1", days_past_due=100, recorded_class="substandard")],
          borrowers=[debtor("B1")])
    night(as_of="2026-11-27", loans=[loan("L1", recorded_class="special_mention", days_past_due=20)],
          borrowers=[debtor("B1")])
    (finding,) = findings(night.db, EARLY_UPGRADE)
    assert finding[4]["last_non_performing"] == "2026-03-27" and finding[4]["days_past_due"] == 20


def test_a_loan_still_non_performing_today_is_under_classified_not_an_early_upgrade(night):
    for as_of, days in (("2026-10-27", 170), ("2026-11-27", 200)):
        night(as_of=as_of, loans=[loan("L1", days_past_due=days, recorded_class="special_mention")],
              borrowers=[debtor("B1")])
    assert findings(night.db, EARLY_UPGRADE) == []
    assert [f[0] for f in findings(night.db, "classification.under_classified")] == ["L1"]


# ------------------------------------------------------------ the pack through the command line


def test_packs_lists_the_versioned_pack_with_every_classifier_and_check(runner):
    listed = invoke(runner, "packs", "--json")
    assert listed.exit_code == 0, listed.output
    (pack,) = [p for p in json.loads(listed.stdout) if p["name"] == PACK]
    assert pack["version"] == "1.1.0"
    assert set(pack["members"]) == {
        FIVE_CATEGORY, "classification.required_provision", "classification.recovery_category",
        "classification.under_classified", "classification.over_classified", EARLY_UPGRADE,
        "provision.shortfall", "portfolio.npl_ratio", "portfolio.loan_provision_ratio",
        "portfolio.provision_coverage", "concentration.single_borrower", "concentration.single_group",
        "concentration.top_ten"}



def test_pack_through_the_cli_fills_assessments_that_export_readably(tmp_path, runner):
    snapshot = write_snapshot(tmp_path / "s", loans=[
        loan("L1", outstanding_principal="12345.67", days_past_due=100, recorded_class="substandard"),
        loan("L2", "B2"),
    ], borrowers=[debtor("B1", repayment_willingness="good", repayment_capacity="normal", whereabouts_known=1,
                         deceased_or_dissolved=0, in_litigation=0), debtor("B2")])
    db = tmp_path / "results.db"
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--pack", PACK, "--db", db)
    assert result.exit_code == 0, result.output
    exported = invoke(runner, "export", "assessments", "--db", db, "--format", "csv")
    assert exported.exit_code == 0, exported.output
    rows = {row["loan_id"]: row for row in csv.DictReader(io.StringIO(exported.stdout))}
    assert {k: rows["L1"][k] for k in ("risk_class", "recorded_class", "recovery_category", "required_provision")} == {
        "risk_class": "substandard", "recorded_class": "substandard", "recovery_category": "recoverable",
        "required_provision": "3086.42"}
    reasons = json.loads(rows["L1"]["reasons"])
    assert {r["rule"] for r in reasons} == {FIVE_CATEGORY, "classification.required_provision",
                                            "classification.recovery_category"}
    assert all(r["reference"] for r in reasons)
    assert {k: rows["L2"][k] for k in ("risk_class", "recovery_category", "required_provision")} == {
        "risk_class": "normal", "recovery_category": "", "required_provision": "0.00"}
