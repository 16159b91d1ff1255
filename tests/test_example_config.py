"""The example config in config/ works as shipped, on a GB18030 extract with Chinese headers and local codes."""

from __future__ import annotations

from pathlib import Path

from conftest import AS_OF, invoke, query

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example-cooperative.toml"
EXTRACT = Path(__file__).parent / "data" / "gb18030_extract"


def test_the_example_config_runs_a_gb18030_extract(runner, db_path):
    result = invoke(runner, "run", EXTRACT, "--as-of", AS_OF, "--config", EXAMPLE, "--db", db_path)
    assert result.exit_code == 0, result.output
    assert query(db_path, "SELECT loan_id, guarantee_type, outstanding_principal, maturity_date, recorded_class, "
                          "\"村组\" FROM loans ORDER BY loan_id") == [
        ("DK0001", "credit", 32_000_000, "2027-03-15", "normal", "一组"),
        ("DK0002", "mortgage", 65_000_050, "2026-06-01", "special_mention", "三组"),
        ("DK0003", "guarantee", 5_000_000, "2025-12-31", "normal", "二组"),
    ]
    assert query(db_path, "SELECT borrower_type FROM borrowers ORDER BY borrower_id") == [
        ("household",), ("small_business",), ("village_collective",)]
    findings = query(db_path, "SELECT check_id, loan_id FROM findings ORDER BY check_id")
    # the config's own SQL rule (limit 300000 yuan) and the tuned matured-not-overdue check (grace 3 days)
    assert findings == [("data.matured_not_overdue", "DK0003"), ("local.large_credit_loan", "DK0001")]
    # the config disabled this check
    assert query(db_path, "SELECT count(*) FROM run_contributions "
                          "WHERE contribution_id = 'data.lending_officer_missing'") == [(0,)]
    assert query(db_path, "SELECT cooperative FROM runs") == [("Qingshan Rural Credit Cooperative",)]


def test_the_example_config_validates(runner):
    result = invoke(runner, "validate", EXTRACT, "--config", EXAMPLE, "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    assert "valid, nothing stored" in result.output
