"""An in-memory customer repository: the unit tests' stand-in for MongoDB."""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from crm_archive.domain.customer import Customer
from crm_contracts import CloudEvent
from crm_runtime.outbox import OutboundMessage


class InMemoryCustomers:
    def __init__(self) -> None:
        self.customers: dict[str, Customer] = {}
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
        return {i: self.customers[i] for i in customer_ids if i in self.customers}

    async def get(self, customer_id: str) -> Customer | None:
        return self.customers.get(customer_id)

    async def save(
        self,
        customers: Sequence[Customer],
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
    ) -> None:
        for customer in customers:
            self.customers[customer.id] = replace(customer, version=customer.version + 1)
        self.processed.update(e.id for e in applied)
        self.outbox.extend(outbound)
