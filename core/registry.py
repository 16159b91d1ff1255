"""What the loaded plugins contribute, gathered once per process.

The typed façade over the register_* hooks: core code asks the registry for
checks, classifiers, strategies, packs and tables and never spells
``pm.hook.<name>`` itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import attrs

from loanrules.errors import PluginError
from loanrules.manager import PluginManager
from loanrules.model import Check, Classifier, Derivation, Pack, Strategy, Summary
from loanrules.schema import CANONICAL_TABLES, DERIVED_TABLES, Index, TableSpec
from loanrules.store import quote_identifier

Contribution = Check | Classifier | Strategy | Derivation | Summary


@attrs.frozen
class Registered:
    plugin: str
    item: Contribution


@attrs.define
class Registry:
    tables: dict[str, TableSpec] = attrs.field(factory=dict)
    contributions: dict[str, Registered] = attrs.field(factory=dict)
    packs: dict[str, Pack] = attrs.field(factory=dict)
    pack_plugins: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    _index_plugins: dict[tuple[str, Index], str] = attrs.field(factory=dict)  # (table, index) -> who added it

    @classmethod
    def from_plugins(cls, manager: PluginManager) -> Registry:
        registry = cls(tables={spec.name: spec for spec in CANONICAL_TABLES})
        manager.call_register_hook("register_tables", registry._add_table)
        manager.call_register_hook("register_checks", _expecting(Check, registry.add))
        manager.call_register_hook("register_classifiers", _expecting(Classifier, registry.add))
        manager.call_register_hook("register_strategies", _expecting(Strategy, registry.add))
        manager.call_register_hook("register_derivations", _expecting(Derivation, registry.add))
        manager.call_register_hook("register_summaries", _expecting(Summary, registry.add))
        registry._check_tables()
        manager.call_register_hook("register_packs", _expecting(Pack, registry._add_pack))
        registry._check_packs()
        return registry

    def _add_table(self, plugin: str, spec: TableSpec) -> None:
        if not isinstance(spec, TableSpec):
            raise PluginError(f"plugin {plugin!r} registered {spec!r} as a table; expected TableSpec")
        known = self.tables.get(spec.name)
        self.tables[spec.name] = known.extended(spec.columns, spec.indexes) if known else spec
        for index in spec.indexes:
            self._index_plugins.setdefault((spec.name, index), plugin)

    def add(self, plugin: str, item: Contribution) -> None:
        earlier = self.contributions.get(item.id)
        if earlier is not None:
            raise PluginError(
                f"{item.id!r} is registered twice: by plugin {earlier.plugin!r} and by {plugin!r}"
            )
        if isinstance(item, Derivation):
            clash = self.tables.get(item.table) or item.table in DERIVED_TABLES
            other = self.derivation_for(item.table)
            if clash or other is not None:
                owner = f"derivation {other.item.id!r}" if other else "a snapshot or core table"
                raise PluginError(f"plugin {plugin!r}, {item.id}: table {item.table!r} is already {owner}")
        self.contributions[item.id] = Registered(plugin, item)

    def _check_tables(self) -> None:
        """Every table's indexes can be made, and every table a contribution reads exists, once all tables
        and derivations are known (any plugin order)."""
        for spec in self.tables.values():
            for index in spec.indexes:
                problem = _index_problem(spec, index)
                if problem:
                    plugin = self._index_plugins.get((spec.name, index), "loanrules")
                    raise PluginError(f"plugin {plugin!r}, table {spec.name!r}: index "
                                      f"{index.index_name(spec.name)!r} {problem}")
        for registered in self.contributions.values():
            item = registered.item
            for table in (*item.tables, *item.optional_tables):
                derived = self.derivation_for(table)
                if table in item.optional_tables and derived is None:
                    raise PluginError(f"plugin {registered.plugin!r}, {item.id}: optional table {table!r} is "
                                      f"no derivation's table")
                if table not in self.tables and table not in DERIVED_TABLES and derived is None:
                    raise PluginError(f"plugin {registered.plugin!r}, {item.id}: unknown table {table!r}")

    def derived_columns(self) -> dict[str, tuple[str, ...]]:
        """Each derivation's table and its columns, selected for a run or not."""
        return {r.item.table: r.item.columns for r in self.of_kind(Derivation)}

    def derivation_for(self, table: str) -> Registered | None:
        """The registered derivation that builds ``table``, if any."""
        return next((r for r in self.contributions.values()
                     if isinstance(r.item, Derivation) and r.item.table == table), None)

    def _add_pack(self, plugin: str, pack: Pack) -> None:
        known = self.packs.get(pack.name)
        if known is None:
            self.packs[pack.name] = pack
            self.pack_plugins[pack.name] = (plugin,)
            return
        if known.version != pack.version:
            raise PluginError(
                f"pack {pack.name!r}: plugin {plugin!r} registers version {pack.version}, "
                f"but {self.pack_plugins[pack.name][0]!r} registered {known.version}"
            )
        self.packs[pack.name] = attrs.evolve(known, members={**known.members, **pack.members})
        self.pack_plugins[pack.name] += (plugin,)

    def _check_packs(self) -> None:
        for pack in self.packs.values():
            for member_id, member in pack.members.items():
                registered = self.contributions.get(member_id)
                if registered is None:
                    raise PluginError(f"pack {pack.name!r} names {member_id!r}, which no plugin registers")
                for name in member.params:
                    if registered.item.param(name) is None:
                        raise PluginError(f"pack {pack.name!r}: {member_id} has no parameter {name!r}")

    def of_kind(self, kind: type) -> list[Registered]:
        return [r for r in self.contributions.values() if isinstance(r.item, kind)]

    def get(self, contribution_id: str) -> Registered | None:
        return self.contributions.get(contribution_id)

    def packs_containing(self, contribution_id: str) -> Iterable[str]:
        return [name for name, pack in self.packs.items() if contribution_id in pack.members]


def _expecting(kind: type, add):
    def register(plugin: str, item):
        if not isinstance(item, kind):
            raise PluginError(f"plugin {plugin!r} registered {item!r}; expected a {kind.__name__}")
        add(plugin, item)

    return register


def _index_problem(spec: TableSpec, index: Index) -> str | None:
    """What is wrong with one index of ``spec``, tried on an empty table of the same columns, or None: at the
    load, SQLite would take an unknown column in double quotes for a string and index a constant."""
    unknown = [c for c in index.columns if c not in spec.column_names]
    if unknown:
        return f"names no column {', '.join(map(repr, unknown))} (columns: {', '.join(spec.column_names)})"
    condition = index.condition()
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE TABLE t (snapshot_id, {', '.join(map(quote_identifier, spec.column_names))})")
        conn.execute(f"CREATE INDEX i ON t (snapshot_id, {', '.join(map(quote_identifier, index.columns))})"
                     + (f" WHERE {condition}" if condition else ""))
    except sqlite3.Error as error:
        return f"cannot be made: {error}"
    finally:
        conn.close()
    return None
