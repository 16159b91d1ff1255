"""NOT NULL declarations of the stored snapshot tables, and `loanrules upgrade-db` for a database made before
them: the same results either way, the merge of two snapshots without a sort once declared, and a rebuild
that keeps every row, rowid, index and statistic."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import AS_OF, borrower, invoke, loan, query, table_snapshot, write_snapshot

import loanrules.store
import loanrules.upgrade
from loanrules.config import parse_config
from loanrules.engine import Engine, RunScope
from loanrules.plan import Overrides, build_plan

PREVIOUS = "2026-10-31"
EARLIER = "2026-09-30"


def collateral_night(directory, value: str, appraiser: str = "AP1", spare: int = 0):
    """Two mortgages on two houses, C1 worth ``value`` by ``appraiser``; and ``spare`` more houses behind no
    loan (a book the size of which SQLite plans as it would a real one)."""
    spares = [{"collateral_id": f"S{n:04d}", "collateral_type": "house", "appraised_value": "50000.00",
               "appraisal_date": "2026-06-01", "appraiser_id": "AP1"} for n in range(spare)]
    return write_snapshot(
        directory,
        loans=[loan("L1", guarantee_type="mortgage", origination_date="2026-06-01"),
               loan("L2", "B2", guarantee_type="mortgage", origination_date="2026-06-01")],
        borrowers=[borrower("B1"), borrower("B2")],
        collateral=[{"collateral_id": cid, "collateral_type": "house", "owner_id": owner,
                     "appraised_value": worth, "appraisal_date": "2026-06-01", "appraiser_id": by,
                     "registration_status": "registered", "registration_no": f"R-{cid}",
                     "registration_date": "2026-06-05", "site_verified": "1"}
                    for cid, owner, worth, by in (("C1", "B1", value, appraiser), ("C2", "B2", "90000.00", "AP2"))]
                   + spares,
        pledges=[{"loan_id": "L1", "collateral_id": "C1", "lien_rank": "1", "secured_amount": "10000.00"},
                 {"loan_id": "L2", "collateral_id": "C2", "lien_rank": "1", "secured_amount": "10000.00"}],
        appraisers=[{"appraiser_id": a, "name": a, "approved": "1", "approved_until": "2028-01-01", "suspended": "0"}
                    for a in ("AP1", "AP2")])


NIGHTS = ((EARLIER, "100000.00", "AP1"), (PREVIOUS, "100000.00", "AP1"), (AS_OF, "70000.00", "AP2"))


def run_nights(runner, tmp_path, db, nights, spare: int = 0) -> list[str]:
    outputs = []
    for n, (as_of, value, appraiser) in enumerate(nights):
        snapshot = collateral_night(tmp_path / f"{db.stem}-{n}", value, appraiser, spare)
        result = invoke(runner, "run", snapshot, "--as-of", as_of, "--db", db, "--pack", "cooperative-baseline")
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    return outputs


def earlier_version(runner, tmp_path, monkeypatch, name: str, spare: int = 0):
    """Two nights stored by a version that declared nothing NOT NULL."""
    db = tmp_path / name
    with monkeypatch.context() as patch:
        patch.setattr(loanrules.store, "not_null_columns", lambda spec: set())
        run_nights(runner, tmp_path, db, NIGHTS[:2], spare)
    return db


@pytest.fixture
def earlier_db(runner, tmp_path, monkeypatch):
    return earlier_version(runner, tmp_path, monkeypatch, "earlier.db")


def declared(db, table: str) -> set[str]:
    return {row[1] for row in query(db, "SELECT * FROM pragma_table_info(?)", (table,)) if row[3]}


def findings(db) -> list[tuple]:
    return query(db, "SELECT r.as_of, f.check_id, f.subject_key, f.message, f.details, f.status FROM findings f "
                     "JOIN runs r USING (run_id) ORDER BY 1, 2, 3")


def changes_plan(db, registry) -> list[str]:
    """EXPLAIN QUERY PLAN of the derivation collateral.changes under the latest run's views."""
    (planned,) = [p for p in build_plan(registry, parse_config({}), ["cooperative-baseline"], Overrides())
                  if p.item.id == "collateral.changes"]
    (run_id, snapshot_id), (_, previous_id) = query(db, "SELECT run_id, snapshot_id FROM runs ORDER BY as_of DESC")[:2]
    tables = tuple(registry.tables)
    conn = loanrules.store.connect(db)
    engine = Engine(conn, [planned], RunScope(run_id=run_id, snapshot_id=snapshot_id, as_of=AS_OF,
                                              present_tables=tables, all_tables=tables,
                                              previous_snapshot_id=previous_id, previous_as_of=PREVIOUS,
                                              derived_columns=registry.derived_columns()))
    try:
        engine.prepare()
        return [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {planned.item.sql}")]
    finally:
        engine.close()
        conn.close()


def test_a_new_database_declares_snapshot_id_and_the_required_columns_not_null(runner, tmp_path):
    db = tmp_path / "new.db"
    run_nights(runner, tmp_path, db, NIGHTS[:1])
    assert declared(db, "loans") == {"snapshot_id", "loan_id", "borrower_id", "outstanding_principal",
                                     "days_past_due"}
    assert declared(db, "collateral") == {"snapshot_id", "collateral_id"}
    assert declared(db, "pledges") == {"snapshot_id", "loan_id", "collateral_id"}


def test_two_snapshots_are_merged_without_a_sort_once_the_key_is_declared(runner, tmp_path, monkeypatch, registry):
    new = tmp_path / "new.db"
    run_nights(runner, tmp_path, new, NIGHTS[:2], spare=500)
    merged = changes_plan(new, registry)
    assert "MERGE (EXCEPT)" in merged and not [step for step in merged if "TEMP B-TREE" in step], merged
    assert merged.count("SEARCH main.collateral USING INDEX collateral_key (snapshot_id=?)") == 2, merged
    # a database made before the declaration sorts each side's other columns ("RIGHT PART" or "LAST 3 TERMS" of
    # the ORDER BY, as SQLite's version words it)
    earlier = earlier_version(runner, tmp_path, monkeypatch, "earlier.db", spare=500)
    sorts = [step for step in changes_plan(earlier, registry) if "TEMP B-TREE FOR" in step]
    assert len(sorts) == 2 and all("ORDER BY" in step for step in sorts), sorts


def test_upgrade_db_declares_the_columns_and_keeps_rows_indexes_and_statistics(runner, tmp_path, earlier_db):
    def indexes():
        return query(earlier_db, "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")

    before, before_indexes = table_snapshot(earlier_db), indexes()
    rowids = query(earlier_db, "SELECT rowid, snapshot_id, collateral_id FROM collateral ORDER BY rowid")
    assert any("WHERE" in (sql or "") for _, _, sql in before_indexes)  # partial indexes are made again too
    upgraded = invoke(runner, "upgrade-db", "--db", earlier_db)
    assert upgraded.exit_code == 0, upgraded.output
    assert f"{earlier_db}: collateral: declared collateral_id, snapshot_id NOT NULL" in upgraded.output
    assert declared(earlier_db, "loans") == {"snapshot_id", "loan_id", "borrower_id", "outstanding_principal",
                                             "days_past_due"}
    assert table_snapshot(earlier_db) == before and indexes() == before_indexes
    assert query(earlier_db, "SELECT rowid, snapshot_id, collateral_id FROM collateral ORDER BY rowid") == rowids
    stats = dict(query(earlier_db, "SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'collateral'"))
    assert stats["collateral_key"].split()[:2] == ["4", "2"]  # two snapshots of two collateral
    assert invoke(runner, "upgrade-db", "--db", earlier_db).output.strip() == f"{earlier_db}: already up to date"


def test_the_results_are_the_same_before_and_after_the_upgrade_and_the_run_says_so(runner, tmp_path, earlier_db):
    new = tmp_path / "new.db"
    run_nights(runner, tmp_path, new, NIGHTS)
    not_upgraded = tmp_path / "not-upgraded.db"
    not_upgraded.write_bytes(earlier_db.read_bytes())
    (said,) = run_nights(runner, tmp_path, not_upgraded, NIGHTS[2:])
    assert "was made by an earlier version" in said and "loanrules upgrade-db" in said
    assert invoke(runner, "upgrade-db", "--db", earlier_db).exit_code == 0
    (quiet,) = run_nights(runner, tmp_path, earlier_db, NIGHTS[2:])
    assert "earlier version" not in quiet
    # C1 fell 30% and changed agency: the history checks read the derivation in all three
    assert ("2026-11-27", "collateral.value_dropped", "collateral_id=C1") in [row[:3] for row in findings(new)]
    assert findings(earlier_db) == findings(new) == findings(not_upgraded)


def test_a_column_some_row_has_no_value_in_is_left_nullable_and_named(runner, earlier_db):
    conn = sqlite3.connect(earlier_db)
    conn.execute("UPDATE loans SET days_past_due = NULL WHERE loan_id = 'L1'")
    conn.commit()
    conn.close()
    upgraded = invoke(runner, "upgrade-db", "--db", earlier_db)
    assert "loans.days_past_due: left nullable, 2 row(s) have no value" in upgraded.output
    assert declared(earlier_db, "loans") == {"snapshot_id", "loan_id", "borrower_id", "outstanding_principal"}


def test_an_upgrade_that_fails_part_way_leaves_the_database_as_it_was(runner, earlier_db, monkeypatch):
    before = table_snapshot(earlier_db)
    schema = query(earlier_db, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    rebuild, calls = loanrules.upgrade._declare_not_null, []

    def fails_on_the_second(conn, table, columns):
        calls.append(table)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return rebuild(conn, table, columns)

    monkeypatch.setattr(loanrules.upgrade, "_declare_not_null", fails_on_the_second)
    failed = invoke(runner, "upgrade-db", "--db", earlier_db)
    assert failed.exit_code == 3 and "disk I/O error" in failed.output and len(calls) == 2
    assert table_snapshot(earlier_db) == before
    assert query(earlier_db, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == schema
