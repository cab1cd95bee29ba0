"""Relations' events become messages to our own people (issue 19): an owner's morning digest is
one e-mail listing their tasks, an escalated task one e-mail per supervisor and once per task, an
agreement alert an e-mail to its owner; in the person's locale from the staff address book,
without the customers' consent or quiet hours; a person without an address is recorded
undeliverable (`staff:no_address`), never an error; a bad address book stops the start."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from notify_fakes import FakeSenders, InMemoryNotify
from pydantic import ValidationError

from crm_contracts import CloudEvent, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.relations import v1 as relations_v1
from crm_notify.delivery import deliver
from crm_notify.domain.policy import NotifyRules
from crm_notify.domain.staff import StaffMember
from crm_notify.domain.templates import TEMPLATES, render
from crm_notify.handlers import apply_events
from crm_notify.ports import Staff
from crm_notify.settings import NotifySettings

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2027, 1, 6, 23, 30, tzinfo=SH)  # inside customers' quiet hours
MORNING = datetime(2027, 1, 6, 8, 30, tzinfo=SH)
RULES = NotifyRules()
STAFF = Staff(
    None,
    {
        "li.wei": StaffMember(email="li.wei@example.cn"),
        "wang.fang": StaffMember(email="wang.fang@example.cn", locale="en", roles=("supervisor",)),
        "zhao.lei": StaffMember(email="zhao.lei@example.cn", roles=("supervisor", "agent")),
        "no.mail": StaffMember(),
    },
)
_ids = iter(range(1_000_000))


def relations_event(event_type: str, subject: str, data: Any, at: datetime) -> CloudEvent[Any]:
    return new_event(
        event_type, source="crm/relations", subject=subject, data=data, id=f"r{next(_ids)}", time=at
    )


def digest(owner: str, *customers: str) -> CloudEvent[Any]:
    tasks = [
        relations_v1.DigestTask(
            task_id=f"t-{customer}",
            customer_id=customer,
            kind="recovery" if n else "callback",
            due_at=datetime(2027, 1, 5 + n, 18, tzinfo=SH),
            overdue=n == 0,
            business_days_overdue=0,
        )
        for n, customer in enumerate(customers)
    ]
    data = relations_v1.TasksDigestDue(
        owner=owner, day=date(2027, 1, 6), due_today=len(tasks) - 1, overdue=1, tasks=tasks
    )
    return relations_event(relations_v1.TASKS_DIGEST_DUE, owner, data, MORNING)


def overdue(
    customer: str, days: int, escalated: bool, owner: str | None = "li.wei"
) -> CloudEvent[Any]:
    data = relations_v1.TaskOverdue(
        task_id=f"t-{customer}",
        kind="recovery",
        owner=owner,
        due_at=datetime(2027, 1, 5, 18, tzinfo=SH),
        business_days_overdue=days,
        escalated=escalated,
    )
    return relations_event(relations_v1.TASK_OVERDUE, customer, data, NIGHT)


def at_risk(customer: str, owner: str | None) -> CloudEvent[Any]:
    data = relations_v1.AgreementFulfilmentAtRisk(
        agreement_id="A-1",
        period_start=date(2027, 1, 1),
        period_end=date(2027, 3, 31),
        measure="spend",
        minimum=Decimal(100_000),
        fulfilled=Decimal(30_000),
        projected=Decimal(60_000),
        currency="CNY",
        owner=owner,
        share_left=0.5,
    )
    return relations_event(relations_v1.AGREEMENT_FULFILMENT_AT_RISK, customer, data, NIGHT)


async def run(repo: InMemoryNotify, *events: CloudEvent[Any], now: datetime = MORNING) -> None:
    await apply_events(list(events), repo, rules=RULES, staff=STAFF, now=now)


async def test_an_owners_digest_is_one_email_listing_both_tasks() -> None:
    repo = InMemoryNotify()
    await run(repo, digest("li.wei", "C-1", "C-2"))
    [message] = repo.by_template("task_digest")
    assert (message.status, message.channel, message.to) == ("queued", "email", "li.wei@example.cn")
    assert message.subject == "今日待办：1 项到期，1 项逾期（2027-01-06）"
    assert "回电 · 客户 C-1 · 截止 2027-01-05（已逾期）" in message.body
    assert "挽留 · 客户 C-2 · 截止 2027-01-06" in message.body
    senders = FakeSenders()
    assert await deliver(MORNING, repo, senders, rules=RULES) == 1
    assert [n.to for n in senders.sent] == ["li.wei@example.cn"]


async def test_the_same_digest_event_twice_makes_one_message() -> None:
    repo = InMemoryNotify()
    event = digest("li.wei", "C-1")
    await run(repo, event)
    repo.processed.clear()  # even with the inbox lost: the message id derives from the event
    await run(repo, event)
    assert len(repo.by_template("task_digest")) == 1


async def test_an_escalated_task_emails_each_supervisor_once_at_night_too() -> None:
    repo = InMemoryNotify()
    await run(repo, overdue("C-1", 1, escalated=False), now=NIGHT)
    assert repo.by_template("task_escalated") == [], "the first notice is the digest's"
    escalation = overdue("C-1", 5, escalated=True)
    await run(repo, escalation, now=NIGHT)
    repo.processed.clear()
    await run(repo, escalation, now=NIGHT)  # redelivered
    sent = sorted(repo.by_template("task_escalated"), key=lambda n: n.to or "")
    assert [(n.to, n.status) for n in sent] == [
        ("wang.fang@example.cn", "queued"),  # staff messages wait for no quiet hours
        ("zhao.lei@example.cn", "queued"),
    ]
    assert sent[0].subject == "Task 5 business days overdue: customer C-1"  # wang.fang: en
    assert sent[1].subject == "任务逾期 5 个工作日：客户 C-1"
    assert "li.wei" in sent[1].body


async def test_an_agreement_at_risk_emails_its_owner_and_without_owner_the_supervisors() -> None:
    repo = InMemoryNotify()
    await run(repo, at_risk("C-1", "li.wei"), at_risk("C-2", None), now=NIGHT)
    messages = repo.by_template("agreement_at_risk")
    assert sorted((n.customer_id, n.to) for n in messages) == [
        ("C-1", "li.wei@example.cn"),
        ("C-2", "wang.fang@example.cn"),
        ("C-2", "zhao.lei@example.cn"),
    ]
    [mine] = [n for n in messages if n.customer_id == "C-1"]
    assert "30000 CNY" in mine.body
    assert "100000" in mine.body


async def test_an_owner_without_an_address_is_recorded_undeliverable_not_an_error() -> None:
    repo = InMemoryNotify()
    await run(repo, digest("no.mail", "C-1"), digest("stranger", "C-2"))
    reasons = sorted(n.history[-1].reason or "" for n in repo.by_template("task_digest"))
    assert reasons == ["staff:no_address (no.mail)", "staff:no_address (stranger)"]
    assert {n.status for n in repo.by_template("task_digest")} == {"suppressed"}
    suppressed = [m.event for m in repo.outbox if m.event.type == notify_v1.NOTIFICATION_SUPPRESSED]
    assert len(suppressed) == 2
    assert await deliver(MORNING + timedelta(minutes=1), repo, FakeSenders(), rules=RULES) == 0


async def test_no_supervisor_in_the_address_book_is_recorded_undeliverable() -> None:
    repo = InMemoryNotify()
    lonely = Staff(None, {"li.wei": StaffMember(email="li.wei@example.cn")})
    await apply_events([overdue("C-1", 6, True)], repo, rules=RULES, staff=lonely, now=NIGHT)
    [message] = repo.by_template("task_escalated")
    assert (message.status, message.history[-1].reason) == (
        "suppressed",
        "staff:no_address (supervisors)",
    )


async def test_a_staff_alert_about_a_customer_does_not_use_up_their_daily_marketing_cap() -> None:
    repo = InMemoryNotify()
    consents = {"email": members_v1.Consent(marketing=True)}
    member = members_v1.CustomerRegistered(name="李雷", email="c1@example.com", consents=consents)
    churn = archive_v1.CustomerChurnRiskRaised(reasons=["purchase_interval"], detected_at=MORNING)
    await run(repo, relations_event(members_v1.CUSTOMER_REGISTERED, "C-1", member, MORNING))
    one_a_day = NotifyRules(daily_cap=1)
    batch = [
        at_risk("C-1", "li.wei"),
        relations_event(archive_v1.CUSTOMER_CHURN_RISK_RAISED, "C-1", churn, MORNING),
    ]
    await apply_events(batch, repo, rules=one_a_day, staff=STAFF, now=MORNING + timedelta(hours=2))
    [retention] = repo.by_template("retention")
    assert retention.status == "queued", retention.history


@pytest.mark.parametrize(
    "name",
    [
        "task_digest",
        "task_escalated",
        "agreement_at_risk",
        "agreement_period_closed",
        "agreement_renewal_due",
    ],
)
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_the_staff_templates_render_in_both_locales(name: str, locale: str) -> None:
    rendered = render(name, locale, TEMPLATES[name].sample)
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert "C-1a2b3c" in rendered.body
    chinese = any("\u4e00" <= ch <= "\u9fff" for ch in rendered.body)
    assert chinese == (locale == "zh-CN")


def test_the_staff_address_book_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CRM_NOTIFY_STAFF",
        '{"owner-01": {"email": "owner-01@example.test", "locale": "en", "roles": ["supervisor"]}}',
    )
    [(user, member)] = NotifySettings().staff.items()
    assert (user, member.email, member.locale, member.is_supervisor) == (
        "owner-01",
        "owner-01@example.test",
        "en",
        True,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"owner-01": {"email": "not-an-address"}}', "not an e-mail address"),
        ('{"owner-01": {"email": "a@b.cn\\r\\nBcc: x@y.cn"}}', "not an e-mail address"),
        ('{"owner-01": {"locale": "fr"}}', "staff.owner-01.locale"),
        ('{"owner-01": {"email": "owner-01@example.test"', "staff"),
    ],
)
def test_a_bad_staff_address_book_stops_the_start_naming_the_entry(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("CRM_NOTIFY_STAFF", value)
    with pytest.raises((ValidationError, ValueError), match=message):
        NotifySettings()
