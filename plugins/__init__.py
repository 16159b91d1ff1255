"""Built-in plugins, and how to write your own.

A plugin is a module (or package) with functions marked ``@hookimpl`` that
register contributions. Ten lines make a working check::

    # my_rules.py  -- run with: loanrules run SNAPSHOT --as-of 2026-11-27 --plugins-dir .
    from loanrules import Check, Param, ParamType, hookimpl

    @hookimpl
    def register_checks(register):
        register(Check(
            id="local.large_credit_loan", title="Large unsecured loan", severity="warning",
            params=(Param("limit", "300000", ParamType.MONEY, "yuan"),),
            sql="SELECT loan_id, borrower_id, 'credit loan above the limit' AS message FROM loans "
                "WHERE guarantee_type = 'credit' AND outstanding_principal > :limit",
        ))

To ship it as a package, declare an entry point in the group ``loanrules``
(``[options.entry_points] loanrules = my_rules = my_rules``) and
``pip install`` it; ``loanrules plugins`` then lists it.

Hooks (see ``loanrules.hookspecs`` for the full contract): ``register_checks``,
``register_classifiers``, ``register_strategies``, ``register_packs``,
``register_tables``, ``register_derivations`` (per-run tables other plugins
read: ``collateral_checks`` builds ``effective_collateral``, which
``npl_classification`` lists in ``optional_tables``) and
``register_summaries`` (report figures stored with each run). What SQL and ``evaluate(ctx)`` see inside a run is
described in ``loanrules.context``: the snapshot's tables by their canonical
names, money in integer fen, dates as ISO text.

Each sub-package here is one built-in plugin, registered exactly like a
third-party one and using only the public API.
"""
