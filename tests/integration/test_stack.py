"""The local stack is the real thing: Apache Kafka's JVM broker with an idempotent producer."""

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient
from stackutil import Stack, unique


def test_the_broker_is_apache_kafka(stack: Stack) -> None:
    if stack.kafka_pid is None:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS points at a broker this session did not start")
    cmdline = Path(f"/proc/{stack.kafka_pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].endswith(b"java")
    assert b"kafka.Kafka" in cmdline


async def test_the_idempotent_producer_writes_each_record_once(stack: Stack) -> None:
    topic = "orders.v1"
    key = unique("idem").encode()
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        metadata = [
            await producer.send_and_wait(topic, f"m{i}".encode(), key=key) for i in range(5)
        ]
    finally:
        await producer.stop()
    partition = {m.partition for m in metadata}
    assert len(partition) == 1, "one key, one partition"
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        tp = TopicPartition(topic, partition.pop())
        consumer.assign([tp])
        consumer.seek(tp, metadata[0].offset)
        seen: list[bytes] = []
        for _ in range(20):
            batch = await consumer.getmany(tp, timeout_ms=500)
            seen.extend(r.value for r in batch.get(tp, []) if r.key == key)
            if len(seen) >= 5:
                break
        await asyncio.sleep(0.5)
        batch = await consumer.getmany(tp, timeout_ms=500)
        seen.extend(r.value for r in batch.get(tp, []) if r.key == key)
    finally:
        await consumer.stop()
    assert seen == [f"m{i}".encode() for i in range(5)]


async def test_the_database_speaks_mongodb_with_transactions(stack: Stack) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stack.mongodb_url)
    collection = client["crm_stack_test"][unique("c")]
    try:
        async with client.start_session() as session, await session.start_transaction():
            await collection.insert_one({"_id": 1}, session=session)

        async def write_then_fail() -> None:
            async with client.start_session() as session, await session.start_transaction():
                await collection.insert_one({"_id": 2}, session=session)
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError):
            await write_then_fail()
        assert [d["_id"] async for d in collection.find()] == [1]
    finally:
        await client.drop_database("crm_stack_test")
        await client.close()
