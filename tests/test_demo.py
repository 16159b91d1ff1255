"""The demo book: deterministic, true to the snapshot contract, and realistic enough to exercise the checks."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from loanrules import demo, schema

SMALL = 600  # loans; enough for every table to have rows
REALISTIC = 3000  # loans; enough for the shares to settle

MONEY = re.compile(r"^\d+\.\d{2}$")
RESIDENT_ID = re.compile(r"^\d{17}[\dX]$")


def read_table(directory: Path, table: str) -> list[dict[str, str]]:
    with open(directory / f"{table}.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def read_snapshot(directory: Path) -> dict[str, list[dict[str, str]]]:
    return {spec.name: read_table(directory, spec.name) for spec in schema.CANONICAL_TABLES}


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def class_from_days_past_due(days: int) -> int:
    """The least risk class the days past due allow: overdue -> special mention, >90 / >270 / >360 days."""
    return 0 if days == 0 else 1 if days <= 90 else 2 if days <= 270 else 3 if days <= 360 else 4


def mod11_2_check(first_17: str) -> str:
    """ISO 7064 MOD 11-2, written out from the standard rather than borrowed from the module."""
    total = sum(int(digit) * (2 ** (17 - position) % 11) for position, digit in enumerate(first_17))
    return "10X98765432"[total % 11]


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> dict[str, list[dict[str, str]]]:
    directory = tmp_path_factory.mktemp("book")
    demo.write_snapshot(directory, loans=REALISTIC)
    return read_snapshot(directory)


HISTORY_DATES = [demo.DEMO_AS_OF + timedelta(days=days) for days in (0, 30, 91)]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> list[dict[str, list[dict[str, str]]]]:
    """The same book at HISTORY_DATES, given in shuffled order."""
    directory = tmp_path_factory.mktemp("history")
    shuffled = [HISTORY_DATES[2], HISTORY_DATES[0], HISTORY_DATES[1]]
    paths = demo.write_history(directory, loans=1500, as_of_dates=shuffled)
    assert [path.name for path in paths] == [day.isoformat() for day in HISTORY_DATES]
    return [read_snapshot(path) for path in paths]


# -- determinism ---------------------------------------------------------------


def test_same_seed_writes_byte_identical_files(tmp_path):
    demo.write_snapshot(tmp_path / "a", loans=SMALL, seed=7)
    demo.write_snapshot(tmp_path / "b", loans=SMALL, seed=7)
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")


def test_another_seed_writes_another_book(tmp_path):
    demo.write_snapshot(tmp_path / "a", loans=SMALL, seed=7)
    demo.write_snapshot(tmp_path / "b", loans=SMALL, seed=8)
    a, b = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert a["loans.csv"] != b["loans.csv"]
    assert a["borrowers.csv"] != b["borrowers.csv"]


def test_history_is_deterministic(tmp_path):
    dates = [date(2026, 6, 30), date(2026, 9, 30)]
    first = demo.write_history(tmp_path / "a", loans=300, as_of_dates=dates, seed=3)
    second = demo.write_history(tmp_path / "b", loans=300, as_of_dates=dates, seed=3)
    for one, other in zip(first, second, strict=True):
        assert file_bytes(one) == file_bytes(other)


def test_first_history_snapshot_is_the_plain_snapshot(tmp_path):
    day = date(2026, 6, 30)
    demo.write_snapshot(tmp_path / "plain", loans=SMALL, as_of=day)
    (first, _) = demo.write_history(tmp_path / "history", loans=SMALL, as_of_dates=[day, day + timedelta(days=60)])
    assert file_bytes(first) == file_bytes(tmp_path / "plain")


# -- the snapshot contract ---------------------------------------------------------


def test_returned_counts_are_the_rows_written(tmp_path):
    counts = demo.write_snapshot(tmp_path, loans=SMALL)
    assert list(counts) == [spec.name for spec in schema.CANONICAL_TABLES]
    for table, count in counts.items():
        assert len(read_table(tmp_path, table)) == count, table
    assert counts["loans"] == SMALL


def test_headers_are_the_schema_columns_in_order(tmp_path):
    demo.write_snapshot(tmp_path, loans=SMALL)
    for spec in schema.CANONICAL_TABLES:
        with open(tmp_path / f"{spec.name}.csv", encoding="utf-8", newline="") as handle:
            assert tuple(next(csv.reader(handle))) == spec.column_names


def test_keys_are_unique(book):
    for spec in schema.CANONICAL_TABLES:
        if spec.key:
            keys = Counter(tuple(row[column] for column in spec.key) for row in book[spec.name])
            assert not [key for key, count in keys.items() if count > 1], spec.name


def test_references_name_existing_rows(book):
    loan_ids = {row["loan_id"] for row in book["loans"]}
    borrower_ids = {row["borrower_id"] for row in book["borrowers"]}
    collateral_ids = {row["collateral_id"] for row in book["collateral"]}
    assert {row["borrower_id"] for row in book["loans"]} <= borrower_ids
    for table in ("pledges", "inspections", "collections", "documents"):
        assert {row["loan_id"] for row in book[table]} <= loan_ids, table
    assert {row["collateral_id"] for row in book["pledges"]} <= collateral_ids
    # Not declared references, but the demo keeps them whole too.
    villages = {row["village"] for row in book["villages"]}
    assert {row["village"] for row in book["borrowers"]} <= villages
    appraisers = {row["appraiser_id"] for row in book["appraisers"]}
    assert {row["appraiser_id"] for row in book["collateral"]} - {""} <= appraisers
    # Every borrower written has a loan on the book.
    assert borrower_ids == {row["borrower_id"] for row in book["loans"]}


def test_codes_booleans_money_and_dates_follow_the_schema(book):
    for spec in schema.CANONICAL_TABLES:
        for row in book[spec.name]:
            for column in spec.columns:
                value = row[column.name]
                if value == "":
                    assert not column.not_null, (spec.name, column.name)
                elif column.type is schema.ColumnType.CODE:
                    assert value in column.codes, (spec.name, column.name, value)
                elif column.type is schema.ColumnType.BOOLEAN:
                    assert value in ("0", "1"), (spec.name, column.name, value)
                elif column.type is schema.ColumnType.MONEY:
                    assert MONEY.match(value), (spec.name, column.name, value)
                elif column.type is schema.ColumnType.DATE:
                    date.fromisoformat(value)
                elif column.type is schema.ColumnType.INTEGER:
                    assert int(value) >= 0, (spec.name, column.name, value)


def test_loan_amounts_and_dates_are_coherent(book):
    as_of = demo.DEMO_AS_OF.isoformat()
    for loan in book["loans"]:
        assert Decimal(loan["outstanding_principal"]) <= Decimal(loan["principal"])
        assert loan["origination_date"] < as_of
        assert loan["origination_date"] < loan["maturity_date"]
        if loan["restructured_date"]:
            assert loan["origination_date"] < loan["restructured_date"] < as_of


# -- realism --------------------------------------------------------------------


def test_overdue_share_is_that_of_a_rural_book(book):
    overdue = sum(1 for loan in book["loans"] if int(loan["days_past_due"]) > 0)
    assert 0.08 <= overdue / len(book["loans"]) <= 0.25


def test_borrower_mix_and_loans_per_borrower(book):
    kinds = Counter(row["borrower_type"] for row in book["borrowers"])
    total = sum(kinds.values())
    assert 0.68 <= kinds["household"] / total <= 0.82
    assert 0.08 <= kinds["small_business"] / total <= 0.16
    assert kinds["enterprise"] > 0 and kinds["village_collective"] > 0
    assert 1.15 <= len(book["loans"]) / total <= 1.45


def test_guarantee_mix(book):
    kinds = Counter(loan["guarantee_type"] for loan in book["loans"])
    total = len(book["loans"])
    assert 0.33 <= kinds["credit"] / total <= 0.47
    assert 0.20 <= kinds["guarantee"] / total <= 0.30
    assert 0.24 <= kinds["mortgage"] / total <= 0.36
    assert 0.02 <= kinds["pledge"] / total <= 0.08


def test_some_loans_are_restructured_and_some_written_off(book):
    restructured = sum(1 for loan in book["loans"] if loan["restructured_date"])
    assert 0.01 <= restructured / len(book["loans"]) <= 0.06
    assert 1 <= sum(1 for loan in book["loans"] if loan["written_off"] == "1") <= 30


def test_some_loans_are_recorded_better_than_their_arrears_allow(book):
    overdue = [loan for loan in book["loans"] if int(loan["days_past_due"]) > 0]
    under = [
        loan
        for loan in overdue
        if schema.RISK_CLASSES.index(loan["recorded_class"]) < class_from_days_past_due(int(loan["days_past_due"]))
    ]
    assert 0.01 <= len(under) / len(overdue) <= 0.12


def test_some_village_collective_loans_are_overdue_for_years(book):
    collectives = {row["borrower_id"] for row in book["borrowers"] if row["borrower_type"] == "village_collective"}
    assert any(loan["borrower_id"] in collectives and int(loan["days_past_due"]) > 3 * 365 for loan in book["loans"])


def test_some_collateral_is_mortgaged_to_two_borrowers_at_the_same_rank(book):
    borrower_of = {loan["loan_id"]: loan["borrower_id"] for loan in book["loans"]}
    pledges_of = defaultdict(list)
    for pledge in book["pledges"]:
        pledges_of[pledge["collateral_id"]].append(pledge)
    repeated = [
        collateral
        for collateral, pledges in pledges_of.items()
        if len({borrower_of[p["loan_id"]] for p in pledges}) > 1 and len({p["lien_rank"] for p in pledges}) == 1
    ]
    assert 1 <= len(repeated) <= 0.03 * len(book["collateral"])


def test_collateral_problems_are_planted(book):
    numbers = Counter(row["registration_no"] for row in book["collateral"] if row["registration_no"])
    assert any(count > 1 for count in numbers.values())
    assert Counter(row["registration_status"] for row in book["collateral"]).keys() == {"registered", "pending", "none"}
    secured = {loan["loan_id"] for loan in book["loans"] if loan["guarantee_type"] in ("mortgage", "pledge")}
    missing = secured - {pledge["loan_id"] for pledge in book["pledges"]}
    assert 1 <= len(missing) <= 0.03 * len(secured)


def test_some_collections_are_in_cash(book):
    channels = Counter(row["channel"] for row in book["collections"])
    assert channels["cash"] >= 1
    assert channels["transfer"] > channels["cash"]


def test_resident_id_numbers_have_valid_check_digits(book):
    for borrower in book["borrowers"]:
        number = borrower["id_number"]
        assert RESIDENT_ID.match(number), number
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))  # a real birth date
        assert number[17] == mod11_2_check(number[:17]), number
    assert len({borrower["id_number"] for borrower in book["borrowers"]}) == len(book["borrowers"])


# -- history ---------------------------------------------------------------------


def test_history_cures_some_loans_and_ages_others(history):
    first, later = history[0], history[1]
    elapsed = 30
    before = {loan["loan_id"]: int(loan["days_past_due"]) for loan in first["loans"]}
    after = {loan["loan_id"]: int(loan["days_past_due"]) for loan in later["loans"]}
    both = before.keys() & after.keys()
    assert any(before[loan] > 0 and after[loan] == 0 for loan in both)
    worse = [loan for loan in both if before[loan] > 0 and after[loan] > 0]
    assert worse and all(after[loan] == before[loan] + elapsed for loan in worse)


def test_history_repays_old_loans_and_lends_new_ones(history):
    first, last = history[0], history[-1]
    before = {loan["loan_id"] for loan in first["loans"]}
    after = {loan["loan_id"] for loan in last["loans"]}
    assert before - after, "some loans repaid"
    assert after - before, "some loans new"
    assert all(
        loan["origination_date"] > demo.DEMO_AS_OF.isoformat()
        for loan in last["loans"]
        if loan["loan_id"] in after - before
    )


def test_history_revalues_collateral_some_down_by_a_fifth(history):
    before = {row["collateral_id"]: Decimal(row["appraised_value"]) for row in history[0]["collateral"]}
    after = {row["collateral_id"]: Decimal(row["appraised_value"]) for row in history[-1]["collateral"]}
    both = before.keys() & after.keys()
    assert any(after[c] != before[c] for c in both)
    assert any(after[c] <= before[c] * Decimal("0.8") for c in both)


def test_history_lends_only_before_each_as_of_date(history):
    for day, snapshot in zip(HISTORY_DATES, history, strict=True):
        assert all(loan["origination_date"] < day.isoformat() for loan in snapshot["loans"])


def test_history_snapshots_keep_referential_integrity(history):
    for snapshot in history:
        loan_ids = {row["loan_id"] for row in snapshot["loans"]}
        assert {row["borrower_id"] for row in snapshot["loans"]} <= {
            row["borrower_id"] for row in snapshot["borrowers"]
        }
        for table in ("pledges", "inspections", "collections", "documents"):
            assert {row["loan_id"] for row in snapshot[table]} <= loan_ids, table
        assert {row["collateral_id"] for row in snapshot["pledges"]} <= {
            row["collateral_id"] for row in snapshot["collateral"]
        }


def test_long_overdue_village_collectives_live_where_land_compensation_is_coming(history):
    """The planted moment to collect: the first two village collectives more than a year overdue live in
    villages whose land transfer is expected 75 and 85 days after the first as-of, in every snapshot alike."""
    first = HISTORY_DATES[0]
    planted = {(first + timedelta(days=75)).isoformat(), (first + timedelta(days=85)).isoformat()}
    villages = [{row["village"]: row for row in snapshot["villages"]} for snapshot in history]
    assert villages[0] == villages[1] == villages[2]  # static facts: every as-of agrees
    expecting = {name for name, row in villages[0].items() if row["land_transfer_expected_date"] in planted}
    assert len(expecting) == 2
    snapshot = history[0]
    collectives = {row["borrower_id"]: row["village"] for row in snapshot["borrowers"]
                   if row["borrower_type"] == "village_collective"}
    long_overdue = {collectives[row["borrower_id"]] for row in snapshot["loans"]
                    if row["borrower_id"] in collectives and int(row["days_past_due"] or 0) > 360}
    assert expecting <= long_overdue
