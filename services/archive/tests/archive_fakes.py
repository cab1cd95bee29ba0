"""An in-memory customer repository: the unit tests' stand-in for MongoDB."""

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crm_archive.domain.customer import Customer
from crm_archive.handlers import TimelineEntry
from crm_contracts import CloudEvent
from crm_runtime.outbox import OutboundMessage


class InMemoryCustomers:
    def __init__(self) -> None:
        self.customers: dict[str, Customer] = {}
        self.timeline: list[TimelineEntry] = []
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        fresh, seen = [], set(self.processed)
        for event in events:
            if event.id not in seen:
                seen.add(event.id)
                fresh.append(event)
        return fresh

    async def load(self, customer_ids: Sequence[str]) -> dict[str, Customer]:
        return {i: copy.deepcopy(self.customers[i]) for i in customer_ids if i in self.customers}

    async def get(self, customer_id: str) -> Customer | None:
        return copy.deepcopy(self.customers.get(customer_id))

    async def due_for_review(self, now: datetime, limit: int) -> list[str]:
        due = [c for c in self.customers.values() if c.next_review_at and c.next_review_at <= now]
        return [c.id for c in sorted(due, key=lambda c: c.next_review_at or now)][:limit]

    async def save(
        self,
        customers: Sequence[Customer],
        timeline: Sequence[TimelineEntry],
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
    ) -> None:
        for customer in customers:
            customer.version += 1
            self.customers[customer.id] = copy.deepcopy(customer)
        self.timeline.extend(timeline)
        self.processed.update(e.id for e in applied)
        self.outbox.extend(outbound)

    def published(self, customer_id: str) -> list[str]:
        return [m.event.type for m in self.outbox if m.event.subject == customer_id]
