"""dispatch: the hook-dispatch overhead of a run does not grow with the number of loans.

Measured: one Python check (``bench/plugins_dispatch/batch_walk.py``) whose
``evaluate(ctx)`` walks every loan with ``ctx.batches`` and yields nothing, run
by ``loanrules --plugins-dir bench/plugins_dispatch run`` over loans-only
snapshots of a hundredth, a tenth and all of the big size (10k, 100k, 1M).
The plugin logs each hook call and each ``evaluate`` call to a file, so the
bench counts calls per run, and the wall time of its walk, timed inside
``evaluate`` (the run's JSON ``seconds``, rounded to ms, are reported too).
Baseline: the walk's milliseconds per 1k loans at the big size (for the growth: at a tenth).
Targets: ``evaluate`` called exactly once per run and ``register_checks`` once
per process, at every size; and time per loan ~constant: at the big size at
most 1.5x what it is at a tenth of it. (At the smallest size the walk fits in
CPU caches and is faster per loan; that row is for information.)
"""

from __future__ import annotations

import collections
import json

from common import (
    AS_OF,
    BENCH,
    BenchError,
    Measurement,
    Settings,
    bench_env,
    fresh_db,
    loanrules_command,
    loans_only_dir,
    remove_db,
    say,
    timed,
)

NAME = "dispatch"
PLUGIN = "batch_walk"
CHECK_ID = "bench.walk_loans"
TARGET_GROWTH = 1.5


def run_once(loans: int, settings: Settings) -> dict:
    """One run over ``loans`` loans: the check's seconds and the calls the plugin logged."""
    db = fresh_db(settings, f"dispatch-{loans}")
    log = settings.work / f"dispatch-{loans}.log"
    log.unlink(missing_ok=True)
    env = {**bench_env(PLUGIN), "BENCH_DISPATCH_LOG": str(log)}
    command = [*loanrules_command(), "--plugins-dir", str(BENCH / "plugins_dispatch"), "run",
               str(loans_only_dir(loans)), "--as-of", AS_OF, "--pack", "bench-dispatch", "--db", str(db),
               "--json", "--quiet"]
    try:
        _, stdout = timed(command, env=env)
    finally:
        remove_db(db)
    outcome = next((c for c in json.loads(stdout)["contributions"] if c["id"] == CHECK_ID), None)
    if outcome is None or outcome["status"] != "ok":
        raise BenchError(f"{CHECK_ID} did not run ok over {loans:,} loans: {outcome}")
    lines = log.read_text().split("\n") if log.exists() else []
    calls = collections.Counter(line.split()[0] for line in lines if line)
    walks = [line.split()[1:] for line in lines if line.startswith("walked ")]
    walked = sum(int(count) for count, _ in walks)
    if walked != loans:
        raise BenchError(f"{CHECK_ID} walked {walked:,} loans of {loans:,}")
    return {"walk_seconds": sum(float(seconds) for _, seconds in walks), "run_seconds": outcome["seconds"],
            "evaluate": calls["evaluate"], "register_checks": calls["register_checks"],
            "register_packs": calls["register_packs"]}

def run(settings: Settings) -> list[Measurement]:
    sizes = (settings.tiny, settings.small, settings.loans)
    runs = {}
    for loans in sizes:
        runs[loans] = run_once(loans, settings)
        say(f"  dispatch: {loans:,} loans: walk {runs[loans]['walk_seconds']:.4f} s, evaluate called "
            f"{runs[loans]['evaluate']}x")
    per_1k = {loans: 1e6 * runs[loans]["walk_seconds"] / loans for loans in sizes}  # ms per 1k loans
    big, small = settings.loans, settings.small
    calls = [(runs[n]["evaluate"], runs[n]["register_checks"]) for n in sizes]
    rows = [Measurement(
        NAME, f"evaluate calls per run ({', '.join(f'{n:,}' for n in sizes)} loans)",
        max(evaluate for evaluate, _ in calls), "calls", target="1 at every size",
        passed=all(evaluate == 1 and register == 1 for evaluate, register in calls),
        note="evaluate " + "/".join(f"{e}x" for e, _ in calls) + "; register_checks "
             + "/".join(f"{r}x" for _, r in calls) + " (once per process)",
        extra={str(n): runs[n] for n in sizes},
    )]
    for loans in sizes:
        result = runs[loans]
        rows.append(Measurement(
            NAME, f"Python batch walk, per 1k loans ({loans:,} loans)", per_1k[loans], "ms/1k",
            baseline=per_1k[big], ratio=per_1k[loans] / per_1k[big], target="info",
            note=f"walk {result['walk_seconds']:.4f} s; the check in the run {result['run_seconds']:.3f} s",
            extra={**result, "seconds_per_1k_loans": per_1k[loans] / 1000},
        ))
    growth = per_1k[big] / per_1k[small]
    rows.append(Measurement(
        NAME, f"time per loan growth {small:,} -> {big:,} loans", growth, "x", baseline=per_1k[small],
        ratio=growth, target=f"ratio <= {TARGET_GROWTH}", passed=growth <= TARGET_GROWTH,
    ))
    return rows
