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

The flag checks find the few documents whose original or electronic copy is missing through the stored
partial index ``documents_unfinished`` (core/schema.py, DOCUMENTS): their SQL names its condition,
``original_on_file IS NOT 1 OR electronic_copy IS NOT 1``, so that SQLite reads those documents alone.
"""

from loanrules import Check, Param, ParamType, Severity
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


def _by_kind(template: str) -> str:
    """SQL: ``template`` (with ``{kind}``) for the loan ``l``'s guarantee type, '' for a blank or unknown one.
    Each branch is a constant subquery for SQLite, evaluated once per statement."""
    return ("CASE l.guarantee_type "
            + " ".join(f"WHEN '{kind}' THEN {template.format(kind=kind)}" for kind in GUARANTEE_TYPES)
            + f" ELSE {template.format(kind='')} END")


# A loan's expected list, how many documents it holds of it (one index probe per required document: the key is
# unique, so each one counts once), and how many it should hold.
_EXPECTED = _by_kind("(SELECT expected FROM lists WHERE kind = '{kind}')")
_HELD = _by_kind("(SELECT count(*) FROM documents d WHERE d.loan_id = l.loan_id "
                 "AND d.doc_type IN (SELECT doc_type FROM required WHERE kind = '{kind}'))")
_NEEDED = _by_kind("(SELECT count(*) FROM required WHERE kind = '{kind}')")

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
    # The loans short of a document are found by counting, with an index probe per required document; only
    # those are probed again to name what they lack. (Comparing each loan's list of document types with its
    # expected list took 0.3 s longer at 1M loans: building the lists costs more than the probes, and files
    # with documents no list requires had to be checked twice.)
    sql=f"""
        WITH {_REQUIRED}, {_LISTS},
        short AS MATERIALIZED (
            SELECT loan_id, borrower_id, guarantee_type, outstanding_principal, recorded_class, expected
            FROM (SELECT l.loan_id, l.borrower_id, l.guarantee_type, l.outstanding_principal, l.recorded_class,
                         {_EXPECTED} AS expected, {_HELD} AS held, {_NEEDED} AS needed
                  FROM loans l
                  WHERE {on_book()})
            WHERE held < needed
        ),
        per_loan AS MATERIALIZED (
            SELECT s.*,
                   (SELECT json_group_array(e.value) FROM json_each(s.expected) e
                    WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.loan_id = s.loan_id AND d.doc_type = e.value))
                   AS missing
            FROM short s
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


# The documents whose original or scan is missing or not recorded, found through the partial index
# documents_unfinished (core/schema.py), which holds exactly those: the condition must be written as it is
# there for SQLite to use it.
_UNFINISHED = "d.original_on_file IS NOT 1 OR d.electronic_copy IS NOT 1"


def _flag_check(*, check_id: str, title: str, severity: Severity, column: str, said_no: str, said_blank: str,
                missing_words: str, description: str, reference: str, escalate: bool) -> Check:
    """A check over the documents present whose flag ``column`` is 0 or blank: one finding per loan."""
    severity_sql = _SEVERITY if escalate else "NULL"

    def listed(condition: str) -> tuple[str, str]:  # the doc types flagged so: a JSON array, and as text
        return (f"json_group_array(doc_type) FILTER (WHERE {condition})",
                f"group_concat(doc_type, ', ') FILTER (WHERE {condition})")

    no, no_text = listed(f"{column} = 0")
    blank, blank_text = listed(f"{column} IS NULL")
    return Check(
        id=check_id,
        title=title,
        severity=severity,
        tables=("loans", "documents", "assessments"),
        params=(*LIST_PARAMS, ALL_DOCUMENTS, *((CRITICAL_IF_NPL,) if escalate else ())),
        reference=reference,
        description=description,
        # The flagged documents in the index's order (loan, then doc type): each loan's come together, its
        # types sorted, with no sort. Each is judged against the loan's required list (unless all_documents).
        sql=f"""
            WITH {_REQUIRED},
            flagged AS (
                SELECT d.loan_id, d.doc_type, d.{column}, l.borrower_id, l.guarantee_type, l.outstanding_principal,
                       l.recorded_class
                FROM documents d CROSS JOIN loans l ON l.loan_id = d.loan_id
                WHERE ({_UNFINISHED}) AND d.{column} IS NOT 1 AND {on_book()}
                  AND (:all_documents OR EXISTS (SELECT 1 FROM required r
                                                 WHERE r.kind = {_KIND} AND r.doc_type = d.doc_type))
                ORDER BY d.loan_id, d.doc_type
            ),
            per_loan AS MATERIALIZED (
                SELECT loan_id, borrower_id, guarantee_type, outstanding_principal, recorded_class,
                       {no} AS recorded_no, {no_text} AS recorded_no_text,
                       {blank} AS not_recorded, {blank_text} AS not_recorded_text
                FROM flagged
                GROUP BY loan_id
            )
            SELECT x.loan_id, x.borrower_id, {severity_sql} AS severity,
                   coalesce('{said_no} ' || x.recorded_no_text, '') ||
                   CASE WHEN x.recorded_no_text IS NOT NULL AND x.not_recorded_text IS NOT NULL
                        THEN '; ' ELSE '' END ||
                   coalesce('{said_blank} ' || x.not_recorded_text, '') ||
                   ' (' || {_LOAN_TEXT} || ')' AS message,
                   json_object('guarantee_type', x.guarantee_type,
                               '{missing_words}', json(x.recorded_no), 'not_recorded', json(x.not_recorded),
                               'outstanding_fen', x.outstanding_principal,
                               'risk_class', {current_class(loan='x')},
                               'class_source',
                               CASE WHEN a.risk_class IS NOT NULL THEN 'computed' ELSE 'recorded' END,
                               'non_performing', json(CASE WHEN {_NPL_FLAG} THEN 'true' ELSE 'false' END))
                   AS details
            FROM per_loan x
            LEFT JOIN assessments a ON a.loan_id = x.loan_id
        """,
    )


ORIGINAL_MISSING = _flag_check(
    check_id="files.original_missing",
    title="Original of a required document not on file",
    severity=Severity.WARNING,
    column="original_on_file",
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
    column="electronic_copy",
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
