"""The sections on getting the money back: recovery categories and the plans (open collection tasks), and
collection progress with the key-household ledger."""

from __future__ import annotations

import json

from loanrules.report.book import Book
from loanrules.report.formatting import kind_of, label, share, word, yuan
from loanrules.report.model import Chart, Column, Highlight, Section, Series, Table
from loanrules.results import summaries
from loanrules.schema import RECOVERY_CATEGORIES
from loanrules.sqltext import NON_PERFORMING, on_book, rank_case, unrank_case

# Collection steps in the order a plan climbs them (the escalation ladder, then the village collective
# steps); a step not listed here follows, alphabetically.
STEP_ORDER = ("reminder_call", "site_visit", "guarantor_notice", "special_team", "litigation",
              "write_off_application", "village_cadre_meeting", "township_report", "land_transfer_collection")


def step_key(step: str | None) -> tuple:
    return (STEP_ORDER.index(step), "") if step in STEP_ORDER else (len(STEP_ORDER), step or "")


def recovery(book: Book) -> Section:
    section_id, title = "recovery", "Recovery categories and plans"
    categories = book.q(f"""
        SELECT a.recovery_category, count(*), coalesce(sum(l.outstanding_principal), 0),
               sum(a.required_provision)
        FROM assessments a JOIN loans l ON l.snapshot_id = :snapshot_id AND l.loan_id = a.loan_id
        WHERE a.run_id = :run_id AND (a.recovery_category IS NOT NULL OR a.risk_class IN {NON_PERFORMING})
          AND {on_book()}
        GROUP BY 1
    """)
    steps = book.q("""
        SELECT step, count(*), count(DISTINCT borrower_id), sum(due_date < :as_of), min(due_date)
        FROM collection_tasks WHERE run_id = :run_id AND status = 'open' GROUP BY step
    """)
    if not categories and not steps:
        classifiers = {cid: v for cid, v in book.contributions.items() if v[0] == "classifier"}
        if not book.classified:
            why = (book.why_not(classifiers, "classification", "cn-five-category") if classifiers else
                   "no classification ran in this run, so no loan has a recovery category, and no collection "
                   "plan was made: run the packs cn-five-category and cooperative-baseline")
        else:
            why = "no non-performing loan on the books, so no recovery category and no open collection task"
        return Section.without_data(section_id, title, why)
    tables, charts, highlights = [], [], []
    if categories:
        order = {name: i for i, name in enumerate(RECOVERY_CATEGORIES)}
        categories.sort(key=lambda r: (order.get(r[0], len(order)), label(r[0])))
        total = sum(r[2] for r in categories)
        rows = [(r[0] or "(none)", r[1], r[2], share(r[2], total), r[3]) for r in categories]
        tables.append(Table("recovery_categories", "Non-performing loans by recovery category", (
            Column("recovery_category", "recovery category"), Column("loans", "loans", "count"),
            Column("outstanding_fen", "outstanding", "money"), Column("outstanding_share", "share", "share"),
            Column("required_provision_fen", "provision required", "money"),
        ), rows, note="Computed by this run's classification for its non-performing loans on the books; "
                      "(none): non-performing without a category."))
        charts.append(Chart("recovery-categories", "Non-performing outstanding by recovery category", "bar",
                            [word(r[0]) for r in rows], [Series("outstanding", [r[2] for r in rows])],
                            unit="money",
                            description="Outstanding principal of the non-performing loans in each recovery "
                                        "category, in yuan.", table="recovery_categories"))
        for row in rows:
            highlights.append(Highlight(word(row[0]), f"{row[1]:,} loans", f"{yuan(row[2])} yuan"))
    else:
        tables.append(Table("recovery_categories", "Non-performing loans by recovery category", (
            Column("recovery_category", "recovery category"),), [],
            note="No recovery category: no classification ran in this run (run the pack cn-five-category)."
            if not book.classified else "No non-performing loan on the books: no recovery category."))
    if steps:
        steps.sort(key=lambda r: step_key(r[0]))
        tables.append(Table("open_tasks_by_step", "Open collection tasks by step (the plans)", (
            Column("step", "step"), Column("open_tasks", "open tasks", "count"),
            Column("households", "borrowers", "count"), Column("overdue", "overdue", "count"),
            Column("earliest_due", "earliest due", "date"),
        ), steps))
        cross = book.q(f"""
            WITH worst AS MATERIALIZED (
                SELECT borrower_id, max({rank_case('recovery_category', RECOVERY_CATEGORIES)}) AS rank
                FROM assessments WHERE run_id = :run_id AND recovery_category IS NOT NULL
                GROUP BY borrower_id)
            SELECT coalesce({unrank_case('w.rank', RECOVERY_CATEGORIES)}, '(none)'), t.step, count(*)
            FROM collection_tasks t LEFT JOIN worst w ON w.borrower_id = t.borrower_id
            WHERE t.run_id = :run_id AND t.status = 'open'
            GROUP BY 1, 2
        """)
        cats = sorted({c[0] for c in cross}, key=lambda c: (c not in RECOVERY_CATEGORIES,
                                                            RECOVERY_CATEGORIES.index(c)
                                                            if c in RECOVERY_CATEGORIES else 0, c))
        step_names = sorted({c[1] for c in cross}, key=step_key)
        counts = {(c[0], c[1]): c[2] for c in cross}
        tables.append(Table("plans_by_category", "Open tasks by the borrower's worst recovery category and step", (
            Column("recovery_category", "recovery category"),
            *(Column(step, word(step), "count") for step in step_names),
        ), [(cat, *(counts.get((cat, step), 0) for step in step_names)) for cat in cats],
            note="(none): the borrower has no loan with a recovery category (e.g. an early reminder)."))
        charts.append(Chart("plans-by-category", "Open collection tasks by recovery category and step", "stacked",
                            map(word, cats), [Series(word(step), [counts.get((cat, step), 0) for cat in cats])
                                   for step in step_names],
                            description="For each recovery category (the borrower's worst), its open "
                                        "collection tasks by step.", table="plans_by_category"))
    else:
        tables.append(Table("open_tasks_by_step", "Open collection tasks by step (the plans)", (
            Column("step", "step"),), [], note=book.why_not(book.outcome_of("collection"), "collection strategy",
                                                             "cooperative-baseline")))
    intro = ("The classification sorts each non-performing loan into a recovery category; the collection "
             "strategies turn them into plans, a task per borrower and step.")
    return Section(section_id, title, intro, highlights, tables, charts)


def collection(book: Book) -> Section:
    section_id, title = "collection", "Collection progress and the key-household ledger"
    progress = book.q("""
        SELECT step,
               sum(status = 'open' AND (due_date IS NULL OR due_date >= :as_of)),
               sum(status = 'open' AND due_date < :as_of),
               sum(status = 'done' AND (due_date IS NULL OR closed_on <= due_date)),
               sum(status = 'done' AND closed_on > due_date),
               sum(status = 'replaced'), sum(status = 'cured'), count(*)
        FROM collection_tasks WHERE run_id = :run_id GROUP BY step
    """)

    key = summaries(book.conn, book.run, ("collection.key_households",), book.masker)
    strategies = {cid: v for cid, v in book.contributions.items() if v[0] == "strategy"}
    if not progress and not key:
        if any(v[1] == "ok" for v in strategies.values()):
            why = "the collection strategies ran and planned nothing: no borrower needs collecting"
        elif strategies:
            why = book.why_not(strategies, "collection strategy", "cooperative-baseline")
        else:
            why = ("no collection strategy ran: run a pack with collection_tasks "
                   "(e.g. `--pack cooperative-baseline`)")
        return Section.without_data(section_id, title, why)
    tables, charts, highlights = [], [], []
    if progress:
        progress.sort(key=lambda r: step_key(r[0]))
        heads = ("open, not yet due", "open, overdue", "done on time", "done late", "replaced", "cured")
        tables.append(Table("collection_progress", "Collection tasks by step and status", (
            Column("step", "step"), Column("open_not_due", heads[0], "count"),
            Column("open_overdue", heads[1], "count"), Column("done_on_time", heads[2], "count"),
            Column("done_late", heads[3], "count"), Column("replaced", heads[4], "count"),
            Column("cured", heads[5], "count"), Column("total", "total", "count"),
        ), progress, note="Open tasks as of the run; closed ones closed in this run's period (done: the action "
                          "it asks for was recorded; replaced by another step; cured: no plan needed any more)."))
        charts.append(Chart("collection-progress", "Collection tasks by step and status", "stacked",
                            [word(r[0]) for r in progress],
                            [Series(head, [r[i + 1] for r in progress]) for i, head in enumerate(heads)],
                            description="For each step of the plans, its tasks open (not yet due, overdue) and "
                                        "closed in this run's period (done on time, done late, replaced, cured).",
                            table="collection_progress"))
        totals = [sum(r[i] for r in progress) for i in range(1, 8)]
        highlights += [
            Highlight("Open tasks", f"{totals[0] + totals[1]:,}", f"{totals[1]:,} overdue",
                      "breach" if totals[1] else "ok", "some overdue" if totals[1] else "none overdue"),
            Highlight("Done this period", f"{totals[2] + totals[3]:,}",
                      f"{totals[2]:,} on time, {totals[3]:,} late"),
        ]
    else:
        tables.append(Table("collection_progress", "Collection tasks by step and status", (Column("step", "step"),),
                            [], note="No collection task in this run."))
    if key:
        ledger = key[0]
        ids = [r.get("borrower_id") for r in ledger.rows]
        people = {r[0]: r[1:] for r in book.q(
            "SELECT borrower_id, name, id_number FROM borrowers WHERE snapshot_id = :snapshot_id "
            "AND borrower_id IN (SELECT value FROM json_each(:ids))", ids=json.dumps(ids))}
        keys = ("rank", "level", "borrower_id", "name", "id_number", "exposure_fen", "interest_arrears_fen",
                "worst_class", "recovery_category", "open_steps", "recovered_fen")
        rows = []
        for r in ledger.rows:
            name, id_number = people.get(r.get("borrower_id"), (None, None))
            record = {"rank": r.get("rank"), "level": r.get("level"), "borrower_id": r.get("borrower_id"),
                      "name": name, "id_number": id_number, **{k: r.get(k) for k in keys[5:]}}
            rows.append(tuple(book.masker.row(record).values()))
        tables.append(Table("key_households", "Key-household ledger", tuple(
            Column(k, {"exposure_fen": "outstanding", "interest_arrears_fen": "interest arrears",
                       "recovered_fen": "recovered this period", "id_number": "ID number",
                       "open_steps": "open steps"}.get(k, k.replace("_", " ")),
                   kind_of(k) if k != "rank" else "count") for k in keys),
            rows, display_limit=book.display_limit,
            note="Ranked by non-performing principal and interest; levels of \"three levels, a hundred "
                 "households\". Names and ID numbers " + ("shown" if book.masker.show else
                                                          "masked ([privacy] show_personal_data shows them)")
                 + "."))
        by_level: dict[str, list[int]] = {}
        for r in ledger.rows:
            entry = by_level.setdefault(str(r.get("level")), [0, 0])
            entry[0] += 1
            entry[1] += r.get("exposure_fen") or 0
        levels = list(by_level)
        charts.append(Chart("key-households", "Key households: outstanding by level", "bar",
                            [f"{word(level)} ({by_level[level][0]})" for level in levels],
                            [Series("outstanding", [by_level[level][1] for level in levels])], unit="money",
                            description="Outstanding principal of the key households at each level (their count "
                                        "in brackets), in yuan.", table="key_households"))
        highlights.append(Highlight("Key households", f"{len(ledger.rows):,}",
                                    f"{yuan(sum(r.get('exposure_fen') or 0 for r in ledger.rows))} yuan"))
    checks = book.finding_counts("collection")
    if checks.rows:
        tables.append(checks)
    intro = ("The collection strategies' tasks in this run: a task stays open from night to night until the "
             "action it asks for is recorded, another step replaces it or the borrower is cured.")
    return Section(section_id, title, intro, highlights, tables, charts)
