"""The package's exceptions. Each maps to one exit code of the CLI contract."""

from __future__ import annotations

import attrs


class LoanrulesError(Exception):
    """Base of every error loanrules reports to a user without a traceback."""

    exit_code = 3


class UsageError(LoanrulesError):
    """Bad config, bad option or bad plugin declaration: exit 2, nothing stored."""

    exit_code = 2


class ConfigError(UsageError):
    pass


@attrs.frozen
class InputProblem:
    """One problem in a snapshot, located to the cell."""

    file: str
    line: int | None
    column: str | None
    value: str | None
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.column:
            where += f" column {self.column}"
        value = "" if self.value is None else f" value {self.value!r}:"
        return f"{where}:{value} {self.reason}"


class SnapshotRejected(UsageError):
    """A snapshot broke the input contract. Carries every problem found."""

    def __init__(self, problems: list[InputProblem], total: int):
        self.problems = problems
        self.total = total
        more = total - len(problems)
        tail = f" (showing {len(problems)}; {more} more not shown)" if more > 0 else ""
        super().__init__(f"snapshot rejected: {total} problem(s){tail}; nothing was stored")


class DatabaseBusy(LoanrulesError):
    """Another loanrules process holds the database lock."""

    exit_code = 4


class PluginError(LoanrulesError):
    """A plugin misbehaved while being loaded or registered."""

    exit_code = 3
