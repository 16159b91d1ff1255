"""The sections on the run itself: findings by check and severity (new, persisting, resolved since the
previous run), and the run's provenance."""

from __future__ import annotations

import json

from loanrules.report.book import Book
from loanrules.report.model import Chart, Column, Highlight, Section, Series, Table, drop_blank
from loanrules.run import RESOLVED_SQL

SEVERITIES = ("critical", "warning", "info")


def findings(book: Book) -> Section:
    section_id, title = "findings", "Findings by check and severity"
    counts = book.q("SELECT check_id, severity, status, count(*) FROM findings WHERE run_id = :run_id "
                    "GROUP BY 1, 2, 3")
    resolved = {}
    if book.previous is not None:
        # the core's own rule for "resolved" (a check that ran cleanly no longer reports the subject), per check
        resolved = dict(book.q(f"SELECT check_id, count(*) FROM ({RESOLVED_SQL}) GROUP BY check_id",
                               older=book.previous["run_id"], newer=book.run["run_id"]))
    checks_ran = [cid for cid, v in book.contributions.items() if v[0] == "check"]
    if not counts and not resolved:
        if not checks_ran:
            return Section.without_data(section_id, title, "no check ran in this run")
        return Section.without_data(section_id, title, f"the {len(checks_ran)} checks of this run found "
                                                       "nothing" + (", and nothing was resolved" if
                                                                    book.previous is not None else ""))
    per_check: dict[str, dict[str, int]] = {}
    for check_id, severity, status, n in counts:
        entry = per_check.setdefault(check_id, {})
        entry[severity] = entry.get(severity, 0) + n
        entry[status] = entry.get(status, 0) + n
    for check_id, n in resolved.items():
        per_check.setdefault(check_id, {})["resolved"] = n
    rows = []
    for check_id, entry in per_check.items():
        total = sum(entry.get(s, 0) for s in SEVERITIES)
        rows.append((check_id, book.title_of(check_id), *(entry.get(s, 0) for s in SEVERITIES), total,
                     entry.get("new", 0), entry.get("persisting", 0), entry.get("resolved", 0)))
    rows.sort(key=lambda r: (-r[2], -r[3], -r[4], r[0]))
    table = drop_blank(Table("findings_by_check", "Findings by check", (
        Column("check_id", "check"), Column("title", "title"),
        *(Column(s, s, "count") for s in SEVERITIES), Column("total", "total", "count"),
        Column("new", "new", "count"), Column("persisting", "persisting", "count"),
        Column("resolved", "resolved", "count"),
    ), rows, note="New: not found by the previous run; resolved: found by the previous run, and its check ran "
                  "cleanly in this one without finding it again." if book.previous is not None else
                  "No previous run: every finding is new."))
    with_findings = sorted((r for r in rows if r[5]), key=lambda r: (-r[5], r[0]))[:40]
    charts = [Chart("findings-by-severity", "Findings by check and severity", "stacked",
                    [r[0] for r in with_findings],
                    [Series(s, [r[2 + i] for r in with_findings]) for i, s in enumerate(SEVERITIES)],
                    description="This run's findings of each check, by severity, most first"
                                + (" (the 40 checks with the most)." if len([r for r in rows if r[5]]) > 40
                                   else "."), table="findings_by_check")]
    changed = sorted((r for r in rows if r[6] or r[8]), key=lambda r: (-(r[6] + r[8]), r[0]))[:40]
    if book.previous is not None and changed:
        charts.append(Chart("findings-new-resolved", f"New and resolved since {book.previous['as_of']}",
                            "stacked", [r[0] for r in changed],
                            [Series("new", [r[6] for r in changed]), Series("resolved", [r[8] for r in changed])],
                            description="Findings new in this run, and findings of the previous run resolved in "
                                        "this one, by check.", table="findings_by_check", show_total=False))
    new_critical = book.q("""
        SELECT check_id, loan_id, borrower_id, collateral_id, message FROM findings
        WHERE run_id = :run_id AND severity = 'critical' AND status = 'new'
        ORDER BY check_id, rowid LIMIT :limit
    """, limit=book.display_limit or -1)
    n_new_critical = sum(n for cid, severity, status, n in counts if severity == "critical" and status == "new")
    tables = [table, Table("new_critical", "New critical findings", (
        Column("check_id", "check"), Column("loan_id", "loan"), Column("borrower_id", "borrower"),
        Column("collateral_id", "collateral"), Column("message", "message"),
    ), new_critical, export=False, note=(f"The first {len(new_critical)} of {n_new_critical}: "
                                         "`loanrules findings --severity critical --status new` lists them all."
                                         if n_new_critical > len(new_critical) else ""))]
    totals = {s: sum(r[2 + i] for r in rows) for i, s in enumerate(SEVERITIES)}
    highlights = [
        Highlight("Critical", f"{totals['critical']:,}", status="breach" if totals["critical"] else "ok",
                  status_text="critical findings to act on" if totals["critical"] else "none"),
        Highlight("Warning", f"{totals['warning']:,}"),
        Highlight("Info", f"{totals['info']:,}"),
        Highlight("New / persisting / resolved",
                  f"{sum(r[6] for r in rows):,} / {sum(r[7] for r in rows):,} / {sum(r[8] for r in rows):,}",
                  f"since run {book.previous['run_id']} ({book.previous['as_of']})" if book.previous is not None
                  else "no previous run"),
    ]
    intro = f"Every finding of this run, by check ({len(checks_ran)} checks ran)."
    return Section(section_id, title, intro, highlights, tables, charts)


def provenance(book: Book) -> Section:
    section_id, title = "provenance", "Provenance of this run"
    run = book.run
    snapshot = book.conn.execute("SELECT sha256, source, loaded_at, quarantined FROM snapshots "
                                 "WHERE snapshot_id = ?", (run["snapshot_id"],)).fetchone()
    options = json.loads(run["options"] or "{}")
    overrides = "; ".join(f"{check}.{name}={value}" for check, values in (options.get("params") or {}).items()
                          for name, value in values.items()) if isinstance(options.get("params"), dict) else ""
    facts = [
        ("cooperative", run["cooperative"]), ("as of", run["as_of"]), ("run", str(run["run_id"])),
        ("status", run["status"]), ("started", run["started_at"]), ("finished", run["finished_at"]),
        ("previous run", f"{book.previous['run_id']} (as of {book.previous['as_of']})" if book.previous is not None
         else "none: the cooperative's first run"),
        ("snapshot", str(run["snapshot_id"])),
        ("snapshot sha256", run["snapshot_sha256"]),
        ("snapshot loaded from", snapshot[1] if snapshot else "(no longer stored)"),
        ("snapshot loaded at", snapshot[2] if snapshot else None),
        ("rows quarantined", str(snapshot[3] or 0) if snapshot else None),
        ("config sha256", run["config_sha256"] or "none: no config file (built-in defaults)"),
        ("command-line parameters", overrides or "none"),
        ("loanrules version", run["loanrules_version"]),
    ]
    packs = []
    for entry in json.loads(run["packs"] or "[]"):
        name, _, version = str(entry).partition("@")
        packs.append((name, version))
    kinds: dict[str, list[int]] = {}
    for kind, status, _ in book.contributions.values():
        entry = kinds.setdefault(kind, [0, 0, 0])
        entry[("ok", "skipped", "failed").index(status) if status in ("ok", "skipped", "failed") else 2] += 1
    not_ok = sorted((cid, v[0], v[1], v[2]) for cid, v in book.contributions.items() if v[1] != "ok")
    tables = [
        Table("provenance", "The run", (Column("field", "field"), Column("value", "value")), facts),
        Table("packs", "Packs and versions", (Column("pack", "pack"), Column("version", "version")), packs),
        Table("snapshot_rows", "Rows of the snapshot", (Column("table", "table"), Column("rows", "rows", "count")),
              sorted(book.row_counts.items())),
        Table("contributions", "What ran", (
            Column("kind", "kind"), Column("ok", "ok", "count"), Column("skipped", "skipped", "count"),
            Column("failed", "failed", "count"),
        ), [(kind, *values) for kind, values in sorted(kinds.items())]),
    ]
    if not_ok:
        tables.append(Table("not_run", "Skipped or failed", (
            Column("contribution_id", "contribution"), Column("kind", "kind"), Column("status", "status"),
            Column("reason", "reason"),
        ), not_ok))
    intro = ("Enough to reproduce the run: the snapshot's hash, the packs and their versions, the config's "
             "hash and the version of loanrules (the effective parameters are in the database, runs.params).")
    return Section(section_id, title, intro, (), tables)
