"""Issue 19's notify half on the real stack (Kafka, the MongoDB-wire server, relations and notify
as processes, a real SMTP server): an owner with two tasks due gets one morning digest e-mail
listing both, however often the sweep runs (and, given after the close, counts the day's tasks
overdue); a task overdue by more than 5 business days makes
one e-mail to the supervisor, once; an agreement at risk e-mails its owner. Time is driven the way
the relations tests drive it: the sweeps run as of a given time (`POST /ops/sweeps/{name}?at=`,
the service's injectable clock)."""

import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from stackutil import (
    ServiceProcess,
    SmtpServer,
    Stack,
    eventually,
    order_placed,
    send,
    unique,
)

from crm_runtime.calendar import BusinessCalendar

pytestmark = pytest.mark.e2e
CST = ZoneInfo("Asia/Shanghai")
CALENDAR = BusinessCalendar()
TAG = unique("s")[-8:]
OWNER = f"own-{TAG}"
SUPERVISOR = f"sup-{TAG}"
OWNER_MAIL = f"{OWNER}@example.test"
SUPERVISOR_MAIL = f"{SUPERVISOR}@example.test"


@pytest.fixture(scope="module")
def relations(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated(
        "relations", stack, clock_override_enabled="true", sweeps_enabled="false"
    ).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def notify(stack: Stack, smtp: SmtpServer) -> Iterator[ServiceProcess]:
    staff = {
        OWNER: {"email": OWNER_MAIL, "locale": "zh-CN"},
        SUPERVISOR: {"email": SUPERVISOR_MAIL, "locale": "en", "roles": ["supervisor"]},
    }
    service = ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        staff=json.dumps(staff),
        deliver_interval_s="0.5",
    ).start()
    yield service
    service.stop()


def sweep(relations: ServiceProcess, name: str, at: datetime) -> int:
    answer = relations.post(f"/ops/sweeps/{name}", at=at.isoformat())
    assert answer.status_code == 200, answer.text
    return int(answer.json()["changed"])


def task_for_owner(relations: ServiceProcess, customer: str, due_on: date) -> str:
    body = {"customer_id": customer, "kind": "callback", "owner": OWNER, "due_on": str(due_on)}
    answer = relations.post("/tasks", body, headers={"Idempotency-Key": unique("k")})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["task_id"])


def mails(smtp: SmtpServer, address: str, words: str) -> list[EmailMessage]:
    return [m for m in smtp.mailbox.to(address) if words in str(m["Subject"])]


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_one_digest_per_owner_listing_both_tasks_and_one_supervisor_mail_per_late_task(
    stack: Stack, relations: ServiceProcess, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    day = CALENDAR.next_working_day(CALENDAR.local_date(datetime.now(CST)) + timedelta(days=7))
    first, second = unique("dg"), unique("dg")
    task_for_owner(relations, first, day)
    task_for_owner(relations, second, day)
    morning = datetime.combine(day, datetime.min.time(), CST) + timedelta(hours=8, minutes=45)

    assert sweep(relations, "digest", morning) == 1, "one digest: one owner"
    assert sweep(relations, "digest", morning + timedelta(hours=1)) == 0, "once a day"
    [digest] = eventually(lambda: mails(smtp, OWNER_MAIL, "今日待办"), timeout=60)
    assert str(digest["Subject"]) == f"今日待办：2 项到期，0 项逾期（{day}）"
    text = body_of(digest)
    assert f"客户 {first}" in text
    assert f"客户 {second}" in text

    # Six business days after the due day: overdue by more than five -> the supervisor, once.
    late = CALENDAR.add_working_days(CALENDAR.due_on(day), 6)
    assert sweep(relations, "overdue", late) == 2
    assert sweep(relations, "overdue", late + timedelta(days=3)) == 0
    escalations = eventually(
        lambda: (found := mails(smtp, SUPERVISOR_MAIL, "overdue")) and len(found) == 2 and found,
        timeout=60,
    )
    subjects = sorted(str(m["Subject"]) for m in escalations)
    assert [s.split("customer ")[-1] for s in subjects] == sorted([first, second])
    assert all("6 business days overdue" in s for s in subjects)
    assert len(mails(smtp, OWNER_MAIL, "今日待办")) == 1, "still one digest"

    # Given after the close (the sweep runs all day), the day's own tasks count as overdue.
    next_day = CALENDAR.next_working_day(day + timedelta(days=1))
    task_for_owner(relations, unique("dg"), next_day)
    evening = datetime.combine(next_day, time(19, 0), CST)
    assert sweep(relations, "digest", evening) == 1
    [later] = eventually(lambda: mails(smtp, OWNER_MAIL, f"（{next_day}）"), timeout=60)
    assert str(later["Subject"]) == f"今日待办：0 项到期，3 项逾期（{next_day}）"


def test_an_agreement_at_risk_emails_its_owner(
    stack: Stack, relations: ServiceProcess, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    customer = unique("agr")
    terms = {"period": "quarter", "minimum": "100000", "currency": "CNY", "renewal_notice_days": 30}
    body = {
        "customer_id": customer,
        "number": f"XY-{TAG}",
        "owner": OWNER,
        "starts_on": "2026-01-01",
        "ends_on": "2026-12-31",
        "terms": terms,
    }
    answer = relations.post("/agreements", body, headers={"Idempotency-Key": unique("k")})
    assert answer.status_code == 201, answer.text
    agreement_id = answer.json()["agreement_id"]
    january = datetime(2026, 1, 20, 10, tzinfo=CST)
    send(stack, "orders.v1", (customer, order_placed(customer, "o1", "30000.00", time=january)))

    def counted() -> bool:
        periods = relations.get(f"/agreements/{agreement_id}").json()["periods"]
        return bool(periods) and float(periods[0]["fulfilled"]) == 30_000

    eventually(counted, timeout=30)
    assert sweep(relations, "agreements", datetime(2026, 2, 15, 12, tzinfo=CST)) == 1
    [alert] = eventually(
        lambda: mails(smtp, OWNER_MAIL, f"协议履约风险：客户 {customer}"), timeout=60
    )
    text = body_of(alert)
    assert "30000.00 CNY" in text
    assert "100000" in text
    assert agreement_id in text
