"""Two replicas of one service meet an outbox backlog: every customer's events still leave in
commit order (issue "Nothing stalls", item 6).

Loyalty applies 6,000 orders of 100 customers with its relay off, so 6,000 `points.earned` wait in
its outbox. Then two replicas with the relay on start side by side. On `loyalty.v1`, each
customer's events (first copies: delivery is at least once) must come in the outbox's order.
Before, each replica's relay claimed its own 500 rows and both published at once, so one
customer's later events could overtake earlier ones.
"""

import asyncio
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pymongo import ASCENDING, MongoClient
from stackutil import FaultStack, ServiceProcess, collect, eventually, order_placed, produce, unique

from crm_runtime.outbox import row_events

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(900)]
CUSTOMERS = 100
ORDERS_EACH = 60


def test_two_relays_publish_each_customers_events_in_commit_order(faulty: FaultStack) -> None:
    run = unique("r")
    held = ServiceProcess.isolated(
        "loyalty",
        faulty,
        sweeps_enabled="false",
        rules__welcome_bonus="0",
        outbox_relay_enabled="false",
        retry_max_s="2",
    )
    messages = [
        (f"{run}-{c}", order_placed(f"{run}-{c}", f"{run}-o{c}-{i}", "10.00"))
        for i in range(ORDERS_EACH)
        for c in range(CUSTOMERS)
    ]
    database = held.env["CRM_LOYALTY_DATABASE"]
    client: MongoClient[dict[str, Any]] = MongoClient(faulty.mongodb_url, tz_aware=True)
    outbox = client[database]["outbox"]

    def pending() -> list[dict[str, Any]]:
        """This run's `points.earned` waiting in the outbox, in commit order."""
        order = [("created_at", ASCENDING), ("seq", ASCENDING)]
        return [
            event
            for row in outbox.find({"sent": False}, sort=order)
            for event in row_events(row)
            if event["key"].startswith(f"{run}-") and event["type"] == "points.earned"
        ]

    held.start()
    try:
        asyncio.run(produce(faulty.bootstrap, "orders.v1", messages))
        eventually(lambda: len(pending()) == len(messages), timeout=180)
    finally:
        held.stop()
    # The commit order, read before the relays run: they delete what they published (ADR 0018).
    committed: dict[str, list[str]] = defaultdict(list)
    for event in pending():
        committed[event["key"]].append(event["_id"])

    replicas = [ServiceProcess("loyalty", faulty, env=dict(held.env)) for _ in range(2)]
    for replica in replicas:
        replica.env["CRM_LOYALTY_OUTBOX_RELAY_ENABLED"] = "true"
        # Poll often, so a replica that leads nothing keeps trying to claim the next batch.
        replica.env["CRM_LOYALTY_OUTBOX_POLL_INTERVAL_S"] = "0.01"
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda replica: replica.start(), replicas))
        eventually(lambda: not pending(), timeout=180)
    finally:
        for replica in replicas:
            replica.stop()

    client.close()
    records = asyncio.run(
        collect(
            faulty.bootstrap,
            "loyalty.v1",
            lambda r: r.key.decode().startswith(f"{run}-") and b"points.earned" in r.value,
            until=lambda kept: len(kept) >= len(messages),
            timeout=120,
        )
    )
    published: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event_id = _event_id(record.value)
        if event_id not in seen:
            seen.add(event_id)
            published[record.key.decode()].append(event_id)
    assert set(published) == set(committed)
    out_of_order = [key for key in committed if published[key] != committed[key]]
    assert out_of_order == [], f"{len(out_of_order)} customers' events left out of commit order"


def _event_id(value: bytes) -> str:
    import json

    return str(json.loads(value)["id"])
