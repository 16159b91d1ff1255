"""Post-loan inspections and cash collections: the cooperatives' own practice, pack ``cooperative-baseline``.

REFERENCE.md §4 asks the cooperatives to inspect every non-performing loan monthly and quarterly and never
to collect loans in cash. The checks here: non-performing loans without an inspection in the last month or
an on-site inspection in the last quarter, loans not visited within a month of lending, performing loans
not inspected within the interval for their borrower type, and collection actions recovered in cash (one
finding per action). Every threshold is a parameter; config/packs/cooperative-baseline.md documents the
pack, which this plugin extends.

Written like a third-party plugin: only the public API.
"""

from loanrules import Pack, hookimpl

from .checks import CHECKS, NPL_LOANS

PACK_VERSION = "1.1.0"


@hookimpl
def register_checks(register):
    for check in CHECKS:
        register(check)


@hookimpl
def register_derivations(register):
    register(NPL_LOANS)


@hookimpl
def register_packs(register):
    register(Pack(
        name="cooperative-baseline",
        version=PACK_VERSION,
        title="The cooperatives' own practice (REFERENCE.md §4)",
        # the first plugin to register the pack gives its title and description (collateral_checks when
        # both are loaded); this one stands alone too
        description="The rural credit cooperatives' own management guidance (REFERENCE.md §4) as checks: "
                    "post-loan management (inspect every non-performing loan monthly and on site quarterly, "
                    "visit new loans, inspect performing loans regularly, never collect in cash). Other plugins "
                    "add their checks to it.",
        members=[NPL_LOANS.id, *(check.id for check in CHECKS)],
    ))
