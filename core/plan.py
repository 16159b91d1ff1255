"""What a run will do: the selected contributions and their effective parameters.

Precedence, lowest first: the contribution's default < the pack < the
cooperative's config (``[params]``, shared by every contribution with a
parameter of that name, then ``[checks."ID".params]``) < the command line. The result is recorded with the
run, so anyone can see which thresholds produced a finding.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from loanrules.config import Config, SqlRule
from loanrules.errors import ConfigError, UsageError
from loanrules.model import Check, Classifier, Derivation, Severity, Strategy, Summary
from loanrules.registry import Registry

CONFIG_PLUGIN = "config"
RESERVED_PARAMS = frozenset({"as_of", "run_id", "snapshot_id", "previous_as_of", "check_id", "check_severity",
                             "previous_run_id", "net_capital"})


@attrs.frozen
class Planned:
    item: Check | Classifier | Strategy | Derivation | Summary
    plugin: str
    params: Mapping[str, Any]  # canonical Python values
    severity: Severity | None  # checks only
    severity_overridden: bool = False
    sandboxed: bool = False  # config SQL rules run under the read-only authorizer

    @property
    def kind(self) -> str:
        return type(self.item).__name__.lower()

    def sql_params(self) -> dict[str, Any]:
        return {p.name: p.to_sql(self.params[p.name]) for p in self.item.params}

    def display_params(self) -> dict[str, Any]:
        return {p.name: p.to_display(self.params[p.name]) for p in self.item.params}


@attrs.frozen
class Overrides:
    """Command-line overrides: ``--param check.id.name=value``, ``--severity check.id=level``."""

    params: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    severities: Mapping[str, str] = attrs.field(factory=dict)
    enable: Sequence[str] = ()
    disable: Sequence[str] = ()

    @classmethod
    def parse(cls, params: Sequence[str] = (), severities: Sequence[str] = (), enable: Sequence[str] = (),
              disable: Sequence[str] = ()) -> Overrides:
        parsed: dict[str, dict[str, str]] = {}
        for text in params:
            target, eq, value = text.partition("=")
            contribution_id, dot, name = target.rpartition(".")
            if not eq or not dot or "." not in contribution_id:
                raise UsageError(f"--param {text!r}: expected CHECK_ID.PARAM=VALUE, "
                                 f"e.g. collateral.ltv_exceeded.house=0.65")
            parsed.setdefault(contribution_id, {})[name] = value
        levels = {}
        for text in severities:
            contribution_id, eq, level = text.partition("=")
            if not eq:
                raise UsageError(f"--severity {text!r}: expected CHECK_ID=LEVEL")
            levels[contribution_id] = level
        return cls(parsed, levels, tuple(enable), tuple(disable))


def sql_rule_check(rule: SqlRule) -> Check:
    return Check(id=rule.id, title=rule.title, severity=rule.severity, sql=rule.sql, params=rule.params,
                 tables=rule.tables, reference=rule.reference, description=rule.description)


def selected_packs(registry: Registry, config: Config, cli_packs: Sequence[str]) -> list[str]:
    names = list(cli_packs) or list(config.packs) or sorted(registry.packs)
    for name in names:
        if name not in registry.packs:
            source = "--pack" if cli_packs else f"{config.path}: packs"
            known = ", ".join(sorted(registry.packs)) or "none installed"
            raise UsageError(f"{source}: unknown pack {name!r} (known: {known})")
    return names


def build_plan(registry: Registry, config: Config, packs: Sequence[str], overrides: Overrides) -> list[Planned]:
    """Resolve which contributions run, with which parameters and severities."""
    for rule in config.rules:
        if registry.get(rule.id) is not None:
            raise ConfigError(f"{config.path}: rules: {rule.id!r} is already a check of plugin "
                              f"{registry.get(rule.id).plugin!r}; choose another id")
        for table in rule.tables:
            if table not in registry.tables:
                raise ConfigError(f"{config.path}: rules: {rule.id}: unknown table {table!r}")
    rule_checks = {rule.id: sql_rule_check(rule) for rule in config.rules}

    def known(contribution_id: str) -> bool:
        return registry.get(contribution_id) is not None or contribution_id in rule_checks

    for contribution_id in config.checks:
        if not known(contribution_id):
            raise ConfigError(f"{config.path}: checks.{contribution_id}: no such check, classifier or strategy "
                              f"(see `loanrules checks`)")
    for contribution_id in (*overrides.params, *overrides.severities, *overrides.enable, *overrides.disable):
        if not known(contribution_id):
            raise UsageError(f"unknown check {contribution_id!r} on the command line (see `loanrules checks`)")

    known_params = {p.name for r in registry.contributions.values() for p in r.item.params}
    for name in config.params:
        if name not in known_params:
            close = difflib.get_close_matches(name, sorted(known_params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{config.path}: params.{name}: no installed check has a parameter {name!r}{hint}")

    members: dict[str, list[str]] = {}
    for pack_name in packs:
        for member_id in registry.packs[pack_name].members:
            members.setdefault(member_id, []).append(pack_name)

    plan: list[Planned] = []
    candidates = [(r.item, r.plugin, False) for r in registry.contributions.values()]
    candidates += [(check, CONFIG_PLUGIN, True) for check in rule_checks.values()]
    for item, plugin, sandboxed in candidates:
        settings = config.checks.get(item.id)
        enabled = item.id in members or sandboxed
        if settings is not None and settings.enabled is not None:
            enabled = settings.enabled
        if item.id in overrides.enable:
            enabled = True
        if item.id in overrides.disable:
            enabled = False
        if not enabled:
            continue
        params: dict[str, Any] = {p.name: p.value for p in item.params}
        severity = getattr(item, "severity", None)
        overridden = False
        for pack_name in members.get(item.id, ()):
            member = registry.packs[pack_name].members[item.id]
            if member.severity is not None:
                severity, overridden = member.severity, True
        sources = [(f"pack {p}", registry.packs[p].members[item.id].params) for p in members.get(item.id, ())]
        shared = {name: value for name, value in config.params.items() if item.param(name) is not None}
        sources.append((f"{config.path}: params", shared))
        if settings is not None:
            sources.append((f"{config.path}: checks.{item.id}.params", settings.params))
            if settings.severity is not None:
                severity, overridden = settings.severity, True
        sources.append((f"--param {item.id}", overrides.params.get(item.id, {})))
        for source, values in sources:
            for name, value in values.items():
                param = item.param(name)
                if param is None:
                    names = ", ".join(p.name for p in item.params) or "none"
                    raise ConfigError(f"{source}.{name}: {item.id} has no parameter {name!r} (parameters: {names})")
                try:
                    params[name] = param.coerce(value)
                except ValueError as error:
                    raise ConfigError(f"{source}.{name}: {error}") from None
        if item.id in overrides.severities:
            try:
                severity, overridden = Severity.parse(overrides.severities[item.id]), True
            except ValueError as error:
                raise UsageError(f"--severity {item.id}: {error}") from None
        if severity is not None and not isinstance(item, Check):
            severity = None
        for param in item.params:
            if param.name in RESERVED_PARAMS:
                raise UsageError(f"{item.id}: parameter name {param.name!r} is reserved for the core")
        plan.append(Planned(item, plugin, params, severity, overridden, sandboxed))
    return plan
