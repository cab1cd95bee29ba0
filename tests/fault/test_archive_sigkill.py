"""Nothing lost, nothing doubled: SIGKILL the archive while 10,000 orders flow, then restart it.

The final per-customer figures must equal the ones computed here from what was sent, exactly.
Some orders are sent twice (same event id: a redelivery) and must count once.
"""

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo import MongoClient
from stackutil import FaultStack, ServiceProcess, eventually, order_placed, produce, unique

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(900)]
ORDERS = 10_000
CUSTOMERS = 500


@dataclass
class Figures:
    order_count: int
    total: Decimal
    first: datetime
    last: datetime


def test_sigkill_mid_stream_loses_and_doubles_nothing(faulty: FaultStack) -> None:
    rng = random.Random(20261122)
    run = unique("k")
    # Orders over the past year: an external event dated over a day ahead is dead-lettered.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    expected: dict[str, Figures] = {}
    messages: list[tuple[str, bytes]] = []
    for n in range(ORDERS):
        customer = f"{run}-{rng.randrange(CUSTOMERS)}"
        amount = Decimal(rng.randrange(1, 500_000)) / 100
        at = start + timedelta(minutes=rng.randrange(500_000))
        event = order_placed(customer, f"{run}-o{n}", str(amount), time=at, event_id=f"{run}-e{n}")
        messages.append((customer, event))
        if n % 50 == 0:
            messages.append((customer, event))  # a redelivery: same event id
        figures = expected.setdefault(customer, Figures(0, Decimal(0), at, at))
        figures.order_count += 1
        figures.total += amount
        figures.first, figures.last = min(figures.first, at), max(figures.last, at)

    archive = ServiceProcess.isolated("archive", faulty, batch_max_records="200").start()
    database = archive.env["CRM_ARCHIVE_DATABASE"]
    mongo: MongoClient[dict[str, Any]] = MongoClient(faulty.mongodb_url, tz_aware=True)
    customers = mongo[database]["customers"]
    try:
        asyncio.run(produce(faulty.bootstrap, "orders.v1", messages))

        def counted() -> int:
            rows = customers.aggregate(
                [
                    {"$match": {"_id": {"$regex": f"^{run}-"}}},
                    {"$group": {"_id": None, "n": {"$sum": "$order_count"}}},
                ]
            )
            return int(next(iter(rows), {"n": 0})["n"])

        eventually(lambda: counted() >= ORDERS // 4, timeout=120, interval=0.05)
        mid = counted()
        archive.kill()
        assert mid < ORDERS, "the kill must land mid-stream"

        archive.start()
        eventually(lambda: counted() >= ORDERS, timeout=600, interval=0.5)
        eventually(lambda: archive.metric("crm_outbox_backlog") == 0, timeout=60)

        actual = {doc["_id"]: doc for doc in customers.find({"_id": {"$regex": f"^{run}-"}})}
        assert sorted(actual) == sorted(expected)
        for customer, figures in expected.items():
            doc = actual[customer]
            assert doc["order_count"] == figures.order_count, customer
            assert doc["net_spent"].to_decimal() == figures.total, customer
            assert doc["first_order_at"] == figures.first, customer
            assert doc["last_order_at"] == figures.last, customer
        assert counted() == ORDERS, "nothing counted twice"
        print(f"\nSIGKILL after {mid} of {ORDERS} orders; exact for {len(expected)} customers")
    finally:
        archive.stop()
        mongo.close()
