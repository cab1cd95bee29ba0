"""An in-memory customer repository: the unit tests' stand-in for MongoDB (both ports)."""

import copy
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_archive.adapters.documents import order_key
from crm_archive.domain.apart import FactIds
from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import Order, normalise_email, normalise_phone
from crm_archive.domain.search import SearchText, city_token, name_tokens
from crm_archive.ports import (
    After,
    Changes,
    CustomerFilter,
    CustomerRow,
    CustomerSort,
    Note,
    OrderLines,
    Preferences,
    TimelineEntry,
)
from crm_contracts import CloudEvent
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.outbox import OutboundMessage


class InMemoryCustomers:
    def __init__(self) -> None:
        self.customers: dict[str, Customer] = {}
        self.timeline: list[TimelineEntry] = []
        self.notes: list[Note] = []
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []
        self.lines: dict[tuple[str, str], OrderLines] = {}
        """(customer, order) -> the order's lines, as first announced."""
        self.cancelled: set[tuple[str, str]] = set()
        self.apart: dict[str, dict[tuple[str, str], Any]] = {}
        """Per customer, the facts its record keeps apart: (kind, id) -> Order, time, Survey."""

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

    async def on_record(self, customer_ids: Sequence[str]) -> set[str]:
        return {i for i in customer_ids if i in self.customers}

    async def due_for_review(self, now: datetime, limit: int) -> list[str]:
        due = [c for c in self.customers.values() if c.next_review_at and c.next_review_at <= now]
        return [c.id for c in sorted(due, key=lambda c: c.next_review_at or now)][:limit]

    async def timeline_entry(self, event_id: str) -> TimelineEntry | None:
        return next((e for e in self.timeline if e.event_id == event_id), None)

    async def save(self, changes: Changes) -> None:
        """As the MongoDB repository: all or nothing, and a record changed since it was read
        (another version stored) is a `ConcurrencyConflictError`; an erased customer's
        summaries and note texts are gone (as when its data key is destroyed)."""
        for customer in changes.customers:
            stored = self.customers.get(customer.id)
            if (stored.version if stored else 0) != customer.version:
                raise ConcurrencyConflictError(f"customer {customer.id} changed concurrently")
        if any(t.customer_id not in self.customers for t in changes.tiers):
            raise ConcurrencyConflictError("a customer whose tier changed is not on record")
        written = {e.event_id for e in self.timeline} if changes.timeline else set()
        if any(e.event_id in written for e in changes.timeline):
            raise ConcurrencyConflictError("a timeline entry exists already")
        for customer in changes.customers:
            facts = self.apart.setdefault(customer.id, {})
            facts.update({("order", i): copy.deepcopy(o) for i, o in customer.apart.orders.items()})
            facts.update({("complaint", i): at for i, at in customer.apart.complaints.items()})
            facts.update({("survey", i): s for i, s in customer.apart.surveys.items()})
            for kind_id in customer.apart.back:
                del facts[kind_id]
            customer.saved()
            self.customers[customer.id] = copy.deepcopy(customer)
        for tier in changes.tiers:  # as the update of the stored record: one version up
            stored = self.customers[tier.customer_id]
            stored.loyalty_tier = tier.tier
            stored.first_seen_at = min(stored.first_seen_at, tier.first_seen_at)
            stored.last_event_at = max(stored.last_event_at, tier.last_event_at)
            stored.version += 1
        self.timeline.extend(changes.timeline)
        self.notes.extend(changes.notes)
        erased = {i for i, c in self.customers.items() if c.erased_at is not None}
        self.timeline = [
            dataclasses.replace(e, summary=None, topic=None, request=None)
            if e.customer_id in erased
            else e
            for e in self.timeline
        ]
        self.notes = [
            dataclasses.replace(n, text=None) if n.customer_id in erased else n for n in self.notes
        ]
        for lines in changes.order_lines:
            self.lines.setdefault((lines.customer_id, lines.order_id), lines)
        self.cancelled.update(changes.cancelled_orders)
        self.processed.update(e.id for e in changes.applied)
        self.outbox.extend(changes.outbound)

    # -- the read side ------------------------------------------------------------------------
    async def exists(self, customer_id: str) -> bool:
        return customer_id in self.customers

    async def find(
        self, filters: CustomerFilter, sort: CustomerSort, after: After | None, limit: int
    ) -> list[CustomerRow]:
        """As the MongoDB repository: the matching rows in `sort` order (a missing value first
        ascending, last descending; ties by id), after `after`."""
        rows = [_row(c) for c in self.customers.values() if _matches(c, filters)]

        def key(row: CustomerRow) -> tuple[bool, Any, str]:
            value = row.sort_value(sort.field)
            return value is not None, value, row.id

        rows.sort(key=key, reverse=sort.descending)
        if after is not None:
            mark = (after.value is not None, after.value, after.id)
            rows = [r for r in rows if (key(r) < mark if sort.descending else key(r) > mark)]
        return rows[:limit]

    async def matching(
        self, filters: CustomerFilter, sort: CustomerSort
    ) -> AsyncIterator[CustomerRow]:
        for row in await self.find(filters, sort, None, len(self.customers)):
            yield row

    async def records(self, customer_ids: Sequence[str]) -> list[Customer]:
        found = await self.load(customer_ids)
        return [found[i] for i in customer_ids if i in found]

    async def on_file(self, customers: Sequence[Customer]) -> dict[str, list[str]]:
        found = {}
        for customer in customers:
            mine = _contacts(customer)
            ids = sorted(
                c.id for c in self.customers.values() if c.id != customer.id and mine & _contacts(c)
            )
            if ids:
                found[customer.id] = ids
        return found

    async def same_contact(self, customer: Customer) -> list[tuple[str, datetime | None]]:
        mine = _contacts(customer)
        return [
            (c.id, c.registered_at)
            for c in self.customers.values()
            if c.id != customer.id and mine & _contacts(c)
        ]

    async def timeline_page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int, newest_first: bool
    ) -> list[TimelineEntry]:
        entries = sorted(
            (e for e in self.timeline if e.customer_id == customer_id),
            key=lambda e: (e.at, e.event_id),
            reverse=newest_first,
        )
        if after is not None:
            entries = [
                e
                for e in entries
                if ((e.at, e.event_id) < after if newest_first else (e.at, e.event_id) > after)
            ]
        return entries[:limit]

    async def notes_page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Note]:
        notes = sorted(
            (n for n in self.notes if n.customer_id == customer_id),
            key=lambda n: (n.at, n.note_id),
            reverse=True,
        )
        return [n for n in notes if after is None or (n.at, n.note_id) < after][:limit]

    async def timeline_entries(self, customer_id: str) -> AsyncIterator[TimelineEntry]:
        for entry in await self.timeline_page(customer_id, None, len(self.timeline), False):
            yield entry

    async def orders(self, customer: Customer) -> AsyncIterator[Order]:
        facts = self.apart.get(customer.id, {})
        kept = [o for (kind, _), o in facts.items() if kind == "order"]
        for order in [
            *sorted(kept, key=order_key),
            *sorted(customer.orders.values(), key=order_key),
        ]:
            yield order

    async def segments(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {"grade": {}, "stage": {}, "at_risk": {}}
        for c in self.customers.values():
            for key, value in (("grade", c.grade), ("stage", c.stage)):
                counts[key][str(value).lower()] = counts[key].get(str(value).lower(), 0) + 1
            risk = str(bool(c.churn_reasons)).lower()
            counts["at_risk"][risk] = counts["at_risk"].get(risk, 0) + 1
        return counts

    async def preferences(
        self, customer_id: str, since: datetime, currency: str, top: int
    ) -> Preferences:
        """As the database's aggregation: spend per category and SKU, the largest first."""
        by_category: dict[str, int] = {}
        by_sku: dict[str, int] = {}
        for key, lines in self.lines.items():
            wanted = lines.customer_id == customer_id and lines.currency == currency
            if not wanted or lines.at < since or key in self.cancelled:
                continue
            for item in lines.items:
                by_sku[item.sku] = by_sku.get(item.sku, 0) + item.cents
                if item.category is not None:
                    by_category[item.category] = by_category.get(item.category, 0) + item.cents

        def ranked(spend: dict[str, int]) -> list[tuple[str, Decimal]]:
            best = sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
            return [(name, Decimal(cents).scaleb(-2)) for name, cents in best]

        return Preferences(ranked(by_category), ranked(by_sku))

    def published(self, customer_id: str) -> list[str]:
        return [m.event.type for m in self.outbox if m.event.subject == customer_id]


def _matches(c: Customer, filters: CustomerFilter) -> bool:
    """`filters` applied to the plaintext record, as the keyed hashes apply them."""
    wanted = (
        filters.grade,
        filters.stage,
        filters.owner,
        filters.at_risk,
        filters.type,
        filters.agreement_customer,
    )
    held = (
        c.grade,
        c.stage,
        c.account_owner,
        bool(c.churn_reasons),
        c.profile.type,
        bool(c.agreement_numbers),
    )
    if any(w is not None and w != h for w, h in zip(wanted, held, strict=True)):
        return False
    search, spent, last = filters.search, c.figures.net_spent, c.figures.last_order_at
    return (
        (search is None or _found(c, search))
        and (filters.city is None or _same_city(filters.city, c.profile.city))
        and set(filters.tags) <= set(c.tags)
        and (filters.min_net_spent is None or spent >= filters.min_net_spent)
        and (filters.max_net_spent is None or spent <= filters.max_net_spent)
        and (
            filters.last_order_after is None
            or (last is not None and last >= filters.last_order_after)
        )
        and (
            filters.last_order_before is None
            or (last is not None and last < filters.last_order_before)
        )
    )


def _same_city(wanted: str, city: str | None) -> bool:
    return city_token(wanted) is not None and city_token(wanted) == city_token(city)


def _found(c: Customer, search: SearchText) -> bool:
    if search.kind == "name":
        return set(search.name_tokens) <= set(name_tokens(c.profile.name))
    return _normalised(search.text) in _contacts(c)


def _row(c: Customer) -> CustomerRow:
    return CustomerRow(
        c.id,
        c.grade,
        c.stage,
        bool(c.churn_reasons),
        c.account_owner,
        c.figures.order_count,
        c.figures.net_spent,
        c.figures.last_order_at,
        c.rfm_total,
    )


def _normalised(contact: str) -> str:
    return normalise_email(contact) if "@" in contact else normalise_phone(contact)


def _contacts(customer: Customer) -> set[str]:
    """The normalised phone and email, as the lookup keys hash them."""
    return {_normalised(c) for c in (customer.profile.phone, customer.profile.email) if c}
