"""The values plugins contribute: checks, classifiers, strategies, derivations, summaries, packs, and what
they yield.

Records are frozen attrs classes; closed vocabularies are enums. External
values (config, CLI) are validated where they enter, by ``Param.coerce``.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from loanrules.parsing import parse_date, parse_money

CONTRIBUTION_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PACK_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(f"unknown severity {value!r} (info, warning, critical)") from None

    def __str__(self) -> str:
        return self.name.lower()


class ParamType(enum.Enum):
    INTEGER = "integer"
    DECIMAL = "decimal"  # ratios and rates; passed to SQL as a float
    MONEY = "money"  # yuan in configs; integer fen in SQL, like the snapshot's money columns
    TEXT = "text"
    BOOLEAN = "boolean"
    DATE = "date"
    TEXT_LIST = "text_list"  # passed to SQL as a JSON array: use json_each(:name)


@attrs.frozen
class Param:
    name: str = attrs.field(validator=attrs.validators.matches_re(PARAM_NAME))
    default: Any = attrs.field(eq=False)  # as written; equal parameters are equal in ``value``
    type: ParamType = attrs.field(default=ParamType.INTEGER, converter=ParamType)
    description: str = ""
    value: Any = attrs.field(init=False, repr=False)  # the default, canonical (money in fen)

    def __attrs_post_init__(self):
        # Defaults are written as in a config ("300000" yuan) and stay so, which
        # keeps attrs.evolve() from converting twice; a bad default fails at
        # registration, naming the parameter.
        try:
            object.__setattr__(self, "value", self.coerce(self.default))
        except ValueError as error:
            raise ValueError(f"parameter {self.name!r}: bad default: {error}") from None

    def coerce(self, value: Any) -> Any:
        """Turn a config/CLI value into the canonical Python value, or raise ValueError."""
        kind = self.type
        if value is None:
            return None
        if kind is ParamType.BOOLEAN:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError(f"expected true or false, got {value!r}")
        if kind is ParamType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(f"expected a whole number, got {value!r}")
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"expected a whole number, got {value!r}") from None
        if kind is ParamType.DECIMAL:
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            try:
                return decimal.Decimal(str(value))
            except decimal.InvalidOperation:
                raise ValueError(f"expected a number, got {value!r}") from None
        if kind is ParamType.MONEY:
            if isinstance(value, bool) or not isinstance(value, (int, float, str, decimal.Decimal)):
                raise ValueError(f"expected an amount in yuan, got {value!r}")
            # TOML floats are read back through their shortest repr, so 0.1 stays 0.1.
            return parse_money(str(value))
        if kind is ParamType.DATE:
            if isinstance(value, datetime.date):
                return value
            return datetime.date.fromisoformat(parse_date(str(value)))
        if kind is ParamType.TEXT_LIST:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {value!r}")
            return tuple(value)
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {value!r}")
        return value

    def to_sql(self, value: Any) -> Any:
        import json

        if value is None:
            return None
        if self.type is ParamType.DECIMAL:
            return float(value)
        if self.type is ParamType.BOOLEAN:
            return int(value)
        if self.type is ParamType.DATE:
            return value.isoformat()
        if self.type is ParamType.TEXT_LIST:
            return json.dumps(list(value), ensure_ascii=False)
        return value

    def to_display(self, value: Any) -> Any:
        """JSON-friendly, human-readable value (money back in yuan), as recorded with a run."""
        if value is None:
            return None
        if self.type is ParamType.MONEY:
            return format_fen(value)
        if self.type is ParamType.DECIMAL:
            return str(value)
        if self.type is ParamType.DATE:
            return value.isoformat()
        if self.type is ParamType.TEXT_LIST:
            return list(value)
        return value


def format_fen(fen: int | None) -> str | None:
    """Integer fen as a decimal yuan string, exact: 123456 -> '1234.56'."""
    if fen is None:
        return None
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


def _one_evaluation(instance, attribute, value):
    if (instance.sql is None) == (instance.evaluate is None):
        raise ValueError(f"{instance.id}: give exactly one of sql= or evaluate=")


def _params_tuple(value: Iterable[Param]) -> tuple[Param, ...]:
    params = tuple(value)
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate parameter names in {names}")
    return params


@attrs.frozen(kw_only=True)
class _Contribution:
    id: str = attrs.field(validator=attrs.validators.matches_re(CONTRIBUTION_ID))
    title: str
    sql: str | None = None
    evaluate: Callable[..., Iterable] | None = attrs.field(default=None, validator=_one_evaluation)
    params: tuple[Param, ...] = attrs.field(default=(), converter=_params_tuple)
    tables: tuple[str, ...] = attrs.field(default=("loans",), converter=tuple)
    reference: str = ""
    description: str = ""
    # Derived tables (a Derivation's ``table``) read when this run builds them: when it does not, the
    # contribution sees an empty table of the same columns, so one plugin can use another's figures
    # without depending on it being installed or selected.
    optional_tables: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    needs_history: bool = False  # skipped, with the reason, when there is no previous as-of
    needs_net_capital: bool = False  # skipped, with the reason, when the config gives no net capital

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def doc(self) -> str:
        return self.description or self.title


@attrs.frozen(kw_only=True)
class Check(_Contribution):
    """A rule that yields findings.

    ``sql``: one SELECT over the snapshot tables with named parameters
    (``:as_of``, ``:run_id`` and the check's own). Its columns, by name:
    ``message`` (required), and any of ``loan_id``, ``borrower_id``,
    ``collateral_id``, ``details`` (JSON text), ``severity``.
    ``evaluate(ctx)``: a function yielding ``Finding`` values.
    """

    severity: Severity = attrs.field(default=Severity.WARNING, converter=Severity.parse)


class AssessmentField(enum.Enum):
    RISK_CLASS = "risk_class"  # worst class wins
    RECOVERY_CATEGORY = "recovery_category"  # worst category wins
    REQUIRED_PROVISION = "required_provision"  # largest amount (fen) wins


@attrs.frozen(kw_only=True)
class Classifier(_Contribution):
    """A rule that assesses loans.

    ``assigns`` names the assessment field. ``sql`` yields ``loan_id``, a column
    named like the field (``risk_class`` ...), and optionally ``details`` (JSON
    text: observed value, threshold); ``evaluate(ctx)`` yields ``Verdict``
    values. Risk-class classifiers run first; the others may read the
    ``assessments`` view of the current run.
    """

    assigns: AssessmentField = attrs.field(
        default=AssessmentField.RISK_CLASS, converter=AssessmentField
    )


@attrs.frozen(kw_only=True)
class Strategy(_Contribution):
    """A collection strategy: turns assessments and findings into tonight's plan, one or more tasks per
    borrower that needs collecting.

    ``sql`` yields ``borrower_id``, ``loan_ids`` (JSON array), ``step``,
    ``assignee``, ``due_date``, ``priority``, ``done_when`` (JSON array of
    collection actions that complete the step) and ``details`` (JSON text: why
    this step, e.g. the rule that chose it and the figures it saw; text that is
    not JSON is stored as a JSON string); ``evaluate(ctx)`` yields
    ``Task``. The ``collection_tasks`` view shows the run's previous tasks as
    ``prev_collection_tasks`` (open ones carry on; see ``Task``).
    """

    tables: tuple[str, ...] = attrs.field(default=("loans",), converter=tuple)


TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _sql_only(instance, attribute, value):
    if instance.sql is None:
        raise ValueError(f"{instance.id}: a {type(instance).__name__} is SQL only (give sql=)")


def _column_names(value: Iterable[str]) -> tuple[str, ...]:
    names = tuple(value)
    if not names or any(not TABLE_NAME.match(name) for name in names) or len(set(names)) != len(names):
        raise ValueError(f"columns must be distinct lower-case names, at least one: {names!r}")
    return names


@attrs.frozen(kw_only=True)
class Derivation(_Contribution):
    """A per-run table of figures other contributions read, such as each loan's effective collateral value.

    ``sql`` returns ``columns`` (the first is the key: one row per value).
    The table, named ``table``, is built once per run, when the first
    contribution that lists it in ``tables`` or ``optional_tables`` runs
    (classifiers included: a derivation first used by a classifier that is
    not a risk-class one sees the risk classes as ``assessments``).
    A contribution that lists it in ``tables`` is skipped, with the reason,
    when the derivation is not in the run.
    """

    table: str = attrs.field(validator=attrs.validators.matches_re(TABLE_NAME))
    columns: tuple[str, ...] = attrs.field(converter=_column_names)
    sql: str | None = attrs.field(default=None, validator=_sql_only)


@attrs.frozen(kw_only=True)
class Summary(_Contribution):
    """A table of figures for the reports (coverage by collateral type, an agency scorecard).

    Computed at the end of every run that selects it and stored with the run
    (table ``summaries``), so a report of any past run reads it without the
    snapshot. ``sql`` returns ``columns`` in that order; money columns are
    integer fen and end in ``_fen``, shares end in ``_share`` (0..1).
    """

    columns: tuple[str, ...] = attrs.field(converter=_column_names)
    sql: str | None = attrs.field(default=None, validator=_sql_only)


@attrs.frozen(kw_only=True)
class Finding:
    message: str
    loan_id: str | None = None
    borrower_id: str | None = None
    collateral_id: str | None = None
    details: Mapping[str, Any] | None = None
    severity: Severity | None = attrs.field(
        default=None, converter=attrs.converters.optional(Severity.parse)
    )


@attrs.frozen
class Verdict:
    loan_id: str
    value: Any  # a risk class, a recovery category, or an amount in fen
    details: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class Task:
    """A step of a borrower's collection plan, proposed by a strategy for tonight.

    The core keeps tasks across nights: a task proposed again keeps the day
    it opened and its due date; it closes as ``done`` when a collection
    action listed in ``done_when`` is recorded on one of its loans since it
    opened, as ``replaced`` when the strategy proposes another step for the
    borrower, and as ``cured`` when the strategy proposes nothing for the
    borrower any more.

    ``details`` says why the step was chosen (JSON-able, like
    ``Finding.details``): an open task carries tonight's, a closed one keeps
    the last it had.
    """

    borrower_id: str
    loan_ids: tuple[str, ...] = attrs.field(converter=tuple)
    step: str
    assignee: str | None = None
    due_date: datetime.date | str | None = None
    priority: int = 0
    done_when: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # collections.action codes
    details: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class PackMember:
    params: Mapping[str, Any] = attrs.field(factory=dict)
    severity: Severity | None = attrs.field(
        default=None, converter=attrs.converters.optional(Severity.parse)
    )


def _members(value: Mapping[str, Any] | Iterable[str]) -> Mapping[str, PackMember]:
    if not isinstance(value, Mapping):
        value = {member_id: {} for member_id in value}
    return {
        member_id: member if isinstance(member, PackMember) else PackMember(**member)
        for member_id, member in value.items()
    }


@attrs.frozen(kw_only=True)
class Pack:
    """A named, versioned set of checks, classifiers and strategies with parameter values."""

    name: str = attrs.field(validator=attrs.validators.matches_re(PACK_NAME))
    version: str
    title: str
    description: str = ""
    members: Mapping[str, PackMember] = attrs.field(factory=dict, converter=_members)
