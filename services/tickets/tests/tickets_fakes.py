"""An in-memory ticket repository: the unit tests' stand-in for MongoDB."""

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crm_contracts import CloudEvent, event_key
from crm_runtime.outbox import OutboundMessage
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import OPEN, Ticket
from crm_tickets.handlers import Agent, PendingSurvey


class InMemoryTickets:
    def __init__(self, rules: TicketRules, now: datetime) -> None:
        self.rules = rules
        self.now = now
        self.tickets: dict[str, Ticket] = {}
        self.grades_: dict[str, str] = {}
        self.agents_: dict[str, Agent] = {}
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []
        self.erased: set[str] = set()
        self.pending: dict[str, PendingSurvey] = {}

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        fresh, seen = [], set(self.processed)
        for event in events:
            if event_key(event) not in seen:
                seen.add(event_key(event))
                fresh.append(event)
        return fresh

    async def load(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        return {i: copy.deepcopy(self.tickets[i]) for i in ticket_ids if i in self.tickets}

    async def grades(self, customer_ids: Sequence[str]) -> dict[str, str]:
        return {c: self.grades_[c] for c in customer_ids if c in self.grades_}

    async def agents(self, queue: str) -> list[Agent]:
        return [
            copy.deepcopy(a)
            for a in sorted(self.agents_.values(), key=lambda a: a.agent_id)
            if queue in a.queues
        ]

    async def open_load(self, agent_ids: Sequence[str]) -> dict[str, int]:
        return {
            i: sum(1 for t in self.tickets.values() if t.assignee == i and t.status in OPEN)
            for i in agent_ids
        }

    async def due(self, now: datetime, limit: int) -> list[str]:
        due = []
        for ticket in self.tickets.values():
            check = ticket.next_check_at(self.now, self.rules)
            if check is not None and check <= now:
                due.append(ticket.ticket_id)
        return sorted(due)[:limit]

    async def pending_surveys(self, ticket_ids: Sequence[str]) -> dict[str, PendingSurvey]:
        return {i: self.pending[i] for i in ticket_ids if i in self.pending}

    async def unassigned(self, limit: int) -> list[str]:
        return sorted(
            t.ticket_id for t in self.tickets.values() if t.status == "new" and t.assignee is None
        )[:limit]

    async def save(
        self,
        tickets: Sequence[Ticket],
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
        *,
        grades: dict[str, str] | None = None,
        agents: Sequence[Agent] = (),
        pending: Sequence[PendingSurvey] = (),
        settled: Sequence[str] = (),
        erased: Sequence[str] = (),
    ) -> None:
        for ticket in tickets:
            ticket.version += 1
            self.tickets[ticket.ticket_id] = copy.deepcopy(ticket)
        self.erased.update(erased)
        for stored in self.tickets.values():  # what the real store's shredded key amounts to
            if stored.customer_id in self.erased:
                stored.description = ""
                for comment in stored.comments:
                    comment.text = ""
        self.grades_.update(grades or {})
        for agent in agents:
            self.agents_[agent.agent_id].last_assigned_at = agent.last_assigned_at
        self.pending.update((p.ticket_id, p) for p in pending)
        for ticket_id in settled:
            self.pending.pop(ticket_id, None)
        self.processed.update(event_key(e) for e in applied)
        self.outbox.extend(outbound)

    def published(self, ticket_id: str | None = None) -> list[str]:
        return [
            m.event.type
            for m in self.outbox
            if ticket_id is None or m.event.data.ticket_id == ticket_id
        ]
