"""Exports for regulators: the XLSX workbook of a run, and `loanrules diff` between two runs."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import sqlite3
import textwrap
import types
import zipfile
from decimal import Decimal
from fractions import Fraction

import openpyxl
import pytest
from click.testing import CliRunner
from conftest import AS_OF, borrower, invoke, loan, query, write_snapshot

from loanrules import demo, results, workbook
from loanrules.model import format_fen
from loanrules.privacy import Masker

NAME_PLUGIN = textwrap.dedent('''
    from loanrules import Check, Pack, hookimpl

    @hookimpl
    def register_checks(register):
        register(Check(id="test.named", title="names the borrower", severity="info", tables=("loans", "borrowers"),
                       sql="SELECT l.loan_id, l.borrower_id, 'see details' AS message, "
                           "json_object('name', b.name, 'id_number', b.id_number) AS details "
                           "FROM loans l JOIN borrowers b USING (borrower_id) WHERE l.loan_id <= 'LN00000005'"))

    @hookimpl
    def register_packs(register):
        register(Pack(name="named", version="1", title="n", members=["test.named"]))
''')
SUMMARIES = ["collateral.agency_scorecard", "collateral.coverage_by_type", "collection.key_households"]


# ------------------------------------------------------------ the workbook

@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """One night of a 300-loan demo cooperative, every pack plus one naming borrowers in its details."""
    base = tmp_path_factory.mktemp("book")
    plugins = base / "plugins"
    plugins.mkdir()
    (plugins / "named.py").write_text(NAME_PLUGIN)
    snapshot = base / "snapshot"
    demo.write_snapshot(snapshot, loans=300)
    db = base / "results.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOANRULES_LOAD_PLUGINS", "")
        result = invoke(CliRunner(), "--plugins-dir", plugins, "run", snapshot, "--as-of", AS_OF, "--db", db, "-q")
        assert result.exit_code == 0, result.output
    show = base / "show.toml"
    show.write_text("[privacy]\nshow_personal_data = true\n")
    return types.SimpleNamespace(db=db, plugins=plugins, show=show, base=base)


def export_workbook(runner, book, path, *args):
    result = invoke(runner, "--plugins-dir", book.plugins, "export", "workbook", "--db", book.db, "-o", path, *args)
    assert result.exit_code == 0, result.output
    return openpyxl.load_workbook(path)


@pytest.fixture(scope="module")
def masked(book):
    path = book.base / "masked.xlsx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOANRULES_LOAD_PLUGINS", "")
        return path, export_workbook(CliRunner(), book, path)


def cells(sheet, row: int) -> list:
    return [cell.value for cell in sheet[row]]


def column(sheet, name: str) -> int:
    """1-based index of a heading in row 1."""
    return cells(sheet, 1).index(name) + 1


def provenance(wb) -> dict:
    """The run sheet's fields, down to the blank row before its contents."""
    fields = {}
    for field, value in wb["run"].iter_rows(min_row=2, max_col=2, values_only=True):
        if field is None:
            break
        fields[field] = value
    return fields


def raw_xml_value(path, sheet_index: int, ref: str) -> str:
    """The text of a number cell as stored in the file (XlsxWriter numbers its sheets in order from 1)."""
    with zipfile.ZipFile(path) as archive:
        xml = archive.read(f"xl/worksheets/sheet{sheet_index}.xml").decode()
    return re.search(rf'<c r="{ref}"[^>]*><v>([^<]*)</v>', xml).group(1)


def test_workbook_has_the_run_first_then_the_exports_and_each_summary(book, masked):
    path, wb = masked
    assert wb.sheetnames[:7] == ["run", "findings", "assessments", "tasks", *SUMMARIES]
    assert all(len(name) <= 31 for name in wb.sheetnames)
    assert len({name.lower() for name in wb.sheetnames}) == len(wb.sheetnames)
    run = query(book.db, "SELECT run_id, cooperative, as_of, status, snapshot_sha256, loanrules_version FROM runs")[0]
    fields = provenance(wb)
    assert (fields["run_id"], fields["cooperative"], fields["status"], fields["snapshot_sha256"],
            fields["loanrules_version"]) == (run[0], run[1], run[3], run[4], run[5])
    assert fields["as_of"] == datetime.datetime(2026, 11, 27)  # a date, not text
    assert fields["packs"] == "cn-five-category@1.1.0, cooperative-baseline@1.1.0, data-quality@1.0.0, named@1"
    assert fields["config_sha256"].startswith("(no config file")
    assert fields["personal_data"] == "names and ID numbers masked"
    # the contents below the provenance: every other sheet with its row count
    contents = list(wb["run"].iter_rows(values_only=True))
    start = [row[0] for row in contents].index("sheet")
    listed = {row[0]: row[1] for row in contents[start + 1:]}
    assert list(listed) == wb.sheetnames[1:]
    (findings,) = query(book.db, "SELECT count(*) FROM findings")[0]
    assert listed["findings"] == findings == wb["findings"].max_row - 1


def test_header_row_is_bold_frozen_and_filtered_with_the_export_columns(masked):
    _, wb = masked
    for what in ("findings", "assessments", "tasks"):
        sheet = wb[what]
        assert tuple(cells(sheet, 1)) == results.export_columns(what)
        assert all(cell.font.b for cell in sheet[1])
        assert sheet.freeze_panes == "A2"
        last = openpyxl.utils.get_column_letter(len(results.export_columns(what)))
        assert sheet.auto_filter.ref == f"A1:{last}{sheet.max_row}"
    assert "explanation" in cells(wb["assessments"], 1)
    assert wb["findings"].column_dimensions["G"].width > 20  # the message column is wide enough to read


def test_money_is_an_exact_number_of_yuan_with_a_two_decimal_format(book, masked):
    path, wb = masked
    sheet = wb["assessments"]
    loan_id, fen = query(book.db, "SELECT loan_id, required_provision FROM assessments "
                                  "WHERE required_provision % 100 != 0 ORDER BY rowid LIMIT 1")[0]
    row = [r[0].row for r in sheet.iter_rows(min_row=2) if r[1].value == loan_id][0]
    cell = sheet.cell(row, column(sheet, "required_provision"))
    assert cell.value == float(Decimal(format_fen(fen))) and cell.number_format == "#,##0.00"
    # the file holds the decimal text of the fen itself, no float arithmetic in between
    assert raw_xml_value(path, wb.sheetnames.index("assessments") + 1, cell.coordinate) == format_fen(fen)
    # summaries: *_fen columns leave as *_yuan
    households = wb["collection.key_households"]
    assert "exposure_yuan" in cells(households, 1) and "exposure_fen" not in cells(households, 1)
    stored = json.loads(query(book.db, "SELECT data FROM summaries WHERE summary_id = 'collection.key_households' "
                                       "ORDER BY row_no LIMIT 1")[0][0])
    exposure = households.cell(2, column(households, "exposure_yuan"))
    assert exposure.number_format == "#,##0.00"
    assert raw_xml_value(path, wb.sheetnames.index("collection.key_households") + 1,
                         exposure.coordinate) == format_fen(stored["exposure_fen"])


def test_dates_are_dates_and_shares_percentages(masked):
    _, wb = masked
    findings = wb["findings"]
    first_seen = findings.cell(2, column(findings, "first_seen"))
    assert first_seen.value == datetime.datetime(2026, 11, 27) and first_seen.number_format == "yyyy-mm-dd"
    tasks = wb["tasks"]
    due = tasks.cell(2, column(tasks, "due_date"))
    assert isinstance(due.value, datetime.datetime) and due.number_format == "yyyy-mm-dd"
    opened = tasks.cell(2, column(tasks, "opened_on"))  # the task's lifecycle: a date too
    assert opened.value == datetime.datetime(2026, 11, 27) and opened.number_format == "yyyy-mm-dd"
    coverage = wb["collateral.coverage_by_type"]
    share = coverage.cell(2, column(coverage, "coverage_share"))
    assert isinstance(share.value, float) and share.number_format == "0.00%"


def test_summary_sheets_hold_every_stored_row(book, masked):
    _, wb = masked
    for summary_id in SUMMARIES:
        (rows,) = query(book.db, "SELECT count(*) FROM summaries WHERE summary_id = ?", (summary_id,))[0]
        assert wb[summary_id].max_row - 1 == rows > 0


def _named_details(wb) -> list[dict]:
    sheet = wb["findings"]
    check, details = column(sheet, "check_id"), column(sheet, "details")
    return [json.loads(row[details - 1]) for row in sheet.iter_rows(min_row=2, values_only=True)
            if row[check - 1] == "test.named"]


def test_names_and_id_numbers_are_masked_by_default(book, masked):
    path, wb = masked
    names = dict(query(book.db, "SELECT borrower_id, name FROM borrowers"))
    id_numbers = dict(query(book.db, "SELECT borrower_id, id_number FROM borrowers"))
    details = _named_details(wb)
    assert len(details) == 5
    for item in details:
        assert "*" in item["name"] and "*" in item["id_number"]
    with zipfile.ZipFile(path) as archive:
        text = "".join(archive.read(name).decode() for name in archive.namelist() if name.endswith(".xml"))
    assert not any(name in text for name in names.values() if len(name) > 1)
    assert not any(number in text for number in id_numbers.values())
    # an appraisal agency's name is no borrower's: the scorecard keeps it (a column of its own, appraiser_name)
    agencies = {name for (name,) in query(book.db, "SELECT name FROM appraisers")}
    scorecard = wb["collateral.agency_scorecard"]
    assert {row[1] for row in scorecard.iter_rows(min_row=2, values_only=True)} <= agencies


def test_config_shows_personal_data(runner, book, tmp_path):
    wb = export_workbook(runner, book, tmp_path / "shown.xlsx", "--config", book.show)
    names = set(dict(query(book.db, "SELECT borrower_id, name FROM borrowers")).values())
    details = _named_details(wb)
    assert details and all(item["name"] in names and "*" not in item["id_number"] for item in details)
    assert provenance(wb)["personal_data"].startswith("shown in full")


def test_workbook_needs_an_output_file_and_takes_no_format(runner, book):
    result = invoke(runner, "export", "workbook", "--db", book.db)
    assert result.exit_code == 2 and "-o FILE.xlsx" in result.output
    result = invoke(runner, "export", "workbook", "--db", book.db, "-o", book.base / "x.xlsx", "--format", "json")
    assert result.exit_code == 2 and "always XLSX" in result.output
    assert not (book.base / "x.xlsx").exists()
    result = invoke(runner, "export", "workbook", "--db", book.db, "-o", book.base / "nowhere" / "x.xlsx")
    assert result.exit_code == 2 and "no such directory" in result.output


def test_generic_sheets_valid_names_types_and_continuation_past_the_row_limit(tmp_path):
    path = tmp_path / "generic.xlsx"
    writer = workbook.WorkbookWriter(path, max_rows=3)  # a header and two rows a sheet
    long_name = "a very long summary id that goes past thirty-one characters"
    writer.add(workbook.Sheet("odd:name/[x]?", ("n",), [(1,)]))
    writer.add(workbook.Sheet(long_name, ("n",), [(1,)]))
    writer.add(workbook.Sheet(long_name.upper(), ("n",), [(2,)]))  # same name but for case
    written = writer.add(workbook.Sheet("rows", ("label", "amount_fen", "paid_yuan", "due_date", "rate_share", "x"), [
        {"label": "=1+1", "amount_fen": -5, "paid_yuan": "1234.56", "due_date": "2026-02-30",
         "rate_share": Fraction(1, 3)},
        ("plain", 123456789, None, "2026-11-27", 0.25, True),
        ("third", 0, "not money", None, None, None),
        ("fourth", 1, "0.01", "2026-01-01", None, None),
        ("fifth", 2, "0.02", "2026-01-02", None, None),
    ]))
    writer.close()
    assert [(w.name, w.rows) for w in written] == [("rows", 2), ("rows (2)", 2), ("rows (3)", 1)]
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["odd_name__x__", long_name[:31], long_name.upper()[:29] + "~2",
                             "rows", "rows (2)", "rows (3)"]
    sheet = wb["rows"]
    assert cells(sheet, 1) == ["label", "amount_yuan", "paid_yuan", "due_date", "rate_share", "x"]
    first, second = sheet[2], sheet[3]
    assert first[0].value == "=1+1" and first[0].data_type == "s"  # text, never a formula
    assert (first[1].value, first[1].number_format) == (-0.05, "#,##0.00")
    assert (first[2].value, first[2].number_format) == (1234.56, "#,##0.00")
    assert first[3].value == "2026-02-30"  # no such day: kept as the text it was
    assert first[4].value == pytest.approx(1 / 3) and first[4].number_format == "0.00%"
    assert second[1].value == 1234567.89 and second[2].value is None
    assert second[3].value == datetime.datetime(2026, 11, 27) and second[5].value is True
    assert wb["rows (2)"]["C2"].value == "not money"
    assert cells(wb["rows (3)"], 1)[0] == "label" and wb["rows (3)"]["A2"].value == "fifth"


def test_a_failed_workbook_leaves_no_file(book, tmp_path):
    def rows():
        yield ("one",)
        raise RuntimeError("the database went away")

    conn = results.open_results(book.db)
    run = results.resolve_run(conn, None)
    path = tmp_path / "broken.xlsx"
    with pytest.raises(RuntimeError):
        workbook.write_run_workbook(conn, run, Masker(frozenset()), path,
                                    extra=[workbook.Sheet("broken", ("a",), rows())])
    assert list(tmp_path.iterdir()) == []


def report_table(sheet_name, columns, rows, kinds, title=""):
    """A stand-in for the report's ``ReportTable``: what the workbook reads of it."""
    return types.SimpleNamespace(sheet_name=sheet_name, title=title, columns=columns, rows=rows, kinds=kinds)


def test_report_tables_come_from_the_report(book, tmp_path, monkeypatch):
    table = report_table("npl_by_branch", ("branch", "npl_outstanding_fen", "npl_share"), (("BR01", 123456, 0.5),),
                         ("text", "money", "share"), title="Where NPLs come from: by branch")

    def report_tables(conn, run, masker, titles=None):
        return [report_table("plain", ("a", "b"), [(1, "x")], ("count", "text")), table]

    monkeypatch.setattr("loanrules.report.data.report_tables", report_tables)
    conn = results.open_results(book.db)
    written = workbook.write_run_workbook(conn, results.resolve_run(conn, None), Masker(frozenset()),
                                          tmp_path / "r.xlsx")
    assert [w.name for w in written][-2:] == ["plain", "npl_by_branch"]
    assert written[-1].source == "report table npl_by_branch: Where NPLs come from: by branch"
    assert written[-2].source == "report table plain"  # no title, no colon
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx")["npl_by_branch"]
    assert cells(sheet, 1) == ["branch", "npl_outstanding_yuan", "npl_share"]
    assert (sheet["B2"].value, sheet["B2"].number_format, sheet["C2"].number_format) == (1234.56, "#,##0.00", "0.00%")


def test_report_tables_that_repeat_a_summary_are_left_out_of_the_workbook(book, masked):
    """The report shows three stored summaries again as tables: the workbook has them once, as the summary's
    sheet; `export report-tables` (the report's tables alone) still has them."""
    _, wb = masked
    conn = results.open_results(book.db)
    report = [sheet.name for sheet in workbook.report_sheets(conn, results.resolve_run(conn, None),
                                                             Masker(frozenset()))]
    assert workbook.SUMMARY_REPORT_TABLES <= set(report)  # the report builds them from this book's summaries
    assert not workbook.SUMMARY_REPORT_TABLES & set(wb.sheetnames)
    assert all(name in wb.sheetnames for name in SUMMARIES)
    others = [name for name in report if name not in workbook.SUMMARY_REPORT_TABLES]
    assert others and wb.sheetnames[-len(others):] == others  # the report's other tables, after the summaries
    contents = list(wb["run"].iter_rows(values_only=True))
    start = [row[0] for row in contents].index("sheet")
    listed = [row[2] for row in contents[start + 1:] if row[0] in others]
    assert len(listed) == len(others) and all(holds.startswith("report table ") for holds in listed)


def test_report_tables_export_as_csv_files_and_json(runner, book, tmp_path, monkeypatch):
    table = report_table("npl_by_branch", ("branch", "npl_outstanding_fen", "npl_share"),
                         (("BR01", 123456, Fraction(1, 4)),), ("text", "money", "share"), title="by branch")
    tables = [table]
    monkeypatch.setattr("loanrules.report.data.report_tables", lambda conn, run, masker, titles=None: tables)
    result = invoke(runner, "export", "report-tables", "--db", book.db, "-o", tmp_path / "tables")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tables" / "npl_by_branch.csv").read_text().splitlines() == [
        "branch,npl_outstanding_yuan,npl_share", "BR01,1234.56,0.25"]
    data = json.loads(invoke(runner, "export", "report-tables", "--db", book.db, "--format", "json").output)
    assert data["tables"][0]["rows"] == [{"branch": "BR01", "npl_outstanding_yuan": "1234.56", "npl_share": 0.25}]
    assert invoke(runner, "export", "report-tables", "--db", book.db).exit_code == 2  # CSV files need -o DIR
    # a summary's table is no duplicate here: report-tables is the report's tables alone
    tables.append(report_table("agency_scorecard", ("appraiser_id",), (("AP1",),), ("text",)))
    data = json.loads(invoke(runner, "export", "report-tables", "--db", book.db, "--format", "json").output)
    assert [t["id"] for t in data["tables"]] == ["npl_by_branch", "agency_scorecard"]
    tables.clear()  # a report with no tables: an empty document, no error
    result = invoke(runner, "export", "report-tables", "--db", book.db, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.output)["tables"] == []


@pytest.mark.parametrize("args", [
    ("findings", "-o", "{missing}/findings.csv"),
    ("tasks", "--format", "json", "-o", "{missing}/tasks.json"),
    ("report-tables", "--format", "json", "-o", "{missing}/tables.json"),
    ("report-tables", "-o", "{file}/tables"),  # its directory cannot be made under a file
])
def test_a_file_that_cannot_be_written_is_a_one_line_error(runner, book, tmp_path, args):
    (tmp_path / "a-file").write_text("x")
    args = [arg.format(missing=tmp_path / "missing", file=tmp_path / "a-file") for arg in args]
    result = invoke(runner, "export", *args, "--db", book.db)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: cannot write {args[-1]}: ") and "internal error" not in line
    assert not (tmp_path / "missing").exists()


# ------------------------------------------------------------ diff

OLDER_AS_OF = "2026-10-31"
PEOPLE = [borrower("B1", name="张三丰"), borrower("B2", name="李四光"), borrower("B3", name="王五"),
          borrower("B4", name="赵六")]


def night1(directory):
    return write_snapshot(directory, borrowers=PEOPLE, loans=[
        loan("L1", "B1", outstanding_principal="100000.01"),  # critical: outstanding exceeds principal
        loan("L2", "B2", outstanding_principal="50000.00", interest_arrears="10.00"),  # warning: arrears
        loan("L3", "B3", recorded_class="substandard", outstanding_principal="30000.00",
             maturity_date="2026-01-01"),  # critical: matured, not overdue
        loan("L4", "B4", recorded_class="doubtful", outstanding_principal="20000.00"),
        loan("L5", "B1", outstanding_principal="10000.00"),
        loan("L6", "B2", recorded_class="substandard", outstanding_principal="15000.00"),
        loan("L8", "B3", written_off="1"),
        loan("L9", "B4", recorded_class="", outstanding_principal="5000.00"),
    ])


def night2(directory):
    return write_snapshot(directory, borrowers=PEOPLE, loans=[
        loan("L1", "B1", outstanding_principal="79000.00"),
        loan("L2", "B2", recorded_class="special_mention", outstanding_principal="49000.00", interest_arrears="10.00"),
        loan("L3", "B3", outstanding_principal="30000.00"),
        loan("L4", "B4", recorded_class="loss", outstanding_principal="20000.00", interest_arrears="5.00"),
        loan("L6", "B2", recorded_class="substandard", outstanding_principal="15000.00", written_off="1"),
        loan("L7", "B1", recorded_class="special_mention", principal="12000.00", outstanding_principal="12345.67"),
        loan("L8", "B3", written_off="1"),
        loan("L9", "B4", outstanding_principal="5000.00"),
    ])


@pytest.fixture
def nights(tmp_path, runner):
    """Two nights of one cooperative, recorded classes only (data-quality: no classifier)."""
    db = tmp_path / "results.db"
    for snapshot, as_of in ((night1(tmp_path / "n1"), OLDER_AS_OF), (night2(tmp_path / "n2"), AS_OF)):
        result = invoke(runner, "run", snapshot, "--as-of", as_of, "--db", db, "--pack", "data-quality", "-q")
        assert result.exit_code == 0, result.output
    return db


def diff_json(runner, db, *args):
    result = invoke(runner, "diff", "--db", db, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_transition_matrix_by_loan_with_new_and_gone(runner, nights):
    data = diff_json(runner, nights, "1", "2")
    migrations = data["class_migrations"]
    assert migrations["basis"] == {"older": "recorded", "newer": "recorded"}
    assert {(c["from"], c["to"]): (c["loans"], c["outstanding_yuan"]) for c in migrations["matrix"]} == {
        ("normal", "normal"): (1, "79000.00"),  # L1, at the newer outstanding
        ("normal", "special_mention"): (1, "49000.00"),  # L2
        ("normal", "gone"): (1, "10000.00"),  # L5 left the book, at its older outstanding
        ("substandard", "normal"): (1, "30000.00"),  # L3
        ("substandard", "gone"): (1, "15000.00"),  # L6 written off
        ("doubtful", "loss"): (1, "20000.00"),  # L4
        ("unknown", "normal"): (1, "5000.00"),  # L9 had no recorded class; L8 is off both books
        ("new", "special_mention"): (1, "12345.67"),  # L7
    }
    assert migrations["rows"] == ["normal", "substandard", "doubtful", "unknown", "new"]
    assert migrations["columns"] == ["normal", "special_mention", "loss", "gone"]
    assert migrations["new"] == {"loans": 1, "outstanding_yuan": "12345.67"}
    assert migrations["gone"] == {"loans": 2, "outstanding_yuan": "25000.00"}
    assert migrations["gone_written_off"] == {"loans": 1, "outstanding_yuan": "15000.00"}


def test_upgrades_and_downgrades_listed_largest_first_with_names_masked(runner, nights, tmp_path):
    migrations = diff_json(runner, nights)["class_migrations"]
    assert [(m["loan_id"], m["from_class"], m["to_class"], m["outstanding_yuan"], m["name"])
            for m in migrations["downgrades"]] == [("L2", "normal", "special_mention", "49000.00", "李**"),
                                                   ("L4", "doubtful", "loss", "20000.00", "赵*")]
    assert [(m["loan_id"], m["borrower_id"], m["to_class"]) for m in migrations["upgrades"]] == [("L3", "B3", "normal")]
    show = tmp_path / "show.toml"
    show.write_text("[privacy]\nshow_personal_data = true\n")
    shown = diff_json(runner, nights, "--config", show)["class_migrations"]
    assert [m["name"] for m in shown["downgrades"]] == ["李四光", "赵六"]


def test_findings_new_and_resolved_per_check_and_per_severity(runner, nights):
    data = diff_json(runner, nights, "1", "2")
    assert (data["older"], data["newer"]) == (1, 2)
    assert [(r["check_id"], r["loan_id"]) for r in data["new"]] == [
        ("data.interest_arrears_not_overdue", "L4"), ("data.outstanding_exceeds_principal", "L7")]
    assert [(r["check_id"], r["loan_id"]) for r in data["resolved"]] == [
        ("data.matured_not_overdue", "L3"), ("data.outstanding_exceeds_principal", "L1")]
    assert {r["check_id"]: (r["new"], r["resolved"], r["persisting"]) for r in data["per_check"]} == {
        "data.interest_arrears_not_overdue": (1, 0, 1), "data.matured_not_overdue": (0, 1, 0),
        "data.outstanding_exceeds_principal": (1, 1, 0)}
    assert [(r["severity"], r["new"], r["resolved"], r["persisting"]) for r in data["per_severity"]] == [
        ("critical", 1, 2, 0), ("warning", 1, 0, 1)]


def test_check_filter_narrows_the_findings_not_the_migrations(runner, nights):
    data = diff_json(runner, nights, "--check", "data.outstanding_exceeds_principal")
    assert [r["loan_id"] for r in data["new"]] == ["L7"] and [r["loan_id"] for r in data["resolved"]] == ["L1"]
    assert [r["check_id"] for r in data["per_check"]] == ["data.outstanding_exceeds_principal"]
    assert [(r["severity"], r["new"], r["resolved"], r["persisting"]) for r in data["per_severity"]] == [
        ("critical", 1, 1, 0)]
    assert data["check_filter"] == ["data.outstanding_exceeds_principal"]
    assert len(data["class_migrations"]["matrix"]) == 8
    prefix = diff_json(runner, nights, "--check", "data")
    assert len(prefix["new"]) == 2 and len(prefix["resolved"]) == 2


def test_csv_lists_the_changed_findings_with_a_change_column(runner, nights):
    result = invoke(runner, "diff", "--db", nights, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert list(rows[0]) == ["change", "check_id", "severity", "loan_id", "borrower_id", "collateral_id", "message",
                             "details", "first_seen"]
    assert [(r["change"], r["check_id"], r["severity"], r["loan_id"]) for r in rows] == [
        ("new", "data.interest_arrears_not_overdue", "warning", "L4"),
        ("new", "data.outstanding_exceeds_principal", "critical", "L7"),
        ("resolved", "data.matured_not_overdue", "critical", "L3"),
        ("resolved", "data.outstanding_exceeds_principal", "critical", "L1")]
    assert rows[3]["first_seen"] == OLDER_AS_OF and json.loads(rows[3]["details"])


def test_table_shows_the_matrix_moves_and_counts(runner, nights):
    output = invoke(runner, "diff", "--db", nights, "--limit", "1").output
    assert "run 1 (2026-10-31) -> run 2 (2026-11-27)" in output
    assert "rows: run 1's recorded class, columns: run 2's recorded class" in output
    matrix = output[output.index("loans:"):output.index("outstanding (yuan):")]
    assert re.search(r"^normal\s+1\s+1\s+1\s+3$", matrix, re.M)  # normal -> normal, special_mention, gone; total
    assert re.search(r"^new\s+1\s+1$", matrix, re.M)
    assert "12345.67" in output and "of the gone: 1 written off (15000.00 yuan)" in output
    assert "downgrades: 2 (largest first)" in output and "... 1 more" in output
    assert "李**" in output and "李四光" not in output
    assert re.search(r"^critical\s+1\s+2\s+0$", output, re.M)


def test_json_flag_still_works_and_disagreeing_formats_are_refused(runner, nights):
    flag = json.loads(invoke(runner, "diff", "--db", nights, "--json").output)
    assert flag == diff_json(runner, nights)
    result = invoke(runner, "diff", "--db", nights, "--json", "--format", "csv")
    assert result.exit_code == 2


def test_runs_of_two_cooperatives_are_not_compared(runner, nights, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('[cooperative]\nname = "Another cooperative"\n')
    assert invoke(runner, "run", tmp_path / "n2", "--as-of", AS_OF, "--db", nights, "--config", other,
                  "--pack", "data-quality", "-q").exit_code == 0
    result = invoke(runner, "diff", "1", "3", "--db", nights)
    assert result.exit_code == 2
    assert "same cooperative" in result.output and "'Another cooperative'" in result.output


def test_a_superseded_or_repeated_run_is_refused(runner, nights, tmp_path):
    result = invoke(runner, "diff", "2", "2", "--db", nights)
    assert result.exit_code == 2 and "compared with itself" in result.output
    assert invoke(runner, "run", tmp_path / "n2", "--as-of", AS_OF, "--db", nights, "--pack", "data-quality",
                  "-q").exit_code == 0  # run 3 replaces run 2
    result = invoke(runner, "diff", "1", "2", "--db", nights)
    assert result.exit_code == 2 and "run 2 was superseded by run 3" in result.output
    assert diff_json(runner, nights, "1", "3")["newer"] == 3


def test_the_default_previous_run_follows_a_re_run_of_that_as_of(runner, nights, tmp_path):
    assert invoke(runner, "run", tmp_path / "n1", "--as-of", OLDER_AS_OF, "--db", nights, "--pack", "data-quality",
                  "-q").exit_code == 0  # run 3 replaces run 1
    data = diff_json(runner, nights)
    assert (data["older"], data["newer"]) == (3, 2)
    assert len(data["new"]) == 2 and len(data["resolved"]) == 2


def test_a_failed_run_is_refused(runner, nights):
    conn = sqlite3.connect(nights)
    conn.execute("UPDATE runs SET status = 'failed' WHERE run_id = 1")
    conn.commit()
    conn.close()
    result = invoke(runner, "diff", "1", "2", "--db", nights)
    assert result.exit_code == 2 and "run 1 (2026-10-31) is failed" in result.output


def test_migrations_use_the_computed_class_when_the_run_classified(runner, tmp_path):
    db = tmp_path / "results.db"
    for snapshot, as_of in ((night1(tmp_path / "n1"), OLDER_AS_OF), (night2(tmp_path / "n2"), AS_OF)):
        assert invoke(runner, "run", snapshot, "--as-of", as_of, "--db", db, "--pack", "cn-five-category",
                      "-q").exit_code in (0, 1)
    migrations = diff_json(runner, db)["class_migrations"]
    assert migrations["basis"] == {"older": "computed", "newer": "computed"}
    classes = {run: dict(query(db, "SELECT loan_id, risk_class FROM assessments WHERE run_id = ?", (run,)))
               for run in (1, 2)}
    expected: dict[tuple[str, str], int] = {}
    for loan_id in set(classes[1]) | set(classes[2]):
        key = (classes[1].get(loan_id, "new"), classes[2].get(loan_id, "gone"))
        expected[key] = expected.get(key, 0) + 1
    assert {(c["from"], c["to"]): c["loans"] for c in migrations["matrix"]} == expected
