"""Notify's points digests on the real MongoDB-wire server: a batch adds its points and orders to
the stored digest in one upsert (`$inc`, the latest balance `$set`), without reading it first,
in the batch's transaction with its inbox marks (issue #16).

What this protects: the digest the sweep reads is the sum of every batch's additions, with the
customer and the day it was made with, so the e-mail is the one the read-then-replace gave.
"""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from stackutil import Stack, unique

from crm_contracts import new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.domain.digest import Digest
from crm_notify.domain.policy import Preferences
from crm_notify.ports import Changes
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 23)


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
    stored = sorted(
        await repository.digests_before(date(2026, 11, 24), 10), key=lambda d: d.customer_id
    )
    assert stored == [Digest("c1", DAY, 40, 3, 40), Digest("c2", DAY, 7, 1, 7)]
    assert await repository.unprocessed([*first.applied, *second.applied]) == []


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
    assert await repository.digests_before(date(2026, 11, 24), 10) == [Digest("c1", DAY, 10, 1, 10)]


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
