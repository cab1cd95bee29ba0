"""The outbox relay on the real store: what it reads per batch, and what it publishes when
another relay holds some of the rows.

SecantusDB reads every document a query matches before it sorts and cuts to the limit. The relay
used to ask for "the oldest due rows" with a filter every pending row matches, so each batch of a
backlog read the whole backlog (quadratic over a drain). Now each read after the first is a range
of the pending index that holds about a batch. A row holds one transaction's events (ADR 0018).
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient, monitoring
from stackutil import Stack, local_stack

from crm_contracts import CloudEvent, encode_event
from crm_loyalty.settings import LoyaltySettings
from crm_runtime.mongo import Document, create_client, transaction
from crm_runtime.outbox import GROUP_EVENTS, OutboundMessage, Outbox, OutboxRelay, Publish
from crm_runtime.runtime import Runtime

BATCH = 5
"""Rows a relay run reads and publishes."""
EVENTS = 10
"""Events per transaction: one row each."""


class OutboxReads(monitoring.CommandListener):
    """The filters of the `find`s sent to the outbox collection."""

    def __init__(self) -> None:
        self.filters: list[Document] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "outbox":
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def recorded(publish: Publish, into: list[str]) -> Publish:
    """The real publish, noting each event id in the order it is handed to the producer."""

    async def note(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Any:
        into.append(headers["correlation_id"])
        return await publish(topic, key, value, headers)

    return note


@contextlib.asynccontextmanager
async def _relaying(stack: Stack) -> AsyncIterator[tuple[Runtime, str, str]]:
    """A runtime on its own database (the outbox's indexes made), a topic of 3 partitions, and
    the run's id; the database dropped afterwards."""
    run = uuid.uuid4().hex[:8]
    topic = f"relay-reads-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1)])
    await admin.close()
    settings = LoyaltySettings(
        kafka_bootstrap_servers=stack.bootstrap,
        mongodb_url=stack.mongodb_url,
        database=f"crm_relay_reads_{run}",
        master_keys_file=str(local_stack.dev_keys_file()),
    )
    runtime = Runtime(settings)
    await runtime.broker.start()
    try:
        await runtime.outbox.ensure_indexes()
        yield runtime, topic, run
    finally:
        await runtime.mongo.drop_database(settings.database)
        await runtime.stop()


async def _commit(
    client: AsyncMongoClient[Document], outbox: Outbox, topic: str, run: str, rounds: int
) -> tuple[list[str], list[list[str]]]:
    """`rounds` transactions of EVENTS events each, a little apart: the event ids in commit
    order, and each row's."""
    committed: list[str] = []
    rows: list[list[str]] = []
    for round_ in range(rounds):
        messages = []
        for n in range(EVENTS):
            event = CloudEvent[dict[str, Any]](
                id=f"{run}-{round_}-{n}",
                source="tests/relay",
                type="test.relayed",
                subject=f"{run}-{n % 7}",
                time=datetime.now(UTC),
                data={"round": round_, "n": n},
            )
            messages.append(OutboundMessage(topic, event))
        async with transaction(client) as session:
            await outbox.add(messages, session)
        rows.append([message.event.id for message in messages])
        committed.extend(rows[-1])
        await asyncio.sleep(0.01)
    return committed, rows


async def _row_ids(outbox: Outbox) -> list[str]:
    """The pending rows' ids in commit order."""
    order = [("created_at", 1), ("seq", 1)]
    return [row["_id"] async for row in outbox.collection.find({"sent": False}, sort=order)]


def test_a_transactions_events_are_one_row_published_in_order(stack: Stack) -> None:
    asyncio.run(_one_row(stack))


async def _one_row(stack: Stack) -> None:
    async with _relaying(stack) as (runtime, topic, run):
        outbox = runtime.outbox
        messages = [
            OutboundMessage(
                topic,
                CloudEvent[dict[str, Any]](
                    id=f"{run}-{n}",
                    source="tests/relay",
                    type="test.relayed",
                    subject=f"{run}-{n % 7}",
                    time=datetime.now(UTC),
                    data={"n": n},
                ),
            )
            for n in range(2 * GROUP_EVENTS + 1)
        ]
        async with transaction(runtime.mongo) as session:
            await outbox.add(messages, session)
        rows = await outbox.collection.find({}, sort=[("seq", 1)]).to_list()
        assert [row["count"] for row in rows] == [GROUP_EVENTS, GROUP_EVENTS, 1]
        count, age = await outbox.backlog()
        assert (count, age < 60) == (len(messages), True), "the backlog counts events, not rows"
        published: list[str] = []
        relay = OutboxRelay(outbox, recorded(runtime.relay.publish, published))
        assert await relay.relay_once() == len(messages)
        assert published == [message.event.id for message in messages]
        assert await outbox.collection.count_documents({}) == 0


def test_a_row_written_per_event_by_an_earlier_version_is_published(stack: Stack) -> None:
    asyncio.run(_legacy_row(stack))


async def _legacy_row(stack: Stack) -> None:
    async with _relaying(stack) as (runtime, topic, run):
        outbox = runtime.outbox
        now = datetime.now(UTC)
        event = CloudEvent[dict[str, Any]](
            id=f"{run}-old",
            source="tests/relay",
            type="test.relayed",
            subject=run,
            time=now,
            data={},
        )
        await outbox.collection.insert_one(
            {
                "_id": event.id,
                "topic": topic,
                "key": run,
                "type": event.type,
                "traceparent": None,
                "value": encode_event(event),
                "created_at": now,
                "seq": 0,
                "sent": False,
                "lease_until": now,
            }
        )
        count, age = await outbox.backlog()
        assert (count, age < 60) == (1, True)
        published: list[str] = []
        relay = OutboxRelay(outbox, recorded(runtime.relay.publish, published))
        assert await relay.relay_once() == 1
        assert published == [event.id]
        assert await outbox.collection.count_documents({}) == 0


def test_draining_a_backlog_reads_about_a_batch_per_read_not_the_backlog(stack: Stack) -> None:
    asyncio.run(_drain(stack))


async def _drain(stack: Stack) -> None:
    reads = OutboxReads()
    client = create_client(stack.mongodb_url, app_name="relay-reads", event_listeners=[reads])
    async with _relaying(stack) as (runtime, topic, run):
        outbox = Outbox(client[runtime.settings.database])
        await outbox.ensure_indexes()
        committed, _ = await _commit(client, outbox, topic, run, rounds=20 * BATCH)
        published: list[str] = []
        relay = OutboxRelay(outbox, recorded(runtime.relay.publish, published), batch_size=BATCH)
        matched: list[int] = []
        while True:
            before = len(reads.filters)
            if not await relay.relay_once():
                break
            # What the store had to read for this batch's reads: every row their filters match
            # (counted after the batch was published and deleted, so a batch fewer).
            matched.append(
                max([await outbox.collection.count_documents(f) for f in reads.filters[before:]])
            )
        assert len(matched) >= 19
        assert max(matched[1:]) <= 2 * BATCH, (
            f"after the first, each read matched at most two batches of the {20 * BATCH} rows "
            f"(left after each batch: {matched})"
        )
        assert published == committed, "every event once, in commit order"
        assert await outbox.collection.count_documents({}) == 0, "published rows are deleted"
    await client.close()


def test_a_relay_publishes_only_the_rows_it_claimed(stack: Stack) -> None:
    """Rows another relay claimed (it led before, its claim has not lapsed) are not published
    again, whether they were claimed before this relay's read or between its read and its
    claim; they are published once that claim lapses."""
    asyncio.run(_claims(stack))


async def _claims(stack: Stack) -> None:
    async with _relaying(stack) as (runtime, topic, run):
        outbox = runtime.outbox
        committed, rows = await _commit(runtime.mongo, outbox, topic, run, rounds=3 * BATCH)
        row_ids = await _row_ids(outbox)
        held_before, held_between = row_ids[1:2], row_ids[3:4]
        later = datetime.now(UTC) + timedelta(seconds=30)
        await outbox.collection.update_many(
            {"_id": {"$in": held_before}}, {"$set": {"lease_until": later, "lease_owner": "x"}}
        )

        class Raced(OutboxRelay):
            async def _pending(self, now: datetime) -> list[Document]:
                rows = await super()._pending(now)
                await outbox.collection.update_many(  # the other relay claims between
                    {"_id": {"$in": held_between}},
                    {"$set": {"lease_until": later, "lease_owner": "y"}},
                )
                return rows

        published: list[str] = []
        relay = Raced(outbox, recorded(runtime.relay.publish, published), batch_size=BATCH)
        held = [*rows[1], *rows[3]]
        free = [i for i in committed if i not in held]
        first = await relay.relay_once()
        assert first == (BATCH - 1) * EVENTS, first  # rows 0, 2, 4, 5: 1 and 3 are held
        assert published == free[:first], "only the rows it claimed, in commit order"
        while await relay.relay_once():
            pass
        assert [i for i in published if i in held] == [], "nothing another relay holds"
        assert sorted(published) == sorted(free), "the rest, once each"

        await outbox.collection.update_many(
            {"_id": {"$in": [*held_before, *held_between]}},
            {"$set": {"lease_until": datetime.now(UTC) - timedelta(seconds=1)}},
        )
        published.clear()
        while await OutboxRelay(outbox, recorded(runtime.relay.publish, published)).relay_once():
            pass
        assert published == held, "published once their claim lapsed"
