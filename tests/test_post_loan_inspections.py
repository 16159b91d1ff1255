"""The pack ``cooperative-baseline``: post-loan inspections and cash collections (issue 5; REFERENCE.md §4).

Every test runs the pack over the smallest snapshot that shows one behaviour, usually one loan on each side
of a boundary in the same snapshot, and reads the findings back from the ``findings`` table.
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
from loanrules.plan import Overrides
from loanrules.run import execute_run

PACK = "cooperative-baseline"
FIVE = "cn-five-category"
MONTHLY = "inspection.npl_monthly_missing"
SITE = "inspection.npl_quarterly_site_missing"
FIRST = "inspection.first_visit_missing"
OVERDUE = "inspection.performing_overdue"
CASH = "collection.cash_collected"
INSPECTION_CHECKS = (MONTHLY, SITE, FIRST, OVERDUE)
CHECKS = (*INSPECTION_CHECKS, CASH)


def days_before(days: int, as_of: str = AS_OF) -> str:
    return (datetime.date.fromisoformat(as_of) - datetime.timedelta(days=days)).isoformat()


def npl(loan_id: str, borrower_id: str = "B1", **fields) -> dict[str, object]:
    """A loan recorded substandard (120 days past due), originated long ago."""
    return loan(loan_id, borrower_id, **{"recorded_class": "substandard", "days_past_due": "120", **fields})


def inspection(loan_id: str, days_ago: int, kind: str = "routine", inspector_id: str = "OF001"):
    return {"loan_id": loan_id, "inspection_date": days_before(days_ago), "inspector_id": inspector_id,
            "kind": kind}


def collection(loan_id: str, days_ago: int = 10, channel: str = "transfer", amount: str = "500.00",
               officer_id: str = "OF002", action: str = "visit"):
    return {"loan_id": loan_id, "action_date": days_before(days_ago), "officer_id": officer_id, "action": action,
            "amount_recovered": amount, "channel": channel}


def book(loans, inspections=(), collections=(), borrowers=None) -> dict[str, object]:
    """One snapshot's tables. Each loan's borrower is a household unless ``borrowers`` says otherwise;
    a table given as "absent" is not written."""
    if borrowers is None:
        borrowers = [borrower(b) for b in sorted({row["borrower_id"] for row in loans})]
    tables = {"loans": loans, "borrowers": borrowers,
              "inspections": inspections or "loan_id,inspection_date,inspector_id,kind\n",
              "collections": collections or "loan_id,action_date,officer_id,action,amount_recovered,channel\n"}
    return {name: rows for name, rows in tables.items() if not (isinstance(rows, str) and rows == "absent")}


@pytest.fixture
def night(tmp_path, registry):
    """``night(tables, packs=..., params={check: {...}}, overrides=[...])``: one run into the test's database
    (``night.db``); returns the run's id."""
    numbers = itertools.count(1)

    def run(tables: dict, packs=(PACK,), params: dict | None = None, overrides=(), as_of: str = AS_OF):
        snapshot = write_snapshot(tmp_path / f"night{next(numbers)}", **tables)
        document = {"cooperative": {"name": "c"},
                    "checks": {check_id: {"params": values} for check_id, values in (params or {}).items()}}
        result = execute_run(run.db, snapshot, as_of=as_of, config=parse_config(document), registry=registry,
                             packs=packs, overrides=Overrides.parse(overrides))
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status == "failed"]
        return result.run_id

    run.db = tmp_path / "results.db"
    return run


def latest_run(db: Path) -> int:
    return query(db, "SELECT max(run_id) FROM runs")[0][0]


def findings(db: Path, check_id: str) -> dict[str, tuple[str, dict]]:
    """loan_id -> (message, details) of one check in the latest run (one finding per loan)."""
    rows = query(db, "SELECT loan_id, message, details FROM findings WHERE run_id = ? AND check_id = ?",
                 (latest_run(db), check_id))
    found = {loan_id: (message, json.loads(details)) for loan_id, message, details in rows}
    assert len(found) == len(rows), rows
    return found


def contribution(db: Path, contribution_id: str) -> tuple[str, str | None]:
    return query(db, "SELECT status, reason FROM run_contributions WHERE run_id = ? AND contribution_id = ?",
                 (latest_run(db), contribution_id))[0]


# ------------------------------------------------------------ the pack


def test_the_pack_holds_the_five_checks_with_their_defaults(registry):
    pack = registry.packs[PACK]
    assert pack.version == "1.1.0" and set(CHECKS) <= set(pack.members)
    defaults = {check_id: {p.name: p.value for p in registry.contributions[check_id].item.params}
                for check_id in CHECKS}
    assert defaults == {
        MONTHLY: {"max_days": 31},
        SITE: {"max_days": 92, "site_kinds": ("site",)},
        FIRST: {"within_days": 30, "lookback_days": 365},
        OVERDUE: {"household_types": ("household", "individual"), "household_interval_days": 180,
                  "other_interval_days": 90},
        CASH: {"cash_channels": ("cash",), "since_days": 0},
    }
    assert str(registry.contributions[CASH].item.severity) == "critical"


def test_a_well_kept_book_has_no_finding(night):
    loans = [npl("L1"), loan("L2", "B2"), loan("L3", "B3", origination_date=days_before(40))]
    inspections = [inspection("L1", 5, "site"), inspection("L2", 100), inspection("L3", 10)]
    night(book(loans, inspections, [collection("L1", channel="transfer")]))
    for check_id in CHECKS:
        assert contribution(night.db, check_id) == ("ok", None)
        assert findings(night.db, check_id) == {}


# ------------------------------------------------------------ non-performing: monthly


def test_npl_inspected_31_days_ago_is_fine_32_fires(night):
    loans = [npl("L31"), npl("L32"), npl("NEVER"), npl("SITE5")]
    night(book(loans, [inspection("L31", 31, "site"), inspection("L32", 32, "site"), inspection("SITE5", 5, "site"),
                       inspection("L31", 200)]))
    found = findings(night.db, MONTHLY)
    assert sorted(found) == ["L32", "NEVER"]
    message, details = found["L32"]
    assert details == {"risk_class": "substandard", "class_source": "recorded", "outstanding_fen": 8000000,
                       "last_inspection_date": days_before(32), "days_since": 32, "max_days": 31}
    assert f"last inspection on {days_before(32)}, 32 days ago" in message and "80000.00 yuan" in message
    assert "no inspection on record" in found["NEVER"][0]
    assert found["NEVER"][1]["last_inspection_date"] is None


def test_npl_inspections_dated_after_the_as_of_do_not_count_and_any_kind_counts(night):
    loans = [npl("FUTURE"), npl("MONTHLY"), npl("QUARTERLY")]
    night(book(loans, [inspection("FUTURE", 40), inspection("FUTURE", -3), inspection("MONTHLY", 3, "monthly"),
                       inspection("QUARTERLY", 3, "quarterly")]))
    found = findings(night.db, MONTHLY)
    assert list(found) == ["FUTURE"]
    assert found["FUTURE"][1]["last_inspection_date"] == days_before(40)


def test_performing_loans_are_not_judged_by_the_npl_checks(night):
    night(book([loan("L1", days_past_due="20", recorded_class="special_mention")],
               [inspection("L1", 60, "routine")]))
    assert findings(night.db, MONTHLY) == findings(night.db, SITE) == {}


# ------------------------------------------------------------ non-performing: quarterly on site


def test_npl_site_inspection_92_days_ago_is_fine_93_fires(night):
    loans = [npl("L92"), npl("L93"), npl("ROUTINE")]
    inspections = [inspection("L92", 92, "site"), inspection("L93", 93, "site"), inspection("ROUTINE", 1, "routine"),
                   inspection("ROUTINE", 2, "monthly"), inspection("ROUTINE", 3, "quarterly"),
                   *(inspection(loan_id, 1, "monthly") for loan_id in ("L92", "L93"))]
    night(book(loans, inspections))
    found = findings(night.db, SITE)
    assert sorted(found) == ["L93", "ROUTINE"]
    assert found["L93"][1]["last_site_inspection_date"] == days_before(93)
    assert found["L93"][1]["days_since"] == 93 and found["L93"][1]["site_kinds"] == ["site"]
    assert "no site inspection on record" in found["ROUTINE"][0]
    assert findings(night.db, MONTHLY) == {}  # every one of them was inspected yesterday


def test_the_kinds_that_count_as_on_site_are_a_parameter(night):
    tables = book([npl("L1")], [inspection("L1", 10, "quarterly")])
    night(tables)
    assert list(findings(night.db, SITE)) == ["L1"]
    night(tables, params={SITE: {"site_kinds": ["site", "quarterly"]}})
    assert findings(night.db, SITE) == {}


# ------------------------------------------------------------ first visit after lending


def test_first_visit_on_day_30_is_in_time_day_31_is_late(night):
    loans = [loan(f"L{day}", origination_date=days_before(100)) for day in (0, 30, 31)]
    inspections = [inspection("L0", 100), inspection("L30", 70), inspection("L31", 69), inspection("L31", 10)]
    night(book(loans, inspections))
    found = findings(night.db, FIRST)
    assert list(found) == ["L31"]
    message, details = found["L31"]
    assert details == {"origination_date": days_before(100), "window_end": days_before(70), "within_days": 30,
                       "first_inspection_date": days_before(69), "days_to_first_inspection": 31,
                       "outstanding_fen": 8000000}
    assert message == (f"originated on {days_before(100)} with no inspection within 30 days (by {days_before(70)}): "
                       f"first inspected on {days_before(69)}, 31 days after origination")


def test_first_visit_is_judged_only_once_the_window_is_over(night):
    loans = [loan(f"L{age}", origination_date=days_before(age)) for age in (0, 29, 30, 31)]
    night(book(loans))
    found = findings(night.db, FIRST)
    assert list(found) == ["L31"]  # originated 30 days ago: its window ends today, not judged yet
    assert found["L31"][0].endswith("not inspected since")


def test_first_visit_ignores_inspections_before_origination_and_loans_without_a_date(night):
    loans = [loan("BEFORE", origination_date=days_before(100)), loan("NODATE", origination_date=""),
             loan("OLD", origination_date=days_before(366)), loan("YEAR", origination_date=days_before(365))]
    night(book(loans, [inspection("BEFORE", 101)]))
    assert sorted(findings(night.db, FIRST)) == ["BEFORE", "YEAR"]
    night(book(loans, [inspection("BEFORE", 101)]), params={FIRST: {"lookback_days": 0, "within_days": 10}})
    assert sorted(findings(night.db, FIRST)) == ["BEFORE", "OLD", "YEAR"]


# ------------------------------------------------------------ performing loans, by borrower type


def test_performing_household_loans_180_days_is_fine_181_fires(night):
    loans = [loan("H180", "H1"), loan("H181", "H1"), loan("I180", "I1"), loan("I181", "I1")]
    borrowers = [borrower("H1"), borrower("I1", borrower_type="individual")]
    night(book(loans, [inspection("H180", 180), inspection("H181", 181), inspection("I180", 180),
                       inspection("I181", 181), inspection("H181", 300)], borrowers=borrowers))
    found = findings(night.db, OVERDUE)
    assert sorted(found) == ["H181", "I181"]
    message, details = found["H181"]
    assert details == {"last_inspection_date": days_before(181), "origination_date": "2025-03-01",
                       "since": days_before(181), "days_since": 181, "interval_days": 180,
                       "borrower_type": "household", "borrower_type_known": True, "borrower_known": True,
                       "outstanding_fen": 8000000}
    assert message == (f"performing loan last inspected on {days_before(181)}, 181 days ago "
                       f"(at most 180 days for a household borrower)")


def test_performing_enterprise_loans_90_days_is_fine_91_fires(night):
    borrowers = [borrower("E1", borrower_type="enterprise"), borrower("V1", borrower_type="village_collective")]
    loans = [loan("E90", "E1"), loan("E91", "E1"), loan("V91", "V1")]
    night(book(loans, [inspection("E90", 90), inspection("E91", 91), inspection("V91", 91)], borrowers=borrowers))
    found = findings(night.db, OVERDUE)
    assert sorted(found) == ["E91", "V91"]
    assert found["E91"][1]["interval_days"] == 90 and found["E91"][1]["borrower_type"] == "enterprise"


def test_borrower_without_a_type_or_unknown_gets_the_other_interval_and_says_so(night):
    borrowers = [borrower("B1"), borrower("NOTYPE", borrower_type="")]
    loans = [loan("KNOWN", "B1"), loan("NOTYPE", "NOTYPE")]
    inspections = [inspection(loan_id, 91) for loan_id in ("KNOWN", "NOTYPE")]
    night(book(loans, inspections, borrowers=borrowers))
    found = findings(night.db, OVERDUE)
    assert list(found) == ["NOTYPE"]
    assert found["NOTYPE"][1]["interval_days"] == 90 and "a borrower of unknown type" in found["NOTYPE"][0]
    assert (found["NOTYPE"][1]["borrower_type_known"], found["NOTYPE"][1]["borrower_known"]) == (False, True)
    # the loader refuses a loan whose borrower is not in borrowers.csv; without the file the check still runs
    # and every borrower is unknown
    night(book(loans, inspections, borrowers="absent"))
    assert contribution(night.db, OVERDUE) == ("ok", None)
    found = findings(night.db, OVERDUE)
    assert sorted(found) == ["KNOWN", "NOTYPE"]
    assert (found["KNOWN"][1]["borrower_type_known"], found["KNOWN"][1]["borrower_known"]) == (False, False)


def test_performing_loan_never_inspected_counts_from_its_origination(night):
    loans = [loan("NEW", origination_date=days_before(180)), loan("OLDER", origination_date=days_before(181)),
             loan("RENEWED", origination_date=days_before(20)), loan("NODATE", origination_date="")]
    night(book(loans, [inspection("RENEWED", 400), inspection("NEW", 10)]), params={FIRST: {"lookback_days": 0}})
    found = findings(night.db, OVERDUE)
    assert list(found) == ["OLDER"]  # RENEWED: originated after its last inspection; NODATE: nothing to count from
    assert found["OLDER"][0] == (f"performing loan never inspected since origination on {days_before(181)}, "
                                 f"181 days ago (at most 180 days for a household borrower)")


def test_non_performing_loans_are_not_judged_as_performing(night):
    night(book([npl("L1")], [inspection("L1", 400, "site")]))
    assert findings(night.db, OVERDUE) == {}
    assert list(findings(night.db, MONTHLY)) == ["L1"]


# ------------------------------------------------------------ computed against recorded class


def test_non_performing_is_the_computed_class_when_the_classifier_runs_else_the_recorded_one(night):
    # RECORDED: recorded substandard but current; COMPUTED: recorded normal but 120 days past due
    loans = [loan("RECORDED", recorded_class="substandard", days_past_due="0"),
             loan("COMPUTED", recorded_class="normal", days_past_due="120")]
    tables = book(loans, [inspection("RECORDED", 100), inspection("COMPUTED", 100)])
    night(tables)
    assert {k: v[1]["class_source"] for k, v in findings(night.db, MONTHLY).items()} == {"RECORDED": "recorded"}
    assert list(findings(night.db, SITE)) == ["RECORDED"]
    assert list(findings(night.db, OVERDUE)) == []  # COMPUTED is performing by its recorded class, 100 <= 180

    night(tables, packs=(FIVE, PACK))
    monthly = findings(night.db, MONTHLY)
    assert list(monthly) == ["COMPUTED"]
    assert (monthly["COMPUTED"][1]["risk_class"], monthly["COMPUTED"][1]["class_source"]) == ("substandard",
                                                                                           "computed")
    assert "(substandard, computed class)" in monthly["COMPUTED"][0]
    assert list(findings(night.db, SITE)) == ["COMPUTED"]
    assert findings(night.db, OVERDUE) == {}  # RECORDED is now performing: inspected 100 days ago, fine
    # both NPL checks read the one list of non-performing loans the derivation made after classification
    assert query(night.db, "SELECT status, rows FROM run_contributions WHERE run_id = ? "
                           "AND contribution_id = 'inspection.npl_loans'", (latest_run(night.db),)) == [("ok", 1)]


# ------------------------------------------------------------ written-off loans


def test_written_off_loans_are_not_judged(night):
    loans = [npl("NPL", written_off="1"), loan("PERF", written_off="1"),
             loan("NEW", origination_date=days_before(40), written_off="1")]
    night(book(loans, [inspection("PERF", 400)], [collection("NPL", channel="cash")]))
    for check_id in CHECKS:
        assert contribution(night.db, check_id) == ("ok", None)
        assert findings(night.db, check_id) == {}


# ------------------------------------------------------------ cash collections


def cash_findings(db: Path) -> list[tuple[str, str, str, dict]]:
    rows = query(db, "SELECT loan_id, subject_key, message, details FROM findings WHERE run_id = ? "
                     "AND check_id = ? ORDER BY subject_key", (latest_run(db), CASH))
    return [(loan_id, key, message, json.loads(details)) for loan_id, key, message, details in rows]


def test_cash_collection_fires_transfer_offset_and_other_do_not(night):
    collections = [collection("L1", 10, "cash", "1234.56"), collection("L1", 11, "transfer"),
                   collection("L1", 12, "offset"), collection("L1", 13, "other")]
    night(book([npl("L1")], [inspection("L1", 1, "site")], collections))
    ((loan_id, key, message, details),) = cash_findings(night.db)
    assert loan_id == "L1"
    assert key == f"loan_id=L1|borrower_id=B1|subject=cash:{days_before(10)}:visit:OF002:123456"
    assert message == (f"visit on {days_before(10)} by OF002 recovered 1234.56 yuan in cash: "
                       "loans must never be collected in cash")
    assert details == {"action_date": days_before(10), "action": "visit", "officer_id": "OF002",
                       "amount_recovered_fen": 123456, "channel": "cash", "collection_officer_id": "OF002",
                       "lending_officer_id": "OF001"}
    assert query(night.db, "SELECT severity FROM findings WHERE check_id = ?", (CASH,)) == [("critical",)]


def test_two_cash_actions_of_one_loan_on_one_day_are_two_findings(night):
    collections = [collection("L1", 5, "cash", "100.00"), collection("L1", 5, "cash", "200.00"),
                   collection("L1", 5, "cash", "100.00", officer_id="OF009"),
                   collection("L1", 5, "cash", "100.00", action="settlement"),
                   collection("L1", 5, "cash", "200.00")]  # the second row repeated in the extract
    night(book([loan("L1")], [inspection("L1", 1)], collections))
    keys = [key.split("subject=")[1] for _, key, _, _ in cash_findings(night.db)]
    day = days_before(5)
    assert keys == [f"cash:{day}:settlement:OF002:10000", f"cash:{day}:visit:OF002:10000",
                    f"cash:{day}:visit:OF002:20000", f"cash:{day}:visit:OF002:20000",
                    f"cash:{day}:visit:OF009:10000"]
    # the same actions the next night are the same findings, persisting
    night(book([loan("L1")], [inspection("L1", 1)], collections), as_of=days_before(-1))
    assert query(night.db, "SELECT DISTINCT status FROM findings WHERE run_id = ? AND check_id = ?",
                 (latest_run(night.db), CASH)) == [("persisting",)]


def test_cash_channels_and_the_period_are_parameters(night):
    collections = [collection("L1", 30, "cash"), collection("L1", 31, "cash"), collection("L1", 5, "other")]
    tables = book([loan("L1")], [inspection("L1", 1)], collections)
    night(tables)
    assert len(cash_findings(night.db)) == 2  # since_days 0: every action in the snapshot
    night(tables, params={CASH: {"since_days": 30}})
    assert [details["action_date"] for *_, details in cash_findings(night.db)] == [days_before(30)]
    night(tables, overrides=[f"{CASH}.cash_channels=cash,other", f"{CASH}.since_days=30"])
    assert sorted(details["channel"] for *_, details in cash_findings(night.db)) == ["cash", "other"]


# ------------------------------------------------------------ missing tables, parameters


def test_inspection_checks_are_skipped_with_the_reason_without_inspections_csv(night):
    night(book([npl("L1")], "absent", [collection("L1", channel="cash")]))
    for check_id in INSPECTION_CHECKS:
        assert contribution(night.db, check_id) == ("skipped",
                                                    "needs inspections.csv, which this snapshot does not have")
    assert contribution(night.db, CASH) == ("ok", None)
    assert len(cash_findings(night.db)) == 1


def test_cash_check_is_skipped_with_the_reason_without_collections_csv(night):
    night(book([npl("L1")], [inspection("L1", 40)], "absent"))
    assert contribution(night.db, CASH) == ("skipped", "needs collections.csv, which this snapshot does not have")
    assert contribution(night.db, MONTHLY) == ("ok", None)
    assert list(findings(night.db, MONTHLY)) == ["L1"]


def test_intervals_are_parameters_from_the_config_or_the_command_line(night):
    borrowers = [borrower("H1"), borrower("E1", borrower_type="enterprise")]
    loans = [npl("N40", "H1"), loan("H100", "H1"), loan("E60", "E1")]
    tables = book(loans, [inspection("N40", 40, "site"), inspection("H100", 100), inspection("E60", 60)],
                  borrowers=borrowers)
    night(tables, params={MONTHLY: {"max_days": 40}, OVERDUE: {"household_interval_days": 99,
                                                                "other_interval_days": 59}})
    assert findings(night.db, MONTHLY) == {}
    assert sorted(findings(night.db, OVERDUE)) == ["E60", "H100"]
    night(tables, overrides=[f"{MONTHLY}.max_days=39", f"{OVERDUE}.household_types=household,enterprise",
                             f"{OVERDUE}.household_interval_days=60"])
    assert list(findings(night.db, MONTHLY)) == ["N40"]
    assert list(findings(night.db, OVERDUE)) == ["H100"]  # the enterprise now gets the household interval
    recorded = json.loads(query(night.db, "SELECT params FROM run_contributions WHERE run_id = ? "
                                          "AND contribution_id = ?", (latest_run(night.db), OVERDUE))[0][0])
    assert recorded["household_types"] == ["household", "enterprise"]


def test_cli_param_overrides_a_threshold(tmp_path, runner):
    snapshot = write_snapshot(tmp_path / "s", **book([npl("L1")], [inspection("L1", 40, "site")]))
    db = tmp_path / "r.db"
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--pack", PACK, "--db", db, "--json", "--quiet",
                    "--param", f"{MONTHLY}.max_days=45")
    assert result.exit_code == 0, result.output
    assert findings(db, MONTHLY) == {}


# ------------------------------------------------------------ the demo cooperative


def test_the_checks_run_on_the_demo_cooperative_and_find_what_it_plants(tmp_path, registry):
    demo.write_snapshot(tmp_path / "snapshot", loans=300)
    db = tmp_path / "results.db"
    result = execute_run(db, tmp_path / "snapshot", as_of=demo.DEMO_AS_OF.isoformat(),
                         config=parse_config({"cooperative": {"name": "demo"}}), registry=registry, packs=(PACK,))
    outcomes = {o.contribution_id: o for o in result.outcomes}
    for check_id in CHECKS:
        assert outcomes[check_id].status == "ok", outcomes[check_id].reason
        assert outcomes[check_id].rows >= 1, check_id
    # the cash findings are exactly the demo's cash collections on loans on the books
    cash = query(db, "SELECT count(*) FROM collections c JOIN loans l ON l.snapshot_id = c.snapshot_id "
                     "AND l.loan_id = c.loan_id WHERE c.channel = 'cash' AND coalesce(l.written_off, 0) = 0")[0][0]
    assert outcomes[CASH].rows == cash
