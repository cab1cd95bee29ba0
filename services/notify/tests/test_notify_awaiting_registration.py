"""A message for a customer notify has not heard of yet waits for the registration: the member
system's event (`members.v1`) and the complaint's (`tickets.v1`) come on different topics, so the
complaint may be applied first. Before, its acknowledgement was suppressed (`unknown_customer`)
and the customer who registered and complained in the same minute never got it."""

from datetime import timedelta
from typing import Any

import pytest
from notify_fakes import FakeSenders, InMemoryNotify
from test_notify_flow import NOON, RULES, ev, opened, registered, run

from crm_contracts import CloudEvent
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_notify.delivery import deliver
from crm_notify.handlers import apply_events, awaiting_sweep, digest_sweep
from crm_notify.ports import Changes, Staff

pytestmark = pytest.mark.unit
WAIT = timedelta(seconds=RULES.registration_wait_s)


def outcomes(repo: InMemoryNotify) -> list[tuple[str, str]]:
    return [(m.event.type, m.event.data.template) for m in repo.outbox]


async def test_a_complaint_applied_before_the_registration_is_acknowledged_after_it() -> None:
    repo = InMemoryNotify()
    await run(repo, opened("c1"))
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("deferred", "awaiting_registration")
    assert (ack.channel, ack.to, ack.body, ack.next_attempt_at) == (None, None, "", None)
    senders = FakeSenders()
    await deliver(NOON, repo, senders, rules=RULES)
    assert senders.sent == []  # nothing to send it to yet
    assert repo.outbox == []  # nothing decided yet, nothing announced

    later = NOON + timedelta(seconds=3)
    await run(repo, registered("c1"), now=later)
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.channel, ack.to) == ("queued", "email", "c1@example.com")
    assert ack.subject == "我们已收到您的反馈（工单 T-1）"
    assert "李雷" in ack.body  # rendered again with the name the registration gave
    assert (ack.awaiting_until, ack.variables) == (None, None)
    await deliver(later, repo, senders, rules=RULES)
    assert sorted(n.template for n in senders.sent) == ["ticket_ack", "welcome"]
    await awaiting_sweep(later + WAIT, repo, rules=RULES)  # its wait is over: nothing left
    await deliver(later + WAIT, repo, senders, rules=RULES)
    assert len(senders.sent) == 2
    assert sorted(outcomes(repo)) == [
        (notify_v1.NOTIFICATION_SENT, "ticket_ack"),
        (notify_v1.NOTIFICATION_SENT, "welcome"),
    ]


async def test_the_registration_in_the_same_batch_after_the_complaint_releases_it_at_once() -> None:
    repo = InMemoryNotify()
    applied = await _apply(repo, opened("c1"), registered("c1"))
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.to) == ("queued", "c1@example.com")
    assert "李雷" in ack.body
    assert ack.notification_id in applied  # handed to the sender right after the commit


async def test_a_customer_never_registered_is_told_nothing_and_the_suppression_says_why() -> None:
    repo = InMemoryNotify()
    await run(repo, opened("c9"))
    assert await awaiting_sweep(NOON + WAIT - timedelta(seconds=1), repo, rules=RULES) == 0
    assert await awaiting_sweep(NOON + WAIT, repo, rules=RULES) == 1
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "unknown_customer")
    assert [h.status for h in ack.history] == ["deferred", "suppressed"]
    suppressed = [m.event.data for m in repo.outbox]
    assert [(s.template, s.reason) for s in suppressed] == [("ticket_ack", "unknown_customer")]
    assert await awaiting_sweep(NOON + 2 * WAIT, repo, rules=RULES) == 0  # decided once
    await run(repo, registered("c9"), now=NOON + 2 * WAIT)  # too late: not sent after all
    [ack] = repo.by_template("ticket_ack")
    assert ack.status == "suppressed"


async def test_a_registration_applied_meanwhile_elsewhere_is_found_when_the_wait_ends() -> None:
    """Another replica applied the registration while this one made the message: no release
    reached it, so the sweep decides it with the registration it finds."""
    repo = InMemoryNotify()
    await run(repo, opened("c1"))
    await run(repo, registered("c1"))
    [ack] = repo.by_template("ticket_ack")
    ack.status, ack.awaiting_until, ack.variables = "deferred", NOON, {"ticket_id": "T-1"}
    ack.history.append(ack.history[0])  # as if it had been made after the release
    assert await awaiting_sweep(NOON + WAIT, repo, rules=RULES) == 1
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.to) == ("queued", "c1@example.com")


async def test_an_erased_customer_is_suppressed_at_once_not_awaited() -> None:
    repo = InMemoryNotify()
    erasure = members_v1.CustomerErasureRequested()
    await run(repo, registered("c1"), ev(members_v1.CUSTOMER_ERASURE_REQUESTED, "c1", erasure))
    await run(repo, opened("c1"))
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "unknown_customer")


async def test_an_erasure_in_the_same_batch_as_the_trigger_is_not_awaited() -> None:
    repo = InMemoryNotify()
    erasure = members_v1.CustomerErasureRequested()
    await run(repo, ev(members_v1.CUSTOMER_ERASURE_REQUESTED, "c1", erasure), opened("c1"))
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "unknown_customer")


async def test_an_erasure_while_it_awaits_redacts_it_and_it_is_never_sent() -> None:
    repo = InMemoryNotify()
    await run(repo, opened("c1"))
    erasure = members_v1.CustomerErasureRequested()
    await run(repo, ev(members_v1.CUSTOMER_ERASURE_REQUESTED, "c1", erasure))
    [ack] = repo.by_template("ticket_ack")
    assert ack.variables is None
    await awaiting_sweep(NOON + WAIT, repo, rules=RULES)
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "unknown_customer")


async def test_the_same_trigger_again_while_it_awaits_makes_no_second_message() -> None:
    repo = InMemoryNotify()
    trigger = opened("c1")
    await run(repo, trigger)
    repo.processed.clear()  # even with the inbox lost
    await run(repo, trigger)
    await run(repo, registered("c1"))
    senders = FakeSenders()
    await deliver(NOON, repo, senders, rules=RULES)
    assert sorted(n.template for n in senders.sent) == ["ticket_ack", "welcome"]


async def test_points_of_a_customer_not_yet_registered_reach_them_in_the_digest() -> None:
    repo = InMemoryNotify()
    earned = loyalty_v1.PointsEarned(points=120, balance=120, reason="order", order_id="o1")
    await run(repo, ev(loyalty_v1.POINTS_EARNED, "c1", earned))
    next_day = NOON + timedelta(days=1)
    await digest_sweep(next_day, repo, rules=RULES)
    [digest] = repo.by_template("points_digest")
    assert digest.status == "deferred"
    await run(repo, registered("c1"), now=next_day + timedelta(minutes=1))
    [digest] = repo.by_template("points_digest")
    assert (digest.status, digest.to) == ("queued", "c1@example.com")


async def test_messages_released_by_one_registration_keep_to_the_daily_cap() -> None:
    """Five retention offers awaited the customer; the registration gives marketing consent:
    three go (the cap), two are suppressed, as if they had been decided one after another."""
    repo = InMemoryNotify()
    risk = archive_v1.CustomerChurnRiskRaised(reasons=["purchase_interval"], detected_at=NOON)
    for _ in range(5):
        await run(repo, ev(archive_v1.CUSTOMER_CHURN_RISK_RAISED, "c1", risk))
    consents = {"email": members_v1.Consent(marketing=True)}
    await run(repo, registered("c1", consents=consents))
    offers = repo.by_template("retention")
    assert sorted(n.status for n in offers) == ["queued"] * 3 + ["suppressed"] * 2
    assert {n.history[-1].reason for n in offers if n.status == "suppressed"} == {"daily_cap"}


class OneBadCustomer(InMemoryNotify):
    """A store whose write fails for one customer's messages (a record it cannot take)."""

    async def save(self, changes: Changes) -> None:
        if any(n.customer_id == "bad" for n in changes.released):
            raise ValueError("a record the store refuses")
        await super().save(changes)


async def test_one_message_the_sweep_cannot_save_fails_alone() -> None:
    """The page is decided again one message at a time from what was read: the good one as
    if the failed try had never been (rendered, queued), the bad one left for the next run."""
    repo = OneBadCustomer()
    await run(repo, opened("bad", "T-9"), opened("c1", "T-1"))
    await run(repo, registered("c1"))  # as if a replica had missed the release:
    [ack] = [n for n in repo.by_template("ticket_ack") if n.customer_id == "c1"]
    ack.status, ack.awaiting_until, ack.variables = "deferred", NOON, {"ticket_id": "T-1"}
    ack.channel = ack.to = None
    assert await awaiting_sweep(NOON + WAIT, repo, rules=RULES) == 1
    [ack] = [n for n in repo.by_template("ticket_ack") if n.customer_id == "c1"]
    assert (ack.status, ack.to) == ("queued", "c1@example.com")
    assert ack.subject == "我们已收到您的反馈（工单 T-1）"
    assert [h.status for h in ack.history].count("queued") == 2  # once released, not twice
    [bad] = [n for n in repo.by_template("ticket_ack") if n.customer_id == "bad"]
    assert bad.awaiting


async def _apply(repo: InMemoryNotify, *events: CloudEvent[Any]) -> list[str]:
    applied = await apply_events(
        list(events), repo, rules=RULES, staff=Staff("http://hooks/staff"), now=NOON
    )
    return applied.due
