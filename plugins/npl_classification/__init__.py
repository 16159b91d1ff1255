"""NPL classification: the regulator's five-category pack ``cn-five-category``.

Classifiers: the five-category floors (overdue days, restructured assets,
non-retail borrowers), the specific provision each class requires, and the
recovery category of each non-performing loan. Checks: recorded classes
against computed ones, early upgrades from the stored history, provision
shortfalls, the portfolio indicators and concentration against the
cooperative's net capital. Every threshold is a parameter; every rule cites
its source. config/packs/cn-five-category.md documents the pack.

Written like a third-party plugin: only the public API.
"""

from loanrules import Pack, hookimpl

from .checks import CHECKS
from .classify import CLASSIFIERS

PACK_VERSION = "1.1.0"


@hookimpl
def register_classifiers(register):
    for classifier in CLASSIFIERS:
        register(classifier)


@hookimpl
def register_checks(register):
    for check in CHECKS:
        register(check)


@hookimpl
def register_packs(register):
    register(Pack(
        name="cn-five-category",
        version=PACK_VERSION,
        title="Five-category risk classification (NFRA/PBoC 2023 No. 1), provisions, concentration",
        description="The regulator's classification pack: computed classes with reasons, recovery categories, "
                    "required provisions, mis-classification and portfolio checks.",
        members=[item.id for item in (*CLASSIFIERS, *CHECKS)],
    ))
