"""Tasks: a follow-up, callback, recovery call, renewal or agreement review for one customer,
owned by a person (or the team's queue, owner None), due at a business day's close.

A task is open until it is done or cancelled; past its due time the overdue sweep marks it
overdue (it can still be done: late). Its summary is what the person wrote after the contact:
personal data, sealed at rest and never published.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

TaskKind = Literal["follow_up", "callback", "recovery", "renewal", "agreement_review"]
TaskStatus = Literal["open", "overdue", "done", "cancelled"]
Outcome = Literal["reached", "not_reached", "resolved", "declined", "other"]
CancelReason = Literal["staff", "superseded", "erased", "agreement_ended"]
KINDS: tuple[TaskKind, ...] = ("follow_up", "callback", "recovery", "renewal", "agreement_review")
STATUSES: tuple[TaskStatus, ...] = ("open", "overdue", "done", "cancelled")
SYSTEM = "crm/relations"
"""`created_by` of the tasks the rules make."""


class TaskError(ValueError):
    """A task cannot do what was asked (e.g. complete a cancelled task)."""


class NoTaskError(LookupError):
    pass


@dataclass
class Task:
    task_id: str
    customer_id: str
    kind: TaskKind
    owner: str | None
    due_at: datetime
    created_at: datetime
    created_by: str
    reason: str
    """What made it: plan, churn_risk, low_csat, agreement, staff, next_follow_up."""
    status: TaskStatus = "open"
    agreement_id: str | None = None
    outcome: Outcome | None = None
    summary: str | None = None
    completed_at: datetime | None = None
    completed_by: str | None = None
    on_time: bool | None = None
    overdue_notices: int = 0
    """How many `task.overdue` were announced: 1 when it became overdue, 2 when escalated."""
    version: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in ("open", "overdue")

    def complete(self, by: str, outcome: Outcome, summary: str | None, at: datetime) -> None:
        if not self.is_open:
            raise TaskError(f"task {self.task_id} is {self.status}: it cannot be completed")
        self.status = "done"
        self.outcome = outcome
        self.summary = summary
        self.completed_at = at
        self.completed_by = by
        self.on_time = at <= self.due_at

    def reassign(self, owner: str | None) -> str | None:
        """The previous owner."""
        if not self.is_open:
            raise TaskError(f"task {self.task_id} is {self.status}: it cannot be reassigned")
        previous, self.owner = self.owner, owner
        return previous

    def cancel(self) -> None:
        if not self.is_open:
            raise TaskError(f"task {self.task_id} is {self.status}: it cannot be cancelled")
        self.status = "cancelled"

    def reschedule(self, due_at: datetime, owner: str | None) -> bool:
        """Move an open task (a plan's follow-up after a grade, stage or owner change); True if
        anything changed. An overdue task moved into the future is open again."""
        changed = (due_at, owner) != (self.due_at, self.owner)
        self.due_at, self.owner = due_at, owner
        if self.status == "overdue" and changed:
            self.status = "open"
            self.overdue_notices = 0
        return changed

    def overdue_notice(self, now: datetime, business_days_late: int, escalate_after: int) -> bool:
        """Mark an open task past its due time overdue; True when a `task.overdue` is due now:
        once when it becomes overdue, once more at `escalate_after` business days late."""
        if not self.is_open or now <= self.due_at:
            return False
        self.status = "overdue"
        wanted = 2 if business_days_late >= escalate_after else 1
        if self.overdue_notices >= wanted:
            return False
        self.overdue_notices = wanted
        return True

    def forget(self) -> None:
        """Erasure: the summary goes (the figures stay); an open task is cancelled."""
        self.summary = None
        if self.is_open:
            self.status = "cancelled"


def next_notice_at(task: Task, escalate_at: datetime) -> datetime | None:
    """When the overdue sweep should look at `task` next: its due time while none was given,
    `escalate_at` (the close of the escalation's business day) after the first, never after the
    second or once it is closed."""
    if not task.is_open or task.overdue_notices >= 2:
        return None
    return task.due_at if task.overdue_notices == 0 else escalate_at
