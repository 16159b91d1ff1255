"""Hook specifications: the whole plugin contract.

Every hook runs once per process (never per loan) and receives a ``register``
callback; call it once per contribution. The core stamps each contribution
with the plugin's name, checks its id is unique, and reports a plugin whose
hook raises by name. Hooks are called with keyword arguments, so an
implementation may leave out arguments it does not need.
"""

import pluggy

hookspec = pluggy.HookspecMarker("loanrules")


@hookspec
def register_tables(register):
    """Contribute snapshot tables, or columns to existing ones.

    ``register(TableSpec(...))``. A spec whose name is already known (``loans``)
    adds its columns to that table; a new name adds a table, loaded from
    ``<name>.csv`` when the snapshot has it. Checks that list a table in
    ``tables`` are skipped, with the reason, when the file is absent. A spec's
    ``indexes`` (``Index``, or a tuple of columns) are added to the stored
    table: each costs time on every load, so only where a check needs one.
    """


@hookspec
def register_checks(register):
    """Contribute checks: ``register(Check(...))``.

    A check has a stable dotted id (``collateral.ltv_exceeded``), a title, a
    default severity, parameters with defaults, the tables it needs, a
    reference and either ``sql`` (a SELECT run inside SQLite, streamed into the
    findings table) or ``evaluate(ctx)`` yielding ``Finding`` values.
    """


@hookspec
def register_classifiers(register):
    """Contribute classifiers: ``register(Classifier(...))``.

    Each yields per-loan verdicts for one assessment field. For ``risk_class``
    the worst class over all classifiers wins and every verdict is kept in the
    assessment's ``reasons``.
    """


@hookspec
def register_strategies(register):
    """Contribute collection strategies: ``register(Strategy(...))``, turning
    assessments and findings into collection tasks."""


@hookspec
def register_derivations(register):
    """Contribute derived tables: ``register(Derivation(...))``, a per-run
    table of figures (SQL) that other contributions read by its ``table``
    name, e.g. each loan's effective collateral value for the recovery
    categories. Listing it in ``optional_tables`` reads it when the run has
    it and an empty table of the same columns when not."""


@hookspec
def register_summaries(register):
    """Contribute report summaries: ``register(Summary(...))``, a small table
    of figures (SQL) computed at the end of each run and stored with it, for
    the reports and ``loanrules summaries``."""


@hookspec
def register_packs(register):
    """Contribute packs: ``register(Pack(...))``, a named, versioned set of
    checks, classifiers, strategies, derivations and summaries with parameter values. Registering a
    pack name that exists with the same version adds members to it (a later
    plugin extending ``cooperative-baseline``); another version is an error."""
