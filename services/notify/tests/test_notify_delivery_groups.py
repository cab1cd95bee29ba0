"""Delivery works in groups and still sends each message once (issue #16): a group of messages is
claimed, re-checked and saved with one write each, not one per message; a message another run
took over meanwhile is skipped and the rest are saved; messages whose claim would lapse before
their turn are released unsent, and the next run sends them. A sweep run drains a backlog larger
than its batch (up to its rounds), not one batch per interval."""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from notify_fakes import FakeSenders, InMemoryNotify

from crm_contracts import new_event
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_notify.delivery import GROUP, deliver
from crm_notify.domain.notification import Claim, Notification
from crm_notify.domain.policy import NotifyRules, Preferences
from crm_notify.handlers import apply_events
from crm_notify.ports import HandedOver, Staff
from crm_runtime.outbox import OutboundMessage

pytestmark = pytest.mark.unit
NOON = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
RULES = NotifyRules(retry_initial_s=10, max_attempts=4)


async def registered(repo: InMemoryNotify, count: int) -> list[str]:
    """`count` customers registered with an e-mail address: each has a welcome to send."""
    customers = [f"c{n:03}" for n in range(count)]
    events = [
        new_event(
            members_v1.CUSTOMER_REGISTERED,
            source="t",
            subject=c,
            data=members_v1.CustomerRegistered(name="李雷", email=f"{c}@example.com"),
            id=f"reg-{c}",
            time=NOON,
        )
        for c in customers
    ]
    await apply_events(events, repo, rules=RULES, staff=Staff(None), now=NOON)
    return customers


class Counting(InMemoryNotify):
    """Records the size of every claim, preferences read and save the delivery makes."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[int] = []
        self.reads: list[int] = []
        self.saves: list[int] = []

    async def claim_all(
        self, notifications: Sequence[Notification], claim: Claim
    ) -> list[Notification]:
        self.claims.append(len(notifications))
        return await super().claim_all(notifications, claim)

    async def standing(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        self.reads.append(len(customer_ids))
        return await super().standing(customer_ids)

    async def save_deliveries(
        self,
        notifications: Sequence[Notification],
        claim: Claim,
        outbound: Sequence[OutboundMessage],
    ) -> None:
        self.saves.append(len(notifications))
        await super().save_deliveries(notifications, claim, outbound)


def statuses(repo: InMemoryNotify) -> dict[str, str]:
    return {n.customer_id: n.status for n in repo.by_template("welcome")}


async def test_a_group_is_claimed_read_and_saved_with_one_write_each() -> None:
    repo = Counting()
    customers = await registered(repo, 25)
    senders = FakeSenders()
    assert await deliver(NOON, repo, senders, rules=RULES) == 25
    assert sorted(n.customer_id for n in senders.sent) == customers
    assert repo.claims == [GROUP, GROUP, 5]
    assert repo.reads == [GROUP, GROUP, 5], "each group's preferences in one read"
    assert repo.saves == [GROUP, GROUP, 5]
    assert set(statuses(repo).values()) == {"sent"}
    sent_events = [
        m.event.subject for m in repo.outbox if m.event.type == notify_v1.NOTIFICATION_SENT
    ]
    assert sorted(sent_events) == customers, "one notification.sent per message"


class TakenOverMidGroup(FakeSenders):
    """While sending the third message, another run takes the first one over (its claim lapsed
    and that run claimed it under its own token)."""

    def __init__(self, repo: InMemoryNotify) -> None:
        super().__init__()
        self.repo = repo

    async def send(self, notification: Notification, handed_over: HandedOver) -> str:
        if len(self.sent) == 2:
            first = self.sent[0].notification_id
            stored = self.repo.notifications[first]
            assert stored.claim is not None
            stored.claim = replace(stored.claim, token="another-run")
        return await super().send(notification, handed_over)


async def test_a_message_another_run_took_over_is_skipped_and_the_rest_of_its_group_saved() -> None:
    repo = Counting()
    customers = await registered(repo, 4)
    senders = TakenOverMidGroup(repo)
    assert await deliver(NOON, repo, senders, rules=RULES) == 3
    assert repo.saves == [4, 1, 1, 1, 1], "the group's save conflicted: each saved alone"
    assert statuses(repo) == {
        customers[0]: "sending",  # the other run's now: this run wrote nothing to it
        customers[1]: "sent",
        customers[2]: "sent",
        customers[3]: "sent",
    }
    sent_events = [
        m.event.subject for m in repo.outbox if m.event.type == notify_v1.NOTIFICATION_SENT
    ]
    assert sent_events == customers[1:]


class Slow(FakeSenders):
    """Each send takes 40 s of the delivery's clock."""

    def __init__(self, now: list[datetime]) -> None:
        super().__init__()
        self.now = now

    async def send(self, notification: Notification, handed_over: HandedOver) -> str:
        self.now[0] += timedelta(seconds=40)
        return await super().send(notification, handed_over)


async def test_messages_whose_claim_would_lapse_before_their_turn_are_released_unsent() -> None:
    repo = Counting()
    customers = await registered(repo, 3)
    now = [datetime.now(UTC)]
    slow = Slow(now)
    # a send may take 30 s and a claim lasts 60 s: after one 40 s send the next would overrun it
    assert (
        await deliver(NOON, repo, slow, rules=RULES, send_timeout_s=30, clock=lambda: now[0]) == 1
    )
    assert [n.customer_id for n in slow.sent] == customers[:1]
    released = [n for n in repo.by_template("welcome") if n.customer_id in customers[1:]]
    assert [(n.status, n.claim, n.attempts) for n in released] == [("queued", None, 0)] * 2
    senders = FakeSenders()
    assert await deliver(NOON, repo, senders, rules=RULES) == 2, "the next run sends them"
    assert [n.customer_id for n in senders.sent] == customers[1:]
    assert set(statuses(repo).values()) == {"sent"}


async def test_one_sweep_run_drains_a_backlog_larger_than_its_batch() -> None:
    """24,000 registrations at once queue more welcomes than the send-now worker holds: the
    sweep sent 100 per interval (50 a second); it now reads again while its reads come back
    full."""
    repo = Counting()
    customers = await registered(repo, 250)
    senders = FakeSenders()
    assert await deliver(NOON, repo, senders, rules=RULES, batch=100) == 250
    assert sorted(n.customer_id for n in senders.sent) == customers
    assert sum(repo.claims) == 250


async def test_a_sweep_run_stops_after_its_rounds() -> None:
    repo = Counting()
    await registered(repo, 50)
    senders = FakeSenders()
    assert await deliver(NOON, repo, senders, rules=RULES, batch=10, rounds=3) == 30
    assert await deliver(NOON, repo, senders, rules=RULES, batch=10, rounds=3) == 20


class OneBadRecord(Counting):
    """A customer whose stored preferences cannot be read, and a notification whose outcome
    cannot be written: reads and writes that include them fail (not a database outage)."""

    def __init__(self, bad_preferences: str, bad_save: str) -> None:
        super().__init__()
        self.bad_preferences, self.bad_save = bad_preferences, bad_save

    async def standing(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        if self.bad_preferences in customer_ids:
            raise ValueError("a preferences document that does not decode")
        return await super().standing(customer_ids)

    async def save_deliveries(
        self,
        notifications: Sequence[Notification],
        claim: Claim,
        outbound: Sequence[OutboundMessage],
    ) -> None:
        if any(n.customer_id == self.bad_save for n in notifications):
            raise ValueError("a document the store refuses")
        await super().save_deliveries(notifications, claim, outbound)


async def test_one_bad_record_fails_its_own_message_and_the_rest_of_the_group_goes() -> None:
    repo = OneBadRecord(bad_preferences="c001", bad_save="c003")
    customers = await registered(repo, 5)
    senders = FakeSenders()
    assert await deliver(NOON, repo, senders, rules=RULES) == 3
    assert sorted(n.customer_id for n in senders.sent) == ["c000", "c002", "c003", "c004"]
    assert statuses(repo) == {
        customers[0]: "sent",
        customers[1]: "sending",  # not sent; its claim lapses and a later run tries again
        customers[2]: "sent",
        customers[3]: "sending",  # sent, its outcome not saved: the hand-over mark says so
        customers[4]: "sent",
    }
    # the group's read failed, then one customer at a time: four of five read
    assert repo.reads == [1, 1, 1, 1]
