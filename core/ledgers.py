"""The morning's lists, read from a results database: open tasks by assignee, and the two ledgers of
REFERENCE.md §4 — a collection ledger for each household over time, and each officer's lending and
collection responsibility, the basis of the officers' linked assessment.

Read-only, and computed inside SQLite: Python only formats what comes out. Money stays integer fen
(``*_fen``) in the rows returned here; the command line writes it as decimal yuan strings.

"Non-performing" is a run's computed class when that run classified its loans, else the recorded
class; written-off loans are off the books and count neither as loans nor as non-performing (their
collection actions and recoveries still count). A run's *period* runs from the day after the
cooperative's previous run's as-of up to its own as-of, both days included; the first run's period
has no start.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from typing import Any

import attrs

from loanrules.errors import UsageError
from loanrules.model import format_fen
from loanrules.schema import RECOVERY_CATEGORIES, RISK_CLASSES
from loanrules.sqltext import current_class, days_between, non_performing, on_book, rank_case, unrank_case
from loanrules.store import counted

KEY_HOUSEHOLDS = "collection.key_households"  # the summary that lists a run's key households, one row each

TASK_COLUMNS = ("task_id", "assignee", "borrower_id", "name", "step", "due_date", "days_overdue", "priority",
                "loan_ids", "opened_on", "details")
HOUSEHOLD_COLUMNS = ("borrower_id", "name", "run_id", "as_of", "period_from", "loans", "outstanding_fen",
                     "interest_arrears_fen", "worst_class", "worst_recovery_category", "key_household_level",
                     "plan", "closed_tonight", "actions", "action_kinds", "recovered_fen")
OFFICER_COLUMNS = ("officer_id", "npl_lent_count", "npl_lent_fen", "npl_collecting_count", "npl_collecting_fen",
                   "recovered_fen", "actions", "tasks_open", "tasks_overdue", "tasks_done_on_time",
                   "tasks_done_late", "period_from", "as_of")



# ------------------------------------------------------------ open tasks

def require_plan(conn: sqlite3.Connection, run: sqlite3.Row) -> None:
    """Refuse a run that made no collection plan, saying why: no strategy ran, or each was skipped or failed."""
    if conn.execute("SELECT 1 FROM collection_tasks WHERE run_id = ? LIMIT 1", (run["run_id"],)).fetchone():
        return
    strategies = conn.execute(
        "SELECT contribution_id, status, reason FROM run_contributions WHERE run_id = ? AND kind = 'strategy' "
        "ORDER BY contribution_id", (run["run_id"],)).fetchall()
    if any(row["status"] == "ok" for row in strategies):
        return  # a plan was made; nobody needs collecting tonight
    why = "; ".join(f"{row['contribution_id']} {row['status']}: {row['reason']}" for row in strategies)
    raise UsageError(f"run {run['run_id']} ({run['as_of']}) made no collection plan"
                     + (f" ({why})" if why else "") + ": run a pack with a collection strategy")


def open_tasks(conn: sqlite3.Connection, run: sqlite3.Row, assignee: str | None = None,
               overdue: bool = False) -> list[dict[str, Any]]:
    """The run's open tasks (TASK_COLUMNS): by assignee (unassigned last), overdue first, then by priority.

    ``days_overdue`` counts the days from the due date to the as-of (0 when not past due); ``details`` is
    the strategy's JSON of why it chose the step (``why`` reads it in a few words);
    ``name`` is the borrower's, from the run's snapshot (personal data: mask it before it leaves).
    """
    where = ["t.run_id = :run_id", "t.status = 'open'"]
    if assignee is not None:
        where.append("t.assignee = :assignee")
    if overdue:
        where.append("t.due_date < :as_of")
    sql = f"""
        SELECT t.task_id, t.assignee, t.borrower_id, b.name, t.step, t.due_date,
               CASE WHEN t.due_date < :as_of THEN {days_between('t.due_date', ':as_of')}
                    ELSE 0 END AS days_overdue,
               t.priority, t.loan_ids, t.opened_on, t.details
        FROM collection_tasks t
        LEFT JOIN borrowers b ON b.snapshot_id = :snapshot_id AND b.borrower_id = t.borrower_id
        WHERE {' AND '.join(where)}
        ORDER BY t.assignee IS NULL, t.assignee, days_overdue > 0 DESC, t.priority DESC, t.due_date, t.task_id
    """
    params = {"run_id": run["run_id"], "as_of": run["as_of"], "snapshot_id": run["snapshot_id"],
              "assignee": assignee}
    return [dict(row) for row in conn.execute(sql, params)]


# Why a step was chosen, in a few words, from the ``rule`` of a task's details and the figures beside it
# (the rules of the collection strategies of cooperative-baseline; any other rule is shown as it is).
_RULE_TEXTS = {
    "large_amount": "large amount {at_risk}",
    "repeat_without_recovery": "repeat: {action} {action_date}, nothing recovered",
    "repeat_with_recovery": "repeat: {action} {action_date}, recovered {recovered}",
    "floor_from_previous_step": "no step down from {previous_step}",
    "land_transfer_within_window": "land transfer {land_transfer_expected_date}",
    "no_recovery_since_meeting": "meeting {last_meeting}, nothing recovered",
    "recovered_since_meeting": "recovered since meeting {last_meeting}",
    "reported_since_meeting": "township told after meeting {last_meeting}",
    "recent_meeting": "meeting {last_meeting}",
    "no_meeting_yet": "no meeting yet",
}
_THRESHOLD = re.compile(r"^(?P<what>.*?)_?days_past_due(?P<op>>=|<)(?P<days>\d+)$")


def why(details: str | None) -> str:
    """A task's ``details`` (JSON text) as a few words: "180+ days", "repeat: visit 2026-11-02, nothing
    recovered", "land transfer 2026-12-20". Details that are a JSON string are shown as they are; details
    without a ``rule``, or none, show nothing."""
    if not details:
        return ""
    try:
        value = json.loads(details)
    except ValueError:
        return details
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("rule"), str):
        return ""
    rule = value["rule"]
    threshold = _THRESHOLD.match(rule)
    if threshold:
        days = f"{threshold['days']}+ days" if threshold["op"] == ">=" else f"under {threshold['days']} days"
        what = threshold["what"].replace("unrecoverable_for_now", "unrecoverable").replace("_", " ")
        return f"{what}, {days}" if what else days
    text = _RULE_TEXTS.get(rule)
    if text is None:
        return rule.replace("_", " ")
    facts = {key: "?" if item is None else item for key, item in value.items()}
    for name in ("at_risk", "recovered"):
        amount = value.get(f"{name}_fen")
        facts[name] = format_fen(amount) if isinstance(amount, int) else "?"
    try:
        return text.format_map(facts)
    except (KeyError, IndexError, ValueError):
        return rule.replace("_", " ")


# ------------------------------------------------------------ household ledger

def _series(last: int | None) -> str:
    """SQL of the runs a household ledger spans: the cooperative's counted runs up to the selected one, oldest
    first, each with the first day of its period; with ``last``, only the latest ``last`` of them."""
    limit = f"ORDER BY as_of DESC, run_id DESC LIMIT {int(last)}" if last else ""
    return f"""
        SELECT * FROM (
            SELECT run_id, as_of, snapshot_id,
                   date(lag(as_of) OVER (ORDER BY as_of, run_id), '+1 day') AS period_from
            FROM runs
            WHERE cooperative = :cooperative AND as_of <= :as_of
              AND ({counted()} OR run_id = :run_id)
        ) {limit}
    """


def household_ledger(conn: sqlite3.Connection, run: sqlite3.Row, borrower: str | None = None,
                     last: int | None = None) -> list[dict[str, Any]]:
    """Each household's collection ledger (HOUSEHOLD_COLUMNS), a row per run, oldest first.

    Households: those with a non-performing loan or any task in the runs considered, or the one
    ``borrower``. Runs: every counted run of the run's cooperative up to it (the latest ``last``).
    A household has a row for a run when it had loans on the books, tasks, collection actions in the
    period, or a key-household level in that run. ``plan`` lists the open steps (assignee, due date),
    ``closed_tonight`` the tasks that closed that night with how; ``actions`` and ``recovered_fen`` are the
    snapshot's collection actions dated in the run's period on the household's loans, written-off ones
    included (the snapshot contract keeps every action's loan in the same snapshot); ``key_household_level``
    comes from the run's ``collection.key_households`` summary (``level`` of the household's row).
    """
    if last is not None and last < 1:
        raise UsageError("--last must be 1 or more")
    class_rank = rank_case(current_class(), RISK_CLASSES)
    recovery_rank = rank_case("a.recovery_category", RECOVERY_CATEGORIES)
    if borrower is not None:
        chosen = "SELECT :borrower AS borrower_id"
    else:
        chosen = f"""
            SELECT l.borrower_id FROM series s
            JOIN loans l ON l.snapshot_id = s.snapshot_id
            LEFT JOIN assessments a ON a.run_id = s.run_id AND a.loan_id = l.loan_id
            WHERE {on_book()} AND {non_performing()}
            UNION
            SELECT t.borrower_id FROM series s JOIN collection_tasks t ON t.run_id = s.run_id
        """
    ordered = "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
    sql = f"""
        WITH series AS MATERIALIZED ({_series(last)}),
        chosen AS MATERIALIZED ({chosen}),
        figures AS MATERIALIZED (
            SELECT s.run_id, l.borrower_id, count(*) AS loans, sum(l.outstanding_principal) AS outstanding_fen,
                   sum(coalesce(l.interest_arrears, 0)) AS interest_arrears_fen,
                   max({class_rank}) AS class_rank, max({recovery_rank}) AS recovery_rank
            FROM series s
            JOIN chosen c
            JOIN loans l ON l.snapshot_id = s.snapshot_id AND l.borrower_id = c.borrower_id
            LEFT JOIN assessments a ON a.run_id = s.run_id AND a.loan_id = l.loan_id
            WHERE {on_book()}
            GROUP BY s.run_id, l.borrower_id
        ),
        tasks AS MATERIALIZED (
            -- window aggregates keep the steps in a stated order (an aggregate's order is not guaranteed)
            SELECT DISTINCT t.run_id, t.borrower_id,
                   group_concat(CASE WHEN t.status = 'open' THEN t.step || ' (' || coalesce(t.assignee, 'unassigned')
                                     || coalesce(', due ' || t.due_date, '') || ')' END, '; ')
                       OVER (PARTITION BY t.run_id, t.borrower_id ORDER BY t.priority DESC, t.due_date, t.step
                             {ordered}) AS plan,
                   group_concat(CASE WHEN t.status != 'open' THEN t.step || ': ' || t.status END, '; ')
                       OVER (PARTITION BY t.run_id, t.borrower_id ORDER BY t.closed_on, t.step {ordered})
                       AS closed_tonight
            FROM series s JOIN collection_tasks t ON t.run_id = s.run_id
            JOIN chosen c ON c.borrower_id = t.borrower_id
        ),
        period_actions AS MATERIALIZED (
            SELECT s.run_id, l.borrower_id, c.action, coalesce(c.amount_recovered, 0) AS recovered_fen
            FROM series s
            JOIN collections c ON c.snapshot_id = s.snapshot_id
            JOIN loans l ON l.snapshot_id = s.snapshot_id AND l.loan_id = c.loan_id
            WHERE c.action_date >= coalesce(s.period_from, '') AND c.action_date <= s.as_of
        ),
        kinds AS (
            SELECT p.run_id, p.borrower_id, p.action, count(*) AS actions, sum(p.recovered_fen) AS recovered_fen
            FROM period_actions p JOIN chosen c ON c.borrower_id = p.borrower_id
            GROUP BY p.run_id, p.borrower_id, p.action
        ),
        actions AS MATERIALIZED (
            SELECT DISTINCT run_id, borrower_id,
                   sum(actions) OVER w AS actions, sum(recovered_fen) OVER w AS recovered_fen,
                   group_concat(actions || ' ' || coalesce(action, 'unknown'), ', ') OVER w AS action_kinds
            FROM kinds
            WINDOW w AS (PARTITION BY run_id, borrower_id ORDER BY action {ordered})
        ),
        keys AS MATERIALIZED (
            SELECT m.run_id, json_extract(m.data, '$.borrower_id') AS borrower_id,
                   max(json_extract(m.data, '$.level')) AS level
            FROM series s JOIN summaries m ON m.run_id = s.run_id AND m.summary_id = :key_households
            WHERE json_valid(m.data)
            GROUP BY 1, 2
        ),
        cells AS (
            SELECT run_id, borrower_id FROM figures
            UNION SELECT run_id, borrower_id FROM tasks
            UNION SELECT run_id, borrower_id FROM actions
            UNION SELECT k.run_id, k.borrower_id FROM keys k JOIN chosen c ON c.borrower_id = k.borrower_id
        )
        SELECT x.borrower_id, b.name, s.run_id, s.as_of, s.period_from,
               coalesce(f.loans, 0) AS loans, coalesce(f.outstanding_fen, 0) AS outstanding_fen,
               coalesce(f.interest_arrears_fen, 0) AS interest_arrears_fen,
               {unrank_case('f.class_rank', RISK_CLASSES)} AS worst_class,
               {unrank_case('f.recovery_rank', RECOVERY_CATEGORIES)} AS worst_recovery_category,
               k.level AS key_household_level, t.plan, t.closed_tonight,
               coalesce(n.actions, 0) AS actions, n.action_kinds, coalesce(n.recovered_fen, 0) AS recovered_fen
        FROM cells x
        JOIN series s ON s.run_id = x.run_id
        LEFT JOIN figures f ON f.run_id = x.run_id AND f.borrower_id = x.borrower_id
        LEFT JOIN tasks t ON t.run_id = x.run_id AND t.borrower_id = x.borrower_id
        LEFT JOIN actions n ON n.run_id = x.run_id AND n.borrower_id = x.borrower_id
        LEFT JOIN keys k ON k.run_id = x.run_id AND k.borrower_id = x.borrower_id
        LEFT JOIN borrowers b ON b.snapshot_id = s.snapshot_id AND b.borrower_id = x.borrower_id
        ORDER BY x.borrower_id, s.as_of, s.run_id
    """
    params = {"cooperative": run["cooperative"], "as_of": run["as_of"], "run_id": run["run_id"],
              "borrower": borrower, "key_households": KEY_HOUSEHOLDS}
    rows = [dict(row) for row in conn.execute(sql, params)]
    if borrower is not None and not rows and not _known_borrower(conn, run, borrower, last):
        raise UsageError(f"no borrower {borrower!r} in the runs of {run['cooperative']} up to run {run['run_id']} "
                         f"({run['as_of']})")
    return rows


def _known_borrower(conn: sqlite3.Connection, run: sqlite3.Row, borrower: str, last: int | None) -> bool:
    return conn.execute(f"""
        WITH series AS ({_series(last)})
        SELECT 1 FROM series s WHERE EXISTS (SELECT 1 FROM borrowers b
                                             WHERE b.snapshot_id = s.snapshot_id AND b.borrower_id = :borrower)
                                  OR EXISTS (SELECT 1 FROM loans l
                                             WHERE l.snapshot_id = s.snapshot_id AND l.borrower_id = :borrower)
        LIMIT 1
    """, {"cooperative": run["cooperative"], "as_of": run["as_of"], "run_id": run["run_id"],
          "borrower": borrower}).fetchone() is not None


# ------------------------------------------------------------ officer ledger

@attrs.frozen
class OfficerLedger:
    run_id: int
    as_of: str
    period_from: str | None  # the period's first day (None: from the start of the records)
    rows: tuple[dict[str, Any], ...]  # OFFICER_COLUMNS, by officer id


def period_start(conn: sqlite3.Connection, run: sqlite3.Row, since: str | None = None) -> str | None:
    """The first day of the run's period: ``since`` when given, else the day after the cooperative's
    previous counted run's as-of (None for its first run)."""
    if since is not None:
        try:
            day = datetime.date.fromisoformat(since)
        except ValueError:
            raise UsageError(f"--since {since!r}: not a date (YYYY-MM-DD)") from None
        if day.isoformat() > run["as_of"]:
            raise UsageError(f"--since {since} is after run {run['run_id']}'s as-of {run['as_of']}")
        return day.isoformat()
    row = conn.execute(f"SELECT date(max(as_of), '+1 day') FROM runs WHERE cooperative = ? AND as_of < ? "
                       f"AND {counted()}", (run["cooperative"], run["as_of"])).fetchone()
    return row[0]


def officer_ledger(conn: sqlite3.Connection, run: sqlite3.Row, since: str | None = None) -> OfficerLedger:
    """Each officer's two responsibilities on non-performing loans, and their collection work in the period.

    Officers: every id named as a loan's lending or collection officer, or as a collection action's officer,
    in the run's snapshot; a task's assignee counts for an officer when it is one of these ids (a level of
    the three-level assignment is not an officer). ``npl_lent_*`` are the non-performing loans on the books
    the officer granted, ``npl_collecting_*`` those the officer must recover (count and outstanding
    principal). ``recovered_fen`` and ``actions`` are the snapshot's collection actions by the officer dated
    in the period. ``tasks_open`` and ``tasks_overdue`` (open, due before the as-of) are the run's; a task
    closed as done in the period (``closed_on``, the action's date) is on time when it closed on or before
    its due date (or had none), else late, whichever of the cooperative's runs up to this one closed it.
    """
    period_from = period_start(conn, run, since)
    sql = f"""
        WITH book AS MATERIALIZED (
            SELECT l.lending_officer_id, l.collection_officer_id, l.outstanding_principal
            FROM loans l LEFT JOIN assessments a ON a.run_id = :run_id AND a.loan_id = l.loan_id
            WHERE l.snapshot_id = :snapshot_id AND {on_book()}
              AND {non_performing()}
        ),
        officers AS MATERIALIZED (
            SELECT lending_officer_id AS officer_id FROM loans WHERE snapshot_id = :snapshot_id
            UNION SELECT collection_officer_id FROM loans WHERE snapshot_id = :snapshot_id
            UNION SELECT officer_id FROM collections WHERE snapshot_id = :snapshot_id
        ),
        lent AS (
            SELECT lending_officer_id AS officer_id, count(*) AS n, sum(outstanding_principal) AS fen
            FROM book GROUP BY 1
        ),
        collecting AS (
            SELECT collection_officer_id AS officer_id, count(*) AS n, sum(outstanding_principal) AS fen
            FROM book GROUP BY 1
        ),
        work AS (
            SELECT officer_id, count(*) AS actions, sum(coalesce(amount_recovered, 0)) AS recovered_fen
            FROM collections
            WHERE snapshot_id = :snapshot_id AND action_date >= coalesce(:period_from, '') AND action_date <= :as_of
            GROUP BY officer_id
        ),
        open_tasks AS (
            SELECT assignee, count(*) AS open, sum(due_date < :as_of) AS overdue
            FROM collection_tasks WHERE run_id = :run_id AND status = 'open' GROUP BY assignee
        ),
        done AS (
            SELECT t.assignee, sum(t.due_date IS NULL OR t.closed_on <= t.due_date) AS on_time,
                   sum(t.closed_on > t.due_date) AS late
            FROM runs r JOIN collection_tasks t ON t.run_id = r.run_id
            WHERE r.cooperative = :cooperative AND r.as_of <= :as_of AND ({counted('r')} OR r.run_id = :run_id)
              AND t.status = 'done' AND t.closed_on >= coalesce(:period_from, '') AND t.closed_on <= :as_of
            GROUP BY t.assignee
        )
        SELECT o.officer_id,
               coalesce(lent.n, 0) AS npl_lent_count, coalesce(lent.fen, 0) AS npl_lent_fen,
               coalesce(collecting.n, 0) AS npl_collecting_count, coalesce(collecting.fen, 0) AS npl_collecting_fen,
               coalesce(work.recovered_fen, 0) AS recovered_fen, coalesce(work.actions, 0) AS actions,
               coalesce(open_tasks.open, 0) AS tasks_open, coalesce(open_tasks.overdue, 0) AS tasks_overdue,
               coalesce(done.on_time, 0) AS tasks_done_on_time, coalesce(done.late, 0) AS tasks_done_late,
               :period_from AS period_from, :as_of AS as_of
        FROM officers o
        LEFT JOIN lent ON lent.officer_id = o.officer_id
        LEFT JOIN collecting ON collecting.officer_id = o.officer_id
        LEFT JOIN work ON work.officer_id = o.officer_id
        LEFT JOIN open_tasks ON open_tasks.assignee = o.officer_id
        LEFT JOIN done ON done.assignee = o.officer_id
        WHERE o.officer_id IS NOT NULL
        ORDER BY o.officer_id
    """
    params = {"run_id": run["run_id"], "snapshot_id": run["snapshot_id"], "as_of": run["as_of"],
              "cooperative": run["cooperative"], "period_from": period_from}
    rows = tuple(dict(row) for row in conn.execute(sql, params))
    return OfficerLedger(run["run_id"], run["as_of"], period_from, rows)


def made_plans(conn: sqlite3.Connection, run: sqlite3.Row) -> bool:
    """Whether any collection strategy ran (ok) in the cooperative's runs up to this one."""
    return conn.execute(f"""
        SELECT 1 FROM runs r JOIN run_contributions c ON c.run_id = r.run_id
        WHERE r.cooperative = ? AND r.as_of <= ? AND ({counted('r')} OR r.run_id = ?)
          AND c.kind = 'strategy' AND c.status = 'ok' LIMIT 1
    """, (run["cooperative"], run["as_of"], run["run_id"])).fetchone() is not None
