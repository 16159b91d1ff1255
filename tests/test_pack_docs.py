"""The pack documentation in config/packs/ is generated from the code and must not drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from loanrules.docs import pack_markdown

PACKS_DIR = Path(__file__).resolve().parent.parent / "config" / "packs"


@pytest.mark.parametrize("name", ["cn-five-category", "cooperative-baseline", "data-quality"])
def test_committed_pack_documentation_matches_the_code(registry, name):
    committed = (PACKS_DIR / f"{name}.md").read_text(encoding="utf-8")
    assert committed == pack_markdown(registry, name), (
        f"regenerate: loanrules packs --markdown {name} > config/packs/{name}.md")


def test_every_builtin_pack_is_documented(registry):
    assert {path.stem for path in PACKS_DIR.glob("*.md")} == set(registry.packs)


def test_every_rule_cites_a_source_and_documents_its_parameters(registry):
    for registered in registry.contributions.values():
        item = registered.item
        assert item.reference, f"{item.id} cites no source"
        for param in item.params:
            assert param.description, f"{item.id}: parameter {param.name} is undocumented"
