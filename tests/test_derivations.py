"""Derivations (per-run tables one plugin builds and others read) and summaries (report figures stored
with each run): the core's side, with a plugin written for the test."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import AS_OF, invoke, loan, query, write_snapshot

from loanrules import Derivation, Summary
from loanrules.config import parse_config
from loanrules.errors import PluginError
from loanrules.manager import PluginManager
from loanrules.plan import Overrides
from loanrules.registry import Registry
from loanrules.run import execute_run

PLUGIN = '''
from loanrules import Check, Derivation, Pack, Param, ParamType, Summary, hookimpl

BIG = Derivation(id="local.big_loans", table="big_loans", columns=("loan_id", "excess"),
                 title="Loans above a size", tables=("loans",),
                 params=(Param("above", "50000.00", ParamType.MONEY, "size"),),
                 sql="SELECT loan_id, outstanding_principal - :above AS excess FROM loans "
                     "WHERE outstanding_principal > :above")
TWICE = Derivation(id="local.twice", table="twice", columns=("loan_id",), title="Every loan twice",
                   sql="SELECT loan_id FROM loans UNION ALL SELECT loan_id FROM loans")
NEEDS = Check(id="local.needs_big", title="Needs big_loans", tables=("loans", "big_loans"),
              sql="SELECT loan_id, 'big by ' || excess AS message FROM big_loans")
MAYBE = Check(id="local.maybe_big", title="Reads big_loans when there", tables=("loans",),
              optional_tables=("big_loans",),
              sql="SELECT l.loan_id, CASE WHEN b.loan_id IS NULL THEN 'small or unknown' ELSE 'big' END AS message "
                  "FROM loans l LEFT JOIN big_loans b ON b.loan_id = l.loan_id")
READS_TWICE = Check(id="local.reads_twice", title="Reads twice", optional_tables=("twice",),
                    sql="SELECT loan_id, 'seen' AS message FROM twice")
TOTALS = Summary(id="local.totals", title="Totals", columns=("loans", "outstanding_fen", "big_share"),
                 sql="SELECT count(*) AS loans, sum(outstanding_principal) AS outstanding_fen, "
                     "round(1.0 * (SELECT count(*) FROM findings WHERE check_id = 'local.maybe_big' "
                     "AND message = 'big') / count(*), 4) AS big_share FROM loans")
PEOPLE = Summary(id="local.people", title="People", columns=("borrower_id", "name", "id_number"),
                 sql="SELECT 'B1' AS borrower_id, '张三丰' AS name, '110101199003071234' AS id_number")
BROKEN = Summary(id="local.broken", title="Broken", columns=("loans", "missing_column"),
                 sql="SELECT count(*) AS loans FROM loans")


@hookimpl
def register_derivations(register):
    register(BIG)
    register(TWICE)


@hookimpl
def register_checks(register):
    register(NEEDS)
    register(MAYBE)
    register(READS_TWICE)


@hookimpl
def register_summaries(register):
    register(TOTALS)
    register(PEOPLE)
    register(BROKEN)


@hookimpl
def register_packs(register):
    register(Pack(name="local-derived", version="1.0.0", title="t",
                  members=["local.big_loans", "local.needs_big", "local.maybe_big", "local.totals"]))
    register(Pack(name="local-readers", version="1.0.0", title="t",
                  members=["local.needs_big", "local.maybe_big", "local.totals", "local.broken"]))
    register(Pack(name="local-people", version="1.0.0", title="t", members=["local.people"]))
    register(Pack(name="local-twice", version="1.0.0", title="t", members=["local.twice", "local.reads_twice"]))
'''


@pytest.fixture
def plugin_dir(tmp_path):
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "local_derived.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    return directory


@pytest.fixture
def local_registry(plugin_dir):
    return Registry.from_plugins(PluginManager((plugin_dir,), builtins=False))


@pytest.fixture
def snapshot(tmp_path):
    return write_snapshot(tmp_path / "s", loans=[loan("L1", outstanding_principal="80000.00"),
                                                 loan("L2", outstanding_principal="20000.00")])


def run(db, snapshot, registry, pack, **params):
    config = parse_config({"cooperative": {"name": "c"},
                           "checks": {cid: {"params": values} for cid, values in params.items()}})
    return execute_run(db, snapshot, as_of=AS_OF, config=config, registry=registry, packs=(pack,))


def outcomes(result) -> dict[str, tuple[str, str | None]]:
    return {o.contribution_id: (o.status, o.reason) for o in result.outcomes}


def test_a_derivation_is_built_once_when_read_and_its_readers_see_it(tmp_path, snapshot, local_registry):
    result = run(tmp_path / "db", snapshot, local_registry, "local-derived")
    seen = outcomes(result)
    assert seen["local.big_loans"] == ("ok", None)
    assert [o.contribution_id for o in result.outcomes].count("local.big_loans") == 1
    assert query(tmp_path / "db", "SELECT check_id, loan_id, message FROM findings ORDER BY check_id, loan_id") == [
        ("local.maybe_big", "L1", "big"), ("local.maybe_big", "L2", "small or unknown"),
        ("local.needs_big", "L1", "big by 3000000")]  # money in fen: 80000.00 - 50000.00


def test_derivation_parameters_come_from_the_config_like_a_checks(tmp_path, snapshot, local_registry):
    run(tmp_path / "db", snapshot, local_registry, "local-derived", **{"local.big_loans": {"above": "10000"}})
    assert query(tmp_path / "db", "SELECT loan_id FROM findings WHERE check_id = 'local.needs_big' "
                                  "ORDER BY loan_id") == [("L1",), ("L2",)]


def test_without_the_derivation_a_reader_is_skipped_and_an_optional_reader_sees_an_empty_table(
        tmp_path, snapshot, local_registry):
    result = run(tmp_path / "db", snapshot, local_registry, "local-readers")
    seen = outcomes(result)
    status, reason = seen["local.needs_big"]
    assert status == "skipped" and "big_loans" in reason and "not selected" in reason
    assert seen["local.maybe_big"] == ("ok", None)
    assert query(tmp_path / "db", "SELECT DISTINCT message FROM findings WHERE check_id = 'local.maybe_big'") == [
        ("small or unknown",)]


def test_a_derivation_no_one_reads_is_reported_skipped(tmp_path, snapshot, local_registry):
    result = execute_run(tmp_path / "db", snapshot, as_of=AS_OF, config=parse_config({}), registry=local_registry,
                         packs=("local-derived",),
                         overrides=Overrides.parse(disable=("local.needs_big", "local.maybe_big", "local.totals")))
    assert outcomes(result)["local.big_loans"] == ("skipped", "no contribution in this run reads big_loans")


def test_a_derivation_with_a_key_twice_fails_alone_and_its_reader_sees_the_empty_table(
        tmp_path, snapshot, local_registry):
    result = run(tmp_path / "db", snapshot, local_registry, "local-twice")
    seen = outcomes(result)
    assert seen["local.twice"][0] == "failed" and "more than one row" in seen["local.twice"][1]
    assert seen["local.reads_twice"] == ("ok", None)
    assert result.status == "partial"
    assert query(tmp_path / "db", "SELECT count(*) FROM findings") == [(0,)]


def test_summaries_are_stored_with_the_run_in_column_order(tmp_path, snapshot, local_registry):
    result = run(tmp_path / "db", snapshot, local_registry, "local-derived")
    rows = query(tmp_path / "db", "SELECT summary_id, row_no, data FROM summaries WHERE run_id = ?",
                 (result.run_id,))
    assert rows == [("local.totals", 1, '{"loans":2,"outstanding_fen":10000000,"big_share":0.5}')]


def test_a_summary_missing_a_declared_column_fails_with_the_column_named(tmp_path, snapshot, local_registry):
    result = run(tmp_path / "db", snapshot, local_registry, "local-readers")
    status, reason = outcomes(result)["local.broken"]
    assert status == "failed" and "missing_column" in reason
    assert query(tmp_path / "db", "SELECT summary_id FROM summaries") == [("local.totals",)]


def test_a_rerun_of_the_same_as_of_replaces_the_summaries(tmp_path, snapshot, local_registry):
    run(tmp_path / "db", snapshot, local_registry, "local-derived")
    second = run(tmp_path / "db", snapshot, local_registry, "local-derived")
    assert query(tmp_path / "db", "SELECT run_id FROM summaries") == [(second.run_id,)]


def test_summaries_command_shows_yuan_and_percentages_and_exports(runner, tmp_path, snapshot, plugin_dir):
    db = tmp_path / "db"
    ran = invoke(runner, "--plugins-dir", plugin_dir, "run", snapshot, "--as-of", AS_OF, "--db", db,
                 "--pack", "local-derived", "--quiet")
    assert ran.exit_code == 0, ran.output
    shown = invoke(runner, "--plugins-dir", plugin_dir, "summaries", "--db", db)
    assert shown.exit_code == 0, shown.output
    assert "local.totals: Totals" in shown.output
    assert "100000.00" in shown.output and "50.00%" in shown.output
    exported = invoke(runner, "--plugins-dir", plugin_dir, "summaries", "local", "--db", db, "--format", "csv")
    assert exported.output.splitlines() == ["loans,outstanding_yuan,big_share", "2,100000.00,0.5"]
    document = json.loads(invoke(runner, "summaries", "--db", db, "--format", "json").output)
    assert document["summaries"][0]["rows"] == [{"loans": 2, "outstanding_yuan": "100000.00", "big_share": 0.5}]
    assert document["summaries"][0]["title"] == "(its plugin is not installed)"  # read without the plugin
    unknown = invoke(runner, "summaries", "--db", db, "nothing")
    assert unknown.exit_code == 1 and "stored no summary nothing" in unknown.output


def test_an_optional_table_must_be_a_derivations(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent('''
        from loanrules import Check, hookimpl

        @hookimpl
        def register_checks(register):
            register(Check(id="bad.optional", title="t", optional_tables=("nothing_builds_this",),
                           sql="SELECT 'x' AS message"))
    '''), encoding="utf-8")
    with pytest.raises(PluginError, match="nothing_builds_this"):
        Registry.from_plugins(PluginManager((tmp_path,), builtins=False))


def test_a_derivation_cannot_take_a_snapshot_tables_name(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent('''
        from loanrules import Derivation, hookimpl

        @hookimpl
        def register_derivations(register):
            register(Derivation(id="bad.loans", table="loans", columns=("loan_id",), title="t",
                                sql="SELECT loan_id FROM loans"))
    '''), encoding="utf-8")
    with pytest.raises(PluginError, match="already a snapshot or core table"):
        Registry.from_plugins(PluginManager((tmp_path,), builtins=False))


def test_derivations_and_summaries_are_sql_with_declared_columns():
    with pytest.raises(ValueError, match="SQL only"):
        Derivation(id="x.y", table="t", columns=("a",), title="t", evaluate=lambda ctx: [])
    with pytest.raises(ValueError, match="columns"):
        Summary(id="x.y", title="t", columns=(), sql="SELECT 1")


def test_a_summarys_personal_columns_leave_masked_unless_the_config_shows_them(runner, tmp_path, snapshot,
                                                                              plugin_dir):
    db = tmp_path / "db"
    invoke(runner, "--plugins-dir", plugin_dir, "run", snapshot, "--as-of", AS_OF, "--db", db,
           "--pack", "local-people", "--quiet")
    masked = json.loads(invoke(runner, "summaries", "local.people", "--db", db, "--format", "json").output)
    assert masked["summaries"][0]["rows"] == [{"borrower_id": "B1", "name": "张**",
                                               "id_number": "110101********1234"}]
    config = tmp_path / "show.toml"
    config.write_text("[privacy]\nshow_personal_data = true\n", encoding="utf-8")
    shown = json.loads(invoke(runner, "summaries", "local.people", "--db", db, "--format", "json",
                              "--config", config).output)
    assert shown["summaries"][0]["rows"][0]["name"] == "张三丰"
