"""The plugin manager: built-ins, entry points and ``--plugins-dir`` files.

Environment variables (for IT staff and tests):

``LOANRULES_LOAD_PLUGINS``
    comma-separated names: only these installed plugins (entry points) are
    loaded; an empty string loads none. ``--plugins-dir`` files are named on
    the command line, so they load regardless.
``LOANRULES_BLOCK_PLUGINS``
    comma-separated names never to load, built-ins included
    (``LOANRULES_BLOCK_PLUGINS=data_quality``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import attrs
import pluggy

import loanrules
from loanrules import hookspecs
from loanrules.errors import PluginError, UsageError

ENTRY_POINT_GROUP = "loanrules"
BUILTIN_PLUGINS = ("loanrules.plugins.data_quality", "loanrules.plugins.npl_classification",
                   "loanrules.plugins.collateral_checks", "loanrules.plugins.post_loan_inspections",
                   "loanrules.plugins.village_collectives", "loanrules.plugins.credit_files",
                   "loanrules.plugins.collection_strategies")


@attrs.frozen
class PluginInfo:
    name: str
    version: str
    source: str  # builtin, entry point, or the file it came from
    hooks: tuple[str, ...]


def _names_from_env(variable: str) -> set[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


class PluginManager:
    """A pluggy manager that remembers where each plugin came from."""

    def __init__(self, plugins_dirs: tuple[Path, ...] = (), *, builtins: bool = True):
        self.pm = pluggy.PluginManager("loanrules")
        self.pm.add_hookspecs(hookspecs)
        self._sources: dict[str, tuple[str, str]] = {}
        self.blocked = _names_from_env("LOANRULES_BLOCK_PLUGINS") or set()
        self.allowed = _names_from_env("LOANRULES_LOAD_PLUGINS")
        for name in self.blocked:
            self.pm.set_blocked(name)
        if builtins:
            for module_name in BUILTIN_PLUGINS:
                self._register(importlib.import_module(module_name), _short(module_name),
                               loanrules.__version__, "builtin")
        self._load_entry_points()
        for directory in plugins_dirs:
            self._load_directory(Path(directory))
        try:
            # A hookimpl whose name matches no spec is a typo: fail at start-up, not silently
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            name = self.pm.get_name(error.plugin) or repr(error.plugin)
            raise PluginError(f"plugin {name!r}: {error}") from None

    def _wanted(self, name: str) -> bool:
        return name not in self.blocked and (self.allowed is None or name in self.allowed)

    def _register(self, plugin: object, name: str, version: str, source: str) -> None:
        if name in self.blocked:
            return
        if self.pm.get_plugin(name) is not None:
            raise PluginError(f"two plugins are named {name!r} ({self._sources[name][1]} and {source})")
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as error:
            raise PluginError(f"plugin {name!r} ({source}): {error}") from None
        self._sources[name] = (version, source)

    def _load_entry_points(self) -> None:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if not self._wanted(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:  # a broken third-party install must say which one
                raise PluginError(f"plugin {entry_point.name!r} failed to import: {error}") from error
            dist = entry_point.dist
            version = dist.version if dist is not None else "unknown"
            self._register(plugin, entry_point.name, version, f"entry point {entry_point.value}")

    def _load_directory(self, directory: Path) -> None:
        if not directory.is_dir():
            raise UsageError(f"--plugins-dir {directory}: not a directory")
        for path in sorted(directory.glob("*.py")):
            name = path.stem
            if name.startswith("_") or name in self.blocked:
                continue
            module = _import_file(path, f"loanrules_plugins_dir.{name}")
            self._register(module, name, getattr(module, "__version__", "unversioned"), str(path))

    def infos(self) -> list[PluginInfo]:
        result = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            version, source = self._sources.get(name, ("unknown", "registered in code"))
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            result.append(PluginInfo(name, version, source, hooks))
        return sorted(result, key=lambda info: info.name)

    def call_register_hook(self, hook_name: str, register) -> None:
        """Call each plugin's implementation with ``register`` bound to its name.

        Called per implementation, not through ``pm.hook``, so that a
        contribution is stamped with its plugin and a failing hook names it.
        """
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order (pluggy calls them in reverse)
            try:
                impl.function(register=lambda item, _name=impl.plugin_name: register(_name, item))
            except (PluginError, UsageError):
                raise
            except Exception as error:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {error!r}") from error


def _short(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


def _import_file(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise PluginError(f"plugin file {path} failed to import: {error!r}") from error
    return module
