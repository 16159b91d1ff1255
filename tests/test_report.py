"""`loanrules report` (issue 7): the analysis report as one self-contained HTML file and as Markdown.

Two books. A small hand-written one over two nights (cn-five-category and cooperative-baseline), whose
figures are worked out by hand below and checked in the report's tables; and the demo cooperative, for the
structure of the HTML (every section with its charts, nothing fetched from anywhere, names masked).
"""

from __future__ import annotations

import datetime
import re
from fractions import Fraction
from html.parser import HTMLParser

import pytest
from conftest import borrower, invoke, loan, write_snapshot

from loanrules import demo
from loanrules.config import Config, parse_config
from loanrules.manager import PluginManager
from loanrules.plan import Overrides
from loanrules.privacy import Masker
from loanrules.registry import Registry
from loanrules.report import build_report, report_tables
from loanrules.report.html import render_html
from loanrules.report.markdown import render_markdown
from loanrules.report.model import Chart, Series
from loanrules.report.svg import render
from loanrules.results import class_migrations, open_results, previous_run, resolve_run
from loanrules.run import execute_run

SECTIONS = ("glance", "classes", "npl-sources", "recovery", "collateral", "villages", "inspections", "collection",
            "findings", "provenance")
PACKS = ("cn-five-category", "cooperative-baseline")
MASK_ONLY = Masker(frozenset({"name", "id_number"}))
SHOW_ALL = Masker(frozenset({"name", "id_number"}), show=True)

# ------------------------------------------------------------ the hand-written book
#
# Retail households (cn-five-category: days past due 0 normal, 1-90 special mention, 91-270 substandard,
# 271-360 doubtful, more loss). Amounts in yuan.
#
# night 1, 2026-10-31                                 night 2, 2026-11-27
# L1 B1 BR01 100000.00 dpd 0   normal                 L1 B1 BR01 100000.00 dpd 0   normal
# L2 B2 BR01  50000.00 dpd 100 substandard            L2 B2 BR01  50000.00 dpd 300 doubtful (recorded substandard)
# L3 B3 BR02  40000.00 dpd 30  special mention        L3 B3 BR02  40000.00 dpd 95  substandard (recorded s. mention)
# L4 B4 BR02  20000.00 dpd 10  special mention        (L4 repaid: left the book)
#    (recorded normal: under-classified)              L5 B5 BR02  30000.00 dpd 0   normal (new)
#                                                     L6 B6 BR03  10000.00 written off (new, off the books)

NAME, ID_NUMBER = "王小二", "110105194912310021"  # B2's, masked: 王**, 110105********0021


def night_one():
    return [
        loan("L1", "B1", branch_id="BR01", outstanding_principal="100000.00", days_past_due=0, provision="1000.00"),
        loan("L2", "B2", branch_id="BR01", outstanding_principal="50000.00", days_past_due=100,
             recorded_class="substandard", provision="12500.00"),
        loan("L3", "B3", branch_id="BR02", outstanding_principal="40000.00", days_past_due=30,
             recorded_class="special_mention", provision="800.00"),
        loan("L4", "B4", branch_id="BR02", outstanding_principal="20000.00", days_past_due=10, provision="400.00"),
    ]


def night_two():
    return [
        loan("L1", "B1", branch_id="BR01", outstanding_principal="100000.00", days_past_due=0, provision="1000.00"),
        loan("L2", "B2", branch_id="BR01", outstanding_principal="50000.00", days_past_due=300,
             recorded_class="substandard", provision="12500.00"),
        loan("L3", "B3", branch_id="BR02", outstanding_principal="40000.00", days_past_due=95,
             recorded_class="special_mention", provision="10000.00"),
        loan("L5", "B5", branch_id="BR02", outstanding_principal="30000.00", days_past_due=0, provision="300.00"),
        loan("L6", "B6", branch_id="BR03", outstanding_principal="10000.00", days_past_due=400, recorded_class="loss",
             provision="10000.00", written_off=1),
    ]


def borrowers(loans):
    rows = []
    for borrower_id in sorted({row["borrower_id"] for row in loans}):
        if borrower_id == "B2":
            rows.append(borrower(borrower_id, name=NAME, id_number=ID_NUMBER))
        else:
            rows.append(borrower(borrower_id, name=f"李{borrower_id}",
                                 id_number=f"11010519800101{borrower_id[1:]:0>4}"))
    return rows


def run_book(directory, packs, registry):
    db = directory / "results.db"
    config = parse_config({"cooperative": {"name": "Test cooperative"}})
    for as_of, loans in (("2026-10-31", night_one()), ("2026-11-27", night_two())):
        snapshot = write_snapshot(directory / as_of, loans=loans, borrowers=borrowers(loans))
        result = execute_run(db, snapshot, as_of=as_of, config=config, registry=registry, packs=packs)
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status == "failed"]
    return db


@pytest.fixture(scope="module")
def module_registry():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOANRULES_LOAD_PLUGINS", "")
        yield Registry.from_plugins(PluginManager())


@pytest.fixture(scope="module")
def book_db(tmp_path_factory, module_registry):
    return run_book(tmp_path_factory.mktemp("book"), PACKS, module_registry)


@pytest.fixture(scope="module")
def book(book_db):
    conn = open_results(book_db)
    yield build_report(conn, resolve_run(conn, None), MASK_ONLY)
    conn.close()


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory, module_registry):
    """The demo cooperative, 300 loans over two month-ends, every pack."""
    directory = tmp_path_factory.mktemp("demo")
    dates = [datetime.date(2026, 10, 31), demo.DEMO_AS_OF]
    config = Config(cooperative="Demo", net_capital=300 * 22_500_00)
    for snapshot, as_of in zip(demo.write_history(directory / "snapshots", loans=300, as_of_dates=dates), dates):
        result = execute_run(directory / "results.db", snapshot, as_of=as_of.isoformat(), config=config,
                             registry=module_registry)
        assert result.status == "succeeded"
    return directory / "results.db"


@pytest.fixture(scope="module")
def demo_report(demo_db):
    conn = open_results(demo_db)
    yield build_report(conn, resolve_run(conn, None), MASK_ONLY)
    conn.close()


@pytest.fixture(scope="module")
def demo_html(demo_report):
    return render_html(demo_report)


def rows_by_first(table):
    return {row[0]: dict(zip(table.keys, row)) for row in table.rows}


# ------------------------------------------------------------ figures of the hand-written book


def test_the_book_at_a_glance_counts_loans_on_the_books_only(book):
    (row,) = book.table("book").records()
    # L1 + L2 + L3 + L5 = 100000 + 50000 + 40000 + 30000; L6 is written off and left out
    assert row["loans"] == 4
    assert row["outstanding_fen"] == 220_000_00
    # non-performing by the computed class: L2 doubtful (50000) and L3 substandard (40000)
    assert (row["npl_loans"], row["npl_outstanding_fen"]) == (2, 90_000_00)
    # held on the books: 1000 + 12500 + 10000 + 300; required: L2 50% of 50000 + L3 25% of 40000
    assert (row["provision_fen"], row["required_provision_fen"]) == (23_800_00, 35_000_00)
    assert (row["written_off_loans"], row["written_off_fen"]) == (1, 10_000_00)


def test_npl_ratio_and_provision_coverage_against_the_recorded_limits(book):
    indicators = rows_by_first(book.table("indicators"))
    npl = indicators["NPL ratio"]
    assert npl["value"] == pytest.approx(float(Fraction(90_000, 220_000)))  # 40.91%
    assert (npl["limit"], npl["rule"], npl["within_limit"]) == (0.05, "at most", "no")
    assert npl["limit_source"] == "portfolio.npl_ratio max_ratio as this run recorded it"
    coverage = indicators["Provision coverage"]
    assert coverage["value"] == pytest.approx(23_800 / 90_000)  # 26.44%, what portfolio.provision_coverage says
    assert (coverage["limit"], coverage["within_limit"]) == (1.5, "no")
    highlights = {h.label: h for h in book.section("glance").highlights}
    assert highlights["NPL ratio"].value == "40.91%"
    assert highlights["NPL ratio"].status == "breach"


def test_the_recorded_class_counts_when_no_classification_ran(tmp_path, module_registry):
    db = run_book(tmp_path, ("cooperative-baseline",), module_registry)
    conn = open_results(db)
    report = build_report(conn, resolve_run(conn, None), MASK_ONLY)
    (row,) = report.table("book").records()
    # recorded: L2 substandard is non-performing, L3 special mention is not
    assert (row["npl_loans"], row["npl_outstanding_fen"]) == (1, 50_000_00)
    npl = rows_by_first(report.table("indicators"))["NPL ratio"]
    assert npl["value"] == pytest.approx(50_000 / 220_000)
    assert npl["limit_source"] == "default (portfolio.npl_ratio did not run)"
    assert "recorded class" in report.section("glance").intro
    # no classification: no recovery category, and the report says what to run (the plans are still there)
    assert report.table("recovery_categories").rows == ()
    assert "cn-five-category" in report.table("recovery_categories").note
    assert report.table("open_tasks_by_step").rows


def test_transition_matrix_cells(book):
    counts = rows_by_first(book.table("migration_count"))
    # previous class (rows) -> class now (columns), by loan, on the books at each as-of (as `loanrules diff`)
    assert counts["normal"]["to_normal"] == 1  # L1
    assert counts["substandard"]["to_doubtful"] == 1  # L2
    assert counts["special_mention"]["to_substandard"] == 1  # L3
    assert counts["special_mention"]["to_gone"] == 1  # L4, computed special mention, repaid
    assert counts["new"]["to_normal"] == 1  # L5
    # L6 is new and already written off on night 2: on neither book, so in no cell (no written-off row or
    # column); that leaves L1, L2, L3, L4, L5
    assert "to_written_off" not in book.table("migration_count").keys and "written_off" not in counts
    assert counts["total"]["total"] == 5
    every_cell = sum(value for row in book.table("migration_count").rows[:-1] for value in row[1:-1])
    assert every_cell == 5  # and nothing else anywhere
    amounts = rows_by_first(book.table("migration_outstanding"))
    assert amounts["special_mention"]["to_gone"] == 20_000_00  # L4 at the previous as-of
    assert amounts["substandard"]["to_doubtful"] == 50_000_00
    highlights = {h.label: h.value for h in book.section("classes").highlights}
    assert highlights["Became non-performing"] == "1 loans"  # L3
    assert highlights["Downgraded / upgraded"] == "2 / 0"  # L2, L3
    assert highlights["Written off since"] == "0 loans"  # L4 was repaid, L6 was never on the books
    assert "0 of them written off" in book.table("migration_count").note


def test_the_report_migration_is_the_diff_matrix(book_db, book):
    """The report draws ``results.class_migrations``: the same cells under the same labels as `loanrules diff`."""
    conn = open_results(book_db)
    newer = resolve_run(conn, None)
    migrations = class_migrations(conn, previous_run(conn, newer), newer)
    conn.close()
    for table_id, part in (("migration_count", 0), ("migration_outstanding", 1)):
        table = book.table(table_id)
        shown = {(row[0], key[3:]): value for row in table.rows if row[0] != "total"
                 for key, value in zip(table.keys[1:-1], row[1:-1]) if value}
        assert shown == {key: value[part] for key, value in migrations.cells.items()}


def test_a_loan_written_off_since_the_previous_as_of_is_gone(tmp_path, module_registry):
    # night 2 writes L2 off (substandard on night 1, 100 days past due): it leaves the books, into `gone`,
    # and counts as written off since; L4 is repaid as in the hand-written book
    def written_off_l2():
        return [dict(row, written_off="1") if row["loan_id"] == "L2" else row for row in night_two()]

    db = tmp_path / "results.db"
    config = parse_config({"cooperative": {"name": "Test cooperative"}})
    for as_of, loans in (("2026-10-31", night_one()), ("2026-11-27", written_off_l2())):
        snapshot = write_snapshot(tmp_path / as_of, loans=loans, borrowers=borrowers(loans))
        execute_run(db, snapshot, as_of=as_of, config=config, registry=module_registry, packs=PACKS)
    conn = open_results(db)
    report = build_report(conn, resolve_run(conn, None), MASK_ONLY)
    counts = rows_by_first(report.table("migration_count"))
    assert counts["substandard"]["to_gone"] == 1  # L2, written off
    assert counts["special_mention"]["to_gone"] == 1  # L4, repaid
    assert counts["total"]["total"] == 5  # L1, L2, L3, L4, L5
    highlights = {h.label: h for h in report.section("classes").highlights}
    assert highlights["Written off since"].value == "1 loans"
    assert highlights["Written off since"].note.startswith("50,000.00 yuan")  # L2 at the previous as-of
    assert "1 of them written off (50,000.00 yuan)" in report.table("migration_count").note


def test_the_report_compares_with_the_rerun_of_the_previous_as_of(book_db, tmp_path, module_registry):
    """Re-running the previous as-of supersedes its run (whose results are deleted): the latest run's report
    compares with the re-run, with the same resolved findings and the same migration."""
    copy = tmp_path / "results.db"
    copy.write_bytes(book_db.read_bytes())
    conn = open_results(copy)
    latest = resolve_run(conn, None)
    before = build_report(conn, latest, MASK_ONLY)
    conn.close()
    snapshot = write_snapshot(tmp_path / "rerun", loans=night_one(), borrowers=borrowers(night_one()))
    rerun = execute_run(copy, snapshot, as_of="2026-10-31", config=parse_config({"cooperative": {"name":
                        "Test cooperative"}}), registry=module_registry, packs=PACKS)
    assert rerun.status == "succeeded"
    conn = open_results(copy)
    assert conn.execute("SELECT superseded_by FROM runs WHERE run_id = ?",
                        (latest["previous_run_id"],)).fetchone()[0] == rerun.run_id
    after = build_report(conn, resolve_run(conn, latest["run_id"]), MASK_ONLY)
    conn.close()
    assert f"compared with run {rerun.run_id} as of 2026-10-31" in after.subtitle
    for table_id in ("migration_count", "migration_outstanding"):
        assert after.table(table_id).rows == before.table(table_id).rows
    checks = rows_by_first(after.table("findings_by_check"))
    assert checks["classification.under_classified"]["resolved"] == 1  # L4, as before the re-run
    highlights = {h.label: h.value for h in after.section("findings").highlights}
    assert highlights["New / persisting / resolved"] == "3 / 2 / 1"
    assert {h.label: h.value for h in after.section("classes").highlights} == \
        {h.label: h.value for h in before.section("classes").highlights}


def test_npl_by_branch(book):
    branches = rows_by_first(book.table("npl_by_branch"))
    assert set(branches) == {"BR01", "BR02"}  # BR03's only loan is written off; performing loans do not count
    br01, br02 = branches["BR01"], branches["BR02"]
    assert (br01["npl_loans"], br01["npl_outstanding_fen"]) == (1, 50_000_00)  # L2
    assert (br02["npl_loans"], br02["npl_outstanding_fen"]) == (1, 40_000_00)  # L3
    assert br01["loans_share"] == br02["loans_share"] == 0.5
    assert br01["outstanding_share"] == pytest.approx(5 / 9) and br02["outstanding_share"] == pytest.approx(4 / 9)
    assert [row[0] for row in book.table("npl_by_branch").rows] == ["BR01", "BR02"]  # largest first
    chart = next(c for c in book.section("npl-sources").charts if c.table == "npl_by_branch")
    assert (chart.labels, chart.series[0].values) == (("BR01", "BR02"), (50_000_00, 40_000_00))


def test_findings_by_severity_new_and_resolved(book):
    checks = rows_by_first(book.table("findings_by_check"))
    # night 2: L2 and L3 recorded better than computed (new; night 1 had L4, which left the book: resolved)
    under = checks["classification.under_classified"]
    assert (under["critical"], under["warning"], under["new"], under["persisting"], under["resolved"]) == \
        (2, 0, 2, 0, 1)
    # L2 holds 12500.00 of the 25000.00 its doubtful class requires
    assert (checks["provision.shortfall"]["warning"], checks["provision.shortfall"]["new"]) == (1, 1)
    # the book's NPL ratio and provision coverage were out of limits on both nights
    for check_id in ("portfolio.npl_ratio", "portfolio.provision_coverage"):
        assert (checks[check_id]["warning"], checks[check_id]["persisting"]) == (1, 1)
    assert set(checks) == {"classification.under_classified", "provision.shortfall", "portfolio.npl_ratio",
                           "portfolio.provision_coverage"}
    highlights = {h.label: h.value for h in book.section("findings").highlights}
    assert (highlights["Critical"], highlights["Warning"], highlights["Info"]) == ("2", "3", "0")
    assert highlights["New / persisting / resolved"] == "3 / 2 / 1"


def test_sections_without_data_say_why(book):
    # the book has no collateral, inspections or village collectives
    assert "collateral.csv" in book.section("collateral").absent
    assert "inspections.csv" in book.section("inspections").absent
    assert "no borrower of type village_collective" in book.section("villages").absent
    html = render_html(book)
    for section_id in ("collateral", "inspections", "villages"):
        assert book.section(section_id).absent in html.replace("&#x27;", "'")


def test_a_first_run_has_no_migration_and_says_so(tmp_path, module_registry):
    config = parse_config({"cooperative": {"name": "c"}})
    snapshot = write_snapshot(tmp_path / "s", loans=night_one(), borrowers=borrowers(night_one()))
    execute_run(tmp_path / "r.db", snapshot, as_of="2026-10-31", config=config, registry=module_registry,
                packs=PACKS)
    conn = open_results(tmp_path / "r.db")
    report = build_report(conn, resolve_run(conn, None), MASK_ONLY)
    classes = report.section("classes")
    assert "first run" in classes.intro
    assert [t.id for t in classes.tables] == ["classes"]
    assert "no collection strategy" not in (report.section("collection").absent or "")


def inspected_book(directory, registry, loans, disable=()):
    """One night of cooperative-baseline over ``loans`` and their inspections; the report's inspections."""
    as_of = datetime.date(2026, 11, 27)

    def days_ago(days):
        return (as_of - datetime.timedelta(days=days)).isoformat()

    inspections = {
        # N1: inspected on site 5 days ago, but not within 30 days of its origination 60 days ago
        "N1": [("N1", days_ago(5), "OF001", "site")],
        # N2: never inspected (monthly and quarterly on-site findings); P1: performing, inspected 10 days ago
        "N2": [], "P1": [("P1", days_ago(10), "OF001", "routine")],
    }
    rows = [{"loan_id": inspected, "inspection_date": date, "inspector_id": who, "kind": kind}
            for loan_id in loans for inspected, date, who, kind in inspections[loan_id]]
    made = {"N1": loan("N1", "B1", recorded_class="substandard", days_past_due=120, origination_date=days_ago(60)),
            "N2": loan("N2", "B2", recorded_class="substandard", days_past_due=120),
            "P1": loan("P1", "B3", origination_date=days_ago(400))}
    book_loans = [made[loan_id] for loan_id in loans]
    snapshot = write_snapshot(directory, loans=book_loans, borrowers=borrowers(book_loans),
                              inspections=rows or "loan_id,inspection_date,inspector_id,kind\n",
                              collections="loan_id,action_date,officer_id,action,amount_recovered,channel\n")
    result = execute_run(directory / "results.db", snapshot, as_of=as_of.isoformat(),
                         config=parse_config({"cooperative": {"name": "c"}}), registry=registry,
                         packs=("cooperative-baseline",), overrides=Overrides.parse(disable=disable))
    assert result.status == "succeeded"
    conn = open_results(directory / "results.db")
    section = build_report(conn, resolve_run(conn, None), MASK_ONLY).section("inspections")
    conn.close()
    return section


def test_inspected_as_required_counts_the_monthly_and_quarterly_checks_only(tmp_path, module_registry):
    section = inspected_book(tmp_path / "a", module_registry, ("N1", "N2", "P1"))
    flags = rows_by_first(section.tables[0])
    assert flags["inspection.first_visit_missing"]["npl_loans"] == 1  # N1
    assert flags["inspection.npl_monthly_missing"]["npl_loans"] == 1  # N2
    assert flags["inspection.npl_quarterly_site_missing"]["npl_loans"] == 1  # N2
    highlights = {h.label: h for h in section.highlights}
    # N1's missed first visit does not make it uninspected: of N1 and N2, N1 was inspected as required
    required = highlights["Inspected as required"]
    assert (required.value, required.status, required.status_text) == ("1", "breach", "not all as required")
    assert required.note == "50.00% of the non-performing loans"
    assert highlights["With an inspection finding"].value == "2"  # N1 and N2, by any inspection check
    # N1 alone: its only finding is the first visit, so every non-performing loan was inspected as required
    alone = {h.label: h for h in inspected_book(tmp_path / "b", module_registry, ("N1", "P1")).highlights}
    required = alone["Inspected as required"]
    assert (required.value, required.status, required.status_text) == ("1", "ok", "all as required")
    assert alone["With an inspection finding"].value == "1"


def test_inspected_as_required_is_not_judged_unless_both_checks_ran(tmp_path, module_registry):
    site = "inspection.npl_quarterly_site_missing"
    section = inspected_book(tmp_path / "a", module_registry, ("N1", "N2", "P1"), disable=(site,))
    required = {h.label: h for h in section.highlights}["Inspected as required"]
    assert required.value == "1"  # N2 by the monthly check alone
    assert required.status is None
    assert "by inspection.npl_monthly_missing only" in required.note and site in required.note
    both = ("inspection.npl_monthly_missing", site)
    section = inspected_book(tmp_path / "b", module_registry, ("N1", "N2", "P1"), disable=both)
    required = {h.label: h for h in section.highlights}["Inspected as required"]
    assert (required.value, required.status) == ("n/a", None)
    assert all(check_id in required.note for check_id in both)


def test_report_tables_give_every_table_whole_with_money_in_fen(book_db):
    conn = open_results(book_db)
    tables = {t.sheet_name: t for t in report_tables(conn, resolve_run(conn, None), MASK_ONLY)}
    assert {"book", "indicators", "migration_count", "npl_by_branch", "findings_by_check"} <= set(tables)
    assert "new_critical" not in tables  # a listing for people; the findings export has them all
    book_table = tables["book"]
    assert "outstanding_fen" in book_table.money_columns
    assert dict(zip(book_table.columns, book_table.rows[0]))["outstanding_fen"] == 220_000_00
    assert all(len(name) <= 31 for name in tables)


# ------------------------------------------------------------ privacy


def test_names_and_id_numbers_are_masked_by_default(book):
    html, markdown = render_html(book), render_markdown(book)
    for text in (html, markdown):
        assert NAME not in text and ID_NUMBER not in text
        assert "王**" in text and "110105********0021" in text  # B2 is a key household


def test_the_privacy_config_shows_names_and_id_numbers(book_db, runner, tmp_path):
    config = tmp_path / "show.toml"
    config.write_text("[privacy]\nshow_personal_data = true\n", encoding="utf-8")
    out = tmp_path / "report.html"
    result = invoke(runner, "report", "--db", book_db, "--config", config, "-o", out)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert NAME in html and ID_NUMBER in html
    masked = invoke(runner, "report", "--db", book_db, "--format", "md")
    assert NAME not in masked.output and "王**" in masked.output


# ------------------------------------------------------------ the HTML's structure (demo cooperative)


class _Structure(HTMLParser):
    """Sections with their headings and counts of charts; every URL-bearing attribute."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current = None
        self.in_h2 = False
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = attrs["id"]
            self.sections[self.current] = {"svg": 0, "heading": "", "absent": False}
            if "absent" in attrs.get("class", ""):
                self.sections[self.current]["absent"] = True
        elif tag == "svg" and self.current:
            self.sections[self.current]["svg"] += 1
        elif tag == "h2":
            self.in_h2 = True
        for name in ("src", "href", "xlink:href", "action", "data", "poster", "srcset"):
            if name in attrs:
                self.links.append((tag, name, attrs[name]))

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False

    def handle_data(self, data):
        if self.in_h2 and self.current:
            self.sections[self.current]["heading"] += data


def structure(html: str) -> _Structure:
    parser = _Structure()
    parser.feed(html)
    return parser


def test_every_section_is_there_in_order(demo_html, demo_report):
    found = structure(demo_html)
    assert list(found.sections) == list(SECTIONS)
    # the demo has every kind of data: no section goes without
    assert [s.id for s in demo_report.sections if s.absent] == []


def test_every_chart_section_draws_its_charts_as_inline_svg(demo_html, demo_report):
    found = structure(demo_html)
    for section in demo_report.sections:
        assert found.sections[section.id]["svg"] == len(section.charts), section.id
    charted = [s.id for s in demo_report.sections if s.charts]
    assert set(charted) >= {"classes", "npl-sources", "recovery", "collateral", "villages", "inspections",
                            "collection", "findings"}
    assert all(found.sections[sid]["svg"] >= 1 for sid in charted)
    assert demo_html.count('class="chart chart-matrix"') == 1  # the transition matrix


def test_the_html_fetches_nothing_from_anywhere(demo_html):
    found = structure(demo_html)
    assert all(name == "href" and value.startswith("#") for _, name, value in found.links), found.links
    for forbidden in ("http://", "https://", "@import", "url(", "<script", "<link", "<img", "<iframe", "src="):
        assert forbidden not in demo_html.lower(), forbidden
    assert not re.search(r"""=\s*["']//""", demo_html)  # protocol-relative URLs


def test_charts_are_accessible_and_show_their_numbers(demo_html, demo_report):
    svgs = re.findall(r"<svg .*?</svg>", demo_html, flags=re.S)
    assert len(svgs) == sum(len(s.charts) for s in demo_report.sections)
    for svg in svgs:
        assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
        ids = re.search(r'aria-labelledby="([^"]+)"', svg).group(1).split()
        assert all(f'id="{ident}"' in svg for ident in ids)
    chart = demo_report.section("classes").charts[0]
    normal = chart.series[0].values[chart.labels.index("normal")]
    assert f"{(normal + 50) // 100:,}" in render(chart)  # the bar's figure is written next to it, in yuan


def test_the_markdown_has_the_same_sections(demo_report, demo_html):
    markdown = render_markdown(demo_report)
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [s["heading"] for s in structure(demo_html).sections.values()]
    assert "<svg" not in markdown
    # a chart becomes the table of its numbers
    assert "**Chart: Class migration since 2026-10-31, loans**" in markdown


def test_charts_are_deterministic():
    chart = Chart("c", "Title", "stacked", ["a", "b"], [Series("critical", [1, 2]), Series("info", [3, 0])])
    assert render(chart) == render(chart)
    assert render(Chart("e", "Empty", "bar", [], [])).count("no data") == 1


# ------------------------------------------------------------ the command


def test_report_command_writes_html_and_markdown(book_db, runner, tmp_path):
    result = invoke(runner, "report", "--db", book_db, "-o", tmp_path / "r.html")
    assert result.exit_code == 0
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    result = invoke(runner, "report", "--db", book_db, "--format", "md", "-o", "-")
    assert result.output.startswith("# Non-performing loan analysis: Test cooperative, 2026-11-27")
    assert "## 1. The book at a glance" in result.output
    older = invoke(runner, "report", "--db", book_db, "--run", "1", "--format", "md")
    assert "as of 2026-10-31 · run 1" in older.output


def test_report_command_errors_are_one_clear_line(book_db, runner, tmp_path):
    result = invoke(runner, "report", "--db", book_db, "--format", "html")
    assert result.exit_code == 2 and "needs a file" in result.output
    result = invoke(runner, "report", "--db", tmp_path / "none.db", "-o", tmp_path / "r.md")
    assert result.exit_code == 2 and "no such database" in result.output
    result = invoke(runner, "report", "--db", book_db, "--run", "99")
    assert result.exit_code == 2 and "no run 99" in result.output
    result = invoke(runner, "report", "--db", book_db, "-o", tmp_path / "missing" / "r.html")
    assert result.exit_code == 2 and "cannot write" in result.output  # as every export
