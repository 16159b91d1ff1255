"""The cooperative's TOML config: every wrong key, type or value is one clear error naming file and key."""

from __future__ import annotations

import datetime
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import AS_OF, invoke, loan, write_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from loanrules.config import CheckSettings, Config, SnapshotSettings, SqlRule, load_config, parse_config
from loanrules.errors import ConfigError
from loanrules.model import Param, ParamType, Severity
from loanrules.run import validate_snapshot
from loanrules.schema import CANONICAL_TABLES, ColumnType

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example-cooperative.toml"

RULE = 'id = "local.a"\ntitle = "A rule"\nsql = "SELECT loan_id, \'x\' AS message FROM loans"\n'


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cooperative.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return path, str(caught.value)


# ============================================================ each wrong key, type or value


@pytest.mark.parametrize(
    ("text", "key_and_message"),
    [
        pytest.param('[cooperative]\nnmae = "Qingshan"\n', "cooperative.nmae: unknown key (did you mean 'name'?)",
                     id="unknown key with a suggestion"),
        pytest.param('[snapshot]\nfoo = 1\n', "snapshot.foo: unknown key (known: encoding, delimiter, files, columns, "
                                              "codes)", id="unknown key without a close match"),
        pytest.param('[checks."data.x"]\nseverty = "info"\n',
                     "checks.\"data.x\".severty: unknown key (did you mean 'severity'?)", id="unknown check key"),
        pytest.param("[[rules]]\n" + RULE + "tabels = ['loans']\n",
                     "rules[0].tabels: unknown key (did you mean 'tables'?)", id="unknown rule key"),
        pytest.param("[cooperative]\nnet_capital = true\n",
                     "cooperative.net_capital: expected an amount in yuan, got a boolean True", id="wrong type"),
        pytest.param("[cooperative]\nnet_capital = [1]\n",
                     "cooperative.net_capital: expected an amount in yuan, got a list [1]", id="wrong type: list"),
        pytest.param('[cooperative]\nnet_capital = "185000000.005"\n',
                     "cooperative.net_capital: more than two decimals: an amount must be exact to the fen",
                     id="net capital not exact to the fen"),
        pytest.param('[cooperative]\nnet_capital = "1.8亿"\n',
                     "cooperative.net_capital: not an amount (decimal yuan, e.g. 1234.56)", id="net capital not an "
                                                                                               "amount"),
        pytest.param("[cooperative]\nnet_capital = -5\n", "cooperative.net_capital: must be positive",
                     id="net capital negative"),
        pytest.param("[cooperative]\nname = 5\n", "cooperative.name: expected a string, got an integer 5",
                     id="name not a string"),
        pytest.param('[cooperative]\nname = "  "\n', "cooperative.name: must not be empty", id="empty name"),
        pytest.param("cooperative = 5\n", "cooperative: expected a table, got an integer", id="table expected"),
        pytest.param('packs = "data-quality"\n', "packs: expected a list of strings, got a string 'data-quality'",
                     id="packs not a list"),
        pytest.param('[checks."data.x"]\nseverity = "fatal"\n',
                     "checks.\"data.x\".severity: unknown severity 'fatal' (info, warning, critical)",
                     id="bad check severity"),
        pytest.param("[[rules]]\n" + RULE + 'severity = "high"\n',
                     "rules[0].severity: unknown severity 'high' (info, warning, critical)", id="bad rule severity"),
        pytest.param('[checks."data.x"]\nenabled = "yes"\n',
                     "checks.\"data.x\".enabled: expected true or false, got a string 'yes'", id="enabled not bool"),
        pytest.param('[checks."data.x"]\nparams = 3\n', "checks.\"data.x\".params: expected a table, got an integer",
                     id="check params not a table"),
        pytest.param("[checks.DataQuality]\nenabled = false\n",
                     "checks.DataQuality: not a check id (dotted lower-case, e.g. collateral.ltv_exceeded)",
                     id="bad check id"),
        pytest.param('[snapshot]\nencoding = "utf-9"\n',
                     "snapshot.encoding: unknown text encoding 'utf-9' (e.g. utf-8, gb18030, gbk)",
                     id="bad encoding name"),
        pytest.param("[snapshot]\nencoding = 8\n", "snapshot.encoding: expected an encoding name, got an integer 8",
                     id="encoding not a string"),
        pytest.param('[snapshot]\ndelimiter = ";;"\n', "snapshot.delimiter: expected one character",
                     id="delimiter of two characters"),
        pytest.param('[snapshot.columns.loans]\n"贷款账号" = 5\n',
                     'snapshot.columns.loans."贷款账号": expected a string, got an integer 5',
                     id="column map value not a string"),
        pytest.param('[snapshot.codes.guarantee_type]\n"抵押" = "mortgage"\n',
                     'snapshot.codes.guarantee_type: expected "table.column", e.g. "loans.guarantee_type"',
                     id="code map without table"),
        pytest.param('[snapshot.files]\nloans = ["DK.csv"]\n',
                     "snapshot.files.loans: expected a string, got a list ['DK.csv']", id="file name not a string"),
        pytest.param('[privacy]\nshow_personal_data = "no"\n',
                     "privacy.show_personal_data: expected true or false, got a string 'no'", id="privacy not bool"),
        pytest.param('[[rules]]\nid = "Large Loans"\ntitle = "t"\nsql = "SELECT 1"\n',
                     "rules[0].id: 'Large Loans' is not a check id (dotted lower-case, e.g. local.large_credit_loan)",
                     id="bad rule id"),
        pytest.param("[[rules]]\n" + RULE + '[[rules]]\nid = "local.b"\ntitle = "B"\n',
                     "rules[1].sql: missing (a rule needs id, title and sql)", id="rule missing sql"),
        pytest.param('[[rules]]\nid = "local.b"\nsql = "SELECT 1"\n',
                     "rules[0].title: missing (a rule needs id, title and sql)", id="rule missing title"),
        pytest.param("[[rules]]\n" + RULE + "[[rules]]\n" + RULE, "rules: two rules have the id 'local.a'",
                     id="duplicate rule ids"),
        pytest.param('[rules]\nid = "local.a"\n', "rules: expected an array of tables ([[rules]]), got a table "
                                                  "{'id': 'local.a'}", id="rules not an array"),
        pytest.param("[[rules]]\n" + RULE + 'tables = "loans"\n',
                     "rules[0].tables: expected a list of strings, got a string 'loans'", id="rule tables not a list"),
        pytest.param("[[rules]]\n" + RULE + '[rules.params.limit]\ntype = "amount"\ndefault = 1\n',
                     "rules[0].params.limit.type: unknown type; one of integer, decimal, money, text, boolean, date, "
                     "text_list", id="unknown param type"),
        pytest.param("[[rules]]\n" + RULE + '[rules.params.limit]\ntype = "money"\n',
                     "rules[0].params.limit.default: missing", id="param without default"),
        pytest.param("[[rules]]\n" + RULE + '[rules.params.limit]\ntype = "money"\ndefault = "lots"\n',
                     "rules[0].params.limit: not an amount (decimal yuan, e.g. 1234.56)", id="param bad default"),
        pytest.param("[[rules]]\n" + RULE + '[rules.params.limit]\ntype = "integer"\ndefault = 1\nunit = "day"\n',
                     "rules[0].params.limit.unit: unknown key (known: type, default, description)",
                     id="unknown param key"),
        pytest.param("[[rules]]\n" + RULE + "[rules.params]\nMaxDays = 3\n",
                     "rules[0].params.MaxDays: parameter names are lower-case words joined by _", id="bad param name"),
        pytest.param("[[rules]]\n" + RULE + "[rules.params]\nsince = 2026-01-01T00:00:00\n",
                     "rules[0].params.since: unsupported value datetime.datetime(2026, 1, 1, 0, 0)",
                     id="param value of no type"),
    ],
)
def test_config_error_names_the_file_and_the_key(tmp_path, text, key_and_message):
    path, message = config_error(tmp_path, text)
    key, reason = key_and_message.split(": ", 1)
    assert message.startswith(f"{path}: {key}: ")  # the key path, exactly
    assert message.endswith(reason)  # the reason (a prefix, such as the parameter's name, may be added)


def test_unknown_top_level_key_suggests_the_right_one(tmp_path):
    path, message = config_error(tmp_path, '[cooperatve]\nname = "Qingshan"\n')
    assert message.startswith(f"{path}: ")
    assert message.endswith("cooperatve: unknown key (did you mean 'cooperative'?)")


def test_unknown_top_level_key_without_a_close_match_lists_the_known_ones(tmp_path):
    _, message = config_error(tmp_path, "colour = 1\n")
    assert message.endswith("colour: unknown key (known: cooperative, packs, params, checks, rules, snapshot, privacy)")


def test_unknown_top_level_key_path_has_no_leading_dot(tmp_path):
    path, message = config_error(tmp_path, '[cooperatve]\nname = "Qingshan"\n')
    assert message == f"{path}: cooperatve: unknown key (did you mean 'cooperative'?)"


@pytest.mark.parametrize("encoding", ["base64", "rot13", "hex", "zlib"])
def test_an_encoding_that_does_not_decode_text_is_refused(tmp_path, encoding):
    path, message = config_error(tmp_path, f'[snapshot]\nencoding = "{encoding}"\n')
    assert message.startswith(f"{path}: snapshot.encoding: ")


def test_toml_syntax_error_names_the_file_and_the_line(tmp_path):
    path, message = config_error(tmp_path, '[cooperative]\nname = "Qingshan\n')
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in message


def test_config_that_is_not_utf8_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "cooperative.toml"
    path.write_bytes('[cooperative]\nname = "青山信用社"\n'.encode("gb18030"))
    with pytest.raises(ConfigError, match=r"^.*cooperative\.toml: not valid TOML: .*utf-8"):
        load_config(path)


def test_missing_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: cannot read config: No such file or directory"


# Anything TOML can hold, under the config's own keys and others: parse_config must
# either return a Config or raise ConfigError, never another exception.
_KEYS = ["cooperative", "name", "net_capital", "packs", "checks", "rules", "snapshot", "privacy", "encoding",
         "delimiter", "files", "columns", "codes", "loans", "loans.guarantee_type", "data.x", "enabled", "severity",
         "params", "id", "title", "sql", "tables", "type", "default", "description", "reference", "limit",
         "show_personal_data", "x"]
_toml_scalars = st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                          st.dates(), st.datetimes(), st.sampled_from(["money", "integer", "date", "text_list",
                                                                       "decimal", "boolean", "warning", "gb18030",
                                                                       "local.a", "1.00", "2026-01-01"]))
_toml_values = st.recursive(_toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS[:8]), _toml_values, max_size=4))
def test_any_document_gives_a_config_or_a_config_error(document):
    try:
        config = parse_config(document, "fuzz.toml")
    except ConfigError as error:
        assert str(error).startswith("fuzz.toml: ")
    else:
        assert isinstance(config, Config)


# ============================================================ good configs


FULL = """
packs = ["data-quality", "cn-five-category"]

[cooperative]
name = "青山农村信用合作社"
net_capital = "185,000,000.50"

[snapshot]
encoding = "GB18030"
delimiter = "|"

[snapshot.files]
loans = "DK_JJ.csv"

[snapshot.columns.loans]
"贷款账号" = "loan_id"
"贷款余额" = "outstanding_principal"

[snapshot.codes."loans.guarantee_type"]
"抵押" = "mortgage"

[privacy]
show_personal_data = true

[checks."data.matured_not_overdue"]
enabled = true
severity = "CRITICAL"
params = { grace_days = 3 }

[checks."data.lending_officer_missing"]
enabled = false

[[rules]]
id = "local.big_credit_loan"
title = "Big credit loan"
sql = "SELECT loan_id, 'big' AS message FROM loans WHERE outstanding_principal > :limit"
severity = "info"
tables = ["loans", "borrowers"]
reference = "art. 12"
description = "credit loans above the limit"

[rules.params]
min_days = 30
rate = 0.5
kinds = ["farm"]
strict = true
label = "x"

[rules.params.limit]
type = "money"
default = 300000.5
description = "yuan"

[rules.params.since]
type = "date"
default = 2026-01-01
"""


def test_a_full_config_parses_to_the_expected_values(tmp_path):
    path = write_config(tmp_path, FULL)
    config = load_config(path)
    assert [param.value for param in config.rules[0].params] == [
        30, Decimal("0.5"), ("farm",), True, "x", 30_000_050, datetime.date(2026, 1, 1)]
    assert config == Config(
        path=str(path),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        cooperative="青山农村信用合作社",
        net_capital=18_500_000_050,  # fen
        packs=("data-quality", "cn-five-category"),
        checks={
            "data.matured_not_overdue": CheckSettings(enabled=True, severity=Severity.CRITICAL,
                                                      params={"grace_days": 3}),
            "data.lending_officer_missing": CheckSettings(enabled=False),
        },
        rules=(SqlRule(
            id="local.big_credit_loan",
            title="Big credit loan",
            sql="SELECT loan_id, 'big' AS message FROM loans WHERE outstanding_principal > :limit",
            severity=Severity.INFO,
            tables=("loans", "borrowers"),
            reference="art. 12",
            description="credit loans above the limit",
            # a Param's default is written as in a config and kept canonical (money in fen)
            params=(Param("min_days", 30, ParamType.INTEGER), Param("rate", "0.5", ParamType.DECIMAL),
                    Param("kinds", ["farm"], ParamType.TEXT_LIST), Param("strict", True, ParamType.BOOLEAN),
                    Param("label", "x", ParamType.TEXT), Param("limit", "300000.50", ParamType.MONEY, "yuan"),
                    Param("since", "2026-01-01", ParamType.DATE)),
        ),),
        snapshot=SnapshotSettings(
            encoding="gb18030", delimiter="|", files={"loans": "DK_JJ.csv"},
            columns={"loans": {"贷款账号": "loan_id", "贷款余额": "outstanding_principal"}},
            codes={"loans.guarantee_type": {"抵押": "mortgage"}},
        ),
        show_personal_data=True,
    )


def test_an_empty_config_gives_the_defaults(tmp_path):
    path = write_config(tmp_path, "# nothing set\n")
    config = load_config(path)
    assert config == Config(path=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    assert config.snapshot.encoding == "utf-8-sig"
    assert config.cooperative == "default" and config.net_capital is None
    assert load_config(None) == Config()


@pytest.mark.parametrize(("written", "normalised"), [
    ("UTF-8", "utf-8-sig"), ("utf8", "utf-8-sig"), ("utf_8", "utf-8-sig"), ("UTF-8-SIG", "utf-8-sig"),
    ("GB18030", "gb18030"), ("Gb18030", "gb18030"), ("GBK", "gbk"), ("cp936", "gbk"), ("GB2312", "gb2312"),
])
def test_encoding_names_are_normalised(written, normalised):
    assert parse_config({"snapshot": {"encoding": written}}).snapshot.encoding == normalised


@pytest.mark.parametrize(("written", "fen"), [
    ('"185000000.00"', 18_500_000_000), ('"185,000,000"', 18_500_000_000), ("185000000", 18_500_000_000),
    ("185000000.05", 18_500_000_005), ("0.1", 10), ('"0.01"', 1),
])
def test_net_capital_is_read_in_yuan_and_kept_in_fen(tmp_path, written, fen):
    assert load_config(write_config(tmp_path, f"[cooperative]\nnet_capital = {written}\n")).net_capital == fen


def test_config_hash_changes_with_the_file(tmp_path):
    first = load_config(write_config(tmp_path, '[cooperative]\nname = "A"\n')).sha256
    again = load_config(write_config(tmp_path, '[cooperative]\nname = "A"\n')).sha256
    other = load_config(write_config(tmp_path, '[cooperative]\nname = "A" \n')).sha256
    assert first == again != other


# ============================================================ the example config users copy


@pytest.fixture
def example() -> Config:
    if not EXAMPLE.exists():
        pytest.skip("config/example-cooperative.toml not written yet")
    return load_config(EXAMPLE)


def test_example_config_parses_to_the_expected_values(example):
    assert example.path == str(EXAMPLE)
    assert example.cooperative == "Qingshan Rural Credit Cooperative"
    assert example.net_capital == 18_500_000_000  # "185000000.00" yuan, in fen
    assert example.packs == ("data-quality",)
    assert example.snapshot.encoding == "gb18030"
    assert example.snapshot.files == {"loans": "DK_JJ.csv"}
    assert example.snapshot.columns["loans"]["贷款账号"] == "loan_id"
    assert example.snapshot.codes["loans.guarantee_type"]["抵押"] == "mortgage"
    assert example.checks["data.matured_not_overdue"].severity is Severity.CRITICAL
    assert example.checks["data.lending_officer_missing"].enabled is False
    [rule] = example.rules
    assert rule.id == "local.large_credit_loan"
    assert rule.params == (Param("limit", "300000", ParamType.MONEY, "largest credit loan, yuan"),)
    assert rule.params[0].value == 30_000_000  # fen


def test_example_config_maps_only_onto_canonical_columns_and_codes(example):
    tables = {spec.name: spec for spec in CANONICAL_TABLES}
    for table, mapping in example.snapshot.columns.items():
        assert set(mapping.values()) <= set(tables[table].column_names), table
    for name, mapping in example.snapshot.codes.items():
        table, column = name.split(".")
        spec = tables[table].column(column)
        assert spec is not None and spec.type is ColumnType.CODE, name
        assert set(mapping.values()) <= set(spec.codes), name


def test_example_config_validates_an_extract_written_the_way_it_describes(tmp_path, example, registry):
    columns = {local: canonical for local, canonical in example.snapshot.columns["loans"].items()}
    row = loan("L1", guarantee_type="抵押", recorded_class="正常", origination_date="20250301")
    directory = tmp_path / "extract"
    directory.mkdir()
    text = ",".join(columns) + "\n" + ",".join(row[canonical] for canonical in columns.values()) + "\n"
    (directory / example.snapshot.files["loans"]).write_bytes(text.encode("gb18030"))
    loaded = validate_snapshot(directory, config=example, registry=registry, as_of=AS_OF)
    assert loaded.row_counts == {"loans": 1}
    assert loaded.cooperative == "Qingshan Rural Credit Cooperative"


# ============================================================ through the CLI


BAD = "[cooperative]\nnet_capital = true\n"


@pytest.mark.parametrize("command", [
    ["validate", "{snapshot}"],
    ["load", "{snapshot}", "--as-of", AS_OF, "--db", "{db}"],
    ["run", "{snapshot}", "--as-of", AS_OF, "--db", "{db}"],
])
def test_cli_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, runner, command):
    path = write_config(tmp_path, BAD)
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1")])
    db = tmp_path / "results.db"
    args = [part.format(snapshot=snapshot, db=db) for part in command] + ["--config", str(path)]
    result = invoke(runner, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: {path}: cooperative.net_capital: expected an amount in yuan, got a boolean True"]
    assert "Traceback" not in result.output
    assert not db.exists()  # refused before the database is touched


def test_cli_unknown_key_error_carries_the_suggestion(tmp_path, runner):
    path = write_config(tmp_path, '[snapshot]\nencodng = "gbk"\n')
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1")])
    result = invoke(runner, "validate", snapshot, "--config", path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {path}: snapshot.encodng: unknown key (did you mean 'encoding'?)"]


def test_cli_config_syntax_error_is_one_line(tmp_path, runner):
    path = write_config(tmp_path, "packs = [\n")
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1")])
    result = invoke(runner, "validate", snapshot, "--config", path)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {path}: not valid TOML: ")


def test_cli_debug_variable_shows_the_traceback(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("LOANRULES_DEBUG", "1")
    path = write_config(tmp_path, BAD)
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1")])
    result = invoke(runner, "validate", snapshot, "--config", path)
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"Error: {path}: cooperative.net_capital: expected an amount in yuan, got a boolean True")


# ------------------------------------------------------------ [params]: one value for a shared parameter


def _plan_params(document):
    from loanrules.manager import PluginManager
    from loanrules.plan import Overrides, build_plan
    from loanrules.registry import Registry

    registry = Registry.from_plugins(PluginManager())
    plan = build_plan(registry, parse_config(document), ["cooperative-baseline"], Overrides())
    return {planned.item.id: planned.display_params() for planned in plan}


def test_a_shared_param_reaches_every_contribution_with_that_name_and_a_checks_own_wins():
    params = _plan_params({"params": {"max_ltv_house": "0.65"},
                           "checks": {"collateral.repeated_mortgage": {"params": {"max_ltv_house": "0.60"}}}})
    assert params["collateral.ltv_exceeded"]["max_ltv_house"] == "0.65"
    assert params["collateral.effective_value"]["max_ltv_house"] == "0.65"
    assert params["appraiser.overvaluation"]["max_ltv_house"] == "0.65"
    assert params["collateral.repeated_mortgage"]["max_ltv_house"] == "0.60"
    assert params["collateral.ltv_exceeded"]["max_ltv_land_use_right"] == "0.50"  # untouched


def test_a_shared_param_no_check_has_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"params\.max_ltv_hose: .*did you mean 'max_ltv_house'"):
        _plan_params({"params": {"max_ltv_hose": "0.65"}})


def test_a_shared_param_with_a_bad_value_names_the_key():
    with pytest.raises(ConfigError, match=r"params\.max_ltv_house"):
        _plan_params({"params": {"max_ltv_house": "lots"}})
