"""Delivery keeps going and sends each message once: one message's failure (even a bug) fails
that message alone; a notification is claimed before it is sent, so a second run at the same
time does not send it too; a run that stopped mid-send is resumed as the hand-over says (sent
again before it, not after); every SMS and webhook carries the notification id as its
idempotency key; mail headers are one line whatever the customer's name."""

import asyncio
import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from notify_fakes import FakeSenders, InMemoryNotify

from crm_contracts import new_event
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_notify.adapters.channels import (
    author,
    email_bytes,
    email_message,
    http_sender,
    idempotency_key,
    webhook_sender,
)
from crm_notify.delivery import deliver
from crm_notify.domain.notification import Notification
from crm_notify.domain.policy import NotifyRules
from crm_notify.domain.templates import one_line
from crm_notify.handlers import apply_events
from crm_notify.ports import DeliveryError, HandedOver, Staff

pytestmark = pytest.mark.unit
NOON = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # noon in Shanghai
RULES = NotifyRules(retry_initial_s=10, max_attempts=4)
LATER = datetime.now(UTC) + timedelta(hours=1)
"""Real time an hour from now: every claim made in a test has lapsed by then."""


async def run(repo: InMemoryNotify, *customers: str, name: str = "李雷") -> None:
    """Register `customers` (with an e-mail address): each gets a welcome to send."""
    events = [
        new_event(
            members_v1.CUSTOMER_REGISTERED,
            source="t",
            subject=c,
            data=members_v1.CustomerRegistered(name=name, email=f"{c}@example.com"),
            id=f"reg-{c}",
            time=NOON,
        )
        for c in customers
    ]
    await apply_events(events, repo, rules=RULES, staff=Staff(None), now=NOON)


def welcome_of(repo: InMemoryNotify, customer: str) -> Notification:
    [found] = [n for n in repo.by_template("welcome") if n.customer_id == customer]
    return found


def events_of(repo: InMemoryNotify) -> list[tuple[str, str]]:
    return [(m.event.type, m.event.subject) for m in repo.outbox]


async def test_a_message_that_raises_an_unexpected_error_fails_alone_and_the_run_goes_on() -> None:
    repo = InMemoryNotify()
    await run(repo, "bug", "flaky", "fine")
    senders = FakeSenders(
        errors={
            "bug": ValueError("Header values may not contain linefeed or carriage return"),
            "flaky": ConnectionResetError("reset by peer"),
        }
    )
    assert await deliver(NOON, repo, senders, rules=RULES) == 1
    assert [n.customer_id for n in senders.sent] == ["fine"]
    bug = welcome_of(repo, "bug")
    assert (bug.status, bug.attempts) == ("failed", 1)
    assert bug.history[-1].reason == "ValueError while sending"  # no message text: it may be PII
    flaky = welcome_of(repo, "flaky")
    assert flaky.status == "queued", "a transient error is retried"
    assert flaky.next_attempt_at == NOON + RULES.retry_delay(1)
    assert (notify_v1.NOTIFICATION_FAILED, "bug") in events_of(repo)
    assert (notify_v1.NOTIFICATION_SENT, "fine") in events_of(repo)


async def test_a_send_that_hangs_is_abandoned_after_the_timeout_and_retried() -> None:
    repo = InMemoryNotify()
    await run(repo, "c1")

    class Hanging(FakeSenders):
        async def send(self, notification: Notification, handed_over: HandedOver) -> str:
            await asyncio.Event().wait()
            return "never"

    await deliver(NOON, repo, Hanging(), rules=RULES, send_timeout_s=0.05)
    [welcome] = repo.by_template("welcome")
    assert (welcome.status, welcome.claim) == ("queued", None)
    assert welcome.history[-1].reason == "retry 1: no answer from the provider in time"


async def test_a_customer_name_with_line_breaks_gives_a_one_line_subject() -> None:
    repo = InMemoryNotify()
    await run(repo, "c1", name="Li\nLei\u2028Bcc: x@example.com\x1b")
    [welcome] = repo.by_template("welcome")
    assert welcome.subject == "欢迎加入，Li Lei Bcc: x@example.com"
    assert welcome.body.startswith("Li Lei Bcc: x@example.com，您好！")


def test_mail_headers_are_one_line_even_for_a_subject_stored_before_the_rule() -> None:
    note = Notification("N-1", "c1", "welcome", "transactional", "e1", datetime.now(UTC))
    note.to, note.subject, note.body = "c1@example.com", "Hi\r\nBcc: victim@example.com", "hello"
    message = email_message(note, "Care <care@example.com>")
    assert message["Subject"] == "Hi Bcc: victim@example.com"
    assert message["Bcc"] is None
    assert message["Message-ID"] == "<N-1@crm.notify>"
    assert b"\r\nBcc:" not in message.as_bytes()


SUBJECTS = {
    "chinese": "会员等级变更：金卡",
    "ascii": "Your tier is now Gold",
    "long chinese": "长" * 250,
    "long ascii": "x" * 250,
    "looks encoded": "=?utf-8?b?5L2g5aW9?= Li Lei",
    "emoji and marks": "🎉 Café – Ünïcode",
    "line breaks": "Hi\r\nBcc: victim@example.com\u2028!",
}
BODIES = {
    "chinese": "尊敬的李雷：\n\n您的会员等级已升级为金卡。\r\n一个回车\r结束",
    "ascii": "Dear Li Lei,\n\n.a line starting with a dot\nThanks",
    "long ascii line": "y" * 2000,
    "control characters": "a\x00b\x1bc",
}


@pytest.mark.parametrize("subject", SUBJECTS.values(), ids=SUBJECTS.keys())
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
@pytest.mark.parametrize("sender", ["客户服务 <care@example.com>", "Care <care@example.com>"])
def test_the_written_email_reads_as_the_standard_librarys(
    subject: str, body: str, sender: str
) -> None:
    """`email_bytes` writes the e-mail without the standard library's header machinery (about
    0.7–1 ms a message): a mail reader must see the headers and text `email_message` would have
    sent, and the subject as written (the library sends text that looks like an encoded word
    as it is, so a reader shows "你好" for "=?utf-8?b?5L2g5aW9?=")."""
    note = Notification("N-1", "c1", "tier_changed", "transactional", "e1", datetime.now(UTC))
    note.to, note.subject, note.body = "c1@example.com", subject, body
    from_ = author(sender)
    assert from_ is not None
    assert from_.address == "care@example.com"
    raw = email_bytes(note, "c1@example.com", from_)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    written = email.message_from_bytes(raw, policy=email.policy.default)
    built = email.message_from_bytes(
        email_message(note, sender).as_bytes(), policy=email.policy.default
    )
    assert not written.defects
    assert sorted(written.keys()) == sorted(built.keys())
    for header in ("From", "To", "Message-ID", "MIME-Version", "Content-Type"):
        assert str(written[header]) == str(built[header]), header
    assert written["Subject"] == one_line(subject, 200)  # the library's: "你好" for "looks encoded"
    assert lf(written.get_content()) == lf(built.get_content())  # CRLF (RFC 2045) or LF


def lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def test_an_address_that_is_not_plain_ascii_goes_the_standard_librarys_way() -> None:
    assert author("Care <客服@example.com>") is None
    assert author("no address at all") is None


def test_one_line_bounds_the_length() -> None:
    assert one_line("x" * 300, 200) == "x" * 199 + "…"
    assert one_line(" a\u2029\u2029b\x00c\u202e ", 10) == "a bc"


class ReadTogether(InMemoryNotify):
    """Both runs read the due list before either claims anything: the race a claim must win."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = asyncio.Barrier(2)

    async def due(self, now: datetime, lapsed: datetime, limit: int) -> list[Notification]:
        found = await super().due(now, lapsed, limit)
        await self.barrier.wait()
        return found


async def test_two_runs_at_once_send_each_message_once() -> None:
    repo = ReadTogether()
    await run(repo, "c1", "c2", "c3")
    senders = FakeSenders()
    counts = await asyncio.gather(
        deliver(NOON, repo, senders, rules=RULES), deliver(NOON, repo, senders, rules=RULES)
    )
    assert sorted(n.customer_id for n in senders.sent) == ["c1", "c2", "c3"]
    assert sum(counts) == 3
    assert [e for e, _ in events_of(repo)] == [notify_v1.NOTIFICATION_SENT] * 3


class Stuck(FakeSenders):
    """Sends nothing and never returns; hands over first when `after_hand_over`."""

    def __init__(self, *, after_hand_over: bool) -> None:
        super().__init__()
        self.after_hand_over = after_hand_over
        self.inside = asyncio.Event()

    async def send(self, notification: Notification, handed_over: HandedOver) -> str:
        if self.after_hand_over:
            await handed_over("smtp://primary")
        self.inside.set()
        await asyncio.Event().wait()
        return "never"


async def killed_mid_send(repo: InMemoryNotify, *, after_hand_over: bool) -> None:
    """A delivery run stopped mid-send, as SIGKILL stops it: nothing after that point runs."""
    stuck = Stuck(after_hand_over=after_hand_over)
    task = asyncio.create_task(deliver(NOON, repo, stuck, rules=RULES))
    await stuck.inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_claimed_message_is_not_sent_by_another_run_while_the_claim_holds() -> None:
    repo = InMemoryNotify()
    await run(repo, "c1")
    await killed_mid_send(repo, after_hand_over=False)
    [welcome] = repo.by_template("welcome")
    assert welcome.status == "sending"
    senders = FakeSenders()
    assert await deliver(NOON + timedelta(minutes=5), repo, senders, rules=RULES) == 0
    assert senders.attempts == 0


async def test_a_run_stopped_before_the_hand_over_is_sent_again_under_the_same_id() -> None:
    repo = InMemoryNotify()
    await run(repo, "c1")
    [welcome] = repo.by_template("welcome")
    await killed_mid_send(repo, after_hand_over=False)
    senders = FakeSenders()
    assert await deliver(NOON, repo, senders, rules=RULES, clock=lambda: LATER) == 1
    assert [n.notification_id for n in senders.sent] == [welcome.notification_id]
    [after] = repo.by_template("welcome")
    assert (after.status, after.attempts, after.claim) == ("sent", 1, None)
    assert [h.status for h in after.history] == ["queued", "sent"]


async def test_a_run_stopped_after_the_hand_over_is_not_sent_again() -> None:
    repo = InMemoryNotify()
    await run(repo, "c1")
    await killed_mid_send(repo, after_hand_over=True)
    senders = FakeSenders()
    assert await deliver(NOON, repo, senders, rules=RULES, clock=lambda: LATER) == 1
    assert senders.attempts == 0, "the provider had the whole message: no second e-mail"
    [welcome] = repo.by_template("welcome")
    assert (welcome.status, welcome.provider) == ("sent", "smtp://primary")
    assert "unconfirmed" in (welcome.history[-1].reason or "")
    assert events_of(repo) == [(notify_v1.NOTIFICATION_SENT, "c1")]


def sms_and_webhook(requests: list[httpx.Request], *statuses: int) -> httpx.MockTransport:
    replies = iter(statuses)

    def reply(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(next(replies))

    return httpx.MockTransport(reply)


async def nothing() -> None:
    return None


async def test_sms_and_webhooks_carry_the_notification_id_as_a_stable_idempotency_key() -> None:
    note = Notification("N-0123456789abcdef", "c1", "ticket_ack", "transactional", "e1", NOON)
    note.to, note.subject, note.body = "+86 138 0013 8000", "Ticket T-1", "We are on it."
    requests: list[httpx.Request] = []
    transport = sms_and_webhook(requests, 503, 202, 202)
    primary = http_sender("http://sms-1/send", "t", transport=transport)
    secondary = http_sender("http://sms-2/send", "t", transport=transport)
    with pytest.raises(DeliveryError):
        await primary(note, nothing)  # a 503: retried later, on either provider
    await primary(note, nothing)
    await secondary(note, nothing)
    keys = [r.headers["Idempotency-Key"] for r in requests]
    assert keys == [note.notification_id] * 3 == [idempotency_key(note)] * 3
    assert [json.loads(r.content)["id"] for r in requests] == [note.notification_id] * 3

    hooks: list[httpx.Request] = []
    hook = webhook_sender("http://hooks/staff", "s", transport=sms_and_webhook(hooks, 500, 204))
    note.to = None
    with pytest.raises(DeliveryError):
        await hook(note, nothing)
    await hook(note, nothing)
    assert [r.headers["Idempotency-Key"] for r in hooks] == [note.notification_id] * 2
    body: dict[str, Any] = json.loads(hooks[-1].content)
    assert body["id"] == note.notification_id
