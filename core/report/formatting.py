"""Formatting for people: money in yuan, shares as percentages, vocabulary words with spaces; and what kind a
column is from its key (``_fen``: money in integer fen, ``_share``: a fraction, ``_count``: a count)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from loanrules.model import format_fen

KINDS = ("text", "code", "count", "money", "share", "date")  # code: a word of a vocabulary (special_mention)
# Columns whose values are vocabulary words: shown to people with spaces for underscores.
CODE_COLUMNS = frozenset({"risk_class", "from_class", "recovery_category", "step", "level", "worst_class",
                          "product", "borrower_type", "guarantee_type", "collateral_type", "standing", "open_steps"})
NOT_RECORDED = "(not recorded)"


def yuan(fen: int | None) -> str:
    """Integer fen as yuan with thousands separators, exact: 123456789 -> '1,234,567.89'."""
    text = format_fen(fen)
    if text is None:
        return ""
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, cents = text.split(".")
    return f"{sign}{int(whole):,}.{cents}"


def percent(share: float | Fraction | None, places: int = 2) -> str:
    return "" if share is None else f"{100 * float(share):.{places}f}%"


def format_value(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "money":
        return yuan(value)
    if kind == "share":
        return percent(value)
    if kind == "count" and isinstance(value, int):
        return f"{value:,}"
    if kind == "code":
        return str(value).replace("_", " ")
    return str(value)


def share(part: int | None, whole: int | None) -> float | None:
    return part / whole if part is not None and whole else None


def label(value: Any) -> str:
    return NOT_RECORDED if value is None or value == "" else str(value)


def word(code: Any) -> str:
    """A vocabulary word for people: special_mention -> special mention."""
    return str(code).replace("_", " ")


def humanize(key: str) -> str:
    for suffix, unit in (("_fen", " (yuan)"), ("_share", " (%)"), ("_count", "")):
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " ") + unit
    return key.replace("_", " ")


def kind_of(key: str, value: Any = None) -> str:
    if key.endswith("_fen"):
        return "money"
    if key.endswith("_share"):
        return "share"
    if key.endswith(("_count", "rank")) or isinstance(value, int):
        return "count"
    return "code" if key in CODE_COLUMNS else "text"

