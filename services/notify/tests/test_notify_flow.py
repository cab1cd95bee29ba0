"""Triggers become one message each (or a suppression with its reason), delivery retries with
backoff and fails over, marketing waits for the morning, points arrive as a daily digest."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from notify_fakes import FakeSenders, InMemoryNotify

from crm_contracts import CloudEvent, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_notify.adapters.channels import Failover
from crm_notify.delivery import deliver
from crm_notify.domain.notification import Notification
from crm_notify.domain.policy import NotifyRules
from crm_notify.handlers import apply_events, care_sweep, digest_sweep
from crm_notify.ports import DeliveryError, Staff

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=SH)
RULES = NotifyRules(retry_initial_s=10, max_attempts=4)
_ids = iter(range(1_000_000))


def ev(event_type: str, customer: str, data: Any, at: datetime = NOON) -> CloudEvent[Any]:
    return new_event(
        event_type, source="t", subject=customer, data=data, id=f"e{next(_ids)}", time=at
    )


def registered(customer: str, **fields: Any) -> CloudEvent[Any]:
    data = members_v1.CustomerRegistered(name="李雷", email=f"{customer}@example.com", **fields)
    return ev(members_v1.CUSTOMER_REGISTERED, customer, data)


def opened(customer: str, ticket_id: str = "T-1") -> CloudEvent[Any]:
    data = tickets_v1.TicketOpened(
        ticket_id=ticket_id,
        channel="phone",
        category="delivery",
        severity="high",
        priority="P2",
        queue="delivery",
    )
    return ev(tickets_v1.TICKET_OPENED, customer, data)


async def run(repo: InMemoryNotify, *events: CloudEvent[Any], now: datetime = NOON) -> None:
    await apply_events(list(events), repo, rules=RULES, staff=Staff("http://hooks/staff"), now=now)


async def test_a_ticket_opened_twice_gives_one_chinese_acknowledgement() -> None:
    repo = InMemoryNotify()
    await run(repo, registered("c1"))
    trigger = opened("c1")
    await run(repo, trigger)
    await run(repo, trigger)  # redelivered: the inbox already has it
    repo.processed.clear()
    await run(repo, trigger)  # even with the inbox lost, the notification id is the same
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.channel, ack.to) == ("queued", "email", "c1@example.com")
    assert ack.subject == "我们已收到您的反馈（工单 T-1）"
    senders = FakeSenders()
    await deliver(NOON, repo, senders, rules=RULES)
    assert [n.template for n in senders.sent] == ["welcome", "ticket_ack"]
    await deliver(NOON + timedelta(minutes=5), repo, senders, rules=RULES)
    assert len(senders.sent) == 2
    assert [m.event.type for m in repo.outbox] == [notify_v1.NOTIFICATION_SENT] * 2


async def test_a_second_registration_does_not_welcome_again() -> None:
    repo = InMemoryNotify()
    await run(repo, registered("c1"))
    await run(repo, registered("c1"))  # another event id, e.g. from a second shop
    assert len(repo.by_template("welcome")) == 1


async def test_two_member_systems_numbering_alike_each_welcome_their_customer() -> None:
    """An event id is unique only with its source: the same id from two systems is two causes,
    so two messages (before, the second customer's welcome was taken for the first's)."""
    repo = InMemoryNotify()
    data = members_v1.CustomerRegistered(name="李雷", email="a@example.com")
    for source, customer in (("shop-east", "c1"), ("shop-west", "c2")):
        await run(
            repo,
            new_event(
                members_v1.CUSTOMER_REGISTERED,
                source=source,
                subject=customer,
                data=data,
                id="1",
                time=NOON,
            ),
        )
    assert sorted(n.customer_id for n in repo.by_template("welcome")) == ["c1", "c2"]


async def test_without_consent_nothing_is_sent_and_the_suppression_says_why() -> None:
    repo = InMemoryNotify()
    refused = {"email": members_v1.Consent(transactional=False)}
    await run(repo, registered("c2", consents=refused), opened("c2"))
    [ack] = repo.by_template("ticket_ack")
    assert ack.status == "suppressed"
    assert ack.history[-1].reason == "email:no_consent, sms:no_address"
    assert ack.body == ""
    suppressed = [
        m.event.data for m in repo.outbox if m.event.type == notify_v1.NOTIFICATION_SUPPRESSED
    ]
    assert [(s.template, s.reason) for s in suppressed] == [
        ("welcome", "email:no_consent, sms:no_address"),
        ("ticket_ack", "email:no_consent, sms:no_address"),
    ]
    senders = FakeSenders()
    await deliver(NOON, repo, senders, rules=RULES)
    assert [n.template for n in senders.sent] == []  # the welcome was refused too


async def test_a_failing_provider_is_retried_with_backoff_then_succeeds_once() -> None:
    repo = InMemoryNotify()
    await run(repo, registered("c1"))
    senders = FakeSenders(failures=2)
    await deliver(NOON, repo, senders, rules=RULES)
    [welcome] = repo.by_template("welcome")
    assert (welcome.status, welcome.attempts) == ("queued", 1)
    assert welcome.next_attempt_at == NOON + timedelta(seconds=10)
    await deliver(NOON + timedelta(seconds=9), repo, senders, rules=RULES)
    assert senders.attempts == 1
    await deliver(NOON + timedelta(seconds=10), repo, senders, rules=RULES)
    [welcome] = repo.by_template("welcome")
    assert welcome.next_attempt_at == NOON + timedelta(seconds=30)  # 10 s, then 20 s
    await deliver(NOON + timedelta(seconds=30), repo, senders, rules=RULES)
    [welcome] = repo.by_template("welcome")
    assert (welcome.status, welcome.attempts, len(senders.sent)) == ("sent", 3, 1)
    assert [h.status for h in welcome.history] == ["queued", "queued", "queued", "sent"]


async def test_after_the_last_attempt_the_message_fails_and_says_so() -> None:
    repo = InMemoryNotify()
    await run(repo, registered("c1"))
    senders = FakeSenders(failures=100)
    for minute in range(0, 60, 5):
        await deliver(NOON + timedelta(minutes=minute), repo, senders, rules=RULES)
    [welcome] = repo.by_template("welcome")
    assert (welcome.status, welcome.attempts) == ("failed", RULES.max_attempts)
    failed = [m.event.data for m in repo.outbox if m.event.type == notify_v1.NOTIFICATION_FAILED]
    assert [(f.attempts, f.reason) for f in failed] == [(4, "connection refused")]


async def test_marketing_at_23_00_waits_until_09_00() -> None:
    repo = InMemoryNotify()
    consents = {"email": members_v1.Consent(marketing=True)}
    await run(repo, registered("c1", consents=consents, birthday=date(1990, 11, 23)))
    senders = FakeSenders()
    await deliver(NOON, repo, senders, rules=RULES)  # the welcome
    late = datetime(2026, 11, 23, 23, 0, tzinfo=SH)
    assert await care_sweep(late, repo, rules=RULES, holidays={}, zone_name="Asia/Shanghai") == 1
    assert await care_sweep(late, repo, rules=RULES, holidays={}, zone_name="Asia/Shanghai") == 0
    [birthday] = repo.by_template("birthday")
    assert (birthday.status, birthday.next_attempt_at) == (
        "deferred",
        datetime(2026, 11, 24, 9, 0, tzinfo=SH),
    )
    await deliver(datetime(2026, 11, 24, 8, 59, tzinfo=SH), repo, senders, rules=RULES)
    assert [n.template for n in senders.sent] == ["welcome"]
    await deliver(datetime(2026, 11, 24, 9, 0, tzinfo=SH), repo, senders, rules=RULES)
    assert [n.template for n in senders.sent] == ["welcome", "birthday"]
    assert [h.status for h in repo.by_template("birthday")[0].history] == ["deferred", "sent"]


async def test_holidays_greet_registered_customers_who_opted_in() -> None:
    repo = InMemoryNotify()
    await run(
        repo,
        registered("c1", consents={"email": members_v1.Consent(marketing=True)}),
        registered("c2"),
    )
    new_year = datetime(2027, 2, 6, 10, 0, tzinfo=SH)
    await care_sweep(
        new_year, repo, rules=RULES, holidays={date(2027, 2, 6): "春节"}, zone_name="Asia/Shanghai"
    )
    statuses = sorted((n.customer_id, n.status) for n in repo.by_template("holiday"))
    assert statuses == [("c1", "queued"), ("c2", "suppressed")]
    assert repo.by_template("holiday")[0].subject == "春节快乐"


async def test_points_earned_arrive_as_one_digest_the_next_day() -> None:
    repo = InMemoryNotify()
    await run(repo, registered("c1"))
    earned = [
        ev(
            loyalty_v1.POINTS_EARNED,
            "c1",
            loyalty_v1.PointsEarned(points=p, order_id=f"o{p}", balance=b),
        )
        for p, b in ((10, 10), (25, 35), (5, 40))
    ]
    await run(repo, *earned)
    assert repo.by_template("points_digest") == []
    await digest_sweep(NOON, repo, rules=RULES)
    assert repo.by_template("points_digest") == []  # the day is not over
    await digest_sweep(NOON + timedelta(days=1), repo, rules=RULES)
    await digest_sweep(NOON + timedelta(days=1), repo, rules=RULES)
    [digest] = repo.by_template("points_digest")
    assert "3 笔订单获得 40 积分，当前余额 40" in digest.body


async def test_an_sla_breach_alerts_staff_over_the_webhook() -> None:
    repo = InMemoryNotify()
    breached = tickets_v1.TicketSlaBreached(
        ticket_id="T-9", target="first_response", priority="P1", due_at=NOON, elapsed_s=1900
    )
    await run(repo, ev(tickets_v1.TICKET_SLA_BREACHED, "c9", breached))
    [alert] = repo.by_template("sla_alert")
    assert (alert.status, alert.channel, alert.to) == ("queued", "webhook", "http://hooks/staff")


async def test_erasure_redacts_what_was_sent_and_forgets_the_addresses() -> None:
    repo = InMemoryNotify()
    earned = loyalty_v1.PointsEarned(points=10, order_id="o1", balance=10)
    await run(repo, registered("c1"), opened("c1"), ev(loyalty_v1.POINTS_EARNED, "c1", earned))
    assert len(repo.digests_) == 1  # today's points, for tonight's digest
    erase = ev(members_v1.CUSTOMER_ERASURE_REQUESTED, "c1", members_v1.CustomerErasureRequested())
    await run(repo, erase)
    await run(repo, erase)  # redelivered: the inbox drops it
    assert repo.digests_ == {}  # no digest message for them after all
    await digest_sweep(NOON + timedelta(days=1), repo, rules=RULES)
    assert repo.by_template("points_digest") == []
    assert all(n.to is None and n.body == "" for n in repo.notifications.values())
    assert repo.prefs["c1"].email is None
    confirmations = [m.event for m in repo.outbox if m.event.type == "customer.erasure_completed"]
    assert [(e.subject, e.data.service) for e in confirmations] == [("c1", "notify")]


async def test_the_secondary_provider_takes_over_after_repeated_failures() -> None:
    calls: list[str] = []

    async def broken(n: Notification, handed_over: Any) -> None:
        calls.append("primary")
        raise DeliveryError("down")

    async def spare(n: Notification, handed_over: Any) -> None:
        calls.append("secondary")

    async def handed_over(provider: str) -> None:
        return None

    failover = Failover(("primary", broken), ("secondary", spare), threshold=2, cooldown_s=60)
    note = Notification("N-1", "c1", "welcome", "transactional", "e1", datetime.now(UTC))
    for _ in range(2):
        with pytest.raises(DeliveryError):
            await failover.send(note, handed_over)
    assert await failover.send(note, handed_over) == "secondary"
    assert calls == ["primary", "primary", "secondary"]
