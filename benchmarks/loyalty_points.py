"""Loyalty on the real local stack: order.placed -> points.earned latency, ingest rate, memory.

    python benchmarks/loyalty_points.py [--latency-orders 200] [--orders 10000] [--customers 2000]

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL). Latency: orders are sent one at a time (every 50 ms) to a running loyalty service
and each is timed from the send to its `points.earned` on `loyalty.v1`. Ingest: `orders.v1` is
pre-loaded, a fresh loyalty instance starts, and is timed from ready to the last order applied.
Prints a table.
"""

import argparse
import asyncio
import json
import random
import statistics
import time
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from benchutil import metric, print_table, private_stack, rss_mb
from stackutil import order_placed, produce, topic_partitions


async def latencies(bootstrap: str, run: str, count: int) -> list[float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = await topic_partitions(bootstrap, ["loyalty.v1"])
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}

    async def receive() -> None:
        while len(seen) < count:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    order = event["data"].get("order_id")
                    if event["type"] == "points.earned" and order in sent:
                        seen.setdefault(order, now)

    receiver = asyncio.create_task(receive())
    try:
        for n in range(count):
            customer, order = f"{run}-lat-{n % 50}", f"{run}-lat-o{n}"
            sent[order] = time.monotonic()
            await producer.send_and_wait(
                "orders.v1", order_placed(customer, order, "88.00"), key=customer.encode()
            )
            await asyncio.sleep(0.05)
        await asyncio.wait_for(receiver, timeout=120)
    finally:
        receiver.cancel()
        await producer.stop()
        await consumer.stop()
    return [seen[o] - sent[o] for o in sent if o in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-orders", type=int, default=200)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()
    run = f"bench{int(time.time())}"
    with private_stack() as bench:
        port, proc = bench.start_service(
            "loyalty",
            {
                "CRM_LOYALTY_DATABASE": f"crm_loyalty_{run}_a",
                "CRM_LOYALTY_CONSUMER_GROUP": f"{run}-a",
            },
        )
        times = sorted(asyncio.run(latencies(bench.bootstrap, run, args.latency_orders)))
        proc.terminate()

        rng = random.Random(1)
        messages = []
        for n in range(args.orders):
            customer = f"{run}-{rng.randrange(args.customers)}"
            amount = str(Decimal(rng.randrange(100, 100_000)) / 100)
            messages.append((customer, order_placed(customer, f"{run}-o{n}", amount)))
        asyncio.run(produce(bench.bootstrap, "orders.v1", messages))
        port, proc = bench.start_service(
            "loyalty",
            {
                "CRM_LOYALTY_DATABASE": f"crm_loyalty_{run}_b",
                "CRM_LOYALTY_CONSUMER_GROUP": f"{run}-b",
            },
        )
        total = args.orders + args.latency_orders  # the new group reads the latency orders too
        begin = time.monotonic()
        peak = done = 0.0
        while done < total:
            time.sleep(0.2)
            done = metric(port, "crm_events_processed_total")
            peak = max(peak, rss_mb(proc.pid))
        elapsed = time.monotonic() - begin
        quantile = statistics.quantiles(times, n=100) if len(times) > 1 else times * 99
        print_table(
            "Loyalty: order.placed -> points.earned",
            ("orders timed", "p50 ms", "p95 ms", "max ms"),
            [
                (
                    len(times),
                    f"{quantile[49] * 1000:.0f}",
                    f"{quantile[94] * 1000:.0f}",
                    f"{times[-1] * 1000:.0f}",
                )
            ],
        )
        print_table(
            "Loyalty ingest",
            ("orders", "customers", "seconds", "events/s", "peak RSS MB"),
            [
                (
                    total,
                    args.customers,
                    f"{elapsed:.1f}",
                    f"{total / elapsed:.0f}",
                    f"{peak:.0f}",
                )
            ],
        )


if __name__ == "__main__":
    main()
