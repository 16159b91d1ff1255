"""The layout the README promises: every plugin folder is packaged, the README's commands exist."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_plugin_folder_is_listed_in_setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    folders = {f"loanrules.plugins.{p.parent.name}" for p in (ROOT / "plugins").glob("*/__init__.py")}
    assert folders <= listed, f"add to setup.cfg [options] packages: {sorted(folders - listed)}"


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 -m pip install . && loanrules demo" in readme
    assert "python3 -m pip install tox && tox" in readme


def test_every_hook_is_documented_in_its_spec():
    from loanrules import hookspecs

    specs = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert specs
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name} has no docstring"
