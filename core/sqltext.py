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


def on_book(alias: str = "l") -> str:
    """SQL: the loan ``alias`` is on the books (not written off; an unknown written_off counts as not).

    An empty ``alias`` leaves the column unqualified."""
    column = f"{alias}.written_off" if alias else "written_off"
    return f"coalesce({column}, 0) = 0"


def current_class(loan: str = "l", assessment: str = "a") -> str:
    """SQL: a loan's class, this run's (the ``assessment`` row, when classification ran) else the recorded one."""
    return f"coalesce({assessment}.risk_class, {loan}.recorded_class)"


def non_performing(loan: str = "l", assessment: str = "a") -> str:
    """SQL: the loan's ``current_class`` is substandard, doubtful or loss (NULL when it has no class at all)."""
    return f"{current_class(loan, assessment)} IN {NON_PERFORMING}"


def percent_text(numerator: str, denominator: str) -> str:
    """SQL text for a share as a percentage ('12.34%'); 'n/a' when the denominator is zero or missing."""
    return (f"CASE WHEN ({denominator}) > 0 THEN printf('%.2f%%', 100.0 * ({numerator}) / ({denominator})) "
            f"ELSE 'n/a' END")


def ratio(part: str, whole: str, digits: int = 4) -> str:
    """SQL: ``part / whole`` as a number rounded to ``digits`` places; NULL when ``whole`` is zero or missing."""
    return f"CASE WHEN ({whole}) > 0 THEN round(1.0 * ({part}) / ({whole}), {int(digits)}) END"


def basis_points(param: str) -> str:
    """SQL: a DECIMAL parameter (a share) as whole basis points, so that comparisons are exact in integers."""
    return f"CAST(round({param} * 10000) AS INTEGER)"


def days_between(earlier: str, later: str) -> str:
    """SQL: whole days from the date ``earlier`` to the date ``later`` (negative when later is before)."""
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def days_after(date: str, days: str) -> str:
    """SQL: the ISO date ``days`` (an integer expression) after ``date``; negative goes back."""
    return f"date({date}, printf('%+d days', {days}))"


def days_before(date: str, days: str) -> str:
    """SQL: the ISO date ``days`` (an integer expression) before ``date``."""
    return f"date({date}, printf('%+d days', -({days})))"
