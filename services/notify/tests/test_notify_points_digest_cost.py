"""Points earned cost notify little and the digest e-mail stays what it was (issue #16).

A batch only *adds* to the day's digest: the customers whose events are all `points.earned` have
only their time zone read (no sealed preferences, no data keys: nothing is decided for them until
the digest sweep), and the batch's points and orders are added to the stored digest without
reading it first. What the customer receives is unchanged: one e-mail the next day with the
day's points, orders and latest balance, however the points were batched or redelivered.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from notify_fakes import InMemoryNotify

from crm_contracts import CloudEvent, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_notify.domain.policy import NotifyRules, Preferences
from crm_notify.handlers import apply_events, digest_sweep
from crm_notify.ports import Changes, Staff

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=SH)
RULES = NotifyRules()
_ids = iter(range(1_000_000))


class CountingNotify(InMemoryNotify):
    """The in-memory repository, recording which customers' preferences each batch read and
    what each save wrote to the digests."""

    def __init__(self) -> None:
        super().__init__()
        self.read_preferences: list[str] = []
        self.digest_writes: list[dict[str, tuple[int, int, int]]] = []

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        self.read_preferences += customer_ids
        return await super().preferences(customer_ids)

    async def save(self, changes: Changes) -> None:
        self.digest_writes.append(
            {i: (d.points, d.orders, d.balance) for i, d in changes.digests.items()}
        )
        await super().save(changes)


def ev(event_type: str, customer: str, data: Any, at: datetime = NOON) -> CloudEvent[Any]:
    return new_event(
        event_type, source="t", subject=customer, data=data, id=f"p{next(_ids)}", time=at
    )


def earned(customer: str, points: int, balance: int, at: datetime = NOON) -> CloudEvent[Any]:
    data = loyalty_v1.PointsEarned(points=points, order_id=f"o{next(_ids)}", balance=balance)
    return ev(loyalty_v1.POINTS_EARNED, customer, data, at)


def registered(customer: str) -> CloudEvent[Any]:
    data = members_v1.CustomerRegistered(name="李雷", email=f"{customer}@example.com")
    return ev(members_v1.CUSTOMER_REGISTERED, customer, data)


async def run(repo: InMemoryNotify, *events: CloudEvent[Any]) -> None:
    await apply_events(list(events), repo, rules=RULES, staff=Staff(None), now=NOON)


async def test_a_batch_of_points_reads_no_preferences_of_customers_who_only_earned() -> None:
    """Nothing is decided for points until the sweep: the batch reads only the earners' time
    zones, not their sealed preferences (before: every customer's, opened with their key)."""
    repo = CountingNotify()
    await run(repo, registered("c1"), registered("c2"))
    repo.read_preferences.clear()
    await run(repo, earned("c1", 10, 10), earned("c2", 5, 5), earned("c1", 25, 35))
    assert repo.read_preferences == []
    assert repo.digest_writes[-1] == {"c1/2026-11-23": (35, 2, 35), "c2/2026-11-23": (5, 1, 5)}


async def test_a_customer_with_other_events_in_the_batch_is_read_once_for_all_of_them() -> None:
    repo = CountingNotify()
    await run(repo, registered("c1"))
    repo.read_preferences.clear()
    opened = tickets_v1.TicketOpened(
        ticket_id="T-1",
        channel="phone",
        category="delivery",
        severity="high",
        priority="P2",
        queue="delivery",
    )
    await run(repo, earned("c1", 10, 10), ev(tickets_v1.TICKET_OPENED, "c1", opened))
    assert repo.read_preferences == ["c1"]
    assert len(repo.by_template("ticket_ack")) == 1
    assert repo.digest_writes[-1] == {"c1/2026-11-23": (10, 1, 10)}


async def test_the_digest_is_the_same_however_the_points_are_batched_or_redelivered() -> None:
    """Three orders in three batches, one batch delivered twice: one e-mail the next day with
    the day's points and orders and the latest balance, as when they came in one batch."""
    repo = InMemoryNotify()
    await run(repo, registered("c1"))
    first, second, third = earned("c1", 10, 10), earned("c1", 25, 35), earned("c1", 5, 40)
    await run(repo, first)
    await run(repo, second, third)
    await run(repo, second, third)  # redelivered after a crash before the offsets' commit
    await run(repo, first)
    [stored] = repo.digests_.values()
    assert (stored.points, stored.orders, stored.balance) == (40, 3, 40)
    await digest_sweep(NOON + timedelta(days=1), repo, rules=RULES)
    await digest_sweep(NOON + timedelta(days=1), repo, rules=RULES)
    [digest] = repo.by_template("points_digest")
    assert "您在 2026-11-23 通过 3 笔订单获得 40 积分，当前余额 40" in digest.body
    assert repo.digests_ == {}


async def test_points_count_for_the_customers_local_day_read_from_their_time_zone() -> None:
    """Noon in Shanghai is the evening before in Los Angeles: the digest of the 22nd there."""
    repo = InMemoryNotify()
    await run(repo, registered("c1"))
    repo.prefs["c1"].time_zone = "America/Los_Angeles"
    await run(repo, earned("c1", 10, 10), earned("c2", 7, 7))  # c2: no preferences, Shanghai
    assert sorted(repo.digests_) == ["c1/2026-11-22", "c2/2026-11-23"]


async def test_points_other_than_an_orders_make_no_digest() -> None:
    repo = InMemoryNotify()
    welcome = loyalty_v1.PointsEarned(points=100, reason="welcome", balance=100)
    batch = [ev(loyalty_v1.POINTS_EARNED, "c1", welcome), earned("c1", 0, 100)]
    await run(repo, *batch)
    assert repo.digests_ == {}
    assert repo.processed == set()  # nothing to add, now or ever: no inbox mark (ADR 0025)
    await run(repo, *batch)  # delivered again
    assert repo.digests_ == {}
    assert repo.outbox == []
