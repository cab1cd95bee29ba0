"""PyMongo's async client, transactions, and the inbox that makes every effect idempotent.

Every batch a service persists goes through one transaction that writes the service's own
documents, marks the batch's event ids as processed (a unique `_id`, so a redelivered event is seen
as done) and stores the outbound events in the outbox. Transactions need a replica set: SecantusDB
advertises itself as a single-node one; a real `mongod` must run with `--replSet`.
"""

import struct
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import ASCENDING, AsyncMongoClient, InsertOne, ReplaceOne, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from crm_contracts import CloudEvent, event_key
from crm_runtime.errors import ConcurrencyConflictError

Document = dict[str, Any]
DUPLICATE_KEY = 11000
INDEX_CONFLICT = {85, 86}  # IndexOptionsConflict, IndexKeySpecsConflict


def create_client(url: str, *, app_name: str, **options: Any) -> AsyncMongoClient[Document]:
    """`options`: TLS and credentials (`ServiceSettings.mongodb_options()`)."""
    return AsyncMongoClient(
        url,
        **options,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        uuidRepresentation="standard",
    )


# -- Decimal128, the stored form of money ----------------------------------------------------------
_BIAS = 6176
"""Decimal128's exponent bias."""
_MAX_COEFFICIENT = 10**34 - 1
_LOW = (1 << 64) - 1
_SPECIAL = 0x6000000000000000
"""The combination bits of NaN, infinity and the large-coefficient form: left to bson."""


def to_decimal128(value: Decimal) -> Decimal128:
    """`Decimal128(value)`, the same bits, without bson's decimal context per call (a record's
    money is re-encoded on every save: bson's conversion was 14% of the archive's samples,
    docs/performance.md). Read from the plain text of the number (`12.30`: digits 1230, exponent
    -2, as `Decimal.as_tuple()` has them); scientific notation, NaN, infinity and more than 34
    digits go to bson."""
    text = str(value)
    digits = text.lstrip("-")
    whole, _, fraction = digits.partition(".")
    if not (whole + fraction).isdigit() or len(whole) + len(fraction) > 34:
        return Decimal128(value)
    coefficient = int(whole + fraction)
    high = (coefficient >> 64) | ((_BIAS - len(fraction)) << 49)
    if len(digits) != len(text):
        high |= 1 << 63
    return Decimal128.from_bid(struct.pack("<QQ", coefficient & _LOW, high))


def from_decimal128(value: Any) -> Decimal:
    """`value.to_decimal()` for a Decimal128, the same `Decimal` (digits and exponent), without
    bson's bit loops; anything else as `Decimal(value)` (a number stored before Decimal128)."""
    if not isinstance(value, Decimal128):
        return Decimal(value)
    bits = int.from_bytes(value.bid, "little")
    high = bits >> 64
    if high & _SPECIAL == _SPECIAL:
        return value.to_decimal()
    exponent = ((high >> 49) & 0x3FFF) - _BIAS
    coefficient = ((high & 0x1FFFFFFFFFFFF) << 64) | (bits & _LOW)
    if coefficient > _MAX_COEFFICIENT or exponent > 6111:
        return value.to_decimal()
    return Decimal(f"{'-' if high >> 63 else ''}{coefficient}E{exponent}")


async def ping(client: AsyncMongoClient[Document]) -> bool:
    try:
        await client.admin.command("ping")
    except Exception:
        return False
    return True


def only_duplicate_keys(error: BulkWriteError) -> bool:
    """True when every write error of a bulk write is a duplicate key (code 11000)."""
    errors: Sequence[Mapping[str, Any]] = error.details.get("writeErrors", [])
    return (
        bool(errors)
        and all(e.get("code") == DUPLICATE_KEY for e in errors)
        and not (error.details.get("writeConcernErrors"))
    )


async def insert_ignoring_duplicates(
    collection: AsyncCollection[Document],
    documents: Iterable[Document],
    *,
    session: AsyncClientSession | None = None,
) -> int:
    """Insert, unordered; duplicates of a unique index are skipped, any other error raises.

    Returns how many documents were new. Not for use inside a transaction: there a duplicate key
    aborts the transaction, so filter with `Inbox.unprocessed` first.
    """
    operations = [InsertOne(document) for document in documents]
    if not operations:
        return 0
    try:
        result = await collection.bulk_write(operations, ordered=False, session=session)
    except BulkWriteError as error:
        if only_duplicate_keys(error):
            return int(error.details.get("nInserted", 0))
        raise
    return result.inserted_count


def find_by_ids(
    collection: AsyncCollection[Document],
    ids: Iterable[Any],
    projection: Mapping[str, Any] | None = None,
    *,
    session: AsyncClientSession | None = None,
) -> AsyncCursor[Document]:
    """The documents whose `_id` is one of `ids`, in one reply however many there are (up to the
    store's 16 MB a reply). A find's first reply holds 101 documents unless it asks for more, so
    a batch's 500 customers cost a second round trip (a `getMore`). The batch asked for is one
    more than the ids: the server closes the cursor in its first reply only when it reaches the
    end before the batch is full."""
    wanted = list(ids)
    return collection.find(
        {"_id": {"$in": wanted}}, projection, session=session, batch_size=len(wanted) + 1
    )


INBOX_RETENTION_S = 30 * 24 * 3600


inbox_key = event_key
"""The inbox's id of an event: its `source` and `id` (`crm_contracts.event_key`)."""


class Inbox:
    """The events a service has already applied: `_id` = `inbox_key(event)`, kept
    `retention_s` (a TTL index on `at`; 30 days by default, longer than any redelivery the suite
    can see: a batch after a crash or a rebalance, a dead letter re-driven within its topic's 14
    days).

    Marks written before the key included the source (`_id` = event id, before 2026-12-02) are
    still honoured until they expire, so an upgrade does not apply a redelivered event twice.
    Looking them up doubles the keys of every lookup, so it is done only where such marks can
    be: `ensure_indexes` (each start) reads the inbox's note about itself (`<name>_note`, a
    collection of its own), made the first time this code started on the database. An inbox
    that was empty then holds no old mark; one that held marks may hold old ones for
    `retention_s` more (ADR 0024). Until the note is read, both keys are looked up.

    The consumer looks a batch up before it validates the events' data (`screen`, ADR 0017);
    the handler's own lookup of those events, which comes next, is answered from that one
    rather than asked of the store again. Neither lookup is in the batch's transaction: what
    keeps an event from being applied twice is the marks' unique `_id`, which makes the
    transaction of a replica that lost a race fail; the lookup after that asks the store."""

    def __init__(
        self,
        database: AsyncDatabase[Document],
        name: str = "processed_events",
        *,
        retention_s: int = INBOX_RETENTION_S,
    ) -> None:
        self.collection: AsyncCollection[Document] = database[name]
        self.note: AsyncCollection[Document] = database[f"{name}_note"]
        self.retention_s = retention_s
        self.old_marks_until = datetime.max.replace(tzinfo=UTC)
        """Until when marks keyed by the event id alone may be in the inbox (read at start)."""
        self._screened: ContextVar[frozenset[str]] = ContextVar(
            f"screened-{name}-{id(self)}", default=frozenset()
        )
        """The keys the consumer's last lookup found new, for the lookup that follows it: per
        task, so that a process's consumers, whose batches are applied side by side, each
        keep their own."""

    async def ensure_indexes(self) -> None:
        try:
            await self.collection.create_index(
                "at", name="retention", expireAfterSeconds=self.retention_s
            )
        except OperationFailure as exc:
            if exc.code not in INDEX_CONFLICT:
                raise
            await self.collection.drop_index("retention")  # the retention setting changed
            await self.collection.create_index(
                "at", name="retention", expireAfterSeconds=self.retention_s
            )
        self.old_marks_until = await self._old_marks_until()

    async def _old_marks_until(self) -> datetime:
        """The note holds when this code first started on the inbox if it held marks then, and
        None if it was empty: the first replica to start writes it, the others read it."""
        held = await self.collection.find_one({}, {"_id": 1})
        note = await self.note.find_one_and_update(
            {"_id": "old_marks"},
            {"$setOnInsert": {"since": datetime.now(UTC) if held is not None else None}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert note is not None  # an upsert that returns the document after it
        since: datetime | None = note["since"]
        if since is None:
            return datetime.min.replace(tzinfo=UTC)
        return since.replace(tzinfo=UTC) + timedelta(seconds=self.retention_s)

    async def screen(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        """The consumer's lookup of a batch: `unprocessed(events)`, whose answer also serves the
        next lookup in the same task (a batch is applied in one), if it asks about some of the
        events found new (the handler's, with the events left after the data's validation). Any
        lookup after that asks the store: a retry of the batch, or of a part of it, sees what
        was marked in the meantime."""
        fresh = await self.unprocessed(events)
        self._screened.set(frozenset(inbox_key(event) for event in fresh))
        return fresh

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        """The events not applied yet, first occurrence of each, in their original order."""
        screened = self._screened.get()
        self._screened.set(frozenset())
        if not events:
            return []
        keys = {inbox_key(event) for event in events}
        seen: set[str] = set()
        if not keys <= screened:
            if datetime.now(UTC) < self.old_marks_until:
                keys |= {event.id for event in events}
            seen = {doc["_id"] async for doc in find_by_ids(self.collection, keys, {"_id": 1})}
        fresh: list[CloudEvent[Any]] = []
        for event in events:
            key = inbox_key(event)
            if key not in seen and event.id not in seen:
                seen.add(key)
                fresh.append(event)
        return fresh

    async def mark(self, events: Sequence[CloudEvent[Any]], session: AsyncClientSession) -> None:
        if events:
            now = datetime.now(UTC)
            await self.collection.insert_many(
                [{"_id": inbox_key(e), "type": e.type, "at": now} for e in events],
                session=session,
            )


@asynccontextmanager
async def transaction(client: AsyncMongoClient[Document]) -> AsyncIterator[AsyncClientSession]:
    """A session with a transaction that commits when the block exits cleanly."""
    async with client.start_session() as session, await session.start_transaction():
        yield session


async def save_versioned(
    collection: AsyncCollection[Document],
    documents: Sequence[tuple[Document, int]],
    session: AsyncClientSession,
    *,
    what: str,
) -> None:
    """Write aggregates with optimistic concurrency, inside the caller's transaction.

    Each item is (the new document, the version it was read at; 0 = new). A new one is inserted
    with version 1; a known one replaces the stored document only if that still has the version
    read. Anyone else's write in between raises `ConcurrencyConflictError` (transient: the batch
    or request is redone), so no update is ever lost.

    The versions are read inside the transaction, then the documents are replaced by `_id`: a
    write another writer commits after that read is refused by the store's snapshot isolation
    (a write conflict, transient too). A replace filtered on `_id` and `version` cost the
    embedded store 1.4–1.6× as much per document: the extra term takes it off its `_id` path
    (docs/performance.md, `tests/integration/test_save_versioned_store.py`).
    """
    if not session.in_transaction:  # the versions read must hold until the write
        raise RuntimeError("save_versioned needs a session in a transaction")
    known = {document["_id"]: version for document, version in documents if version != 0}
    if known:
        stored = find_by_ids(collection, known, {"version": 1}, session=session)
        found = {doc["_id"]: doc.get("version") async for doc in stored}
        if found != known:
            raise ConcurrencyConflictError(f"a {what} was changed concurrently")
    # The new ones first, then the known ones: an ordered bulk write is one command per run of
    # the same kind, so new and known aggregates interleaved (a task closed, the next one opened)
    # cost a round trip each. Each document is written once, so their order changes nothing.
    operations: list[InsertOne[Document] | ReplaceOne[Document]] = []
    for document, version in sorted(documents, key=lambda item: item[1] != 0):
        document = {**document, "version": version + 1}
        if version == 0:
            operations.append(InsertOne(document))
        else:
            operations.append(ReplaceOne({"_id": document["_id"]}, document))
    if not operations:
        return
    try:
        result = await collection.bulk_write(operations, ordered=True, session=session)
    except BulkWriteError as error:
        if only_duplicate_keys(error):
            raise ConcurrencyConflictError(f"a {what} was created concurrently") from error
        raise
    if result.matched_count != len(known):
        raise ConcurrencyConflictError(f"a {what} was changed concurrently")


async def due_ids(
    collection: AsyncCollection[Document], field: str, now: datetime, limit: int
) -> list[str]:
    """The ids of the documents whose time `field` has come (`<= now`), the earliest first: what
    a sweep looks at next (an index on `field` keeps it cheap)."""
    cursor = collection.find(
        {field: {"$lte": now}}, {"_id": 1}, sort=[(field, ASCENDING)], limit=limit
    )
    return [doc["_id"] async for doc in cursor]
