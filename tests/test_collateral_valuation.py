"""Issue 4's other two parts: each loan's effective collateral value (collateral.effective_value), read by
the recovery categories when both packs run, and the collateral summaries stored for the reports."""

from __future__ import annotations

import json

import pytest
from conftest import AS_OF, borrower, loan, query, write_snapshot

from loanrules.config import parse_config
from loanrules.run import execute_run

BASELINE, FIVE = "cooperative-baseline", "cn-five-category"


def mortgage(loan_id, outstanding="50000.00", borrower_id="B1", **fields):
    return loan(loan_id, borrower_id, guarantee_type="mortgage", outstanding_principal=outstanding,
                principal="100000.00", origination_date="2026-06-01", **fields)


def house(collateral_id, value="100000.00", **fields):
    row = {"collateral_id": collateral_id, "collateral_type": "house", "owner_id": "B1", "appraised_value": value,
           "appraisal_date": "2026-11-01", "appraiser_id": "AP1", "registration_status": "registered",
           "registration_no": f"REG-{collateral_id}", "registration_date": "2026-06-10", "site_verified": "1"}
    row.update({key: str(value) for key, value in fields.items()})
    return row


def pledge(loan_id, collateral_id, lien_rank=1):
    return {"loan_id": loan_id, "collateral_id": collateral_id, "lien_rank": str(lien_rank),
            "secured_amount": "1.00"}


@pytest.fixture
def night(tmp_path, registry):
    def run(loans, collateral, pledges, packs=(BASELINE,), params=None, borrowers=None):
        snapshot = write_snapshot(
            tmp_path / "s", loans=loans, collateral=collateral, pledges=pledges,
            borrowers=borrowers or [borrower(b) for b in sorted({row["borrower_id"] for row in loans})],
            appraisers=[{"appraiser_id": "AP1", "name": "Agency One", "approved": "1", "suspended": "0"}])
        config = parse_config({"cooperative": {"name": "c"},
                               "checks": {cid: {"params": values} for cid, values in (params or {}).items()}})
        result = execute_run(run.db, snapshot, as_of=AS_OF, config=config, registry=registry, packs=packs)
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status != "ok"]
        return result

    run.db = tmp_path / "results.db"
    return run


def effective(night, loans, collateral, pledges, **params) -> dict[str, int]:
    """Each loan's effective value in fen, as the recovery categories read it: every loan is made
    non-performing so that each gets a recovery verdict, whose details carry the covered amount."""
    loans = [{**row, "recorded_class": "substandard", "days_past_due": "100"} for row in loans]
    night(loans, collateral, pledges, packs=(BASELINE, FIVE),
          params={"collateral.effective_value": params} if params else None)
    values = {}
    for loan_id, reasons in query(night.db, "SELECT loan_id, reasons FROM assessments"):
        recovery = next(r for r in json.loads(reasons) if r["rule"] == "classification.recovery_category")
        assert recovery["details"]["collateral_basis"] == "effective"
        values[loan_id] = recovery["details"]["covered_fen"]
    return values


def test_a_registered_verified_house_counts_at_its_lending_value(night):
    # 100000.00 at the house's 70% limit: 70000.00 lendable; the loan owes 50000.00 (no arrears)
    assert effective(night, [mortgage("L1")], [house("C1")], [pledge("L1", "C1")]) == {"L1": 5_000_000}


def test_the_lending_value_caps_what_a_larger_claim_gets(night):
    assert effective(night, [mortgage("L1", "90000.00")], [house("C1")], [pledge("L1", "C1")]) == {"L1": 7_000_000}


def test_interest_in_arrears_is_part_of_the_claim(night):
    loans = [mortgage("L1", "65000.00", interest_arrears="10000.00")]
    assert effective(night, loans, [house("C1")], [pledge("L1", "C1")]) == {"L1": 7_000_000}


@pytest.mark.parametrize("fields", [{"registration_status": "pending"}, {"registration_status": ""},
                                    {"site_verified": "0"}, {"site_verified": ""}, {"appraised_value": ""}])
def test_collateral_not_registered_verified_or_valued_counts_nothing(night, fields):
    assert effective(night, [mortgage("L1")], [house("C1", **fields)], [pledge("L1", "C1")]) == {"L1": 0}


def test_site_verification_can_be_left_out_by_parameter(night):
    values = effective(night, [mortgage("L1")], [house("C1", site_verified="0")], [pledge("L1", "C1")],
                       require_site_verified=False)
    assert values == {"L1": 5_000_000}


def test_the_haircut_and_the_ltv_limits_are_parameters(night):
    # 100000.00 x 0.60 = 60000.00, less 10%: 54000.00
    values = effective(night, [mortgage("L1", "90000.00")], [house("C1")], [pledge("L1", "C1")],
                       haircut="0.10", max_ltv_house="0.60")
    assert values == {"L1": 5_400_000}


def test_the_first_lien_rank_is_served_first(night):
    loans = [mortgage("L1", "50000.00"), mortgage("L2", "30000.00", "B2")]
    values = effective(night, loans, [house("C1")], [pledge("L1", "C1", 1), pledge("L2", "C1", 2)])
    assert values == {"L1": 5_000_000, "L2": 2_000_000}


def test_loans_of_one_rank_share_in_proportion_to_their_claims_rounded_down(night):
    # 70000.00 for claims of 60000.00 and 20000.00 (80000.00): 52500.00 and 17500.00
    loans = [mortgage("L1", "60000.00"), mortgage("L2", "20000.00", "B2")]
    values = effective(night, loans, [house("C1")], [pledge("L1", "C1"), pledge("L2", "C1")])
    assert values == {"L1": 5_250_000, "L2": 1_750_000}
    # 70000.00 for three claims of 30000.00: 23333.33 each (a fen lost to rounding down, never gained)
    loans = [mortgage(f"L{i}", "30000.00", f"B{i}") for i in (1, 2, 3)]
    values = effective(night, loans, [house("C1")], [pledge(f"L{i}", "C1") for i in (1, 2, 3)])
    assert values == {"L1": 2_333_333, "L2": 2_333_333, "L3": 2_333_333}


def test_two_collaterals_add_up_but_never_beyond_the_claim(night):
    collateral = [house("C1", "50000.00"), house("C2", "50000.00", collateral_type="deposit")]
    # 35000.00 from the house (70%) and 45000.00 from the deposit (90%): 80000.00, above the claim of 60000.00
    assert effective(night, [mortgage("L1", "60000.00")], collateral,
                     [pledge("L1", "C1"), pledge("L1", "C2")]) == {"L1": 6_000_000}


def test_written_off_loans_take_no_share(night):
    loans = [mortgage("L1", "60000.00"), mortgage("L2", "60000.00", "B2", written_off="1")]
    assert effective(night, loans, [house("C1")], [pledge("L1", "C1"), pledge("L2", "C1")]) == {"L1": 6_000_000}


def test_recovery_uses_the_effective_value_with_both_packs_and_registered_collateral_without(night):
    """An unverified house of 100000.00 behind a doubtful loan of 50000.00: enough registered collateral, but
    none the guidance lets the cooperative count on."""
    loans = [mortgage("L1", recorded_class="doubtful", days_past_due="200")]
    borrowers = [borrower("B1", repayment_willingness="poor", repayment_capacity="weak")]
    collateral, pledges = [house("C1", site_verified="0")], [pledge("L1", "C1")]

    def recovery():
        reasons = json.loads(query(night.db, "SELECT reasons FROM assessments ORDER BY run_id DESC LIMIT 1")[0][0])
        return next(r for r in reasons if r["rule"] == "classification.recovery_category")

    night(loans, collateral, pledges, packs=(FIVE,), borrowers=borrowers)
    alone = recovery()
    assert alone["recovery_category"] == "recoverable"
    assert alone["details"]["collateral_basis"] == "registered" and alone["details"]["covered_fen"] == 10_000_000
    night(loans, collateral, pledges, packs=(BASELINE, FIVE), borrowers=borrowers)
    both = recovery()
    assert both["recovery_category"] == "recoverable_with_effort"
    assert both["details"]["collateral_basis"] == "effective" and both["details"]["covered_fen"] == 0


def test_a_collateral_that_does_not_count_leaves_the_others_counting(night):
    # the pending one counts nothing; the 10000.00 house counts 7000.00
    values = effective(night, [mortgage("L1")], [house("C1", registration_status="pending"),
                                                 house("C2", value="10000.00")],
                       [pledge("L1", "C1"), pledge("L1", "C2")])
    assert values == {"L1": 700_000}


# ------------------------------------------------------------ the collateral summaries

def summary(db, summary_id) -> list[dict]:
    return [json.loads(data) for (data,) in query(
        db, "SELECT data FROM summaries WHERE summary_id = ? ORDER BY row_no", (summary_id,))]


def test_coverage_by_type_adds_up_by_hand(night):
    loans = [mortgage("L1", "60000.00"), mortgage("L2", "20000.00", "B2", recorded_class="loss"),
             mortgage("L3", "10000.00", "B3")]
    collateral = [house("C1"), house("C2", "50000.00", appraisal_date="2024-01-01", site_verified="0"),
                  house("C3", "30000.00", collateral_type="vehicle", registration_status="pending")]
    night(loans, collateral, [pledge("L1", "C1"), pledge("L2", "C1", 2), pledge("L2", "C2"), pledge("L3", "C3")])
    rows = summary(night.db, "collateral.coverage_by_type")
    assert rows == [
        # C1 secures 80000.00 (L1, L2), C2 20000.00 (L2): value 150000.00 over 100000.00; C2 stale, unverified;
        # C1 is over its LTV (80000.00 > 70000.00); both secure the loss loan L2
        {"collateral_type": "house", "collateral_count": 2, "appraised_value_fen": 15_000_000,
         "exposure_fen": 10_000_000, "coverage_share": 1.5, "registered_share": 1.0, "site_verified_share": 0.5,
         "stale_count": 1, "stale_share": 0.5, "over_ltv_count": 1, "npl_backed_count": 2},
        {"collateral_type": "vehicle", "collateral_count": 1, "appraised_value_fen": 3_000_000,
         "exposure_fen": 1_000_000, "coverage_share": 3.0, "registered_share": 0.0, "site_verified_share": 1.0,
         "stale_count": 0, "stale_share": 0.0, "over_ltv_count": 0, "npl_backed_count": 0},
        {"collateral_type": "all", "collateral_count": 3, "appraised_value_fen": 18_000_000,
         "exposure_fen": 11_000_000, "coverage_share": 1.6364, "registered_share": 0.6667,
         "site_verified_share": 0.6667, "stale_count": 1, "stale_share": 0.3333, "over_ltv_count": 1,
         "npl_backed_count": 2},
    ]


def test_agency_scorecard_per_agency_with_its_standing(night):
    loans = [mortgage("L1"), mortgage("L2", "10000.00", "B2", recorded_class="doubtful")]
    collateral = [house("C1"), house("C2", appraiser_id="AP9", appraisal_date="2024-01-01")]
    night(loans, collateral, [pledge("L1", "C1"), pledge("L2", "C2")])
    rows = {row["appraiser_id"]: row for row in summary(night.db, "collateral.agency_scorecard")}
    assert rows["AP1"] == {"appraiser_id": "AP1", "appraiser_name": "Agency One", "standing": "approved",
                           "collateral_count": 1, "appraised_value_fen": 10_000_000, "stale_count": 0,
                           "over_ltv_count": 0, "value_dropped_count": 0, "npl_backed_count": 0,
                           "npl_backed_share": 0.0, "overvalues": 0}
    assert rows["AP9"]["standing"] == "not_on_list" and rows["AP9"]["appraiser_name"] is None
    assert rows["AP9"]["stale_count"] == 1 and rows["AP9"]["npl_backed_share"] == 1.0


def test_the_npl_count_uses_the_computed_class_when_classification_runs(night):
    # recorded normal, but 200 days past due: doubtful by the five-category floors
    loans = [mortgage("L1", days_past_due="200")]
    night(loans, [house("C1")], [pledge("L1", "C1")])
    assert summary(night.db, "collateral.coverage_by_type")[0]["npl_backed_count"] == 0
    night(loans, [house("C1")], [pledge("L1", "C1")], packs=(BASELINE, FIVE))
    assert summary(night.db, "collateral.coverage_by_type")[0]["npl_backed_count"] == 1
