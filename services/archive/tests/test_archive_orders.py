"""How orders change a customer's record, and that a redelivered event changes nothing."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from archive_fakes import InMemoryCustomers

from crm_archive.domain.customer import CustomerCreated, OrderPlaced, record_order
from crm_archive.handlers import apply_events
from crm_contracts import CloudEvent, new_event
from crm_contracts.orders import v1 as orders_v1

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def now() -> datetime:
    return T0


def placed(
    event_id: str, customer: str, amount: str, at: datetime, currency: str = "CNY"
) -> CloudEvent[orders_v1.OrderPlaced]:
    return new_event(
        orders_v1.ORDER_PLACED,
        source="test",
        subject=customer,
        id=event_id,
        time=at,
        data=orders_v1.OrderPlaced(
            order_id=f"o-{event_id}", amount=Decimal(amount), currency=currency
        ),
    )


def test_a_first_order_creates_a_stub_customer() -> None:
    customer, events = record_order(
        None, "c1", OrderPlaced("o1", Decimal("10.50"), "CNY", T0), base_currency="CNY", now=T0
    )
    assert customer.stub
    assert customer.stage == "potential"
    assert (customer.order_count, customer.total_spent) == (1, Decimal("10.50"))
    assert customer.first_order_at == customer.last_order_at == T0
    assert events == [CustomerCreated("c1", "potential", True, "order.placed")]


def test_orders_arriving_out_of_order_keep_first_and_last_right() -> None:
    customer, _ = record_order(
        None, "c1", OrderPlaced("o2", Decimal(5), "CNY", T0), base_currency="CNY", now=T0
    )
    earlier = T0 - timedelta(days=3)
    customer, events = record_order(
        customer, "c1", OrderPlaced("o1", Decimal(7), "CNY", earlier), base_currency="CNY", now=T0
    )
    assert events == []
    assert (customer.first_order_at, customer.last_order_at) == (earlier, T0)
    assert customer.total_spent == Decimal(12)


def test_other_currencies_are_kept_apart_not_converted() -> None:
    customer, _ = record_order(
        None, "c1", OrderPlaced("o1", Decimal("3.00"), "USD", T0), base_currency="CNY", now=T0
    )
    assert customer.total_spent == 0
    assert customer.foreign_spent == {"USD": Decimal("3.00")}
    assert customer.order_count == 1


async def test_a_batch_is_applied_in_order_and_publishes_one_created_event() -> None:
    repo = InMemoryCustomers()
    batch = [
        placed("e1", "c1", "10.00", T0),
        placed("e2", "c1", "5.25", T0),
        placed("e3", "c2", "1", T0),
    ]
    assert await apply_events(batch, repo, clock=now, base_currency="CNY") == 3
    assert repo.customers["c1"].order_count == 2
    assert repo.customers["c1"].total_spent == Decimal("15.25")
    assert sorted(m.event.subject for m in repo.outbox) == ["c1", "c2"]
    assert {m.topic for m in repo.outbox} == {"archive.v1"}


async def test_a_redelivered_event_changes_nothing() -> None:
    repo = InMemoryCustomers()
    event = placed("e1", "c1", "10.00", T0)
    await apply_events([event, event], repo, clock=now, base_currency="CNY")
    assert await apply_events([event], repo, clock=now, base_currency="CNY") == 0
    assert repo.customers["c1"].order_count == 1
    assert len(repo.outbox) == 1


async def test_outbound_event_ids_derive_from_the_cause() -> None:
    """Re-applying a cause after a crash (before the inbox mark) must not mint a new event id."""
    first, second = InMemoryCustomers(), InMemoryCustomers()
    event = placed("e1", "c1", "10.00", T0)
    await apply_events([event], first, clock=now, base_currency="CNY")
    await apply_events([event], second, clock=now, base_currency="CNY")
    assert first.outbox[0].event.id == second.outbox[0].event.id
