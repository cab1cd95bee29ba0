"""The archive's sorted customer list on the real MongoDB-wire server: read in chunks of its
order (`adapters/census.py`), every page holds exactly the rows, in exactly the order, that one
query over every match gives (the store's own comparison of Decimal128 spend, times, ties and
customers without a value), page after page."""

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from bson.decimal128 import Decimal128
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from stackutil import Stack, unique

from crm_archive.adapters import census, finding
from crm_archive.adapters.mongo import MongoCustomerRepository
from crm_archive.ports import After, CustomerFilter, CustomerRow, CustomerSort
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

RING = KeyRing({"k": b"k" * 32}, "k", b"i" * 32)


@pytest.fixture
async def repository(stack: Stack) -> AsyncIterator[MongoCustomerRepository]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    name = unique("crm_walk").replace("-", "_")
    db: AsyncDatabase[dict[str, Any]] = client[name]
    repo = MongoCustomerRepository(
        db, UnitOfWork(client, Inbox(db), Outbox(db)), CustomerKeys(db, RING)
    )
    await repo.ensure_indexes()
    rng, t0 = random.Random(17), datetime(2026, 1, 1, tzinfo=UTC)
    docs = []
    for i in range(1500):
        ordered = rng.random() > 0.2
        docs.append(
            {
                "_id": f"c{rng.randrange(10**6):06d}-{i}",
                "stage": rng.choice(["loyal", "loyal", "active", "at_risk"]),
                "grade": rng.choice(["vip", "ordinary", "ordinary"]),
                "tags": rng.sample(["a", "b", "c"], rng.randrange(3)),
                "order_count": 1 if ordered else 0,
                "net_spent": Decimal128(Decimal(rng.randrange(0, 80)) * Decimal("12.5")),
                "last_order_at": t0 + timedelta(hours=rng.randrange(900)) if ordered else None,
                "rfm": rng.choice([3, 9, 10, 12, 13, 15]) if ordered else None,
            }
        )
    await db["customers"].insert_many(docs)
    await repo._take_census()
    yield repo
    await client.drop_database(name)
    await client.close()


async def pages(
    read: Any, filters: CustomerFilter, sort: CustomerSort, limit: int
) -> list[list[str]]:
    out: list[list[str]] = []
    after: After | None = None
    while page := await read(filters, sort, after, limit):
        out.append([row.id for row in page])
        after = After(page[-1].sort_value(sort.field), page[-1].id)
    return out


@pytest.mark.parametrize("field", ["rfm", "net_spent", "last_order_at"])
@pytest.mark.parametrize(
    "filters",
    [
        CustomerFilter(),
        CustomerFilter(stage="loyal"),
        CustomerFilter(tags=("b",), grade="ordinary"),
        CustomerFilter(stage="at_risk", min_net_spent=Decimal("100")),
    ],
)
async def test_a_walked_list_pages_as_one_query_over_every_match(
    repository: MongoCustomerRepository, field: str, filters: CustomerFilter
) -> None:
    sort = CustomerSort(field, descending=True)  # type: ignore[arg-type]
    criteria = finding.customer_query(filters, RING)
    walk = census.plan(criteria, sort, None, 40, repository._census())
    assert walk is not None, "a broad list over a census is walked"

    async def one_query(
        filters: CustomerFilter, sort: CustomerSort, after: After | None, limit: int
    ) -> list[CustomerRow]:
        return await repository._page(finding.continued(criteria, sort, after), sort, limit)

    walked = await pages(repository.find, filters, sort, 40)
    assert walked == await pages(one_query, filters, sort, 40)
    assert sum(map(len, walked)) > 40, "more than one page"
