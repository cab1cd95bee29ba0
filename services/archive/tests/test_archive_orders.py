"""How events change a customer's record, and that a redelivered event changes nothing."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers

from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import apply_events, review
from crm_contracts import CloudEvent, new_event
from crm_contracts.callcenter import v1 as callcenter_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = ArchiveRules()


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


_ids = iter(range(1_000_000))


def ev(
    event_type: str, customer: str, at: datetime, data: Any, event_id: str | None = None
) -> CloudEvent[Any]:
    return new_event(
        event_type,
        source="test",
        subject=customer,
        data=data,
        time=at,
        id=event_id or f"e{next(_ids)}",
    )


def placed(
    customer: str,
    order_id: str,
    amount: str,
    at: datetime,
    currency: str = "CNY",
    event_id: str | None = None,
) -> CloudEvent[Any]:
    return ev(
        orders_v1.ORDER_PLACED,
        customer,
        at,
        orders_v1.OrderPlaced(order_id=order_id, amount=Decimal(amount), currency=currency),
        event_id,
    )


def refunded(customer: str, order_id: str, amount: str, at: datetime) -> CloudEvent[Any]:
    return ev(
        orders_v1.ORDER_REFUNDED,
        customer,
        at,
        orders_v1.OrderRefunded(order_id=order_id, amount=Decimal(amount)),
    )


def cancelled(customer: str, order_id: str, at: datetime) -> CloudEvent[Any]:
    return ev(orders_v1.ORDER_CANCELLED, customer, at, orders_v1.OrderCancelled(order_id=order_id))


def complaint(customer: str, complaint_id: str, at: datetime) -> CloudEvent[Any]:
    return ev(
        callcenter_v1.COMPLAINT_REPORTED,
        customer,
        at,
        callcenter_v1.ComplaintReported(
            complaint_id=complaint_id, channel="phone", description="包裹破损"
        ),
    )


def survey(customer: str, survey_id: str, at: datetime, csat: int) -> CloudEvent[Any]:
    return ev(
        callcenter_v1.SURVEY_ANSWERED,
        customer,
        at,
        callcenter_v1.SurveyAnswered(survey_id=survey_id, csat=csat, nps=csat * 2),
    )


def registered(customer: str, at: datetime, phone: str = "+86 13800138000") -> CloudEvent[Any]:
    return ev(
        members_v1.CUSTOMER_REGISTERED,
        customer,
        at,
        members_v1.CustomerRegistered(name="李雷", phone=phone, email="li.lei@example.com"),
    )


async def run(repo: InMemoryCustomers, *events: CloudEvent[Any], now: datetime = T0) -> int:
    return await apply_events(list(events), repo, clock=Clock(now), rules=RULES)


async def test_a_first_order_creates_a_stub_customer_that_is_new() -> None:
    repo = InMemoryCustomers()
    await run(repo, placed("c1", "o1", "10.50", T0))
    customer = repo.customers["c1"]
    value = customer.value(T0, RULES)
    assert customer.stub
    assert (value.order_count, value.net_spent) == (1, Decimal("10.50"))
    assert customer.stage == "new"
    assert customer.grade == "ordinary"
    assert repo.published("c1") == [
        "customer.created",
        "customer.grade_changed",
        "customer.lifecycle_changed",
    ]


async def test_net_spend_subtracts_refunds_and_cancellations() -> None:
    repo = InMemoryCustomers()
    await run(
        repo,
        placed("c1", "o1", "100.00", T0 - timedelta(days=3)),
        placed("c1", "o2", "50.00", T0 - timedelta(days=2)),
        placed("c1", "o3", "30.00", T0 - timedelta(days=1)),
        refunded("c1", "o1", "40.00", T0),
        cancelled("c1", "o3", T0),
    )
    value = repo.customers["c1"].value(T0, RULES)
    assert value.order_count == 2
    assert value.net_spent == Decimal("110.00")
    assert value.last_order_at == T0 - timedelta(days=2), "a cancelled order is not an order"
    assert value.average_order_value == Decimal("55.00")


async def test_a_refund_before_its_order_still_counts() -> None:
    repo = InMemoryCustomers()
    await run(repo, refunded("c1", "o1", "5.00", T0))
    await run(repo, placed("c1", "o1", "20.00", T0 - timedelta(hours=1)))
    assert repo.customers["c1"].value(T0, RULES).net_spent == Decimal("15.00")


async def test_a_redelivered_event_and_a_reannounced_order_count_once() -> None:
    repo = InMemoryCustomers()
    event = placed("c1", "o1", "10.00", T0, event_id="same")
    await run(repo, event, event)
    assert await run(repo, event) == 0
    await run(repo, placed("c1", "o1", "10.00", T0))  # new event id, same order id
    assert repo.customers["c1"].value(T0, RULES).order_count == 1
    assert repo.published("c1").count("customer.created") == 1


async def test_a_complaint_before_the_registration_ends_in_the_same_record() -> None:
    in_order, reversed_order = InMemoryCustomers(), InMemoryCustomers()
    reg, comp = registered("c1", T0 - timedelta(days=1)), complaint("c1", "k1", T0)
    await run(in_order, reg)
    await run(in_order, comp)
    await run(reversed_order, comp)
    await run(reversed_order, reg)
    a, b = in_order.customers["c1"], reversed_order.customers["c1"]
    assert a.profile == b.profile
    assert a.complaints == b.complaints
    assert (a.registered_at, a.first_seen_at, a.stub) == (b.registered_at, b.first_seen_at, False)


# -- lifecycle stage at its boundaries (defaults: new 30 d, at-risk 90 d, churned 180 d, loyal 5) --
@pytest.mark.parametrize(
    ("orders_days_ago", "stage"),
    [
        ([], "potential"),
        ([30], "new"),
        ([31], "one_time"),
        ([180], "one_time"),
        ([181], "churned"),
        ([200, 90], "active"),
        ([200, 91], "at_risk"),
        ([300, 250, 200, 150, 100, 10], "loyal"),
        ([400, 300, 250, 200, 10], "active"),
        ([10, 5], "new"),
    ],
)
async def test_lifecycle_stage(orders_days_ago: list[int], stage: str) -> None:
    repo = InMemoryCustomers()
    events = [
        placed("c1", f"o{i}", "10", T0 - timedelta(days=d)) for i, d in enumerate(orders_days_ago)
    ]
    events = events or [complaint("c1", "k", T0)]
    await run(repo, *events)
    assert repo.customers["c1"].stage == stage


# -- grade: VIP by spend in the window (>= 10000) or by R+F+M (>= 13) ---------------------------
@pytest.mark.parametrize(
    ("amounts", "grade"),
    [
        ([], "potential"),
        (["9999.99"], "ordinary"),
        (["10000.00"], "vip"),
        (["100"] * 8, "ordinary"),  # R5 + F5 + M2 = 12
        (["300"] * 8, "vip"),  # R5 + F5 + M3 = 13
    ],
)
async def test_grade(amounts: list[str], grade: str) -> None:
    repo = InMemoryCustomers()
    events = [placed("c1", f"o{i}", a, T0 - timedelta(days=i + 1)) for i, a in enumerate(amounts)]
    await run(repo, *(events or [complaint("c1", "k", T0)]))
    assert repo.customers["c1"].grade == grade


async def test_time_moves_a_customer_through_the_stages_by_the_review_sweep() -> None:
    repo = InMemoryCustomers()
    await run(repo, placed("c1", "o1", "10", T0), placed("c1", "o2", "10", T0 + timedelta(days=1)))
    assert repo.customers["c1"].stage == "new"
    for days, stage in [(40, "active"), (92, "at_risk"), (182, "churned")]:
        await review(T0 + timedelta(days=days), repo, rules=RULES)
        assert repo.customers["c1"].stage == stage, days
    assert repo.published("c1").count("customer.lifecycle_changed") == 4


# -- churn early-warning --------------------------------------------------------------------------
async def test_a_purchase_interval_that_doubles_raises_the_risk_and_an_order_clears_it() -> None:
    repo = InMemoryCustomers()
    await run(
        repo,
        *[placed("c1", f"o{i}", "100", T0 + timedelta(days=10 * i)) for i in range(4)],
        now=T0 + timedelta(days=30),
    )
    last = T0 + timedelta(days=30)
    await review(last + timedelta(days=19), repo, rules=RULES)
    assert repo.customers["c1"].churn_reasons == [], "1.9x the median interval: not yet"
    await review(last + timedelta(days=20), repo, rules=RULES)
    assert repo.customers["c1"].churn_reasons == ["purchase_interval"]
    assert repo.customers["c1"].churn_risk_since == last + timedelta(days=20)
    await run(
        repo, placed("c1", "o9", "10", last + timedelta(days=21)), now=last + timedelta(days=21)
    )
    assert repo.customers["c1"].churn_reasons == []
    assert repo.published("c1")[-1] == "customer.churn_risk_cleared"
    assert repo.published("c1").count("customer.churn_risk_raised") == 1


async def test_two_complaints_in_30_days_raise_the_risk_and_one_does_not() -> None:
    repo = InMemoryCustomers()
    await run(
        repo,
        placed("c1", "o1", "100", T0 - timedelta(days=60)),
        complaint("c1", "k1", T0 - timedelta(days=31)),
        complaint("c1", "k2", T0),
    )
    assert repo.customers["c1"].churn_reasons == [], "31 days apart"
    await run(repo, complaint("c1", "k3", T0 + timedelta(days=29)), now=T0 + timedelta(days=29))
    assert repo.customers["c1"].churn_reasons == ["complaints"]
    await run(repo, placed("c1", "o2", "100", T0 + timedelta(days=30)), now=T0 + timedelta(days=30))
    assert repo.customers["c1"].churn_reasons == [], "a new order clears it"


@pytest.mark.parametrize(("csat", "at_risk"), [(2, True), (3, False)])
async def test_a_low_csat_raises_the_risk(csat: int, at_risk: bool) -> None:
    repo = InMemoryCustomers()
    await run(repo, placed("c1", "o1", "100", T0 - timedelta(days=1)), survey("c1", "s1", T0, csat))
    assert bool(repo.customers["c1"].churn_reasons) is at_risk


async def test_the_timeline_holds_every_interaction_without_personal_data() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), placed("c1", "o1", "5", T0), complaint("c1", "k", T0))
    assert [e.type for e in repo.timeline] == [
        "customer.registered",
        "order.placed",
        "complaint.reported",
    ]
    text = repr([e.data for e in repo.timeline])
    assert "李雷" not in text
    assert "13800138000" not in text
    assert "包裹破损" not in text
