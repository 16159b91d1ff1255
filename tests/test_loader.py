"""Snapshot loading: every kind of bad input located to the cell, quarantine, encodings, maps, storage.

Through the public functions (``validate_snapshot``, ``load_only``) and the CLI
(``loanrules validate``, ``loanrules load``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from conftest import AS_OF, borrower, invoke, loan, query, table_snapshot, write_snapshot

from loanrules import reading, staging
from loanrules.config import Config, load_config
from loanrules.errors import ConfigError, InputProblem, SnapshotRejected
from loanrules.run import load_only, validate_snapshot

HEADER = "loan_id,borrower_id,outstanding_principal,days_past_due"
NOT_AN_AMOUNT = "not an amount (decimal yuan, e.g. 1234.56)"
UNKNOWN_GUARANTEE = ("unknown code (expected one of: credit, guarantee, mortgage, pledge; "
                     "map local codes in [snapshot.codes])")
NOT_UTF8 = 'not valid utf-8-sig text; set [snapshot] encoding (e.g. "gb18030") to the extract\'s encoding'


@pytest.fixture
def tmp_path(tmp_path, monkeypatch):
    """Snapshots and databases in RAM when the machine has a tmpfs, else pytest's own tmp_path.

    Every load creates a fresh database, and SQLite's fsyncs on a real disk make
    that ~0.3 s each (the whole file several times slower); what the loader does
    is the same. The throwaway database of ``validate`` goes there too.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="loanrules-test-") as scratch:
        monkeypatch.setattr(tempfile, "tempdir", scratch)
        yield Path(scratch)


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


def config_of(tmp_path: Path, toml: str) -> Config:
    path = tmp_path / "cooperative.toml"
    path.write_text(toml, encoding="utf-8")
    return load_config(path)


def rejection(directory: Path, registry, config: Config = Config(), **options) -> SnapshotRejected:
    with pytest.raises(SnapshotRejected) as caught:
        validate_snapshot(directory, config=config, registry=registry, as_of=AS_OF, **options)
    return caught.value


def problems_of(directory: Path, registry, config: Config = Config(), **options) -> list[InputProblem]:
    error = rejection(directory, registry, config, **options)
    assert error.total == len(error.problems)
    return error.problems


def schema(db: Path) -> list[tuple]:
    return query(db, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")


# ============================================================ each kind of bad input


def test_missing_loans_csv_is_reported_with_the_directory(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", borrowers=[borrower("B1")])
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", None, None, None, f"required file missing from {directory}")
    ]


def test_missing_loans_file_names_the_mapped_file_name(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0"))
    config = config_of(tmp_path, '[snapshot.files]\nloans = "DK_JJ.csv"\n')
    assert problems_of(directory, registry, config) == [
        InputProblem("DK_JJ.csv", None, None, None, f"required file missing from {directory}")
    ]


def test_missing_required_column(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines("loan_id,borrower_id,days_past_due", "L1,B1,0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 1, "outstanding_principal", None, "required column missing")
    ]


def test_missing_required_column_after_a_column_mapping(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines("贷款账号,贷款余额,逾期天数", "L1,1.00,0"))
    config = config_of(tmp_path, '[snapshot.columns.loans]\n"贷款账号" = "loan_id"\n"贷款余额" = '
                                 '"outstanding_principal"\n"逾期天数" = "days_past_due"\n')
    assert problems_of(directory, registry, config) == [
        InputProblem("loans.csv", 1, "borrower_id", None, "required column missing after [snapshot.columns] mapping")
    ]


def test_every_missing_required_column_is_reported(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines("loan_id,product", "L1,x"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 1, name, None, "required column missing")
        for name in ("borrower_id", "outstanding_principal", "days_past_due")
    ]


def test_duplicate_column(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",days_past_due", "L1,B1,1.00,0,0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 1, "days_past_due", "days_past_due", "column appears twice (also field 4)")
    ]


def test_duplicate_column_made_by_a_column_mapping(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",贷款账号", "L1,B1,1.00,0,L1"))
    config = config_of(tmp_path, '[snapshot.columns.loans]\n"贷款账号" = "loan_id"\n')
    assert problems_of(directory, registry, config) == [
        InputProblem("loans.csv", 1, "loan_id", "贷款账号", "column appears twice (also field 1)")
    ]


def test_duplicate_loan_id_reports_both_lines(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", "L2,B1,2.00,0", "L1,B2,3.00,0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2, "loan_id", "L1", "duplicate loan_id: appears more than once"),
        InputProblem("loans.csv", 4, "loan_id", "L1", "duplicate loan_id: duplicate of line 2"),
    ]


def test_duplicate_composite_key_names_both_parts(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0"),
                               pledges=lines("loan_id,collateral_id", "L1,C1", "L1,C2", "L1,C1"))
    assert problems_of(directory, registry) == [
        InputProblem("pledges.csv", 2, "loan_id", "L1/C1", "duplicate loan_id+collateral_id: appears more than once"),
        InputProblem("pledges.csv", 4, "loan_id", "L1/C1", "duplicate loan_id+collateral_id: duplicate of line 2"),
    ]


@pytest.mark.parametrize(("value", "reason"), [("2026-02-30", "not a calendar date"),
                                               ("2026-1-5", "not a date (YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD)"),
                                               ("05/01/2026", "not a date (YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD)")])
def test_unparseable_date(tmp_path, registry, value, reason):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",maturity_date", "L1,B1,1.00,0,2027-01-01",
                                                           f"L2,B1,1.00,0,{value}"))
    assert problems_of(directory, registry) == [InputProblem("loans.csv", 3, "maturity_date", value, reason)]


@pytest.mark.parametrize("value", ["x", "1.2.3", "１２", "1_000", "¥5"])
def test_unparseable_amount(tmp_path, registry, value):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", f"L2,B1,{value},0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 3, "outstanding_principal", value, NOT_AN_AMOUNT)
    ]


def test_amount_with_more_than_two_decimals(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.001,0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2, "outstanding_principal", "1.001",
                     "more than two decimals: an amount must be exact to the fen")
    ]


def test_negative_balance(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,-5.00,0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2, "outstanding_principal", "-5.00", "negative value")
    ]


def test_negative_days_past_due(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,-3"))
    assert problems_of(directory, registry) == [InputProblem("loans.csv", 2, "days_past_due", "-3", "negative value")]


def test_unknown_code(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",guarantee_type", "L1,B1,1.00,0,抵押"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2, "guarantee_type", "抵押", UNKNOWN_GUARANTEE)
    ]


@pytest.mark.parametrize("column", ["loan_id", "borrower_id", "outstanding_principal", "days_past_due"])
def test_missing_required_value(tmp_path, registry, column):
    values = {"loan_id": "L1", "borrower_id": "B1", "outstanding_principal": "1.00", "days_past_due": "0"}
    values[column] = "  "
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, ",".join(values.values())))
    assert problems_of(directory, registry) == [InputProblem("loans.csv", 2, column, "  ", "missing value")]


@pytest.mark.parametrize(("row", "found"), [("L2,B1,1.00", 3), ("L2,B1,1.00,0,surplus", 5), ("L2", 1)])
def test_wrong_number_of_fields(tmp_path, registry, row, found):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", row, "L3,B1,1.00,0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 3, None, None, f"expected 4 fields, found {found}")
    ]


def test_pledge_naming_an_unknown_loan(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0"),
                               pledges=lines("loan_id,collateral_id", "L1,C1", "L9,C2"))
    assert problems_of(directory, registry) == [
        InputProblem("pledges.csv", 3, "loan_id", "L9", "names loan_id 'L9', which is not in loans.csv")
    ]


def test_pledge_naming_unknown_collateral_when_collateral_csv_exists(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0"),
                               collateral=lines("collateral_id", "C1"),
                               pledges=lines("loan_id,collateral_id", "L1,C1", "L1,C7"))
    assert problems_of(directory, registry) == [
        InputProblem("pledges.csv", 3, "collateral_id", "C7",
                     "names collateral_id 'C7', which is not in collateral.csv")
    ]


def test_inspection_naming_an_unknown_loan(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0"),
                               inspections=lines("loan_id,inspection_date", "L1,2026-06-01", "L8,2026-06-02"))
    assert problems_of(directory, registry) == [
        InputProblem("inspections.csv", 3, "loan_id", "L8", "names loan_id 'L8', which is not in loans.csv")
    ]


def test_loan_naming_an_unknown_borrower_when_borrowers_csv_exists(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1", "B1"), loan("L2", "B9")],
                               borrowers=[borrower("B1")])
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 3, "borrower_id", "B9", "names borrower_id 'B9', which is not in borrowers.csv")
    ]


def test_unknown_borrower_is_not_a_problem_when_borrowers_csv_is_absent(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1", "B1"), loan("L2", "B9")])
    loaded = validate_snapshot(directory, config=Config(), registry=registry, as_of=AS_OF)
    assert loaded.row_counts == {"loans": 2}
    assert loaded.problem_total == 0


def test_pledge_of_a_loan_with_a_bad_cell_is_not_reported_as_an_unknown_loan(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",maturity_date", "L1,B1,1.00,0,2026-02-30"),
                               pledges=lines("loan_id,collateral_id", "L1,C1"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2, "maturity_date", "2026-02-30", "not a calendar date")
    ]


def test_gb18030_bytes_read_as_utf8_are_reported_with_a_hint_naming_the_encoding(tmp_path, registry):
    directory = tmp_path / "s"
    directory.mkdir()
    (directory / "loans.csv").write_bytes(lines("贷款账号,客户号,贷款余额,逾期天数", "L1,B1,1.00,0").encode("gb18030"))
    assert problems_of(directory, registry) == [InputProblem("loans.csv", 1, None, repr(b"\xb4"), NOT_UTF8)]


@pytest.mark.parametrize("good_rows", [1, 998])
def test_bad_bytes_in_a_data_row_are_reported_on_that_row(tmp_path, registry, good_rows):
    directory = tmp_path / "s"
    directory.mkdir()
    text = lines(HEADER + ",product", *(f"L{i},B1,1.00,0,p" for i in range(good_rows)))
    bad_line = good_rows + 2
    (directory / "loans.csv").write_bytes(text.encode() + b"LX,B1,1.00,0," + "农户".encode("gb18030") + b"\n")
    [problem] = problems_of(directory, registry)
    assert (problem.file, problem.line, problem.reason) == ("loans.csv", bad_line, NOT_UTF8)


def test_malformed_csv_is_reported(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", 'L2,B1,1.00,"0"x', "L3,B1,1.00,0"))
    [problem] = problems_of(directory, registry)
    assert (problem.file, problem.column, problem.value) == ("loans.csv", None, None)
    assert problem.reason == "malformed CSV: ',' expected after '\"'"


def test_malformed_csv_is_reported_on_its_line(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", 'L2,B1,1.00,"0"x', "L3,B1,1.00,0"))
    [problem] = problems_of(directory, registry)
    assert problem.line == 3


def unreadable_midway(directory: Path, kind: str) -> Path:
    """A loans.csv with good rows, then a row the reader cannot get past, then more good rows."""
    directory.mkdir()
    good = [f"L{i},B1,1.00,0" for i in range(1000)]  # > 8 KB, so the header check decodes only good bytes
    bad = b"LX,B1,1.00,\xff\n" if kind == "undecodable" else b'LX,B1,1.00,"0"x\n'
    (directory / "loans.csv").write_bytes(lines(HEADER, *good).encode() + bad + b"LY,B1,1.00,0\n")
    return directory


@pytest.mark.parametrize("kind", ["undecodable", "malformed"])
def test_a_file_unreadable_midway_is_rejected(tmp_path, registry, db_path, kind):
    directory = unreadable_midway(tmp_path / "s", kind)
    with pytest.raises(SnapshotRejected):
        load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, "SELECT count(*) FROM snapshots") == [(0,)]


@pytest.mark.parametrize("kind", ["undecodable", "malformed"])
def test_quarantine_still_rejects_a_file_unreadable_midway(tmp_path, registry, db_path, kind):
    directory = unreadable_midway(tmp_path / "s", kind)
    with pytest.raises(SnapshotRejected):
        load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert query(db_path, "SELECT count(*) FROM snapshots") == [(0,)]


# ============================================================ every problem at once, the cap


def test_every_problem_in_every_file_is_reported_at_once(tmp_path, registry):
    directory = write_snapshot(
        tmp_path / "s",
        loans=lines(HEADER + ",guarantee_type,maturity_date",
                    "L1,B1,1.00,0,credit,2027-01-01",
                    "L2,B1,-1.00,x,credit,2027-01-01",  # two bad cells in one row
                    "L3,B1,1.00,0,foo,2027-13-01",
                    "L4,B1",
                    "L1,B9,2.00,0,,"),  # duplicate and unknown borrower
        borrowers=lines("borrower_id,borrower_type", "B1,household", "B2,martian"),
        pledges=lines("loan_id,collateral_id,secured_amount", "L1,C1,1.005", "L7,C2,1.00"),
        inspections=lines("loan_id,inspection_date", "L6,20260230"),
    )
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 3, "outstanding_principal", "-1.00", "negative value"),
        InputProblem("loans.csv", 3, "days_past_due", "x", "not a whole number"),
        InputProblem("loans.csv", 4, "guarantee_type", "foo", UNKNOWN_GUARANTEE),
        InputProblem("loans.csv", 4, "maturity_date", "2027-13-01", "not a calendar date"),
        InputProblem("loans.csv", 5, None, None, "expected 6 fields, found 2"),
        InputProblem("borrowers.csv", 3, "borrower_type", "martian",
                     "unknown code (expected one of: household, individual, small_business, enterprise, "
                     "village_collective; map local codes in [snapshot.codes])"),
        InputProblem("pledges.csv", 2, "secured_amount", "1.005",
                     "more than two decimals: an amount must be exact to the fen"),
        InputProblem("inspections.csv", 2, "inspection_date", "20260230", "not a calendar date"),
        InputProblem("loans.csv", 2, "loan_id", "L1", "duplicate loan_id: appears more than once"),
        InputProblem("loans.csv", 6, "loan_id", "L1", "duplicate loan_id: duplicate of line 2"),
        InputProblem("loans.csv", 6, "borrower_id", "B9", "names borrower_id 'B9', which is not in borrowers.csv"),
        InputProblem("pledges.csv", 3, "loan_id", "L7", "names loan_id 'L7', which is not in loans.csv"),
    ]


def test_problem_cap_keeps_the_first_problems_and_counts_the_rest(tmp_path, registry):
    rows = [f"L{i},B1,x{i},0" for i in range(10)]
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, *rows))
    error = rejection(directory, registry, max_problems=3)
    assert error.total == 10
    assert error.problems == [InputProblem("loans.csv", line, "outstanding_principal", f"x{line - 2}", NOT_AN_AMOUNT)
                              for line in (2, 3, 4)]
    assert str(error) == "snapshot rejected: 10 problem(s) (showing 3; 7 more not shown); nothing was stored"


def test_problem_cap_counts_cross_row_problems_too(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,x,0", "L2,B1,1.00,0", "L2,B1,1.00,0"),
                               pledges=lines("loan_id,collateral_id", "L8,C1", "L9,C1"))
    error = rejection(directory, registry, max_problems=1)
    assert error.problems == [InputProblem("loans.csv", 2, "outstanding_principal", "x", NOT_AN_AMOUNT)]
    assert error.total == 5  # the bad amount, both duplicates, both orphan pledges


def test_cli_validate_lists_every_problem_and_exits_2(tmp_path, runner):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,x,0", "L2,B1,1.00,2026-01-01"))
    result = invoke(runner, "validate", directory, "--as-of", AS_OF)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: snapshot rejected: 2 problem(s); nothing was stored",
        f"  loans.csv:2 column outstanding_principal: value 'x': {NOT_AN_AMOUNT}",
        "  loans.csv:3 column days_past_due: value '2026-01-01': not a whole number",
    ]


def test_cli_max_problems_shows_how_many_more_there_are(tmp_path, runner):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, *(f"L{i},B1,x,0" for i in range(5))))
    result = invoke(runner, "validate", directory, "--max-problems", "2")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: snapshot rejected: 5 problem(s) (showing 2; 3 more not shown); nothing was stored",
        f"  loans.csv:2 column outstanding_principal: value 'x': {NOT_AN_AMOUNT}",
        f"  loans.csv:3 column outstanding_principal: value 'x': {NOT_AN_AMOUNT}",
        "  ... and 3 more",
    ]


def test_cli_reports_a_missing_snapshot_file_in_one_line(tmp_path, runner):
    directory = tmp_path / "empty"
    directory.mkdir()
    result = invoke(runner, "validate", directory)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: snapshot rejected: 1 problem(s); nothing was stored",
        f"  loans.csv: required file missing from {directory}",
    ]


# ============================================================ a rejected snapshot stores nothing


@pytest.fixture
def db_with_a_good_snapshot(tmp_path, registry, db_path) -> Path:
    good = write_snapshot(tmp_path / "good", loans=[loan("L1"), loan("L2", "B2")],
                          borrowers=[borrower("B1"), borrower("B2")],
                          pledges=[{"loan_id": "L1", "collateral_id": "C1"}])
    load_only(db_path, good, as_of=AS_OF, config=Config(), registry=registry)
    return db_path


@pytest.mark.parametrize("as_of", [AS_OF, "2026-11-28"])  # the same as-of would replace the good one
@pytest.mark.parametrize("quarantine", [False, True])
def test_rejected_snapshot_stores_nothing(tmp_path, registry, db_with_a_good_snapshot, as_of, quarantine):
    db = db_with_a_good_snapshot
    before, schema_before = table_snapshot(db), schema(db)
    # good rows first (they are inserted before the bad ones are found), a new extra column, a bad header
    bad = write_snapshot(tmp_path / "bad", loans=[loan("L1", remark="r"), loan("L3", remark="r"),
                                                  loan("L4", remark="r", outstanding_principal="x")],
                         borrowers=[borrower("B1")],
                         inspections=lines("loan_id", "L1"))  # inspection_date missing: rejects even in quarantine
    with pytest.raises(SnapshotRejected):
        load_only(db, bad, as_of=as_of, config=Config(), registry=registry, quarantine=quarantine)
    assert table_snapshot(db) == before
    assert schema(db) == schema_before


def test_cli_load_of_a_rejected_snapshot_exits_2_and_changes_nothing(tmp_path, runner, db_with_a_good_snapshot):
    db = db_with_a_good_snapshot
    before = table_snapshot(db)
    bad = write_snapshot(tmp_path / "bad", loans=[loan("L1"), loan("L1")])
    result = invoke(runner, "load", bad, "--as-of", AS_OF, "--db", db)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: snapshot rejected: 2 problem(s); nothing was stored"
    assert table_snapshot(db) == before


# ============================================================ quarantine


def quarantined(db: Path) -> list[tuple]:
    return query(db, 'SELECT file, line, "column", value, reason, row FROM quarantine ORDER BY file, line, "column"')


def test_quarantine_leaves_bad_rows_out_and_records_them(tmp_path, registry, db_path):
    rows = [loan("L1"), loan("L2", maturity_date="2026-02-30"), loan("L3")]
    directory = write_snapshot(tmp_path / "s", loans=rows)
    loaded = load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert query(db_path, "SELECT loan_id, source_line FROM loans ORDER BY loan_id") == [("L1", 2), ("L3", 4)]
    assert quarantined(db_path) == [
        ("loans.csv", 3, "maturity_date", "2026-02-30", "not a calendar date", json.dumps(
            list(rows[1].values()), ensure_ascii=False)),
    ]
    assert loaded.quarantined == 1
    assert loaded.row_counts == {"loans": 2}
    assert loaded.problems == (InputProblem("loans.csv", 3, "maturity_date", "2026-02-30", "not a calendar date"),)
    assert query(db_path, "SELECT quarantined, row_counts FROM snapshots") == [(1, '{"loans": 2}')]


def test_quarantine_counts_rows_not_problems(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,x,y", "L2,B1,1.00,0", "L3"))
    loaded = load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert quarantined(db_path) == [
        ("loans.csv", 2, "days_past_due", "y", "not a whole number", '["L1", "B1", "x", "y"]'),
        ("loans.csv", 2, "outstanding_principal", "x", NOT_AN_AMOUNT, '["L1", "B1", "x", "y"]'),
        ("loans.csv", 4, None, None, "expected 4 fields, found 1", '["L3"]'),
    ]
    assert loaded.quarantined == 2
    assert loaded.problem_total == 3
    assert query(db_path, "SELECT loan_id FROM loans") == [("L2",)]
    assert query(db_path, "SELECT quarantined FROM snapshots") == [(2,)]


def test_quarantined_loan_takes_its_pledges_and_inspections_with_it(tmp_path, registry, db_path):
    directory = write_snapshot(
        tmp_path / "s",
        loans=lines(HEADER, "L1,B1,1.00,0", "L2,B1,oops,0", "L3,B1,1.00,0"),
        pledges=lines("loan_id,collateral_id", "L1,C1", "L2,C2", "L3,C2"),
        inspections=lines("loan_id,inspection_date", "L2,2026-06-01", "L3,2026-06-01"),
    )
    loaded = load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert query(db_path, "SELECT loan_id, collateral_id FROM pledges ORDER BY 1") == [("L1", "C1"), ("L3", "C2")]
    assert query(db_path, "SELECT loan_id FROM inspections") == [("L3",)]
    cascaded = [(file, line, column, value) for file, line, column, value, _, _ in quarantined(db_path)]
    assert cascaded == [("inspections.csv", 2, "loan_id", "L2"), ("loans.csv", 3, "outstanding_principal", "oops"),
                        ("pledges.csv", 3, "loan_id", "L2")]
    assert loaded.quarantined == 3
    assert loaded.row_counts == {"loans": 2, "pledges": 2, "inspections": 1}


def test_quarantined_borrower_takes_its_loans_and_their_pledges(tmp_path, registry, db_path):
    directory = write_snapshot(
        tmp_path / "s",
        borrowers=lines("borrower_id,borrower_type", "B1,household", "B2,alien"),
        loans=lines(HEADER, "L1,B1,1.00,0", "L2,B2,1.00,0"),
        pledges=lines("loan_id,collateral_id", "L2,C1"),
    )
    loaded = load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert query(db_path, "SELECT loan_id FROM loans") == [("L1",)]
    assert query(db_path, "SELECT count(*) FROM pledges") == [(0,)]
    assert [(f, line) for f, line, *_ in quarantined(db_path)] == [("borrowers.csv", 3), ("loans.csv", 3),
                                                                   ("pledges.csv", 2)]
    assert loaded.quarantined == 3


def test_quarantine_leaves_out_both_duplicates(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", "L2,B1,1.00,0", "L1,B1,3.00,0"))
    loaded = load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert query(db_path, "SELECT loan_id FROM loans") == [("L2",)]
    assert [row[:5] for row in quarantined(db_path)] == [
        ("loans.csv", 2, "loan_id", "L1", "duplicate loan_id: appears more than once"),
        ("loans.csv", 4, "loan_id", "L1", "duplicate loan_id: duplicate of line 2"),
    ]
    assert loaded.quarantined == 2


def test_quarantine_records_the_raw_row_of_a_duplicate(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,3.00,0", "L1,B1,4.00,0"))
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert [row[5] for row in quarantined(db_path)] == ['["L1", "B1", "3.00", "0"]', '["L1", "B1", "4.00", "0"]']


def test_quarantine_still_rejects_a_missing_required_column(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", "L2,B1,x,0"),
                               pledges=lines("loan_id,secured_amount", "L1,1.00"))
    with pytest.raises(SnapshotRejected) as caught:
        load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert InputProblem("pledges.csv", 1, "collateral_id", None, "required column missing") in caught.value.problems
    assert query(db_path, "SELECT count(*) FROM snapshots") == [(0,)]
    assert query(db_path, "SELECT count(*) FROM quarantine") == [(0,)]


def test_quarantine_still_rejects_an_undecodable_file(tmp_path, registry, db_path):
    directory = tmp_path / "s"
    directory.mkdir()
    (directory / "loans.csv").write_bytes(lines("贷款账号,borrower_id", "L1,B1").encode("gb18030"))
    with pytest.raises(SnapshotRejected):
        load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    assert query(db_path, "SELECT count(*) FROM snapshots") == [(0,)]


def test_cli_load_with_quarantine_stores_good_rows_and_lists_the_bad(tmp_path, runner, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", "L2,B1,x,0"))
    result = invoke(runner, "load", directory, "--as-of", AS_OF, "--db", db_path, "--quarantine")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "1 row(s) quarantined (1 problem(s)):",
        f"  loans.csv:3 column outstanding_principal: value 'x': {NOT_AN_AMOUNT}",
    ]
    assert query(db_path, "SELECT loan_id FROM loans") == [("L1",)]
    assert query(db_path, "SELECT file, line FROM quarantine") == [("loans.csv", 3)]


# ============================================================ encodings, column and code maps


def test_utf8_with_byte_order_mark(tmp_path, registry, db_path):
    directory = tmp_path / "s"
    directory.mkdir()
    (directory / "loans.csv").write_bytes("\ufeff".encode() + lines(HEADER + ",备注", "L1,B1,1.00,0,你好").encode())
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, 'SELECT loan_id, "备注" FROM loans') == [("L1", "你好")]


def test_utf8_byte_order_mark_also_with_encoding_utf8(tmp_path, registry, db_path):
    directory = tmp_path / "s"
    directory.mkdir()
    (directory / "loans.csv").write_bytes("\ufeff".encode() + lines(HEADER, "L1,B1,1.00,0").encode())
    config = config_of(tmp_path, '[snapshot]\nencoding = "UTF-8"\n')
    load_only(db_path, directory, as_of=AS_OF, config=config, registry=registry)
    assert query(db_path, "SELECT loan_id FROM loans") == [("L1",)]


GB18030_CONFIG = """
[snapshot]
encoding = "gb18030"

[snapshot.columns.loans]
"贷款账号" = "loan_id"
"客户号" = "borrower_id"
"贷款余额" = "outstanding_principal"
"逾期天数" = "days_past_due"
"担保方式" = "guarantee_type"
"五级分类" = "recorded_class"

[snapshot.codes."loans.guarantee_type"]
"抵押" = "mortgage"
"信用" = "credit"

[snapshot.codes."loans.recorded_class"]
"正常" = "normal"
"关注" = "special_mention"
"""


def test_gb18030_file_with_chinese_headers_and_local_codes(tmp_path, registry, db_path):
    directory = tmp_path / "s"
    directory.mkdir()
    text = lines("贷款账号,客户号,贷款余额,逾期天数,担保方式,五级分类,备注",
                 "L1,B1,1234.50,0,抵押,正常,王家庄",
                 "L2,B2,10.00,45,信用,关注,")
    (directory / "loans.csv").write_bytes(text.encode("gb18030"))
    loaded = load_only(db_path, directory, as_of=AS_OF, config=config_of(tmp_path, GB18030_CONFIG),
                       registry=registry)
    assert loaded.row_counts == {"loans": 2}
    assert query(db_path, 'SELECT loan_id, borrower_id, outstanding_principal, days_past_due, guarantee_type, '
                          'recorded_class, "备注" FROM loans ORDER BY loan_id') == [
        ("L1", "B1", 123450, 0, "mortgage", "normal", "王家庄"),
        ("L2", "B2", 1000, 45, "credit", "special_mention", None),
    ]


def test_gb18030_config_reports_problems_under_the_canonical_column_name(tmp_path, registry):
    directory = tmp_path / "s"
    directory.mkdir()
    text = lines("贷款账号,客户号,贷款余额,逾期天数,担保方式", "L1,B1,1.00,0,担保人")
    (directory / "loans.csv").write_bytes(text.encode("gb18030"))
    assert problems_of(directory, registry, config_of(tmp_path, GB18030_CONFIG)) == [
        InputProblem("loans.csv", 2, "guarantee_type", "担保人", UNKNOWN_GUARANTEE)
    ]


def test_local_codes_mapped_in_utf8(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1", guarantee_type="抵押"), loan("L2")])
    config = config_of(tmp_path, '[snapshot.codes."loans.guarantee_type"]\n"抵押" = "mortgage"\n')
    load_only(db_path, directory, as_of=AS_OF, config=config, registry=registry)
    assert query(db_path, "SELECT loan_id, guarantee_type FROM loans ORDER BY 1") == [("L1", "mortgage"),
                                                                                      ("L2", "credit")]


def test_local_codes_match_in_any_case_and_with_blanks(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",guarantee_type", "L1,B1,1.00,0, dy ",
                                                           "L2,B1,1.00,0,DY"))
    config = config_of(tmp_path, '[snapshot.codes."loans.guarantee_type"]\n"Dy" = "mortgage"\n')
    load_only(db_path, directory, as_of=AS_OF, config=config, registry=registry)
    assert query(db_path, "SELECT guarantee_type FROM loans") == [("mortgage",), ("mortgage",)]


def test_a_code_mapped_to_a_value_outside_the_vocabulary_is_refused(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1", guarantee_type="抵押")])
    config = config_of(tmp_path, '[snapshot.codes."loans.guarantee_type"]\n"抵押" = "mortage"\n')
    with pytest.raises(ConfigError, match='snapshot.codes."loans.guarantee_type"."抵押": maps to \'mortage\''):
        load_only(db_path, directory, as_of=AS_OF, config=config, registry=registry)
    assert not db_path.exists()  # refused before the database was opened


def test_canonical_codes_are_case_insensitive_and_stored_lower_case(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=[
        loan("L1", guarantee_type="MORTGAGE", recorded_class="Special_Mention"),
        loan("L2", guarantee_type=" Pledge ", recorded_class="LOSS"),
    ])
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, "SELECT guarantee_type, recorded_class FROM loans ORDER BY loan_id") == [
        ("mortgage", "special_mention"), ("pledge", "loss")]


# ============================================================ stored values


def test_dates_in_three_spellings_are_stored_as_iso(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=[
        loan("L1", origination_date="2025-03-01", maturity_date="20270301", restructured_date="2026/02/28"),
        loan("L2", origination_date=" 20240229 ", maturity_date="", restructured_date=""),
    ])
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, "SELECT origination_date, maturity_date, restructured_date FROM loans ORDER BY loan_id") == [
        ("2025-03-01", "2027-03-01", "2026-02-28"), ("2024-02-29", None, None)]
    assert query(db_path, "SELECT count(*) FROM loans WHERE maturity_date > date('2026-01-01')") == [(1,)]


def test_money_is_stored_as_integer_fen_and_sums_exactly(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=[
        loan("L1", outstanding_principal="0.10", principal="1,234.50", provision="12.500"),
        loan("L2", outstanding_principal="0.20", principal="3", provision=" 0.01 "),
        loan("L3", outstanding_principal="99999999999.99", principal="", provision="0"),
    ])
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, "SELECT sum(outstanding_principal), typeof(sum(outstanding_principal)) FROM loans "
                          "WHERE loan_id IN ('L1', 'L2')") == [(30, "integer")]
    assert query(db_path, "SELECT outstanding_principal, principal, provision FROM loans ORDER BY loan_id") == [
        (10, 123450, 1250), (20, 300, 1), (9999999999999, None, 0)]


def test_an_amount_with_an_embedded_line_break_is_refused_not_shifted(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, 'L1,B1,"100.00\n200.00",0', "L2,B1,1.00,0",
                                                           "L3,B1,2.00,0"))
    with pytest.raises(SnapshotRejected) as caught:
        load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert [(p.file, p.column, p.value, p.reason) for p in caught.value.problems] == [
        ("loans.csv", "outstanding_principal", "100.00\n200.00", NOT_AN_AMOUNT)]


@pytest.mark.parametrize("placeholder", ["-", "."])
def test_a_placeholder_in_an_amount_column_is_reported_not_stored_as_zero(tmp_path, registry, placeholder):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, f"L1,B1,{placeholder},0"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2, "outstanding_principal", placeholder, NOT_AN_AMOUNT)]


def test_booleans_are_stored_as_0_and_1(tmp_path, registry, db_path):
    spellings = {"L1": "1", "L2": "0", "L3": "TRUE", "L4": "false", "L5": "y", "L6": "N", "L7": "Yes", "L8": "no",
                 "L9": "是", "LA": "否", "LB": ""}
    directory = write_snapshot(tmp_path / "s", loans=[loan(i, written_off=s) for i, s in spellings.items()])
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert dict(query(db_path, "SELECT loan_id, written_off FROM loans")) == {
        "L1": 1, "L2": 0, "L3": 1, "L4": 0, "L5": 1, "L6": 0, "L7": 1, "L8": 0, "L9": 1, "LA": 0, "LB": None}


def test_bad_boolean_is_reported(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1", written_off="maybe")])
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2, "written_off", "maybe", "not a boolean (1/0, true/false, Y/N, yes/no, 是/否)")]


def test_integer_written_with_zero_decimals_is_stored_as_integer(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,30.0", "L2,B1,1.00,7"))
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, "SELECT days_past_due, typeof(days_past_due) FROM loans ORDER BY loan_id") == [
        (30, "integer"), (7, "integer")]


def test_unknown_extra_columns_are_kept_as_text_and_visible(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1", 村组="三组", credit_score="0712"),
                                                      loan("L2", 村组="", credit_score="15")])
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    columns = {name: kind for _, name, kind, *_ in query(db_path, "PRAGMA table_info(loans)")}
    assert columns["村组"] == "TEXT" and columns["credit_score"] == "TEXT"
    assert query(db_path, 'SELECT loan_id, "村组", credit_score FROM loans ORDER BY loan_id') == [
        ("L1", "三组", "0712"), ("L2", None, "15")]


def test_an_extra_column_name_with_a_double_quote_is_kept(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ',"note ""A"""', "L1,B1,1.00,0,v"))
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, 'SELECT "note ""A""" FROM loans') == [("v",)]


def test_an_extra_column_named_like_a_bookkeeping_column_is_not_silently_lost(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",source_line", "L1,B1,1.00,0,77"))
    try:
        load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    except SnapshotRejected as error:  # reported: acceptable
        assert error.problems[0].column == "source_line"
    else:  # kept: the value is somewhere in the row
        assert "77" in [str(v) for v in query(db_path, "SELECT * FROM loans")[0]]


def test_blank_trailing_lines_are_ignored(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", "L2,B1,2.00,0") + "\n\r\n\n")
    loaded = validate_snapshot(directory, config=Config(), registry=registry, as_of=AS_OF)
    assert loaded.row_counts == {"loans": 2}
    assert loaded.problem_total == 0


def test_a_line_of_bare_delimiters_is_not_taken_for_a_blank_line(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0", ",,,"))
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 3, column, "", "missing value")
        for column in ("loan_id", "borrower_id", "outstanding_principal", "days_past_due")]


def test_quoted_fields_with_line_breaks_keep_later_line_numbers_right(tmp_path, registry, db_path):
    text = lines(HEADER + ",product", 'L1,B1,1.00,0,"farm\nloan\nline three"', "L2,B1,x,0,p",
                 'L3,B1,1.00,0,"two\r\nlines"', "L4,B1,-1,0,p", "L5,B1,1.00,0,p")
    directory = write_snapshot(tmp_path / "s", loans=text)
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 5, "outstanding_principal", "x", NOT_AN_AMOUNT),
        InputProblem("loans.csv", 8, "outstanding_principal", "-1", "negative value"),
    ]
    good = write_snapshot(tmp_path / "g", loans=lines(HEADER + ",product", 'L1,B1,1.00,0,"farm\nloan"',
                                                      "L2,B1,1.00,0,p"))
    load_only(db_path, good, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, "SELECT product FROM loans WHERE loan_id = 'L1'") == [("farm\nloan",)]
    assert query(db_path, "SELECT source_line FROM loans WHERE loan_id = 'L2'") == [(4,)]


def test_line_numbers_stay_right_across_batches(tmp_path, registry, monkeypatch):
    monkeypatch.setattr(reading, "BATCH_ROWS", 3)
    rows = [f'L{i},B1,1.00,0,"{"a" + chr(10) + "b" if i % 4 == 0 else "p"}"' for i in range(20)]
    rows[13] = "L13,B1,bad,0,p"
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",product", *rows))
    # rows 0, 4, 8 and 12 take two lines each before row 13
    assert problems_of(directory, registry) == [
        InputProblem("loans.csv", 2 + 13 + 4, "outstanding_principal", "bad", NOT_AN_AMOUNT)]


def test_a_file_name_mapped_in_the_config(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s")
    (directory / "DK_JJ.csv").write_text(lines(HEADER, "L1,B1,1.00,0"), encoding="utf-8")
    (directory / "ZY.csv").write_text(lines("loan_id,collateral_id", "L1,C1", "L2,C2"), encoding="utf-8")
    config = config_of(tmp_path, '[snapshot.files]\nloans = "DK_JJ.csv"\npledges = "ZY.csv"\n')
    assert problems_of(directory, registry, config) == [
        InputProblem("ZY.csv", 3, "loan_id", "L2", "names loan_id 'L2', which is not in DK_JJ.csv")]
    (directory / "ZY.csv").write_text(lines("loan_id,collateral_id", "L1,C1"), encoding="utf-8")
    loaded = load_only(db_path, directory, as_of=AS_OF, config=config, registry=registry)
    assert loaded.row_counts == {"loans": 1, "pledges": 1}
    assert query(db_path, "SELECT loan_id, collateral_id FROM pledges") == [("L1", "C1")]


def test_a_mapped_file_name_replaces_the_default_name(tmp_path, registry):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0"),
                               pledges=lines("loan_id,collateral_id", "L9,C1"))  # ignored: pledges come from ZY.csv
    (directory / "ZY.csv").write_text(lines("loan_id,collateral_id", "L1,C1"), encoding="utf-8")
    config = config_of(tmp_path, '[snapshot.files]\npledges = "ZY.csv"\n')
    loaded = validate_snapshot(directory, config=config, registry=registry, as_of=AS_OF)
    assert loaded.row_counts == {"loans": 1, "pledges": 1}


# ============================================================ identity, replacement, commands


def test_snapshot_sha256_is_stable_for_identical_files_and_changes_with_one_byte(tmp_path, registry, db_path):
    tables = {"loans": [loan("L1"), loan("L2")], "borrowers": [borrower("B1")]}
    first = write_snapshot(tmp_path / "a", **tables)
    second = write_snapshot(tmp_path / "b", **tables)
    digest = validate_snapshot(first, config=Config(), registry=registry, as_of=AS_OF).sha256
    assert len(digest) == 64
    assert validate_snapshot(second, config=Config(), registry=registry, as_of=AS_OF).sha256 == digest
    assert validate_snapshot(first, config=Config(), registry=registry, as_of="2026-12-01").sha256 == digest
    data = (second / "borrowers.csv").read_bytes()
    (second / "borrowers.csv").write_bytes(data.replace("张三".encode(), "张四".encode()))
    assert validate_snapshot(second, config=Config(), registry=registry, as_of=AS_OF).sha256 != digest
    loaded = load_only(db_path, first, as_of=AS_OF, config=Config(), registry=registry)
    assert loaded.sha256 == digest
    assert query(db_path, "SELECT sha256 FROM snapshots") == [(digest,)]


def test_loading_the_same_cooperative_and_as_of_twice_replaces_the_earlier_snapshot(tmp_path, registry, db_path):
    first = write_snapshot(tmp_path / "a", loans=lines(HEADER, "L1,B1,1.00,0", "L2,B1,x,0"),
                           pledges=lines("loan_id,collateral_id", "L1,C1"))
    load_only(db_path, first, as_of=AS_OF, config=Config(), registry=registry, quarantine=True)
    second = write_snapshot(tmp_path / "b", loans=lines(HEADER, "L1,B1,5.00,0", "L3,B1,6.00,0"),
                            pledges=lines("loan_id,collateral_id", "L1,C1"))
    loaded = load_only(db_path, second, as_of=AS_OF, config=Config(), registry=registry)
    assert query(db_path, "SELECT snapshot_id, as_of FROM snapshots") == [(loaded.snapshot_id, AS_OF)]
    assert query(db_path, "SELECT snapshot_id, loan_id, outstanding_principal FROM loans ORDER BY loan_id") == [
        (loaded.snapshot_id, "L1", 500), (loaded.snapshot_id, "L3", 600)]
    assert query(db_path, "SELECT count(*) FROM pledges") == [(1,)]
    assert query(db_path, "SELECT count(*) FROM quarantine") == [(0,)]


def test_other_as_ofs_and_cooperatives_are_kept(tmp_path, registry, db_path):
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER, "L1,B1,1.00,0"))
    other = config_of(tmp_path, '[cooperative]\nname = "Other RCC"\n')
    load_only(db_path, directory, as_of=AS_OF, config=Config(), registry=registry)
    load_only(db_path, directory, as_of="2026-11-28", config=Config(), registry=registry)
    load_only(db_path, directory, as_of=AS_OF, config=other, registry=registry)
    assert query(db_path, "SELECT cooperative, as_of FROM snapshots ORDER BY 1, 2") == [
        ("Other RCC", AS_OF), ("default", AS_OF), ("default", "2026-11-28")]
    assert query(db_path, "SELECT count(*) FROM loans") == [(3,)]


def test_cli_validate_stores_nothing(tmp_path, runner, monkeypatch):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1"), loan("L2")])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = invoke(runner, "validate", directory, "--as-of", AS_OF)
    assert result.exit_code == 0
    assert "valid, nothing stored" in result.stdout
    assert list(cwd.iterdir()) == []


def test_cli_load_stores_the_snapshot_and_prints_the_counts(tmp_path, runner, db_path):
    directory = write_snapshot(tmp_path / "s", loans=[loan("L1"), loan("L2")], borrowers=[borrower("B1")])
    result = invoke(runner, "load", directory, "--as-of", "2026/11/27", "--db", db_path)
    assert result.exit_code == 0, result.output
    assert "stored as snapshot 1" in result.stdout
    assert query(db_path, "SELECT as_of, row_counts FROM snapshots") == [(AS_OF, '{"borrowers": 1, "loans": 2}')]
    assert query(db_path, "SELECT count(*) FROM loans") == [(2,)]
    assert query(db_path, "SELECT count(*) FROM runs") == [(0,)]


# ============================================================ the child-process reader


@pytest.fixture(params=["one child", "two children"])
def read_both_ways(request, monkeypatch):
    """``read_both_ways(action)``: ``action()`` with the in-process reader, then with forked reader processes.

    ``STAGE_MIN_BYTES = 0`` sends every file to reader processes (staging); with "two
    children" each file is split between two. Forks are counted, so the test fails
    if the reader processes were not used.
    """
    two = request.param == "two children"
    if two and (os.cpu_count() or 1) < 2:
        pytest.skip("two readers need two CPUs")
    monkeypatch.setattr(reading, "BATCH_ROWS", 4)  # several batches per reader

    def run(action):
        here = action()
        forks = []
        real_fork = os.fork

        def counting_fork():
            forks.append(1)
            return real_fork()

        with monkeypatch.context() as patch:
            patch.setattr(staging, "STAGE_MIN_BYTES", 0)
            patch.setattr(staging, "MAX_READERS", 2 if two else 1)
            patch.setattr(os, "fork", counting_fork)
            child = action()
        assert forks, "the child-process reader was not used"
        return here, child

    return run


def by_place(problems: list[InputProblem]) -> list[InputProblem]:
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.column or "", p.reason))


def test_child_process_reader_stores_the_same_rows(tmp_path, registry, read_both_ways):
    directory = write_snapshot(tmp_path / "s", loans=[loan(f"L{i}", f"B{i % 3}", product="a\nb" if i == 5 else "p",
                                                           outstanding_principal=f"{i}.{i:02d}") for i in range(15)],
                               borrowers=[borrower(f"B{i}") for i in range(3)],
                               pledges=[{"loan_id": f"L{i}", "collateral_id": "C1"} for i in range(9)])
    dbs = iter([tmp_path / "here.db", tmp_path / "child.db"])

    def load():
        db = next(dbs)
        loaded = load_only(db, directory, as_of=AS_OF, config=Config(), registry=registry)
        return loaded.sha256, loaded.row_counts, {t: query(db, f"SELECT * FROM {t} ORDER BY source_line")
                                                  for t in ("loans", "borrowers", "pledges")}

    here, child = read_both_ways(load)
    assert here[2]["loans"][6][:4] == (1, 9, "L6", "B0")  # L5's two-line product moved L6 to line 9
    assert child == here


def test_child_process_reader_reports_the_same_problems(tmp_path, registry, read_both_ways):
    rows = [f"L{i},B1,1.00,0,p" for i in range(40)]
    rows[3] = "L3,B1,x,0,p"
    rows[7] = 'L7,B1,1.00,0,"two\nlines"'
    rows[9] = "L9,B1,1.00,0,p,surplus"
    rows[11] = "L11,B1,1.00,-1,p"
    rows[30] = "L29,B1,1.00,0,p"  # a duplicate of row 29
    rows[31] = "L31,B1,1.001,0,p"
    directory = write_snapshot(tmp_path / "s", loans=lines(HEADER + ",product", *rows),
                               pledges=lines("loan_id,collateral_id", "L1,C1", "L999,C1"))

    def validate():
        error = rejection(directory, registry)
        return by_place(error.problems), error.total

    here, child = read_both_ways(validate)
    assert child == here
    assert here == ([  # row 7 takes two lines: row n is on line n + 2 up to row 7, n + 3 after it
        InputProblem("loans.csv", 5, "outstanding_principal", "x", NOT_AN_AMOUNT),
        InputProblem("loans.csv", 12, None, None, "expected 5 fields, found 6"),
        InputProblem("loans.csv", 14, "days_past_due", "-1", "negative value"),
        InputProblem("loans.csv", 32, "loan_id", "L29", "duplicate loan_id: appears more than once"),
        InputProblem("loans.csv", 33, "loan_id", "L29", "duplicate loan_id: duplicate of line 32"),
        InputProblem("loans.csv", 34, "outstanding_principal", "1.001",
                     "more than two decimals: an amount must be exact to the fen"),
        InputProblem("pledges.csv", 3, "loan_id", "L999", "names loan_id 'L999', which is not in loans.csv"),
    ], 7)


def test_child_process_reader_rejects_an_undecodable_file_too(tmp_path, registry, read_both_ways):
    directory = unreadable_midway(tmp_path / "s", "undecodable")

    def validate():
        error = rejection(directory, registry)
        return [(p.file, p.reason) for p in error.problems]

    here, child = read_both_ways(validate)
    assert here == child == [("loans.csv", NOT_UTF8)]
