"""A record holds the latest facts in full and keeps the rest apart, so no customer's record can
grow towards MongoDB's 16 MB limit (after which every later event of that customer would be
dead-lettered); its figures stay those of every fact, whatever the batches were."""

import os
import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

import bson
import pytest
from archive_fakes import InMemoryCustomers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_archive_orders import T0, Clock, cancelled, complaint, placed, refunded, survey

from crm_archive.adapters.documents import to_document
from crm_archive.domain.customer import Customer
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import apply_events
from crm_archive.settings import ArchiveSettings
from crm_contracts import CloudEvent
from crm_runtime.crypto import NO_KEY, KeyRing

pytestmark = pytest.mark.unit
SMALL = ArchiveRules(orders_kept=3, complaints_kept=2, surveys_kept=2, open_tickets_kept=2)
WHOLE = ArchiveRules(
    orders_kept=10**9, complaints_kept=10**9, surveys_kept=10**9, open_tickets_kept=10**9
)
MAX_BSON = 16 * 1024 * 1024
RING = KeyRing({"k": os.urandom(32)}, "k", os.urandom(32))


async def apply_in_batches(
    events: list[CloudEvent[Any]], rules: ArchiveRules, sizes: list[int], now: Any = None
) -> InMemoryCustomers:
    repo = InMemoryCustomers()
    clock = Clock(now or T0 + timedelta(days=400))
    start = 0
    for size in [*sizes, len(events)]:
        batch = events[start : start + max(1, size)]
        if batch:
            await apply_events(batch, repo, clock=clock, rules=rules)
        start += max(1, size)
        if start >= len(events):
            break
    return repo


def figures(customer: Customer, rules: ArchiveRules) -> dict[str, Any]:
    """Everything a view shows that counts every fact (rolling windows aside)."""
    value = customer.value(T0 + timedelta(days=400), rules)
    return {
        "order_count": value.order_count,
        "net_spent": value.net_spent,
        "foreign_spent": value.foreign_spent,
        "first_order_at": value.first_order_at,
        "last_order_at": value.last_order_at,
        "average_order_value": value.average_order_value,
        "nps": value.nps,
        "csat": value.csat,
        "surveys": value.surveys,
        "complaints": customer.complaint_count,
        "stage": customer.stage,
        "grade": customer.grade,
    }


def history(seed: int, n: int) -> list[CloudEvent[Any]]:
    """One customer's orders (some in USD, some out of order), refunds and cancellations (some
    before their order, some of long-past orders), orders and complaints announced twice under
    new event ids, complaints and surveys."""
    rng = random.Random(seed)
    events: list[CloudEvent[Any]] = []
    orders: list[str] = []
    for i in range(n):
        at = T0 + timedelta(hours=rng.randrange(0, 24 * 300))
        roll = rng.random()
        if roll < 0.45 or not orders:
            order_id = f"o{i}"
            currency = "USD" if rng.random() < 0.15 else "CNY"
            events.append(placed("c", order_id, f"{rng.randrange(1, 500)}.50", at, currency))
            orders.append(order_id)
        elif roll < 0.55:
            events.append(refunded("c", rng.choice(orders), f"{rng.randrange(1, 80)}.00", at))
        elif roll < 0.62:
            events.append(cancelled("c", rng.choice(orders), at))
        elif roll < 0.67:  # a refund, then its order (delivered out of order)
            order_id = f"late{i}"
            events.append(refunded("c", order_id, "3.00", at))
            events.append(placed("c", order_id, "30.00", at - timedelta(days=3)))
            orders.append(order_id)
        elif roll < 0.72:  # announced again, another event id: counted once
            events.append(placed("c", rng.choice(orders), "999.00", at))
        elif roll < 0.85:
            events.append(complaint("c", f"k{rng.randrange(0, n)}", at))
        else:
            events.append(survey("c", f"s{rng.randrange(0, n)}", at, rng.randrange(1, 6)))
    return events


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10**6),
    n=st.integers(5, 60),
    sizes=st.lists(st.integers(1, 15), max_size=30),
)
async def test_facts_kept_apart_change_no_figure_whatever_the_batches(
    seed: int, n: int, sizes: list[int]
) -> None:
    events = history(seed, n)
    whole = await apply_in_batches(events, WHOLE, [len(events)])
    small = await apply_in_batches(events, SMALL, sizes)
    other = await apply_in_batches(events, SMALL, [1] * len(events))
    held = small.customers["c"]
    assert figures(held, SMALL) == figures(whole.customers["c"], WHOLE)
    assert len(held.active_orders()) <= SMALL.orders_kept
    assert len(held.orders) <= SMALL.orders_kept
    assert len(held.complaints) <= SMALL.complaints_kept
    assert len(held.surveys) <= SMALL.surveys_kept
    # What is held and what is kept apart depends on the facts only, not on the batches.
    document = to_document(held, NO_KEY, RING)
    assert document == to_document(other.customers["c"], NO_KEY, RING) | {
        "version": document["version"]
    }
    assert small.apart["c"] == other.apart["c"]
    assert held.earlier.stored == len(small.apart["c"])


async def test_the_latest_orders_are_held_and_the_first_order_stays_exact() -> None:
    events = [placed("c", f"o{i}", "10.00", T0 + timedelta(days=i)) for i in range(6)]
    repo = await apply_in_batches(events, SMALL, [6])
    held = repo.customers["c"]
    assert sorted(held.orders) == ["o3", "o4", "o5"]
    assert held.earlier.orders == 3
    # The first order (kept apart) is cancelled, then a held one: the next first order is the
    # earliest active order left, and the latest order kept apart is held again.
    events += [cancelled("c", "o0", T0 + timedelta(days=7)), cancelled("c", "o4", T0)]
    repo = await apply_in_batches(events, SMALL, [6, 2])
    held = repo.customers["c"]
    value = held.value(T0 + timedelta(days=10), SMALL)
    assert (value.order_count, value.net_spent) == (4, Decimal("40.00"))
    assert value.first_order_at == T0 + timedelta(days=1)
    assert sorted(held.orders) == ["o2", "o3", "o5"]


async def test_a_customer_of_100000_orders_and_complaints_stays_far_below_16_mb() -> None:
    """128-character ids, the longest the contracts allow: in full, this record would be
    ~40 MB; MongoDB refuses a document over 16 MB, and every later event of the customer would
    have been dead-lettered."""
    long = "x" * 120
    events: list[CloudEvent[Any]] = []
    for i in range(100_000):
        at = T0 + timedelta(minutes=10 * i)
        events.append(placed("c", f"{long}{i:07d}", "10.00", at))
        events.append(complaint("c", f"{long}{i:07d}", at))
    for i in range(0, 20_000):
        events.append(survey("c", f"{long}{i:07d}", T0 + timedelta(minutes=i), 5))
    rules = ArchiveRules()
    repo = InMemoryCustomers()
    for start in range(0, len(events), 5000):
        await apply_events(events[start : start + 5000], repo, clock=Clock(T0), rules=rules)
    customer = repo.customers["c"]
    size = len(bson.encode(to_document(customer, NO_KEY, RING)))
    assert size < 2 * 1024 * 1024 < MAX_BSON, f"the record is {size / 1e6:.1f} MB"
    value = customer.value(T0, rules)
    assert value.order_count == 100_000
    assert value.net_spent == Decimal("1000000.00")
    assert customer.complaint_count == 100_000
    assert value.surveys == 20_000


def test_the_largest_record_the_settings_allow_stays_under_10_mb() -> None:
    """Every kept fact at its settings' maximum, every id at 128 characters."""
    largest = ArchiveRules(
        orders_kept=20_000, complaints_kept=10_000, surveys_kept=10_000, open_tickets_kept=10_000
    )
    settings = ArchiveSettings(rules=largest)
    with pytest.raises(ValueError, match="less than or equal to 20000"):
        ArchiveSettings(rules=ArchiveRules(orders_kept=20_001))
    rules = settings.rules
    long = "x" * 121
    customer = Customer.first_sighting("c" * 128, T0, "order.placed")
    for i in range(rules.orders_kept):
        customer.place_order(f"{long}{i:07d}", T0, Decimal("123456789012.1234"), "CNY")
    for i in range(rules.complaints_kept):
        customer.complain(f"{long}{i:07d}", T0)
    for i in range(rules.surveys_kept):
        customer.answer_survey(f"{long}{i:07d}", T0, 5, 10)
    for i in range(rules.open_tickets_kept):
        customer.ticket_opened(f"{long}{i:07d}", T0)
    customer.tags = ["标" * 200] * 50
    customer.evaluate(T0, rules)
    size = len(bson.encode(to_document(customer, NO_KEY, RING)))
    print(f"the largest record: {size / 1e6:.1f} MB")
    assert size < 10 * 1024 * 1024, f"the record is {size / 1e6:.1f} MB"
