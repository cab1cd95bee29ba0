"""`save_versioned` on the real MongoDB-wire server: an aggregate is replaced only over the
version its writer read, whoever else writes it and whenever, so no update is ever lost.

What this protects: every service saves its aggregates (customers, accounts, tickets, tasks,
notifications) through `save_versioned`. It checks the versions read inside the caller's
transaction and then replaces by `_id` (a replace filtered on `_id` and `version` cost the
store 1.4–1.6× as much per document, docs/performance.md); the store's snapshot isolation
must then refuse a write over a version another writer committed after that check.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError
from stackutil import Stack, unique

from crm_runtime.errors import ConcurrencyConflictError, is_transient
from crm_runtime.mongo import Document, find_by_ids, save_versioned

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[AsyncMongoClient[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture
async def records(client: AsyncMongoClient[Document]) -> AsyncIterator[AsyncCollection[Document]]:
    database = client[unique("crm_versioned").replace("-", "_")]
    yield database["records"]
    await client.drop_database(database.name)


async def save(
    client: AsyncMongoClient[Document],
    records: AsyncCollection[Document],
    documents: list[tuple[Document, int]],
) -> None:
    async with client.start_session() as session, await session.start_transaction():
        await save_versioned(records, documents, session, what="record")


async def stored(records: AsyncCollection[Document]) -> dict[str, Any]:
    return {d["_id"]: (d["n"], d["version"]) async for d in records.find({})}


async def test_new_and_known_aggregates_are_saved_one_version_up(
    client: AsyncMongoClient[Document], records: AsyncCollection[Document]
) -> None:
    await save(client, records, [({"_id": "a", "n": 1}, 0), ({"_id": "b", "n": 1}, 0)])
    await save(client, records, [({"_id": "a", "n": 2}, 1), ({"_id": "c", "n": 1}, 0)])
    assert await stored(records) == {"a": (2, 2), "b": (1, 1), "c": (1, 1)}


async def test_a_write_over_a_version_changed_since_the_read_is_refused_whole(
    client: AsyncMongoClient[Document], records: AsyncCollection[Document]
) -> None:
    await save(client, records, [({"_id": "a", "n": 1}, 0), ({"_id": "b", "n": 1}, 0)])
    await save(client, records, [({"_id": "b", "n": 2}, 1)])  # another writer
    with pytest.raises(ConcurrencyConflictError):
        await save(client, records, [({"_id": "a", "n": 9}, 1), ({"_id": "b", "n": 9}, 1)])
    assert await stored(records) == {"a": (1, 1), "b": (2, 2)}  # nothing of the refused save


async def test_a_second_first_write_is_refused(
    client: AsyncMongoClient[Document], records: AsyncCollection[Document]
) -> None:
    await save(client, records, [({"_id": "a", "n": 1}, 0)])
    with pytest.raises(ConcurrencyConflictError):
        await save(client, records, [({"_id": "a", "n": 2}, 0)])
    assert await stored(records) == {"a": (1, 1)}


class OtherWriterBetween:
    """The collection, except that another writer commits version 2 of "a" when the save
    writes: after `save_versioned`'s own read of the versions, before its write."""

    def __init__(
        self, client: AsyncMongoClient[Document], records: AsyncCollection[Document]
    ) -> None:
        self.client, self.records = client, records

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self.records.find(*args, **kwargs)

    async def bulk_write(self, *args: Any, **kwargs: Any) -> Any:
        await save(self.client, self.records, [({"_id": "a", "n": 2}, 1)])
        return await self.records.bulk_write(*args, **kwargs)


@pytest.mark.parametrize("first_read", ["by the save", "earlier in the transaction"])
async def test_a_version_committed_between_the_check_and_the_write_is_not_lost(
    client: AsyncMongoClient[Document], records: AsyncCollection[Document], first_read: str
) -> None:
    """The race the check inside the transaction leaves: another writer commits a new version
    after the save has read the versions and before it writes. The store must refuse the write
    (a write conflict: the batch is redone), never replace the other writer's version."""
    await save(client, records, [({"_id": "a", "n": 1}, 0)])
    between = cast(AsyncCollection[Document], OtherWriterBetween(client, records))
    async with client.start_session() as session:
        with pytest.raises((ConcurrencyConflictError, PyMongoError)) as refused:
            await in_transaction(session, between, records, early=first_read != "by the save")
    assert isinstance(refused.value, ConcurrencyConflictError) or is_transient(refused.value)
    assert await stored(records) == {"a": (2, 2)}


async def in_transaction(
    session: AsyncClientSession,
    between: AsyncCollection[Document],
    records: AsyncCollection[Document],
    *,
    early: bool,
) -> None:
    async with await session.start_transaction():
        if early:
            await records.find_one({"_id": "a"}, session=session)  # the snapshot is taken
        await save_versioned(between, [({"_id": "a", "n": 3}, 1)], session, what="record")


async def test_outside_a_transaction_it_refuses_to_save(
    client: AsyncMongoClient[Document], records: AsyncCollection[Document]
) -> None:
    async with client.start_session() as session:
        with pytest.raises(RuntimeError, match="transaction"):
            await save_versioned(records, [({"_id": "a", "n": 1}, 0)], session, what="record")


async def test_of_two_writers_over_one_version_at_the_same_time_one_wins(
    client: AsyncMongoClient[Document], records: AsyncCollection[Document]
) -> None:
    await save(client, records, [({"_id": f"r{i}", "n": 0}, 0) for i in range(20)])
    both_read = asyncio.Barrier(2)

    async def writer(n: int) -> Exception | None:
        async with client.start_session() as session:
            try:
                async with await session.start_transaction():
                    await records.find_one({"_id": "r0"}, session=session)
                    await both_read.wait()
                    documents = [({"_id": f"r{i}", "n": n}, 1) for i in range(20)]
                    await save_versioned(records, documents, session, what="record")
            except Exception as exc:
                return exc
        return None

    first, second = await asyncio.gather(writer(1), writer(2))
    refused = [e for e in (first, second) if e is not None]
    assert len(refused) == 1, (first, second)
    assert isinstance(refused[0], ConcurrencyConflictError) or is_transient(refused[0])
    winner = 1 if first is None else 2
    assert await stored(records) == {f"r{i}": (winner, 2) for i in range(20)}


class Sent(monitoring.CommandListener):
    """The names of the commands sent to the collection `records`, in order."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get(event.command_name) == "records" or (
            event.command_name == "getMore" and event.command.get("collection") == "records"
        ):
            self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def counted(
    stack: Stack, records: AsyncCollection[Document]
) -> AsyncIterator[tuple[AsyncMongoClient[Document], AsyncCollection[Document], Sent]]:
    """A client whose commands to `records` are listed, and the same collection through it."""
    sent = Sent()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        stack.mongodb_url, tz_aware=True, event_listeners=[sent]
    )
    yield client, client[records.database.name]["records"], sent
    await client.close()


async def test_a_batch_of_new_and_known_aggregates_costs_one_read_and_two_writes(
    counted: tuple[AsyncMongoClient[Document], AsyncCollection[Document], Sent],
) -> None:
    """A batch that closes a task and opens the next for each of 300 customers (relations)
    interleaves known and new aggregates. The versions of the 300 known ones come back in one
    reply (a find's first reply holds 101 documents unless asked for more), and the writes go as
    one insert and one update: an ordered bulk write is a command per run of the same kind, so
    the batch cost 600 writes before."""
    client, records, sent = counted
    await save(client, records, [({"_id": f"k{i}", "n": 0}, 0) for i in range(300)])
    sent.commands.clear()
    batch: list[tuple[Document, int]] = []
    for i in range(300):
        batch += [({"_id": f"k{i}", "n": 1}, 1), ({"_id": f"new{i}", "n": 1}, 0)]
    await save(client, records, batch)
    assert sent.commands == ["find", "insert", "update"]
    stored_now = await stored(records)
    assert len(stored_now) == 600
    assert {stored_now[f"k{i}"] for i in range(300)} == {(1, 2)}
    assert {stored_now[f"new{i}"] for i in range(300)} == {(1, 1)}


async def test_documents_found_by_id_come_in_one_reply_and_all_come(
    counted: tuple[AsyncMongoClient[Document], AsyncCollection[Document], Sent],
) -> None:
    """A batch's 500 aggregates are read in one round trip; when they pass the 16 MB a reply can
    hold, the rest still come (the driver asks for more), none is dropped."""
    _, records, sent = counted
    await records.insert_many([{"_id": f"r{i}", "n": i} for i in range(500)])
    sent.commands.clear()
    wanted = [f"r{i}" for i in range(500)] + ["unknown"]
    found = [doc["_id"] async for doc in find_by_ids(records, wanted, {"_id": 1})]
    assert sorted(found) == sorted(wanted[:-1])
    assert sent.commands == ["find"]

    megabyte = "x" * (1 << 20)
    await records.insert_many([{"_id": f"big{i}", "blob": megabyte} for i in range(20)])
    sent.commands.clear()
    big = [doc["_id"] async for doc in find_by_ids(records, [f"big{i}" for i in range(20)])]
    assert sorted(big) == sorted(f"big{i}" for i in range(20))
    assert sent.commands[0] == "find"
    assert "getMore" in sent.commands  # 20 MB: more than one reply
