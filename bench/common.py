"""Shared helpers for the benchmarks: cached demo data, fresh databases, timed subprocesses, results.

Every benchmark returns a list of ``Measurement`` rows: a figure, the baseline
it is compared with (measured in the same run), their ratio, the target and
whether it was met. ``bench/run.py`` prints them as one table and writes them
to ``bench/results/latest.json``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
AS_OF = "2026-11-27"  # loanrules.demo.DEMO_AS_OF: the generator's default as-of date
SQLITE3_HINT = "apt-get install sqlite3"


class BenchError(Exception):
    """A benchmark could not measure what it set out to (a command failed, output was not as expected)."""


@dataclass
class Measurement:
    """One row of the results table."""

    bench: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None  # the same-run baseline the ratio is taken against
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None  # None: informational, or skipped
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # raw figures, only in the JSON

    @property
    def verdict(self) -> str:
        if self.passed is None:  # informational, a baseline, or a target that could not be judged
            return "SKIP" if self.value is None or self.target not in ("", "baseline", "info") else ""
        return "PASS" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass(frozen=True)
class Settings:
    """What the run was asked for: the big size (``--loans``) and where to work."""

    loans: int
    work: Path  # scratch directory for databases, removed at the end

    @property
    def small(self) -> int:
        """The size a tenth of the big one (100k for the default 1M)."""
        return max(self.loans // 10, 1000)

    @property
    def tiny(self) -> int:
        return max(self.loans // 100, 100)


# ---------------------------------------------------------------- demo data, cached


def snapshot_dir(loans: int) -> Path:
    """The full demo snapshot (all tables) for ``loans`` loans, generated once and cached.

    ``bench/results/data-<N>/snapshot/`` holds the CSVs; ``complete.json``
    (the row counts) is written last, so an interrupted generation is redone.
    """
    base = RESULTS / f"data-{loans}"
    directory = base / "snapshot"
    marker = base / "complete.json"
    if marker.is_file() and (directory / "loans.csv").is_file():
        return directory
    from loanrules import demo  # imported late: only generation needs it

    say(f"generating the demo snapshot with {loans:,} loans (cached for next time) ...")
    started = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    counts = demo.write_snapshot(directory, loans=loans)
    marker.write_text(json.dumps(counts, indent=2) + "\n")
    say(f"  {sum(counts.values()):,} rows in {time.perf_counter() - started:.1f} s")
    return directory


def snapshot_rows(loans: int) -> dict[str, int]:
    """Rows per table of the cached full snapshot."""
    snapshot_dir(loans)
    return json.loads((RESULTS / f"data-{loans}" / "complete.json").read_text())


def loans_only_dir(loans: int) -> Path:
    """A snapshot directory holding only ``loans.csv`` (a copy of the full snapshot's)."""
    source = snapshot_dir(loans) / "loans.csv"
    directory = RESULTS / f"data-{loans}" / "loans-only"
    target = directory / "loans.csv"
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return directory


# ---------------------------------------------------------------- commands


def loanrules_command() -> list[str]:
    """The ``loanrules`` console script of the Python running the bench (the venv's, or tox's)."""
    script = Path(sys.executable).parent / "loanrules"
    if script.is_file():
        return [str(script)]
    found = shutil.which("loanrules")
    if found:
        return [found]
    return [sys.executable, "-m", "loanrules.cli"]


def sqlite3_shell() -> str | None:
    """The sqlite3 command-line shell, or None when it is not installed."""
    return shutil.which("sqlite3") or ("/usr/bin/sqlite3" if os.access("/usr/bin/sqlite3", os.X_OK) else None)


def bench_env(load_plugins: str = "") -> dict[str, str]:
    """Environment for loanrules subprocesses.

    ``LOANRULES_LOAD_PLUGINS`` is set explicitly: tox's bench env inherits the
    test env's empty value, which would stop ``--plugins-dir`` files loading,
    and a third-party plugin installed on the machine must not change results.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOANRULES_")}
    env["LOANRULES_LOAD_PLUGINS"] = load_plugins
    return env


def timed(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
          timeout: float | None = None) -> tuple[float, str]:
    """Run ``command``; return (wall seconds, stdout). A non-zero exit, or ``timeout`` seconds passing
    (the command is then killed), is a ``BenchError``."""
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(command)} did not finish within {timeout:g} s (killed)") from None
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return seconds, done.stdout


def fresh_db(settings: Settings, name: str) -> Path:
    """A path for a new database in the scratch directory, with any earlier one (and its lock) removed."""
    path = settings.work / f"{name}.db"
    remove_db(path)
    return path


def remove_db(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def scratch_dir() -> Path:
    """Scratch space on the same file system as the cached data (so no tmpfs flatters either side)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="work-", dir=RESULTS))


def say(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


# ---------------------------------------------------------------- dedicated generators: choices, CSV files, cache

RUN_TIMEOUT_SECONDS = 3600.0  # one whole CLI run, load included (a bad query plan can otherwise run for hours)


def weighted(options: Iterable[tuple]) -> list[tuple[float, Any]]:
    """A cumulative table for ``pick`` from ``(value, ..., weight)`` tuples.

    The value is the tuple's items before the weight: the item itself when there is one, else a tuple of them.
    """
    options = list(options)
    total = sum(weight for *_, weight in options)
    cumulative, running = [], 0
    for *value, weight in options:
        running += weight
        cumulative.append((running / total, value[0] if len(value) == 1 else tuple(value)))
    return cumulative


def pick(table: list[tuple[float, Any]], u: float) -> Any:
    """The value of a ``weighted`` table that ``u`` (uniform in [0, 1)) falls on."""
    for bound, value in table:
        if u < bound:
            return value
    return table[-1][1]


class CsvWriters:
    """One CSV file per table under ``directory`` (``<table>.csv``, header first); ``row()`` writes and counts.

    ``tables`` maps each table to its header (a dict, or ``(table, fields)`` pairs); ``counts`` holds the rows
    written per table in that order. ``close()`` (or leaving a ``with`` block) closes every file.
    """

    def __init__(self, directory: Path, tables: dict[str, Sequence[str]] | Iterable[tuple[str, Sequence[str]]]):
        directory.mkdir(parents=True, exist_ok=True)
        self.files, self.writers, self.counts = [], {}, {}
        for name, fields in (tables.items() if isinstance(tables, dict) else tables):
            file = open(directory / f"{name}.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
            self.files.append(file)
            writer = csv.writer(file)
            writer.writerow(fields)
            self.writers[name], self.counts[name] = writer.writerow, 0

    def row(self, table: str, values: Iterable) -> None:
        self.writers[table](values)
        self.counts[table] += 1

    def close(self) -> None:
        for file in self.files:
            file.close()

    def __enter__(self) -> CsvWriters:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def cached_data(name: str, loans: int, what: str, generate: Callable[[Path], dict]) -> tuple[Path, dict]:
    """``bench/results/<name>-<loans>/``, filled once by ``generate(directory)``; (that directory, row counts).

    ``generate`` returns the row counts, written to ``complete.json`` last, so an interrupted generation is
    redone. ``what`` completes the progress line "generating ... (cached)"; the counts shown after it are those
    of ``current`` when there are two as-ofs.
    """
    base = RESULTS / f"{name}-{loans}"
    marker = base / "complete.json"
    if not marker.is_file():
        say(f"  {name}: generating {what} (cached) ...")
        started = time.perf_counter()
        if base.exists():
            shutil.rmtree(base)
        counts = generate(base)
        marker.write_text(json.dumps(counts, indent=2) + "\n")
        say(f"  {name}: generated in {time.perf_counter() - started:.1f} s: {counts.get('current', counts)}")
    return base, json.loads(marker.read_text())


# ---------------------------------------------------------------- a measured CLI run and its baseline scans


def cli_run_json(snapshot: Path, as_of: str, packs: Sequence[str], db: Path, *,
                 env: dict[str, str]) -> tuple[float, dict]:
    """``loanrules run <snapshot> --as-of <as_of> --pack ... --db <db> --json --quiet``: (wall seconds, report).

    The report's ``contributions[]`` hold each check's, derivation's and facts build's own ``seconds``.
    """
    options = [argument for pack in packs for argument in ("--pack", pack)]
    # The pages earlier benchmarks wrote (gigabytes of databases, since removed) are flushed first: their
    # writeback during this run slowed the checks by up to 25% (credit files 3.67 s against 2.89 s).
    os.sync()
    wall, stdout = timed([*loanrules_command(), "run", str(snapshot), "--as-of", as_of, *options,
                          "--db", str(db), "--json", "--quiet"], env=env, timeout=RUN_TIMEOUT_SECONDS)
    return wall, json.loads(stdout)


def contribution_outcomes(report: dict, ids: Sequence[str], failure: str) -> dict[str, dict]:
    """The ``contributions[]`` of a run report with these ids, by id (in report order).

    Each must be there with status ok, else a ``BenchError`` "<failure>: <id>: <status> <reason>; ...".
    """
    found = {c["id"]: c for c in report["contributions"] if c["id"] in ids}
    broken = [f"{i}: {found[i]['status']} {found[i]['reason'] or ''}" if i in found else f"{i}: missing"
              for i in ids if i not in found or found[i]["status"] != "ok"]
    if broken:
        raise BenchError(f"{failure}: {'; '.join(broken)}")
    return found


def seconds_each(outcomes: dict[str, dict], ids: Sequence[str]) -> str:
    """"name 1.23, ..." : each contribution's seconds, its id without the namespace (for notes)."""
    return ", ".join(f"{i.split('.', 1)[1]} {outcomes[i]['seconds']:.2f}" for i in ids)


def run_snapshot_id(conn: sqlite3.Connection, report: dict) -> int:
    """The snapshot the reported run checked."""
    return conn.execute("SELECT snapshot_id FROM runs WHERE run_id = ?", (report["run_id"],)).fetchone()[0]


def scan_seconds(conn: sqlite3.Connection, sql: str, snapshot_id: int, repeats: int = 3) -> tuple[float, int]:
    """The plain-scan baseline: best wall seconds of ``repeats`` runs of ``sql`` (a ``count(*), <aggregate>``
    with the snapshot id as its parameter), and the count."""
    best, count = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        count, _ = conn.execute(sql, (snapshot_id,)).fetchone()
        best = min(best, time.perf_counter() - started)
    return best, count
