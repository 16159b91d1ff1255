"""load: validated load of the big loans.csv against the sqlite3 shell's untyped ``.import``.

Measured: wall time of ``loanrules load <dir with only loans.csv> --as-of ... --db <fresh.db>``
(header mapping, typed conversion of every cell, money to fen, codes, dates,
duplicate-key check, indexes, one transaction).
Baseline: wall time of ``sqlite3 <fresh.db> ".mode csv" ".import loans.csv loans"``
(C, every column TEXT, no validation) on the same file in the same run.
Each is run ``REPEATS`` times, alternating, into a fresh database; the best of each counts.
Target (issue 2): ratio <= 2.5.
"""

from __future__ import annotations

from common import (
    AS_OF,
    SQLITE3_HINT,
    Measurement,
    Settings,
    bench_env,
    fresh_db,
    loanrules_command,
    loans_only_dir,
    ratio,
    remove_db,
    say,
    sqlite3_shell,
    timed,
)

NAME = "load"
REPEATS = 3
TARGET_RATIO = 2.5


def sqlite_import_seconds(shell: str, csv_dir, settings: Settings) -> float:
    """One untyped ``.import`` of loans.csv into a fresh database."""
    db = fresh_db(settings, "import")
    seconds, _ = timed([shell, str(db), ".mode csv", ".import loans.csv loans"], cwd=csv_dir)
    remove_db(db)
    return seconds


def loanrules_load_seconds(csv_dir, settings: Settings) -> float:
    """One ``loanrules load`` of the directory holding only loans.csv into a fresh database."""
    db = fresh_db(settings, "load")
    seconds, _ = timed([*loanrules_command(), "load", str(csv_dir), "--as-of", AS_OF, "--db", str(db), "--quiet"],
                       env=bench_env())
    remove_db(db)
    return seconds


def run(settings: Settings) -> list[Measurement]:
    csv_dir = loans_only_dir(settings.loans)
    shell = sqlite3_shell()
    if not shell:
        say(f"  load: the sqlite3 shell is not installed ({SQLITE3_HINT}): its baseline is skipped")
    imports: list[float] = []
    loads: list[float] = []
    for attempt in range(1, REPEATS + 1):
        if shell:
            imports.append(sqlite_import_seconds(shell, csv_dir, settings))
            say(f"  load: sqlite3 .import #{attempt}: {imports[-1]:.2f} s")
        loads.append(loanrules_load_seconds(csv_dir, settings))
        say(f"  load: loanrules load #{attempt}: {loads[-1]:.2f} s")
    size = f"{settings.loans:,} loans"
    baseline = min(imports) if imports else None
    best = min(loads)
    load_ratio = ratio(best, baseline)
    return [
        Measurement(NAME, f"sqlite3 .import loans.csv, untyped ({size}), best of {REPEATS}", baseline, "s",
                    baseline=baseline, ratio=1.0 if baseline else None, target="baseline",
                    note="" if shell else f"sqlite3 shell not found ({SQLITE3_HINT}): baseline skipped",
                    extra={"all_seconds": imports}),
        Measurement(NAME, f"loanrules load loans.csv, validated ({size}), best of {REPEATS}", best, "s",
                    baseline=baseline, ratio=load_ratio, target=f"ratio <= {TARGET_RATIO}",
                    passed=None if load_ratio is None else load_ratio <= TARGET_RATIO,
                    note="" if shell else "no baseline, no ratio",
                    extra={"all_seconds": loads}),
    ]
