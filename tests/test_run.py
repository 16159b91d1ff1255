"""The run: stages, parameters and their precedence, isolation of a failing plugin,
status against the previous as-of, supersession, exit codes."""

from __future__ import annotations

import json

import pytest
from conftest import AS_OF, borrower, invoke, loan, query, write_snapshot

from loanrules import Check, Classifier, Finding, Pack, Param, ParamType, Verdict, hookimpl
from loanrules.config import parse_config
from loanrules.errors import ConfigError, SnapshotRejected, UsageError
from loanrules.manager import PluginManager
from loanrules.plan import Overrides
from loanrules.registry import Registry
from loanrules.run import execute_run


class BookPlugin:
    """A plugin made in the test: one SQL check with a money parameter, one Python check, a pack."""

    def __init__(self, fail: bool = False, pack_params: dict | None = None):
        self.fail = fail
        self.pack_params = pack_params or {}

    @hookimpl
    def register_checks(self, register):
        register(Check(
            id="test.large_loan", title="Large loan", severity="warning",
            params=(Param("limit", "50000", ParamType.MONEY),),
            sql="SELECT loan_id, borrower_id, 'large: ' || outstanding_principal AS message, "
                "json_object('limit_fen', :limit) AS details FROM loans WHERE outstanding_principal > :limit",
        ))

        def evaluate(ctx):
            if self.fail:
                raise RuntimeError("boom")
            for batch in ctx.batches("SELECT loan_id FROM loans WHERE days_past_due > 0"):
                for row in batch:
                    yield Finding(loan_id=row["loan_id"], message="overdue", details={"as_of": str(ctx.as_of)})

        register(Check(id="test.overdue", title="Overdue", severity="critical", evaluate=evaluate))

    @hookimpl
    def register_packs(self, register):
        register(Pack(name="test-pack", version="2.1", title="Test pack",
                      members={"test.large_loan": {"params": self.pack_params}, "test.overdue": {}}))


def make_registry(*plugins) -> Registry:
    manager = PluginManager()
    for index, plugin in enumerate(plugins):
        manager.pm.register(plugin, name=f"test_plugin_{index}")
    return Registry.from_plugins(manager)


def run(db, snapshot, registry, as_of=AS_OF, config=None, **kwargs):
    return execute_run(db, snapshot, as_of=as_of, config=config or parse_config({"cooperative": {"name": "coop"}}),
                       registry=registry, packs=kwargs.pop("packs", ("test-pack",)), **kwargs)


@pytest.fixture
def snapshot(tmp_path):
    return write_snapshot(tmp_path / "night1", loans=[
        loan("L1", outstanding_principal="60000.00"),
        loan("L2", outstanding_principal="40000.00", days_past_due="15"),
        loan("L3", "B2", outstanding_principal="50000.00"),
    ])


def findings_of(db, run_id):
    return query(db, "SELECT check_id, loan_id, status, first_seen FROM findings WHERE run_id = ? "
                     "ORDER BY check_id, loan_id", (run_id,))


def test_sql_and_python_checks_write_findings_with_the_run(db_path, snapshot):
    result = run(db_path, snapshot, make_registry(BookPlugin()))
    assert result.status == "succeeded"
    assert findings_of(db_path, result.run_id) == [
        ("test.large_loan", "L1", "new", AS_OF),
        ("test.overdue", "L2", "new", AS_OF),
    ]
    details = query(db_path, "SELECT details FROM findings WHERE check_id = 'test.overdue'")[0][0]
    assert json.loads(details) == {"as_of": AS_OF}


def test_money_parameter_is_compared_in_fen_so_the_boundary_is_exact(db_path, snapshot):
    # L3 is exactly 50000.00: not above the limit
    result = run(db_path, snapshot, make_registry(BookPlugin()))
    loans = [r[1] for r in findings_of(db_path, result.run_id) if r[0] == "test.large_loan"]
    assert loans == ["L1"]


@pytest.mark.parametrize(
    ("pack", "config", "cli", "expected_limit_fen", "expected_loans"),
    [
        ({}, None, None, 5_000_000, ["L1"]),  # the check's default
        ({"limit": "45000"}, None, None, 4_500_000, ["L1", "L3"]),  # pack beats default
        ({"limit": "45000"}, "30000", None, 3_000_000, ["L1", "L2", "L3"]),  # config beats pack
        ({"limit": "45000"}, "30000", "55000", 5_500_000, ["L1"]),  # command line beats config
    ],
)
def test_parameters_resolve_default_then_pack_then_config_then_command_line(
        db_path, snapshot, pack, config, cli, expected_limit_fen, expected_loans):
    document = {"cooperative": {"name": "coop"}}
    if config:
        document["checks"] = {"test.large_loan": {"params": {"limit": config}}}
    overrides = Overrides.parse(params=[f"test.large_loan.limit={cli}"] if cli else [])
    result = run(db_path, snapshot, make_registry(BookPlugin(pack_params=pack)), config=parse_config(document),
                 overrides=overrides)
    assert [r[1] for r in findings_of(db_path, result.run_id) if r[0] == "test.large_loan"] == expected_loans
    recorded = json.loads(query(db_path, "SELECT params FROM runs WHERE run_id = ?", (result.run_id,))[0][0])
    assert recorded["test.large_loan"]["params"] == {"limit": f"{expected_limit_fen // 100}.00"}
    (details,) = query(db_path, "SELECT details FROM findings WHERE check_id = 'test.large_loan' LIMIT 1")[0]
    assert json.loads(details) == {"limit_fen": expected_limit_fen}


def test_run_records_provenance(db_path, snapshot):
    result = run(db_path, snapshot, make_registry(BookPlugin()))
    (row,) = query(db_path, "SELECT cooperative, as_of, status, packs, snapshot_sha256, loanrules_version, "
                            "started_at IS NOT NULL, finished_at IS NOT NULL FROM runs WHERE run_id = ?",
                   (result.run_id,))
    import loanrules

    assert row[:3] == ("coop", AS_OF, "succeeded")
    assert json.loads(row[3]) == ["test-pack@2.1"]
    assert row[4] == result.snapshot.sha256 and len(row[4]) == 64
    assert row[5] == loanrules.__version__
    assert row[6:] == (1, 1)


def test_a_failing_plugin_is_isolated_named_and_makes_the_run_partial(db_path, snapshot):
    result = run(db_path, snapshot, make_registry(BookPlugin(fail=True)))
    assert result.status == "partial"
    assert result.exit_code(None) == 3
    outcome = {o.contribution_id: o for o in result.outcomes}
    assert outcome["test.overdue"].status == "failed"
    assert "test_plugin_0" in outcome["test.overdue"].reason and "boom" in outcome["test.overdue"].reason
    # the other check still ran and its findings were kept
    assert outcome["test.large_loan"].status == "ok"
    assert [r[0] for r in findings_of(db_path, result.run_id)] == ["test.large_loan"]
    assert query(db_path, "SELECT status, reason LIKE '%boom%' FROM run_contributions "
                          "WHERE contribution_id = 'test.overdue'") == [("failed", 1)]


def test_a_check_whose_table_is_missing_is_skipped_with_the_reason(db_path, snapshot):
    class NeedsCollateral:
        @hookimpl
        def register_checks(self, register):
            register(Check(id="test.collateral", title="c", tables=("loans", "collateral"),
                           sql="SELECT 'x' AS message FROM collateral"))

    result = run(db_path, snapshot, make_registry(NeedsCollateral()), packs=(), overrides=Overrides(
        enable=("test.collateral",)))
    (outcome,) = [o for o in result.outcomes if o.contribution_id == "test.collateral"]
    assert outcome.status == "skipped"
    assert "collateral.csv" in outcome.reason
    assert result.status == "succeeded"


def test_a_check_in_no_selected_pack_does_not_run_unless_enabled(db_path, snapshot):
    registry = make_registry(BookPlugin())
    result = run(db_path, snapshot, registry, packs=("data-quality",))
    assert "test.large_loan" not in {o.contribution_id for o in result.outcomes}
    result = run(db_path, snapshot, registry, packs=("data-quality",),
                 overrides=Overrides(enable=("test.large_loan",)))
    assert "test.large_loan" in {o.contribution_id for o in result.outcomes}


def test_findings_persist_with_first_seen_and_resolve_across_nights(db_path, snapshot, tmp_path):
    registry = make_registry(BookPlugin())
    first = run(db_path, snapshot, registry, as_of="2026-11-26")
    night2 = write_snapshot(tmp_path / "night2", loans=[
        loan("L1", outstanding_principal="60000.00"),  # still large: persisting
        loan("L2", outstanding_principal="40000.00"),  # cured: overdue resolved
        loan("L3", "B2", outstanding_principal="50000.00", days_past_due="3"),  # newly overdue
    ])
    second = run(db_path, night2, registry, as_of="2026-11-27")
    assert findings_of(db_path, second.run_id) == [
        ("test.large_loan", "L1", "persisting", "2026-11-26"),
        ("test.overdue", "L3", "new", "2026-11-27"),
    ]
    assert (second.new, second.persisting, second.resolved) == (1, 1, 1)
    assert query(db_path, "SELECT previous_run_id FROM runs WHERE run_id = ?", (second.run_id,)) == [(first.run_id,)]


def test_a_check_giving_one_subject_twice_keeps_both_and_their_first_seen_across_nights(db_path, tmp_path):
    class Twice:
        @hookimpl
        def register_checks(self, register):
            # two findings per overdue loan, with no subject to tell them apart: one key
            register(Check(id="test.twice", title="Twice", severity="warning",
                           sql="SELECT loan_id, borrower_id, 'overdue, ' || n AS message FROM loans "
                               "CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2) WHERE days_past_due > 0"))

        @hookimpl
        def register_packs(self, register):
            register(Pack(name="twice", version="1", title="Twice", members=["test.twice"]))

    registry = make_registry(Twice())
    nights = (("2026-11-25", "L1"), ("2026-11-26", "L1"), ("2026-11-27", "L2"))
    for as_of, overdue in nights:
        book = write_snapshot(tmp_path / as_of, loans=[loan("L1", days_past_due="9" if overdue == "L1" else "0"),
                                                       loan("L2", days_past_due="9" if overdue == "L2" else "0"),
                                                       loan("L3", days_past_due="9")])
        result = run(db_path, book, registry, as_of=as_of, packs=("twice",))
    rows = query(db_path, "SELECT r.as_of, f.loan_id, f.status, f.first_seen, count(*) FROM findings f "
                          "JOIN runs r USING (run_id) GROUP BY 1, 2, 3, 4 ORDER BY 1, 2")
    assert rows == [("2026-11-25", "L1", "new", "2026-11-25", 2), ("2026-11-25", "L3", "new", "2026-11-25", 2),
                    ("2026-11-26", "L1", "persisting", "2026-11-25", 2),
                    ("2026-11-26", "L3", "persisting", "2026-11-25", 2),
                    ("2026-11-27", "L2", "new", "2026-11-27", 2), ("2026-11-27", "L3", "persisting", "2026-11-25", 2)]
    assert (result.new, result.persisting, result.resolved) == (2, 2, 2)


def test_rerunning_the_same_as_of_supersedes_without_duplicating(db_path, snapshot):
    registry = make_registry(BookPlugin())
    first = run(db_path, snapshot, registry)
    second = run(db_path, snapshot, registry)
    assert query(db_path, "SELECT count(*) FROM findings") == [(2,)]
    assert query(db_path, "SELECT count(*) FROM findings WHERE run_id = ?", (first.run_id,)) == [(0,)]
    assert query(db_path, "SELECT superseded_by FROM runs WHERE run_id = ?", (first.run_id,)) == [(second.run_id,)]
    assert query(db_path, "SELECT count(*) FROM loans") == [(3,)]
    assert query(db_path, "SELECT count(*) FROM snapshots") == [(1,)]
    # a re-run compares with the previous as-of, not with the run it replaces
    assert {r[2] for r in findings_of(db_path, second.run_id)} == {"new"}


def test_a_rejected_snapshot_leaves_no_run_and_no_rows(db_path, snapshot, tmp_path):
    registry = make_registry(BookPlugin())
    run(db_path, snapshot, registry, as_of="2026-11-26")
    before = query(db_path, "SELECT count(*) FROM runs"), query(db_path, "SELECT count(*) FROM loans")
    bad = write_snapshot(tmp_path / "bad", loans=[loan("L1", days_past_due="soon")])
    with pytest.raises(SnapshotRejected):
        run(db_path, bad, registry)
    assert (query(db_path, "SELECT count(*) FROM runs"), query(db_path, "SELECT count(*) FROM loans")) == before


def test_classifiers_worst_class_wins_and_every_reason_is_kept(db_path, tmp_path):
    class Classes:
        @hookimpl
        def register_classifiers(self, register):
            register(Classifier(
                id="test.overdue_floor", title="overdue", reference="art. 1",
                sql="SELECT loan_id, CASE WHEN days_past_due > 90 THEN 'substandard' ELSE 'special_mention' END "
                    "AS risk_class, json_object('days_past_due', days_past_due) AS details "
                    "FROM loans WHERE days_past_due > 0"))
            register(Classifier(
                id="test.restructured_floor", title="restructured", reference="art. 2",
                evaluate=lambda ctx: [Verdict("L2", "doubtful", {"restructured": True})]))

        @hookimpl
        def register_packs(self, register):
            register(Pack(name="classes", version="1", title="c",
                          members=["test.overdue_floor", "test.restructured_floor"]))

    snapshot = write_snapshot(tmp_path / "s", loans=[
        loan("L1"), loan("L2", days_past_due="100"), loan("L3", days_past_due="5", recorded_class="normal"),
        loan("L4", written_off="1", days_past_due="400"),
    ])
    run(db_path, snapshot, make_registry(Classes()), packs=("classes",))
    rows = {r[0]: r[1:] for r in query(db_path, "SELECT loan_id, risk_class, recorded_class, reasons FROM assessments")}
    assert set(rows) == {"L1", "L2", "L3"}  # written-off loans are not assessed
    assert rows["L1"][:2] == ("normal", "normal") and json.loads(rows["L1"][2]) == []
    assert rows["L2"][0] == "doubtful"
    reasons = sorted(json.loads(rows["L2"][2]), key=lambda r: r["rule"])
    assert [(r["rule"], r["risk_class"], r["reference"]) for r in reasons] == [
        ("test.overdue_floor", "substandard", "art. 1"), ("test.restructured_floor", "doubtful", "art. 2")]
    assert reasons[0]["details"] == {"days_past_due": 100}
    assert rows["L3"][0] == "special_mention"


def test_a_classifier_returning_an_unknown_class_fails_alone(db_path, snapshot):
    class Bad:
        @hookimpl
        def register_classifiers(self, register):
            register(Classifier(id="test.bad", title="bad", sql="SELECT loan_id, 'excellent' AS risk_class FROM loans"))

    result = run(db_path, snapshot, make_registry(Bad()), packs=("data-quality",),
                 overrides=Overrides(enable=("test.bad",)))
    (outcome,) = [o for o in result.outcomes if o.contribution_id == "test.bad"]
    assert outcome.status == "failed" and "excellent" in outcome.reason
    assert result.status == "partial"
    assert query(db_path, "SELECT count(*) FROM assessments") == [(3,)]  # all normal: the bad verdicts rolled back


def test_checks_read_previous_snapshot_through_prev_views(db_path, tmp_path):
    class Dynamic:
        @hookimpl
        def register_checks(self, register):
            register(Check(id="test.balance_grew", title="grew", needs_history=True,
                           sql="SELECT l.loan_id, 'balance grew' AS message FROM loans l "
                               "JOIN prev_loans p ON p.loan_id = l.loan_id "
                               "WHERE l.outstanding_principal > p.outstanding_principal"))

    registry = make_registry(Dynamic())
    enable = Overrides(enable=("test.balance_grew",))
    first = run(db_path, write_snapshot(tmp_path / "a", loans=[loan("L1", outstanding_principal="100.00")]),
                registry, as_of="2026-11-26", packs=(), overrides=enable)
    (outcome,) = [o for o in first.outcomes if o.contribution_id == "test.balance_grew"]
    assert outcome.status == "skipped" and "previous as-of" in outcome.reason
    second = run(db_path, write_snapshot(tmp_path / "b", loans=[loan("L1", outstanding_principal="100.01")]),
                 registry, as_of="2026-11-27", packs=(), overrides=enable)
    assert [f for f in findings_of(db_path, second.run_id) if f[0] == "test.balance_grew"] == [
        ("test.balance_grew", "L1", "new", "2026-11-27")]


def test_facts_tables_aggregate_per_borrower_once_per_run(db_path, tmp_path):
    class Exposure:
        @hookimpl
        def register_checks(self, register):
            register(Check(id="test.exposure", title="e", tables=("loans", "borrower_facts"),
                           sql="SELECT borrower_id, 'exposure ' || exposure || ' in ' || loan_count AS message "
                               "FROM borrower_facts WHERE exposure > 100000"))

    snapshot = write_snapshot(tmp_path / "s", loans=[
        loan("L1", "B1", outstanding_principal="600.01"), loan("L2", "B1", outstanding_principal="400.00"),
        loan("L3", "B2", outstanding_principal="999.99")], borrowers=[borrower("B1"), borrower("B2")])
    run(db_path, snapshot, make_registry(Exposure()), packs=(), overrides=Overrides(enable=("test.exposure",)))
    assert query(db_path, "SELECT borrower_id, message FROM findings") == [("B1", "exposure 100001 in 2")]


def test_unknown_pack_check_or_parameter_is_a_usage_error_before_anything_is_stored(db_path, snapshot):
    registry = make_registry(BookPlugin())
    with pytest.raises(UsageError, match="unknown pack 'nope'"):
        run(db_path, snapshot, registry, packs=("nope",))
    with pytest.raises(ConfigError, match="no such check"):
        run(db_path, snapshot, registry, config=parse_config({"checks": {"test.nope": {"enabled": True}}}))
    with pytest.raises(ConfigError, match="has no parameter 'limt'"):
        run(db_path, snapshot, registry, overrides=Overrides.parse(params=["test.large_loan.limt=3"]))
    with pytest.raises(ConfigError, match="limit"):
        run(db_path, snapshot, registry, overrides=Overrides.parse(params=["test.large_loan.limit=lots"]))
    assert not db_path.exists()


def test_fail_on_sets_exit_code_1_only_at_or_above_the_severity(db_path, snapshot):
    result = run(db_path, snapshot, make_registry(BookPlugin()))  # one warning, one critical
    from loanrules.model import Severity

    assert result.exit_code(None) == 0
    assert result.exit_code(Severity.CRITICAL) == 1
    clean = run(db_path, snapshot, make_registry(BookPlugin()), overrides=Overrides(disable=("test.overdue",)))
    assert clean.exit_code(Severity.CRITICAL) == 0
    assert clean.exit_code(Severity.WARNING) == 1


def test_cli_exit_codes_follow_the_contract(runner, tmp_path, snapshot):
    db = tmp_path / "cli.db"
    ok = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", db, "--pack", "data-quality")
    assert ok.exit_code == 0, ok.output
    assert invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", db, "--pack", "data-quality",
                  "--fail-on", "info").exit_code == 0
    overdrawn = write_snapshot(tmp_path / "overdrawn", loans=[loan("L1", outstanding_principal="100000.01")])
    found = invoke(runner, "run", overdrawn, "--as-of", AS_OF, "--db", db, "--fail-on", "critical")
    assert found.exit_code == 1, found.output
    bad = write_snapshot(tmp_path / "bad", loans=[loan("L1", days_past_due="x")])
    rejected = invoke(runner, "run", bad, "--as-of", AS_OF, "--db", db)
    assert rejected.exit_code == 2
    assert "loans.csv:2 column days_past_due: value 'x'" in rejected.output
    usage = invoke(runner, "run", snapshot, "--as-of", "27/11/2026", "--db", db)
    assert usage.exit_code == 2 and "Traceback" not in usage.output


def test_plugins_extend_the_snapshot_with_tables_and_typed_columns(db_path, tmp_path):
    from loanrules import Column, ColumnType, Reference, TableSpec

    class Guarantors:
        @hookimpl
        def register_tables(self, register):
            register(TableSpec("guarantors", (
                Column("loan_id", required=True, not_null=True),
                Column("guarantor_id", required=True),
                Column("guaranteed_amount", ColumnType.MONEY, non_negative=True),
            ), references=(Reference(("loan_id",), "loans", ("loan_id",)),)))
            register(TableSpec("loans", (Column("credit_rating", ColumnType.CODE, codes=("aaa", "aa", "a")),)))

        @hookimpl
        def register_checks(self, register):
            register(Check(id="test.guaranteed", title="g", tables=("loans", "guarantors"),
                           sql="SELECT g.loan_id, 'guaranteed ' || g.guaranteed_amount || ' ' || l.credit_rating "
                               "AS message FROM guarantors g JOIN loans l USING (loan_id)"))

    registry = make_registry(Guarantors())
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1", credit_rating="AA")],
                              guarantors=[{"loan_id": "L1", "guarantor_id": "G1", "guaranteed_amount": "12.34"}])
    run(db_path, snapshot, registry, packs=("data-quality",), overrides=Overrides(enable=("test.guaranteed",)))
    assert query(db_path, "SELECT message FROM findings WHERE check_id = 'test.guaranteed'") == [
        ("guaranteed 1234 aa",)]
    bad = write_snapshot(tmp_path / "bad", loans=[loan("L1", credit_rating="junk")],
                         guarantors=[{"loan_id": "L9", "guarantor_id": "G1", "guaranteed_amount": "1"}])
    with pytest.raises(SnapshotRejected) as rejected:
        run(db_path, bad, registry, packs=("data-quality",))
    assert {(p.file, p.column) for p in rejected.value.problems} == {("loans.csv", "credit_rating"),
                                                                      ("guarantors.csv", "loan_id")}


def test_strategies_turn_findings_into_tasks(db_path, snapshot):
    from loanrules import Strategy, Task

    class Collect:
        @hookimpl
        def register_strategies(self, register):
            register(Strategy(
                id="test.call_overdue", title="call", tables=("loans", "findings"),
                sql="SELECT l.borrower_id, json_group_array(f.loan_id) AS loan_ids, 'reminder_call' AS step, "
                    "'OF002' AS assignee, date(:as_of, '+3 days') AS due_date, 5 AS priority "
                    "FROM findings f JOIN loans l USING (loan_id) WHERE f.check_id = 'test.overdue' "
                    "GROUP BY l.borrower_id"))
            register(Strategy(id="test.visit_large", title="visit", evaluate=lambda ctx: [
                Task(borrower_id="B2", loan_ids=["L3"], step="site_visit", due_date=ctx.as_of, priority=2)]))

        @hookimpl
        def register_packs(self, register):
            register(Pack(name="collect", version="1", title="c",
                          members=["test.call_overdue", "test.visit_large"]))

    result = run(db_path, snapshot, make_registry(BookPlugin(), Collect()), packs=("test-pack", "collect"))
    assert result.status == "succeeded"
    assert query(db_path, "SELECT task_id, borrower_id, loan_ids, step, assignee, due_date, priority, status "
                          "FROM collection_tasks ORDER BY task_id") == [
        ("test.call_overdue:B1:reminder_call", "B1", '["L2"]', "reminder_call", "OF002", "2026-11-30", 5, "open"),
        ("test.visit_large:B2:site_visit", "B2", '["L3"]', "site_visit", None, AS_OF, 2, "open"),
    ]


def test_a_strategy_yielding_tasks_without_a_borrower_fails_alone(db_path, snapshot):
    from loanrules import Strategy

    class Sloppy:
        @hookimpl
        def register_strategies(self, register):
            register(Strategy(id="test.sloppy", title="s",
                              sql="SELECT NULL AS borrower_id, '[]' AS loan_ids, 'call' AS step FROM loans"))

    result = run(db_path, snapshot, make_registry(BookPlugin(), Sloppy()),
                 overrides=Overrides(enable=("test.sloppy",)))
    (outcome,) = [o for o in result.outcomes if o.contribution_id == "test.sloppy"]
    assert outcome.status == "failed" and "without borrower_id" in outcome.reason
    assert query(db_path, "SELECT count(*) FROM collection_tasks") == [(0,)]


def test_recovery_and_provision_classifiers_combine_after_the_risk_class(db_path, snapshot):
    class Recovery:
        @hookimpl
        def register_classifiers(self, register):
            register(Classifier(id="test.class", title="c",
                                sql="SELECT loan_id, 'substandard' AS risk_class FROM loans WHERE days_past_due > 0"))
            register(Classifier(id="test.recovery_a", title="a", assigns="recovery_category",
                                sql="SELECT loan_id, 'recoverable' AS recovery_category FROM assessments "
                                    "WHERE risk_class = 'substandard'"))
            register(Classifier(id="test.recovery_b", title="b", assigns="recovery_category",
                                evaluate=lambda ctx: [Verdict("L2", "recoverable_with_effort")]))
            register(Classifier(id="test.provision", title="p", assigns="required_provision",
                                sql="SELECT loan_id, outstanding_principal / 4 AS required_provision "
                                    "FROM assessments JOIN loans USING (loan_id) WHERE risk_class = 'substandard'"))

        @hookimpl
        def register_packs(self, register):
            register(Pack(name="recovery", version="1", title="r",
                          members=["test.class", "test.recovery_a", "test.recovery_b", "test.provision"]))

    run(db_path, snapshot, make_registry(Recovery()), packs=("recovery",))
    rows = query(db_path, "SELECT loan_id, risk_class, recovery_category, required_provision, reasons "
                          "FROM assessments ORDER BY loan_id")
    # a loan no provision classifier named needs none: 0, not unknown
    assert [r[:4] for r in rows] == [("L1", "normal", None, 0),
                                     ("L2", "substandard", "recoverable_with_effort", 1_000_000),
                                     ("L3", "normal", None, 0)]
    rules = sorted(reason["rule"] for reason in json.loads(rows[1][4]))
    assert rules == ["test.class", "test.provision", "test.recovery_a", "test.recovery_b"]


def test_a_parameter_keeps_its_default_as_written_so_evolve_is_safe():
    import attrs

    limit = Param("limit", "300000", ParamType.MONEY)
    assert (limit.default, limit.value) == ("300000", 30_000_000)
    assert attrs.evolve(limit, description="yuan").value == 30_000_000
    with pytest.raises(ValueError, match="parameter 'limit': bad default"):
        Param("limit", "lots", ParamType.MONEY)


def test_facts_are_built_after_classification_and_timed(db_path, snapshot):
    class WorstClass:
        @hookimpl
        def register_classifiers(self, register):
            register(Classifier(id="test.overdue_class", title="c",
                                sql="SELECT loan_id, 'doubtful' AS risk_class FROM loans WHERE days_past_due > 0"))

        @hookimpl
        def register_checks(self, register):
            register(Check(id="test.worst", title="w", tables=("loans", "borrower_facts"),
                           sql="SELECT borrower_id, worst_risk_class || ' ' || npl_exposure AS message "
                               "FROM borrower_facts WHERE worst_risk_class != 'normal'"))

        @hookimpl
        def register_packs(self, register):
            register(Pack(name="worst", version="1", title="w", members=["test.overdue_class", "test.worst"]))

    result = run(db_path, snapshot, make_registry(WorstClass()), packs=("worst",))
    assert query(db_path, "SELECT borrower_id, message FROM findings") == [("B1", "doubtful 4000000")]
    (facts,) = [o for o in result.outcomes if o.contribution_id == "loanrules.facts.borrower"]
    assert (facts.kind, facts.status, facts.rows) == ("facts", "ok", 2)
    assert query(db_path, "SELECT kind FROM run_contributions WHERE contribution_id = 'loanrules.facts.borrower'") == [
        ("facts",)]


def test_a_check_reading_collateral_facts_is_skipped_without_collateral_or_pledges(db_path, snapshot):
    class SharedCollateral:
        @hookimpl
        def register_checks(self, register):
            register(Check(id="test.shared", title="s", tables=("collateral_facts",),
                           sql="SELECT collateral_id, 'shared' AS message FROM collateral_facts WHERE loan_count > 1"))

    result = run(db_path, snapshot, make_registry(SharedCollateral()), packs=("data-quality",),
                 overrides=Overrides(enable=("test.shared",)))
    (outcome,) = [o for o in result.outcomes if o.contribution_id == "test.shared"]
    assert outcome.status == "skipped" and "collateral.csv, pledges.csv" in outcome.reason


def test_collateral_facts_leave_written_off_loans_out(db_path, tmp_path):
    class Exposure:
        @hookimpl
        def register_checks(self, register):
            register(Check(id="test.collateral_exposure", title="e", tables=("collateral_facts",),
                           sql="SELECT collateral_id, loan_count || ' ' || exposure AS message FROM collateral_facts"))

    snapshot = write_snapshot(tmp_path / "s", loans=[
        loan("L1", outstanding_principal="100.00"), loan("L2", outstanding_principal="50.00", written_off="1")],
        collateral=[{"collateral_id": "C1", "collateral_type": "house", "appraised_value": "1000.00"}],
        pledges=[{"loan_id": "L1", "collateral_id": "C1"}, {"loan_id": "L2", "collateral_id": "C1"}])
    run(db_path, snapshot, make_registry(Exposure()), packs=("data-quality",),
        overrides=Overrides(enable=("test.collateral_exposure",)))
    assert query(db_path, "SELECT message FROM findings WHERE check_id = 'test.collateral_exposure'") == [
        ("1 10000",)]


def test_a_missing_snapshot_directory_is_refused_before_the_database_is_created(runner, tmp_path):
    result = invoke(runner, "run", tmp_path / "nowhere", "--as-of", AS_OF, "--db", tmp_path / "new.db")
    assert result.exit_code == 2 and "not a snapshot directory" in result.output
    assert not (tmp_path / "new.db").exists()
