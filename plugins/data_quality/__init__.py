"""Data quality of the core-banking extract: the checks every other rule relies on.

A classification or a collateral rule is only as good as the extract under
it. These checks find loans whose own fields contradict each other (a balance
above the amount lent, a loan that matured unpaid but shows no days past
due), missing responsibility (no lending officer: REFERENCE.md §4 ties every
non-performing loan to the officer who granted it), and resident ID numbers
that fail their check digit. They form the pack ``data-quality``.

Written exactly like a third-party plugin: it imports only the public API.
"""

from loanrules import Check, Pack, Param, ParamType, Severity, hookimpl
from loanrules.plugins.data_quality.id_numbers import check_id_numbers
from loanrules.sqltext import yuan

PACK_VERSION = "1.0.0"

CHECKS = (
    Check(
        id="data.outstanding_exceeds_principal",
        title="Outstanding principal above the principal lent",
        severity=Severity.CRITICAL,
        tables=("loans",),
        reference="Extract integrity: a balance cannot exceed the amount lent",
        sql=f"""
            SELECT loan_id, borrower_id,
                   'outstanding ' || {yuan('outstanding_principal')} || ' yuan exceeds principal ' ||
                   {yuan('principal')} || ' yuan' AS message,
                   json_object('outstanding_principal_fen', outstanding_principal,
                               'principal_fen', principal) AS details
            FROM loans
            WHERE principal IS NOT NULL AND outstanding_principal > principal
        """,
    ),
    Check(
        id="data.maturity_before_origination",
        title="Maturity date before origination date",
        severity=Severity.WARNING,
        tables=("loans",),
        reference="Extract integrity",
        sql="""
            SELECT loan_id, borrower_id,
                   'matures ' || maturity_date || ', before it was granted on ' || origination_date AS message
            FROM loans
            WHERE maturity_date < origination_date
        """,
    ),
    Check(
        id="data.originated_after_as_of",
        title="Loan granted after the snapshot's as-of date",
        severity=Severity.WARNING,
        tables=("loans",),
        reference="Extract integrity: the extract and --as-of disagree",
        sql="""
            SELECT loan_id, borrower_id, 'granted ' || origination_date || ', after the as-of date ' || :as_of
                   AS message
            FROM loans
            WHERE origination_date > :as_of
        """,
    ),
    Check(
        id="data.matured_not_overdue",
        title="Matured with a balance but no days past due",
        severity=Severity.CRITICAL,
        tables=("loans",),
        params=(Param("grace_days", 0, ParamType.INTEGER,
                      "days after maturity before an unpaid balance must show as overdue"),),
        reference="Risk classification measures (NFRA/PBoC 2023 No. 1): overdue principal is counted from "
                  "the due date; an unpaid matured loan reported current hides arrears",
        description="A loan whose maturity date has passed (by more than grace_days) with principal still "
                    "outstanding is overdue; a days_past_due of 0 means the extract under-reports arrears.",
        sql="""
            SELECT loan_id, borrower_id,
                   'matured ' || maturity_date || ' with principal outstanding, but days_past_due is 0' AS message,
                   json_object('maturity_date', maturity_date,
                               'days_since_maturity', CAST(julianday(:as_of) - julianday(maturity_date) AS INTEGER),
                               'grace_days', :grace_days) AS details
            FROM loans
            WHERE days_past_due = 0 AND outstanding_principal > 0 AND coalesce(written_off, 0) = 0
              AND julianday(:as_of) - julianday(maturity_date) > :grace_days
        """,
    ),
    Check(
        id="data.interest_arrears_not_overdue",
        title="Interest in arrears but no days past due",
        severity=Severity.WARNING,
        tables=("loans",),
        reference="Risk classification measures (NFRA/PBoC 2023 No. 1): principal or interest overdue "
                  "makes a loan at least special mention",
        sql=f"""
            SELECT loan_id, borrower_id,
                   'interest arrears of ' || {yuan('interest_arrears')} || ' yuan, but days_past_due is 0' AS message
            FROM loans
            WHERE interest_arrears > 0 AND days_past_due = 0
        """,
    ),
    Check(
        id="data.lending_officer_missing",
        title="No lending officer recorded",
        severity=Severity.INFO,
        tables=("loans",),
        reference="Cooperative practice (REFERENCE.md §4): every loan carries the lending responsibility of "
                  "the officer who granted it",
        sql="""
            SELECT loan_id, borrower_id, 'no lending_officer_id: lending responsibility cannot be assigned'
                   AS message
            FROM loans
            WHERE lending_officer_id IS NULL
        """,
    ),
    Check(
        id="data.id_number_invalid",
        title="Resident ID number fails its check digit",
        severity=Severity.WARNING,
        tables=("borrowers",),
        params=(Param("borrower_types", ["household", "individual"], ParamType.TEXT_LIST,
                      "borrower types whose id_number is an 18-digit resident ID number"),),
        reference="GB 11643-1999 citizen identification number (ISO 7064 MOD 11-2 check digit)",
        description="An 18-character resident ID number whose check digit is wrong was mistyped; the borrower "
                    "cannot be matched against credit registers. The number itself is never put in the finding.",
        evaluate=check_id_numbers,
    ),
)


@hookimpl
def register_checks(register):
    for check in CHECKS:
        register(check)


@hookimpl
def register_packs(register):
    register(Pack(
        name="data-quality",
        version=PACK_VERSION,
        title="Data quality of the core-banking extract",
        description="Contradictions inside the extract that would mislead every other rule.",
        members=[check.id for check in CHECKS],
    ))
