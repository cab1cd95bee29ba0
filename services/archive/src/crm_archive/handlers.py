"""Use cases: inbound events + repository + clock -> new records, timeline and outbound events.

Plain async functions over the `CustomerRepository` port: the unit tests call them with an
in-memory repository. The HTTP commands are in `commands.py`, the read side in `queries.py`.
"""

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from crm_archive.domain.apart import FactIds
from crm_archive.domain.customer import Customer
from crm_archive.domain.events import (
    ChurnRiskCleared,
    ChurnRiskRaised,
    Created,
    DomainEvent,
    GradeChanged,
    ProfileChanged,
    StageChanged,
)
from crm_archive.domain.facts import Profile
from crm_archive.domain.rules import ArchiveRules
from crm_archive.ports import (
    Changes,
    CustomerRepository,
    ItemSpend,
    OrderLines,
    TierChange,
    TimelineEntry,
)
from crm_contracts import CloudEvent, event_key, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.callcenter import v1 as callcenter_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.privacy import v1 as privacy_v1
from crm_contracts.relations import v1 as relations_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import ARCHIVE
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation
from crm_runtime.sweeps import Clock

SOURCE = "crm/archive"

CONSUMED_TYPES = (
    *members_v1.EVENTS,
    *orders_v1.EVENTS,
    *callcenter_v1.EVENTS,
    tickets_v1.TICKET_OPENED,
    tickets_v1.TICKET_RESOLVED,
    loyalty_v1.TIER_CHANGED,
    privacy_v1.CUSTOMER_ERASURE_COMPLETED,
    relations_v1.TASK_COMPLETED,
    relations_v1.AGREEMENT_CREATED,
    relations_v1.AGREEMENT_AMENDED,
    relations_v1.AGREEMENT_RENEWED,
    relations_v1.AGREEMENT_TERMINATED,
)
KEPT_AFTER_ERASURE = ("order figures", "value and grade", "timeline without personal data")


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: CustomerRepository,
    *,
    clock: Clock,
    rules: ArchiveRules,
) -> int:
    """Apply a batch in order and persist it in one write; returns how many events were new."""
    fresh = await repository.unprocessed(events)
    if not fresh:
        return 0
    tiers_only = await tiers_only_of(fresh, repository)
    customers = await repository.load(
        sorted({event.subject for event in fresh} - tiers_only), references(fresh)
    )
    touched: dict[str, Customer] = {}
    tiers: dict[str, TierChange] = {}
    timeline: list[TimelineEntry] = []
    last_cause: dict[str, str] = {}
    now = clock()
    outbound: list[OutboundMessage] = []
    lines: list[OrderLines] = []
    cancelled: list[tuple[str, str]] = []
    for event in fresh:
        if event.subject in tiers_only:
            timeline.append(apply_tier(tiers, event))
            continue
        customer = customers.get(event.subject)
        if customer is None:
            customer = Customer.first_sighting(event.subject, event.time, event.type)
            customers[event.subject] = customer
        timeline.append(apply_event(customer, event))
        touched[event.subject] = customer
        last_cause[event.subject] = event_key(event)
        if event.type == members_v1.CUSTOMER_ERASURE_REQUESTED:
            # Saved with the erasure (and the key's destruction) in the batch's transaction.
            outbound.append(erasure_confirmation("archive", event, now, KEPT_AFTER_ERASURE))
        match event.data:
            case orders_v1.OrderPlaced(items=items) if items:
                lines.append(order_lines(event.subject, event.time, event.data))
            case orders_v1.OrderCancelled():
                cancelled.append((event.subject, event.data.order_id))
    for customer in touched.values():
        outbound.extend(
            to_messages(customer, customer.evaluate(now, rules), last_cause[customer.id], now)
        )
    await repository.save(
        Changes(
            list(touched.values()),
            timeline,
            fresh,
            outbound,
            order_lines=lines,
            cancelled_orders=cancelled,
            tiers=list(tiers.values()),
        )
    )
    return len(fresh)


async def tiers_only_of(
    events: Sequence[CloudEvent[Any]], repository: CustomerRepository
) -> set[str]:
    """The customers on file of whom a batch brings only loyalty-tier changes (ADR 0027).

    Their records are not read: a tier is a fact the record shows and nothing derives from, so
    it is set on the stored record (`TierChange`) with the timeline entry. Everyone else's
    record is read, changed, evaluated and saved whole; so is a customer not on file yet, whose
    first sighting makes the record."""
    others = {e.subject for e in events if e.type != loyalty_v1.TIER_CHANGED}
    tiered = {e.subject for e in events if e.type == loyalty_v1.TIER_CHANGED} - others
    return await repository.on_record(sorted(tiered)) if tiered else set()


def apply_tier(tiers: dict[str, TierChange], event: CloudEvent[Any]) -> TimelineEntry:
    """A tier change of a customer whose record the batch does not read: the batch's last tier
    of the customer, and the times it was seen at; returns its timeline entry."""
    data: loyalty_v1.TierChanged = event.data
    held = tiers.get(event.subject)
    first = min(held.first_seen_at, event.time) if held else event.time
    last = max(held.last_event_at, event.time) if held else event.time
    tiers[event.subject] = TierChange(event.subject, data.tier, first, last)
    return timeline_entry(event, tier_summary(data))


def order_lines(customer_id: str, at: datetime, order: orders_v1.OrderPlaced) -> OrderLines:
    """What each line of an order spent (quantity x unit price), for product preferences."""
    items = tuple(
        ItemSpend(item.sku, item.category, int(item.unit_price * item.qty * 100))
        for item in order.items
    )
    return OrderLines(customer_id, order.order_id, at, order.currency, items)


def references(events: Sequence[CloudEvent[Any]]) -> dict[str, FactIds]:
    """Per customer, the orders, complaints and surveys the events name: those kept apart are
    recalled before the events apply (a refund of an old order, a complaint sent again)."""
    found: dict[str, tuple[set[str], set[str], set[str], list[str]]] = {}
    for event in events:
        orders, complaints, surveys, cancellations = found.setdefault(
            event.subject, (set(), set(), set(), [])
        )
        match event.data:
            case orders_v1.OrderPlaced() | orders_v1.OrderRefunded():
                orders.add(event.data.order_id)
            case orders_v1.OrderCancelled():
                orders.add(event.data.order_id)
                cancellations.append(event.data.order_id)
            case callcenter_v1.ComplaintReported():
                complaints.add(event.data.complaint_id)
            case callcenter_v1.SurveyAnswered():
                surveys.add(event.data.survey_id)
    return {
        customer: FactIds(frozenset(o), frozenset(c), frozenset(s), len(x))
        for customer, (o, c, s, x) in found.items()
        if o or c or s
    }


def apply_event(customer: Customer, event: CloudEvent[Any]) -> TimelineEntry:
    """Change the customer by one inbound event; return its timeline entry."""
    at, data = event.time, event.data
    summary: dict[str, Any] = {}
    text: str | None = None  # free text kept sealed with the entry (personal data)
    topic: str | None = None  # a call-center contact's topic as typed: sealed too
    match data:
        case members_v1.CustomerRegistered():
            customer.register(
                at, profile_of(data), list(data.tags), consents_of(data), data.account_owner
            )
            summary = {"source": data.source}
        case members_v1.CustomerProfileUpdated():
            changes = {name: getattr(data, name) for name in sorted(data.model_fields_set)}
            if "email" in changes and changes["email"] is not None:
                changes["email"] = str(changes["email"])
            customer.update_profile(at, changes)
            summary = {"fields": sorted(changes)}
        case members_v1.CustomerConsentChanged():
            customer.change_consent(at, data.channel, data.purpose, data.granted)
            summary = {"channel": data.channel, "purpose": data.purpose, "granted": data.granted}
        case members_v1.CustomerErasureRequested():
            customer.erase(at, event.id)
        case privacy_v1.CustomerErasureCompleted():
            customer.confirm_erasure(data.service, data.completed_at, data.request_event_id)
            summary = {"service": data.service}
        case orders_v1.OrderPlaced():
            customer.place_order(data.order_id, at, data.amount, data.currency)
            summary = {
                "order_id": data.order_id,
                "amount": str(data.amount),
                "currency": data.currency,
                "channel": data.channel,
            }
        case orders_v1.OrderRefunded():
            customer.refund(data.order_id, at, data.amount)
            summary = {"order_id": data.order_id, "amount": str(data.amount)}
        case orders_v1.OrderCancelled():
            customer.cancel(data.order_id, at)
            summary = {"order_id": data.order_id}
        case callcenter_v1.ContactLogged():
            customer.log_contact(at)
            summary = {
                "contact_id": data.contact_id,
                "agent_id": data.agent_id,
                "channel": data.channel,
                "direction": data.direction,
                "duration_s": data.duration_s,
                "sentiment": data.sentiment,
            }
            # Personal data arriving after an erasure is not taken in.
            text = data.summary if customer.erased_at is None else None
            topic = data.topic if customer.erased_at is None else None
        case callcenter_v1.ComplaintReported():
            customer.complain(data.complaint_id, at)
            summary = {
                "complaint_id": data.complaint_id,
                "category": data.category,
                "severity": data.severity,
                "order_id": data.order_id,
            }
        case callcenter_v1.SurveyAnswered():
            customer.answer_survey(data.survey_id, at, data.csat, data.nps)
            summary = {
                "survey_id": data.survey_id,
                "ticket_id": data.ticket_id,
                "csat": data.csat,
                "nps": data.nps,
            }
        case tickets_v1.TicketOpened():
            customer.ticket_opened(data.ticket_id, at)
            summary = {
                "ticket_id": data.ticket_id,
                "priority": data.priority,
                "category": data.category,
            }
        case tickets_v1.TicketResolved():
            customer.ticket_resolved(data.ticket_id, at)
            summary = {"ticket_id": data.ticket_id, "root_causes": list(data.root_causes)}
        case loyalty_v1.TierChanged():
            customer.tier_changed(data.tier, at)
            summary = tier_summary(data)
        case relations_v1.TaskCompleted():
            # A contact by a person (`by`); its summary stays in relations (no free text here).
            customer.task_completed(at, data.outcome)
            summary = {
                "task_id": data.task_id,
                "purpose": data.kind,
                "outcome": data.outcome,
                "by": data.by,
                "on_time": data.on_time,
                "next_follow_up_on": data.next_follow_up_on and data.next_follow_up_on.isoformat(),
            }
        case relations_v1.AgreementCreated():
            customer.agreement_made(
                data.agreement_id, data.number, data.starts_on, data.ends_on, at
            )
            summary = agreement_summary(data.agreement_id, data.starts_on, data.ends_on)
            summary["number"] = data.number
        case relations_v1.AgreementAmended():
            customer.agreement_dates(data.agreement_id, at, ends_on=data.ends_on)
            summary = agreement_summary(data.agreement_id, None, data.ends_on)
        case relations_v1.AgreementRenewed():
            customer.agreement_dates(
                data.agreement_id, at, starts_on=data.starts_on, ends_on=data.ends_on
            )
            summary = agreement_summary(data.agreement_id, data.starts_on, data.ends_on)
        case relations_v1.AgreementTerminated():
            customer.agreement_terminated(data.agreement_id, data.terminated_on, at)
            summary = agreement_summary(data.agreement_id, None, data.terminated_on)
        case _:
            raise TypeError(f"the archive does not apply {event.type}")
    return timeline_entry(event, summary, text=text, topic=topic)


def timeline_entry(
    event: CloudEvent[Any],
    summary: dict[str, Any],
    *,
    text: str | None = None,
    topic: str | None = None,
) -> TimelineEntry:
    """The event's entry on its customer's timeline: `summary` without its empty values."""
    return TimelineEntry(
        event_key(event),
        event.subject,
        event.time,
        event.type,
        {k: v for k, v in summary.items() if v is not None},
        summary=text,
        topic=topic,
    )


def tier_summary(data: loyalty_v1.TierChanged) -> dict[str, Any]:
    return {"tier": data.tier, "previous_tier": data.previous_tier}


def agreement_summary(agreement_id: str, starts_on: date | None, ends_on: date) -> dict[str, Any]:
    """An agreement's timeline entry: its id and days (its terms stay in relations)."""
    return {
        "agreement_id": agreement_id,
        "starts_on": starts_on and starts_on.isoformat(),
        "ends_on": ends_on.isoformat(),
    }


def profile_of(data: members_v1.CustomerRegistered) -> Profile:
    """The profile a registration gives."""
    return Profile(
        name=data.name,
        phone=data.phone,
        email=data.email and str(data.email),
        birthday=data.birthday,
        gender=data.gender,
        city=data.city,
        source=data.source,
        type=data.type,
        address=data.address,
        company=data.company,
        job_title=data.job_title,
    )


def consents_of(data: members_v1.CustomerRegistered) -> dict[str, dict[str, bool]]:
    """The consents a registration gives, per channel and purpose."""
    return {
        channel: {"transactional": c.transactional, "marketing": c.marketing}
        for channel, c in data.consents.items()
    }


async def review(
    now: datetime, repository: CustomerRepository, *, rules: ArchiveRules, batch: int = 500
) -> int:
    """The time-rules sweep: re-derive stage, grade and churn risk of every customer due."""
    changed = 0
    while True:
        due = await repository.due_for_review(now, batch)
        if not due:
            return changed
        customers = await repository.load(due)
        outbound: list[OutboundMessage] = []
        for customer in customers.values():
            outbound.extend(
                to_messages(
                    customer, customer.evaluate(now, rules), f"review@{now.isoformat()}", now
                )
            )
        await repository.save(Changes(list(customers.values()), outbound=outbound))
        changed += len(customers)
        if len(due) < batch:
            return changed


def to_messages(
    customer: Customer, events: Sequence[DomainEvent], cause: str, now: datetime
) -> list[OutboundMessage]:
    messages = []
    for position, domain_event in enumerate(events):
        event_type, data = _contract(domain_event)
        event = new_event(
            event_type,
            source=SOURCE,
            subject=customer.id,
            data=data,
            # Derived from the cause: re-applying the same cause cannot mint another id.
            id=str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{customer.id}/{cause}/{position}/{event_type}")
            ),
            time=now,
        )
        messages.append(OutboundMessage(ARCHIVE.name, event))
    return messages


def _contract(event: DomainEvent) -> tuple[str, Any]:
    match event:
        case Created():
            return archive_v1.CUSTOMER_CREATED, archive_v1.CustomerCreated(
                stage=event.stage, stub=event.stub, cause_event_type=event.cause
            )
        case ProfileChanged():
            return archive_v1.CUSTOMER_UPDATED, archive_v1.CustomerUpdated(
                changed=list(event.fields)
            )
        case GradeChanged():
            return archive_v1.CUSTOMER_GRADE_CHANGED, archive_v1.CustomerGradeChanged(
                grade=event.grade, previous_grade=event.previous
            )
        case StageChanged():
            return archive_v1.CUSTOMER_LIFECYCLE_CHANGED, archive_v1.CustomerLifecycleChanged(
                stage=event.stage, previous_stage=event.previous
            )
        case ChurnRiskRaised():
            return archive_v1.CUSTOMER_CHURN_RISK_RAISED, archive_v1.CustomerChurnRiskRaised(
                reasons=list(event.reasons), detected_at=event.at
            )
        case ChurnRiskCleared():
            return archive_v1.CUSTOMER_CHURN_RISK_CLEARED, archive_v1.CustomerChurnRiskCleared(
                cleared_by=event.cleared_by
            )
