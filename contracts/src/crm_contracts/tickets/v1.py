"""`tickets.v1`: the life of complaint tickets, published by the tickets service.

`subject` is the customer id (the Kafka key); every payload carries `ticket_id`. Free text
(comments, descriptions) is never published: it may hold personal data.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_contracts.types import Identifier

TICKET_OPENED = "ticket.opened"
TICKET_ASSIGNED = "ticket.assigned"
TICKET_STATUS_CHANGED = "ticket.status_changed"
TICKET_SLA_WARNING = "ticket.sla_warning"
TICKET_SLA_BREACHED = "ticket.sla_breached"
TICKET_ESCALATED = "ticket.escalated"
TICKET_RESOLVED = "ticket.resolved"
TICKET_CLOSED = "ticket.closed"
TICKET_REOPENED = "ticket.reopened"
TICKET_CSAT_RECORDED = "ticket.csat_recorded"

Priority = Literal["P1", "P2", "P3", "P4"]
Status = Literal["new", "assigned", "in_progress", "waiting_customer", "resolved", "closed"]
SlaTarget = Literal["first_response", "resolution"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    ticket_id: Identifier


class TicketOpened(_Payload):
    complaint_id: Identifier | None = None
    channel: str
    category: str
    severity: str
    priority: Priority
    queue: str
    order_id: Identifier | None = None


class TicketAssigned(_Payload):
    assignee: Identifier
    queue: str
    manual: bool = False


class TicketStatusChanged(_Payload):
    status: Status
    previous_status: Status


class TicketSlaWarning(_Payload):
    target: SlaTarget
    priority: Priority
    due_at: datetime
    elapsed_s: int = Field(ge=0, description="Business seconds elapsed when warned (80 %).")


class TicketSlaBreached(_Payload):
    target: SlaTarget
    priority: Priority
    due_at: datetime
    elapsed_s: int = Field(ge=0)


class TicketEscalated(_Payload):
    queue: str
    reason: str


class TicketResolved(_Payload):
    root_causes: list[str] = Field(min_length=1)
    category: str
    priority: Priority


class TicketClosed(_Payload):
    auto: bool = False


class TicketReopened(_Payload):
    reason: str | None = Field(
        default=None,
        description="Not filled: the agent's reason is free text that may hold personal data; "
        "it stays on the ticket (sealed).",
    )


class TicketCsatRecorded(_Payload):
    survey_id: Identifier
    csat: int | None = Field(default=None, ge=1, le=5)
    nps: int | None = Field(default=None, ge=0, le=10)
    flagged_for_review: bool = Field(description="CSAT <= 2.")


EVENTS: dict[str, type[BaseModel]] = {
    TICKET_OPENED: TicketOpened,
    TICKET_ASSIGNED: TicketAssigned,
    TICKET_STATUS_CHANGED: TicketStatusChanged,
    TICKET_SLA_WARNING: TicketSlaWarning,
    TICKET_SLA_BREACHED: TicketSlaBreached,
    TICKET_ESCALATED: TicketEscalated,
    TICKET_RESOLVED: TicketResolved,
    TICKET_CLOSED: TicketClosed,
    TICKET_REOPENED: TicketReopened,
    TICKET_CSAT_RECORDED: TicketCsatRecorded,
}
