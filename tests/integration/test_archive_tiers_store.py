"""The archive's loyalty tiers on the real MongoDB-wire server (ADR 0027): a batch of tier
changes alone sets each tier on the stored record without reading it, one version up, and a
writer that read the record before saves nothing over it, so neither the tier nor the other
writer's change is lost."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from stackutil import Stack, unique

from crm_archive.adapters.mongo import MongoCustomerRepository
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import apply_events
from crm_archive.ports import Changes
from crm_contracts import CloudEvent, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

pytestmark = pytest.mark.integration
RING = KeyRing({"k": b"k" * 32}, "k", b"i" * 32)
T0 = datetime(2027, 1, 4, 2, 0, tzinfo=UTC)
RULES = ArchiveRules()
_ids = iter(range(1_000_000))


@pytest.fixture
async def database(stack: Stack) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    db: AsyncDatabase[dict[str, Any]] = client[unique("crm_tiers").replace("-", "_")]
    yield db
    await client.drop_database(db.name)
    await client.close()


@pytest.fixture
async def repository(database: AsyncDatabase[dict[str, Any]]) -> MongoCustomerRepository:
    client = database.client
    repo = MongoCustomerRepository(
        database,
        UnitOfWork(client, Inbox(database), Outbox(database)),
        CustomerKeys(database, RING),
    )
    await repo.ensure_indexes()
    return repo


def ev(event_type: str, customer: str, at: datetime, data: Any) -> CloudEvent[Any]:
    return new_event(
        event_type, source="test", subject=customer, data=data, time=at, id=f"e{next(_ids)}"
    )


def tier(customer: str, to: str, at: datetime) -> CloudEvent[Any]:
    data = loyalty_v1.TierChanged(tier=to, previous_tier="standard", qualifying_points=1200)
    return ev(loyalty_v1.TIER_CHANGED, customer, at, data)


async def apply(repository: MongoCustomerRepository, *events: CloudEvent[Any]) -> int:
    return await apply_events(list(events), repository, clock=lambda: T0, rules=RULES)


async def on_file(repository: MongoCustomerRepository, customer: str) -> None:
    registered = members_v1.CustomerRegistered(name="韩梅梅", phone="+86 13900139000")
    order = orders_v1.OrderPlaced(order_id="o1", amount=Decimal("99.00"), currency="CNY")
    await apply(
        repository,
        ev(members_v1.CUSTOMER_REGISTERED, customer, T0 - timedelta(days=40), registered),
        ev(orders_v1.ORDER_PLACED, customer, T0 - timedelta(days=1), order),
    )


async def test_tiers_alone_are_set_on_the_stored_record_one_version_up(
    repository: MongoCustomerRepository, database: AsyncDatabase[dict[str, Any]]
) -> None:
    await on_file(repository, "c1")
    before = await database["customers"].find_one({"_id": "c1"})
    assert before is not None

    assert await apply(repository, tier("c1", "silver", T0), tier("c1", "gold", T0)) == 2

    after = await database["customers"].find_one({"_id": "c1"})
    assert after is not None
    assert after["version"] == before["version"] + 1
    assert after["loyalty_tier"] == "gold"
    assert after["last_event_at"] == T0
    assert after["first_seen_at"] == before["first_seen_at"]
    # Nothing else of the record moved: figures, sealed profile, search keys.
    assert {
        k: v for k, v in after.items() if k not in {"version", "loyalty_tier", "last_event_at"}
    } == {k: v for k, v in before.items() if k not in {"version", "loyalty_tier", "last_event_at"}}
    customer = await repository.get("c1")
    assert customer is not None
    assert (customer.loyalty_tier, customer.profile.name) == ("gold", "韩梅梅")
    entries = [e async for e in database["timeline"].find({"type": "tier.changed"})]
    assert len(entries) == 2


async def test_a_writer_that_read_the_record_before_saves_nothing_over_the_tier(
    repository: MongoCustomerRepository, database: AsyncDatabase[dict[str, Any]]
) -> None:
    await on_file(repository, "c1")
    stale = (await repository.load(["c1"]))["c1"]
    await apply(repository, tier("c1", "silver", T0))

    stale.log_contact(T0)  # a change of its own, read before the tier
    with pytest.raises(ConcurrencyConflictError):
        await repository.save(Changes([stale]))
    stored = await repository.get("c1")
    assert stored is not None
    assert stored.loyalty_tier == "silver"


async def test_a_tier_for_a_customer_not_on_file_makes_the_record(
    repository: MongoCustomerRepository,
) -> None:
    assert await apply(repository, tier("c9", "silver", T0)) == 1
    customer = await repository.get("c9")
    assert customer is not None
    assert customer.stub
    assert customer.loyalty_tier == "silver"
