"""The ``loanrules`` command line: thin commands over the library.

Exit codes (DESIGN.md): 0 the run finished; 1 it finished and found
something at or above --fail-on; 2 bad input, config or usage (nothing
stored); 3 a plugin or internal error (run marked failed or partial);
4 the database is in use by another run (an addition to the contract: a
scheduler may retry). Errors are one line; LOANRULES_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import functools
import itertools
import json
import os
import re
import sqlite3
import sys
import time
import traceback
from pathlib import Path

import click
from tabulate import tabulate

import loanrules
from loanrules import ledgers, results
from loanrules.config import Config, load_config
from loanrules.docs import pack_markdown
from loanrules.errors import LoanrulesError, SnapshotRejected, UsageError  # not click's: no usage hint
from loanrules.manager import PluginManager
from loanrules.model import Check, Severity, format_fen
from loanrules.plan import Overrides
from loanrules.privacy import Masker, personal_columns
from loanrules.registry import Registry
from loanrules.run import execute_run, load_only, validate_snapshot
from loanrules.store import connect, database_lock
from loanrules.upgrade import undeclared_not_null, upgrade_database

DEFAULT_DB = "loanrules.db"
# The demo book averages ~195,000 yuan a loan; net capital near 11.5% of it is
# typical of a county cooperative, and lets the concentration checks bite.
DEMO_NET_CAPITAL_FEN_PER_LOAN = 22_500_00


class LoanrulesGroup(click.Group):
    """Turns the package's errors into one line on stderr and the contract's exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LoanrulesError as error:
            if os.environ.get("LOANRULES_DEBUG"):
                traceback.print_exc()
            _report_error(error)
            ctx.exit(error.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # `loanrules export ... | head`: the reader has had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception as error:  # an internal error: still one line, unless debugging
            if os.environ.get("LOANRULES_DEBUG"):
                traceback.print_exc()
            click.echo(f"Error: internal error: {type(error).__name__}: {error} "
                       f"(set LOANRULES_DEBUG=1 for the traceback)", err=True)
            ctx.exit(3)


def _report_error(error: LoanrulesError) -> None:
    click.echo(f"Error: {error}", err=True)
    if isinstance(error, SnapshotRejected):
        for problem in error.problems:
            click.echo(f"  {problem}", err=True)
        if error.total > len(error.problems):
            click.echo(f"  ... and {error.total - len(error.problems)} more", err=True)


@click.group(cls=LoanrulesGroup)
@click.version_option(loanrules.__version__, prog_name="loanrules",
                      message=f"%(prog)s %(version)s, SQLite {sqlite3.sqlite_version}")
@click.option("--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              envvar="LOANRULES_PLUGINS_DIR", help="Also load every .py file in this directory as a plugin.")
@click.pass_context
def cli(ctx, plugins_dirs):
    """Nightly rules for the loan books of rural credit cooperatives.

    Load the night's snapshot (a directory of CSV files), run the enabled
    check, classification and collection-strategy plugins, and keep every
    result in one SQLite database.
    """
    ctx.obj = _Session(tuple(plugins_dirs))


class _Session:
    """Plugins are loaded once, on first use, so `--help` stays fast."""

    def __init__(self, plugins_dirs: tuple[Path, ...]):
        self.plugins_dirs = plugins_dirs

    @functools.cached_property
    def manager(self) -> PluginManager:
        return PluginManager(self.plugins_dirs)

    @functools.cached_property
    def registry(self) -> Registry:
        return Registry.from_plugins(self.manager)


pass_session = click.make_pass_decorator(_Session)


# ------------------------------------------------------------ shared options

def db_option(command):
    return click.option("--db", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False),
                        envvar="LOANRULES_DB", help="The results database.")(command)


def config_option(command):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        help="The cooperative's TOML config (see config/example-cooperative.toml).")(command)


def run_option(command):
    return click.option("--run", "run_id", type=int, help="Run id (default: the latest finished run).")(command)


def json_option(command):
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON instead of a table.")(command)


def load_options(command):
    # applied last to first, so --help lists --as-of first
    command = click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")(command)
    command = click.option("--max-problems", type=int, default=200, show_default=True,
                           help="How many input problems to list (all are counted).")(command)
    command = click.option("--wait", "wait_seconds", type=float, default=0, show_default=True,
                           help="Seconds to wait for another run holding the database.")(command)
    command = click.option("--quarantine", is_flag=True,
                           help="Leave bad rows out and record them in the quarantine table, instead of "
                                "refusing the whole snapshot.")(command)
    return click.option("--as-of", required=True, help="The snapshot's as-of date (YYYY-MM-DD).")(command)


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def show(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f}s] {message}", err=True)

    return show


def _echo_rows(rows, headers, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([dict(zip(headers, row)) for row in rows], ensure_ascii=False, indent=2))
    elif rows:
        click.echo(tabulate(rows, headers=headers))
    else:
        click.echo("(none)")


# ------------------------------------------------------------ run, load, validate

@cli.command()
@click.argument("snapshot_dir", type=click.Path(file_okay=False, path_type=Path))
@load_options
@config_option
@click.option("--pack", "packs", multiple=True, help="Run this pack (repeatable). Default: the config's packs, "
                                                     "else every installed pack.")
@db_option
@click.option("--fail-on", type=click.Choice(["info", "warning", "critical"]),
              help="Exit 1 when a finding of this severity or worse is found.")
@click.option("--param", "params", multiple=True, metavar="CHECK.PARAM=VALUE", help="Override a parameter.")
@click.option("--severity", "severities", multiple=True, metavar="CHECK=LEVEL", help="Override a severity.")
@click.option("--enable", multiple=True, metavar="CHECK", help="Run a check that is in no selected pack.")
@click.option("--disable", multiple=True, metavar="CHECK", help="Do not run this check.")
@json_option
@pass_session
def run(session, snapshot_dir, as_of, quarantine, wait_seconds, max_problems, quiet, config_path, packs, db,
        fail_on, params, severities, enable, disable, as_json):
    """Load SNAPSHOT_DIR and run the selected packs; print a summary."""
    config = load_config(config_path)
    overrides = Overrides.parse(params, severities, enable, disable)
    result = execute_run(db, snapshot_dir, as_of=as_of, config=config, registry=session.registry, packs=packs,
                         overrides=overrides, quarantine=quarantine, wait_seconds=wait_seconds,
                         max_problems=max_problems, progress=_progress(quiet))
    _print_run(result, as_json, db)
    _note_undeclared(db, session.registry)
    click.get_current_context().exit(result.exit_code(Severity.parse(fail_on) if fail_on else None))


def _print_run(result, as_json: bool, db: str) -> None:
    if as_json:
        click.echo(json.dumps({
            "run_id": result.run_id, "status": result.status, "cooperative": result.cooperative,
            "as_of": result.as_of, "snapshot_sha256": result.snapshot.sha256,
            "rows": dict(result.snapshot.row_counts), "quarantined": result.snapshot.quarantined,
            "findings": result.findings_by_severity, "new": result.new, "persisting": result.persisting,
            "resolved": result.resolved,
            "contributions": [{"id": o.contribution_id, "kind": o.kind, "plugin": o.plugin, "status": o.status,
                               "reason": o.reason, "rows": o.rows, "seconds": o.seconds} for o in result.outcomes],
        }, ensure_ascii=False, indent=2))
        return
    for run_id in result.recovered_runs:
        click.echo(f"note: run {run_id} had died mid-way (its results were rolled back); marked failed", err=True)
    rows = [(o.contribution_id, o.kind, o.status, o.severity or "", o.rows, o.seconds, o.reason or "")
            for o in result.outcomes]
    click.echo(tabulate(rows, headers=("contribution", "kind", "status", "severity", "rows", "seconds", "note"),
                        maxcolwidths=[None, None, None, None, None, None, 60]))
    counts = result.snapshot.row_counts
    click.echo("")
    click.echo(f"run {result.run_id} {result.status}: {result.cooperative} as of {result.as_of}, "
               f"{counts.get('loans', 0)} loans, {sum(counts.values())} rows loaded"
               + (f", {result.snapshot.quarantined} rows quarantined" if result.snapshot.quarantined else ""))
    severity = ", ".join(f"{count} {level}" for level, count in sorted(
        result.findings_by_severity.items(), key=lambda item: -Severity.parse(item[0])))
    click.echo(f"findings: {severity}; {result.new} new, {result.persisting} persisting, "
               f"{result.resolved} resolved since the previous as-of")
    for contribution_id, trace in result.traces.items():
        if os.environ.get("LOANRULES_DEBUG"):
            click.echo(f"--- {contribution_id}\n{trace}", err=True)
    failed = [o for o in result.outcomes if o.status == "failed"]
    for outcome in failed:
        click.echo(f"Error: {outcome.reason}", err=True)
    click.echo(f"results in {db}: `loanrules findings --db {db}`")


@cli.command()
@click.argument("snapshot_dir", type=click.Path(file_okay=False, path_type=Path))
@load_options
@config_option
@db_option
@pass_session
def load(session, snapshot_dir, as_of, quarantine, wait_seconds, max_problems, quiet, config_path, db):
    """Store SNAPSHOT_DIR in the database; run nothing."""
    config = load_config(config_path)
    snapshot = load_only(db, snapshot_dir, as_of=as_of, config=config, registry=session.registry,
                         quarantine=quarantine, wait_seconds=wait_seconds, max_problems=max_problems,
                         progress=_progress(quiet))
    _print_loaded(snapshot, f"stored as snapshot {snapshot.snapshot_id} in {db}")
    _note_undeclared(db, session.registry)


@cli.command(name="upgrade-db")
@click.option("--wait", "wait_seconds", type=float, default=0, show_default=True,
              help="Seconds to wait for another run holding the database.")
@db_option
@pass_session
def upgrade_db(session, wait_seconds, db):
    """Bring a database made by an earlier version up to this one.

    Adds the result columns this version reads (runs and loads do that
    themselves; the reading commands, which open the database read-only, ask
    for this instead), and rebuilds the stored snapshot tables made before
    their required columns were declared NOT NULL: once, copying every row of
    the history, in one transaction.
    """
    if not Path(db).is_file():
        raise UsageError(f"{db}: no such database")
    with database_lock(db, wait_seconds):
        conn = connect(db)
        try:
            done = upgrade_database(conn, session.registry.tables.values())
        finally:
            conn.close()
    click.echo("\n".join(f"{db}: {line}" for line in done) if done else f"{db}: already up to date")


def _note_undeclared(db: str, registry: Registry) -> None:
    """A hint on stderr when the database's snapshot tables predate their NOT NULL declarations."""
    conn = connect(db)
    try:
        tables = undeclared_not_null(conn, registry.tables.values())
    finally:
        conn.close()
    if tables:
        click.echo(f"note: {db} was made by an earlier version: its tables {', '.join(sorted(tables))} do not "
                   f"declare their required columns NOT NULL, and the checks that compare two snapshots run "
                   f"slower; `loanrules upgrade-db --db {db}` rebuilds them once", err=True)


def _print_loaded(snapshot, where: str) -> None:
    click.echo(tabulate(sorted(snapshot.row_counts.items()), headers=("table", "rows")))
    click.echo(f"{snapshot.cooperative} as of {snapshot.as_of}: {where}; sha256 {snapshot.sha256[:16]}")
    if snapshot.quarantined:
        click.echo(f"{snapshot.quarantined} row(s) quarantined ({snapshot.problem_total} problem(s)):", err=True)
        for problem in snapshot.problems:
            click.echo(f"  {problem}", err=True)


@cli.command()
@click.argument("snapshot_dir", type=click.Path(file_okay=False, path_type=Path))
@config_option
@click.option("--as-of", help="As-of date for date checks (default: today).")
@click.option("--pack", "packs", multiple=True, help="Also compile this pack's config rules.")
@click.option("--max-problems", type=int, default=200, show_default=True)
@pass_session
def validate(session, snapshot_dir, config_path, as_of, packs, max_problems):
    """Check SNAPSHOT_DIR (and the config's SQL rules) against the contract; change nothing."""
    config = load_config(config_path)
    snapshot = validate_snapshot(snapshot_dir, config=config, registry=session.registry, as_of=as_of,
                                 packs=packs, max_problems=max_problems)
    _print_loaded(snapshot, "valid, nothing stored")


# ------------------------------------------------------------ what is available

@cli.command()
@json_option
@click.option("--verbose", "-v", is_flag=True, help="Also show descriptions and parameter docs.")
@pass_session
def checks(session, as_json, verbose):
    """Every check, classifier, strategy, derivation and summary: id, severity, parameters, tables, reference."""
    registry = session.registry
    records = []
    for contribution_id, registered in sorted(registry.contributions.items()):
        item = registered.item
        records.append({
            "id": contribution_id, "kind": type(item).__name__.lower(), "plugin": registered.plugin,
            "title": item.title, "severity": str(item.severity) if isinstance(item, Check) else None,
            "params": {p.name: p.to_display(p.value) for p in item.params},
            "param_docs": {p.name: f"{p.type.value}: {p.description}".rstrip(": ") for p in item.params},
            "tables": list(item.tables), "reference": item.reference, "description": item.description,
            "packs": list(registry.packs_containing(contribution_id)),
            "evaluation": "sql" if item.sql is not None else "python",
        })
    if as_json:
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    rows = [(r["id"], r["severity"] or r["kind"], r["title"],
             ", ".join(f"{k}={v}" for k, v in r["params"].items()), ", ".join(r["tables"]), r["reference"])
            for r in records]
    click.echo(tabulate(rows, headers=("id", "severity", "title", "parameters", "tables", "reference"),
                        maxcolwidths=[None, None, 36, 30, 20, 50]))
    if verbose:
        for r in records:
            click.echo(f"\n{r['id']} ({r['plugin']}, {r['evaluation']}): {r['title']}")
            if r["description"]:
                click.echo(f"  {r['description']}")
            for name, doc in r["param_docs"].items():
                click.echo(f"  {name} = {r['params'][name]}  ({doc})")


@cli.command()
@json_option
@click.option("--markdown", "markdown_pack", metavar="NAME", help="Print the documentation of one pack.")
@pass_session
def packs(session, as_json, markdown_pack):
    """Installed packs with their versions and members."""
    registry = session.registry
    if markdown_pack:
        if markdown_pack not in registry.packs:
            raise click.BadParameter(f"no pack {markdown_pack!r} (known: {', '.join(sorted(registry.packs))})",
                                     param_hint="--markdown")
        click.echo(pack_markdown(registry, markdown_pack), nl=False)
        return
    records = [{"name": pack.name, "version": pack.version, "title": pack.title, "description": pack.description,
                "plugins": list(registry.pack_plugins[name]),
                "members": {member_id: {"params": dict(m.params), "severity": str(m.severity) if m.severity else None}
                            for member_id, m in pack.members.items()}}
               for name, pack in sorted(registry.packs.items())]
    if as_json:
        click.echo(json.dumps(records, ensure_ascii=False, indent=2, default=str))
        return
    _echo_rows([(r["name"], r["version"], r["title"], len(r["members"]), ", ".join(r["plugins"])) for r in records],
               ("pack", "version", "title", "members", "plugins"), False)


@cli.command()
@json_option
@pass_session
def plugins(session, as_json):
    """Loaded plugins: name, version, where they came from, hooks."""
    infos = session.manager.infos()
    _echo_rows([(i.name, i.version, i.source, ", ".join(i.hooks)) for i in infos],
               ("plugin", "version", "source", "hooks"), as_json)


# ------------------------------------------------------------ reading results

def _masker(session, config_path) -> Masker:
    config = load_config(config_path)
    return Masker(personal_columns(session.registry.tables.values()), config.show_personal_data)


@cli.command()
@db_option
@run_option
@click.option("--check", multiple=True, help="Check id, or a prefix such as `collateral`.")
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]), help="This severity or worse.")
@click.option("--status", type=click.Choice(["new", "persisting"]))
@click.option("--branch", help="Only loans of this branch.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many rows (0: all).")
@config_option
@json_option
@pass_session
def findings(session, db, run_id, check, severity, status, branch, limit, config_path, as_json):
    """Findings of a run, worst first."""
    conn = results.open_results(db)
    run = results.resolve_run(conn, run_id)
    filters = results.FindingFilter(tuple(check), Severity.parse(severity) if severity else None, status, branch)
    rows = results.findings(conn, run, filters, limit or None)
    masker = _masker(session, config_path)
    records = [masker.row(dict(row)) for row in rows]
    if as_json:
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    click.echo(f"run {run['run_id']}: {run['cooperative']} as of {run['as_of']} ({run['status']})")
    _echo_rows([(r["check_id"], r["severity"], r["status"], r["loan_id"] or r["borrower_id"] or
                 r["collateral_id"] or "", r["branch_id"] or "", r["message"]) for r in records],
               ("check", "severity", "status", "subject", "branch", "message"), False)


DIFF_FINDING_KEYS = ("check_id", "severity", "loan_id", "borrower_id", "collateral_id", "message")
DIFF_CSV_COLUMNS = ("change", *DIFF_FINDING_KEYS, "details", "first_seen")


@cli.command()
@click.argument("run_a", type=int, required=False)
@click.argument("run_b", type=int, required=False)
@db_option
@click.option("--check", multiple=True, help="Only findings of this check id, or a prefix such as `collateral` "
                                             "(repeatable); class migrations are always whole.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default=None,
              help="table (default) for people; json: everything; csv: the findings that changed, a row each "
                   "with a `change` column (new or resolved).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Table: list at most this many findings, upgrades and downgrades each (0: all).")
@config_option
@json_option
@pass_session
def diff(session, run_a, run_b, db, check, fmt, limit, config_path, as_json):
    """What changed between two runs of a cooperative (default: the latest run and its previous as-of).

    Findings new and resolved, per check and per severity; loans' class migrations (a transition matrix
    from the older run's class to the newer's, by loan: counts and outstanding in yuan, loans new to the
    book and gone from it) with the upgrades and downgrades. A loan's class is its run's computed class
    when the run classified loans, else its recorded class. Names are masked unless the config sets
    [privacy] show_personal_data = true.
    """
    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} disagree: give one")
    fmt = "json" if as_json else (fmt or "table")
    conn = results.open_results(db)
    if run_a is not None and run_b is None:
        raise click.UsageError("give two runs, or none for the latest and its previous")
    if run_a is None:
        newer = results.resolve_run(conn, None)
        older = results.previous_run(conn, newer)
        if older is None:
            raise click.ClickException(f"run {newer['run_id']} has no previous as-of to compare with")
    else:
        older, newer = results.resolve_run(conn, run_a), results.resolve_run(conn, run_b)
        if (older["as_of"], older["run_id"]) > (newer["as_of"], newer["run_id"]):
            older, newer = newer, older
    result = results.diff(conn, older, newer, tuple(check))
    masker = _masker(session, config_path)

    def findings(items, change=None):
        keys = (*DIFF_FINDING_KEYS, "details", "first_seen")
        rows = [masker.row({k: row[k] for k in keys}) for row in items]
        return [{"change": change, **row} for row in rows] if change else rows

    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=DIFF_CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(findings(result.new, "new"))
        writer.writerows(findings(result.resolved, "resolved"))
        return
    migrations = results.class_migrations(conn, older, newer)

    def moves(items):
        return [masker.row({**{k: v for k, v in item.items() if k != "outstanding_fen"},
                            "outstanding_yuan": format_fen(item["outstanding_fen"])}) for item in items]

    if fmt == "json":
        document = {
            "older": older["run_id"], "newer": newer["run_id"], "new": findings(result.new),
            "resolved": findings(result.resolved),
            "per_check": [dict(zip(("check_id", "new", "resolved", "persisting"), r)) for r in result.per_check],
            "per_severity": [dict(zip(("severity", "new", "resolved", "persisting"), r))
                             for r in result.per_severity],
            "check_filter": list(result.checks),
            "cooperative": newer["cooperative"], "older_as_of": older["as_of"], "newer_as_of": newer["as_of"],
            "class_migrations": {
                "basis": migrations.basis, "rows": migrations.rows, "columns": migrations.columns,
                "matrix": [{"from": f, "to": t, "loans": n, "outstanding_yuan": format_fen(fen)}
                           for (f, t), (n, fen) in sorted(migrations.cells.items(), key=_cell_order(migrations))],
                "new": _migration_total(migrations, results.NEW, 0),
                "gone": _migration_total(migrations, results.GONE, 1),
                "gone_written_off": {"loans": migrations.gone_written_off[0],
                                     "outstanding_yuan": format_fen(migrations.gone_written_off[1])},
                "upgrades": moves(migrations.upgrades), "downgrades": moves(migrations.downgrades),
            },
        }
        # written as it is encoded: a diff of a million changes never sits in memory as one string
        for chunk in json.JSONEncoder(ensure_ascii=False, indent=2).iterencode(document):
            sys.stdout.write(chunk)
        sys.stdout.write("\n")
        return
    shown = limit or None
    click.echo(f"{newer['cooperative']}: run {older['run_id']} ({older['as_of']}) -> run {newer['run_id']} "
               f"({newer['as_of']})" + (f"; findings of {', '.join(result.checks)}" if result.checks else ""))
    click.echo(f"\nclass migrations (rows: run {older['run_id']}'s {migrations.basis['older']} class, columns: run "
               f"{newer['run_id']}'s {migrations.basis['newer']} class)")
    if not migrations.cells:
        click.echo("(no loans on either book)")
    else:
        click.echo("loans:")
        click.echo(_matrix(migrations, 0))
        click.echo("outstanding (yuan):")
        click.echo(_matrix(migrations, 1))
        if migrations.gone_written_off[0]:
            click.echo(f"of the gone: {migrations.gone_written_off[0]} written off "
                       f"({format_fen(migrations.gone_written_off[1])} yuan)")
    for title, items in (("downgrades", migrations.downgrades), ("upgrades", migrations.upgrades)):
        click.echo(f"\n{title}: {len(items)}" + (" (largest first)" if items else ""))
        if items:
            click.echo(_table(moves(items[:shown]), {"loan_id": "loan", "borrower_id": "borrower", "name": "name",
                                                     "branch_id": "branch", "from_class": "from", "to_class": "to",
                                                     "outstanding_yuan": "outstanding (yuan)"}))
        if shown and len(items) > shown:
            click.echo(f"... {len(items) - shown} more (--limit 0 or --format json for all)")
    click.echo("\nfindings per severity:")
    _echo_rows(result.per_severity, ("severity", "new", "resolved", "persisting"), False)
    click.echo("\nfindings per check:")
    _echo_rows(result.per_check, ("check", "new", "resolved", "persisting"), False)
    for title, items in (("new", result.new), ("resolved", result.resolved)):
        click.echo(f"\n{title}: {len(items)}")
        for row in findings(items[:shown]):
            subject = row["loan_id"] or row["borrower_id"] or row["collateral_id"] or "portfolio"
            click.echo(f"  {row['check_id']}  {subject}  {row['message']}")
        if shown and len(items) > shown:
            click.echo(f"  ... {len(items) - shown} more (--limit 0, --format json or csv for all)")


def _cell_order(migrations):
    rows, columns = migrations.rows, migrations.columns
    return lambda item: (rows.index(item[0][0]), columns.index(item[0][1]))


def _migration_total(migrations, label: str, side: int) -> dict:
    loans, fen = migrations.total(label, side)
    return {"loans": loans, "outstanding_yuan": format_fen(fen)}


def _matrix(migrations, index: int) -> str:
    """One face of the transition matrix (0: loans, 1: outstanding in yuan), with totals."""
    def show(value: int) -> str:
        return format_fen(value) if index else str(value)

    columns = migrations.columns
    rows = []
    for label in migrations.rows:
        values = [migrations.cells.get((label, column), (0, 0))[index] for column in columns]
        rows.append((label, *(show(v) if v else "" for v in values), show(sum(values))))
    totals = [migrations.total(column, 1)[index] for column in columns]
    rows.append(("total", *map(show, totals), show(sum(totals))))
    return tabulate(rows, headers=("from \\ to", *columns, "total"), disable_numparse=True,
                    colalign=("left", *["right"] * (len(columns) + 1)))


WORKBOOK, REPORT_TABLES = "workbook", "report-tables"


@cli.command()
@click.argument("what", type=click.Choice([*sorted(results.EXPORTS), WORKBOOK, REPORT_TABLES]))
@db_option
@run_option
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None,
              help="csv (the default) or json; the workbook is always XLSX.")
@click.option("-o", "--output", type=click.Path(), help="File to write (default: stdout); required for the "
                                                        "workbook; a directory for report-tables as CSV.")
@config_option
@pass_session
def export(session, what, db, run_id, fmt, output, config_path):
    """Write a run's findings, assessments or tasks as CSV or JSON (amounts as decimal strings), or the
    whole run as one XLSX workbook (`export workbook -o FILE.xlsx`): a sheet with the run's provenance,
    then findings, assessments, tasks, each stored summary and the report's tables, money as numbers of
    yuan, dates as dates. `export report-tables` writes the report's tables alone: a CSV file each into
    the directory -o, or one JSON document.

    Names and ID numbers are masked unless the config sets [privacy] show_personal_data = true.
    """
    conn = results.open_results(db)
    run = results.resolve_run(conn, run_id)
    masker = _masker(session, config_path)
    if what == WORKBOOK:
        if fmt is not None:
            raise click.UsageError("--format does not apply to the workbook: it is always XLSX")
        if not output:
            raise click.UsageError("the workbook is a binary file: give -o FILE.xlsx")
        from loanrules import workbook  # XlsxWriter is loaded only for the workbook

        written = workbook.write_run_workbook(conn, run, masker, output, titles=_titles(session))
        click.echo(f"{output}: run {run['run_id']} of {run['cooperative']} as of {run['as_of']}, "
                   f"{len(written) + 1} sheets: {workbook.RUN_SHEET}, "
                   + ", ".join(f"{w.name} ({w.rows})" for w in written))
        return
    if what == REPORT_TABLES:
        _export_report_tables(session, conn, run, masker, fmt or "csv", output)
        return
    if output and Path(output).is_dir():
        raise click.UsageError(f"{output} is a directory: give a file to write")
    rows = (masker.row(row) for row in results.export_rows(conn, what, run))
    columns = results.export_columns(what)
    with _writing(output) if output else contextlib.nullcontext():
        handle = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
        with contextlib.closing(handle) if output else contextlib.nullcontext(handle):
            if (fmt or "csv") == "csv":
                writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            else:
                handle.write("[")
                for index, row in enumerate(rows):  # streamed: a million findings never sit in memory
                    handle.write(("," if index else "") + "\n  " + json.dumps(row, ensure_ascii=False))
                handle.write("\n]\n")


@contextlib.contextmanager
def _writing(path):
    """An error writing the file ``path`` (no such directory, no permission, disk full) as one line that
    names it, exit 2 like the workbook's, not an internal error."""
    try:
        yield
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None


def _export_report_tables(session, conn, run, masker, fmt: str, output: str | None) -> None:
    """The report's tables, whole: a CSV file each in the directory ``output``, or one JSON document."""
    from loanrules import workbook

    sheets = workbook.report_sheets(conn, run, masker, _titles(session))
    if fmt == "csv":
        if not output:
            raise click.UsageError("report-tables as CSV are a file each: give -o DIRECTORY")
        directory = Path(output)
        if directory.exists() and not directory.is_dir():
            raise click.UsageError(f"{output} is a file: give a directory for the CSV files")
        with _writing(directory):
            directory.mkdir(parents=True, exist_ok=True)
        for sheet in sheets:
            headings, rows = workbook.plain_table(sheet)
            path = directory / (re.sub(r"[^\w.-]", "_", sheet.name) + ".csv")
            with _writing(path), open(path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=headings, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
        click.echo(f"{output}: {len(sheets)} tables of run {run['run_id']} ({run['as_of']}): "
                   + ", ".join(f"{sheet.name}.csv" for sheet in sheets))
        return
    tables = []
    for sheet in sheets:
        headings, rows = workbook.plain_table(sheet)
        tables.append({"id": sheet.name, "source": sheet.source, "columns": headings, "rows": list(rows)})
    text = json.dumps({"run_id": run["run_id"], "cooperative": run["cooperative"], "as_of": run["as_of"],
                       "tables": tables}, ensure_ascii=False, indent=2, default=str)
    if output:
        with _writing(output):
            Path(output).write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)


@cli.command(name="summaries")
@click.argument("summary_ids", nargs=-1)
@db_option
@run_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="csv needs exactly one summary.")
@config_option
@pass_session
def summaries_command(session, summary_ids, db, run_id, fmt, config_path):
    """A run's report figures (collateral coverage by type, agency scorecard ...), as stored with the run.

    SUMMARY_IDS are ids or prefixes (`collateral`); default all. Money in yuan; shares as percentages
    in the table, as fractions in CSV and JSON.
    """
    conn = results.open_results(db)
    run = results.resolve_run(conn, run_id)
    stored = results.summaries(conn, run, summary_ids, _masker(session, config_path))
    if summary_ids and not stored:
        raise click.ClickException(f"run {run['run_id']} stored no summary {', '.join(summary_ids)} "
                                   f"(see `loanrules checks`: kind summary)")
    if fmt == "csv":
        if len(stored) != 1:
            raise click.UsageError(f"--format csv writes one summary; this selects {len(stored)}: "
                                   f"{', '.join(s.summary_id for s in stored) or 'none'}")
        rows = [results.readable_summary_row(row) for row in stored[0].rows]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    if fmt == "json":
        click.echo(json.dumps({"run_id": run["run_id"], "as_of": run["as_of"], "summaries": [
            {"id": s.summary_id, "title": _title(session, s.summary_id),
             "rows": [results.readable_summary_row(row) for row in s.rows]} for s in stored]},
            ensure_ascii=False, indent=2))
        return
    click.echo(f"run {run['run_id']}: {run['cooperative']} as of {run['as_of']}")
    if not stored:
        click.echo("(no summaries stored: run a pack with summaries, e.g. cooperative-baseline)")
    for summary in stored:
        click.echo(f"\n{summary.summary_id}: {_title(session, summary.summary_id)}")
        rows = [results.readable_summary_row(row, percent=True) for row in summary.rows]
        # numbers as stored: tabulate would turn 46430300.00 yuan into 4.64303e+07
        click.echo(tabulate([tuple(r.values()) for r in rows], headers=tuple(rows[0]), disable_numparse=True)
                   if rows else "(none)")


@cli.command()
@db_option
@run_option
@click.option("--format", "fmt", type=click.Choice(["html", "md"]),
              help="html (one self-contained file) or md (Markdown). Default: html when -o ends in .html, else md.")
@click.option("-o", "--output", metavar="FILE", help="File to write; `-` or none: Markdown on stdout.")
@config_option
@pass_session
def report(session, db, run_id, fmt, output, config_path):
    """The analysis report of a run: the book at a glance, class migration, where the non-performing loans
    come from, recovery, collateral, village collectives, inspections, collection, findings, provenance.

    HTML is one file with its styles and SVG charts inline: it opens offline and prints. Names and ID numbers
    are masked unless the config sets [privacy] show_personal_data = true.
    """
    from loanrules.report import build_report
    from loanrules.report.html import render_html
    from loanrules.report.markdown import render_markdown

    to_stdout = output in (None, "-")
    if fmt is None:
        fmt = "html" if not to_stdout and output.lower().endswith((".html", ".htm")) else "md"
    if fmt == "html" and to_stdout:
        raise click.UsageError("--format html needs a file: -o report.html")
    conn = results.open_results(db)
    run = results.resolve_run(conn, run_id)
    masker = _masker(session, config_path)
    document = build_report(conn, run, masker, titles=_titles(session))
    text = render_html(document) if fmt == "html" else render_markdown(document)
    if to_stdout:
        click.echo(text, nl=False)
        return
    with _writing(output):
        Path(output).write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}: the {'HTML' if fmt == 'html' else 'Markdown'} report of run {run['run_id']} "
               f"({run['cooperative']}, as of {run['as_of']})", err=True)


def _titles(session) -> dict[str, str]:
    """Every registered contribution's title by its id (summaries, checks ...)."""
    return {cid: registered.item.title for cid, registered in session.registry.contributions.items()}


def _title(session, contribution_id: str) -> str:
    registered = session.registry.get(contribution_id)
    return registered.item.title if registered else "(its plugin is not installed)"


# ------------------------------------------------------------ tasks and ledgers

def format_option(command):
    return click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                        show_default=True, help="A table for people; CSV or JSON (amounts as decimal yuan "
                                                "strings) for files.")(command)


def _write_records(records: list[dict], fmt: str, columns: tuple[str, ...]) -> None:
    """CSV or JSON of ledger rows already made readable (money as ``*_yuan`` decimal strings)."""
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    else:
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))


def _readable_columns(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name[:-4] + "_yuan" if name.endswith("_fen") else name for name in columns)


def _table(records: list[dict], columns: dict[str, str], widths: dict[str, int] | None = None) -> str:
    """A table for people: ``columns`` maps each record key to its heading; long texts wrap at ``widths``."""
    if not records:
        return "(none)"
    rows = [tuple("" if r[key] is None else r[key] for key in columns) for r in records]
    # counts and amounts to the right, as on a ledger
    align = ["right" if key.endswith("_yuan") or isinstance(records[0][key], int) else "left" for key in columns]
    # disable_numparse: amounts stay exactly as written (tabulate would print 46430300.00 as 4.64303e+07)
    return tabulate(rows, headers=tuple(columns.values()), disable_numparse=True, colalign=align,
                    maxcolwidths=[(widths or {}).get(key) for key in columns])


TASK_TABLE = {"borrower_id": "borrower", "name": "name", "step": "step", "why": "why", "due_date": "due",
              "days_overdue": "days\noverdue", "priority": "priority", "loan_ids": "loans", "opened_on": "opened"}
HOUSEHOLD_TABLE = {"as_of": "as of", "loans": "loans", "outstanding_yuan": "outstanding",
                   "interest_arrears_yuan": "interest\narrears", "worst_class": "worst class",
                   "worst_recovery_category": "recovery", "key_household_level": "key\nhousehold",
                   "plan": "plan (open steps)", "closed_tonight": "closed that night", "action_kinds": "actions",
                   "recovered_yuan": "recovered"}
OFFICER_TABLE = {"officer_id": "officer", "npl_lent_count": "NPL lent\nloans", "npl_lent_yuan": "NPL lent\nyuan",
                 "npl_collecting_count": "NPL to collect\nloans", "npl_collecting_yuan": "NPL to collect\nyuan",
                 "recovered_yuan": "recovered\nyuan", "actions": "actions", "tasks_open": "tasks\nopen",
                 "tasks_overdue": "tasks\noverdue", "tasks_done_on_time": "done\non time",
                 "tasks_done_late": "done\nlate"}


@cli.command(name="tasks")
@db_option
@run_option
@click.option("--assignee", help="Only this assignee's tasks (an officer id, or a level of the key households).")
@click.option("--overdue", is_flag=True, help="Only tasks past their due date.")
@format_option
@config_option
@pass_session
def tasks_command(session, db, run_id, assignee, overdue, fmt, config_path):
    """Today's open collection tasks, by assignee: overdue first, then by priority.

    The table's "why" says in a few words why the strategy chose the step; CSV and JSON give its `details`
    in full. Names are masked unless the config sets [privacy] show_personal_data = true.
    """
    conn = results.open_results(db)
    run = results.resolve_run(conn, run_id)
    ledgers.require_plan(conn, run)
    masker = _masker(session, config_path)
    records = [masker.row(row) for row in ledgers.open_tasks(conn, run, assignee, overdue)]
    if fmt != "table":
        if fmt == "json":
            records = [{**r, "loan_ids": json.loads(r["loan_ids"] or "[]"),
                        "details": json.loads(r["details"]) if r["details"] else None} for r in records]
        _write_records(records, fmt, ledgers.TASK_COLUMNS)
        return
    overdue_count = sum(r["days_overdue"] > 0 for r in records)
    click.echo(f"run {run['run_id']}: {run['cooperative']} as of {run['as_of']}: {len(records)} open task(s), "
               f"{overdue_count} overdue")
    if not records:
        click.echo("(none)")
    for who, group in itertools.groupby(records, key=lambda r: r["assignee"]):
        group = [{**r, "loan_ids": ", ".join(json.loads(r["loan_ids"] or "[]")), "why": ledgers.why(r["details"])}
                 for r in group]
        late = sum(r["days_overdue"] > 0 for r in group)
        click.echo(f"\n{who or '(unassigned)'}: {len(group)} open" + (f", {late} overdue" if late else ""))
        click.echo(_table(group, TASK_TABLE, {"loan_ids": 30, "why": 30}))


@cli.group()
def ledger():
    """Collection ledgers (REFERENCE.md §4): per household over time, per officer for a period."""


@ledger.command(name="households")
@db_option
@run_option
@click.option("--borrower", help="Only this borrower (default: every one with a non-performing loan or a task).")
@click.option("--last", type=click.IntRange(min=1), help="Only the latest N runs up to --run.")
@format_option
@config_option
@pass_session
def ledger_households(session, db, run_id, borrower, last, fmt, config_path):
    """Each household's loans, worst class, recovery category, plan, tasks closed, actions and amounts
    recovered, a row per run of its cooperative, oldest first.

    Names are masked unless the config sets [privacy] show_personal_data = true.
    """
    conn = results.open_results(db)
    run = results.resolve_run(conn, run_id)
    masker = _masker(session, config_path)
    rows = ledgers.household_ledger(conn, run, borrower, last)
    records = [results.readable_summary_row(masker.row(row)) for row in rows]
    if not ledgers.made_plans(conn, run):
        click.echo("note: no collection strategy ran up to this run, so plans and tasks are empty "
                   "(run a pack with a collection strategy)", err=True)
    columns = _readable_columns(ledgers.HOUSEHOLD_COLUMNS)
    if fmt != "table":
        _write_records(records, fmt, columns)
        return
    click.echo(f"run {run['run_id']}: {run['cooperative']} as of {run['as_of']}: "
               f"{len({r['borrower_id'] for r in records})} household(s); amounts in yuan, actions and "
               f"recoveries in each run's period")
    if not records:
        click.echo("(none)")
    for borrower_id, group in itertools.groupby(records, key=lambda r: r["borrower_id"]):
        group = list(group)
        click.echo(f"\n{borrower_id} {group[-1]['name'] or ''}".rstrip())
        click.echo(_table(group, HOUSEHOLD_TABLE, {"plan": 40, "closed_tonight": 30, "action_kinds": 24}))


@ledger.command(name="officers")
@db_option
@run_option
@click.option("--since", metavar="DATE", help="Start the period on this day (default: the day after the previous "
                                              "run's as-of).")
@format_option
def ledger_officers(db, run_id, since, fmt):
    """Each officer's non-performing loans by lending and by collection responsibility, amounts recovered and
    actions in the period, tasks open, overdue, and done on time or late: the basis of the linked assessment."""
    conn = results.open_results(db)
    run = results.resolve_run(conn, run_id)
    result = ledgers.officer_ledger(conn, run, since)
    if not ledgers.made_plans(conn, run):
        click.echo("note: no collection strategy ran up to this run, so the task counts are 0 "
                   "(run a pack with a collection strategy)", err=True)
    records = [results.readable_summary_row(row) for row in result.rows]
    columns = _readable_columns(ledgers.OFFICER_COLUMNS)
    if fmt != "table":
        _write_records(records, fmt, columns)
        return
    click.echo(f"run {run['run_id']}: {run['cooperative']} as of {run['as_of']}; period "
               f"{result.period_from or 'from the start'} to {result.as_of}")
    click.echo(_table(records, OFFICER_TABLE))


# ------------------------------------------------------------ demo

DEMO_MONTHS = 3  # month-ends up to the demo's as-of: enough history for new, persisting and resolved


@cli.command()
@click.option("--loans", type=int, default=2000, show_default=True, help="Size of the synthetic book.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default="loanrules-demo",
              show_default=True, help="Where to write the demo snapshots and database.")
@click.option("--seed", type=int, default=None, help="Random seed (default: the fixed demo seed).")
@click.option("--months", type=click.IntRange(1, 24), default=DEMO_MONTHS, show_default=True,
              help="Nights to run, one month apart, ending on the demo's as-of.")
@click.option("-q", "--quiet", is_flag=True)
@pass_session
def demo(session, loans, directory, seed, months, quiet):
    """Generate a synthetic cooperative over a few month-ends, run every pack each night, print the summary."""
    from loanrules import demo as demo_book

    as_of_dates = _month_ends(demo_book.DEMO_AS_OF, months)
    kwargs = {"seed": seed} if seed is not None else {}
    snapshots = demo_book.write_history(directory / "snapshots", loans=loans, as_of_dates=as_of_dates, **kwargs)
    config = Config(cooperative="Demo Rural Credit Cooperative",
                    net_capital=max(loans, 1) * DEMO_NET_CAPITAL_FEN_PER_LOAN)
    db = directory / "loanrules.db"
    for snapshot_dir, as_of in zip(snapshots, as_of_dates):
        if not quiet:
            click.echo(f"demo: running {snapshot_dir} as of {as_of}", err=True)
        result = execute_run(db, snapshot_dir, as_of=as_of.isoformat(), config=config, registry=session.registry,
                             progress=_progress(quiet))
    _print_run(result, False, str(db))
    click.echo(f"next: `loanrules report --db {db} -o report.html`, `loanrules tasks --db {db}`, "
               f"`loanrules diff --db {db}`, `loanrules export workbook --db {db} -o run.xlsx`")
    click.get_current_context().exit(result.exit_code(None))


def _month_ends(last: datetime.date, count: int) -> list[datetime.date]:
    """``count`` as-of dates a month apart, the last being ``last`` (earlier ones are month-ends)."""
    dates = [last]
    first_of_month = last.replace(day=1)
    for _ in range(count - 1):
        month_end = first_of_month - datetime.timedelta(days=1)
        dates.append(month_end)
        first_of_month = month_end.replace(day=1)
    return sorted(dates)


def main() -> None:
    cli(prog_name="loanrules")


if __name__ == "__main__":  # pragma: no cover
    main()
