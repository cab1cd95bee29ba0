"""The read side: what the routes show of a customer (`detail`: the record and a possible
duplicate), the erasure's progress, the export, and the reports — aggregation pipelines the
database runs over the customers, and the answers shaped from the few rows they return. Plain
functions over the `CustomerQueries` port (the pipelines are pure: the repository runs them).
"""

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import Order
from crm_archive.ports import (
    CustomerFilter,
    CustomerQueries,
    CustomerRow,
    CustomerSort,
    Preferences,
    TimelineEntry,
)
from crm_contracts.topics import SERVICES

Document = dict[str, Any]

SEGMENTS = ("grade", "stage", "at_risk")


PREFERENCE_DAYS = 365
"""Product preferences rank the spend of the orders placed in the last 12 months..."""
PREFERENCES_SHOWN = 5
"""...and show the top 5 categories and SKUs."""


@dataclass(frozen=True)
class CustomerDetail:
    """A customer as the routes show one."""

    customer: Customer
    duplicate_of: str | None
    """The earliest-registered other customer sharing its phone or email, if it registered
    later (so the original is never flagged as the duplicate)."""
    preferences: Preferences = field(default_factory=Preferences)


async def detail(
    customer: Customer, queries: CustomerQueries, now: datetime, base_currency: str
) -> CustomerDetail:
    """The record, a possible duplicate, and its product preferences as of `now` (orders in
    the base currency)."""
    since = now - timedelta(days=PREFERENCE_DAYS)
    preferences = await queries.preferences(customer.id, since, base_currency, PREFERENCES_SHOWN)
    return CustomerDetail(customer, await duplicate_of(customer, queries), preferences)


def preference_pipeline(
    customer_id: str, since: datetime, currency: str, by: str, top: int
) -> list[Document]:
    """The `top` values of `by` (category or sku) by spend of a customer's active orders since
    `since` in `currency`, in `order_lines`."""
    return [
        {
            "$match": {
                "customer_id": customer_id,
                "at": {"$gte": since},
                "currency": currency,
                "cancelled": {"$ne": True},
            }
        },
        {"$unwind": "$items"},
        {"$match": {f"items.{by}": {"$ne": None}}},
        {"$group": {"_id": f"$items.{by}", "cents": {"$sum": "$items.cents"}}},
        {"$sort": {"cents": -1, "_id": 1}},
        {"$limit": top},
    ]


def preferences_from(categories: list[Document], skus: list[Document]) -> Preferences:
    def ranked(rows: list[Document]) -> list[tuple[str, Decimal]]:
        return [(str(row["_id"]), Decimal(row["cents"]).scaleb(-2)) for row in rows]

    return Preferences(ranked(categories), ranked(skus))


async def duplicate_of(customer: Customer, queries: CustomerQueries) -> str | None:
    if customer.registered_at is None:
        return None
    mine = (customer.registered_at, customer.id)
    earlier = [
        (registered_at, other)
        for other, registered_at in await queries.same_contact(customer)
        if registered_at is not None and (registered_at, other) < mine
    ]
    return min(earlier)[1] if earlier else None


@dataclass(frozen=True)
class ErasureStatus:
    customer_id: str
    requested_at: datetime | None
    """None while only confirmations arrived."""
    request_event_id: str | None
    confirmed_at: dict[str, datetime | None]
    """Per service, when it confirmed; None: pending."""

    @property
    def complete(self) -> bool:
        return all(at is not None for at in self.confirmed_at.values())


def erasure_status(customer: Customer) -> ErasureStatus | None:
    """An erasure request and the confirmation (`customer.erasure_completed`) of each service,
    all of which confirm; None when none was requested."""
    if customer.erased_at is None and not customer.erasure_confirmations:
        return None
    return ErasureStatus(
        customer_id=customer.id,
        requested_at=customer.erased_at,
        request_event_id=customer.erasure_request_id,
        confirmed_at={name: customer.erasure_confirmations.get(name) for name in SERVICES},
    )


@dataclass(frozen=True)
class Export:
    """Everything held about a customer (data portability): the long parts are read as sent."""

    detail: CustomerDetail
    orders: AsyncIterator[Order]
    timeline: AsyncIterator[TimelineEntry]


async def export(
    customer: Customer, queries: CustomerQueries, now: datetime, base_currency: str
) -> Export:
    return Export(
        await detail(customer, queries, now, base_currency),
        queries.orders(customer),
        queries.timeline_entries(customer.id),
    )


def segment_pipeline(key: str) -> list[Document]:
    """Customers per value of `key` (one of `SEGMENTS`)."""
    return [{"$group": {"_id": f"${key}", "n": {"$sum": 1}}}]


def segments_report(rows: Mapping[str, list[Document]]) -> dict[str, dict[str, int]]:
    """The answer of `GET /segments/summary` from each segment pipeline's rows."""
    return {key: {str(row["_id"]).lower(): row["n"] for row in rows[key]} for key in SEGMENTS}


GRADE_STAGE_PIPELINE: list[Document] = [
    {"$group": {"_id": {"grade": "$grade", "stage": "$stage"}, "n": {"$sum": 1}}}
]
"""Customers per (grade, stage): the `crm_customers` gauge."""


def grade_stage_counts(rows: list[Document]) -> dict[tuple[str, str], int]:
    """Customers by (grade, stage); "none" where not computed yet."""
    result: dict[tuple[str, str], int] = {}
    for row in rows:
        key = row["_id"] or {}
        grade = str(key.get("grade") or "none").lower()
        stage = str(key.get("stage") or "none").lower()
        result[(grade, stage)] = result.get((grade, stage), 0) + row["n"]
    return result


EXPORT_CHUNK = 200
"""A segment's export reads this many records at a time: its memory is bounded by a chunk."""


async def segment(
    filters: CustomerFilter, sort: CustomerSort, source: CustomerQueries, chunk: int = EXPORT_CHUNK
) -> AsyncIterator[list[tuple[CustomerRow, Customer]]]:
    """Every customer matching `filters`, in `sort` order, a chunk at a time: each one's list
    row (figures) and record (profile opened)."""
    rows: list[CustomerRow] = []
    async for row in source.matching(filters, sort):
        rows.append(row)
        if len(rows) == chunk:
            yield await _with_records(rows, source)
            rows = []
    if rows:
        yield await _with_records(rows, source)


async def _with_records(
    rows: list[CustomerRow], source: CustomerQueries
) -> list[tuple[CustomerRow, Customer]]:
    records = {c.id: c for c in await source.records([row.id for row in rows])}
    return [(row, records[row.id]) for row in rows if row.id in records]
