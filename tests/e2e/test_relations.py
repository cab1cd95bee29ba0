"""Relations on the real stack (Kafka + the MongoDB-wire server, the service as a process; the
archive's, member system's and order system's events driven straight onto their topics): a VIP
customer gets a follow-up due in 30 days for their owner; a churn warning makes a recovery call;
an agreement of 100,000 CNY a quarter with 30,000 ordered by mid-quarter is at risk, orders to
100,000 close the quarter met, the renewal is due 30 days before the end (the sweeps run as of a
given time: the service's injectable clock); completing a task publishes `task.completed` with
the person who did it."""

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from stackutil import ServiceProcess, Stack, cloud_event, collect, eventually, order_placed, send
from stackutil import unique as unique_id

from crm_runtime.calendar import BusinessCalendar

pytestmark = pytest.mark.e2e
CST = ZoneInfo("Asia/Shanghai")
CALENDAR = BusinessCalendar()
OWNER_TOKEN = "crm-demo-owner-01"
OWNER = "owner-01"


@pytest.fixture(scope="module")
def relations(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("relations", stack, clock_override_enabled="true").start()
    yield service
    service.stop()


def published(
    stack: Stack, customer: str, until: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    records = asyncio.run(
        collect(
            stack.bootstrap,
            "relations.v1",
            lambda r: r.key == customer.encode(),
            until=lambda kept: until([json.loads(r.value) for r in kept]),
            timeout=30,
        )
    )
    return [json.loads(r.value) for r in records]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type]


def tasks(
    relations: ServiceProcess, customer: str, check: Callable[[list[Any]], bool], **filters: str
) -> Any:
    def fetch() -> list[Any] | None:
        answer = relations.get("/tasks", owner="*", customer=customer, **filters)
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        return items if check(items) else None

    return eventually(fetch, timeout=30)


def fulfilled(relations: ServiceProcess, agreement_id: str) -> Decimal | None:
    """The first period's fulfilment as the API shows it (None: no period yet)."""
    periods = relations.get(f"/agreements/{agreement_id}").json()["periods"]
    return Decimal(periods[0]["fulfilled"]) if periods else None


def sweep(relations: ServiceProcess, name: str, at: datetime) -> int:
    answer = relations.post(f"/ops/sweeps/{name}", at=at.isoformat())
    assert answer.status_code == 200, answer.text
    return int(answer.json()["changed"])


def test_a_vip_is_followed_up_in_30_days_a_churn_warning_makes_a_call_completing_is_published(
    stack: Stack, relations: ServiceProcess
) -> None:
    customer = unique_id("vip")
    now = datetime.now(UTC)
    registered = cloud_event(
        "customer.registered", customer, {"name": "王芳", "account_owner": OWNER}, time=now
    )
    send(stack, "members.v1", (customer, registered))
    created = {"stage": "new", "stub": False, "cause_event_type": "customer.registered"}
    send(
        stack,
        "archive.v1",
        (customer, cloud_event("customer.created", customer, created, time=now)),
        (customer, cloud_event("customer.grade_changed", customer, {"grade": "vip"}, time=now)),
    )
    [follow_up] = tasks(relations, customer, lambda items: any(t["owner"] == OWNER for t in items))
    expected = CALENDAR.due_on(CALENDAR.local_date(now) + timedelta(days=30))
    assert follow_up["kind"] == "follow_up"
    assert datetime.fromisoformat(follow_up["due_at"]) == expected

    warned = now + timedelta(minutes=1)
    risk = {"reasons": ["purchase_interval"], "detected_at": warned.isoformat()}
    send(
        stack,
        "archive.v1",
        (customer, cloud_event("customer.churn_risk_raised", customer, risk, time=warned)),
    )
    found = tasks(relations, customer, lambda items: any(t["kind"] == "recovery" for t in items))
    [recovery] = [t for t in found if t["kind"] == "recovery"]
    assert recovery["owner"] == OWNER
    assert datetime.fromisoformat(recovery["due_at"]) == CALENDAR.add_working_days(warned, 2)

    answer = httpx.post(
        f"{relations.url}/tasks/{recovery['task_id']}/complete",
        headers={"Authorization": f"Bearer {OWNER_TOKEN}"},
        json={"outcome": "reached", "summary": "答应下周再下单"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    events = published(stack, customer, lambda es: bool(of_type(es, "task.completed")))
    [completed] = of_type(events, "task.completed")
    assert (completed["data"]["by"], completed["data"]["outcome"]) == (OWNER, "reached")
    assert completed["data"]["task_id"] == recovery["task_id"]
    assert all("答应" not in json.dumps(e, ensure_ascii=False) for e in events)
    # the contact moved the planned follow-up to 30 days after it
    [moved] = tasks(relations, customer, lambda items: len(items) == 1, status="open")
    assert moved["task_id"] == follow_up["task_id"]
    expected = CALENDAR.due_on(CALENDAR.local_date(datetime.now(UTC)) + timedelta(days=30))
    assert datetime.fromisoformat(moved["due_at"]) == expected
    today = CALENDAR.local_date(datetime.now(UTC))
    report = relations.get(
        "/reports/follow-ups",
        since=today.isoformat(),
        until=(today + timedelta(days=10)).isoformat(),
    )
    assert report.status_code == 200, report.text
    [mine] = [row for row in report.json()["owners"] if row["owner"] == OWNER]
    assert mine["done_on_time"] >= 1, "the recovery call, due within 2 business days, done today"
    assert mine["customers"] >= 1
    assert mine["contacted_within_plan"] >= 1, "the VIP was contacted today"


def test_an_agreement_at_risk_at_mid_quarter_is_met_at_its_end_and_its_renewal_falls_due(
    stack: Stack, relations: ServiceProcess
) -> None:
    customer = unique_id("agr")
    terms = {"period": "quarter", "minimum": "100000", "currency": "CNY", "renewal_notice_days": 30}
    body = {
        "customer_id": customer,
        "number": "XY-2026-01",
        "owner": OWNER,
        "starts_on": "2026-01-01",
        "ends_on": "2026-12-31",
        "terms": {**terms, "first_response_hours": 4, "price_note": "九五折"},
    }
    answer = relations.post("/agreements", body, headers={"Idempotency-Key": unique_id("k")})
    assert answer.status_code == 201, answer.text
    agreement_id = answer.json()["agreement_id"]

    january = datetime(2026, 1, 20, 10, tzinfo=CST)
    send(stack, "orders.v1", (customer, order_placed(customer, "o1", "30000.00", time=january)))

    eventually(lambda: fulfilled(relations, agreement_id) == 30_000, timeout=30)
    assert sweep(relations, "agreements", datetime(2026, 2, 15, 12, tzinfo=CST)) == 1
    march = datetime(2026, 3, 20, 10, tzinfo=CST)
    send(stack, "orders.v1", (customer, order_placed(customer, "o2", "70000.00", time=march)))
    eventually(lambda: fulfilled(relations, agreement_id) == 100_000, timeout=30)
    assert sweep(relations, "agreements", datetime(2026, 4, 1, 0, 30, tzinfo=CST)) == 1
    sweep(relations, "agreements", datetime(2026, 12, 1, 12, tzinfo=CST))

    events = published(stack, customer, lambda es: bool(of_type(es, "agreement.renewal_due")))
    risks = of_type(events, "agreement.fulfilment_at_risk")
    # Q1 at mid-quarter; Q4 too, on 1 December with nothing ordered
    assert [e["data"]["period_start"] for e in risks] == ["2026-01-01", "2026-10-01"]
    risk = risks[0]
    assert Decimal(risk["data"]["fulfilled"]) == 30_000
    assert Decimal(risk["data"]["minimum"]) == 100_000
    assert Decimal(risk["data"]["projected"]) < 100_000
    closed = {
        e["data"]["period_start"]: e["data"]["met"]
        for e in of_type(events, "agreement.period_closed")
    }
    assert closed == {"2026-01-01": True, "2026-04-01": False, "2026-07-01": False}
    [renewal] = of_type(events, "agreement.renewal_due")
    assert (renewal["data"]["ends_on"], renewal["data"]["owner"]) == ("2026-12-31", OWNER)
    assert date.fromisoformat(renewal["data"]["ends_on"]) - timedelta(days=30) == date(2026, 12, 1)
    [created] = of_type(events, "agreement.created")
    assert created["data"]["terms"]["first_response_hours"] == 4
    assert all("九五折" not in json.dumps(e, ensure_ascii=False) for e in events)
    kinds = sorted(t["kind"] for t in tasks(relations, customer, lambda items: len(items) >= 6))
    assert kinds == ["agreement_review"] * 5 + ["renewal"]
