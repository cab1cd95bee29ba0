"""Notify's points digests on the real MongoDB-wire server: a batch adds its points and orders to
the stored digest in one upsert (`$inc`, the latest balance `$set`), without reading it first,
in the batch's transaction with its inbox marks (issue #16).

What this protects: the digest the sweep reads is the sum of every batch's additions, with the
customer and the day it was made with, so the e-mail is the one the read-then-replace gave; the
sweep reads a digest only once its customer's local day has closed (`closes_at`, set by the
addition that made it; digests stored without it once their day has ended everywhere), and
deletes it only as it read it (points added since: a conflict, nothing deleted or made).
"""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from stackutil import Stack, unique

from crm_contracts import new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.domain.digest import Digest, day_closes
from crm_notify.domain.policy import Preferences
from crm_notify.ports import Changes
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 23)
LATER = datetime(2026, 11, 30, tzinfo=UTC)
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture
async def repository(stack: Stack) -> AsyncIterator[MongoNotifyRepository]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    database = client[unique("crm_notify_digests").replace("-", "_")]
    uow = UnitOfWork(client, Inbox(database), Outbox(database))
    keys = CustomerKeys(database, KeyRing({"k1": b"1" * 32}, "k1", b"i" * 32))
    yield MongoNotifyRepository(database, uow, keys)
    await client.drop_database(database.name)
    await client.close()


def points(customer: str, n: int) -> Any:
    data = loyalty_v1.PointsEarned(points=n, order_id=f"o{n}", balance=n)
    return new_event(
        loyalty_v1.POINTS_EARNED, source="t", subject=customer, data=data, time=datetime.now(UTC)
    )


async def test_batches_add_to_the_stored_digest_and_the_latest_balance_wins(
    repository: MongoNotifyRepository,
) -> None:
    first = Changes(
        applied=[points("c1", 10)], digests={"c1/2026-11-23": Digest("c1", DAY, 10, 1, 10)}
    )
    await repository.save(first)
    second = Changes(
        applied=[points("c1", 25), points("c1", 5)],
        digests={
            "c1/2026-11-23": Digest("c1", DAY, 30, 2, 40),
            "c2/2026-11-23": Digest("c2", DAY, 7, 1, 7),
        },
    )
    await repository.save(second)
    stored = sorted(await repository.digests_closed(LATER, 10), key=lambda d: d.customer_id)
    assert stored == [Digest("c1", DAY, 40, 3, 40), Digest("c2", DAY, 7, 1, 7)]
    assert await repository.unprocessed([*first.applied, *second.applied]) == []


async def test_an_erasure_drops_the_customers_pending_digests(
    repository: MongoNotifyRepository,
) -> None:
    """In the erasure's transaction: the sweep finds no digest of theirs to make a message of;
    other customers' digests stay."""
    digests = {
        d.digest_id: d
        for d in (
            Digest("gone", DAY, 10, 1, 10),
            Digest("gone", date(2026, 11, 24), 5, 1, 15),
            Digest("stays", DAY, 7, 1, 7),
        )
    }
    await repository.save(Changes(applied=[points("gone", 10)], digests=digests))
    await repository.save(Changes(erased=["gone"]))
    assert await repository.digests_closed(LATER, 10) == [Digest("stays", DAY, 7, 1, 7)]


async def test_an_addition_in_a_failed_batch_is_not_kept(
    repository: MongoNotifyRepository,
) -> None:
    """The additions are in the batch's transaction: when its inbox marks fail after them (an
    event marked already: a second writer applied it), nothing of the batch is added."""
    event = points("c1", 10)
    digest = {"c1/2026-11-23": Digest("c1", DAY, 10, 1, 10)}
    await repository.save(Changes(applied=[event], digests=digest))
    again = {"c1/2026-11-23": Digest("c1", DAY, 10, 1, 20)}
    with pytest.raises(PyMongoError):
        await repository.save(Changes(applied=[event], digests=again))
    assert await repository.digests_closed(LATER, 10) == [Digest("c1", DAY, 10, 1, 10)]


async def test_time_zones_are_read_without_the_sealed_preferences(
    repository: MongoNotifyRepository,
) -> None:
    await repository.save(
        Changes(
            preferences={"c1": Preferences("c1", email="a@example.com", time_zone="Europe/Berlin")}
        )
    )
    await repository.preferences_.insert_one({"_id": "old"})  # stored before time zones
    assert await repository.time_zones(["c1", "old", "nobody"]) == {
        "c1": "Europe/Berlin",
        "old": "Asia/Shanghai",
    }


async def test_a_digest_is_read_once_its_local_day_has_closed_and_keeps_when_it_closes(
    repository: MongoNotifyRepository,
) -> None:
    """`closes_at` and `opened_by` are those of the addition that made the digest; a later
    addition keeps them. A digest stored without `closes_at` is read once its day has ended at
    UTC−12 (the next day 12:00 UTC)."""
    closes = day_closes(date(2026, 11, 22), LA)  # 2026-11-23 08:00 UTC
    first = Digest("la", date(2026, 11, 22), 10, 1, 10, closes_at=closes, opened_by="e1")
    await repository.save(Changes(applied=[points("la", 10)], digests={first.digest_id: first}))
    again = Digest("la", date(2026, 11, 22), 5, 1, 15, closes_at=closes, opened_by="e2")
    await repository.save(Changes(applied=[points("la", 5)], digests={again.digest_id: again}))
    await repository.digests_.insert_one(
        {
            "_id": "old/2026-11-22",
            "customer_id": "old",
            "day": "2026-11-22",
            "points": 3,
            "orders": 1,
            "balance": 3,
        }
    )
    assert await repository.digests_closed(datetime(2026, 11, 23, 7, 59, tzinfo=UTC), 10) == []
    assert await repository.digests_closed(datetime(2026, 11, 23, 8, 0, tzinfo=UTC), 10) == [
        Digest("la", date(2026, 11, 22), 15, 2, 15, closes_at=closes, opened_by="e1")
    ]
    at_noon = await repository.digests_closed(datetime(2026, 11, 23, 12, 0, tzinfo=UTC), 10)
    assert sorted(d.customer_id for d in at_noon) == ["la", "old"]


async def test_a_digest_with_points_added_since_the_sweep_read_it_is_not_deleted(
    repository: MongoNotifyRepository,
) -> None:
    """The sweep's save deletes the digests it read only if still as read, in its transaction:
    points added in between make it a conflict and nothing of the save is kept."""
    closes = day_closes(DAY, LA)
    first = Digest("c1", DAY, 10, 1, 10, closes_at=closes, opened_by="e1")
    await repository.save(Changes(applied=[points("c1", 10)], digests={first.digest_id: first}))
    [read] = await repository.digests_closed(LATER, 10)
    more = Digest("c1", DAY, 5, 1, 15, closes_at=closes, opened_by="e2")
    await repository.save(Changes(applied=[points("c1", 5)], digests={more.digest_id: more}))
    with pytest.raises(ConcurrencyConflictError):
        await repository.save(Changes(sent_digests=[read]))
    [stored] = await repository.digests_closed(LATER, 10)
    assert (stored.points, stored.orders) == (15, 2)
    await repository.save(Changes(sent_digests=[stored]))
    assert await repository.digests_closed(LATER, 10) == []
