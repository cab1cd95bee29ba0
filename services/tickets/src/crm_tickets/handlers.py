"""Use cases: inbound events, API actions and the sweeps -> tickets, history and `tickets.v1`.

Plain async functions over a `TicketRepository`: the unit tests call them with an in-memory one.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from crm_contracts import CloudEvent, event_key, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.callcenter import v1 as callcenter_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import TICKETS
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation
from crm_runtime.sweeps import Clock
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import (
    OPEN,
    Assigned,
    Closed,
    CsatRecorded,
    Escalated,
    Opened,
    Reopened,
    Resolved,
    SlaBreached,
    SlaWarning,
    StatusChanged,
    Ticket,
    TicketEvent,
)

SOURCE = "crm/tickets"

CONSUMED_TYPES = (
    callcenter_v1.COMPLAINT_REPORTED,
    callcenter_v1.SURVEY_ANSWERED,
    archive_v1.CUSTOMER_GRADE_CHANGED,
    members_v1.CUSTOMER_ERASURE_REQUESTED,
)
KEPT_AFTER_ERASURE = ("ticket figures", "SLA times", "categories and root causes")


@dataclass
class Agent:
    agent_id: str
    name: str
    queues: list[str]
    capacity: int
    active: bool = True
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class PendingSurvey:
    """A survey that arrived before its ticket (possible: ticket ids derive from complaint ids);
    kept until the ticket opens."""

    ticket_id: str
    survey_id: str
    csat: int | None
    nps: int | None
    at: datetime
    event_id: str


class TicketRepository(Protocol):
    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def load(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]: ...

    async def grades(self, customer_ids: Sequence[str]) -> dict[str, str]: ...

    async def agents(self, queue: str) -> list[Agent]: ...

    async def open_load(self, agent_ids: Sequence[str]) -> dict[str, int]: ...

    async def due(self, now: datetime, limit: int) -> list[str]: ...

    async def pending_surveys(self, ticket_ids: Sequence[str]) -> dict[str, PendingSurvey]: ...

    async def unassigned(self, limit: int) -> list[str]: ...

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
        """`erased`: customers whose personal data (descriptions, comments) goes now."""
        ...


def derived_ticket_id(kind: str, key: str) -> str:
    """The same source key always maps to the same ticket id: it can open only one ticket."""
    return "T-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{key}").hex[:12]


def complaint_ticket_id(complaint_id: str) -> str:
    return derived_ticket_id("complaint", complaint_id)


class Assigner:
    """Round-robin among the queue's active agents below their capacity: the agent assigned
    longest ago first. Loads are counted once and kept up to date within a batch."""

    def __init__(self, repository: TicketRepository) -> None:
        self.repository = repository
        self.loads: dict[str, int] = {}
        self.touched: dict[str, Agent] = {}
        self.queues: dict[str, list[Agent]] = {}

    async def pick(self, queue: str, at: datetime) -> Agent | None:
        if queue not in self.queues:
            self.queues[queue] = [a for a in await self.repository.agents(queue) if a.active]
        agents = [self.touched.get(a.agent_id, a) for a in self.queues[queue]]
        unknown = [a.agent_id for a in agents if a.agent_id not in self.loads]
        if unknown:
            self.loads.update(await self.repository.open_load(unknown))
        free = [a for a in agents if self.loads.get(a.agent_id, 0) < a.capacity]
        if not free:
            return None
        oldest = datetime.min.replace(tzinfo=at.tzinfo)
        agent = min(free, key=lambda a: (a.last_assigned_at or oldest, a.agent_id))
        agent.last_assigned_at = at
        self.loads[agent.agent_id] = self.loads.get(agent.agent_id, 0) + 1
        self.touched[agent.agent_id] = agent
        return agent


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: TicketRepository,
    *,
    rules: TicketRules,
    clock: Clock,
) -> int:
    fresh = await repository.unprocessed(events)
    if not fresh:
        return 0
    grades: dict[str, str] = {}
    complaint_ids = [
        complaint_ticket_id(e.data.complaint_id)
        for e in fresh
        if isinstance(e.data, callcenter_v1.ComplaintReported)
    ]
    survey_ids = [
        e.data.ticket_id
        for e in fresh
        if isinstance(e.data, callcenter_v1.SurveyAnswered) and e.data.ticket_id
    ]
    tickets = await repository.load(sorted({*complaint_ids, *survey_ids}))
    known_grades = await repository.grades(sorted({e.subject for e in fresh}))
    pending = await repository.pending_surveys(sorted(set(complaint_ids)))
    settled: list[str] = []
    assigner = Assigner(repository)
    touched: dict[str, Ticket] = {}
    outbound: list[OutboundMessage] = []
    erased: list[str] = []
    for event in fresh:
        data = event.data
        match data:
            case members_v1.CustomerErasureRequested():
                erased.append(event.subject)
                outbound.append(erasure_confirmation("tickets", event, clock(), KEPT_AFTER_ERASURE))
            case archive_v1.CustomerGradeChanged():
                grades[event.subject] = data.grade
                known_grades[event.subject] = data.grade
            case callcenter_v1.ComplaintReported():
                ticket_id = complaint_ticket_id(data.complaint_id)
                if ticket_id in tickets:
                    continue  # the same complaint again: one ticket
                ticket, changes = Ticket.open(
                    ticket_id,
                    event.subject,
                    event.time,
                    channel=data.channel,
                    category=data.category,
                    severity=data.severity,
                    grade=known_grades.get(event.subject),
                    rules=rules,
                    actor=data.agent_id or "callcenter",
                    complaint_id=data.complaint_id,
                    order_id=data.order_id,
                    description=data.description,
                )
                agent = await assigner.pick(ticket.queue, event.time)
                if agent is not None:
                    changes += ticket.assign(agent.agent_id, "system", event.time, manual=False)
                early = pending.pop(ticket_id, None)
                if early is not None:
                    changes += ticket.record_survey(
                        early.survey_id, early.csat, early.nps, early.at, rules
                    )
                    settled.append(ticket_id)
                tickets[ticket_id] = touched[ticket_id] = ticket
                outbound += to_messages(ticket, changes, event_key(event))
            case callcenter_v1.SurveyAnswered():
                surveyed = tickets.get(data.ticket_id or "")
                if surveyed is None:
                    if data.ticket_id:  # its ticket may still come: keep it until then
                        pending[data.ticket_id] = PendingSurvey(
                            data.ticket_id,
                            data.survey_id,
                            data.csat,
                            data.nps,
                            event.time,
                            event_key(event),
                        )
                    continue
                changes = surveyed.record_survey(
                    data.survey_id, data.csat, data.nps, event.time, rules
                )
                touched[surveyed.ticket_id] = surveyed
                outbound += to_messages(surveyed, changes, event_key(event))
    fresh_ids = {event_key(e) for e in fresh}
    now = clock()
    for ticket in touched.values():
        outbound += to_messages(ticket, ticket.review(now, rules), f"{now.isoformat()}/review")
    await repository.save(
        list(touched.values()),
        fresh,
        outbound,
        grades=grades,
        agents=list(assigner.touched.values()),
        pending=[p for p in pending.values() if p.event_id in fresh_ids],
        settled=settled,
        erased=erased,
    )
    return len(fresh)


async def sla_sweep(
    now: datetime, repository: TicketRepository, *, rules: TicketRules, batch: int = 200
) -> int:
    """Warnings, breaches with escalation, auto-close: the tickets whose next check is due."""
    changed = 0
    seen: set[str] = set()
    while True:
        due = [i for i in await repository.due(now, batch) if i not in seen]
        if not due:
            return changed
        seen.update(due)
        tickets = await repository.load(due)
        outbound: list[OutboundMessage] = []
        for ticket in tickets.values():
            changes = ticket.review(now, rules)
            changed += bool(changes)
            outbound += to_messages(ticket, changes, f"{now.isoformat()}/review")
        await repository.save(list(tickets.values()), [], outbound)


async def assignment_sweep(now: datetime, repository: TicketRepository, *, batch: int = 200) -> int:
    """Assign waiting `new` tickets when an agent of their queue has room."""
    tickets = await repository.load(await repository.unassigned(batch))
    assigner = Assigner(repository)
    touched: list[Ticket] = []
    outbound: list[OutboundMessage] = []
    for ticket in sorted(tickets.values(), key=lambda t: (t.priority, t.opened_at)):
        if ticket.status not in OPEN or ticket.assignee is not None:
            continue
        agent = await assigner.pick(ticket.queue, now)
        if agent is None:
            continue
        changes = ticket.assign(agent.agent_id, "system", now, manual=False)
        touched.append(ticket)
        outbound += to_messages(ticket, changes, f"{now.isoformat()}/assign")
    if touched:
        await repository.save(touched, [], outbound, agents=list(assigner.touched.values()))
    return len(touched)


# -- outbound -------------------------------------------------------------------------------
def to_messages(
    ticket: Ticket, changes: Sequence[TicketEvent], cause: str
) -> list[OutboundMessage]:
    messages = []
    for position, change in enumerate(changes):
        event_type, data = _contract(ticket, change)
        event = new_event(
            event_type,
            source=SOURCE,
            subject=ticket.customer_id,
            data=data,
            id=str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL, f"{ticket.ticket_id}/{cause}/{position}/{event_type}"
                )
            ),
            time=ticket.history[-1].at if ticket.history else ticket.opened_at,
        )
        messages.append(OutboundMessage(TICKETS.name, event))
    return messages


def _contract(ticket: Ticket, change: TicketEvent) -> tuple[str, Any]:
    t = ticket.ticket_id
    match change:
        case Opened():
            return tickets_v1.TICKET_OPENED, tickets_v1.TicketOpened(
                ticket_id=t,
                complaint_id=ticket.complaint_id,
                channel=ticket.channel,
                category=ticket.category,
                severity=ticket.severity,
                priority=ticket.priority,
                queue=ticket.queue,
                order_id=ticket.order_id,
            )
        case Assigned():
            return tickets_v1.TICKET_ASSIGNED, tickets_v1.TicketAssigned(
                ticket_id=t, assignee=change.assignee, queue=ticket.queue, manual=change.manual
            )
        case StatusChanged():
            return tickets_v1.TICKET_STATUS_CHANGED, tickets_v1.TicketStatusChanged(
                ticket_id=t, status=change.status, previous_status=change.previous
            )
        case SlaWarning():
            return tickets_v1.TICKET_SLA_WARNING, tickets_v1.TicketSlaWarning(
                ticket_id=t,
                target=change.target,
                priority=ticket.priority,
                due_at=change.due_at,
                elapsed_s=change.elapsed_s,
            )
        case SlaBreached():
            return tickets_v1.TICKET_SLA_BREACHED, tickets_v1.TicketSlaBreached(
                ticket_id=t,
                target=change.target,
                priority=ticket.priority,
                due_at=change.due_at,
                elapsed_s=change.elapsed_s,
            )
        case Escalated():
            return tickets_v1.TICKET_ESCALATED, tickets_v1.TicketEscalated(
                ticket_id=t, queue=change.queue, reason=change.reason
            )
        case Resolved():
            return tickets_v1.TICKET_RESOLVED, tickets_v1.TicketResolved(
                ticket_id=t,
                root_causes=ticket.root_causes,
                category=ticket.category,
                priority=ticket.priority,
            )
        case Closed():
            return tickets_v1.TICKET_CLOSED, tickets_v1.TicketClosed(ticket_id=t, auto=change.auto)
        case Reopened():
            # The reason is free text that may name the customer: it stays on the ticket (sealed)
            # and is not published on a topic kept forever.
            return tickets_v1.TICKET_REOPENED, tickets_v1.TicketReopened(ticket_id=t)
        case CsatRecorded():
            return tickets_v1.TICKET_CSAT_RECORDED, tickets_v1.TicketCsatRecorded(
                ticket_id=t,
                survey_id=change.survey_id,
                csat=change.csat,
                nps=change.nps,
                flagged_for_review=change.flagged,
            )
