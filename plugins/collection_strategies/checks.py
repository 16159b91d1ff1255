"""The plan's own check: a collection task left open past its due date."""

from loanrules import Check, Param, ParamType, Severity
from loanrules.sqltext import days_between

from .common import PRACTICE

_DAYS_OVERDUE = days_between('t.due_date', ':as_of')

TASK_OVERDUE = Check(
    id="collection.task_overdue",
    title="Collection task open past its due date",
    severity=Severity.WARNING,
    tables=("collection_tasks",),
    params=(
        Param("grace_days", 0, ParamType.INTEGER,
              "days past its due date a task may stay open before it is reported"),
    ),
    reference=f"{PRACTICE}: a collection task for each household, linked to the officer's assessment",
    description="One finding per collection task still open after tonight's plan (every strategy's; subject: the "
                "task_id, with its borrower) whose due date is more than `grace_days` (0) days before the as-of: "
                "with 0, due yesterday fires, due today does not. A task closed tonight (done, replaced, cured) "
                "is not reported. The message gives the step, the assignee and the days overdue; `details` the "
                "task's loans, opening day and priority. Runs after the strategies.",
    sql=f"""
        SELECT t.borrower_id, t.task_id AS subject,
               'collection task ' || t.step || ' for borrower ' || t.borrower_id || ', assigned to ' ||
               coalesce(t.assignee, 'nobody') || ', was due on ' || t.due_date || ': ' || {_DAYS_OVERDUE} ||
               ' day' || CASE WHEN {_DAYS_OVERDUE} = 1 THEN '' ELSE 's' END || ' overdue (open since ' ||
               t.opened_on || ')' AS message,
               json_object('task_id', t.task_id, 'strategy_id', t.strategy_id, 'step', t.step,
                           'assignee', t.assignee, 'due_date', t.due_date, 'opened_on', t.opened_on,
                           'days_overdue', {_DAYS_OVERDUE}, 'grace_days', :grace_days,
                           'loan_ids', json(t.loan_ids), 'priority', t.priority) AS details
        FROM collection_tasks t
        WHERE t.status = 'open' AND t.due_date IS NOT NULL AND {_DAYS_OVERDUE} > :grace_days
    """,
)
