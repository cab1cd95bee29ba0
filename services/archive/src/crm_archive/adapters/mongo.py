"""Customers and timeline in MongoDB (`crm_archive`), saved with the batch's inbox and outbox:
the `CustomerRepository` and `CustomerQueries` ports. Documents are made in `documents.py`."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, DeleteOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from crm_archive import queries
from crm_archive.adapters import census, finding
from crm_archive.adapters.documents import (
    APART,
    LINES,
    apart_documents,
    apart_id,
    customer_row,
    from_document,
    line_updates,
    note_document,
    note_from,
    order_from,
    order_key,
    timeline_document,
    timeline_entry,
    to_document,
)
from crm_archive.adapters.pii import SEALED, has_personal_data, lookup_keys
from crm_archive.domain.apart import FactIds
from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import Order, Survey
from crm_archive.ports import (
    After,
    Changes,
    CustomerFilter,
    CustomerRow,
    CustomerSort,
    Note,
    Preferences,
    TierChange,
    TimelineEntry,
)
from crm_contracts import CloudEvent
from crm_runtime.crypto import NO_KEY, SHREDDED, CustomerKeys, FieldCipher
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.mongo import Document, due_ids, find_by_ids, save_versioned
from crm_runtime.uow import UnitOfWork

PAGE = 500
"""Documents per round trip when a query streams a customer's history."""
ROW_FIELDS = {
    field: 1
    for field in (
        "grade",
        "stage",
        "at_risk",
        "account_owner",
        "order_count",
        "net_spent",
        "last_order_at",
        "rfm",
    )
}
"""What a list row reads of a customer document (not its orders and complaints)."""
CENSUS_EVERY_S = 600.0
"""A census of the customers (for sizing a sorted list's chunks) older than this is taken
again, in the background, on the next list."""
log = logging.getLogger(__name__)


class MongoCustomerRepository:
    def __init__(
        self, database: AsyncDatabase[Document], uow: UnitOfWork, keys: CustomerKeys
    ) -> None:
        self.customers: AsyncCollection[Document] = database["customers"]
        self.timeline: AsyncCollection[Document] = database["timeline"]
        self.apart: AsyncCollection[Document] = database[APART]
        self.notes: AsyncCollection[Document] = database["notes"]
        self.lines: AsyncCollection[Document] = database[LINES]
        self.uow = uow
        self.keys = keys
        self._census_taken: tuple[float, census.Census] | None = None
        self._census_task: asyncio.Task[None] | None = None

    async def ensure_indexes(self) -> None:
        await self.customers.create_indexes(finding.INDEXES)
        await self.timeline.create_index(
            [("customer_id", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)]
        )
        await self.notes.create_index(
            [("customer_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]
        )
        await self.lines.create_index([("customer_id", ASCENDING), ("at", ASCENDING)])
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
        cursor = find_by_ids(self.customers, customer_ids)
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
        async for doc in find_by_ids(self.apart, wanted):
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
                orders=[order_from(d["order"]) for d in found_docs if d["kind"] == "order"],
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

    async def on_record(self, customer_ids: Sequence[str]) -> set[str]:
        return {doc["_id"] async for doc in find_by_ids(self.customers, customer_ids, {"_id": 1})}

    async def due_for_review(self, now: datetime, limit: int) -> list[str]:
        return await due_ids(self.customers, "next_review_at", now, limit)

    async def save(self, changes: Changes) -> None:
        """One transaction: customers (optimistic on `version`), what they keep apart, timeline,
        notes, inbox, outbox, and the erasure of erased customers: data keys destroyed, the
        summaries of their timeline and the texts of their notes nulled."""
        customers = changes.customers
        forgotten = {c.id for c in customers if c.erased_at is not None}
        erased = sorted(forgotten)
        if erased:  # only those not yet shredded: a tombstone keeps its first `destroyed_at`
            known = await self.keys.ciphers(erased)
            erased = [customer_id for customer_id in erased if not known[customer_id].destroyed]
        sealed = [
            e
            for e in changes.timeline
            if e.summary is not None or e.topic is not None or e.request is not None
        ]
        texts = {e.customer_id for e in sealed} | {
            n.customer_id for n in changes.notes if n.text is not None
        }
        profiles = {c.id for c in customers if c.erased_at is None and has_personal_data(c.profile)}
        # A customer's key destroyed earlier stays destroyed: what it would seal is dropped.
        ciphers = await self.keys.ciphers((profiles | texts) - forgotten, create=True)

        def cipher(customer_id: str) -> FieldCipher:
            return SHREDDED if customer_id in forgotten else ciphers.get(customer_id, NO_KEY)

        ring = self.keys.ring
        documents = [(to_document(c, cipher(c.id), ring), c.version) for c in customers]
        apart: list[ReplaceOne[Document] | DeleteOne] = []
        for customer in customers:
            put, gone = apart_documents(customer)
            apart += [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in put]
            apart += [DeleteOne({"_id": i}) for i in gone]
        async with self.uow.commit(changes.applied, changes.outbound) as session:
            await self.keys.destroy(erased, session=session)
            if erased:
                await self._forget_texts(erased, session)
            await save_versioned(self.customers, documents, session, what="customer")
            if changes.tiers:
                await self._set_tiers(changes.tiers, session)
            if apart:
                await self.apart.bulk_write(apart, ordered=False, session=session)
            if changes.timeline:
                await self.timeline.insert_many(
                    [timeline_document(e, cipher(e.customer_id)) for e in changes.timeline],
                    session=session,
                )
            if changes.notes:
                await self.notes.insert_many(
                    [note_document(n, cipher(n.customer_id)) for n in changes.notes],
                    session=session,
                )
            lines = line_updates(changes.order_lines, changes.cancelled_orders)
            if lines:
                await self.lines.bulk_write(lines, ordered=True, session=session)
        for customer in customers:
            customer.saved()

    async def _set_tiers(self, tiers: Sequence[TierChange], session: AsyncClientSession) -> None:
        """Each tier on its stored record, one version up (ADR 0027): a writer that read the
        record before, in a transaction or not, finds another version and redoes its work."""
        updates = [
            UpdateOne(
                {"_id": t.customer_id},
                {
                    "$set": {"loyalty_tier": t.tier},
                    "$min": {"first_seen_at": t.first_seen_at},
                    "$max": {"last_event_at": t.last_event_at},
                    "$inc": {"version": 1},
                },
            )
            for t in tiers
        ]
        result = await self.customers.bulk_write(updates, ordered=False, session=session)
        if result.matched_count != len(updates):  # not on record after all: the batch is redone
            raise ConcurrencyConflictError("a customer whose tier changed is not on record")

    async def _forget_texts(self, erased: list[str], session: AsyncClientSession) -> None:
        """Null what the destroyed keys sealed: no live document holds it either way (ADR 0006)."""
        customer = {"customer_id": {"$in": erased}}
        await self.timeline.update_many(
            {**customer, "$or": [{f: {"$ne": None}} for f in ("summary", "topic", "request")]},
            {"$set": {"summary": None, "topic": None, "request": None}},
            session=session,
        )
        await self.notes.update_many(customer, {"$set": {"text": None}}, session=session)

    async def _cipher(self, customer_id: str) -> FieldCipher:
        """The customer's cipher to open its texts (one that opens nothing if it has no key)."""
        return (await self.keys.ciphers([customer_id]))[customer_id]

    async def timeline_entry(self, event_id: str) -> TimelineEntry | None:
        doc = await self.timeline.find_one({"_id": event_id})
        if doc is None:
            return None
        return timeline_entry(doc, await self._cipher(doc["customer_id"]))

    # -- queries ------------------------------------------------------------------------------
    async def exists(self, customer_id: str) -> bool:
        return await self.customers.find_one({"_id": customer_id}, {"_id": 1}) is not None

    async def find(
        self, filters: CustomerFilter, sort: CustomerSort, after: After | None, limit: int
    ) -> list[CustomerRow]:
        """A page: through the criteria's index, or, for a broad descending sorted list, in
        chunks of the sort order (`census.py`): the same rows either way."""
        criteria = finding.customer_query(filters, self.keys.ring)
        walk = census.plan(criteria, sort, after, limit, self._census())
        if walk is None:
            return await self._page(finding.continued(criteria, sort, after), sort, limit)

        async def read(query: Document, left: int) -> list[CustomerRow]:
            return await self._page(query, sort, left)

        return await census.walked(walk, criteria, sort, after, limit, read)

    async def _page(self, query: Document, sort: CustomerSort, limit: int) -> list[CustomerRow]:
        cursor = self.customers.find(query, ROW_FIELDS, sort=finding.sort_spec(sort), limit=limit)
        return [customer_row(doc) async for doc in cursor]

    def _census(self) -> census.Census | None:
        """The last census of the customers (None before the first), and a new one begun in
        the background when it is older than `CENSUS_EVERY_S`."""
        taken = self._census_taken
        stale = taken is None or time.monotonic() - taken[0] > CENSUS_EVERY_S
        if stale and (self._census_task is None or self._census_task.done()):
            self._census_task = asyncio.create_task(self._take_census())
        return None if taken is None else taken[1]

    async def _take_census(self) -> None:
        try:
            taker = census.CensusTaker(await self.customers.estimated_document_count())
            async for doc in self.customers.find({}, census.CENSUS_FIELDS, batch_size=PAGE * 10):
                taker.add(doc)
            self._census_taken = (time.monotonic(), taker.census())
        except PyMongoError:
            log.exception("the census of the customers failed; sorted lists read as before")

    async def matching(
        self, filters: CustomerFilter, sort: CustomerSort
    ) -> AsyncIterator[CustomerRow]:
        query = finding.customer_query(filters, self.keys.ring)
        cursor = self.customers.find(
            query, ROW_FIELDS, sort=finding.sort_spec(sort), batch_size=PAGE
        )
        async for doc in cursor:
            yield customer_row(doc)

    async def records(self, customer_ids: Sequence[str]) -> list[Customer]:
        found = await self.load(customer_ids)
        return [found[i] for i in customer_ids if i in found]

    async def on_file(self, customers: Sequence[Customer]) -> dict[str, list[str]]:
        wanted: dict[tuple[str, str], list[str]] = {}
        for customer in customers:
            for field, key in lookup_keys(customer.profile, self.keys.ring).items():
                if field in ("phone", "email") and key:
                    wanted.setdefault((field, key), []).append(customer.id)
        if not wanted:
            return {}
        by_field: dict[str, list[str]] = {}
        for field, key in wanted:
            by_field.setdefault(field, []).append(key)
        query = {"$or": [{f"lookup.{f}": {"$in": keys}} for f, keys in by_field.items()]}
        found: dict[str, set[str]] = {}
        async for doc in self.customers.find(query, {"_id": 1, "lookup": 1}):
            for field in by_field:
                for customer_id in wanted.get((field, doc["lookup"].get(field)), []):
                    if customer_id != doc["_id"]:
                        found.setdefault(customer_id, set()).add(doc["_id"])
        return {customer_id: sorted(ids) for customer_id, ids in found.items()}

    async def same_contact(self, customer: Customer) -> list[tuple[str, datetime | None]]:
        lookup = lookup_keys(customer.profile, self.keys.ring)
        keys = {k: lookup[k] for k in ("phone", "email") if lookup[k]}
        if not keys:
            return []
        query = {"$or": [{f"lookup.{k}": v} for k, v in keys.items()], "_id": {"$ne": customer.id}}
        cursor = self.customers.find(query, {"_id": 1, "registered_at": 1}, limit=20)
        return [(doc["_id"], doc.get("registered_at")) async for doc in cursor]

    async def timeline_page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int, newest_first: bool
    ) -> list[TimelineEntry]:
        query: dict[str, Any] = {"customer_id": customer_id}
        direction = DESCENDING if newest_first else ASCENDING
        if after is not None:
            at, event_id = after
            op = "$lt" if newest_first else "$gt"
            query["$or"] = [{"at": {op: at}}, {"at": at, "_id": {op: event_id}}]
        cursor = self.timeline.find(
            query, sort=[("at", direction), ("_id", direction)], limit=limit
        )
        docs = [doc async for doc in cursor]
        sealed = any(_sealed(docs, field) for field in ("summary", "topic", "request"))
        cipher = await self._cipher(customer_id) if sealed else NO_KEY
        return [timeline_entry(doc, cipher) for doc in docs]

    async def notes_page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Note]:
        query: dict[str, Any] = {"customer_id": customer_id}
        if after is not None:
            at, note_id = after
            query["$or"] = [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": note_id}}]
        cursor = self.notes.find(query, sort=[("at", DESCENDING), ("_id", DESCENDING)], limit=limit)
        docs = [doc async for doc in cursor]
        cipher = await self._cipher(customer_id) if _sealed(docs, "text") else NO_KEY
        return [note_from(doc, cipher) for doc in docs]

    async def timeline_entries(self, customer_id: str) -> AsyncIterator[TimelineEntry]:
        """Every timeline entry of a customer, oldest first, read page by page."""
        cursor = self.timeline.find(
            {"customer_id": customer_id},
            sort=[("at", ASCENDING), ("_id", ASCENDING)],
            batch_size=PAGE,
        )
        cipher = await self._cipher(customer_id)
        async for doc in cursor:
            yield timeline_entry(doc, cipher)

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
                yield order_from(doc["order"])
        for order in sorted(customer.orders.values(), key=order_key):
            yield order

    async def _rows(self, pipeline: list[Document]) -> list[Document]:
        return [row async for row in await self.customers.aggregate(pipeline)]

    async def grade_stage_counts(self) -> dict[tuple[str, str], int]:
        return queries.grade_stage_counts(await self._rows(queries.GRADE_STAGE_PIPELINE))

    async def segments(self) -> dict[str, dict[str, int]]:
        rows = {key: await self._rows(queries.segment_pipeline(key)) for key in queries.SEGMENTS}
        return queries.segments_report(rows)

    async def preferences(
        self, customer_id: str, since: datetime, currency: str, top: int
    ) -> Preferences:
        ranked: dict[str, list[Document]] = {}
        for by in ("category", "sku"):
            pipeline = queries.preference_pipeline(customer_id, since, currency, by, top)
            ranked[by] = await self._lines(pipeline)
        return queries.preferences_from(ranked["category"], ranked["sku"])

    async def _lines(self, pipeline: list[Document]) -> list[Document]:
        return [row async for row in await self.lines.aggregate(pipeline)]


def _sealed(docs: list[Document], field: str) -> bool:
    """Whether any of the documents holds a sealed `field` (else no key needs reading)."""
    return any(doc.get(field) is not None for doc in docs)
