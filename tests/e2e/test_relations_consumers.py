"""The consumers of `relations.v1` on the real stack (Kafka + the MongoDB-wire server; relations,
the archive and tickets as processes): a task completed in relations appears in the archive's
timeline with the user who did it and counts as a contact; an agreement makes the customer an
agreement customer (协议客户) in the archive, and their complaint's ticket takes the agreement's
first-response SLA."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from stackutil import ServiceProcess, Stack, cloud_event, eventually, send, unique

pytestmark = pytest.mark.e2e
CST = ZoneInfo("Asia/Shanghai")
OWNER_TOKEN = "crm-demo-owner-01"
OWNER = "owner-01"
ALWAYS_OPEN = {
    "rules__calendar__opens": "00:00",
    "rules__calendar__closes": "00:00",
    "rules__calendar__working_weekdays": "[0, 1, 2, 3, 4, 5, 6]",
}
"""Tickets' calendar for the test: every hour is a business hour, whenever it runs."""


@pytest.fixture(scope="module")
def relations(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("relations", stack).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def tickets(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("tickets", stack, **ALWAYS_OPEN).start()
    yield service
    service.stop()


def as_owner(relations: ServiceProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        relations.url + path,
        headers={"Authorization": f"Bearer {OWNER_TOKEN}", "Idempotency-Key": unique("k")},
        json=body,
        timeout=30,
    )


def test_a_task_completed_in_relations_is_a_contact_on_the_archive_timeline_by_its_user(
    stack: Stack, relations: ServiceProcess, archive: ServiceProcess
) -> None:
    customer = unique("fu")
    made = as_owner(relations, "/tasks", {"customer_id": customer, "due_in_business_days": 1})
    assert made.status_code == 201, made.text
    task_id = made.json()["task_id"]
    done = as_owner(
        relations,
        f"/tasks/{task_id}/complete",
        {"outcome": "reached", "summary": "客户说下月再订 / will reorder next month"},
    )
    assert done.status_code == 200, done.text

    def entry() -> dict[str, Any] | None:
        answer = archive.get(f"/customers/{customer}/timeline")
        if answer.status_code != 200:
            return None
        found = [e for e in answer.json()["items"] if e["type"] == "task.completed"]
        return found[0] if found else None

    completed = eventually(entry, timeout=30)
    assert (completed["data"]["by"], completed["data"]["task_id"]) == (OWNER, task_id)
    assert completed["data"]["outcome"] == "reached"
    assert completed["summary"] is None, "the task's summary stays in relations"
    record = archive.get(f"/customers/{customer}").json()
    assert record["contacts"] == 1


def test_an_agreement_customer_in_the_archive_and_their_ticket_takes_the_agreement_sla(
    stack: Stack, relations: ServiceProcess, archive: ServiceProcess, tickets: ServiceProcess
) -> None:
    customer = unique("agr")
    today = datetime.now(UTC).astimezone(CST).date()
    before = tickets.processed("relations.v1", "agreement.created")
    body = {
        "customer_id": customer,
        "number": unique("XY"),
        "owner": OWNER,
        "starts_on": (today - timedelta(days=30)).isoformat(),
        "ends_on": (today + timedelta(days=300)).isoformat(),
        "terms": {
            "period": "quarter",
            "minimum": "100000",
            "currency": "CNY",
            "renewal_notice_days": 30,
            "first_response_hours": 1,
        },
    }
    answer = relations.post("/agreements", body, headers={"Idempotency-Key": unique("k")})
    assert answer.status_code == 201, answer.text

    def agreement_customer() -> dict[str, Any] | None:
        record = archive.get(f"/customers/{customer}")
        return record.json() if record.status_code == 200 else None

    record = eventually(agreement_customer, timeout=30)
    assert (record["agreement_customer"], record["agreements"]) == (True, [body["number"]])
    listed = archive.get("/customers", agreement_customer="true", limit=500).json()["items"]
    assert customer in [row["id"] for row in listed]

    # The complaint goes after tickets took the agreement in (another topic: no order between).
    eventually(lambda: tickets.processed("relations.v1", "agreement.created") > before)
    complaint = {
        "complaint_id": unique("cmp"),
        "channel": "phone",
        "description": "发票开错 / wrong invoice",
        "category": "billing",
        "severity": "medium",
    }
    send(stack, "callcenter.v1", (customer, cloud_event("complaint.reported", customer, complaint)))

    def ticket() -> dict[str, Any] | None:
        found = tickets.get("/tickets", customer_id=customer).json()["items"]
        return dict(tickets.get(f"/tickets/{found[0]['id']}").json()) if found else None

    opened = eventually(ticket, timeout=30)
    assert opened["priority"] == "P3"  # 4 business hours by priority; the agreement promises 1
    assert opened["sla"]["first_response"]["target_s"] == 3600
    assert opened["sla"]["resolution"]["target_s"] == 27 * 3600
