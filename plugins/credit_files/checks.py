"""Credit-file checks: required documents, originals on file, electronic copies (REFERENCE.md §4, the
cooperatives' own practice: "keep the original documents on file, and make the loan files electronic").

Which documents a loan's credit file must hold depends on its guarantee type. The lists are parameters
(TEXT_LIST) of each check, so a cooperative changes a list for a check in one place:
``[checks."files.required_document_missing".params] required_mortgage = [...]``. The three checks carry the
same list parameters with the same defaults; a cooperative that changes its list for all three writes it under
each check (they may differ on purpose: the documents whose original must be kept can be fewer than the ones
that must exist). A loan's required documents are ``required_all`` plus the list of its guarantee type
(``required_credit``, ``required_guarantee``, ``required_mortgage``, ``required_pledge``); a loan with a blank
guarantee type needs ``required_all`` only. Document types are compared exactly as written in
``documents.doc_type`` (entries of the lists are trimmed); a cooperative whose extract names them otherwise
(Chinese names, its own codes) writes its names in the lists.

What is shared is a fact, not a parameter: the derivation ``files.document_flags`` reads the documents whose
original or electronic copy is missing once per run (the flags are in no index, so finding them reads every
document row) and both flag checks judge its rows against their own lists. It is a member of the pack; a
check enabled without it is skipped with the reason.
"""

from loanrules import Check, Derivation, Param, ParamType, Severity
from loanrules.sqltext import current_class, non_performing, on_book, yuan

PRACTICE = "Rural credit cooperative management guidance, credit files (REFERENCE.md §4)"
LISTS_SOURCE = "the required documents per guarantee type are typical policy, parameters"
GUARANTEE_TYPES = ("credit", "guarantee", "mortgage", "pledge")

ALWAYS = ("loan_contract", "application", "borrower_id_copy")
SECURED = ("collateral_contract", "registration_certificate", "appraisal_report")
GUARANTEED = ("guarantee_contract",)

LIST_PARAMS = (
    Param("required_all", ", ".join(ALWAYS), ParamType.TEXT_LIST,
          "documents every loan's credit file must hold, whatever its guarantee type"),
    Param("required_credit", "", ParamType.TEXT_LIST,
          "documents credit (unsecured) loans must also hold"),
    Param("required_guarantee", ", ".join(GUARANTEED), ParamType.TEXT_LIST,
          "documents guaranteed loans must also hold"),
    Param("required_mortgage", ", ".join(SECURED), ParamType.TEXT_LIST,
          "documents mortgage loans must also hold"),
    Param("required_pledge", ", ".join(SECURED), ParamType.TEXT_LIST,
          "documents pledge loans must also hold"),
)
CRITICAL_IF_NPL = Param(
    "critical_if_non_performing", True, ParamType.BOOLEAN,
    "a finding on a non-performing loan (computed class when the classification pack runs, else the recorded "
    "class: substandard, doubtful, loss) is critical: collection and litigation need the file")
ALL_DOCUMENTS = Param(
    "all_documents", False, ParamType.BOOLEAN,
    "judge every document present in the file, not only the required ones")

_LISTS_DOC = ("Required documents: `required_all` (loan_contract, application, borrower_id_copy) for every loan, "
              "plus `required_mortgage` and `required_pledge` (collateral_contract, registration_certificate, "
              "appraisal_report), `required_guarantee` (guarantee_contract) or `required_credit` (none) by the "
              "loan's guarantee_type; a blank guarantee type needs `required_all` only. Loans written off are not "
              "judged.")
_NPL_DOC = ("A finding on a non-performing loan (the computed class when cn-five-category runs in the same run, "
            "else the recorded class: substandard, doubtful, loss) is critical while `critical_if_non_performing` "
            "is true (unless the check's severity is overridden).")

_KIND = (f"CASE WHEN l.guarantee_type IN ({', '.join(repr(kind) for kind in GUARANTEE_TYPES)}) "
         f"THEN l.guarantee_type ELSE '' END")

# (kind, doc_type): the required documents of each guarantee type ('' = blank), each at most once.
_REQUIRED = f"""
    kinds(kind) AS (VALUES {', '.join(f"('{kind}')" for kind in GUARANTEE_TYPES)}, ('')),
    required AS MATERIALIZED (
        SELECT DISTINCT kind, doc_type FROM (
            SELECT k.kind, trim(a.value) AS doc_type FROM kinds k CROSS JOIN json_each(:required_all) a
            {' '.join(f"UNION ALL SELECT '{kind}', trim(value) FROM json_each(:required_{kind})"
                      for kind in GUARANTEE_TYPES)})
        WHERE doc_type != ''
    )"""

# Each guarantee type's required documents as a JSON array sorted like the documents key index (BINARY).
_LISTS = """
    lists AS MATERIALIZED (
        SELECT k.kind, (SELECT json_group_array(doc_type)
                        FROM (SELECT r.doc_type FROM required r WHERE r.kind = k.kind ORDER BY r.doc_type))
                       AS expected
        FROM kinds k
    )"""

# A loan's expected list: one constant subquery per guarantee type, evaluated once per statement.
_EXPECTED = ("CASE l.guarantee_type "
             + " ".join(f"WHEN '{kind}' THEN (SELECT expected FROM lists WHERE kind = '{kind}')"
                        for kind in GUARANTEE_TYPES)
             + " ELSE (SELECT expected FROM lists WHERE kind = '') END")

_NPL_FLAG = non_performing(loan="x")
_SEVERITY = f"CASE WHEN :critical_if_non_performing AND {_NPL_FLAG} THEN 'critical' END"
_LOAN_TEXT = (f"coalesce(x.guarantee_type, 'unknown guarantee type') || ' loan, ' || "
              f"{yuan('x.outstanding_principal')} || ' yuan outstanding' || "
              f"CASE WHEN {_NPL_FLAG} THEN ', non-performing: ' || {current_class(loan='x')} "
              f"ELSE '' END")


REQUIRED_DOCUMENT_MISSING = Check(
    id="files.required_document_missing",
    title="Credit file lacks a required document",
    severity=Severity.WARNING,
    tables=("loans", "documents", "assessments"),
    params=(*LIST_PARAMS, CRITICAL_IF_NPL),
    reference=f"{PRACTICE}: keep the original documents on file; {LISTS_SOURCE}",
    description="One finding per loan on the books whose credit file (documents.csv) holds no row for one or more "
                "of its required documents; the message and details list every missing doc_type (sorted). A "
                "document present with its original or scan missing is not missing here (see "
                "files.original_missing, files.not_digitized); a loan with no documents at all misses all of "
                f"them. {_LISTS_DOC} {_NPL_DOC}",
    # A complete file is found with one probe per loan: the loan's document types, read in the key index's
    # order, equal its sorted required list. Only the other loans (incomplete files, or files with documents
    # no list requires) are probed per required document. Should SQLite ever read the types in another order,
    # a complete file would merely take the exact second step.
    sql=f"""
        WITH {_REQUIRED}, {_LISTS},
        suspects AS MATERIALIZED (
            SELECT loan_id, borrower_id, guarantee_type, outstanding_principal, recorded_class, expected
            FROM (SELECT l.loan_id, l.borrower_id, l.guarantee_type, l.outstanding_principal, l.recorded_class,
                         {_EXPECTED} AS expected,
                         (SELECT json_group_array(d.doc_type) FROM documents d WHERE d.loan_id = l.loan_id) AS held
                  FROM loans l
                  WHERE {on_book()})
            WHERE held IS NOT expected
        ),
        per_loan AS MATERIALIZED (
            SELECT s.*,
                   (SELECT json_group_array(e.value) FROM json_each(s.expected) e
                    WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.loan_id = s.loan_id AND d.doc_type = e.value))
                   AS missing
            FROM suspects s
        )
        SELECT x.loan_id, x.borrower_id, {_SEVERITY} AS severity,
               'credit file lacks ' || json_array_length(x.missing) || ' of ' || json_array_length(x.expected) ||
               ' required documents: ' || (SELECT group_concat(value, ', ') FROM json_each(x.missing)) ||
               ' (' || {_LOAN_TEXT} || ')' AS message,
               json_object('guarantee_type', x.guarantee_type, 'missing', json(x.missing),
                           'required', json(x.expected), 'outstanding_fen', x.outstanding_principal,
                           'risk_class', {current_class(loan='x')},
                           'class_source', CASE WHEN a.risk_class IS NOT NULL THEN 'computed' ELSE 'recorded' END,
                           'non_performing', json(CASE WHEN {_NPL_FLAG} THEN 'true' ELSE 'false' END)) AS details
        FROM per_loan x
        LEFT JOIN assessments a ON a.loan_id = x.loan_id
        WHERE x.missing != '[]'
    """,
)


# The documents whose original or electronic copy is missing are few, but finding them means reading every
# document row (the flags are in no index): the derivation reads them once for both checks below (measured at
# 1M loans: 0.7 s a pass, twice that when each check made its own).
DOCUMENT_FLAGS = Derivation(
    id="files.document_flags",
    table="document_flags",
    columns=("loan_id", "original_no", "original_blank", "copy_no", "copy_blank"),
    title="Each loan's documents without an original on file or an electronic copy",
    tables=("documents",),
    reference=f"{PRACTICE}: keep the original documents on file, and make the loan files electronic",
    description="One row per loan (on the books or not) with at least one document in documents.csv whose "
                "original_on_file or electronic_copy is not 1 (table `document_flags`): its doc_types, sorted, as "
                "JSON arrays, NULL when none: `original_no` (original_on_file = 0), `original_blank` (blank), "
                "`copy_no` (electronic_copy = 0), `copy_blank` (blank). Read by files.original_missing and "
                "files.not_digitized, which judge them against the loan's required documents; it has no "
                "parameters of its own.",
    # One pass over the snapshot's documents in the key index's order (loan_id, doc_type): the grouping needs
    # no sort and lists each loan's types sorted.
    sql="""
        SELECT loan_id,
               nullif(json_group_array(doc_type) FILTER (WHERE original_on_file = 0), '[]') AS original_no,
               nullif(json_group_array(doc_type) FILTER (WHERE original_on_file IS NULL), '[]') AS original_blank,
               nullif(json_group_array(doc_type) FILTER (WHERE electronic_copy = 0), '[]') AS copy_no,
               nullif(json_group_array(doc_type) FILTER (WHERE electronic_copy IS NULL), '[]') AS copy_blank
        FROM documents
        WHERE original_on_file IS NOT 1 OR electronic_copy IS NOT 1
        GROUP BY loan_id
    """,
)


def _judged(array: str) -> str:
    """SQL: the doc types of a JSON array (or NULL) this check judges, as a JSON array, NULL when none."""
    return f"""(SELECT CASE WHEN count(*) > 0 THEN json_group_array(e.value) END
                FROM json_each({array}) e
                WHERE :all_documents OR EXISTS (SELECT 1 FROM required r
                                                WHERE r.kind = x.kind AND r.doc_type = e.value))"""


def _text(array: str) -> str:
    return f"(SELECT group_concat(value, ', ') FROM json_each({array}))"


def _flag_check(*, check_id: str, title: str, severity: Severity, prefix: str, said_no: str, said_blank: str,
                missing_words: str,
                description: str, reference: str, escalate: bool) -> Check:
    """A check over the documents present whose flag (``prefix``: original, copy) is 0 or blank: one finding
    per loan, from the derivation files.document_flags."""
    severity_sql = _SEVERITY if escalate else "NULL"
    return Check(
        id=check_id,
        title=title,
        severity=severity,
        tables=("loans", "documents", DOCUMENT_FLAGS.table, "assessments"),
        params=(*LIST_PARAMS, ALL_DOCUMENTS, *((CRITICAL_IF_NPL,) if escalate else ())),
        reference=reference,
        description=description,
        sql=f"""
            WITH {_REQUIRED},
            per_loan AS MATERIALIZED (
                SELECT x.loan_id, x.borrower_id, x.guarantee_type, x.outstanding_principal, x.recorded_class,
                       {_judged(f'x.{prefix}_no')} AS recorded_no, {_judged(f'x.{prefix}_blank')} AS not_recorded
                FROM (SELECT l.loan_id, l.borrower_id, l.guarantee_type, l.outstanding_principal, l.recorded_class,
                             {_KIND} AS kind, g.{prefix}_no, g.{prefix}_blank
                      FROM {DOCUMENT_FLAGS.table} g CROSS JOIN loans l ON l.loan_id = g.loan_id
                      WHERE (g.{prefix}_no IS NOT NULL OR g.{prefix}_blank IS NOT NULL) AND {on_book()}) x
            )
            SELECT x.loan_id, x.borrower_id, {severity_sql} AS severity,
                   coalesce('{said_no} ' || {_text('x.recorded_no')}, '') ||
                   CASE WHEN x.recorded_no IS NOT NULL AND x.not_recorded IS NOT NULL THEN '; ' ELSE '' END ||
                   coalesce('{said_blank} ' || {_text('x.not_recorded')}, '') ||
                   ' (' || {_LOAN_TEXT} || ')' AS message,
                   json_object('guarantee_type', x.guarantee_type,
                               '{missing_words}', json(coalesce(x.recorded_no, '[]')),
                               'not_recorded', json(coalesce(x.not_recorded, '[]')),
                               'outstanding_fen', x.outstanding_principal,
                               'risk_class', {current_class(loan='x')},
                               'class_source',
                               CASE WHEN a.risk_class IS NOT NULL THEN 'computed' ELSE 'recorded' END,
                               'non_performing', json(CASE WHEN {_NPL_FLAG} THEN 'true' ELSE 'false' END))
                   AS details
            FROM per_loan x
            LEFT JOIN assessments a ON a.loan_id = x.loan_id
            WHERE x.recorded_no IS NOT NULL OR x.not_recorded IS NOT NULL
        """,
    )


ORIGINAL_MISSING = _flag_check(
    check_id="files.original_missing",
    title="Original of a required document not on file",
    severity=Severity.WARNING,
    prefix="original",
    said_no="original not on file:",
    said_blank="original not recorded:",
    missing_words="not_on_file",
    escalate=True,
    reference=f"{PRACTICE}: keep the original documents on file; {LISTS_SOURCE}",
    description="One finding per loan on the books with one or more required documents present in documents.csv "
                "whose original_on_file is 0, or blank: a blank is \"not recorded\" and counts as the original "
                "missing, since nobody has confirmed it is on file (the message and details keep the two apart: "
                "`not_on_file`, `not_recorded`). original_on_file = 1 is fine. With `all_documents` (false) every "
                "document present is judged, required or not. A required document absent altogether is "
                f"files.required_document_missing's finding, not this one's. {_LISTS_DOC} {_NPL_DOC}",
)

NOT_DIGITIZED = _flag_check(
    check_id="files.not_digitized",
    title="Credit-file document without an electronic copy",
    severity=Severity.INFO,
    prefix="copy",
    said_no="no electronic copy:",
    said_blank="electronic copy not recorded:",
    missing_words="not_digitized",
    escalate=False,
    reference=f"{PRACTICE}: make the loan files electronic; {LISTS_SOURCE}",
    description="One finding per loan on the books with one or more documents present in documents.csv whose "
                "electronic_copy is 0 or blank (blank, \"not recorded\", counts as not digitized; the details keep "
                "the two apart: `not_digitized`, `not_recorded`); electronic_copy = 1 is fine. Only the loan's "
                "required documents are judged unless `all_documents` (false) is true, then every document "
                "present. Severity info: the file still exists on paper; digitizing is the cooperatives' ongoing "
                f"work, not a loss. {_LISTS_DOC}",
)

CHECKS = (REQUIRED_DOCUMENT_MISSING, ORIGINAL_MISSING, NOT_DIGITIZED)
