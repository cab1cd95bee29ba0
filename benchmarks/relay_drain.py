"""The outbox relay draining a backlog (issue #16): N events wait in the outbox (as after a
relay was down, or a burst the relay fell behind on), then one relay publishes them all to Kafka.

    python benchmarks/relay_drain.py [--events 20000]

On a private stack (Apache Kafka, the Rust store). Prints the events/s of the drain, the
store's and this process's (the relay's) CPU per event, and the load average: compare only runs
side by side (put another checkout's `services/runtime/src` first on `PYTHONPATH` for "before").
"""

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from benchutil import cpu_seconds, print_table, private_stack
from stack import dev_keys_file

import crm_runtime
from crm_contracts import CloudEvent
from crm_loyalty.settings import LoyaltySettings
from crm_runtime.mongo import transaction
from crm_runtime.outbox import OutboundMessage
from crm_runtime.runtime import Runtime

BATCH = 500


async def drain(bootstrap: str, mongodb_url: str, store_pid: int, events: int) -> tuple[Any, ...]:
    run = uuid.uuid4().hex[:8]
    topic = f"relay-drain-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 12, 1)])
    await admin.close()
    settings = LoyaltySettings(
        kafka_bootstrap_servers=bootstrap,
        mongodb_url=mongodb_url,
        database=f"crm_relay_drain_{run}",
        master_keys_file=str(dev_keys_file()),
    )
    runtime = Runtime(settings)
    await runtime.broker.start()
    try:
        await runtime.outbox.ensure_indexes()
        for start in range(0, events, BATCH):
            messages = [
                OutboundMessage(
                    topic,
                    CloudEvent[dict[str, Any]](
                        id=f"{run}-{n}",
                        source="benchmarks/relay_drain",
                        type="points.earned",
                        subject=f"c{n % 2000}",
                        time=datetime.now(UTC),
                        data={"n": n, "points": 10, "reason": "order", "order_id": f"o{n}"},
                    ),
                )
                for n in range(start, min(start + BATCH, events))
            ]
            async with transaction(runtime.mongo) as session:
                await runtime.outbox.add(messages, session)
        load = os.getloadavg()
        store_before, own_before = cpu_seconds(store_pid), time.process_time()
        begin = time.monotonic()
        published = 0
        while (n := await runtime.relay.relay_once()) or published < events:
            published += n
            if not n:
                await asyncio.sleep(0.05)
        elapsed = time.monotonic() - begin
        store = cpu_seconds(store_pid) - store_before
        own = time.process_time() - own_before
        return published, elapsed, store, own, load
    finally:
        await runtime.mongo.drop_database(settings.database)
        await runtime.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with private_stack() as bench:
        if bench.store_pid is None:
            raise SystemExit("needs its own store (unset MONGODB_URL)")
        published, elapsed, store, own, load = asyncio.run(
            drain(bench.bootstrap, bench.mongodb_url, bench.store_pid, args.events)
        )
    print_table(
        f"the relay draining {args.events:,} outbox events ({crm_runtime.__file__}); "
        f"load average {load[0]:.1f} at the start",
        ("events", "seconds", "events/s", "store CPU ms/event", "relay CPU ms/event"),
        [
            (
                f"{published:,}",
                f"{elapsed:.1f}",
                f"{published / elapsed:,.0f}",
                f"{store * 1000 / published:.3f}",
                f"{own * 1000 / published:.3f}",
            )
        ],
    )


if __name__ == "__main__":
    main()
