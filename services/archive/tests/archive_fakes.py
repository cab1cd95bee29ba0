"""An in-memory customer repository: the unit tests' stand-in for MongoDB."""

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from crm_archive.domain.customer import Customer, FactIds
from crm_archive.handlers import TimelineEntry
from crm_contracts import CloudEvent
from crm_runtime.outbox import OutboundMessage


class InMemoryCustomers:
    def __init__(self, base_currency: str = "CNY") -> None:
        self.customers: dict[str, Customer] = {}
        self.timeline: list[TimelineEntry] = []
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []
        self.apart: dict[str, dict[tuple[str, str], Any]] = {}
        """Per customer, the facts its record keeps apart: (kind, id) -> Order, time, Survey."""
        self.base_currency = base_currency

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        fresh, seen = [], set(self.processed)
        for event in events:
            if event.id not in seen:
                seen.add(event.id)
                fresh.append(event)
        return fresh

    async def load(
        self, customer_ids: Sequence[str], references: Mapping[str, FactIds] | None = None
    ) -> dict[str, Customer]:
        """As the MongoDB repository: the records, with the facts kept apart that `references`
        names recalled (and the boundary orders when orders may be cancelled)."""
        loaded = {i: copy.deepcopy(self.customers[i]) for i in customer_ids if i in self.customers}
        for customer_id, ids in (references or {}).items():
            customer = loaded.get(customer_id)
            if customer is None or not customer.earlier.stored:
                continue
            facts = self.apart.get(customer_id, {})
            orders = {i: facts[("order", i)] for i in ids.orders if ("order", i) in facts}
            boundary = ids.cancellations and customer.earlier.orders
            if boundary:
                active = sorted(
                    (o for (kind, _), o in facts.items() if kind == "order" and o.active),
                    key=lambda o: (o.placed_at, o.order_id),
                )
                for order in [
                    *active[: ids.cancellations + 1],
                    *active[len(active) - ids.cancellations :],
                ]:
                    orders[order.order_id] = order
            customer.recall(
                self.base_currency,
                orders=copy.deepcopy(list(orders.values())),
                complaints=[
                    (i, facts[("complaint", i)])
                    for i in ids.complaints
                    if ("complaint", i) in facts
                ],
                surveys=[(i, facts[("survey", i)]) for i in ids.surveys if ("survey", i) in facts],
                first_orders=bool(boundary),
            )
        return loaded

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
            facts = self.apart.setdefault(customer.id, {})
            facts.update({("order", i): copy.deepcopy(o) for i, o in customer.apart.orders.items()})
            facts.update({("complaint", i): at for i, at in customer.apart.complaints.items()})
            facts.update({("survey", i): s for i, s in customer.apart.surveys.items()})
            for kind_id in customer.apart.back:
                del facts[kind_id]
            customer.saved()
            self.customers[customer.id] = copy.deepcopy(customer)
        self.timeline.extend(timeline)
        self.processed.update(e.id for e in applied)
        self.outbox.extend(outbound)

    def published(self, customer_id: str) -> list[str]:
        return [m.event.type for m in self.outbox if m.event.subject == customer_id]
