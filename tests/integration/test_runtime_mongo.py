"""Runtime pieces on the real MongoDB-wire server: leases, inbox, duplicate-tolerant inserts."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from stackutil import Stack, unique

from crm_contracts import CloudEvent, encode_event, new_event
from crm_contracts.orders.v1 import OrderCancelled
from crm_runtime.consumer import BatchConsumer
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.health import Health
from crm_runtime.metrics import RuntimeMetrics
from crm_runtime.mongo import Inbox, inbox_key, insert_ignoring_duplicates, transaction
from crm_runtime.outbox import Outbox
from crm_runtime.retry import Backoff
from crm_runtime.sweeps import Leases, SweepRunner
from crm_runtime.uow import UnitOfWork


@pytest.fixture
async def database(stack: Stack) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    name = unique("crm_rt").replace("-", "_")
    yield client[name]
    await client.drop_database(name)
    await client.close()


async def test_one_replica_at_a_time_holds_a_lease(database: AsyncDatabase[dict[str, Any]]) -> None:
    first, second = Leases(database, "replica-1"), Leases(database, "replica-2")
    now = datetime.now(UTC)
    assert await first.acquire("sweep:x", ttl_s=60, now=now)
    assert not await second.acquire("sweep:x", ttl_s=60, now=now)
    assert await first.acquire("sweep:x", ttl_s=60, now=now), "the holder may renew"
    assert await second.acquire("sweep:x", ttl_s=60, now=now + timedelta(seconds=61)), "lapsed"
    await second.release("sweep:x")
    assert await first.acquire("sweep:x", ttl_s=60)


async def test_duplicates_are_skipped_and_other_errors_raise(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    collection = database["ledger"]
    await collection.create_index("source_event_id", unique=True)
    docs = [{"source_event_id": f"e{i}"} for i in range(3)]
    assert await insert_ignoring_duplicates(collection, docs) == 3
    again = [{"source_event_id": "e1"}, {"source_event_id": "e9"}]
    assert await insert_ignoring_duplicates(collection, again) == 1
    assert await collection.count_documents({}) == 4


async def test_the_inbox_filters_applied_and_repeated_events(
    stack: Stack, database: AsyncDatabase[dict[str, Any]]
) -> None:
    inbox = Inbox(database)
    events = [
        new_event(
            "order.cancelled", source="t", subject="c", data=OrderCancelled(order_id="o"), id=i
        )
        for i in ["a", "b", "a", "c"]
    ]
    assert [e.id for e in await inbox.unprocessed(events)] == ["a", "b", "c"]
    client: AsyncMongoClient[dict[str, Any]] = database.client
    async with transaction(client) as session:
        await inbox.mark(events[:2], session)
    assert [e.id for e in await inbox.unprocessed(events)] == ["c"]


async def test_a_commit_marks_what_it_applied_but_the_events_it_is_told_need_no_mark(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    """ADR 0025: an event whose effect is keyed by what it names is applied without a mark; it
    still counts as applied (the trace context of what the commit emits comes from it)."""
    inbox = Inbox(database)
    uow = UnitOfWork(database.client, inbox, Outbox(database))
    events = [
        new_event(
            "order.cancelled", source="t", subject="c", data=OrderCancelled(order_id="o"), id=i
        )
        for i in ["a", "b", "c"]
    ]
    async with uow.commit(events, [], unmarked={inbox_key(events[1])}):
        pass
    marks = await database["processed_events"].distinct("_id")
    assert sorted(marks) == sorted(inbox_key(e) for e in (events[0], events[2]))
    assert [e.id for e in await inbox.unprocessed(events)] == ["b"]


class InboxLookups(monitoring.CommandListener):
    """How many keys each lookup of the inbox (`find` on `processed_events`) asked for."""

    def __init__(self) -> None:
        self.keys: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "processed_events":
            wanted = event.command.get("filter", {}).get("_id", {})
            if isinstance(wanted, dict) and "$in" in wanted:
                self.keys.append(len(wanted["$in"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def cancellations(*ids: str) -> list[Any]:
    return [
        new_event(
            "order.cancelled", source="t", subject="c", data=OrderCancelled(order_id="o"), id=i
        )
        for i in ids
    ]


async def test_marks_keyed_by_the_event_id_alone_are_honoured_until_they_can_no_longer_be_there(
    stack: Stack, database: AsyncDatabase[dict[str, Any]]
) -> None:
    """An inbox that held marks when this code first started on it may hold marks written
    before the key included the source (`_id` = the event id): a redelivered event marked so
    is not applied again, by any replica, until the retention has passed since that start."""
    await database["processed_events"].insert_one(
        {"_id": "a", "type": "x", "at": datetime.now(UTC)}
    )
    lookups = InboxLookups()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[lookups]
    )
    try:
        replicas = [Inbox(client[database.name]) for _ in range(2)]
        for inbox in replicas:
            await inbox.ensure_indexes()
            assert [e.id for e in await inbox.unprocessed(cancellations("a", "b"))] == ["b"]
        assert lookups.keys == [4, 4]  # both keys of each event

        a_month_ago = datetime.now(UTC) - timedelta(days=31)
        await replicas[0].note.update_one({}, {"$set": {"since": a_month_ago}})
        later = Inbox(client[database.name])
        await later.ensure_indexes()
        await later.unprocessed(cancellations("a", "b"))
        assert lookups.keys[-1] == 2, "past the retention, only the inbox keys"
    finally:
        await client.close()


async def test_an_inbox_empty_at_the_first_start_is_asked_one_key_per_event(
    stack: Stack, database: AsyncDatabase[dict[str, Any]]
) -> None:
    """No mark keyed the old way can be in an inbox this code started on empty, so a lookup asks
    for each event's inbox key only: half the keys (docs/performance.md). Before the start has
    read the inbox's note (a rebuild's own inbox), both keys are asked for."""
    lookups = InboxLookups()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[lookups]
    )
    try:
        inbox = Inbox(client[database.name])
        await inbox.unprocessed(cancellations("a", "b", "c"))
        await inbox.ensure_indexes()
        async with transaction(client) as session:
            await inbox.mark(cancellations("a"), session)
        again = Inbox(client[database.name])  # a restart: the inbox holds marks now
        await again.ensure_indexes()
        for each in (inbox, again):
            assert [e.id for e in await each.unprocessed(cancellations("a", "b", "c"))] == [
                "b",
                "c",
            ]
        assert lookups.keys == [6, 3, 3]
        inbox.old_marks_until = datetime.max.replace(tzinfo=UTC)  # as an upgraded database
        named_like_the_note = cancellations("old_marks")
        assert await inbox.unprocessed(named_like_the_note) == named_like_the_note
    finally:
        await client.close()


async def test_the_handler_is_answered_by_the_consumers_lookup_and_a_retry_asks_the_store(
    stack: Stack, database: AsyncDatabase[dict[str, Any]]
) -> None:
    """A batch costs one lookup of the inbox: the handler's lookup of the events the consumer
    found new is answered from the consumer's (before: two `find`s, one per lookup). A replica
    that marks some of them in between makes the batch's transaction fail on the marks' unique
    key; the consumer retries in halves, each of which asks the store, so the others are
    applied, nothing twice, and nothing is dead-lettered."""
    lookups = InboxLookups()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[lookups]
    )
    try:
        inbox, replica = Inbox(client[database.name]), Inbox(client[database.name])
        await inbox.ensure_indexes()
        applied: list[str] = []
        race: list[str] = []

        async def handle(events: Sequence[CloudEvent[Any]]) -> int:
            fresh = await inbox.unprocessed(events)
            if race:  # another replica applies these first, after this one's lookups
                async with transaction(client) as session:
                    await replica.mark([e for e in events if e.id in race], session)
                race.clear()
            async with transaction(client) as session:
                await inbox.mark(fresh, session)
            applied.extend(e.id for e in fresh)
            return len(fresh)

        dead: list[dict[str, str]] = []

        async def send(
            topic: str, key: bytes | None, value: bytes, headers: dict[str, str]
        ) -> None:
            dead.append(headers)

        consumer = BatchConsumer(
            handle,
            DeadLetters(send, service="loyalty", consumer_group="loyalty"),
            health=Health(),
            metrics=RuntimeMetrics(CollectorRegistry(), "loyalty"),
            backoff=Backoff(0.001, 0.002),
            accepted_types=["order.cancelled"],
            unprocessed=inbox.screen,
        )

        def records(*ids: str) -> list[InboundRecord]:
            return [
                InboundRecord("orders.v1", 0, n, b"c", encode_event(event))
                for n, event in enumerate(cancellations(*ids))
            ]

        await consumer.process(records("a", "b"))
        assert applied == ["a", "b"]
        assert lookups.keys == [2], "one lookup for the consumer and the handler"

        race.append("d")
        await consumer.process(records("a", "c", "d", "e"))
        assert applied == ["a", "b", "c", "e"]
        assert dead == []
        assert await database["processed_events"].count_documents({}) == 5
    finally:
        await client.close()


async def test_two_batches_applied_side_by_side_each_keep_their_own_lookup(
    stack: Stack, database: AsyncDatabase[dict[str, Any]]
) -> None:
    """A process with two consumers (the archive's) applies two batches at once through one
    inbox. Each handler's lookup is answered from its own consumer's, though the other batch
    was looked up in between; before, the second lookup replaced the first's answer and the
    first handler asked the store again. Neither answer leaks into the other batch."""
    lookups = InboxLookups()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[lookups]
    )
    try:
        inbox = Inbox(client[database.name])
        await inbox.ensure_indexes()
        async with transaction(client) as session:
            await inbox.mark(cancellations("b1"), session)
        first_screened, second_screened = asyncio.Event(), asyncio.Event()

        async def first() -> list[str]:
            events = cancellations("a1", "a2")
            await inbox.screen(events)
            first_screened.set()
            await second_screened.wait()  # the other batch is looked up meanwhile
            return [e.id for e in await inbox.unprocessed(events)]

        async def second() -> list[str]:
            await first_screened.wait()
            events = cancellations("b1", "b2")
            fresh = await inbox.screen(events)
            second_screened.set()
            return [e.id for e in await inbox.unprocessed(fresh)]

        assert list(await asyncio.gather(first(), second())) == [["a1", "a2"], ["b2"]]
        assert lookups.keys == [2, 2], "one lookup a batch, each answering its own handler"
    finally:
        await client.close()


async def test_an_on_demand_sweep_waits_for_the_running_one_in_the_same_process(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    """The lease is re-entrant for its holder, so without the in-process lock a manual run
    (POST /ops/sweeps) overlapped the periodic run of the same sweep."""
    active, overlaps = 0, 0

    async def job(now: datetime) -> int:
        nonlocal active, overlaps
        active += 1
        overlaps += active > 1
        await asyncio.sleep(0.2)
        active -= 1
        return 1

    runner = SweepRunner("test", Leases(database, "replica-1"), CollectorRegistry())
    runner.add("deliver", 1.0, job)
    results = await asyncio.gather(runner.run_once("deliver"), runner.run_once("deliver"))
    assert list(results) == [1, 1]
    assert overlaps == 0


def key_ring(current: str = "k1", **extra: bytes) -> KeyRing:
    return KeyRing({"k1": b"1" * 32, **extra}, current, b"i" * 32)


async def test_one_data_key_per_customer_even_when_two_writers_race(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    first, second = CustomerKeys(database, key_ring()), CustomerKeys(database, key_ring())
    a, b = await asyncio.gather(
        first.ciphers(["c1", "c2"], create=True), second.ciphers(["c1"], create=True)
    )
    assert a["c1"].key == b["c1"].key
    assert a["c1"].key != a["c2"].key
    sealed = a["c1"].seal("name", "Li Lei")
    assert (await second.ciphers(["c1"]))["c1"].open("name", sealed) == "Li Lei"
    nobody = (await first.ciphers(["nobody"]))["nobody"]
    assert nobody.key is None, "reading makes no key"
    assert not nobody.destroyed, "no key yet is not an erasure: old plaintext still reads"
    assert await database["data_keys"].count_documents({}) == 2


async def test_a_destroyed_key_stays_destroyed_and_nothing_is_sealed_for_that_customer_again(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    keys = CustomerKeys(database, key_ring())
    sealed = (await keys.ciphers(["c1"], create=True))["c1"].seal("phone", "13800138000")
    await keys.destroy(["c1", "never-seen"])
    after = await keys.ciphers(["c1", "never-seen"], create=True)
    assert after["c1"].shredded
    assert after["never-seen"].shredded
    assert after["c1"].open("phone", sealed) is None
    assert after["c1"].seal("phone", "13800138000") is None
    stored = await database["data_keys"].find_one({"_id": "c1"})
    assert stored is not None
    assert stored["wrapped"] is None
    assert stored["destroyed_at"]


async def test_rotation_rewraps_every_data_key_under_the_new_master_key(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    old = CustomerKeys(database, key_ring())
    before = await old.ciphers([f"c{i}" for i in range(5)], create=True)
    rotated = CustomerKeys(database, key_ring("k2", k2=b"2" * 32))
    assert await rotated.rewrap(limit=3) == (3, 0)
    assert await rotated.rewrap() == (2, 0)
    assert await rotated.rewrap() == (0, 0)
    assert await database["data_keys"].count_documents({"key_id": "k2"}) == 5
    only_new = CustomerKeys(database, KeyRing({"k2": b"2" * 32}, "k2", b"i" * 32))
    after = await only_new.ciphers(list(before))
    assert all(after[c].key == before[c].key for c in before), "same data keys, new wrapping"


async def test_a_key_under_a_master_key_no_longer_held_is_counted_and_does_not_block_rotation(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    await CustomerKeys(database, KeyRing({"k0": b"0" * 32}, "k0", b"i" * 32)).ciphers(
        ["lost"], create=True
    )
    await CustomerKeys(database, key_ring()).ciphers(["c1", "c2"], create=True)
    rotated = CustomerKeys(database, key_ring("k2", k2=b"2" * 32))
    assert await rotated.rewrap(limit=1) == (1, 0)  # c1
    assert await rotated.rewrap() == (1, 1)  # c2 re-wrapped, "lost" counted
    assert await rotated.rewrap() == (0, 0), "the unknown master key is skipped from now on"
    assert await database["data_keys"].count_documents({"key_id": "k2"}) == 2
