"""Notify on the real stack with a real SMTP server (aiosmtpd) and a local HTTP server standing in
for the SMS provider: one correct zh-CN email per ticket, suppression without consent, marketing
deferred from 23:00 to 09:00 (injected clock), retries through an SMTP outage with nothing lost or
doubled, SMS through the provider adapter, preferences changed by staff (over the version they
read) and followed by the next message, a consent withdrawal that cancels a deferred greeting."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from stackutil import (
    ServiceProcess,
    SmtpServer,
    Stack,
    cloud_event,
    eventually,
    free_port,
    send,
    ticket_opened,
    unique,
)

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")


class SmsProvider:
    """A local HTTP server standing in for the SMS provider's API."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/sms"


@pytest.fixture(scope="module")
def sms() -> Iterator[SmsProvider]:
    provider = SmsProvider()
    yield provider
    provider.server.shutdown()


@pytest.fixture(scope="module")
def notify(stack: Stack, smtp: SmtpServer, sms: SmsProvider) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        sms_url=sms.url,
        retry_initial_s="1",  # the runtime back-off, and the delivery retry:
        rules__retry_initial_s="1",
        retry_max_s="2",
        rules__retry_max_s="2",
        deliver_interval_s="0.5",
        clock_override_enabled="true",
    ).start()
    yield service
    service.stop()


def register(stack: Stack, customer: str, **fields: Any) -> None:
    send(
        stack,
        "members.v1",
        (customer, cloud_event("customer.registered", customer, {"name": "李雷", **fields})),
    )


def notifications(notify: ServiceProcess, customer: str, template: str) -> list[dict[str, Any]]:
    items = notify.get("/notifications", customer_id=customer, template=template).json()["items"]
    return [notify.get(f"/notifications/{i['id']}").json() for i in items]


def acked(notify: ServiceProcess, customer: str) -> list[dict[str, Any]]:
    """The customer's ticket acknowledgements once notify has saved one as sent (the mail is at
    the server before that is saved)."""

    def saved() -> list[dict[str, Any]]:
        found = notifications(notify, customer, "ticket_ack")
        return found if "sent" in [n["status"] for n in found] else []

    found: list[dict[str, Any]] = eventually(saved, timeout=30)
    return found


def test_ticket_opened_twice_sends_exactly_one_chinese_email(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    customer = unique("mail")
    address = f"{customer}@example.com"
    register(stack, customer, email=address)
    ticket_id = unique("T")
    event = ticket_opened(customer, ticket_id, event_id=unique("ev"))
    duplicates = notify.metric("crm_events_duplicate_total")
    send(stack, "tickets.v1", (customer, event), (customer, event))
    subject = f"我们已收到您的反馈（工单 {ticket_id}）"
    eventually(lambda: any(m["Subject"] == subject for m in smtp.mailbox.to(address)), timeout=30)
    send(stack, "tickets.v1", (customer, event))  # once more, later
    # The welcome or the first mail says nothing of the later repeat: wait until notify has taken
    # both repeats as duplicates.
    eventually(lambda: notify.metric("crm_events_duplicate_total") >= duplicates + 2, timeout=30)
    acks = [m for m in smtp.mailbox.to(address) if m["Subject"] == subject]
    assert len(acks) == 1
    body = acks[0].get_content()
    assert "李雷，您好！您的反馈已登记为工单" in body
    assert acks[0]["Message-ID"].startswith("<N-")
    [ack] = acked(notify, customer)
    assert [h["status"] for h in ack["history"]][-2:] == ["queued", "sent"]


def test_a_complaint_applied_before_the_registration_is_acknowledged_once_registered(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    """The complaint (`tickets.v1`) overtakes the registration (`members.v1`): the message waits
    for it, then goes out in Chinese with the name the registration gave. Before, it was
    suppressed (`unknown_customer`) and the customer never heard of their complaint."""
    customer = unique("late")
    address = f"{customer}@example.com"
    ticket_id = unique("T")
    send(stack, "tickets.v1", (customer, ticket_opened(customer, ticket_id)))
    [waiting] = eventually(lambda: notifications(notify, customer, "ticket_ack"), timeout=30)
    assert (waiting["status"], waiting["history"][-1]["reason"]) == (
        "deferred",
        "awaiting_registration",
    )
    assert waiting["awaiting_until"] is not None  # when it stops waiting (then suppressed)
    register(stack, customer, email=address)
    subject = f"我们已收到您的反馈（工单 {ticket_id}）"
    eventually(lambda: any(m["Subject"] == subject for m in smtp.mailbox.to(address)), timeout=30)
    [ack] = eventually(
        lambda: [n for n in notifications(notify, customer, "ticket_ack") if n["status"] == "sent"]
    )
    assert [h["status"] for h in ack["history"]] == ["deferred", "queued", "sent"]
    [mail] = [m for m in smtp.mailbox.to(address) if m["Subject"] == subject]
    assert "李雷，您好！您的反馈已登记为工单" in mail.get_content()


def test_a_history_loaded_into_the_suite_mails_nobody_about_what_is_long_past(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    """A shop loads its member history: a customer who registered half a year ago and
    complained last week gets no welcome and no acknowledgement now (`stale`, announced); one
    who registered an hour ago is welcomed as ever. Before, both were mailed."""
    old, new = unique("hist"), unique("fresh")
    now = datetime.now(UTC)
    for customer, at in ((old, now - timedelta(days=183)), (new, now - timedelta(hours=1))):
        data = {"name": "李雷", "email": f"{customer}@example.com"}
        registered = cloud_event("customer.registered", customer, data, time=at)
        send(stack, "members.v1", (customer, registered))
    last_week = now - timedelta(days=7)
    send(stack, "tickets.v1", (old, ticket_opened(old, unique("T"), at=last_week)))
    eventually(
        lambda: any("欢迎" in m["Subject"] for m in smtp.mailbox.to(f"{new}@example.com")),
        timeout=30,
    )

    def both_decided() -> list[dict[str, Any]]:
        found = [*notifications(notify, old, "welcome"), *notifications(notify, old, "ticket_ack")]
        return found if len(found) == 2 else []

    stale = eventually(both_decided, timeout=30)
    assert sorted((n["template"], n["status"], n["history"][-1]["reason"]) for n in stale) == [
        ("ticket_ack", "suppressed", "stale"),
        ("welcome", "suppressed", "stale"),
    ]
    by_template = {n["template"]: datetime.fromisoformat(n["occurred_at"]) for n in stale}
    assert by_template["welcome"] < now - timedelta(days=180)  # what the age is measured from
    assert smtp.mailbox.to(f"{old}@example.com") == []


def settled(notify: ServiceProcess, customer: str, template: str) -> list[dict[str, Any]]:
    """The customer's messages of `template` once none awaits the registration any more."""
    found = notifications(notify, customer, template)
    return found if found and all(n["status"] != "deferred" for n in found) else []


def test_without_consent_nothing_is_sent_and_a_suppressed_record_says_why(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    customer = unique("nocon")
    address = f"{customer}@example.com"
    register(stack, customer, email=address, consents={"email": {"transactional": False}})
    send(stack, "tickets.v1", (customer, ticket_opened(customer, unique("T"))))
    found = eventually(lambda: settled(notify, customer, "ticket_ack"), timeout=30)
    assert found[0]["status"] == "suppressed"
    assert found[0]["history"][-1]["reason"] == "email:no_consent, sms:no_address"
    assert smtp.mailbox.to(address) == []


def test_staff_change_preferences_and_the_next_message_follows_them(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    customer = unique("prefs")
    address = f"{customer}@example.com"
    register(stack, customer, email=address)
    eventually(lambda: notify.get(f"/preferences/{customer}").status_code == 200, timeout=30)
    read = {"If-Match": notify.get(f"/preferences/{customer}").headers["ETag"]}
    mars = {"locale": "en", "time_zone": "Mars/Base"}
    assert notify.put(f"/preferences/{customer}", mars, headers=read).status_code == 422
    assert notify.get(f"/preferences/{customer}").json()["locale"] == "zh-CN"  # nothing saved
    update = {"locale": "en", "time_zone": "Europe/Berlin", "opted_out": ["email"]}
    changed = notify.put(f"/preferences/{customer}", update, headers=read)
    assert changed.status_code == 200
    stored = notify.get(f"/preferences/{customer}").json()
    assert stored == changed.json()
    assert (stored["locale"], stored["time_zone"], stored["opted_out"]) == (
        "en",
        "Europe/Berlin",
        ["email"],
    )
    assert stored["has_email"] is True  # the sealed address is still there
    anyone = {"If-Match": '"1"'}
    assert (
        notify.put("/preferences/nobody-at-all", {"locale": "en"}, headers=anyone).status_code
        == 404
    )
    send(stack, "tickets.v1", (customer, ticket_opened(customer, unique("T"))))
    found = eventually(lambda: notifications(notify, customer, "ticket_ack"), timeout=30)
    assert found[0]["status"] == "suppressed"
    assert found[0]["history"][-1]["reason"] == "email:opted_out, sms:no_address"


def test_a_birthday_greeting_due_at_23_00_is_deferred_and_sent_at_09_00(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    if (day.month, day.day) == (2, 29):
        day += timedelta(days=1)
    customer = unique("bday")
    address = f"{customer}@example.com"
    register(
        stack,
        customer,
        email=address,
        birthday=date(1990, day.month, day.day).isoformat(),
        consents={"email": {"transactional": True, "marketing": True}},
    )
    eventually(lambda: notify.get(f"/preferences/{customer}").status_code == 200, timeout=30)
    late = datetime.combine(day, time(23, 0), tzinfo=SH)
    assert notify.post("/ops/sweeps/care", at=late.isoformat()).status_code == 200
    [greeting] = notifications(notify, customer, "birthday")
    morning = datetime.combine(day + timedelta(days=1), time(9, 0), tzinfo=SH)
    assert greeting["status"] == "deferred"
    assert datetime.fromisoformat(greeting["next_attempt_at"]) == morning
    before = (morning - timedelta(minutes=1)).isoformat()
    assert notify.post("/ops/sweeps/deliver", at=before).status_code == 200
    assert notifications(notify, customer, "birthday")[0]["status"] == "deferred"
    assert notify.post("/ops/sweeps/deliver", at=morning.isoformat()).status_code == 200
    assert notifications(notify, customer, "birthday")[0]["status"] == "sent"
    assert [m["Subject"] for m in smtp.mailbox.to(address) if "生日" in m["Subject"]] == [
        "生日快乐，李雷！"
    ]


def test_an_smtp_outage_is_retried_and_delivers_once_when_the_server_returns(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    customer = unique("outage")
    address = f"{customer}@example.com"
    register(stack, customer, email=address)
    eventually(lambda: smtp.mailbox.to(address), timeout=30)  # the welcome got through
    smtp.stop()
    try:
        ticket_id = unique("T")
        send(stack, "tickets.v1", (customer, ticket_opened(customer, ticket_id)))
        retried = eventually(
            lambda: [
                n for n in notifications(notify, customer, "ticket_ack") if n["attempts"] >= 2
            ],
            timeout=30,
        )
        assert retried[0]["status"] == "queued"
        assert "retry" in retried[0]["history"][-1]["reason"]
    finally:
        smtp.start()
    subject = f"我们已收到您的反馈（工单 {ticket_id}）"
    eventually(lambda: any(m["Subject"] == subject for m in smtp.mailbox.to(address)), timeout=30)
    [ack] = acked(notify, customer)
    assert ack["status"] == "sent"
    assert len([m for m in smtp.mailbox.to(address) if m["Subject"] == subject]) == 1


def test_a_customer_with_only_a_phone_gets_an_sms_through_the_provider(
    stack: Stack, notify: ServiceProcess, sms: SmsProvider
) -> None:
    customer = unique("sms")
    register(stack, customer, phone="+86 138 0013 8000")
    ticket_id = unique("T")
    send(stack, "tickets.v1", (customer, ticket_opened(customer, ticket_id)))
    texts = eventually(lambda: [r for r in sms.received if ticket_id in r["text"]], timeout=30)
    assert texts[0]["to"] == "+86 138 0013 8000"
    assert texts[0]["id"].startswith("N-")


def consent_changed(customer: str, purpose: str, *, granted: bool) -> bytes:
    data = {"channel": "email", "purpose": purpose, "granted": granted}
    return cloud_event("customer.consent_changed", customer, data)


def cancelled_count(notify: ServiceProcess) -> float:
    """`crm_notifications_total{channel="email",status="cancelled"}` on /metrics."""
    for line in notify.get("/metrics").text.splitlines():
        labels = ('status="cancelled"', 'channel="email"')
        if line.startswith("crm_notifications_total{") and all(x in line for x in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_withdrawal_at_23_30_cancels_the_greeting_and_a_stale_put_cannot_undo_it(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    """Issue #18, item 2, on the stack: the birthday greeting deferred from 23:00 to 09:00 is
    cancelled (with the reason, counted) when the member system withdraws the marketing consent,
    and is not sent at 09:00; staff who read the preferences before the withdrawal and save
    afterwards get 412 (428 without If-Match), and the withdrawal stands."""
    day = (datetime.now(UTC) + timedelta(days=20)).date()
    if (day.month, day.day) == (2, 29):
        day += timedelta(days=1)
    customer = unique("withdraw")
    address = f"{customer}@example.com"
    register(
        stack,
        customer,
        email=address,
        birthday=date(1990, day.month, day.day).isoformat(),
        consents={"email": {"transactional": True, "marketing": True}},
    )
    eventually(lambda: notify.get(f"/preferences/{customer}").status_code == 200, timeout=30)
    late = datetime.combine(day, time(23, 0), tzinfo=SH)
    assert notify.post("/ops/sweeps/care", at=late.isoformat()).status_code == 200
    assert notifications(notify, customer, "birthday")[0]["status"] == "deferred"
    staff_read = notify.get(f"/preferences/{customer}").headers["ETag"]
    counted = cancelled_count(notify)

    send(stack, "members.v1", (customer, consent_changed(customer, "marketing", granted=False)))
    cancelled = eventually(
        lambda: [
            n for n in notifications(notify, customer, "birthday") if n["status"] == "cancelled"
        ],
        timeout=30,
    )
    assert cancelled[0]["history"][-1]["reason"] == "email:no_consent"
    assert cancelled_count(notify) == counted + 1

    stale = notify.put(
        f"/preferences/{customer}", {"locale": "en"}, headers={"If-Match": staff_read}
    )
    assert stale.status_code == 412, stale.text
    assert stale.headers["ETag"] != staff_read
    assert notify.put(f"/preferences/{customer}", {"locale": "en"}).status_code == 428
    stored = notify.get(f"/preferences/{customer}")
    assert stored.json()["consents"]["email"]["marketing"] is False
    assert stored.json()["locale"] == "zh-CN"
    fresh = {"If-Match": stored.headers["ETag"]}
    changed = notify.put(f"/preferences/{customer}", {"locale": "en"}, headers=fresh)
    assert changed.status_code == 200
    assert changed.json()["consents"]["email"]["marketing"] is False  # the withdrawal stands

    morning = datetime.combine(day + timedelta(days=1), time(9, 0), tzinfo=SH)
    assert notify.post("/ops/sweeps/deliver", at=morning.isoformat()).status_code == 200
    assert notifications(notify, customer, "birthday")[0]["status"] == "cancelled"
    assert not [m for m in smtp.mailbox.to(address) if "生日" in m["Subject"]]
