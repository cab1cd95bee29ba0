"""Points are exactly right: earning, refunds, cancellations, redemptions, expiry, tiers."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from loyalty_fakes import InMemoryAccounts

from crm_contracts import CloudEvent, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1
from crm_loyalty.domain.account import Account, InsufficientPointsError
from crm_loyalty.domain.rules import LoyaltyRules, Promotion, add_months
from crm_loyalty.handlers import (
    apply_events,
    birthday_sweep,
    expiry_sweep,
    tier_sweep,
    to_message,
)

pytestmark = pytest.mark.unit
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = LoyaltyRules(welcome_bonus=0)
_ids = iter(range(1_000_000))


def ev(event_type: str, customer: str, at: datetime, data: Any) -> CloudEvent[Any]:
    return new_event(
        event_type, source="test", subject=customer, data=data, id=f"e{next(_ids)}", time=at
    )


def placed(
    customer: str, order: str, amount: str, at: datetime = T0, **extra: Any
) -> CloudEvent[Any]:
    data = orders_v1.OrderPlaced(order_id=order, amount=Decimal(amount), currency="CNY", **extra)
    return ev(orders_v1.ORDER_PLACED, customer, at, data)


def refunded(customer: str, order: str, amount: str, at: datetime = T0) -> CloudEvent[Any]:
    data = orders_v1.OrderRefunded(order_id=order, amount=Decimal(amount))
    return ev(orders_v1.ORDER_REFUNDED, customer, at, data)


def cancelled(customer: str, order: str, at: datetime = T0) -> CloudEvent[Any]:
    return ev(orders_v1.ORDER_CANCELLED, customer, at, orders_v1.OrderCancelled(order_id=order))


def registered(customer: str, at: datetime = T0, birthday: date | None = None) -> CloudEvent[Any]:
    data = members_v1.CustomerRegistered(name="Li Lei", birthday=birthday)
    return ev(members_v1.CUSTOMER_REGISTERED, customer, at, data)


async def run(
    repo: InMemoryAccounts, *events: CloudEvent[Any], rules: LoyaltyRules = RULES
) -> None:
    await apply_events(list(events), repo, rules=rules)


def account(repo: InMemoryAccounts, customer: str) -> Account:
    return repo.accounts[customer]


async def test_an_order_earns_one_point_per_yuan_rounded_down() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, placed("c1", "o1", "99.99"))
    assert account(repo, "c1").balance == 99
    assert repo.published("c1") == [loyalty_v1.POINTS_EARNED]
    earned = repo.outbox[0].event.data
    assert (earned.points, earned.order_id, earned.balance) == (99, "o1", 99)
    assert earned.expires_at == datetime(2028, 3, 1, 12, 0, tzinfo=UTC)  # 24 months


async def test_the_same_order_delivered_three_times_credits_once() -> None:
    repo = InMemoryAccounts(RULES)
    event = placed("c1", "o1", "100")
    await run(repo, event, event)
    await run(repo, event)
    await run(repo, placed("c1", "o1", "100"))  # the same order under another event id
    assert account(repo, "c1").balance == 100
    assert len(repo.ledger) == 1
    assert repo.published("c1") == [loyalty_v1.POINTS_EARNED]


async def test_a_currency_without_a_rate_earns_nothing() -> None:
    repo = InMemoryAccounts(RULES)
    await run(
        repo,
        ev(
            orders_v1.ORDER_PLACED,
            "c1",
            T0,
            orders_v1.OrderPlaced(order_id="o1", amount=Decimal(100), currency="USD"),
        ),
    )
    assert account(repo, "c1").balance == 0
    assert repo.ledger == {}


async def test_a_partial_refund_reverses_the_refunded_share_and_a_full_refund_all() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, placed("c1", "o1", "333"), refunded("c1", "o1", "100"))
    assert account(repo, "c1").balance == 233
    await run(repo, refunded("c1", "o1", "233"))
    assert account(repo, "c1").balance == 0
    await run(repo, refunded("c1", "o1", "50"))  # more than was left: nothing more to reverse
    assert account(repo, "c1").balance == 0
    assert [e.points for e in repo.ledger.values()] == [333, -100, -233]


async def test_a_cancellation_reverses_what_the_order_still_holds() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, placed("c1", "o1", "200"), refunded("c1", "o1", "50"), cancelled("c1", "o1"))
    assert account(repo, "c1").balance == 0
    reversals = [m.event.data for m in repo.outbox if m.event.type == loyalty_v1.POINTS_REVERSED]
    assert [(r.points, r.reason) for r in reversals] == [(50, "refund"), (150, "cancellation")]


async def test_a_refund_of_spent_points_is_recorded_debt_repaid_by_later_earnings() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, placed("c1", "o1", "100"))
    acc = account(repo, "c1")
    acc.redeem("r1", 80, T0)
    repo.accounts["c1"] = acc
    await run(repo, refunded("c1", "o1", "100"))
    acc = account(repo, "c1")
    assert (acc.balance, acc.debt) == (-80, 80)
    with pytest.raises(InsufficientPointsError):
        acc.redeem("r2", 1, T0)
    await run(repo, placed("c1", "o2", "50"))
    acc = account(repo, "c1")
    assert (acc.balance, acc.debt) == (-30, 30)
    await run(repo, placed("c1", "o3", "50"))
    acc = account(repo, "c1")
    assert (acc.balance, acc.debt) == (20, 0)


async def test_points_of_an_order_that_already_expired_are_not_taken_twice() -> None:
    repo = InMemoryAccounts(RULES)
    await run(
        repo, placed("c1", "o1", "100"), placed("c1", "o2", "40", at=T0 + timedelta(days=400))
    )
    await expiry_sweep(add_months(T0, 24), repo, rules=RULES)
    assert account(repo, "c1").balance == 40
    await run(repo, refunded("c1", "o1", "100", at=add_months(T0, 24) + timedelta(days=1)))
    assert account(repo, "c1").balance == 40


async def test_redemption_spends_the_earliest_expiring_points_first() -> None:
    repo = InMemoryAccounts(RULES)
    await run(
        repo, placed("c1", "o1", "100"), placed("c1", "o2", "100", at=T0 + timedelta(days=30))
    )
    acc = account(repo, "c1")
    entry = acc.redeem("r1", 150, T0 + timedelta(days=31))
    assert entry.lots == {acc.lots[0].lot_id: -100, acc.lots[1].lot_id: -50}
    with pytest.raises(InsufficientPointsError):
        acc.redeem("r2", 51, T0 + timedelta(days=31))
    assert acc.balance == 50


async def test_the_expiry_sweep_expires_exactly_the_due_lots_and_warns_once_before() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, placed("c1", "o1", "100"), placed("c1", "o2", "70", at=T0 + timedelta(days=1)))
    due = add_months(T0, 24)
    await expiry_sweep(due - timedelta(days=29), repo, rules=RULES)
    await expiry_sweep(due - timedelta(days=28), repo, rules=RULES)
    warnings = [
        m.event.data for m in repo.outbox if m.event.type == loyalty_v1.POINTS_EXPIRING_SOON
    ]
    assert [w.points for w in warnings] == [100, 70]  # once per lot
    await expiry_sweep(due, repo, rules=RULES)
    assert account(repo, "c1").balance == 70
    expired = [m.event.data for m in repo.outbox if m.event.type == loyalty_v1.POINTS_EXPIRED]
    assert [e.points for e in expired] == [100]
    await expiry_sweep(due, repo, rules=RULES)  # again: nothing more
    assert account(repo, "c1").balance == 70 == repo.sum_of_ledger("c1")


async def test_tiers_follow_points_earned_in_twelve_months_not_the_balance() -> None:
    rules = LoyaltyRules(
        welcome_bonus=0,
        tier_thresholds={"standard": 0, "silver": 1000, "gold": 5000, "diamond": 20000},
    )
    repo = InMemoryAccounts(rules)
    await run(repo, placed("c1", "o1", "1200"), rules=rules)
    acc = account(repo, "c1")
    assert acc.tier == "silver"
    assert repo.published("c1") == [loyalty_v1.POINTS_EARNED, loyalty_v1.TIER_CHANGED]
    acc.redeem("r1", 1200, T0)  # spending keeps the tier
    repo.accounts["c1"] = acc
    await tier_sweep(T0 + timedelta(days=10), repo, rules=rules)
    assert account(repo, "c1").tier == "silver"
    # A silver earns 1.25x: 100 CNY -> 125 points.
    await run(repo, placed("c1", "o2", "100", at=T0 + timedelta(days=20)), rules=rules)
    assert account(repo, "c1").balance == 125
    # Twelve months after the first order it leaves the window: the sweep demotes.
    await tier_sweep(T0 + timedelta(days=366), repo, rules=rules)
    assert account(repo, "c1").tier == "standard"
    changes = [m.event.data for m in repo.outbox if m.event.type == loyalty_v1.TIER_CHANGED]
    assert [(c.previous_tier, c.tier) for c in changes] == [
        ("standard", "silver"),
        ("silver", "standard"),
    ]


async def test_a_refund_lowers_qualifying_points_and_the_sweep_demotes() -> None:
    rules = LoyaltyRules(
        welcome_bonus=0,
        tier_thresholds={"standard": 0, "silver": 1000, "gold": 5000, "diamond": 20000},
    )
    repo = InMemoryAccounts(rules)
    await run(repo, placed("c1", "o1", "1000"), refunded("c1", "o1", "500"), rules=rules)
    assert account(repo, "c1").tier == "silver"
    await tier_sweep(T0 + timedelta(hours=1), repo, rules=rules)
    assert account(repo, "c1").tier == "standard"


async def test_promotions_multiply_by_date_and_channel_without_stacking() -> None:
    rules = LoyaltyRules(
        welcome_bonus=0,
        promotions=(
            Promotion("双11", T0, T0 + timedelta(days=1), Decimal(3), ("app",)),
            Promotion("spring", T0, T0 + timedelta(days=30), Decimal(2)),
        ),
    )
    repo = InMemoryAccounts(rules)
    await run(
        repo,
        placed("c1", "o1", "10", channel="app"),
        placed("c1", "o2", "10", channel="web"),
        placed("c1", "o3", "10", at=T0 + timedelta(days=31), channel="app"),
        rules=rules,
    )
    assert [e.points for e in repo.ledger.values()] == [30, 20, 10]


async def test_welcome_bonus_once_and_birthday_bonus_once_a_year() -> None:
    rules = LoyaltyRules(welcome_bonus=100, birthday_bonus=200)
    repo = InMemoryAccounts(rules)
    await run(repo, registered("c1", birthday=date(1990, 3, 5)), rules=rules)
    await run(repo, registered("c1", birthday=date(1990, 3, 5)), rules=rules)
    assert account(repo, "c1").balance == 100
    birthday = datetime(2026, 3, 5, 1, 0, tzinfo=UTC)
    await birthday_sweep(birthday - timedelta(days=1), repo, rules=rules)
    await birthday_sweep(birthday, repo, rules=rules)
    await birthday_sweep(birthday + timedelta(hours=5), repo, rules=rules)
    assert account(repo, "c1").balance == 300
    await birthday_sweep(birthday.replace(year=2027), repo, rules=rules)
    assert account(repo, "c1").balance == 500
    reasons = [m.event.data.reason for m in repo.outbox if m.event.type == loyalty_v1.POINTS_EARNED]
    assert reasons == ["welcome", "birthday", "birthday"]


def test_a_leap_day_birthday_is_celebrated_on_the_28th_in_other_years() -> None:
    assert LoyaltyRules.is_birthday(date(2000, 2, 29), date(2027, 2, 28))
    assert not LoyaltyRules.is_birthday(date(2000, 2, 29), date(2028, 2, 28))
    assert LoyaltyRules.is_birthday(date(2000, 2, 29), date(2028, 2, 29))


def test_lots_expire_on_the_same_day_24_months_later_or_the_months_last_day() -> None:
    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 11, 30, tzinfo=UTC), 24) == datetime(2028, 11, 30, tzinfo=UTC)


async def test_a_refund_before_its_order_is_reconciled_when_the_order_arrives() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, refunded("c1", "o1", "40"), placed("c1", "o1", "100"))
    assert account(repo, "c1").balance == 60
    await run(repo, cancelled("c1", "o2"), placed("c1", "o2", "100"))
    assert account(repo, "c1").balance == 60


async def test_a_refund_of_spent_points_takes_other_points_before_recording_debt() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, placed("c1", "o1", "100"), placed("c1", "o2", "30"))
    acc = account(repo, "c1")
    acc.redeem("r1", 100, T0)  # spends o1's lot (earliest expiry, earliest earned)
    repo.accounts["c1"] = acc
    await run(repo, refunded("c1", "o1", "100"))
    acc = account(repo, "c1")
    assert (acc.balance, acc.debt) == (-70, 70)
    assert [lot.remaining for lot in acc.lots] == [0, 0]


async def test_an_erasure_forgets_the_birthday_keeps_the_points_and_confirms_once() -> None:
    repo = InMemoryAccounts(RULES)
    await run(repo, registered("c1", birthday=date(1990, 5, 4)), placed("c1", "o1", "100.00"))
    erase = ev(
        members_v1.CUSTOMER_ERASURE_REQUESTED,
        "c1",
        T0 + timedelta(hours=1),
        members_v1.CustomerErasureRequested(),
    )
    await run(repo, erase)
    await run(repo, erase)  # redelivered
    assert account(repo, "c1").birthday is None
    assert account(repo, "c1").balance == 100
    assert repo.erased == {"c1"}
    confirmations = [m.event for m in repo.outbox if m.event.type == "customer.erasure_completed"]
    assert [(e.subject, e.data.service) for e in confirmations] == [("c1", "loyalty")]
    assert "ledger figures" in confirmations[0].data.kept


def test_an_adjustment_publishes_its_kind_and_keeps_the_staff_text_in_the_ledger() -> None:
    account = Account("c1", T0)
    goodwill = account.adjust("k1", 50, "张三投诉补偿 (by a1)", T0, RULES)
    correction = account.adjust("k2", -20, "重复发放 (by a1)", T0, RULES)
    assert goodwill.reason == "张三投诉补偿 (by a1)"
    published = [to_message(account, entry).event.data for entry in (goodwill, correction)]
    assert [(d.points, d.reason) for d in published] == [(50, "goodwill"), (-20, "correction")]
