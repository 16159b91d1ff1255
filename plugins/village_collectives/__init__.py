"""Village collectives: the cooperatives' practice for village-group loans, in pack ``cooperative-baseline``.

REFERENCE.md §4 says village collective loans are large amounts with large
interest arrears over long time spans, hard to collect; that the cooperatives
should work with village cadres and local government, and use land transfer
and the development of suburban villages as the moment to collect. Each of
those is a check here: a collective's large outstanding principal, its
interest arrears (share and amount), loans overdue more than three years, the
collectives' share of the book, and non-performing collective loans in
villages expecting land transfer compensation soon.

A village collective is a borrower whose ``borrowers.borrower_type`` is one of
the parameter ``collective_types`` (``village_collective``), the same
parameter name in every check; every threshold is a parameter. The checks
need ``borrowers.csv`` (and the land transfer one ``villages.csv``) and are
skipped, with the reason, without them. config/packs/cooperative-baseline.md
documents the pack.

Written like a third-party plugin: only the public API.
"""

from loanrules import Pack, hookimpl

from .checks import CHECKS

PACK_VERSION = "1.1.0"  # the version of cooperative-baseline this plugin adds its checks to


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
        description="The rural credit cooperatives' own management guidance (REFERENCE.md §4) as checks; "
                    "this plugin adds the village collective loans: exposure, interest arrears, long overdue "
                    "loans, the book's share and land transfer as the moment to collect.",
        members=[check.id for check in CHECKS],
    ))
