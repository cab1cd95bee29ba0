"""How the relay's producer hands a drain to the broker: a partition's share of it in one record
batch, not cut into 16 KB pieces that are each compressed, sent and validated on their own
(`producer_options`; docs/performance.md, "The collector and the event loop")."""

import asyncio
import json
import struct
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from stackutil import Stack

from crm_runtime.kafka import producer_options

pytestmark = pytest.mark.integration

EVENTS = 300
"""About 180 KB of events for one partition: a third of a relay's largest drain."""


def event(n: int) -> bytes:
    """A `points.earned`-sized CloudEvent (about 600 bytes)."""
    customer = f"c-{n:05d}"
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "crm/loyalty",
            "type": "points.earned",
            "subject": customer,
            "time": "2026-12-05T04:00:00+00:00",
            "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
            "data": {
                "customer_id": customer,
                "entry_id": f"orders-system/{uuid.uuid4()}",
                "points": n % 500,
                "balance": n * 3,
                "order_id": f"o-{uuid.uuid4()}",
                "expires_at": "2027-12-05T04:00:00+00:00",
                "note": "积分" * 40,
            },
        },
        ensure_ascii=False,
    ).encode()


def record_batches(segment: Path) -> int:
    """How many record batches a log segment holds: each starts with its base offset (8 bytes)
    and its length (4 bytes) (Kafka's record batch format, v2)."""
    data = segment.read_bytes()
    batches = position = 0
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">i", data, position + 8)
        if length <= 0:
            break
        position += 12 + length
        batches += 1
    return batches


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_a_drain_for_one_partition_goes_out_as_about_one_batch(
    stack: Stack, compression: str
) -> None:
    """Old: aiokafka's 16 KB batches, 11 or more for these 180 KB."""
    if stack.kafka_data is None:
        pytest.skip("the broker's log directory is only known for a broker this session started")
    topic = f"relay-batches-{compression}-{uuid.uuid4().hex[:6]}"

    async def publish() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.bootstrap, **producer_options(compression)
        )
        await producer.start()
        try:
            sent = [await producer.send(topic, event(n), key=b"k") for n in range(EVENTS)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(publish())
    [segment] = (stack.kafka_data / f"{topic}-0").glob("*.log")
    batches = record_batches(segment)
    assert 1 <= batches <= 3, f"{EVENTS} events went out as {batches} batches"
