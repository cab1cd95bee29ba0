"""Loyalty on the real local stack: order.placed -> points.earned latency, ingest rate, memory.

    python benchmarks/loyalty_points.py [--latency-orders 200] [--orders 10000] [--customers 2000]

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL). Latency: orders are sent one at a time (every 50 ms) to a running loyalty service
and each is timed from the send to its `points.earned` on `loyalty.v1`. Ingest: `orders.v1` is
pre-loaded, a fresh loyalty instance starts, and is timed from ready to the last order applied;
its CPU per event is counted from ready until the outbox is drained (the relay's publishing
included). Prints a table.
"""

import argparse
import asyncio
import random
import time
from decimal import Decimal
from typing import Any

from benchutil import (
    cpu_seconds,
    latencies,
    latency_row,
    outbox_drained,
    print_table,
    private_stack,
    time_ingest,
)
from stackutil import order_placed, produce


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
        probes = [
            (
                "orders.v1",
                f"{run}-lat-{n % 50}",
                order_placed(f"{run}-lat-{n % 50}", f"{run}-lat-o{n}", "88.00"),
                f"{run}-lat-o{n}",
            )
            for n in range(args.latency_orders)
        ]

        def earned(event: dict[str, Any]) -> str | None:
            data = event.get("data") or {}
            return data.get("order_id") if event.get("type") == "points.earned" else None

        times = asyncio.run(latencies(bench.bootstrap, probes, "loyalty.v1", earned))
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
        cpu_at_ready = cpu_seconds(proc.pid)
        elapsed, peak = time_ingest(port, proc.pid, total)
        outbox_drained(port)  # points.earned published too: the relay's CPU counts
        cpu_ms = (cpu_seconds(proc.pid) - cpu_at_ready) * 1000 / total
        print_table(
            "Loyalty: order.placed -> points.earned",
            ("orders timed", "p50 ms", "p95 ms", "max ms"),
            [latency_row(times)],
        )
        print_table(
            "Loyalty ingest",
            ("orders", "customers", "seconds", "events/s", "CPU ms/event", "peak RSS MB"),
            [
                (
                    total,
                    args.customers,
                    f"{elapsed:.1f}",
                    f"{total / elapsed:.0f}",
                    f"{cpu_ms:.3f}",
                    f"{peak:.0f}",
                )
            ],
        )


if __name__ == "__main__":
    main()
