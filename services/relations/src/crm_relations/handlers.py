"""Use cases: inbound events and sweeps -> tasks, agreement figures and `relations.v1` events
(the HTTP commands are in `commands.py`, the mapping to the contract in `outbound.py`).

Plain async functions over the `RelationsRepository` port (`ports.py`): the unit tests call them
with an in-memory one. Times of event-made changes are the events' own times, so a replay
makes the same tasks with the same ids and due dates.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crm_contracts import CloudEvent, event_key
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_relations.domain.agreement import Agreement, AtRisk, OrderLine, PeriodClosed, Review
from crm_relations.domain.customer import Customer, schedule
from crm_relations.domain.events import (
    Change,
    DigestDue,
    TaskCancelled,
    TaskCreated,
    TaskOverdue,
)
from crm_relations.domain.rules import RelationsRules
from crm_relations.domain.task import SYSTEM, Task, TaskKind
from crm_relations.outbound import to_message
from crm_relations.ports import Changes, RelationsRepository
from crm_runtime.privacy import erasure_confirmation
from crm_runtime.sweeps import Clock, utc_now

CONSUMED_TYPES = (
    members_v1.CUSTOMER_REGISTERED,
    members_v1.CUSTOMER_PROFILE_UPDATED,
    members_v1.CUSTOMER_ERASURE_REQUESTED,
    archive_v1.CUSTOMER_CREATED,
    archive_v1.CUSTOMER_GRADE_CHANGED,
    archive_v1.CUSTOMER_LIFECYCLE_CHANGED,
    archive_v1.CUSTOMER_CHURN_RISK_RAISED,
    tickets_v1.TICKET_CSAT_RECORDED,
    *orders_v1.EVENTS,
)
KEPT_AFTER_ERASURE = ("task figures (kind, owner, dates, outcome)", "agreement fulfilment figures")
SELF_KEYED = frozenset({orders_v1.ORDER_PLACED, orders_v1.ORDER_CANCELLED})
"""Events the inbox does not mark (ADR 0025): an agreement counts an order once, as its line
(`_id` = the agreement and the order), which the batch reads for the orders it names, and a
cancelled line is not cancelled twice. A refund is marked: it takes its amount off the line
each time it is applied."""
PROFILE_TYPES = {
    members_v1.CUSTOMER_REGISTERED,
    members_v1.CUSTOMER_PROFILE_UPDATED,
    archive_v1.CUSTOMER_CREATED,
    archive_v1.CUSTOMER_GRADE_CHANGED,
    archive_v1.CUSTOMER_LIFECYCLE_CHANGED,
}
"""What makes relations keep a customer record (and plan their follow-ups)."""


def task_id(cause: str) -> str:
    """A task's id from what made it: the same cause can never make two tasks."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"relations/task/{cause}"))


class Batch:
    """What a batch loaded and changed: saved in one `Changes`."""

    def __init__(self) -> None:
        self.customers: dict[str, Customer] = {}
        self.tasks: dict[str, Task] = {}
        self.agreements: dict[str, Agreement] = {}
        self.lines: dict[tuple[str, str], OrderLine] = {}
        self.changes: list[Change] = []
        self.touched_tasks: set[str] = set()
        self.touched_lines: set[tuple[str, str]] = set()

    def record(self, changes: Sequence[Change]) -> None:
        for change in changes:
            self.changes.append(change)
            task = getattr(change, "task", None)
            if isinstance(task, Task):
                self.tasks[task.task_id] = task
                self.touched_tasks.add(task.task_id)

    def open_of(self, customer_id: str, kind: TaskKind | None = None) -> list[Task]:
        return [
            t
            for t in self.tasks.values()
            if t.customer_id == customer_id and t.is_open and (kind is None or t.kind == kind)
        ]

    def to_changes(self, applied: Sequence[CloudEvent[Any]], extra: Sequence[Any] = ()) -> Changes:
        return Changes(
            customers=list(self.customers.values()),
            tasks=[self.tasks[i] for i in sorted(self.touched_tasks)],
            agreements=list(self.agreements.values()),
            order_lines=[self.lines[k] for k in sorted(self.touched_lines)],
            applied=list(applied),
            outbound=[*(to_message(c) for c in self.changes), *extra],
        )


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: RelationsRepository,
    *,
    rules: RelationsRules,
    clock: Clock = utc_now,
) -> int:
    """Apply a batch in order and persist it in one transaction; returns how many were new.

    An order touches only its customer's agreements: the customers and tasks of a batch are
    read (and written back) for its other events' subjects only, so a batch of orders reads and
    writes no customer record and no task, and the order lines already counted are read only
    for customers with an active agreement."""
    fresh = await repository.unprocessed(events)
    if not fresh:
        return 0
    orders = [e for e in fresh if e.type in orders_v1.EVENTS]
    people = sorted({e.subject for e in fresh if e.type not in orders_v1.EVENTS})
    batch = Batch()
    if people:
        batch.customers = await repository.customers(people)
        batch.tasks = {t.task_id: t for t in await repository.open_tasks(people)}
        plan_ids = [c.plan_task_id for c in batch.customers.values() if c.plan_task_id]
        batch.tasks.update(await repository.tasks([i for i in plan_ids if i not in batch.tasks]))
    if orders:
        buyers = sorted({e.subject for e in orders})
        batch.agreements = {a.agreement_id: a for a in await repository.agreements_of(buyers)}
        bound = {a.customer_id for a in batch.agreements.values()}
        if bound:  # the lines counted so far, of the orders of customers with an agreement
            order_ids = sorted({e.data.order_id for e in orders if e.subject in bound})
            lines = await repository.order_lines(sorted(bound), order_ids)
            batch.lines = {(line.agreement_id, line.order_id): line for line in lines}
    confirmations = []
    for event in fresh:
        apply_event(batch, event, rules)
        if event.type == members_v1.CUSTOMER_ERASURE_REQUESTED:
            confirmations.append(
                erasure_confirmation("relations", event, clock(), KEPT_AFTER_ERASURE)
            )
    changes = batch.to_changes(fresh, confirmations)
    changes.erased = [m.event.subject for m in confirmations]
    changes.unmarked = {event_key(e) for e in orders if e.type in SELF_KEYED}
    await repository.save(changes)
    return len(fresh)


def apply_event(batch: Batch, event: CloudEvent[Any], rules: RelationsRules) -> None:
    data, at, key = event.data, event.time, event_key(event)
    customer = batch.customers.get(event.subject)
    if customer is None and event.type in PROFILE_TYPES:
        customer = batch.customers[event.subject] = Customer(event.subject, first_seen=at)
    if customer is not None and customer.erased and event.type not in orders_v1.EVENTS:
        return  # nothing is planned or asked of anyone for an erased customer
    match data:
        case members_v1.CustomerRegistered():
            assert customer is not None
            if data.account_owner is not None:
                customer.owner = data.account_owner
        case members_v1.CustomerProfileUpdated():
            assert customer is not None
            if "account_owner" in data.model_fields_set:
                customer.owner = data.account_owner
        case archive_v1.CustomerCreated() | archive_v1.CustomerLifecycleChanged():
            assert customer is not None
            customer.stage = data.stage
        case archive_v1.CustomerGradeChanged():
            assert customer is not None
            customer.grade = data.grade
        case archive_v1.CustomerChurnRiskRaised():
            if not batch.open_of(event.subject, "recovery"):
                due = rules.calendar.add_working_days(at, rules.recovery_business_days)
                owner = customer.owner if customer else None
                batch.record(
                    [_new_task(event.subject, "recovery", owner, due, at, key, "churn_risk")]
                )
            return
        case tickets_v1.TicketCsatRecorded():
            if data.csat is not None and data.csat <= rules.low_csat:
                due = rules.calendar.add_working_days(at, rules.callback_business_days)
                owner = customer.owner if customer else None
                batch.record(
                    [_new_task(event.subject, "callback", owner, due, at, key, "low_csat")]
                )
            return
        case members_v1.CustomerErasureRequested():
            _erase(batch, event.subject, at)
            return
        case orders_v1.OrderPlaced() | orders_v1.OrderRefunded() | orders_v1.OrderCancelled():
            _apply_order(batch, event, rules)
            return
        case _:
            raise TypeError(f"relations does not apply {event.type}")
    assert customer is not None
    current = batch.tasks.get(customer.plan_task_id or "")
    batch.record(schedule(customer, current, rules, at, task_id(f"{key}/plan")))


def _new_task(
    customer_id: str,
    kind: TaskKind,
    owner: str | None,
    due: datetime,
    at: datetime,
    cause: str,
    reason: str,
    agreement_id: str | None = None,
) -> TaskCreated:
    task = Task(
        task_id(f"{cause}/{kind}"),
        customer_id,
        kind,
        owner,
        due,
        created_at=at,
        created_by=SYSTEM,
        reason=reason,
        agreement_id=agreement_id,
    )
    return TaskCreated(task, at)


def _erase(batch: Batch, customer_id: str, at: datetime) -> None:
    """Kept as an erased record (even for a customer relations never heard of), so that no later
    event plans a follow-up or a call for them."""
    customer = batch.customers.get(customer_id)
    if customer is None:
        customer = batch.customers[customer_id] = Customer(customer_id, first_seen=at)
    customer.erased = True
    customer.plan_task_id = None
    for task in batch.open_of(customer_id):
        task.forget()
        batch.record([TaskCancelled(task, SYSTEM, "erased", at)])


def _apply_order(batch: Batch, event: CloudEvent[Any], rules: RelationsRules) -> None:
    """Count the order in each active agreement of the customer that covers its day; take
    refunds and cancellations back from the period the order was counted in."""
    data = event.data
    agreements = [a for a in batch.agreements.values() if a.customer_id == event.subject]
    if isinstance(data, orders_v1.OrderPlaced):
        day = rules.calendar.local_date(event.time)
        for agreement in agreements:
            key = (agreement.agreement_id, data.order_id)
            if not agreement.covers(day) or key in batch.lines:
                continue  # not this agreement's, or the same order again
            line = OrderLine(
                agreement.agreement_id,
                data.order_id,
                event.subject,
                agreement.figures(day).start,
                data.amount,
                data.currency,
            )
            agreement.place(line)
            batch.lines[key] = line
            batch.touched_lines.add(key)
        return
    for agreement in agreements:
        key = (agreement.agreement_id, data.order_id)
        counted = batch.lines.get(key)
        if counted is None:
            continue  # placed before the agreement or outside it: never counted
        if isinstance(data, orders_v1.OrderRefunded):
            if data.currency is None or data.currency == counted.currency:
                agreement.refund(counted, data.amount)
        else:
            agreement.cancel(counted)
        batch.touched_lines.add(key)


# -- sweeps ---------------------------------------------------------------------------------
async def overdue_sweep(
    now: datetime, repository: RelationsRepository, *, rules: RelationsRules, batch_size: int = 200
) -> int:
    """Mark tasks past their due time overdue and announce it (`task.overdue`): once when they
    become overdue, once more when they are `escalate_after_business_days` late."""
    changed = 0
    seen: set[str] = set()
    while True:
        due = [
            t for t in await repository.tasks_to_notice(now, batch_size) if t.task_id not in seen
        ]
        if not due:
            return changed
        seen.update(t.task_id for t in due)
        batch = Batch()
        for task in due:
            late = rules.calendar.working_days_between(task.due_at, now)
            batch.tasks[task.task_id] = task
            batch.touched_tasks.add(task.task_id)
            if task.overdue_notice(now, late, rules.escalate_after_business_days):
                batch.record([TaskOverdue(task, late, now)])
                changed += 1
        await repository.save(batch.to_changes([]))


async def digest_sweep(
    now: datetime,
    repository: RelationsRepository,
    *,
    rules: RelationsRules,
    owners_per_save: int = 50,
) -> int:
    """Each owner's morning digest (`tasks.digest_due`): on a business day, from `digest_at` in
    the calendar's zone, one per owner with open tasks due by the day's close or overdue —
    listing them (at most `digest_limit`, oldest due first) with the counts of all. Each owner's
    digest of a day is given once (`digests_given`, saved with the events), so the sweep can
    run as often as it likes; an owner whose first task appears later that day gets theirs then.
    The team's queue (no owner) has none. Returns the digests given."""
    calendar = rules.calendar
    day = calendar.local_date(now)
    if not calendar.is_working_day(day) or now.astimezone(calendar.zone).time() < rules.digest_at:
        return 0
    until = calendar.end_of_day(day)
    counts = await repository.owners_due(until, now)
    waiting = sorted(set(counts) - await repository.digests_given(day))
    for start in range(0, len(waiting), owners_per_save):
        digests = []
        for owner in waiting[start : start + owners_per_save]:
            total, overdue = counts[owner]
            tasks = await repository.due_of(owner, until, rules.digest_limit)
            lines = tuple((t, calendar.working_days_between(t.due_at, now)) for t in tasks)
            digests.append(DigestDue(owner, day, lines, total - overdue, overdue, now))
        await repository.save(
            Changes(
                outbound=[to_message(d) for d in digests],
                digests=[(day, d.owner) for d in digests],
            )
        )
    return len(waiting)


async def agreement_sweep(
    now: datetime, repository: RelationsRepository, *, rules: RelationsRules, batch_size: int = 100
) -> int:
    """Review the active agreements: periods closed (met or missed), fulfilment at risk,
    renewals due; each makes a task for the agreement's owner."""
    changed = 0
    after: str | None = None
    zone = rules.calendar.zone
    while True:
        agreements = await repository.active_agreements(after, batch_size)
        if not agreements:
            return changed
        after = agreements[-1].agreement_id
        batch = Batch()
        for agreement in agreements:
            reviews = agreement.review(now, zone, rules.at_risk_share_left)
            if reviews or agreement.status != "active":
                batch.agreements[agreement.agreement_id] = agreement
            for review in reviews:
                batch.record([review, review_task(review, rules)])
                changed += 1
        if batch.agreements:
            await repository.save(batch.to_changes([]))


def review_task(review: Review, rules: RelationsRules) -> TaskCreated:
    """The task an agreement event makes for the agreement's owner."""
    agreement = review.agreement
    due = rules.calendar.add_working_days(review.at, rules.agreement_task_business_days)
    kind: TaskKind
    match review:
        case AtRisk():
            kind, cause = "agreement_review", f"{review.period.start}/at_risk"
        case PeriodClosed():
            kind, cause = "agreement_review", f"{review.period.start}/closed"
        case _:
            kind, cause = "renewal", f"renewal/{review.ends_on}"
    return _new_task(
        agreement.customer_id,
        kind,
        agreement.owner,
        due,
        review.at,
        f"agreement/{agreement.agreement_id}/{cause}",
        "agreement",
        agreement.agreement_id,
    )
