"""The snapshot input contract: canonical tables, columns, types and codes.

DESIGN.md "Snapshot input contract" is the source. Plugins extend it through
the ``register_tables`` hook: a new table, or new columns on an existing one.

Storage conventions (what SQL checks see):

* money columns hold **integer fen** (1 yuan = 100 fen), so sums are exact;
* dates are ISO text ``YYYY-MM-DD`` (SQLite's date functions work on them);
* booleans are 0/1 integers; codes are the canonical lower-case words;
* an empty CSV field is NULL; unknown extra CSV columns are kept as text.
"""

from __future__ import annotations

import enum

import attrs


class ColumnType(enum.Enum):
    TEXT = "text"
    INTEGER = "integer"
    MONEY = "money"  # decimal yuan in the CSV, integer fen in the database
    DATE = "date"
    BOOLEAN = "boolean"
    CODE = "code"  # one of a closed vocabulary, after the config's code map

    @property
    def sql_type(self) -> str:
        return "TEXT" if self in (ColumnType.TEXT, ColumnType.DATE, ColumnType.CODE) else "INTEGER"


RISK_CLASSES = ("normal", "special_mention", "substandard", "doubtful", "loss")
NON_PERFORMING_CLASSES = ("substandard", "doubtful", "loss")
RECOVERY_CATEGORIES = ("recoverable", "recoverable_with_effort", "unrecoverable_for_now")

# Tables a run derives rather than loads; contributions may list them in ``tables``.
DERIVED_TABLES = ("borrower_facts", "collateral_facts", "assessments", "findings", "collection_tasks")


@attrs.frozen
class Column:
    name: str
    type: ColumnType = ColumnType.TEXT
    codes: tuple[str, ...] = ()
    required: bool = False  # the column must be present in the file's header
    not_null: bool = False  # every row must have a value
    non_negative: bool = False
    personal: bool = False  # borrower's personal data: masked in reports and exports
    doc: str = ""


@attrs.frozen
class Reference:
    """``columns`` of this table must name an existing row of ``table``."""

    columns: tuple[str, ...]
    table: str
    target_columns: tuple[str, ...]


@attrs.frozen
class Index:
    """A stored index on (snapshot_id, *columns) over the rows ``where`` (SQL over the table's columns) holds.

    Partial by default: without the rows whose first column is NULL, so that SQLite never takes it for a scan
    of a whole snapshot (the rows would come in that column's order, not the key's: a scan of 1M collateral
    took 0.29 s instead of 0.09 s, and the joins driven by it slowed likewise). A ``where`` of its own keeps
    the few rows a check looks for, such as the documents without an original or a scan; SQLite uses such an
    index only for a query whose WHERE holds that same condition, written the same way. ``complete``: every
    row, for an index that also serves a reference's lookups (its columns start with the reference's), which
    the loader then does not index twice.
    """

    columns: tuple[str, ...] = attrs.field(converter=tuple)
    where: str | None = None
    name: str | None = None
    complete: bool = attrs.field(default=False)

    @complete.validator
    def _one_kind(self, _attribute, value) -> None:
        if value and self.where:
            raise ValueError("an index is complete or has a condition (where), not both")

    def condition(self) -> str | None:
        if self.complete:
            return None
        return self.where or f'"{self.columns[0]}" IS NOT NULL'

    def index_name(self, table: str) -> str:
        return self.name or "_".join(("idx", table, "snapshot_id", *self.columns))


def _indexes(value) -> tuple[Index, ...]:
    return tuple(item if isinstance(item, Index) else Index(tuple(item)) for item in value)


@attrs.frozen
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # unique within one snapshot
    references: tuple[Reference, ...] = ()
    doc: str = ""
    # More indexes (``Index``, or a tuple of columns for the default one) for the lookups a check makes by
    # other columns than the key or a reference (core/store.py): each costs time on every load, so only
    # where a check needs one.
    indexes: tuple[Index, ...] = attrs.field(default=(), converter=_indexes)

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def extended(self, columns: tuple[Column, ...], indexes=()) -> TableSpec:
        """This table with more columns and indexes (a plugin's ``register_tables``); the known ones are kept."""
        known = set(self.column_names)
        return attrs.evolve(self, columns=self.columns + tuple(c for c in columns if c.name not in known),
                            indexes=tuple(dict.fromkeys((*self.indexes, *_indexes(indexes)))))


def _t(name, **kw):
    return Column(name, ColumnType.TEXT, **kw)


def _money(name, **kw):
    return Column(name, ColumnType.MONEY, non_negative=True, **kw)


def _date(name, **kw):
    return Column(name, ColumnType.DATE, **kw)


def _bool(name, **kw):
    return Column(name, ColumnType.BOOLEAN, **kw)


def _code(name, codes, **kw):
    return Column(name, ColumnType.CODE, codes=tuple(codes), **kw)


LOANS = TableSpec(
    "loans",
    (
        _t("loan_id", required=True, not_null=True),
        _t("borrower_id", required=True, not_null=True),
        _t("branch_id"),
        _t("product"),
        _code("guarantee_type", ("credit", "guarantee", "mortgage", "pledge")),
        _money("principal"),
        _money("outstanding_principal", required=True, not_null=True),
        _money("interest_arrears"),
        _date("origination_date"),
        _date("maturity_date"),
        Column("days_past_due", ColumnType.INTEGER, required=True, not_null=True, non_negative=True),
        _date("restructured_date"),
        _code("recorded_class", RISK_CLASSES),
        _money("provision"),
        _t("lending_officer_id"),
        _t("collection_officer_id"),
        _bool("written_off"),
    ),
    key=("loan_id",),
    references=(Reference(("borrower_id",), "borrowers", ("borrower_id",)),),
    doc="One row per loan on the books at the as-of date (required).",
)

BORROWERS = TableSpec(
    "borrowers",
    (
        _t("borrower_id", required=True, not_null=True),
        _t("name", personal=True),
        _t("id_number", personal=True),
        _code(
            "borrower_type",
            ("household", "individual", "small_business", "enterprise", "village_collective"),
        ),
        _t("village"),
        _t("township"),
        _t("group_id"),
        _bool("related_party"),
        _code("repayment_willingness", ("good", "fair", "poor", "refuses")),
        _code("repayment_capacity", ("normal", "weak", "none")),
        _bool("whereabouts_known"),
        _bool("deceased_or_dissolved"),
        _bool("in_litigation"),
    ),
    key=("borrower_id",),
)

COLLATERAL = TableSpec(
    "collateral",
    (
        _t("collateral_id", required=True, not_null=True),
        _code(
            "collateral_type",
            (
                "house",
                "commercial_property",
                "land_use_right",
                "forest_right",
                "equipment",
                "vehicle",
                "deposit",
                "bond",
                "other",
            ),
        ),
        _t("owner_id"),
        _money("appraised_value"),
        _date("appraisal_date"),
        _t("appraiser_id"),
        _code("registration_status", ("registered", "pending", "none")),
        _t("registration_no"),
        _date("registration_date"),
        _bool("site_verified"),
    ),
    key=("collateral_id",),
    # collateral.repeated_mortgage finds one registration number on two records in one ordered pass;
    # appraiser.overvaluation counts each agency's collateral in the order of the second. A check reading every
    # collateral with an appraiser writes +appraiser_id IS NOT NULL, so that SQLite keeps to the key's order
    # rather than walk this partial index and fetch each row out of order (collateral.appraiser_not_approved).
    indexes=(("registration_no",), ("appraiser_id",)),
)

PLEDGES = TableSpec(
    "pledges",
    (
        _t("loan_id", required=True, not_null=True),
        _t("collateral_id", required=True, not_null=True),
        Column("lien_rank", ColumnType.INTEGER, non_negative=True),
        _money("secured_amount"),
    ),
    key=("loan_id", "collateral_id"),
    references=(
        Reference(("loan_id",), "loans", ("loan_id",)),
        Reference(("collateral_id",), "collateral", ("collateral_id",)),
    ),
    # The reference's index by collateral with the rest of the pledge: the collateral facts and the collateral
    # checks read a collateral's pledges from the index alone (measured at 1M collateral: the facts 1.52 s
    # against 1.62 s, collateral.repeated_mortgage 0.62 s against 0.70 s).
    indexes=(Index(("collateral_id", "loan_id", "lien_rank", "secured_amount"), complete=True),),
)

APPRAISERS = TableSpec(
    "appraisers",
    (
        _t("appraiser_id", required=True, not_null=True),
        _t("name"),
        _bool("approved"),
        _date("approved_until"),
        _bool("suspended"),
    ),
    key=("appraiser_id",),
)

INSPECTIONS = TableSpec(
    "inspections",
    (
        _t("loan_id", required=True, not_null=True),
        _date("inspection_date", required=True, not_null=True),
        _t("inspector_id"),
        _code("kind", ("routine", "monthly", "quarterly", "site")),
    ),
    references=(Reference(("loan_id",), "loans", ("loan_id",)),),
    # The reference's index with the date and kind: the inspection checks ask for a loan's inspections in a
    # window, or its last one on site, and read them from the index alone (measured at 3M inspections: the
    # five checks 2.5 s against 3.1 s, when each date and kind was read from its row).
    indexes=(Index(("loan_id", "inspection_date", "kind"), complete=True),),
)

COLLECTIONS = TableSpec(
    "collections",
    (
        _t("loan_id", required=True, not_null=True),
        _date("action_date", required=True, not_null=True),
        _t("officer_id"),
        _code(
            "action",
            (
                "call",
                "visit",
                "letter",
                "guarantor_notice",
                "special_team",
                "litigation",
                "settlement",
                "write_off",
            ),
        ),
        _money("amount_recovered"),
        _code("channel", ("transfer", "cash", "offset", "other")),
    ),
    references=(Reference(("loan_id",), "loans", ("loan_id",)),),
)

VILLAGES = TableSpec(
    "villages",
    (
        _t("village", required=True, not_null=True),
        _t("township"),
        _date("land_transfer_expected_date"),
        _money("land_compensation_amount"),
    ),
    key=("village",),
)

DOCUMENTS = TableSpec(
    "documents",
    (
        _t("loan_id", required=True, not_null=True),
        _t("doc_type", required=True, not_null=True),
        _bool("original_on_file"),
        _bool("electronic_copy"),
    ),
    key=("loan_id", "doc_type"),
    references=(Reference(("loan_id",), "loans", ("loan_id",)),),
    # The credit-file checks look for the few documents whose original or scan is missing or not recorded
    # (files.document_flags): through this index they read those alone, without a row lookup for each of
    # the snapshot's documents (measured at 4.3M documents: 0.12 s against 0.92 s).
    indexes=(Index(("loan_id", "doc_type", "original_on_file", "electronic_copy"),
                   where="original_on_file IS NOT 1 OR electronic_copy IS NOT 1", name="documents_unfinished"),),
)

CANONICAL_TABLES: tuple[TableSpec, ...] = (
    LOANS,
    BORROWERS,
    COLLATERAL,
    PLEDGES,
    APPRAISERS,
    INSPECTIONS,
    COLLECTIONS,
    VILLAGES,
    DOCUMENTS,
)
