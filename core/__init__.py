"""loanrules: plugin-based nightly rules for the loan books of rural credit cooperatives.

The public API for plugin authors is what this module exports; see
``loanrules.plugins`` for the tutorial.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("loanrules")

from loanrules.model import (  # noqa: E402  (hookimpl must exist before plugins import us)
    Check,
    Classifier,
    Pack,
    Param,
    ParamType,
    Severity,
    Strategy,
)
from loanrules.schema import Column, ColumnType, Reference, TableSpec  # noqa: E402

__all__ = [
    "Check",
    "Classifier",
    "Column",
    "ColumnType",
    "Pack",
    "Param",
    "ParamType",
    "Reference",
    "Severity",
    "Strategy",
    "TableSpec",
    "__version__",
    "hookimpl",
]
