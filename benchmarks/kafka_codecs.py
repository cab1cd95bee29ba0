"""Which compression the relay publishes with: each codec aiokafka supports, measured.

Publishes the same outbound events (`customer.updated`-sized CloudEvents, 12 partitions, keyed by
customer, idempotent, acks=all, linger 5 ms: the relay's producer) with each codec to a private
Kafka, then reads them back. Prints, per codec: publish rate, producer CPU per event, consumer CPU
per event, and the bytes the broker stores (the log segments' size on disk).

    .venv/bin/python benchmarks/kafka_codecs.py [--events 50000]
"""

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from benchutil import print_table, private_stack

from crm_runtime.kafka import producer_options

CODECS = (None, "gzip", "snappy", "lz4", "zstd")


def events(count: int) -> list[tuple[bytes, bytes]]:
    rows = []
    for n in range(count):
        customer = f"c-{n % 5000:05d}"
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "crm/archive",
            "type": "customer.updated",
            "subject": customer,
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
            "data": {
                "customer_id": customer,
                "grade": "ordinary",
                "stage": "active",
                "orders": n % 37,
                "net_spent": f"{(n * 7.3) % 9000:.2f}",
                "currency": "CNY",
                "last_order_at": datetime.now(UTC).isoformat(),
                "rfm": {"recency": 3, "frequency": 2, "monetary": 4},
                "version": n % 11 + 1,
            },
        }
        rows.append((customer.encode(), json.dumps(event).encode()))
    return rows


async def measure(
    bootstrap: str, logs: Path, codec: str | None, rows: list[tuple[bytes, bytes]]
) -> tuple[float, float, float, int]:
    topic = f"codec-{codec or 'none'}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 12, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options(codec or "none"))
    await producer.start()
    cpu, wall = time.process_time(), time.perf_counter()
    acks = [await producer.send(topic, value, key=key) for key, value in rows]
    await asyncio.gather(*acks)
    produce_cpu, produce_wall = time.process_time() - cpu, time.perf_counter() - wall
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    cpu, read = time.process_time(), 0
    while read < len(rows):
        batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
        read += sum(len(records) for records in batches.values())
    consume_cpu = time.process_time() - cpu
    await consumer.stop()
    await asyncio.sleep(1)
    return produce_wall, produce_cpu, consume_cpu, stored_bytes(logs, topic)


def stored_bytes(logs: Path, topic: str) -> int:
    """The size of the topic's log segments on the broker's disk."""
    return sum(f.stat().st_size for f in logs.glob(f"**/{topic}-*/*.log"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    rows = events(args.events)
    raw = sum(len(k) + len(v) for k, v in rows)
    table = []
    with private_stack() as bench:
        for codec in CODECS:
            wall, produce_cpu, consume_cpu, stored = asyncio.run(
                measure(bench.bootstrap, bench.workdir, codec, rows)
            )
            table.append(
                (
                    codec or "none",
                    f"{len(rows) / wall:,.0f}",
                    f"{produce_cpu / len(rows) * 1e6:.1f}",
                    f"{consume_cpu / len(rows) * 1e6:.1f}",
                    f"{stored / 1e6:.1f}",
                    f"{raw / max(stored, 1):.1f}×",
                )
            )
    print_table(
        f"Relay compression: {len(rows):,} events, {raw / len(rows):.0f} bytes each on average",
        ("codec", "events/s", "produce µs/event", "consume µs/event", "stored MB", "ratio"),
        table,
    )


if __name__ == "__main__":
    main()
