"""The resident ID number check: logic SQL expresses badly, so a Python check."""

from loanrules import Finding

# GB 11643-1999: weights of the 17 digits, and the check character for sum mod 11
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARACTERS = "10X98765432"


def id_number_is_valid(number: str) -> bool:
    number = number.strip().upper()
    if len(number) != 18 or not number[:17].isdigit() or not number.isascii():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], _WEIGHTS))
    return _CHECK_CHARACTERS[total % 11] == number[17]


def check_id_numbers(ctx):
    sql = ("SELECT borrower_id, id_number FROM borrowers "
           "WHERE id_number IS NOT NULL AND borrower_type IN (SELECT value FROM json_each(:borrower_types))")
    for batch in ctx.batches(sql):
        for row in batch:
            if not id_number_is_valid(row["id_number"]):
                yield Finding(borrower_id=row["borrower_id"],
                              message="resident ID number is not valid (length or check digit)")
