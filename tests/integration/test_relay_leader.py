"""Two replicas' relays over one outbox backlog publish each customer's events in commit order.

Two runtimes share a database (two replicas of one service); 600 events of 20 customers wait in
the outbox, committed in six transactions. Both relays publish slowly (5 ms an event) side by
side. Before, the second claimed the rows the first had not claimed (the backlog's end) and
published them while the first was still publishing the start, so each customer's last events
reached Kafka before their first; now only the replica holding the relay's lease publishes.
"""

import asyncio
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from stackutil import Stack, collect, local_stack

from crm_contracts import CloudEvent
from crm_loyalty.settings import LoyaltySettings
from crm_runtime.mongo import transaction
from crm_runtime.outbox import OutboundMessage, Publish
from crm_runtime.runtime import Runtime

CUSTOMERS = 20
EACH = 30


def slowly(publish: Publish) -> Publish:
    """Publish 5 ms an event: a relay's batch takes a while, as on a loaded broker."""

    async def slow(topic: str, key: bytes, value: bytes, headers: dict[str, str]) -> Any:
        await asyncio.sleep(0.005)
        return await publish(topic, key, value, headers)

    return slow


def test_two_relays_keep_each_customers_events_in_commit_order(stack: Stack) -> None:
    asyncio.run(_scenario(stack))


async def _scenario(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"relay-order-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 12, 1)])
    await admin.close()
    settings = LoyaltySettings(
        kafka_bootstrap_servers=stack.bootstrap,
        mongodb_url=stack.mongodb_url,
        database=f"crm_relay_{run}",
        master_keys_file=str(local_stack.dev_keys_file()),
    )
    a, b = Runtime(settings), Runtime(settings)
    for replica in (a, b):
        await replica.broker.start()
    try:
        await a.outbox.ensure_indexes()
        committed: dict[str, list[str]] = defaultdict(list)
        for round_ in range(6):
            messages = []
            for n in range(EACH // 6 * CUSTOMERS):
                customer = f"{run}-{n % CUSTOMERS}"
                event: CloudEvent[dict[str, Any]] = CloudEvent[dict[str, Any]](
                    id=f"{run}-{round_}-{n}",
                    source="tests/relay",
                    type="test.relayed",
                    subject=customer,
                    time=datetime.now(UTC),
                    data={"round": round_, "n": n},
                )
                messages.append(OutboundMessage(topic, event))
                committed[customer].append(event.id)
            async with transaction(a.mongo) as session:
                await a.outbox.add(messages, session)
            await asyncio.sleep(0.01)  # the next transaction commits later

        for replica in (a, b):
            replica.relay.publish = slowly(replica.relay.publish)

        async def relay(replica: Runtime) -> None:
            while await replica.outbox.collection.count_documents({"sent": False}):
                await replica.relay.relay_once()
                await asyncio.sleep(0.005)

        await asyncio.wait_for(asyncio.gather(relay(a), relay(b)), timeout=120)
    finally:
        await b.mongo.drop_database(settings.database)
        for replica in (a, b):
            await replica.stop()

    total = CUSTOMERS * EACH
    records = await collect(
        stack.bootstrap, topic, lambda r: True, until=lambda kept: len(kept) >= total, timeout=60
    )
    published: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event_id = json.loads(record.value)["id"]
        if event_id not in seen:
            seen.add(event_id)
            published[record.key.decode()].append(event_id)
    assert len(seen) == total
    out_of_order = sorted(key for key in committed if published[key] != committed[key])
    assert out_of_order == [], f"{len(out_of_order)} of {CUSTOMERS} customers out of order"
