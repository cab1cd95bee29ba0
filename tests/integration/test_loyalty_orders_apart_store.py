"""Loyalty keeps settled orders apart on the real MongoDB-wire server (ADR 0022): a customer who
has bought for years keeps in their account only the orders of the qualifying window and the
lots that still hold points; an old order's refund finds it apart and reverses it once, even
when the refund and the order are delivered again; a redemption's retry finds its first result
in the ledger.

What this protects: before, the account held every order and lot it ever had (about 357 bytes
of BSON each), so a busy customer's account grew without end and, past the store's 16 MB, could
no longer be saved."""

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import bson
import pytest
from pymongo import AsyncMongoClient
from stackutil import Stack, unique

from crm_contracts import CloudEvent, new_event
from crm_contracts.orders import v1 as orders_v1
from crm_loyalty.adapters.mongo import MongoAccountRepository
from crm_loyalty.commands import Redeem, redeem
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.handlers import apply_events, tier_sweep
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

pytestmark = pytest.mark.integration
T0 = datetime(2023, 1, 2, tzinfo=UTC)
RULES = LoyaltyRules(welcome_bonus=0)
YEARS = 3
EVERY = timedelta(days=3)


@pytest.fixture
async def repository(stack: Stack) -> AsyncIterator[MongoAccountRepository]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    database = client[unique("crm_loyalty_apart").replace("-", "_")]
    uow = UnitOfWork(client, Inbox(database), Outbox(database))
    keys = CustomerKeys(database, KeyRing({"k1": b"1" * 32}, "k1", b"i" * 32))
    repository = MongoAccountRepository(database, uow, RULES, keys)
    await repository.ensure_indexes()
    yield repository
    await client.drop_database(database.name)
    await client.close()


def clock_at(when: datetime) -> Callable[[], datetime]:
    return lambda: when


def order(kind: str, order_id: str, at: datetime, n: int, amount: str = "20") -> CloudEvent[Any]:
    data: Any
    if kind == orders_v1.ORDER_PLACED:
        data = orders_v1.OrderPlaced(order_id=order_id, amount=Decimal(amount), currency="CNY")
    elif kind == orders_v1.ORDER_REFUNDED:
        data = orders_v1.OrderRefunded(order_id=order_id, amount=Decimal(amount))
    else:
        data = orders_v1.OrderCancelled(order_id=order_id)
    return new_event(kind, source="shop", subject="c1", data=data, id=f"e{n}", time=at)


async def test_years_of_orders_leave_only_the_window_in_the_account(
    repository: MongoAccountRepository,
) -> None:
    placed: list[CloudEvent[Any]] = []
    at, n = T0, 0
    while at < T0 + timedelta(days=365 * YEARS):
        placed.append(order(orders_v1.ORDER_PLACED, f"o{n}", at, n))
        n += 1
        at += EVERY
    years_later = at
    for start in range(0, len(placed), 50):  # spending every few months closes the lots
        await apply_events(placed[start : start + 50], repository, rules=RULES)
        last = placed[min(start + 49, len(placed) - 1)].time
        await tier_sweep(last, repository, rules=RULES)  # hourly in the service
        account = (await repository.load(["c1"]))["c1"]
        if account.balance > 0:
            spend = Redeem("c1", account.balance, f"r{start}")
            await redeem(spend, repository, clock_at(last))

    stored = await repository.accounts.find_one({"_id": "c1"})
    assert stored is not None
    held = {o["id"] for o in stored["orders"]}
    apart = await repository.apart.count_documents({"customer_id": "c1"})
    assert len(held) + apart == len(placed)
    assert stored["orders_apart"] == apart
    window = timedelta(days=RULES.qualifying_window_days + 30)
    assert len(held) <= window / EVERY + 1, "only the window's orders stay"
    assert apart >= len(placed) - window / EVERY - 1
    assert all(lot["remaining"] > 0 or lot["order_id"] in held for lot in stored["lots"])
    assert len(bson.encode(stored)) < 200_000

    # The first order, refunded in full years later, and the refund and order delivered again.
    refund = order(orders_v1.ORDER_REFUNDED, "o0", years_later, 10_000)
    await apply_events([refund], repository, rules=RULES)
    await repository.accounts.database["processed_events"].delete_many({})  # the inbox lost
    await apply_events([refund, placed[0]], repository, rules=RULES)  # the account counts once
    account = (await repository.load(["c1"]))["c1"]
    assert account.debt == 20, "the 20 points spent long ago become debt, once"
    reversed_entries = await repository.ledger.count_documents({"kind": "reverse"})
    assert reversed_entries == 1
    assert "o0" not in account.orders, "settled again: back apart"
    assert await repository.apart.find_one({"_id": "c1 o0"}) is not None

    # A redemption retried with its key finds its first result in the ledger.
    await apply_events(
        [order(orders_v1.ORDER_PLACED, "late", years_later, 10_001, "200")], repository, rules=RULES
    )
    first = await redeem(Redeem("c1", 50, "again"), repository, clock_at(years_later))
    retry = await redeem(Redeem("c1", 50, "again"), repository, clock_at(years_later))
    assert (first.replayed, retry.replayed, retry.entry) == (False, True, first.entry)
