"""Credit-file checks: the cooperatives' own practice for loan files, pack ``cooperative-baseline``.

REFERENCE.md §4: "keep the original documents on file, and make the loan files
electronic". From ``documents.csv`` (loan_id, doc_type, original_on_file,
electronic_copy), three checks per loan on the books:

* ``files.required_document_missing`` (warning): a required document has no row;
* ``files.original_missing`` (warning): a required document's original is not on
  file (0) or not recorded (blank; every document with ``all_documents``);
* ``files.not_digitized`` (info): a required document (every document with
  ``all_documents``) has no electronic copy (0 or blank).

The required documents depend on the loan's guarantee type; every list is a
parameter of each check (see ``checks``). The first two are critical on
non-performing loans (``critical_if_non_performing``). The two flag checks read
the few documents without an original or a scan through a partial index of their
own (``documents_unfinished``). Without documents.csv all are skipped with the
reason.
config/packs/cooperative-baseline.md documents the pack.

Written like a third-party plugin: only the public API.
"""

from loanrules import Pack, hookimpl

from .checks import CHECKS

PACK_VERSION = "1.1.0"


@hookimpl
def register_checks(register):
    for check in CHECKS:
        register(check)


@hookimpl
def register_packs(register):
    register(Pack(
        name="cooperative-baseline",
        version=PACK_VERSION,
        title="The cooperatives' own practice (REFERENCE.md §4)",
        description="The rural credit cooperatives' own management guidance (REFERENCE.md §4) as checks. "
                    "Credit files: required documents per guarantee type, originals on file, electronic copies.",
        members=[check.id for check in CHECKS],
    ))
