"""What staff ask of relations over HTTP: create, complete, reassign and cancel tasks; create,
amend, terminate and renew agreements. Plain functions over the `RelationsRepository` port
(`complete_task(command, repository, clock, rules)`): unit tests run them on the in-memory
fakes.

Creating is idempotent by the caller's key (the id derives from the user and the key); the
other actions by the record's state (a task done twice is refused). A write that lost a race
to the consumer is redone on a fresh read (`retry_on_conflict`).
"""

import uuid
from dataclasses import dataclass
from datetime import date

from crm_relations.domain.agreement import Agreement, NoAgreementError, Terms
from crm_relations.domain.customer import Customer, schedule
from crm_relations.domain.events import (
    AgreementChanged,
    Change,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskReassigned,
)
from crm_relations.domain.rules import RelationsRules
from crm_relations.domain.task import NoTaskError, Outcome, Task, TaskKind
from crm_relations.handlers import Batch, task_id
from crm_relations.ports import RelationsRepository
from crm_runtime.errors import retry_on_conflict
from crm_runtime.sweeps import Clock


class NotYoursError(PermissionError):
    """An agent acting on a task of someone else."""


class IdempotencyKeyReusedError(ValueError):
    """An Idempotency-Key already used for another task."""


@dataclass(frozen=True)
class Actor:
    user: str
    supervisor: bool
    """Supervisors work everyone's tasks; others their own and the queue's."""

    def may_work(self, task: Task) -> bool:
        return self.supervisor or task.owner in (None, self.user)


@dataclass(frozen=True)
class CreateTask:
    customer_id: str
    kind: TaskKind
    owner: str | None
    due_on: date | None
    due_in_business_days: int | None
    summary: str | None
    key: str


@dataclass(frozen=True)
class CompleteTask:
    task_id: str
    outcome: Outcome
    summary: str | None
    next_follow_up_on: date | None


@dataclass(frozen=True)
class Done:
    task: Task
    replayed: bool = False


async def _task(repository: RelationsRepository, task_id_: str, actor: Actor) -> Task:
    task = (await repository.tasks([task_id_])).get(task_id_)
    if task is None:
        raise NoTaskError(task_id_)
    if not actor.may_work(task):
        raise NotYoursError(f"task {task_id_} is {task.owner}'s: only a supervisor may act on it")
    return task


async def create_task(
    command: CreateTask,
    actor: Actor,
    repository: RelationsRepository,
    clock: Clock,
    rules: RelationsRules,
) -> Done:
    """A task a person makes (for themselves, or, a supervisor, for anyone or the queue)."""
    if not actor.supervisor and command.owner not in (None, actor.user):
        raise NotYoursError("agents make tasks for themselves or the queue")
    new_id = task_id(f"staff/{actor.user}/{command.key}")

    async def attempt() -> Done:
        existing = (await repository.tasks([new_id])).get(new_id)
        if existing is not None:
            if (existing.customer_id, existing.kind) != (command.customer_id, command.kind):
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {command.key!r} was used for another task"
                )
            return Done(existing, replayed=True)
        now = clock()
        if command.due_on is not None:
            due = rules.calendar.due_on(command.due_on)
        else:
            due = rules.calendar.add_working_days(now, command.due_in_business_days or 0)
        task = Task(
            new_id,
            command.customer_id,
            command.kind,
            command.owner,
            due,
            created_at=now,
            created_by=actor.user,
            reason="staff",
            summary=command.summary,
        )
        await _save(repository, [TaskCreated(task, now)])
        return Done(task)

    return await retry_on_conflict(attempt)


async def complete_task(
    command: CompleteTask,
    actor: Actor,
    repository: RelationsRepository,
    clock: Clock,
    rules: RelationsRules,
) -> Done:
    """Record the outcome and summary; the customer was contacted (unless not reached), so their
    plan's next follow-up is due an interval from now, or on the date the person chose."""

    async def attempt() -> Done:
        task = await _task(repository, command.task_id, actor)
        now = clock()
        task.complete(actor.user, command.outcome, command.summary, now)
        customer = (await repository.customers([task.customer_id])).get(task.customer_id)
        if customer is None:
            customer = Customer(task.customer_id, first_seen=task.created_at)
        if command.outcome != "not_reached":
            customer.contacted(now)
        plan_task = None
        if customer.plan_task_id and customer.plan_task_id != task.task_id:
            plan_task = (await repository.tasks([customer.plan_task_id])).get(customer.plan_task_id)
        followed = schedule(
            customer,
            plan_task,
            rules,
            now,
            task_id(f"{task.task_id}/next"),
            on=command.next_follow_up_on,
            reason="next_follow_up" if command.next_follow_up_on else "plan",
            by=actor.user,
        )
        nxt = next((c.task for c in followed if isinstance(c, TaskCreated)), None)
        await _save(repository, [TaskCompleted(task, now, nxt), *followed], customers=[customer])
        return Done(task)

    return await retry_on_conflict(attempt)


async def reassign_task(
    task_id_: str, owner: str | None, actor: Actor, repository: RelationsRepository, clock: Clock
) -> Done:
    """To another person or the queue (None); an agent may take a queue task for themselves."""

    async def attempt() -> Done:
        task = await _task(repository, task_id_, actor)
        now = clock()
        previous = task.reassign(owner)
        await _save(repository, [TaskReassigned(task, previous, actor.user, now)])
        return Done(task)

    return await retry_on_conflict(attempt)


async def cancel_task(
    task_id_: str, actor: Actor, repository: RelationsRepository, clock: Clock
) -> Done:
    async def attempt() -> Done:
        task = await _task(repository, task_id_, actor)
        now = clock()
        task.cancel()
        await _save(repository, [TaskCancelled(task, actor.user, "staff", now)])
        return Done(task)

    return await retry_on_conflict(attempt)


# -- agreements -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateAgreement:
    customer_id: str
    number: str
    owner: str | None
    starts_on: date
    ends_on: date
    terms: Terms
    key: str


def agreement_id(customer_id: str, number: str) -> str:
    """One agreement per customer and number: the number is the business key."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"relations/agreement/{customer_id}/{number}"))


class AgreementExistsError(ValueError):
    def __init__(self, existing: Agreement) -> None:
        super().__init__(f"agreement {existing.number} of this customer exists already")
        self.existing = existing


async def create_agreement(
    command: CreateAgreement, by: str, repository: RelationsRepository, clock: Clock
) -> Agreement:
    """The customer's agreement `number`; the same request again returns it (a retry), other
    dates or terms under the same number are refused (`AgreementExistsError`)."""
    new_id = agreement_id(command.customer_id, command.number)
    existing = (await repository.agreements([new_id])).get(new_id)
    if existing is not None:
        same = (existing.starts_on, existing.terms.minimum, existing.terms.period) == (
            command.starts_on,
            command.terms.minimum,
            command.terms.period,
        )
        if same and existing.owner == command.owner:
            return existing
        raise AgreementExistsError(existing)
    now = clock()
    agreement = Agreement(
        new_id,
        command.customer_id,
        command.number,
        command.owner,
        command.starts_on,
        command.ends_on,
        command.terms,
        created_at=now,
        created_by=by,
    )
    await _save(repository, [AgreementChanged("created", agreement, by, now)], [agreement])
    return agreement


@dataclass(frozen=True)
class AmendAgreement:
    agreement_id: str
    owner: str | None
    ends_on: date
    terms: Terms


async def _agreement(repository: RelationsRepository, agreement_id_: str) -> Agreement:
    agreement = (await repository.agreements([agreement_id_])).get(agreement_id_)
    if agreement is None:
        raise NoAgreementError(agreement_id_)
    return agreement


async def amend_agreement(
    command: AmendAgreement, by: str, repository: RelationsRepository, clock: Clock
) -> Agreement:
    async def attempt() -> Agreement:
        agreement = await _agreement(repository, command.agreement_id)
        agreement.amend(command.owner, command.ends_on, command.terms)
        now = clock()
        await _save(repository, [AgreementChanged("amended", agreement, by, now)], [agreement])
        return agreement

    return await retry_on_conflict(attempt)


async def terminate_agreement(
    agreement_id_: str, on: date, by: str, repository: RelationsRepository, clock: Clock
) -> Agreement:
    async def attempt() -> Agreement:
        agreement = await _agreement(repository, agreement_id_)
        agreement.terminate(on)
        now = clock()
        await _save(repository, [AgreementChanged("terminated", agreement, by, now)], [agreement])
        return agreement

    return await retry_on_conflict(attempt)


async def renew_agreement(
    agreement_id_: str, ends_on: date, by: str, repository: RelationsRepository, clock: Clock
) -> Agreement:
    async def attempt() -> Agreement:
        agreement = await _agreement(repository, agreement_id_)
        previous = agreement.renew(ends_on)
        now = clock()
        change = AgreementChanged("renewed", agreement, by, now, previous_ends_on=previous)
        await _save(repository, [change], [agreement])
        return agreement

    return await retry_on_conflict(attempt)


async def _save(
    repository: RelationsRepository,
    changes: list[Change],
    agreements: list[Agreement] | None = None,
    customers: list[Customer] | None = None,
) -> None:
    batch = Batch()
    batch.record(changes)
    for agreement in agreements or []:
        batch.agreements[agreement.agreement_id] = agreement
    for customer in customers or []:
        batch.customers[customer.customer_id] = customer
    await repository.save(batch.to_changes([]))
