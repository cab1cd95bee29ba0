"""Archive order ingest on the real local stack: events/s and resident memory.

    python benchmarks/archive_ingest.py [--orders 20000] [--customers 4000] [--batch 500]

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL), pre-loads `orders.v1` with `order.placed` events, starts the archive with its own
database and consumer group, and times it from its first applied batch to the last order applied
(the first batch left out of the count); its CPU per event
is counted from then until the outbox is drained (the relay's publishing included), and so is
the store's (when it started it; "n/a" with MONGODB_URL). Prints a table.
"""

import argparse
import asyncio
import os
import time

from benchutil import (
    cpu_seconds,
    outbox_drained,
    print_table,
    private_stack,
    random_orders,
    time_ingest,
)
from stackutil import produce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with private_stack() as bench:
        run = f"bench{int(time.time())}"
        messages = random_orders(run, args.orders, args.customers)
        asyncio.run(produce(bench.bootstrap, "orders.v1", messages))
        port, proc, before = bench.start_on_backlog(
            "archive",
            {
                "CRM_ARCHIVE_DATABASE": f"crm_archive_{run}",
                "CRM_ARCHIVE_CONSUMER_GROUP": run,
                "CRM_ARCHIVE_BATCH_MAX_RECORDS": str(args.batch),
            },
            ("crm_events_processed_total",),
            args.orders,
        )
        cpu_at_first = cpu_seconds(proc.pid)
        store_at_first = cpu_seconds(bench.store_pid)
        elapsed, peak = time_ingest(port, proc.pid, args.orders)
        outbox_drained(port)  # what the orders caused is published too: the relay's CPU counts
        timed = args.orders - before
        cpu_ms = (cpu_seconds(proc.pid) - cpu_at_first) * 1000 / timed
        store_ms = (cpu_seconds(bench.store_pid) - store_at_first) * 1000 / timed
        print_table(
            f"Archive ingest (load average {os.getloadavg()[0]:.1f} at the end)",
            (
                "orders",
                "customers",
                "batch",
                "seconds",
                "events/s",
                "CPU ms/event",
                "store CPU ms/event",
                "peak RSS MB",
            ),
            [
                (
                    args.orders,
                    args.customers,
                    args.batch,
                    f"{elapsed:.1f}",
                    f"{timed / elapsed:.0f}",
                    f"{cpu_ms:.3f}",
                    f"{store_ms:.3f}" if bench.store_pid else "n/a",
                    f"{peak:.0f}",
                )
            ],
        )


if __name__ == "__main__":
    main()
