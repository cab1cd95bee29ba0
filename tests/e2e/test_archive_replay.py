"""The archive's figures at scale, against an independent pandas computation, and its rebuild.

>= 50,000 orders (with refunds and cancellations) across >= 10,000 customers go through the live
archive; every customer's order count, net spend, first and last order time must equal what pandas
computes from the same generated data. Then `crm_archive.rebuild` replays the retained topics into
a fresh database; with the time rules evaluated as of the same moment on both, every document must
match field by field.
"""

import asyncio
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from pymongo import MongoClient
from stackutil import (
    ROOT,
    ServiceProcess,
    Stack,
    cloud_event,
    eventually,
    order_placed,
    produce,
    unique,
)

from crm_archive.adapters.pii import SEALED
from crm_runtime.crypto import SHREDDED, KeyRing, cipher_from_document

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SCALE = float(os.environ.get("CRM_TEST_SCALE", "1"))
"""Shrink the run while debugging (0.1 = 5,000 orders); the acceptance figure is SCALE 1."""
CUSTOMERS = int(10_000 * SCALE)
ORDERS = int(50_000 * SCALE)


def generate(
    run: str, rng: random.Random
) -> tuple[list[tuple[str, bytes]], pd.DataFrame, pd.DataFrame, set[str]]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    messages: list[tuple[str, bytes]] = []
    orders, refunds, cancelled = [], [], set()
    for n in range(ORDERS):
        customer = f"{run}-{n % CUSTOMERS if n < CUSTOMERS else rng.randrange(CUSTOMERS)}"
        order_id = f"{run}-o{n}"
        amount = Decimal(rng.randrange(100, 300_000)) / 100
        at = start + timedelta(seconds=rng.randrange(600 * 24 * 3600))
        messages.append((customer, order_placed(customer, order_id, str(amount), time=at)))
        orders.append({"customer": customer, "order_id": order_id, "amount": amount, "at": at})
        roll = rng.random()
        if roll < 0.05:
            cancelled.add(order_id)
            data = {"order_id": order_id}
            messages.append((customer, cloud_event("order.cancelled", customer, data, time=at)))
        elif roll < 0.15:
            for _ in range(rng.choice([1, 1, 2])):
                part = (amount * Decimal(rng.randrange(10, 70)) / 100).quantize(Decimal("0.01"))
                refunds.append({"order_id": order_id, "amount": part})
                data = {"order_id": order_id, "amount": str(part)}
                later = at + timedelta(days=rng.randrange(1, 15))
                messages.append(
                    (customer, cloud_event("order.refunded", customer, data, time=later))
                )
    for c in range(0, CUSTOMERS, 7):
        customer = f"{run}-{c}"
        data = {"name": "测试用户", "phone": f"+86 139{c:08d}", "city": "上海"}
        at = start - timedelta(days=1)
        messages.append((customer, cloud_event("customer.registered", customer, data, time=at)))
    for c in range(0, CUSTOMERS, 13):
        customer = f"{run}-{c}"
        data = {"complaint_id": f"{run}-k{c}", "channel": "phone", "description": "延误"}
        at = start + timedelta(days=rng.randrange(600))
        messages.append((customer, cloud_event("complaint.reported", customer, data, time=at)))
    rng.shuffle(messages)  # interleave customers; one customer's order stays per partition key
    return messages, pd.DataFrame(orders), pd.DataFrame(refunds), cancelled


def expected_figures(
    orders: pd.DataFrame, refunds: pd.DataFrame, cancelled: set[str]
) -> pd.DataFrame:
    refunded = (
        refunds.groupby("order_id")["amount"].sum() if len(refunds) else pd.Series(dtype=object)
    )
    frame = orders.copy()
    frame["refunded"] = frame["order_id"].map(refunded).fillna(Decimal(0))
    frame["net"] = [
        max(Decimal(0), a - r) for a, r in zip(frame["amount"], frame["refunded"], strict=True)
    ]
    active = frame[~frame["order_id"].isin(cancelled)]
    return active.groupby("customer").agg(
        order_count=("order_id", "count"),
        net=("net", "sum"),
        first=("at", "min"),
        last=("at", "max"),
    )


@pytest.mark.timeout(1800)  # 50,000 orders live, then a rebuild from every topic (900 s at most)
def test_live_figures_equal_pandas_and_a_rebuild_reproduces_the_live_state(stack: Stack) -> None:
    rng = random.Random(50_000)
    run = unique("r")
    messages, orders, refunds, cancelled = generate(run, rng)
    expected = expected_figures(orders, refunds, cancelled)
    archive = ServiceProcess.isolated(
        "archive", stack, clock_override_enabled="true", review_interval_s="86400"
    ).start()
    database = archive.env["CRM_ARCHIVE_DATABASE"]
    mongo: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_url, tz_aware=True)
    live = mongo[database]["customers"]
    mine = {"_id": {"$regex": f"^{run}-"}}
    try:
        asyncio.run(
            produce(stack.bootstrap, "orders.v1", [m for m in messages if b'"order.' in m[1]])
        )
        asyncio.run(
            produce(stack.bootstrap, "members.v1", [m for m in messages if b'"customer.' in m[1]])
        )
        asyncio.run(
            produce(
                stack.bootstrap, "callcenter.v1", [m for m in messages if b'"complaint.' in m[1]]
            )
        )
        total = len(messages)
        eventually(
            lambda: archive.metric("crm_events_processed_total") >= total, timeout=600, interval=1
        )

        docs = {d["_id"]: d for d in live.find(mine)}
        assert len(docs) == CUSTOMERS
        mismatches = []
        for customer, doc in docs.items():
            if customer in expected.index:
                row = expected.loc[customer]
                want = (int(row.order_count), row.net, row["first"], row["last"])
            else:
                want = (0, Decimal(0), None, None)
            got = (
                doc["order_count"],
                doc["net_spent"].to_decimal(),
                doc["first_order_at"],
                doc["last_order_at"],
            )
            if got != want:
                mismatches.append((customer, got, want))
        assert mismatches == [], f"{len(mismatches)} customers differ, e.g. {mismatches[:3]}"

        at = datetime.now(UTC) + timedelta(days=1)
        response = archive.post("/ops/sweeps/review", at=at.isoformat())
        assert response.status_code == 200, response.text
        assert response.json()["at"] == at.isoformat()
        rebuilt_name = database + "_rebuilt"
        env = {**archive.full_env(), "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "crm_archive.rebuild",
                "--database",
                rebuilt_name,
                "--drop",
                "--at",
                at.isoformat(),
            ],
            env=env,
            check=True,
            timeout=900,
        )
        rebuilt = {d["_id"]: d for d in mongo[rebuilt_name]["customers"].find(mine)}
        assert sorted(rebuilt) == sorted(docs)
        live_now = {d["_id"]: d for d in live.find(mine)}
        # Personal fields are sealed under each database's own data keys: compare them opened.
        ring = KeyRing.from_config(keys={}, keys_file=env["CRM_MASTER_KEYS_FILE"])
        opened(mongo[database], live_now, ring)
        opened(mongo[rebuilt_name], rebuilt, ring)
        differing = []
        for customer, doc in live_now.items():
            a = {k: v for k, v in doc.items() if k != "version"}
            b = {k: v for k, v in rebuilt[customer].items() if k != "version"}
            if a != b:
                differing.append(
                    (customer, [(k, a.get(k), b.get(k)) for k in sorted(a) if a.get(k) != b.get(k)])
                )
        assert differing == [], f"{len(differing)} documents differ, e.g. {differing[:3]}"
        live_timeline = mongo[database]["timeline"].count_documents(
            {"customer_id": {"$regex": f"^{run}-"}}
        )
        rebuilt_timeline = mongo[rebuilt_name]["timeline"].count_documents(
            {"customer_id": {"$regex": f"^{run}-"}}
        )
        assert live_timeline == rebuilt_timeline == total
        mongo.drop_database(rebuilt_name)
    finally:
        archive.stop()
        mongo.close()


def opened(db: Any, docs: dict[str, dict[str, Any]], ring: KeyRing) -> None:
    """Replace each document's sealed profile by its plaintext (in memory only)."""
    ciphers = {
        key["_id"]: cipher_from_document(ring, key)
        for key in db["data_keys"].find({"_id": {"$in": list(docs)}})
    }
    for customer, doc in docs.items():
        cipher = ciphers.get(customer, SHREDDED)
        doc["pii"] = {
            field: cipher.open(field, value) if field in SEALED else value
            for field, value in doc["pii"].items()
        }
