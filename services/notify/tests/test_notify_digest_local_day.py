"""Every point earned is in exactly one points digest e-mail, sent after the customer's own
local day has closed (not the UTC day), and points that arrive after their day's digest was
sent are sent too, once (review of issue #16: "nothing lost").

Before: the sweep took digests whose day was before the UTC date, so a customer west of UTC had
their digest sent while their day was still running, and points added to a day whose digest
was made went into a new digest with the same message id: deleted without any e-mail.
"""

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from notify_fakes import InMemoryNotify

from crm_contracts import CloudEvent, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_notify.domain.digest import Digest, day_closes
from crm_notify.domain.policy import NotifyRules, Preferences
from crm_notify.handlers import DIGEST_REDOS, apply_events, digest_sweep
from crm_notify.ports import Staff
from crm_runtime.errors import ConcurrencyConflictError

pytestmark = pytest.mark.unit
LA = ZoneInfo("America/Los_Angeles")
RULES = NotifyRules()
_ids = iter(range(1_000_000))


def earned(customer: str, points: int, balance: int, at: datetime) -> CloudEvent[Any]:
    data = loyalty_v1.PointsEarned(points=points, order_id=f"o{next(_ids)}", balance=balance)
    return new_event(
        loyalty_v1.POINTS_EARNED,
        source="t",
        subject=customer,
        data=data,
        id=f"d{next(_ids)}",
        time=at,
    )


async def run(repo: InMemoryNotify, *events: CloudEvent[Any], now: datetime) -> None:
    await apply_events(list(events), repo, rules=RULES, staff=Staff(None), now=now)


async def in_los_angeles(repo: InMemoryNotify, customer: str) -> None:
    data = members_v1.CustomerRegistered(name="Lei", email=f"{customer}@example.com")
    event = new_event(
        members_v1.CUSTOMER_REGISTERED,
        source="t",
        subject=customer,
        data=data,
        id=f"r{next(_ids)}",
        time=datetime(2026, 11, 1, tzinfo=UTC),
    )
    await run(repo, event, now=event.time)
    repo.prefs[customer].time_zone = "America/Los_Angeles"  # as a PUT /preferences sets it


def sent(repo: InMemoryNotify) -> list[tuple[int, int]]:
    """(orders, points) of each digest message, sorted."""
    found = []
    for n in repo.by_template("points_digest"):
        match = re.search(r"(\d+) 笔订单获得 (\d+) 积分", n.body)
        assert match, n.body
        found.append((int(match[1]), int(match[2])))
    return sorted(found)


async def test_points_at_23_00_in_los_angeles_are_in_the_digest_sent_after_their_midnight() -> None:
    """At 00:30 UTC it is 16:30 the day before in Los Angeles: their day is running, nothing is
    sent; the points earned at 23:00 there are in the one digest sent after their midnight."""
    repo = InMemoryNotify()
    await in_los_angeles(repo, "c1")
    morning = datetime(2026, 11, 22, 10, 0, tzinfo=LA)
    await run(repo, earned("c1", 10, 10, morning), now=morning)
    await digest_sweep(datetime(2026, 11, 23, 0, 30, tzinfo=UTC), repo, rules=RULES)
    assert sent(repo) == [], "sent while the customer's day was still running"
    late_evening = datetime(2026, 11, 22, 23, 0, tzinfo=LA)
    await run(repo, earned("c1", 25, 35, late_evening), now=late_evening)
    await digest_sweep(datetime(2026, 11, 22, 23, 59, tzinfo=LA), repo, rules=RULES)
    assert sent(repo) == []
    await digest_sweep(datetime(2026, 11, 23, 0, 30, tzinfo=LA), repo, rules=RULES)
    assert sent(repo) == [(2, 35)]
    assert repo.digests_ == {}


async def test_points_arriving_after_their_days_digest_was_sent_are_a_second_email() -> None:
    """A delayed `points.earned` for a day whose digest was sent makes a second message with
    those points (its own id), not a digest deleted unsent."""
    repo = InMemoryNotify()
    await in_los_angeles(repo, "c1")
    noon = datetime(2026, 11, 22, 12, 0, tzinfo=LA)
    await run(repo, earned("c1", 10, 10, noon), now=noon)
    next_morning = datetime(2026, 11, 23, 8, 0, tzinfo=LA)
    await digest_sweep(next_morning, repo, rules=RULES)
    assert sent(repo) == [(1, 10)]
    delayed = earned("c1", 7, 17, datetime(2026, 11, 22, 18, 0, tzinfo=LA))
    await run(repo, delayed, now=next_morning)
    await digest_sweep(next_morning, repo, rules=RULES)
    assert sent(repo) == [(1, 7), (1, 10)], "the delayed points were dropped"
    assert repo.digests_ == {}


async def test_redelivered_points_and_repeated_sweeps_send_nothing_twice() -> None:
    """The same late event delivered again, and the sweep run again, make no other message."""
    repo = InMemoryNotify()
    await in_los_angeles(repo, "c1")
    noon = datetime(2026, 11, 22, 12, 0, tzinfo=LA)
    await run(repo, earned("c1", 10, 10, noon), now=noon)
    next_morning = datetime(2026, 11, 23, 8, 0, tzinfo=LA)
    await digest_sweep(next_morning, repo, rules=RULES)
    delayed = earned("c1", 7, 17, noon)
    for _ in range(2):
        await run(repo, delayed, now=next_morning)
        await digest_sweep(next_morning, repo, rules=RULES)
        await digest_sweep(next_morning, repo, rules=RULES)
    assert sent(repo) == [(1, 7), (1, 10)]
    third = earned("c1", 3, 20, noon)  # a third late part: its own message again
    await run(repo, third, now=next_morning)
    await digest_sweep(next_morning, repo, rules=RULES)
    assert sent(repo) == [(1, 3), (1, 7), (1, 10)]


class AddingWhileSweeping(InMemoryNotify):
    """A batch adds points to a digest after the sweep read it, before the sweep saves."""

    def __init__(self) -> None:
        super().__init__()
        self.during_sweep: list[CloudEvent[Any]] = []

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        if self.during_sweep:
            events, self.during_sweep = self.during_sweep, []
            await run(self, *events, now=events[0].time)
        return await super().preferences(customer_ids)


async def test_points_added_while_the_sweep_sends_their_digest_are_not_deleted_unsent() -> None:
    """The sweep deletes a digest only as it read it: points added in between make it a
    conflict, the sweep reads and makes that page again, and every point is in one message."""
    repo = AddingWhileSweeping()
    await in_los_angeles(repo, "c1")
    noon = datetime(2026, 11, 22, 12, 0, tzinfo=LA)
    await run(repo, earned("c1", 10, 10, noon), now=noon)
    next_morning = datetime(2026, 11, 23, 8, 0, tzinfo=LA)
    repo.during_sweep = [earned("c1", 5, 15, noon)]
    await digest_sweep(next_morning, repo, rules=RULES)
    assert repo.during_sweep == [], "the points were not added during the sweep"
    assert sum(points for _, points in sent(repo)) == 15
    assert sum(orders for orders, _ in sent(repo)) == 2


async def test_a_digest_stored_before_closes_at_is_sent_once_its_day_ended_everywhere() -> None:
    """Digests stored by the former version have no `closes_at`: sent when their day has ended
    in every zone (the next day 12:00 UTC, midnight at UTC−12), not before."""
    repo = InMemoryNotify()
    await in_los_angeles(repo, "c1")
    repo.digests_["c1/2026-11-22"] = Digest("c1", date(2026, 11, 22), 10, 1, 10)
    await digest_sweep(datetime(2026, 11, 23, 11, 59, tzinfo=UTC), repo, rules=RULES)
    assert sent(repo) == []
    await digest_sweep(datetime(2026, 11, 23, 12, 0, tzinfo=UTC), repo, rules=RULES)
    assert sent(repo) == [(1, 10)]


def test_a_local_day_closes_at_its_next_midnight_there_across_clock_changes() -> None:
    """The instant a day closes follows the zone's clock changes; a midnight the clocks skip
    (Santiago moves 00:00 to 01:00) closes the day when the next day starts."""
    assert day_closes(date(2026, 10, 31), LA) == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)  # PDT
    assert day_closes(date(2026, 11, 1), LA) == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # PST
    santiago = ZoneInfo("America/Santiago")
    assert day_closes(date(2026, 9, 5), santiago) == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)
    assert datetime(2026, 9, 6, 4, 0, tzinfo=UTC).astimezone(santiago).hour == 1


class AlwaysAdding(AddingWhileSweeping):
    """Points are added to the digest every time the sweep has read it (once `adding`)."""

    adding = False

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        if self.adding:
            self.during_sweep = [earned("c1", 1, 0, datetime(2026, 11, 22, 12, 0, tzinfo=LA))]
        return await super().preferences(customer_ids)


async def test_a_sweep_that_keeps_meeting_new_points_ends_and_loses_nothing() -> None:
    """The sweep makes a page again a few times, not forever; what it could not send stays for
    the next run."""
    repo = AlwaysAdding()
    await in_los_angeles(repo, "c1")
    noon = datetime(2026, 11, 22, 12, 0, tzinfo=LA)
    await run(repo, earned("c1", 10, 10, noon), now=noon)
    repo.adding = True
    with pytest.raises(ConcurrencyConflictError):
        await digest_sweep(datetime(2026, 11, 23, 8, 0, tzinfo=LA), repo, rules=RULES)
    assert sent(repo) == []
    [left] = repo.digests_.values()
    assert (left.orders, left.points) == (1 + DIGEST_REDOS + 1, 10 + DIGEST_REDOS + 1)
