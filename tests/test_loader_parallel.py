"""Big files are staged by reader processes, in parts cut at record boundaries: same rows, same lines."""

from __future__ import annotations

import pytest
from conftest import AS_OF, loan, query, write_snapshot

from loanrules import reading, staging
from loanrules.config import parse_config
from loanrules.errors import SnapshotRejected
from loanrules.run import load_only


def test_split_cuts_only_where_the_quotes_before_are_even(tmp_path):
    path = tmp_path / "t.csv"
    # the middle of the file falls inside a quoted field holding line breaks
    path.write_bytes(b'a,b\n1,x\n2,"multi\nline\n""quoted""\nfield"\n3,y\n4,z\n')
    parts = reading.split(path, 2, "utf-8")
    data = path.read_bytes()
    assert len(parts) == 2
    cut = parts[1].start
    assert data[:cut].count(b'"') % 2 == 0 and data[cut - 1:cut] == b"\n"
    assert parts[1].line_offset == data[:cut].count(b"\n")
    assert (parts[0].start, parts[0].end, parts[0].has_header) == (0, cut, True)
    assert (parts[1].end, parts[1].has_header) == (None, False)


def test_split_refuses_encodings_where_bytes_could_lie(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\n" * 100)
    assert reading.split(path, 2, "utf-16") == [reading.Part()]


@pytest.fixture
def many_loans(tmp_path):
    rows = [loan(f"L{i:05d}", product=f'mixed "product"\nline {i}' if i % 97 == 0 else "farm") for i in range(3000)]
    return write_snapshot(tmp_path / "s", loans=rows)


@pytest.mark.parametrize("readers", [1, 2])
def test_child_readers_store_the_same_rows_and_lines_as_one_process(tmp_path, many_loans, registry, monkeypatch,
                                                                    readers):
    config = parse_config({})
    load_only(tmp_path / "here.db", many_loans, as_of=AS_OF, config=config, registry=registry)
    monkeypatch.setattr(staging, "STAGE_MIN_BYTES", 0)
    monkeypatch.setattr(staging, "MAX_READERS", readers)
    loaded = load_only(tmp_path / "children.db", many_loans, as_of=AS_OF, config=config, registry=registry)
    sql = "SELECT loan_id, source_line, product, outstanding_principal FROM loans ORDER BY loan_id"
    assert query(tmp_path / "children.db", sql) == query(tmp_path / "here.db", sql)
    assert loaded.row_counts["loans"] == 3000
    assert query(tmp_path / "here.db", "SELECT sha256 FROM snapshots") == [(loaded.sha256,)]


def test_child_readers_report_bad_cells_with_the_right_lines(tmp_path, registry, monkeypatch):
    rows = [loan(f"L{i:05d}") for i in range(2000)]
    rows[10]["days_past_due"] = "ten"
    rows[1990]["outstanding_principal"] = "-5.00"
    snapshot = write_snapshot(tmp_path / "s", loans=rows)
    monkeypatch.setattr(staging, "STAGE_MIN_BYTES", 0)
    monkeypatch.setattr(staging, "MAX_READERS", 2)
    with pytest.raises(SnapshotRejected) as rejected:
        load_only(tmp_path / "db", snapshot, as_of=AS_OF, config=parse_config({}), registry=registry)
    assert [(p.line, p.column, p.value) for p in rejected.value.problems] == [
        (12, "days_past_due", "ten"), (1992, "outstanding_principal", "-5.00")]


def test_a_killed_runs_scratch_directory_is_removed_by_the_next_load(tmp_path, many_loans, registry, monkeypatch):
    monkeypatch.setattr(staging, "STAGE_MIN_BYTES", 0)
    db = tmp_path / "results.db"
    stale = tmp_path / ".results.db.staging-dead"
    stale.mkdir()
    (stale / "loanrules_stage0.db").write_bytes(b"left by kill -9")
    load_only(db, many_loans, as_of=AS_OF, config=parse_config({}), registry=registry)
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir() if "staging" in p.name] == []  # its own is gone too
