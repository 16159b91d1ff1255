"""Collection strategies: from findings to who does what by when, in pack ``cooperative-baseline``.

REFERENCE.md §4 asks the cooperatives for a collection plan and a collection task for each household, special
collection teams for large non-performing loans, "three levels, a hundred households" for the largest
defaulters, litigation, write-off with the case kept on file, and village collective loans worked through the
village cadres, the township and the land transfer. Here:

* ``collection.plan_loans`` (a derivation, table ``collection_loans``): the loans on the books that are overdue
  or non-performing, read once per run for all of the below;
* ``collection.key_household_ranking`` (a derivation, table ``key_households``): the largest non-performing
  borrowers, ranked and assigned to the leadership, the risk asset department or the credit officers;
* ``collection.escalation_ladder`` (a strategy): households, individuals and businesses, from a reminder call
  to the write-off application, by days past due, amount, guarantee, recovery category and past actions;
* ``collection.village_collective`` (a strategy): village cadre meetings, a report to the township, and
  collection timed to the land transfer;
* ``collection.task_overdue`` (a check run after the plan): an open task past its due date;
* ``collection.key_households`` (a summary): the key-household ledger of the night, which
  ``loanrules ledger households`` reads (its ``borrower_id`` and ``level``).

The core keeps the tasks across nights (loanrules.Task): an open task carries on with its opening day and
due date until an action it names appears in collections.csv, another step replaces it, or the borrower is
cured. Every threshold is a parameter; config/packs/cooperative-baseline.md documents them.

Written like a third-party plugin: only the public API.
"""

from loanrules import Pack, hookimpl

from .checks import TASK_OVERDUE
from .common import PLAN_LOANS
from .households import KEY_HOUSEHOLD_LEDGER, KEY_HOUSEHOLDS
from .ladder import ESCALATION_LADDER
from .village import VILLAGE_COLLECTIVE

PACK_VERSION = "1.1.0"  # the version of cooperative-baseline this plugin adds to
STRATEGIES = (ESCALATION_LADDER, VILLAGE_COLLECTIVE)


@hookimpl
def register_derivations(register):
    register(PLAN_LOANS)
    register(KEY_HOUSEHOLDS)


@hookimpl
def register_strategies(register):
    for strategy in STRATEGIES:
        register(strategy)


@hookimpl
def register_checks(register):
    register(TASK_OVERDUE)


@hookimpl
def register_summaries(register):
    register(KEY_HOUSEHOLD_LEDGER)


@hookimpl
def register_packs(register):
    register(Pack(
        name="cooperative-baseline",
        version=PACK_VERSION,
        title="The cooperatives' own practice (REFERENCE.md §4)",
        description="The rural credit cooperatives' own management guidance (REFERENCE.md §4); this plugin adds "
                    "collection: key households across three levels, the escalation ladder, village collectives, "
                    "overdue tasks and the key-household ledger.",
        members=[PLAN_LOANS.id, KEY_HOUSEHOLDS.id, *(strategy.id for strategy in STRATEGIES), TASK_OVERDUE.id,
                 KEY_HOUSEHOLD_LEDGER.id],
    ))
