"""What one `points.earned` costs notify (issue #16): its consumer's use case and repository on
the real store, in-process, no Kafka and no sends — the part of notify's work that grows with
the orders (each order's points go into the customer's daily digest; the digest e-mail is sent
once per customer and day by the sweep).

    python benchmarks/notify_points.py [--orders 10000] [--customers 3000] [--batch 100]

`--customers` registered customers (preferences sealed under their data keys, as the member
events leave them), then `--orders` `points.earned` (a Pareto(2) weight per customer; times
ascending over `--days` days, as in `shop_replay.py`) applied through
`handlers.apply_events` in batches of `--batch`, each batch once and then once more (a
redelivery: it must change nothing). Prints notify's CPU ms per event (this process) and the
store's, the round trips per batch by command (a PyMongo command listener), the documents
written per event, and the load average (the machine is shared: only side-by-side runs compare;
run it with each commit's `services/notify/src` first on `PYTHONPATH`). Then checks the digests:
every customer's points and orders per local day, and the latest balance.
"""

import argparse
import asyncio
import os
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from benchutil import cpu_seconds, print_table, private_store
from pymongo import AsyncMongoClient
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from crm_contracts import CloudEvent, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.domain.policy import NotifyRules, Preferences
from crm_notify.handlers import apply_events
from crm_notify.ports import Changes, Staff
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

SH = ZoneInfo("Asia/Shanghai")
WRITES = {"insert": "documents", "update": "updates", "delete": "deletes"}


class Commands(CommandListener):
    """Counts the commands sent and the documents they write, on the notify database."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.written: Counter[str] = Counter()
        self.on = False

    def started(self, event: CommandStartedEvent) -> None:
        if not self.on or event.command_name in ("endSessions", "hello", "isMaster", "ping"):
            return
        self.sent[event.command_name] += 1
        field = WRITES.get(event.command_name)
        if field:
            self.written[f"{event.command_name} {event.command[event.command_name]}"] += len(
                event.command.get(field, [])
            )

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def earned(customers: list[str], orders: int, days: int) -> list[CloudEvent[Any]]:
    rng = random.Random(16)
    weights = [rng.paretovariate(2.0) for _ in customers]
    start = datetime.now(UTC) - timedelta(days=days + 3)
    step = timedelta(days=days) / orders
    balances: Counter[str] = Counter()
    events = []
    for n, customer in enumerate(rng.choices(customers, weights=weights, k=orders)):
        points = rng.randrange(5, 2_000)
        balances[customer] += points
        data = loyalty_v1.PointsEarned(points=points, order_id=f"o{n}", balance=balances[customer])
        events.append(
            new_event(
                loyalty_v1.POINTS_EARNED,
                source="crm/loyalty",
                subject=customer,
                data=data,
                id=f"points-{n}",
                time=start + step * n,
            )
        )
    return events


def expected(events: list[CloudEvent[Any]]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for event in events:
        data: loyalty_v1.PointsEarned = event.data
        key = f"{event.subject}/{event.time.astimezone(SH).date().isoformat()}"
        points, orders, _ = out.get(key, (0, 0, 0))
        out[key] = (points + data.points, orders + 1, data.balance)
    return out


async def run(url: str, store_pid: int, args: argparse.Namespace) -> None:
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url, tz_aware=True, event_listeners=[commands]
    )
    database = client["crm_notify_points"]
    uow = UnitOfWork(client, Inbox(database), Outbox(database))
    keys = CustomerKeys(database, KeyRing({"k1": b"1" * 32}, "k1", b"i" * 32))
    repository = MongoNotifyRepository(database, uow, keys)
    await repository.ensure_indexes()
    customers = [f"c{n:05d}" for n in range(args.customers)]
    for start in range(0, len(customers), 500):
        chunk = customers[start : start + 500]
        registered = {
            c: Preferences(c, name="顾客", email=f"{c}@example.com", registered=True) for c in chunk
        }
        await repository.save(Changes(preferences=registered))
    events = earned(customers, args.orders, args.days)
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    rules, staff, now = NotifyRules(), Staff(None), datetime.now(UTC)

    load = os.getloadavg()[0]
    commands.on = True
    cpu, store = time.process_time(), cpu_seconds(store_pid)
    for batch in batches:
        await apply_events(batch, repository, rules=rules, staff=staff, now=now)
    cpu, store = time.process_time() - cpu, cpu_seconds(store_pid) - store
    commands.on = False
    first = (Counter(commands.sent), Counter(commands.written))
    commands.sent.clear()
    commands.written.clear()
    commands.on = True
    again = time.process_time()
    for batch in batches:  # redelivered: only the inbox check
        await apply_events(batch, repository, rules=rules, staff=staff, now=now)
    again = time.process_time() - again
    commands.on = False

    stored = {
        doc["_id"]: (doc["points"], doc["orders"], doc["balance"])
        async for doc in database["digests"].find({})
    }
    await client.close()
    sent, written = first
    n = len(events)
    print_table(
        f"{n:,} points.earned over {len(set(e.subject for e in events)):,} customers and "
        f"{args.days} days in {len(batches)} batches of {args.batch}; load average {load:.1f} "
        f"at the start, {os.getloadavg()[0]:.1f} at the end",
        ("measure", "value"),
        [
            ("notify CPU ms per event", f"{cpu * 1000 / n:.3f}"),
            ("store CPU ms per event", f"{store * 1000 / n:.3f}"),
            ("round trips per batch", f"{sent.total() / len(batches):.2f}"),
            *(
                (f"— {name} per batch", f"{count / len(batches):.2f}")
                for name, count in sorted(sent.items())
            ),
            ("documents written per event", f"{written.total() / n:.2f}"),
            *(
                (f"— {name} per event", f"{count / n:.2f}")
                for name, count in sorted(written.items())
            ),
            ("redelivered: notify CPU ms per event", f"{again * 1000 / n:.3f}"),
            ("redelivered: documents written", f"{commands.written.total()}"),
        ],
    )
    want = expected(events)
    if stored != want:
        wrong = sorted(k for k in want.keys() | stored.keys() if stored.get(k) != want.get(k))
        raise SystemExit(f"digests differ for {len(wrong)} customer-days, e.g. {wrong[:3]}")
    print(f"\nverified: {len(want):,} digests (points, orders, latest balance per customer-day)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with private_store("crm-notify-points-") as (url, pid):
        asyncio.run(run(url, pid, args))


if __name__ == "__main__":
    main()
