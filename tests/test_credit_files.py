"""The pack ``cooperative-baseline``: credit files (issue 5; REFERENCE.md §4, "keep the original documents on
file, and make the loan files electronic").

Every test runs the pack over the smallest snapshot that shows one behaviour, usually several loans side by
side, and reads the findings back from the ``findings`` table.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from conftest import AS_OF, borrower, invoke, loan, query, write_snapshot

from loanrules import demo
from loanrules.config import load_config, parse_config
from loanrules.plan import Overrides
from loanrules.run import execute_run

PACK = "cooperative-baseline"
FIVE = "cn-five-category"
MISSING = "files.required_document_missing"
ORIGINAL = "files.original_missing"
DIGITIZED = "files.not_digitized"
CHECKS = (MISSING, ORIGINAL, DIGITIZED)

ALWAYS = ["loan_contract", "application", "borrower_id_copy"]
SECURED = ["collateral_contract", "registration_certificate", "appraisal_report"]
REQUIRED = {"credit": ALWAYS, "guarantee": [*ALWAYS, "guarantee_contract"], "mortgage": [*ALWAYS, *SECURED],
            "pledge": [*ALWAYS, *SECURED], "": ALWAYS}
DOCUMENTS_HEADER = "loan_id,doc_type,original_on_file,electronic_copy\n"


def doc(loan_id: str, doc_type: str, original: str = "1", copy: str = "1") -> dict[str, str]:
    return {"loan_id": loan_id, "doc_type": doc_type, "original_on_file": original, "electronic_copy": copy}


def credit_file(loan_id: str, guarantee_type: str, *, without=(), **flags: tuple[str, str]) -> list[dict]:
    """The complete file of a loan of this guarantee type, less ``without``; ``flags`` gives a document's
    (original_on_file, electronic_copy)."""
    return [doc(loan_id, doc_type, *flags.get(doc_type, ("1", "1")))
            for doc_type in REQUIRED[guarantee_type] if doc_type not in without]


def book(loans, documents) -> dict[str, object]:
    """One snapshot's tables; documents "absent" is not written, an empty list is a file with its header only."""
    tables = {"loans": loans, "borrowers": [borrower(b) for b in sorted({row["borrower_id"] for row in loans})]}
    if documents != "absent":
        tables["documents"] = documents or DOCUMENTS_HEADER
    return tables


@pytest.fixture
def night(tmp_path, registry):
    """``night(tables, packs=..., params={check: {...}}, overrides=[...], severities=[...])``: one run into the
    test's database
    (``night.db``); returns the run's id."""
    numbers = itertools.count(1)

    def run(tables: dict, packs=(PACK,), params: dict | None = None, overrides=(), severities=(),
            as_of: str = AS_OF):
        snapshot = write_snapshot(tmp_path / f"night{next(numbers)}", **tables)
        document = {"cooperative": {"name": "c"},
                    "checks": {check_id: {"params": values} for check_id, values in (params or {}).items()}}
        result = execute_run(run.db, snapshot, as_of=as_of, config=parse_config(document), registry=registry,
                             packs=packs, overrides=Overrides.parse(overrides, severities))
        assert result.status == "succeeded", [o.reason for o in result.outcomes if o.status == "failed"]
        return result.run_id

    run.db = tmp_path / "results.db"
    return run


def latest_run(db: Path) -> int:
    return query(db, "SELECT max(run_id) FROM runs")[0][0]


def findings(db: Path, check_id: str) -> dict[str, tuple[str, str, dict]]:
    """loan_id -> (severity, message, details) of one check in the latest run (one finding per loan)."""
    rows = query(db, "SELECT loan_id, severity, message, details FROM findings WHERE run_id = ? AND check_id = ?",
                 (latest_run(db), check_id))
    found = {loan_id: (severity, message, json.loads(details)) for loan_id, severity, message, details in rows}
    assert len(found) == len(rows), rows
    return found


def missing(db: Path) -> dict[str, list[str]]:
    return {loan_id: details["missing"] for loan_id, (_, _, details) in findings(db, MISSING).items()}


def contribution(db: Path, contribution_id: str) -> tuple[str, str | None]:
    return query(db, "SELECT status, reason FROM run_contributions WHERE run_id = ? AND contribution_id = ?",
                 (latest_run(db), contribution_id))[0]


# ------------------------------------------------------------ the pack


def test_the_pack_holds_the_three_checks_with_the_defaults(registry):
    pack = registry.packs[PACK]
    assert pack.version == "1.1.0" and set(CHECKS) <= set(pack.members)
    lists = {"required_all": tuple(ALWAYS), "required_credit": (), "required_guarantee": ("guarantee_contract",),
             "required_mortgage": tuple(SECURED), "required_pledge": tuple(SECURED)}
    defaults = {check_id: {p.name: p.value for p in registry.contributions[check_id].item.params}
                for check_id in CHECKS}
    assert defaults == {
        MISSING: {**lists, "critical_if_non_performing": True},
        ORIGINAL: {**lists, "all_documents": False, "critical_if_non_performing": True},
        DIGITIZED: {**lists, "all_documents": False},
    }
    severities = {check_id: str(registry.contributions[check_id].item.severity) for check_id in CHECKS}
    assert severities == {MISSING: "warning", ORIGINAL: "warning", DIGITIZED: "info"}


def test_complete_files_of_every_guarantee_type_produce_no_finding(night):
    kinds = ("credit", "guarantee", "mortgage", "pledge", "")
    loans = [loan(f"L{n}", guarantee_type=kind) for n, kind in enumerate(kinds)]
    night(book(loans, [row for n, kind in enumerate(kinds) for row in credit_file(f"L{n}", kind)]))
    for check_id in CHECKS:
        assert contribution(night.db, check_id) == ("ok", None)
        assert findings(night.db, check_id) == {}


# ------------------------------------------------------------ required documents


@pytest.mark.parametrize("kind", ["credit", "guarantee", "mortgage", "pledge", ""])
def test_each_guarantee_type_needs_its_own_list(night, kind):
    required = REQUIRED[kind]
    # one loan per required document, each missing that one; one loan with the base documents only;
    # one with no document at all; one complete
    loans = [loan(f"W{n}", guarantee_type=kind) for n in range(len(required))]
    loans += [loan("BASE", guarantee_type=kind), loan("NONE", guarantee_type=kind), loan("FULL", guarantee_type=kind)]
    documents = [row for n, doc_type in enumerate(required) for row in credit_file(f"W{n}", kind, without=[doc_type])]
    documents += [doc("BASE", doc_type) for doc_type in ALWAYS] + credit_file("FULL", kind)
    night(book(loans, documents))
    expected = {f"W{n}": [doc_type] for n, doc_type in enumerate(required)}
    expected["NONE"] = sorted(required)
    if kind in ("guarantee", "mortgage", "pledge"):
        expected["BASE"] = sorted(set(required) - set(ALWAYS))
    assert missing(night.db) == expected


def test_the_message_and_details_list_every_missing_document(night):
    night(book([loan("L1", guarantee_type="mortgage", outstanding_principal="70000.00")],
               credit_file("L1", "mortgage", without=["loan_contract", "appraisal_report"])))
    assert findings(night.db, MISSING) == {"L1": (
        "warning",
        "credit file lacks 2 of 6 required documents: appraisal_report, loan_contract "
        "(mortgage loan, 70000.00 yuan outstanding)",
        {"guarantee_type": "mortgage", "missing": ["appraisal_report", "loan_contract"],
         "required": sorted(REQUIRED["mortgage"]), "outstanding_fen": 7000000, "risk_class": "normal",
         "class_source": "recorded", "non_performing": False})}


def test_documents_no_list_requires_neither_hide_nor_cause_a_missing_one(night):
    loans = [loan("EXTRA"), loan("EXTRA_AND_GAP"), loan("ONLY_EXTRAS")]
    documents = [*credit_file("EXTRA", "credit"), doc("EXTRA", "credit_report"), doc("EXTRA", "zz_photo"),
                 *credit_file("EXTRA_AND_GAP", "credit", without=["application"]), doc("EXTRA_AND_GAP", "aa_note"),
                 doc("ONLY_EXTRAS", "credit_report")]
    night(book(loans, documents))
    assert missing(night.db) == {"EXTRA_AND_GAP": ["application"], "ONLY_EXTRAS": sorted(ALWAYS)}


def test_a_missing_document_is_not_an_original_or_scan_finding(night):
    night(book([loan("L1")], credit_file("L1", "credit", without=["application"])))
    assert list(missing(night.db)) == ["L1"]
    assert findings(night.db, ORIGINAL) == findings(night.db, DIGITIZED) == {}


# ------------------------------------------------------------ originals


def test_original_not_on_file_or_not_recorded_fires_on_file_is_fine(night):
    loans = [loan("NO", guarantee_type="mortgage"), loan("BLANK"), loan("BOTH", guarantee_type="guarantee"),
             loan("FINE")]
    documents = [*credit_file("NO", "mortgage", appraisal_report=("0", "1"), loan_contract=("0", "1")),
                 *credit_file("BLANK", "credit", application=("", "1")),
                 *credit_file("BOTH", "guarantee", guarantee_contract=("0", "1"), borrower_id_copy=("", "1")),
                 *credit_file("FINE", "credit")]
    night(book(loans, documents))
    found = findings(night.db, ORIGINAL)
    assert {k: (v[2]["not_on_file"], v[2]["not_recorded"]) for k, v in found.items()} == {
        "NO": (["appraisal_report", "loan_contract"], []), "BLANK": ([], ["application"]),
        "BOTH": (["guarantee_contract"], ["borrower_id_copy"])}
    assert found["NO"][:2] == ("warning", "original not on file: appraisal_report, loan_contract "
                                          "(mortgage loan, 80000.00 yuan outstanding)")
    assert found["BLANK"][1] == "original not recorded: application (credit loan, 80000.00 yuan outstanding)"
    assert found["BOTH"][1] == ("original not on file: guarantee_contract; original not recorded: borrower_id_copy "
                                "(guarantee loan, 80000.00 yuan outstanding)")
    assert findings(night.db, MISSING) == findings(night.db, DIGITIZED) == {}


def test_only_required_documents_need_their_original_unless_all_documents(night):
    loans = [loan("L1", guarantee_type="credit")]
    # a guarantee contract is not required of a credit loan
    documents = [*credit_file("L1", "credit"), doc("L1", "guarantee_contract", "0", "0")]
    tables = book(loans, documents)
    night(tables)
    assert findings(night.db, ORIGINAL) == findings(night.db, DIGITIZED) == {}
    night(tables, params={ORIGINAL: {"all_documents": True}})
    assert findings(night.db, ORIGINAL)["L1"][2]["not_on_file"] == ["guarantee_contract"]
    assert findings(night.db, DIGITIZED) == {}  # its own parameter, still false


# ------------------------------------------------------------ electronic copies


def test_no_electronic_copy_or_not_recorded_fires_as_info(night):
    loans = [loan("NO", guarantee_type="pledge"), loan("BLANK"), loan("FINE")]
    documents = [*credit_file("NO", "pledge", collateral_contract=("1", "0")),
                 *credit_file("BLANK", "credit", loan_contract=("1", ""), application=("1", "0")),
                 *credit_file("FINE", "credit")]
    night(book(loans, documents))
    found = findings(night.db, DIGITIZED)
    assert {k: (v[0], v[2]["not_digitized"], v[2]["not_recorded"]) for k, v in found.items()} == {
        "NO": ("info", ["collateral_contract"], []), "BLANK": ("info", ["application"], ["loan_contract"])}
    assert found["BLANK"][1] == ("no electronic copy: application; electronic copy not recorded: loan_contract "
                                 "(credit loan, 80000.00 yuan outstanding)")
    assert findings(night.db, ORIGINAL) == {}


def test_all_documents_judges_every_document_present(night):
    loans = [loan("L1")]
    tables = book(loans, [*credit_file("L1", "credit"), doc("L1", "credit_report", "1", "0")])
    night(tables)
    assert findings(night.db, DIGITIZED) == {}
    night(tables, overrides=[f"{DIGITIZED}.all_documents=true"])
    assert findings(night.db, DIGITIZED)["L1"][2]["not_digitized"] == ["credit_report"]


# ------------------------------------------------------------ the lists are parameters


def test_a_list_configured_for_a_check_changes_its_result_only(night):
    loans = [loan("CREDIT"), loan("MORTGAGE", guarantee_type="mortgage")]
    documents = [*credit_file("CREDIT", "credit", without=["borrower_id_copy"]),
                 *credit_file("MORTGAGE", "mortgage", without=["appraisal_report"], loan_contract=("0", "0"))]
    tables = book(loans, documents)
    night(tables, params={MISSING: {"required_all": ["loan_contract", "application"],
                                    "required_mortgage": ["collateral_contract"],
                                    "required_credit": [" credit_report "]}})  # entries are trimmed
    assert missing(night.db) == {"CREDIT": ["credit_report"]}
    assert list(findings(night.db, ORIGINAL)) == ["MORTGAGE"]  # the defaults still hold for the other checks
    night(tables, params={ORIGINAL: {"required_all": ["application"]}})
    assert findings(night.db, ORIGINAL) == {}
    assert sorted(missing(night.db)) == ["CREDIT", "MORTGAGE"]


def test_a_list_from_the_config_file_and_from_the_command_line(tmp_path, runner):
    loans = [loan("L1", guarantee_type="guarantee")]
    snapshot = write_snapshot(tmp_path / "s", **book(loans, credit_file("L1", "guarantee",
                                                                        without=["guarantee_contract"])))
    config = tmp_path / "coop.toml"
    config.write_text('[cooperative]\nname = "c"\n\n'
                      f'[checks."{MISSING}".params]\n'
                      'required_guarantee = ["guarantee_contract", "guarantor_id_copy"]\n', encoding="utf-8")
    assert load_config(config).checks[MISSING].params["required_guarantee"] == ["guarantee_contract",
                                                                                 "guarantor_id_copy"]
    db = tmp_path / "r.db"
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--pack", PACK, "--db", db, "--json", "--quiet",
                    "--config", config)
    assert result.exit_code == 0, result.output
    assert missing(db) == {"L1": ["guarantee_contract", "guarantor_id_copy"]}
    # the command line wins over the config; a comma-separated value is a list, an empty one no document
    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--pack", PACK, "--db", db, "--json", "--quiet",
                    "--config", config, "--param", f"{MISSING}.required_guarantee=")
    assert result.exit_code == 0, result.output
    assert missing(db) == {}
    recorded = json.loads(query(db, "SELECT params FROM run_contributions WHERE run_id = ? AND contribution_id = ?",
                                (latest_run(db), MISSING))[0][0])
    assert recorded["required_guarantee"] == []


# ------------------------------------------------------------ loans not judged, missing file


def test_written_off_loans_are_not_judged(night):
    loans = [loan("GONE", guarantee_type="mortgage", written_off="1"), loan("KEPT", written_off="0")]
    documents = [doc("GONE", "loan_contract", "0", "0"), *credit_file("KEPT", "credit")]
    night(book(loans, documents))
    for check_id in CHECKS:
        assert contribution(night.db, check_id) == ("ok", None)
        assert findings(night.db, check_id) == {}


def test_the_checks_are_skipped_with_the_reason_without_documents_csv(night):
    night(book([loan("L1")], "absent"))
    for check_id in CHECKS:
        assert contribution(night.db, check_id) == ("skipped", "needs documents.csv, which this snapshot does not have")


def test_an_empty_documents_csv_means_every_file_is_empty(night):
    night(book([loan("L1", guarantee_type="pledge")], []))
    assert missing(night.db) == {"L1": sorted(REQUIRED["pledge"])}
    assert findings(night.db, ORIGINAL) == findings(night.db, DIGITIZED) == {}


# ------------------------------------------------------------ non-performing loans


def test_findings_on_non_performing_loans_are_critical_by_the_recorded_or_the_computed_class(night):
    # RECORDED: recorded substandard but current; COMPUTED: recorded normal but 120 days past due
    loans = [loan("RECORDED", recorded_class="substandard", days_past_due="0"),
             loan("COMPUTED", recorded_class="normal", days_past_due="120")]
    documents = [doc(loan_id, doc_type, "0", "0") for loan_id in ("RECORDED", "COMPUTED")
                 for doc_type in ("application", "borrower_id_copy")]
    tables = book(loans, documents)

    def severities():
        return {check_id: {k: v[0] for k, v in findings(night.db, check_id).items()} for check_id in CHECKS}

    night(tables)
    assert severities() == {MISSING: {"RECORDED": "critical", "COMPUTED": "warning"},
                            ORIGINAL: {"RECORDED": "critical", "COMPUTED": "warning"},
                            DIGITIZED: {"RECORDED": "info", "COMPUTED": "info"}}
    message, details = findings(night.db, MISSING)["RECORDED"][1:]
    assert message.endswith("(credit loan, 80000.00 yuan outstanding, non-performing: substandard)")
    assert (details["risk_class"], details["class_source"], details["non_performing"]) == ("substandard",
                                                                                          "recorded", True)

    night(tables, packs=(FIVE, PACK))
    assert severities() == {MISSING: {"RECORDED": "warning", "COMPUTED": "critical"},
                            ORIGINAL: {"RECORDED": "warning", "COMPUTED": "critical"},
                            DIGITIZED: {"RECORDED": "info", "COMPUTED": "info"}}
    details = findings(night.db, ORIGINAL)["COMPUTED"][2]
    assert (details["risk_class"], details["class_source"], details["non_performing"]) == ("substandard",
                                                                                          "computed", True)

    night(tables, params={MISSING: {"critical_if_non_performing": False}})
    assert severities()[MISSING] == {"RECORDED": "warning", "COMPUTED": "warning"}
    assert severities()[ORIGINAL]["RECORDED"] == "critical"


def test_a_severity_set_by_the_cooperative_applies_to_every_finding(night):
    loans = [loan("NPL", recorded_class="doubtful", days_past_due="200"), loan("PERF")]
    tables = book(loans, [*credit_file("NPL", "credit", without=["application"]),
                          *credit_file("PERF", "credit", without=["application"])])
    night(tables, severities=[f"{MISSING}=info"])
    assert {k: v[0] for k, v in findings(night.db, MISSING).items()} == {"NPL": "info", "PERF": "info"}


# ------------------------------------------------------------ the demo cooperative


def test_the_checks_run_on_the_demo_cooperative_and_find_what_it_plants(tmp_path, registry):
    demo.write_snapshot(tmp_path / "snapshot", loans=300)
    db = tmp_path / "results.db"
    result = execute_run(db, tmp_path / "snapshot", as_of=demo.DEMO_AS_OF.isoformat(),
                         config=parse_config({"cooperative": {"name": "demo"}}), registry=registry, packs=(PACK,))
    outcomes = {o.contribution_id: o for o in result.outcomes}
    for contribution_id in CHECKS:
        assert outcomes[contribution_id].status == "ok", outcomes[contribution_id].reason
        assert outcomes[contribution_id].rows >= 1, contribution_id
    # the demo writes every required document except where it drops one on purpose: the loans on the books
    # whose file holds fewer documents than their type requires are exactly the findings
    short = query(db, """
        SELECT count(*) FROM loans l
        WHERE l.snapshot_id = 1 AND coalesce(l.written_off, 0) = 0
          AND (SELECT count(*) FROM documents d WHERE d.snapshot_id = 1 AND d.loan_id = l.loan_id) <
              CASE WHEN l.guarantee_type IN ('mortgage', 'pledge') THEN 6
                   WHEN l.guarantee_type = 'guarantee' THEN 4 ELSE 3 END""")[0][0]
    assert outcomes[MISSING].rows == short
