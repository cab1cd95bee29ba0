"""What one operation of each kind the services send costs the store, in the store's CPU time
(which depends far less on the machine's load than seconds do). Issue #16's store share.

    python benchmarks/store_ops.py [--repeat 400]

Starts a private SecantusDB (the Rust server, as `make up`), then runs each shape the services
send (`benchmarks/store_share.py` counts how many of each per order-log event) `--repeat` times,
reading the store process's CPU before and after; then `save_versioned`'s ways of replacing
aggregates over the version read (`versioned_writes`). Prints CPU µs per command and per document.
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchutil import cpu_seconds, print_table
from pymongo import ASCENDING, AsyncMongoClient, ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from stack import MongoNode, stop_pid, store_server
from stackutil import free_port


def row(n: int, now: datetime) -> dict[str, object]:
    """An outbox row's shape (a ~400-byte event)."""
    return {
        "_id": uuid.uuid4().hex,
        "topic": "loyalty.v1",
        "key": f"c{n % 97}",
        "type": "points.earned",
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        "value": b"x" * 400,
        "created_at": now,
        "seq": n,
        "sent": False,
        "lease_until": now,
    }


async def run(url: str, pid: int, repeat: int, batch: int) -> list[tuple[str, ...]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url, tz_aware=True)
    db = client[f"ops{int(time.time())}"]
    outbox = db["outbox"]
    await outbox.create_index(
        [("sent", ASCENDING), ("created_at", ASCENDING), ("seq", ASCENDING)],
        name="pending_in_order",
    )
    inbox = db["processed_events"]
    await inbox.create_index("at", expireAfterSeconds=30 * 24 * 3600)
    locks = db["locks"]
    now = datetime.now(UTC)
    results: list[tuple[str, ...]] = []

    async def measure(name: str, unit: int, op: Callable[[int], Awaitable[object]]) -> None:
        await op(-1)  # warm
        before = cpu_seconds(pid)
        for n in range(repeat):
            await op(n)
        used = cpu_seconds(pid) - before
        per = used * 1e6 / repeat
        results.append((name, f"{per:,.0f}", f"{per / unit:,.1f}" if unit > 1 else "-"))
        print(f"{name}: {per:,.0f} µs per command", flush=True)

    await measure("ping", 1, lambda n: client.admin.command("ping"))
    await measure(
        "findAndModify locks (the relay's lead)",
        1,
        lambda n: locks.find_one_and_update(
            {"_id": "outbox-relay:x"},
            {"$set": {"owner": "me", "until": now + timedelta(seconds=10)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        ),
    )
    await measure(
        "find outbox {sent: false} (empty outbox: an idle poll)",
        1,
        lambda n: outbox.find({"sent": False}, sort=[("created_at", 1), ("seq", 1)]).to_list(),
    )

    async def transaction_of_inbox_marks(n: int) -> None:
        async with client.start_session() as session, await session.start_transaction():
            await inbox.insert_many(
                [
                    {"_id": uuid.uuid4().hex, "type": "order.placed", "at": now}
                    for _ in range(batch)
                ],
                session=session,
            )

    await measure(f"transaction: insert {batch} inbox marks", batch, transaction_of_inbox_marks)

    async def empty_transaction(n: int) -> None:
        async with client.start_session() as session, await session.start_transaction():
            await locks.find_one({"_id": "none"}, session=session)

    await measure("transaction: one find, commit", 1, empty_transaction)

    steps: dict[str, float] = {}

    async def step(name: str, call: Awaitable[object]) -> None:
        before = cpu_seconds(pid)
        await call
        steps[name] = steps.get(name, 0.0) + cpu_seconds(pid) - before

    async def outbox_cycle_old(n: int) -> None:
        t = now + timedelta(seconds=n)
        await step("main: insert_many", outbox.insert_many([row(i, t) for i in range(batch)]))
        due = {"sent": False, "lease_until": {"$lte": t}}
        order = [("created_at", 1), ("seq", 1)]
        found = outbox.find(due, {"_id": 1}, sort=order, limit=batch).to_list()
        before = cpu_seconds(pid)
        ids = [d["_id"] for d in await found]
        steps["main: find due ids"] = (
            steps.get("main: find due ids", 0.0) + cpu_seconds(pid) - before
        )
        await step(
            "main: update_many claim",
            outbox.update_many(
                {"_id": {"$in": ids}, **due}, {"$set": {"lease_until": t, "lease_owner": "o"}}
            ),
        )
        await step(
            "main: find claimed",
            outbox.find({"_id": {"$in": ids}, "lease_owner": "o", "sent": False}).to_list(),
        )
        await step(
            "main: update_many sent",
            outbox.update_many(
                {"_id": {"$in": ids}},
                {"$set": {"sent": True, "sent_at": t}, "$unset": {"value": ""}},
            ),
        )

    async def outbox_cycle_new(n: int) -> None:
        t = now + timedelta(days=1, seconds=n)
        await step("branch: insert_many", outbox.insert_many([row(i, t) for i in range(batch)]))
        found = outbox.find(
            {"sent": False, "created_at": {"$lte": t}},
            sort=[("created_at", 1), ("seq", 1)],
            limit=batch + 1,
        ).to_list()
        before = cpu_seconds(pid)
        ids = [d["_id"] for d in await found]
        steps["branch: find range"] = (
            steps.get("branch: find range", 0.0) + cpu_seconds(pid) - before
        )
        await step(
            "branch: update_many claim",
            outbox.update_many(
                {"_id": {"$in": ids}, "lease_until": {"$lte": t}},
                {"$set": {"lease_until": t, "lease_owner": "o"}},
            ),
        )
        await step("branch: delete_many", outbox.delete_many({"_id": {"$in": ids}}))

    outbox_runs = max(repeat // 20, 5)
    for name, cycle in (
        ("main: flagged sent", outbox_cycle_old),
        ("branch: deleted", outbox_cycle_new),
    ):
        await cycle(-1)
        before = cpu_seconds(pid)
        for n in range(outbox_runs):
            await cycle(n)
        per = (cpu_seconds(pid) - before) * 1e6 / outbox_runs
        results.append(
            (
                f"outbox, {batch} rows inserted and relayed ({name})",
                f"{per:,.0f}",
                f"{per / batch:,.1f}",
            )
        )
        print(results[-1], flush=True)
        await outbox.delete_many({})

    async def inbox_check(n: int) -> None:
        keys = [uuid.uuid4().hex for _ in range(2 * batch)]
        await inbox.find({"_id": {"$in": keys}}, {"_id": 1}).to_list()

    results += await versioned_writes(client, db, pid, max(repeat // 20, 5))
    for name, used in steps.items():
        per = used * 1e6 / (outbox_runs + 1)  # the warm-up run and the measured ones
        results.append((f"outbox step, {name}", f"~{per:,.0f}", f"~{per / batch:,.1f}"))
    await measure(f"find inbox _id $in {2 * batch} (the duplicate check)", 2 * batch, inbox_check)
    await client.drop_database(db.name)
    await client.close()
    return results


def customer(n: int, version: int, now: datetime) -> dict[str, object]:
    """An archive record's shape, roughly: the fields its 20 indexes cover, a few orders."""
    return {
        "_id": f"c{n:06d}",
        "version": version,
        "stage": "abcd"[n % 4],
        "grade": "xyz"[n % 3],
        "net_spent": float(n % 997) + version,
        "last_order_at": now + timedelta(seconds=version),
        "rfm": 3 + (n + version) % 12,
        "city": ("sh", "bj", "gz")[n % 3],
        "tags": ["t1", "t2"],
        "owner": "o1",
        "orders": [{"id": f"o{k}", "amount": 10.5, "at": now} for k in range(5)],
        "profile": {"name": "x" * 40, "email": "y" * 60},
    }


ON_VERSION = "replace filtered on _id and version"
BY_ID = "versions found, replace filtered on _id"
AGAIN = "versions found, delete and insert"


async def rewrite(
    client: AsyncMongoClient[dict[str, object]],
    records: AsyncCollection[dict[str, object]],
    ids: list[int],
    way: str,
) -> None:
    """Replace the records `ids` in one transaction, the way named (`ON_VERSION`, `BY_ID`,
    `AGAIN`)."""
    docs = [customer(n, 1, datetime.now(UTC)) for n in ids]
    keys = [d["_id"] for d in docs]
    async with client.start_session() as s, await s.start_transaction():
        if way == ON_VERSION:
            on_version = [ReplaceOne({"_id": d["_id"], "version": 1}, d) for d in docs]
            await records.bulk_write(on_version, session=s)
            return
        await records.find({"_id": {"$in": keys}}, {"version": 1}, session=s).to_list()
        if way == BY_ID:
            await records.bulk_write([ReplaceOne({"_id": d["_id"]}, d) for d in docs], session=s)
        else:
            await records.delete_many({"_id": {"$in": keys}}, session=s)
            await records.insert_many(docs, session=s)


async def versioned_writes(
    client: AsyncMongoClient[dict[str, object]],
    db: AsyncDatabase[dict[str, object]],
    pid: int,
    runs: int,
) -> list[tuple[str, ...]]:
    """`save_versioned`'s two ways of replacing aggregates over the version read, 300 in one
    transaction, in a collection with 20 indexes (the archive's customers) and with 3: each
    replace filtered on `_id` and `version` (before 2026-12-04), or the versions found inside
    the transaction and each replace filtered on `_id` alone (since); and, for scale, the
    documents deleted and inserted again."""
    now = datetime.now(UTC)
    results: list[tuple[str, ...]] = []
    fields = ["stage", "grade", "net_spent", "last_order_at", "rfm", "city", "tags", "owner"]
    sorts = ["net_spent", "last_order_at", "rfm"]
    compound = [(a, b) for a in fields for b in sorts if a != b]
    for indexes in (20, 3):
        records = db[f"customers{indexes}"]
        for name in fields[: min(indexes, len(fields))]:
            await records.create_index(name)
        for a, b in compound[: max(indexes - len(fields), 0)]:
            await records.create_index([(a, ASCENDING), (b, ASCENDING), ("_id", ASCENDING)])
        await records.insert_many([customer(n, 1, now) for n in range(6000)])
        for way in (ON_VERSION, BY_ID, AGAIN) * 2:  # twice, alternating
            before = cpu_seconds(pid)
            for run in range(runs):
                start = run * 300 % 5700
                await rewrite(client, records, list(range(start, start + 300)), way)
            per = (cpu_seconds(pid) - before) * 1e6 / (runs * 300)
            results.append((f"{indexes} indexes, 300 in a transaction: {way}", "-", f"{per:,.0f}"))
            print(results[-1], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=400)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crm-store-ops-"))
    node = MongoNode(workdir / "db", free_port())
    proc = node.start()
    try:
        load = os.getloadavg()
        results = asyncio.run(run(node.url, proc.pid, args.repeat, args.batch))
        print_table(
            f"store CPU per command (SecantusDB {store_server().name}), load average "
            f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
            ("operation", "CPU µs / command", "CPU µs / document"),
            results,
        )
    finally:
        stop_pid(proc.pid)


if __name__ == "__main__":
    main()
