"""Monthly loanrules snapshots from the real Fannie Mae 2007 Q3 sample.

The sample (``shared/data/fannie_mae_2007q3/``, described in
``shared/data/README.md``) holds 10,000 acquisition rows and 10,000
performance rows (one per loan and reporting month) for 177 of those loans,
2007-07 to 2017-12. Each reporting month becomes one snapshot directory
``OUT/YYYY-MM-DD/`` (the as-of is the ``monthly_reporting_period``) with
``loans.csv``, ``borrowers.csv``, ``collateral.csv`` and ``pledges.csv`` in
the canonical format of DESIGN.md's snapshot contract.

The mapping (issue 3, item 5):

* ``days_past_due`` = ``current_loan_delinquency_status`` x 30 (the status
  counts monthly payments past due); 0 when the status is 0, blank,
  negative or the unknown ``X``.
* ``restructured_date`` = the first reporting month whose ``mod_flag`` is
  ``Y``, carried forward to every later month (Fannie Mae's "modified" is
  the cooperatives' "restructured").
* ``principal`` = ``orig_upb``; ``outstanding_principal`` =
  ``current_actual_upb`` when it is reported, else ``orig_upb``: Fannie Mae
  leaves the current UPB blank in a loan's first months (it is not disclosed
  then), and the original balance is the closest known figure.
* ``origination_date`` = ``orig_date`` and ``maturity_date`` = the
  performance row's ``maturity_date`` (both ``MM/YYYY``), as the first of the
  month.
* A loan with a ``zero_balance_code`` (01 prepaid, 03 short sale, 06
  repurchased, 09 deed-in-lieu/REO) has left the book: it is left out of that
  month's snapshot and of every later one. A loan missing from a month of the
  file (one loan has a four-month gap) is missing from that snapshot.
* Borrowers: one per loan, ``borrower_id`` = ``B`` + loan_id,
  ``borrower_type`` = ``household`` (individual mortgage borrowers: retail,
  classified loan by loan). ``guarantee_type`` = ``mortgage``.
* Collateral: the property, one ``house`` per loan, ``collateral_id`` = ``C``
  + loan_id, ``appraised_value`` = orig_upb / orig_ltv x 100 (exact decimal
  arithmetic, rounded half-up to the fen), appraised at origination,
  ``registration_status`` = ``registered`` (a recorded mortgage).
* Pledges: each loan on its house, ``lien_rank`` 1, ``secured_amount`` =
  ``orig_upb``.
* ``recorded_class`` is left empty: the classifier computes the classes.

Amounts are written with exactly two decimals. A few Fannie Mae columns that
mean something to a reader are kept as extra columns (the snapshot contract
keeps unknown columns as text): the raw delinquency status and mod flag, the
source of the outstanding balance, the interest rate, the property's type,
occupancy and state.

The data's terms belong to its publishers: internal testing only, no
republishing, never try to identify a borrower. This script reads local files
only and never downloads anything.

Usage::

    python examples/fannie_mae_snapshots.py --out OUT [--months N] [--first YYYY-MM] [--data DIR]

Standard library only, so it runs without loanrules installed.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import decimal
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ACQUISITION_FILE = "Acquisition_2007Q3.txt"
PERFORMANCE_FILE = "Performance_2007Q3.txt_0"

# Column positions in the pipe-delimited files (shared/data/README.md)
ACQUISITION_COLUMNS = (
    "loan_id", "orig_channel", "seller_name", "orig_interest_rate", "orig_upb", "orig_loan_term",
    "orig_date", "first_pay_date", "orig_ltv", "orig_cltv", "num_borrowers", "dti", "borrower_credit_score",
    "first_home_buyer", "loan_purpose", "property_type", "num_units", "occupancy_status", "property_state",
    "zip", "mortgage_insurance_percent", "product_type", "coborrow_credit_score", "mortgage_insurance_type",
    "relocation_mortgage_indicator",
)
PERFORMANCE_COLUMNS = (
    "loan_id", "monthly_reporting_period", "servicer", "interest_rate", "current_actual_upb", "loan_age",
    "remaining_months_to_legal_maturity", "adj_remaining_months_to_maturity", "maturity_date", "msa",
    "current_loan_delinquency_status", "mod_flag", "zero_balance_code", "zero_balance_effective_date",
)  # the 17 columns after these (foreclosure and disposition details) are not used

LOAN_COLUMNS = (
    "loan_id", "borrower_id", "product", "guarantee_type", "principal", "outstanding_principal",
    "origination_date", "maturity_date", "days_past_due", "restructured_date", "recorded_class",
    # extra columns, kept by the loader as text
    "interest_rate", "delinquency_status", "mod_flag", "outstanding_source",
)
BORROWER_COLUMNS = ("borrower_id", "borrower_type", "num_borrowers")
COLLATERAL_COLUMNS = (
    "collateral_id", "collateral_type", "owner_id", "appraised_value", "appraisal_date", "registration_status",
    "property_type", "occupancy_status", "property_state", "orig_ltv",
)
PLEDGE_COLUMNS = ("loan_id", "collateral_id", "lien_rank", "secured_amount")

DAYS_PER_MISSED_PAYMENT = 30
FEN = decimal.Decimal("0.01")
# Amounts up to 10^30 yuan stay exact: far more digits than any balance needs
_MONEY_CONTEXT = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation])


@dataclass(frozen=True)
class Acquisition:
    """The loan at origination (one row of the acquisition file)."""

    loan_id: str
    orig_upb: decimal.Decimal
    orig_date: datetime.date
    orig_ltv: decimal.Decimal
    orig_loan_term: str
    product_type: str
    num_borrowers: str
    property_type: str
    occupancy_status: str
    property_state: str


@dataclass(frozen=True)
class MonthlyRecord:
    """One loan in one reporting month (one row of the performance file)."""

    loan_id: str
    as_of: datetime.date
    interest_rate: str
    current_actual_upb: decimal.Decimal | None
    maturity_date: datetime.date
    delinquency_status: str
    mod_flag: str
    zero_balance_code: str


@dataclass
class Snapshot:
    """The four tables of one month, as rows of CSV text keyed by canonical column name."""

    as_of: datetime.date
    loans: list[dict[str, str]]
    borrowers: list[dict[str, str]]
    collateral: list[dict[str, str]]
    pledges: list[dict[str, str]]


# ---------------------------------------------------------------- field conversions


def days_past_due(delinquency_status: str) -> int:
    """Missed monthly payments x 30; 0 for current (0), blank, negative or unknown ('X') statuses."""
    text = delinquency_status.strip()
    try:
        payments = int(decimal.Decimal(text))
    except (decimal.InvalidOperation, ValueError):
        return 0  # blank or 'X': unknown, not overdue as far as the file says
    return payments * DAYS_PER_MISSED_PAYMENT if payments > 0 else 0


def month_start(mm_yyyy: str) -> datetime.date:
    """``MM/YYYY`` -> the first of that month."""
    month, year = mm_yyyy.strip().split("/")
    return datetime.date(int(year), int(month), 1)


def reporting_date(mm_dd_yyyy: str) -> datetime.date:
    """``MM/DD/YYYY`` (the monthly reporting period) -> a date."""
    month, day, year = mm_dd_yyyy.strip().split("/")
    return datetime.date(int(year), int(month), int(day))


def amount(text: str) -> decimal.Decimal | None:
    """A balance written as a float (``128000``, ``121689.81``, ``228000.0``) -> an exact Decimal; blank -> None."""
    text = text.strip()
    return decimal.Decimal(text) if text else None


def money(value: decimal.Decimal) -> str:
    """Decimal yuan with exactly two decimals, rounded half-up to the fen."""
    return str(value.quantize(FEN, context=_MONEY_CONTEXT))


def appraised_value(orig_upb: decimal.Decimal, orig_ltv: decimal.Decimal) -> decimal.Decimal:
    """The property's value at origination: orig_upb / orig_ltv x 100, to the fen."""
    value = _MONEY_CONTEXT.divide(_MONEY_CONTEXT.multiply(orig_upb, 100), orig_ltv)
    return value.quantize(FEN, context=_MONEY_CONTEXT)


# ---------------------------------------------------------------- reading the files


def _pipe_rows(path: Path, columns: Sequence[str]) -> Iterator[dict[str, str]]:
    with open(path, encoding="ascii", newline="") as handle:
        for line_number, line in enumerate(handle, 1):
            fields = line.rstrip("\r\n").split("|")
            if len(fields) < len(columns):
                raise ValueError(f"{path}:{line_number}: {len(fields)} fields, expected at least {len(columns)}")
            yield dict(zip(columns, fields))


def read_acquisitions(path: Path) -> dict[str, Acquisition]:
    """Every loan of the acquisition file, by loan_id."""
    result = {}
    for row in _pipe_rows(path, ACQUISITION_COLUMNS):
        result[row["loan_id"]] = Acquisition(
            loan_id=row["loan_id"],
            orig_upb=amount(row["orig_upb"]),
            orig_date=month_start(row["orig_date"]),
            orig_ltv=amount(row["orig_ltv"]),
            orig_loan_term=row["orig_loan_term"].strip(),
            product_type=row["product_type"].strip(),
            num_borrowers=row["num_borrowers"].strip(),
            property_type=row["property_type"].strip(),
            occupancy_status=row["occupancy_status"].strip(),
            property_state=row["property_state"].strip(),
        )
    return result


def read_performance(path: Path) -> Iterator[MonthlyRecord]:
    """The performance file, row by row, in file order."""
    for row in _pipe_rows(path, PERFORMANCE_COLUMNS):
        yield MonthlyRecord(
            loan_id=row["loan_id"],
            as_of=reporting_date(row["monthly_reporting_period"]),
            interest_rate=row["interest_rate"].strip(),
            current_actual_upb=amount(row["current_actual_upb"]),
            maturity_date=month_start(row["maturity_date"]),
            delinquency_status=row["current_loan_delinquency_status"].strip(),
            mod_flag=row["mod_flag"].strip().upper(),
            zero_balance_code=row["zero_balance_code"].strip(),
        )


# ---------------------------------------------------------------- building the snapshots


def build_snapshots(acquisitions: dict[str, Acquisition], records: Iterable[MonthlyRecord]) -> list[Snapshot]:
    """One snapshot per reporting month, oldest first, with the loans on the book that month."""
    by_loan: dict[str, list[MonthlyRecord]] = {}
    for record in records:
        if record.loan_id not in acquisitions:
            raise ValueError(f"loan {record.loan_id} has performance rows but no acquisition row")
        by_loan.setdefault(record.loan_id, []).append(record)

    snapshots: dict[datetime.date, Snapshot] = {}
    for loan_id in sorted(by_loan):
        acquisition = acquisitions[loan_id]
        restructured: datetime.date | None = None
        for record in sorted(by_loan[loan_id], key=lambda r: r.as_of):
            snapshot = snapshots.get(record.as_of)
            if snapshot is None:
                snapshot = snapshots[record.as_of] = Snapshot(record.as_of, [], [], [], [])
            if record.zero_balance_code:
                break  # paid off, sold or disposed of: off the book from this month on
            if record.mod_flag == "Y" and restructured is None:
                restructured = record.as_of
            _add_loan(snapshot, acquisition, record, restructured)
    return [snapshots[as_of] for as_of in sorted(snapshots)]


def _add_loan(snapshot: Snapshot, acquisition: Acquisition, record: MonthlyRecord,
              restructured: datetime.date | None) -> None:
    loan_id = acquisition.loan_id
    borrower_id, collateral_id = f"B{loan_id}", f"C{loan_id}"
    reported = record.current_actual_upb is not None
    outstanding = record.current_actual_upb if reported else acquisition.orig_upb
    snapshot.loans.append({
        "loan_id": loan_id,
        "borrower_id": borrower_id,
        "product": f"{acquisition.product_type.lower()}_{acquisition.orig_loan_term.split('.')[0]}m",
        "guarantee_type": "mortgage",
        "principal": money(acquisition.orig_upb),
        "outstanding_principal": money(outstanding),
        "origination_date": acquisition.orig_date.isoformat(),
        "maturity_date": record.maturity_date.isoformat(),
        "days_past_due": str(days_past_due(record.delinquency_status)),
        "restructured_date": restructured.isoformat() if restructured else "",
        "recorded_class": "",
        "interest_rate": record.interest_rate,
        "delinquency_status": record.delinquency_status,
        "mod_flag": record.mod_flag,
        "outstanding_source": "current_actual_upb" if reported else "orig_upb",
    })
    snapshot.borrowers.append({
        "borrower_id": borrower_id,
        "borrower_type": "household",
        "num_borrowers": acquisition.num_borrowers.split(".")[0],
    })
    snapshot.collateral.append({
        "collateral_id": collateral_id,
        "collateral_type": "house",
        "owner_id": borrower_id,
        "appraised_value": money(appraised_value(acquisition.orig_upb, acquisition.orig_ltv)),
        "appraisal_date": acquisition.orig_date.isoformat(),
        "registration_status": "registered",
        "property_type": acquisition.property_type,
        "occupancy_status": acquisition.occupancy_status,
        "property_state": acquisition.property_state,
        "orig_ltv": format(acquisition.orig_ltv.normalize(), "f"),
    })
    snapshot.pledges.append({
        "loan_id": loan_id,
        "collateral_id": collateral_id,
        "lien_rank": "1",
        "secured_amount": money(acquisition.orig_upb),
    })


# ---------------------------------------------------------------- writing


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """``directory/YYYY-MM-DD/`` with the four CSV files; returns that folder."""
    folder = Path(directory) / snapshot.as_of.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "loans.csv", LOAN_COLUMNS, snapshot.loans)
    _write_csv(folder / "borrowers.csv", BORROWER_COLUMNS, snapshot.borrowers)
    _write_csv(folder / "collateral.csv", COLLATERAL_COLUMNS, snapshot.collateral)
    _write_csv(folder / "pledges.csv", PLEDGE_COLUMNS, snapshot.pledges)
    return folder


def select_months(snapshots: Sequence[Snapshot], first: str | None = None,
                  months: int | None = None) -> list[Snapshot]:
    """The snapshots from month ``first`` (``YYYY-MM``, default: the earliest), at most ``months`` of them."""
    if first is not None:
        try:
            start = datetime.datetime.strptime(first, "%Y-%m").date()
        except ValueError:
            raise ValueError(f"--first {first!r}: expected YYYY-MM") from None
        snapshots = [s for s in snapshots if s.as_of >= start]
    if months is not None:
        if months < 1:
            raise ValueError(f"--months {months}: expected a positive number")
        snapshots = snapshots[:months]
    return list(snapshots)


def default_data_dir() -> Path:
    """``$LOANRULES_SHARED_DATA/fannie_mae_2007q3``, else ``shared/data/`` beside the repository."""
    shared = os.environ.get("LOANRULES_SHARED_DATA")
    base = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "fannie_mae_2007q3"


def write_snapshots(out: Path, data_dir: Path | None = None, *, first: str | None = None,
                    months: int | None = None) -> list[Path]:
    """Read the sample in ``data_dir`` and write the selected months under ``out``; returns the folders."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    acquisitions = read_acquisitions(data_dir / ACQUISITION_FILE)
    snapshots = build_snapshots(acquisitions, read_performance(data_dir / PERFORMANCE_FILE))
    return [write_snapshot(Path(out), snapshot) for snapshot in select_months(snapshots, first, months)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Turn the Fannie Mae 2007 Q3 sample into monthly loanrules snapshot directories "
                    "OUT/YYYY-MM-DD/ (internal testing only: see examples/README.md).")
    parser.add_argument("--out", required=True, type=Path, help="directory to write the month folders into")
    parser.add_argument("--months", type=int, help="how many consecutive reporting months (default: all)")
    parser.add_argument("--first", metavar="YYYY-MM", help="the first reporting month (default: the earliest)")
    parser.add_argument("--data", type=Path, help="the fannie_mae_2007q3 folder (default: shared/data beside "
                                                  "the repository, or $LOANRULES_SHARED_DATA)")
    args = parser.parse_args(argv)
    data_dir = args.data or default_data_dir()
    if not (data_dir / PERFORMANCE_FILE).is_file() or not (data_dir / ACQUISITION_FILE).is_file():
        parser.error(f"{data_dir}: no {ACQUISITION_FILE} and {PERFORMANCE_FILE} there (use --data)")
    try:
        folders = write_snapshots(args.out, data_dir, first=args.first, months=args.months)
    except ValueError as error:
        parser.error(str(error))
    for folder in folders:
        with open(folder / "loans.csv", encoding="utf-8") as handle:
            loans = sum(1 for _ in handle) - 1
        print(f"{folder}\t{loans} loans")
    if not folders:
        print("no reporting month selected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
