"""Run the benchmarks of issues 2 to 6 and compare each figure with a baseline measured in the same run.

    python bench/run.py [--loans N] [--only NAME ...]

Benchmarks (each its own module, ``bench_<name>.py``): load, memory, checks,
dispatch, classification, collateral, inspections, villages, credit_files, strategies. Prints one table
(figure, baseline, ratio, target, PASS/FAIL) and writes the same to ``bench/results/latest.json``.
Demo data is generated once per size and cached under ``bench/results/data-<N>/``. Exit status: 0 when
every target is met, 1 when one is missed, 2 when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import shutil
import sqlite3
import sys
import time
import traceback

from common import RESULTS, BenchError, Measurement, Settings, say, scratch_dir
from tabulate import tabulate

BENCHMARKS = ("load", "memory", "checks", "dispatch", "classification", "collateral", "inspections", "villages",
              "credit_files", "strategies", "workbook")
DEFAULT_LOANS = 1_000_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=DEFAULT_LOANS,
                        help=f"the big size in loans (default {DEFAULT_LOANS:,}); memory compares it with a tenth, "
                             f"dispatch with a tenth and a hundredth")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    return parser.parse_args(argv)


def run_benchmark(name: str, settings: Settings) -> tuple[list[Measurement], str | None, float]:
    """Run one benchmark module; return its rows, the error that stopped it (if any), and its wall time."""
    say(f"== {name}")
    started = time.perf_counter()
    try:
        rows = importlib.import_module(f"bench_{name}").run(settings)
        return rows, None, time.perf_counter() - started
    except BenchError as error:
        return [], str(error), time.perf_counter() - started
    except Exception as error:  # a bug in the bench itself: say where, go on with the others
        traceback.print_exc()
        return [], f"{type(error).__name__}: {error}", time.perf_counter() - started


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.2f}"


def table(rows: list[Measurement]) -> str:
    def value(row: Measurement) -> str:
        return "n/a" if row.value is None else f"{fmt(row.value)} {row.unit}"

    return tabulate(
        [(r.bench, r.name, value(r), fmt(r.baseline), fmt(r.ratio), r.target, r.verdict, r.note) for r in rows],
        headers=("bench", "measurement", "value", "baseline", "ratio", "target", "result", "note"),
        maxcolwidths=[None, 48, None, None, None, 24, None, 44],
    )


def machine() -> dict:
    return {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(),
            "platform": platform.platform(), "executable": sys.executable}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import loanrules
    except ImportError:
        say(f"loanrules is not importable from {sys.executable}: run with the project's venv "
            f"(e.g. /tmp/venv/bin/python bench/run.py) or `tox -e bench`")
        return 2
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    started = time.perf_counter()
    settings = Settings(loans=args.loans, work=scratch_dir())
    rows: list[Measurement] = []
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    try:
        for name in names:
            found, error, durations[name] = run_benchmark(name, settings)
            rows += found
            if error:
                errors[name] = error
                say(f"  {name} could not run: {error}")
    finally:
        shutil.rmtree(settings.work, ignore_errors=True)
    total = time.perf_counter() - started

    print(table(rows))
    for name, error in errors.items():
        print(f"ERROR {name}: {error}")
    failed = [r for r in rows if r.passed is False]
    print(f"\n{sum(r.passed is True for r in rows)} passed, {len(failed)} failed, {len(errors)} errors; "
          f"total {total:.0f} s (" + ", ".join(f"{n} {s:.0f} s" for n, s in durations.items()) + ")")

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loanrules": loanrules.__version__, "loans": args.loans, "benchmarks": names, "machine": machine(),
        "total_seconds": round(total, 1), "benchmark_seconds": {n: round(s, 1) for n, s in durations.items()},
        "measurements": [r.as_dict() for r in rows], "errors": errors,
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    say(f"written to {RESULTS / 'latest.json'}")
    return 2 if errors else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
