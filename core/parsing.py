"""Parsers for snapshot values: exact money, dates in three spellings, booleans.

These run once per cell of a snapshot (tens of millions of calls a night), so
they avoid regular expressions and Decimal on the common path; each either
returns the canonical stored value or raises ValueError with the reason a
person will read.
"""

from __future__ import annotations

import datetime

_TRUE = frozenset({"1", "true", "t", "y", "yes", "是"})
_FALSE = frozenset({"0", "false", "f", "n", "no", "否"})


def parse_money(text: str) -> int:
    """Decimal yuan -> integer fen, exactly. '1,234.5' and '-3' are accepted."""
    s = text.strip()
    negative = s.startswith("-")
    if negative or s.startswith("+"):
        s = s[1:]
    whole, _, cents = s.partition(".")
    if "," in whole:
        # thousands separators only: '1,234,567'; never a decimal comma such as '1,23'
        groups = whole.split(",")
        if not (1 <= len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:])):
            raise ValueError("not an amount: commas may only separate thousands (1,234.56)")
        whole = "".join(groups)
    if not whole and not cents:
        raise ValueError("not an amount (decimal yuan, e.g. 1234.56)")
    whole = whole or "0"
    # isascii() first: str.isdigit() also accepts digits like '²' that int() refuses
    if not (whole.isascii() and whole.isdigit()) or (cents and not (cents.isascii() and cents.isdigit())):
        raise ValueError("not an amount (decimal yuan, e.g. 1234.56)")
    if len(cents) > 2:
        if cents[2:].strip("0"):
            raise ValueError("more than two decimals: an amount must be exact to the fen")
        cents = cents[:2]
    fen = int(whole) * 100 + (int(cents.ljust(2, "0")) if cents else 0)
    return -fen if negative else fen


def parse_date(text: str) -> str:
    """YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD -> ISO 'YYYY-MM-DD'."""
    s = text.strip()
    if len(s) == 8 and s.isascii() and s.isdigit():
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    elif len(s) == 10 and s[4] == "/" and s[7] == "/":
        s = f"{s[:4]}-{s[5:7]}-{s[8:]}"
    if len(s) != 10 or s[4] != "-" or s[7] != "-":
        raise ValueError("not a date (YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD)")
    try:
        # fromisoformat is C code; it also rejects 2026-02-30
        datetime.date.fromisoformat(s)
    except ValueError:
        raise ValueError("not a calendar date") from None
    return s


def parse_boolean(text: str) -> int:
    s = text.strip().lower()
    if s in _TRUE:
        return 1
    if s in _FALSE:
        return 0
    raise ValueError("not a boolean (1/0, true/false, Y/N, yes/no, 是/否)")


def parse_integer(text: str) -> int:
    s = text.strip()
    body = s[1:] if s[:1] in "+-" else s
    if not (body.isascii() and body.isdigit()):
        # '30.0' from spreadsheets: accept a whole number written with zero decimals
        whole, dot, zeros = body.partition(".")
        if dot and whole.isascii() and whole.isdigit() and zeros.strip("0") == "":
            return int(s[0] + whole if s[:1] == "-" else whole)
        raise ValueError("not a whole number")
    return int(s)
