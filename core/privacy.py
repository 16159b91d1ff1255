"""Masking of borrowers' personal data (names, ID numbers) in what leaves the database.

Reports and exports mask by default; a cooperative's config sets
``[privacy] show_personal_data = true`` to show them in full.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from loanrules.schema import TableSpec


def mask_name(name: str) -> str:
    """Keep the first character (the surname, for Chinese names): 张三丰 -> 张**."""
    name = name.strip()
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_id_number(number: str) -> str:
    """Keep the region code (6) and the last 4: 110101199003071234 -> 110101********1234."""
    number = number.strip()
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_value(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return mask_id_number(value) if "id_number" in key else mask_name(value)


def personal_columns(tables: Iterable[TableSpec]) -> frozenset[str]:
    return frozenset(column.name for spec in tables for column in spec.columns if column.personal)


class Masker:
    """Masks personal fields wherever they appear: as columns, or as keys inside JSON details."""

    def __init__(self, personal: frozenset[str], show: bool = False):
        self.personal = personal
        self.show = show

    def row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        if self.show:
            return dict(row)
        out = {}
        for key, value in row.items():
            if key in self.personal:
                value = mask_value(key, value)
            elif key in ("details", "reasons") and isinstance(value, str):
                value = self._json(value)
            out[key] = value
        return out

    def _json(self, text: str) -> str:
        try:
            document = json.loads(text)
        except ValueError:
            return text
        return json.dumps(self._walk(document), ensure_ascii=False, sort_keys=True)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask_value(k, v) if k in self.personal else self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        return value
