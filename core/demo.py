"""A synthetic rural credit cooperative: its loan book as canonical snapshot CSVs.

``write_snapshot`` writes one snapshot directory in the layout of DESIGN.md
("Snapshot input contract"): one UTF-8 CSV per canonical table, the header
being the table's column names in schema order. ``write_history`` writes the
same book at several as-of dates, one subdirectory each, so that the dynamic
checks (a collateral value that fell, a loan that got worse) have something to
compare. ``loanrules demo``, the tests and the benchmarks all use it.

What the book contains
----------------------
* Borrowers: about 75% households, 6% individuals, 12% small businesses, 5%
  enterprises and 2% village collectives, living in villages grouped into
  townships (40 villages in 8 townships for the default 2000 loans; more for
  larger books); each township belongs to one branch (``BR01``...), each
  branch has its credit officers (``OF001``...). About 1.3 loans per
  borrower. Synthetic Chinese names; 18-character resident ID numbers with a
  region code, birth date, sequence and a correct ISO 7064 MOD 11-2 check
  digit (unique within a book). About 10% of businesses belong to related
  groups (``group_id``); a few borrowers are related parties.
* Loans: farm operation, household consumption, small business, agricultural
  machinery, working capital and village infrastructure loans; credit (~40%),
  guaranteed (~25%), mortgage (~30%) and pledge (~5%) loans; amounts in yuan
  by borrower type (households 10k-300k, businesses up to 3M, village
  collectives 1M-8M). About 85% are current, the rest overdue from a few days
  to more than a year (some village collective loans for more than three
  years); ~3% restructured within two years; a handful written off.
* Collateral behind mortgage and pledge loans, by twelve appraisers, mostly
  lent against at 55-95% of the type's typical loan-to-value limit (8% above
  it), registered mostly on time.
* Post-loan inspections, collection actions on overdue loans, the credit file
  documents of every loan, and villages expecting land transfer compensation.

Problems planted on purpose, for the checks to find: loans recorded in a better
risk class than their days past due allow, or worse; short provisions; loans
over LTV; stale appraisals and appraisals by unapproved, suspended or expired
appraisers; late, pending or missing registrations and a few duplicated
registration numbers; collateral mortgaged to two borrowers' loans at the same
lien rank; mortgage loans without any collateral entered; missing or
incomplete credit documents; non-performing loans nobody inspects or collects
any more; cash collections; long overdue village collective loans in villages
about to receive land compensation.

How it stays deterministic and flat in memory
---------------------------------------------
One ``random.Random(seed)`` draws every *static* fact of the book, borrower by
borrower, in a fixed order that never depends on the as-of date: who the
borrower is, each loan's terms, and its future (the day it falls overdue, is
cured, is repaid; the day its collateral is revalued). A snapshot is then a
pure function of those facts and the as-of date, written row by row as each
borrower is drawn, so memory does not grow with the book. Facts that vary with
the date in open-ended ways (which inspections fall in the last year, which
collection actions have happened) come from a hash of the loan and the event
number, not from the generator, so the generator's sequence stays the same
for every date. Dates are day ordinals (``date.toordinal()``) and money is
integer fen until the moment a row is written.
"""

from __future__ import annotations

import csv
import math
import operator
import random
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from datetime import date
from pathlib import Path

from loanrules.schema import CANONICAL_TABLES, RISK_CLASSES

__all__ = ["DEMO_AS_OF", "DEFAULT_SEED", "write_history", "write_snapshot"]

DEMO_AS_OF = date(2026, 11, 27)
DEFAULT_SEED = 20261129

NEVER = date.max.toordinal() + 1  # the day of an event that never happens

# --------------------------------------------------------------------------
# The book's composition. Each table is (value, weight) pairs, drawn through _cumulative and _pick.

BORROWER_TYPES = (
    ("household", 75),
    ("individual", 6),
    ("small_business", 12),
    ("enterprise", 5),
    ("village_collective", 2),
)
LOANS_PER_BORROWER = ((1, 78), (2, 15), (3, 5), (4, 2))  # mean ~1.31

PRODUCTS = {
    "household": (("farm_operation", 55), ("household_consumption", 30), ("agricultural_machinery", 15)),
    "individual": (("household_consumption", 60), ("small_business", 25), ("farm_operation", 15)),
    "small_business": (("small_business", 80), ("agricultural_machinery", 20)),
    "enterprise": (("working_capital", 60), ("agricultural_machinery", 15), ("small_business", 25)),
    "village_collective": (("village_infrastructure", 100),),
}

# Tilted by borrower type so that the book as a whole comes out near
# credit 40%, guarantee 25%, mortgage 30%, pledge 5%: farmers borrow on
# credit ratings and joint guarantees, businesses against property.
GUARANTEE_TYPES = {
    "household": (("credit", 47), ("guarantee", 27), ("mortgage", 22), ("pledge", 4)),
    "individual": (("credit", 45), ("guarantee", 25), ("mortgage", 25), ("pledge", 5)),
    "small_business": (("credit", 15), ("guarantee", 25), ("mortgage", 50), ("pledge", 10)),
    "enterprise": (("credit", 5), ("guarantee", 20), ("mortgage", 60), ("pledge", 15)),
    "village_collective": (("credit", 30), ("guarantee", 30), ("mortgage", 40)),
}

# Principal in yuan: (lowest, highest, rounded to), drawn log-uniformly so
# that small loans are common and large ones rare, as in a real book.
PRINCIPAL_YUAN = {
    "household": (10_000, 300_000, 1_000),
    "individual": (10_000, 200_000, 1_000),
    "small_business": (50_000, 1_500_000, 10_000),
    "enterprise": (300_000, 3_000_000, 10_000),
    "village_collective": (1_000_000, 8_000_000, 10_000),
}

TERM_DAYS = {
    "farm_operation": ((365, 70), (730, 30)),
    "household_consumption": ((365, 40), (730, 40), (1095, 20)),
    "small_business": ((365, 40), (730, 40), (1095, 20)),
    "agricultural_machinery": ((730, 30), (1095, 50), (1825, 20)),
    "working_capital": ((365, 60), (730, 40)),
    "village_infrastructure": ((1095, 30), (1825, 40), (3650, 30)),
}

# Days past due at the first as-of date, as ((lowest, highest), weight).
# The buckets follow the five-category rules: overdue at all -> at least
# special mention, >90 days substandard, >270 doubtful, >360 loss.
DAYS_PAST_DUE = (
    ((0, 0), 855),
    ((1, 30), 50),
    ((31, 90), 35),
    ((91, 270), 30),
    ((271, 360), 10),
    ((361, 1095), 20),
)
# Village collective loans financed roads and irrigation that earn nothing;
# many have been overdue for years, waiting for land compensation.
DAYS_PAST_DUE_VILLAGE = (
    ((0, 0), 60),
    ((1, 90), 5),
    ((91, 360), 5),
    ((361, 1095), 10),
    ((1096, 2600), 20),
)

# Provisioning rates per mille by recorded class (the 2002 provisioning
# guideline: general 1%, special mention 2%, substandard 25%, doubtful 50%,
# loss 100%).
PROVISION_PER_MILLE = (10, 20, 250, 500, 1000)

COLLATERAL_TYPES = {
    "household": (("house", 50), ("land_use_right", 25), ("forest_right", 10), ("vehicle", 10), ("equipment", 5)),
    "business": (
        ("commercial_property", 35),
        ("house", 20),
        ("land_use_right", 20),
        ("equipment", 15),
        ("vehicle", 10),
    ),
    "village_collective": (("land_use_right", 50), ("commercial_property", 30), ("forest_right", 20)),
    "machinery": (("equipment", 70), ("vehicle", 30)),
    "pledge": (("deposit", 75), ("bond", 25)),
}
REGISTRATION_PREFIX = {"equipment": "DC", "vehicle": "DC", "deposit": "ZY", "bond": "ZY"}  # else "BDC" (real estate)

DOCUMENTS_ALWAYS = ("loan_contract", "application", "borrower_id_copy")
DOCUMENTS_SECURED = ("collateral_contract", "registration_certificate", "appraisal_report")
DOCUMENTS_GUARANTEED = ("guarantee_contract",)

# Collection ladder: (days after falling overdue, action). After the ladder,
# officers visit every COLLECTION_VISIT_DAYS.
COLLECTION_LADDER = (
    (3, "call"),
    (10, "call"),
    (20, "visit"),
    (35, "letter"),
    (50, "guarantor_notice"),  # a letter when nobody guarantees the loan
    (75, "visit"),
    (100, "special_team"),
    (150, "letter"),
    (200, "litigation"),  # a visit unless the loan is one that goes to court
    (250, "settlement"),  # some who stay out of court agree to pay part; the others get a visit
)
COLLECTION_VISIT_DAYS = 90
COLLECTION_HISTORY_DAYS = 730  # older routine visits are no longer in the extract

INSPECTION_PERIOD = {"monthly": 30, "quarterly": 91, "routine": 182}

APPRAISERS = (  # (name, approved, suspended, approved_until in days from the first as-of date)
    ("恒信资产评估有限公司", 1, 0, 700),
    ("正源房地产土地估价有限公司", 1, 0, 400),
    ("中和资产评估有限公司", 1, 0, 900),
    ("天平房地产估价事务所", 1, 0, 300),
    ("诚信资产评估有限公司", 1, 0, 500),
    ("联合土地评估咨询有限公司", 1, 0, 650),
    ("华诚资产评估有限公司", 1, 0, 800),
    ("信达房地产估价有限公司", 1, 0, 250),
    ("明鉴价格评估事务所", 0, 0, None),  # never approved by the cooperative
    ("公正资产评估有限公司", 0, 0, None),
    ("立信房地产估价有限公司", 1, 1, 600),  # suspended after a complaint
    ("永安资产评估有限公司", 1, 0, -150),  # approval expired
)
APPRAISER_WEIGHTS = (12, 12, 12, 12, 11, 11, 11, 11, 2, 2, 2, 2)

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN_NAME_CHARACTERS = (
    "建国华明军平志伟芳秀英丽红兰春梅桂玉凤霞强海涛云德文俊杰娟勇斌林荣福贵生金银翠萍长发永胜水清洪亮树桃"
)
SMALL_BUSINESS_SUFFIXES = (
    "家庭农场",
    "养殖场",
    "农资经营部",
    "百货超市",
    "农机维修部",
    "米厂",
    "种植基地",
    "茶叶加工坊",
)
ENTERPRISE_WORDS = ("绿源", "丰收", "金穗", "兴农", "宏达", "富民", "鑫源", "华旺", "新田", "顺发", "湘润", "恒丰")
ENTERPRISE_SUFFIXES = (
    "农业发展有限公司",
    "食品有限公司",
    "农产品加工有限公司",
    "建材有限公司",
    "生态农业专业合作社",
    "米业有限公司",
)
PLACE_CHARACTERS = "东西南北新大小上下石桥河塘山岭坪冲湾田溪林竹枫柳桃李杨马龙凤黄白青金高长平安和丰"

# Resident ID numbers: county codes of the cooperative's county and its
# neighbours, birth dates between these days, sequence 001-999.
REGION_CODES = ("431121", "431122", "431123", "431124", "431125", "431126", "431127", "431128", "431129")
BIRTH_FIRST_DAY = date(1956, 1, 1).toordinal()
BIRTH_SPAN_DAYS = 18262  # fifty years
ID_SPACE = len(REGION_CODES) * BIRTH_SPAN_DAYS * 999
ID_MULTIPLIER = 2654435761  # coprime with ID_SPACE, so index -> number is one-to-one
ID_CHECK_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARACTERS = "10X98765432"
_ASCII_ZERO_WEIGHT = ord("0") * sum(ID_CHECK_WEIGHTS)


# --------------------------------------------------------------------------
# Public API


def write_snapshot(
    directory: Path,
    *,
    loans: int = 2000,
    as_of: date = DEMO_AS_OF,
    seed: int = DEFAULT_SEED,
) -> dict[str, int]:
    """Write the snapshot CSVs into `directory` (created if needed); return rows written per table."""
    return _Book(loans=loans, first_as_of=as_of, seed=seed).write(Path(directory), as_of)


def write_history(
    directory: Path,
    *,
    loans: int = 2000,
    as_of_dates: Sequence[date],
    seed: int = DEFAULT_SEED,
) -> list[Path]:
    """Write one snapshot subdirectory per as-of date (named YYYY-MM-DD), the same book evolving.

    The book holds `loans` loans at the earliest date, whose snapshot equals
    ``write_snapshot(..., as_of=earliest)``. Later snapshots show the same
    loans moved on: some overdue loans cured, the others further overdue by the
    days elapsed, loans repaid at maturity gone, new loans to new borrowers,
    collateral revalued (a few values down by more than 20%). Returns the
    subdirectories in date order.
    """
    days = sorted(set(as_of_dates))
    if not days:
        return []
    book = _Book(loans=loans, first_as_of=days[0], seed=seed)
    written = []
    for day in days:
        subdirectory = Path(directory) / day.isoformat()
        book.write(subdirectory, day)
        written.append(subdirectory)
    return written


# --------------------------------------------------------------------------
# Small helpers


def _cumulative(pairs):
    """(value, weight) pairs -> (cumulative share, value) pairs for _pick."""
    total = sum(weight for _, weight in pairs)
    running = 0
    table = []
    for value, weight in pairs:
        running += weight
        table.append((running / total, value))
    return tuple(table)


def _pick(table, u: float):
    for share, value in table:
        if u < share:
            return value
    return table[-1][1]


def _unit(key: int) -> float:
    """A pseudo-random number in [0, 1) that depends only on `key` (a Fibonacci hash, then one mixing round)."""
    z = (key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 32)) * 0xD6E8FEB86659FD93) & 0xFFFFFFFFFFFFFFFF
    return (z >> 11) / 9007199254740992.0


def _choice(rng: random.Random, options: Sequence):
    # random.choice draws bits through _randbelow; one random() is cheaper.
    return options[int(rng.random() * len(options))]


def _yuan(fen: int) -> str:
    whole, cents = divmod(fen, 100)
    return f"{whole}.{cents:02d}"


def resident_id_check_character(first_17_digits: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a PRC resident ID number (GB 11643)."""
    # Summing the ASCII codes and taking off 48 per weight is the digits' sum, in C.
    total = sum(map(operator.mul, first_17_digits.encode("ascii"), ID_CHECK_WEIGHTS)) - _ASCII_ZERO_WEIGHT
    return ID_CHECK_CHARACTERS[total % 11]


def _resident_id_number(index: int, seed: int) -> str:
    # An affine map onto (region, birth day, sequence) is one-to-one, so no two
    # borrowers of a book share a number, and it scatters neighbours.
    code = (index * ID_MULTIPLIER + seed) % ID_SPACE
    code, sequence = divmod(code, 999)
    region, birth_offset = divmod(code, BIRTH_SPAN_DAYS)
    birth = date.fromordinal(BIRTH_FIRST_DAY + birth_offset).isoformat().replace("-", "")
    body = f"{REGION_CODES[region]}{birth}{sequence + 1:03d}"
    return body + resident_id_check_character(body)


def _place_name(index: int, count: int, characters: str, offset: int) -> str:
    """A name of two or three place characters, distinct for each index below `count`."""
    base = len(characters)
    width = 2 if count <= base * base else 3
    space = base**width
    code = (index * 7919 + offset) % space  # 7919 is prime and coprime with any power of 40
    name = ""
    for _ in range(width):
        code, digit = divmod(code, base)
        name += characters[digit]
    return name


class _IsoDates(dict):
    """Day ordinal -> 'YYYY-MM-DD', cached: a book uses a few thousand distinct days."""

    def __missing__(self, day: int) -> str:
        text = self[day] = date.fromordinal(day).isoformat()
        return text


_BORROWER_TYPE_TABLE = _cumulative(BORROWER_TYPES)
_LOANS_PER_BORROWER_TABLE = _cumulative(LOANS_PER_BORROWER)
_PRODUCT_TABLES = {kind: _cumulative(pairs) for kind, pairs in PRODUCTS.items()}
_GUARANTEE_TABLES = {kind: _cumulative(pairs) for kind, pairs in GUARANTEE_TYPES.items()}
_TERM_TABLES = {product: _cumulative(pairs) for product, pairs in TERM_DAYS.items()}
_DAYS_PAST_DUE_TABLE = _cumulative(DAYS_PAST_DUE)
_DAYS_PAST_DUE_VILLAGE_TABLE = _cumulative(DAYS_PAST_DUE_VILLAGE)
_COLLATERAL_TABLES = {kind: _cumulative(pairs) for kind, pairs in COLLATERAL_TYPES.items()}
PLANTED_LAND_TRANSFERS = 2  # villages of long-overdue collectives expecting land compensation soon
# The typical loan-to-value limits cooperatives lend to (issue 4's defaults): a demo officer lends within them.
_TYPICAL_LTV = {"house": 0.70, "commercial_property": 0.60, "land_use_right": 0.50, "forest_right": 0.50,
                "equipment": 0.50, "vehicle": 0.50, "deposit": 0.90, "bond": 0.90, "other": 0.50}
_APPRAISER_TABLE = _cumulative(tuple((f"AP{n + 1:02d}", w) for n, w in enumerate(APPRAISER_WEIGHTS)))


def _risk_class_index(days_past_due: int) -> int:
    """Index into RISK_CLASSES that the days past due alone call for."""
    if days_past_due <= 0:
        return 0
    if days_past_due <= 90:
        return 1
    if days_past_due <= 270:
        return 2
    if days_past_due <= 360:
        return 3
    return 4


# --------------------------------------------------------------------------
# Static facts: what the generator draws, independent of the as-of date


class _Collateral:
    __slots__ = (
        "collateral_id",
        "collateral_type",
        "owner_id",
        "appraised_value",
        "appraisal_day",
        "appraiser_id",
        "registration_status",
        "registration_no",
        "registration_day",
        "site_verified",
        "revaluation_day",
        "revalued_value",
        "revaluation_appraiser_id",
        "loans",  # every loan it secures; the row is written while any is on the book
    )


class _Loan:
    __slots__ = (
        "serial",
        "loan_id",
        "borrower_id",
        "branch_id",
        "product",
        "guarantee_type",
        "principal",
        "outstanding",
        "rate_bp",
        "origination",
        "maturity",
        "default_day",  # the due date it missed (days past due count from it), NEVER if none
        "cure_day",  # first day current again, NEVER if never
        "payoff",  # first day off the book, NEVER if never
        "restructured_day",
        "class_shift",  # -1 recorded one class too good, +1 one too bad
        "provision_share",  # percent of the required provision actually made
        "write_off_day",
        "accrued_days",  # interest days unpaid on a current loan
        "lending_officer_id",
        "collection_officer_id",  # takes over once the loan is non-performing
        "inspection_kind",
        "inspection_phase",
        "neglected",  # once non-performing, nobody inspects or visits it any more
        "goes_to_court",
        "pledges",  # [(collateral, lien_rank, secured_amount)]
        "documents",  # [(doc_type, original_on_file, electronic_copy)]
    )

    def is_on_book(self, day: int) -> bool:
        # Lent before the as-of day (so origination_date < as_of always) and not yet repaid.
        return self.origination < day < self.payoff

    def days_past_due(self, day: int) -> int:
        if self.default_day <= day < self.cure_day:
            return day - self.default_day
        return 0


class _Borrower:
    __slots__ = (
        "borrower_id",
        "name",
        "id_number",
        "borrower_type",
        "village",
        "township",
        "group_id",
        "related_party",
        "temperament",  # how this borrower behaves when things go wrong, in [0, 1)
        "luck",
        "loans",
        "collateral",  # collateral whose row this borrower's turn writes
    )


class _Geography:
    """Villages, townships, branches and officers; sized to the book."""

    def __init__(self, loans: int, first_as_of: int, seed: int):
        self.village_count = min(5000, max(40, loans // 50))
        self.township_count = max(8, self.village_count // 5)
        self.branch_count = min(99, max(6, loans // 20_000))
        # A rural credit officer looks after some 400 loans.
        officers_per_branch = max(2, loans // (400 * self.branch_count))
        self.branch_ids = [f"BR{branch + 1:02d}" for branch in range(self.branch_count)]
        # Each branch's credit officers: officer n works at branch n % branch_count.
        self.officer_ids = [
            [f"OF{branch + self.branch_count * rank + 1:03d}" for rank in range(officers_per_branch)]
            for branch in range(self.branch_count)
        ]
        self.townships = [
            _place_name(t, self.township_count, PLACE_CHARACTERS, offset=517) + ("乡" if t % 3 == 0 else "镇")
            for t in range(self.township_count)
        ]
        self.villages = [
            _place_name(v, self.village_count, PLACE_CHARACTERS, offset=11) + "村" for v in range(self.village_count)
        ]
        rng = random.Random(seed * 31 + 7)  # its own stream, so the book's draws don't shift
        self.land_transfers = [self._land_transfer(rng, first_as_of) for _ in range(self.village_count)]

    @staticmethod
    def _land_transfer(rng: random.Random, first_as_of: int):
        """(expected day, compensation fen) for villages whose land is being requisitioned, else None."""
        if rng.random() >= 0.15:
            return None
        soon = rng.random() < 0.6  # most of them within the next three months
        offset = -30 + int(rng.random() * 120) if soon else 90 + int(rng.random() * 300)
        compensation = int(math.exp(math.log(500_000) + rng.random() * math.log(40))) // 100 * 10_000
        return first_as_of + offset, compensation

    def township_of(self, village: int) -> int:
        return village % self.township_count

    def branch_of(self, village: int) -> int:
        return self.township_of(village) % self.branch_count


# --------------------------------------------------------------------------
# The generator


class _Book:
    """Draws the book borrower by borrower and writes it as of a day."""

    def __init__(self, *, loans: int, first_as_of: date, seed: int):
        if loans < 0:
            raise ValueError("loans must not be negative")
        self.loan_count = loans
        self.first_as_of = first_as_of.toordinal()
        self.seed = seed
        self.geography = _Geography(loans, self.first_as_of, seed)

    # -- the stream of borrowers ---------------------------------------------

    def borrowers(self, until: int) -> Iterator[_Borrower]:
        """The base book (exactly `loan_count` loans), then borrowers new after the first day up to `until`."""
        self.rng = random.Random(self.seed)
        self.next_loan = 1
        self.next_borrower = 0
        self.next_collateral = 1
        self.next_registration = 1
        self.next_group = 1
        self.open_group = None  # (group_id, members still to join)
        self.last_registration_no = ""
        self.shareable = None  # collateral waiting for a second borrower's loan: (collateral, lien_rank)
        self.planted_transfers = 0
        while self.next_loan <= self.loan_count:
            borrower = self._borrower(opened=None)
            if self.next_loan > self.loan_count and self.shareable is not None:
                # Nobody took the collateral up; its owner's turn writes it after all.
                borrower.collateral.append(self.shareable[0])
                self.shareable = None
            yield borrower
        # New business arrives at a steady pace: some 45% of the base
        # borrowers' number again over a year, replacing the loans repaid.
        per_day = max(1.0, 0.45 * self.next_borrower / 365)
        newcomer = 0
        while True:
            opened = self.first_as_of + 1 + int(newcomer / per_day)
            if opened >= until:
                return
            yield self._borrower(opened=opened)
            newcomer += 1

    def _borrower(self, opened: int | None) -> _Borrower:
        """One borrower and its loans; `opened` is the first loan's day for a new borrower, None for the base book."""
        r = self.rng.random
        borrower = _Borrower()
        index = self.next_borrower
        self.next_borrower += 1
        borrower.borrower_id = f"CU{index + 1:08d}"
        borrower.borrower_type = kind = _pick(_BORROWER_TYPE_TABLE, r())
        village = int(r() * self.geography.village_count)
        borrower.village = village
        borrower.township = self.geography.township_of(village)
        borrower.name = self._name(kind, village)
        borrower.id_number = _resident_id_number(index, self.seed)
        borrower.group_id = self._group(kind, r())
        borrower.related_party = 1 if r() < 0.01 else 0
        borrower.temperament = r()
        borrower.luck = r()
        borrower.collateral = []
        count = _pick(_LOANS_PER_BORROWER_TABLE, r())
        if opened is None:
            count = min(count, self.loan_count - self.next_loan + 1)
        branch = self.geography.branch_of(village)
        borrower.loans = []
        for number in range(count):
            loan = self._loan(borrower, branch)
            if opened is None:
                self._base_timeline(loan, kind)
            else:
                self._new_timeline(loan, opened + number * int(r() * 60))
            self._collateral(loan, borrower, share=opened is None)
            self._documents(loan)
            borrower.loans.append(loan)
        if kind == "village_collective" and opened is None:
            self._plant_land_transfer(borrower)
        return borrower

    def _plant_land_transfer(self, borrower: _Borrower) -> None:
        """The first few village collectives more than a year overdue live in a village whose land transfer is
        expected some 75 days after the first as-of: the moment to collect, planted for the checks and the
        collection strategy to find. Static facts only (no draw of the generator), so every snapshot agrees."""
        if self.planted_transfers >= PLANTED_LAND_TRANSFERS:
            return
        if not any(loan.default_day <= self.first_as_of - 361 for loan in borrower.loans):
            return
        principal = sum(loan.principal for loan in borrower.loans)
        self.geography.land_transfers[borrower.village] = (
            self.first_as_of + 75 + 10 * self.planted_transfers, principal * 6 // 5 // 10_000 * 10_000)
        self.planted_transfers += 1

    def _name(self, kind: str, village: int) -> str:
        rng = self.rng
        if kind == "village_collective":
            return self.geography.villages[village] + _choice(rng, ("股份经济合作社", "村民委员会"))
        if kind == "enterprise":
            return (
                _choice(rng, self.geography.townships)[:-1]
                + _choice(rng, ENTERPRISE_WORDS)
                + _choice(rng, ENTERPRISE_SUFFIXES)
            )
        given = _choice(rng, GIVEN_NAME_CHARACTERS)
        if rng.random() < 0.7:  # most given names have two characters
            given += _choice(rng, GIVEN_NAME_CHARACTERS)
        person = _choice(rng, SURNAMES) + given
        if kind == "small_business":
            return self.geography.villages[village][:-1] + person + _choice(rng, SMALL_BUSINESS_SUFFIXES)
        return person

    def _group(self, kind: str, u: float) -> str:
        """Related groups: a few businesses at a time under common control."""
        if kind not in ("small_business", "enterprise") or u >= 0.10:
            return ""
        if self.open_group is None:
            self.open_group = [f"GR{self.next_group:05d}", 2 + int(self.rng.random() * 3)]
            self.next_group += 1
        group_id = self.open_group[0]
        self.open_group[1] -= 1
        if self.open_group[1] == 0:
            self.open_group = None
        return group_id

    def _loan(self, borrower: _Borrower, branch: int) -> _Loan:
        """Terms that don't depend on the loan's history."""
        r = self.rng.random
        kind = borrower.borrower_type
        loan = _Loan()
        loan.serial = serial = self.next_loan
        self.next_loan += 1
        loan.loan_id = f"LN{serial:08d}"
        loan.borrower_id = borrower.borrower_id
        loan.branch_id = self.geography.branch_ids[branch]
        loan.product = _pick(_PRODUCT_TABLES[kind], r())
        loan.guarantee_type = _pick(_GUARANTEE_TABLES[kind], r())
        low, high, step = PRINCIPAL_YUAN[kind]
        yuan = math.exp(math.log(low) + r() * math.log(high / low))
        loan.principal = max(low, int(yuan) // step * step) * 100
        # Farm loans are repaid in one sum at maturity; the others amortise.
        if loan.product == "farm_operation" or r() < 0.4:
            loan.outstanding = loan.principal
        else:
            loan.outstanding = max(100, int(loan.principal * (0.3 + 0.7 * r())))
        loan.rate_bp = 435 + int(r() * 450)  # 4.35% .. 8.85% a year
        officers = self.geography.officer_ids[branch]
        loan.lending_officer_id = officers[int(r() * len(officers))]
        loan.collection_officer_id = officers[int(r() * len(officers))]
        large = loan.principal >= 100_000_000 or kind in ("enterprise", "village_collective")
        u = r()
        loan.inspection_kind = (
            ("monthly" if u < 0.5 else "quarterly") if large else ("quarterly" if u < 0.55 else "routine")
        )
        loan.inspection_phase = 7 + int(r() * 23)  # the first inspection comes one to four weeks after lending
        loan.neglected = r() < 0.3
        loan.goes_to_court = r() < 0.3
        loan.accrued_days = 1 + int(r() * 25) if r() < 0.1 else 0
        loan.provision_share = 30 + int(r() * 60) if r() < 0.1 else 100
        u = r()
        loan.class_shift = -1 if u < 0.05 else (1 if u > 0.99 else 0)
        loan.restructured_day = None
        loan.write_off_day = NEVER
        return loan

    def _term(self, product: str) -> int:
        return _pick(_TERM_TABLES[product], self.rng.random())

    def _base_timeline(self, loan: _Loan, kind: str) -> None:
        """Dates of a loan on the book at the first as-of date, and its future."""
        r = self.rng.random
        today = self.first_as_of
        term = self._term(loan.product)
        low, high = _pick(_DAYS_PAST_DUE_VILLAGE_TABLE if kind == "village_collective" else _DAYS_PAST_DUE_TABLE, r())
        overdue = low + int(r() * (high - low + 1))
        u_mode, u_age, u_cure, u_cure_day, u_future, u_future_day, u_early, u_early_day = (
            r(),
            r(),
            r(),
            r(),
            r(),
            r(),
            r(),
            r(),
        )
        if overdue:
            loan.default_day = today - overdue
            if overdue >= term - 30 or u_mode < 0.45:  # matured and not repaid
                loan.maturity = loan.default_day
                loan.origination = loan.maturity - term
            else:  # instalments in arrears on a loan still running
                loan.origination = today - term + 1 + int(u_age * (term - overdue - 31))
                loan.maturity = loan.origination + term
            # The longer overdue, the less likely it ever comes right.
            cure_chance = 0.55 if overdue <= 30 else 0.35 if overdue <= 90 else 0.12 if overdue <= 360 else 0.03
            loan.cure_day = today + 3 + int(u_cure_day * 150) if u_cure < cure_chance else NEVER
        else:
            loan.origination = today - 15 - int(u_age * (term - 30))
            loan.maturity = loan.origination + term
            loan.default_day = loan.cure_day = NEVER
            if u_future < 0.06:  # falls overdue later, on an instalment or at maturity
                runway = loan.maturity - today
                loan.default_day = today + 1 + int(u_future_day * min(runway, 300))
                loan.cure_day = loan.default_day + 5 + int(u_cure_day * 90) if u_cure < 0.5 else NEVER
        self._set_payoff(loan)
        if u_early < 0.04 and loan.default_day == NEVER:  # repaid early, out of a good harvest
            loan.payoff = today + 1 + int(u_early_day * (loan.maturity - today - 1))
        self._restructuring(loan, overdue)
        if overdue > 540 and r() < 0.15:  # charged off but still pursued (账销案存)
            loan.write_off_day = loan.default_day + 450 + int(r() * (overdue - 450))

    def _new_timeline(self, loan: _Loan, opened: int) -> None:
        """Dates of a loan lent after the first as-of date."""
        r = self.rng.random
        term = self._term(loan.product)
        loan.origination = opened
        loan.maturity = opened + term
        loan.outstanding = loan.principal
        u_default, u_default_day, u_cure, u_cure_day = r(), r(), r(), r()
        loan.default_day = loan.cure_day = NEVER
        if u_default < 0.08:
            loan.default_day = opened + 30 + int(u_default_day * (term - 30))
            loan.cure_day = loan.default_day + 5 + int(u_cure_day * 90) if u_cure < 0.5 else NEVER
        self._set_payoff(loan)

    @staticmethod
    def _set_payoff(loan: _Loan) -> None:
        # A current loan is repaid at maturity. An overdue one stays until it
        # is cured; cured after maturity means repaid in full that day.
        if loan.default_day == NEVER:
            loan.payoff = loan.maturity
        elif loan.cure_day == NEVER:
            loan.payoff = NEVER
        else:
            loan.payoff = max(loan.maturity, loan.cure_day)

    def _restructuring(self, loan: _Loan, overdue: int) -> None:
        """About 3% restructured within two years, mostly loans already in trouble."""
        r = self.rng.random
        today = self.first_as_of
        u, u_day, u_record = r(), r(), r()
        if u >= (0.08 if overdue else 0.02) or today - loan.origination < 10:
            return
        loan.restructured_day = max(loan.origination + 5, today - 1 - int(u_day * 729))
        # Restructured loans are at least substandard for a year; about a
        # third are still recorded as special mention.
        if u_record < 0.3:
            loan.class_shift = -1

    # -- collateral and documents -------------------------------------------

    def _collateral(self, loan: _Loan, borrower: _Borrower, share: bool) -> None:
        loan.pledges = []
        if loan.guarantee_type not in ("mortgage", "pledge"):
            return
        r = self.rng.random
        u_missing, u_two, u_split, u_ltv, u_ratio, u_rank, u_share = r(), r(), r(), r(), r(), r(), r()
        if u_missing < 0.01:  # the mortgage was never entered in the collateral system
            return
        if share and loan.guarantee_type == "mortgage" and self.shareable is not None:
            collateral, lien_rank = self.shareable
            if collateral.owner_id != borrower.borrower_id:
                # The same house mortgaged again, for another borrower, at the same rank.
                self.shareable = None
                collateral.loans.append(loan)
                loan.pledges.append((collateral, lien_rank, loan.principal))
                borrower.collateral.append(collateral)
                return
        # Lent mostly at 55-95% of the collateral type's loan-to-value limit; some 8% above it.
        headroom = 1.05 + 0.3 * u_ratio if u_ltv < 0.08 else 0.55 + 0.4 * u_ratio
        shares = (0.5 + 0.3 * u_split, 0.5 - 0.3 * u_split) if u_two < 0.2 else (1.0,)
        lien_rank = 2 if u_rank < 0.05 else 1  # the first lien is held by another bank
        secured_left = loan.principal
        for number, fraction in enumerate(shares):
            collateral = self._one_collateral(loan, borrower, loan.principal * fraction / headroom)
            secured = secured_left if number == len(shares) - 1 else int(loan.principal * fraction)
            secured_left -= secured
            loan.pledges.append((collateral, lien_rank, secured))
            real_estate = collateral.collateral_type in ("house", "commercial_property", "land_use_right")
            if share and real_estate and u_share < 0.012 and self.shareable is None:
                self.shareable = (collateral, lien_rank)  # the next mortgage of another borrower takes it too
            else:
                borrower.collateral.append(collateral)

    def _collateral_kind(self, loan: _Loan, borrower_type: str) -> str:
        if loan.guarantee_type == "pledge":
            table = "pledge"
        elif loan.product == "agricultural_machinery":
            table = "machinery"
        elif borrower_type in ("small_business", "enterprise"):
            table = "business"
        elif borrower_type == "village_collective":
            table = "village_collective"
        else:
            table = "household"
        return _pick(_COLLATERAL_TABLES[table], self.rng.random())

    def _one_collateral(self, loan: _Loan, borrower: _Borrower, lendable: float) -> _Collateral:
        """A collateral whose lending value (appraised value times its type's typical LTV limit) is
        ``lendable`` fen."""
        r = self.rng.random
        today = self.first_as_of
        collateral = _Collateral()
        collateral.collateral_id = f"CL{self.next_collateral:08d}"
        self.next_collateral += 1
        collateral.collateral_type = kind = self._collateral_kind(loan, borrower.borrower_type)
        collateral.owner_id = borrower.borrower_id
        collateral.loans = [loan]
        u_old, u_old_day, u_reval, u_reval_day, u_factor, u_drop = r(), r(), r(), r(), r(), r()
        appraiser = _pick(_APPRAISER_TABLE, r())
        financial = kind in ("deposit", "bond")
        if financial:  # a deposit or bond is worth its face value, no appraiser needed
            collateral.appraised_value = max(100, int(loan.principal * (1.0 + 0.1 * u_factor)) // 100 * 100)
            collateral.appraisal_day = loan.origination
            collateral.appraiser_id = ""
        else:
            collateral.appraised_value = max(100, int(lendable / _TYPICAL_LTV[kind]) // 100 * 100)
            collateral.appraisal_day = loan.origination - 5 - int(u_old_day * 55)
            collateral.appraiser_id = appraiser
            # Half the older loans had their collateral revalued in the last year; the rest are stale.
            if today - loan.origination > 365 and u_old < 0.5:
                collateral.appraisal_day = today - int(u_old_day * 360)
                collateral.appraised_value = collateral.appraised_value * (90 + int(u_factor * 25)) // 100 // 100 * 100
        collateral.revaluation_day = NEVER
        if not financial and u_reval < 0.3:  # revalued some day in the coming year
            collateral.revaluation_day = max(today, loan.origination) + 1 + int(u_reval_day * 365)
            # Land and houses in a county town fall in value now and then.
            percent = 55 + int(u_factor * 25) if u_drop < 0.15 else 92 + int(u_factor * 20)
            collateral.revalued_value = collateral.appraised_value * percent // 100 // 100 * 100
            collateral.revaluation_appraiser_id = appraiser
        self._registration(collateral, loan)
        collateral.site_verified = 0 if r() < 0.05 and not financial else 1
        return collateral

    def _registration(self, collateral: _Collateral, loan: _Loan) -> None:
        r = self.rng.random
        u_status, u_late, u_day, u_duplicate = r(), r(), r(), r()
        if u_status >= 0.93:
            collateral.registration_status = "pending" if u_status < 0.97 else "none"
            collateral.registration_no = ""
            collateral.registration_day = None
            return
        collateral.registration_status = "registered"
        late = u_late < 0.04  # registered more than 30 days after lending
        collateral.registration_day = loan.origination + (31 + int(u_day * 120) if late else int(u_day * 20))
        if u_duplicate < 0.003 and self.last_registration_no:
            collateral.registration_no = self.last_registration_no  # keyed in twice by mistake
        else:
            prefix = REGISTRATION_PREFIX.get(collateral.collateral_type, "BDC")
            year = date.fromordinal(collateral.registration_day).year
            collateral.registration_no = f"{prefix}{year}{self.next_registration:07d}"
            self.next_registration += 1
        self.last_registration_no = collateral.registration_no

    def _documents(self, loan: _Loan) -> None:
        """The credit file. Nine in ten are complete; the rest miss a paper, a scan or a whole document."""
        doc_types = DOCUMENTS_ALWAYS
        if loan.guarantee_type in ("mortgage", "pledge"):
            doc_types = doc_types + DOCUMENTS_SECURED
        elif loan.guarantee_type == "guarantee":
            doc_types = doc_types + DOCUMENTS_GUARANTEED
        r = self.rng.random
        if r() < 0.9:
            loan.documents = [(doc_type, 1, 1) for doc_type in doc_types]
            return
        loan.documents = []
        for doc_type in doc_types:
            u_missing, u_original, u_copy = r(), r(), r()
            if u_missing < 0.15:
                continue
            loan.documents.append((doc_type, 0 if u_original < 0.3 else 1, 0 if u_copy < 0.3 else 1))

    # -- writing --------------------------------------------------------------

    def write(self, directory: Path, as_of: date) -> dict[str, int]:
        directory.mkdir(parents=True, exist_ok=True)
        day = as_of.toordinal()
        if day < self.first_as_of:
            raise ValueError(f"as-of date {as_of} is before the book's first date")
        with ExitStack() as stack:
            writers = {}
            for spec in CANONICAL_TABLES:
                handle = stack.enter_context(open(directory / f"{spec.name}.csv", "w", encoding="utf-8", newline=""))
                writers[spec.name] = writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(spec.column_names)
            snapshot = _SnapshotWriter(self, writers, day)
            snapshot.write_appraisers()
            for borrower in self.borrowers(until=day):
                snapshot.write_borrower(borrower)
            snapshot.write_villages()  # after the borrowers: it holds the land transfers they plant
            snapshot.flush()
            return {spec.name: snapshot.written[spec.name] for spec in CANONICAL_TABLES}


# --------------------------------------------------------------------------
# Rendering the static facts as of a day


class _SnapshotWriter:
    """Renders borrowers as of one day into per-table row buffers, flushed in batches."""

    FLUSH_EVERY = 2000  # borrowers; csv.writerows on a batch costs less than a call per row

    def __init__(self, book: _Book, writers: dict, day: int):
        self.book = book
        self.day = day
        self.iso = _IsoDates()
        self.writers = writers
        self.written = dict.fromkeys(writers, 0)
        self.buffers = {table: [] for table in writers}
        self.salt = book.seed * 1_000_003
        self.unflushed = 0
        # The buffers' append and extend, looked up once: these run millions of times.
        buffers = self.buffers
        self.loan_row = buffers["loans"].append
        self.borrower_row = buffers["borrowers"].append
        self.collateral_row = buffers["collateral"].append
        self.pledge_rows = buffers["pledges"].extend
        self.inspection_row = buffers["inspections"].append
        self.collection_row = buffers["collections"].append
        self.document_rows = buffers["documents"].extend

    def flush(self) -> None:
        for table, rows in self.buffers.items():
            if rows:
                self.writers[table].writerows(rows)
                self.written[table] += len(rows)
                rows.clear()
        self.unflushed = 0

    def write_appraisers(self) -> None:
        first = self.book.first_as_of
        for number, (name, approved, suspended, until) in enumerate(APPRAISERS):
            approved_until = self.iso[first + until] if until is not None else ""
            self.buffers["appraisers"].append((f"AP{number + 1:02d}", name, approved, approved_until, suspended))

    def write_villages(self) -> None:
        geography = self.book.geography
        for village, name in enumerate(geography.villages):
            transfer = geography.land_transfers[village]
            expected, compensation = (self.iso[transfer[0]], _yuan(transfer[1])) if transfer else ("", "")
            township = geography.townships[geography.township_of(village)]
            self.buffers["villages"].append((name, township, expected, compensation))

    def write_borrower(self, borrower: _Borrower) -> None:
        day = self.day
        worst = -1  # stays -1 if none of its loans is on the book today
        in_litigation = False
        for loan in borrower.loans:
            if loan.is_on_book(day):
                overdue = loan.days_past_due(day)
                worst = max(worst, overdue)
                in_litigation |= self._write_loan(loan, overdue)
        for collateral in borrower.collateral:
            if any(loan.is_on_book(day) for loan in collateral.loans):
                self._write_collateral(collateral)
        if worst >= 0:
            self._write_borrower_row(borrower, worst, in_litigation)
        self.unflushed += 1
        if self.unflushed >= self.FLUSH_EVERY:
            self.flush()

    def _write_borrower_row(self, borrower: _Borrower, worst: int, in_litigation: bool) -> None:
        # Willingness and capacity sour with arrears; the borrower's own
        # temperament decides how far, so the same borrower moves consistently.
        t, luck = borrower.temperament, borrower.luck
        if worst == 0:
            willingness = "good" if t < 0.86 else "fair" if t < 0.98 else "poor"
            capacity = "normal" if luck < 0.93 else "weak"
        elif worst <= 90:
            willingness = "good" if t < 0.45 else "fair" if t < 0.80 else "poor" if t < 0.95 else "refuses"
            capacity = "normal" if luck < 0.55 else "weak" if luck < 0.92 else "none"
        else:
            willingness = "good" if t < 0.10 else "fair" if t < 0.35 else "poor" if t < 0.75 else "refuses"
            capacity = "normal" if luck < 0.15 else "weak" if luck < 0.60 else "none"
        whereabouts_known = 0 if (worst > 90 and t > 0.85) or t > 0.998 else 1
        deceased_or_dissolved = 1 if (worst > 180 and luck > 0.95) or luck > 0.9995 else 0
        geography = self.book.geography
        self.borrower_row(
            (
                borrower.borrower_id,
                borrower.name,
                borrower.id_number,
                borrower.borrower_type,
                geography.villages[borrower.village],
                geography.townships[borrower.township],
                borrower.group_id,
                borrower.related_party,
                willingness,
                capacity,
                whereabouts_known,
                deceased_or_dissolved,
                1 if in_litigation else 0,
            )
        )

    def _write_loan(self, loan: _Loan, overdue: int) -> bool:
        """The loan's rows in every loan-keyed table; True if it is in court."""
        day = self.day
        iso = self.iso
        loan_id = loan.loan_id
        restructured = loan.restructured_day
        required = _risk_class_index(overdue)
        if restructured is not None and day - restructured < 365:
            required = max(required, 2)
        recorded = min(4, max(0, required + loan.class_shift))
        outstanding = loan.outstanding
        # Interest stops being tallied after three years overdue.
        interest_days = min(overdue, 1095) if overdue else loan.accrued_days
        interest = outstanding * loan.rate_bp * interest_days // 3_650_000
        provision = outstanding * PROVISION_PER_MILLE[recorded] * loan.provision_share // 100_000
        self.loan_row(
            (
                loan_id,
                loan.borrower_id,
                loan.branch_id,
                loan.product,
                loan.guarantee_type,
                _yuan(loan.principal),
                _yuan(outstanding),
                _yuan(interest),
                iso[loan.origination],
                iso[loan.maturity],
                overdue,
                iso[restructured] if restructured is not None else "",
                RISK_CLASSES[recorded],
                _yuan(provision),
                loan.lending_officer_id,
                loan.collection_officer_id if required >= 2 else loan.lending_officer_id,
                1 if loan.write_off_day <= day else 0,
            )
        )
        if loan.pledges:
            self.pledge_rows(
                [
                    (loan_id, collateral.collateral_id, rank, _yuan(secured))
                    for collateral, rank, secured in loan.pledges
                ]
            )
        self._write_inspections(loan)
        in_court = self._write_collections(loan) if loan.default_day <= day else False
        self.document_rows([(loan_id, doc_type, original, copy) for doc_type, original, copy in loan.documents])
        return in_court

    def _write_inspections(self, loan: _Loan) -> None:
        """The inspections of the past year, on the loan's cadence, every seventh or so on site."""
        day = self.day
        period = INSPECTION_PERIOD[loan.inspection_kind]
        first = loan.origination + loan.inspection_phase
        since = max(first, day - 364)
        # Nobody goes to see a neglected loan while it is non-performing.
        if loan.neglected:
            ignored_from, ignored_until = loan.default_day + 90, loan.cure_day
        else:
            ignored_from = ignored_until = NEVER
        key = (self.salt + loan.serial) * 4096
        number = max(0, -(-(since - first) // period))
        loan_id, inspector, usual_kind = loan.loan_id, loan.lending_officer_id, loan.inspection_kind
        iso, add = self.iso, self.inspection_row
        while True:
            # One hash gives both the few days' slack (its whole part) and
            # whether it was a site visit (its fraction).
            scaled = _unit(key + number) * 5
            inspection_day = first + number * period + int(scaled)
            if inspection_day > day:
                break
            if not ignored_from <= inspection_day < ignored_until:
                add((loan_id, iso[inspection_day], inspector, "site" if scaled % 1 < 0.15 else usual_kind))
            number += 1

    def _write_collections(self, loan: _Loan) -> bool:
        """Collection actions since the loan fell overdue; True if it went to court."""
        day = self.day
        iso = self.iso
        last = min(day, loan.cure_day - 1)
        key = (self.salt + loan.serial) * 8192 + 1024
        in_court = False
        for number, (offset, action) in enumerate(COLLECTION_LADDER):
            action_day = loan.default_day + offset
            if action_day > last:
                break
            if action == "guarantor_notice" and loan.guarantee_type != "guarantee":
                action = "letter"
            elif action == "litigation":
                if loan.goes_to_court:
                    in_court = True
                else:
                    action = "visit"
            elif action == "settlement" and (loan.goes_to_court or _unit(key + 64) >= 0.4):
                action = "visit"
            self._collection_action(loan, action_day, action, key + number)
        if not loan.neglected:
            first_visit = loan.default_day + COLLECTION_LADDER[-1][0] + COLLECTION_VISIT_DAYS
            since = max(first_visit, day - COLLECTION_HISTORY_DAYS)
            number = max(0, -(-(since - first_visit) // COLLECTION_VISIT_DAYS))
            while first_visit + number * COLLECTION_VISIT_DAYS <= last:
                visit_day = first_visit + number * COLLECTION_VISIT_DAYS
                self._collection_action(loan, visit_day, "visit", key + 100 + number)
                number += 1
        if loan.write_off_day <= day:
            self.collection_row(
                (loan.loan_id, iso[loan.write_off_day], loan.collection_officer_id, "write_off", "0.00", "")
            )
        if loan.cure_day <= day:  # arrears settled: the loan is current again
            settled = loan.outstanding * loan.rate_bp * (loan.cure_day - loan.default_day) // 3_650_000
            self.collection_row(
                (loan.loan_id, iso[loan.cure_day], loan.lending_officer_id, "settlement", _yuan(settled), "transfer")
            )
        return in_court

    def _collection_action(self, loan: _Loan, action_day: int, action: str, key: int) -> None:
        # Officers sometimes come back with a partial repayment; a few of those
        # are paid in cash, which the cooperative's own rules frown upon.
        u_amount = _unit(key)
        recovered = 0
        if action == "settlement":
            recovered = loan.outstanding * (5 + int(u_amount * 15)) // 100
        elif action in ("visit", "special_team") and u_amount < 0.25:
            recovered = loan.outstanding * (1 + int(u_amount * 40)) // 100
        channel = ""
        if recovered:
            u_channel = _unit(key + 50)
            channel = (
                "cash"
                if u_channel < 0.08
                else "offset"
                if u_channel < 0.12
                else "other"
                if u_channel < 0.13
                else "transfer"
            )
        officer = loan.lending_officer_id if action_day - loan.default_day <= 90 else loan.collection_officer_id
        self.collection_row((loan.loan_id, self.iso[action_day], officer, action, _yuan(recovered), channel))

    def _write_collateral(self, collateral: _Collateral) -> None:
        day = self.day
        iso = self.iso
        if collateral.revaluation_day <= day:
            value, appraised, appraiser = (
                collateral.revalued_value,
                collateral.revaluation_day,
                collateral.revaluation_appraiser_id,
            )
        else:
            value, appraised, appraiser = collateral.appraised_value, collateral.appraisal_day, collateral.appraiser_id
        status, number, registered = (
            collateral.registration_status,
            collateral.registration_no,
            collateral.registration_day,
        )
        if registered is not None and registered > day:  # lent recently, registration still under way
            status, number, registered = "pending", "", None
        self.collateral_row(
            (
                collateral.collateral_id,
                collateral.collateral_type,
                collateral.owner_id,
                _yuan(value),
                iso[appraised],
                appraiser,
                status,
                number,
                iso[registered] if registered is not None else "",
                collateral.site_verified,
            )
        )
