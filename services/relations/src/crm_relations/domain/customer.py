"""A customer as relations sees them: grade, stage, owner, when they were last contacted, and
their maintenance plan's next follow-up task (定期回访).

`schedule` is the one place a plan's follow-up is made or moved: when a customer appears,
changes grade, stage or owner, or is contacted (a task done), their next follow-up is due the
plan's interval after the last contact (or after they first appeared), at the close of that
business day, for the account owner (the queue when there is none).
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from crm_relations.domain.events import Change, TaskCancelled, TaskCreated, TaskRescheduled
from crm_relations.domain.rules import RelationsRules
from crm_relations.domain.task import SYSTEM, Task


@dataclass
class Customer:
    customer_id: str
    first_seen: datetime
    grade: str | None = None
    stage: str | None = None
    owner: str | None = None
    last_contact_at: datetime | None = None
    plan_task_id: str | None = None
    """The open follow-up task of their plan, if any."""
    plan_days: int | None = None
    """Their plan's interval (None: no plan applies)."""
    contact_due_at: datetime | None = None
    """The last contact plus the plan's interval (None: never contacted, or no plan): while it
    is ahead, the customer counts as "contacted within the plan" in the report."""
    erased: bool = False
    version: int = 0

    def contacted(self, at: datetime) -> None:
        if self.last_contact_at is None or at > self.last_contact_at:
            self.last_contact_at = at


def schedule(
    customer: Customer,
    current: Task | None,
    rules: RelationsRules,
    now: datetime,
    new_task_id: str,
    *,
    on: date | None = None,
    reason: str = "plan",
    by: str = SYSTEM,
) -> list[Change]:
    """Make, move or drop the customer's next planned follow-up. `current` is their open plan
    task (None: there is none); `on` a date a person chose (completing a task), else the plan's.
    A task moved into the past is due at the close of the next business day."""
    if customer.erased:
        return []
    calendar = rules.calendar
    plan = rules.plan_for(customer.grade, customer.stage, customer.first_seen, now)
    customer.plan_days = plan.every_days if plan else None
    basis = customer.last_contact_at or customer.first_seen
    contacted = customer.last_contact_at
    customer.contact_due_at = (
        contacted + timedelta(days=plan.every_days) if plan and contacted else None
    )
    if on is not None:
        due = calendar.due_on(on)
    elif plan is not None:
        due = calendar.due_on(calendar.local_date(basis) + timedelta(days=plan.every_days))
    else:
        if current is not None and current.is_open:
            current.cancel()
            customer.plan_task_id = None
            return [TaskCancelled(current, SYSTEM, "superseded", now)]
        return []
    if due <= now:
        due = calendar.add_working_days(now, 1)
    if current is not None and current.is_open:
        previous_owner = current.owner
        if current.reschedule(due, customer.owner):
            return [TaskRescheduled(current, previous_owner, now)]
        return []
    task = Task(
        new_task_id,
        customer.customer_id,
        "follow_up",
        customer.owner,
        due,
        created_at=now,
        created_by=by,
        reason=reason,
    )
    customer.plan_task_id = task.task_id
    return [TaskCreated(task, now)]
