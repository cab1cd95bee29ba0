"""A customer message about what is long past is not sent: a backlog caught up after an outage,
or a shop's history loaded into the suite, must not mail customers welcomes, acknowledgements and
promotions of months ago. Each is recorded `suppressed` as `stale` and announced; what is recent
in the same batch goes out as before, and staff messages are not the customer's to age."""

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from notify_fakes import FakeSenders, InMemoryNotify

from crm_contracts import CloudEvent, event_key, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_notify.delivery import deliver
from crm_notify.domain.digest import Digest, day_closes
from crm_notify.domain.notification import Notification
from crm_notify.domain.policy import NotifyRules, Preferences, decide
from crm_notify.handlers import apply_events, awaiting_sweep, digest_sweep
from crm_notify.ports import Staff

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=SH)
RULES = NotifyRules()  # max_age_s: 3 days
_ids = iter(range(1_000_000))


def ev(event_type: str, customer: str, data: Any, at: datetime) -> CloudEvent[Any]:
    return new_event(
        event_type, source="t", subject=customer, data=data, id=f"e{next(_ids)}", time=at
    )


def registered(customer: str, at: datetime) -> CloudEvent[Any]:
    data = members_v1.CustomerRegistered(name="李雷", email=f"{customer}@example.com")
    return ev(members_v1.CUSTOMER_REGISTERED, customer, data, at)


def promoted(customer: str, at: datetime) -> CloudEvent[Any]:
    data = loyalty_v1.TierChanged(tier="gold", previous_tier="silver", qualifying_points=5000)
    return ev(loyalty_v1.TIER_CHANGED, customer, data, at)


def opened(customer: str, at: datetime) -> CloudEvent[Any]:
    data = tickets_v1.TicketOpened(
        ticket_id=f"T-{customer}",
        channel="phone",
        category="delivery",
        severity="high",
        priority="P2",
        queue="delivery",
    )
    return ev(tickets_v1.TICKET_OPENED, customer, data, at)


def at_risk(customer: str, at: datetime) -> CloudEvent[Any]:
    data = archive_v1.CustomerChurnRiskRaised(reasons=["purchase_interval"], detected_at=at)
    return ev(archive_v1.CUSTOMER_CHURN_RISK_RAISED, customer, data, at)


def customer() -> Preferences:
    return Preferences("c1", name="李雷", email="li@example.com", registered=True, version=1)


def test_a_cause_older_than_the_max_age_is_stale_and_one_within_it_is_not() -> None:
    limit = NOW - timedelta(days=3)
    assert decide(customer(), "transactional", NOW, 0, RULES, occurred_at=limit).action == "send"
    late = limit - timedelta(seconds=1)
    decision = decide(customer(), "transactional", NOW, 0, RULES, occurred_at=late)
    assert (decision.action, decision.reason) == ("suppress", "stale")
    # A customer never heard of is not awaited for a message that may not go anyway.
    unknown = decide(None, "transactional", NOW, 0, RULES, occurred_at=late)
    assert (unknown.action, unknown.reason) == ("suppress", "stale")
    never = NotifyRules(max_age_s=0)
    long_ago = NOW - timedelta(days=400)
    assert decide(customer(), "transactional", NOW, 0, never, occurred_at=long_ago).action == (
        "send"
    )


def test_an_infinite_max_age_never_ages() -> None:
    """`CRM_NOTIFY_RULES__MAX_AGE_S=inf` is what a company that wants everything sent may try:
    it must not break the decision (a timedelta of inf seconds overflows)."""
    forever = NotifyRules(max_age_s=float("inf"))
    long_ago = NOW - timedelta(days=4000)
    decision = decide(customer(), "transactional", NOW, 0, forever, occurred_at=long_ago)
    assert decision.action == "send"


def test_a_negative_max_age_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        NotifyRules(max_age_s=-1)


async def test_a_history_replayed_mails_only_what_is_recent() -> None:
    repo = InMemoryNotify()
    half_a_year_ago = NOW - timedelta(days=183)
    events = [
        registered("old", half_a_year_ago),
        promoted("old", half_a_year_ago + timedelta(days=30)),
        opened("old", NOW - timedelta(days=4)),
        at_risk("old", NOW - timedelta(days=100)),
        registered("new", NOW - timedelta(hours=2)),
        promoted("new", NOW - timedelta(minutes=5)),
    ]
    await apply_events(events, repo, rules=RULES, staff=Staff(None), now=NOW)

    old = {n.template: n for n in repo.notifications.values() if n.customer_id == "old"}
    assert {t: (n.status, n.history[-1].reason) for t, n in old.items()} == {
        "welcome": ("suppressed", "stale"),
        "tier_changed": ("suppressed", "stale"),
        "ticket_ack": ("suppressed", "stale"),
        "retention": ("suppressed", "stale"),
    }
    assert all(n.body == "" for n in old.values())  # nothing rendered for what is not sent
    announced = [
        (m.event.subject, m.event.data.template, m.event.data.reason)
        for m in repo.outbox
        if m.event.type == notify_v1.NOTIFICATION_SUPPRESSED
    ]
    assert sorted(announced) == [
        ("old", "retention", "stale"),
        ("old", "ticket_ack", "stale"),
        ("old", "tier_changed", "stale"),
        ("old", "welcome", "stale"),
    ]
    senders = FakeSenders()
    await deliver(NOW, repo, senders, rules=RULES)
    assert sorted((n.customer_id, n.template) for n in senders.sent) == [
        ("new", "tier_changed"),
        ("new", "welcome"),
    ]


async def test_a_points_digest_of_a_day_long_closed_is_stale() -> None:
    repo = InMemoryNotify()
    await apply_events(
        [registered("c1", NOW - timedelta(days=30))],
        repo,
        rules=NotifyRules(max_age_s=0),  # registered long ago, welcomed then
        staff=Staff(None),
        now=NOW - timedelta(days=30),
    )
    for day in (date(2026, 11, 1), date(2026, 11, 22)):
        digest = Digest("c1", day, points=120, orders=1, balance=120)
        digest.closes_at = day_closes(day, SH)
        repo.digests_[digest.digest_id] = digest
    await digest_sweep(NOW, repo, rules=RULES)
    long_closed = repo.notifications[Notification.id_for("digest/c1/2026-11-01", "points_digest")]
    assert (long_closed.status, long_closed.history[-1].reason) == ("suppressed", "stale")
    yesterday = repo.notifications[Notification.id_for("digest/c1/2026-11-22", "points_digest")]
    assert yesterday.status == "queued"


async def test_points_of_a_day_long_closed_make_no_digest_at_all() -> None:
    """Their digest would only be stale: the batch does not store it (no write, no message)."""
    repo = InMemoryNotify()
    events = [
        ev(
            loyalty_v1.POINTS_EARNED,
            "c1",
            loyalty_v1.PointsEarned(points=points, order_id=f"o{points}", balance=points),
            at,
        )
        for points, at in ((10, NOW - timedelta(days=120)), (25, NOW - timedelta(hours=1)))
    ]
    await apply_events(events, repo, rules=RULES, staff=Staff(None), now=NOW)
    assert [(d.day, d.points) for d in repo.digests_.values()] == [(NOW.date(), 25)]
    # The long-closed day's points get no inbox mark (ADR 0025): whenever they come again, the
    # day is older still. Today's are marked, and delivered again they add nothing.
    assert repo.processed == {event_key(events[1])}
    later = NOW + timedelta(days=2)
    await apply_events(events, repo, rules=RULES, staff=Staff(None), now=later)
    assert [(d.day, d.points) for d in repo.digests_.values()] == [(NOW.date(), 25)]


async def test_a_message_released_long_after_its_cause_is_stale() -> None:
    """It awaited a registration that notify applied only five days later (notify was down):
    the release finds it stale, as the first decision would have."""
    repo = InMemoryNotify()
    await apply_events([opened("late", NOW)], repo, rules=RULES, staff=Staff(None), now=NOW)
    [ack] = repo.by_template("ticket_ack")
    assert ack.awaiting
    later = NOW + timedelta(days=5)
    registration = registered("late", later - timedelta(minutes=1))
    await apply_events([registration], repo, rules=RULES, staff=Staff(None), now=later)
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "stale")
    [welcome] = repo.by_template("welcome")
    assert welcome.status == "queued"  # the registration itself is a minute old


async def test_a_message_whose_wait_ends_long_after_its_cause_is_stale() -> None:
    repo = InMemoryNotify()
    await apply_events([opened("never", NOW)], repo, rules=RULES, staff=Staff(None), now=NOW)
    await awaiting_sweep(NOW + timedelta(days=4), repo, rules=RULES)
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "stale")


async def test_what_was_queued_before_a_long_outage_is_cancelled_as_stale_not_sent() -> None:
    """Decided and queued, then notify was down for four days: the send's last check finds the
    acknowledgement stale and cancels it (announced); the staff alert of the same time goes."""
    repo = InMemoryNotify()
    breach = tickets_v1.TicketSlaBreached(
        ticket_id="T-c1", priority="P1", target="first_response", due_at=NOW, elapsed_s=3600
    )
    events = [
        registered("c1", NOW - timedelta(hours=1)),
        opened("c1", NOW - timedelta(hours=1)),
        ev(tickets_v1.TICKET_SLA_BREACHED, "c1", breach, NOW),
    ]
    await apply_events(events, repo, rules=RULES, staff=Staff("http://hooks/staff"), now=NOW)
    senders = FakeSenders()
    await deliver(NOW + timedelta(days=4), repo, senders, rules=RULES)
    assert sorted(n.template for n in senders.sent) == ["sla_alert"]
    for template in ("welcome", "ticket_ack"):
        [message] = repo.by_template(template)
        assert (message.status, message.history[-1].reason) == ("cancelled", "stale")
    cancelled = [m for m in repo.outbox if m.event.type == notify_v1.NOTIFICATION_CANCELLED]
    assert sorted(m.event.data.template for m in cancelled) == ["ticket_ack", "welcome"]


async def test_an_expiry_notice_is_not_aged() -> None:
    """It is about points still to expire: worth sending even when notify applies it late."""
    repo = InMemoryNotify()
    await apply_events([registered("c1", NOW)], repo, rules=RULES, staff=Staff(None), now=NOW)
    notice = loyalty_v1.PointsExpiringSoon(points=300, expires_at=NOW + timedelta(days=20))
    event = ev(loyalty_v1.POINTS_EXPIRING_SOON, "c1", notice, NOW)
    later = NOW + timedelta(days=5)
    await apply_events([event], repo, rules=RULES, staff=Staff(None), now=later)
    [expiring] = repo.by_template("points_expiring")
    assert expiring.status == "queued"


async def test_the_daily_count_is_read_only_when_it_can_decide_the_message() -> None:
    """The daily cap is checked after the channel: a message that is stale, awaits its
    customer's registration or has no channel the customer allows is decided without the
    count (one store round trip per message); one that may go is counted against the cap."""
    repo = InMemoryNotify()

    async def run(*events: CloudEvent[Any]) -> None:
        await apply_events(list(events), repo, rules=RULES, staff=Staff(None), now=NOW)

    await run(at_risk("c1", NOW - timedelta(days=10)))  # stale
    await run(at_risk("c2", NOW))  # never heard of: awaits the registration
    await run(registered("c3", NOW), at_risk("c3", NOW))  # no marketing consent
    assert repo.counts_read == 0
    decided = {
        n.customer_id: (n.status, n.history[-1].reason) for n in repo.by_template("retention")
    }
    assert decided == {
        "c1": ("suppressed", "stale"),
        "c2": ("deferred", "awaiting_registration"),
        "c3": ("suppressed", "email:no_consent, sms:no_consent"),
    }
    opted_in = members_v1.CustomerRegistered(
        name="韩梅梅",
        email="c4@example.com",
        consents={"email": members_v1.Consent(marketing=True)},
    )
    await run(ev(members_v1.CUSTOMER_REGISTERED, "c4", opted_in, NOW))
    await run(at_risk("c4", NOW))
    assert repo.counts_read == 1  # it may go: counted against the cap


async def test_a_digest_is_aged_from_its_day_s_close_not_its_start() -> None:
    """Points of 2026-11-20 in Shanghai: the day began 3.5 days before NOW, and closed 2.5 days
    before. Within the max age: kept, and its digest is not stale."""
    repo = InMemoryNotify()
    early = datetime(2026, 11, 20, 1, 0, tzinfo=SH)
    earned = loyalty_v1.PointsEarned(points=40, order_id="o1", balance=40)
    await apply_events(
        [registered("c1", early), ev(loyalty_v1.POINTS_EARNED, "c1", earned, early)],
        repo,
        rules=RULES,
        staff=Staff(None),
        now=NOW,
    )
    assert [(d.day, d.points) for d in repo.digests_.values()] == [(date(2026, 11, 20), 40)]
    await digest_sweep(NOW, repo, rules=RULES)
    [digest] = repo.by_template("points_digest")
    assert digest.status == "queued"


async def test_staff_messages_are_not_aged() -> None:
    repo = InMemoryNotify()
    breach = tickets_v1.TicketSlaBreached(
        ticket_id="T-9",
        priority="P1",
        target="first_response",
        due_at=NOW - timedelta(days=9),
        elapsed_s=3600,
    )
    event = ev(tickets_v1.TICKET_SLA_BREACHED, "c1", breach, NOW - timedelta(days=9))
    await apply_events([event], repo, rules=RULES, staff=Staff("http://hooks/staff"), now=NOW)
    [alert] = repo.by_template("sla_alert")
    assert alert.status == "queued"
