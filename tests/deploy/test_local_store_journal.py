"""The local store keeps what it acknowledged (ADR 0020, `STORE_ENV`): each commit's journal
record reaches the operating system before the store answers, and the store journals only its
oplog, as `mongod` does, recovering its data after a crash from the last checkpoint and the oplog
written since. "Commit after persist" needs it: a consumer commits its offsets once the store has
acknowledged the batch, so a store that loses an acknowledged transaction loses those events. With
the store's defaults, killed mid-stream, it lost its last 4 of 40 acknowledged transactions."""

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from stackutil import free_port, local_stack, store_environment


def test_the_store_writes_its_journal_at_each_commit_and_journals_only_its_oplog(
    tmp_path: Path,
) -> None:
    environment = store_environment(tmp_path)
    assert "transaction_sync=(enabled=true" in environment["SECANTUS_WT_CONFIG_EXTRA"]
    assert "SECANTUS_DATA_NONLOGGED" in environment


async def write_batches(url: str, first: int, batches: int) -> None:
    """`batches` transactions, each inserting 50 documents and counting itself in `totals`."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        db = client["journal"]
        for batch in range(first, first + batches):
            async with client.start_session() as session, await session.start_transaction():
                await db.rows.insert_many(
                    [{"_id": f"{batch}-{i}", "batch": batch} for i in range(50)],
                    session=session,
                )
                await db.totals.update_one(
                    {"_id": "batches"}, {"$inc": {"n": 1}}, upsert=True, session=session
                )
    finally:
        await client.close()


async def contents(url: str) -> tuple[int, int]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        db = client["journal"]
        total = await db.totals.find_one({"_id": "batches"})
        return await db.rows.count_documents({}), int(total["n"]) if total else 0
    finally:
        await client.close()


def test_killed_mid_stream_it_keeps_every_acknowledged_write_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if local_stack.store_server(build=False).name != "secantusd-rs":
        pytest.skip("the settings are the Rust build's; the Python build keeps its own")
    # A checkpoint every second: the kill falls after one, with writes on both sides of it
    # (recovery starts from the checkpoint and replays the oplog written after it).
    monkeypatch.setenv("CRM_SECANTUSD_ARGS", "--checkpoint-seconds 1")
    node = local_stack.MongoNode(tmp_path, free_port())
    proc = node.start()
    try:
        asyncio.run(write_batches(node.url, 0, 20))
        time.sleep(2.5)
        asyncio.run(write_batches(node.url, 20, 20))
        os.killpg(proc.pid, signal.SIGKILL)  # no shutdown, no final checkpoint
        proc.wait(10)
        proc = node.start()
        assert asyncio.run(contents(node.url)) == (40 * 50, 40)
    finally:
        local_stack.stop_pid(proc.pid, timeout=30)
        proc.wait(10)
