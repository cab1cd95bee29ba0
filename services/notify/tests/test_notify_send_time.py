"""Consent, opt-out and quiet hours are asked again right before each send, and a message due
now is sent right after the batch that decided it — on the in-memory fakes.

What this protects (issue #18, item 2; issue #16, target 2): a customer who withdraws consent
at 23:30 does not get at 09:00 the marketing message quiet hours deferred (it is `cancelled`,
with the reason, at the withdrawal); a message the re-check finds refused is cancelled even if
nothing cancelled it before; a transactional message still goes where the rules let it; a batch
names the messages due now, and the delivery worker sends exactly those through the claim.
"""

import asyncio
from datetime import date, datetime
from typing import Any

import pytest
from notify_fakes import FakeSenders, InMemoryNotify
from test_notify_flow import RULES, SH, ev, opened, registered, run

from crm_contracts import CloudEvent
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_notify.delivery import SendNow, deliver, deliver_ids
from crm_notify.handlers import apply_events, care_sweep
from crm_notify.ports import Staff

pytestmark = pytest.mark.unit
LATE = datetime(2026, 11, 23, 23, 0, tzinfo=SH)
WITHDRAWN_AT = datetime(2026, 11, 23, 23, 30, tzinfo=SH)
MORNING = datetime(2026, 11, 24, 9, 0, tzinfo=SH)


def consent(customer: str, purpose: str, *, granted: bool, at: datetime) -> CloudEvent[Any]:
    data = members_v1.CustomerConsentChanged(channel="email", purpose=purpose, granted=granted)
    return ev(members_v1.CUSTOMER_CONSENT_CHANGED, customer, data, at=at)


async def birthday_deferred_to_the_morning(repo: InMemoryNotify, senders: FakeSenders) -> None:
    """c1 opted in to marketing; the birthday greeting decided at 23:00 waits for 09:00."""
    consents = {"email": members_v1.Consent(marketing=True)}
    await run(repo, registered("c1", consents=consents, birthday=date(1990, 11, 23)))
    await deliver(LATE, repo, senders, rules=RULES)  # the welcome
    await care_sweep(LATE, repo, rules=RULES, holidays={}, zone_name="Asia/Shanghai")
    [birthday] = repo.by_template("birthday")
    assert (birthday.status, birthday.next_attempt_at) == ("deferred", MORNING)


async def test_consent_withdrawn_at_23_30_cancels_the_greeting_deferred_to_09_00() -> None:
    repo, senders = InMemoryNotify(), FakeSenders()
    await birthday_deferred_to_the_morning(repo, senders)
    await run(repo, consent("c1", "marketing", granted=False, at=WITHDRAWN_AT), now=WITHDRAWN_AT)
    [birthday] = repo.by_template("birthday")
    assert (birthday.status, birthday.history[-1].reason) == ("cancelled", "email:no_consent")
    assert birthday.next_attempt_at is None
    await deliver(MORNING, repo, senders, rules=RULES)
    assert [n.template for n in senders.sent] == ["welcome"], "the greeting went out anyway"
    cancelled = [m.event for m in repo.outbox if m.event.type == notify_v1.NOTIFICATION_CANCELLED]
    assert [(e.subject, e.data.template, e.data.reason) for e in cancelled] == [
        ("c1", "birthday", "email:no_consent")
    ]


async def test_the_send_time_check_cancels_what_no_withdrawal_reached() -> None:
    """Preferences that refuse the message by the time it is sent (here written behind the
    handlers' back, as a withdrawal saved while the message was being claimed would be): the
    delivery worker asks them again under its claim and cancels instead of sending."""
    repo, senders = InMemoryNotify(), FakeSenders()
    await birthday_deferred_to_the_morning(repo, senders)
    repo.prefs["c1"].consents["email"]["marketing"] = False
    assert await deliver(MORNING, repo, senders, rules=RULES) == 0
    assert [n.template for n in senders.sent] == ["welcome"]
    [birthday] = repo.by_template("birthday")
    assert (birthday.status, birthday.history[-1].reason) == ("cancelled", "email:no_consent")
    assert (birthday.claim, birthday.attempts) == (None, 0)
    assert notify_v1.NOTIFICATION_CANCELLED in [m.event.type for m in repo.outbox]


async def test_an_opt_out_found_at_send_time_cancels_and_quiet_hours_defer_again() -> None:
    """A marketing retry that lands inside quiet hours waits for their end (it was decided by
    day); an opted-out channel found at send time cancels."""
    repo, senders = InMemoryNotify(), FakeSenders(failures=2)
    consents = {"email": members_v1.Consent(marketing=True)}
    evening = datetime(2026, 11, 23, 20, 59, 50, tzinfo=SH)
    await run(repo, registered("c1", consents=consents, birthday=date(1990, 11, 23)), now=evening)
    await care_sweep(evening, repo, rules=RULES, holidays={}, zone_name="Asia/Shanghai")
    await deliver(evening, repo, senders, rules=RULES)  # both fail once: retried in 10 s
    retry = datetime(2026, 11, 23, 21, 0, 0, tzinfo=SH)
    await deliver(retry, repo, senders, rules=RULES)
    [birthday] = repo.by_template("birthday")
    assert (birthday.status, birthday.next_attempt_at) == ("deferred", MORNING)
    assert birthday.history[-1].reason == "quiet_hours"
    assert [n.template for n in senders.sent] == ["welcome"], "transactional: not deferred"
    repo.prefs["c1"].opted_out = ["email"]
    await deliver(MORNING, repo, senders, rules=RULES)
    [birthday] = repo.by_template("birthday")
    assert (birthday.status, birthday.history[-1].reason) == ("cancelled", "email:opted_out")


async def test_a_transactional_message_still_goes_after_marketing_consent_is_withdrawn() -> None:
    """Withdrawing marketing consent cancels marketing only: the ticket acknowledgement at
    23:30 goes at once (transactional: no quiet hours, consent unless refused)."""
    repo, senders = InMemoryNotify(), FakeSenders()
    await birthday_deferred_to_the_morning(repo, senders)
    withdrawn = consent("c1", "marketing", granted=False, at=WITHDRAWN_AT)
    await run(repo, withdrawn, opened("c1"), now=WITHDRAWN_AT)
    await deliver(WITHDRAWN_AT, repo, senders, rules=RULES)
    assert [n.template for n in senders.sent] == ["welcome", "ticket_ack"]
    assert repo.by_template("birthday")[0].status == "cancelled"


async def test_withdrawing_transactional_consent_cancels_the_queued_acknowledgement() -> None:
    """Decided and withdrawn in one batch: the new message is saved cancelled, never sent."""
    repo, senders = InMemoryNotify(), FakeSenders()
    await run(repo, registered("c1"))
    applied = await apply_events(
        [opened("c1"), consent("c1", "transactional", granted=False, at=LATE)],
        repo,
        rules=RULES,
        staff=Staff(None),
        now=LATE,
    )
    assert applied.due == []
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("cancelled", "email:no_consent")
    await deliver(LATE, repo, senders, rules=RULES)
    assert [n.template for n in senders.sent] == []  # the welcome was cancelled as well


async def test_a_batch_names_what_is_due_now_and_exactly_those_are_sent() -> None:
    repo, senders = InMemoryNotify(), FakeSenders()
    consents = {"email": members_v1.Consent(marketing=True)}
    applied = await apply_events(
        [registered("c1", consents=consents), registered("c2")],
        repo,
        rules=RULES,
        staff=Staff(None),
        now=LATE,
    )
    welcomes = {n.customer_id: n.notification_id for n in repo.by_template("welcome")}
    assert applied.events == 2
    assert sorted(applied.due) == sorted(welcomes.values())
    assert await deliver_ids([welcomes["c1"]], LATE, repo, senders, rules=RULES) == 1
    assert [n.customer_id for n in senders.sent] == ["c1"]
    # Handed over twice (a sweep ran meanwhile): claimed and sent once.
    assert await deliver_ids(applied.due, LATE, repo, senders, rules=RULES) == 1
    assert sorted(n.customer_id for n in senders.sent) == ["c1", "c2"]
    assert await deliver_ids(applied.due, LATE, repo, senders, rules=RULES) == 0


async def test_send_now_sends_what_it_is_handed_and_leaves_the_rest_to_the_sweep() -> None:
    sent: list[list[str]] = []
    done = asyncio.Event()

    async def send(ids: list[str]) -> int:
        sent.append(ids)
        done.set()
        return len(ids)

    worker = SendNow(send, workers=2, limit=3)
    worker.hand(["a", "b"])
    worker.hand(["b", "c", "d", "e"])  # "b" once; beyond the limit: the sweep sends them
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(done.wait(), timeout=5)
    assert sent == [["a", "b", "c"]]
    done.clear()
    worker.hand(["f"])  # a worker waiting again wakes for what comes later
    await asyncio.wait_for(done.wait(), timeout=5)
    task.cancel()
    assert sent == [["a", "b", "c"], ["f"]]
