"""A cooperative's TOML config: read, validated key by key, hashed.

Every wrong key, type or value is a ``ConfigError`` naming the file and the
key path (with a "did you mean" for typos); nothing here raises a traceback at
a user. Checks and packs named in the config are validated against the
registry later, by ``loanrules.params``, because only the plugins know them.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from loanrules.errors import ConfigError
from loanrules.model import CONTRIBUTION_ID, PARAM_NAME, Param, ParamType, Severity
from loanrules.parsing import parse_money


@attrs.frozen
class CheckSettings:
    enabled: bool | None = None
    severity: Severity | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SqlRule:
    """A check declared in the config as SQL, run under the read-only authorizer."""

    id: str
    title: str
    sql: str
    severity: Severity = Severity.WARNING
    tables: tuple[str, ...] = ("loans",)
    params: tuple[Param, ...] = ()
    reference: str = "the cooperative's own rule"
    description: str = ""


@attrs.frozen
class SnapshotSettings:
    encoding: str = "utf-8-sig"  # UTF-8 with or without a byte-order mark
    delimiter: str = ","
    files: Mapping[str, str] = attrs.field(factory=dict)  # table -> file name
    columns: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)  # table -> header -> canonical
    codes: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)  # "table.column" -> local -> canonical


@attrs.frozen
class Config:
    path: str | None = None
    sha256: str | None = None
    cooperative: str = "default"
    net_capital: int | None = None  # fen
    packs: tuple[str, ...] = ()
    # one value for a parameter several checks share by name (max_ltv_house): every selected check,
    # classifier, derivation ... with a parameter of that name takes it, unless its own [checks] says otherwise
    params: Mapping[str, Any] = attrs.field(factory=dict)
    checks: Mapping[str, CheckSettings] = attrs.field(factory=dict)
    rules: tuple[SqlRule, ...] = ()
    snapshot: SnapshotSettings = SnapshotSettings()
    show_personal_data: bool = False


class _Reader:
    """Walks the TOML document, remembering the key path for error messages."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, message: str):
        raise ConfigError(f"{self.path}: {key}: {message}")

    def table(self, value: Any, key: str, allowed: tuple[str, ...] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(key, f"expected a table, got {_kind(value)}")
        if allowed is not None:
            for name in value:
                if name not in allowed:
                    close = difflib.get_close_matches(name, allowed, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
                    self.fail(_join(key, name), f"unknown key{hint}")
        return value

    def typed(self, value: Any, key: str, kind: type | tuple[type, ...], what: str):
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(key, f"expected {what}, got {_kind(value)} {value!r}")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        self.typed(value, key, list, "a list of strings")
        for item in value:
            self.typed(item, key, str, "a list of strings")
        return tuple(value)

    def string_map(self, value: Any, key: str) -> dict[str, str]:
        table = self.table(value, key)
        return {name: self.typed(item, _join(key, name), str, "a string") for name, item in table.items()}


def _join(key: str, name: str) -> str:
    simple = name.replace("_", "").isalnum() and name.isascii()
    shown = name if simple else f'"{name}"'
    return f"{key}.{shown}" if key else shown


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


TOP_KEYS = ("cooperative", "packs", "params", "checks", "rules", "snapshot", "privacy")


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror}") from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_config(document, str(path), hashlib.sha256(raw).hexdigest())


def parse_config(document: Mapping[str, Any], path: str = "<config>", sha256: str | None = None) -> Config:
    r = _Reader(path)
    r.table(document, "", TOP_KEYS)
    fields: dict[str, Any] = {"path": path, "sha256": sha256}

    coop = r.table(document.get("cooperative", {}), "cooperative", ("name", "net_capital"))
    if "name" in coop:
        fields["cooperative"] = r.typed(coop["name"], "cooperative.name", str, "a string")
        if not fields["cooperative"].strip():
            r.fail("cooperative.name", "must not be empty")
    if "net_capital" in coop:
        value = r.typed(coop["net_capital"], "cooperative.net_capital", (int, float, str), "an amount in yuan")
        try:
            fields["net_capital"] = parse_money(str(value))
        except ValueError as error:
            r.fail("cooperative.net_capital", str(error))
        if fields["net_capital"] <= 0:
            r.fail("cooperative.net_capital", "must be positive")

    if "packs" in document:
        fields["packs"] = r.strings(document["packs"], "packs")

    shared = r.table(document.get("params", {}), "params")
    for name in shared:
        if not PARAM_NAME.match(name):
            r.fail(_join("params", name), "not a parameter name (lower-case, e.g. max_ltv_house)")
    fields["params"] = dict(shared)

    checks = r.table(document.get("checks", {}), "checks")
    fields["checks"] = {check_id: _check_settings(r, check_id, value) for check_id, value in checks.items()}

    rules = document.get("rules", [])
    r.typed(rules, "rules", list, "an array of tables ([[rules]])")
    fields["rules"] = tuple(_sql_rule(r, f"rules[{i}]", rule) for i, rule in enumerate(rules))
    seen: set[str] = set()
    for rule in fields["rules"]:
        if rule.id in seen:
            r.fail("rules", f"two rules have the id {rule.id!r}")
        seen.add(rule.id)

    fields["snapshot"] = _snapshot(r, document.get("snapshot", {}))

    privacy = r.table(document.get("privacy", {}), "privacy", ("show_personal_data",))
    if "show_personal_data" in privacy:
        fields["show_personal_data"] = r.typed(
            privacy["show_personal_data"], "privacy.show_personal_data", bool, "true or false"
        )
    return Config(**fields)


def _check_settings(r: _Reader, check_id: str, value: Any) -> CheckSettings:
    key = _join("checks", check_id)
    if not CONTRIBUTION_ID.match(check_id):
        r.fail(key, "not a check id (dotted lower-case, e.g. collateral.ltv_exceeded)")
    table = r.table(value, key, ("enabled", "severity", "params"))
    severity = None
    if "severity" in table:
        try:
            severity = Severity.parse(r.typed(table["severity"], f"{key}.severity", str, "a severity"))
        except ValueError as error:
            r.fail(f"{key}.severity", str(error))
    enabled = table.get("enabled")
    if enabled is not None:
        r.typed(enabled, f"{key}.enabled", bool, "true or false")
    params = dict(r.table(table.get("params", {}), f"{key}.params"))
    return CheckSettings(enabled=enabled, severity=severity, params=params)


_INFERRED = {bool: ParamType.BOOLEAN, int: ParamType.INTEGER, float: ParamType.DECIMAL, str: ParamType.TEXT,
             list: ParamType.TEXT_LIST}


def _sql_rule(r: _Reader, key: str, value: Any) -> SqlRule:
    allowed = ("id", "title", "sql", "severity", "tables", "params", "reference", "description")
    table = r.table(value, key, allowed)
    for required in ("id", "title", "sql"):
        if required not in table:
            r.fail(f"{key}.{required}", "missing (a rule needs id, title and sql)")
    rule_id = r.typed(table["id"], f"{key}.id", str, "a string")
    if not CONTRIBUTION_ID.match(rule_id):
        r.fail(f"{key}.id", f"{rule_id!r} is not a check id (dotted lower-case, e.g. local.large_credit_loan)")
    fields: dict[str, Any] = {
        "id": rule_id,
        "title": r.typed(table["title"], f"{key}.title", str, "a string"),
        "sql": r.typed(table["sql"], f"{key}.sql", str, "a string"),
    }
    if "severity" in table:
        try:
            fields["severity"] = Severity.parse(r.typed(table["severity"], f"{key}.severity", str, "a severity"))
        except ValueError as error:
            r.fail(f"{key}.severity", str(error))
    if "tables" in table:
        fields["tables"] = r.strings(table["tables"], f"{key}.tables")
    for text in ("reference", "description"):
        if text in table:
            fields[text] = r.typed(table[text], f"{key}.{text}", str, "a string")
    params = []
    for name, spec in r.table(table.get("params", {}), f"{key}.params").items():
        pkey = _join(f"{key}.params", name)
        if not PARAM_NAME.match(name):
            r.fail(pkey, "parameter names are lower-case words joined by _")
        if isinstance(spec, Mapping):
            spec = r.table(spec, pkey, ("type", "default", "description"))
            if "default" not in spec:
                r.fail(f"{pkey}.default", "missing")
            try:
                kind = ParamType(spec.get("type", "text"))
            except ValueError:
                r.fail(f"{pkey}.type", f"unknown type; one of {', '.join(t.value for t in ParamType)}")
            default, description = spec["default"], str(spec.get("description", ""))
        else:
            kind = _INFERRED.get(type(spec))
            if kind is None:
                r.fail(pkey, f"unsupported value {spec!r}")
            default, description = spec, ""
        try:
            params.append(Param(name, default, kind, description))
        except ValueError as error:
            r.fail(pkey, str(error))
    fields["params"] = tuple(params)
    return SqlRule(**fields)


def _snapshot(r: _Reader, value: Any) -> SnapshotSettings:
    table = r.table(value, "snapshot", ("encoding", "delimiter", "files", "columns", "codes"))
    fields: dict[str, Any] = {}
    if "encoding" in table:
        encoding = r.typed(table["encoding"], "snapshot.encoding", str, "an encoding name")
        try:
            codec = codecs.lookup(encoding)
        except LookupError:
            codec = None
        if codec is None or not codec._is_text_encoding:  # base64, zlib ... are codecs, not text encodings
            r.fail("snapshot.encoding", f"unknown text encoding {encoding!r} (e.g. utf-8, gb18030, gbk)")
        name = codec.name
        # Plain "utf-8" still tolerates a byte-order mark: exports from Excel carry one
        fields["encoding"] = "utf-8-sig" if name == "utf-8" else name
    if "delimiter" in table:
        delimiter = r.typed(table["delimiter"], "snapshot.delimiter", str, "one character")
        if len(delimiter) != 1:
            r.fail("snapshot.delimiter", "expected one character")
        fields["delimiter"] = delimiter
    if "files" in table:
        fields["files"] = r.string_map(table["files"], "snapshot.files")
    if "columns" in table:
        columns = r.table(table["columns"], "snapshot.columns")
        fields["columns"] = {
            name: r.string_map(mapping, _join("snapshot.columns", name)) for name, mapping in columns.items()
        }
    if "codes" in table:
        codes = r.table(table["codes"], "snapshot.codes")
        for name in codes:
            if name.count(".") != 1:
                r.fail(_join("snapshot.codes", name), 'expected "table.column", e.g. "loans.guarantee_type"')
        fields["codes"] = {name: r.string_map(m, _join("snapshot.codes", name)) for name, m in codes.items()}
    return SnapshotSettings(**fields)
