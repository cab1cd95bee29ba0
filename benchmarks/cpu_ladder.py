"""What each guarantee costs in CPU per event, in a Python process on this stack (issue #16,
targets 3 and 4): the same orders consumed again and again, each rung adding one piece of what
a service does, then the archive and loyalty themselves.

    python benchmarks/cpu_ladder.py [--orders 20000] [--customers 4000] [--repeats 2]

On a private stack (Apache Kafka, the Rust store). `--orders` `order.placed` events over
`--customers` customers wait in `orders.v1`; each rung reads them all from a consumer group of
its own, in batches of up to 500, and commits its offsets after each batch. The rungs, each
adding to the one before:

1. `kafka`: fetch and commit, nothing else;
2. `json`: every record's JSON parsed;
3. `essential writes`: issue #16's essential floor without a transaction: one unordered bulk
   upsert per customer (`$inc`, `$min`, `$max`) and one `insert_many` of a row per event;
4. `contracts`: the records decoded as the services decode them (`crm_contracts`: the
   CloudEvents envelope, then the data's pydantic model) instead of `json.loads`;
5. `inbox + transaction`: the inbox's duplicate check before the writes, and the writes with
   the inbox marks in one transaction (ADR 0001);
6. `outbox + relay`: one outbound event per event (a `points.earned`, as loyalty announces an
   order's points) built with `new_event`, added to the outbox in the transaction, and the
   runtime's relay publishing it (idempotent, `acks=all`, zstd) and deleting its row;
7. `runtime consumer`: the batch handed to the runtime's `BatchConsumer` (the envelope check, the
   key, the inbox lookup before validation, metrics, dead-lettering) instead of a plain loop.

Then the archive and the loyalty services, each started alone on the same orders (their CPU from
ready until their outbox is drained, as `archive_ingest.py` counts it). Prints the CPU of this
process (or the service's) and of the store per event for each rung, the best of `--repeats`
runs of each.
"""

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from benchutil import (
    cpu_seconds,
    customer_upserts,
    outbox_drained,
    print_table,
    private_stack,
    random_orders,
    time_ingest,
)
from prometheus_client import CollectorRegistry
from stackutil import produce

from crm_contracts import CloudEvent, decode_data, decode_envelope, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_runtime.consumer import BatchConsumer
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.health import Health
from crm_runtime.kafka import producer_options
from crm_runtime.metrics import RuntimeMetrics
from crm_runtime.mongo import Inbox, create_client, transaction
from crm_runtime.outbox import OutboundMessage, Outbox, OutboxRelay

TOPIC = "orders.v1"
BATCH = 500


@dataclass
class Rung:
    name: str
    decode: str  # "none", "json" or "contracts"
    writes: bool = False
    inbox: bool = False
    outbox: bool = False
    runtime: bool = False


RUNGS = (
    Rung("1. kafka: fetch and commit", "none"),
    Rung("2. + JSON parsed", "json"),
    Rung("3. + essential writes (no transaction)", "json", writes=True),
    Rung("4. + contracts (pydantic) instead of JSON", "contracts", writes=True),
    Rung("5. + inbox check and marks, one transaction", "contracts", writes=True, inbox=True),
    Rung("6. + outbox and relay", "contracts", writes=True, inbox=True, outbox=True),
    Rung(
        "7. + the runtime's BatchConsumer",
        "contracts",
        writes=True,
        inbox=True,
        outbox=True,
        runtime=True,
    ),
)


async def batches(consumer: AIOKafkaConsumer, total: int) -> AsyncIterator[list[Any]]:
    done = 0
    while done < total:
        fetched = await consumer.getmany(timeout_ms=500, max_records=BATCH)
        records = [r for rs in fetched.values() for r in rs]
        if records:
            yield records
            done += len(records)


@dataclass(frozen=True)
class Order:
    """What the essential writes take of an order, from its JSON or its decoded event."""

    id: str
    subject: str
    type: str
    at: Any
    amount: Decimal

    @staticmethod
    def of(event: Any) -> "Order":
        if isinstance(event, dict):
            amount = Decimal(str(event["data"]["amount"]))
            return Order(event["id"], event["subject"], event["type"], event["time"], amount)
        return Order(event.id, event.subject, event.type, event.time, event.data.amount)


def figures(orders: list[Order]) -> dict[str, dict[str, Any]]:
    """Per customer: events, amount, first and last time (the essential floor's upsert)."""
    per_customer: dict[str, dict[str, Any]] = {}
    for order in orders:
        f = per_customer.setdefault(
            order.subject, {"n": 0, "amount": Decimal(0), "first": order.at, "last": order.at}
        )
        f["n"] += 1
        f["amount"] += order.amount
        f["first"], f["last"] = min(f["first"], order.at), max(f["last"], order.at)
    return per_customer


def points_earned(event: CloudEvent[Any]) -> OutboundMessage:
    """What loyalty announces for an order: its points, as one `points.earned`."""
    return OutboundMessage(
        "ladder-loyalty",
        new_event(
            loyalty_v1.POINTS_EARNED,
            source="benchmarks/cpu_ladder",
            subject=event.subject,
            data=loyalty_v1.PointsEarned(
                points=int(event.data.amount), order_id=event.data.order_id, balance=0
            ),
            id=f"{event.id}/earn",
            time=event.time,
        ),
    )


async def climb(
    rung: Rung, bootstrap: str, mongodb_url: str, total: int, run: str
) -> tuple[float, float]:
    """One rung over every order: (seconds, CPU seconds of this process)."""
    client = create_client(mongodb_url, app_name="cpu-ladder")
    database = client[f"ladder_{run}"]
    customers, rows = database["customers"], database["rows"]
    inbox, outbox = Inbox(database), Outbox(database)
    await inbox.ensure_indexes()
    await outbox.ensure_indexes()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options("zstd"))
    await producer.start()
    warm = [await producer.send("ladder-loyalty", b"{}", partition=p) for p in range(12)]
    await asyncio.gather(*warm)

    async def publish(
        topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        ack: Awaitable[Any] = await producer.send(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        return ack

    relay = OutboxRelay(outbox, publish)

    async def handle(events: Sequence[Any]) -> int:
        if rung.inbox:  # the inbox rungs decode with the contracts
            events = await inbox.unprocessed(events)
        orders = [Order.of(e) for e in events]
        upserts = customer_upserts(figures(orders))
        timeline = [
            {"_id": o.id, "customer": o.subject, "type": o.type, "at": o.at} for o in orders
        ]
        if not rung.inbox:
            await customers.bulk_write(upserts, ordered=False)
            await rows.insert_many(timeline, ordered=False)
            return len(events)
        async with transaction(client) as session:
            await customers.bulk_write(upserts, ordered=False, session=session)
            await rows.insert_many(timeline, ordered=False, session=session)
            await inbox.mark(events, session)
            if rung.outbox:
                await outbox.add([points_earned(e) for e in events], session)
        if rung.outbox:
            # The relay's own loop: on while a run read a whole batch (`full`; before grouped
            # rows, a run that published `batch_size` events).
            while (n := await relay.relay_once()) and getattr(relay, "full", n == relay.batch_size):
                pass
        return len(events)

    batch_consumer = None
    if rung.runtime:

        async def send_letter(topic: str, key: bytes | None, value: bytes, headers: Any) -> None:
            raise AssertionError("no dead letters expected")

        batch_consumer = BatchConsumer(
            handle,
            DeadLetters(send_letter, service="ladder", consumer_group=run),
            health=Health(),
            metrics=RuntimeMetrics(CollectorRegistry(), "ladder"),
            accepted_types=["order.placed"],
            unprocessed=inbox.unprocessed,
        )

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"ladder-{run}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=1 << 20,
    )
    begin, cpu = time.monotonic(), time.process_time()
    await consumer.start()
    try:
        async for records in batches(consumer, total):
            if batch_consumer is not None:
                await batch_consumer.process(
                    [
                        InboundRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
                        for r in records
                    ]
                )
            elif rung.decode == "json":
                events = [json.loads(r.value) for r in records]
                if rung.writes:
                    await handle(events)
            elif rung.decode == "contracts":
                await handle([decode_data(decode_envelope(r.value)) for r in records])
            await consumer.commit()
        while await relay.relay_once() > 0:  # nothing left behind to publish
            pass
        return time.monotonic() - begin, time.process_time() - cpu
    finally:
        await consumer.stop()
        await producer.stop()
        await client.drop_database(f"ladder_{run}")
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=4_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with private_stack() as bench:
        run = f"ladder{int(time.time())}"
        messages = random_orders(run, args.orders, args.customers)
        asyncio.run(produce(bench.bootstrap, TOPIC, messages))

        async def scratch_topic() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic("ladder-loyalty", 12, 1)])
            finally:
                await admin.close()

        asyncio.run(scratch_topic())
        table: list[tuple[str, ...]] = []
        for rung in RUNGS:
            best: tuple[float, float, float] | None = None
            for repeat in range(args.repeats):
                store_before = cpu_seconds(bench.store_pid)
                seconds, cpu = asyncio.run(
                    climb(
                        rung,
                        bench.bootstrap,
                        bench.mongodb_url,
                        args.orders,
                        f"{run}r{len(table)}x{repeat}",
                    )
                )
                store = cpu_seconds(bench.store_pid) - store_before
                if best is None or cpu < best[1]:
                    best = (seconds, cpu, store)
            assert best is not None
            seconds, cpu, store = best
            table.append(
                (
                    rung.name,
                    f"{args.orders / seconds:,.0f}",
                    f"{cpu * 1000 / args.orders:.3f}",
                    f"{store * 1000 / args.orders:.3f}",
                )
            )
            print(" | ".join(table[-1]), flush=True)
        for service in ("archive", "loyalty"):
            best_row: tuple[str, ...] | None = None
            best_cpu = float("inf")
            for repeat in range(args.repeats):
                group = f"{run}-{service}-{repeat}"
                port, proc = bench.start_service(
                    service,
                    {
                        f"CRM_{service.upper()}_DATABASE": f"crm_{service}_{group}",
                        f"CRM_{service.upper()}_CONSUMER_GROUP": group,
                    },
                )
                cpu_at_ready = cpu_seconds(proc.pid)
                store_at_ready = cpu_seconds(bench.store_pid)
                seconds, _ = time_ingest(port, proc.pid, args.orders)
                outbox_drained(port)
                cpu = (cpu_seconds(proc.pid) - cpu_at_ready) * 1000 / args.orders
                store = (cpu_seconds(bench.store_pid) - store_at_ready) * 1000 / args.orders
                proc.terminate()
                proc.wait(30)
                if cpu < best_cpu:
                    best_cpu = cpu
                    best_row = (
                        f"the {service} service",
                        f"{args.orders / seconds:,.0f}",
                        f"{cpu:.3f}",
                        f"{store:.3f}",
                    )
            assert best_row is not None
            table.append(best_row)
            print(" | ".join(best_row), flush=True)
        print_table(
            f"{args.orders:,} orders over {args.customers:,} customers, best of {args.repeats}"
            f" (load average {os.getloadavg()[0]:.1f} at the end)",
            ("rung", "events/s", "CPU ms/event", "store CPU ms/event"),
            table,
        )


if __name__ == "__main__":
    main()
