"""Faults mid-stream, with the exact end state asserted: nothing lost, nothing doubled.

SIGKILL of each service then a restart; the Kafka broker restarted; the database stopped for 20 s;
two replicas in one consumer group with rebalances; the SMTP server down and back. The loyalty
service is the yardstick where figures matter: every balance must equal the sum of its orders'
points, with exactly one ledger entry per order, though some orders are delivered twice.
"""

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from stackutil import (
    FaultStack,
    ServiceProcess,
    SmtpServer,
    cloud_event,
    eventually,
    order_placed,
    produce,
    unique,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(900)]
TIERS = json.dumps({"standard": 0, "silver": 10**9, "gold": 2 * 10**9, "diamond": 3 * 10**9})
"""No tier within reach: every order earns exactly floor(amount) points."""


@dataclass
class Orders:
    run: str
    messages: list[tuple[str, bytes]]
    points: dict[str, int]
    count: int


def orders(n: int, customers: int, seed: int) -> Orders:
    """`n` orders over `customers`; every 25th delivered twice (the same event id)."""
    rng = random.Random(seed)
    run = unique("f")
    messages: list[tuple[str, bytes]] = []
    points: Counter[str] = Counter()
    for i in range(n):
        customer = f"{run}-{rng.randrange(customers)}"
        amount = Decimal(rng.randrange(100, 200_000)) / 100
        event = order_placed(customer, f"{run}-o{i}", str(amount), event_id=f"{run}-e{i}")
        messages.append((customer, event))
        if i % 25 == 0:
            messages.append((customer, event))
        points[customer] += int(amount)
    return Orders(run, messages, dict(points), n)


def loyalty(stack: FaultStack, **env: str) -> ServiceProcess:
    return ServiceProcess.isolated(
        "loyalty",
        stack,
        batch_max_records="100",
        rules__tier_thresholds=TIERS,
        rules__welcome_bonus="0",
        sweeps_enabled="false",
        retry_initial_s="0.2",
        retry_max_s="2",
        **env,
    )


class Ledger:
    """The loyalty database, read directly."""

    def __init__(self, stack: FaultStack, service: ServiceProcess, run: str) -> None:
        self.client: MongoClient[dict[str, Any]] = MongoClient(
            stack.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=2000
        )
        self.db = self.client[service.env["CRM_LOYALTY_DATABASE"]]
        self.mine = {"$regex": f"^{run}-"}

    def entries(self) -> int:
        try:
            return self.db["ledger"].count_documents({"customer_id": self.mine})
        except Exception:
            return -1  # the database is down

    def assert_exact(self, expected: Orders) -> None:
        balances = {
            doc["_id"]: doc["balance"]
            for doc in self.db["accounts"].find({"_id": self.mine}, {"balance": 1})
        }
        assert balances == expected.points
        per_customer = Counter(
            doc["customer_id"]
            for doc in self.db["ledger"].find({"customer_id": self.mine}, {"customer_id": 1})
        )
        assert sum(per_customer.values()) == expected.count, "one ledger entry per order"

    def close(self) -> None:
        self.client.close()


def run_with_fault(
    stack: FaultStack,
    services: list[ServiceProcess],
    work: Orders,
    fault: Callable[[], None],
) -> None:
    """Send everything, apply `fault` once a quarter is in the ledger, then assert exactness."""
    ledger = Ledger(stack, services[0], work.run)
    try:
        asyncio.run(produce(stack.bootstrap, "orders.v1", work.messages))
        eventually(lambda: ledger.entries() >= work.count // 4, timeout=120, interval=0.05)
        mid = ledger.entries()
        assert mid < work.count, "the fault must land mid-stream"
        fault()
        eventually(lambda: ledger.entries() >= work.count, timeout=300, interval=0.5)
        time.sleep(1)  # anything doubled would land now
        ledger.assert_exact(work)
        for service in services:
            if service.proc is not None and service.proc.poll() is None:
                drained(service)
        print(f"\nfault after {mid} of {work.count} orders: exact for {len(work.points)} customers")
    finally:
        ledger.close()


def drained(service: ServiceProcess) -> None:
    """Every event the service produced is published (its outbox is empty)."""
    eventually(lambda: service.metric("crm_outbox_backlog") == 0, timeout=60)


@pytest.fixture
def one_loyalty(faulty: FaultStack) -> Iterator[ServiceProcess]:
    service = loyalty(faulty).start()
    yield service
    service.stop()


def test_sigkill_of_loyalty_mid_stream(faulty: FaultStack, one_loyalty: ServiceProcess) -> None:
    def kill_and_restart() -> None:
        one_loyalty.kill()
        one_loyalty.start()

    run_with_fault(faulty, [one_loyalty], orders(3000, 300, 1), kill_and_restart)


def test_a_broker_restart_mid_stream(faulty: FaultStack, one_loyalty: ServiceProcess) -> None:
    def restart_kafka() -> None:
        faulty.stop("kafka")
        time.sleep(5)
        faulty.start("kafka")

    run_with_fault(faulty, [one_loyalty], orders(3000, 300, 2), restart_kafka)


def test_the_database_down_for_20_s_mid_stream(
    faulty: FaultStack, one_loyalty: ServiceProcess
) -> None:
    def stop_database_20_s() -> None:
        faulty.stop("database")
        started = time.monotonic()
        not_ready = eventually(
            lambda: httpx.get(f"{one_loyalty.url}/readyz", timeout=10).status_code == 503,
            timeout=15,
        )
        assert not_ready, "readiness turns red while the database is away"
        assert httpx.get(f"{one_loyalty.url}/healthz", timeout=5).status_code == 200
        time.sleep(max(0.0, 20 - (time.monotonic() - started)))
        faulty.start("database")

    run_with_fault(faulty, [one_loyalty], orders(3000, 300, 3), stop_database_20_s)
    assert one_loyalty.proc is not None
    assert one_loyalty.proc.poll() is None, "never crashed"
    ready = eventually(
        lambda: httpx.get(f"{one_loyalty.url}/readyz", timeout=10).status_code == 200, timeout=60
    )
    assert ready, "and green again once it is back (the outbox relay recovered)"


def test_two_replicas_in_one_group_through_two_rebalances(faulty: FaultStack) -> None:
    first = loyalty(faulty)
    second = ServiceProcess("loyalty", faulty, env=dict(first.env))  # same database and group
    first.start()
    second.start()
    try:

        def kill_one_then_bring_it_back() -> None:
            second.kill()  # the group rebalances to the survivor
            time.sleep(3)
            second.start()  # and once more when it rejoins

        run_with_fault(faulty, [first, second], orders(4000, 400, 4), kill_one_then_bring_it_back)
    finally:
        second.stop()
        first.stop()


def test_sigkill_of_tickets_mid_stream_opens_one_ticket_per_complaint(faulty: FaultStack) -> None:
    run = unique("ft")
    rng = random.Random(5)
    messages: list[tuple[str, bytes]] = []
    complaints = 1500
    for i in range(complaints):
        customer = f"{run}-{rng.randrange(200)}"
        data = {
            "complaint_id": f"{run}-k{i}",
            "channel": "phone",
            "category": rng.choice(["delivery", "product", "billing"]),
            "severity": rng.choice(["low", "medium", "high"]),
            "description": "包裹破损",
        }
        event = cloud_event("complaint.reported", customer, data, event_id=f"{run}-e{i}")
        messages.append((customer, event))
        if i % 20 == 0:  # the same complaint again under a new event id: still one ticket
            again = cloud_event("complaint.reported", customer, data, event_id=f"{run}-r{i}")
            messages.append((customer, again))
    tickets = ServiceProcess.isolated(
        "tickets", faulty, batch_max_records="100", sweeps_enabled="false"
    ).start()
    client: MongoClient[dict[str, Any]] = MongoClient(faulty.mongodb_url, tz_aware=True)
    collection = client[tickets.env["CRM_TICKETS_DATABASE"]]["tickets"]
    mine = {"customer_id": {"$regex": f"^{run}-"}}
    try:
        asyncio.run(produce(faulty.bootstrap, "callcenter.v1", messages))
        eventually(lambda: collection.count_documents(mine) >= complaints // 4, interval=0.05)
        mid = collection.count_documents(mine)
        assert mid < complaints
        tickets.kill()
        tickets.start()
        eventually(lambda: collection.count_documents(mine) >= complaints, timeout=300)
        time.sleep(1)
        found = list(collection.find(mine, {"complaint_id": 1, "history": 1}))
        assert len(found) == complaints
        assert len({t["complaint_id"] for t in found}) == complaints
        assert all(sum(h["action"] == "opened" for h in t["history"]) == 1 for t in found)
        print(f"\nSIGKILL after {mid} of {complaints} tickets: one ticket per complaint")
    finally:
        tickets.stop()
        client.close()


def registrations(run: str, customers: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"{run}-{i}",
            cloud_event(
                "customer.registered",
                f"{run}-{i}",
                {"name": "李雷", "email": f"{run}-{i}@example.com"},
                event_id=f"{run}-reg{i}",
            ),
        )
        for i in range(customers)
    ]


def notify_service(stack: FaultStack, smtp: SmtpServer) -> ServiceProcess:
    return ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        deliver_interval_s="0.3",
        retry_initial_s="0.5",  # the runtime back-off, and the delivery retry:
        rules__retry_initial_s="0.5",
        retry_max_s="2",
        rules__retry_max_s="2",
        rules__max_attempts="30",
        failover_threshold="1000",
    )


def assert_every_welcome_sent_once(
    notify: ServiceProcess, smtp: SmtpServer, run: str, customers: int, timeout: float
) -> int:
    client: MongoClient[dict[str, Any]] = MongoClient(notify.stack.mongodb_url, tz_aware=True)
    collection = client[notify.env["CRM_NOTIFY_DATABASE"]]["notifications"]
    mine = {"customer_id": {"$regex": f"^{run}-"}, "template": "welcome"}
    try:
        eventually(
            lambda: collection.count_documents({**mine, "status": "sent"}) >= customers,
            timeout=timeout,
            interval=0.5,
        )
        assert collection.count_documents(mine) == customers, "one welcome per customer"
        with smtp.mailbox.lock:
            ours = [m for m in smtp.mailbox.messages if str(m["To"]).startswith(f"{run}-")]
        ids = Counter(str(m["Message-ID"]) for m in ours)
        assert len(ids) == customers, "every customer got their welcome"
        # Towards SMTP delivery is at least once: a kill between the server's acceptance and
        # the status write may repeat a message, always under the same Message-ID.
        return sum(ids.values()) - len(ids)
    finally:
        client.close()


def test_sigkill_of_notify_mid_stream_sends_every_message(faulty: FaultStack) -> None:
    smtp = SmtpServer()
    smtp.start()
    notify = notify_service(faulty, smtp).start()
    run = unique("fn")
    try:
        asyncio.run(produce(faulty.bootstrap, "members.v1", registrations(run, 300)))
        eventually(lambda: len(smtp.mailbox.messages) >= 50, timeout=120, interval=0.05)
        notify.kill()
        notify.start()
        repeats = assert_every_welcome_sent_once(notify, smtp, run, 300, timeout=300)
        assert repeats <= 5, f"{repeats} repeated deliveries: only the ones in flight at the kill"
        print(f"\nnotify SIGKILL: 300 welcomes sent, {repeats} repeated under the same id")
    finally:
        notify.stop()
        smtp.stop()


def test_the_smtp_server_down_and_back_loses_and_doubles_nothing(faulty: FaultStack) -> None:
    smtp = SmtpServer()  # not started: the server is down
    notify = notify_service(faulty, smtp).start()
    run = unique("fs")
    try:
        asyncio.run(produce(faulty.bootstrap, "members.v1", registrations(run, 100)))
        client: MongoClient[dict[str, Any]] = MongoClient(faulty.mongodb_url, tz_aware=True)
        collection = client[notify.env["CRM_NOTIFY_DATABASE"]]["notifications"]
        mine = {"customer_id": {"$regex": f"^{run}-"}}
        retried = {**mine, "attempts": {"$gte": 2}}
        eventually(lambda: collection.count_documents(retried) >= 10, timeout=90, interval=0.5)
        assert collection.count_documents({**mine, "status": "sent"}) == 0
        client.close()
        smtp.start()
        repeats = assert_every_welcome_sent_once(notify, smtp, run, 100, timeout=120)
        assert repeats == 0, "no message twice when nothing was killed"
    finally:
        notify.stop()
        smtp.stop()
