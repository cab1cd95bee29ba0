"""What the tickets' use cases work with and through: the change set one use case saves
(`Changes`) and the repository port (`TicketRepository`) the handlers and commands write through.

Handlers, commands, adapters and entry points import these; the adapters import no use case.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from crm_contracts import CloudEvent
from crm_runtime.outbox import OutboundMessage
from crm_tickets.domain.agent import Agent
from crm_tickets.domain.agreement import AgreementSla
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import Ticket, TicketFigures


@dataclass(frozen=True)
class PendingSurvey:
    """A survey that arrived before its ticket (possible: ticket ids derive from complaint ids);
    kept until the ticket opens, where it lands only if the ticket is `customer_id`'s.
    `event_id`: the event that brought it."""

    ticket_id: str
    survey_id: str
    csat: int | None
    nps: int | None
    at: datetime
    event_id: str
    customer_id: str | None = None
    """The event's subject (None in surveys kept before it was recorded)."""


class TicketRecord(NamedTuple):
    """A ticket as the store writes it: the ticket and the figures kept beside it, computed by
    the domain (`Ticket.figures`); the store computes nothing."""

    ticket: Ticket
    figures: TicketFigures


@dataclass
class Changes:
    """What one use case changes, saved in one transaction with the inbox and the outbox."""

    tickets: dict[str, TicketRecord] = field(default_factory=dict)
    """New or changed tickets (optimistic concurrency on their version), by id: add them with
    `add`."""
    applied: list[CloudEvent[Any]] = field(default_factory=list)
    """The events applied (the inbox)."""
    outbound: list[OutboundMessage] = field(default_factory=list)
    """The events to publish (the outbox)."""
    grades: dict[str, str] = field(default_factory=dict)
    """Customers' grades as the archive last announced them."""
    agreements: dict[str, AgreementSla] = field(default_factory=dict)
    """Customers' agreements as relations last announced them (their complaint SLA), by id."""
    agents: list[Agent] = field(default_factory=list)
    """Agents created or replaced (by a supervisor)."""
    last_assigned: dict[str, datetime] = field(default_factory=dict)
    """When each agent who took a ticket took it (the round-robin's memory); only that field of
    the agent is written, so a supervisor's concurrent change of the agent stays."""
    pending: list[PendingSurvey] = field(default_factory=list)
    """Surveys kept until their ticket opens."""
    settled: list[str] = field(default_factory=list)
    """Ticket ids whose pending survey landed on the ticket: it goes."""
    erased: list[str] = field(default_factory=list)
    """Customers whose personal data (descriptions, comments, reasons) goes now."""

    def add(self, ticket: Ticket, now: datetime, rules: TicketRules) -> None:
        """Save `ticket` as it is after its last change of this use case (adding it again
        replaces it), with its figures as of `now`."""
        self.tickets[ticket.ticket_id] = TicketRecord(ticket, ticket.figures(now, rules))


class TicketRepository(Protocol):
    """What the handlers and the commands read and write."""

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def load(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]: ...

    async def get(self, ticket_id: str) -> Ticket | None: ...

    async def grades(self, customer_ids: Sequence[str]) -> dict[str, str]: ...

    async def agreements(self, customer_ids: Sequence[str]) -> dict[str, AgreementSla]:
        """The customers' agreements (active or not), by agreement id."""
        ...

    async def agent(self, agent_id: str) -> Agent | None: ...

    async def agents_in(self, queue: str) -> list[Agent]: ...

    async def open_load(self, agent_ids: Sequence[str]) -> dict[str, int]:
        """Open tickets per agent (0 for an agent without any)."""
        ...

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Tickets whose next SLA check has come by `now`, earliest first."""
        ...

    async def pending_surveys(self, ticket_ids: Sequence[str]) -> dict[str, PendingSurvey]: ...

    async def unassigned(self, limit: int) -> list[str]:
        """`new` tickets without an assignee, oldest first."""
        ...

    async def save(self, changes: Changes) -> None:
        """All of `changes` in one transaction, or nothing (`ConcurrencyConflictError` when a
        ticket changed since it was read); the saved tickets' versions move on."""
        ...
