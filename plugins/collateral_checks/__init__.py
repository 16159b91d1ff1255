"""Collateral checks: the cooperatives' own collateral practice, pack ``cooperative-baseline``.

REFERENCE.md §4 asks the cooperatives to control what enters as collateral,
verify it on site, register every mortgage, value it prudently, keep the
external appraisal agencies on an approved list (and drop the ones that
misbehave), find repeated mortgages, and monitor collateral dynamically. Each
of those is a check here: loan-to-value per collateral type, stale
appraisals, appraisers not approved, registration missing or late, site
verification, mortgage loans without collateral, repeated mortgages, values
that fell since the previous as-of, and agencies that overvalue. Also each
loan's effective collateral value (a derivation the recovery categories
read), the collateral revalued or new since the previous as-of (a derivation
both history checks read) and report summaries (coverage by type, the agency
scorecard). Every threshold is a parameter; config/packs/cooperative-baseline.md
documents the pack, which later plugins (inspections, village collectives,
credit files, collection) extend.

Written like a third-party plugin: only the public API.
"""

from loanrules import Pack, hookimpl

from .checks import CHANGES, CHECKS
from .summaries import SUMMARIES
from .valuation import EFFECTIVE_VALUE

PACK_VERSION = "1.1.0"


@hookimpl
def register_checks(register):
    for check in CHECKS:
        register(check)


@hookimpl
def register_derivations(register):
    register(EFFECTIVE_VALUE)
    register(CHANGES)


@hookimpl
def register_summaries(register):
    for summary in SUMMARIES:
        register(summary)


@hookimpl
def register_packs(register):
    register(Pack(
        name="cooperative-baseline",
        version=PACK_VERSION,
        title="The cooperatives' own practice (REFERENCE.md §4)",
        description="The rural credit cooperatives' own management guidance (REFERENCE.md §4) as checks: "
                    "collateral entry, registration, site verification, prudent valuation, approved appraisal "
                    "agencies, repeated mortgages and dynamic monitoring. Later plugins add their checks to it.",
        members=[EFFECTIVE_VALUE.id, CHANGES.id, *(check.id for check in CHECKS),
                 *(summary.id for summary in SUMMARIES)],
    ))
