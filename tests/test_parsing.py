"""The cell parsers: exact money, dates in three spellings, booleans, whole numbers."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loanrules.model import format_fen
from loanrules.parsing import parse_boolean, parse_date, parse_integer, parse_money

# Amounts a loan book can hold, with at most two decimal places (exact to the fen).
fen_amounts = st.integers(min_value=-(10**15), max_value=10**15)
decimals_to_the_fen = st.decimals(min_value=Decimal("-1e13"), max_value=Decimal("1e13"), places=2,
                                  allow_nan=False, allow_infinity=False)


def fen_of(amount: Decimal) -> int:
    return int(amount * 100)


# ---------------------------------------------------------------- parse_money


@given(fen_amounts)
def test_money_round_trips_through_format_fen_exactly(fen):
    assert parse_money(format_fen(fen)) == fen


@given(decimals_to_the_fen)
@example(Decimal("0.10"))
@example(Decimal("0.01"))
@example(Decimal("-0.01"))
@example(Decimal("99999999999.99"))
def test_money_is_exact_for_any_decimal_with_at_most_two_places(amount):
    text = format(amount, "f")  # plain notation, never '1E+2'
    assert parse_money(text) == fen_of(amount)


@given(decimals_to_the_fen)
def test_money_accepts_thousands_separators(amount):
    assert parse_money(format(amount, ",f")) == fen_of(amount)


@given(decimals_to_the_fen, st.integers(min_value=1, max_value=4))
def test_money_accepts_trailing_zeros_after_the_fen(amount, zeros):
    text = format(amount, "f")
    text = text + "0" * zeros if "." in text else text + "." + "0" * (2 + zeros)
    assert parse_money(text) == fen_of(amount)


@given(decimals_to_the_fen, st.integers(min_value=1, max_value=9), st.integers(min_value=0, max_value=3))
def test_money_rejects_a_significant_third_decimal(amount, digit, padding):
    text = format(abs(amount), ".2f") + "0" * padding + str(digit)
    with pytest.raises(ValueError, match="more than two decimals"):
        parse_money(text)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("1,234.50", 123450),
        ("-3", -300),
        ("+4", 400),
        ("12.500", 1250),
        ("0.10", 10),
        ("0.1", 10),
        ("  7.05 ", 705),
        ("1,000,000", 100000000),
        ("0", 0),
    ],
)
def test_money_accepts_common_spellings(text, fen):
    assert parse_money(text) == fen


@pytest.mark.parametrize("text", ["1.001", "0.005", "12.3456", "-1.999"])
def test_money_rejects_more_than_two_significant_decimals(text):
    with pytest.raises(ValueError, match="more than two decimals: an amount must be exact to the fen"):
        parse_money(text)


@pytest.mark.parametrize(
    "text",
    [
        "１２",  # full-width digits
        "１２.５０",
        "²",  # a superscript: str.isdigit() says yes, int() says no
        "1²",
        "٣",  # Arabic-Indic three
        "1_000",  # Python's digit grouping
        "1e3",
        "0x10",
        "abc",
        "12a",
        "1.2.3",
        "--3",
        "+-3",
        "- 3",
        "1 000",
        "¥100",
        "100元",
        "nan",
        "inf",
    ],
)
def test_money_rejects_what_is_not_a_decimal_amount(text):
    with pytest.raises(ValueError, match=r"not an amount \(decimal yuan"):
        parse_money(text)


@pytest.mark.parametrize("text", ["", "   ", ".", "-", "+", ",", "-."])
def test_money_rejects_text_without_any_digit(text):
    with pytest.raises(ValueError):
        parse_money(text)


@pytest.mark.parametrize("text", ["1,23", "12,34.5", "1,2,3", ",100", "100,"])
def test_money_rejects_commas_that_are_not_thousands_separators(text):
    with pytest.raises(ValueError):
        parse_money(text)


# ---------------------------------------------------------------- parse_date

any_date = st.dates(min_value=datetime.date(1, 1, 1), max_value=datetime.date(9999, 12, 31))


@given(any_date)
def test_date_accepts_iso_spelling_of_any_date(day):
    assert parse_date(day.isoformat()) == day.isoformat()


@given(any_date)
def test_date_accepts_compact_spelling_of_any_date(day):
    assert parse_date(day.isoformat().replace("-", "")) == day.isoformat()


@given(any_date)
def test_date_accepts_slashed_spelling_of_any_date(day):
    assert parse_date(day.isoformat().replace("-", "/")) == day.isoformat()


def test_date_ignores_surrounding_blanks():
    assert parse_date(" 2026-01-05 ") == "2026-01-05"


@pytest.mark.parametrize("text", ["2026-02-30", "20260230", "2026/02/30", "2025-02-29", "2026-13-01", "2026-00-10",
                                  "0000-01-01"])
def test_date_rejects_days_not_on_the_calendar(text):
    with pytest.raises(ValueError, match="not a calendar date"):
        parse_date(text)


@pytest.mark.parametrize(
    "text",
    ["2026-1-5", "26-01-05", "260105", "2026-01-5", "2026/1/5", "2026.01.05", "05/01/2026", "2026-01-05T00:00",
     "2026-01-05 00:00:00", "2026-W01-1", "2026-001", "2026/01-05", "２０２６0105", "", "today"],
)
def test_date_rejects_other_spellings(text):
    with pytest.raises(ValueError, match="not a date|not a calendar date"):
        parse_date(text)


# ---------------------------------------------------------------- parse_boolean


def spellings_in_any_case(words):
    """Each word in lower, upper, title and one mixed case."""
    for word in words:
        yield from {word, word.upper(), word.title(), "".join(
            c.upper() if i % 2 else c for i, c in enumerate(word))}


@pytest.mark.parametrize("text", sorted(spellings_in_any_case(["1", "true", "y", "yes", "是"])))
def test_boolean_true_spellings_in_any_case(text):
    assert parse_boolean(text) == 1


@pytest.mark.parametrize("text", sorted(spellings_in_any_case(["0", "false", "n", "no", "否"])))
def test_boolean_false_spellings_in_any_case(text):
    assert parse_boolean(text) == 0


@given(st.sampled_from(["true", "yes", "false", "no"]).flatmap(
    lambda word: st.tuples(st.just(word), st.lists(st.booleans(), min_size=len(word), max_size=len(word)))))
def test_boolean_case_never_matters(word_and_case):
    word, upper = word_and_case
    text = "".join(c.upper() if u else c for c, u in zip(word, upper))
    assert parse_boolean(text) == (word in ("true", "yes"))


@pytest.mark.parametrize("text", ["2", "-1", "maybe", "yess", "真", "对", "", "1.0", "tru"])
def test_boolean_rejects_other_words(text):
    with pytest.raises(ValueError, match="not a boolean"):
        parse_boolean(text)


# ---------------------------------------------------------------- parse_integer


@pytest.mark.parametrize(("text", "value"), [("30", 30), ("30.0", 30), ("30.00", 30), ("0", 0), ("-5", -5),
                                             ("-5.0", -5), ("+7", 7), (" 12 ", 12)])
def test_integer_accepts_whole_numbers_also_with_zero_decimals(text, value):
    assert parse_integer(text) == value


@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=0, max_value=3))
def test_integer_round_trips_with_or_without_zero_decimals(value, zeros):
    text = str(value) + ("." + "0" * zeros if zeros else "")
    assert parse_integer(text) == value


@pytest.mark.parametrize("text", ["3.5", "30.01", "1e3", "1E3", "0x1f", "1_000", "３０", "²", "", "-", ".",
                                  "abc", "3,000"])
def test_integer_rejects_fractions_exponents_and_other_text(text):
    with pytest.raises(ValueError, match="not a whole number"):
        parse_integer(text)

