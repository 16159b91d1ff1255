"""SQL rules declared in a cooperative's config: they run, and the read-only authorizer
refuses anything but reading the snapshot."""

from __future__ import annotations

import pytest
from conftest import AS_OF, invoke, loan, query, table_snapshot, write_snapshot

from loanrules.config import parse_config
from loanrules.errors import ConfigError
from loanrules.manager import PluginManager
from loanrules.registry import Registry
from loanrules.run import execute_run, validate_snapshot


def rule(sql: str, **extra) -> dict:
    return {"cooperative": {"name": "coop"}, "packs": ["data-quality"],
            "rules": [{"id": "local.rule", "title": "A local rule", "sql": sql, **extra}]}


@pytest.fixture
def snapshot(tmp_path):
    return write_snapshot(tmp_path / "s", loans=[
        loan("L1", guarantee_type="credit", outstanding_principal="350000.00", principal="400000.00"),
        loan("L2", guarantee_type="credit", outstanding_principal="300000.00", principal="400000.00"),
        loan("L3", guarantee_type="mortgage", outstanding_principal="900000.00", principal="900000.00"),
    ])


@pytest.fixture
def registry():
    return Registry.from_plugins(PluginManager())


def test_a_config_rule_runs_with_its_typed_parameters(db_path, snapshot, registry):
    config = parse_config(rule(
        "SELECT loan_id, 'credit loan above limit' AS message FROM loans "
        "WHERE guarantee_type = 'credit' AND outstanding_principal > :limit",
        params={"limit": {"type": "money", "default": "300000"}}, severity="critical"))
    result = execute_run(db_path, snapshot, as_of=AS_OF, config=config, registry=registry)
    assert query(db_path, "SELECT check_id, loan_id, severity FROM findings WHERE check_id = 'local.rule'") == [
        ("local.rule", "L1", "critical")]
    outcome = next(o for o in result.outcomes if o.contribution_id == "local.rule")
    assert outcome.plugin == "config" and outcome.params == {"limit": "300000.00"}


def test_config_rule_parameters_can_be_overridden_like_any_check(db_path, snapshot, registry):
    document = rule("SELECT loan_id, 'big' AS message FROM loans WHERE outstanding_principal > :limit",
                    params={"limit": {"type": "money", "default": "300000"}})
    document["checks"] = {"local.rule": {"params": {"limit": "100000"}}}
    execute_run(db_path, snapshot, as_of=AS_OF, config=parse_config(document), registry=registry)
    assert query(db_path, "SELECT count(*) FROM findings WHERE check_id = 'local.rule'") == [(3,)]


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT 'x' AS message FROM runs", "reading runs"),
        ("SELECT 'x' AS message FROM main.loans", "reading main.loans"),
        ("SELECT 'x' AS message FROM findings f JOIN main.findings g ON 1", "reading main.findings"),
        ("SELECT 'x' AS message FROM sqlite_master", "reading sqlite_master"),
        ("SELECT load_extension('x') AS message", "calling load_extension()"),
        ("SELECT 'x' AS message FROM pragma_table_info('loans')", "not authorized"),
    ],
)
def test_the_authorizer_refuses_reads_outside_the_snapshot(db_path, snapshot, registry, sql, refused):
    with pytest.raises(ConfigError, match=refused):
        execute_run(db_path, snapshot, as_of=AS_OF, config=parse_config(rule(sql)), registry=registry)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM loans",
        "INSERT INTO findings (message) VALUES ('x')",
        "DROP TABLE runs",
        "ATTACH DATABASE '/tmp/evil.db' AS evil",
        "PRAGMA journal_mode = OFF",
        "CREATE TABLE evil (x)",
        "SELECT 'x' AS message; DELETE FROM loans",
        "SELECT 'x' AS message) AS f; DELETE FROM loans --",
    ],
)
def test_the_authorizer_refuses_writes_and_nothing_is_stored(db_path, snapshot, registry, tmp_path, sql):
    execute_run(db_path, snapshot, as_of="2026-11-26", config=parse_config({"cooperative": {"name": "coop"}}),
                registry=registry)
    before = table_snapshot(db_path)
    with pytest.raises(ConfigError, match="rule local.rule"):
        execute_run(db_path, snapshot, as_of=AS_OF, config=parse_config(rule(sql)), registry=registry)
    assert table_snapshot(db_path) == before
    assert not (tmp_path / "evil.db").exists()


def test_a_refused_rule_exits_2_with_one_line(runner, snapshot, tmp_path):
    config = tmp_path / "coop.toml"
    config.write_text('[[rules]]\nid = "local.rule"\ntitle = "t"\nsql = "DELETE FROM loans"\n')
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--config", config, "--db", tmp_path / "db")
    assert result.exit_code == 2
    assert result.output.startswith("Error: rule local.rule:") and "Traceback" not in result.output


def test_validate_compiles_config_rules_without_storing(snapshot, registry):
    with pytest.raises(ConfigError, match="no such column: nonsense"):
        validate_snapshot(snapshot, config=parse_config(rule("SELECT nonsense AS message FROM loans")),
                          registry=registry)


def test_a_rule_may_read_the_facts_tables(db_path, snapshot, registry):
    config = parse_config(rule("SELECT borrower_id, 'exposure ' || exposure AS message FROM borrower_facts",
                               tables=["loans"]))
    execute_run(db_path, snapshot, as_of=AS_OF, config=config, registry=registry)
    assert query(db_path, "SELECT borrower_id, message FROM findings WHERE check_id = 'local.rule'") == [
        ("B1", "exposure 155000000")]
