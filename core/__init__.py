"""loanrules: plugin-based nightly rules for the loan books of rural credit cooperatives.

The public API for plugin authors is what this module exports; see
``loanrules.plugins`` for the tutorial.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("loanrules")

from loanrules.context import RunContext  # noqa: E402  (hookimpl must exist before plugins import us)
from loanrules.model import (  # noqa: E402
    Check,
    Classifier,
    Derivation,
    Finding,
    Pack,
    Param,
    ParamType,
    Severity,
    Strategy,
    Summary,
    Task,
    Verdict,
)
from loanrules.schema import Column, ColumnType, Index, Reference, TableSpec  # noqa: E402

__all__ = [
    "Check",
    "Classifier",
    "Column",
    "ColumnType",
    "Derivation",
    "Finding",
    "Index",
    "Pack",
    "Param",
    "ParamType",
    "Reference",
    "RunContext",
    "Severity",
    "Strategy",
    "Summary",
    "TableSpec",
    "Task",
    "Verdict",
    "__version__",
    "hookimpl",
]
