"""The sections on the portfolio: the book at a glance, risk classes and their migration (the matrix of
``loanrules.results.class_migrations``, the same as ``loanrules diff``'s), and where the non-performing
loans come from."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from loanrules.report.book import CHART_LIMIT, Book
from loanrules.report.formatting import CODE_COLUMNS, label, percent, share, word, yuan
from loanrules.report.model import Chart, Column, Highlight, Section, Series, Table
from loanrules.results import GONE, NEW, UNKNOWN, ClassMigrations
from loanrules.schema import NON_PERFORMING_CLASSES, RISK_CLASSES

# Limits of the book at a glance: (check whose recorded parameter gives the limit, its parameter, default).
NPL_RATIO_LIMIT = ("portfolio.npl_ratio", "max_ratio", "0.05")
PROVISION_COVERAGE_LIMIT = ("portfolio.provision_coverage", "min_ratio", "1.50")
LOAN_PROVISION_LIMIT = ("portfolio.loan_provision_ratio", "min_ratio", "0.025")


def glance(book: Book) -> Section:
    section_id, title = "glance", "The book at a glance"
    if not book.has_table("loans") and not book.by_class:
        return Section.without_data(section_id, title, "the run's snapshot has no loans")
    totals = book.book_totals()
    indicators = []
    highlights = [
        Highlight("Loans on the books", f"{totals['loans']:,}",
                  f"{totals['written_off_loans']:,} written off, not counted" if totals["written_off_loans"] else ""),
        Highlight("Outstanding principal (yuan)", yuan(totals["outstanding"])),
        Highlight("Non-performing loans", f"{totals['npl_loans']:,}", f"{yuan(totals['npl_outstanding'])} yuan"),
    ]

    def indicator(name, part, whole, limit, rule, why_none):
        limit_value, source = limit
        if not whole:
            indicators.append((name, None, float(limit_value), rule, "n/a", source, why_none))
            highlights.append(Highlight(name, "n/a", why_none))
            return
        value = Fraction(part, whole)
        within = value <= Fraction(limit_value) if rule == "at most" else value >= Fraction(limit_value)
        indicators.append((name, float(value), float(limit_value), rule, "yes" if within else "no",
                           source, ""))
        highlights.append(Highlight(name, percent(value), f"limit: {rule} {percent(limit_value)}",
                                    "ok" if within else "breach"))

    indicator("NPL ratio", totals["npl_outstanding"], totals["outstanding"], book.limit(*NPL_RATIO_LIMIT),
              "at most", "no loan on the books")
    indicator("Provision coverage", totals["provision"], totals["npl_outstanding"],
              book.limit(*PROVISION_COVERAGE_LIMIT), "at least", "no non-performing loan")
    indicator("Loan provision ratio", totals["provision"], totals["outstanding"],
              book.limit(*LOAN_PROVISION_LIMIT), "at least", "no loan on the books")
    if totals["required"] is not None:
        indicator("Provisions held / required", totals["provision"], totals["required"],
                  (Decimal(1), "the provisions the classification requires"), "at least",
                  "the classification requires no provision")
    tables = [
        Table("book", "The book", (
            Column("loans", "loans", "count"), Column("outstanding_fen", "outstanding", "money"),
            Column("npl_loans", "non-performing loans", "count"),
            Column("npl_outstanding_fen", "non-performing outstanding", "money"),
            Column("provision_fen", "provisions held", "money"),
            Column("required_provision_fen", "provision required", "money"),
            Column("written_off_loans", "written-off loans", "count"),
            Column("written_off_fen", "written-off outstanding", "money"),
        ), [(totals["loans"], totals["outstanding"], totals["npl_loans"], totals["npl_outstanding"],
             totals["provision"], totals["required"], totals["written_off_loans"], totals["written_off_outstanding"])]),
        Table("indicators", "Indicators against their limits", (
            Column("indicator", "indicator"), Column("value", "value", "share"),
            Column("limit", "limit", "share"), Column("rule", "rule"), Column("within_limit", "within"),
            Column("limit_source", "limit from"), Column("note", "note"),
        ), indicators,
            note="NPL ratio = non-performing outstanding / outstanding. Provision coverage = provisions held "
                 "(loans.provision) / non-performing outstanding, the regulator's ratio that "
                 "portfolio.provision_coverage judges. Loan provision ratio = provisions held / outstanding. "
                 "Provisions held / required compares with the provision the classification requires."),
    ]
    intro = (f"Loans on the books at {book.run['as_of']}, written-off loans excluded. Non-performing "
             f"(substandard, doubtful, loss) by {book.class_source}"
             + (" (the recorded class for a loan the classification did not judge)." if book.classified else "."))
    return Section(section_id, title, intro, highlights, tables)


def classes(book: Book) -> Section:
    section_id, title = "classes", "Risk classes and their migration"
    on_book = [row for row in book.by_class if not row[0]]
    if not on_book:
        return Section.without_data(section_id, title, "no loan on the books in this run's snapshot")
    per_class = {(row[1] or UNKNOWN): row for row in on_book}
    order = [c for c in (*RISK_CLASSES, UNKNOWN) if c in per_class or c in RISK_CLASSES]
    total = sum(row[3] for row in on_book)
    rows = []
    for risk_class in order:
        row = per_class.get(risk_class)
        loans, outstanding, provision, required = (row[2], row[3], row[4], row[5]) if row else (0, 0, 0, None)
        rows.append((risk_class, loans, outstanding, share(outstanding, total), provision, required))
    tables = [Table("classes", "Loans by risk class", (
        Column("risk_class", "class"), Column("loans", "loans", "count"),
        Column("outstanding_fen", "outstanding", "money"), Column("outstanding_share", "share", "share"),
        Column("provision_fen", "provisions held", "money"),
        Column("required_provision_fen", "provision required", "money"),
    ), rows)]
    charts = [Chart("classes-outstanding", "Outstanding principal by risk class", "bar", map(word, order),
                    [Series("outstanding", [row[2] for row in rows])], unit="money",
                    description="Outstanding principal of the loans on the books in each class, in yuan.",
                    table="classes")]
    intro = f"Classes are {book.class_source}" + (f"; `{UNKNOWN}`: no class recorded." if UNKNOWN in per_class
                                                   else ".")
    highlights = []
    migrations = book.migrations()
    if isinstance(migrations, str):
        intro += " " + migrations
    else:
        previous = book.previous
        matrix_tables, chart, highlights = _migration(book, migrations)
        tables += matrix_tables
        charts.append(chart)
        intro += (f" The migration compares each loan's class at the previous as-of, {previous['as_of']} "
                  f"(run {previous['run_id']}, its computed class where it classified, else recorded), with "
                  f"its class now, as `loanrules diff` does: `{NEW}` loans were not on the previous book, "
                  f"`{GONE}` ones are no longer on this one (repaid, transferred or written off); written-off "
                  f"loans are on neither book.")
    return Section(section_id, title, intro, highlights, tables, charts)


def _migration(book: Book, migrations: ClassMigrations) -> tuple[list[Table], Chart, list[Highlight]]:
    """The matrix of ``results.class_migrations`` as the report's tables, chart and highlights: every risk
    class as a row and a column, then the matrix's other labels (``unknown``, ``new``, ``gone``)."""
    previous = book.previous
    before = [*RISK_CLASSES, *(c for c in migrations.rows if c not in RISK_CLASSES)]
    after = [*RISK_CLASSES, *(c for c in migrations.columns if c not in RISK_CLASSES)]
    counts = {key: loans for key, (loans, _) in migrations.cells.items()}
    amounts = {key: fen for key, (_, fen) in migrations.cells.items()}
    off_loans, off_fen = migrations.gone_written_off

    def matrix(table_id, title, values, kind, note):
        columns = [Column("from_class", "from \\ to")] + [
            Column(f"to_{name.replace(' ', '_')}", name, kind) for name in after] + [Column("total", "total", kind)]
        rows = [(b, *(values.get((b, a), 0) for a in after), sum(values.get((b, a), 0) for a in after))
                for b in before]
        rows.append(("total", *(sum(values.get((b, a), 0) for b in before) for a in after),
                     sum(values.values())))
        return Table(table_id, title, columns, rows, note=note)

    gone_note = (f"`{GONE}`: no longer on the books, {off_loans:,} of them written off ({yuan(off_fen)} yuan)."
                 if GONE in after else "")
    tables = [
        matrix("migration_count", f"Loans from their class at {previous['as_of']} (rows) to now (columns)",
               counts, "count", gone_note),
        matrix("migration_outstanding", "The same, outstanding principal", amounts, "money",
               f"Outstanding now; for loans {GONE} from the books, their outstanding at the previous as-of."),
    ]
    chart = Chart("migration", f"Class migration since {previous['as_of']}, loans", "matrix", before,
                  [Series(a, [counts.get((b, a), 0) for b in before]) for a in after], unit="count",
                  description="Rows: the class at the previous as-of; columns: the class now. Each cell counts "
                              "loans; the diagonal stayed in their class.",
                  row_axis=f"class at {previous['as_of']}", column_axis=f"class at {book.run['as_of']}",
                  table="migration_count")
    rank = {name: i for i, name in enumerate(RISK_CLASSES)}
    npl = set(NON_PERFORMING_CLASSES)
    into = [(k, v) for k, v in counts.items() if k[0] in rank and k[1] in npl and k[0] not in npl]
    out_of = [(k, v) for k, v in counts.items() if k[0] in npl and k[1] in rank and k[1] not in npl]
    worse = sum(v for k, v in counts.items() if k[0] in rank and k[1] in rank and rank[k[1]] > rank[k[0]])
    better = sum(v for k, v in counts.items() if k[0] in rank and k[1] in rank and rank[k[1]] < rank[k[0]])
    highlights = [
        Highlight("Became non-performing", f"{sum(v for _, v in into):,} loans",
                  f"{yuan(sum(amounts[k] for k, _ in into))} yuan"),
        Highlight("Left non-performing", f"{sum(v for _, v in out_of):,} loans",
                  f"{yuan(sum(amounts[k] for k, _ in out_of))} yuan (still on the books)"),
        Highlight("Downgraded / upgraded", f"{worse:,} / {better:,}", "loans whose class got worse / better"),
        Highlight("Written off since", f"{off_loans:,} loans",
                  f"{yuan(off_fen)} yuan outstanding at {previous['as_of']} (part of `{GONE}`)"),
    ]
    return tables, chart, highlights


DIMENSIONS = (
    ("branch", "branch", "r.branch"),
    ("product", "product", "r.product"),
    ("borrower_type", "borrower type", "b.borrower_type"),
    ("guarantee_type", "guarantee type", "r.guarantee_type"),
    ("origination_year", "origination year", "r.origination_year"),
    ("lending_officer", "lending officer", "r.lending_officer"),
)

def npl_sources(book: Book) -> Section:
    section_id, title = "npl-sources", "Where the non-performing loans come from"
    totals = book.book_totals()
    if not totals["npl_loans"]:
        return Section.without_data(section_id, title, "no non-performing loan on the books "
                                                       f"(by {book.class_source})")
    # The non-performing loans into a cube of every combination of the six dimensions, then each
    # dimension is a small GROUP BY over the cube: one sort of the non-performing loans, not six.
    dims = ", ".join(f"{expression} AS {name}" for name, _, expression in DIMENSIONS)
    cube = f"""
        SELECT {dims}, count(*) AS loans, sum(r.outstanding) AS outstanding
        FROM {book.loans_table()} r
        LEFT JOIN borrowers b ON b.snapshot_id = :snapshot_id AND b.borrower_id = r.borrower_id
        WHERE r.npl
        GROUP BY {", ".join(str(i) for i in range(1, len(DIMENSIONS) + 1))}
    """
    parts = " UNION ALL ".join(f"SELECT '{name}', {name}, sum(loans), sum(outstanding) FROM cube GROUP BY {name}"
                               for name, _, _ in DIMENSIONS)
    rows = book.q(f"WITH cube AS MATERIALIZED ({cube}) {parts}")
    tables, charts = [], []
    for name, heading, _ in DIMENSIONS:
        if name == "origination_year":  # a vintage reads in time order
            mine = sorted((r[1:] for r in rows if r[0] == name), key=lambda r: (r[0] is None, r[0] or ""))
        else:
            mine = sorted((r[1:] for r in rows if r[0] == name), key=lambda r: (-r[2], -r[1], label(r[0])))
        table_rows = [(value, loans, outstanding, share(loans, totals["npl_loans"]),
                       share(outstanding, totals["npl_outstanding"])) for value, loans, outstanding in mine]
        tables.append(Table(f"npl_by_{name}", f"By {heading}", (
            Column(name, heading), Column("npl_loans", "NPL loans", "count"),
            Column("npl_outstanding_fen", "NPL outstanding", "money"),
            Column("loans_share", "share of NPL loans", "share"),
            Column("outstanding_share", "share of NPL outstanding", "share"),
        ), table_rows, display_limit=book.display_limit,
            note="" if name != "borrower_type" or book.has_table("borrowers") else
            "The snapshot has no borrowers.csv: borrower types are not recorded."))
        if name == "origination_year" and len(table_rows) > CHART_LIMIT:  # the latest vintages, older together
            shown, rest = table_rows[-CHART_LIMIT:], table_rows[:-CHART_LIMIT]
        else:
            shown, rest = table_rows[:CHART_LIMIT], table_rows[CHART_LIMIT:]
        labels = [word(label(r[0])) if name in CODE_COLUMNS else label(r[0]) for r in shown]
        values = [r[2] for r in shown]
        if rest:
            where = 0 if name == "origination_year" else len(labels)
            labels.insert(where, f"{len(rest)} more")
            values.insert(where, sum(r[2] for r in rest))
        charts.append(Chart(f"npl-by-{name.replace('_', '-')}", f"NPL outstanding by {heading}", "bar", labels,
                            [Series("NPL outstanding", values)], unit="money",
                            description=f"Non-performing outstanding principal by {heading}, in yuan"
                                        + (", oldest first." if name == "origination_year" else ", largest first."),
                            table=f"npl_by_{name}"))
    intro = (f"{totals['npl_loans']:,} non-performing loans, {yuan(totals['npl_outstanding'])} yuan outstanding "
             f"(by {book.class_source}), by branch, product, borrower type, guarantee type, origination year "
             "and lending officer: how many, how much, and their share of all non-performing loans.")
    return Section(section_id, title, intro, (), tables, charts)
