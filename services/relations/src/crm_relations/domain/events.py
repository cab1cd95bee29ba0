"""What the use cases change, as facts the handlers turn into `relations.v1` events."""

from dataclasses import dataclass
from datetime import datetime

from crm_relations.domain.agreement import Agreement, AtRisk, PeriodClosed, RenewalDue
from crm_relations.domain.task import CancelReason, Task


@dataclass(frozen=True)
class TaskCreated:
    task: Task
    at: datetime


@dataclass(frozen=True)
class TaskCompleted:
    task: Task
    at: datetime
    next_follow_up: Task | None = None


@dataclass(frozen=True)
class TaskRescheduled:
    """A plan's follow-up moved (due time and/or owner)."""

    task: Task
    previous_owner: str | None
    at: datetime


@dataclass(frozen=True)
class TaskReassigned:
    task: Task
    previous_owner: str | None
    by: str
    at: datetime


@dataclass(frozen=True)
class TaskCancelled:
    task: Task
    by: str
    reason: CancelReason
    at: datetime


@dataclass(frozen=True)
class TaskOverdue:
    task: Task
    business_days_late: int
    at: datetime


@dataclass(frozen=True)
class AgreementChanged:
    """created, amended, terminated or renewed by a person."""

    kind: str
    agreement: Agreement
    by: str
    at: datetime
    previous_ends_on: object = None


Change = (
    TaskCreated
    | TaskCompleted
    | TaskRescheduled
    | TaskReassigned
    | TaskCancelled
    | TaskOverdue
    | AgreementChanged
    | AtRisk
    | PeriodClosed
    | RenewalDue
)
