"""Customers and timeline in MongoDB (`crm_archive`), saved with the batch's inbox and outbox."""

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import ASCENDING, DESCENDING, DeleteOne, ReplaceOne
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
from crm_archive.domain.customer import Customer, Earlier, FactIds, Order, Survey
from crm_archive.handlers import TimelineEntry
from crm_contracts import CloudEvent
from crm_runtime.crypto import NO_KEY, SHREDDED, CustomerKeys, FieldCipher, KeyRing
from crm_runtime.mongo import Document, save_versioned
from crm_runtime.outbox import OutboundMessage
from crm_runtime.uow import UnitOfWork

PAGE = 500
"""Documents per round trip when a query streams a customer's history."""


def _money(value: Decimal) -> Decimal128:
    return Decimal128(value)


def _decimal(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)


def _order(o: Order) -> Document:
    return {
        "id": o.order_id,
        "at": o.placed_at,
        "amount": _money(o.amount),
        "currency": o.currency,
        "refunded": _money(o.refunded),
        "cancelled": o.cancelled,
    }


def _order_from(o: Document) -> Order:
    return Order(
        o["id"],
        o["at"],
        _decimal(o["amount"]),
        o["currency"],
        _decimal(o["refunded"]),
        o["cancelled"],
    )


def _earlier(e: Earlier) -> Document:
    return {
        "orders": e.orders,
        "base_orders": e.base_orders,
        "base_net": _money(e.base_net),
        "foreign": {
            c: {"orders": e.foreign_orders[c], "net": _money(n)} for c, n in e.foreign.items()
        },
        "first_order_at": e.first_order_at,
        "complaints": e.complaints,
        "surveys": e.surveys,
        "nps_answers": e.nps_answers,
        "promoters": e.promoters,
        "detractors": e.detractors,
        "csat_answers": e.csat_answers,
        "csat_total": e.csat_total,
        "stored": e.stored,
    }


def _earlier_from(doc: Document | None) -> Earlier:
    if not doc:
        return Earlier()
    foreign = doc.get("foreign", {})
    return Earlier(
        orders=doc["orders"],
        base_orders=doc["base_orders"],
        base_net=_decimal(doc["base_net"]),
        foreign={c: _decimal(f["net"]) for c, f in foreign.items()},
        foreign_orders={c: f["orders"] for c, f in foreign.items()},
        first_order_at=doc.get("first_order_at"),
        complaints=doc["complaints"],
        surveys=doc["surveys"],
        nps_answers=doc["nps_answers"],
        promoters=doc["promoters"],
        detractors=doc["detractors"],
        csat_answers=doc["csat_answers"],
        csat_total=doc["csat_total"],
        stored=doc["stored"],
    )


APART = "facts_apart"
"""The collection of the facts a record keeps apart: one document per order, complaint, survey."""


def apart_id(customer_id: str, kind: str, fact_id: str) -> str:
    """Ids hold no white space (crm_contracts Identifier): the space keeps the parts apart."""
    return f"{customer_id} {kind} {fact_id}"


def apart_documents(customer: Customer) -> tuple[list[Document], list[str]]:
    """What to write to `facts_apart` for a record: documents to put, ids to delete."""
    put: list[Document] = []
    for order_id, order in customer.apart.orders.items():
        put.append(
            {
                "_id": apart_id(customer.id, "order", order_id),
                "customer_id": customer.id,
                "kind": "order",
                "fact_id": order_id,
                "at": order.placed_at,
                "active": order.active,
                "order": _order(order),
            }
        )
    for complaint_id, at in customer.apart.complaints.items():
        put.append(
            {
                "_id": apart_id(customer.id, "complaint", complaint_id),
                "customer_id": customer.id,
                "kind": "complaint",
                "fact_id": complaint_id,
                "at": at,
            }
        )
    for survey_id, survey in customer.apart.surveys.items():
        put.append(
            {
                "_id": apart_id(customer.id, "survey", survey_id),
                "customer_id": customer.id,
                "kind": "survey",
                "fact_id": survey_id,
                "at": survey.at,
                "csat": survey.csat,
                "nps": survey.nps,
            }
        )
    gone = [apart_id(customer.id, kind, fact_id) for kind, fact_id in customer.apart.back]
    return put, gone


def to_document(
    customer: Customer, base_currency: str, cipher: FieldCipher, ring: KeyRing
) -> Document:
    """The record as stored; what it holds in full is sorted, so the document depends on the
    facts only (not on the batches that brought them)."""
    active = customer.active_orders()
    earlier = customer.earlier
    times = [o.placed_at for o in active if o.placed_at is not None]
    net = sum((o.net for o in active if o.currency == base_currency), earlier.base_net)
    firsts = [*times, *([earlier.first_order_at] if earlier.first_order_at else [])]
    held = sorted(customer.orders.values(), key=_order_key)
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
        "orders": [_order(o) for o in held],
        "complaints": [
            {"id": k, "at": v} for k, v in sorted(customer.complaints.items(), key=_by_time)
        ],
        "surveys": [
            {"id": k, "at": s.at, "csat": s.csat, "nps": s.nps}
            for k, s in sorted(customer.surveys.items(), key=lambda i: (i[1].at, i[0]))
        ],
        "earlier": _earlier(earlier),
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
        "order_count": len(active) + earlier.orders,
        "net_spent": _money(net),
        "first_order_at": min(firsts, default=None),
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
        orders={o["id"]: _order_from(o) for o in doc.get("orders", [])},
        complaints={c["id"]: c["at"] for c in doc.get("complaints", [])},
        surveys={s["id"]: Survey(s["at"], s["csat"], s["nps"]) for s in doc.get("surveys", [])},
        contacts=doc.get("contacts", 0),
        open_tickets=list(doc.get("open_tickets", [])),
        tickets_resolved=doc.get("tickets_resolved", 0),
        loyalty_tier=doc.get("loyalty_tier"),
        earlier=_earlier_from(doc.get("earlier")),
        stage=doc.get("stage"),
        grade=doc.get("grade"),
        churn_reasons=list(doc.get("churn_reasons", [])),
        churn_risk_since=doc.get("churn_risk_since"),
        next_review_at=doc.get("next_review_at"),
        version=doc["version"],
    )


def _order_key(order: Order) -> tuple[bool, datetime | None, str]:
    return order.placed_at is not None, order.placed_at, order.order_id


def _by_time(item: tuple[str, datetime]) -> tuple[datetime, str]:
    return item[1], item[0]


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
        self.apart: AsyncCollection[Document] = database[APART]
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
        await self.apart.create_index(
            [
                ("customer_id", ASCENDING),
                ("kind", ASCENDING),
                ("active", ASCENDING),
                ("at", ASCENDING),
                ("fact_id", ASCENDING),
            ]
        )

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    async def load(
        self, customer_ids: Sequence[str], references: Mapping[str, FactIds] | None = None
    ) -> dict[str, Customer]:
        cursor = self.customers.find({"_id": {"$in": list(customer_ids)}})
        docs = [doc async for doc in cursor]
        # Stubs (orders only) hold no personal data: no key to read for them.
        sealed = [doc["_id"] for doc in docs if any(doc.get("pii", {}).get(f) for f in SEALED)]
        ciphers = await self.keys.ciphers(sealed)
        customers = {
            doc["_id"]: from_document(doc, ciphers.get(doc["_id"], NO_KEY)) for doc in docs
        }
        if references:
            await self._recall(customers, references)
        return customers

    async def _recall(
        self, customers: dict[str, Customer], references: Mapping[str, FactIds]
    ) -> None:
        """Bring back the facts kept apart that the batch names (one query for the batch), and
        for a customer whose orders may be cancelled, the first and the latest active orders kept
        apart as many as there are cancellations (+1 first): enough that which orders are held,
        and the first order, stay exact."""
        wanted: list[str] = []
        boundaries: dict[str, int] = {}
        for customer_id, ids in references.items():
            customer = customers.get(customer_id)
            if customer is None or not customer.earlier.stored:
                continue
            wanted += [apart_id(customer_id, "order", i) for i in ids.orders]
            wanted += [apart_id(customer_id, "complaint", i) for i in ids.complaints]
            wanted += [apart_id(customer_id, "survey", i) for i in ids.surveys]
            if ids.cancellations and customer.earlier.orders:
                boundaries[customer_id] = ids.cancellations
        if not wanted:
            return
        found: dict[str, list[Document]] = {}
        async for doc in self.apart.find({"_id": {"$in": wanted}}):
            found.setdefault(doc["customer_id"], []).append(doc)
        for customer_id, cancellations in boundaries.items():
            query = {"customer_id": customer_id, "kind": "order", "active": True}
            for direction, limit in ((ASCENDING, cancellations + 1), (DESCENDING, cancellations)):
                cursor = self.apart.find(
                    query, sort=[("at", direction), ("fact_id", direction)], limit=limit
                )
                found.setdefault(customer_id, []).extend([doc async for doc in cursor])
        for customer_id, found_docs in found.items():
            customers[customer_id].recall(
                self.base_currency,
                orders=[_order_from(d["order"]) for d in found_docs if d["kind"] == "order"],
                complaints=[
                    (d["fact_id"], d["at"]) for d in found_docs if d["kind"] == "complaint"
                ],
                surveys=[
                    (d["fact_id"], Survey(d["at"], d.get("csat"), d.get("nps")))
                    for d in found_docs
                    if d["kind"] == "survey"
                ],
                first_orders=customer_id in boundaries,
            )

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
        apart: list[ReplaceOne[Document] | DeleteOne] = []
        for customer in customers:
            put, gone = apart_documents(customer)
            apart += [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in put]
            apart += [DeleteOne({"_id": i}) for i in gone]
        async with self.uow.commit(applied, outbound) as session:
            await self.keys.destroy(erased, session=session)
            await save_versioned(self.customers, documents, session, what="customer")
            if apart:
                await self.apart.bulk_write(apart, ordered=False, session=session)
            if timeline:
                await self.timeline.insert_many(
                    [timeline_document(e) for e in timeline], session=session
                )
        for customer in customers:
            customer.saved()

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

    async def timeline_entries(self, customer_id: str) -> AsyncIterator[Document]:
        """Every timeline entry of a customer, oldest first, read page by page."""
        cursor = self.timeline.find(
            {"customer_id": customer_id},
            sort=[("at", ASCENDING), ("_id", ASCENDING)],
            batch_size=PAGE,
        )
        async for doc in cursor:
            yield doc

    async def orders(self, customer: Customer) -> AsyncIterator[Order]:
        """Every order of a customer: those kept apart (oldest first, page by page), then those
        the record holds."""
        if customer.earlier.stored:
            cursor = self.apart.find(
                {"customer_id": customer.id, "kind": "order"},
                sort=[("at", ASCENDING), ("fact_id", ASCENDING)],
                batch_size=PAGE,
            )
            async for doc in cursor:
                yield _order_from(doc["order"])
        for order in sorted(customer.orders.values(), key=_order_key):
            yield order

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
