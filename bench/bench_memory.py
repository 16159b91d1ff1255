"""memory: peak RSS of ``loanrules load`` of the full demo snapshot (all nine tables) at two sizes.

Measured: the maximum resident set size of any single process of one
``loanrules load`` (the CLI process and the reader children it forks for big
files), read with ``getrusage(RUSAGE_CHILDREN)`` in a fresh wrapper
process per measurement, so nothing else the bench ran is counted.
Baseline: the same figure for a tenth of the loans (100k for the default 1M).
Targets (issue 2): big peak < 300 MB, and big peak < 1.5 x small peak.
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import (
    AS_OF,
    BenchError,
    Measurement,
    Settings,
    bench_env,
    fresh_db,
    loanrules_command,
    ratio,
    remove_db,
    say,
    snapshot_dir,
    snapshot_rows,
)

NAME = "memory"
TARGET_MB = 300
TARGET_GROWTH = 1.5

# Runs the command as its only child and reports that child's (and its waited-for
# descendants') largest max RSS. Linux reports ru_maxrss in KiB.
_WRAPPER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
print(json.dumps({"returncode": done.returncode, "seconds": time.perf_counter() - started,
                  "max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "stderr": done.stderr[-2000:]}))
"""


def peak_rss_mb(loans: int, settings: Settings) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one ``loanrules load`` of the full snapshot into a fresh database."""
    db = fresh_db(settings, f"memory-{loans}")
    command = [*loanrules_command(), "load", str(snapshot_dir(loans)), "--as-of", AS_OF, "--db", str(db), "--quiet"]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(command)], capture_output=True, text=True,
                          env=bench_env())
    remove_db(db)
    if done.returncode != 0:
        raise BenchError(f"memory wrapper failed: {done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout)
    if report["returncode"] != 0:
        raise BenchError(f"loanrules load of {loans:,} loans exited {report['returncode']}: {report['stderr']}")
    return report["max_rss_kib"] / 1024, report["seconds"]


def run(settings: Settings) -> list[Measurement]:
    sizes = (settings.small, settings.loans)
    peaks, seconds, rows = {}, {}, {}
    for loans in sizes:
        rows[loans] = sum(snapshot_rows(loans).values())
        peaks[loans], seconds[loans] = peak_rss_mb(loans, settings)
        say(f"  memory: load of {loans:,} loans ({rows[loans]:,} rows): peak {peaks[loans]:.0f} MB, "
            f"{seconds[loans]:.1f} s")
    small, big = sizes
    what = "full snapshot, all tables"
    how = "max RSS of any one process (the CLI or a reader it forks), via RUSAGE_CHILDREN"
    growth = ratio(peaks[big], peaks[small])
    return [
        Measurement(NAME, f"peak RSS, load {small:,} loans ({rows[small]:,} rows)", peaks[small], "MB",
                    baseline=peaks[small], ratio=1.0, target="baseline", note=what,
                    extra={"seconds": seconds[small], "rows": rows[small]}),
        Measurement(NAME, f"peak RSS, load {big:,} loans ({rows[big]:,} rows)", peaks[big], "MB",
                    baseline=peaks[small], ratio=growth, target=f"< {TARGET_MB} MB",
                    passed=peaks[big] < TARGET_MB, note=how,
                    extra={"seconds": seconds[big], "rows": rows[big]}),
        Measurement(NAME, f"peak RSS growth {small:,} -> {big:,} loans", growth, "x",
                    baseline=peaks[small], ratio=growth, target=f"ratio < {TARGET_GROWTH}",
                    passed=growth < TARGET_GROWTH),
    ]
