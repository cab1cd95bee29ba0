"""Loyalty-tier changes in the archive (ADR 0027): a batch that brings only tier changes for a
customer on file sets the tier on the stored record without reading it, one version up, with
the timeline entry, and the record shows the same tier, times and entries as when it is read,
changed and saved whole; a customer not on file, or one the batch brings anything else for, is
read and saved whole as before."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers

from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import apply_events
from crm_contracts import CloudEvent, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1

pytestmark = pytest.mark.unit
T0 = datetime(2027, 1, 4, 2, 0, tzinfo=UTC)
RULES = ArchiveRules()
_ids = iter(range(1_000_000))


def ev(event_type: str, customer: str, at: datetime, data: Any) -> CloudEvent[Any]:
    return new_event(
        event_type, source="test", subject=customer, data=data, time=at, id=f"e{next(_ids)}"
    )


def tier(customer: str, to: str, at: datetime, was: str = "standard") -> CloudEvent[Any]:
    data = loyalty_v1.TierChanged(tier=to, previous_tier=was, qualifying_points=1200)
    return ev(loyalty_v1.TIER_CHANGED, customer, at, data)


def placed(customer: str, order_id: str, at: datetime) -> CloudEvent[Any]:
    data = orders_v1.OrderPlaced(order_id=order_id, amount=Decimal("80.00"), currency="CNY")
    return ev(orders_v1.ORDER_PLACED, customer, at, data)


def registered(customer: str, at: datetime) -> CloudEvent[Any]:
    data = members_v1.CustomerRegistered(name="李雷", phone="+86 13800138000")
    return ev(members_v1.CUSTOMER_REGISTERED, customer, at, data)


class Counting(InMemoryCustomers):
    """Counts the records the handler reads."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    async def load(self, customer_ids: Any, references: Any = None) -> Any:
        self.loaded += list(customer_ids)
        return await super().load(customer_ids, references)


async def run(repo: InMemoryCustomers, *events: CloudEvent[Any]) -> int:
    return await apply_events(list(events), repo, clock=lambda: T0, rules=RULES)


async def test_tier_changes_alone_set_the_tier_without_reading_the_record() -> None:
    repo = Counting()
    await run(repo, registered("c1", T0 - timedelta(days=30)), placed("c1", "o1", T0))
    before = repo.customers["c1"].version
    repo.loaded.clear()

    later = T0 + timedelta(hours=1)
    applied = await run(
        repo,
        tier("c1", "silver", later),
        tier("c1", "gold", later + timedelta(minutes=5), "silver"),
    )

    customer = repo.customers["c1"]
    assert applied == 2
    assert repo.loaded == []  # the record was not read
    assert customer.loyalty_tier == "gold"  # the batch's last
    assert customer.last_event_at == later + timedelta(minutes=5)
    assert customer.first_seen_at == T0 - timedelta(days=30)
    assert customer.version == before + 1
    entries = [(e.type, e.data) for e in repo.timeline if e.type == loyalty_v1.TIER_CHANGED]
    assert entries == [
        ("tier.changed", {"tier": "silver", "previous_tier": "standard"}),
        ("tier.changed", {"tier": "gold", "previous_tier": "silver"}),
    ]
    assert not repo.published("c1")[3:]  # nothing derives from a tier: nothing announced


async def test_a_tier_change_is_recorded_alike_either_way() -> None:
    """The record and its timeline are the same whether the tier came alone or beside an order
    (read and saved whole)."""
    alone, beside = Counting(), Counting()
    for repo in (alone, beside):
        await run(repo, registered("c1", T0 - timedelta(days=30)))
    change = tier("c1", "silver", T0 + timedelta(hours=1))
    order = placed("c1", "o1", T0)
    await run(alone, order)
    await run(alone, change)
    await run(beside, order, change)

    one, other = alone.customers["c1"], beside.customers["c1"]
    assert (one.loyalty_tier, one.first_seen_at, one.last_event_at) == (
        other.loyalty_tier,
        other.first_seen_at,
        other.last_event_at,
    )
    keys = {e.event_id for e in alone.timeline} & {e.event_id for e in beside.timeline}
    assert len(keys) == 2  # the order and the tier change
    assert [e for e in alone.timeline if e.event_id in keys] == [
        e for e in beside.timeline if e.event_id in keys
    ]


async def test_a_tier_change_for_a_customer_not_on_file_makes_the_record() -> None:
    repo = Counting()
    await run(repo, tier("c9", "silver", T0))
    assert repo.loaded == ["c9"]
    customer = repo.customers["c9"]
    assert customer.stub
    assert customer.loyalty_tier == "silver"
    assert customer.first_seen_at == T0


async def test_a_tier_change_is_applied_once() -> None:
    repo = Counting()
    await run(repo, registered("c1", T0))
    change = tier("c1", "silver", T0 + timedelta(hours=1))
    await run(repo, change)
    version = repo.customers["c1"].version
    assert await run(repo, change) == 0
    assert repo.customers["c1"].version == version
    assert len([e for e in repo.timeline if e.type == loyalty_v1.TIER_CHANGED]) == 1
