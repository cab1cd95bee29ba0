"""Master key rotation with two replicas of loyalty in one consumer group, restarted one at a time,
while traffic flows: nothing is dead-lettered and every balance is exact (issue #18, item 3).

Loyalty seals each customer's birthday under a data key wrapped by a master key; applying an order
opens the account, so it unwraps that data key. A replica that meets a data key wrapped by a
master key it does not hold used to take it for bad data and dead-letter the order (kept 14 days
in loyalty.dlq.v1, its points missing). It is a configuration fault: the replica retries without
committing, readiness is red naming the key id, and once it holds the key the order is applied.

The master keys come from key files (`CRM_MASTER_KEYS_FILE`), one per phase of deploy/SECURITY.md:
0 the old key only; 1 the new key distributed, not current; 2 the new key current; 3 the old key
retired (after `POST /ops/keys/rewrap`).
"""

import asyncio
import base64
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from stackutil import (
    AUTH,
    FaultStack,
    ServiceProcess,
    cloud_event,
    collect,
    eventually,
    order_placed,
    produce,
    unique,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(900)]
TIERS = json.dumps({"standard": 0, "silver": 10**9, "gold": 2 * 10**9, "diamond": 3 * 10**9})
"""No tier within reach: every order earns exactly floor(amount) points."""
KEYS_FILE = "CRM_MASTER_KEYS_FILE"


def key_files(directory: Path) -> dict[int, str]:
    """The key file of each rotation phase (0: old; 1: new distributed; 2: new current;
    3: old retired), sharing one index key as deploy/SECURITY.md says."""
    old, new, index = (base64.b64encode(os.urandom(32)).decode() for _ in range(3))
    phases = {
        0: {"current": "k-old", "keys": {"k-old": old}},
        1: {"current": "k-old", "keys": {"k-old": old, "k-new": new}},
        2: {"current": "k-new", "keys": {"k-old": old, "k-new": new}},
        3: {"current": "k-new", "keys": {"k-new": new}},
    }
    files = {}
    for phase, content in phases.items():
        path = directory / f"keys-phase-{phase}.json"
        path.write_text(json.dumps({**content, "index_key": index}))
        path.chmod(0o600)
        files[phase] = str(path)
    return files


def replicas(stack: FaultStack, keys_file: str) -> tuple[ServiceProcess, ServiceProcess]:
    """Two replicas of loyalty: one database, one consumer group."""
    first = ServiceProcess.isolated(
        "loyalty",
        stack,
        batch_max_records="100",
        rules__tier_thresholds=TIERS,
        rules__welcome_bonus="0",
        sweeps_enabled="false",
        retry_initial_s="0.2",
        retry_max_s="2",
    )
    first.env[KEYS_FILE] = keys_file
    second = ServiceProcess("loyalty", stack, env=dict(first.env))
    return first, second


def restart(replica: ServiceProcess, keys_file: str) -> None:
    """A rolling restart's step: stop the replica, start it again with `keys_file`."""
    replica.stop()
    replica.env[KEYS_FILE] = keys_file
    replica.start()


def registered(customer: str) -> bytes:
    data = {"name": "李雷", "birthday": "1990-05-17"}
    return cloud_event("customer.registered", customer, data, event_id=f"{customer}-reg")


class Traffic:
    """Registrations (each birthday sealed under a data key) and orders, sent in rounds; every
    20th order delivered twice (the same event id). `points` is what each balance must be."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.points: Counter[str] = Counter()
        self.orders = 0
        self.customers: list[str] = []

    def round(
        self, new_customers: int, recent: int | None = None
    ) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
        """New customers' registrations, then one order for each of the `recent` latest
        customers (every customer so far when None)."""
        start = len(self.customers)
        fresh = [f"{self.run}-{n}" for n in range(start, start + new_customers)]
        self.customers.extend(fresh)
        orders: list[tuple[str, bytes]] = []
        for customer in self.customers[-recent if recent else 0 :]:
            amount = 10 + (self.orders * 37) % 990
            event_id = f"{self.run}-e{self.orders}"
            event = order_placed(
                customer, f"{self.run}-o{self.orders}", f"{amount}.50", event_id=event_id
            )
            orders.append((customer, event))
            if self.orders % 20 == 0:
                orders.append((customer, event))
            self.points[customer] += amount
            self.orders += 1
        return [(c, registered(c)) for c in fresh], orders


class Loyalty:
    """The replicas' shared database, read directly."""

    def __init__(self, stack: FaultStack, replica: ServiceProcess, run: str) -> None:
        self.client: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_url, tz_aware=True)
        self.db = self.client[replica.env["CRM_LOYALTY_DATABASE"]]
        self.mine = {"$regex": f"^{run}-"}

    def with_birthday(self) -> int:
        return self.db["accounts"].count_documents({"_id": self.mine, "birthday": {"$ne": None}})

    def entries(self) -> int:
        return self.db["ledger"].count_documents({"customer_id": self.mine})

    def data_keys(self, key_id: str) -> int:
        return self.db["data_keys"].count_documents({"_id": self.mine, "key_id": key_id})

    def assert_exact(self, traffic: Traffic) -> None:
        balances = {
            doc["_id"]: doc["balance"]
            for doc in self.db["accounts"].find({"_id": self.mine}, {"balance": 1})
        }
        assert balances == dict(traffic.points)
        assert self.entries() == traffic.orders, "one ledger entry per order"

    def close(self) -> None:
        self.client.close()


def dead_letters(stack: FaultStack, run: str) -> list[Any]:
    """This run's records on loyalty.dlq.v1 (read from the beginning for 10 s)."""
    return asyncio.run(
        collect(
            stack.bootstrap,
            "loyalty.dlq.v1",
            lambda r: r.key is not None and r.key.decode(errors="replace").startswith(f"{run}-"),
            until=lambda kept: bool(kept),
            timeout=10,
        )
    )


def send(stack: FaultStack, messages: list[tuple[str, bytes]], topic: str) -> None:
    asyncio.run(produce(stack.bootstrap, topic, messages))


def test_a_replica_without_the_new_master_key_retries_and_dead_letters_nothing(
    faulty: FaultStack, tmp_path: Path
) -> None:
    """Phase 1 skipped on purpose: the first replica is restarted with the new key current while
    the second does not hold it. Once the second has every partition it meets data keys under
    the new key: it must retry (readiness red, naming the key id; an HTTP read 503), not
    dead-letter; restarted with the key, it applies everything exactly."""
    keys = key_files(tmp_path)
    first, second = replicas(faulty, keys[0])
    run = unique("kr")
    traffic = Traffic(run)
    loyalty = Loyalty(faulty, first, run)
    first.start()
    second.start()
    try:
        signups, orders = traffic.round(100)
        send(faulty, signups, "members.v1")
        send(faulty, orders, "orders.v1")
        eventually(lambda: loyalty.entries() >= traffic.orders, timeout=120)

        restart(first, keys[2])  # the new key current here; the second never got it
        signups, orders = traffic.round(100)
        send(faulty, signups, "members.v1")
        eventually(lambda: loyalty.with_birthday() >= len(traffic.customers), timeout=120)
        assert loyalty.data_keys("k-new") > 0, "the first replica wrapped data keys under k-new"
        first.stop()  # drained: the second takes every partition

        send(faulty, orders, "orders.v1")
        met = eventually(
            lambda: (
                second.metric("crm_master_key_missing_total")
                + second.metric("crm_dlq_messages_total")
            ),
            timeout=120,
        )
        assert met, "the second replica met the data keys it cannot open"
        assert second.metric("crm_dlq_messages_total") == 0, "nothing dead-lettered"
        readiness = httpx.get(f"{second.url}/readyz", timeout=10)
        assert readiness.status_code == 503, readiness.text
        assert "'k-new'" in readiness.json()["problems"]["master_key"]
        sealed = loyalty.db["data_keys"].find_one({"_id": loyalty.mine, "key_id": "k-new"})
        assert sealed is not None
        read = httpx.get(f"{second.url}/accounts/{sealed['_id']}", headers=AUTH, timeout=10)
        assert read.status_code == 503, read.text
        assert second.proc is not None
        assert second.proc.poll() is None, "never crashed"

        restart(second, keys[2])  # phase 1, late: the second gets the key
        eventually(lambda: loyalty.entries() >= traffic.orders, timeout=300, interval=0.5)
        time.sleep(1)  # anything doubled would land now
        loyalty.assert_exact(traffic)
        assert dead_letters(faulty, run) == [], "nothing in loyalty.dlq.v1"
    finally:
        second.stop()
        first.stop()
        loyalty.close()


def test_a_two_phase_rotation_one_replica_at_a_time_loses_and_dead_letters_nothing(
    faulty: FaultStack, tmp_path: Path
) -> None:
    """deploy/SECURITY.md's runbook while orders flow: phase 1 (the new key distributed) to
    each replica in turn, phase 2 (made current) to each in turn, rewrap, phase 3 (the old key
    retired) to each in turn. Every balance is exact and nothing is dead-lettered."""
    keys = key_files(tmp_path)
    first, second = replicas(faulty, keys[0])
    run = unique("kt")
    traffic = Traffic(run)
    loyalty = Loyalty(faulty, first, run)
    first.start()
    second.start()
    restarted = threading.Event()
    failure: list[BaseException] = []

    def flow() -> None:
        """Traffic throughout the restarts: registrations and orders, a round every 0.5 s."""
        try:
            while not restarted.is_set():
                signups, orders = traffic.round(20, recent=60)
                send(faulty, signups, "members.v1")
                send(faulty, orders, "orders.v1")
                time.sleep(0.5)
        except BaseException as exc:  # the assertion below says what went wrong
            failure.append(exc)

    producer = threading.Thread(target=flow, daemon=True)
    producer.start()
    try:
        for phase in (1, 2):
            restart(first, keys[phase])
            restart(second, keys[phase])
        restarted.set()
        producer.join(60)
        assert not producer.is_alive(), "the traffic stopped"
        assert not failure, failure
        signups, orders = traffic.round(20, recent=60)  # customers new in phase 2
        send(faulty, signups, "members.v1")
        send(faulty, orders, "orders.v1")

        def applied() -> bool:
            return loyalty.entries() >= traffic.orders and loyalty.with_birthday() >= len(
                traffic.customers
            )

        eventually(applied, timeout=300, interval=0.5)
        assert loyalty.data_keys("k-new") >= 20, "phase 2 wraps new data keys under k-new"
        assert loyalty.data_keys("k-old") > 0, "and the old ones still open"

        def rewrapped() -> bool:
            answer = first.post("/ops/keys/rewrap", limit="10000")
            assert answer.status_code == 200, answer.text
            return bool(answer.json()["rewrapped"] == 0 and answer.json()["failed"] == 0)

        assert eventually(rewrapped, timeout=60), "every data key re-wrapped under k-new"
        assert loyalty.data_keys("k-old") == 0, "nothing left under the old key"
        signups, orders = traffic.round(10, recent=60)
        send(faulty, signups, "members.v1")
        send(faulty, orders, "orders.v1")
        restart(first, keys[3])
        restart(second, keys[3])
        eventually(applied, timeout=300, interval=0.5)
        time.sleep(1)  # anything doubled would land now
        loyalty.assert_exact(traffic)
        for replica in (first, second):
            assert replica.metric("crm_master_key_missing_total") == 0
        assert dead_letters(faulty, run) == [], "nothing in loyalty.dlq.v1"
        print(
            f"\nrotation under traffic: {len(traffic.customers)} customers, {traffic.orders} "
            "orders exact, nothing dead-lettered"
        )
    finally:
        second.stop()
        first.stop()
        loyalty.close()
