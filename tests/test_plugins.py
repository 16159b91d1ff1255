"""Plugin discovery (built-ins, entry points, --plugins-dir), blocking, typos, listings."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import textwrap
import types

import pytest
from conftest import AS_OF, invoke, loan, write_snapshot

from loanrules import Check, Pack, hookimpl
from loanrules.errors import PluginError
from loanrules.manager import PluginManager
from loanrules.registry import Registry

PLUGIN_FILE = textwrap.dedent('''
    from loanrules import Check, Pack, hookimpl

    __version__ = "3.1.4"

    @hookimpl
    def register_checks(register):
        register(Check(id="local.big", title="Big loan", severity="critical",
                       sql="SELECT loan_id, 'big' AS message FROM loans WHERE outstanding_principal > 5000000"))

    @hookimpl
    def register_packs(register):
        register(Pack(name="local-pack", version="0.9", title="Local", members=["local.big"]))
''')


@pytest.fixture
def plugins_dir(tmp_path):
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "my_rules.py").write_text(PLUGIN_FILE)
    return directory


def test_builtin_plugins_are_registered_like_third_party_ones(runner):
    result = invoke(runner, "plugins", "--json")
    plugins = {p["plugin"]: p for p in json.loads(result.output)}
    assert plugins["data_quality"]["source"] == "builtin"
    assert plugins["data_quality"]["hooks"] == "register_checks, register_packs"


def test_plugins_dir_files_are_loaded_and_listed_with_version_and_hooks(runner, plugins_dir):
    result = invoke(runner, "--plugins-dir", plugins_dir, "plugins")
    line = next(line for line in result.output.splitlines() if line.startswith("my_rules"))
    assert "3.1.4" in line and str(plugins_dir / "my_rules.py") in line
    assert "register_checks, register_packs" in line


def test_plugins_dir_checks_run(runner, plugins_dir, tmp_path):
    snapshot = write_snapshot(tmp_path / "s", loans=[loan("L1", outstanding_principal="50000.01",
                                                          principal="60000")])
    result = invoke(runner, "--plugins-dir", plugins_dir, "run", snapshot, "--as-of", AS_OF,
                    "--db", tmp_path / "db", "--pack", "local-pack", "--json")
    summary = json.loads(result.output)
    assert summary["findings"]["critical"] == 1
    assert summary["contributions"][0]["plugin"] == "my_rules"


def test_block_variable_blocks_a_builtin_plugin(runner, monkeypatch):
    monkeypatch.setenv("LOANRULES_BLOCK_PLUGINS", "data_quality")
    result = invoke(runner, "plugins", "--json")
    assert "data_quality" not in {p["plugin"] for p in json.loads(result.output)}
    assert "data.matured_not_overdue" not in invoke(runner, "checks").output


def test_block_variable_blocks_a_plugins_dir_file(runner, plugins_dir, monkeypatch):
    monkeypatch.setenv("LOANRULES_BLOCK_PLUGINS", "my_rules, other")
    result = invoke(runner, "--plugins-dir", plugins_dir, "plugins")
    assert "my_rules" not in result.output


class _EntryPoints:
    """Stands in for importlib.metadata.entry_points(group=...)."""

    def __init__(self, *entry_points):
        self.entry_points = entry_points

    def __call__(self, group):
        assert group == "loanrules"
        return list(self.entry_points)


@pytest.fixture
def installed_plugin(monkeypatch):
    module = types.ModuleType("loanrules_ep_demo")

    @hookimpl
    def register_checks(register):
        register(Check(id="ep.check", title="from an entry point", sql="SELECT 'x' AS message FROM loans WHERE 0"))

    module.register_checks = register_checks
    monkeypatch.setitem(sys.modules, "loanrules_ep_demo", module)
    entry_point = importlib.metadata.EntryPoint(name="ep_demo", value="loanrules_ep_demo", group="loanrules")
    monkeypatch.setattr(importlib.metadata, "entry_points", _EntryPoints(entry_point))
    return entry_point


def test_entry_point_plugins_load_when_allowed(installed_plugin, monkeypatch):
    monkeypatch.delenv("LOANRULES_LOAD_PLUGINS")
    registry = Registry.from_plugins(PluginManager())
    assert registry.get("ep.check").plugin == "ep_demo"


def test_load_variable_limits_entry_points(installed_plugin, monkeypatch):
    monkeypatch.setenv("LOANRULES_LOAD_PLUGINS", "something_else")
    assert Registry.from_plugins(PluginManager()).get("ep.check") is None
    monkeypatch.setenv("LOANRULES_LOAD_PLUGINS", "ep_demo")
    assert Registry.from_plugins(PluginManager()).get("ep.check") is not None


def test_a_broken_entry_point_names_the_plugin(monkeypatch):
    monkeypatch.delenv("LOANRULES_LOAD_PLUGINS")
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_module_xyz", group="loanrules")
    monkeypatch.setattr(importlib.metadata, "entry_points", _EntryPoints(broken))
    with pytest.raises(PluginError, match="plugin 'broken' failed to import"):
        PluginManager()


def test_a_hook_name_typo_fails_at_start_up(tmp_path, runner):
    (tmp_path / "typo.py").write_text(textwrap.dedent('''
        from loanrules import hookimpl

        @hookimpl
        def register_check(register):
            pass
    '''))
    with pytest.raises(PluginError, match="typo.*register_check"):
        PluginManager((tmp_path,))
    result = invoke(runner, "--plugins-dir", tmp_path, "checks")
    assert result.exit_code == 3
    assert result.output.startswith("Error: plugin 'typo'") and "Traceback" not in result.output


def test_two_plugins_registering_one_check_id_are_both_named():
    class First:
        @hookimpl
        def register_checks(self, register):
            register(Check(id="dup.check", title="a", sql="SELECT 'a' AS message"))

    manager = PluginManager(builtins=False)
    manager.pm.register(First(), name="first")
    manager.pm.register(First(), name="second")
    with pytest.raises(PluginError, match="'dup.check' is registered twice: by plugin 'first' and by 'second'"):
        Registry.from_plugins(manager)


def test_a_plugin_whose_hook_raises_is_named():
    class Broken:
        @hookimpl
        def register_checks(self, register):
            raise KeyError("oops")

    manager = PluginManager(builtins=False)
    manager.pm.register(Broken(), name="broken_one")
    with pytest.raises(PluginError, match="plugin 'broken_one' failed in register_checks"):
        Registry.from_plugins(manager)


def test_a_pack_naming_an_unknown_check_is_refused():
    class Packer:
        @hookimpl
        def register_packs(self, register):
            register(Pack(name="ghost", version="1", title="g", members=["no.such_check"]))

    manager = PluginManager(builtins=False)
    manager.pm.register(Packer(), name="packer")
    with pytest.raises(PluginError, match="pack 'ghost' names 'no.such_check'"):
        Registry.from_plugins(manager)


def test_a_later_plugin_extends_a_pack_of_the_same_version():
    class Base:
        @hookimpl
        def register_checks(self, register):
            register(Check(id="base.one", title="1", sql="SELECT 'x' AS message"))
            register(Check(id="extra.two", title="2", sql="SELECT 'x' AS message"))

        @hookimpl
        def register_packs(self, register):
            register(Pack(name="baseline", version="1.0", title="b", members=["base.one"]))

    class Extension:
        @hookimpl
        def register_packs(self, register):
            register(Pack(name="baseline", version="1.0", title="b", members=["extra.two"]))

    manager = PluginManager(builtins=False)
    manager.pm.register(Base(), name="base")
    manager.pm.register(Extension(), name="extension")
    registry = Registry.from_plugins(manager)
    assert set(registry.packs["baseline"].members) == {"base.one", "extra.two"}
    assert registry.pack_plugins["baseline"] == ("base", "extension")


def test_checks_lists_id_severity_parameters_tables_and_reference(runner):
    records = {r["id"]: r for r in json.loads(invoke(runner, "checks", "--json").output)}
    check = records["data.matured_not_overdue"]
    assert check["severity"] == "critical"
    assert check["params"] == {"grace_days": 0}
    assert check["tables"] == ["loans"]
    assert "NFRA" in check["reference"]
    assert check["packs"] == ["data-quality"]
    assert records["data.id_number_invalid"]["evaluation"] == "python"


def test_packs_lists_name_version_and_members(runner):
    packs = {pack["name"]: pack for pack in json.loads(invoke(runner, "packs", "--json").output)}
    pack = packs["data-quality"]
    assert pack["version"] == "1.0.0" and packs["cn-five-category"]["version"] == "1.1.0"
    assert "data.matured_not_overdue" in pack["members"]
