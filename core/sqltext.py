"""Pieces of SQL text that checks and the engine share (public: plugins may use them).

Amounts are integer fen in the database, classes are words of closed
vocabularies; these helpers keep their SQL spelling in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from loanrules.schema import NON_PERFORMING_CLASSES, RECOVERY_CATEGORIES, RISK_CLASSES  # noqa: F401 (plugins use it)


def literal(text: str) -> str:
    """A string as an SQL literal, for SQL that cannot take parameters (views)."""
    return "'" + text.replace("'", "''") + "'"


def in_list(values: Sequence[str]) -> str:
    """A parenthesised SQL list of string literals: ('a', 'b')."""
    return "(" + ", ".join(map(literal, values)) + ")"


NON_PERFORMING = in_list(NON_PERFORMING_CLASSES)


def yuan(fen: str) -> str:
    """SQL text showing an amount in fen as decimal yuan, exactly: 123456 -> '1234.56'.

    NULL shows as '0.00' (printf's way), which keeps a message from turning NULL: guard an amount that may
    be unknown (``CASE WHEN x IS NULL ...``) where "0.00" would mislead."""
    return f"printf('%d.%02d', ({fen}) / 100, ({fen}) % 100)"


def rank_case(expression: str, vocabulary: Sequence[str] = RISK_CLASSES) -> str:
    """SQL giving a word's rank in a vocabulary, best first from 1 (normal 1 .. loss 5)."""
    whens = " ".join(f"WHEN '{value}' THEN {rank}" for rank, value in enumerate(vocabulary, 1))
    return f"CASE {expression} {whens} END"


def unrank_case(expression: str, vocabulary: Sequence[str] = RISK_CLASSES) -> str:
    """The inverse of ``rank_case``: SQL giving the word for a rank."""
    whens = " ".join(f"WHEN {rank} THEN '{value}'" for rank, value in enumerate(vocabulary, 1))
    return f"CASE {expression} {whens} END"
