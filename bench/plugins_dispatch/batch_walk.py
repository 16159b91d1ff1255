"""One Python check that walks every loan in batches and finds nothing: the workload of ``bench_dispatch.py``.

Loaded with ``loanrules --plugins-dir bench/plugins_dispatch``. When
``BENCH_DISPATCH_LOG`` names a file, each hook call and each ``evaluate`` call
appends a line to it, so the bench can count them per run; the walk logs
the loans it saw and its own wall time (the run's ``seconds`` are rounded to ms).
"""

import os
import time

from loanrules import Check, Pack, hookimpl

__version__ = "1"


def _note(event: str) -> None:
    log = os.environ.get("BENCH_DISPATCH_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(event + "\n")


def walk_loans(ctx):
    """Read every loan id of the snapshot in batches; yield no finding."""
    _note("evaluate")
    started, rows = time.perf_counter(), 0
    for batch in ctx.batches("SELECT loan_id FROM loans"):
        rows += len(batch)
    _note(f"walked {rows} {time.perf_counter() - started:.6f}")
    yield from ()


@hookimpl
def register_checks(register):
    _note("register_checks")
    register(Check(id="bench.walk_loans", title="Walk every loan in batches (finds nothing)", evaluate=walk_loans))


@hookimpl
def register_packs(register):
    _note("register_packs")
    register(Pack(name="bench-dispatch", version="1", title="Benchmark: hook-dispatch overhead",
                  members=["bench.walk_loans"]))
