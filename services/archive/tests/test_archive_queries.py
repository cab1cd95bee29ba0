"""The read side the routes use, on the in-memory fakes: possible duplicates, the erasure's
progress, and the export of every order (kept apart or held) and timeline entry."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers
from test_archive_erasure import confirmed, erasure
from test_archive_orders import T0, Clock, ev, placed, registered, run

from crm_archive import queries
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import apply_events
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.topics import SERVICES

pytestmark = pytest.mark.unit


async def test_the_later_registration_sharing_a_phone_is_the_possible_duplicate() -> None:
    repo = InMemoryCustomers()
    await run(
        repo,
        registered("first", T0, phone="+86 138-0013-8000"),
        registered("second", T0 + timedelta(days=1), phone="13800138000"),
        ev(
            members_v1.CUSTOMER_REGISTERED,
            "other",
            T0,
            members_v1.CustomerRegistered(name="韩梅梅", email="han.meimei@example.com"),
        ),
        placed("stub", "o1", "5", T0),
    )
    customers = repo.customers
    found = {i: await queries.duplicate_of(customers[i], repo) for i in customers}
    assert found == {"first": None, "second": "first", "other": None, "stub": None}


async def test_an_erasure_is_complete_once_every_service_confirmed() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0))
    assert queries.erasure_status(repo.customers["c1"]) is None
    await run(repo, erasure("c1"), confirmed("c1", "tickets"))
    status = queries.erasure_status(repo.customers["c1"])
    assert status is not None
    assert (status.request_event_id, status.complete) == ("erase-1", False)
    assert status.confirmed_at["tickets"] is not None
    assert status.confirmed_at["loyalty"] is None
    # every other service of the registry (relations too): the view waits for each of them
    await run(repo, *(confirmed("c1", s) for s in SERVICES if s != "tickets"))
    status = queries.erasure_status(repo.customers["c1"])
    assert status is not None
    assert status.complete


async def test_the_export_holds_every_order_oldest_first_and_the_whole_timeline() -> None:
    rules = ArchiveRules(orders_kept=2)
    repo = InMemoryCustomers()
    events = [placed("c1", f"o{i}", "10.00", T0 + timedelta(days=i)) for i in range(5)]
    await apply_events(events, repo, clock=Clock(T0 + timedelta(days=5)), rules=rules)
    customer = repo.customers["c1"]
    assert sorted(customer.orders) == ["o3", "o4"]  # the others are kept apart
    export = await queries.export(customer, repo, T0 + timedelta(days=5), rules.base_currency)
    assert export.detail.customer is customer
    assert [o.order_id async for o in export.orders] == ["o0", "o1", "o2", "o3", "o4"]
    assert [e.type async for e in export.timeline] == ["order.placed"] * 5


def bought(
    customer: str, order_id: str, days_ago: int, lines: list[tuple[str, str, int, str]], **kw: str
) -> Any:
    """An order placed `days_ago` before T0 + 400 days, its lines (sku, category, qty, price)."""
    items = [
        orders_v1.OrderItem(sku=sku, category=category, qty=qty, unit_price=Decimal(price))
        for sku, category, qty, price in lines
    ]
    total = sum((i.unit_price * i.qty for i in items), Decimal(0))
    order = orders_v1.OrderPlaced(
        order_id=order_id, amount=total, currency=kw.get("currency", "CNY"), items=items
    )
    return ev(orders_v1.ORDER_PLACED, customer, NOW - timedelta(days=days_ago), order)


NOW = T0 + timedelta(days=400)


async def test_product_preferences_rank_the_spend_of_the_last_12_months_active_orders() -> None:
    repo = InMemoryCustomers()
    await run(
        repo,
        bought("c1", "o1", 10, [("tea-1", "tea", 2, "50.00"), ("cup-1", "ware", 1, "30.00")]),
        bought("c1", "o2", 20, [("tea-2", "tea", 1, "20.00"), ("pot-1", "ware", 1, "90.00")]),
        # Older than 12 months, cancelled, or in another currency: not counted.
        bought("c1", "o3", 366, [("cup-1", "ware", 100, "30.00")]),
        bought("c1", "o4", 5, [("pot-1", "ware", 100, "90.00")]),
        ev(orders_v1.ORDER_CANCELLED, "c1", NOW, orders_v1.OrderCancelled(order_id="o4")),
        bought("c1", "o5", 5, [("tea-9", "tea", 100, "9.00")], currency="USD"),
        # The same order announced again (another event id) counts once.
        bought("c1", "o1", 10, [("tea-1", "tea", 2, "50.00"), ("cup-1", "ware", 1, "30.00")]),
        now=NOW,
    )
    detail = await queries.detail(repo.customers["c1"], repo, NOW, "CNY")
    assert detail.preferences.categories == [("tea", Decimal("120")), ("ware", Decimal("120"))]
    assert detail.preferences.skus[:2] == [("tea-1", Decimal("100")), ("pot-1", Decimal("90"))]
    assert [sku for sku, _ in detail.preferences.skus] == ["tea-1", "pot-1", "cup-1", "tea-2"]
