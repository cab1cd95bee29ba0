"""What the use cases change, as facts the handlers turn into `relations.v1` events."""

from dataclasses import dataclass
from datetime import date, datetime

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
class DigestDue:
    """An owner's morning digest: their tasks due by the close of `day` and the overdue ones
    (at most the rules' `digest_limit`, oldest due first), with the counts of all of them."""

    owner: str
    day: date
    lines: tuple[tuple[Task, int], ...]
    """Each listed task with the business days it is late (0: not overdue)."""
    due_today: int
    overdue: int
    at: datetime

    @property
    def digest_id(self) -> str:
        """One digest per owner and day: what the sweep marks as given."""
        return f"{self.day.isoformat()}/{self.owner}"


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
    | DigestDue
    | AgreementChanged
    | AtRisk
    | PeriodClosed
    | RenewalDue
)
