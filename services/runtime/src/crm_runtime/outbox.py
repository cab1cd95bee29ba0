"""The transactional outbox and its relay.

Events a write produces are inserted in the same transaction as the write (so none exists for a
failed write), then a relay publishes them to Kafka and, once the broker has acknowledged them,
deletes them (so none is lost when the process dies in between: the next relay run publishes
what is left). One transaction's events are stored together, in one document of up to
`GROUP_EVENTS` events (ADR 0019): a row is read, claimed and deleted once for all of them. The
collection holds only what is still to publish (`sent: False`); rows an earlier version flagged
`sent: True` and kept are purged after `retention_s`, and rows an earlier version wrote one per
event are published like a group of one. Delivery is at least once: consumers deduplicate by
event id.
"""

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_contracts import CloudEvent, encode_event
from crm_runtime.mongo import Document
from crm_runtime.retry import Backoff

log = logging.getLogger(__name__)
GROUP_EVENTS = 100
"""The most events one outbox document holds; a larger transaction writes several, in order."""
GROUP_BYTES = 1024 * 1024
"""The most encoded event bytes one outbox row holds (a larger event is a row alone): a relay run
holds at most `batch_size` of them."""
MIN_WINDOW = timedelta(milliseconds=1)
MAX_WINDOW = timedelta(hours=1)

Publish = Callable[[str, bytes, bytes, dict[str, str]], Awaitable[Awaitable[Any]]]
"""(topic, key, value, headers) -> an awaitable that completes when the broker acknowledged."""


@dataclass(frozen=True)
class OutboundMessage:
    topic: str
    event: CloudEvent[Any]
    caused_by: str | None = None
    """The W3C `traceparent` of what caused the event when that is not in the same batch (a
    notification sent by a later sweep): the event's trace continues from it."""

    @property
    def key(self) -> str:
        return self.event.subject


class Outbox:
    def __init__(self, database: AsyncDatabase[Document], name: str = "outbox") -> None:
        self.collection: AsyncCollection[Document] = database[name]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index(
            [("sent", ASCENDING), ("created_at", ASCENDING), ("seq", ASCENDING)],
            name="pending_in_order",
        )

    async def add(self, messages: Sequence[OutboundMessage], session: AsyncClientSession) -> None:
        """Store `messages` in `session`'s transaction, in their order: one document per
        `GROUP_EVENTS` events (or `GROUP_BYTES`)."""
        if not messages:
            return
        now = datetime.now(UTC)
        await self.collection.insert_many(
            [
                {
                    "_id": uuid.uuid4().hex,
                    "events": group,
                    "count": len(group),
                    "created_at": now,
                    "seq": position,
                    "sent": False,
                    "lease_until": now,
                }
                for position, group in enumerate(_groups([_entry(m) for m in messages]))
            ],
            session=session,
        )

    async def backlog(self) -> tuple[int, float]:
        """(unsent events, age in seconds of the oldest unsent event)."""
        count = 0
        oldest: datetime | None = None
        async for row in self.collection.find({"sent": False}, {"count": 1, "created_at": 1}):
            count += row.get("count", 1)
            oldest = row["created_at"] if oldest is None else min(oldest, row["created_at"])
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        return count, age


class OutboxRelay:
    """Publishes pending outbox events in order and deletes them once the broker has them.

    Several replicas may run a relay, but only the one that holds the relay's lease (`lead`)
    publishes: two relays publishing different batches side by side would let one customer's
    events leave out of commit order. The holder renews the lease before each batch; when it
    stops (a crash), another replica takes over once the lease lapses. Each batch is also claimed
    row by row with a short lease, so a relay that lost the lead mid-batch and the new holder do
    not both publish it in the normal case (at least once, in order, either way).

    A batch is `batch_size` rows, each one transaction's events (up to `GROUP_EVENTS`): at most
    `batch_size × GROUP_EVENTS` events a run.
    """

    def __init__(
        self,
        outbox: Outbox,
        publish: Publish,
        *,
        batch_size: int = 50,
        poll_interval_s: float = 0.5,
        lease_s: float = 30.0,
        retention_s: int = 24 * 3600,
        on_published: Callable[[int], None] | None = None,
        lead: Callable[[], Awaitable[bool]] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.outbox = outbox
        self.publish = publish
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.lease = timedelta(seconds=lease_s)
        self.retention = timedelta(seconds=retention_s)
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.on_published = on_published
        self.lead = lead
        self.backoff = backoff or Backoff(poll_interval_s)
        """Take or renew the lead: True when this relay may publish now."""
        self._wake = asyncio.Event()
        self._claims = 0
        self._anchor: datetime | None = None
        """The commit time of the first row the last full read left for the next batch."""
        self._window = MIN_WINDOW
        """How far past `_anchor` the next read looks (`_pending`)."""
        self.full = False
        """The last run read a whole batch of rows: more may be waiting."""

    def wake(self) -> None:
        """Ask for a run now (called after a commit) instead of at the next poll."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch of pending rows, if this relay leads; returns how many events.

        Three round trips: read the oldest pending rows (`_pending`), claim the due ones, and
        after every acknowledgement delete them. A published row is deleted, not flagged: no
        indexed field flips, and the collection holds only what is still to publish."""
        self.full = False
        if self.lead is not None and not await self.lead():
            return 0
        collection = self.outbox.collection
        now = datetime.now(UTC)
        rows = await self._pending(now)
        self.full = len(rows) > self.batch_size
        due = [row for row in rows if row["lease_until"] <= now][: self.batch_size]
        if not due:
            return 0
        self._claims += 1
        claim = f"{self.owner}-{self._claims}"
        ids = [row["_id"] for row in due]
        claimed = await collection.update_many(
            {"_id": {"$in": ids}, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + self.lease, "lease_owner": claim}},
        )
        if claimed.modified_count != len(ids):
            # Another relay claimed or published some since the read: publish only ours.
            mine = {
                row["_id"]
                async for row in collection.find(
                    {"_id": {"$in": ids}, "lease_owner": claim}, {"_id": 1}
                )
            }
            due = [row for row in due if row["_id"] in mine]
        acks = [
            await self.publish(
                event["topic"], event["key"].encode(), bytes(event["value"]), _headers(event)
            )
            for row in due
            for event in row_events(row)
        ]
        await asyncio.gather(*acks)
        sent_ids = [row["_id"] for row in due]
        if sent_ids:
            await collection.delete_many({"_id": {"$in": sent_ids}})
        if self.on_published:
            self.on_published(len(acks))
        return len(acks)

    async def _pending(self, now: datetime) -> list[Document]:
        """The oldest pending rows in commit order, up to one more than a batch.

        SecantusDB reads every document a query matches before it sorts and cuts to the limit, so
        "the oldest 500 of the pending" costs the whole backlog. It reads only the index range a
        query pins, though: `{"sent": False, "created_at": {"$lte": reach}}` on the
        `pending_in_order` index is the stretch from the oldest pending row to `reach`, so a row
        committed late with an earlier time is not passed over. `reach` is the time of the row
        after the last full read (`_anchor`) plus the time that read's batch spanned (`_window`,
        doubled while reads come back half empty): about a batch. A read that reaches past now
        takes every pending row; a relay that keeps up has few."""
        collection = self.outbox.collection
        order = [("created_at", ASCENDING), ("seq", ASCENDING)]
        wanted = self.batch_size + 1
        while self._anchor is not None and self._anchor + self._window < now:
            reach = self._anchor + self._window
            rows = await collection.find(
                {"sent": False, "created_at": {"$lte": reach}}, sort=order, limit=wanted
            ).to_list()
            if len(rows) == wanted:
                return self._followed(rows)
            self._anchor = reach  # every pending row up to `reach` is in `rows`
            if len(rows) < wanted // 2:
                self._window = min(self._window * 2, MAX_WINDOW)
            if rows:
                return rows
        rows = await collection.find({"sent": False}, sort=order, limit=wanted).to_list()
        if len(rows) == wanted:
            return self._followed(rows)
        self._anchor = None
        return rows

    def _followed(self, rows: list[Document]) -> list[Document]:
        """A full read: the next one starts at the row after the batch, as wide as it spanned."""
        following = rows[self.batch_size]["created_at"]
        self._window = min(max(following - rows[0]["created_at"], MIN_WINDOW), MAX_WINDOW)
        self._anchor = following
        return rows

    async def purge_sent(self) -> int:
        """Delete the rows an earlier version flagged sent (it kept them `retention_s`)."""
        result = await self.outbox.collection.delete_many(
            {"sent": True, "sent_at": {"$lt": datetime.now(UTC) - self.retention}}
        )
        return result.deleted_count

    async def run(
        self,
        on_error: Callable[[BaseException], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        """Relay until cancelled; errors (broker or database down) are reported and retried,
        and the first success after them is reported too (readiness turns green again)."""
        delay = self.poll_interval_s
        delays = self.backoff.delays(self.poll_interval_s)
        runs = 0
        failing = False
        while True:
            try:
                while await self.relay_once() and self.full:
                    pass
                runs += 1
                if runs % 1000 == 0:
                    await self.purge_sent()
                delay = self.poll_interval_s
                delays = self.backoff.delays(self.poll_interval_s)
                if failing:
                    failing = False
                    log.info("outbox relay recovered")
                    if on_recovered:
                        on_recovered()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed, will retry", extra={"error": type(exc).__name__})
                failing = True
                if on_error:
                    on_error(exc)
                delay = next(delays)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)


def _entry(message: OutboundMessage) -> Document:
    """One event as its outbox row holds it."""
    return {
        "_id": message.event.id,
        "topic": message.topic,
        "key": message.key,
        "type": message.event.type,
        "traceparent": message.event.traceparent,
        "value": encode_event(message.event),
    }


def _groups(entries: list[Document]) -> list[list[Document]]:
    """`entries` cut, in order, into runs of at most `GROUP_EVENTS` events and `GROUP_BYTES`."""
    groups: list[list[Document]] = []
    size = 0
    for entry in entries:
        if (
            not groups
            or len(groups[-1]) >= GROUP_EVENTS
            or size + len(entry["value"]) > GROUP_BYTES
        ):
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += len(entry["value"])
    return groups


def row_events(row: Document) -> list[Document]:
    """A row's events in order; a row an earlier version wrote per event is its own one."""
    events: list[Document] = row.get("events", [row])
    return events


def _headers(event: Document) -> dict[str, str]:
    headers = {
        "content-type": "application/cloudevents+json",
        "correlation_id": event["_id"],  # the event id (FastStream's header, a random id)
        "ce_type": event["type"],
    }
    if event.get("traceparent"):
        headers["traceparent"] = event["traceparent"]
    return headers
