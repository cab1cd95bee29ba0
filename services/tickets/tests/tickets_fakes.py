"""An in-memory ticket repository: the unit tests' stand-in for MongoDB (both ports: the
`TicketRepository` the use cases write through, the `TicketQueries` the routes read)."""

import copy
import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from crm_contracts import CloudEvent, event_key
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.outbox import OutboundMessage
from crm_tickets import queries
from crm_tickets.domain import satisfaction
from crm_tickets.domain.agent import Agent
from crm_tickets.domain.agreement import AgreementSla
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import OPEN, Ticket, TicketFigures
from crm_tickets.ports import Changes, PendingSurvey
from crm_tickets.queries import TicketFilter


class InMemoryTickets:
    def __init__(self, rules: TicketRules, now: datetime) -> None:
        self.rules = rules
        self.now = now
        self.tickets: dict[str, Ticket] = {}
        self.figures: dict[str, TicketFigures] = {}
        self.customer_grades: dict[str, str] = {}
        self.grade_reads: list[list[str]] = []
        """The customer ids of each `grades` call, in order."""
        self.agreement_slas: dict[str, AgreementSla] = {}
        self.agents: dict[str, Agent] = {}
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []
        self.erased: set[str] = set()
        self.pending: dict[str, PendingSurvey] = {}
        self.saves = 0
        self.before_save: Callable[[], None] | None = None
        """Run once at the next save: another writer's change between a read and a write."""

    # -- the use cases' port ------------------------------------------------------------------
    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        fresh, seen = [], set(self.processed)
        for event in events:
            if event_key(event) not in seen:
                seen.add(event_key(event))
                fresh.append(event)
        return fresh

    async def load(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        return {i: copy.deepcopy(self.tickets[i]) for i in ticket_ids if i in self.tickets}

    async def get(self, ticket_id: str) -> Ticket | None:
        return (await self.load([ticket_id])).get(ticket_id)

    async def grades(self, customer_ids: Sequence[str]) -> dict[str, str]:
        self.grade_reads.append(list(customer_ids))
        return {c: self.customer_grades[c] for c in customer_ids if c in self.customer_grades}

    async def agreements(self, customer_ids: Sequence[str]) -> dict[str, AgreementSla]:
        return {i: a for i, a in self.agreement_slas.items() if a.customer_id in set(customer_ids)}

    async def agent(self, agent_id: str) -> Agent | None:
        return copy.deepcopy(self.agents.get(agent_id))

    async def agents_in(self, queue: str) -> list[Agent]:
        return [copy.deepcopy(a) for a in await self.all_agents() if queue in a.queues]

    async def open_load(self, agent_ids: Sequence[str]) -> dict[str, int]:
        return {
            i: sum(1 for t in self.tickets.values() if t.assignee == i and t.status in OPEN)
            for i in agent_ids
        }

    async def due(self, now: datetime, limit: int) -> list[str]:
        """What the stored `next_check_at` amounts to (computed here, as some tests change the
        stored tickets directly)."""
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

    async def save(self, changes: Changes) -> None:
        """All or nothing, optimistic on the tickets' versions, as the real store."""
        if self.before_save is not None:
            interfere, self.before_save = self.before_save, None
            interfere()
        for ticket, _ in changes.tickets.values():
            stored = self.tickets.get(ticket.ticket_id)
            if (stored.version if stored else 0) != ticket.version:
                raise ConcurrencyConflictError(f"ticket {ticket.ticket_id} changed meanwhile")
        self.saves += 1
        for ticket, figures in changes.tickets.values():
            ticket.version += 1
            self.tickets[ticket.ticket_id] = copy.deepcopy(ticket)
            self.figures[ticket.ticket_id] = figures
        self.erased.update(changes.erased)
        for stored in self.tickets.values():  # what the real store's shredded key amounts to
            if stored.customer_id in self.erased:
                stored.description = ""
                stored.intake_fingerprint = None
                for comment in stored.comments:
                    comment.text = ""
        self.customer_grades.update(changes.grades)
        self.agreement_slas.update(changes.agreements)
        self.agents.update((a.agent_id, copy.deepcopy(a)) for a in changes.agents)
        for agent_id, at in changes.last_assigned.items():
            self.agents[agent_id].last_assigned_at = at
        self.pending.update((p.ticket_id, p) for p in changes.pending)
        for ticket_id in changes.settled:
            self.pending.pop(ticket_id, None)
        self.processed.update(event_key(e) for e in changes.applied)
        self.outbox.extend(changes.outbound)

    # -- the routes' read side ----------------------------------------------------------------
    async def all_agents(self) -> list[Agent]:
        return [copy.deepcopy(a) for _, a in sorted(self.agents.items())]

    async def find(self, where: TicketFilter, after: str | None, limit: int) -> list[Ticket]:
        wanted = {k: v for k, v in dataclasses.asdict(where).items() if v is not None}
        found = [t for i, t in sorted(self.tickets.items()) if i > (after or "")]
        found = [t for t in found if all(getattr(t, k) == v for k, v in wanted.items())][:limit]
        return [  # as the database gives them: without their texts
            dataclasses.replace(copy.deepcopy(t), description="", comments=[], history=[])
            for t in found
        ]

    async def sla_groups(self, since: datetime, until: datetime) -> list[queries.Document]:
        rows: dict[tuple[str, str], queries.Document] = {}
        for ticket in self._opened(since, until):
            figures = self.figures[ticket.ticket_id]
            row = rows.setdefault(
                (ticket.priority, ticket.category),
                {
                    "_id": {"priority": ticket.priority, "category": ticket.category},
                    **{f.name: 0 for f in dataclasses.fields(queries.SlaFigures)},
                },
            )
            row["tickets"] += 1
            row["breached"] += ticket.breached
            for seconds, total, count in (
                (figures.first_response_s, "first_response_total", "first_responses"),
                (figures.resolution_s, "resolution_total", "resolutions"),
            ):
                if seconds is not None:
                    row[total] += seconds
                    row[count] += 1
        return list(rows.values())

    async def root_cause_groups(
        self, since: datetime, until: datetime
    ) -> tuple[list[queries.Document], int]:
        opened = self._opened(since, until)
        counts: dict[tuple[str, str], int] = {}
        for ticket in opened:
            for cause in ticket.root_causes or [queries.UNRESOLVED]:
                key = (ticket.category, cause)
                counts[key] = counts.get(key, 0) + 1
        rows = [{"_id": {"category": c, "cause": k}, "tickets": n} for (c, k), n in counts.items()]
        return rows, len(opened)

    async def satisfaction_groups(
        self, since: datetime, until: datetime, boundaries: Sequence[datetime]
    ) -> list[queries.Document]:
        rows: dict[datetime, queries.Document] = {}
        for ticket in self.tickets.values():
            survey = ticket.survey
            if survey is None or not since <= survey.at < until:
                continue
            start = max(b for b in boundaries if b <= survey.at)
            row = rows.setdefault(
                start.astimezone(UTC),
                {"_id": start.astimezone(UTC)}
                | {f.name: 0 for f in dataclasses.fields(satisfaction.SatisfactionFigures)},
            )
            row["responses"] += 1
            if survey.csat is not None:
                row["csat_total"] += survey.csat
                row["csat_count"] += 1
            if survey.nps is not None:
                row["nps_count"] += 1
                row["promoters"] += survey.nps >= satisfaction.PROMOTER
                row["detractors"] += survey.nps <= satisfaction.DETRACTOR
        return list(rows.values())

    # -- for the tests ------------------------------------------------------------------------
    def published(self, ticket_id: str | None = None) -> list[str]:
        return [
            m.event.type
            for m in self.outbox
            if ticket_id is None or m.event.data.ticket_id == ticket_id
        ]

    def _opened(self, since: datetime, until: datetime) -> list[Ticket]:
        return [t for t in self.tickets.values() if since <= t.opened_at < until]
