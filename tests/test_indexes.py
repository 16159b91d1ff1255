"""The stored indexes that serve the checks (schema ``Index``): the partial index on the documents whose
original or scan is missing, the inspections' index with its date, and the planner statistics that make
SQLite take them. Each test reads the plan SQLite makes for a real check under the run's views."""

from __future__ import annotations

import pytest
from conftest import AS_OF, borrower, loan, query, write_snapshot

from loanrules import Column, Derivation, Index, TableSpec, hookimpl
from loanrules.config import parse_config
from loanrules.engine import Engine, RunScope
from loanrules.errors import PluginError
from loanrules.manager import PluginManager
from loanrules.plan import Overrides, build_plan
from loanrules.registry import Registry
from loanrules.run import execute_run
from loanrules.store import connect

PACK = "cooperative-baseline"


def documents(n: int) -> list[dict]:
    """Three documents per loan; every tenth loan's application has no original, every seventh a blank scan."""
    rows = []
    for i in range(n):
        for doc_type in ("application", "borrower_id_copy", "loan_contract"):
            original = "0" if doc_type == "application" and i % 10 == 0 else "1"
            copy = "" if doc_type == "loan_contract" and i % 7 == 0 else "1"
            rows.append({"loan_id": f"L{i}", "doc_type": doc_type, "original_on_file": original,
                         "electronic_copy": copy})
    return rows


def inspections(n: int) -> list[dict]:
    return [{"loan_id": f"L{i}", "inspection_date": date, "inspector_id": "I1", "kind": kind}
            for i in range(n) for date, kind in (("2026-06-01", "routine"), ("2026-10-01", "site"))]


@pytest.fixture
def loaded(tmp_path, registry):
    """A run of the pack over 2,000 loans with documents and inspections: (db, registry)."""
    n = 2000
    snapshot = write_snapshot(tmp_path / "s", loans=[loan(f"L{i}", f"B{i % 500}") for i in range(n)],
                              borrowers=[borrower(f"B{i}") for i in range(500)],
                              documents=documents(n), inspections=inspections(n))
    db = tmp_path / "r.db"
    result = execute_run(db, snapshot, as_of=AS_OF, config=parse_config({"cooperative": {"name": "c"}}),
                         registry=registry, packs=(PACK,))
    assert result.status == "succeeded"
    return db, registry


def plans(db, registry, check_ids) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of each check's SQL under the run's views, with its default parameters (and the
    derivations of the pack built, for the checks that read them)."""
    plan = [p for p in build_plan(registry, parse_config({}), [PACK], Overrides())
            if p.item.id in check_ids or isinstance(p.item, Derivation)]
    run_id, snapshot_id = query(db, "SELECT run_id, snapshot_id FROM runs")[0]
    tables = ("loans", "borrowers", "documents", "inspections")
    conn = connect(db)
    try:
        engine = Engine(conn, plan, RunScope(run_id=run_id, snapshot_id=snapshot_id, as_of=AS_OF,
                                             present_tables=tables, all_tables=tables,
                                             derived_columns=registry.derived_columns()))
        engine.prepare()
        try:
            for planned in plan:
                for table in planned.item.tables if planned.item.id in check_ids else ():
                    if table in engine.scope.derived_columns:
                        engine._derive(table)
            return {p.item.id: [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {p.item.sql}",
                                                                engine._sql_params(p))]
                    for p in plan if p.item.id in check_ids}
        finally:
            engine.close()
    finally:
        conn.close()


def test_the_flag_checks_read_the_unfinished_documents_alone_through_their_partial_index(loaded):
    db, registry = loaded
    found = plans(db, registry, ("files.original_missing", "files.not_digitized"))
    for check_id, plan in found.items():
        steps = [step for step in plan if "main.documents" in step]
        assert steps and all("COVERING INDEX documents_unfinished" in step for step in steps), (check_id, plan)
    # and the index holds exactly those documents: 200 applications without an original, 286 blank scans
    flagged = query(db, "SELECT count(*) FROM documents INDEXED BY documents_unfinished WHERE snapshot_id = 1 "
                        "AND (original_on_file IS NOT 1 OR electronic_copy IS NOT 1)")[0][0]
    assert flagged == 200 + 286
    assert query(db, "SELECT count(*) FROM findings WHERE check_id = 'files.original_missing'")[0][0] == 200
    assert query(db, "SELECT count(*) FROM findings WHERE check_id = 'files.not_digitized'")[0][0] == 286


def test_the_planner_statistics_of_a_partial_index_count_its_own_rows(loaded):
    db, _ = loaded
    stats = dict(query(db, "SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'documents'"))
    assert stats["documents_key"].split()[:2] == ["6000", "6000"]
    assert stats["documents_unfinished"].split()[:2] == ["486", "486"]


def test_the_inspection_checks_read_dates_and_kinds_from_the_index_and_no_row(loaded):
    db, registry = loaded
    indexes = {row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type = 'index' "
                                           "AND tbl_name = 'inspections'")}
    assert indexes == {"idx_inspections_snapshot_id_loan_id_inspection_date_kind"}  # it serves the reference too
    found = plans(db, registry, ("inspection.npl_monthly_missing", "inspection.npl_quarterly_site_missing",
                                 "inspection.first_visit_missing", "inspection.performing_overdue"))
    for check_id, plan in found.items():
        steps = [step for step in plan if "main.inspections" in step]
        assert steps and all("COVERING INDEX idx_inspections_snapshot_id_loan_id_inspection_date_kind" in step
                             for step in steps), (check_id, plan)


def test_a_database_made_before_the_inspections_index_drops_the_narrower_one(loaded, tmp_path):
    db, registry = loaded
    conn = connect(db)
    conn.execute("CREATE INDEX idx_inspections_snapshot_id_loan_id ON inspections (snapshot_id, loan_id)")
    conn.close()
    snapshot = write_snapshot(tmp_path / "next", loans=[loan("L0")], borrowers=[borrower("B1")],
                              inspections=inspections(2)[:1])
    execute_run(db, snapshot, as_of="2026-12-31", config=parse_config({"cooperative": {"name": "c"}}),
                registry=registry, packs=(PACK,))
    assert [row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type = 'index' "
                                        "AND tbl_name = 'inspections'")] == [
        "idx_inspections_snapshot_id_loan_id_inspection_date_kind"]


@pytest.mark.parametrize(("index", "problem"), [
    (Index(("grade_typo",)), "names no column 'grade_typo'"),
    (Index(("grade",), where="grade_typo IS NOT 'A'"), "cannot be made: no such column: grade_typo"),
])
def test_an_index_a_plugin_gets_wrong_is_refused_at_start_up_with_the_plugin_named(index, problem):
    class Graded:
        @hookimpl
        def register_tables(self, register):
            register(TableSpec("loans", (Column("grade"),), indexes=(index,)))

    manager = PluginManager(builtins=False)
    manager.pm.register(Graded(), name="graded")
    with pytest.raises(PluginError, match=f"plugin 'graded', table 'loans': index .*{problem}"):
        Registry.from_plugins(manager)


def test_an_index_is_complete_or_has_a_condition_not_both():
    with pytest.raises(ValueError, match="complete or has a condition"):
        Index(("grade",), where="grade IS NOT 'A'", complete=True)
    assert Index(("grade",), complete=True).condition() is None
    assert Index(("grade",)).condition() == '"grade" IS NOT NULL'
