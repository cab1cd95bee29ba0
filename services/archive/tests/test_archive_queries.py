"""The read side the routes use, on the in-memory fakes: possible duplicates, the erasure's
progress, and the export of every order (kept apart or held) and timeline entry."""

from datetime import timedelta

import pytest
from archive_fakes import InMemoryCustomers
from test_archive_erasure import confirmed, erasure
from test_archive_orders import T0, Clock, ev, placed, registered, run

from crm_archive import queries
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import apply_events
from crm_contracts.members import v1 as members_v1
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
    export = await queries.export(customer, repo)
    assert export.detail.customer is customer
    assert [o.order_id async for o in export.orders] == ["o0", "o1", "o2", "o3", "o4"]
    assert [e.type async for e in export.timeline] == ["order.placed"] * 5
