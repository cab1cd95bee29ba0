"""What people and integrations ask of tickets over HTTP: open a ticket, act on one (assign,
comment, move its status, resolve, reopen), put or deactivate an agent. Plain functions over the
`TicketRepository` port (`comment(command, repository, clock, rules)`): unit tests run them on
the in-memory fakes.

An action on a ticket is refused when the ticket has no room for it (`TicketFullError`), or when
the status machine does not allow it (`InvalidTransitionError`); what it makes due (an SLA
warning, a breach) happens with it. A write that lost a race (to the consumer, a sweep or another
request) is redone on a fresh read (`retry_on_conflict`).
"""

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from crm_runtime.errors import retry_on_conflict
from crm_runtime.sweeps import Clock
from crm_tickets.domain.agent import Agent, NoAgentError
from crm_tickets.domain.agreement import agreement_first_response_s
from crm_tickets.domain.events import DomainEvent, Status
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import NoTicketError, Ticket
from crm_tickets.handlers import Assigner, derived_ticket_id, to_messages
from crm_tickets.ports import Changes, TicketRepository


@dataclass(frozen=True)
class Done:
    """The ticket as a command left it (or found it), and when."""

    ticket: Ticket
    at: datetime
    replayed: bool = False
    """An intake retried with the same Idempotency-Key: the ticket the first call opened."""


# -- intake ---------------------------------------------------------------------------------
class IdempotencyKeyReusedError(ValueError):
    """The caller's Idempotency-Key already opened a ticket for a different request (HTTP 422)."""


@dataclass(frozen=True)
class OpenTicket:
    customer_id: str
    description: str
    actor: str
    """The user id of who asks: an Idempotency-Key is theirs alone."""
    channel: str = "phone"
    category: str | None = None
    severity: str | None = None
    order_id: str | None = None
    key: str | None = None
    """The caller's Idempotency-Key: the caller's retries with it open one ticket."""

    def ticket_id(self) -> str:
        """With a key: derived from the caller and the key (another caller's same key is
        another ticket); else a fresh one."""
        if self.key is None:
            return "T-" + uuid.uuid4().hex[:12]
        # A user id holds no "/" (ADR 0010), so caller and key cannot run into each other.
        return derived_ticket_id("intake", f"{self.actor}/{self.key}")

    def fingerprint(self, ticket_id: str) -> str:
        """The SHA-256 of what the request asks (salted with the ticket id), kept instead of
        the request to tell a retry from another request under the same key."""
        asked = [
            ticket_id,
            self.customer_id,
            self.description,
            self.channel,
            self.category,
            self.severity,
            self.order_id,
        ]
        return hashlib.sha256(json.dumps(asked, ensure_ascii=False).encode()).hexdigest()


async def open_ticket(
    command: OpenTicket, repository: TicketRepository, clock: Clock, rules: TicketRules
) -> Done:
    """A ticket prioritised by the customer's known grade, handed to an agent with room if any.
    With a key the caller already used: the stored ticket, with what was added since, when the
    request is the same; `IdempotencyKeyReusedError` when it is not."""
    ticket_id = command.ticket_id()
    keyed = command.key is not None  # as `ticket_id`: a keyed id is looked up before it is made
    fingerprint = command.fingerprint(ticket_id) if keyed else None

    async def attempt() -> Done:
        now = clock()
        existing = await repository.get(ticket_id) if keyed else None
        if existing is not None:
            # No stored fingerprint: the customer was erased since, nothing left to compare.
            if existing.intake_fingerprint not in (None, fingerprint):
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {command.key!r} already opened ticket {ticket_id} for "
                    "a different request; send a new key for a new ticket"
                )
            return Done(existing, now, replayed=True)
        grade = (await repository.grades([command.customer_id])).get(command.customer_id)
        agreements = await repository.agreements([command.customer_id])
        ticket, happened = Ticket.open(
            ticket_id,
            command.customer_id,
            now,
            channel=command.channel,
            category=command.category,
            severity=command.severity,
            grade=grade,
            rules=rules,
            actor=command.actor,
            order_id=command.order_id,
            description=command.description,
            intake_fingerprint=fingerprint,
            agreement_first_response_s=agreement_first_response_s(
                agreements.values(), now, rules.calendar
            ),
        )
        assigner = Assigner(repository)
        agent = await assigner.pick(ticket.queue, now)
        if agent is not None:
            happened += ticket.assign(agent.agent_id, "system", now, manual=False)
        changes = Changes(
            outbound=to_messages(ticket, happened, f"api/{ticket_id}"),
            last_assigned=assigner.last_assigned(),
        )
        changes.add(ticket, now, rules)
        await repository.save(changes)
        return Done(ticket, now)

    return await retry_on_conflict(attempt)


# -- actions on a ticket --------------------------------------------------------------------
@dataclass(frozen=True)
class Assign:
    ticket_id: str
    assignee: str
    actor: str


@dataclass(frozen=True)
class Comment:
    ticket_id: str
    text: str
    actor: str
    public: bool = False
    """Seen by the customer: a response."""
    comment_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass(frozen=True)
class ChangeStatus:
    ticket_id: str
    status: Status
    actor: str


@dataclass(frozen=True)
class Resolve:
    ticket_id: str
    root_causes: list[str]
    actor: str
    summary: str | None = None
    """Kept as a public comment."""


@dataclass(frozen=True)
class Reopen:
    ticket_id: str
    actor: str
    reason: str | None = None


async def assign(
    command: Assign, repository: TicketRepository, clock: Clock, rules: TicketRules
) -> Done:
    """A manual assignment, to an agent that exists (else `NoAgentError`)."""
    if await repository.agent(command.assignee) is None:
        raise NoAgentError(command.assignee)
    return await _act(
        command.ticket_id,
        lambda t, now: t.assign(command.assignee, command.actor, now, manual=True),
        repository,
        clock,
        rules,
    )


async def comment(
    command: Comment, repository: TicketRepository, clock: Clock, rules: TicketRules
) -> Done:
    return await _act(
        command.ticket_id,
        lambda t, now: t.comment(
            command.comment_id, command.actor, command.text, now, public=command.public
        ),
        repository,
        clock,
        rules,
        adds_comment=True,
    )


async def change_status(
    command: ChangeStatus, repository: TicketRepository, clock: Clock, rules: TicketRules
) -> Done:
    return await _act(
        command.ticket_id,
        lambda t, now: t.change_status(command.status, command.actor, now),
        repository,
        clock,
        rules,
    )


async def resolve(
    command: Resolve, repository: TicketRepository, clock: Clock, rules: TicketRules
) -> Done:
    """With at least one root-cause tag (else `ValueError`)."""
    return await _act(
        command.ticket_id,
        lambda t, now: t.resolve(command.root_causes, command.actor, now, command.summary),
        repository,
        clock,
        rules,
        adds_comment=bool(command.summary),
    )


async def reopen(
    command: Reopen, repository: TicketRepository, clock: Clock, rules: TicketRules
) -> Done:
    """Within the reopen window."""
    return await _act(
        command.ticket_id,
        lambda t, now: t.reopen(command.reason, command.actor, now, rules),
        repository,
        clock,
        rules,
    )


Action = Callable[[Ticket, datetime], list[DomainEvent]]


async def _act(
    ticket_id: str,
    action: Action,
    repository: TicketRepository,
    clock: Clock,
    rules: TicketRules,
    *,
    adds_comment: bool = False,
) -> Done:
    """Apply a person's action if the ticket has room for it, with what it makes due; redone on
    a fresh read when the ticket changed meanwhile."""

    async def attempt() -> Done:
        ticket = await repository.get(ticket_id)
        if ticket is None:
            raise NoTicketError(ticket_id)
        now = clock()
        ticket.ensure_room(rules, comment=adds_comment)
        happened = [*action(ticket, now), *ticket.review(now, rules)]
        changes = Changes(outbound=to_messages(ticket, happened, f"api/{uuid.uuid4()}"))
        changes.add(ticket, now, rules)
        await repository.save(changes)
        return Done(ticket, now)

    return await retry_on_conflict(attempt)


# -- agents ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PutAgent:
    agent_id: str
    name: str
    queues: list[str]
    capacity: int
    active: bool = True


async def put_agent(command: PutAgent, repository: TicketRepository) -> Agent:
    """Create or replace an agent; the round-robin's memory of it stays."""
    existing = await repository.agent(command.agent_id)
    agent = Agent(
        command.agent_id,
        command.name,
        sorted(set(command.queues)),
        command.capacity,
        command.active,
        existing.last_assigned_at if existing else None,
    )
    await repository.save(Changes(agents=[agent]))
    return agent


async def deactivate_agent(agent_id: str, repository: TicketRepository) -> Agent:
    """The agent takes no more tickets (`NoAgentError` if unknown); theirs stay theirs."""
    agent = await repository.agent(agent_id)
    if agent is None:
        raise NoAgentError(agent_id)
    agent.active = False
    await repository.save(Changes(agents=[agent]))
    return agent
