"""The pack ``cooperative-baseline``: the collateral checks (issue 4; REFERENCE.md §4).

Every test runs the whole pack over the smallest snapshot that shows one behaviour (one or
more nights into one database) and reads the findings back from the ``findings`` table.
"""

from __future__ import annotations

import datetime
import itertools
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import AS_OF, borrower, loan, query, write_snapshot

from loanrules.config import parse_config
from loanrules.engine import Engine, RunScope
from loanrules.plan import Overrides, build_plan
from loanrules.run import execute_run
from loanrules.schema import COLLATERAL, Column, Index
from loanrules.store import connect

PACK = "cooperative-baseline"
LTV = "collateral.ltv_exceeded"
STALE = "collateral.appraisal_stale"
APPRAISER = "collateral.appraiser_not_approved"
NOT_REGISTERED = "collateral.not_registered"
NOT_VERIFIED = "collateral.not_site_verified"
MISSING = "collateral.missing"
REPEATED = "collateral.repeated_mortgage"
DROPPED = "collateral.value_dropped"
OVERVALUATION = "appraiser.overvaluation"
PREVIOUS = "2026-10-31"


def days_before(as_of: str, days: int) -> str:
    return (datetime.date.fromisoformat(as_of) - datetime.timedelta(days=days)).isoformat()


def mortgage(loan_id: str, borrower_id: str = "B1", **fields) -> dict[str, object]:
    """A mortgage loan of 70000.00 outstanding, originated on 2026-06-01."""
    facts = {"guarantee_type": "mortgage", "outstanding_principal": "70000.00", "origination_date": "2026-06-01"}
    facts.update(fields)
    return loan(loan_id, borrower_id, **facts)


def collateral(collateral_id: str, **fields) -> dict[str, object]:
    """A house worth 100000.00, appraised a month ago by an approved appraiser, registered, verified."""
    row = {"collateral_id": collateral_id, "collateral_type": "house", "owner_id": "B1",
           "appraised_value": "100000.00", "appraisal_date": days_before(AS_OF, 30), "appraiser_id": "AP1",
           "registration_status": "registered", "registration_no": f"REG-{collateral_id}",
           "registration_date": "2026-06-10", "site_verified": "1"}
    row.update({key: str(value) for key, value in fields.items()})
    return row


def pledge(loan_id: str, collateral_id: str, lien_rank: int = 1, secured_amount: str = "70000.00"):
    return {"loan_id": loan_id, "collateral_id": collateral_id, "lien_rank": str(lien_rank),
            "secured_amount": secured_amount}


def appraiser(appraiser_id: str, **fields) -> dict[str, object]:
    row = {"appraiser_id": appraiser_id, "name": f"Agency {appraiser_id}", "approved": "1",
           "approved_until": "2027-12-31", "suspended": "0"}
    row.update({key: str(value) for key, value in fields.items()})
    return row


def book(loans=None, collateral_rows=None, pledges=None, appraisers=None, **more) -> dict[str, object]:
    """The tables of one snapshot: by default one clean mortgage L1 of B1 on the house C1."""
    loans = loans if loans is not None else [mortgage("L1")]
    tables = {
        "loans": loans,
        "borrowers": [borrower(b) for b in sorted({row["borrower_id"] for row in loans})],
        "collateral": collateral_rows if collateral_rows is not None else [collateral("C1")],
        "pledges": pledges if pledges is not None else [pledge("L1", "C1")],
        "appraisers": appraisers if appraisers is not None else [appraiser("AP1"), appraiser("AP2")],
    }
    tables.update(more)
    return {name: rows for name, rows in tables.items() if rows is not None and rows != "absent"}


@pytest.fixture
def night(tmp_path, registry):
    """``night(as_of=..., params={check: {...}}, **tables)``: one run of the pack into the test's database
    (``night.db``); every call is another night. A table given as "absent" is not written."""
    numbers = itertools.count(1)

    def run(as_of: str = AS_OF, params: dict | None = None, **tables):
        tables = {name: rows for name, rows in tables.items() if not (isinstance(rows, str) and rows == "absent")}
        snapshot = write_snapshot(tmp_path / f"night{next(numbers)}", **tables)
        document = {"cooperative": {"name": "c"},
                    "checks": {check_id: {"params": values} for check_id, values in (params or {}).items()}}
        result = execute_run(run.db, snapshot, as_of=as_of, config=parse_config(document), registry=registry,
                             packs=(PACK,))
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status == "failed"]
        return result

    run.db = tmp_path / "results.db"
    return run


def latest_run(db: Path) -> int:
    return query(db, "SELECT max(run_id) FROM runs")[0][0]


def findings(db: Path, check_id: str) -> list[tuple]:
    """(loan_id, collateral_id, message, details) of one check in the latest run."""
    rows = query(db, "SELECT loan_id, collateral_id, message, details FROM findings "
                     "WHERE run_id = ? AND check_id = ? ORDER BY subject_key", (latest_run(db), check_id))
    return [(*row[:3], json.loads(row[3]) if row[3] else None) for row in rows]


def subjects(db: Path, check_id: str) -> list[str]:
    return [row[0] for row in query(db, "SELECT subject_key FROM findings WHERE run_id = ? AND check_id = ? "
                                        "ORDER BY subject_key", (latest_run(db), check_id))]


def contribution(db: Path, contribution_id: str) -> tuple[str, str | None]:
    return query(db, "SELECT status, reason FROM run_contributions WHERE run_id = ? AND contribution_id = ?",
                 (latest_run(db), contribution_id))[0]


# ------------------------------------------------------------ the clean case


def test_a_clean_mortgage_produces_no_collateral_finding(night):
    night(**book())
    assert query(night.db, "SELECT check_id, message FROM findings WHERE run_id = ?", (latest_run(night.db),)) == []
    statuses = dict(query(night.db, "SELECT contribution_id, status FROM run_contributions WHERE run_id = ? "
                                    "AND kind = 'check'", (latest_run(night.db),)))
    # the first night has no history; every other check ran
    assert statuses.pop(DROPPED) == statuses.pop(OVERVALUATION) == "skipped"
    assert {k: v for k, v in statuses.items() if k.startswith(("collateral.", "appraiser."))} == {
        check: "ok" for check in (LTV, STALE, APPRAISER, NOT_REGISTERED, NOT_VERIFIED, MISSING, REPEATED)}


def test_the_pack_is_versioned_and_holds_every_collateral_check(registry):
    pack = registry.packs[PACK]
    assert pack.version == "1.1.0"
    assert {LTV, STALE, APPRAISER, NOT_REGISTERED, NOT_VERIFIED, MISSING, REPEATED, DROPPED,
            OVERVALUATION} <= set(pack.members)  # and the derivation and summaries: test_collateral_valuation


# ------------------------------------------------------------ loan-to-value


@pytest.mark.parametrize(("kind", "value", "at_limit", "above"), [
    ("house", "100000.00", "70000.00", "70000.01"),
    ("commercial_property", "100000.00", "60000.00", "60000.01"),
    ("land_use_right", "100000.00", "50000.00", "50000.01"),
    ("vehicle", "100000.00", "50000.00", "50000.01"),
    ("deposit", "100000.00", "90000.00", "90000.01"),
    ("other", "100000.00", "50000.00", "50000.01"),
])
def test_ltv_exactly_at_the_limit_is_fine_one_fen_above_fires(night, kind, value, at_limit, above):
    secured = {"pledges": [pledge("L1", "C1", secured_amount="1.00")]}  # keep repeated_mortgage out of it
    night(**book(loans=[mortgage("L1", outstanding_principal=at_limit)],
                 collateral_rows=[collateral("C1", collateral_type=kind, appraised_value=value)], **secured))
    assert findings(night.db, LTV) == []
    night(**book(loans=[mortgage("L1", outstanding_principal=above)],
                 collateral_rows=[collateral("C1", collateral_type=kind, appraised_value=value)], **secured))
    ((loan_id, collateral_id, message, details),) = findings(night.db, LTV)
    assert (loan_id, collateral_id) == (None, "C1")
    exposure = int(above.replace(".", ""))
    assert details["exposure_fen"] == exposure and details["value_fen"] == 10000000
    assert details["collateral_type"] == kind
    assert details["loans"] == [{"loan_id": "L1", "borrower_id": "B1", "lien_rank": 1, "outstanding_fen": exposure,
                                 "secured_fen": 100}]
    assert details["ratio"] == round(exposure / 10000000, 4) and details["limit"] > 0
    assert "above" in message


def test_ltv_adds_every_loan_on_the_collateral_and_leaves_written_off_loans_out(night):
    loans = [mortgage("L1", outstanding_principal="40000.00"), mortgage("L2", "B2", outstanding_principal="30000.01"),
             mortgage("L3", "B3", outstanding_principal="50000.00", written_off=1)]
    pledges = [pledge("L1", "C1", 1, "1.00"), pledge("L2", "C1", 2, "1.00"), pledge("L3", "C1", 3, "1.00")]
    night(**book(loans=loans, pledges=pledges))
    ((_, _, _, details),) = findings(night.db, LTV)
    assert details["exposure_fen"] == 7000001
    assert [(item["loan_id"], item["lien_rank"]) for item in details["loans"]] == [("L1", 1), ("L2", 2)]


def test_ltv_limit_is_a_parameter_per_type(night):
    night(**book(loans=[mortgage("L1", outstanding_principal="75000.00")],
                 pledges=[pledge("L1", "C1", secured_amount="1.00")]),
          params={LTV: {"max_ltv_house": "0.75"}})
    assert findings(night.db, LTV) == []
    night(**book(loans=[mortgage("L1", outstanding_principal="75000.00")],
                 pledges=[pledge("L1", "C1", secured_amount="1.00")]))
    assert [row[1] for row in findings(night.db, LTV)] == ["C1"]


# ------------------------------------------------------------ stale appraisals


@pytest.mark.parametrize(("kind", "max_age"), [("house", 365), ("forest_right", 365), ("other", 365),
                                               ("equipment", 180), ("vehicle", 180)])
def test_appraisal_exactly_at_the_maximum_age_is_fine_a_day_more_is_stale(night, kind, max_age):
    night(**book(collateral_rows=[collateral("C1", collateral_type=kind,
                                             appraisal_date=days_before(AS_OF, max_age))]))
    assert findings(night.db, STALE) == []
    night(**book(collateral_rows=[collateral("C1", collateral_type=kind,
                                             appraisal_date=days_before(AS_OF, max_age + 1))]))
    ((_, collateral_id, _, details),) = findings(night.db, STALE)
    assert (collateral_id, details["age_days"], details["max_age_days"]) == ("C1", max_age + 1, max_age)


@pytest.mark.parametrize("kind", ["deposit", "bond"])
def test_deposits_and_bonds_are_never_stale(night, kind):
    night(**book(collateral_rows=[collateral("C1", collateral_type=kind, appraisal_date=days_before(AS_OF, 3000)),
                                  collateral("C2", collateral_type=kind, appraisal_date="")],
                 pledges=[pledge("L1", "C1"), pledge("L1", "C2", 2, "0.00")]))
    assert findings(night.db, STALE) == []


def test_collateral_never_appraised_is_stale_but_not_when_it_secures_nothing_on_the_books(night):
    night(**book(loans=[mortgage("L1"), mortgage("L2", written_off=1)],
                 collateral_rows=[collateral("C1", appraisal_date=""),
                                  collateral("C2", appraisal_date=days_before(AS_OF, 800)),
                                  collateral("C3", appraisal_date=days_before(AS_OF, 800))],
                 pledges=[pledge("L1", "C1"), pledge("L2", "C2")]))
    ((_, collateral_id, message, details),) = findings(night.db, STALE)
    assert (collateral_id, details["appraisal_date"]) == ("C1", None)
    assert "no appraisal date" in message


def test_maximum_ages_are_parameters(night):
    night(**book(collateral_rows=[collateral("C1", appraisal_date=days_before(AS_OF, 200))]),
          params={STALE: {"max_age_days": 180}})
    assert [row[1] for row in findings(night.db, STALE)] == ["C1"]


# ------------------------------------------------------------ appraisers


@pytest.mark.parametrize(("appraisers", "reason"), [
    ([appraiser("AP2")], "not_on_list"),
    ([appraiser("AP1", approved=0)], "not_approved"),
    ([appraiser("AP1", suspended=1)], "suspended"),
    ([appraiser("AP1", approved_until=days_before(AS_OF, 31))], "approval_expired"),
])
def test_appraiser_not_on_the_list_not_approved_suspended_or_expired(night, appraisers, reason):
    night(**book(appraisers=appraisers))
    ((loan_id, collateral_id, _, details),) = findings(night.db, APPRAISER)
    assert (loan_id, collateral_id, details["reason"], details["appraiser_id"]) == (None, "C1", reason, "AP1")


@pytest.mark.parametrize("approved_until", [days_before(AS_OF, 30), days_before(AS_OF, 1), ""])
def test_approval_valid_on_the_appraisal_date_is_fine_even_if_expired_since(night, approved_until):
    night(**book(appraisers=[appraiser("AP1", approved_until=approved_until)]))
    assert findings(night.db, APPRAISER) == []


def test_appraiser_check_is_skipped_with_the_reason_without_appraisers_csv(night):
    night(**book(appraisers="absent"))
    assert contribution(night.db, APPRAISER) == (
        "skipped", "needs appraisers.csv, which this snapshot does not have")
    assert contribution(night.db, OVERVALUATION)[0] == "skipped"
    assert contribution(night.db, LTV) == ("ok", None)


# ------------------------------------------------------------ registration and site verification


@pytest.mark.parametrize(("registered", "fires"), [("2026-07-01", False), ("2026-07-02", True)])
def test_registration_on_day_30_is_on_time_day_31_is_late(night, registered, fires):
    # originated 2026-06-01: 2026-07-01 is day 30, 2026-07-02 day 31
    night(**book(collateral_rows=[collateral("C1", registration_date=registered)]))
    found = findings(night.db, NOT_REGISTERED)
    if not fires:
        assert found == []
        return
    ((loan_id, collateral_id, _, details),) = found
    assert (loan_id, collateral_id, details["reason"], details["days_after_origination"]) == (
        "L1", "C1", "registered_late", 31)
    assert subjects(night.db, NOT_REGISTERED) == ["loan_id=L1|borrower_id=B1|collateral_id=C1"]


@pytest.mark.parametrize("status", ["pending", "none", ""])
def test_collateral_not_registered_fires_for_mortgage_and_pledge_loans(night, status):
    night(**book(loans=[mortgage("L1"), mortgage("L2", guarantee_type="pledge"),
                        mortgage("L3", guarantee_type="credit")],
                 collateral_rows=[collateral(c, registration_status=status, registration_date="")
                                  for c in ("C1", "C2", "C3")],
                 pledges=[pledge("L1", "C1"), pledge("L2", "C2"), pledge("L3", "C3")]))
    found = findings(night.db, NOT_REGISTERED)
    assert [(row[0], row[1], row[3]["reason"]) for row in found] == [("L1", "C1", "not_registered"),
                                                                     ("L2", "C2", "not_registered")]


def test_registration_days_is_a_parameter(night):
    night(**book(collateral_rows=[collateral("C1", registration_date="2026-06-20")]),
          params={NOT_REGISTERED: {"registration_days": 10}})
    assert [row[3]["days_after_origination"] for row in findings(night.db, NOT_REGISTERED)] == [19]


@pytest.mark.parametrize(("verified", "fires"), [("0", True), ("", True), ("1", False)])
def test_collateral_not_verified_on_site(night, verified, fires):
    night(**book(collateral_rows=[collateral("C1", site_verified=verified)]))
    assert [(row[0], row[1]) for row in findings(night.db, NOT_VERIFIED)] == ([("L1", "C1")] if fires else [])


# ------------------------------------------------------------ missing collateral


def test_mortgage_or_pledge_loan_without_a_pledge_record(night):
    loans = [mortgage("L1"), mortgage("L2", guarantee_type="pledge"), mortgage("L3", guarantee_type="credit"),
             mortgage("L4", written_off=1), mortgage("L5", outstanding_principal="0.00"), mortgage("L6")]
    night(**book(loans=loans, collateral_rows=[collateral("C6")], pledges=[pledge("L6", "C6")]))
    assert [(row[0], row[3]["guarantee_type"]) for row in findings(night.db, MISSING)] == [
        ("L1", "mortgage"), ("L2", "pledge")]


def test_checks_needing_pledges_are_skipped_with_the_reason_without_pledges_csv(night):
    night(**book(pledges="absent"))
    for check in (MISSING, LTV, STALE, NOT_REGISTERED, NOT_VERIFIED, REPEATED):
        assert contribution(night.db, check) == ("skipped", "needs pledges.csv, which this snapshot does not have")
    assert contribution(night.db, APPRAISER) == ("ok", None)


# ------------------------------------------------------------ repeated mortgages


def test_same_collateral_behind_two_borrowers_at_the_same_lien_rank(night):
    loans = [mortgage("L1", outstanding_principal="10000.00"), mortgage("L2", "B2", outstanding_principal="10000.00")]
    night(**book(loans=loans, pledges=[pledge("L1", "C1", 1, "10000.00"), pledge("L2", "C1", 1, "10000.00")]))
    ((_, collateral_id, _, details),) = findings(night.db, REPEATED)
    assert (collateral_id, details["reason"], details["lien_rank"]) == ("C1", "same_lien_rank", 1)
    assert sorted(item["borrower_id"] for item in details["loans"]) == ["B1", "B2"]
    assert subjects(night.db, REPEATED) == ["collateral_id=C1|subject=same_lien_rank:1"]


@pytest.mark.parametrize(("loans", "ranks"), [
    ([mortgage("L1", outstanding_principal="10000.00"), mortgage("L2", "B2", outstanding_principal="10000.00")],
     (1, 2)),  # different ranks: a second mortgage, not a repeated one
    ([mortgage("L1", outstanding_principal="10000.00"), mortgage("L2", outstanding_principal="10000.00")],
     (1, 1)),  # the same borrower
    ([mortgage("L1", outstanding_principal="10000.00"), mortgage("L2", "B2", written_off=1)],
     (1, 1)),  # the other loan is written off
])
def test_no_repeated_mortgage_at_different_ranks_same_borrower_or_written_off(night, loans, ranks):
    night(**book(loans=loans, pledges=[pledge("L1", "C1", ranks[0], "10000.00"),
                                       pledge("L2", "C1", ranks[1], "10000.00")]))
    assert findings(night.db, REPEATED) == []


@pytest.mark.parametrize(("second", "fires"), [("30000.00", False), ("30000.01", True)])
def test_secured_total_above_the_lending_limit(night, second, fires):
    # house 100000 at 70%: a lending limit of 70000.00 for both ranks together
    loans = [mortgage("L1", outstanding_principal="10000.00"), mortgage("L2", outstanding_principal="10000.00")]
    night(**book(loans=loans, pledges=[pledge("L1", "C1", 1, "40000.00"), pledge("L2", "C1", 2, second)]))
    found = findings(night.db, REPEATED)
    if not fires:
        assert found == []
        return
    ((_, collateral_id, _, details),) = found
    assert (collateral_id, details["reason"], details["secured_fen"], details["limit"]) == (
        "C1", "over_lending_limit", 7000001, 0.7)
    assert subjects(night.db, REPEATED) == ["collateral_id=C1|subject=over_lending_limit"]


def test_one_registration_number_on_two_collateral_records(night):
    night(**book(collateral_rows=[collateral("C1", registration_no="RN-1"), collateral("C2", registration_no="RN-1"),
                                  collateral("C3", registration_no="RN-3"), collateral("C4", registration_no=""),
                                  collateral("C5", registration_no="")]))
    found = findings(night.db, REPEATED)
    assert [(row[1], row[3]["reason"], row[3]["collateral"]) for row in found] == [
        ("C1", "registration_no_shared", ["C1", "C2"]), ("C2", "registration_no_shared", ["C1", "C2"])]
    assert subjects(night.db, REPEATED) == ["collateral_id=C1|subject=registration_no:RN-1",
                                            "collateral_id=C2|subject=registration_no:RN-1"]


def test_registration_numbers_have_an_index_that_a_scan_of_the_collateral_never_takes(night):
    """The duplicate numbers come from one ordered pass over an index on (snapshot_id, registration_no). It is
    partial (no NULL numbers): SQLite cannot take it for a plain scan of a snapshot's collateral, which keeps to
    the key's order (through the registration numbers, the scans and the joins they drive ran 3x slower)."""
    night(**book(collateral_rows=[collateral("C1", registration_no="RN-1"), collateral("C2", registration_no="")]))
    index = "idx_collateral_snapshot_id_registration_no"
    (sql,) = query(night.db, "SELECT sql FROM sqlite_master WHERE name = ?", (index,))
    assert sql[0].endswith('WHERE "registration_no" IS NOT NULL')
    with sqlite3.connect(night.db) as conn:
        duplicates = (f"SELECT registration_no FROM collateral INDEXED BY {index} WHERE snapshot_id = 1 "
                      f"AND registration_no IS NOT NULL AND registration_no != '' "
                      f"GROUP BY registration_no HAVING count(*) > 1")
        assert [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {duplicates}")] == [
            f"SEARCH collateral USING COVERING INDEX {index} (snapshot_id=? AND registration_no>?)"]
        with pytest.raises(sqlite3.OperationalError, match="no query solution"):
            conn.execute(f"SELECT collateral_id FROM collateral INDEXED BY {index} WHERE snapshot_id = 1")


def test_a_table_keeps_its_indexes_and_takes_a_plugins_when_the_plugin_extends_it():
    own = (Index(("registration_no",)), Index(("appraiser_id",)))
    assert COLLATERAL.indexes == own
    assert COLLATERAL.extended((Column("grade"),)).indexes == own
    extended = COLLATERAL.extended((Column("grade"),), (["owner_id"], ("registration_no",)))
    assert extended.indexes == (*own, Index(("owner_id",)))
    assert extended.column("grade") is not None


def test_the_three_kinds_of_repeated_mortgage_are_kept_apart(night):
    loans = [mortgage("L1", outstanding_principal="10000.00"), mortgage("L2", "B2", outstanding_principal="10000.00")]
    night(**book(loans=loans,
                 collateral_rows=[collateral("C1", registration_no="RN"), collateral("C2", registration_no="RN")],
                 pledges=[pledge("L1", "C1", 1, "40000.00"), pledge("L2", "C1", 1, "40000.00")]))
    assert sorted(row[3]["reason"] for row in findings(night.db, REPEATED)) == [
        "over_lending_limit", "registration_no_shared", "registration_no_shared", "same_lien_rank"]


# ------------------------------------------------------------ dynamic monitoring: value dropped


@pytest.mark.parametrize(("now", "fires"), [("80000.00", True), ("80010.00", False), ("79999.99", True)])
def test_value_dropped_by_twenty_percent_or_more_since_the_previous_as_of(night, now, fires):
    night(as_of=PREVIOUS, **book())
    assert contribution(night.db, DROPPED) == (
        "skipped", "needs a previous as-of of this cooperative, and this is the first")
    night(**book(collateral_rows=[collateral("C1", appraised_value=now)]))
    found = findings(night.db, DROPPED)
    if not fires:  # 19.99%
        assert found == []
        return
    ((_, collateral_id, _, details),) = found
    assert (collateral_id, details["previous_as_of"], details["previous_value_fen"]) == ("C1", PREVIOUS, 10000000)
    assert details["value_fen"] == int(now.replace(".", ""))


def test_the_history_checks_read_only_the_collateral_revalued_or_new_since_the_previous_as_of(night):
    loans = [mortgage(f"L{n}", f"B{n}") for n in range(1, 5)]
    pledges = [pledge(f"L{n}", f"C{n}") for n in range(1, 5)]
    before = [collateral("C1"), collateral("C2"), collateral("C3")]
    night(as_of=PREVIOUS, **book(loans=loans[:3], collateral_rows=before, pledges=pledges[:3]))
    assert contribution(night.db, "collateral.changes")[0] == "skipped"  # no previous as-of: nothing reads it
    now = [collateral("C1", appraised_value="70000.00"), collateral("C2"),  # C1 revalued, C2 as it was
           collateral("C3", appraiser_id="AP2"), collateral("C4")]          # C3 by another agency, C4 new
    night(**book(loans=loans, collateral_rows=now, pledges=pledges))
    rows = query(night.db, "SELECT status, rows FROM run_contributions WHERE run_id = ? "
                           "AND contribution_id = 'collateral.changes'", (latest_run(night.db),))
    assert rows == [("ok", 3)]  # C1, C3, C4
    assert [row[1] for row in findings(night.db, DROPPED)] == ["C1"]


def test_value_drop_compares_with_the_previous_as_of_not_an_older_one(night):
    night(as_of="2026-09-30", **book())
    night(as_of=PREVIOUS, **book(collateral_rows=[collateral("C1", appraised_value="85000.00")]))
    night(**book(collateral_rows=[collateral("C1", appraised_value="80000.00")]))  # 5.9% below 85000
    assert findings(night.db, DROPPED) == []


# ------------------------------------------------------------ appraisers that overvalue


def revaluation_nights(night, count: int, later_value: str = "80000.00", params: dict | None = None):
    """``count`` collateral valued 100000 by AP1 on the previous as-of, then by AP2 at ``later_value``."""
    ids = [f"C{n}" for n in range(1, count + 1)]

    def tables(appraiser_id: str, value: str) -> dict:
        loans = [mortgage(f"L{c}", outstanding_principal="10000.00") for c in ids]
        return book(loans=loans, collateral_rows=[collateral(c, appraiser_id=appraiser_id, appraised_value=value)
                                                  for c in ids],
                    pledges=[pledge(f"L{c}", c, 1, "10000.00") for c in ids])

    night(as_of=PREVIOUS, **tables("AP1", "100000.00"))
    night(params=params, **tables("AP2", later_value))


@pytest.mark.parametrize(("count", "fires"), [(5, True), (4, False)])
def test_agency_whose_values_fall_twenty_percent_when_revalued_over_five_collateral(night, count, fires):
    revaluation_nights(night, count)
    found = query(night.db, "SELECT loan_id, collateral_id, subject_key, details FROM findings "
                            "WHERE run_id = ? AND check_id = ?", (latest_run(night.db), OVERVALUATION))
    if not fires:
        assert found == []
        return
    ((loan_id, collateral_id, subject_key, details),) = found
    details = json.loads(details)
    assert (loan_id, collateral_id, subject_key) == (None, None, "subject=AP1")
    assert details["reasons"] == ["revalued_lower"]
    assert details["revalued_lower"] == {"collateral": 5, "average_drop": 0.2, "min_drop": 0.2}


def test_agency_values_falling_less_than_twenty_percent_on_average_is_fine(night):
    revaluation_nights(night, 5, later_value="80010.00")
    assert findings(night.db, OVERVALUATION) == []


def test_agency_judgement_uses_the_whole_history_and_min_collateral_is_a_parameter(night):
    night(as_of="2026-09-30", **book(collateral_rows=[collateral("C1", appraiser_id="AP1")]))
    night(as_of=PREVIOUS, **book(collateral_rows=[collateral("C1", appraiser_id="AP2", appraised_value="50000.00")],
                                 pledges=[pledge("L1", "C1", 1, "1.00")]))
    night(params={OVERVALUATION: {"min_collateral": 1}},
          **book(collateral_rows=[collateral("C1", appraiser_id="AP2", appraised_value="50000.00")],
                 pledges=[pledge("L1", "C1", 1, "1.00")]))
    assert [row[3]["revalued_lower"]["average_drop"] for row in findings(night.db, OVERVALUATION)] == [0.5]


def bad_loan_book(ap1_count: int, ap1_bad: int, ap2_count: int, ap2_bad: int) -> dict:
    """AP1's and AP2's collateral, each behind its own loan; the bad ones behind substandard loans."""
    loans, rows, pledges = [], [], []
    for agency, count, bad in (("AP1", ap1_count, ap1_bad), ("AP2", ap2_count, ap2_bad)):
        for n in range(count):
            cid = f"{agency}-C{n}"
            loans.append(mortgage(f"L-{cid}", outstanding_principal="10000.00",
                                  recorded_class="substandard" if n < bad else "normal"))
            rows.append(collateral(cid, appraiser_id=agency))
            pledges.append(pledge(f"L-{cid}", cid, 1, "10000.00"))
    return book(loans=loans, collateral_rows=rows, pledges=pledges)


@pytest.mark.parametrize(("shape", "fires"), [
    ((5, 2, 5, 0), True),  # 40% against a book of 20%: exactly twice
    ((5, 2, 10, 1), True),  # 40% against 20%
    ((5, 2, 5, 1), False),  # 40% against 30%: 1.33 times
    ((4, 2, 6, 0), False),  # 50% against 20%, but only 4 collateral
])
def test_agency_whose_collateral_sits_behind_bad_loans_at_twice_the_book_rate(night, shape, fires):
    night(as_of=PREVIOUS, **bad_loan_book(*shape))
    night(**bad_loan_book(*shape))
    found = findings(night.db, OVERVALUATION)
    if not fires:
        assert found == []
        return
    ((_, _, message, details),) = found
    assert details["reasons"] == ["bad_loan_rate"] and details["appraiser_id"] == "AP1"
    assert (details["bad_loan_rate"]["collateral"], details["bad_loan_rate"]["bad"]) == (5, 2)
    assert "2 of 5 collateral" in message


def test_ltv_breaching_collateral_counts_as_bad_for_its_agency(night):
    shape = bad_loan_book(5, 0, 5, 0)
    for row in shape["loans"][:2]:
        row["outstanding_principal"] = "70000.01"
    night(as_of=PREVIOUS, **shape)
    night(**shape)
    assert [(row[3]["appraiser_id"], row[3]["bad_loan_rate"]["bad"]) for row in findings(night.db, OVERVALUATION)] \
        == [("AP1", 2)]


def test_agency_and_book_rates_count_only_collateral_behind_loans_on_the_books(night):
    shape = bad_loan_book(5, 2, 5, 0)
    # AP1's collateral behind nothing, or behind a written-off bad loan, count for neither AP1 nor the book; a
    # deposit with no appraiser counts for the book alone
    shape["collateral"] += [collateral("AP1-IDLE-1", appraiser_id="AP1"), collateral("AP1-IDLE-2", appraiser_id="AP1"),
                            collateral("AP1-WO", appraiser_id="AP1"),
                            collateral("DEP", collateral_type="deposit", appraiser_id="")]
    shape["loans"] += [mortgage("L-WO", recorded_class="loss", written_off="1"), mortgage("L-DEP")]
    shape["pledges"] += [pledge("L-WO", "AP1-WO"), pledge("L-DEP", "DEP")]
    night(as_of=PREVIOUS, **shape)
    night(**shape)
    ((_, _, message, details),) = findings(night.db, OVERVALUATION)
    assert details["bad_loan_rate"] == {"collateral": 5, "bad": 2, "book_collateral": 11, "book_bad": 2,
                                        "rate_multiple": 2.0}
    assert "2 of 5 collateral" in message and "the book 18.18%" in message


def plan_steps(night, registry, check_id: str) -> list[str]:
    """EXPLAIN QUERY PLAN of a check's SQL under the latest run's views, with the facts and derivations built."""
    plan = [p for p in build_plan(registry, parse_config({}), [PACK], Overrides())
            if p.item.id in (check_id, "collateral.changes")]
    (run_id, snapshot_id), (previous_run_id, previous_id) = query(
        night.db, "SELECT run_id, snapshot_id FROM runs ORDER BY as_of DESC LIMIT 2")
    tables = ("loans", "borrowers", "collateral", "pledges", "appraisers")
    conn = connect(night.db)
    engine = Engine(conn, plan, RunScope(run_id=run_id, snapshot_id=snapshot_id, as_of=AS_OF, present_tables=tables,
                                         all_tables=tables, previous_snapshot_id=previous_id,
                                         previous_run_id=previous_run_id, previous_as_of=PREVIOUS,
                                         derived_columns=registry.derived_columns()))
    try:
        engine.prepare()
        engine._build_facts(("collateral_facts",))
        engine._derive("collateral_changes")
        (check,) = [p for p in plan if p.item.id == check_id]
        return [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {check.item.sql}", engine._sql_params(check))]
    finally:
        engine.close()
        conn.close()


def test_the_agencies_are_counted_through_their_index_and_the_history_read_in_key_order(night, registry):
    """Grouping every collateral by agency sorted the whole book; the stored partial index on
    (snapshot_id, appraiser_id) gives the counts in its order. The earlier rows of the history are still read
    in key order, where the lookups of their own earlier rows follow one another."""
    for as_of in ("2026-09-30", PREVIOUS, AS_OF):
        night(as_of=as_of, **bad_loan_book(5, 2, 5, 0))
    steps = plan_steps(night, registry, OVERVALUATION)
    agency_index = [step for step in steps if "idx_collateral_snapshot_id_appraiser_id" in step]
    assert agency_index == [
        "SEARCH main.collateral USING COVERING INDEX idx_collateral_snapshot_id_appraiser_id "
        "(snapshot_id=? AND appraiser_id>?)"], steps
    assert "SCAN f" in steps and "SEARCH t USING INDEX collateral_key (snapshot_id=?)" in steps, steps


def test_the_appraiser_check_reads_the_collateral_in_key_order_not_by_agency(night, registry):
    """Through the agencies' index, each collateral's row was fetched out of order (0.63 s against 0.30 s at
    1M collateral)."""
    for as_of in (PREVIOUS, AS_OF):
        night(as_of=as_of, **bad_loan_book(5, 2, 5, 0))
    steps = plan_steps(night, registry, APPRAISER)
    assert "SEARCH main.collateral USING INDEX collateral_key (snapshot_id=?)" in steps, steps
    assert not [step for step in steps if "appraiser_id" in step and "main.collateral" in step], steps
