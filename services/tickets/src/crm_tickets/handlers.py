"""Use cases of the events and the sweeps -> tickets, history and `tickets.v1`.

Plain async functions over the `TicketRepository` port: the unit tests call them with an in-memory
one. The HTTP commands are in `commands.py`.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crm_contracts import CloudEvent, event_key, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.callcenter import v1 as callcenter_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.relations import v1 as relations_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import TICKETS
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation
from crm_runtime.sweeps import Clock
from crm_tickets.domain.agent import Agent, next_agent
from crm_tickets.domain.agreement import AgreementSla, agreement_first_response_s
from crm_tickets.domain.events import (
    Assigned,
    Closed,
    CsatRecorded,
    DomainEvent,
    Escalated,
    Opened,
    Reopened,
    Resolved,
    SlaBreached,
    SlaWarning,
    StatusChanged,
)
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import OPEN, Ticket
from crm_tickets.ports import Changes, PendingSurvey, TicketRepository

SOURCE = "crm/tickets"
log = logging.getLogger(__name__)

CONSUMED_TYPES = (
    callcenter_v1.COMPLAINT_REPORTED,
    callcenter_v1.SURVEY_ANSWERED,
    archive_v1.CUSTOMER_GRADE_CHANGED,
    members_v1.CUSTOMER_ERASURE_REQUESTED,
    relations_v1.AGREEMENT_CREATED,
    relations_v1.AGREEMENT_AMENDED,
    relations_v1.AGREEMENT_RENEWED,
    relations_v1.AGREEMENT_TERMINATED,
)
KEPT_AFTER_ERASURE = ("ticket figures", "SLA times", "categories and root causes")


AGREEMENT_NEEDED = frozenset(
    {
        callcenter_v1.COMPLAINT_REPORTED,
        relations_v1.AGREEMENT_AMENDED,
        relations_v1.AGREEMENT_RENEWED,
        relations_v1.AGREEMENT_TERMINATED,
    }
)
"""The types whose customers' agreements a batch reads: a ticket opens, or an agreement known
here changes."""


def agreement_sla(
    known: AgreementSla | None,
    customer_id: str,
    data: relations_v1.AgreementCreated
    | relations_v1.AgreementAmended
    | relations_v1.AgreementRenewed
    | relations_v1.AgreementTerminated,
) -> AgreementSla | None:
    """The agreement as an agreement event leaves it; None when the event changes an agreement
    never created here (relations announces `agreement.created` first, on the same key)."""
    if isinstance(data, relations_v1.AgreementCreated):
        return AgreementSla(
            data.agreement_id,
            customer_id,
            data.starts_on,
            data.ends_on,
            data.terms.first_response_hours,
        )
    if known is None:
        return None
    match data:
        case relations_v1.AgreementAmended():
            return known.amended(data.ends_on, data.terms.first_response_hours)
        case relations_v1.AgreementRenewed():
            return known.renewed(data.starts_on, data.ends_on)
        case relations_v1.AgreementTerminated():
            return known.terminated(data.terminated_on)


class SurveyOfAnotherCustomerError(ValueError):
    """A survey naming a ticket of another customer than its event's: not recorded, dead-lettered
    (the consumer isolates the event and sends it to `tickets.dlq.v1` with this reason)."""


def derived_ticket_id(kind: str, key: str) -> str:
    """The same source key always maps to the same ticket id: it can open only one ticket."""
    return "T-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{key}").hex[:12]


def complaint_ticket_id(complaint_id: str) -> str:
    return derived_ticket_id("complaint", complaint_id)


class Assigner:
    """Hands tickets out round-robin (`next_agent`) within one use case: each queue's agents and
    their loads are read once and kept up to date as tickets are handed out."""

    def __init__(self, repository: TicketRepository) -> None:
        self.repository = repository
        self.loads: dict[str, int] = {}
        self.chosen: dict[str, Agent] = {}
        self.queues: dict[str, list[Agent]] = {}

    async def pick(self, queue: str, at: datetime) -> Agent | None:
        if queue not in self.queues:
            self.queues[queue] = [a for a in await self.repository.agents_in(queue) if a.active]
        agents = [self.chosen.get(a.agent_id, a) for a in self.queues[queue]]
        unknown = [a.agent_id for a in agents if a.agent_id not in self.loads]
        if unknown:
            self.loads.update(await self.repository.open_load(unknown))
        agent = next_agent(agents, self.loads, at)
        if agent is None:
            return None
        agent.last_assigned_at = at
        self.loads[agent.agent_id] = self.loads.get(agent.agent_id, 0) + 1
        self.chosen[agent.agent_id] = agent
        return agent

    def last_assigned(self) -> dict[str, datetime]:
        """For `Changes.last_assigned`: when each agent chosen here took a ticket."""
        return {
            i: a.last_assigned_at for i, a in self.chosen.items() if a.last_assigned_at is not None
        }


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: TicketRepository,
    *,
    rules: TicketRules,
    clock: Clock,
) -> int:
    """Apply a batch in order and save it in one transaction; returns how many were new."""
    fresh = await repository.unprocessed(events)
    if not fresh:
        return 0
    complaints = [e for e in fresh if isinstance(e.data, callcenter_v1.ComplaintReported)]
    complaint_ids = [complaint_ticket_id(e.data.complaint_id) for e in complaints]
    survey_ids = [
        e.data.ticket_id
        for e in fresh
        if isinstance(e.data, callcenter_v1.SurveyAnswered) and e.data.ticket_id
    ]
    tickets = await repository.load(sorted({*complaint_ids, *survey_ids}))
    complainants = sorted({e.subject for e in complaints})  # only a complaint uses the grade
    known_grades = await repository.grades(complainants) if complainants else {}
    agreements = await repository.agreements(
        sorted({e.subject for e in fresh if e.type in AGREEMENT_NEEDED})
    )
    pending = await repository.pending_surveys(sorted(set(complaint_ids)))
    assigner = Assigner(repository)
    touched: dict[str, Ticket] = {}
    changes = Changes(applied=list(fresh))
    for event in fresh:
        data = event.data
        match data:
            case members_v1.CustomerErasureRequested():
                changes.erased.append(event.subject)
                changes.outbound.append(
                    erasure_confirmation("tickets", event, clock(), KEPT_AFTER_ERASURE)
                )
            case archive_v1.CustomerGradeChanged():
                changes.grades[event.subject] = data.grade
                known_grades[event.subject] = data.grade
            case (
                relations_v1.AgreementCreated()
                | relations_v1.AgreementAmended()
                | relations_v1.AgreementRenewed()
                | relations_v1.AgreementTerminated()
            ):
                changed = agreement_sla(agreements.get(data.agreement_id), event.subject, data)
                if changed is not None:
                    agreements[changed.agreement_id] = changes.agreements[changed.agreement_id] = (
                        changed
                    )
            case callcenter_v1.ComplaintReported():
                ticket_id = complaint_ticket_id(data.complaint_id)
                if ticket_id in tickets:
                    continue  # the same complaint again: one ticket
                ticket, happened = Ticket.open(
                    ticket_id,
                    event.subject,
                    event.time,
                    channel=data.channel,
                    category=data.category,
                    severity=data.severity,
                    grade=known_grades.get(event.subject),
                    rules=rules,
                    actor=data.agent_id or "callcenter",
                    agreement_first_response_s=agreement_first_response_s(
                        (a for a in agreements.values() if a.customer_id == event.subject),
                        event.time,
                        rules.calendar,
                    ),
                    complaint_id=data.complaint_id,
                    order_id=data.order_id,
                    description=data.description,
                )
                agent = await assigner.pick(ticket.queue, event.time)
                if agent is not None:
                    happened += ticket.assign(agent.agent_id, "system", event.time, manual=False)
                early = pending.pop(ticket_id, None)
                if early is not None:
                    changes.settled.append(ticket_id)
                    # Kept before the customer was known to the survey (None: kept before
                    # the check existed); another customer's answer never lands.
                    if early.customer_id in (None, ticket.customer_id):
                        happened += ticket.record_survey(
                            early.survey_id, early.csat, early.nps, early.at, rules
                        )
                    else:
                        log.warning(
                            "survey of another customer dropped",
                            extra={
                                "survey_id": early.survey_id,
                                "ticket_id": ticket_id,
                                "event_id": early.event_id,
                            },
                        )
                tickets[ticket_id] = touched[ticket_id] = ticket
                changes.outbound += to_messages(ticket, happened, event_key(event))
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
                            customer_id=event.subject,
                        )
                    continue
                if surveyed.customer_id != event.subject:
                    raise SurveyOfAnotherCustomerError(
                        f"survey {data.survey_id!r} names ticket {surveyed.ticket_id}, which is "
                        "another customer's than the event's subject: not recorded"
                    )
                happened = surveyed.record_survey(
                    data.survey_id, data.csat, data.nps, event.time, rules
                )
                touched[surveyed.ticket_id] = surveyed
                changes.outbound += to_messages(surveyed, happened, event_key(event))
    fresh_ids = {event_key(e) for e in fresh}
    changes.pending = [p for p in pending.values() if p.event_id in fresh_ids]
    changes.last_assigned = assigner.last_assigned()
    now = clock()
    for ticket in touched.values():
        review = ticket.review(now, rules)
        changes.outbound += to_messages(ticket, review, f"{now.isoformat()}/review")
        changes.add(ticket, now, rules)
    await repository.save(changes)
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
        changes = Changes()
        for ticket in (await repository.load(due)).values():
            happened = ticket.review(now, rules)
            changed += bool(happened)
            changes.outbound += to_messages(ticket, happened, f"{now.isoformat()}/review")
            changes.add(ticket, now, rules)
        await repository.save(changes)


async def assignment_sweep(
    now: datetime, repository: TicketRepository, *, rules: TicketRules, batch: int = 200
) -> int:
    """Assign waiting `new` tickets when an agent of their queue has room."""
    tickets = await repository.load(await repository.unassigned(batch))
    assigner = Assigner(repository)
    changes = Changes()
    for ticket in sorted(tickets.values(), key=lambda t: (t.priority, t.opened_at)):
        if ticket.status not in OPEN or ticket.assignee is not None:
            continue
        agent = await assigner.pick(ticket.queue, now)
        if agent is None:
            continue
        happened = ticket.assign(agent.agent_id, "system", now, manual=False)
        changes.outbound += to_messages(ticket, happened, f"{now.isoformat()}/assign")
        changes.add(ticket, now, rules)
    if changes.tickets:
        changes.last_assigned = assigner.last_assigned()
        await repository.save(changes)
    return len(changes.tickets)


# -- outbound -------------------------------------------------------------------------------
def to_messages(
    ticket: Ticket, happened: Sequence[DomainEvent], cause: str
) -> list[OutboundMessage]:
    """The `tickets.v1` events of what `happened` to `ticket`, their ids derived from `cause`."""
    messages = []
    for position, change in enumerate(happened):
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


def _contract(ticket: Ticket, change: DomainEvent) -> tuple[str, Any]:
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
