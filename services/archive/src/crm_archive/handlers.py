"""Use cases: inbound events + repository + clock -> new state and outbound events.

Plain async functions: the unit tests call them with an in-memory repository.
"""

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from crm_archive.domain.customer import (
    Customer,
    CustomerCreated,
    DomainEvent,
    OrderPlaced,
    record_order,
)
from crm_contracts import CloudEvent, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.topics import ARCHIVE
from crm_runtime.outbox import OutboundMessage

SOURCE = "crm/archive"
Clock = Callable[[], datetime]

CONSUMED_TYPES = tuple(orders_v1.EVENTS)
"""Refunds and cancellations are accepted; the archive issue gives them their effect."""


class CustomerRepository(Protocol):
    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def load(self, customer_ids: Sequence[str]) -> dict[str, Customer]: ...

    async def save(
        self,
        customers: Sequence[Customer],
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
    ) -> None: ...

    async def get(self, customer_id: str) -> Customer | None: ...


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: CustomerRepository,
    *,
    clock: Clock,
    base_currency: str,
) -> int:
    """Apply a batch in order and persist it in one write; returns how many events were new."""
    fresh = await repository.unprocessed(events)
    if not fresh:
        return 0
    customers = await repository.load(sorted({event.subject for event in fresh}))
    loaded = dict(customers)
    outbound: list[OutboundMessage] = []
    now = clock()
    for event in fresh:
        if event.type == orders_v1.ORDER_PLACED:
            data: orders_v1.OrderPlaced = event.data
            order = OrderPlaced(data.order_id, data.amount, data.currency, event.time)
            customer, domain_events = record_order(
                customers.get(event.subject),
                event.subject,
                order,
                base_currency=base_currency,
                now=now,
            )
            customers[event.subject] = customer
            outbound.extend(_outbound(event, domain_events, now))
    changed = [c for key, c in customers.items() if loaded.get(key) is not c]
    await repository.save(changed, fresh, outbound)
    return len(fresh)


def _outbound(
    cause: CloudEvent[Any], domain_events: Sequence[DomainEvent], now: datetime
) -> list[OutboundMessage]:
    messages = []
    for rule, domain_event in enumerate(domain_events):
        if isinstance(domain_event, CustomerCreated):
            data = archive_v1.CustomerCreated(
                stage=domain_event.stage, stub=domain_event.stub, cause_event_type=cause.type
            )
            event = new_event(
                archive_v1.CUSTOMER_CREATED,
                source=SOURCE,
                subject=domain_event.customer_id,
                data=data,
                # Derived from the cause, so re-applying the same inbound event yields the same id.
                id=str(
                    uuid.uuid5(
                        uuid.NAMESPACE_URL, f"{cause.id}/{rule}/{archive_v1.CUSTOMER_CREATED}"
                    )
                ),
                time=now,
                traceparent=cause.traceparent,
            )
            messages.append(OutboundMessage(ARCHIVE.name, event))
    return messages
