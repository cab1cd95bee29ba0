"""What a long-lived customer's loyalty account weighs (ADR 0022): loyalty's use case and
repository on the real store, in-process, no Kafka.

    python benchmarks/loyalty_account.py [--years 10] [--orders-a-day 3] [--batch 20]

One customer places `--orders-a-day` orders every day for `--years` years (20 CNY each), applied
through `handlers.apply_events` in batches of `--batch`, and redeems their whole balance at the
end of every month (as a customer who uses their points does), after the tier sweep (hourly in
the service; monthly here). After each year it prints the
account document's size, the orders held in it and kept apart, and the milliseconds a batch of
this customer's orders took (load, apply, save) that year. `--keep-everything` turns
`Account.compact` off: the account as it was before ADR 0022, to compare with.
"""

import argparse
import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import bson
from benchutil import print_table, private_store
from pymongo import AsyncMongoClient

from crm_contracts import CloudEvent, new_event
from crm_contracts.orders import v1 as orders_v1
from crm_loyalty.adapters.mongo import MongoAccountRepository
from crm_loyalty.commands import Redeem, redeem
from crm_loyalty.domain.account import Account
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.handlers import apply_events, tier_sweep
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

T0 = datetime(2017, 1, 1, 10, 0, tzinfo=UTC)
RULES = LoyaltyRules(welcome_bonus=0)


def clock_at(when: datetime) -> Callable[[], datetime]:
    return lambda: when


def placed(n: int, at: datetime) -> CloudEvent[Any]:
    data = orders_v1.OrderPlaced(order_id=f"order-{n:08d}", amount=Decimal(20), currency="CNY")
    return new_event(
        orders_v1.ORDER_PLACED, source="shop", subject="c1", data=data, id=f"e{n}", time=at
    )


async def run(url: str, args: argparse.Namespace) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    database = client["crm_loyalty_account"]
    uow = UnitOfWork(client, Inbox(database), Outbox(database))
    keys = CustomerKeys(database, KeyRing({"k1": b"1" * 32}, "k1", b"i" * 32))
    repository = MongoAccountRepository(database, uow, RULES, keys)
    await repository.ensure_indexes()
    gap = timedelta(days=1) / args.orders_a_day
    rows = []
    n, at, month = 0, T0, T0.month
    for year in range(1, args.years + 1):
        spent, batches = 0.0, 0
        end = T0.replace(year=T0.year + year)
        while at < end:
            events: list[CloudEvent[Any]] = []
            while len(events) < args.batch and at < end:
                events.append(placed(n, at))
                n, at = n + 1, at + gap
            started = time.perf_counter()
            await apply_events(events, repository, rules=RULES)
            spent, batches = spent + time.perf_counter() - started, batches + 1
            if at.month != month:  # the month is over: its tier reviews, the balance spent
                month = at.month
                await tier_sweep(events[-1].time, repository, rules=RULES)
                account = (await repository.load(["c1"]))["c1"]
                if account.balance > 0:
                    spend = Redeem("c1", account.balance, f"r{n}")
                    await redeem(spend, repository, clock_at(events[-1].time))
        stored = await repository.accounts.find_one({"_id": "c1"})
        assert stored is not None
        rows.append(
            [
                year,
                f"{n:,}",
                f"{len(bson.encode(stored)) / 1e6:.2f}",
                f"{len(stored['orders']):,}",
                f"{stored.get('orders_apart', 0):,}",
                f"{1e3 * spent / batches:.1f}",
            ]
        )
        print(rows[-1], flush=True)
    what = "everything kept (before ADR 0022)" if args.keep_everything else "settled orders apart"
    print_table(
        f"one customer, {args.orders_a_day} orders a day, the balance redeemed monthly: {what}",
        ["year", "orders", "account MB", "orders held", "kept apart", "ms per batch"],
        rows,
    )
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--orders-a-day", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--keep-everything", action="store_true")
    args = parser.parse_args()
    if args.keep_everything:
        Account.compact = lambda self, rules: None  # type: ignore[method-assign]
    with private_store("crm-loyalty-account-") as (url, _):
        asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
