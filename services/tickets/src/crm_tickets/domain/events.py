"""What happens to a ticket: the domain events its changes return (the handlers map them to
`tickets.v1`), and the statuses it moves through. Pure code."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from crm_tickets.domain.rules import SlaTarget

Status = Literal["new", "assigned", "in_progress", "waiting_customer", "resolved", "closed"]


@dataclass(frozen=True)
class Opened:
    pass


@dataclass(frozen=True)
class Assigned:
    assignee: str
    manual: bool


@dataclass(frozen=True)
class StatusChanged:
    status: Status
    previous: Status


@dataclass(frozen=True)
class SlaWarning:
    target: SlaTarget
    due_at: datetime
    elapsed_s: int


@dataclass(frozen=True)
class SlaBreached:
    target: SlaTarget
    due_at: datetime
    elapsed_s: int


@dataclass(frozen=True)
class Escalated:
    queue: str
    reason: str


@dataclass(frozen=True)
class Resolved:
    pass


@dataclass(frozen=True)
class Closed:
    auto: bool


@dataclass(frozen=True)
class Reopened:
    reason: str | None


@dataclass(frozen=True)
class CsatRecorded:
    survey_id: str
    csat: int | None
    nps: int | None
    flagged: bool


DomainEvent = (
    Opened
    | Assigned
    | StatusChanged
    | SlaWarning
    | SlaBreached
    | Escalated
    | Resolved
    | Closed
    | Reopened
    | CsatRecorded
)
