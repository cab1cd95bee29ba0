"""Customers and timeline in MongoDB (`crm_archive`), saved with the batch's inbox and outbox."""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_archive.adapters.pii import (
    SEALED,
    has_personal_data,
    lookup_key_for_query,
    lookup_keys,
    profile_from_document,
    profile_to_document,
)
from crm_archive.domain.customer import Customer, Order, Survey
from crm_archive.handlers import TimelineEntry
from crm_contracts import CloudEvent
from crm_runtime.crypto import NO_KEY, SHREDDED, CustomerKeys, FieldCipher, KeyRing
from crm_runtime.mongo import Document, save_versioned
from crm_runtime.outbox import OutboundMessage
from crm_runtime.uow import UnitOfWork


def _money(value: Decimal) -> Decimal128:
    return Decimal128(value)


def _decimal(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)


def to_document(
    customer: Customer, base_currency: str, cipher: FieldCipher, ring: KeyRing
) -> Document:
    active = customer.active_orders()
    times = [o.placed_at for o in active if o.placed_at is not None]
    net = sum((o.net for o in active if o.currency == base_currency), Decimal(0))
    return {
        "_id": customer.id,
        "first_seen_at": customer.first_seen_at,
        "last_event_at": customer.last_event_at,
        "registered_at": customer.registered_at,
        "pii": profile_to_document(customer.profile, cipher),
        "lookup": lookup_keys(customer.profile, ring) if not cipher.shredded else {},
        "tags": customer.tags,
        "consents": customer.consents,
        "account_owner": customer.account_owner,
        "erased_at": customer.erased_at,
        "erasure": {
            "request_id": customer.erasure_request_id,
            "confirmations": customer.erasure_confirmations,
        },
        "orders": [
            {
                "id": o.order_id,
                "at": o.placed_at,
                "amount": _money(o.amount),
                "currency": o.currency,
                "refunded": _money(o.refunded),
                "cancelled": o.cancelled,
            }
            for o in customer.orders.values()
        ],
        "complaints": [{"id": k, "at": v} for k, v in customer.complaints.items()],
        "surveys": [
            {"id": k, "at": s.at, "csat": s.csat, "nps": s.nps} for k, s in customer.surveys.items()
        ],
        "contacts": customer.contacts,
        "open_tickets": customer.open_tickets,
        "tickets_resolved": customer.tickets_resolved,
        "loyalty_tier": customer.loyalty_tier,
        "stage": customer.stage,
        "grade": customer.grade,
        "churn_reasons": customer.churn_reasons,
        "churn_risk_since": customer.churn_risk_since,
        "at_risk": bool(customer.churn_reasons),
        "next_review_at": customer.next_review_at,
        # Figures that do not depend on the clock, kept for queries and reports.
        "order_count": len(active),
        "net_spent": _money(net),
        "first_order_at": min(times, default=None),
        "last_order_at": max(times, default=None),
        "version": customer.version,
    }


def from_document(doc: Document, cipher: FieldCipher) -> Customer:
    return Customer(
        id=doc["_id"],
        first_seen_at=doc["first_seen_at"],
        last_event_at=doc["last_event_at"],
        registered_at=doc.get("registered_at"),
        profile=profile_from_document(doc.get("pii"), cipher),
        tags=list(doc.get("tags", [])),
        consents=doc.get("consents", {}),
        account_owner=doc.get("account_owner"),
        erased_at=doc.get("erased_at"),
        erasure_request_id=doc.get("erasure", {}).get("request_id"),
        erasure_confirmations=dict(doc.get("erasure", {}).get("confirmations", {})),
        orders={
            o["id"]: Order(
                o["id"],
                o["at"],
                _decimal(o["amount"]),
                o["currency"],
                _decimal(o["refunded"]),
                o["cancelled"],
            )
            for o in doc.get("orders", [])
        },
        complaints={c["id"]: c["at"] for c in doc.get("complaints", [])},
        surveys={s["id"]: Survey(s["at"], s["csat"], s["nps"]) for s in doc.get("surveys", [])},
        contacts=doc.get("contacts", 0),
        open_tickets=list(doc.get("open_tickets", [])),
        tickets_resolved=doc.get("tickets_resolved", 0),
        loyalty_tier=doc.get("loyalty_tier"),
        stage=doc.get("stage"),
        grade=doc.get("grade"),
        churn_reasons=list(doc.get("churn_reasons", [])),
        churn_risk_since=doc.get("churn_risk_since"),
        next_review_at=doc.get("next_review_at"),
        version=doc["version"],
    )


def timeline_document(entry: TimelineEntry) -> Document:
    return {
        "_id": entry.event_id,
        "customer_id": entry.customer_id,
        "at": entry.at,
        "type": entry.type,
        "data": entry.data,
    }


class MongoCustomerRepository:
    def __init__(
        self,
        database: AsyncDatabase[Document],
        uow: UnitOfWork,
        base_currency: str,
        keys: CustomerKeys,
    ) -> None:
        self.customers: AsyncCollection[Document] = database["customers"]
        self.timeline: AsyncCollection[Document] = database["timeline"]
        self.uow = uow
        self.base_currency = base_currency
        self.keys = keys

    async def ensure_indexes(self) -> None:
        for keys in (
            "grade",
            "stage",
            "at_risk",
            "account_owner",
            "next_review_at",
            "lookup.phone",
            "lookup.email",
        ):
            await self.customers.create_index(keys)
        await self.timeline.create_index(
            [("customer_id", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)]
        )

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    async def load(self, customer_ids: Sequence[str]) -> dict[str, Customer]:
        cursor = self.customers.find({"_id": {"$in": list(customer_ids)}})
        docs = [doc async for doc in cursor]
        # Stubs (orders only) hold no personal data: no key to read for them.
        sealed = [doc["_id"] for doc in docs if any(doc.get("pii", {}).get(f) for f in SEALED)]
        ciphers = await self.keys.ciphers(sealed)
        return {doc["_id"]: from_document(doc, ciphers.get(doc["_id"], NO_KEY)) for doc in docs}

    async def get(self, customer_id: str) -> Customer | None:
        return (await self.load([customer_id])).get(customer_id)

    async def due_for_review(self, now: datetime, limit: int) -> list[str]:
        cursor = self.customers.find(
            {"next_review_at": {"$lte": now}},
            {"_id": 1},
            sort=[("next_review_at", ASCENDING)],
            limit=limit,
        )
        return [doc["_id"] async for doc in cursor]

    async def save(
        self,
        customers: Sequence[Customer],
        timeline: Sequence[TimelineEntry],
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
    ) -> None:
        """One transaction: customers (optimistic on `version`), timeline, inbox, outbox, and
        the destruction of erased customers' data keys."""
        erased = [c.id for c in customers if c.erased_at is not None]
        if erased:  # only those not yet shredded: a tombstone keeps its first `destroyed_at`
            known = await self.keys.ciphers(erased)
            erased = [customer_id for customer_id in erased if not known[customer_id].destroyed]
        ciphers = await self.keys.ciphers(
            (c.id for c in customers if c.erased_at is None and has_personal_data(c.profile)),
            create=True,
        )
        ring = self.keys.ring
        documents = [
            (
                to_document(
                    c,
                    self.base_currency,
                    SHREDDED if c.erased_at is not None else ciphers.get(c.id, NO_KEY),
                    ring,
                ),
                c.version,
            )
            for c in customers
        ]
        async with self.uow.commit(applied, outbound) as session:
            await self.keys.destroy(erased, session=session)
            await save_versioned(self.customers, documents, session, what="customer")
            if timeline:
                await self.timeline.insert_many(
                    [timeline_document(e) for e in timeline], session=session
                )
        for customer in customers:
            customer.version += 1

    # -- queries ------------------------------------------------------------------------------
    async def find(self, filters: dict[str, Any], after: str | None, limit: int) -> list[Document]:
        query: dict[str, Any] = dict(filters)
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.customers.find(query, sort=[("_id", ASCENDING)], limit=limit)
        return [doc async for doc in cursor]

    def lookup_filter(self, q: str) -> dict[str, Any]:
        field, value = lookup_key_for_query(q, self.keys.ring)
        return {field: value}

    async def same_contact(self, customer: Customer) -> list[Document]:
        keys = {k: v for k, v in lookup_keys(customer.profile, self.keys.ring).items() if v}
        if not keys:
            return []
        query = {"$or": [{f"lookup.{k}": v} for k, v in keys.items()], "_id": {"$ne": customer.id}}
        cursor = self.customers.find(query, {"_id": 1, "registered_at": 1}, limit=20)
        return [doc async for doc in cursor]

    async def timeline_page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int, newest_first: bool
    ) -> list[Document]:
        query: dict[str, Any] = {"customer_id": customer_id}
        direction = DESCENDING if newest_first else ASCENDING
        if after is not None:
            at, event_id = after
            op = "$lt" if newest_first else "$gt"
            query["$or"] = [{"at": {op: at}}, {"at": at, "_id": {op: event_id}}]
        cursor = self.timeline.find(
            query, sort=[("at", direction), ("_id", direction)], limit=limit
        )
        return [doc async for doc in cursor]

    async def grade_stage_counts(self) -> dict[tuple[str, str], int]:
        """Customers by (grade, stage); "none" where not computed yet."""
        result: dict[tuple[str, str], int] = {}
        pipeline = [{"$group": {"_id": {"grade": "$grade", "stage": "$stage"}, "n": {"$sum": 1}}}]
        async for row in await self.customers.aggregate(pipeline):
            key = row["_id"] or {}
            grade = str(key.get("grade") or "none").lower()
            stage = str(key.get("stage") or "none").lower()
            result[(grade, stage)] = result.get((grade, stage), 0) + row["n"]
        return result

    async def counts(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {"grade": {}, "stage": {}, "at_risk": {}}
        for key in ("grade", "stage", "at_risk"):
            async for row in await self.customers.aggregate(
                [{"$group": {"_id": f"${key}", "n": {"$sum": 1}}}]
            ):
                result[key][str(row["_id"]).lower()] = row["n"]
        return result
