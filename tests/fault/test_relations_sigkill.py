"""Relations killed (SIGKILL) mid-stream: the agreements' fulfilment figures are exact (orders
net of refunds and cancellations, in the month each order falls in; some orders delivered twice
under one event id, some re-sent under a new one) and every low CSAT made exactly one callback."""

import asyncio
import random
import time
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo import MongoClient
from stackutil import FaultStack, ServiceProcess, cloud_event, eventually, produce, unique

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(900)]
CST = ZoneInfo("Asia/Shanghai")
CUSTOMERS = 40
ORDERS = 2000
SURVEYS = 300


def test_sigkill_of_relations_mid_stream_keeps_figures_and_tasks_exact(faulty: FaultStack) -> None:
    run = unique("fr")
    rng = random.Random(11)
    relations = ServiceProcess.isolated(
        "relations", faulty, batch_max_records="100", sweeps_enabled="false"
    ).start()
    for c in range(CUSTOMERS):
        answer = relations.post(
            "/agreements",
            {
                "customer_id": f"{run}-{c}",
                "number": "A-1",
                "owner": "owner-01",
                "starts_on": "2026-01-01",
                "ends_on": "2026-12-31",
                "terms": {"period": "month", "minimum": "10000", "currency": "CNY"},
            },
            headers={"Idempotency-Key": f"{run}-{c}"},
        )
        assert answer.status_code == 201, answer.text
    orders: list[tuple[str, bytes]] = []
    expected: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for i in range(ORDERS):
        customer = f"{run}-{rng.randrange(CUSTOMERS)}"
        at = datetime(2026, rng.randrange(1, 7), rng.randrange(1, 29), 10, tzinfo=CST)
        amount = Decimal(rng.randrange(100, 500_000)) / 100
        data = {"order_id": f"{run}-o{i}", "amount": str(amount), "currency": "CNY"}
        placed = cloud_event("order.placed", customer, data, event_id=f"{run}-e{i}", time=at)
        orders.append((customer, placed))
        if i % 25 == 0:
            orders.append((customer, placed))  # redelivered: the same event id
        if i % 40 == 0:  # the same order again under a new event id: still one order
            again = cloud_event("order.placed", customer, data, event_id=f"{run}-a{i}", time=at)
            orders.append((customer, again))
        net = amount
        if i % 7 == 0:
            refund = (amount / 2).quantize(Decimal("0.01"))
            refunded = {"order_id": f"{run}-o{i}", "amount": str(refund)}
            orders.append(
                (
                    customer,
                    cloud_event("order.refunded", customer, refunded, event_id=f"{run}-r{i}"),
                )
            )
            net -= refund
        if i % 11 == 0:
            cancelled = {"order_id": f"{run}-o{i}"}
            orders.append(
                (
                    customer,
                    cloud_event("order.cancelled", customer, cancelled, event_id=f"{run}-c{i}"),
                )
            )
            net = Decimal(0)
        expected[(customer, f"2026-{at.month:02d}-01")] += net
    surveys = [
        (
            f"{run}-{n % CUSTOMERS}",
            cloud_event(
                "ticket.csat_recorded",
                f"{run}-{n % CUSTOMERS}",
                {"ticket_id": f"T{n}", "survey_id": f"S{n}", "csat": 1, "flagged_for_review": True},
                event_id=f"{run}-s{n}",
            ),
        )
        for n in range(SURVEYS)
    ]
    client: MongoClient[dict[str, Any]] = MongoClient(faulty.mongodb_url, tz_aware=True)
    db = client[relations.env["CRM_RELATIONS_DATABASE"]]
    mine = {"customer_id": {"$regex": f"^{run}-"}}
    try:
        asyncio.run(produce(faulty.bootstrap, "tickets.v1", surveys))
        asyncio.run(produce(faulty.bootstrap, "orders.v1", orders))
        eventually(lambda: db["order_lines"].count_documents(mine) >= ORDERS // 4, interval=0.05)
        mid = db["order_lines"].count_documents(mine)
        assert mid < ORDERS, "the kill must land mid-stream"
        relations.kill()
        relations.start()
        eventually(lambda: db["order_lines"].count_documents(mine) >= ORDERS, timeout=300)
        eventually(lambda: db["tasks"].count_documents(mine) >= SURVEYS, timeout=120)
        time.sleep(2)  # anything doubled would land now
        eventually(lambda: figures(db, run) == expected_figures(expected), timeout=120)
        assert db["order_lines"].count_documents(mine) == ORDERS
        assert db["tasks"].count_documents({**mine, "kind": "callback"}) == SURVEYS
        print(f"\nSIGKILL after {mid} of {ORDERS} orders: figures and tasks exact")
    finally:
        relations.stop()
        client.close()


def figures(db: Any, run: str) -> dict[tuple[str, str], Decimal]:
    found: dict[tuple[str, str], Decimal] = {}
    for doc in db["agreements"].find({"customer_id": {"$regex": f"^{run}-"}}):
        for period in doc["periods"]:
            spend = period["spend"].to_decimal()
            if spend:
                found[(doc["customer_id"], period["start"])] = spend
    return found


def expected_figures(expected: dict[tuple[str, str], Decimal]) -> dict[tuple[str, str], Decimal]:
    return {key: value for key, value in expected.items() if value}
