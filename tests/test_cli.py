"""Reading results through the CLI: findings, diff, export, masking, the demo, errors."""

from __future__ import annotations

import csv
import io
import json
import textwrap

import click
import pytest
from conftest import AS_OF, borrower, invoke, loan, write_snapshot

NAME_PLUGIN = textwrap.dedent('''
    from loanrules import Check, Pack, hookimpl

    @hookimpl
    def register_checks(register):
        register(Check(id="test.named", title="names the borrower", severity="info", tables=("loans", "borrowers"),
                       sql="SELECT l.loan_id, l.borrower_id, 'see details' AS message, "
                           "json_object('name', b.name, 'id_number', b.id_number) AS details "
                           "FROM loans l JOIN borrowers b USING (borrower_id)"))

    @hookimpl
    def register_packs(register):
        register(Pack(name="named", version="1", title="n", members=["test.named"]))
''')


@pytest.fixture
def two_nights(tmp_path, runner):
    """Night 1: L1 overdrawn, L2 matured-not-overdue. Night 2: L1 fixed, L2 persists, L3 overdrawn (branch BR02)."""
    db = tmp_path / "results.db"
    night1 = write_snapshot(tmp_path / "n1", loans=[
        loan("L1", outstanding_principal="100000.01"), loan("L2", maturity_date="2026-01-01")])
    night2 = write_snapshot(tmp_path / "n2", loans=[
        loan("L1"), loan("L2", maturity_date="2026-01-01"),
        loan("L3", outstanding_principal="100000.02", branch_id="BR02")])
    for night, as_of in ((night1, "2026-11-26"), (night2, AS_OF)):
        assert invoke(runner, "run", night, "--as-of", as_of, "--db", db, "--pack", "data-quality").exit_code == 0
    return db


def test_findings_lists_the_latest_run_worst_first(runner, two_nights):
    result = invoke(runner, "findings", "--db", two_nights, "--json")
    rows = json.loads(result.output)
    assert [(r["check_id"], r["loan_id"], r["status"], r["first_seen"]) for r in rows] == [
        ("data.matured_not_overdue", "L2", "persisting", "2026-11-26"),
        ("data.outstanding_exceeds_principal", "L3", "new", AS_OF),
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--status", "new"], ["L3"]),
        (["--branch", "BR02"], ["L3"]),
        (["--check", "data.matured_not_overdue"], ["L2"]),
        (["--check", "data"], ["L2", "L3"]),
        (["--severity", "critical"], ["L2", "L3"]),
        (["--run", "1"], ["L2", "L1"]),
    ],
)
def test_findings_filters(runner, two_nights, args, expected):
    rows = json.loads(invoke(runner, "findings", "--db", two_nights, "--json", *args).output)
    assert [r["loan_id"] for r in rows] == expected


def test_findings_table_for_people(runner, two_nights):
    output = invoke(runner, "findings", "--db", two_nights).output
    assert "as of 2026-11-27" in output
    assert "outstanding 100000.02 yuan exceeds principal 100000.00 yuan" in output


def test_diff_lists_new_and_resolved_per_check(runner, two_nights):
    result = json.loads(invoke(runner, "diff", "--db", two_nights, "--json").output)
    assert (result["older"], result["newer"]) == (1, 2)
    assert [(r["check_id"], r["loan_id"]) for r in result["new"]] == [("data.outstanding_exceeds_principal", "L3")]
    assert [(r["check_id"], r["loan_id"]) for r in result["resolved"]] == [
        ("data.outstanding_exceeds_principal", "L1")]
    assert {r["check_id"]: (r["new"], r["resolved"], r["persisting"]) for r in result["per_check"]} == {
        "data.outstanding_exceeds_principal": (1, 1, 0), "data.matured_not_overdue": (0, 0, 1)}
    explicit = json.loads(invoke(runner, "diff", "2", "1", "--db", two_nights, "--json").output)
    assert explicit["new"] == result["new"]  # order of the arguments does not matter


def test_a_check_skipped_tonight_resolves_nothing(runner, two_nights, tmp_path):
    night3 = write_snapshot(tmp_path / "n3", loans=[loan("L2", maturity_date="2026-01-01")])
    invoke(runner, "run", night3, "--as-of", "2026-11-28", "--db", two_nights, "--pack", "data-quality",
           "--disable", "data.outstanding_exceeds_principal")
    result = json.loads(invoke(runner, "diff", "--db", two_nights, "--json").output)
    assert result["resolved"] == []


def test_export_csv_and_json_of_findings(runner, two_nights, tmp_path):
    out = tmp_path / "findings.csv"
    invoke(runner, "export", "findings", "--db", two_nights, "--format", "csv", "-o", out)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["loan_id"] for r in rows] == ["L3", "L2"]  # in the order the checks ran
    assert set(rows[0]) == {"run_id", "check_id", "severity", "loan_id", "borrower_id", "collateral_id", "message",
                            "details", "status", "first_seen"}
    data = json.loads(invoke(runner, "export", "findings", "--db", two_nights, "--format", "json", "--run", "1").output)
    assert {r["loan_id"] for r in data} == {"L1", "L2"}


def test_export_of_an_unknown_run_is_a_clear_error(runner, two_nights):
    result = invoke(runner, "export", "findings", "--db", two_nights, "--run", "99")
    assert result.exit_code == 2 and result.output.strip() == "Error: no run 99 in this database"


def test_export_to_a_file_that_cannot_be_written_is_a_clear_error(runner, two_nights, tmp_path):
    out = tmp_path / "no-such-directory" / "findings.csv"
    result = invoke(runner, "export", "findings", "--db", two_nights, "-o", out)
    assert result.exit_code == 2 and result.output.strip() == f"Error: cannot write {out}: No such file or directory"


def test_every_run_option_is_the_same():
    from loanrules.cli import cli

    commands = ("findings", "export", "summaries", "report", "tasks", "ledger households", "ledger officers")
    options = []
    for name in commands:
        command = cli
        for part in name.split():
            command = command.commands[part]
        (option,) = [p for p in command.params if "--run" in p.opts]
        options.append((option.name, option.type, option.help))
    assert set(options) == {("run_id", click.INT, "Run id (default: the latest finished run).")}


def test_reading_a_missing_database_is_a_clear_error(runner, tmp_path):
    result = invoke(runner, "findings", "--db", tmp_path / "nope.db")
    assert result.exit_code == 2 and "no such database" in result.output


def test_a_database_of_an_earlier_version_is_named_and_upgraded_on_request(runner, two_nights):
    import sqlite3

    conn = sqlite3.connect(two_nights)
    conn.execute("ALTER TABLE collection_tasks DROP COLUMN details")  # as databases made before it was added
    conn.close()
    before = invoke(runner, "findings", "--db", two_nights)
    assert before.exit_code == 2, before.output
    assert "lack collection_tasks.details" in before.output and "loanrules upgrade-db" in before.output
    upgraded = invoke(runner, "upgrade-db", "--db", two_nights)
    assert upgraded.exit_code == 0 and "added collection_tasks.details" in upgraded.output
    assert "already up to date" in invoke(runner, "upgrade-db", "--db", two_nights).output
    assert invoke(runner, "findings", "--db", two_nights).exit_code == 0
    assert invoke(runner, "upgrade-db", "--db", two_nights.parent / "nope.db").exit_code == 2


@pytest.fixture
def named_run(runner, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "named.py").write_text(NAME_PLUGIN)
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1")],
                              borrowers=[borrower("B1", name="张三丰", id_number="11010519491231002X")])
    db = tmp_path / "db"
    assert invoke(runner, "--plugins-dir", plugins, "run", snapshot, "--as-of", AS_OF, "--db", db,
                  "--pack", "named").exit_code == 0
    return plugins, db


def test_personal_data_is_masked_in_exports_by_default(runner, named_run):
    plugins, db = named_run
    (row,) = json.loads(invoke(runner, "--plugins-dir", plugins, "export", "findings", "--db", db,
                               "--format", "json").output)
    assert json.loads(row["details"]) == {"name": "张**", "id_number": "110105********002X"}
    output = invoke(runner, "--plugins-dir", plugins, "findings", "--db", db, "--json").output
    assert "张三丰" not in output and "11010519491231002X" not in output


def test_config_can_show_personal_data(runner, named_run, tmp_path):
    plugins, db = named_run
    config = tmp_path / "show.toml"
    config.write_text("[privacy]\nshow_personal_data = true\n")
    text = invoke(runner, "--plugins-dir", plugins, "export", "findings", "--db", db, "--config", config).output
    (row,) = csv.DictReader(io.StringIO(text))
    assert json.loads(row["details"]) == {"name": "张三丰", "id_number": "11010519491231002X"}


def test_demo_runs_end_to_end_and_is_deterministic(runner, tmp_path):
    first = invoke(runner, "demo", "--dir", tmp_path / "a", "--loans", "300", "-q")
    second = invoke(runner, "demo", "--dir", tmp_path / "b", "--loans", "300", "-q")
    assert second.exit_code == 0, second.output
    assert first.exit_code == 0, first.output
    # three month-ends, the last one summarised, with history to compare against
    assert "run 3 succeeded: Demo Rural Credit Cooperative as of 2026-11-27" in first.output
    assert "persisting" in first.output and "resolved since the previous as-of" in first.output
    # the same results to the byte (the summary's timings are the only thing that may differ)
    for what in ("findings", "assessments"):
        exports = [invoke(runner, "export", what, "--db", tmp_path / name / "loanrules.db").output for name in "ab"]
        assert exports[0] == exports[1] and exports[0].count("\n") > 10


def test_run_summary_shows_every_contribution_and_the_totals(runner, tmp_path):
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1", outstanding_principal="100000.01")])
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", tmp_path / "db", "--pack", "data-quality")
    lines = result.output.splitlines()
    assert any(line.split()[:3] == ["data.outstanding_exceeds_principal", "check", "ok"] for line in lines)
    assert "findings: 1 critical, 0 warning, 0 info; 1 new, 0 persisting, 0 resolved" in result.output


def test_internal_errors_are_one_line_unless_debugging(runner, tmp_path, monkeypatch):
    import loanrules.cli

    def explode(*args, **kwargs):
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(loanrules.cli, "execute_run", explode)
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1")])
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", tmp_path / "db")
    assert result.exit_code == 3
    assert result.output.strip() == ("Error: internal error: ZeroDivisionError: deep inside "
                                     "(set LOANRULES_DEBUG=1 for the traceback)")
    monkeypatch.setenv("LOANRULES_DEBUG", "1")
    assert "Traceback" in invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", tmp_path / "db").output
