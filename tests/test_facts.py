"""The core's shared facts (``borrower_facts``, ``collateral_facts``): what they hold, that each is built only
when a contribution of the run reads it, once, timed as its own contribution, and the shape of the query
that builds ``collateral_facts`` (one that looked each collateral's pledges up against a list of every loan
never finished at 1M collateral)."""

from __future__ import annotations

import json

import pytest
from conftest import AS_OF, borrower, loan, query, write_snapshot

from loanrules import Check, Classifier, Pack, hookimpl
from loanrules.config import parse_config
from loanrules.engine import FACT_IDS, Engine, RunScope
from loanrules.manager import PluginManager
from loanrules.registry import Registry
from loanrules.run import execute_run
from loanrules.store import connect

FACT_COLUMNS = ("collateral_type", "appraised_value", "appraisal_date", "appraiser_id", "registration_status",
                "registration_date", "site_verified", "loan_count", "borrower_count", "secured_amount", "exposure",
                "first_lien_rank", "npl_loan_count", "secured_loan_count", "first_secured_origination")


class Probe:
    """Checks that report every row of a facts table, and a pack of whichever the test names."""

    def __init__(self, *members: str, classify: bool = False):
        self.members = members
        self.classify = classify

    @hookimpl
    def register_checks(self, register):
        columns = ", ".join(f"'{c}', {c}" for c in FACT_COLUMNS)
        register(Check(id="test.collateral", title="c", tables=("collateral_facts",),
                       sql=f"SELECT collateral_id, json_object({columns}) AS message FROM collateral_facts"))
        register(Check(id="test.borrower", title="b", tables=("loans", "borrower_facts"),
                       sql="SELECT borrower_id, 'exposure ' || exposure AS message FROM borrower_facts"))
        register(Check(id="test.plain", title="p", sql="SELECT loan_id, 'loan' AS message FROM loans"))

    @hookimpl
    def register_classifiers(self, register):
        if self.classify:  # L1 is recorded normal; the run computes it doubtful
            register(Classifier(id="test.class", title="c",
                                sql="SELECT loan_id, 'doubtful' AS risk_class FROM loans WHERE loan_id = 'L1'"))

    @hookimpl
    def register_packs(self, register):
        members = [*self.members, *(["test.class"] if self.classify else [])]
        register(Pack(name="probe", version="1", title="p", members=members))


def run(db, snapshot, *members, classify=False, config=None):
    manager = PluginManager()
    manager.pm.register(Probe(*members, classify=classify), name="probe")
    return execute_run(db, snapshot, as_of=AS_OF, config=config or parse_config({"cooperative": {"name": "c"}}),
                       registry=Registry.from_plugins(manager), packs=("probe",))


def facts_outcomes(result) -> dict[str, int]:
    return {o.contribution_id: o.rows for o in result.outcomes if o.kind == "facts"}


def collateral_facts(db) -> dict[str, dict]:
    return {c: json.loads(m) for c, m in query(db, "SELECT collateral_id, message FROM findings "
                                                   "WHERE check_id = 'test.collateral'")}


def house(collateral_id: str, **fields) -> dict[str, object]:
    row = {"collateral_id": collateral_id, "collateral_type": "house", "owner_id": "B1",
           "appraised_value": "100000.00", "appraisal_date": "2026-10-01", "appraiser_id": "AP1",
           "registration_status": "registered", "registration_no": f"R-{collateral_id}",
           "registration_date": "2026-03-10", "site_verified": "1"}
    row.update({key: str(value) for key, value in fields.items()})
    return row


def pledge(loan_id: str, collateral_id: str, lien_rank: object = 1, secured_amount: str = "10.00"):
    return {"loan_id": loan_id, "collateral_id": collateral_id, "lien_rank": str(lien_rank),
            "secured_amount": secured_amount}


@pytest.fixture
def book(tmp_path):
    """C1: two loans on the books of two borrowers and one written off; C2: only the written-off loan;
    C3: nothing; C4: one credit loan, no lien rank; C5: three loans of one borrower."""
    loans = [
        loan("L1", "B1", guarantee_type="mortgage", outstanding_principal="100.00", origination_date="2026-03-01"),
        loan("L2", "B2", guarantee_type="pledge", outstanding_principal="50.00", origination_date="2026-02-01",
             recorded_class="substandard"),
        loan("L3", "B1", guarantee_type="mortgage", outstanding_principal="70.00", written_off="1"),
        loan("L4", "B3", guarantee_type="credit", outstanding_principal="30.00"),
        loan("L5", "B1", guarantee_type="mortgage", outstanding_principal="1.00", origination_date="2025-01-01"),
        loan("L6", "B1", guarantee_type="mortgage", outstanding_principal="2.00", origination_date=""),
    ]
    return write_snapshot(
        tmp_path / "s", loans=loans, borrowers=[borrower(b) for b in ("B1", "B2", "B3")],
        collateral=[house("C1", appraiser_id="AP7", site_verified="0"), house("C2"), house("C3"),
                    house("C4", collateral_type="vehicle", registration_status="pending", registration_date=""),
                    house("C5")],
        pledges=[pledge("L1", "C1", 2, "60.00"), pledge("L2", "C1", 1, ""), pledge("L3", "C1", 1, "10.00"),
                 pledge("L3", "C2"), pledge("L4", "C4", ""), pledge("L1", "C5", 3, "1.00"),
                 pledge("L5", "C5", 2, "2.00"), pledge("L6", "C5", 1, "3.00")])


def test_collateral_facts_add_up_the_loans_on_the_books_each_collateral_secures(db_path, book):
    run(db_path, book, "test.collateral")
    facts = collateral_facts(db_path)
    assert facts["C1"] == {
        "collateral_type": "house", "appraised_value": 10000000, "appraisal_date": "2026-10-01",
        "appraiser_id": "AP7", "registration_status": "registered", "registration_date": "2026-03-10",
        "site_verified": 0, "loan_count": 2, "borrower_count": 2, "secured_amount": 6000, "exposure": 15000,
        "first_lien_rank": 1, "npl_loan_count": 1, "secured_loan_count": 2,
        "first_secured_origination": "2026-02-01"}
    nothing = {"loan_count": 0, "borrower_count": 0, "secured_amount": None, "exposure": None,
               "first_lien_rank": None, "npl_loan_count": 0, "secured_loan_count": 0,
               "first_secured_origination": None}
    for collateral_id in ("C2", "C3"):  # only a written-off loan; no pledge at all
        assert {k: v for k, v in facts[collateral_id].items() if k in nothing} == nothing
    assert {k: facts["C4"][k] for k in nothing} == {
        "loan_count": 1, "borrower_count": 1, "secured_amount": 1000, "exposure": 3000, "first_lien_rank": None,
        "npl_loan_count": 0, "secured_loan_count": 0, "first_secured_origination": None}
    assert facts["C4"]["registration_status"] == "pending" and facts["C4"]["registration_date"] is None
    assert {k: facts["C5"][k] for k in nothing} == {
        "loan_count": 3, "borrower_count": 1, "secured_amount": 600, "exposure": 10300, "first_lien_rank": 1,
        "npl_loan_count": 0, "secured_loan_count": 3, "first_secured_origination": "2025-01-01"}


def test_non_performing_is_the_computed_class_when_the_run_classifies_else_the_recorded_one(db_path, book):
    run(db_path, book, "test.collateral")
    assert [collateral_facts(db_path)[c]["npl_loan_count"] for c in ("C1", "C5")] == [1, 0]  # L2 recorded
    run(db_path, book, "test.collateral", classify=True)
    # L1 computed doubtful; L2, recorded substandard, has no verdict: computed normal
    assert [collateral_facts(db_path)[c]["npl_loan_count"] for c in ("C1", "C5")] == [1, 1]


@pytest.mark.parametrize(("members", "built"), [
    (("test.collateral",), {"loanrules.facts.collateral": 5}),
    (("test.borrower",), {"loanrules.facts.borrower": 3}),
    (("test.collateral", "test.borrower"), {"loanrules.facts.collateral": 5, "loanrules.facts.borrower": 3}),
    (("test.plain",), {}),
])
def test_each_facts_table_is_built_once_and_only_when_a_contribution_reads_it(db_path, book, members, built):
    result = run(db_path, book, *members)
    assert facts_outcomes(result) == built
    assert all(o.status == "ok" and o.plugin == "loanrules" for o in result.outcomes if o.kind == "facts")
    stored = query(db_path, "SELECT contribution_id, kind FROM run_contributions WHERE kind = 'facts'")
    assert sorted(stored) == sorted((i, "facts") for i in built)
    assert set(FACT_IDS.values()) >= set(built)


def test_a_config_rule_that_names_a_facts_table_has_it_built(db_path, book):
    config = parse_config({"cooperative": {"name": "c"}, "rules": [
        {"id": "local.shared", "title": "s", "tables": ["collateral"],
         "sql": "SELECT collateral_id, 'shared' AS message FROM Collateral_Facts WHERE borrower_count > 1"}]})
    result = run(db_path, book, "test.plain", config=config)
    assert facts_outcomes(result) == {"loanrules.facts.collateral": 5}
    assert query(db_path, "SELECT collateral_id FROM findings WHERE check_id = 'local.shared'") == [("C1",)]


def test_collateral_facts_look_up_each_pledge_and_loan_by_key(db_path, tmp_path):
    """The plan of the build: the collateral read once, each one's pledges and each pledge's loan found by an
    index lookup; no subquery run per collateral over a list of loans (the quadratic plan
    of an earlier version) and no scan of the pledges or the loans."""
    n = 3000
    snapshot = write_snapshot(
        tmp_path / "big", loans=[loan(f"L{i}", f"B{i % 1000}", guarantee_type="mortgage") for i in range(n)],
        borrowers=[borrower(f"B{i}") for i in range(1000)],
        collateral=[house(f"C{i}") for i in range(n)],
        pledges=[pledge(f"L{i}", f"C{i}") for i in range(n)] + [pledge(f"L{i + 1}", f"C{i}", 2)
                                                                for i in range(0, n - 1, 7)])
    run(db_path, snapshot, "test.collateral")
    facts = collateral_facts(db_path)
    assert len(facts) == n and facts["C7"]["loan_count"] == 2 and facts["C8"]["loan_count"] == 1

    conn = connect(db_path)
    try:
        run_id, snapshot_id = query(db_path, "SELECT run_id, snapshot_id FROM runs")[0]
        tables = ("loans", "borrowers", "collateral", "pledges")
        engine = Engine(conn, [], RunScope(run_id=run_id, snapshot_id=snapshot_id, as_of=AS_OF,
                                           present_tables=tables, all_tables=tables))
        engine.prepare()
        statements = []
        conn.set_trace_callback(statements.append)
        engine._build_facts(("collateral_facts",))
        conn.set_trace_callback(None)
        (insert,) = [s for s in statements if "collateral_facts" in s and not s.lstrip().startswith(
            ("DROP", "CREATE", "SELECT count(*)"))]
        plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {insert}")]
        assert not [step for step in plan if "LIST SUBQUERY" in step], plan
        for table, key in (("pledges", "collateral_id=?"), ("loans", "loan_id=?")):
            steps = [step for step in plan if f"main.{table} " in step]
            assert steps and all(step.startswith("SEARCH") and key in step for step in steps), plan
        # the collateral drive the build: read once, the first step
        (driver,) = [step for step in plan if step.split()[1] == "main.collateral"]
        assert driver == plan[0] and "collateral_id=" not in driver, plan
        engine.close()
    finally:
        conn.close()
